//! Checks R9 (`connected_or_failed_to_connect`) of CONTRACT.md at the machine's level: the
//! outcome of the next attempt, or the stop (`Stopped`) if it comes first.

use persistent_connection::{Input, State, StopKind};

use crate::support::*;

#[test]
fn r9_waiters_get_outcome_of_next_attempt() {
    let mut m = dialing();
    // Not connected: waiters wait; the next attempt's failure is their answer.
    assert_eq!(m.current_connection(), None);
    expect(
        &mut m,
        dial_failed(1, "refused"),
        vec![failed(1, err("refused"))],
    );
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(1), vec![timer(2, secs(10)), fetch(2)]);
    // A repeated failure is an answer too.
    expect(
        &mut m,
        address_failed(2, "no address"),
        vec![failed(2, err("no address"))],
    );
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(2), vec![timer(3, secs(10)), fetch(3)]);
    expect(&mut m, address(3, "x"), vec![dial(3, "x", 2)]);
    expect(&mut m, dialed(3, 6), vec![connected(3, 6)]);
    // Connected and not closed: a driver answers Ok(current) at once.
    assert_eq!(m.state(), State::Connected);
    assert_eq!(m.current_connection(), Some(&6));
}

#[test]
fn r9_close_before_outcome_gives_closed() {
    let mut m = dialing();
    expect(
        &mut m,
        Input::Close,
        vec![stopped(StopKind::Close), cancel(1), finished()],
    );
    // An error at once from now on.
    assert!(m.is_closed());
}

#[test]
fn r9_abort_gives_reason_to_waiters() {
    let mut m = fetching();
    expect(
        &mut m,
        Input::Abort,
        vec![stopped(StopKind::Abort), cancel(1), finished()],
    );
    assert!(m.is_closed());
    assert_eq!(m.stop_kind(), Some(StopKind::Abort));
}
