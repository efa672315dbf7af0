//! The runtime trait the driver is written against, and a virtual clock for tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A boxed, sendable future: what runtimes spawn and what callbacks return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A sleep that can be moved to a new deadline: what [`Runtime::timer`] makes. The driver
/// keeps one retry timer per persistent connection and moves it for each attempt, rather
/// than allocating a new sleep every time.
pub trait Timer: Future<Output = ()> + Send {
    /// Completes `duration` from now instead of at its old deadline (also once it has
    /// completed). Returns `false` if this timer cannot be moved: the driver then asks
    /// [`Runtime::timer`] for a new one.
    fn reset(self: Pin<&mut Self>, duration: Duration) -> bool;
}

/// A boxed [`Timer`].
pub type BoxTimer = Pin<Box<dyn Timer>>;

/// The default [`Runtime::timer`]: a sleep that cannot be moved.
struct OneShot(BoxFuture<()>);

impl Future for OneShot {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Timer for OneShot {
    fn reset(self: Pin<&mut Self>, _: Duration) -> bool {
        false
    }
}

/// What the driver needs from an async runtime: spawn a task, sleep for a while.
///
/// The adapter crates implement it for Tokio, async-std and smol. It is public so tests can
/// substitute time (see [`VirtualClock`]) and so unusual executors can run the driver too.
pub trait Runtime: Send + Sync + 'static {
    /// Runs `task` in the background until it completes.
    fn spawn(&self, task: BoxFuture<()>);
    /// A future that completes once `duration` has passed.
    fn sleep(&self, duration: Duration) -> BoxFuture<()>;
    /// A [`Timer`] that completes once `duration` has passed and can be moved. The
    /// default wraps [`sleep`](Self::sleep) in one that cannot (so each move allocates a
    /// new sleep); runtimes whose timers can be reset override it.
    fn timer(&self, duration: Duration) -> BoxTimer {
        Box::pin(OneShot(self.sleep(duration)))
    }
    /// The current time, on the clock `sleep` waits on; a virtual runtime gives its own,
    /// and a wrapper around another runtime should forward it. The driver measures the
    /// statistics with it (since when the state holds, the connection's uptime), and with
    /// [`can_hold_timers`](Self::can_hold_timers) the retry timers it holds back.
    fn now(&self) -> Instant {
        Instant::now()
    }
    /// Whether [`now`](Self::now) is the clock `sleep` and `timer` wait on, so that the
    /// driver may hold back a retry timer nothing waits for yet: keep its deadline, arm
    /// no timer, and compare the deadline with `now` at its next step (a connection that
    /// outlives its retry delay then never arms one, and its task is never woken for it).
    ///
    /// `false` by default: every timer is armed when the Machine starts it, whatever
    /// `now` says. The adapters' runtimes and [`VirtualRuntime`] say `true`; a wrapper
    /// around one of them should forward both methods.
    fn can_hold_timers(&self) -> bool {
        false
    }
}

impl<R: Runtime + ?Sized> Runtime for Arc<R> {
    fn spawn(&self, task: BoxFuture<()>) {
        (**self).spawn(task)
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        (**self).sleep(duration)
    }
    fn timer(&self, duration: Duration) -> BoxTimer {
        (**self).timer(duration)
    }
    fn now(&self) -> Instant {
        (**self).now()
    }
    fn can_hold_timers(&self) -> bool {
        (**self).can_hold_timers()
    }
}

/// An executor whose timers are `async-io`'s (async-std, smol): it only has to spawn, and
/// it is a [`Runtime`] whose sleeps are `async-io` timers (feature `async-io`).
#[cfg(feature = "async-io")]
pub trait AsyncIoSpawn: Send + Sync + 'static {
    /// Runs `task` in the background until it completes.
    fn spawn(&self, task: BoxFuture<()>);
}

#[cfg(feature = "async-io")]
impl<S: AsyncIoSpawn> Runtime for S {
    fn spawn(&self, task: BoxFuture<()>) {
        AsyncIoSpawn::spawn(self, task)
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(async move {
            // A duration too long for `Instant` makes a timer that never fires: fine for a
            // delay.
            async_io::Timer::after(duration).await;
        })
    }
    fn timer(&self, duration: Duration) -> BoxTimer {
        Box::pin(AsyncIoTimer(async_io::Timer::after(duration)))
    }
    /// `async-io`'s timers wait on `Instant::now()`, the default `now`.
    fn can_hold_timers(&self) -> bool {
        true
    }
}

/// `async-io`'s timer, which can be moved, as a [`Timer`].
#[cfg(feature = "async-io")]
struct AsyncIoTimer(async_io::Timer);

#[cfg(feature = "async-io")]
impl Future for AsyncIoTimer {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(drop)
    }
}

#[cfg(feature = "async-io")]
impl Timer for AsyncIoTimer {
    fn reset(mut self: Pin<&mut Self>, duration: Duration) -> bool {
        // A duration too long for `Instant` makes a timer that never fires (see `sleep`).
        self.0.set_after(duration);
        true
    }
}

/// A manual clock: time stands still until the test moves it. Works on any executor.
///
/// [`VirtualClock::runtime`] wraps a real runtime (for spawning) so that every sleep of the
/// persistent connection waits on this clock. Then [`advance`](Self::advance) or
/// [`advance_to_next`](Self::advance_to_next) fire the timers, and
/// [`next_timer`](Self::next_timer) waits (without sleeping) until a timer is set, so a
/// test of a 10 s retry delay runs in microseconds, with no sleeps and no flakiness.
#[derive(Clone, Default)]
pub struct VirtualClock {
    inner: Arc<ClockInner>,
}

struct ClockInner {
    /// The `Instant` the clock's zero stands for, so that [`VirtualClock::instant`] can
    /// give an `Instant` (what [`Runtime::now`] returns).
    base: Instant,
    state: Mutex<ClockState>,
    timer_set: event_listener::Event,
}

#[derive(Default)]
struct ClockState {
    now: Duration,
    next_id: u64,
    /// (deadline, id) -> the waker of the sleep waiting for it.
    timers: BTreeMap<(Duration, u64), Option<Waker>>,
}

impl Default for ClockInner {
    fn default() -> Self {
        ClockInner {
            base: Instant::now(),
            state: Mutex::default(),
            timer_set: event_listener::Event::new(),
        }
    }
}

impl VirtualClock {
    /// A clock at zero with no timers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The clock's time as an `Instant`: the moment it was made, plus [`now`](Self::now).
    pub fn instant(&self) -> Instant {
        self.inner.base + self.now()
    }

    fn lock(&self) -> MutexGuard<'_, ClockState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A runtime that spawns on `spawner` and sleeps on this clock.
    pub fn runtime<R: Runtime>(&self, spawner: R) -> VirtualRuntime<R> {
        VirtualRuntime {
            clock: self.clone(),
            spawner,
        }
    }

    /// The time elapsed on this clock since it was made.
    pub fn now(&self) -> Duration {
        self.lock().now
    }

    /// How many sleeps wait on this clock.
    pub fn pending_timers(&self) -> usize {
        self.lock().timers.len()
    }

    /// The earliest deadline of a waiting sleep, if any.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.lock().timers.keys().next().map(|(d, _)| *d)
    }

    /// Moves time forward by `by` and wakes every sleep whose deadline has come.
    pub fn advance(&self, by: Duration) {
        let mut state = self.lock();
        state.now = state.now.saturating_add(by);
        let now = state.now;
        let due: Vec<_> = state
            .timers
            .range(..=(now, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        let wakers: Vec<Waker> = due
            .into_iter()
            .filter_map(|k| state.timers.remove(&k).flatten())
            .collect();
        drop(state);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Jumps to the earliest deadline and fires it. Returns how far time moved, or `None`
    /// (time unchanged) when no sleep waits.
    pub fn advance_to_next(&self) -> Option<Duration> {
        let step = {
            let state = self.lock();
            let (deadline, _) = state.timers.keys().next()?;
            deadline.saturating_sub(state.now)
        };
        self.advance(step);
        Some(step)
    }

    /// Waits until at least one sleep waits on this clock, and returns the earliest
    /// deadline. This is the explicit signal tests use instead of "sleep a bit".
    pub async fn next_timer(&self) -> Duration {
        loop {
            event_listener::listener!(self.inner.timer_set => listener);
            if let Some(deadline) = self.next_deadline() {
                return deadline;
            }
            listener.await;
        }
    }

    /// A sleep that counts as pending only once it is polled or moved.
    fn unregistered_sleep(&self, duration: Duration) -> Sleep {
        let key = Self::new_key(&mut self.lock(), duration);
        Sleep {
            clock: self.clone(),
            key,
        }
    }

    /// The key of a sleep made now for `duration`: its deadline and a fresh id.
    fn new_key(state: &mut ClockState, duration: Duration) -> (Duration, u64) {
        let id = state.next_id;
        state.next_id += 1;
        (state.now.saturating_add(duration), id)
    }

    /// A future that completes once the clock has moved `duration` past now.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        let mut state = self.lock();
        let key = Self::new_key(&mut state, duration);
        if key.0 > state.now {
            state.timers.insert(key, None);
            drop(state);
            self.inner.timer_set.notify(usize::MAX);
        }
        Sleep {
            clock: self.clone(),
            key,
        }
    }
}

impl std::fmt::Debug for VirtualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("VirtualClock")
            .field("now", &state.now)
            .field("pending_timers", &state.timers.len())
            .finish()
    }
}

/// A sleep on a [`VirtualClock`].
#[derive(Debug)]
pub struct Sleep {
    clock: VirtualClock,
    key: (Duration, u64),
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.clock.lock();
        if state.now >= self.key.0 {
            state.timers.remove(&self.key);
            return Poll::Ready(());
        }
        match state.timers.get_mut(&self.key) {
            Some(slot) => *slot = Some(cx.waker().clone()),
            None => {
                // First poll of a sleep made unregistered: it is pending from now on.
                state.timers.insert(self.key, Some(cx.waker().clone()));
                drop(state);
                self.clock.inner.timer_set.notify(usize::MAX);
            }
        }
        Poll::Pending
    }
}

/// A virtual sleep can be moved: the driver's retry timer on a [`VirtualRuntime`] is one
/// `Sleep` for the connection's life.
impl Timer for Sleep {
    fn reset(mut self: Pin<&mut Self>, duration: Duration) -> bool {
        let moved = {
            let mut state = self.clock.lock();
            state.timers.remove(&self.key);
            let key = VirtualClock::new_key(&mut state, duration);
            let waiting = key.0 > state.now;
            if waiting {
                state.timers.insert(key, None);
            }
            (key, waiting)
        };
        self.key = moved.0;
        if moved.1 {
            self.clock.inner.timer_set.notify(usize::MAX);
        }
        true
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.clock.lock().timers.remove(&self.key);
    }
}

/// A [`Runtime`] that spawns on `R` and sleeps on a [`VirtualClock`].
#[derive(Clone, Debug)]
pub struct VirtualRuntime<R> {
    clock: VirtualClock,
    spawner: R,
}

impl<R: Runtime> Runtime for VirtualRuntime<R> {
    fn spawn(&self, task: BoxFuture<()>) {
        self.spawner.spawn(task)
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(self.clock.sleep(duration))
    }
    /// Counted as pending only once polled or moved, as a Tokio or async-io timer
    /// registers only then: the driver makes its retry timer before it waits on it.
    fn timer(&self, duration: Duration) -> BoxTimer {
        Box::pin(self.clock.unregistered_sleep(duration))
    }
    fn now(&self) -> Instant {
        self.clock.instant()
    }
    /// `now` is the virtual clock's.
    fn can_hold_timers(&self) -> bool {
        true
    }
}
