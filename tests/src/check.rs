//! The rule checker: watches a [`Machine`] input by input and command by command, keeps its
//! own model of what the Machine may do next, and reports the first rule it sees broken as
//! a [`Violation`].
//!
//! This is the one model of the rules in the tests: the rule tests (`tests/rules/`, which
//! drive a [`Checked`] Machine by hand), the property tests (`tests/model.rs`), the swarm
//! simulation ([`crate::sim`]), the scripted environment ([`crate::script`], which asks the
//! checker what is owed rather than tracking it again), the zero-allocation test, the
//! corpus replay and the fuzz targets all check through it. A change of rule is one edit
//! here.
//!
//! What it checks, step by step (the rule names in [`Violation::rule`]):
//!
//! - **R1 cycle / grammar**: the events form `(A (O|F)* (C D)?)*`; a new cycle starts only
//!   after D.
//! - **R2 attempt**: an attempt starts its retry timer, then fetches; it dials the address it
//!   obtained; `ObtainedAddress` exactly when the address differs from the last of the cycle.
//!   Every command names the right attempt: `Emit` names none for `AttemptingToConnect`, the
//!   latest attempt for `ObtainedAddress`, `FailedToConnect` and `Connected`, and the attempt
//!   that made the connection for `Disconnected`; `ComputeRetryDelay`, `FetchAddress`,
//!   `Dial`, `FailedAgain`, `CancelAttempt` and `CloseConnection` name theirs.
//! - **R3/R4 outcome**: every attempt ends in exactly one outcome: `Emit(Connected)`,
//!   `Emit(FailedToConnect)` or `FailedAgain`, carrying the error it was fed (or the
//!   timeout); `FailedAgain` exactly when the error's key ([`failure_key`]) equals the last
//!   of the cycle; `consecutive_failures()` (and the count `Dial` and `ComputeRetryDelay`
//!   carry) goes +1 per failure and back to 0 on success.
//! - **R5/R6 handlers**: every `Emit`, and nothing else, starts a handler that waits for
//!   exactly one `EventHandled`, which is accepted exactly while a handler runs; no event and
//!   no new step while one runs; `Disconnected` comes only after the connection closed and
//!   the `Connected` handler finished.
//! - **R7 retry delay**: each attempt's delay (`retry_delay()` right after its
//!   `FetchAddress`) lies within the jitter of `policy.delay(failures at its start)`, an
//!   attempt starts only once the previous one's delay has passed, and at once when it has;
//!   while a deadline is pending (the retry delay; the connect timeout while the attempt is
//!   in flight) a timer is out for the same attempt, due no later than the earliest one.
//! - **connect timeout**: an attempt fails with `TimedOut` exactly when its timeout passes
//!   while it is in flight, and its fetch or dial is cancelled.
//! - **one in flight / one timer / one live connection**: at most one fetch or dial out,
//!   one timer out (a `StartTimer` replaces the previous one), one connection handed out and
//!   not yet closed.
//! - **no connection dropped**: every `Dialed(Ok(c))` the Machine takes comes out as
//!   `Emit(Connected(c))` or `CloseConnection(c)` (naming the attempt that made it) in the
//!   same batch; a rejected one comes back in [`Rejected`].
//! - **R18 reconnect now**: `ReconnectNow` is taken whenever the Machine runs. After a
//!   stop, and while an attempt is in flight (the `AttemptingToConnect` or
//!   `ObtainedAddress` handler, a retry delay, a fetch or a dial out), it changes nothing.
//!   Otherwise the latest attempt's retry timer counts as fired now: the timer out is
//!   forgotten (its firing is refused as stale), so the next attempt or cycle starts as soon
//!   as nothing else holds it (at once when the Machine waited for that timer); when a
//!   connection is current and not yet asked to close (nor closed during its handler), it
//!   must be closed once (`CloseConnection` naming the attempt that made it); the failure
//!   count does not change, and the min-uptime wait is cancelled.
//! - **R19 healthy uptime**: with `min_uptime`, a success does not reset the failure count;
//!   `StartUptimeTimer { attempt, delay: min_uptime }` comes right before its
//!   `Emit(Connected)` (and never without `min_uptime`); `UptimeReached` is taken exactly
//!   while that attempt's connection is current, not reported closed, and its uptime still
//!   pending (else `UnknownAttempt` when another connection is current, `Unexpected`
//!   otherwise), and resets the count; a connection reported closed (`Disconnected`) while
//!   its uptime is pending adds one failure (the cycle's F de-duplication is untouched).
//! - **R11/R12 stop**: one `Stopped`, of the kind of the first stop input; no attempt, no
//!   failure and no `Connected` after it; `close` closes the live connection once; the
//!   Machine finishes as soon as nothing is live, and `Finished` is its last command.
//! - **R16 bad input**: each input is accepted exactly when the model says it is expected
//!   (late results of cancelled attempts may go either way: the Machine remembers 64
//!   attempts back); a rejected input comes back unchanged, with an error naming it, and
//!   leaves every query (and the `Debug` text) unchanged; no batch is longer than
//!   [`MAX_BATCH`] commands.
//! - **queries**: after each batch, `state()`, `current_connection()`, `current_attempt()`,
//!   `is_closed()`, `stop_kind()`, `is_finished()`, `consecutive_failures()`, `attempt()`,
//!   `retry_delay()`, `expecting()`, `is_closing_connection()`, `uptime_pending()` and
//!   `config()` agree with the model, and the Machine is
//!   waiting for something that can come (no stall).
//!
//! Use it through [`Checked`] (a Machine and its Checker together), or call
//! [`Checker::before_input`], [`Checker::after_input`] and [`Checker::after_poll`] around
//! your own calls of the Machine (the zero-allocation test does, to count only the
//! Machine's allocations).

use std::collections::VecDeque;
use std::fmt::{self, Debug, Write as _};
use std::time::Duration;

use persistent_connection::{
    AttemptId, Command, Config, Event, Expecting, Failure, Input, InputError, Jitter, Machine,
    Rejected, RetryPolicy, State, StopKind, TimerId, error_key,
};

/// How many recent steps a [`Violation`] quotes.
const TRACE_LEN: usize = 40;

/// The most commands one input may yield before the checker calls it a loop (R16). The
/// Machine's queue holds 8.
pub const MAX_BATCH: usize = 16;

/// A broken rule: which, what happened, and the steps that led to it.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The rule, e.g. `"R4 failure"` or `"one live connection"`.
    pub rule: &'static str,
    /// What was seen, and what the rule wanted.
    pub detail: String,
    /// The number of inputs fed and commands polled before the violation.
    pub step: u64,
    /// The last steps (inputs with their results, and commands), oldest first.
    pub trace: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rule {} broken at step {}: {}",
            self.rule, self.step, self.detail
        )?;
        writeln!(f, "last steps, oldest first:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

/// Builds a [`Violation`] (used by the simulation and the scripts for their own checks).
pub fn violation(rule: &'static str, detail: impl Into<String>) -> Violation {
    Violation {
        rule,
        detail: detail.into(),
        step: 0,
        trace: Vec::new(),
    }
}

/// The events whose handler gates progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    A,
    O,
    F,
    C,
    D,
}

/// Where the event grammar stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before the first `A`, or after a `D`: the next event is `A`.
    BeforeCycle,
    /// After `A`: `O`, `F` or `C` may come.
    Cycle,
    /// After `C`: the next event is `D`.
    Connected,
}

/// What a batch owes: each must be polled before the Machine falls quiet.
#[derive(Clone, Debug, PartialEq)]
enum Expected<A, C, E> {
    ObtainedAddress(A),
    Dial(A),
    Connected(C),
    Failed(Failure<E>),
    Cancel(AttemptId),
    /// A late connection to close, with the attempt that made it.
    CloseLate(AttemptId, C),
    /// The live connection, which `close()` must close, with the attempt that made it.
    CloseCurrent(AttemptId, C),
    Stopped(StopKind),
    Disconnected,
}

/// The model of one attempt.
#[derive(Clone, Debug)]
struct Attempt<A> {
    id: u64,
    /// The policy's delay (before jitter), once known.
    base: Option<Duration>,
    /// The delay after jitter, once known.
    retry: Option<Duration>,
    /// Virtual time since the attempt started, as far as its fired timers tell.
    elapsed: Duration,
    obtained: Option<A>,
    /// The failure count when it started.
    failures_at_start: u32,
    /// `ReconnectNow` made its retry timer count as fired (R18).
    skipped: bool,
}

impl<A> Attempt<A> {
    fn due(&self) -> bool {
        self.skipped || self.retry.is_some_and(|r| self.elapsed >= r)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timer {
    id: TimerId,
    /// The attempt in whose time frame `deadline` is measured.
    attempt: u64,
    deadline: Duration,
}

/// What the Machine shows from outside; a rejected input must leave all of it unchanged
/// (and its `Debug` text, which the [`Checker`] keeps apart: see [`DebugText`]).
#[derive(Debug)]
struct Snapshot<A, C, E> {
    state: State,
    current: Option<C>,
    current_attempt: Option<AttemptId>,
    closed: bool,
    stop_kind: Option<StopKind>,
    finished: bool,
    failures: u32,
    attempt: Option<AttemptId>,
    retry_delay: Option<Duration>,
    expecting: Expecting,
    uptime_pending: bool,
    /// Compared with [`same_config`]: `Config` is `PartialEq` through an `f64`, so NaN
    /// never equals itself.
    config: Config,
    /// Whether a command waits (a peek would build it, and so move the machine).
    has_command: bool,
    _types: core::marker::PhantomData<fn() -> (A, E)>,
}

impl<A, C, E> Snapshot<A, C, E>
where
    A: Clone + PartialEq + Debug,
    C: Clone + PartialEq + Debug,
    E: Clone + PartialEq + Debug,
{
    fn of(m: &Machine<A, C, E>) -> Self {
        Snapshot {
            state: m.state(),
            current: m.current_connection().cloned(),
            current_attempt: m.current_attempt(),
            closed: m.is_closed(),
            stop_kind: m.stop_kind(),
            finished: m.is_finished(),
            failures: m.consecutive_failures(),
            attempt: m.attempt(),
            retry_delay: m.retry_delay(),
            expecting: m.expecting(),
            uptime_pending: m.uptime_pending(),
            config: *m.config(),
            has_command: m.has_command(),
            _types: core::marker::PhantomData,
        }
    }

    /// Every field equal (the config by [`same_config`]).
    fn same(&self, other: &Self) -> bool {
        self.state == other.state
            && self.current == other.current
            && self.current_attempt == other.current_attempt
            && self.closed == other.closed
            && self.stop_kind == other.stop_kind
            && self.finished == other.finished
            && self.failures == other.failures
            && self.attempt == other.attempt
            && self.retry_delay == other.retry_delay
            && self.expecting == other.expecting
            && self.uptime_pending == other.uptime_pending
            && same_config(&self.config, &other.config)
            && self.has_command == other.has_command
    }
}

/// The Machine's `Debug` text, for the check that a rejected input leaves it unchanged
/// (R16). Formatting it is the costliest part of the checker, so it is done as little as
/// the check allows: the text is kept while it is known to be the Machine's (the Machine
/// changes only in `handle_input` and `poll_command`: the text goes stale when an input is
/// taken or a command comes out), so a rejected input after a rejected input formats the
/// Machine once, not twice; and the Machine after a rejection is compared with the text as
/// it is written, without being stored. A `poll_command()` that yields nothing must change
/// nothing either: if it changed the text, the next rejected input reports it.
struct DebugText {
    text: String,
    /// `text` is the Machine's `Debug` text now.
    fresh: bool,
}

impl DebugText {
    fn new() -> Self {
        DebugText {
            text: String::new(),
            fresh: false,
        }
    }

    /// Makes `text` the Machine's `Debug` text (a no-op while it is fresh).
    fn refresh(&mut self, m: &impl Debug) {
        if !self.fresh {
            self.text.clear();
            // Writing to a String never fails; a Debug impl that fails leaves a partial
            // text, compared as it is.
            let _ = write!(self.text, "{m:?}");
            self.fresh = true;
        }
    }

    /// The Machine changed (or may have).
    fn stale(&mut self) {
        self.fresh = false;
    }

    /// Whether `m`'s `Debug` text is still `text` (which must be fresh as of before the
    /// input), compared piece by piece as `m` is formatted.
    fn unchanged(&self, m: &impl Debug) -> bool {
        struct Compare<'a> {
            rest: &'a [u8],
            same: bool,
        }
        impl fmt::Write for Compare<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let s = s.as_bytes();
                if !self
                    .rest
                    .get(..s.len())
                    .is_some_and(|head| same_bytes(head, s))
                {
                    self.same = false;
                    // Stop formatting: the texts differ.
                    return Err(fmt::Error);
                }
                self.rest = &self.rest[s.len()..];
                Ok(())
            }
        }
        let mut cmp = Compare {
            rest: self.text.as_bytes(),
            same: true,
        };
        // A Debug impl that fails by itself is compared as far as it wrote (as `refresh`
        // keeps it).
        let _ = write!(cmp, "{m:?}");
        cmp.same && cmp.rest.is_empty()
    }
}

/// `a == b`, eight bytes at a time. Not slice `==`: that calls `memcmp`, which the fuzzer
/// intercepts (and records) on every call, and the pieces of a `Debug` text are short and
/// many.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ta, tb) = (a8.remainder(), b8.remainder());
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or_default());
    a8.zip(b8).all(|(x, y)| word(x) == word(y)) && ta.iter().zip(tb).all(|(x, y)| x == y)
}

/// Whether two configs have the same `Debug` text, without formatting them (this runs after
/// every batch): `==` on everything but the backoff multiplier, which is compared as its
/// text would be (equal bits, or both NaN: so NaN equals NaN, and `0.0` differs from
/// `-0.0`). A float field added to `Config` later would make `==` fail on NaN: a loud false
/// alarm, never a silent pass.
pub fn same_config(a: &Config, b: &Config) -> bool {
    /// The config with its multiplier (if its policy has one) taken out.
    fn split(c: &Config) -> (Config, Option<f64>) {
        let mut rest = *c;
        let multiplier = match &mut rest.retry_policy {
            RetryPolicy::Exponential(e) => Some(std::mem::replace(&mut e.multiplier, 0.0)),
            _ => None,
        };
        (rest, multiplier)
    }
    let same_text = |x: f64, y: f64| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan());
    if a == b {
        // The usual case, at the cost of `==`: only the sign of a zero multiplier can
        // still differ.
        return split(a).1.map(f64::to_bits) == split(b).1.map(f64::to_bits);
    }
    // A NaN multiplier makes `==` false: the rest must be equal, the multipliers the same
    // text.
    let ((ra, ma), (rb, mb)) = (split(a), split(b));
    ra == rb
        && match (ma, mb) {
            (Some(x), Some(y)) => same_text(x, y),
            (x, y) => x.is_none() && y.is_none(),
        }
}

/// One remembered step, for the trace of a [`Violation`].
enum Step<A, C, E> {
    Fed(Input<A, C, E>, Result<(), InputError>),
    Polled(Command<A, C, E>),
}

/// What [`Checker::before_input`] hands to [`Checker::after_input`]: a copy of the input,
/// the Machine as it was, and whether the model expects the input to be taken.
pub struct PendingInput<A, C, E> {
    input: Input<A, C, E>,
    /// Taken only when the input may be rejected: a rejection where the model wants the
    /// input taken is a violation by itself.
    before: Option<Snapshot<A, C, E>>,
    drained: bool,
    /// `Some(true)`: must be taken; `Some(false)`: must be rejected; `None`: either.
    expect_accept: Option<bool>,
}

/// Watches one Machine and checks every rule it can, step by step. See the module docs.
pub struct Checker<A, C, E> {
    config: Config,
    step: u64,
    trace: VecDeque<Step<A, C, E>>,
    batch: usize,

    phase: Phase,
    cycles: u64,
    cycle_address: Option<A>,
    cycle_error: Option<u64>,
    handler: Option<Ev>,
    attempt_may_start: bool,

    latest: Option<Attempt<A>>,
    fetch_out: Option<AttemptId>,
    dial_out: Option<AttemptId>,
    delay_out: Option<u32>,
    custom_delay: Option<Duration>,
    timer: Option<Timer>,
    max_timer: u64,
    /// The command polled just before, if it was a `StartTimer`.
    just_started: Option<(TimerId, Duration)>,
    /// Cancelled attempts whose result may still come, and whether it is a dial result.
    late: Vec<(AttemptId, bool)>,

    owned: Vec<C>,
    live: Option<(C, AttemptId)>,
    current: Option<(C, AttemptId)>,
    close_current_owed: bool,
    /// The current connection was asked to close (by close or reconnect_now); kept until
    /// `Disconnected`, even once it has closed (what `is_closing_connection()` reports).
    close_asked: bool,

    first_stop: Option<StopKind>,
    close_requested: bool,
    stop_outcome_seen: bool,
    finished: bool,
    failures: u32,

    /// R19: the current connection has not yet been current for `min_uptime`.
    uptime_pending: bool,
    /// The attempt of the command polled just before, if it was a `StartUptimeTimer`.
    just_uptime: Option<AttemptId>,
    /// The attempt named by the latest `StartUptimeTimer`, if any.
    last_uptime_timer: Option<AttemptId>,

    expected: Vec<Expected<A, C, E>>,

    /// The Machine's `Debug` text, for the rejected inputs (R16).
    debug: DebugText,
}

impl<A, C, E> Checker<A, C, E>
where
    A: Clone + PartialEq + Debug,
    C: Clone + PartialEq + Debug,
    E: Clone + PartialEq + Debug,
{
    /// A checker for a Machine just made with `config` (no input fed, nothing polled). The
    /// seed does not matter: the checker allows any delay within the jitter's bounds.
    pub fn new(mut config: Config) -> Self {
        crate::watchdog::arm();
        // A zero connect timeout means no bound, however it was set (R7 of the Machine's
        // docs; the field is public).
        config.connect_timeout = config.connect_timeout.filter(|t| !t.is_zero());
        // The same for a zero min uptime (R19).
        config.min_uptime = config.min_uptime.filter(|t| !t.is_zero());
        Checker {
            config,
            step: 0,
            trace: VecDeque::with_capacity(TRACE_LEN),
            batch: 0,
            phase: Phase::BeforeCycle,
            cycles: 0,
            cycle_address: None,
            cycle_error: None,
            handler: None,
            attempt_may_start: false,
            latest: None,
            fetch_out: None,
            dial_out: None,
            delay_out: None,
            custom_delay: None,
            timer: None,
            max_timer: 0,
            just_started: None,
            late: Vec::new(),
            owned: Vec::new(),
            live: None,
            current: None,
            close_current_owed: false,
            close_asked: false,
            first_stop: None,
            close_requested: false,
            stop_outcome_seen: false,
            finished: false,
            failures: 0,
            uptime_pending: false,
            just_uptime: None,
            last_uptime_timer: None,
            expected: Vec::new(),
            debug: DebugText::new(),
        }
    }

    /// Inputs fed plus commands polled so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Whether the model has seen `Command::Finished`.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The policy's delay (before jitter) of the latest attempt, once known.
    pub fn latest_attempt_base_delay(&self) -> Option<Duration> {
        self.latest.as_ref().and_then(|a| a.base)
    }

    /// The connection handed out and not yet reported closed, with its attempt.
    pub fn live_connection(&self) -> Option<&(C, AttemptId)> {
        self.live.as_ref()
    }

    /// Whether the handler of a reported event runs (`EventHandled` is owed).
    pub fn handler_running(&self) -> bool {
        self.handler.is_some()
    }

    /// The attempt whose address fetch is out, if any.
    pub fn fetch_out(&self) -> Option<AttemptId> {
        self.fetch_out
    }

    /// The attempt whose dial is out, if any.
    pub fn dial_out(&self) -> Option<AttemptId> {
        self.dial_out
    }

    /// Whether a `ComputeRetryDelay` waits for its `RetryDelay`.
    pub fn delay_wanted(&self) -> bool {
        self.delay_out.is_some()
    }

    /// The timer out, if any.
    pub fn timer_out(&self) -> Option<TimerId> {
        self.timer.map(|t| t.id)
    }

    /// The newest timer id the Machine has started (0: none yet); every other id up to it
    /// has fired or been replaced.
    pub fn newest_timer(&self) -> u64 {
        self.max_timer
    }

    /// Cancelled attempts whose result may still come, and whether it is a dial result
    /// (else an address), oldest first.
    pub fn late_results(&self) -> &[(AttemptId, bool)] {
        &self.late
    }

    /// The attempt whose uptime timer (R19) may fire now and be taken: its connection is
    /// current, not reported closed, and its uptime still pending.
    pub fn uptime_timer_out(&self) -> Option<AttemptId> {
        match (&self.current, &self.live) {
            (Some((_, a)), Some(_)) if self.uptime_pending => Some(*a),
            _ => None,
        }
    }

    /// The attempt named by the latest `StartUptimeTimer` (R19), whether its timer still
    /// counts or not.
    pub fn last_uptime_timer(&self) -> Option<AttemptId> {
        self.last_uptime_timer
    }

    /// Whether the model holds the current connection's uptime as pending (R19).
    pub fn uptime_pending(&self) -> bool {
        self.uptime_pending
    }

    /// The model's failure count (R4, R19).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The latest attempt, once one has started.
    pub fn latest_attempt(&self) -> Option<AttemptId> {
        self.latest.as_ref().map(|a| AttemptId(a.id))
    }

    /// The last steps seen, oldest first.
    pub fn trace(&self) -> Vec<String> {
        self.trace
            .iter()
            .map(|step| match step {
                Step::Fed(input, Ok(())) => format!("feed {input:?} -> ok"),
                Step::Fed(input, Err(e)) => format!("feed {input:?} -> {e}"),
                Step::Polled(cmd) => format!("poll {cmd:?}"),
            })
            .collect()
    }

    fn fail(&self, rule: &'static str, detail: impl Into<String>) -> Violation {
        Violation {
            rule,
            detail: detail.into(),
            step: self.step,
            trace: self.trace(),
        }
    }

    /// Remembers a step; it is put into words only if a rule breaks.
    fn note(&mut self, step: Step<A, C, E>) {
        if self.trace.len() == TRACE_LEN {
            self.trace.pop_front();
        }
        self.trace.push_back(step);
    }

    fn stopped(&self) -> bool {
        self.first_stop.is_some()
    }

    fn timeout(&self) -> Option<Duration> {
        self.config.connect_timeout
    }

    fn timeout_hit(&self, att: &Attempt<A>) -> bool {
        self.timeout().is_some_and(|t| att.elapsed >= t)
    }

    fn latest_due(&self) -> bool {
        self.latest.as_ref().is_none_or(Attempt::due)
    }

    fn latest_id(&self) -> u64 {
        self.latest.as_ref().map_or(0, |a| a.id)
    }

    fn take_expected(&mut self, want: &Expected<A, C, E>) -> bool {
        match self.expected.iter().position(|e| e == want) {
            Some(i) => {
                self.expected.remove(i);
                true
            }
            None => false,
        }
    }

    /// What the model says of an input: must be taken, must be rejected, or either.
    fn predict(&self, input: &Input<A, C, E>) -> Option<bool> {
        if self.finished {
            return Some(false);
        }
        let late = |a: &AttemptId, dial: bool| self.late.contains(&(*a, dial));
        match input {
            // A late result of the kind that was cancelled may be taken (and closed) or, if
            // very old, refused: either keeps the rules. One of the other kind is refused.
            Input::AddressObtained { attempt, .. } => {
                if self.fetch_out == Some(*attempt) {
                    Some(true)
                } else if late(attempt, false) {
                    None
                } else {
                    Some(false)
                }
            }
            Input::Dialed { attempt, .. } => {
                if self.dial_out == Some(*attempt) {
                    Some(true)
                } else if late(attempt, true) {
                    None
                } else {
                    Some(false)
                }
            }
            Input::TimerFired(id) => Some(self.timer.is_some_and(|t| t.id == *id)),
            Input::EventHandled => Some(self.handler.is_some()),
            Input::RetryDelay(_) => Some(self.delay_out.is_some()),
            Input::ConnectionClosed { attempt } => {
                Some(self.live.as_ref().is_some_and(|(_, a)| a == attempt))
            }
            Input::Close
            | Input::Abort
            | Input::CloseWhenCurrentConnectionIsClosed
            | Input::ReconnectNow => Some(true),
            Input::UptimeReached { attempt } => Some(self.uptime_timer_out() == Some(*attempt)),
            // An input this checker does not know: `apply_input` reports it if taken.
            _ => None,
        }
    }

    /// Call just before `machine.handle_input(input)`. Only stop inputs (`Close`, `Abort`,
    /// `CloseWhenCurrentConnectionIsClosed`) may be fed while commands wait to be polled: a
    /// caller's `close()` can come at any moment, while the other inputs answer commands.
    pub fn before_input(
        &mut self,
        machine: &Machine<A, C, E>,
        input: &Input<A, C, E>,
    ) -> Result<PendingInput<A, C, E>, Violation> {
        let drained = !machine.has_command();
        let is_stop = matches!(
            input,
            Input::Close | Input::Abort | Input::CloseWhenCurrentConnectionIsClosed
        );
        if !drained && !is_stop {
            return Err(self.fail(
                "driver contract",
                format!("{input:?} fed while commands wait to be polled (test harness bug)"),
            ));
        }
        if drained {
            self.batch = 0;
        }
        let expect_accept = self.predict(input);
        let before = (expect_accept != Some(true) || !drained).then(|| {
            self.debug.refresh(machine);
            Snapshot::of(machine)
        });
        Ok(PendingInput {
            input: input.clone(),
            before,
            drained,
            expect_accept,
        })
    }

    /// Call right after `machine.handle_input`, with what it returned.
    pub fn after_input(
        &mut self,
        machine: &Machine<A, C, E>,
        pending: PendingInput<A, C, E>,
        result: &Result<(), Rejected<A, C, E>>,
    ) -> Result<(), Violation> {
        self.step += 1;
        let PendingInput {
            input,
            before,
            drained,
            expect_accept,
        } = pending;
        match result {
            Ok(()) => self.note(Step::Fed(input.clone(), Ok(()))),
            Err(r) => self.note(Step::Fed(input.clone(), Err(r.error))),
        }
        match result {
            Ok(()) => {
                self.debug.stale();
                if expect_accept == Some(false) {
                    return Err(self.fail(
                        "R16 bad input",
                        format!(
                            "took {input:?}, which nothing asked for (the model: {})",
                            self.describe()
                        ),
                    ));
                }
                self.apply_input(input)
            }
            Err(rejected) => {
                let finished_queued = !drained
                    && matches!(rejected.error, InputError::Finished { .. })
                    && machine.is_finished();
                // The Machine takes an input only once its commands have all been polled
                // (its queue holds one input's worth): before that, Backlog is right.
                let backlog = !drained && matches!(rejected.error, InputError::Backlog { .. });
                if expect_accept == Some(true) && !finished_queued && !backlog {
                    return Err(self.fail(
                        "R16 bad input",
                        format!(
                            "rejected {input:?}, which it asked for: {} (the model: {})",
                            rejected.error,
                            self.describe()
                        ),
                    ));
                }
                let Some(before) = before else {
                    return Err(self.fail("checker", "rejected input without a snapshot"));
                };
                self.check_rejection(machine, &input, &before, rejected, drained)
            }
        }
    }

    fn check_rejection(
        &self,
        machine: &Machine<A, C, E>,
        input: &Input<A, C, E>,
        before: &Snapshot<A, C, E>,
        rejected: &Rejected<A, C, E>,
        drained: bool,
    ) -> Result<(), Violation> {
        let kind = input.kind();
        let err = rejected.error;
        let names_input = match err {
            InputError::Finished { got }
            | InputError::Unexpected { got, .. }
            | InputError::UnknownAttempt { got, .. }
            | InputError::Backlog { got, .. } => got == kind,
            InputError::StaleTimer { got, .. } => {
                matches!(input, Input::TimerFired(id) if *id == got)
            }
            _ => false,
        };
        if !names_input {
            return Err(self.fail(
                "R16 bad input",
                format!("the error {err:?} does not name the input {input:?}"),
            ));
        }
        if self.finished != matches!(err, InputError::Finished { .. }) && drained {
            return Err(self.fail(
                "R16 bad input",
                format!(
                    "error {err:?}, but the machine has {}finished",
                    if self.finished { "" } else { "not " }
                ),
            ));
        }
        match err {
            InputError::Backlog { .. } if drained => {
                return Err(self.fail(
                    "R16 bad input",
                    "Backlog error although every command had been polled",
                ));
            }
            InputError::Unexpected { expected, .. } if expected != before.expecting => {
                return Err(self.fail(
                    "R16 bad input",
                    format!(
                        "the error says it expects {expected:?}, expecting() says {:?}",
                        before.expecting
                    ),
                ));
            }
            InputError::StaleTimer { outstanding, .. }
                if drained && outstanding != self.timer.map(|t| t.id) =>
            {
                return Err(self.fail(
                    "R16 bad input",
                    format!(
                        "the error names {outstanding:?} as the timer out, the model has {:?}",
                        self.timer
                    ),
                ));
            }
            _ => {}
        }
        // R19: a firing for another connection than the current one names the attempt.
        if let (Input::UptimeReached { attempt }, true) = (input, drained && !self.finished) {
            let other = self.current.as_ref().is_some_and(|(_, a)| a != attempt);
            let ok = match err {
                InputError::UnknownAttempt {
                    attempt: named,
                    current,
                    ..
                } => other && named == *attempt && Some(current) == self.latest_attempt(),
                InputError::Unexpected { .. } => !other,
                _ => false,
            };
            if !ok {
                return Err(self.fail(
                    "R19 uptime",
                    format!(
                        "{input:?} refused with {err:?}; the model has {:?} current (want \
                         UnknownAttempt naming the latest attempt when another connection \
                         is current, Unexpected otherwise)",
                        self.current
                    ),
                ));
            }
        }
        if rejected.input != *input {
            return Err(self.fail(
                "R16 bad input",
                format!(
                    "the rejected input came back changed: fed {input:?}, got {:?}",
                    rejected.input
                ),
            ));
        }
        let after = Snapshot::of(machine);
        if !after.same(before) || !self.debug.unchanged(machine) {
            return Err(self.fail(
                "R16 bad input",
                format!(
                    "a rejected input changed the machine:\n before {before:?}\n        {}\n \
                     after  {after:?}\n        {machine:?}",
                    self.debug.text
                ),
            ));
        }
        Ok(())
    }

    fn apply_input(&mut self, input: Input<A, C, E>) -> Result<(), Violation> {
        match input {
            Input::AddressObtained { attempt, result } => {
                if self.fetch_out == Some(attempt) {
                    self.fetch_out = None;
                    match result {
                        Ok(a) => {
                            if let Some(att) = self.latest.as_mut() {
                                att.obtained = Some(a.clone());
                            }
                            if self.cycle_address.as_ref() == Some(&a) {
                                self.expected.push(Expected::Dial(a.clone()));
                            } else {
                                self.expected.push(Expected::ObtainedAddress(a.clone()));
                            }
                            self.cycle_address = Some(a);
                        }
                        Err(e) => self.expected.push(Expected::Failed(Failure::Error(e))),
                    }
                } else {
                    self.take_late(attempt, false)?;
                }
            }
            Input::Dialed { attempt, result } => {
                if self.dial_out == Some(attempt) {
                    self.dial_out = None;
                    match result {
                        Ok(c) => {
                            self.owned.push(c.clone());
                            self.expected.push(Expected::Connected(c));
                        }
                        Err(e) => self.expected.push(Expected::Failed(Failure::Error(e))),
                    }
                } else {
                    self.take_late(attempt, true)?;
                    if let Ok(c) = result {
                        self.owned.push(c.clone());
                        self.expected.push(Expected::CloseLate(attempt, c));
                    }
                }
            }
            Input::TimerFired(_) => {
                let Some(timer) = self.timer.take() else {
                    return Err(self.fail("one timer", "a timer fired with none out"));
                };
                let stopped = self.stopped();
                let (fetch_out, dial_out, timeout) =
                    (self.fetch_out, self.dial_out, self.timeout());
                if let Some(att) = self.latest.as_mut().filter(|a| a.id == timer.attempt) {
                    let was_hit = timeout.is_some_and(|t| att.elapsed >= t);
                    att.elapsed = att.elapsed.max(timer.deadline);
                    let hit = timeout.is_some_and(|t| att.elapsed >= t);
                    let id = AttemptId(att.id);
                    if hit
                        && !was_hit
                        && !stopped
                        && (fetch_out == Some(id) || dial_out == Some(id))
                    {
                        self.expected.push(Expected::Cancel(id));
                        self.expected.push(Expected::Failed(Failure::TimedOut {
                            after: timeout.unwrap_or_default(),
                        }));
                    }
                }
            }
            Input::EventHandled => match self.handler.take() {
                Some(Ev::A) | Some(Ev::F) => self.attempt_may_start = true,
                Some(Ev::O) => {
                    if !self.stopped() {
                        let att = self.latest.clone();
                        match att {
                            Some(att) if self.timeout_hit(&att) => {
                                self.expected.push(Expected::Failed(Failure::TimedOut {
                                    after: self.timeout().unwrap_or_default(),
                                }))
                            }
                            Some(Attempt {
                                obtained: Some(a), ..
                            }) => self.expected.push(Expected::Dial(a)),
                            _ => {
                                return Err(self.fail(
                                    "R2 attempt",
                                    "ObtainedAddress handled, but no address was obtained",
                                ));
                            }
                        }
                    }
                }
                Some(Ev::C) => {
                    if self.live.is_none() {
                        self.expected.push(Expected::Disconnected);
                    }
                }
                Some(Ev::D) => self.phase = Phase::BeforeCycle,
                None => {
                    return Err(
                        self.fail("R6 handler", "EventHandled taken with no handler running")
                    );
                }
            },
            Input::RetryDelay(d) => {
                self.delay_out = None;
                self.custom_delay = Some(d);
            }
            Input::ConnectionClosed { .. } => {
                self.live = None;
                self.close_current_owed = false;
                self.expected
                    .retain(|e| !matches!(e, Expected::CloseCurrent(..)));
                if self.handler != Some(Ev::C) {
                    self.expected.push(Expected::Disconnected);
                }
            }
            Input::Close => {
                self.close_requested = true;
                self.stop_input(StopKind::Close);
                if let Some((c, a)) = &self.live {
                    if !self.close_current_owed {
                        self.close_current_owed = true;
                        self.close_asked = true;
                        self.expected.push(Expected::CloseCurrent(*a, c.clone()));
                    }
                }
            }
            Input::Abort => self.stop_input(StopKind::Abort),
            Input::CloseWhenCurrentConnectionIsClosed => {
                self.stop_input(StopKind::WhenCurrentConnectionCloses)
            }
            Input::ReconnectNow => self.reconnect_now(),
            Input::UptimeReached { .. } => {
                // R19: it stayed up long enough; the backoff starts over.
                self.uptime_pending = false;
                self.failures = 0;
            }
            other => {
                return Err(self.fail(
                    "checker",
                    format!("the Machine took {other:?}, an input this checker does not know"),
                ));
            }
        }
        Ok(())
    }

    /// R18: `ReconnectNow`, fed with every command polled (the driver's contract).
    fn reconnect_now(&mut self) {
        if self.stopped() {
            return;
        }
        let in_flight = self.fetch_out.is_some()
            || self.dial_out.is_some()
            || self.delay_out.is_some()
            || matches!(self.handler, Some(Ev::A | Ev::O));
        if in_flight {
            return;
        }
        // Waiting for the connection to close (or its Connected handler runs), in a
        // FailedToConnect or Disconnected handler, or waiting for the retry timer: the
        // timer counts as fired now, and the one out is forgotten.
        if let Some(att) = self.latest.as_mut() {
            att.skipped = true;
        }
        self.timer = None;
        if self.current.is_some() {
            // Not a young death (R19): the count stays as it is.
            self.uptime_pending = false;
            if let Some((c, a)) = &self.live {
                if !self.close_current_owed {
                    self.close_current_owed = true;
                    self.close_asked = true;
                    self.expected.push(Expected::CloseCurrent(*a, c.clone()));
                }
            }
        }
    }

    /// The first stop input owes `Stopped` of its kind (R11, R12); later ones nothing.
    fn stop_input(&mut self, kind: StopKind) {
        if self.first_stop.is_none() {
            self.first_stop = Some(kind);
            self.expected.push(Expected::Stopped(kind));
        }
    }

    fn take_late(&mut self, attempt: AttemptId, dial: bool) -> Result<(), Violation> {
        match self.late.iter().position(|l| *l == (attempt, dial)) {
            Some(i) => {
                self.late.remove(i);
                Ok(())
            }
            None => Err(self.fail(
                "R16 bad input",
                format!("took a result for {attempt}, which is neither out nor cancelled"),
            )),
        }
    }

    /// Call right after `machine.poll_command()`, with what it returned. `None` ends a
    /// batch: then the checker compares every query with its model.
    pub fn after_poll(
        &mut self,
        machine: &Machine<A, C, E>,
        command: Option<&Command<A, C, E>>,
    ) -> Result<(), Violation> {
        let Some(cmd) = command else {
            return self.quiescent(machine);
        };
        self.step += 1;
        self.batch += 1;
        self.debug.stale();
        self.note(Step::Polled(cmd.clone()));
        if self.finished {
            return Err(self.fail(
                "nothing after Finished",
                format!("{cmd:?} after Command::Finished"),
            ));
        }
        if self.batch > MAX_BATCH {
            return Err(self.fail(
                "R16 no loop",
                format!("more than {MAX_BATCH} commands for one input"),
            ));
        }
        let just_started = self.just_started.take();
        // R19: the uptime timer starts right before `Connected`, for the same attempt.
        let just_uptime = self.just_uptime.take();
        let connected_attempt = match cmd {
            Command::Emit {
                event: Event::Connected(_),
                attempt,
            } => Some(*attempt),
            _ => None,
        };
        match (self.config.min_uptime, just_uptime, connected_attempt) {
            (_, Some(a), Some(c)) if Some(a) == c => {}
            (_, Some(a), _) => {
                return Err(self.fail(
                    "R19 uptime",
                    format!("StartUptimeTimer for {a} is followed by {cmd:?}, not its Connected"),
                ));
            }
            (Some(_), None, Some(c)) => {
                return Err(self.fail(
                    "R19 uptime",
                    format!("Connected of {c:?} without a StartUptimeTimer just before it"),
                ));
            }
            _ => {}
        }
        // R6: every Emit (and only an Emit) starts a handler, and only one runs at a time.
        if let Some(h) = self.handler {
            let gated = matches!(
                cmd,
                Command::Emit { .. }
                    | Command::StartUptimeTimer { .. }
                    | Command::FailedAgain { .. }
                    | Command::ComputeRetryDelay { .. }
                    | Command::FetchAddress { .. }
                    | Command::Dial { .. }
                    | Command::Finished
            );
            if gated {
                return Err(self.fail(
                    "R6 handler",
                    format!("{cmd:?} while the handler of {h:?} runs"),
                ));
            }
        }
        match cmd {
            Command::Emit { event, attempt } => self.on_emit(event, *attempt),
            Command::FailedAgain { attempt, error } => self.on_failure(*attempt, error, true),
            Command::Stopped(kind) => self.on_stopped(*kind),
            Command::ComputeRetryDelay {
                attempt,
                consecutive_failures,
            } => self.on_compute(*attempt, *consecutive_failures),
            Command::StartTimer { timer, delay } => {
                if timer.0 <= self.max_timer {
                    return Err(self.fail(
                        "one timer",
                        format!("{timer} is not newer than timer #{}", self.max_timer),
                    ));
                }
                self.max_timer = timer.0;
                let att = self.latest.as_ref();
                self.timer = Some(Timer {
                    id: *timer,
                    attempt: att.map_or(0, |a| a.id),
                    deadline: att
                        .map_or(Duration::ZERO, |a| a.elapsed)
                        .saturating_add(*delay),
                });
                self.just_started = Some((*timer, *delay));
                Ok(())
            }
            Command::StartUptimeTimer { attempt, delay } => {
                if self.config.min_uptime != Some(*delay) {
                    return Err(self.fail(
                        "R19 uptime",
                        format!(
                            "StartUptimeTimer of {delay:?} for {attempt}; min_uptime is {:?}",
                            self.config.min_uptime
                        ),
                    ));
                }
                if !self
                    .expected
                    .iter()
                    .any(|e| matches!(e, Expected::Connected(_)))
                {
                    return Err(self.fail(
                        "R19 uptime",
                        format!("StartUptimeTimer for {attempt} with no connection to hand out"),
                    ));
                }
                self.just_uptime = Some(*attempt);
                self.last_uptime_timer = Some(*attempt);
                Ok(())
            }
            Command::FetchAddress { attempt } => self.on_fetch(machine, *attempt, just_started),
            Command::Dial {
                attempt,
                address,
                consecutive_failures,
            } => self.on_dial(*attempt, address, *consecutive_failures),
            Command::CancelAttempt { attempt } => {
                let dial = if self.fetch_out == Some(*attempt) {
                    self.fetch_out = None;
                    false
                } else if self.dial_out == Some(*attempt) {
                    self.dial_out = None;
                    true
                } else {
                    return Err(self.fail(
                        "R11 cancel",
                        format!("CancelAttempt for {attempt}, whose fetch or dial is not out"),
                    ));
                };
                let hit = self.latest.as_ref().is_some_and(|a| self.timeout_hit(a));
                if !self.stopped() && !hit {
                    return Err(self.fail(
                        "R11 cancel",
                        format!("{attempt} cancelled with no stop and no timeout"),
                    ));
                }
                self.take_expected(&Expected::Cancel(*attempt));
                self.late.push((*attempt, dial));
                Ok(())
            }
            Command::CloseConnection {
                attempt,
                connection: c,
            } => {
                if self.take_expected(&Expected::CloseLate(*attempt, c.clone())) {
                    if let Some(i) = self.owned.iter().position(|o| o == c) {
                        self.owned.remove(i);
                    }
                    return Ok(());
                }
                if self.take_expected(&Expected::CloseCurrent(*attempt, c.clone())) {
                    return Ok(());
                }
                Err(self.fail(
                    "R11 close",
                    format!(
                        "CloseConnection({c:?} of {attempt}): not a late result of that \
                         attempt, nor the live connection that close() or reconnect_now() \
                         must close (live: {:?}, close requested: {})",
                        self.live, self.close_requested
                    ),
                ))
            }
            Command::Finished => self.on_finished(),
        }
    }

    /// Checks the attempt an `Emit` names: none for `AttemptingToConnect`, else `want`.
    fn check_emit_attempt(
        &self,
        event: &Event<A, C, Failure<E>>,
        got: Option<AttemptId>,
        want: Option<AttemptId>,
    ) -> Result<(), Violation> {
        if got == want {
            return Ok(());
        }
        Err(self.fail(
            "R2 attempt",
            format!(
                "Emit of {} names {got:?}; the attempt it concerns is {want:?}",
                event.name()
            ),
        ))
    }

    fn on_emit(
        &mut self,
        event: &Event<A, C, Failure<E>>,
        attempt: Option<AttemptId>,
    ) -> Result<(), Violation> {
        let latest = self.latest_attempt();
        match event {
            Event::AttemptingToConnect => {
                self.check_emit_attempt(event, attempt, None)?;
                if self.phase != Phase::BeforeCycle {
                    return Err(self.fail(
                        "R1 grammar",
                        format!("AttemptingToConnect in phase {:?}", self.phase),
                    ));
                }
                if self.stop_outcome_seen {
                    return Err(self.fail("R11 stop", "a new cycle after the stop"));
                }
                if !self.latest_due() {
                    return Err(self.fail(
                        "R7 retry delay",
                        "a new cycle before the last attempt's retry delay passed",
                    ));
                }
                self.phase = Phase::Cycle;
                self.cycles += 1;
                self.cycle_address = None;
                self.cycle_error = None;
                self.attempt_may_start = false;
                self.handler = Some(Ev::A);
            }
            Event::ObtainedAddress(a) => {
                self.check_emit_attempt(event, attempt, latest)?;
                if self.phase != Phase::Cycle {
                    return Err(self.fail(
                        "R1 grammar",
                        format!("ObtainedAddress in phase {:?}", self.phase),
                    ));
                }
                if !self.take_expected(&Expected::ObtainedAddress(a.clone())) {
                    return Err(self.fail(
                        "R2 attempt",
                        format!(
                            "ObtainedAddress({a:?}) not owed: it must follow a new address \
                             (the cycle's last: {:?})",
                            self.cycle_address
                        ),
                    ));
                }
                self.handler = Some(Ev::O);
            }
            Event::Disconnected => {
                let made_by = self.current.as_ref().map(|(_, a)| *a);
                if self.phase != Phase::Connected {
                    return Err(self.fail(
                        "R1 grammar",
                        format!("Disconnected in phase {:?}", self.phase),
                    ));
                }
                self.check_emit_attempt(event, attempt, made_by)?;
                if self.live.is_some() || !self.take_expected(&Expected::Disconnected) {
                    return Err(self.fail(
                        "R5 success",
                        "Disconnected before the connection closed or before the Connected \
                         handler finished",
                    ));
                }
                if self.uptime_pending {
                    // R19: it died young; it counts as a failed attempt (no F, and the
                    // cycle's F de-duplication key is untouched).
                    self.uptime_pending = false;
                    self.failures = self.failures.saturating_add(1);
                }
                self.current = None;
                self.close_asked = false;
                self.phase = Phase::BeforeCycle;
                self.handler = Some(Ev::D);
            }
            Event::Connected(c) => {
                self.check_emit_attempt(event, attempt, latest)?;
                self.on_connected(c)?;
            }
            Event::FailedToConnect(error) => {
                let Some(attempt) = attempt else {
                    return Err(self.fail("R2 attempt", "FailedToConnect names no attempt"));
                };
                self.on_failure(attempt, error, false)?;
            }
        }
        Ok(())
    }

    /// `Connected`: the attempt's outcome and its event at once (R3, R5).
    fn on_connected(&mut self, c: &C) -> Result<(), Violation> {
        if self.phase != Phase::Cycle {
            return Err(self.fail("R1 grammar", format!("Connected in phase {:?}", self.phase)));
        }
        if self.stop_outcome_seen {
            return Err(self.fail("R12 abort", "a connection handed out after the stop"));
        }
        if self.live.is_some() || self.current.is_some() {
            return Err(self.fail(
                "one live connection",
                format!("{c:?} handed out while {:?} is live", self.live),
            ));
        }
        if !self.take_expected(&Expected::Connected(c.clone())) {
            return Err(self.fail(
                "R5 success",
                format!("Connected({c:?}) without a successful dial of it"),
            ));
        }
        if let Some(i) = self.owned.iter().position(|o| o == c) {
            self.owned.remove(i);
        }
        let id = AttemptId(self.latest_id());
        // close() came in the middle of this batch, after the dial result that made `c`
        // current: close must close it.
        self.close_current_owed = self.close_requested;
        self.close_asked = self.close_requested;
        if self.close_requested {
            self.expected.push(Expected::CloseCurrent(id, c.clone()));
        }
        // R5; with min_uptime (R19), only once it has stayed up that long.
        if self.config.min_uptime.is_some() {
            self.uptime_pending = true;
        } else {
            self.failures = 0;
        }
        self.live = Some((c.clone(), id));
        self.current = Some((c.clone(), id));
        self.phase = Phase::Connected;
        self.handler = Some(Ev::C);
        Ok(())
    }

    /// A failed attempt: `Emit(FailedToConnect)` (`repeated` false) or `FailedAgain` (R3, R4).
    fn on_failure(
        &mut self,
        attempt: AttemptId,
        error: &Failure<E>,
        repeated: bool,
    ) -> Result<(), Violation> {
        let what = if repeated {
            "FailedAgain"
        } else {
            "FailedToConnect"
        };
        if self.phase != Phase::Cycle {
            return Err(self.fail("R1 grammar", format!("{what} in phase {:?}", self.phase)));
        }
        if self.stop_outcome_seen {
            return Err(self.fail(
                "R11 stop",
                format!("an attempt failed with {error:?} after the stop"),
            ));
        }
        if Some(attempt) != self.latest_attempt() {
            return Err(self.fail(
                "R4 failure",
                format!(
                    "{what} names {attempt}; the attempt that failed is {:?}",
                    self.latest_attempt()
                ),
            ));
        }
        if !self.take_expected(&Expected::Failed(error.clone())) {
            return Err(self.fail(
                "R4 failure",
                format!(
                    "{what}({error:?}) is not the error the attempt ended with (owed: {:?})",
                    self.expected
                ),
            ));
        }
        let key = failure_key(error);
        let want_repeated = self.cycle_error == Some(key);
        if repeated != want_repeated {
            return Err(self.fail(
                "R4 failure",
                format!(
                    "{what}, but the error {} the last of this cycle",
                    if want_repeated {
                        "equals"
                    } else {
                        "differs from"
                    }
                ),
            ));
        }
        self.cycle_error = Some(key);
        self.failures = self.failures.saturating_add(1);
        if repeated {
            self.attempt_may_start = true;
        } else {
            self.handler = Some(Ev::F);
        }
        Ok(())
    }

    /// `Stopped`: once, for the first stop input, of its kind (R11, R12).
    fn on_stopped(&mut self, kind: StopKind) -> Result<(), Violation> {
        if self.stop_outcome_seen {
            return Err(self.fail("R11 stop", format!("a second Stopped({kind:?})")));
        }
        if !self.take_expected(&Expected::Stopped(kind)) {
            return Err(self.fail(
                "R11 stop",
                format!(
                    "Stopped({kind:?}) does not answer the first stop input ({:?})",
                    self.first_stop
                ),
            ));
        }
        self.stop_outcome_seen = true;
        Ok(())
    }
    /// The checks every new attempt passes, whatever its first command.
    fn check_attempt_start(&self, what: &str) -> Result<(), Violation> {
        if self.phase != Phase::Cycle {
            return Err(self.fail("R1 grammar", format!("{what} in phase {:?}", self.phase)));
        }
        if self.stop_outcome_seen {
            return Err(self.fail("R11 stop", format!("{what} after the stop")));
        }
        if self.fetch_out.is_some() || self.dial_out.is_some() || self.delay_out.is_some() {
            return Err(self.fail(
                "one attempt in flight",
                format!(
                    "{what} while {:?} / {:?} / delay {:?} is out",
                    self.fetch_out, self.dial_out, self.delay_out
                ),
            ));
        }
        if !self.attempt_may_start {
            return Err(self.fail(
                "R1 cycle",
                format!("{what} before the last attempt failed and its handler finished"),
            ));
        }
        if !self.latest_due() {
            return Err(self.fail(
                "R7 retry delay",
                format!("{what} before the last attempt's retry delay passed"),
            ));
        }
        Ok(())
    }

    fn new_attempt(&mut self) -> u64 {
        let id = self.latest_id() + 1;
        self.latest = Some(Attempt {
            id,
            base: None,
            retry: None,
            elapsed: Duration::ZERO,
            obtained: None,
            failures_at_start: self.failures,
            skipped: false,
        });
        self.attempt_may_start = false;
        id
    }

    fn on_compute(&mut self, attempt: AttemptId, failures: u32) -> Result<(), Violation> {
        if self.config.retry_policy != RetryPolicy::Custom {
            return Err(self.fail(
                "R7 retry delay",
                "ComputeRetryDelay without a Custom policy",
            ));
        }
        self.check_attempt_start("ComputeRetryDelay")?;
        if failures != self.failures {
            return Err(self.fail(
                "R7 retry delay",
                format!(
                    "ComputeRetryDelay gives {failures} failures, the count is {}",
                    self.failures
                ),
            ));
        }
        let id = self.new_attempt();
        if attempt.0 != id {
            return Err(self.fail(
                "R2 attempt",
                format!("ComputeRetryDelay for {attempt}, the next attempt is #{id}"),
            ));
        }
        self.delay_out = Some(failures);
        Ok(())
    }

    fn on_fetch(
        &mut self,
        machine: &Machine<A, C, E>,
        attempt: AttemptId,
        just_started: Option<(TimerId, Duration)>,
    ) -> Result<(), Violation> {
        let base = if self.config.retry_policy == RetryPolicy::Custom {
            if self.phase != Phase::Cycle || self.stop_outcome_seen {
                return Err(self.fail("R11 stop", "FetchAddress after the stop or out of a cycle"));
            }
            if self.fetch_out.is_some() || self.dial_out.is_some() || self.delay_out.is_some() {
                return Err(self.fail(
                    "one attempt in flight",
                    "FetchAddress while another fetch, dial or retry delay is out",
                ));
            }
            match self.custom_delay.take() {
                Some(d) => d,
                None => {
                    return Err(self.fail(
                        "R7 retry delay",
                        "FetchAddress of a Custom policy before its RetryDelay was fed",
                    ));
                }
            }
        } else {
            self.check_attempt_start("FetchAddress")?;
            self.new_attempt();
            let Some(d) = self.config.retry_policy.delay(self.failures) else {
                return Err(self.fail("R7 retry delay", "the policy gave no delay"));
            };
            d
        };
        let id = self.latest_id();
        if attempt.0 != id {
            return Err(self.fail(
                "R2 attempt",
                format!("FetchAddress for {attempt}, the next attempt is #{id}"),
            ));
        }
        if machine.attempt() != Some(attempt) {
            return Err(self.fail(
                "R2 attempt",
                format!("attempt() is {:?} during {attempt}", machine.attempt()),
            ));
        }
        let Some(retry) = machine.retry_delay() else {
            return Err(self.fail("R7 retry delay", "retry_delay() is None after FetchAddress"));
        };
        let jitter = self.config.jitter;
        if !jitter_allows(jitter, base, retry) {
            let failures = self.latest.as_ref().map_or(0, |a| a.failures_at_start);
            return Err(self.fail(
                "R7 retry delay",
                format!(
                    "{attempt} waits {retry:?}; the policy gives {base:?} after {failures} \
                     failures, and {jitter:?} allows only {:?}",
                    jitter.bounds(base)
                ),
            ));
        }
        if let Some(att) = self.latest.as_mut() {
            att.base = Some(base);
            att.retry = Some(retry);
        }
        // R2: the retry timer (or the connect timeout, if sooner) starts before the fetch.
        let need = first_deadline(self.timeout(), retry);
        match (just_started, need) {
            (Some((timer, delay)), Some(want)) if delay == want => {
                self.timer = Some(Timer {
                    id: timer,
                    attempt: id,
                    deadline: delay,
                });
            }
            (None, None) if self.timer.is_none() => {}
            (started, want) => {
                return Err(self.fail(
                    "R2 attempt",
                    format!(
                        "{attempt} (retry {retry:?}, timeout {:?}) should start a timer of \
                         {want:?} just before its fetch; it started {started:?} (timer out: \
                         {:?})",
                        self.timeout(),
                        self.timer
                    ),
                ));
            }
        }
        self.fetch_out = Some(attempt);
        Ok(())
    }

    fn on_dial(&mut self, attempt: AttemptId, address: &A, failures: u32) -> Result<(), Violation> {
        if failures != self.failures {
            return Err(self.fail(
                "R4 failure",
                format!(
                    "Dial of {attempt} tells connect {failures} consecutive failures; the \
                     count is {}",
                    self.failures
                ),
            ));
        }
        if self.stop_outcome_seen {
            return Err(self.fail("R11 stop", "a dial after the stop"));
        }
        if self.fetch_out.is_some() || self.dial_out.is_some() {
            return Err(self.fail(
                "one attempt in flight",
                format!(
                    "Dial while {:?} / {:?} is out",
                    self.fetch_out, self.dial_out
                ),
            ));
        }
        if attempt.0 != self.latest_id() {
            return Err(self.fail(
                "R2 attempt",
                format!("Dial for {attempt}, the attempt is #{}", self.latest_id()),
            ));
        }
        if self.latest.as_ref().is_some_and(|a| self.timeout_hit(a)) {
            return Err(self.fail("connect timeout", "Dial after the connect timeout passed"));
        }
        if !self.take_expected(&Expected::Dial(address.clone())) {
            return Err(self.fail(
                "R2 attempt",
                format!(
                    "Dial({address:?}) is not the address obtained ({:?}), or comes before \
                     its ObtainedAddress handler finished",
                    self.latest.as_ref().and_then(|a| a.obtained.clone())
                ),
            ));
        }
        self.dial_out = Some(attempt);
        Ok(())
    }

    fn on_finished(&mut self) -> Result<(), Violation> {
        if !self.stopped() || !self.stop_outcome_seen {
            return Err(self.fail("R11 stop", "Finished without a stop"));
        }
        if self.live.is_some() || self.current.is_some() {
            return Err(self.fail(
                "R11 stop",
                format!(
                    "Finished while {:?} is live or not yet reported closed",
                    self.current
                ),
            ));
        }
        if self.fetch_out.is_some() || self.dial_out.is_some() {
            return Err(self.fail(
                "R11 stop",
                "Finished with a fetch or dial out and not cancelled",
            ));
        }
        self.finished = true;
        self.timer = None;
        self.delay_out = None;
        Ok(())
    }

    /// The checks at the end of a batch: owed commands came, queries agree, no stall.
    fn quiescent(&mut self, machine: &Machine<A, C, E>) -> Result<(), Violation> {
        if let Some(e) = self.expected.first() {
            let rule = match e {
                Expected::ObtainedAddress(_) | Expected::Dial(_) => "R2 attempt",
                Expected::Connected(_) => "R5 success",
                Expected::Failed(Failure::TimedOut { .. }) | Expected::Cancel(_) => {
                    "connect timeout"
                }
                Expected::Failed(_) => "R4 failure",
                Expected::CloseLate(..) => "no connection dropped",
                Expected::CloseCurrent(..) => "R11 close / R18 reconnect",
                Expected::Stopped(_) => "R11 stop",
                Expected::Disconnected => "R5 success",
            };
            return Err(self.fail(
                rule,
                format!("the batch ended without {e:?} (owed: {:?})", self.expected),
            ));
        }
        if !self.owned.is_empty() {
            return Err(self.fail(
                "no connection dropped",
                format!("{:?} taken but neither handed out nor closed", self.owned),
            ));
        }
        self.just_started = None;
        if let Some(a) = self.just_uptime.take() {
            return Err(self.fail(
                "R19 uptime",
                format!("the batch ended after StartUptimeTimer for {a}, without its Connected"),
            ));
        }
        self.check_queries(machine)?;
        if self.finished {
            return Ok(());
        }
        if self.stopped() {
            if self.fetch_out.is_some() || self.dial_out.is_some() {
                return Err(self.fail("R11 stop", "stopped, but a fetch or dial is still out"));
            }
            if self.handler.is_none() && self.live.is_none() {
                return Err(self.fail(
                    "R11 stop",
                    "stopped with no handler running and no live connection, but not finished",
                ));
            }
            return Ok(());
        }
        if self.handler.is_none() {
            if self.phase == Phase::Cycle
                && self.attempt_may_start
                && self.delay_out.is_none()
                && self.latest_due()
            {
                return Err(self.fail(
                    "R7 retry delay",
                    "the last attempt failed and its delay passed, but no attempt started",
                ));
            }
            if self.phase == Phase::BeforeCycle && self.cycles > 0 && self.latest_due() {
                return Err(self.fail(
                    "R7 retry delay",
                    "disconnected and the delay passed, but no new cycle started",
                ));
            }
        }
        self.check_timer()?;
        let waits = self.handler.is_some()
            || self.fetch_out.is_some()
            || self.dial_out.is_some()
            || self.delay_out.is_some()
            || self.live.is_some()
            || self.timer.is_some();
        if !waits {
            return Err(self.fail(
                "R16 no stall",
                format!(
                    "the machine waits for nothing that can come: {}",
                    self.describe()
                ),
            ));
        }
        Ok(())
    }

    /// The one timer out must be the one the earliest pending deadline of the latest
    /// attempt needs: its retry delay, and its connect timeout while it is in flight.
    fn check_timer(&self) -> Result<(), Violation> {
        let Some(att) = &self.latest else {
            return Ok(());
        };
        let Some(retry) = att.retry else {
            return Ok(());
        };
        let id = AttemptId(att.id);
        let in_flight =
            self.fetch_out == Some(id) || self.dial_out == Some(id) || self.handler == Some(Ev::O);
        let mut need = (!att.skipped && att.elapsed < retry).then_some(retry);
        if let Some(t) = self.timeout() {
            if in_flight && att.elapsed < t {
                need = Some(need.map_or(t, |n| n.min(t)));
            }
        }
        // The timer may be due sooner than needed (a connect timeout that no longer
        // matters, after which the Machine re-arms for the rest), never later.
        match (need, self.timer) {
            (None, _) => Ok(()),
            (Some(want), Some(t))
                if t.attempt == att.id && att.elapsed < t.deadline && t.deadline <= want =>
            {
                Ok(())
            }
            (Some(want), timer) => Err(self.fail(
                "R7 retry delay",
                format!(
                    "{id} (retry {retry:?}, timeout {:?}, {:?} elapsed) needs a timer due at \
                     {want:?}; the timer out is {timer:?}",
                    self.timeout(),
                    att.elapsed
                ),
            )),
        }
    }

    fn check_queries(&self, m: &Machine<A, C, E>) -> Result<(), Violation> {
        let mismatch = |what: &str, got: String, want: String| {
            Err(self.fail(
                "queries",
                format!(
                    "{what} is {got}, the model says {want} ({})",
                    self.describe()
                ),
            ))
        };
        if m.has_command() {
            return mismatch("has_command()", "true".into(), "false".into());
        }
        let state = if self.finished {
            State::Closed
        } else if self.stopped() {
            State::Closing
        } else if self.current.is_some() {
            State::Connected
        } else if self.handler == Some(Ev::D)
            || (self.phase == Phase::BeforeCycle && self.cycles > 0)
        {
            State::Disconnected
        } else {
            State::Connecting
        };
        if m.state() != state {
            return mismatch("state()", format!("{:?}", m.state()), format!("{state:?}"));
        }
        let current = self.current.as_ref().map(|(c, _)| c);
        if m.current_connection() != current {
            return mismatch(
                "current_connection()",
                format!("{:?}", m.current_connection()),
                format!("{current:?}"),
            );
        }
        let current_attempt = self.current.as_ref().map(|(_, a)| *a);
        if m.current_attempt() != current_attempt {
            return mismatch(
                "current_attempt()",
                format!("{:?}", m.current_attempt()),
                format!("{current_attempt:?}"),
            );
        }
        if m.is_closed() != self.stopped() {
            return mismatch(
                "is_closed()",
                m.is_closed().to_string(),
                self.stopped().to_string(),
            );
        }
        let stop_kind = if self.close_requested {
            Some(StopKind::Close)
        } else {
            self.first_stop
        };
        if m.stop_kind() != stop_kind {
            return mismatch(
                "stop_kind()",
                format!("{:?}", m.stop_kind()),
                format!("{stop_kind:?}"),
            );
        }
        if m.is_finished() != self.finished {
            return mismatch(
                "is_finished()",
                m.is_finished().to_string(),
                self.finished.to_string(),
            );
        }
        if m.consecutive_failures() != self.failures {
            return Err(self.fail(
                "R4 failure",
                format!(
                    "consecutive_failures() is {}, the model counts {} (+1 per failure, 0 on \
                     success, or once the uptime is reached with min_uptime)",
                    m.consecutive_failures(),
                    self.failures
                ),
            ));
        }
        // Asked to close (by close or reconnect_now), still current and not closed yet
        // (R11, R18).
        let closing = self.close_asked && self.current.is_some() && self.live.is_some();
        if m.is_closing_connection() != closing {
            return mismatch(
                "is_closing_connection()",
                m.is_closing_connection().to_string(),
                closing.to_string(),
            );
        }
        if m.uptime_pending() != self.uptime_pending {
            return Err(self.fail(
                "R19 uptime",
                format!(
                    "uptime_pending() is {}, the model says {} ({})",
                    m.uptime_pending(),
                    self.uptime_pending,
                    self.describe()
                ),
            ));
        }
        let attempt = self.latest.as_ref().map(|a| AttemptId(a.id));
        if m.attempt() != attempt {
            return mismatch(
                "attempt()",
                format!("{:?}", m.attempt()),
                format!("{attempt:?}"),
            );
        }
        let retry = if self.delay_out.is_some() {
            None
        } else {
            self.latest.as_ref().and_then(|a| a.retry)
        };
        // A Custom attempt stopped while it waited for its delay never had one: `None`.
        if m.retry_delay() != retry {
            return mismatch(
                "retry_delay()",
                format!("{:?}", m.retry_delay()),
                format!("{retry:?}"),
            );
        }
        let expecting = if self.finished {
            Expecting::Nothing
        } else if self.handler.is_some() {
            Expecting::EventHandled
        } else if self.delay_out.is_some() {
            Expecting::RetryDelay
        } else if self.fetch_out.is_some() {
            Expecting::Address
        } else if self.dial_out.is_some() {
            Expecting::DialResult
        } else if self.current.is_some() {
            Expecting::ConnectionClosed
        } else {
            Expecting::RetryTimer
        };
        if m.expecting() != expecting {
            return mismatch(
                "expecting()",
                format!("{:?}", m.expecting()),
                format!("{expecting:?}"),
            );
        }
        // Compared as their text would be: a NaN multiplier never equals itself.
        if !same_config(m.config(), &self.config) {
            return mismatch(
                "config()",
                format!("{:?}", m.config()),
                format!("{:?}", self.config),
            );
        }
        Ok(())
    }

    /// A one-line summary of the model, for messages.
    fn describe(&self) -> String {
        format!(
            "phase {:?}, handler {:?}, fetch {:?}, dial {:?}, delay {:?}, timer {:?}, live {:?}, \
             stop {:?}, finished {}, failures {}, uptime pending {}, attempt {:?}",
            self.phase,
            self.handler,
            self.fetch_out,
            self.dial_out,
            self.delay_out,
            self.timer,
            self.live,
            self.first_stop,
            self.finished,
            self.failures,
            self.uptime_pending,
            self.latest
                .as_ref()
                .map(|a| (a.id, a.retry, a.elapsed, a.skipped)),
        )
    }
}

/// The key by which failures are de-duplicated (R4, as in the seed): the caller's error
/// itself, whichever step (fetch or dial) failed, through [`error_key`]; a timeout by the
/// whole [`Failure`].
pub fn failure_key<E: Debug>(error: &Failure<E>) -> u64 {
    match error.error() {
        Some(e) => error_key(e),
        None => error_key(error),
    }
}

/// The deadline of the first timer an attempt starts: its retry delay, or its connect
/// timeout if that is sooner; none when the delay is zero and there is no timeout.
pub fn first_deadline(timeout: Option<Duration>, retry: Duration) -> Option<Duration> {
    match (timeout, retry.is_zero()) {
        (None, true) => None,
        (None, false) => Some(retry),
        (Some(t), true) => Some(t),
        (Some(t), false) => Some(t.min(retry)),
    }
}

/// Whether `jitter` may turn the policy's delay `base` into `actual` (R7), computed here
/// independently of the library: a delay past `u64::MAX` nanoseconds (584 years) is first
/// clamped to it, as the library documents; then exactly that when off or at 0 %, and
/// within `+- percent%` (at most 100 %) otherwise.
pub fn jitter_allows(jitter: Jitter, base: Duration, actual: Duration) -> bool {
    let d = base.as_nanos().min(u128::from(u64::MAX));
    let a = actual.as_nanos();
    match jitter {
        Jitter::Uniform { percent } if percent > 0 => {
            let p = u128::from(percent.min(100));
            a * 100 >= d * (100 - p) && a * 100 <= d * (100 + p)
        }
        // Off, 0 %, and (conservatively) any jitter this function does not know.
        _ => a == d,
    }
}

/// A Machine and its [`Checker`]: every input and command goes through both.
pub struct Checked<A, C, E> {
    machine: Machine<A, C, E>,
    checker: Checker<A, C, E>,
}

impl<A, C, E> Checked<A, C, E>
where
    A: Clone + PartialEq + Debug,
    C: Clone + PartialEq + Debug,
    E: Clone + PartialEq + Debug,
{
    /// A new Machine made with `config` and `seed`, watched from its first command.
    pub fn new(config: Config, seed: u64) -> Self {
        Checked {
            machine: Machine::new(config, seed),
            checker: Checker::new(config),
        }
    }

    /// The Machine, for queries.
    pub fn machine(&self) -> &Machine<A, C, E> {
        &self.machine
    }

    /// The checker, for its model.
    pub fn checker(&self) -> &Checker<A, C, E> {
        &self.checker
    }

    /// Feeds `input` to the Machine and checks what happened. The outer `Err` is a broken
    /// rule; the inner result is the Machine's own answer.
    #[allow(clippy::type_complexity)]
    pub fn feed(
        &mut self,
        input: Input<A, C, E>,
    ) -> Result<Result<(), Rejected<A, C, E>>, Violation> {
        // `retry_timer_can_wait` promises that this firing changes nothing a driver sees:
        // no command, the same answer to every query.
        let held = (matches!(input, Input::TimerFired(_)) && self.machine.retry_timer_can_wait())
            .then(|| Snapshot::of(&self.machine));
        let pending = self.checker.before_input(&self.machine, &input)?;
        let result = self.machine.handle_input(input);
        if let (Some(before), Ok(())) = (held, &result) {
            let after = Snapshot::of(&self.machine);
            if !before.same(&after) || self.machine.retry_timer_can_wait() {
                return Err(self.checker.fail(
                    "R7 retry timer held back",
                    format!(
                        "retry_timer_can_wait() was true, but the firing changed what a driver \
                         sees: before {before:?}, after {after:?}"
                    ),
                ));
            }
        }
        self.checker.after_input(&self.machine, pending, &result)?;
        Ok(result)
    }

    /// Polls the Machine's next command and checks it; `None` ends the batch and runs the
    /// end-of-batch checks.
    pub fn poll(&mut self) -> Result<Option<Command<A, C, E>>, Violation> {
        let cmd = self.machine.poll_command();
        self.checker.after_poll(&self.machine, cmd.as_ref())?;
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use persistent_connection::Exponential;

    fn exponential(multiplier: f64) -> Config {
        Config::new().retry_policy(RetryPolicy::Exponential(Exponential {
            multiplier,
            ..Exponential::GRPC
        }))
    }

    /// `same_config` agrees with comparing the `Debug` texts, which it replaces.
    #[test]
    fn same_config_is_same_debug_text() {
        let configs = [
            Config::new(),
            Config::new().connect_timeout(Some(Duration::from_secs(1))),
            Config::new().jitter(Jitter::Off),
            Config::new().retry_policy(RetryPolicy::Custom),
            exponential(1.6),
            exponential(f64::NAN),
            exponential(-f64::NAN),
            exponential(0.0),
            exponential(-0.0),
            exponential(f64::INFINITY),
            {
                let mut c = Config::new();
                c.min_uptime = Some(Duration::ZERO);
                c
            },
        ];
        for a in &configs {
            for b in &configs {
                assert_eq!(
                    same_config(a, b),
                    format!("{a:?}") == format!("{b:?}"),
                    "{a:?} / {b:?}"
                );
            }
        }
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let texts: [&[u8]; 7] = [
            b"",
            b"a",
            b"b",
            b"abcdefgh",
            b"abcdefgi",
            b"abcdefghijklmnopq",
            b"abcdefghijklmnopr",
        ];
        for a in texts {
            for b in texts {
                assert_eq!(same_bytes(a, b), a == b, "{a:?} / {b:?}");
            }
        }
    }

    /// A value whose `Debug` text the test changes.
    struct Text(&'static str, u64);

    impl Debug for Text {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Text")
                .field("s", &self.0)
                .field("n", &self.1)
                .finish()
        }
    }

    /// The kept text sees any change of the text: longer, shorter, or another piece.
    #[test]
    fn debug_text_sees_every_change() {
        let mut d = DebugText::new();
        let first = Text("one", 7);
        d.refresh(&first);
        assert!(d.unchanged(&first));
        for other in [
            Text("one", 70),
            Text("one", 0),
            Text("on", 7),
            Text("two", 7),
        ] {
            assert!(!d.unchanged(&other), "{other:?}");
        }
        // Fresh text is kept until it is marked stale.
        d.refresh(&Text("two", 7));
        assert!(d.unchanged(&first));
        d.stale();
        d.refresh(&Text("two", 7));
        assert!(d.unchanged(&Text("two", 7)));
        assert!(!d.unchanged(&first));
    }
}
