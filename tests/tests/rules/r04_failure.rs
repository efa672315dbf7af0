//! Checks R4 (failure) of CONTRACT.md: a failed attempt adds one to the count, is reported
//! unless its error equals the cycle's previous one, and waits for its retry timer; also
//! with `std::io::Error`, which is neither `Clone` nor `PartialEq`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use persistent_connection::{
    AttemptId, Command, Event, Expecting, Failure, Input, Machine, State, StopKind, TimerId,
};

use crate::support::*;

#[test]
fn r4_repeated_error_reported_once_per_cycle() {
    let mut m = dialing();
    expect(
        &mut m,
        dial_failed(1, "refused"),
        vec![failed(1, err("refused"))],
    );
    assert_eq!(m.consecutive_failures(), 1);
    expect(&mut m, handled(), vec![]);
    for n in 2..=4u64 {
        expect(&mut m, fire(n - 1), vec![timer(n, secs(10)), fetch(n)]);
        expect(
            &mut m,
            address(n, "x"),
            vec![dial(n, "x", u32::try_from(n - 1).unwrap())],
        );
        expect(
            &mut m,
            dial_failed(n, "refused"),
            vec![failed_again(n, err("refused"))],
        );
        // Repeated failures still count.
        assert_eq!(m.consecutive_failures(), u32::try_from(n).unwrap());
    }
}

#[test]
fn r4_same_error_reported_again_in_next_cycle() {
    let mut m = dialing();
    expect(
        &mut m,
        dial_failed(1, "refused"),
        vec![failed(1, err("refused"))],
    );
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(1), vec![timer(2, secs(10)), fetch(2)]);
    expect(&mut m, address(2, "x"), vec![dial(2, "x", 1)]);
    expect(&mut m, dialed(2, 1), vec![connected(2, 1)]);
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(2), vec![]);
    expect(&mut m, conn_closed(2), vec![disconnected(2)]);
    expect(&mut m, handled(), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(3, secs(10)), fetch(3)]);
    expect(&mut m, address(3, "x"), vec![obtained(3, "x")]);
    expect(&mut m, handled(), vec![dial(3, "x", 0)]);
    // A new cycle: the same error is reported again.
    expect(
        &mut m,
        dial_failed(3, "refused"),
        vec![failed(3, err("refused"))],
    );
}

#[test]
fn r4_error_differing_from_previous_is_reported() {
    let mut m = dialing();
    expect(
        &mut m,
        dial_failed(1, "refused"),
        vec![failed(1, err("refused"))],
    );
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(1), vec![timer(2, secs(10)), fetch(2)]);
    expect(&mut m, address(2, "x"), vec![dial(2, "x", 1)]);
    expect(
        &mut m,
        dial_failed(2, "reset"),
        vec![failed(2, err("reset"))],
    );
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(2), vec![timer(3, secs(10)), fetch(3)]);
    expect(&mut m, address(3, "x"), vec![dial(3, "x", 2)]);
    // Equal to an earlier error but not to the previous one: reported.
    expect(
        &mut m,
        dial_failed(3, "refused"),
        vec![failed(3, err("refused"))],
    );
    assert_eq!(m.consecutive_failures(), 3);
}

#[test]
fn r4_failure_waits_for_retry_timer_then_next_attempt() {
    let mut m = dialing();
    expect(
        &mut m,
        dial_failed(1, "refused"),
        vec![failed(1, err("refused"))],
    );
    expect(&mut m, handled(), vec![]);
    assert_eq!(m.state(), State::Connecting);
    assert_eq!(m.expecting(), Expecting::RetryTimer);
    expect(&mut m, fire(1), vec![timer(2, secs(10)), fetch(2)]);
}

#[test]
fn r4_failure_after_retry_timer_fired_starts_next_attempt_at_once() {
    let mut m = dialing();
    // The retry timer fires while the dial hangs.
    expect(&mut m, fire(1), vec![]);
    expect(
        &mut m,
        dial_failed(1, "refused"),
        vec![failed(1, err("refused"))],
    );
    expect(&mut m, handled(), vec![timer(2, secs(10)), fetch(2)]);
    expect(&mut m, fire(2), vec![]);
    expect(&mut m, address(2, "x"), vec![dial(2, "x", 1)]);
    // Repeated: no handler, so the next attempt follows in the same batch.
    expect(
        &mut m,
        dial_failed(2, "refused"),
        vec![
            failed_again(2, err("refused")),
            timer(3, secs(10)),
            fetch(3),
        ],
    );
}

/// The commonest types: `SocketAddr`, `Arc<_>` and `std::io::Error`, which is neither
/// `Clone` nor `PartialEq`. The rule checker needs both of its error type, so this machine is
/// driven bare: it checks that the Machine's bounds let `io::Error` through as it is, and
/// that R4 de-duplicates it by kind and message.
#[test]
fn io_error_machine_drives_failure_and_success() {
    type IoM = Machine<SocketAddr, Arc<String>, io::Error>;
    type IoIn = Input<SocketAddr, Arc<String>, io::Error>;
    fn ok(m: &mut IoM, input: IoIn) -> Vec<Command<SocketAddr, Arc<String>, io::Error>> {
        m.handle_input(input).expect("accepted");
        drain_raw(m)
    }
    let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let refused = || io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
    let a = |n| Some(AttemptId(n));

    let mut m: IoM = Machine::new(constant(1), 0);
    assert!(matches!(
        &drain_raw(&mut m)[..],
        [Command::Emit {
            event: Event::AttemptingToConnect,
            attempt: None
        }]
    ));
    let cmds = ok(&mut m, Input::EventHandled);
    assert!(matches!(
        &cmds[..],
        [
            Command::StartTimer {
                timer: TimerId(1),
                ..
            },
            Command::FetchAddress {
                attempt: AttemptId(1)
            }
        ]
    ));
    let cmds = ok(
        &mut m,
        Input::AddressObtained {
            attempt: AttemptId(1),
            result: Ok(addr),
        },
    );
    assert!(matches!(
        &cmds[..],
        [Command::Emit { event: Event::ObtainedAddress(x), attempt }] if *x == addr && *attempt == a(1)
    ));
    let cmds = ok(&mut m, Input::EventHandled);
    assert!(matches!(
        &cmds[..],
        [Command::Dial { attempt: AttemptId(1), address, consecutive_failures: 0 }] if *address == addr
    ));

    // A failure: the io::Error itself reaches the waiters and the handler.
    let cmds = ok(
        &mut m,
        Input::Dialed {
            attempt: AttemptId(1),
            result: Err(refused()),
        },
    );
    let [
        Command::Emit {
            event: Event::FailedToConnect(Failure::Error(e)),
            attempt,
        },
    ] = &cmds[..]
    else {
        panic!("{cmds:?}")
    };
    assert_eq!(*attempt, a(1));
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(e.to_string(), "refused");
    ok(&mut m, Input::EventHandled);

    // The same kind and message again: repeated, no event.
    assert!(matches!(
        &ok(&mut m, Input::TimerFired(TimerId(1)))[..],
        [
            Command::StartTimer { .. },
            Command::FetchAddress {
                attempt: AttemptId(2)
            }
        ]
    ));
    let cmds = ok(
        &mut m,
        Input::AddressObtained {
            attempt: AttemptId(2),
            result: Ok(addr),
        },
    );
    assert!(matches!(
        &cmds[..],
        [Command::Dial {
            attempt: AttemptId(2),
            consecutive_failures: 1,
            ..
        }]
    ));
    let cmds = ok(
        &mut m,
        Input::Dialed {
            attempt: AttemptId(2),
            result: Err(refused()),
        },
    );
    assert!(matches!(
        &cmds[..],
        [Command::FailedAgain { attempt: AttemptId(2), error: Failure::Error(e) }]
            if e.kind() == io::ErrorKind::ConnectionRefused
    ));
    // A different error: reported.
    ok(&mut m, Input::TimerFired(TimerId(2)));
    ok(
        &mut m,
        Input::AddressObtained {
            attempt: AttemptId(3),
            result: Ok(addr),
        },
    );
    let cmds = ok(
        &mut m,
        Input::Dialed {
            attempt: AttemptId(3),
            result: Err(io::Error::from(io::ErrorKind::TimedOut)),
        },
    );
    assert!(matches!(
        &cmds[..],
        [Command::Emit { event: Event::FailedToConnect(Failure::Error(e)), attempt }]
            if e.kind() == io::ErrorKind::TimedOut && *attempt == a(3)
    ));
    ok(&mut m, Input::EventHandled);
    assert_eq!(m.consecutive_failures(), 3);

    // A success: the Arc is handed out and is the current connection.
    ok(&mut m, Input::TimerFired(TimerId(3)));
    ok(
        &mut m,
        Input::AddressObtained {
            attempt: AttemptId(4),
            result: Ok(addr),
        },
    );
    let conn = Arc::new(String::from("conn #4"));
    let cmds = ok(
        &mut m,
        Input::Dialed {
            attempt: AttemptId(4),
            result: Ok(Arc::clone(&conn)),
        },
    );
    let [
        Command::Emit {
            event: Event::Connected(c),
            attempt,
        },
    ] = &cmds[..]
    else {
        panic!("{cmds:?}")
    };
    assert_eq!(*attempt, a(4));
    assert!(Arc::ptr_eq(c, &conn));
    assert!(Arc::ptr_eq(m.current_connection().unwrap(), &conn));
    assert_eq!(m.consecutive_failures(), 0);
    ok(&mut m, Input::EventHandled);

    // Abort (the reason stays with the caller); the connection is kept until it closes.
    let cmds = ok(&mut m, Input::Abort);
    assert!(matches!(&cmds[..], [Command::Stopped(StopKind::Abort)]));
    let cmds = ok(
        &mut m,
        Input::ConnectionClosed {
            attempt: AttemptId(4),
        },
    );
    assert!(matches!(
        &cmds[..],
        [Command::Emit {
            event: Event::Disconnected,
            attempt
        }] if *attempt == a(4)
    ));
    assert!(matches!(
        &ok(&mut m, Input::EventHandled)[..],
        [Command::Finished]
    ));
    // A rejected io::Error input comes back intact.
    let Err(r) = m.handle_input(Input::Dialed {
        attempt: AttemptId(4),
        result: Err(refused()),
    }) else {
        panic!("accepted after Finished")
    };
    assert!(matches!(
        r.input,
        Input::Dialed { result: Err(ref e), .. } if e.kind() == io::ErrorKind::ConnectionRefused
    ));
}

/// A `Failure` is the caller's error (`error()` gives it) or the connect timeout
/// (`is_timeout()`), never both.
#[test]
fn r4_failure_is_the_callers_error_or_the_timeout() {
    let e: Failure<Er> = Failure::Error("refused");
    assert_eq!(e.error(), Some(&"refused"));
    assert!(!e.is_timeout());
    let t: Failure<Er> = Failure::TimedOut { after: secs(2) };
    assert_eq!(t.error(), None);
    assert!(t.is_timeout());
    assert_ne!(e, t);
    assert_eq!(err("refused"), e);
    assert_eq!(timed_out(2), t);
}

/// Fetch and dial failures are compared by the caller's error itself, whichever step
/// failed (as in the seed): the same error from the dial repeats one from the fetch.
#[test]
fn r4_fetch_and_dial_errors_compare_alike() {
    let mut m = fetching();
    expect(
        &mut m,
        address_failed(1, "down"),
        vec![failed(1, err("down"))],
    );
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(1), vec![timer(2, secs(10)), fetch(2)]);
    expect(&mut m, address(2, "x"), vec![obtained(2, "x")]);
    expect(&mut m, handled(), vec![dial(2, "x", 1)]);
    expect(
        &mut m,
        dial_failed(2, "down"),
        vec![failed_again(2, err("down"))],
    );
    assert_eq!(m.consecutive_failures(), 2);
}

/// R4's default key (`error_key`: a hash of the `Debug` text) is pinned, and tells apart
/// every text of a large set, however they split into 8-byte words (a key that dropped
/// the length, or mixed words badly, would make different errors "equal" and hide them).
#[test]
fn r4_error_key_is_pinned_and_spreads() {
    use persistent_connection::error_key;
    let pinned: [(&str, u64); 5] = [
        ("", 0xa4cb_997c_e673_3c5e),
        ("a", 0xee39_05f3_c09d_8c51),
        ("refused", 0xe103_0a1b_8718_1e72),
        ("ConnectionRefused", 0x87b1_653f_d15a_9785),
        (
            "a long error text of more than eight bytes",
            0xaef2_e74d_f8d6_62b7,
        ),
    ];
    for (text, key) in pinned {
        assert_eq!(error_key::<str>(text), key, "{text:?}");
    }
    let mut seen = std::collections::HashSet::new();
    for n in 0..20_000u32 {
        // Distinct texts of 3 to 30 bytes.
        let text = format!("e{n}-{}", "ab".repeat((n % 12) as usize));
        assert!(
            seen.insert(error_key::<str>(&text)),
            "two texts share a key: {text}"
        );
    }
    // The same bytes split differently: "ab" + "c" is not "a" + "bc".
    assert_ne!(
        error_key(&("ab", "c")),
        error_key(&("a", "bc")),
        "the length of each piece counts"
    );
}
