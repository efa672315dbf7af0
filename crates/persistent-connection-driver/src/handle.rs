//! The handle users hold, the builder that makes it, and the state it shares with the task.

#[allow(unused_imports)]
use std::prelude::rust_2024::*;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Waker;
use std::time::Duration;

use futures_channel::oneshot;

use super::DriverEvent;
use super::connection::Connection;
use super::error::{Error, PanicReport};
use super::runtime::{BoxFuture, Runtime};
use super::streams::{Events, StateChanges};
use super::task::{Hooks, Task};
use crate::{AttemptId, Command, Config, Input, Jitter, Machine, RetryPolicy, State, StopKind};

/// How many events a subscriber may fall behind before it is told it lagged. A cycle
/// reports a handful of events, so this is several cycles of slack; it is allocated per
/// persistent connection, so it stays small.
const EVENT_BUFFER: usize = 32;
/// How many state changes a subscriber may fall behind before it skips to newer ones.
const STATE_BUFFER: usize = 16;

pub(crate) type GetAddressFn<A, E> = dyn Fn() -> BoxFuture<Result<A, E>> + Send + Sync;
pub(crate) type ConnectFn<A, C, E> =
    dyn Fn(A, AttemptContext<E>) -> BoxFuture<Result<C, E>> + Send + Sync;
pub(crate) type OnEventFn<A, C, E> = dyn Fn(DriverEvent<A, C, E>) -> BoxFuture<()> + Send + Sync;
pub(crate) type RetryDelayFn = dyn Fn(u32) -> Duration + Send + Sync;
pub(crate) type PanicHookFn = dyn Fn(&PanicReport) + Send + Sync;

/// What the task and the handles share.
pub(crate) struct Shared<A, C, E> {
    pub(crate) server_name: Arc<str>,
    inner: Mutex<Inner<A, C, E>>,
    /// Notified on every change of state and when the task has finished.
    pub(crate) changed: event_listener::Event,
    pub(crate) events: async_broadcast::Sender<DriverEvent<A, C, E>>,
    events_keep: async_broadcast::InactiveReceiver<DriverEvent<A, C, E>>,
    states: async_broadcast::Sender<State>,
    states_keep: async_broadcast::InactiveReceiver<State>,
}

pub(crate) struct Inner<A, C, E> {
    pub(crate) machine: Machine<A, C, Error<E>>,
    /// The machine's commands, drained after every input so its own queue never fills.
    pub(crate) commands: VecDeque<Command<A, C, Error<E>>>,
    pub(crate) task_waker: Option<Waker>,
    pub(crate) waiters: Vec<Waiter<C, E>>,
    /// Why no connection will come any more, once stopped.
    pub(crate) stopped: Option<Error<E>>,
    /// The task has finished: everything is closed and nothing will be reported.
    pub(crate) finished: bool,
    state: State,
}

/// A caller of `connected*` waiting for the next outcome.
pub(crate) struct Waiter<C, E> {
    /// `connected_or_failed_to_connect` (any outcome), or `connected` (connection or stop).
    pub(crate) any_outcome: bool,
    pub(crate) tx: oneshot::Sender<Result<C, Error<E>>>,
}

impl<A, C, E> Shared<A, C, E>
where
    A: Clone + PartialEq,
    C: Clone,
    E: fmt::Debug,
{
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner<A, C, E>> {
        // A panic never happens while the lock is held (no user code runs under it but
        // `Connection::is_closed`); if one did, the state is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Feeds `input` and queues the machine's commands. Returns the input if rejected.
    pub(crate) fn feed(
        &self,
        inner: &mut Inner<A, C, E>,
        input: Input<A, C, Error<E>>,
    ) -> Option<Input<A, C, Error<E>>> {
        let rejected = inner.machine.handle_input(input).err().map(|r| r.input);
        while let Some(command) = inner.machine.poll_command() {
            inner.commands.push_back(command);
        }
        let state = inner.machine.state();
        if state != inner.state {
            inner.state = state;
            let _ = self.states.try_broadcast(state);
            self.changed.notify(usize::MAX);
        }
        rejected
    }

    /// Marks everything finished: waiters are released (they get `Closed`), the streams
    /// end, `close_finished` resolves.
    pub(crate) fn finish(&self) {
        {
            let mut inner = self.lock();
            inner.finished = true;
            inner.task_waker = None;
            // Plain `connected()` waiters already got `Closed`; any left get it now.
            inner.waiters.clear();
        }
        self.events.close();
        self.states.close();
        self.changed.notify(usize::MAX);
    }

    /// Feeds a stop input from outside the task and wakes the task.
    fn stop(&self, input: Input<A, C, Error<E>>) {
        let mut inner = self.lock();
        if inner.machine.is_finished() {
            return;
        }
        // Callers from now on get the reason at once (R9), before the task has run.
        if inner.stopped.is_none() {
            inner.stopped = Some(match &input {
                Input::Abort(reason) => reason.clone(),
                _ => Error::Closed,
            });
        }
        // Stop inputs carry no connection, so nothing can be lost if one is refused.
        let _ = self.feed(&mut inner, input);
        if let Some(waker) = inner.task_waker.take() {
            drop(inner);
            waker.wake();
        }
    }
}

/// What a `connected*` call gets.
enum Wait<C, E> {
    Now(Result<C, Error<E>>),
    Later(oneshot::Receiver<Result<C, Error<E>>>),
}

/// Lets `connect` see which attempt it is making and give up for good (R12).
pub struct AttemptContext<E> {
    attempt: AttemptId,
    consecutive_failures: u32,
    abort: Arc<dyn Fn(E) + Send + Sync>,
}

impl<E> AttemptContext<E> {
    /// The attempt being made.
    pub fn attempt(&self) -> AttemptId {
        self.attempt
    }

    /// Failed attempts since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Stops the persistent connection for good (R12): no new attempts; a connection this
    /// attempt makes is closed at once; waiters get `Error::Aborted(reason)`.
    pub fn abort(&self, reason: E) {
        (self.abort)(reason)
    }
}

impl<E> Clone for AttemptContext<E> {
    fn clone(&self) -> Self {
        AttemptContext {
            attempt: self.attempt,
            consecutive_failures: self.consecutive_failures,
            abort: self.abort.clone(),
        }
    }
}

impl<E> fmt::Debug for AttemptContext<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptContext")
            .field("attempt", &self.attempt)
            .field("consecutive_failures", &self.consecutive_failures)
            .finish_non_exhaustive()
    }
}

/// The `abort` of every attempt's context: made once per persistent connection.
pub(crate) type AbortFn<E> = Arc<dyn Fn(E) + Send + Sync>;

pub(crate) fn abort_fn<A, C, E>(shared: &Arc<Shared<A, C, E>>) -> AbortFn<E>
where
    A: Clone + PartialEq + Send + Sync + 'static,
    C: Clone + Send + Sync + 'static,
    E: fmt::Debug + Send + Sync + 'static,
{
    let weak: Weak<Shared<A, C, E>> = Arc::downgrade(shared);
    Arc::new(move |reason| {
        if let Some(shared) = weak.upgrade() {
            shared.stop(Input::Abort(Error::Aborted(Arc::new(reason))));
        }
    })
}

impl<E> AttemptContext<E> {
    pub(crate) fn new(attempt: AttemptId, consecutive_failures: u32, abort: AbortFn<E>) -> Self {
        AttemptContext {
            attempt,
            consecutive_failures,
            abort,
        }
    }
}

/// Sets up a persistent connection: what to call, how to retry, then
/// [`spawn`](Self::spawn). The adapter crates make one for their runtime.
pub struct Builder<A, C, E> {
    runtime: Arc<dyn Runtime>,
    server_name: Arc<str>,
    config: Config,
    seed: Option<u64>,
    hooks: Hooks<A, C, E>,
    /// Made here, so that subscribers can exist before the task starts.
    events: async_broadcast::Sender<DriverEvent<A, C, E>>,
    events_keep: async_broadcast::InactiveReceiver<DriverEvent<A, C, E>>,
}

impl<A, C, E> Builder<A, C, E>
where
    A: Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
    C: Connection,
    E: fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    /// A persistent connection to `server_name` that runs on `runtime`, looks the address
    /// up with `get_address` before every attempt, and dials it with `connect`.
    ///
    /// Defaults (the seed's): retry delay 10 s, +-30 % jitter, no connect timeout, no
    /// `on_event`, a random seed, callback panics printed to stderr.
    pub fn new<G, GF, K, KF>(
        runtime: impl Runtime,
        server_name: impl Into<String>,
        get_address: G,
        connect: K,
    ) -> Self
    where
        G: Fn() -> GF + Send + Sync + 'static,
        GF: Future<Output = Result<A, E>> + Send + 'static,
        K: Fn(A, AttemptContext<E>) -> KF + Send + Sync + 'static,
        KF: Future<Output = Result<C, E>> + Send + 'static,
    {
        let (mut events, events_rx) = async_broadcast::broadcast(EVENT_BUFFER);
        events.set_overflow(true);
        events.set_await_active(false);
        Builder {
            runtime: Arc::new(runtime),
            server_name: server_name.into().into(),
            config: Config::new(),
            seed: None,
            events,
            events_keep: events_rx.deactivate(),
            hooks: Hooks {
                get_address: Box::new(move || Box::pin(get_address())),
                connect: Box::new(move |address, ctx| Box::pin(connect(address, ctx))),
                on_event: None,
                retry_delay: None,
                panic_hook: None,
            },
        }
    }

    /// Runs on `runtime` instead (for example a [`VirtualClock`](super::VirtualClock)'s).
    pub fn runtime(mut self, runtime: impl Runtime) -> Self {
        self.runtime = Arc::new(runtime);
        self
    }

    /// Hands every event to `handler` and waits for the future it returns before the next
    /// step (R6). A panic in it is reported to the panic hook and counts as finished.
    pub fn on_event<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(DriverEvent<A, C, E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.on_event = Some(Box::new(move |event| Box::pin(handler(event))));
        self
    }

    /// Sets the retry policy (R7): [`RetryPolicy::Constant`] (default 10 s) or
    /// [`RetryPolicy::Exponential`]. For any other function of the failure count use
    /// [`retry_delay`](Self::retry_delay).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        if policy != RetryPolicy::Custom {
            self.hooks.retry_delay = None;
            self.config = self.config.retry_policy(policy);
        }
        self
    }

    /// Computes each attempt's retry delay (before jitter) from the number of consecutive
    /// failures so far. The seed's `retry_delay: unit -> span` is `|_| span`.
    pub fn retry_delay(mut self, delay: impl Fn(u32) -> Duration + Send + Sync + 'static) -> Self {
        self.hooks.retry_delay = Some(Box::new(delay));
        self.config = self.config.retry_policy(RetryPolicy::Custom);
        self
    }

    /// Sets the jitter (default +-30 %); [`Jitter::Off`] turns it off.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.config = self.config.jitter(jitter);
        self
    }

    /// Seeds the jitter's random generator, for reproducible delays (R15).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Fails an attempt (address fetch and dial) that takes longer than `timeout`, with
    /// [`Error::TimedOut`]. Off by default, as in the seed.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config = self.config.connect_timeout(Some(timeout));
        self
    }

    /// Called when one of your callbacks panics (default: print to stderr).
    pub fn on_callback_panic(
        mut self,
        hook: impl Fn(&PanicReport) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.panic_hook = Some(Box::new(hook));
        self
    }

    /// The events of the persistent connection this builder will start, from its very first
    /// one (R14). [`PersistentConnection::events`] subscribes only from the moment it is
    /// called, by which time the task may have reported the first events.
    pub fn events(&self) -> Events<DriverEvent<A, C, E>> {
        Events {
            rx: self.events_keep.activate_cloned(),
        }
    }

    /// Starts the persistent connection: a background task begins the first cycle at once
    /// (R1). Returns the handle; dropping every clone of it closes everything (R13).
    #[must_use = "dropping the handle closes the persistent connection at once"]
    pub fn spawn(self) -> PersistentConnection<A, C, E> {
        let seed = self.seed.unwrap_or_else(random_seed);
        let machine = Machine::new(self.config.seed(seed));
        let (mut states, states_rx) = async_broadcast::broadcast(STATE_BUFFER);
        states.set_overflow(true);
        states.set_await_active(false);
        let state = machine.state();
        let shared = Arc::new(Shared {
            server_name: self.server_name,
            inner: Mutex::new(Inner {
                machine,
                commands: VecDeque::new(),
                task_waker: None,
                waiters: Vec::new(),
                stopped: None,
                finished: false,
                state,
            }),
            changed: event_listener::Event::new(),
            events: self.events,
            events_keep: self.events_keep,
            states,
            states_keep: states_rx.deactivate(),
        });
        {
            let mut inner = shared.lock();
            while let Some(command) = inner.machine.poll_command() {
                inner.commands.push_back(command);
            }
        }
        let task = Task::new(shared.clone(), self.runtime.clone(), self.hooks);
        self.runtime.spawn(Box::pin(task));
        PersistentConnection {
            guard: Arc::new(DropGuard(shared.clone())),
            shared,
        }
    }
}

impl<A, C, E> fmt::Debug for Builder<A, C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("server_name", &self.server_name)
            .field("config", &self.config)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    std::collections::hash_map::RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Closes the persistent connection when the last handle goes (R13).
struct DropGuard<A, C, E>(Arc<Shared<A, C, E>>)
where
    A: Clone + PartialEq,
    C: Clone,
    E: fmt::Debug;

impl<A, C, E> Drop for DropGuard<A, C, E>
where
    A: Clone + PartialEq,
    C: Clone,
    E: fmt::Debug,
{
    fn drop(&mut self) {
        self.0.stop(Input::Close);
    }
}

/// A connection to a service that is kept alive: looked up, dialled, handed out, watched,
/// and dialled again when it dies, until closed.
///
/// Cheap to clone (`Clone + Send + Sync`); every clone is the same persistent connection.
/// Dropping the last clone closes it (R13). Every future it returns is cancel-safe:
/// dropping one loses nothing.
pub struct PersistentConnection<A, C, E>
where
    A: Clone + PartialEq,
    C: Clone,
    E: fmt::Debug,
{
    shared: Arc<Shared<A, C, E>>,
    guard: Arc<DropGuard<A, C, E>>,
}

impl<A, C, E> Clone for PersistentConnection<A, C, E>
where
    A: Clone + PartialEq,
    C: Clone,
    E: fmt::Debug,
{
    fn clone(&self) -> Self {
        PersistentConnection {
            shared: self.shared.clone(),
            guard: self.guard.clone(),
        }
    }
}

impl<A, C, E> fmt::Debug for PersistentConnection<A, C, E>
where
    A: Clone + PartialEq,
    C: Clone,
    E: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentConnection")
            .field("server_name", &self.shared.server_name)
            .field("state", &self.shared.lock().state)
            .finish()
    }
}

impl<A, C, E> PersistentConnection<A, C, E>
where
    A: Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
    C: Connection,
    E: fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    /// The name given at creation, for logs.
    pub fn server_name(&self) -> &str {
        &self.shared.server_name
    }

    /// Registers interest in the next outcome now, so that nothing between this call and
    /// the first poll is missed.
    fn wait(&self, any_outcome: bool) -> Wait<C, E> {
        let mut inner = self.shared.lock();
        // After `close`, the current connection is being closed: never hand it out (R8).
        // After an abort it is kept until it closes, and still handed out (R12).
        let closing = inner.machine.stop_kind() == Some(StopKind::Close);
        if let Some(conn) = inner.machine.current_connection() {
            if !closing && !conn.is_closed() {
                return Wait::Now(Ok(conn.clone()));
            }
        }
        if let Some(stopped) = &inner.stopped {
            return Wait::Now(Err(stopped.clone()));
        }
        let (tx, rx) = oneshot::channel();
        // Forget waiters whose futures were dropped, so cancelled calls cost nothing; at
        // each doubling, so the scan is amortised O(1) per call.
        if inner.waiters.len() >= 32 && inner.waiters.len().is_power_of_two() {
            inner.waiters.retain(|w| !w.tx.is_canceled());
        }
        inner.waiters.push(Waiter { any_outcome, tx });
        Wait::Later(rx)
    }

    /// The current connection if there is one and it is not closed; otherwise the next
    /// connection to become current (R8). After `close` it never resolves, as in the seed;
    /// use [`connected_or_closed`](Self::connected_or_closed) in select loops.
    pub fn connected(&self) -> impl Future<Output = C> + Send + 'static + use<A, C, E> {
        let wait = self.connected_or_closed();
        async move {
            match wait.await {
                Ok(conn) => conn,
                Err(_) => std::future::pending().await,
            }
        }
    }

    /// As [`connected`](Self::connected), but resolves with `Err(Error::Closed)` (or
    /// `Error::Aborted(reason)`) once no connection will come any more.
    pub fn connected_or_closed(
        &self,
    ) -> impl Future<Output = Result<C, Error<E>>> + Send + 'static + use<A, C, E> {
        let wait = self.wait(false);
        async move {
            match wait {
                Wait::Now(result) => result,
                Wait::Later(rx) => rx.await.unwrap_or(Err(Error::Closed)),
            }
        }
    }

    /// `Ok(current)` at once when connected and the connection is not closed; an error at
    /// once when closed or aborted; otherwise the outcome of the next attempt, or
    /// `Error::Closed` if `close` comes first (R9).
    pub fn connected_or_failed_to_connect(
        &self,
    ) -> impl Future<Output = Result<C, Error<E>>> + Send + 'static + use<A, C, E> {
        let wait = self.wait(true);
        async move {
            match wait {
                Wait::Now(result) => result,
                Wait::Later(rx) => rx.await.unwrap_or(Err(Error::Closed)),
            }
        }
    }

    /// The current connection, if any, without waiting (R10). It may have closed a moment
    /// ago; [`connected`](Self::connected) checks that.
    pub fn current_connection(&self) -> Option<C> {
        self.shared.lock().machine.current_connection().cloned()
    }

    /// Closes the current connection, cancels any address fetch or dial in flight, and
    /// stops retrying (R11). The close starts at this call; the future resolves once the
    /// last connection is closed, no callback runs and no event will be reported again.
    /// Idempotent, and safe from anywhere, including inside `on_event` (but do not await it
    /// there: it waits for that very handler to finish).
    pub fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<A, C, E> {
        self.shared.stop(Input::Close);
        self.close_finished()
    }

    /// Resolves when the close has finished, without starting one.
    pub fn close_finished(&self) -> impl Future<Output = ()> + Send + 'static + use<A, C, E> {
        let shared = self.shared.clone();
        async move {
            loop {
                let listener = shared.changed.listen();
                if shared.lock().finished {
                    return;
                }
                listener.await;
            }
        }
    }

    /// Whether `close` (or an abort) has been called, even if it has not finished.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().machine.is_closed()
    }

    /// Makes no new attempts: the current connection (if any) is kept until it closes, then
    /// the persistent connection finishes as closed (R12).
    pub fn close_when_current_connection_is_closed(&self) {
        self.shared.stop(Input::CloseWhenCurrentConnectionIsClosed);
    }

    /// What the persistent connection is doing now.
    pub fn state(&self) -> State {
        self.shared.lock().state
    }

    /// The events from now on, as a stream (R14). Any number of subscribers; none ever
    /// holds the persistent connection up. To see every event from the first, subscribe on
    /// the builder ([`Builder::events`]) before `spawn`.
    pub fn events(&self) -> Events<DriverEvent<A, C, E>> {
        Events {
            rx: self.shared.events_keep.activate_cloned(),
        }
    }

    /// The current state, then every change, as a stream.
    pub fn state_changes(&self) -> StateChanges {
        // Changes are broadcast under this lock, so the first state and the queue agree.
        let inner = self.shared.lock();
        let rx = self.shared.states_keep.activate_cloned();
        StateChanges {
            first: Some(inner.state),
            last: None,
            rx,
        }
    }

    /// A handle that does not keep the persistent connection alive (R13): for callbacks
    /// that need to reach it (a strong handle inside `on_event` would keep it open forever).
    pub fn downgrade(&self) -> WeakPersistentConnection<A, C, E> {
        WeakPersistentConnection {
            shared: Arc::downgrade(&self.shared),
            guard: Arc::downgrade(&self.guard),
        }
    }
}

/// A [`PersistentConnection`] that does not keep it alive; [`upgrade`](Self::upgrade) it
/// to use it.
pub struct WeakPersistentConnection<A, C, E>
where
    A: Clone + PartialEq,
    C: Clone,
    E: fmt::Debug,
{
    shared: Weak<Shared<A, C, E>>,
    guard: Weak<DropGuard<A, C, E>>,
}

impl<A, C, E> WeakPersistentConnection<A, C, E>
where
    A: Clone + PartialEq,
    C: Clone,
    E: fmt::Debug,
{
    /// The persistent connection, while some handle still keeps it alive.
    pub fn upgrade(&self) -> Option<PersistentConnection<A, C, E>> {
        Some(PersistentConnection {
            guard: self.guard.upgrade()?,
            shared: self.shared.upgrade()?,
        })
    }
}

impl<A, C, E> Clone for WeakPersistentConnection<A, C, E>
where
    A: Clone + PartialEq,
    C: Clone,
    E: fmt::Debug,
{
    fn clone(&self) -> Self {
        WeakPersistentConnection {
            shared: self.shared.clone(),
            guard: self.guard.clone(),
        }
    }
}

impl<A, C, E> fmt::Debug for WeakPersistentConnection<A, C, E>
where
    A: Clone + PartialEq,
    C: Clone,
    E: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakPersistentConnection")
            .finish_non_exhaustive()
    }
}
