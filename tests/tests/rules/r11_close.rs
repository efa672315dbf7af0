//! Checks R11 (close) of CONTRACT.md: close is idempotent and works from anywhere, cancels
//! what is in flight (no `FailedToConnect` for it), closes the current connection (still
//! reporting `Disconnected`), stops all retries, and finishes once nothing is live.

use persistent_connection::{Config, Input, InputError, InputKind, RetryPolicy, State, StopKind};

use crate::support::*;

#[test]
fn r11_close_while_dialing_cancels_without_failed_event() {
    let mut m = dialing();
    expect(
        &mut m,
        Input::Close,
        vec![stopped(StopKind::Close), cancel(1), finished()],
    );
    assert_eq!(m.state(), State::Closed);
    assert!(m.is_finished());
    assert_eq!(m.consecutive_failures(), 0);
}

#[test]
fn r11_close_while_fetching_cancels_the_fetch() {
    let mut m = fetching();
    expect(
        &mut m,
        Input::Close,
        vec![stopped(StopKind::Close), cancel(1), finished()],
    );
    let r = reject(&mut m, address(1, "x"));
    assert_eq!(
        r.error,
        InputError::Finished {
            got: InputKind::AddressObtained
        }
    );
}

#[test]
fn r11_close_when_connected_closes_it_and_reports_disconnected() {
    let mut m = connected_machine();
    expect(
        &mut m,
        Input::Close,
        vec![stopped(StopKind::Close), close_conn(1, 1)],
    );
    assert!(m.is_closed());
    assert_eq!(m.state(), State::Closing);
    // The retry timer firing now starts nothing.
    expect(&mut m, fire(1), vec![]);
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    assert!(!m.is_finished());
    // Close resolves only after the Disconnected handler has finished.
    expect(&mut m, handled(), vec![finished()]);
    assert_eq!(m.state(), State::Closed);
}

#[test]
fn r11_close_in_connected_handler_closes_and_still_reports_disconnected() {
    let mut m = dialing();
    expect(&mut m, dialed(1, 2), vec![connected(1, 2)]);
    // From inside the Connected handler.
    expect(
        &mut m,
        Input::Close,
        vec![stopped(StopKind::Close), close_conn(1, 2)],
    );
    expect(&mut m, conn_closed(1), vec![]);
    expect(&mut m, handled(), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![finished()]);

    // The same when the connection closes only after the handler has finished.
    let mut m = dialing();
    expect(&mut m, dialed(1, 2), vec![connected(1, 2)]);
    expect(
        &mut m,
        Input::Close,
        vec![stopped(StopKind::Close), close_conn(1, 2)],
    );
    expect(&mut m, handled(), vec![]);
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![finished()]);
}

#[test]
fn r11_close_after_connection_closed_in_handler_does_not_close_it_again() {
    let mut m = dialing();
    expect(&mut m, dialed(1, 2), vec![connected(1, 2)]);
    expect(&mut m, conn_closed(1), vec![]);
    expect(&mut m, Input::Close, vec![stopped(StopKind::Close)]);
    expect(&mut m, handled(), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![finished()]);
}

#[test]
fn r11_late_dial_after_close_is_handed_back() {
    let mut m = dialing();
    expect(
        &mut m,
        Input::Close,
        vec![stopped(StopKind::Close), cancel(1), finished()],
    );
    // The dial could not be stopped and succeeded after all: never handed out.
    let r = reject(&mut m, dialed(1, 9));
    assert_eq!(
        r.error,
        InputError::Finished {
            got: InputKind::Dialed
        }
    );
    assert_eq!(r.input.into_connection(), Some(9));
    assert_eq!(m.current_connection(), None);
    assert_eq!(m.poll_command(), None);
}

#[test]
fn r11_close_in_each_handler_finishes_after_it() {
    // AttemptingToConnect handler.
    let mut m = M::new(constant(10));
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, Input::Close, vec![stopped(StopKind::Close)]);
    assert_eq!(m.state(), State::Closing);
    expect(&mut m, handled(), vec![finished()]);

    // ObtainedAddress handler: no dial follows.
    let mut m = fetching();
    expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
    expect(&mut m, Input::Close, vec![stopped(StopKind::Close)]);
    expect(&mut m, handled(), vec![finished()]);

    // FailedToConnect handler: no retry follows.
    let mut m = dialing();
    expect(
        &mut m,
        dial_failed(1, "refused"),
        vec![failed(1, err("refused"))],
    );
    expect(&mut m, Input::Close, vec![stopped(StopKind::Close)]);
    expect(&mut m, handled(), vec![finished()]);

    // Disconnected handler: no next cycle follows.
    let mut m = connected_machine();
    expect(&mut m, fire(1), vec![]);
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    expect(&mut m, Input::Close, vec![stopped(StopKind::Close)]);
    expect(&mut m, handled(), vec![finished()]);
}

#[test]
fn r11_close_while_waiting_for_retry_stops_retries() {
    let mut m = dialing();
    expect(
        &mut m,
        dial_failed(1, "refused"),
        vec![failed(1, err("refused"))],
    );
    expect(&mut m, handled(), vec![]);
    expect(
        &mut m,
        Input::Close,
        vec![stopped(StopKind::Close), finished()],
    );
    let r = reject(&mut m, fire(1));
    assert_eq!(
        r.error,
        InputError::Finished {
            got: InputKind::TimerFired
        }
    );

    // Between cycles, too.
    let mut m = connected_machine();
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![]);
    expect(
        &mut m,
        Input::Close,
        vec![stopped(StopKind::Close), finished()],
    );

    // And while a custom policy computes the delay.
    let mut m = M::new(Config::new().retry_policy(RetryPolicy::Custom));
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![compute_delay(1, 0)]);
    expect(
        &mut m,
        Input::Close,
        vec![stopped(StopKind::Close), finished()],
    );
}

#[test]
fn r11_close_is_idempotent() {
    let mut m = connected_machine();
    expect(
        &mut m,
        Input::Close,
        vec![stopped(StopKind::Close), close_conn(1, 1)],
    );
    assert!(m.is_closed());
    // Again, before it has finished: nothing new.
    expect(&mut m, Input::Close, vec![]);
    expect(&mut m, Input::CloseWhenCurrentConnectionIsClosed, vec![]);
    expect(&mut m, Input::Abort, vec![]);
    assert_eq!(m.stop_kind(), Some(StopKind::Close));
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![finished()]);
    // After it has finished, the machine takes nothing more (the driver's close is a no-op).
    let r = reject(&mut m, Input::Close);
    assert_eq!(
        r.error,
        InputError::Finished {
            got: InputKind::Close
        }
    );
}

#[test]
fn r11_peer_closing_never_closes_the_persistent_connection() {
    let mut m = connected_machine();
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    assert!(!m.is_closed());
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(1), vec![attempting()]);
    assert!(!m.is_closed());
}
