//! Checks R16 (bad input) of CONTRACT.md: an input the machine did not ask for gets a typed
//! error naming what was expected and changes nothing; late results are taken within a
//! window of 64 attempts; random input sequences keep every rule of the checker.

use std::time::Duration;

use persistent_connection::{
    AttemptId, Command, Config, Expecting, Exponential, Input, InputError, InputKind, Jitter,
    RetryPolicy, State, StopKind, TimerId,
};

use persistent_connection_tests::rng::Rng;
use persistent_connection_tests::script::{Action, Env, StopInput, TestChecked, TestError};

use crate::support::*;

#[test]
fn r16_wrong_inputs_rejected_state_unchanged() {
    let mut m = fetching();
    let mut twin = fetching();

    // A dial result when no dial is out (the fetch is): handed back with its connection.
    let r = reject(&mut m, dialed(1, 7));
    assert_eq!(
        r.error,
        InputError::Unexpected {
            got: InputKind::Dialed,
            expected: Expecting::Address
        }
    );
    assert!(matches!(
        r.input,
        Input::Dialed {
            attempt: AttemptId(1),
            result: Ok(7)
        }
    ));
    // A result for an attempt that never started.
    let r = reject(&mut m, address(9, "x"));
    assert_eq!(
        r.error,
        InputError::UnknownAttempt {
            got: InputKind::AddressObtained,
            attempt: AttemptId(9),
            current: AttemptId(1)
        }
    );
    // A timer that is not out.
    let r = reject(&mut m, fire(2));
    assert_eq!(
        r.error,
        InputError::StaleTimer {
            got: TimerId(2),
            outstanding: Some(TimerId(1))
        }
    );
    // EventHandled with no handler running.
    let r = reject(&mut m, handled());
    assert_eq!(
        r.error,
        InputError::Unexpected {
            got: InputKind::EventHandled,
            expected: Expecting::Address
        }
    );
    // A retry delay nobody asked for; a close of a connection that does not exist.
    let r = reject(&mut m, Input::RetryDelay(secs(1)));
    assert_eq!(
        r.error,
        InputError::Unexpected {
            got: InputKind::RetryDelay,
            expected: Expecting::Address
        }
    );
    let r = reject(&mut m, conn_closed(1));
    assert_eq!(
        r.error,
        InputError::Unexpected {
            got: InputKind::ConnectionClosed,
            expected: Expecting::Address
        }
    );
    // Display names what was expected.
    assert_eq!(
        r.to_string(),
        "input rejected: unexpected ConnectionClosed: the machine is waiting for the \
         address of the current attempt"
    );

    // Nothing changed: the machine goes on exactly as its twin that never saw them.
    assert_eq!(drain(&mut m), drain(&mut twin));
    for input in [
        address(1, "x"),
        handled(),
        dialed(1, 5),
        handled(),
        fire(1),
        conn_closed(1),
        handled(),
        handled(),
    ] {
        let (a, b) = (input.clone(), input);
        assert_eq!(feed(&mut m, a), feed(&mut twin, b));
    }
    assert_eq!(snapshot(&m), snapshot(&twin));
}

#[test]
fn r16_rejection_leaves_pending_commands_in_place() {
    // Feeding while commands wait to be polled breaks the driver contract, which the
    // checker refuses as a harness bug: a bare machine. Its queue holds one input's worth,
    // so any input is refused (Backlog) until the queue is drained, and nothing moves.
    let mut m = Raw::new(constant(10), 0);
    // AttemptingToConnect is queued and not yet polled.
    let r = reject_raw(&mut m, dialed(1, 3));
    assert_eq!(
        r.error,
        InputError::Backlog {
            got: InputKind::Dialed,
            pending: 1
        }
    );
    assert_eq!(r.input.into_connection(), Some(3));
    let r = reject_raw(&mut m, fire(1));
    assert_eq!(
        r.error,
        InputError::Backlog {
            got: InputKind::TimerFired,
            pending: 1
        }
    );
    assert_eq!(drain_raw(&mut m), vec![attempting()]);
    // Drained: the same inputs now get the errors that name what is wrong with them.
    let r = reject_raw(&mut m, fire(1));
    assert_eq!(
        r.error,
        InputError::StaleTimer {
            got: TimerId(1),
            outstanding: None
        }
    );
    m.handle_input(handled()).unwrap();
    assert_eq!(drain_raw(&mut m), vec![timer(1, secs(10)), fetch(1)]);
}

#[test]
fn r16_stale_timer_after_replacement_rejected() {
    let mut m = with_timeout(10, 2);
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(2)), fetch(1)]);
    let timed_out = timed_out(2);
    expect(
        &mut m,
        fire(1),
        vec![timer(2, secs(8)), cancel(1), failed(1, timed_out)],
    );
    // Timer 1 has fired and been replaced by timer 2.
    let r = reject(&mut m, fire(1));
    assert_eq!(
        r.error,
        InputError::StaleTimer {
            got: TimerId(1),
            outstanding: Some(TimerId(2))
        }
    );
    expect(&mut m, handled(), vec![]);
    let r = reject(&mut m, fire(1));
    assert!(matches!(r.error, InputError::StaleTimer { .. }));
    expect(&mut m, fire(2), vec![timer(3, secs(2)), fetch(2)]);
}

#[test]
fn r16_wrong_connection_closed_rejected() {
    let mut m = dialing();
    expect(&mut m, dial_failed(1, "e"), vec![failed(1, err("e"))]);
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(1), vec![timer(2, secs(10)), fetch(2)]);
    expect(&mut m, address(2, "x"), vec![dial(2, "x", 1)]);
    expect(&mut m, dialed(2, 1), vec![connected(2, 1)]);
    expect(&mut m, handled(), vec![]);
    let r = reject(&mut m, conn_closed(1));
    assert_eq!(
        r.error,
        InputError::UnknownAttempt {
            got: InputKind::ConnectionClosed,
            attempt: AttemptId(1),
            current: AttemptId(2)
        }
    );
    // And a dial result for the connected attempt: nothing is being dialled.
    let r = reject(&mut m, dialed(2, 5));
    assert_eq!(
        r.error,
        InputError::Unexpected {
            got: InputKind::Dialed,
            expected: Expecting::ConnectionClosed
        }
    );
    assert_eq!(r.input.into_connection(), Some(5));
}

#[test]
fn r16_everything_after_finished_rejected() {
    let mut m = connected_machine();
    expect(
        &mut m,
        Input::Close,
        vec![stopped(StopKind::Close), close_conn(1, 1)],
    );
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    expect(&mut m, handled(), vec![finished()]);
    let inputs: Vec<In> = vec![
        address(1, "x"),
        address(2, "x"),
        dialed(1, 4),
        dialed(2, 4),
        fire(1),
        fire(2),
        handled(),
        Input::RetryDelay(secs(1)),
        conn_closed(1),
        Input::Close,
        Input::Abort,
        Input::CloseWhenCurrentConnectionIsClosed,
    ];
    for input in inputs {
        let kind = input.kind();
        let is_dial = kind == InputKind::Dialed;
        let r = reject(&mut m, input);
        assert_eq!(r.error, InputError::Finished { got: kind });
        if is_dial {
            assert_eq!(r.input.into_connection(), Some(4));
        }
        assert_eq!(m.poll_command(), None);
        assert_eq!(m.state(), State::Closed);
    }
}

#[test]
fn r16_backlog_refused_until_commands_are_polled() {
    // A careless driver that feeds without polling (which the checker refuses as a harness
    // bug): a bare machine.
    let mut m = Raw::new(constant(10), 0);
    m.handle_input(handled())
        .expect_err("AttemptingToConnect is still queued");
    assert_eq!(drain_raw(&mut m), vec![attempting()]);
    m.handle_input(handled()).unwrap();
    // StartTimer and FetchAddress wait to be polled: the address is refused.
    let r = reject_raw(&mut m, address(1, "x"));
    assert_eq!(
        r.error,
        InputError::Backlog {
            got: InputKind::AddressObtained,
            pending: 2
        }
    );
    // The queued commands are intact, in order, and the refused input is taken after.
    assert_eq!(drain_raw(&mut m), vec![timer(1, secs(10)), fetch(1)]);
    m.handle_input(address(1, "x")).unwrap();
    assert_eq!(drain_raw(&mut m), vec![obtained(1, "x")]);
    m.handle_input(handled()).unwrap();
    assert_eq!(drain_raw(&mut m), vec![dial(1, "x", 0)]);
    m.handle_input(dial_failed(1, "refused")).unwrap();
    assert_eq!(drain_raw(&mut m), vec![failed(1, err("refused"))]);
}

#[test]
fn r16_result_of_other_kind_for_cancelled_attempt_rejected() {
    // The connect timeout cancels attempt 1 while it fetches its address.
    let mut m = with_timeout(10, 2);
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(2)), fetch(1)]);
    let timed_out = timed_out(2);
    expect(
        &mut m,
        fire(1),
        vec![timer(2, secs(8)), cancel(1), failed(1, timed_out.clone())],
    );
    // Attempt 1 never dialled: a dial result for it was not asked for.
    let r = reject(&mut m, dialed(1, 7));
    assert_eq!(r.input.into_connection(), Some(7));
    // The late address that may really come is still taken quietly.
    expect(&mut m, address(1, "x"), vec![]);

    // The other way round: the dial of attempt 1 is cancelled; an address for it was not
    // asked for, and the late dial result must still be closed by the machine.
    let mut m = with_timeout(10, 2);
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(2)), fetch(1)]);
    expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
    expect(&mut m, handled(), vec![dial(1, "x", 0)]);
    expect(
        &mut m,
        fire(1),
        vec![timer(2, secs(8)), cancel(1), failed(1, timed_out)],
    );
    reject(&mut m, address(1, "y"));
    expect(&mut m, dialed(1, 7), vec![close_conn(1, 7)]);
}

/// A machine (no retry delay, connect timeout 2 s) whose attempt 1 timed out with its
/// fetch (or, if `dialling`, its dial) still out, and which has made attempts since, each
/// failing on its fetch, until attempt `latest` fetches.
fn with_late_result(dialling: bool, latest: u64) -> M {
    let mut m = M::new(constant(0).connect_timeout(secs(2)));
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(2)), fetch(1)]);
    if dialling {
        expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
        expect(&mut m, handled(), vec![dial(1, "x", 0)]);
    }
    expect(&mut m, fire(1), vec![cancel(1), failed(1, timed_out(2))]);
    expect(&mut m, handled(), vec![timer(2, secs(2)), fetch(2)]);
    expect(
        &mut m,
        address_failed(2, "down"),
        vec![failed(2, err("down"))],
    );
    expect(&mut m, handled(), vec![timer(3, secs(2)), fetch(3)]);
    for n in 3..latest {
        expect(
            &mut m,
            address_failed(n, "down"),
            vec![
                failed_again(n, err("down")),
                timer(n + 1, secs(2)),
                fetch(n + 1),
            ],
        );
    }
    assert_eq!(m.attempt(), Some(AttemptId(latest)));
    m
}

/// The machine remembers the cancelled attempts of the last 64: a result of attempt 1 while
/// attempt 64 runs (age 63) is still taken as late (a connection in it closed, an address
/// dropped quietly); while attempt 65 runs (age 64) it is refused, and a connection in it is
/// handed back to be closed.
#[test]
fn r16_late_results_are_taken_up_to_63_attempts_later() {
    let mut m = with_late_result(true, 64);
    expect(&mut m, dialed(1, 77), vec![close_conn(1, 77)]);
    // Only once.
    reject(&mut m, dialed(1, 78));
    assert_eq!(m.expecting(), Expecting::Address);

    let mut m = with_late_result(false, 64);
    expect(&mut m, address(1, "y"), vec![]);
    reject(&mut m, address(1, "y"));
    assert_eq!(m.expecting(), Expecting::Address);
}

#[test]
fn r16_late_results_are_refused_64_attempts_later() {
    let mut m = with_late_result(true, 65);
    let r = reject(&mut m, dialed(1, 77));
    assert_eq!(
        r.error,
        InputError::UnknownAttempt {
            got: InputKind::Dialed,
            attempt: AttemptId(1),
            current: AttemptId(65)
        }
    );
    assert_eq!(r.input.into_connection(), Some(77));

    let mut m = with_late_result(false, 65);
    let r = reject(&mut m, address(1, "y"));
    assert_eq!(
        r.error,
        InputError::UnknownAttempt {
            got: InputKind::AddressObtained,
            attempt: AttemptId(1),
            current: AttemptId(65)
        }
    );
}

// ----- random inputs: never panics, rejections change nothing, every rule holds -----

/// Feeds `steps` inputs to checked machines: mostly ones the machine asked for, a fifth
/// wrong or odd ones (including late results of the wrong kind), a few stops; a machine
/// that has finished is now and then replaced by a fresh one. Every input and command goes
/// through the one rule checker; with `delay_bounds`, every timer's delay lies strictly
/// within them too.
fn random_run(config: Config, seed: u64, steps: usize, delay_bounds: Option<(Duration, Duration)>) {
    let mut rng = Rng::new(seed);
    let fresh = |rng: &mut Rng| TestChecked::new(config, rng.next_u64());
    let mut m = fresh(&mut rng);
    let mut env = Env::new();
    let drain = |m: &mut TestChecked| {
        while let Some(cmd) = m.poll().unwrap_or_else(|v| panic!("seed {seed}: {v}")) {
            if let (Some((lo, hi)), Command::StartTimer { delay, .. }) = (delay_bounds, &cmd) {
                assert!(*delay > lo && *delay < hi, "seed {seed}: delay {delay:?}");
            }
        }
    };
    drain(&mut m);
    for _ in 0..steps {
        let b = rng.next_u64() as u8;
        let action = match rng.below(100) {
            0..=2 => Action::Stop(match rng.below(3) {
                0 => StopInput::Close,
                1 => StopInput::Abort,
                _ => StopInput::CloseWhenCurrentConnectionCloses,
            }),
            3..=22 => match rng.below(8) {
                0 => Action::WrongAttempt {
                    kind: b % 4,
                    offset: b % 9,
                },
                1 => Action::FireStaleTimer(b),
                2 => Action::HandleEvent,
                3 => Action::Delay(Duration::from_secs(u64::from(b % 3))),
                4 => Action::ConnectionCloses,
                5 => Action::Late {
                    index: b,
                    dial: b & 1 == 1,
                    ok: b & 2 == 2,
                },
                6 => Action::Fetch(if b & 1 == 0 {
                    Ok(b % 3)
                } else {
                    Err(TestError(b % 2))
                }),
                _ => Action::Dial(if b & 1 == 0 {
                    Ok(())
                } else {
                    Err(TestError(b % 2))
                }),
            },
            _ => Action::Auto(b),
        };
        if let Some(input) = env.input_for(&action, m.checker()) {
            // Taken or rejected, as the checker decides; a rejected connection comes back.
            let _answer = m.feed(input).unwrap_or_else(|v| panic!("seed {seed}: {v}"));
        }
        drain(&mut m);
        if m.checker().finished() && rng.below(20) == 0 {
            m = fresh(&mut rng);
            env = Env::new();
            drain(&mut m);
        }
    }
}

#[test]
fn r16_random_inputs_never_break_the_rules() {
    let bounds = Some((secs(7), secs(13)));
    for seed in 0..40u64 {
        random_run(Config::new(), seed * 7919 + 1, 2_000, bounds);
    }
    for seed in 0..40u64 {
        let timeouts = Config::new()
            .retry_policy(RetryPolicy::Exponential(Exponential::GRPC))
            .connect_timeout(secs(2));
        random_run(timeouts, seed * 104_729 + 3, 2_000, None);
        let custom = Config::new()
            .retry_policy(RetryPolicy::Custom)
            .jitter(Jitter::Off)
            .connect_timeout(secs(1));
        random_run(custom, seed * 15_485_863 + 5, 2_000, None);
        random_run(constant(0), seed * 32_452_843 + 7, 2_000, None);
        let equal = constant(2).connect_timeout(secs(2));
        random_run(equal, seed * 49_979_687 + 9, 2_000, None);
    }
}
