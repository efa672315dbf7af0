//! Checks R3 (outcomes) of CONTRACT.md: every attempt has exactly one outcome, which the
//! waiters get before its event is reported (`Connected` and `FailedToConnect` are the
//! outcome and the event at once; a repeated failure is an outcome only).

use persistent_connection::{AttemptId, Command, Event, Expecting};

use crate::support::*;

/// Whether a command is an attempt's outcome: what the waiters of
/// `connected_or_failed_to_connect` get.
fn is_outcome(c: &Cmd) -> bool {
    matches!(
        c,
        Command::Emit {
            event: Event::Connected(_) | Event::FailedToConnect(_),
            ..
        } | Command::FailedAgain { .. }
    )
}

#[test]
fn r3_success_outcome_is_given_before_connected_is_reported() {
    let mut m = dialing();
    let commands = feed(&mut m, dialed(1, 4));
    // One command: the outcome for the waiters and the event, naming the attempt; the
    // driver gives it to the waiters, then reports it.
    assert_eq!(commands, vec![connected(1, 4)]);
    assert!(is_outcome(&commands[0]));
    let Some(Command::Emit { event, attempt }) = commands.into_iter().next() else {
        unreachable!()
    };
    assert_eq!(event, Event::Connected(4));
    assert_eq!(attempt, Some(AttemptId(1)));
    // The machine waits for the Connected handler.
    assert_eq!(m.expecting(), Expecting::EventHandled);
    expect(&mut m, handled(), vec![]);
}

#[test]
fn r3_failure_outcome_is_the_event_unless_repeated() {
    let mut m = dialing();
    let commands = feed(&mut m, dial_failed(1, "refused"));
    assert_eq!(commands, vec![failed(1, err("refused"))]);
    assert!(is_outcome(&commands[0]));
    let Some(Command::Emit { event, attempt }) = commands.into_iter().next() else {
        unreachable!()
    };
    assert_eq!(event, Event::FailedToConnect(err("refused")));
    assert_eq!(attempt, Some(AttemptId(1)));
    assert_eq!(m.expecting(), Expecting::EventHandled);
    expect(&mut m, handled(), vec![]);

    // A repeated failure still reaches the waiters, but is no event: no handler to wait for.
    expect(&mut m, fire(1), vec![timer(2, secs(10)), fetch(2)]);
    expect(&mut m, address(2, "x"), vec![dial(2, "x", 1)]);
    let commands = feed(&mut m, dial_failed(2, "refused"));
    assert_eq!(commands, vec![failed_again(2, err("refused"))]);
    assert!(is_outcome(&commands[0]));
    assert!(!matches!(commands[0], Command::Emit { .. }));
    assert_eq!(m.expecting(), Expecting::RetryTimer);
    reject(&mut m, handled());
}

#[test]
fn r3_every_attempt_has_exactly_one_outcome() {
    let mut m = fetching();
    let mut outcomes = 0;
    let mut count = |cmds: &[Cmd]| {
        outcomes += cmds.iter().filter(|c| is_outcome(c)).count();
    };
    count(&feed(&mut m, address_failed(1, "a")));
    count(&feed(&mut m, handled()));
    count(&feed(&mut m, fire(1)));
    count(&feed(&mut m, address_failed(2, "a"))); // repeated
    count(&feed(&mut m, fire(2)));
    count(&feed(&mut m, address(3, "x")));
    count(&feed(&mut m, handled()));
    count(&feed(&mut m, dial_failed(3, "b")));
    count(&feed(&mut m, handled()));
    count(&feed(&mut m, fire(3)));
    count(&feed(&mut m, address(4, "x")));
    count(&feed(&mut m, dialed(4, 1)));
    assert_eq!(outcomes, 4);
    assert_eq!(m.attempt(), Some(AttemptId(4)));
}
