//! Checks R12 (abort) of CONTRACT.md: `abort` and `close_when_current_connection_is_closed`
//! make no new attempts, keep the current connection until it closes, then finish; a dial
//! that succeeds after an abort is never handed out.

use persistent_connection::{Input, InputError, InputKind, State, StopKind};

use crate::support::*;

#[test]
fn r12_abort_keeps_current_connection_until_it_closes() {
    let mut m = connected_machine();
    expect(&mut m, Input::Abort, vec![stopped(StopKind::Abort)]);
    assert!(m.is_closed());
    assert_eq!(m.state(), State::Closing);
    // Not closed by the machine; still current.
    assert_eq!(m.current_connection(), Some(&1));
    // No new attempt, even when the retry timer fires.
    expect(&mut m, fire(1), vec![]);
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![finished()]);
    assert_eq!(m.state(), State::Closed);
}

#[test]
fn r12_close_when_current_connection_is_closed_keeps_it_then_finishes() {
    let mut m = connected_machine();
    expect(
        &mut m,
        Input::CloseWhenCurrentConnectionIsClosed,
        vec![stopped(StopKind::WhenCurrentConnectionCloses)],
    );
    assert_eq!(m.stop_kind(), Some(StopKind::WhenCurrentConnectionCloses));
    assert_eq!(m.current_connection(), Some(&1));
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![finished()]);
}

#[test]
fn r12_abort_without_connection_finishes_at_once() {
    let mut m = dialing();
    expect(
        &mut m,
        dial_failed(1, "refused"),
        vec![failed(1, err("refused"))],
    );
    expect(&mut m, handled(), vec![]);
    expect(
        &mut m,
        Input::Abort,
        vec![stopped(StopKind::Abort), finished()],
    );

    let mut m = M::new(constant(10));
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(
        &mut m,
        Input::CloseWhenCurrentConnectionIsClosed,
        vec![stopped(StopKind::WhenCurrentConnectionCloses)],
    );
    expect(&mut m, handled(), vec![finished()]);
}

#[test]
fn r12_dial_succeeding_after_abort_is_closed() {
    // `abort` from inside `connect`: the dial of attempt 1 is out.
    let mut m = dialing();
    expect(
        &mut m,
        Input::Abort,
        vec![stopped(StopKind::Abort), cancel(1), finished()],
    );
    // The dial still succeeds: the connection is never handed out, it comes back to the
    // caller to close.
    let r = reject(&mut m, dialed(1, 4));
    assert_eq!(
        r.error,
        InputError::Finished {
            got: InputKind::Dialed
        }
    );
    assert_eq!(r.input.into_connection(), Some(4));
    assert_eq!(m.current_connection(), None);
}

#[test]
fn r12_close_after_abort_closes_current_connection() {
    let mut m = connected_machine();
    expect(&mut m, Input::Abort, vec![stopped(StopKind::Abort)]);
    // close() after abort: the connection is closed now, with no second outcome.
    expect(&mut m, Input::Close, vec![close_conn(1, 1)]);
    assert_eq!(m.stop_kind(), Some(StopKind::Close));
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![finished()]);
}
