//! The background task: carries out the machine's commands and feeds their results back.
//!
//! It is one hand-written future that polls its few slots (the attempt in flight, the
//! running handler, the timer, the current connection's close signal, connections being
//! closed) in turn, so it needs no runtime's select macro and runs on any executor. All
//! shared state is changed through [`Shared`]'s methods.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use persistent_connection::{AttemptId, Command, Event, Failure, Input, TimerId};

use crate::catch::{CatchUnwind, panic_message};
use crate::connection::{Connection, Ending};
use crate::context::AttemptContext;
use crate::error::{AttemptError, Callback, DriverEvent, PanicReport};
use crate::health::{Monitor, Verdict};
use crate::hooks::{Hooks, Outcome};
use crate::runtime::{BoxFuture, BoxTimer};
use crate::shared::{DriverCommand, DriverInput, Next, Shared};

/// How many steps the task takes in one poll before it yields to other tasks, so that a
/// hot retry loop (zero delay, instant failures) cannot starve the executor.
const BUDGET: usize = 128;

/// The delay used when a retry-delay closure panics: the seed's default.
const FALLBACK_DELAY: Duration = Duration::from_secs(10);

pub(crate) struct Task<A, C, E>
where
    A: Clone + PartialEq,
    C: Connection,
    E: fmt::Debug,
{
    /// Also where the runtime is (`Shared::runtime`): one pointer fewer per connection.
    shared: Arc<Shared<A, C, E>>,
    hooks: Hooks<A, C, E>,
    /// The attempt whose fetch or dial is in flight (its future is in `Hooks::attempts`).
    op: Option<AttemptId>,
    handler: Option<CatchUnwind<()>>,
    /// The retry timer out, if any, with its deadline while it is held back: while the
    /// Machine does not need it to fire on time (`retry_timer_can_wait`), no real timer is
    /// armed, and its firing is fed before the next input once the deadline has passed. So
    /// a connection that outlives its retry delay never arms one (R7).
    timer: Option<(TimerId, Option<Instant>)>,
    /// The sleep of the armed retry timer, kept once fired to be moved for the next
    /// attempt (no allocation per attempt where the runtime's timers can be moved).
    retry_sleep: Option<BoxTimer>,
    /// The current connection's `closed()`, with the attempt that made it.
    watch: Option<(AttemptId, C, CatchUnwind<()>)>,
    /// The health check's state, if one is configured (R17). Boxed: only connections
    /// with a health check pay for it.
    health: Option<Box<Health<C>>>,
    /// The current connection's uptime timer, with `min_uptime` (R19). Boxed: only
    /// connections with a `min_uptime` pay for it.
    uptime: Option<Box<(AttemptId, BoxFuture<()>)>>,
    closing: Vec<CatchUnwind<()>>,
    machine_finished: bool,
}

impl<A, C, E> Task<A, C, E>
where
    A: Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
    C: Connection,
    E: fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    pub(crate) fn new(shared: Arc<Shared<A, C, E>>, hooks: Hooks<A, C, E>) -> Self {
        Task {
            shared,
            hooks,
            op: None,
            handler: None,
            timer: None,
            retry_sleep: None,
            watch: None,
            health: None,
            uptime: None,
            closing: Vec::new(),
            machine_finished: false,
        }
    }

    /// Feeds an input from the task itself; a connection in a refused input is closed.
    fn feed(&mut self, input: DriverInput<A, C, E>) {
        if let Some(conn) = self.shared.feed(input).and_then(Input::into_connection) {
            self.close_connection(conn);
        }
    }

    fn close_connection(&mut self, conn: C) {
        self.closing
            .push(CatchUnwind::call(|| Box::pin(conn.close())));
    }

    fn report_panic(&self, during: Callback, message: Arc<str>) {
        let report = PanicReport {
            server_name: Arc::from(self.shared.server_name()),
            during,
            message,
        };
        match self.hooks.panic_hook() {
            Some(hook) => {
                // A panicking hook must not take the task down with it.
                let _ = catch_unwind(AssertUnwindSafe(|| hook(&report)));
            }
            None => eprintln!("{report}"),
        }
    }

    /// Publishes `event` to subscribers, then starts its handler (R6, R14).
    fn report(&mut self, event: DriverEvent<A, C, E>) {
        #[cfg(feature = "tracing")]
        trace_event(&event);
        self.shared.publish(&event);
        match self.hooks.on_event() {
            Some(on_event) => self.handler = Some(CatchUnwind::call(|| on_event(event))),
            None => self.feed(Input::EventHandled),
        }
    }

    fn execute(&mut self, command: DriverCommand<A, C, E>) {
        match command {
            // A stop that came while these waited in the queue has cancelled them: no user
            // code runs for an attempt after `close` (R11, R12).
            Command::FetchAddress { .. }
            | Command::Dial { .. }
            | Command::ComputeRetryDelay { .. }
                if self.shared.is_closed() => {}
            Command::Emit { event, attempt } => match event.map_failure(attempt_error) {
                Event::Connected(conn) => {
                    // R3, R5: current and handed to waiters before it is reported.
                    self.shared.deliver_connected(&conn);
                    if let Some(attempt) = attempt {
                        // A `closed()` that panics counts as closed, and is reported.
                        let closed = CatchUnwind::call(|| Box::pin(conn.closed()));
                        self.watch = Some((attempt, conn.clone(), closed));
                        if let Some((check, _)) = self.hooks.health() {
                            let monitor =
                                Monitor::start(conn.clone(), *check, self.shared.runtime());
                            let health = self.health.get_or_insert_with(|| {
                                Box::new(Health {
                                    current: None,
                                    closed: None,
                                })
                            });
                            health.current = Some((attempt, monitor));
                        }
                    }
                    self.report(Event::Connected(conn));
                }
                Event::FailedToConnect(error) => {
                    self.shared.deliver_failure(&error);
                    self.report(Event::FailedToConnect(error));
                }
                Event::Disconnected => {
                    self.shared.note_disconnected();
                    self.report(Event::Disconnected);
                }
                other => self.report(other),
            },
            Command::FailedAgain { error, .. } => {
                self.shared.deliver_failure(&attempt_error(error));
            }
            Command::Stopped(_) => self.shared.deliver_stopped(),
            Command::ComputeRetryDelay {
                consecutive_failures,
                ..
            } => {
                let delay = match self.hooks.retry_delay() {
                    Some(f) => catch_unwind(AssertUnwindSafe(|| f(consecutive_failures)))
                        .unwrap_or_else(|payload| {
                            self.report_panic(Callback::RetryDelay, panic_message(payload));
                            FALLBACK_DELAY
                        }),
                    None => FALLBACK_DELAY,
                };
                self.feed(Input::RetryDelay(delay));
            }
            Command::StartTimer { timer, delay } => {
                let runtime = self.shared.runtime();
                let deadline = if runtime.can_hold_timers() {
                    runtime.now().checked_add(delay)
                } else {
                    None
                };
                match deadline {
                    // The sleep itself is made when first armed: a connection whose first
                    // attempt succeeds and outlives its delay never has one.
                    Some(deadline) => self.timer = Some((timer, Some(deadline))),
                    None => self.arm(timer, delay),
                }
            }
            Command::StartUptimeTimer { attempt, delay } => {
                self.uptime = Some(Box::new((attempt, self.shared.runtime().sleep(delay))));
            }
            Command::FetchAddress { attempt } => {
                self.shared.note_attempt();
                self.hooks.attempts.fetch();
                self.op = Some(attempt);
            }
            Command::Dial {
                attempt,
                address,
                consecutive_failures,
            } => {
                let ctx =
                    AttemptContext::new(attempt, consecutive_failures, self.shared.abort_fn());
                self.hooks.attempts.dial(address, ctx);
                self.op = Some(attempt);
            }
            Command::CancelAttempt { attempt } => {
                if self.op == Some(attempt) {
                    // Dropping the future cancels it: close() never waits on a hung dial.
                    self.op = None;
                    self.hooks.attempts.cancel();
                }
            }
            Command::CloseConnection {
                attempt,
                connection,
            } => {
                self.forget_connection(attempt);
                let closed_by_health = self.health.as_ref().and_then(|h| h.closed);
                if closed_by_health != Some(attempt) {
                    self.close_connection(connection);
                }
            }
            Command::Finished => {
                self.machine_finished = true;
                self.timer = None;
                self.retry_sleep = None;
                self.op = None;
                self.hooks.attempts.cancel();
            }
        }
    }

    /// Arms the retry timer: the real sleep, for `delay` from now.
    fn arm(&mut self, timer: TimerId, delay: Duration) {
        self.timer = Some((timer, None));
        let moved = match &mut self.retry_sleep {
            Some(sleep) => sleep.as_mut().reset(delay),
            None => false,
        };
        if !moved {
            self.retry_sleep = Some(self.shared.runtime().timer(delay));
        }
    }

    /// A held-back retry timer: fed as fired once its deadline has passed, armed for the
    /// rest as soon as the Machine needs it to fire on time. True if it fired.
    fn poll_held_timer(&mut self) -> bool {
        let Some((timer, Some(deadline))) = self.timer else {
            return false;
        };
        let now = self.shared.runtime().now();
        if now >= deadline {
            self.timer = None;
            self.feed(Input::TimerFired(timer));
            return true;
        }
        if !self.shared.retry_timer_can_wait() {
            self.arm(timer, deadline - now);
        }
        false
    }

    /// Polls the attempt in flight; feeds its result when it is done.
    fn poll_op(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(attempt) = self.op else {
            return false;
        };
        let Poll::Ready(outcome) = self.hooks.attempts.poll(cx) else {
            return false;
        };
        let input = match outcome {
            Outcome::Address(result) => Input::AddressObtained {
                attempt,
                result: user_result(result, Callback::GetAddress, AttemptError::Address),
            },
            Outcome::Dialed(result) => {
                let result = user_result(result, Callback::Connect, AttemptError::Connect);
                if let Ok(conn) = &result {
                    // A connection's own I/O runs from the moment it is handed over,
                    // even if it comes too late and is closed at once.
                    if let Some(driving) = catch_unwind(AssertUnwindSafe(|| conn.take_driver()))
                        .ok()
                        .flatten()
                    {
                        self.shared.runtime().spawn(driving);
                    }
                }
                Input::Dialed { attempt, result }
            }
        };
        self.op = None;
        self.feed(input);
        true
    }

    /// The current connection has closed: keep why, for `last_ending` and the statistics,
    /// and report a panic of its driving future.
    fn note_ending(&self, conn: &C) {
        let ending = catch_unwind(AssertUnwindSafe(|| conn.ending()))
            .ok()
            .flatten();
        if let Some(Ending::Panicked(message)) = &ending {
            self.report_panic(Callback::ConnectionDriver, message.clone());
        }
        self.shared.note_ending(ending);
    }

    /// The connection made by `attempt` is closing: its probes and its uptime timer stop
    /// with it (R17, R19).
    fn forget_connection(&mut self, attempt: AttemptId) {
        if let Some(health) = &mut self.health {
            if health.current.as_ref().is_some_and(|(a, _)| *a == attempt) {
                health.current = None;
            }
        }
        if self.uptime.as_ref().is_some_and(|u| u.0 == attempt) {
            self.uptime = None;
        }
    }

    /// Moves the health check on; closes the connection it declares dead (R17).
    fn poll_health(&mut self, cx: &mut Context<'_>) -> bool {
        let (Some(health), Some((_, probe))) = (&mut self.health, self.hooks.health()) else {
            return false;
        };
        let Some((_, monitor)) = &mut health.current else {
            return false;
        };
        let Poll::Ready(verdict) = monitor.poll(cx, probe, self.shared.runtime()) else {
            return false;
        };
        let Verdict::Failed {
            error,
            panicked,
            dead,
        } = verdict
        else {
            return true;
        };
        self.shared.note_health_failure();
        #[cfg(feature = "tracing")]
        tracing::warn!(error = %error, dead, "health probe failed");
        if panicked {
            self.report_panic(Callback::HealthProbe, error);
        }
        if dead {
            let closed = self.health.as_mut().and_then(|health| {
                let (attempt, monitor) = health.current.take()?;
                health.closed = Some(attempt);
                Some(monitor)
            });
            if let Some(monitor) = closed {
                // Its `closed()` resolves, and the cycle goes on as for any closed
                // connection: Disconnected, then the next cycle.
                self.close_connection(monitor.connection().clone());
            }
        }
        true
    }

    /// Polls every slot once; true if any of them moved.
    fn poll_slots(&mut self, cx: &mut Context<'_>) -> bool {
        // First, so that a deadline passed before this poll counts before what came since.
        let mut moved = self.poll_held_timer();
        moved |= self.poll_op(cx);
        if let Some(handler) = &mut self.handler {
            if let Poll::Ready(result) = Pin::new(handler).poll(cx) {
                self.handler = None;
                if let Err(message) = result {
                    self.report_panic(Callback::OnEvent, message);
                }
                self.feed(Input::EventHandled);
                moved = true;
            }
        }
        if let (Some((timer, None)), Some(sleep)) = (self.timer, &mut self.retry_sleep) {
            if sleep.as_mut().poll(cx).is_ready() {
                self.timer = None;
                self.feed(Input::TimerFired(timer));
                moved = true;
            }
        }
        if let Some((_, _, closed)) = &mut self.watch {
            if let Poll::Ready(result) = Pin::new(closed).poll(cx) {
                let (attempt, conn, _) = self.watch.take().expect("polled just now");
                if let Err(message) = result {
                    self.report_panic(Callback::ConnectionClose, message);
                }
                self.note_ending(&conn);
                self.forget_connection(attempt);
                self.feed(Input::ConnectionClosed { attempt });
                moved = true;
            }
        }
        if let Some(uptime) = &mut self.uptime {
            let (attempt, sleep) = &mut **uptime;
            if sleep.as_mut().poll(cx).is_ready() {
                let attempt = *attempt;
                self.uptime = None;
                self.feed(Input::UptimeReached { attempt });
                moved = true;
            }
        }
        moved |= self.poll_health(cx);
        let before = self.closing.len();
        let mut panics = Vec::new();
        self.closing
            .retain_mut(|closing| match Pin::new(closing).poll(cx) {
                Poll::Ready(Ok(())) => false,
                Poll::Ready(Err(message)) => {
                    panics.push(message);
                    false
                }
                Poll::Pending => true,
            });
        for message in panics {
            self.report_panic(Callback::ConnectionClose, message);
        }
        moved || self.closing.len() != before
    }
}

/// The health check's state (R17), made at the first connection that has one and kept
/// until the task ends.
struct Health<C> {
    /// The current connection's monitor, with the attempt that made it.
    current: Option<(AttemptId, Monitor<C>)>,
    /// The attempt whose connection the health check closed, before the Machine heard of
    /// it: a `CloseConnection` for it must not close it a second time.
    closed: Option<AttemptId>,
}

/// If the task is dropped before it finished (its runtime shut down, or it panicked
/// because the runtime lacks timers), the handles must not hang: everything is marked
/// closed, waiters are released, and the current connection is asked to close.
impl<A, C, E> Drop for Task<A, C, E>
where
    A: Clone + PartialEq,
    C: Connection,
    E: fmt::Debug,
{
    fn drop(&mut self) {
        if let Some(conn) = self.shared.finish() {
            // Best effort: the runtime may be gone, so the close starts here and runs on
            // if the runtime still can.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                let close = conn.close();
                self.shared.runtime().spawn(Box::pin(close));
            }));
        }
    }
}

/// The connections it holds are handles, never polled in place.
impl<A, C, E> Unpin for Task<A, C, E>
where
    A: Clone + PartialEq,
    C: Connection,
    E: fmt::Debug,
{
}

impl<A, C, E> Future for Task<A, C, E>
where
    A: Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
    C: Connection,
    E: fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        for _ in 0..BUDGET {
            match this.shared.next(cx.waker()) {
                Some(Next::Command(command)) => {
                    this.execute(command);
                    continue;
                }
                Some(Next::Refused(input)) => {
                    if let Some(conn) = input.into_connection() {
                        this.close_connection(conn);
                    }
                    continue;
                }
                None => {}
            }
            if this.poll_slots(cx) {
                continue;
            }
            if this.machine_finished && this.handler.is_none() && this.closing.is_empty() {
                // Nothing is live any more: the connection was closed by the machine's
                // last commands, so `finish` finds none to hand back.
                this.watch = None;
                this.health = None;
                this.uptime = None;
                let _ = this.shared.finish();
                return Poll::Ready(());
            }
            return Poll::Pending;
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The Machine's failure as the driver reports it: the caller's error was wrapped once
/// before the Machine saw it; the timeout is the Machine's own.
fn attempt_error<E>(failure: Failure<AttemptError<E>>) -> AttemptError<E> {
    match failure {
        Failure::Error(e) => e,
        Failure::TimedOut { after } => AttemptError::TimedOut(after),
    }
}

/// A callback's result, its panic or its error wrapped once, for the Machine.
fn user_result<T, E>(
    caught: Result<Result<T, E>, Arc<str>>,
    during: Callback,
    wrap: fn(Arc<E>) -> AttemptError<E>,
) -> Result<T, AttemptError<E>> {
    match caught {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(wrap(Arc::new(e))),
        Err(message) => Err(AttemptError::Panicked { during, message }),
    }
}

/// Each event at its level, inside the connection's span: attempts and addresses are
/// routine (debug), a failure is worth a look (warn), connecting and disconnecting are
/// what an operator follows (info).
#[cfg(feature = "tracing")]
fn trace_event<A: fmt::Debug, C, E: fmt::Display>(event: &DriverEvent<A, C, E>) {
    match event {
        Event::AttemptingToConnect => tracing::debug!("AttemptingToConnect"),
        Event::ObtainedAddress(address) => tracing::debug!(address = ?address, "ObtainedAddress"),
        Event::FailedToConnect(error) => tracing::warn!(error = %error, "FailedToConnect"),
        Event::Connected(_) => tracing::info!("Connected"),
        Event::Disconnected => tracing::info!("Disconnected"),
    }
}
