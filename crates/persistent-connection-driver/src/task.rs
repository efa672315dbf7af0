//! The background task: executes the machine's commands and feeds their results back.
//!
//! It is one hand-written future that polls its few slots (the attempt in flight, the
//! running handler, the timer, the current connection's close signal, connections being
//! closed) in turn, so it needs no runtime's select macro and runs on any executor.

#[allow(unused_imports)]
use std::prelude::rust_2024::*;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::DriverEvent;
use super::connection::Connection;
use super::error::{Callback, Error, PanicReport};
use super::handle::{
    AbortFn, AttemptContext, ConnectFn, GetAddressFn, OnEventFn, PanicHookFn, RetryDelayFn, Shared,
    abort_fn,
};
use super::runtime::{BoxFuture, Runtime};
use crate::{AttemptError, AttemptId, Command, Event, Input, Outcome, TimerId};

/// How many steps the task takes in one poll before it yields to other tasks, so that a
/// hot retry loop (zero delay, instant failures) cannot starve the executor.
const BUDGET: usize = 128;

/// The delay used when a retry-delay closure panics: the seed's default.
const FALLBACK_DELAY: Duration = Duration::from_secs(10);

/// The callbacks the task calls.
pub(crate) struct Hooks<A, C, E> {
    pub(crate) get_address: Box<GetAddressFn<A, E>>,
    pub(crate) connect: Box<ConnectFn<A, C, E>>,
    pub(crate) on_event: Option<Box<OnEventFn<A, C, E>>>,
    pub(crate) retry_delay: Option<Box<RetryDelayFn>>,
    pub(crate) panic_hook: Option<Box<PanicHookFn>>,
}

enum Op<A, C, E> {
    Fetch(AttemptId, Guarded<A, E>),
    Dial(AttemptId, Guarded<C, E>),
}

pub(crate) struct Task<A, C, E>
where
    A: Clone + PartialEq,
    C: Connection,
    E: fmt::Debug,
{
    shared: Arc<Shared<A, C, E>>,
    runtime: Arc<dyn Runtime>,
    hooks: Hooks<A, C, E>,
    op: Option<Op<A, C, E>>,
    handler: Option<CatchUnwind<()>>,
    timer: Option<(TimerId, BoxFuture<()>)>,
    /// The current connection's `closed()`, with the attempt that made it.
    watch: Option<(AttemptId, CatchUnwind<()>)>,
    closing: Vec<CatchUnwind<()>>,
    machine_finished: bool,
    /// Every attempt's context shares this `abort`.
    abort: AbortFn<E>,
}

impl<A, C, E> Task<A, C, E>
where
    A: Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
    C: Connection,
    E: fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    pub(crate) fn new(
        shared: Arc<Shared<A, C, E>>,
        runtime: Arc<dyn Runtime>,
        hooks: Hooks<A, C, E>,
    ) -> Self {
        Task {
            abort: abort_fn(&shared),
            shared,
            runtime,
            hooks,
            op: None,
            handler: None,
            timer: None,
            watch: None,
            closing: Vec::new(),
            machine_finished: false,
        }
    }

    /// Feeds an input from the task itself; a connection in a refused input is closed.
    fn feed(&mut self, input: Input<A, C, Error<E>>) {
        let rejected = {
            let mut inner = self.shared.lock();
            self.shared.feed(&mut inner, input)
        };
        if let Some(conn) = rejected.and_then(Input::into_connection) {
            self.close_connection(conn);
        }
    }

    fn close_connection(&mut self, conn: C) {
        let closing = match catch_unwind(AssertUnwindSafe(|| conn.close())) {
            Ok(future) => CatchUnwind::new(Box::pin(future)),
            Err(payload) => CatchUnwind::failed(panic_message(payload)),
        };
        self.closing.push(closing);
    }

    fn report_panic(&self, during: Callback, message: Arc<str>) {
        let report = PanicReport {
            server_name: self.shared.server_name.clone(),
            during,
            message,
        };
        match &self.hooks.panic_hook {
            Some(hook) => {
                // A panicking hook must not take the task down with it.
                let _ = catch_unwind(AssertUnwindSafe(|| hook(&report)));
            }
            None => eprintln!("{report}"),
        }
    }

    /// Publishes `event` to subscribers, then starts its handler (R6, R14).
    fn report(&mut self, event: DriverEvent<A, C, E>) {
        let _ = self.shared.events.try_broadcast(event.clone());
        match &self.hooks.on_event {
            Some(on_event) => {
                self.handler = Some(match catch_unwind(AssertUnwindSafe(|| on_event(event))) {
                    Ok(future) => CatchUnwind::new(future),
                    Err(payload) => CatchUnwind::failed(panic_message(payload)),
                });
            }
            None => self.feed(Input::EventHandled),
        }
    }

    /// Gives an outcome to the waiters it concerns (R3, R8, R9).
    fn deliver(&self, outcome: &Result<C, Error<E>>) {
        let failure = matches!(outcome, Err(e) if !e.is_final());
        let mut inner = self.shared.lock();
        if let Err(e) = outcome {
            if e.is_final() && inner.stopped.is_none() {
                inner.stopped = Some(e.clone());
            }
        }
        let mut waiters = std::mem::take(&mut inner.waiters);
        for waiter in waiters.drain(..) {
            if failure && !waiter.any_outcome {
                inner.waiters.push(waiter);
            } else {
                let _ = waiter.tx.send(outcome.clone());
            }
        }
        // Keep the allocation for the next waiters when none were kept.
        if inner.waiters.is_empty() {
            inner.waiters = waiters;
        }
    }

    fn execute(&mut self, command: Command<A, C, Error<E>>) {
        match command {
            Command::Emit(event) => self.report(flatten_event(event)),
            Command::Outcome(Outcome::Connected(conn)) => {
                self.deliver(&Ok(conn.clone()));
                let attempt = self.shared.lock().machine.current_attempt();
                if let Some(attempt) = attempt {
                    // A `closed()` that panics counts as closed, and is reported.
                    let closed = match catch_unwind(AssertUnwindSafe(|| conn.closed())) {
                        Ok(future) => CatchUnwind::new(Box::pin(future)),
                        Err(payload) => CatchUnwind::failed(panic_message(payload)),
                    };
                    self.watch = Some((attempt, closed));
                }
                self.report(Event::Connected(conn));
            }
            Command::Outcome(Outcome::Failed { error, repeated }) => {
                let error = flatten(error);
                self.deliver(&Err(error.clone()));
                if !repeated {
                    self.report(Event::FailedToConnect(error));
                }
            }
            Command::Outcome(Outcome::Closed) => self.deliver(&Err(Error::Closed)),
            Command::Outcome(Outcome::Aborted(reason)) => self.deliver(&Err(reason)),
            Command::ComputeRetryDelay {
                consecutive_failures,
            } => {
                let delay = match &self.hooks.retry_delay {
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
                self.timer = Some((timer, self.runtime.sleep(delay)));
            }
            Command::FetchAddress { attempt } => {
                let future = catch_unwind(AssertUnwindSafe(|| (self.hooks.get_address)()));
                self.op = Some(Op::Fetch(
                    attempt,
                    guarded(future, Callback::GetAddress, |e| {
                        Error::Address(Arc::new(e))
                    }),
                ));
            }
            Command::Dial { attempt, address } => {
                let failures = self.shared.lock().machine.consecutive_failures();
                let ctx = AttemptContext::new(attempt, failures, self.abort.clone());
                let future = catch_unwind(AssertUnwindSafe(|| (self.hooks.connect)(address, ctx)));
                self.op = Some(Op::Dial(
                    attempt,
                    guarded(future, Callback::Connect, |e| Error::Connect(Arc::new(e))),
                ));
            }
            Command::CancelAttempt { attempt } => {
                if let Some(Op::Fetch(id, _) | Op::Dial(id, _)) = &self.op {
                    if *id == attempt {
                        // Dropping the future cancels it: close() never waits on a hung dial.
                        self.op = None;
                    }
                }
            }
            Command::CloseConnection(conn) => self.close_connection(conn),
            Command::Finished => {
                self.machine_finished = true;
                self.timer = None;
                self.op = None;
            }
        }
    }

    /// Polls every slot once; true if any of them moved.
    fn poll_slots(&mut self, cx: &mut Context<'_>) -> bool {
        let mut moved = false;
        match &mut self.op {
            Some(Op::Fetch(attempt, future)) => {
                if let Poll::Ready(result) = Pin::new(future).poll(cx) {
                    let attempt = *attempt;
                    self.op = None;
                    self.feed(Input::AddressObtained { attempt, result });
                    moved = true;
                }
            }
            Some(Op::Dial(attempt, future)) => {
                if let Poll::Ready(result) = Pin::new(future).poll(cx) {
                    let attempt = *attempt;
                    self.op = None;
                    self.feed(Input::Dialed { attempt, result });
                    moved = true;
                }
            }
            None => {}
        }
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
        if let Some((timer, sleep)) = &mut self.timer {
            if sleep.as_mut().poll(cx).is_ready() {
                let timer = *timer;
                self.timer = None;
                self.feed(Input::TimerFired(timer));
                moved = true;
            }
        }
        if let Some((attempt, closed)) = &mut self.watch {
            if let Poll::Ready(result) = Pin::new(closed).poll(cx) {
                let attempt = *attempt;
                self.watch = None;
                if let Err(message) = result {
                    self.report_panic(Callback::ConnectionClose, message);
                }
                self.feed(Input::ConnectionClosed { attempt });
                moved = true;
            }
        }
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

    fn finish(&mut self) {
        self.watch = None;
        self.shared.finish();
    }
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
        let current = {
            let mut inner = self.shared.lock();
            if inner.finished {
                return;
            }
            if inner.stopped.is_none() {
                inner.stopped = Some(Error::Closed);
            }
            inner.machine.current_connection().cloned()
        };
        if let Some(conn) = current {
            // Best effort: the runtime may be gone, so the close starts here and runs on
            // if the runtime still can.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                let close = conn.close();
                self.runtime.spawn(Box::pin(close));
            }));
        }
        self.shared.finish();
    }
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
            let command = {
                let mut inner = this.shared.lock();
                // Registered under the same lock that handles use to feed input, so an
                // input that comes after this check wakes us.
                if !inner
                    .task_waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    inner.task_waker = Some(cx.waker().clone());
                }
                inner.commands.pop_front()
            };
            if let Some(command) = command {
                this.execute(command);
                continue;
            }
            if this.poll_slots(cx) {
                continue;
            }
            if this.machine_finished && this.handler.is_none() && this.closing.is_empty() {
                this.finish();
                return Poll::Ready(());
            }
            return Poll::Pending;
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Turns a callback's future (or the panic of the call that made it) into one that never
/// panics and yields the driver's error.
fn guarded<T, E>(
    made: std::thread::Result<BoxFuture<Result<T, E>>>,
    during: Callback,
    wrap: fn(E) -> Error<E>,
) -> Guarded<T, E> {
    Guarded {
        future: match made {
            Ok(future) => CatchUnwind::new(future),
            Err(payload) => CatchUnwind::failed(panic_message(payload)),
        },
        during,
        wrap,
    }
}

/// A fetch or dial in flight: the caller's future, its panics caught, its error wrapped
/// (without a second box).
struct Guarded<T, E> {
    future: CatchUnwind<Result<T, E>>,
    during: Callback,
    wrap: fn(E) -> Error<E>,
}

impl<T, E> Future for Guarded<T, E> {
    type Output = Result<T, Error<E>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (during, wrap) = (self.during, self.wrap);
        Pin::new(&mut self.future)
            .poll(cx)
            .map(|caught| match caught {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(wrap(e)),
                Err(message) => Err(Error::Panicked { during, message }),
            })
    }
}

fn flatten<E>(error: AttemptError<Error<E>>) -> Error<E> {
    match error {
        AttemptError::Address(e) | AttemptError::Connect(e) => e,
        AttemptError::TimedOut { after } => Error::TimedOut(after),
    }
}

fn flatten_event<A, C, E>(event: Event<A, C, AttemptError<Error<E>>>) -> DriverEvent<A, C, E> {
    match event {
        Event::AttemptingToConnect => Event::AttemptingToConnect,
        Event::ObtainedAddress(a) => Event::ObtainedAddress(a),
        Event::FailedToConnect(e) => Event::FailedToConnect(flatten(e)),
        Event::Connected(c) => Event::Connected(c),
        Event::Disconnected => Event::Disconnected,
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("a panic with a non-string payload")
    }
}

/// A future whose panics become `Err(message)`. (A dozen lines; `futures-util` has one too,
/// but would be our only reason to depend on it.)
pub(crate) struct CatchUnwind<T> {
    future: Option<BoxFuture<T>>,
    failed: Option<Arc<str>>,
}

impl<T> CatchUnwind<T> {
    fn new(future: BoxFuture<T>) -> Self {
        CatchUnwind {
            future: Some(future),
            failed: None,
        }
    }

    fn failed(message: Arc<str>) -> Self {
        CatchUnwind {
            future: None,
            failed: Some(message),
        }
    }
}

impl<T> Future for CatchUnwind<T> {
    type Output = Result<T, Arc<str>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(future) = self.future.as_mut() else {
            let message = self
                .failed
                .take()
                .unwrap_or_else(|| Arc::from("polled after completion"));
            return Poll::Ready(Err(message));
        };
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => {
                self.future = None;
                Poll::Ready(Ok(value))
            }
            Err(payload) => {
                // Never poll a future again after it panicked.
                self.future = None;
                Poll::Ready(Err(panic_message(payload)))
            }
        }
    }
}
