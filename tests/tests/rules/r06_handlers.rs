//! Checks R6 (handlers gate progress) of CONTRACT.md: the machine takes no next step until
//! the handler of each reported event has finished, and `EventHandled` answers exactly one
//! `Emit`.

use persistent_connection::{Expecting, InputError, InputKind};

use crate::support::*;

#[test]
fn r6_no_step_until_each_handler_finishes() {
    let mut m = M::new(constant(10));
    assert_eq!(drain(&mut m), vec![attempting()]);
    // AttemptingToConnect: no attempt before its handler is done.
    assert_eq!(m.poll_command(), None);
    assert_eq!(m.expecting(), Expecting::EventHandled);
    expect(&mut m, handled(), vec![timer(1, secs(10)), fetch(1)]);
    // ObtainedAddress: no dial before its handler is done, even when the timer fires.
    expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
    expect(&mut m, fire(1), vec![]);
    expect(&mut m, handled(), vec![dial(1, "x", 0)]);
    // FailedToConnect: the retry timer has fired already, yet the next attempt waits
    // for the handler.
    expect(
        &mut m,
        dial_failed(1, "refused"),
        vec![failed(1, err("refused"))],
    );
    assert_eq!(m.poll_command(), None);
    expect(&mut m, handled(), vec![timer(2, secs(10)), fetch(2)]);
    expect(&mut m, address(2, "x"), vec![dial(2, "x", 1)]);
    expect(&mut m, dialed(2, 1), vec![connected(2, 1)]);
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(2), vec![]);
    // Disconnected: the retry timer is due, yet the next cycle waits for the handler.
    expect(&mut m, conn_closed(2), vec![disconnected(2)]);
    assert_eq!(m.poll_command(), None);
    expect(&mut m, handled(), vec![attempting()]);
}

#[test]
fn r6_event_handled_is_taken_once_per_event() {
    let mut m = M::new(constant(10));
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(10)), fetch(1)]);
    let r = reject(&mut m, handled());
    assert_eq!(
        r.error,
        InputError::Unexpected {
            got: InputKind::EventHandled,
            expected: Expecting::Address
        }
    );
}
