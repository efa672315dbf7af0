//! What goes into the machine ([`Input`]), what comes out ([`Command`]), and the values
//! they carry.

use core::fmt;
use core::time::Duration;

use crate::policy::{Jitter, RetryPolicy};

/// Names one connection attempt. Every fetch, dial and connection carries the id of the
/// attempt that started it, so a result that comes late can be told from a current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttemptId(pub u64);

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt #{}", self.0)
    }
}

/// Names one timer the machine asked for, so a stale firing can be told from the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(pub u64);

impl fmt::Display for TimerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timer #{}", self.0)
    }
}

/// The five events of the seed, in the order a cycle reports them:
/// `AttemptingToConnect (ObtainedAddress | FailedToConnect)* (Connected Disconnected)?`.
///
/// `F` is what a failure carries: the [`Machine`](crate::Machine) reports
/// `Event<A, C, Failure<E>>`; a driver may report its own error type instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<A, C, F> {
    /// A cycle starts: attempts follow until one succeeds.
    AttemptingToConnect,
    /// An attempt obtained an address different from the last one of this cycle.
    ObtainedAddress(A),
    /// An attempt failed with an error different from the last one of this cycle.
    FailedToConnect(F),
    /// An attempt succeeded; the connection is now current.
    Connected(C),
    /// The current connection has closed.
    Disconnected,
}

impl<A, C, F> Event<A, C, F> {
    /// The event's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Event::AttemptingToConnect => "AttemptingToConnect",
            Event::ObtainedAddress(_) => "ObtainedAddress",
            Event::FailedToConnect(_) => "FailedToConnect",
            Event::Connected(_) => "Connected",
            Event::Disconnected => "Disconnected",
        }
    }

    /// The same event with its failure mapped by `f` (a driver turns the Machine's
    /// [`Failure`] into its own error type with it).
    pub fn map_failure<G>(self, f: impl FnOnce(F) -> G) -> Event<A, C, G> {
        match self {
            Event::AttemptingToConnect => Event::AttemptingToConnect,
            Event::ObtainedAddress(a) => Event::ObtainedAddress(a),
            Event::FailedToConnect(e) => Event::FailedToConnect(f(e)),
            Event::Connected(c) => Event::Connected(c),
            Event::Disconnected => Event::Disconnected,
        }
    }
}

/// Prints the event's name and, for `ObtainedAddress` and `FailedToConnect`, what it
/// carries (the address with `Debug`, the failure with `Display`); a connection is not
/// printed.
impl<A: fmt::Debug, C, F: fmt::Display> fmt::Display for Event<A, C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::ObtainedAddress(a) => write!(f, "ObtainedAddress({a:?})"),
            Event::FailedToConnect(e) => write!(f, "FailedToConnect({e})"),
            other => f.write_str(other.name()),
        }
    }
}

/// Why an attempt failed, as the [`Machine`](crate::Machine) reports it: the caller's own
/// error (fed with [`Input::AddressObtained`] or [`Input::Dialed`]), or the connect
/// timeout, the one failure the machine decides itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure<E> {
    /// The fetch or the dial failed with the caller's error.
    #[error("{0}")]
    Error(E),
    /// The attempt did not finish within the configured connect timeout.
    #[error("the attempt did not finish within the connect timeout of {after:?}")]
    TimedOut {
        /// The connect timeout in force.
        after: Duration,
    },
}

impl<E> Failure<E> {
    /// The caller's error, if this is one (not a timeout).
    pub fn error(&self) -> Option<&E> {
        match self {
            Failure::Error(e) => Some(e),
            Failure::TimedOut { .. } => None,
        }
    }

    /// Whether the connect timeout ended the attempt.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Failure::TimedOut { .. })
    }
}

/// Everything that moves the machine. Feed them with [`Machine::handle_input`](crate::Machine::handle_input).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input<A, C, E> {
    /// The answer to [`Command::FetchAddress`].
    AddressObtained {
        /// The attempt named in the command.
        attempt: AttemptId,
        /// The address, or why it could not be had.
        result: Result<A, E>,
    },
    /// The answer to [`Command::Dial`].
    Dialed {
        /// The attempt named in the command.
        attempt: AttemptId,
        /// The connection, or why the dial failed.
        result: Result<C, E>,
    },
    /// The timer of [`Command::StartTimer`] has fired.
    TimerFired(TimerId),
    /// The handler of the last reported event has finished (R6), however it finished.
    EventHandled,
    /// The answer to [`Command::ComputeRetryDelay`]: the delay before jitter.
    RetryDelay(Duration),
    /// The current connection, made by `attempt`, has closed (for whatever reason).
    ConnectionClosed {
        /// The attempt that made the connection.
        attempt: AttemptId,
    },
    /// `close()` (R11): close the current connection, cancel any attempt, never retry.
    Close,
    /// `abort(reason)` (R12): no new attempts; keep the current connection until it closes,
    /// then finish. The machine does not hold the reason: whoever feeds this gives it to the
    /// waiters when [`Command::Stopped`] comes.
    Abort,
    /// `close_when_current_connection_is_closed()` (R12): as `Abort`, but waiters get "closed".
    CloseWhenCurrentConnectionIsClosed,
    /// `reconnect_now()` (R18): when a connection is current, close it and start the next
    /// cycle without waiting for the retry timer; when waiting for the retry timer, count it
    /// as fired now. While an attempt is in flight, or after a stop, it changes nothing.
    /// It never changes the failure count.
    ReconnectNow,
    /// The timer of [`Command::StartUptimeTimer`] has fired: the connection made by
    /// `attempt` has been current for `min_uptime` (R19).
    UptimeReached {
        /// The attempt named in the command.
        attempt: AttemptId,
    },
}

impl<A, C, E> Input<A, C, E> {
    /// The input's kind, without its payload.
    pub fn kind(&self) -> InputKind {
        match self {
            Input::AddressObtained { .. } => InputKind::AddressObtained,
            Input::Dialed { .. } => InputKind::Dialed,
            Input::TimerFired(_) => InputKind::TimerFired,
            Input::EventHandled => InputKind::EventHandled,
            Input::RetryDelay(_) => InputKind::RetryDelay,
            Input::ConnectionClosed { .. } => InputKind::ConnectionClosed,
            Input::Close => InputKind::Close,
            Input::Abort => InputKind::Abort,
            Input::CloseWhenCurrentConnectionIsClosed => {
                InputKind::CloseWhenCurrentConnectionIsClosed
            }
            Input::ReconnectNow => InputKind::ReconnectNow,
            Input::UptimeReached { .. } => InputKind::UptimeReached,
        }
    }

    /// The connection this input carries, if any: what a caller must close when the input
    /// is rejected.
    pub fn into_connection(self) -> Option<C> {
        match self {
            Input::Dialed {
                result: Ok(conn), ..
            } => Some(conn),
            _ => None,
        }
    }
}

/// The kind of an [`Input`], for errors and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // each names the Input variant of the same name
#[non_exhaustive]
pub enum InputKind {
    AddressObtained,
    Dialed,
    TimerFired,
    EventHandled,
    RetryDelay,
    ConnectionClosed,
    Close,
    Abort,
    CloseWhenCurrentConnectionIsClosed,
    ReconnectNow,
    UptimeReached,
}

impl fmt::Display for InputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What the machine asks of its driver. Poll them with
/// [`Machine::poll_command`](crate::Machine::poll_command) until it returns `None`, and carry
/// each out in order.
///
/// Every command that concerns an attempt or a connection names the attempt, so a driver
/// never has to query the machine to know what to feed back. Exactly one kind of command,
/// [`Command::Emit`], is answered with [`Input::EventHandled`]; no other command is.
///
/// Not `#[non_exhaustive]`, on purpose: a driver must carry out every command, so a new
/// one must break its build rather than be ignored by a `_` arm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<A, C, E> {
    /// Report `event` to the handler and subscribers, then feed [`Input::EventHandled`] once
    /// the handler has finished; the machine takes no next step until then (R6).
    ///
    /// `Connected` and `FailedToConnect` are also the outcome of their attempt: give the
    /// connection or the failure to the waiters *before* reporting it (R3, R5).
    Emit {
        /// The event.
        event: Event<A, C, Failure<E>>,
        /// The attempt it concerns: the one that obtained the address, failed or made the
        /// connection (for `Disconnected`, the attempt that made the connection that
        /// closed). `None` for `AttemptingToConnect`, which precedes the cycle's attempts.
        attempt: Option<AttemptId>,
    },
    /// The attempt failed with the same error as the previous failure of this cycle (R4):
    /// give `error` to the waiters of `connected_or_failed_to_connect` (R3). Nothing is
    /// reported and nothing is to be fed back.
    FailedAgain {
        /// The attempt that failed.
        attempt: AttemptId,
        /// Why.
        error: Failure<E>,
    },
    /// The first stop input was taken (`close`, `abort` or
    /// `close_when_current_connection_is_closed`): no attempt will ever end again, so the
    /// waiters get "closed" (or the abort's reason) now (R9, R11, R12). Nothing is to be
    /// fed back; [`Command::Finished`] follows once nothing is live.
    Stopped(StopKind),
    /// ([`RetryPolicy::Custom`] only) compute the retry delay of `attempt`, which starts
    /// now, and feed it as [`Input::RetryDelay`].
    ComputeRetryDelay {
        /// The attempt the delay is for.
        attempt: AttemptId,
        /// The consecutive failures so far.
        consecutive_failures: u32,
    },
    /// Start a timer; feed [`Input::TimerFired`] when it fires. At most one timer is out at
    /// a time: this one replaces any earlier timer, which must not fire any more.
    StartTimer {
        /// The id to feed back.
        timer: TimerId,
        /// How long from now.
        delay: Duration,
    },
    /// ([`Config::min_uptime`] only) the connection made by `attempt` has just become
    /// current: start a timer of `delay` for it, and feed [`Input::UptimeReached`] when it
    /// fires while that connection is still current. Drop the timer when the connection
    /// closes: its firing would be refused. Independent of the retry timer.
    StartUptimeTimer {
        /// The attempt that made the connection.
        attempt: AttemptId,
        /// How long the connection must stay current (R19).
        delay: Duration,
    },
    /// Obtain the service's address; feed [`Input::AddressObtained`].
    FetchAddress {
        /// The attempt to name in the answer.
        attempt: AttemptId,
    },
    /// Dial `address`; feed [`Input::Dialed`].
    Dial {
        /// The attempt to name in the answer.
        attempt: AttemptId,
        /// Where to connect.
        address: A,
        /// Failed attempts since the last success (what the seed's attempt context tells
        /// `connect`).
        consecutive_failures: u32,
    },
    /// Stop the fetch or dial of `attempt` if you can (dropping its future is enough). If a
    /// result still comes, feed it anyway: a connection in it is never handed out. While
    /// the machine runs, it answers with [`Command::CloseConnection`]; once it has
    /// finished, it refuses the input and hands the connection back in [`Rejected`] for
    /// you to close.
    CancelAttempt {
        /// The attempt to stop.
        attempt: AttemptId,
    },
    /// Close `connection`: the current one on `close`, or one that came too late for
    /// anybody to see. When it is the current one, feed [`Input::ConnectionClosed`] (naming
    /// `attempt`) once it has closed.
    CloseConnection {
        /// The attempt that made it.
        attempt: AttemptId,
        /// The connection to close.
        connection: C,
    },
    /// The machine has finished for good: the last connection is closed (or asked to be),
    /// no handler is running and nothing more will ever be reported. Every later input is
    /// rejected (and handed back).
    Finished,
}

/// What a persistent connection is doing, for callers that watch without consuming events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// A cycle is under way: attempts are being made until one succeeds.
    Connecting,
    /// A connection is current.
    Connected,
    /// The connection has closed; waiting for the retry timer before the next cycle.
    Disconnected,
    /// `close`, `abort` or `close_when_current_connection_is_closed` has been requested,
    /// but the machine has not finished yet (a connection or a handler is still live).
    Closing,
    /// Finished for good.
    Closed,
}

/// How the machine was told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopKind {
    /// `close()`.
    Close,
    /// `abort(reason)`.
    Abort,
    /// `close_when_current_connection_is_closed()`.
    WhenCurrentConnectionCloses,
}

/// What the machine was waiting for when an input came that it did not ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Expecting {
    /// The handler of the last reported event to finish.
    EventHandled,
    /// The retry delay of a [`RetryPolicy::Custom`] policy.
    RetryDelay,
    /// The address of the current attempt.
    Address,
    /// The dial result of the current attempt.
    DialResult,
    /// The current connection to close, or the machine to be closed.
    ConnectionClosed,
    /// The retry timer.
    RetryTimer,
    /// Nothing: the machine has finished.
    Nothing,
}

impl fmt::Display for Expecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expecting::EventHandled => "the handler of the last event to finish",
            Expecting::RetryDelay => "a retry delay",
            Expecting::Address => "the address of the current attempt",
            Expecting::DialResult => "the dial result of the current attempt",
            Expecting::ConnectionClosed => "the current connection to close",
            Expecting::RetryTimer => "the retry timer",
            Expecting::Nothing => "nothing (it has finished)",
        })
    }
}

/// Why an input was rejected. The machine's state is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The machine has finished; it takes no more input.
    #[error("the machine has finished and takes no more input (got {got})")]
    Finished {
        /// The input that came.
        got: InputKind,
    },
    /// The input does not fit what the machine is waiting for.
    #[error("unexpected {got}: the machine is waiting for {expected}")]
    Unexpected {
        /// The input that came.
        got: InputKind,
        /// What the machine waits for.
        expected: Expecting,
    },
    /// A result names an attempt that the machine never started or no longer waits for.
    #[error("{got} for {attempt}, which is not out: the current one is {current}")]
    UnknownAttempt {
        /// The input that came.
        got: InputKind,
        /// The attempt it names.
        attempt: AttemptId,
        /// The machine's latest attempt.
        current: AttemptId,
    },
    /// A timer fired that is not the one out.
    #[error("{got} fired, but the timer out is {outstanding:?}")]
    StaleTimer {
        /// The timer that fired.
        got: TimerId,
        /// The timer the machine waits for, if any.
        outstanding: Option<TimerId>,
    },
    /// Commands wait to be polled: drain [`Machine::poll_command`](crate::Machine::poll_command)
    /// until `None` first. (The machine's queue holds one input's worth of commands.)
    #[error("{pending} commands wait to be polled: drain poll_command before feeding {got}")]
    Backlog {
        /// The input that came.
        got: InputKind,
        /// How many commands wait.
        pending: usize,
    },
}

/// An input the machine did not take, handed back with the reason: a connection inside it
/// is the caller's to close ([`Input::into_connection`]), never lost.
#[derive(Debug, thiserror::Error)]
#[error("input rejected: {error}")]
pub struct Rejected<A, C, E> {
    /// Why it was rejected.
    pub error: InputError,
    /// The input, unchanged.
    pub input: Input<A, C, E>,
}

/// How a [`Machine`](crate::Machine) behaves: retry policy, jitter, connect timeout.
///
/// Read the fields; set them with the methods of the same names, which chain:
/// `Config::new().jitter(Jitter::Off)`. The jitter's seed is not part of it: it is an
/// argument of [`Machine::new`](crate::Machine::new), so that no two machines share a
/// jitter sequence by accident.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
// Laid out in this order (`repr(C)`, no padding but the jitter's) so that `min_uptime`,
// which a failed attempt never reads, is at one end, away from the Machine's other fields
// that every attempt touches (see `Machine`).
#[repr(C)]
pub struct Config {
    /// How long a connection must stay current before the failure count goes back to 0
    /// (R19); one that closes sooner counts as a failure. Default `None`: the count goes
    /// back to 0 on `Connected` (R5), as in the seed.
    pub min_uptime: Option<Duration>,
    /// The bound on each attempt (address fetch and dial together, from the attempt's
    /// start). Default `None`: attempts take as long as they take, as in the seed.
    pub connect_timeout: Option<Duration>,
    /// Where each attempt's retry delay comes from (R7). Default: a constant 10 s.
    pub retry_policy: RetryPolicy,
    /// The randomisation of each retry delay (R7). Default: +-30 %.
    pub jitter: Jitter,
}

impl Config {
    /// The seed's behaviour: constant 10 s retry delay, +-30 % jitter, no connect timeout.
    pub const fn new() -> Self {
        Config {
            retry_policy: RetryPolicy::DEFAULT,
            jitter: Jitter::STANDARD,
            connect_timeout: None,
            min_uptime: None,
        }
    }

    /// Sets the retry policy (R7).
    pub const fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }

    /// Sets the jitter (R7); [`Jitter::Off`] uses the policy's delays as they are.
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Bounds each attempt: `Duration` or `Some(duration)` to set, `None` for no bound
    /// (the default). A zero duration counts as no bound.
    pub fn connect_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.connect_timeout = timeout.into().filter(|t| !t.is_zero());
        self
    }
}

impl Config {
    /// Resets the failure count only once a connection has been current this long (R19):
    /// `Duration` or `Some(duration)` to set, `None` (the default) to reset on connect. A
    /// zero duration counts as `None`.
    pub fn min_uptime(mut self, min_uptime: impl Into<Option<Duration>>) -> Self {
        self.min_uptime = min_uptime.into().filter(|t| !t.is_zero());
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}
