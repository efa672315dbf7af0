//! A scripted environment: turns abstract [`Action`]s (or raw bytes, for the fuzzer) into
//! Machine inputs, valid and invalid, runs them through a [`Checked`] Machine, and reports
//! the first broken rule.
//!
//! The environment ([`Env`]) asks the [`Checker`] what the Machine asked for (a handler to
//! run, an address to fetch, a dial, a timer, a retry delay, a live connection, cancelled
//! attempts whose results may still come): it keeps no model of its own. So an action like
//! [`Action::Fetch`] answers the fetch that is out, and [`Action::Auto`] picks one of the
//! valid answers. Invalid inputs come
//! from actions that answer what was not asked ([`Action::WrongAttempt`],
//! [`Action::FireStaleTimer`], a `Fetch` with no fetch out, ...). Stop inputs can also come
//! in the middle of a batch ([`Action::StopMidBatch`]), as a `close()` from inside a
//! handler would. `reconnect_now()` (R18, [`Action::ReconnectNow`]) comes at any point
//! between batches, and the uptime timer (R19, [`Action::Uptime`]) fires on time or late.
//!
//! [`run_scenario`] runs a [`Scenario`]; [`run_bytes`] decodes bytes into one first: the
//! `machine` fuzz target and the corpus replay call it, and the property tests build
//! [`Scenario`]s directly.

use std::fmt;
use std::time::Duration;

use persistent_connection::{
    AttemptId, Command, Config, Event, Exponential, Input, Jitter, Machine, RetryPolicy, TimerId,
};

use crate::check::{Checked, Checker, Violation, violation};

/// The address type of the test Machines: a replica number.
pub type Address = u8;

/// The connection type of the test Machines: a unique number, so that a connection that is
/// dropped, duplicated or handed out twice can be told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TestConn(pub u64);

/// The error type of the test Machines. Its `Debug` (derived) never allocates, so the
/// zero-allocation test can use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TestError(pub u8);

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "test error {}", self.0)
    }
}

/// The Machine the tests drive.
pub type TestMachine = Machine<Address, TestConn, TestError>;
/// Its inputs.
pub type TestInput = Input<Address, TestConn, TestError>;
/// Its commands.
pub type TestCommand = Command<Address, TestConn, TestError>;
/// A test Machine with its checker.
pub type TestChecked = Checked<Address, TestConn, TestError>;
/// The checker of a test Machine.
pub type TestChecker = Checker<Address, TestConn, TestError>;

/// One of the three ways to stop a persistent connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopInput {
    /// `close()`.
    Close,
    /// `abort(reason)` (the Machine does not hold the reason).
    Abort,
    /// `close_when_current_connection_is_closed()`.
    CloseWhenCurrentConnectionCloses,
}

impl StopInput {
    /// The Machine input for it.
    pub fn input(self) -> TestInput {
        match self {
            StopInput::Close => Input::Close,
            StopInput::Abort => Input::Abort,
            StopInput::CloseWhenCurrentConnectionCloses => {
                Input::CloseWhenCurrentConnectionIsClosed
            }
        }
    }
}

/// One step of a script. Each feeds one input (except [`Action::StopMidBatch`], which arms
/// a stop for the next batch), valid or not depending on what the Machine asked for.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// A valid answer to one of the Machine's outstanding requests, picked (and shaped: ok
    /// or error, which address, which delay) by the byte. Feeds `EventHandled` (rejected)
    /// when nothing is outstanding.
    Auto(u8),
    /// `EventHandled`, whether a handler runs or not.
    HandleEvent,
    /// Answers the fetch that is out (or names the latest attempt if none is).
    Fetch(Result<Address, TestError>),
    /// Answers the dial that is out (or names the latest attempt if none is) with a fresh
    /// connection, or an error.
    Dial(Result<(), TestError>),
    /// Fires the timer that is out (or a never-issued id if none is).
    FireTimer,
    /// Fires a timer that has fired or been replaced by a later `StartTimer` (or id 0).
    FireStaleTimer(u8),
    /// Answers `ComputeRetryDelay` (or feeds a delay nobody asked for).
    Delay(Duration),
    /// The live connection closes (or a made-up one does, if none is live).
    ConnectionCloses,
    /// A result comes for a cancelled attempt (picked by `index`): a dial result or an
    /// address, ok or not.
    Late {
        /// Which cancelled attempt (modulo their number).
        index: u8,
        /// A dial result rather than an address.
        dial: bool,
        /// Success rather than an error.
        ok: bool,
    },
    /// A result or a close naming an attempt near the latest one (`offset - 4` away):
    /// mostly invalid.
    WrongAttempt {
        /// 0: an address; 1: a connection; 2: a dial error; 3: a connection closed.
        kind: u8,
        /// The attempt named is the latest one plus `offset - 4`.
        offset: u8,
    },
    /// Feeds a stop input.
    Stop(StopInput),
    /// Arms a stop input for the next batch: it is fed after `after` of that batch's
    /// commands have been polled, while the rest wait (as a `close()` from a handler).
    StopMidBatch {
        /// How many commands of the batch come out before it.
        after: u8,
        /// The stop input.
        stop: StopInput,
    },
    /// Feeds `ReconnectNow` (R18), whatever the Machine waits for.
    ReconnectNow,
    /// Feeds `UptimeReached` (R19), picked by the byte: `% 4` 0 or 1: for the uptime timer
    /// that may fire now (else as 2); 2: for the latest uptime timer started, even if its
    /// connection has closed since (late); 3: for an attempt near the latest one (`(b >> 2)
    /// % 5 - 2` away), mostly refused.
    Uptime(u8),
}

/// A Machine configuration and a script for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// How the Machine is made.
    pub config: Config,
    /// The seed of its jitter.
    pub seed: u64,
    /// What happens to it. After the last action the script feeds `Close` and answers
    /// every request until the Machine finishes (R11: close always finishes).
    pub actions: Vec<Action>,
}

/// What a run did: used to check that the scripts reach the interesting places.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Inputs fed.
    pub inputs: u64,
    /// Inputs the Machine rejected.
    pub rejected: u64,
    /// Commands polled.
    pub commands: u64,
    /// Cycles started (`AttemptingToConnect`).
    pub cycles: u64,
    /// Attempts started.
    pub attempts: u64,
    /// Connections handed out.
    pub connections: u64,
    /// Failed attempts reported as `FailedToConnect`.
    pub failures: u64,
    /// Failed attempts not reported because they repeated the previous error.
    pub repeated_failures: u64,
    /// Attempts that ended with the connect timeout.
    pub timeouts: u64,
    /// Attempts cancelled.
    pub cancels: u64,
    /// Late connections the Machine asked to close.
    pub late_closed: u64,
    /// Stop inputs fed while commands waited to be polled.
    pub mid_batch_stops: u64,
    /// The largest consecutive-failure count seen.
    pub max_failures: u32,
    /// `ReconnectNow` inputs fed (R18).
    pub reconnects: u64,
    /// Of those, fed while a connection was live and no stop had come (R18).
    pub reconnects_connected: u64,
    /// Uptime timers started (R19).
    pub uptime_timers: u64,
    /// `UptimeReached` inputs taken (R19).
    pub uptimes_reached: u64,
    /// `UptimeReached` inputs refused (R19).
    pub uptimes_refused: u64,
    /// Connections reported closed while their uptime was pending: each counted as a
    /// failure (R19).
    pub young_deaths: u64,
    /// The Machine finished before the script's final `Close`.
    pub finished_early: bool,
}

impl Report {
    fn count(&mut self, cmd: &TestCommand) {
        self.commands += 1;
        match cmd {
            Command::Emit {
                event: Event::AttemptingToConnect,
                ..
            } => self.cycles += 1,
            Command::FetchAddress { .. } => self.attempts += 1,
            Command::Emit {
                event: Event::Connected(_),
                ..
            } => self.connections += 1,
            Command::Emit {
                event: Event::FailedToConnect(error),
                ..
            } => {
                self.failures += 1;
                if error.is_timeout() {
                    self.timeouts += 1;
                }
            }
            Command::FailedAgain { error, .. } => {
                self.repeated_failures += 1;
                if error.is_timeout() {
                    self.timeouts += 1;
                }
            }
            Command::CancelAttempt { .. } => self.cancels += 1,
            Command::StartUptimeTimer { .. } => self.uptime_timers += 1,
            Command::CloseConnection { .. } => self.late_closed += 1,
            _ => {}
        }
    }
}

/// The environment of a scripted Machine: it makes fresh connections and holds a stop armed
/// for the next batch. What the Machine asked for comes from the [`Checker`]'s model.
#[derive(Clone, Debug, Default)]
pub struct Env {
    next_conn: u64,
    mid_stop: Option<(u8, StopInput)>,
}

/// The kinds of valid answer [`Action::Auto`] picks from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owed {
    Handler,
    Fetch,
    Dial,
    Delay,
    Timer,
    Closes,
    Late,
    Uptime,
}

/// A duration from a byte: zero, tiny, usual, huge and saturating values, and a spread of
/// milliseconds.
pub fn duration_from_byte(b: u8) -> Duration {
    match b % 16 {
        0 => Duration::ZERO,
        1 => Duration::from_nanos(1),
        2 => Duration::from_millis(1),
        3 => Duration::from_millis(250),
        4 => Duration::from_secs(1),
        5 => Duration::from_secs(2),
        6 => Duration::from_secs(10),
        7 => Duration::from_secs(120),
        8 => Duration::from_secs(3600),
        9 => Duration::from_nanos(u64::MAX),
        10 => Duration::MAX,
        11 => Duration::new(u64::MAX / 2, 999_999_999),
        _ => Duration::from_millis(u64::from(b) * 13),
    }
}

/// A backoff multiplier from a byte: below one, one, just above, usual, large, and the
/// float oddities (NaN, infinities, negative, subnormal).
pub fn multiplier_from_byte(b: u8) -> f64 {
    const CHOICES: [f64; 16] = [
        0.0,
        0.5,
        1.0,
        1.000_000_1,
        1.6,
        2.0,
        10.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -1.0,
        1e300,
        f64::MIN_POSITIVE,
        1.5,
        f64::EPSILON,
        1.0 + f64::EPSILON,
    ];
    CHOICES[usize::from(b % 16)]
}

/// Reads bytes, giving zeros once they run out.
#[derive(Clone, Debug)]
pub struct ByteReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        ByteReader { data, pos: 0 }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// The next 8 bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        let mut v = 0u64;
        for i in 0..8 {
            v |= u64::from(self.u8()) << (8 * i);
        }
        v
    }

    /// The next 4 bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        let mut v = 0u32;
        for i in 0..4 {
            v |= u32::from(self.u8()) << (8 * i);
        }
        v
    }
}

/// A configuration and a seed from bytes: the policy (constant, exponential with any
/// parameters, gRPC's, custom), the jitter (standard, off, any percent), the seed and the
/// connect timeout (off, or any duration of [`duration_from_byte`]). The policy byte's
/// upper bits set the min uptime (R19): bit 2 clear (as in every seed corpus file) none,
/// else the duration of [`duration_from_byte`] of the bits above, set on the field directly
/// so that a zero one reaches the Machine.
pub fn config_from_bytes(r: &mut ByteReader<'_>) -> (Config, u64) {
    let p = r.u8();
    let min_uptime = (p & 4 != 0).then(|| duration_from_byte(p >> 3));
    let policy = match p % 4 {
        0 => RetryPolicy::Constant(duration_from_byte(r.u8())),
        1 => RetryPolicy::Exponential(Exponential {
            initial: duration_from_byte(r.u8()),
            multiplier: multiplier_from_byte(r.u8()),
            max: duration_from_byte(r.u8()),
        }),
        2 => RetryPolicy::Exponential(Exponential::GRPC),
        _ => RetryPolicy::Custom,
    };
    let jitter = match r.u8() {
        0..=99 => Jitter::STANDARD,
        100..=159 => Jitter::Off,
        p => Jitter::Uniform { percent: p },
    };
    let seed = r.u64();
    let t = r.u8();
    let timeout = (t % 3 != 0).then(|| duration_from_byte(t / 3));
    let mut config = Config::new()
        .retry_policy(policy)
        .jitter(jitter)
        .connect_timeout(timeout);
    config.min_uptime = min_uptime;
    (config, seed)
}

fn stop_from_byte(b: u8) -> StopInput {
    match b % 3 {
        0 => StopInput::Close,
        1 => StopInput::Abort,
        _ => StopInput::CloseWhenCurrentConnectionCloses,
    }
}

/// One action from two bytes (a tag and an argument). Half the tags are [`Action::Auto`],
/// so that random bytes still go deep into the Machine. Tags `0xF0..=0xFF` (unused by the
/// seed corpus, whose tags are all below 16) are the actions added with R18 and R19:
/// `0xF0..=0xF7` [`Action::ReconnectNow`], `0xF8..=0xFF` [`Action::Uptime`]; every other
/// tag means what it always did (its value modulo 16).
pub fn action_from_bytes(r: &mut ByteReader<'_>) -> Action {
    let (tag, arg) = (r.u8(), r.u8());
    match tag {
        0xF0..=0xF7 => return Action::ReconnectNow,
        0xF8..=0xFF => return Action::Uptime(arg),
        _ => {}
    }
    match tag % 16 {
        0..=7 => Action::Auto(arg),
        8 => Action::HandleEvent,
        9 => Action::Fetch(if arg & 1 == 0 {
            Ok((arg >> 1) % 4)
        } else {
            Err(TestError((arg >> 1) % 4))
        }),
        10 => Action::Dial(if arg & 1 == 0 {
            Ok(())
        } else {
            Err(TestError((arg >> 1) % 4))
        }),
        11 if arg & 1 == 0 => Action::FireTimer,
        11 => Action::FireStaleTimer(arg >> 1),
        12 if arg & 1 == 0 => Action::Delay(duration_from_byte(arg >> 1)),
        12 => Action::ConnectionCloses,
        13 => Action::Late {
            index: arg >> 2,
            dial: arg & 1 == 1,
            ok: arg & 2 == 2,
        },
        14 if arg & 1 == 0 => Action::WrongAttempt {
            kind: (arg >> 1) % 4,
            offset: (arg >> 3) % 9,
        },
        14 => Action::Stop(stop_from_byte(arg >> 1)),
        _ => Action::StopMidBatch {
            after: (arg >> 2) % 8,
            stop: stop_from_byte(arg),
        },
    }
}

/// The most actions [`Scenario::from_bytes`] decodes: the bytes past them are ignored.
///
/// The fuzzer's speed is inversely proportional to the script's length, and its inputs
/// grow towards its `-max_len`. 256 actions reach every state of the Machine, and more
/// than 64 attempts (a failed attempt takes one or two actions), so that results of
/// cancelled attempts can fall out of its memory; a longer script mostly repeats what a
/// shorter one does, at the cost of fresh inputs.
pub const MAX_ACTIONS: usize = 256;

/// The most bytes [`config_from_bytes`] reads: the policy byte, three for an exponential
/// policy, the jitter, eight for the seed, the connect timeout.
pub const MAX_CONFIG_BYTES: usize = 14;

/// The longest input that still means something to [`Scenario::from_bytes`]: `fuzz/run.sh`
/// gives it to the fuzzer as `-max_len`.
pub const MAX_INPUT_LEN: usize = MAX_CONFIG_BYTES + 2 * MAX_ACTIONS;

impl Scenario {
    /// Decodes a scenario: a configuration ([`config_from_bytes`]), then two bytes per
    /// action ([`action_from_bytes`]), at most [`MAX_ACTIONS`] of them. Every byte string
    /// is a scenario.
    pub fn from_bytes(data: &[u8]) -> Scenario {
        let mut r = ByteReader::new(data);
        let (config, seed) = config_from_bytes(&mut r);
        let mut actions = Vec::with_capacity(MAX_ACTIONS.min(data.len().div_ceil(2)));
        while !r.is_empty() && actions.len() < MAX_ACTIONS {
            actions.push(action_from_bytes(&mut r));
        }
        Scenario {
            config,
            seed,
            actions,
        }
    }
}

impl Env {
    /// An environment with no connection made yet and no stop armed.
    pub fn new() -> Self {
        Env::default()
    }

    /// Takes the stop armed by [`Action::StopMidBatch`], if any.
    pub fn take_mid_stop(&mut self) -> Option<(u8, StopInput)> {
        self.mid_stop.take()
    }

    fn fresh_conn(&mut self) -> TestConn {
        self.next_conn += 1;
        TestConn(self.next_conn)
    }

    fn latest(checker: &TestChecker) -> AttemptId {
        checker.latest_attempt().unwrap_or(AttemptId(1))
    }

    /// A timer that has fired or been replaced (or id 0 if there is none), picked by `i`.
    fn stale_timer(checker: &TestChecker, i: u8) -> TimerId {
        let out = checker.timer_out();
        let stale: u64 = checker.newest_timer() - u64::from(out.is_some());
        if stale == 0 {
            return TimerId(0);
        }
        // The `i`-th (modulo) id of 1..=newest, skipping the one out.
        let mut id = 1 + u64::from(i) % stale;
        if out.is_some_and(|t| t.0 <= id) {
            id += 1;
        }
        TimerId(id)
    }

    /// The input for `action`, given what the checker says is owed; `None` for an action
    /// that feeds nothing ([`Action::StopMidBatch`]).
    pub fn input_for(&mut self, action: &Action, checker: &TestChecker) -> Option<TestInput> {
        let input = match *action {
            Action::Auto(b) => self.auto(b, checker),
            Action::HandleEvent => Input::EventHandled,
            Action::Fetch(result) => Input::AddressObtained {
                attempt: checker.fetch_out().unwrap_or_else(|| Self::latest(checker)),
                result,
            },
            Action::Dial(result) => {
                let attempt = checker.dial_out().unwrap_or_else(|| Self::latest(checker));
                let result = match result {
                    Ok(()) => Ok(self.fresh_conn()),
                    Err(e) => Err(e),
                };
                Input::Dialed { attempt, result }
            }
            Action::FireTimer => Input::TimerFired(
                checker
                    .timer_out()
                    .unwrap_or(TimerId(checker.newest_timer() + 1)),
            ),
            Action::FireStaleTimer(i) => Input::TimerFired(Self::stale_timer(checker, i)),
            Action::Delay(d) => Input::RetryDelay(d),
            Action::ConnectionCloses => Input::ConnectionClosed {
                attempt: checker
                    .live_connection()
                    .map_or_else(|| Self::latest(checker), |(_, a)| *a),
            },
            Action::Late { index, dial, ok } => {
                let late = checker.late_results();
                let attempt = if late.is_empty() {
                    AttemptId(0)
                } else {
                    late[usize::from(index) % late.len()].0
                };
                self.result_for(attempt, dial, ok, index)
            }
            Action::WrongAttempt { kind, offset } => {
                let attempt = AttemptId(
                    Self::latest(checker)
                        .0
                        .wrapping_add(u64::from(offset))
                        .wrapping_sub(4),
                );
                match kind % 4 {
                    0 => Input::AddressObtained {
                        attempt,
                        result: Ok(offset % 3),
                    },
                    1 => Input::Dialed {
                        attempt,
                        result: Ok(self.fresh_conn()),
                    },
                    2 => Input::Dialed {
                        attempt,
                        result: Err(TestError(offset % 3)),
                    },
                    _ => Input::ConnectionClosed { attempt },
                }
            }
            Action::Stop(stop) => stop.input(),
            Action::StopMidBatch { after, stop } => {
                self.mid_stop = Some((after, stop));
                return None;
            }
            Action::ReconnectNow => Input::ReconnectNow,
            Action::Uptime(b) => Input::UptimeReached {
                attempt: Self::uptime_attempt(checker, b),
            },
        };
        Some(input)
    }

    /// The attempt an [`Action::Uptime`] names.
    fn uptime_attempt(checker: &TestChecker, b: u8) -> AttemptId {
        let last = checker
            .last_uptime_timer()
            .unwrap_or_else(|| Self::latest(checker));
        match b % 4 {
            0 | 1 => checker.uptime_timer_out().unwrap_or(last),
            2 => last,
            _ => AttemptId(
                Self::latest(checker)
                    .0
                    .wrapping_add(u64::from((b >> 2) % 5))
                    .wrapping_sub(2),
            ),
        }
    }

    fn result_for(&mut self, attempt: AttemptId, dial: bool, ok: bool, v: u8) -> TestInput {
        match (dial, ok) {
            (true, true) => Input::Dialed {
                attempt,
                result: Ok(self.fresh_conn()),
            },
            (true, false) => Input::Dialed {
                attempt,
                result: Err(TestError(v % 3)),
            },
            (false, true) => Input::AddressObtained {
                attempt,
                result: Ok(v % 3),
            },
            (false, false) => Input::AddressObtained {
                attempt,
                result: Err(TestError(v % 3)),
            },
        }
    }

    /// A valid answer to one of the requests the checker says are out, picked and shaped
    /// by `b`; `EventHandled` (to be rejected) when nothing is out.
    pub fn auto(&mut self, b: u8, checker: &TestChecker) -> TestInput {
        let mut owed = [Owed::Handler; 8];
        let mut n = 0;
        for (yes, what) in [
            (checker.handler_running(), Owed::Handler),
            (checker.fetch_out().is_some(), Owed::Fetch),
            (checker.dial_out().is_some(), Owed::Dial),
            (checker.delay_wanted(), Owed::Delay),
            (checker.timer_out().is_some(), Owed::Timer),
            (checker.live_connection().is_some(), Owed::Closes),
            (!checker.late_results().is_empty(), Owed::Late),
            // Last, so that without min_uptime the picks are as they always were.
            (checker.uptime_timer_out().is_some(), Owed::Uptime),
        ] {
            if yes {
                owed[n] = what;
                n += 1;
            }
        }
        if n == 0 {
            return Input::EventHandled;
        }
        let v = b >> 3;
        match owed[usize::from(b) % n] {
            Owed::Handler => Input::EventHandled,
            Owed::Fetch => Input::AddressObtained {
                attempt: checker.fetch_out().unwrap_or_else(|| Self::latest(checker)),
                result: if v % 4 == 3 {
                    Err(TestError((v >> 2) % 3))
                } else {
                    Ok((v >> 2) % 3)
                },
            },
            Owed::Dial => {
                let attempt = checker.dial_out().unwrap_or_else(|| Self::latest(checker));
                let result = if v % 2 == 0 {
                    Ok(self.fresh_conn())
                } else {
                    Err(TestError((v >> 1) % 3))
                };
                Input::Dialed { attempt, result }
            }
            Owed::Delay => Input::RetryDelay(match v % 8 {
                0 => Duration::ZERO,
                1 => Duration::from_millis(1),
                2 => Duration::from_millis(50),
                3 => Duration::from_secs(1),
                4 => Duration::from_secs(10),
                5 => Duration::from_secs(120),
                6 => Duration::from_millis(u64::from(v) * 7),
                _ => duration_from_byte(v),
            }),
            Owed::Timer => Input::TimerFired(checker.timer_out().unwrap_or(TimerId(0))),
            Owed::Closes => Input::ConnectionClosed {
                attempt: checker
                    .live_connection()
                    .map_or_else(|| Self::latest(checker), |(_, a)| *a),
            },
            Owed::Late => {
                let late = checker.late_results();
                let (attempt, dial) = late[usize::from(v) % late.len()];
                self.result_for(attempt, dial, v & 1 == 0, v)
            }
            Owed::Uptime => Input::UptimeReached {
                attempt: checker
                    .uptime_timer_out()
                    .unwrap_or_else(|| Self::latest(checker)),
            },
        }
    }
}

/// Feeds one input through the checker and counts it.
fn feed(checked: &mut TestChecked, report: &mut Report, input: TestInput) -> Result<(), Violation> {
    report.inputs += 1;
    let uptime = matches!(input, Input::UptimeReached { .. });
    if matches!(input, Input::ReconnectNow) {
        report.reconnects += 1;
        if checked.checker().live_connection().is_some() && !checked.machine().is_closed() {
            report.reconnects_connected += 1;
        }
    }
    // A rejected connection is handed back: it is ours to close (the checker has already
    // checked that it came back unchanged).
    let taken = checked.feed(input)?.is_ok();
    if !taken {
        report.rejected += 1;
    }
    match (uptime, taken) {
        (true, true) => report.uptimes_reached += 1,
        (true, false) => report.uptimes_refused += 1,
        _ => {}
    }
    Ok(())
}

/// Polls until the Machine is quiet, counting each command. A stop armed with
/// [`Action::StopMidBatch`] is fed after that many commands.
pub fn drain(
    checked: &mut TestChecked,
    report: &mut Report,
    mut mid: Option<(u8, StopInput)>,
) -> Result<(), Violation> {
    let mut polled = 0u8;
    // A stop that came mid-batch and was refused (Backlog): fed again once drained, as a
    // driver does with an input that races its batch.
    let mut refused = None;
    loop {
        if let Some((after, stop)) = mid {
            if polled >= after {
                mid = None;
                if checked.machine().has_command() {
                    report.mid_batch_stops += 1;
                    refused = Some(stop);
                }
                feed(checked, report, stop.input())?;
            }
        }
        let uptime_pending = checked.checker().uptime_pending();
        match checked.poll()? {
            Some(cmd) => {
                if uptime_pending
                    && matches!(
                        cmd,
                        Command::Emit {
                            event: Event::Disconnected,
                            ..
                        }
                    )
                {
                    report.young_deaths += 1;
                }
                report.count(&cmd);
                report.max_failures = report
                    .max_failures
                    .max(checked.machine().consecutive_failures());
                polled = polled.saturating_add(1);
            }
            None => break,
        }
    }
    if let Some(stop) = mid.map(|(_, stop)| stop).or(refused) {
        feed(checked, report, stop.input())?;
        drain(checked, report, None)?;
    }
    Ok(())
}

/// The most inputs the final `Close` may need before the Machine finishes.
const WIND_DOWN_STEPS: u32 = 64;

/// Runs a scenario through a checked Machine: every action, then `Close` and valid answers
/// until the Machine finishes. Returns what happened, or the first broken rule.
pub fn run_scenario(scenario: &Scenario) -> Result<Report, Violation> {
    let mut checked = TestChecked::new(scenario.config, scenario.seed);
    let mut env = Env::new();
    let mut report = Report::default();
    drain(&mut checked, &mut report, None)?;
    for action in &scenario.actions {
        let Some(input) = env.input_for(action, checked.checker()) else {
            continue;
        };
        feed(&mut checked, &mut report, input)?;
        let mid = env.take_mid_stop();
        drain(&mut checked, &mut report, mid)?;
    }
    report.finished_early = checked.checker().finished();
    // R11: close always finishes once the handlers run and the connection closes.
    if !checked.checker().finished() {
        feed(&mut checked, &mut report, Input::Close)?;
        drain(&mut checked, &mut report, None)?;
    }
    let mut step = 0u32;
    while !checked.checker().finished() {
        if step == WIND_DOWN_STEPS {
            let mut v = violation(
                "R11 close",
                format!("close() did not finish within {WIND_DOWN_STEPS} answers"),
            );
            v.trace = checked.checker().trace();
            return Err(v);
        }
        // Answer everything but late results, in turn.
        let input = env.auto((step % 6) as u8, checked.checker());
        feed(&mut checked, &mut report, input)?;
        drain(&mut checked, &mut report, None)?;
        step += 1;
    }
    Ok(report)
}

/// Decodes `data` into a [`Scenario`] and runs it: the body of the `machine` fuzz target.
pub fn run_bytes(data: &[u8]) -> Result<Report, Violation> {
    run_scenario(&Scenario::from_bytes(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The longest configuration is [`MAX_CONFIG_BYTES`] long, and [`MAX_INPUT_LEN`] bytes
    /// decode into exactly [`MAX_ACTIONS`] actions.
    #[test]
    fn input_length_bounds() {
        let mut longest = 0;
        for p in 0..=255u8 {
            let data = [p; 64];
            let mut r = ByteReader::new(&data);
            config_from_bytes(&mut r);
            longest = longest.max(r.pos);
        }
        assert_eq!(longest, MAX_CONFIG_BYTES);
        let data = vec![1u8; 2 * MAX_INPUT_LEN];
        assert_eq!(Scenario::from_bytes(&data).actions.len(), MAX_ACTIONS);
        let data = vec![1u8; MAX_INPUT_LEN];
        assert_eq!(Scenario::from_bytes(&data).actions.len(), MAX_ACTIONS);
    }

    /// `fuzz/run.sh` gives the `machine` target [`MAX_INPUT_LEN`] as its `-max_len`.
    #[test]
    fn run_sh_uses_max_input_len() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/run.sh");
        let Ok(script) = std::fs::read_to_string(path) else {
            return; // The fuzz folder is not shipped with this crate.
        };
        let want = format!("machine) extra+=(-max_len={MAX_INPUT_LEN})");
        assert!(script.contains(&want), "{path} should have `{want}`");
    }
}
