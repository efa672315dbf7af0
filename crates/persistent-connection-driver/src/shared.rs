//! The state the task and the handles share, and every change to it.
//!
//! One mutex guards the Machine (and the commands it has yet to have carried out), the waiters
//! of `connected*` and `close_finished`, the stop reason, the finish flag and the
//! subscription channels. Only this module locks it, so every rule about them lives here:
//! who is told what when an attempt ends, what a stop means to the waiters, what finishing
//! releases. The builder, the handle and the task call these methods and never each other.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use persistent_connection::{Command, Input, Machine, State, StopKind};

use crate::connection::{Connection, Ending};
use crate::context::{Abort, AbortFn};
use crate::error::{AttemptError, ConnectError, DriverEvent, Stopped};
use crate::runtime::Runtime;
use crate::stats::{Counters, Stats};
use crate::streams::{Events, Lazy, StateChanges, Subscriptions};
use crate::waiters::{Answer, Waiters, Wants};

/// How many events a subscriber may fall behind before it is told it lagged. A cycle
/// reports a handful of events, so this is several cycles of slack; it is allocated per
/// persistent connection, so it stays small.
pub(crate) const EVENT_BUFFER: usize = 32;
/// How many state changes a subscriber may fall behind before it skips to newer ones.
const STATE_BUFFER: usize = 16;

/// The Machine as the driver runs it: the caller's error is wrapped once, in
/// [`AttemptError`], before the Machine sees it.
pub(crate) type DriverMachine<A, C, E> = Machine<A, C, AttemptError<E>>;
pub(crate) type DriverCommand<A, C, E> = Command<A, C, AttemptError<E>>;
pub(crate) type DriverInput<A, C, E> = Input<A, C, AttemptError<E>>;

/// What the task is to do next (see [`Shared::next`]).
pub(crate) enum Next<A, C, E> {
    /// Carry out this command of the machine.
    Command(DriverCommand<A, C, E>),
    /// The machine refused this (deferred) input: close the connection in it, if any.
    Refused(DriverInput<A, C, E>),
}

/// A request to stop, from a handle or an attempt's context.
pub(crate) enum StopRequest<E> {
    Close,
    Abort(E),
    WhenCurrentConnectionCloses,
}

/// How many bytes of a server name are kept inline: as many as fit beside the tag and the
/// length in the 24 bytes of an `Arc<str>` and its tag.
const INLINE_NAME: usize = 22;

/// The server name given at creation. A short one (most host names and `host:port`s) is
/// kept inline, so that a persistent connection allocates nothing for its name; a longer
/// one is shared, allocated once. The few places that need an `Arc<str>` (a panic report)
/// make one when they do.
#[derive(Clone)]
pub(crate) enum ServerName {
    /// The name's first `len` bytes (valid UTF-8: copied from a `str`).
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    /// A name longer than [`INLINE_NAME`] bytes.
    Shared(Arc<str>),
}

impl ServerName {
    /// `name`, inline if it fits (the `String` is then freed), else in an `Arc<str>`.
    pub(crate) fn new(name: String) -> Self {
        let len = name.len();
        match u8::try_from(len) {
            Ok(short) if len <= INLINE_NAME => {
                let mut bytes = [0; INLINE_NAME];
                bytes[..len].copy_from_slice(name.as_bytes());
                ServerName::Inline { len: short, bytes }
            }
            _ => ServerName::Shared(name.into()),
        }
    }

    /// The name.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Copied whole from a `str`, so always UTF-8 (never the empty fallback).
            ServerName::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            ServerName::Shared(name) => name,
        }
    }
}

/// As the name itself (a quoted string), as when it was an `Arc<str>`.
impl fmt::Debug for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What the task and the handles share.
pub(crate) struct Shared<A, C, E> {
    server_name: ServerName,
    /// The clock of the statistics.
    runtime: Arc<dyn Runtime>,
    /// How many `PersistentConnection` handles there are: the last one to go closes (R13);
    /// once none are left, none can be made again (a weak handle no longer upgrades).
    handles: AtomicUsize,
    inner: Mutex<Inner<A, C, E>>,
}

struct Inner<A, C, E> {
    machine: DriverMachine<A, C, E>,
    /// `request_stop(Close)`, made where the type's bounds hold, so that dropping the last
    /// handle (whose type has no bounds) can close (R13).
    /// (Here rather than beside the lock: it fits in the padding of this aligned struct.)
    close: fn(&Shared<A, C, E>),
    /// Inputs that came while the machine still had commands to hand out: fed, in order,
    /// once the task has taken them all (the machine takes an input only when drained, so
    /// its queue never fills). Empty, and so never allocated, unless a handle's request
    /// races with the task. (A vector, not a deque: 8 bytes fewer, and taking the first of
    /// the handful it ever holds costs nothing.)
    deferred: Vec<DriverInput<A, C, E>>,
    task_waker: Option<Waker>,
    waiters: Waiters<C, E>,
    /// A stop was requested (or the machine stopped): no connection will come any more,
    /// and `stop_reason` says why. (A flag in the padding beside a bare reason, rather than
    /// an `Option` of it: 8 bytes fewer.)
    stop_requested: bool,
    /// Why no connection will come any more; meaningful once `stop_requested`, `Closed`
    /// until then. Set once, by the first stop.
    stop_reason: Stopped<E>,
    /// The task has finished: everything is closed and nothing will be reported. The
    /// waiters of `close_finished` are released when it is set.
    finished: bool,
    state: State,
    counters: Counters,
    /// The last failed attempt's error, formatted only when statistics are asked for.
    last_failure: Option<AttemptError<E>>,
    /// Why the last current connection ended, if it said.
    last_ending: Option<Ending>,
    /// The event and state channels, made on the first subscription to each. Here, under
    /// the lock, so that both take one pointer and `finished` serves as their closed flag.
    subscriptions: Subscriptions<DriverEvent<A, C, E>>,
}

impl<A, C, E> Inner<A, C, E> {
    /// Why no connection will come any more, once a stop was requested.
    fn stopped(&self) -> Option<&Stopped<E>> {
        self.stop_requested.then_some(&self.stop_reason)
    }

    /// Stops for `reason`, unless already stopped (the first stop's reason stays); the
    /// reason now.
    fn stop(&mut self, reason: impl FnOnce() -> Stopped<E>) -> &Stopped<E> {
        if !self.stop_requested {
            self.stop_requested = true;
            self.stop_reason = reason();
        }
        &self.stop_reason
    }
}

/// What needs none of the Machine's bounds.
impl<A, C, E> Shared<A, C, E> {
    fn lock(&self) -> MutexGuard<'_, Inner<A, C, E>> {
        // No code of this module panics while the lock is held (user code under it is only
        // `Connection::is_closed` and `C::clone`); if some did, the state is still whole.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The runtime the connection runs on (its task's, and the statistics' clock).
    pub(crate) fn runtime(&self) -> &dyn Runtime {
        &*self.runtime
    }

    pub(crate) fn server_name(&self) -> &str {
        self.server_name.as_str()
    }

    pub(crate) fn state(&self) -> State {
        self.lock().state
    }

    /// The last handle is gone: close (R13).
    pub(crate) fn close_on_drop(&self) {
        let close = self.lock().close;
        close(self)
    }

    /// A handle was cloned from a live one.
    pub(crate) fn add_handle(&self) {
        // As `Arc::clone`: the new handle comes from a live one, so nothing to order.
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    /// A weak handle is upgrading: counts one more handle, unless none is left (then the
    /// persistent connection is closing, and stays without handles).
    pub(crate) fn try_add_handle(&self) -> bool {
        self.handles
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n > 0).then(|| n + 1)
            })
            .is_ok()
    }

    /// A handle went away; true if it was the last.
    pub(crate) fn drop_handle(&self) -> bool {
        self.handles.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Whether some handle is still alive.
    pub(crate) fn has_handles(&self) -> bool {
        self.handles.load(Ordering::Acquire) > 0
    }
}

impl<A, C, E> Shared<A, C, E>
where
    A: Clone + PartialEq,
    C: Connection,
    E: fmt::Debug,
{
    pub(crate) fn new(
        server_name: ServerName,
        runtime: Arc<dyn Runtime>,
        machine: DriverMachine<A, C, E>,
        events: Lazy<DriverEvent<A, C, E>>,
    ) -> Arc<Self> {
        let counters = Counters::new(runtime.now());
        Arc::new(Shared {
            server_name,
            runtime,
            // The handle `spawn` returns.
            handles: AtomicUsize::new(1),
            inner: Mutex::new(Inner {
                close: |shared| shared.request_stop(StopRequest::Close),
                state: machine.state(),
                machine,
                deferred: Vec::new(),
                task_waker: None,
                waiters: Waiters::new(),
                stop_requested: false,
                stop_reason: Stopped::Closed,
                finished: false,
                counters,
                last_failure: None,
                last_ending: None,
                subscriptions: Subscriptions::new(events.into_channel()),
            }),
        })
    }

    // ----- the task's side -----

    /// What the task is to do next: carry out the machine's next command, or close the
    /// connection in an input the machine refused. Deferred inputs are fed here, once the
    /// machine is drained. `waker` is registered under the same lock that handles feed
    /// input with, so an input that comes after this call wakes the task.
    pub(crate) fn next(&self, waker: &Waker) -> Option<Next<A, C, E>> {
        let mut inner = self.lock();
        if !inner
            .task_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(waker))
        {
            inner.task_waker = Some(waker.clone());
        }
        loop {
            if let Some(command) = inner.machine.poll_command() {
                return Some(Next::Command(command));
            }
            if inner.deferred.is_empty() {
                return None;
            }
            let input = inner.deferred.remove(0);
            if let Some(refused) = self.apply(&mut inner, input) {
                return Some(Next::Refused(refused));
            }
        }
    }

    /// Feeds `input` now if the machine is drained, else after its commands (see
    /// `deferred`). Returns the input if the machine refused it (a connection in it is the
    /// caller's to close).
    pub(crate) fn feed(&self, input: DriverInput<A, C, E>) -> Option<DriverInput<A, C, E>> {
        let mut inner = self.lock();
        self.feed_locked(&mut inner, input)
    }

    fn feed_locked(
        &self,
        inner: &mut Inner<A, C, E>,
        input: DriverInput<A, C, E>,
    ) -> Option<DriverInput<A, C, E>> {
        if inner.machine.has_command() || !inner.deferred.is_empty() {
            inner.deferred.push(input);
            return None;
        }
        self.apply(inner, input)
    }

    /// Feeds `input` to the drained machine and publishes a change of state.
    fn apply(
        &self,
        inner: &mut Inner<A, C, E>,
        input: DriverInput<A, C, E>,
    ) -> Option<DriverInput<A, C, E>> {
        let rejected = inner.machine.handle_input(input).err().map(|r| r.input);
        self.publish_state(inner);
        rejected
    }

    /// Publishes a change of state. A stop that waits to be fed (see `deferred`) already
    /// counts: the state is `Closing` from the request on, as `is_closed` is (R11).
    fn publish_state(&self, inner: &mut Inner<A, C, E>) {
        let state = match inner.machine.state() {
            State::Closed => State::Closed,
            _ if inner.stop_requested => State::Closing,
            other => other,
        };
        if state != inner.state {
            inner.state = state;
            inner.counters.state_since = self.runtime.now();
            inner.subscriptions.send_state(&state);
        }
    }

    /// Publishes an event to the subscribers (R14); never waits for them. Sent outside the
    /// lock: a full buffer drops its oldest event, which may hold a connection.
    pub(crate) fn publish(&self, event: &DriverEvent<A, C, E>) {
        let senders = self.lock().subscriptions.senders();
        if let Some(channels) = senders {
            channels.send_event(event);
        }
    }

    /// An attempt made `conn`: every waiter gets it (R3, R8, R9).
    pub(crate) fn deliver_connected(&self, conn: &C) {
        let now = self.runtime.now();
        let mut inner = self.lock();
        inner.counters.connections += 1;
        inner.counters.connected_at = Some(now);
        inner.waiters.connected(conn);
    }

    /// An attempt failed: the waiters of `connected_or_failed_to_connect` get the error
    /// (R3, R9); those of `connected` wait on.
    pub(crate) fn deliver_failure(&self, error: &AttemptError<E>) {
        let mut inner = self.lock();
        inner.counters.failures += 1;
        inner.last_failure = Some(error.clone());
        inner.waiters.failed(error);
    }

    /// The machine stopped (its `Stopped` command): every waiter gets the reason.
    pub(crate) fn deliver_stopped(&self) {
        let mut inner = self.lock();
        let reason = inner.stop(|| Stopped::Closed).clone();
        inner.waiters.stopped(&reason);
    }

    /// The task has finished, or was dropped before it could: waiters are released with
    /// the stop reason (`Closed` if none was given), the streams end, `close_finished`
    /// resolves. Returns the connection that was current, for a dropped task to close.
    pub(crate) fn finish(&self) -> Option<C> {
        let (current, subscriptions) = {
            let mut inner = self.lock();
            if inner.finished {
                return None;
            }
            // Also the channels' closed flag: a later subscriber is ended at once.
            inner.finished = true;
            inner.task_waker = None;
            let reason = inner.stop(|| Stopped::Closed).clone();
            inner.waiters.stopped(&reason);
            inner.waiters.finished();
            (
                inner.machine.current_connection().cloned(),
                inner.subscriptions.senders(),
            )
        };
        if let Some(channels) = subscriptions {
            channels.close();
        }
        current
    }

    // ----- the handles' side -----

    /// A stop from outside the task (a handle, an attempt's context, the last handle's
    /// drop): the reason is set once, by the first request, and callers from now on get it
    /// at once (R9), before the task has run.
    pub(crate) fn request_stop(&self, request: StopRequest<E>) {
        let mut inner = self.lock();
        if inner.machine.is_finished() {
            return;
        }
        let input = match request {
            StopRequest::Close => Input::Close,
            StopRequest::WhenCurrentConnectionCloses => Input::CloseWhenCurrentConnectionIsClosed,
            StopRequest::Abort(reason) => {
                inner.stop(|| Stopped::Aborted(Arc::new(reason)));
                Input::Abort
            }
        };
        inner.stop(|| Stopped::Closed);
        self.publish_state(&mut inner);
        drop(inner);
        self.feed_and_wake(input);
    }

    /// `reconnect_now` (R18): the Machine decides what it means now.
    pub(crate) fn reconnect_now(&self) {
        self.feed_and_wake(Input::ReconnectNow);
    }

    /// Feeds an input from outside the task and wakes the task to carry out what follows.
    fn feed_and_wake(&self, input: DriverInput<A, C, E>) {
        let mut inner = self.lock();
        // Inputs from handles carry no connection, so nothing is lost if one is refused.
        let _ = self.feed_locked(&mut inner, input);
        if let Some(waker) = inner.task_waker.take() {
            drop(inner);
            waker.wake();
        }
    }

    /// The current connection if it can be handed out now, else the stop reason if there
    /// is one, else `None`: the caller must wait.
    fn ready(inner: &Inner<A, C, E>) -> Option<Result<C, Stopped<E>>> {
        // After `close` or `reconnect_now`, the current connection is being closed: never
        // hand it out (R8, R18). After an abort it is kept until it closes, and still
        // handed out (R12).
        let closing = inner.machine.stop_kind() == Some(StopKind::Close)
            || inner.machine.is_closing_connection()
            || inner
                .deferred
                .iter()
                .any(|input| matches!(input, Input::Close | Input::ReconnectNow));
        if let Some(conn) = inner.machine.current_connection() {
            if !closing && !conn.is_closed() {
                return Some(Ok(conn.clone()));
            }
        }
        inner.stopped().cloned().map(Err)
    }

    /// `connected_or_closed`: registers now, so nothing between this call and the first
    /// poll is missed.
    pub(crate) fn wait_connected(self: &Arc<Self>) -> Wait<A, C, E, Result<C, Stopped<E>>> {
        let mut inner = self.lock();
        if let Some(answer) = Self::ready(&inner) {
            return Wait::Now(Some(answer));
        }
        Wait::Later {
            key: inner.waiters.register(Wants::Connection),
            shared: self.clone(),
            take: Answer::connected,
            gone: || Err(Stopped::Closed),
        }
    }

    /// `connected_or_failed_to_connect`: as [`wait_connected`](Self::wait_connected), but a
    /// failed attempt answers too.
    pub(crate) fn wait_outcome(self: &Arc<Self>) -> Wait<A, C, E, Result<C, ConnectError<E>>> {
        let mut inner = self.lock();
        if let Some(answer) = Self::ready(&inner) {
            return Wait::Now(Some(answer.map_err(ConnectError::Stopped)));
        }
        Wait::Later {
            key: inner.waiters.register(Wants::AnyOutcome),
            shared: self.clone(),
            take: Answer::any_outcome,
            gone: || Err(ConnectError::Stopped(Stopped::Closed)),
        }
    }

    /// Resolves once the task has finished: a waiter like those of `connected*`, released
    /// by [`finish`](Self::finish). Registers now, as they do.
    pub(crate) fn finished(self: &Arc<Self>) -> Wait<A, C, E, ()> {
        let mut inner = self.lock();
        if inner.finished {
            return Wait::Now(Some(()));
        }
        Wait::Later {
            key: inner.waiters.register(Wants::Finish),
            shared: self.clone(),
            take: Answer::finished,
            gone: || (),
        }
    }

    /// An attempt started.
    pub(crate) fn note_attempt(&self) {
        self.lock().counters.attempts += 1;
    }

    /// The current connection closed (`Disconnected`).
    pub(crate) fn note_disconnected(&self) {
        let mut inner = self.lock();
        inner.counters.disconnections += 1;
        inner.counters.connected_at = None;
    }

    /// The current connection has closed; `ending` is why, if it said.
    pub(crate) fn note_ending(&self, ending: Option<Ending>) {
        self.lock().last_ending = ending;
    }

    /// Why the last current connection ended, if it said.
    pub(crate) fn last_ending(&self) -> Option<Ending> {
        self.lock().last_ending.clone()
    }

    /// A health probe failed.
    pub(crate) fn note_health_failure(&self) {
        self.lock().counters.health_check_failures += 1;
    }

    /// A snapshot of the counters and the state.
    pub(crate) fn stats(&self) -> Stats
    where
        E: fmt::Display,
    {
        let now = self.runtime.now();
        let inner = self.lock();
        let c = &inner.counters;
        Stats {
            attempts: c.attempts,
            failures: c.failures,
            connections: c.connections,
            disconnections: c.disconnections,
            health_check_failures: c.health_check_failures,
            consecutive_failures: inner.machine.consecutive_failures(),
            state: inner.state,
            state_since: c.state_since,
            uptime: c.connected_at.map(|at| now.saturating_duration_since(at)),
            last_failure: inner
                .last_failure
                .as_ref()
                .map(|e| Arc::from(e.to_string())),
            last_ending: inner.last_ending.as_ref().map(|e| Arc::from(e.to_string())),
        }
    }

    /// The Machine's [`retry_timer_can_wait`](persistent_connection::Machine::retry_timer_can_wait).
    pub(crate) fn retry_timer_can_wait(&self) -> bool {
        self.lock().machine.retry_timer_can_wait()
    }

    pub(crate) fn current_connection(&self) -> Option<C> {
        self.lock().machine.current_connection().cloned()
    }

    /// True from the first stop request on (R11), also while it waits to be fed.
    pub(crate) fn is_closed(&self) -> bool {
        let inner = self.lock();
        inner.stop_requested || inner.machine.is_closed()
    }

    pub(crate) fn events(&self) -> Events<DriverEvent<A, C, E>> {
        let mut inner = self.lock();
        let closed = inner.finished;
        Events::new(inner.subscriptions.subscribe_events(EVENT_BUFFER, closed))
    }

    /// The current state, then every change.
    pub(crate) fn state_changes(&self) -> StateChanges {
        // Changes are broadcast under this lock, so the first state and the queue agree.
        let mut inner = self.lock();
        let closed = inner.finished;
        let receiver = inner.subscriptions.subscribe_states(STATE_BUFFER, closed);
        StateChanges::new(inner.state, receiver)
    }

    /// The `abort` of every attempt's context. It holds the state weakly: a context kept
    /// by user code does not keep the persistent connection alive.
    pub(crate) fn abort_fn(self: &Arc<Self>) -> AbortFn<E>
    where
        A: Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        // The same allocation as the handles' `Arc`: nothing made for it.
        Arc::downgrade(self) as AbortFn<E>
    }
}

impl<A, C, E> Abort<E> for Shared<A, C, E>
where
    A: Clone + PartialEq + Send + Sync,
    C: Connection,
    E: fmt::Debug + Send + Sync,
{
    fn abort(&self, reason: E) {
        self.request_stop(StopRequest::Abort(reason));
    }
}

/// A waiting `connected*` call: its answer now, or its slot among the waiters, which it
/// frees when it takes the answer or is dropped (cancel-safe: an answer it never took is
/// dropped with it, outside the lock).
pub(crate) enum Wait<A, C, E, T> {
    Now(Option<T>),
    Later {
        shared: Arc<Shared<A, C, E>>,
        key: usize,
        /// Its answer from what the waiters were told.
        take: fn(Answer<C, E>) -> Option<T>,
        /// Its answer if its slot is gone (cannot happen: only this frees it).
        gone: fn() -> T,
    },
    Done,
}

/// Nothing in it is pinned: the answer is moved out.
impl<A, C, E, T> Unpin for Wait<A, C, E, T> {}

impl<A, C, E, T> Future for Wait<A, C, E, T>
where
    C: Clone,
{
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        let answer = match this {
            Wait::Now(answer) => answer.take(),
            Wait::Later {
                shared,
                key,
                take,
                gone,
            } => {
                let polled = shared.lock().waiters.poll(*key, cx.waker());
                match polled {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(answer) => Some(answer.and_then(*take).unwrap_or_else(*gone)),
                }
            }
            Wait::Done => None,
        };
        *this = Wait::Done;
        match answer {
            Some(answer) => Poll::Ready(answer),
            // Polled after it finished: it has nothing more to give.
            None => Poll::Pending,
        }
    }
}

impl<A, C, E, T> Drop for Wait<A, C, E, T> {
    fn drop(&mut self) {
        if let Wait::Later { shared, key, .. } = self {
            let slot = shared
                .inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .waiters
                .remove(*key);
            // Dropped here, outside the lock: it may hold a connection.
            drop(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_short_and_long_give_back_the_same_str() {
        assert!(
            size_of::<ServerName>() <= 24,
            "no bigger than an Arc<str> and its tag"
        );
        let fits = "é-".repeat(INLINE_NAME / 3) + "x";
        let too_long = "y".repeat(INLINE_NAME + 1);
        for name in [
            "",
            "memory",
            "db.internal:5432",
            fits.as_str(),
            too_long.as_str(),
        ] {
            let server_name = ServerName::new(name.to_owned());
            assert_eq!(server_name.as_str(), name);
            assert_eq!(server_name.clone().as_str(), name);
            assert_eq!(format!("{server_name:?}"), format!("{name:?}"));
            let inline = matches!(server_name, ServerName::Inline { .. });
            assert_eq!(inline, name.len() <= INLINE_NAME, "{name:?}");
        }
        assert_eq!(fits.len(), INLINE_NAME, "the longest inline name");
    }
}
