//! Checks R1 (cycle), R2 (attempt), R3 (outcomes), R4 (failure), R5 (success), R6
//! (handlers), R7 (retry delay), R11 (close), R12 (abort), R16 (bad input), R18 (reconnect
//! now) and R19 (healthy uptime) of CONTRACT.md, and the connect timeout, with model-based
//! property tests of the Machine: random configurations (constant, exponential including
//! gRPC's, and custom policies; any seed; jitter on, off or odd; connect timeouts on and
//! off; a min uptime or none) and random input sequences,
//! valid and invalid, checked after every input and every command by the one
//! [`Checker`](persistent_connection_tests::check::Checker).
//!
//! A failing case prints the rule, the step and the last steps before it; proptest shrinks
//! it to a short action list.

use std::time::Duration;

use persistent_connection::{
    AttemptId, Command, Config, Event, Exponential, Failure, Input, Jitter, RetryPolicy, StopKind,
};
use persistent_connection_tests::check::Checker;
use persistent_connection_tests::policy::check_machine_delays;
use persistent_connection_tests::rng::Rng;
use persistent_connection_tests::script::{
    Action, Report, Scenario, StopInput, TestConn, TestError, TestMachine, duration_from_byte,
    multiplier_from_byte, run_bytes, run_scenario,
};
use proptest::prelude::*;

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        any::<u8>().prop_map(duration_from_byte),
        (0u64..5_000).prop_map(Duration::from_millis),
    ]
}

fn policy() -> impl Strategy<Value = RetryPolicy> {
    prop_oneof![
        duration().prop_map(RetryPolicy::Constant),
        (
            duration(),
            any::<u8>().prop_map(multiplier_from_byte),
            duration()
        )
            .prop_map(
                |(initial, multiplier, max)| RetryPolicy::Exponential(Exponential {
                    initial,
                    multiplier,
                    max,
                })
            ),
        Just(RetryPolicy::Exponential(Exponential::GRPC)),
        Just(RetryPolicy::Custom),
    ]
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        2 => Just(Jitter::STANDARD),
        1 => Just(Jitter::Off),
        1 => any::<u8>().prop_map(|percent| Jitter::Uniform { percent }),
    ]
}

/// A configuration and a jitter seed. The min uptime (R19) is set on the field directly,
/// so that a zero one reaches the Machine too.
fn config_with(
    timeout: impl Strategy<Value = Option<Duration>>,
    min_uptime: impl Strategy<Value = Option<Duration>>,
) -> impl Strategy<Value = (Config, u64)> {
    (policy(), jitter(), any::<u64>(), timeout, min_uptime).prop_map(|(p, j, seed, t, u)| {
        let mut config = Config::new().retry_policy(p).jitter(j).connect_timeout(t);
        config.min_uptime = u;
        (config, seed)
    })
}

/// A min uptime one time in three.
fn min_uptime() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![2 => Just(None), 1 => duration().prop_map(Some)]
}

fn config() -> impl Strategy<Value = (Config, u64)> {
    config_with(prop::option::of(duration()), min_uptime())
}

fn stop() -> impl Strategy<Value = StopInput> {
    prop_oneof![
        Just(StopInput::Close),
        Just(StopInput::Abort),
        Just(StopInput::CloseWhenCurrentConnectionCloses),
    ]
}

fn error() -> impl Strategy<Value = TestError> {
    (0u8..3).prop_map(TestError)
}

/// Any action, mostly valid answers ([`Action::Auto`]) so that runs go deep.
fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        12 => any::<u8>().prop_map(Action::Auto),
        1 => Just(Action::HandleEvent),
        1 => prop_oneof![(0u8..4).prop_map(Ok), error().prop_map(Err)].prop_map(Action::Fetch),
        1 => prop_oneof![Just(Ok(())), error().prop_map(Err)].prop_map(Action::Dial),
        1 => Just(Action::FireTimer),
        1 => any::<u8>().prop_map(Action::FireStaleTimer),
        1 => duration().prop_map(Action::Delay),
        1 => Just(Action::ConnectionCloses),
        1 => (any::<u8>(), any::<bool>(), any::<bool>())
            .prop_map(|(index, dial, ok)| Action::Late { index, dial, ok }),
        1 => (0u8..4, 0u8..9).prop_map(|(kind, offset)| Action::WrongAttempt { kind, offset }),
        1 => stop().prop_map(Action::Stop),
        1 => (0u8..8, stop()).prop_map(|(after, stop)| Action::StopMidBatch { after, stop }),
        1 => Just(Action::ReconnectNow),
        1 => any::<u8>().prop_map(Action::Uptime),
    ]
}

fn run((config, seed): (Config, u64), actions: Vec<Action>) -> Result<Report, TestCaseError> {
    run_scenario(&Scenario {
        config,
        seed,
        actions,
    })
    .map_err(|v| TestCaseError::fail(v.to_string()))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(
            prop::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    /// R16: any input sequence, valid or not, with any configuration: no panic, no loop,
    /// and every rule the checker knows holds after every step.
    #[test]
    fn r16_random_inputs_never_break_rules(
        config in config(),
        actions in prop::collection::vec(action(), 0..250),
    ) {
        run(config, actions)?;
    }

    /// R16, through the fuzz target's decoder: any bytes are a scenario that keeps the rules.
    #[test]
    fn r16_random_bytes_never_break_rules(data in prop::collection::vec(any::<u8>(), 0..600)) {
        run_bytes(&data).map_err(|v| TestCaseError::fail(v.to_string()))?;
    }

    /// R1, R2, R3, R5, R6: with only valid answers, the events follow
    /// `(A (O|F)* (C D)?)*`, each attempt times, fetches and dials in order, and every
    /// outcome reaches the waiters before its event.
    #[test]
    fn r1_valid_inputs_follow_the_cycle_grammar(
        config in config(),
        bytes in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        run(config, bytes.into_iter().map(Action::Auto).collect())?;
    }

    /// R4: failures of every kind (fetch, dial, timeout), repeated or not: the count goes
    /// up by one each, `repeated` is set exactly when the error equals the cycle's last,
    /// and a success resets the count.
    #[test]
    fn r4_failures_count_and_repeat_as_in_the_seed(
        config in config(),
        actions in prop::collection::vec(prop_oneof![
            4 => any::<u8>().prop_map(Action::Auto),
            2 => error().prop_map(|e| Action::Fetch(Err(e))),
            2 => error().prop_map(|e| Action::Dial(Err(e))),
            1 => (0u8..2).prop_map(|a| Action::Fetch(Ok(a))),
            1 => Just(Action::HandleEvent),
            1 => Just(Action::FireTimer),
        ], 0..300),
    ) {
        run(config, actions)?;
    }

    /// R7: every attempt's delay lies within the jitter bounds of the policy's delay for
    /// the failure count at its start, for any policy, jitter and seed.
    #[test]
    fn r7_retry_delays_stay_within_the_jitter_bounds(
        policy in policy(),
        jitter in jitter(),
        seed in any::<u64>(),
        attempts in 1u32..40,
    ) {
        check_machine_delays(policy, jitter, seed, attempts).map_err(TestCaseError::fail)?;
    }

    /// The connect timeout: with a timeout always set, an attempt fails with `TimedOut`
    /// exactly when its time runs out while it is in flight, its fetch or dial is
    /// cancelled, and late results are closed, never handed out.
    #[test]
    fn connect_timeout_ends_attempts_in_flight(
        config in config_with(duration().prop_map(Some), min_uptime()),
        actions in prop::collection::vec(prop_oneof![
            4 => any::<u8>().prop_map(Action::Auto),
            2 => Just(Action::FireTimer),
            1 => (any::<u8>(), any::<bool>(), any::<bool>())
                .prop_map(|(index, dial, ok)| Action::Late { index, dial, ok }),
        ], 0..300),
    ) {
        run(config, actions)?;
    }

    /// R18, R19: `reconnect_now` at any moment between batches, and uptime timers that fire
    /// on time, late or for the wrong attempt, with a min uptime always set: the retry timer
    /// counts as fired (the one out refused as stale), the next attempt or cycle starts at
    /// once when nothing else holds it, a live connection is closed once, the count grows
    /// by one per young death, resets on `UptimeReached` and never moves on a reconnect.
    #[test]
    fn r18_r19_reconnects_and_uptimes_at_any_moment(
        config in config_with(prop::option::of(duration()), duration().prop_map(Some)),
        actions in prop::collection::vec(prop_oneof![
            8 => any::<u8>().prop_map(Action::Auto),
            2 => Just(Action::ReconnectNow),
            2 => any::<u8>().prop_map(Action::Uptime),
            1 => Just(Action::ConnectionCloses),
            1 => Just(Action::FireTimer),
            1 => any::<u8>().prop_map(Action::FireStaleTimer),
            1 => error().prop_map(|e| Action::Dial(Err(e))),
            1 => stop().prop_map(Action::Stop),
            1 => (0u8..8, stop()).prop_map(|(after, stop)| Action::StopMidBatch { after, stop }),
        ], 0..250),
    ) {
        run(config, actions)?;
    }

    /// R11, R12: close, abort and close-when-the-connection-closes at any moment,
    /// including in the middle of a batch: one stop outcome, no attempt or failure after
    /// it, the live connection closed once (by close only), and the machine finishes.
    #[test]
    fn r11_r12_stops_at_any_moment_finish_cleanly(
        config in config(),
        actions in prop::collection::vec(prop_oneof![
            6 => any::<u8>().prop_map(Action::Auto),
            1 => stop().prop_map(Action::Stop),
            2 => (0u8..8, stop()).prop_map(|(after, stop)| Action::StopMidBatch { after, stop }),
        ], 0..120),
    ) {
        run(config, actions)?;
    }
}

/// The scripts reach every interesting place: connections, reported and repeated failures,
/// timeouts, cancels, late connections closed, stops in the middle of a batch, several
/// cycles, rejected inputs, reconnects (while connected too), uptime timers taken and
/// refused, young deaths. Guards the property tests against testing nothing.
#[test]
fn scripts_reach_every_kind_of_step() {
    let mut total = Report::default();
    let mut rng = Rng::new(7);
    for case in 0..300u64 {
        let mut config = Config::new()
            .retry_policy(match case % 4 {
                0 => RetryPolicy::Constant(Duration::from_secs(1)),
                1 => RetryPolicy::Exponential(Exponential::GRPC),
                2 => RetryPolicy::Custom,
                _ => RetryPolicy::Constant(Duration::ZERO),
            })
            .connect_timeout((case % 3 != 0).then(|| Duration::from_millis(500 * (case % 5))));
        config.min_uptime = (case % 7 < 4).then(|| Duration::from_millis(100 * (case % 3)));
        let mut actions = Vec::new();
        for _ in 0..200 {
            let b = rng.next_u64() as u8;
            actions.push(match rng.below(40) {
                3 => Action::ReconnectNow,
                4 => Action::Uptime(b),
                0 => Action::StopMidBatch {
                    after: b % 4,
                    stop: StopInput::Close,
                },
                1 => Action::WrongAttempt {
                    kind: b % 4,
                    offset: b % 9,
                },
                2 => Action::Late {
                    index: b,
                    dial: true,
                    ok: true,
                },
                _ => Action::Auto(b),
            });
        }
        let r = run_scenario(&Scenario {
            config,
            seed: case,
            actions,
        })
        .unwrap_or_else(|v| panic!("{v}"));
        total.inputs += r.inputs;
        total.rejected += r.rejected;
        total.cycles += r.cycles;
        total.connections += r.connections;
        total.failures += r.failures;
        total.repeated_failures += r.repeated_failures;
        total.timeouts += r.timeouts;
        total.cancels += r.cancels;
        total.late_closed += r.late_closed;
        total.mid_batch_stops += r.mid_batch_stops;
        total.max_failures = total.max_failures.max(r.max_failures);
        total.reconnects += r.reconnects;
        total.reconnects_connected += r.reconnects_connected;
        total.uptime_timers += r.uptime_timers;
        total.uptimes_reached += r.uptimes_reached;
        total.uptimes_refused += r.uptimes_refused;
        total.young_deaths += r.young_deaths;
    }
    assert!(total.connections > 100, "{total:?}");
    assert!(total.cycles > 300, "{total:?}");
    assert!(total.failures > 100, "{total:?}");
    assert!(total.repeated_failures > 10, "{total:?}");
    assert!(total.timeouts > 10, "{total:?}");
    assert!(total.cancels > 10, "{total:?}");
    assert!(total.late_closed > 10, "{total:?}");
    assert!(total.mid_batch_stops > 10, "{total:?}");
    assert!(total.rejected > 100, "{total:?}");
    assert!(total.max_failures >= 5, "{total:?}");
    assert!(total.reconnects > 100, "{total:?}");
    assert!(total.reconnects_connected > 10, "{total:?}");
    assert!(total.uptime_timers > 50, "{total:?}");
    assert!(total.uptimes_reached > 10, "{total:?}");
    assert!(total.uptimes_refused > 10, "{total:?}");
    assert!(total.young_deaths > 10, "{total:?}");
    eprintln!("{total:?}");
}

/// gRPC's backoff: 1 s, x1.6 per failure, capped at 120 s.
#[test]
fn r7_grpc_backoff_numbers() {
    let g = Exponential::GRPC;
    assert_eq!(g.delay(0), Duration::from_secs(1));
    assert_eq!(g.delay(1), Duration::from_millis(1600));
    let d10 = g.delay(10).as_secs_f64();
    assert!((d10 - 1.6f64.powi(10)).abs() < 1e-6, "{d10}");
    assert_eq!(g.delay(11), Duration::from_secs(120));
    assert_eq!(g.delay(u32::MAX), Duration::from_secs(120));
}

/// The checker itself can fail: commands the Machine never yielded, fed to the checker as
/// if it had, are caught. (Mutating the Machine on purpose is caught the same way.)
#[test]
fn checker_catches_commands_that_break_rules() {
    type Cmd = Command<u8, TestConn, TestError>;
    let config = Config::new();
    let a1 = Some(AttemptId(1));
    let bad: Vec<(&str, Vec<Cmd>)> = vec![
        (
            "two A in a row",
            vec![Command::Emit {
                event: Event::AttemptingToConnect,
                attempt: None,
            }],
        ),
        (
            "Connected without a dial",
            vec![Command::Emit {
                event: Event::Connected(TestConn(9)),
                attempt: a1,
            }],
        ),
        (
            "a failure without an attempt",
            vec![Command::FailedAgain {
                attempt: AttemptId(1),
                error: Failure::Error(TestError(1)),
            }],
        ),
        (
            "close of an unknown connection",
            vec![Command::CloseConnection {
                attempt: AttemptId(1),
                connection: TestConn(9),
            }],
        ),
        ("Finished without a stop", vec![Command::Finished]),
        (
            "fetch while the handler runs",
            vec![Command::FetchAddress {
                attempt: AttemptId(1),
            }],
        ),
        (
            "a stop outcome without a stop",
            vec![Command::Stopped(StopKind::Close)],
        ),
    ];
    for (what, cmds) in bad {
        let mut m = TestMachine::new(config, 0);
        let mut checker = Checker::new(config);
        let first = m.poll_command();
        checker
            .after_poll(&m, first.as_ref())
            .expect("the real first command is fine");
        let mut caught = false;
        for cmd in &cmds {
            if checker.after_poll(&m, Some(cmd)).is_err() {
                caught = true;
            }
        }
        assert!(caught, "the checker missed: {what}");
    }
    // Commands that name the wrong attempt, after a real start: the first attempt's timer
    // and fetch are polled, its address is fed, then a made-up ObtainedAddress names
    // attempt 2.
    let mut m = TestMachine::new(config.jitter(Jitter::Off), 0);
    let mut checker = Checker::new(config.jitter(Jitter::Off));
    let step = |m: &mut TestMachine, checker: &mut Checker<u8, TestConn, TestError>, input| {
        let p = checker.before_input(m, &input).unwrap();
        let r = m.handle_input(input);
        checker.after_input(m, p, &r).unwrap();
    };
    let first = m.poll_command();
    checker.after_poll(&m, first.as_ref()).unwrap();
    checker.after_poll(&m, None).unwrap();
    step(&mut m, &mut checker, Input::EventHandled);
    while let Some(cmd) = m.poll_command() {
        checker.after_poll(&m, Some(&cmd)).unwrap();
    }
    checker.after_poll(&m, None).unwrap();
    step(
        &mut m,
        &mut checker,
        Input::AddressObtained {
            attempt: AttemptId(1),
            result: Ok(3),
        },
    );
    let wrong: Cmd = Command::Emit {
        event: Event::ObtainedAddress(3),
        attempt: Some(AttemptId(2)),
    };
    let v = checker.after_poll(&m, Some(&wrong)).unwrap_err();
    assert_eq!(v.rule, "R2 attempt", "{v}");

    // And a real violation of R16: an input the machine took although nothing asked for it
    // is caught when the model disagrees. Feed EventHandled twice to a real machine: the
    // second is rejected, as the model says.
    let mut m = TestMachine::new(config, 0);
    let mut checker = Checker::new(config);
    let first = m.poll_command();
    checker.after_poll(&m, first.as_ref()).unwrap();
    checker.after_poll(&m, None).unwrap();
    for _ in 0..2 {
        let p = checker.before_input(&m, &Input::EventHandled).unwrap();
        let r = m.handle_input(Input::EventHandled);
        checker.after_input(&m, p, &r).unwrap();
        while let Some(cmd) = m.poll_command() {
            checker.after_poll(&m, Some(&cmd)).unwrap();
        }
        checker.after_poll(&m, None).unwrap();
    }
}

/// R7: [`Jitter::bounds`] is "the smallest and the largest delay this jitter can make of
/// `delay`", so it must contain the delay the Machine actually waits.
///
/// Replay: `Config::new().retry_policy(RetryPolicy::Constant(Duration::MAX))
/// .jitter(Jitter::Off)`: the first attempt's `retry_delay()` is `Duration::MAX`, but
/// `Jitter::Off.bounds(Duration::MAX)` is `(u64::MAX ns, u64::MAX ns)` (about 584 years).
/// The same with `Jitter::Uniform { percent: 0 }`. For any percent above 0 the Machine
/// clamps to `u64::MAX` ns first, so those agree.
#[test]
fn r7_jitter_bounds_contain_every_delay_the_machine_uses() {
    for jitter in [
        Jitter::Off,
        Jitter::Uniform { percent: 0 },
        Jitter::STANDARD,
    ] {
        for base in [
            Duration::MAX,
            Duration::new(u64::MAX / 2, 0),
            Duration::from_secs(10),
        ] {
            let config = Config::new()
                .retry_policy(RetryPolicy::Constant(base))
                .jitter(jitter);
            let mut m = TestMachine::new(config, 0);
            while m.poll_command().is_some() {}
            m.handle_input(Input::EventHandled).unwrap();
            while m.poll_command().is_some() {}
            let actual = m.retry_delay().unwrap();
            let (lo, hi) = jitter.bounds(base);
            assert!(
                lo <= actual && actual <= hi,
                "{jitter:?}, {base:?}: the machine waits {actual:?}, bounds say ({lo:?}, {hi:?})"
            );
        }
    }
}

/// `retry_delay()` is "the retry delay (after jitter) of the latest attempt": an attempt of
/// a Custom policy stopped while it waited for its delay never had one.
///
/// Replay: `Config::new().retry_policy(RetryPolicy::Custom)`; poll `Emit(A)`, feed
/// `EventHandled`, poll `ComputeRetryDelay`, feed `Close`, drain (`Stopped(Close)`,
/// `Finished`): `retry_delay()` must be `None`, as it is while the delay is awaited (it
/// once was `Some(0ns)`, or the previous attempt's delay).
#[test]
fn retry_delay_is_none_for_an_attempt_stopped_before_its_delay() {
    let mut m = TestMachine::new(Config::new().retry_policy(RetryPolicy::Custom), 0);
    while m.poll_command().is_some() {}
    m.handle_input(Input::EventHandled).unwrap();
    assert!(matches!(
        m.poll_command(),
        Some(Command::ComputeRetryDelay { .. })
    ));
    assert_eq!(m.retry_delay(), None, "while the delay is awaited");
    m.handle_input(Input::Close).unwrap();
    while m.poll_command().is_some() {}
    assert!(m.is_finished());
    assert_eq!(m.retry_delay(), None, "after the machine finished");
}

/// The checker catches R19's command errors: a `Connected` with `min_uptime` but no uptime
/// timer just before it, an uptime timer of the wrong length, or one without `min_uptime`.
#[test]
fn checker_catches_uptime_timer_errors() {
    type Cmd = Command<u8, TestConn, TestError>;
    let config = Config::new()
        .jitter(Jitter::Off)
        .min_uptime(Duration::from_secs(30));
    // Drives a real Machine to the batch of its first connection and returns its commands
    // (an uptime timer, then Connected), with the checker not yet told of them.
    let connect = |config: Config| {
        let mut m = TestMachine::new(config, 0);
        let mut checker = Checker::new(config);
        let feed = |m: &mut TestMachine, checker: &mut Checker<u8, TestConn, TestError>, input| {
            while let Some(cmd) = m.poll_command() {
                checker.after_poll(m, Some(&cmd)).unwrap();
            }
            checker.after_poll(m, None).unwrap();
            let p = checker.before_input(m, &input).unwrap();
            let r = m.handle_input(input);
            checker.after_input(m, p, &r).unwrap();
        };
        for input in [
            Input::EventHandled,
            Input::AddressObtained {
                attempt: AttemptId(1),
                result: Ok(1),
            },
            Input::EventHandled,
            Input::Dialed {
                attempt: AttemptId(1),
                result: Ok(TestConn(1)),
            },
        ] {
            feed(&mut m, &mut checker, input);
        }
        let cmds: Vec<Cmd> = std::iter::from_fn(|| m.poll_command()).collect();
        (m, checker, cmds)
    };
    let (m, mut checker, cmds) = connect(config);
    assert!(
        matches!(cmds[0], Command::StartUptimeTimer { .. }),
        "{cmds:?}"
    );
    let v = checker.after_poll(&m, Some(&cmds[1])).unwrap_err();
    assert_eq!(v.rule, "R19 uptime", "{v}");

    let (m, mut checker, cmds) = connect(config);
    let wrong: Cmd = Command::StartUptimeTimer {
        attempt: AttemptId(1),
        delay: Duration::from_secs(29),
    };
    let v = checker.after_poll(&m, Some(&wrong)).unwrap_err();
    assert_eq!(v.rule, "R19 uptime", "{v}");
    // The real batch passes.
    let (m, mut checker, _) = connect(config);
    for cmd in &cmds {
        checker.after_poll(&m, Some(cmd)).unwrap();
    }

    let plain = config.min_uptime(None);
    let (m, mut checker, cmds) = connect(plain);
    assert!(matches!(cmds[..], [Command::Emit { .. }]), "{cmds:?}");
    let extra: Cmd = Command::StartUptimeTimer {
        attempt: AttemptId(1),
        delay: Duration::from_secs(30),
    };
    let v = checker.after_poll(&m, Some(&extra)).unwrap_err();
    assert_eq!(v.rule, "R19 uptime", "{v}");
}
