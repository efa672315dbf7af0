//! The sans-IO state machine.

use core::fmt::{self, Debug, Write as _};
use core::time::Duration;

use crate::queue::{CAPACITY, Later, Queue};
use crate::rng::{JitterRng, Words};
use crate::types::{
    AttemptId, Command, Config, Event, Expecting, Failure, Input, InputError, InputKind, Rejected,
    State, StopKind, TimerId,
};

/// The most commands one input can queue (a timeout firing: timer, cancel, outcome, and
/// slack). An input is refused while fewer slots than this are free.
const MAX_PER_INPUT: usize = 4;

/// The sans-IO core of a persistent connection: it decides everything, does nothing.
///
/// # Contract
///
/// * Feed every [`Input`] with [`handle_input`](Self::handle_input); then drain
///   [`poll_command`](Self::poll_command) until it returns `None` and carry out each
///   [`Command`] in order. The next input is taken only once that is done (the queue
///   holds one input's worth of commands, so the machine stays small): an input that comes
///   while commands wait is refused with [`InputError::Backlog`](crate::InputError::Backlog),
///   to be fed again after the drain. Nothing else moves the machine: it has no clock, no I/O, no
///   allocation, and never calls caller code.
/// * The machine starts working when created: the first command is
///   `Emit(AttemptingToConnect)` (R1).
/// * Time enters only as [`Input::TimerFired`] for the timer it asked for; randomness only
///   from a ChaCha RNG seeded with the `seed` given to [`new`](Self::new) (R15).
/// * Every [`Command::Emit`] is answered with exactly one [`Input::EventHandled`] once the
///   handler has finished; until then the machine takes no next step (R6). No other
///   command is answered with it. An `Emit` of `Connected` or `FailedToConnect` is also
///   the attempt's outcome: give it to the waiters before reporting it (R3).
/// * Every command that concerns an attempt or a connection names the attempt
///   ([`AttemptId`]): feed it back in the answer.
/// * An input it did not ask for is refused with [`Rejected`], which hands the input back
///   and leaves the machine unchanged (R16).
///
/// # Type parameters
///
/// `A` is the address (compared to de-duplicate `ObtainedAddress`), `C` the connection (a
/// cheap handle, handed out more than once), `E` the caller's error. `E` needs only
/// `Debug`: `FailedToConnect` is de-duplicated by a hash of the error's `Debug` text
/// (kind and message for an `io::Error`), and each error is moved out exactly once, so
/// the standard library's `io::Error` works as it is.
#[repr(C)]
pub struct Machine<A, C, E> {
    // Laid out in this order (`repr(C)`): what every attempt touches (timer, fetch, dial,
    // failure: the herd's every step) is one run of memory, from the config's
    // `connect_timeout` to the queue's second later command (233 bytes for the herd's
    // types). Behind it, what an attempt seldom or never reads: the rest of the queue, the
    // RNG's seed (one refill in four attempts) and the current connection; before it,
    // `min_uptime`, the config's first field. Over a million machines in memory, fewer
    // lines come from memory per attempt (BENCHMARKS.md, F8). Eight-byte fields before the
    // small ones, so that the only padding (four bytes for the herd's types, none for the
    // driver's) is before the queue.
    config: Config,
    /// This attempt's retry delay, after jitter, once known.
    retry_delay: Option<Duration>,
    /// The jitter's next random words (one is drawn per attempt; `rng` refills them).
    rng_words: Words,
    /// Decides which errors are "equal" for the F de-duplication.
    key: fn(&E) -> u64,
    /// The latest attempt's number (0: none yet).
    attempt: u64,
    /// Bit `i` set: attempt `attempt - i` was abandoned with its fetch (`late_fetch`) or
    /// its dial (`late_dial`) still out, so its result, if it comes, is late: a late
    /// connection is closed. Kept apart so a result of the wrong kind is still refused.
    late_fetch: u64,
    late_dial: u64,
    /// Hash of the last error of this cycle (F de-duplication), if `has_last_error`.
    last_error: u64,
    /// The id of the newest timer and whether it is still out.
    timer: u64,
    /// The last address obtained in this cycle (O de-duplication).
    last_address: Option<A>,
    failures: u32,
    wait: Wait,
    /// The next of `rng_words` to draw (kept here, where it packs with the flags).
    rng_next: u8,
    has_last_error: bool,
    timer_out: bool,
    plan: TimerPlan,
    /// This attempt's retry timer has fired (or its delay was zero).
    retry_due: bool,
    /// This attempt's connect timeout fired while the `ObtainedAddress` handler ran.
    timed_out: bool,
    stop: Option<StopKind>,
    /// The current connection closed while the `Connected` handler ran (R5).
    closed_during_handler: bool,
    /// We asked the driver to close the current connection.
    close_sent: bool,
    /// The current connection has not been current for `min_uptime` yet (R19): if it
    /// closes now, it counts as a failure.
    uptime_pending: bool,
    queue: Queue<Command<A, C, E>>,
    rng: JitterRng,
    /// The current connection and the attempt that made it.
    current: Option<(C, AttemptId)>,
}

/// What the machine waits for next.
#[derive(Clone, Debug, PartialEq)]
enum Wait {
    /// The handler of a reported event; then `After`.
    Handler(After),
    /// The caller's retry delay (custom policy).
    RetryDelay,
    Fetch,
    Dial,
    /// A connection is current; waiting for it to close.
    Connected,
    /// The retry timer; then `Next`.
    RetryTimer(Next),
    Finished,
}

#[derive(Clone, Debug, PartialEq)]
enum After {
    /// `AttemptingToConnect` was reported: start an attempt.
    Attempt,
    /// `ObtainedAddress` was reported: dial it (it is `last_address`).
    Dial,
    /// `FailedToConnect` was reported: wait for the retry timer, then the next attempt.
    Failure,
    /// `Connected` was reported: wait for the connection to close.
    Connected,
    /// `Disconnected` was reported: wait for the retry timer, then the next cycle.
    Disconnected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    Attempt,
    Cycle,
}

/// What the firing of the one outstanding timer means. The retry timer and the connect
/// timeout both start with the attempt, so one timer serves both: it fires at the earlier
/// deadline and is re-armed for the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerPlan {
    Retry,
    Timeout,
    Both,
    /// The timeout first; then the retry timer for the rest of the retry delay.
    TimeoutThenRetry,
    /// The retry timer first; then the timeout for the rest of the connect timeout.
    RetryThenTimeout,
}

impl<A, C, E> Machine<A, C, E>
where
    A: Clone + PartialEq,
    C: Clone,
    E: Debug,
{
    /// A machine that starts its first cycle at once: its first command reports
    /// `AttemptingToConnect`. Errors are compared by [`error_key`], a hash of their
    /// `Debug` text.
    ///
    /// `seed` seeds the jitter's random generator (R15: the same seed and the same inputs
    /// give the same commands). Give every machine its own seed (from the OS, a clock, a
    /// counter): machines that share one draw the same delays and retry in lockstep.
    pub fn new(config: Config, seed: u64) -> Self {
        Self::with_error_key(config, seed, error_key::<E>)
    }

    /// As [`new`](Self::new), but errors are "equal" for the `FailedToConnect`
    /// de-duplication (R4) when `key` gives them the same value.
    ///
    /// The default formats the error with `Debug`, which for some types allocates (the
    /// standard library's `io::Error` builds the OS message in a `String`): a key such as
    /// kind and raw OS error keeps the machine allocation-free, and is faster.
    pub fn with_error_key(mut config: Config, seed: u64, key: fn(&E) -> u64) -> Self {
        // The fields are public: a zero timeout set directly still means "no bound".
        config.connect_timeout = config.connect_timeout.filter(|t| !t.is_zero());
        config.min_uptime = config.min_uptime.filter(|t| !t.is_zero());
        let mut machine = Machine {
            key,
            rng: JitterRng::new(seed),
            rng_words: Words::default(),
            rng_next: JitterRng::EMPTY,
            config,
            queue: Queue::new(),
            wait: Wait::Finished,
            stop: None,
            attempt: 0,
            late_fetch: 0,
            late_dial: 0,
            failures: 0,
            last_address: None,
            last_error: 0,
            has_last_error: false,
            current: None,
            closed_during_handler: false,
            close_sent: false,
            timer: 0,
            timer_out: false,
            plan: TimerPlan::Retry,
            retry_due: false,
            timed_out: false,
            retry_delay: None,
            uptime_pending: false,
        };
        machine.start_cycle();
        machine
    }

    /// The next thing to do, or `None` when the machine waits for input.
    #[inline]
    pub fn poll_command(&mut self) -> Option<Command<A, C, E>> {
        if let Some(command) = self.queue.take_front() {
            return Some(command);
        }
        // Seen here, the last poll of a drain (nothing waits) costs no call.
        if !self.queue.has_later() {
            return None;
        }
        self.build_next()
    }

    /// Builds the next command that waits in compact form ([`Later`]) and hands it out
    /// directly. Built here rather than stored whole when the input queued it: a command
    /// written into the machine and read back at once by `poll_command`, with copies whose
    /// widths differ from the stores that made it, stalled every drain on store-to-load
    /// forwarding (the `machine` bench's loops were 15 to 25 % slower, BENCHMARKS.md F5).
    /// Out of line: inlined into the drain loops it made them slower again.
    #[inline(never)]
    fn build_next(&mut self) -> Option<Command<A, C, E>> {
        while let Some(later) = self.queue.pop_later() {
            if let Some(command) = self.rebuild(later) {
                return Some(command);
            }
        }
        None
    }

    /// The next command, without taking it: the one [`poll_command`](Self::poll_command)
    /// returns next. It takes `&mut self` because most commands wait in a compact form
    /// until polled; this builds the next one so that it can be lent. To know only whether
    /// a command waits, [`has_command`](Self::has_command) builds nothing.
    pub fn peek_command(&mut self) -> Option<&Command<A, C, E>> {
        self.build_front();
        self.queue.peek()
    }

    /// Builds the next small command whole at the front, if the front is free: for a peek
    /// to lend it, or to make room for one more small one ([`make_room`](Self::make_room)).
    fn build_front(&mut self) {
        if self.queue.front_is_free() {
            if let Some(command) = self.build_next() {
                self.queue.set_front(command);
            }
        }
    }

    /// Whether a command waits to be polled: while it does, inputs are refused with
    /// [`InputError::Backlog`](crate::InputError::Backlog).
    pub fn has_command(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Feeds one input. On success, drain [`poll_command`](Self::poll_command). On error
    /// the machine is unchanged and the input comes back inside [`Rejected`].
    pub fn handle_input(&mut self, input: Input<A, C, E>) -> Result<(), Rejected<A, C, E>> {
        match self.check(&input) {
            Err(error) => Err(Rejected { error, input }),
            Ok(()) => {
                self.apply(input);
                Ok(())
            }
        }
    }

    /// What the persistent connection is doing.
    pub fn state(&self) -> State {
        if self.wait == Wait::Finished {
            State::Closed
        } else if self.stop.is_some() {
            State::Closing
        } else if self.current.is_some() {
            State::Connected
        } else {
            match self.wait {
                Wait::Handler(After::Disconnected) | Wait::RetryTimer(Next::Cycle) => {
                    State::Disconnected
                }
                _ => State::Connecting,
            }
        }
    }

    /// The current connection, if any (R10): from the success of its attempt until it has
    /// closed and its `Connected` handler has finished.
    pub fn current_connection(&self) -> Option<&C> {
        self.current.as_ref().map(|(c, _)| c)
    }

    /// The attempt that made the current connection (to name in
    /// [`Input::ConnectionClosed`]).
    pub fn current_attempt(&self) -> Option<AttemptId> {
        self.current.as_ref().map(|(_, a)| *a)
    }

    /// Whether `close`, `abort` or `close_when_current_connection_is_closed` has been fed
    /// (true from the first one, before the machine finishes).
    pub fn is_closed(&self) -> bool {
        self.stop.is_some()
    }

    /// How the machine was told to stop, if it was.
    pub fn stop_kind(&self) -> Option<StopKind> {
        self.stop
    }

    /// Whether the machine has finished for good ([`Command::Finished`] was queued).
    pub fn is_finished(&self) -> bool {
        self.wait == Wait::Finished
    }

    /// Failed attempts since the last success (R4, R5).
    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// The latest attempt, if one has started.
    pub fn attempt(&self) -> Option<AttemptId> {
        (self.attempt > 0).then_some(AttemptId(self.attempt))
    }

    /// The retry delay (after jitter) of the latest attempt, once it is known (`None` before
    /// the first attempt, and while a [`RetryPolicy::Custom`](crate::RetryPolicy::Custom)
    /// delay is awaited or was never given).
    pub fn retry_delay(&self) -> Option<Duration> {
        self.retry_delay
    }

    /// The configuration the machine was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the machine has asked for the current connection to be closed (by `close`
    /// or `reconnect_now`) and it has not closed yet: a driver should hand it out no more.
    pub fn is_closing_connection(&self) -> bool {
        self.close_sent && self.current.is_some() && !self.closed_during_handler
    }

    /// Whether the current connection has yet to stay current for
    /// [`Config::min_uptime`] (R19): if it closes now, it counts as a failure.
    pub fn uptime_pending(&self) -> bool {
        self.uptime_pending
    }

    /// Whether the timer out is a plain retry timer the machine is not waiting for: if it
    /// fired now, no command would follow and no query would change; only the next input
    /// would see it (R7: the next attempt or cycle starts at once rather than waiting).
    ///
    /// A driver may then hold the timer back: keep its deadline, arm no real timer, and feed
    /// [`Input::TimerFired`] just before its next input once the deadline has passed. It
    /// must arm the timer for the rest of the delay as soon as this turns `false` (the
    /// attempt failed and the machine now waits for the timer, say). A connection that
    /// outlives its retry delay then never wakes its driver for the timer.
    pub fn retry_timer_can_wait(&self) -> bool {
        self.timer_out
            && self.plan == TimerPlan::Retry
            && self.stop.is_none()
            && !matches!(self.wait, Wait::RetryTimer(_) | Wait::Finished)
    }

    /// What the machine waits for, as named in errors.
    pub fn expecting(&self) -> Expecting {
        match &self.wait {
            Wait::Handler(_) => Expecting::EventHandled,
            Wait::RetryDelay => Expecting::RetryDelay,
            Wait::Fetch => Expecting::Address,
            Wait::Dial => Expecting::DialResult,
            Wait::Connected => Expecting::ConnectionClosed,
            Wait::RetryTimer(_) => Expecting::RetryTimer,
            Wait::Finished => Expecting::Nothing,
        }
    }

    // ----- validation: decides, changes nothing -----

    fn check(&self, input: &Input<A, C, E>) -> Result<(), InputError> {
        let got = input.kind();
        if self.wait == Wait::Finished {
            return Err(InputError::Finished { got });
        }
        // One input's worth is the whole queue: it must be empty.
        const _: () = assert!(MAX_PER_INPUT == CAPACITY);
        if !self.queue.is_empty() {
            return Err(InputError::Backlog {
                got,
                pending: self.queue.pending(),
            });
        }
        let unexpected = InputError::Unexpected {
            got,
            expected: self.expecting(),
        };
        match input {
            Input::AddressObtained { attempt, .. } => self.check_result(*attempt, Wait::Fetch, got),
            Input::Dialed { attempt, .. } => self.check_result(*attempt, Wait::Dial, got),
            Input::TimerFired(id) => {
                if self.timer_out && id.0 == self.timer {
                    Ok(())
                } else {
                    Err(InputError::StaleTimer {
                        got: *id,
                        outstanding: self.timer_out.then_some(TimerId(self.timer)),
                    })
                }
            }
            Input::EventHandled => match self.wait {
                Wait::Handler(_) => Ok(()),
                _ => Err(unexpected),
            },
            Input::RetryDelay(_) => match self.wait {
                Wait::RetryDelay => Ok(()),
                _ => Err(unexpected),
            },
            Input::ConnectionClosed { attempt } => match &self.current {
                Some((_, made_by)) if made_by == attempt && !self.closed_during_handler => Ok(()),
                // Already reported closed: a duplicate.
                Some((_, made_by)) if made_by == attempt => Err(unexpected),
                Some(_) => Err(InputError::UnknownAttempt {
                    got,
                    attempt: *attempt,
                    current: AttemptId(self.attempt),
                }),
                None => Err(unexpected),
            },
            Input::UptimeReached { attempt } => match &self.current {
                Some((_, made_by))
                    if made_by == attempt && self.uptime_pending && !self.closed_during_handler =>
                {
                    Ok(())
                }
                Some((_, made_by)) if made_by != attempt => Err(InputError::UnknownAttempt {
                    got,
                    attempt: *attempt,
                    current: AttemptId(self.attempt),
                }),
                _ => Err(unexpected),
            },
            Input::Close
            | Input::Abort
            | Input::CloseWhenCurrentConnectionIsClosed
            | Input::ReconnectNow => Ok(()),
        }
    }

    fn check_result(
        &self,
        attempt: AttemptId,
        waiting: Wait,
        got: InputKind,
    ) -> Result<(), InputError> {
        if attempt.0 == self.attempt && self.wait == waiting {
            return Ok(());
        }
        let late = match waiting {
            Wait::Fetch => self.late_fetch,
            _ => self.late_dial,
        };
        if self.is_late(attempt, late) {
            return Ok(());
        }
        if attempt.0 == self.attempt {
            Err(InputError::Unexpected {
                got,
                expected: self.expecting(),
            })
        } else {
            Err(InputError::UnknownAttempt {
                got,
                attempt,
                current: AttemptId(self.attempt),
            })
        }
    }

    /// An abandoned attempt whose result (of the kind `late` tracks) has not come yet.
    fn is_late(&self, attempt: AttemptId, late: u64) -> bool {
        match self.attempt.checked_sub(attempt.0) {
            Some(age) if attempt.0 > 0 && age < 64 => late & (1 << age) != 0,
            _ => false,
        }
    }

    // ----- transitions: only called on checked input -----

    fn apply(&mut self, input: Input<A, C, E>) {
        match input {
            Input::AddressObtained { attempt, result } => {
                if Self::take_late(self.attempt, &mut self.late_fetch, attempt) {
                    return; // Too late: nobody waits for it, and an address needs no closing.
                }
                match result {
                    Ok(address) => self.on_address(address),
                    Err(e) => self.fail(Failure::Error(e)),
                }
            }
            Input::Dialed { attempt, result } => {
                if Self::take_late(self.attempt, &mut self.late_dial, attempt) {
                    if let Ok(connection) = result {
                        self.push(Command::CloseConnection {
                            attempt,
                            connection,
                        });
                    }
                    return;
                }
                match result {
                    Ok(conn) => self.on_connected(conn, attempt),
                    Err(e) => self.fail(Failure::Error(e)),
                }
            }
            Input::TimerFired(_) => self.on_timer(),
            Input::EventHandled => self.on_handled(),
            Input::RetryDelay(delay) => self.begin_attempt(delay),
            Input::ConnectionClosed { .. } => self.on_connection_closed(),
            Input::Close => self.on_stop(StopKind::Close),
            Input::Abort => self.on_stop(StopKind::Abort),
            Input::CloseWhenCurrentConnectionIsClosed => {
                self.on_stop(StopKind::WhenCurrentConnectionCloses)
            }
            Input::ReconnectNow => self.on_reconnect_now(),
            Input::UptimeReached { .. } => {
                // R19: it has stayed up long enough; the backoff starts over.
                self.uptime_pending = false;
                self.failures = 0;
            }
        }
    }

    /// Clears and returns whether `attempt`'s result is an awaited late one.
    fn take_late(current: u64, late: &mut u64, attempt: AttemptId) -> bool {
        match current.checked_sub(attempt.0) {
            Some(age) if attempt.0 > 0 && age < 64 && *late & (1 << age) != 0 => {
                *late &= !(1 << age);
                true
            }
            _ => false,
        }
    }

    /// Queues a command that carries what the caller handed in (an address, an error, a
    /// late connection): it is kept whole, at the front. Only an input's first command does,
    /// and the queue is empty when an input is taken; were it not, the command would be
    /// dropped rather than panic (never reached).
    fn push(&mut self, command: Command<A, C, E>) {
        if self.queue.is_empty() {
            self.queue.set_front(command);
        }
    }

    /// Queues a command whose payload the machine can rebuild: it waits small, behind any
    /// whole one, and is built when polled ([`build_next`](Self::build_next)). Inlined, so
    /// that each call site stores its one kind of [`Later`].
    #[inline(always)]
    fn enqueue(&mut self, later: Later) {
        if let Err(later) = self.queue.push_later(later) {
            self.make_room(later);
        }
    }

    /// Queues `later` when the small slots are full: the first small one is built whole at
    /// the front, which is then free (a timeout that fails an attempt again and starts the
    /// next at once queues four: cancel, failure, timer, fetch). Building it now rather than
    /// when polled gives the same command: what it reads does not change for the rest of
    /// the input (see `rebuild`). Were the front taken, `later` would be dropped rather
    /// than panic (never reached: one input queues at most `CAPACITY`).
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, later: Later) {
        self.build_front();
        let _ = self.queue.push_later(later);
    }

    /// The command `later` stands for. The machine has not moved since it was queued (no
    /// input is taken while commands wait), so the current connection is still the one it
    /// named, the newest timer is the one it started (an input starts at most one: the
    /// attempt's, or the rest of a plan), and a timeout's failure and an uptime timer's
    /// delay are the configured ones, as when it was made.
    #[inline(always)]
    fn rebuild(&self, later: Later) -> Option<Command<A, C, E>> {
        let timed_out = || Failure::TimedOut {
            after: self.config.connect_timeout.unwrap_or_default(),
        };
        Some(match later {
            Later::Attempting => Command::Emit {
                event: Event::AttemptingToConnect,
                attempt: None,
            },
            Later::Connected(made_by) => Command::Emit {
                event: Event::Connected(self.current_of(made_by)?.clone()),
                attempt: Some(made_by),
            },
            Later::Disconnected { made_by } => Command::Emit {
                event: Event::Disconnected,
                attempt: (made_by > 0).then_some(AttemptId(made_by)),
            },
            Later::TimedOut {
                attempt,
                again: false,
            } => Command::Emit {
                event: Event::FailedToConnect(timed_out()),
                attempt: Some(attempt),
            },
            Later::TimedOut {
                attempt,
                again: true,
            } => Command::FailedAgain {
                attempt,
                error: timed_out(),
            },
            Later::Stopped(kind) => Command::Stopped(kind),
            Later::ComputeRetryDelay { attempt, failures } => Command::ComputeRetryDelay {
                attempt,
                consecutive_failures: failures,
            },
            Later::StartTimer { secs, nanos } => Command::StartTimer {
                timer: TimerId(self.timer),
                delay: Duration::new(secs, nanos),
            },
            Later::StartUptimeTimer(attempt) => Command::StartUptimeTimer {
                attempt,
                delay: self.config.min_uptime.unwrap_or_default(),
            },
            Later::FetchAddress(attempt) => Command::FetchAddress { attempt },
            Later::CancelAttempt(attempt) => Command::CancelAttempt { attempt },
            Later::CloseCurrent(made_by) => Command::CloseConnection {
                attempt: made_by,
                connection: self.current_of(made_by)?.clone(),
            },
            Later::Finished => Command::Finished,
        })
    }

    /// The current connection, if `made_by` made it.
    fn current_of(&self, made_by: AttemptId) -> Option<&C> {
        match &self.current {
            Some((conn, attempt)) if *attempt == made_by => Some(conn),
            _ => None,
        }
    }

    /// Reports an event that carries what the caller handed in (an address, an error).
    fn emit(&mut self, event: Event<A, C, Failure<E>>, attempt: Option<AttemptId>, after: After) {
        self.push(Command::Emit { event, attempt });
        self.wait = Wait::Handler(after);
    }

    /// Reports an event the machine can rebuild ([`Later`]).
    fn emit_later(&mut self, event: Later, after: After) {
        self.enqueue(event);
        self.wait = Wait::Handler(after);
    }

    fn current_id(&self) -> AttemptId {
        AttemptId(self.attempt)
    }

    /// R1: a cycle starts by reporting `AttemptingToConnect`.
    fn start_cycle(&mut self) {
        self.last_address = None;
        self.has_last_error = false;
        self.emit_later(Later::Attempting, After::Attempt);
    }

    /// R2, R7: each attempt first starts its retry timer, then fetches the address.
    fn start_attempt(&mut self) {
        self.attempt = self.attempt.saturating_add(1);
        self.late_fetch <<= 1;
        self.late_dial <<= 1;
        self.retry_due = false;
        self.timed_out = false;
        self.retry_delay = None;
        match self.config.retry_policy.delay(self.failures) {
            Some(delay) => self.begin_attempt(delay),
            None => {
                self.enqueue(Later::ComputeRetryDelay {
                    attempt: self.current_id(),
                    failures: self.failures,
                });
                self.wait = Wait::RetryDelay;
            }
        }
    }

    fn begin_attempt(&mut self, delay: Duration) {
        let retry = self.config.jitter.apply(delay, || {
            self.rng.next_u16(&mut self.rng_words, &mut self.rng_next)
        });
        self.retry_delay = Some(retry);
        match self.config.connect_timeout {
            None if retry.is_zero() => self.retry_due = true,
            None => self.start_timer(retry, TimerPlan::Retry),
            Some(t) if t < retry => self.start_timer(t, TimerPlan::TimeoutThenRetry),
            Some(t) if t == retry => self.start_timer(t, TimerPlan::Both),
            Some(t) if retry.is_zero() => {
                self.retry_due = true;
                self.start_timer(t, TimerPlan::Timeout);
            }
            Some(_) => self.start_timer(retry, TimerPlan::RetryThenTimeout),
        }
        self.enqueue(Later::FetchAddress(self.current_id()));
        self.wait = Wait::Fetch;
    }

    fn start_timer(&mut self, delay: Duration, plan: TimerPlan) {
        self.timer = self.timer.saturating_add(1);
        self.timer_out = true;
        self.plan = plan;
        self.enqueue(Later::StartTimer {
            secs: delay.as_secs(),
            nanos: delay.subsec_nanos(),
        });
    }

    fn on_address(&mut self, address: A) {
        if self.last_address.as_ref() == Some(&address) {
            self.dial(address);
        } else {
            self.last_address = Some(address.clone());
            self.emit(
                Event::ObtainedAddress(address.clone()),
                Some(self.current_id()),
                After::Dial,
            );
        }
    }

    fn dial(&mut self, address: A) {
        self.push(Command::Dial {
            attempt: self.current_id(),
            address,
            consecutive_failures: self.failures,
        });
        self.wait = Wait::Dial;
    }

    /// R5: success resets the count; the connection is current before `Connected` is
    /// reported (the driver gives it to waiters first, R3).
    fn on_connected(&mut self, conn: C, attempt: AttemptId) {
        match self.config.min_uptime {
            // R19: the count goes back to 0 only once it has stayed up that long.
            Some(_) => {
                self.uptime_pending = true;
                self.enqueue(Later::StartUptimeTimer(attempt));
            }
            None => self.failures = 0,
        }
        self.current = Some((conn, attempt));
        self.closed_during_handler = false;
        self.close_sent = false;
        // The event hands out a clone of the current connection, made when it is queued.
        self.emit_later(Later::Connected(attempt), After::Connected);
    }

    /// R4: a failure counts, goes to waiters (R3), and is reported unless it repeats the
    /// previous error of this cycle.
    fn fail(&mut self, error: Failure<E>) {
        self.failures = self.failures.saturating_add(1);
        // As in the seed, errors compare by the caller's error itself, whichever step failed.
        let key = match error.error() {
            Some(e) => (self.key)(e),
            // The machine's own error: keyed apart from any caller's.
            None => error_key(&error) ^ 0x9e37_79b9_7f4a_7c15,
        };
        let repeated = self.has_last_error && self.last_error == key;
        self.last_error = key;
        self.has_last_error = true;
        let attempt = self.current_id();
        // A timeout's failure is rebuilt from the configuration (`Later::TimedOut`).
        let timed_out = matches!(error, Failure::TimedOut { .. });
        if repeated {
            if timed_out {
                self.enqueue(Later::TimedOut {
                    attempt,
                    again: true,
                });
            } else {
                self.push(Command::FailedAgain { attempt, error });
            }
            self.after_failure();
        } else if timed_out {
            let event = Later::TimedOut {
                attempt,
                again: false,
            };
            self.emit_later(event, After::Failure);
        } else {
            self.emit(Event::FailedToConnect(error), Some(attempt), After::Failure);
        }
    }

    fn after_failure(&mut self) {
        if self.stop.is_some() {
            self.finish();
        } else if self.retry_due {
            self.start_attempt();
        } else {
            self.wait = Wait::RetryTimer(Next::Attempt);
        }
    }

    /// Cancels the current attempt's fetch or dial; its result, if it comes, is late.
    fn abandon(&mut self) {
        match self.wait {
            Wait::Fetch => self.late_fetch |= 1,
            Wait::Dial => self.late_dial |= 1,
            _ => {}
        }
        self.enqueue(Later::CancelAttempt(self.current_id()));
    }

    fn on_timer(&mut self) {
        self.timer_out = false;
        if self.stop.is_some() {
            // No retry will follow, and an attempt in flight was already cancelled.
            return;
        }
        match self.plan {
            TimerPlan::Retry => self.retry_due = true,
            TimerPlan::Timeout => self.on_timeout(),
            TimerPlan::Both => {
                self.retry_due = true;
                self.on_timeout();
            }
            TimerPlan::TimeoutThenRetry => {
                self.start_timer(self.rest_of_plan(), TimerPlan::Retry);
                self.on_timeout();
            }
            TimerPlan::RetryThenTimeout => {
                self.retry_due = true;
                if matches!(
                    self.wait,
                    Wait::Fetch | Wait::Dial | Wait::Handler(After::Dial)
                ) {
                    self.start_timer(self.rest_of_plan(), TimerPlan::Timeout);
                }
            }
        }
        if self.retry_due {
            if let Wait::RetryTimer(next) = self.wait {
                match next {
                    Next::Attempt => self.start_attempt(),
                    Next::Cycle => self.start_cycle(),
                }
            }
        }
    }

    /// The later of this attempt's two deadlines, from the earlier one: both are known
    /// (its retry delay and the connect timeout), so the plan need not store it.
    fn rest_of_plan(&self) -> Duration {
        let retry = self.retry_delay.unwrap_or_default();
        let timeout = self.config.connect_timeout.unwrap_or_default();
        retry.abs_diff(timeout)
    }

    fn on_timeout(&mut self) {
        let Some(after) = self.config.connect_timeout else {
            return;
        };
        match self.wait {
            Wait::Fetch | Wait::Dial => {
                self.abandon();
                self.fail(Failure::TimedOut { after });
            }
            // The handler of `ObtainedAddress` runs: fail once it has finished (R6).
            Wait::Handler(After::Dial) => self.timed_out = true,
            _ => {}
        }
    }

    fn on_handled(&mut self) {
        let Wait::Handler(after) = core::mem::replace(&mut self.wait, Wait::Finished) else {
            return; // check() lets EventHandled through only while a handler runs
        };
        match after {
            After::Attempt if self.stop.is_some() => self.finish(),
            After::Attempt => self.start_attempt(),
            After::Dial if self.stop.is_some() => self.finish(),
            After::Dial if self.timed_out => {
                let after = self.config.connect_timeout.unwrap_or_default();
                self.fail(Failure::TimedOut { after });
            }
            After::Dial => match self.last_address.clone() {
                Some(address) => self.dial(address),
                // on_address set it before reporting it; nothing to dial otherwise.
                None => self.finish(),
            },
            After::Failure => self.after_failure(),
            After::Connected if self.closed_during_handler => self.disconnected(),
            After::Connected => self.wait = Wait::Connected,
            After::Disconnected if self.stop.is_some() => self.finish(),
            After::Disconnected if self.retry_due => self.start_cycle(),
            After::Disconnected => self.wait = Wait::RetryTimer(Next::Cycle),
        }
    }

    fn on_connection_closed(&mut self) {
        if matches!(self.wait, Wait::Handler(After::Connected)) {
            // R5: `Disconnected` only after the `Connected` handler has finished.
            self.closed_during_handler = true;
        } else {
            self.disconnected();
        }
    }

    fn disconnected(&mut self) {
        if core::mem::take(&mut self.uptime_pending) {
            // R19: it died young, as a failed attempt would (no FailedToConnect for it).
            self.failures = self.failures.saturating_add(1);
        }
        let made_by = self.current.take().map_or(0, |(_, made_by)| made_by.0);
        self.closed_during_handler = false;
        self.close_sent = false;
        self.emit_later(Later::Disconnected { made_by }, After::Disconnected);
    }

    /// R11, R12: stop retrying. `close` also closes the current connection; all three
    /// cancel an attempt in flight (no `FailedToConnect` for it).
    fn on_stop(&mut self, kind: StopKind) {
        match self.stop {
            None => {
                self.stop = Some(kind);
                self.enqueue(Later::Stopped(kind));
            }
            // A close after an abort still closes the current connection.
            Some(StopKind::Abort | StopKind::WhenCurrentConnectionCloses)
                if kind == StopKind::Close =>
            {
                self.stop = Some(kind);
            }
            Some(_) => return,
        }
        if kind == StopKind::Close && !self.close_sent && !self.closed_during_handler {
            if let Some(attempt) = self.current_attempt() {
                self.close_sent = true;
                self.enqueue(Later::CloseCurrent(attempt));
            }
        }
        match self.wait {
            Wait::Fetch | Wait::Dial => {
                self.abandon();
                self.finish();
            }
            Wait::RetryDelay | Wait::RetryTimer(_) => self.finish(),
            // A handler runs, or a connection is live: finish once they are done.
            Wait::Handler(_) | Wait::Connected | Wait::Finished => {}
        }
    }

    /// R18: skip the wait for the retry timer; when connected, close the connection first.
    fn on_reconnect_now(&mut self) {
        if self.stop.is_some() {
            return;
        }
        match self.wait {
            Wait::Connected | Wait::Handler(After::Connected) => {
                // Not a young death: a reconnect does not change the failure count.
                self.uptime_pending = false;
                self.skip_retry_timer();
                if !self.close_sent && !self.closed_during_handler {
                    if let Some(attempt) = self.current_attempt() {
                        self.close_sent = true;
                        self.enqueue(Later::CloseCurrent(attempt));
                    }
                }
            }
            // Between attempts or cycles: the timer counts as fired now.
            Wait::Handler(After::Failure | After::Disconnected) => self.skip_retry_timer(),
            Wait::RetryTimer(next) => {
                self.skip_retry_timer();
                match next {
                    Next::Attempt => self.start_attempt(),
                    Next::Cycle => self.start_cycle(),
                }
            }
            // An attempt is in flight (or about to be): nothing changes.
            Wait::Handler(After::Attempt | After::Dial)
            | Wait::RetryDelay
            | Wait::Fetch
            | Wait::Dial
            | Wait::Finished => {}
        }
    }

    /// The retry timer counts as fired; the one out, if any, is forgotten (its firing is
    /// refused as stale).
    fn skip_retry_timer(&mut self) {
        self.retry_due = true;
        self.timer_out = false;
    }

    fn finish(&mut self) {
        self.timer_out = false;
        self.wait = Wait::Finished;
        self.enqueue(Later::Finished);
    }
}

impl<A, C, E> Debug for Machine<A, C, E>
where
    A: Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Machine")
            .field("wait", &self.wait)
            .field("stop", &self.stop)
            .field("attempt", &self.attempt)
            .field("failures", &self.failures)
            .field("connected", &self.current.is_some())
            .field("timer_out", &self.timer_out)
            .field("retry_due", &self.retry_due)
            .field("pending", &self.queue.pending())
            .finish_non_exhaustive()
    }
}

/// The key that decides whether two errors are "equal" for the F de-duplication by default:
/// a 64-bit hash of the error's `Debug` text, computed without allocating (unless the
/// type's own `Debug` allocates).
pub fn error_key<T: Debug + ?Sized>(error: &T) -> u64 {
    /// FxHash-style mixing, eight bytes at a time: the text is short, but formatting it
    /// is on every failed attempt's path.
    struct Hasher(u64);
    impl Hasher {
        fn mix(&mut self, word: u64) {
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    impl fmt::Write for Hasher {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let bytes = s.as_bytes();
            let mut chunks = bytes.chunks_exact(8);
            for chunk in &mut chunks {
                let word = chunk
                    .iter()
                    .rev()
                    .fold(0u64, |w, b| (w << 8) | u64::from(*b));
                self.mix(word);
            }
            let tail = chunks
                .remainder()
                .iter()
                .rev()
                .fold(0u64, |w, b| (w << 8) | u64::from(*b));
            // The length keeps "ab" + "c" apart from "a" + "bc".
            self.mix(tail ^ ((bytes.len() as u64) << 56));
            Ok(())
        }
    }
    let mut h = Hasher(0xcbf2_9ce4_8422_2325);
    // A Debug impl that fails leaves a partial hash: still a key, just a coarser one.
    let _ = write!(h, "{error:?}");
    h.0
}

#[cfg(test)]
mod tests {
    extern crate std;

    use core::mem::offset_of;
    use std::{io, net::SocketAddr, sync::Arc};

    use super::*;

    #[derive(Debug)]
    struct Refused;

    /// `peek_command` lends the command `poll_command` returns next, whether it waits whole
    /// (it carries the caller's address) or small (built by the peek), and lends the same
    /// one again until it is polled; `has_command` says whether one waits.
    #[test]
    fn peek_lends_what_poll_returns_next() {
        let mut m: Machine<u16, u32, &str> = Machine::new(Config::new(), 1);
        assert!(m.has_command());
        let first = m.peek_command().cloned();
        assert_eq!(
            first,
            Some(Command::Emit {
                event: Event::AttemptingToConnect,
                attempt: None,
            })
        );
        assert_eq!(
            m.peek_command().cloned(),
            first,
            "a second peek lends the same"
        );
        assert!(m.has_command());
        assert_eq!(m.poll_command(), first);
        assert!(!m.has_command());
        assert_eq!(m.peek_command(), None);
        assert_eq!(m.poll_command(), None);

        // Two small ones: each peeked, then polled, in order.
        assert!(m.handle_input(Input::EventHandled).is_ok());
        let attempt = AttemptId(1);
        for expected in [
            Command::StartTimer {
                timer: TimerId(1),
                delay: m.retry_delay().unwrap_or_default(),
            },
            Command::FetchAddress { attempt },
        ] {
            assert!(m.has_command(), "{expected:?} waits");
            assert_eq!(m.peek_command(), Some(&expected));
            assert_eq!(m.poll_command(), Some(expected));
        }
        assert!(!m.has_command());

        // A whole one, which carries the address handed in.
        let obtained = Input::AddressObtained {
            attempt,
            result: Ok(7),
        };
        assert!(m.handle_input(obtained).is_ok());
        let whole = Command::Emit {
            event: Event::ObtainedAddress(7),
            attempt: Some(attempt),
        };
        assert!(m.has_command());
        assert_eq!(m.peek_command(), Some(&whole));
        assert_eq!(m.poll_command(), Some(whole));
        assert!(!m.has_command());
        assert_eq!(m.peek_command(), None);
    }

    /// An input that queues more small commands than there are small slots (a timeout
    /// that fails an attempt again and, its retry delay over too, starts the next: cancel,
    /// failure, timer, fetch) still hands all four out, in order, and refuses the next
    /// input until they are drained.
    #[test]
    fn an_input_that_queues_four_small_commands_hands_out_all_four() {
        use crate::{Jitter, RetryPolicy};
        let second = Duration::from_secs(1);
        let config = Config::new()
            .retry_policy(RetryPolicy::Constant(second))
            .jitter(Jitter::Off)
            .connect_timeout(second);
        let mut m: Machine<u16, u32, &'static str> = Machine::new(config, 1);
        let drain = |m: &mut Machine<u16, u32, &'static str>| {
            let mut out = std::vec::Vec::new();
            while let Some(command) = m.poll_command() {
                out.push(command);
            }
            out
        };
        let timed_out = Failure::TimedOut { after: second };
        drain(&mut m); // AttemptingToConnect
        assert!(m.handle_input(Input::EventHandled).is_ok());
        drain(&mut m); // the first attempt's timer and fetch
        assert!(m.handle_input(Input::TimerFired(TimerId(1))).is_ok());
        assert_eq!(
            drain(&mut m),
            [
                Command::CancelAttempt {
                    attempt: AttemptId(1)
                },
                Command::Emit {
                    event: Event::FailedToConnect(timed_out.clone()),
                    attempt: Some(AttemptId(1)),
                },
            ]
        );
        assert!(m.handle_input(Input::EventHandled).is_ok());
        drain(&mut m); // the second attempt's timer and fetch
        assert!(m.handle_input(Input::TimerFired(TimerId(2))).is_ok());
        assert_eq!(
            m.handle_input(Input::Close).map_err(|r| r.error),
            Err(InputError::Backlog {
                got: InputKind::Close,
                pending: 4
            })
        );
        let four = [
            Command::CancelAttempt {
                attempt: AttemptId(2),
            },
            Command::FailedAgain {
                attempt: AttemptId(2),
                error: timed_out,
            },
            Command::StartTimer {
                timer: TimerId(3),
                delay: second,
            },
            Command::FetchAddress {
                attempt: AttemptId(3),
            },
        ];
        assert_eq!(m.peek_command(), Some(&four[0]));
        assert_eq!(drain(&mut m), four);
        assert!(!m.has_command());
    }

    /// The layout the herd relies on (BENCHMARKS.md, F8): what every attempt touches is one
    /// run of memory, under four cache lines less a later command's slot, and what it
    /// seldom reads lies outside it; and the order costs no room for the driver's kind of
    /// types.
    #[test]
    fn what_every_attempt_touches_is_one_short_run() {
        type M = Machine<u16, u32, Refused>;
        let start = offset_of!(M, config) + offset_of!(Config, connect_timeout);
        let end = offset_of!(M, queue) + Queue::<Command<u16, u32, Refused>>::TOUCHED;
        assert!(
            end - start <= 240,
            "the hot run is {} bytes ({start}..{end})",
            end - start
        );
        assert!(offset_of!(M, config) + offset_of!(Config, min_uptime) < start);
        for (name, cold) in [
            ("rng", offset_of!(M, rng)),
            ("current", offset_of!(M, current)),
        ] {
            assert!(
                cold >= end,
                "{name} at {cold}, inside the hot run {start}..{end}"
            );
        }
        assert_eq!(
            size_of::<M>(),
            304,
            "four bytes of padding, before the queue"
        );
        assert_eq!(
            size_of::<Machine<SocketAddr, Arc<()>, io::Error>>(),
            344,
            "no padding for an address, a connection and an error of the driver's kind"
        );
    }
}
