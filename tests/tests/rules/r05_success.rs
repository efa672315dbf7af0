//! Checks R5 (success) of CONTRACT.md: the count goes back to 0, the connection is current
//! before `Connected` is reported, and `Disconnected` comes only after the `Connected`
//! handler has finished.

use persistent_connection::{AttemptId, Expecting, InputError, InputKind, State};

use crate::support::*;

#[test]
fn r5_success_resets_count_and_connection_is_current_before_connected_event() {
    let mut m = fetching();
    expect(&mut m, address_failed(1, "e"), vec![failed(1, err("e"))]);
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(1), vec![timer(2, secs(10)), fetch(2)]);
    expect(
        &mut m,
        address_failed(2, "e"),
        vec![failed_again(2, err("e"))],
    );
    expect(&mut m, fire(2), vec![timer(3, secs(10)), fetch(3)]);
    assert_eq!(m.consecutive_failures(), 2);
    expect(&mut m, address(3, "x"), vec![obtained(3, "x")]);
    expect(&mut m, handled(), vec![dial(3, "x", 2)]);
    expect(&mut m, dialed(3, 8), vec![connected(3, 8)]);
    // The Connected handler has not finished yet, but the connection is already current.
    assert_eq!(m.consecutive_failures(), 0);
    assert_eq!(m.current_connection(), Some(&8));
    assert_eq!(m.current_attempt(), Some(AttemptId(3)));
    assert_eq!(m.state(), State::Connected);
    expect(&mut m, handled(), vec![]);
}

#[test]
fn r5_disconnected_only_after_connected_handler_finished() {
    let mut m = dialing();
    expect(&mut m, dialed(1, 3), vec![connected(1, 3)]);
    // The connection dies while the Connected handler still runs.
    expect(&mut m, conn_closed(1), vec![]);
    assert_eq!(m.expecting(), Expecting::EventHandled);
    // The same close cannot be reported twice.
    let r = reject(&mut m, conn_closed(1));
    assert_eq!(
        r.error,
        InputError::Unexpected {
            got: InputKind::ConnectionClosed,
            expected: Expecting::EventHandled
        }
    );
    expect(&mut m, handled(), vec![disconnected(1)]);
    assert_eq!(m.current_connection(), None);
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(1), vec![attempting()]);
}
