//! Checks R2 (attempt) of CONTRACT.md: each attempt starts its retry timer, then fetches
//! the address; `ObtainedAddress` only when it differs from the cycle's last; then the dial;
//! a failed fetch is a failed attempt without a dial.

use persistent_connection::{AttemptId, Expecting};

use crate::support::*;

#[test]
fn r2_attempt_starts_timer_then_fetches_then_dials() {
    let mut m = M::new(constant(3));
    assert_eq!(drain(&mut m), vec![attempting()]);
    // Timer first, then the fetch; no dial before the address.
    expect(&mut m, handled(), vec![timer(1, secs(3)), fetch(1)]);
    assert_eq!(m.attempt(), Some(AttemptId(1)));
    assert_eq!(m.expecting(), Expecting::Address);
    expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
    expect(&mut m, handled(), vec![dial(1, "x", 0)]);
    assert_eq!(m.expecting(), Expecting::DialResult);
}

#[test]
fn r2_same_address_not_reported_again_in_cycle() {
    let mut m = dialing();
    expect(
        &mut m,
        dial_failed(1, "refused"),
        vec![failed(1, err("refused"))],
    );
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(1), vec![timer(2, secs(10)), fetch(2)]);
    // Same address as the last one of this cycle: dialled without an event.
    expect(&mut m, address(2, "x"), vec![dial(2, "x", 1)]);
}

#[test]
fn r2_changed_address_is_reported_each_time_it_changes() {
    let mut m = dialing();
    expect(
        &mut m,
        dial_failed(1, "refused"),
        vec![failed(1, err("refused"))],
    );
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(1), vec![timer(2, secs(10)), fetch(2)]);
    expect(&mut m, address(2, "y"), vec![obtained(2, "y")]);
    expect(&mut m, handled(), vec![dial(2, "y", 1)]);
    expect(
        &mut m,
        dial_failed(2, "refused"),
        vec![failed_again(2, err("refused"))],
    );
    expect(&mut m, fire(2), vec![timer(3, secs(10)), fetch(3)]);
    // Back to "x": it differs from the last one obtained ("y"), so it is reported.
    expect(&mut m, address(3, "x"), vec![obtained(3, "x")]);
    expect(&mut m, handled(), vec![dial(3, "x", 2)]);
}

#[test]
fn r2_address_reported_again_in_next_cycle() {
    let mut m = connected_machine();
    expect(&mut m, fire(1), vec![]);
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(2, secs(10)), fetch(2)]);
    expect(&mut m, address(2, "x"), vec![obtained(2, "x")]);
}

#[test]
fn r2_failed_fetch_is_failed_attempt_without_dial() {
    let mut m = fetching();
    expect(
        &mut m,
        address_failed(1, "catalog down"),
        vec![failed(1, err("catalog down"))],
    );
    assert_eq!(m.consecutive_failures(), 1);
    // No dial: the handler's end leads to the retry timer, nothing else.
    expect(&mut m, handled(), vec![]);
    assert_eq!(m.expecting(), Expecting::RetryTimer);
    let r = reject(&mut m, dialed(1, 5));
    assert!(matches!(r.input.into_connection(), Some(5)));
    expect(&mut m, fire(1), vec![timer(2, secs(10)), fetch(2)]);
}
