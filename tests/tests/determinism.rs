//! Checks R15 (determinism) of CONTRACT.md: with a given seed and the same inputs, the
//! Machine yields the same commands (and so the same events and delays); with another
//! seed, the delays differ. The recorded runs are checked by the one rule checker.

use std::time::Duration;

use persistent_connection::{Command, Config, Exponential, InputError, Jitter, RetryPolicy};
use persistent_connection_tests::rng::Rng;
use persistent_connection_tests::script::{
    Action, Env, StopInput, TestChecked, TestCommand, TestInput, TestMachine,
};

/// One line of a run's log: what an input got, or a command.
#[derive(Debug, PartialEq)]
enum Line {
    Fed(Result<(), InputError>),
    Cmd(TestCommand),
}

/// Drives a checked Machine with random actions, recording the inputs it was fed.
fn record(
    config: Config,
    seed: u64,
    script_seed: u64,
    steps: usize,
) -> (Vec<TestInput>, Vec<Line>) {
    let mut m = TestChecked::new(config, seed);
    let mut env = Env::new();
    let mut rng = Rng::new(script_seed);
    let mut inputs = Vec::new();
    let mut log = Vec::new();
    for _ in 0..steps {
        while let Some(cmd) = m.poll().unwrap_or_else(|v| panic!("{v}")) {
            log.push(Line::Cmd(cmd));
        }
        let b = rng.next_u64() as u8;
        let action = match rng.below(60) {
            _ if inputs.len() + 1 == steps => Action::Stop(StopInput::Close),
            0..=3 => Action::FireStaleTimer(b),
            4..=6 => Action::WrongAttempt {
                kind: b % 4,
                offset: b % 9,
            },
            7 => Action::ReconnectNow,
            8 => Action::Uptime(b),
            _ => Action::Auto(b),
        };
        let Some(input) = env.input_for(&action, m.checker()) else {
            continue;
        };
        inputs.push(input.clone());
        let result = m.feed(input).unwrap_or_else(|v| panic!("{v}"));
        log.push(Line::Fed(result.map_err(|r| r.error)));
        if m.checker().finished() {
            break;
        }
    }
    while let Some(cmd) = m.poll().unwrap_or_else(|v| panic!("{v}")) {
        log.push(Line::Cmd(cmd));
    }
    (inputs, log)
}

/// Feeds recorded inputs to a fresh (unchecked) Machine and logs what it does.
fn replay(config: Config, seed: u64, inputs: &[TestInput]) -> Vec<Line> {
    let mut m = TestMachine::new(config, seed);
    let mut log = Vec::new();
    for input in inputs {
        while let Some(cmd) = m.poll_command() {
            log.push(Line::Cmd(cmd));
        }
        log.push(Line::Fed(
            m.handle_input(input.clone()).map_err(|r| r.error),
        ));
    }
    while let Some(cmd) = m.poll_command() {
        log.push(Line::Cmd(cmd));
    }
    log
}

fn configs() -> Vec<Config> {
    vec![
        Config::new(),
        Config::new()
            .retry_policy(RetryPolicy::Exponential(Exponential::GRPC))
            .connect_timeout(Duration::from_millis(1500)),
        Config::new()
            .retry_policy(RetryPolicy::Custom)
            .jitter(Jitter::Uniform { percent: 90 }),
        Config::new()
            .retry_policy(RetryPolicy::Constant(Duration::from_millis(300)))
            .connect_timeout(Duration::from_millis(300)),
        Config::new()
            .retry_policy(RetryPolicy::Exponential(Exponential::GRPC))
            .min_uptime(Duration::from_secs(5)),
    ]
}

/// R15: two Machines with the same seed fed the same inputs yield identical command logs
/// (and identical answers to each input).
#[test]
fn r15_same_seed_same_inputs_same_commands() {
    for seed in [0, 1, 42, u64::MAX] {
        for config in configs() {
            let (inputs, first) = record(config, seed, seed ^ 0xabcd, 3_000);
            let second = replay(config, seed, &inputs);
            assert!(
                first.len() > 1_000,
                "{config:?}: only {} lines",
                first.len()
            );
            assert!(first == second, "{config:?}: the two runs differ");
            // And a third time, for luck: nothing carries over between Machines.
            assert!(
                replay(config, seed, &inputs) == first,
                "{config:?}: the third run differs"
            );
        }
    }
}

fn delays(log: &[Line]) -> Vec<Duration> {
    log.iter()
        .filter_map(|l| match l {
            Line::Cmd(Command::StartTimer { delay, .. }) => Some(*delay),
            _ => None,
        })
        .collect()
}

/// R15 (and R7's jitter): another seed draws other delays. Without a connect timeout the
/// seed changes nothing but the delays, so the same inputs fit both Machines and the logs
/// differ only in the timers' durations.
#[test]
fn r15_a_different_seed_gives_different_delays() {
    let config = Config::new()
        .retry_policy(RetryPolicy::Constant(Duration::from_secs(10)))
        .min_uptime(Duration::from_secs(30));
    let (inputs, first) = record(config, 1, 99, 2_000);
    let second = replay(config, 2, &inputs);
    assert_eq!(first.len(), second.len());
    let (d1, d2) = (delays(&first), delays(&second));
    assert!(d1.len() > 20, "only {} timers", d1.len());
    assert_eq!(d1.len(), d2.len());
    let same = d1.iter().zip(&d2).filter(|(a, b)| a == b).count();
    assert!(same < d1.len() / 10, "{same} of {} delays equal", d1.len());
    for (a, b) in first.iter().zip(&second) {
        match (a, b) {
            (
                Line::Cmd(Command::StartTimer { timer: t1, .. }),
                Line::Cmd(Command::StartTimer { timer: t2, .. }),
            ) => assert_eq!(t1, t2),
            _ => assert_eq!(a, b, "the seed changed more than the delays"),
        }
    }
    // With jitter off the seed changes nothing at all.
    let off = config.jitter(Jitter::Off);
    let (inputs, first) = record(off, 1, 99, 2_000);
    assert!(replay(off, 2, &inputs) == first);
}
