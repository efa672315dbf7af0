//! Checks R1 (cycle) of CONTRACT.md: a cycle reports `AttemptingToConnect`, makes
//! attempts until one succeeds, reports `Connected`, waits for the close, reports
//! `Disconnected`, waits for the retry timer, and starts the next cycle.

use persistent_connection::State;

use crate::support::*;

#[test]
fn r1_cycle_reports_attempting_connected_disconnected_then_next_cycle() {
    let mut m = M::new(constant(10));
    // Creation never waits: the first command is there at once.
    assert_eq!(m.state(), State::Connecting);
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(10)), fetch(1)]);
    expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
    expect(&mut m, handled(), vec![dial(1, "x", 0)]);
    expect(&mut m, dialed(1, 1), vec![connected(1, 1)]);
    expect(&mut m, handled(), vec![]);
    assert_eq!(m.state(), State::Connected);
    // Wait until the connection is closed.
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    assert_eq!(m.state(), State::Disconnected);
    // Then the retry timer of the successful attempt, then the next cycle.
    expect(&mut m, handled(), vec![]);
    assert_eq!(m.state(), State::Disconnected);
    expect(&mut m, fire(1), vec![attempting()]);
    assert_eq!(m.state(), State::Connecting);
    expect(&mut m, handled(), vec![timer(2, secs(10)), fetch(2)]);
    // The next cycle reports its address again.
    expect(&mut m, address(2, "x"), vec![obtained(2, "x")]);
    expect(&mut m, handled(), vec![dial(2, "x", 0)]);
    expect(&mut m, dialed(2, 2), vec![connected(2, 2)]);
    assert_eq!(m.current_connection(), Some(&2));
}

#[test]
fn r1_attempts_continue_until_one_succeeds() {
    let mut m = fetching();
    expect(
        &mut m,
        address_failed(1, "no catalog"),
        vec![failed(1, err("no catalog"))],
    );
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(1), vec![timer(2, secs(10)), fetch(2)]);
    expect(&mut m, address(2, "x"), vec![obtained(2, "x")]);
    expect(&mut m, handled(), vec![dial(2, "x", 1)]);
    expect(
        &mut m,
        dial_failed(2, "refused"),
        vec![failed(2, err("refused"))],
    );
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(2), vec![timer(3, secs(10)), fetch(3)]);
    expect(&mut m, address(3, "x"), vec![dial(3, "x", 2)]);
    // One AttemptingToConnect for the whole cycle: success reports Connected only.
    expect(&mut m, dialed(3, 9), vec![connected(3, 9)]);
    expect(&mut m, handled(), vec![]);
    assert_eq!(m.state(), State::Connected);
}
