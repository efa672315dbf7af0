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
/// `Event<A, C, AttemptError<E>>`; a driver may report its own flat error type instead.
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
}

/// Why an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError<E> {
    /// Fetching the address failed with the caller's error.
    #[error("could not get the address: {0:?}")]
    Address(E),
    /// Dialling the address failed with the caller's error.
    #[error("could not connect: {0:?}")]
    Connect(E),
    /// The attempt did not finish within the configured connect timeout.
    #[error("the attempt did not finish within the connect timeout of {after:?}")]
    TimedOut {
        /// The connect timeout in force.
        after: Duration,
    },
}

impl<E> AttemptError<E> {
    /// The caller's error, if this is one (not a timeout).
    pub fn source_error(&self) -> Option<&E> {
        match self {
            AttemptError::Address(e) | AttemptError::Connect(e) => Some(e),
            AttemptError::TimedOut { .. } => None,
        }
    }

    /// Whether the connect timeout ended the attempt.
    pub fn is_timeout(&self) -> bool {
        matches!(self, AttemptError::TimedOut { .. })
    }
}

/// What the waiters of `connected_or_failed_to_connect` (and of `connected`) are given (R3, R9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<C, E> {
    /// The attempt succeeded; `C` is now the current connection. Give it to every waiter of
    /// `connected` and `connected_or_failed_to_connect`, then report
    /// [`Event::Connected`] with it and feed [`Input::EventHandled`] when its handler is done.
    Connected(C),
    /// The attempt failed. Give `error` to the waiters of `connected_or_failed_to_connect`;
    /// then, unless `repeated`, report [`Event::FailedToConnect`] with it and feed
    /// [`Input::EventHandled`] when its handler is done. `repeated` means the error equals
    /// the previous one of this cycle: no event, and no `EventHandled` is expected (R4).
    Failed {
        /// Why the attempt failed.
        error: AttemptError<E>,
        /// The error repeats the previous one of this cycle: do not report it.
        repeated: bool,
    },
    /// `close` was requested: no attempt will ever end again. Waiters get "closed".
    Closed,
    /// `abort(reason)` was requested: no new attempt will be made. Waiters get `reason`.
    Aborted(E),
}

impl<C, E> Outcome<C, E> {
    /// The event to report after the waiters have the outcome, if any
    /// (`Connected`, or `FailedToConnect` when not repeated).
    pub fn into_event<A>(self) -> Option<Event<A, C, AttemptError<E>>> {
        match self {
            Outcome::Connected(c) => Some(Event::Connected(c)),
            Outcome::Failed {
                error,
                repeated: false,
            } => Some(Event::FailedToConnect(error)),
            _ => None,
        }
    }

    /// Whether this outcome is also an event the handler must finish with
    /// [`Input::EventHandled`].
    pub fn is_reported(&self) -> bool {
        matches!(
            self,
            Outcome::Connected(_)
                | Outcome::Failed {
                    repeated: false,
                    ..
                }
        )
    }
}

/// Everything that moves the machine. Feed them with [`Machine::handle_input`](crate::Machine::handle_input).
#[derive(Debug)]
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
    /// then finish. Waiters get `reason`.
    Abort(E),
    /// `close_when_current_connection_is_closed()` (R12): as `Abort`, but waiters get "closed".
    CloseWhenCurrentConnectionIsClosed,
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
            Input::Abort(_) => InputKind::Abort,
            Input::CloseWhenCurrentConnectionIsClosed => {
                InputKind::CloseWhenCurrentConnectionIsClosed
            }
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
}

impl fmt::Display for InputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What the machine asks of its driver. Poll them with
/// [`Machine::poll_command`](crate::Machine::poll_command) until it returns `None`, and carry
/// each out in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<A, C, E> {
    /// Report this event (`AttemptingToConnect`, `ObtainedAddress` or `Disconnected`) to the
    /// handler and subscribers; feed [`Input::EventHandled`] once the handler has finished.
    /// The machine takes no next step until then (R6).
    Emit(Event<A, C, AttemptError<E>>),
    /// An attempt has ended, or stopping made waiting pointless: give the outcome to the
    /// waiters. [`Outcome::Connected`] and an unrepeated [`Outcome::Failed`] are then
    /// reported as their event (see [`Outcome::into_event`]); feed
    /// [`Input::EventHandled`] when that handler has finished.
    Outcome(Outcome<C, E>),
    /// ([`RetryPolicy::Custom`] only) compute the retry delay of the attempt that starts
    /// now and feed it as [`Input::RetryDelay`].
    ComputeRetryDelay {
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
    /// Close this connection: the current one on `close`, or one that came too late for
    /// anybody to see. When it is the current one, feed [`Input::ConnectionClosed`] once it
    /// has closed.
    CloseConnection(C),
    /// The machine has finished for good: the last connection is closed (or asked to be),
    /// no handler is running and nothing more will ever be reported. Every later input is
    /// rejected (and handed back).
    Finished,
}

/// What a persistent connection is doing, for callers that watch without consuming events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// Too many commands wait to be polled: drain [`Machine::poll_command`](crate::Machine::poll_command) first.
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

/// How a [`Machine`](crate::Machine) behaves: retry policy, jitter, seed, connect timeout.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    pub(crate) retry: RetryPolicy,
    pub(crate) jitter: Jitter,
    pub(crate) seed: u64,
    pub(crate) connect_timeout: Option<Duration>,
}

impl Config {
    /// The seed's behaviour: constant 10 s retry delay, +-30 % jitter, no connect timeout,
    /// seed 0.
    pub const fn new() -> Self {
        Config {
            retry: RetryPolicy::DEFAULT,
            jitter: Jitter::STANDARD,
            seed: 0,
            connect_timeout: None,
        }
    }

    /// Sets the retry policy (R7).
    pub const fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Sets the jitter (R7); [`Jitter::Off`] uses the policy's delays as they are.
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the random generator of the jitter (R15: same seed, same inputs, same commands).
    pub const fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Bounds each attempt (address fetch and dial together, from the attempt's start).
    /// `None`, the default, waits as long as they take; so does a zero duration.
    pub const fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = match timeout {
            Some(t) if t.is_zero() => None,
            other => other,
        };
        self
    }

    /// The retry policy.
    pub const fn get_retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// The jitter.
    pub const fn get_jitter(&self) -> Jitter {
        self.jitter
    }

    /// The seed.
    pub const fn get_seed(&self) -> u64 {
        self.seed
    }

    /// The connect timeout, if any.
    pub const fn get_connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}
