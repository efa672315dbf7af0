//! Shorthands for the rule tests: the types, a Machine driven by hand under the one rule
//! checker ([`M`]), and one function per command and input. Checks no rule by itself: every
//! step a test takes through [`M`] is checked against all rules by the
//! [`Checker`](persistent_connection_tests::check::Checker) of `persistent-connection-tests`.

#![allow(dead_code)] // each test module uses some of the shorthands

use std::fmt::Debug;
use std::ops::Deref;
use std::time::Duration;

use persistent_connection::{
    AttemptId, Command, Config, Event, Failure, Input, Jitter, Machine, Rejected, RetryPolicy,
    StopKind, TimerId,
};
use persistent_connection_tests::check::Checked;

pub(crate) type Addr = &'static str;
pub(crate) type Conn = u32;
pub(crate) type Er = &'static str;
/// A bare Machine, for the few tests that break the driver contract on purpose (feeding
/// while commands wait to be polled), which the checker rejects as a harness bug.
pub(crate) type Raw = Machine<Addr, Conn, Er>;
pub(crate) type Cmd = Command<Addr, Conn, Er>;
pub(crate) type In = Input<Addr, Conn, Er>;

/// A Machine driven by hand, watched by the rule checker: every input fed and every
/// command polled is checked against the whole model, and a broken rule panics with the
/// checker's report. Queries go to the Machine (`Deref`).
pub(crate) struct M {
    inner: Checked<Addr, Conn, Er>,
}

impl M {
    /// A checked Machine with jitter seed 0.
    pub(crate) fn new(config: Config) -> M {
        M::with_seed(config, 0)
    }

    /// A checked Machine with this jitter seed.
    pub(crate) fn with_seed(config: Config, seed: u64) -> M {
        M {
            inner: Checked::new(config, seed),
        }
    }

    /// The next command, checked (`None` ends the batch and runs the batch-end checks).
    #[track_caller]
    pub(crate) fn poll_command(&mut self) -> Option<Cmd> {
        self.inner.poll().unwrap_or_else(|v| panic!("{v}"))
    }

    /// Feeds an input, checked; returns the Machine's own answer.
    #[track_caller]
    pub(crate) fn handle_input(&mut self, input: In) -> Result<(), Rejected<Addr, Conn, Er>> {
        self.inner.feed(input).unwrap_or_else(|v| panic!("{v}"))
    }
}

impl Deref for M {
    type Target = Raw;
    fn deref(&self) -> &Raw {
        self.inner.machine()
    }
}

pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A constant retry delay of `s` seconds, no jitter.
pub(crate) fn constant(s: u64) -> Config {
    Config::new()
        .retry_policy(RetryPolicy::Constant(secs(s)))
        .jitter(Jitter::Off)
}

/// Takes every command the checked machine has queued, in order.
#[track_caller]
pub(crate) fn drain(m: &mut M) -> Vec<Cmd> {
    let mut commands = Vec::new();
    while let Some(c) = m.poll_command() {
        commands.push(c);
        assert!(commands.len() <= 64, "poll_command never returns None");
    }
    commands
}

/// Takes every command a bare machine has queued, in order.
pub(crate) fn drain_raw<A, C, E>(m: &mut Machine<A, C, E>) -> Vec<Command<A, C, E>>
where
    A: Clone + PartialEq,
    C: Clone,
    E: Debug,
{
    let mut commands = Vec::new();
    while let Some(c) = m.poll_command() {
        commands.push(c);
        assert!(commands.len() <= 64, "poll_command never returns None");
    }
    commands
}

/// Feeds an input that must be accepted and returns the commands it produced.
#[track_caller]
pub(crate) fn feed(m: &mut M, input: In) -> Vec<Cmd> {
    if let Err(rejected) = m.handle_input(input) {
        panic!("input rejected: {rejected:?}");
    }
    drain(m)
}

/// Feeds an input that must be accepted and checks the exact commands it produced.
#[track_caller]
pub(crate) fn expect(m: &mut M, input: In, expected: Vec<Cmd>) {
    let got = feed(m, input);
    assert_eq!(got, expected);
}

/// Everything a caller can observe of a machine without moving it.
pub(crate) fn snapshot(m: &Raw) -> String {
    format!(
        "{m:?} state={:?} expecting={:?} attempt={:?} failures={} current={:?}/{:?} \
         closed={} finished={} retry_delay={:?} stop={:?} next={:?}",
        m.state(),
        m.expecting(),
        m.attempt(),
        m.consecutive_failures(),
        m.current_connection(),
        m.current_attempt(),
        m.is_closed(),
        m.is_finished(),
        m.retry_delay(),
        m.stop_kind(),
        m.has_command(),
    )
}

/// Feeds an input that must be rejected; checks that nothing observable changed and that
/// the input came back unchanged, and returns the rejection.
#[track_caller]
pub(crate) fn reject(m: &mut M, input: In) -> Rejected<Addr, Conn, Er> {
    let copy = input.clone();
    let before = snapshot(m);
    let rejected = match m.handle_input(input) {
        Ok(()) => panic!("{copy:?} was accepted; commands: {:?}", drain(m)),
        Err(r) => r,
    };
    assert_eq!(
        snapshot(m),
        before,
        "a rejected {copy:?} changed the machine"
    );
    assert_eq!(
        rejected.input, copy,
        "the rejected input is not handed back"
    );
    rejected
}

/// As [`reject`], for a bare machine.
#[track_caller]
pub(crate) fn reject_raw(m: &mut Raw, input: In) -> Rejected<Addr, Conn, Er> {
    let copy = input.clone();
    let before = snapshot(m);
    let rejected = match m.handle_input(input) {
        Ok(()) => panic!("{copy:?} was accepted; commands: {:?}", drain_raw(m)),
        Err(r) => r,
    };
    assert_eq!(
        snapshot(m),
        before,
        "a rejected {copy:?} changed the machine"
    );
    assert_eq!(
        rejected.input, copy,
        "the rejected input is not handed back"
    );
    rejected
}

// Commands.
pub(crate) fn attempting() -> Cmd {
    Command::Emit {
        event: Event::AttemptingToConnect,
        attempt: None,
    }
}
pub(crate) fn obtained(n: u64, a: Addr) -> Cmd {
    Command::Emit {
        event: Event::ObtainedAddress(a),
        attempt: Some(AttemptId(n)),
    }
}
/// `Disconnected` of the connection made by attempt `n`.
pub(crate) fn disconnected(n: u64) -> Cmd {
    Command::Emit {
        event: Event::Disconnected,
        attempt: Some(AttemptId(n)),
    }
}
pub(crate) fn timer(id: u64, delay: Duration) -> Cmd {
    Command::StartTimer {
        timer: TimerId(id),
        delay,
    }
}
pub(crate) fn fetch(n: u64) -> Cmd {
    Command::FetchAddress {
        attempt: AttemptId(n),
    }
}
/// The dial of attempt `n`, made after `failures` consecutive failures.
pub(crate) fn dial(n: u64, address: Addr, failures: u32) -> Cmd {
    Command::Dial {
        attempt: AttemptId(n),
        address,
        consecutive_failures: failures,
    }
}
pub(crate) fn compute_delay(n: u64, failures: u32) -> Cmd {
    Command::ComputeRetryDelay {
        attempt: AttemptId(n),
        consecutive_failures: failures,
    }
}
/// Attempt `n` made connection `c` (its outcome and its event).
pub(crate) fn connected(n: u64, c: Conn) -> Cmd {
    Command::Emit {
        event: Event::Connected(c),
        attempt: Some(AttemptId(n)),
    }
}
/// Attempt `n` failed with an error that differs from the cycle's last (reported).
pub(crate) fn failed(n: u64, error: Failure<Er>) -> Cmd {
    Command::Emit {
        event: Event::FailedToConnect(error),
        attempt: Some(AttemptId(n)),
    }
}
/// Attempt `n` failed with the cycle's last error again (to the waiters only).
pub(crate) fn failed_again(n: u64, error: Failure<Er>) -> Cmd {
    Command::FailedAgain {
        attempt: AttemptId(n),
        error,
    }
}
pub(crate) fn cancel(n: u64) -> Cmd {
    Command::CancelAttempt {
        attempt: AttemptId(n),
    }
}
/// Close connection `c`, made by attempt `n`.
pub(crate) fn close_conn(n: u64, c: Conn) -> Cmd {
    Command::CloseConnection {
        attempt: AttemptId(n),
        connection: c,
    }
}
/// The uptime timer (R19) of the connection made by attempt `n`.
pub(crate) fn uptime_timer(n: u64, delay: Duration) -> Cmd {
    Command::StartUptimeTimer {
        attempt: AttemptId(n),
        delay,
    }
}
pub(crate) fn stopped(kind: StopKind) -> Cmd {
    Command::Stopped(kind)
}
pub(crate) fn finished() -> Cmd {
    Command::Finished
}
/// The caller's error.
pub(crate) fn err(e: Er) -> Failure<Er> {
    Failure::Error(e)
}
pub(crate) fn timed_out(s: u64) -> Failure<Er> {
    Failure::TimedOut { after: secs(s) }
}

// Inputs.
pub(crate) fn handled() -> In {
    Input::EventHandled
}
pub(crate) fn address(n: u64, a: Addr) -> In {
    Input::AddressObtained {
        attempt: AttemptId(n),
        result: Ok(a),
    }
}
pub(crate) fn address_failed(n: u64, e: Er) -> In {
    Input::AddressObtained {
        attempt: AttemptId(n),
        result: Err(e),
    }
}
pub(crate) fn dialed(n: u64, c: Conn) -> In {
    Input::Dialed {
        attempt: AttemptId(n),
        result: Ok(c),
    }
}
pub(crate) fn dial_failed(n: u64, e: Er) -> In {
    Input::Dialed {
        attempt: AttemptId(n),
        result: Err(e),
    }
}
pub(crate) fn fire(id: u64) -> In {
    Input::TimerFired(TimerId(id))
}
/// `reconnect_now()` (R18).
pub(crate) fn reconnect() -> In {
    Input::ReconnectNow
}
/// The uptime timer (R19) of the connection made by attempt `n` fired.
pub(crate) fn uptime(n: u64) -> In {
    Input::UptimeReached {
        attempt: AttemptId(n),
    }
}
pub(crate) fn conn_closed(n: u64) -> In {
    Input::ConnectionClosed {
        attempt: AttemptId(n),
    }
}

/// A machine (constant 10 s, no jitter) whose first attempt is fetching its address:
/// timer 1 is out, the fetch of attempt 1 is out.
pub(crate) fn fetching() -> M {
    let mut m = M::new(constant(10));
    assert_eq!(drain(&mut m), vec![attempting()]);
    expect(&mut m, handled(), vec![timer(1, secs(10)), fetch(1)]);
    m
}

/// A machine (constant 10 s, no jitter) whose first attempt is dialling "x".
pub(crate) fn dialing() -> M {
    let mut m = fetching();
    expect(&mut m, address(1, "x"), vec![obtained(1, "x")]);
    expect(&mut m, handled(), vec![dial(1, "x", 0)]);
    m
}

/// A machine (constant 10 s, no jitter) connected by attempt 1 with connection 1; its
/// `Connected` handler has finished, and timer 1 (the retry timer) is still out.
pub(crate) fn connected_machine() -> M {
    let mut m = dialing();
    expect(&mut m, dialed(1, 1), vec![connected(1, 1)]);
    expect(&mut m, handled(), vec![]);
    m
}

/// A machine (retry `retry` s, no jitter, connect timeout `timeout` s).
pub(crate) fn with_timeout(retry: u64, timeout: u64) -> M {
    M::new(constant(retry).connect_timeout(secs(timeout)))
}

/// Fails every attempt of a machine (by a repeated fetch error) and returns the delay
/// of each attempt's retry timer, in order.
pub(crate) fn delays_of_failing_attempts(m: &mut M, attempts: u64) -> Vec<Duration> {
    assert_eq!(drain(m), vec![attempting()]);
    let mut delays = Vec::new();
    let mut next = feed(m, handled());
    for n in 1..=attempts {
        let [
            Command::StartTimer {
                timer: TimerId(t),
                delay,
            },
            Command::FetchAddress { attempt },
        ] = next[..]
        else {
            panic!("attempt {n}: {next:?}")
        };
        assert_eq!(attempt, AttemptId(n));
        delays.push(delay);
        let outcome = feed(m, address_failed(n, "down"));
        if n == 1 {
            assert_eq!(outcome, vec![failed(n, err("down"))]);
            expect(m, handled(), vec![]);
        } else {
            assert_eq!(outcome, vec![failed_again(n, err("down"))]);
        }
        next = feed(m, fire(t));
    }
    delays
}
