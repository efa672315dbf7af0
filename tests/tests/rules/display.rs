//! Checks the texts of R16 (bad input: a typed error naming what was expected) of
//! CONTRACT.md, and the `Display` of the events, failures and ids that drivers and logs
//! print.

use std::time::Duration;

use persistent_connection::{AttemptId, Event, Expecting, Failure, InputError, InputKind, TimerId};

use crate::support::*;

#[test]
fn r16_input_error_display_names_what_came_and_what_was_expected() {
    let cases = [
        (
            InputError::Finished {
                got: InputKind::Dialed,
            },
            "the machine has finished and takes no more input (got Dialed)",
        ),
        (
            InputError::Unexpected {
                got: InputKind::EventHandled,
                expected: Expecting::Address,
            },
            "unexpected EventHandled: the machine is waiting for the address of the current \
             attempt",
        ),
        (
            InputError::UnknownAttempt {
                got: InputKind::AddressObtained,
                attempt: AttemptId(9),
                current: AttemptId(2),
            },
            "AddressObtained for attempt #9, which is not out: the current one is attempt #2",
        ),
        (
            InputError::StaleTimer {
                got: TimerId(1),
                outstanding: Some(TimerId(2)),
            },
            "timer #1 fired, but the timer out is Some(TimerId(2))",
        ),
        (
            InputError::StaleTimer {
                got: TimerId(3),
                outstanding: None,
            },
            "timer #3 fired, but the timer out is None",
        ),
        (
            InputError::Backlog {
                got: InputKind::Close,
                pending: 5,
            },
            "5 commands wait to be polled: drain poll_command before feeding Close",
        ),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
    }
}

#[test]
fn r16_expecting_display_says_what_the_machine_waits_for() {
    let cases = [
        (
            Expecting::EventHandled,
            "the handler of the last event to finish",
        ),
        (Expecting::RetryDelay, "a retry delay"),
        (Expecting::Address, "the address of the current attempt"),
        (
            Expecting::DialResult,
            "the dial result of the current attempt",
        ),
        (
            Expecting::ConnectionClosed,
            "the current connection to close",
        ),
        (Expecting::RetryTimer, "the retry timer"),
        (Expecting::Nothing, "nothing (it has finished)"),
    ];
    for (expecting, text) in cases {
        assert_eq!(expecting.to_string(), text);
    }
}

#[test]
fn r16_input_kind_display_is_the_variant_name() {
    let kinds = [
        (InputKind::AddressObtained, "AddressObtained"),
        (InputKind::Dialed, "Dialed"),
        (InputKind::TimerFired, "TimerFired"),
        (InputKind::EventHandled, "EventHandled"),
        (InputKind::RetryDelay, "RetryDelay"),
        (InputKind::ConnectionClosed, "ConnectionClosed"),
        (InputKind::Close, "Close"),
        (InputKind::Abort, "Abort"),
        (
            InputKind::CloseWhenCurrentConnectionIsClosed,
            "CloseWhenCurrentConnectionIsClosed",
        ),
    ];
    for (kind, text) in kinds {
        assert_eq!(kind.to_string(), text);
    }
    // And each input names its kind.
    assert_eq!(handled().kind(), InputKind::EventHandled);
    assert_eq!(address(1, "x").kind(), InputKind::AddressObtained);
    assert_eq!(dial_failed(1, "e").kind(), InputKind::Dialed);
    assert_eq!(fire(1).kind(), InputKind::TimerFired);
    assert_eq!(conn_closed(1).kind(), InputKind::ConnectionClosed);
}

#[test]
fn ids_display_with_their_number() {
    assert_eq!(AttemptId(7).to_string(), "attempt #7");
    assert_eq!(TimerId(12).to_string(), "timer #12");
    assert_eq!(
        AttemptId(u64::MAX).to_string(),
        "attempt #18446744073709551615"
    );
}

#[test]
fn event_display_names_the_event_and_what_it_carries() {
    type Ev = Event<Addr, Conn, Failure<Er>>;
    let cases: [(Ev, &str); 6] = [
        (Event::AttemptingToConnect, "AttemptingToConnect"),
        (Event::ObtainedAddress("db-2"), "ObtainedAddress(\"db-2\")"),
        (
            Event::FailedToConnect(Failure::Error("refused")),
            "FailedToConnect(refused)",
        ),
        (
            Event::FailedToConnect(Failure::TimedOut {
                after: Duration::from_millis(1500),
            }),
            "FailedToConnect(the attempt did not finish within the connect timeout of 1.5s)",
        ),
        // A connection is never printed.
        (Event::Connected(42), "Connected"),
        (Event::Disconnected, "Disconnected"),
    ];
    for (event, text) in cases {
        assert_eq!(event.to_string(), text);
        assert!(text.starts_with(event.name()), "{text} / {}", event.name());
    }
}

#[test]
fn failure_display_is_the_error_or_the_timeout() {
    assert_eq!(Failure::Error("refused").to_string(), "refused");
    assert_eq!(
        Failure::<Er>::TimedOut { after: secs(2) }.to_string(),
        "the attempt did not finish within the connect timeout of 2s"
    );
}

/// A Machine's `Debug` names the type and what it waits for (what a log or a failed
/// assertion shows of it).
#[test]
fn machine_debug_shows_its_state() {
    let m = crate::support::Raw::new(crate::support::constant(10), 0);
    let text = format!("{m:?}");
    assert!(text.starts_with("Machine {"), "{text}");
    for field in [
        "wait",
        "stop",
        "attempt",
        "failures",
        "connected",
        "timer_out",
    ] {
        assert!(text.contains(field), "{field} missing from {text}");
    }
}
