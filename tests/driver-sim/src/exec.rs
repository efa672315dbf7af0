//! The executor: single-threaded, deterministic, and the simulation chooses which woken
//! task runs next. Wakers are `std::task::Wake`; tasks spawned while another one is polled
//! (by the driver, through [`SimRuntime`]) wait in a queue until the simulation admits them.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use persistent_connection_driver::{BoxFuture, BoxTimer, Runtime, VirtualClock};

/// What a task is, for the trace and the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tag {
    /// The driver's background task (the first task the runtime is asked to spawn).
    Driver,
    /// Anything else the driver spawns (a `Driven` connection's driving future, a close).
    Spawned,
    /// A caller waiting on a future of the handle (its index in the waiter list).
    Waiter(usize),
    /// A subscriber of `events` or `state_changes` (its index in the stream list).
    Stream(usize),
}

#[derive(Default)]
struct Queue {
    next_id: usize,
    runtime_spawns: usize,
    incoming: Vec<(usize, Tag, BoxFuture<()>)>,
    ready: BTreeSet<usize>,
}

/// The part of the executor that wakers and the runtime reach.
#[derive(Default)]
pub(crate) struct ExecShared {
    queue: Mutex<Queue>,
}

impl ExecShared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `future` as a new task; returns its id.
    pub(crate) fn spawn(&self, tag: Tag, future: BoxFuture<()>) -> usize {
        let mut q = self.lock();
        let id = q.next_id;
        q.next_id += 1;
        q.incoming.push((id, tag, future));
        id
    }

    fn spawn_from_runtime(&self, future: BoxFuture<()>) {
        let tag = {
            let mut q = self.lock();
            q.runtime_spawns += 1;
            if q.runtime_spawns == 1 {
                Tag::Driver
            } else {
                Tag::Spawned
            }
        };
        self.spawn(tag, future);
    }
}

struct TaskWaker {
    id: usize,
    exec: Weak<ExecShared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(exec) = self.exec.upgrade() {
            exec.lock().ready.insert(self.id);
        }
    }
}

struct Slot {
    tag: Tag,
    future: BoxFuture<()>,
    waker: Waker,
}

/// The task table, owned by the simulation (never behind a lock while a task is polled).
pub(crate) struct Executor {
    pub(crate) shared: Arc<ExecShared>,
    tasks: BTreeMap<usize, Slot>,
}

impl Executor {
    pub(crate) fn new() -> Self {
        Executor {
            shared: Arc::new(ExecShared::default()),
            tasks: BTreeMap::new(),
        }
    }

    /// Moves newly spawned tasks into the table, ready to run; forgets wake-ups of tasks
    /// that are gone.
    fn admit(&mut self) {
        let incoming = std::mem::take(&mut self.shared.lock().incoming);
        for (id, tag, future) in incoming {
            let waker = Waker::from(Arc::new(TaskWaker {
                id,
                exec: Arc::downgrade(&self.shared),
            }));
            self.tasks.insert(id, Slot { tag, future, waker });
            self.shared.lock().ready.insert(id);
        }
        let tasks = &self.tasks;
        self.shared.lock().ready.retain(|id| tasks.contains_key(id));
    }

    /// The ids of the tasks that are woken, in order.
    pub(crate) fn ready(&mut self) -> Vec<usize> {
        self.admit();
        self.shared.lock().ready.iter().copied().collect()
    }

    /// Polls task `id` once. Returns its tag and whether it completed (it is then dropped).
    pub(crate) fn poll(&mut self, id: usize) -> Option<(Tag, bool)> {
        self.shared.lock().ready.remove(&id);
        let mut slot = self.tasks.remove(&id)?;
        let mut cx = Context::from_waker(&slot.waker);
        let done = slot.future.as_mut().poll(&mut cx).is_ready();
        let tag = slot.tag;
        if done {
            drop(slot);
        } else {
            self.tasks.insert(id, slot);
        }
        self.admit();
        Some((tag, done))
    }

    /// Drops task `id` without running it (a caller that gave up waiting).
    pub(crate) fn cancel(&mut self, id: usize) -> bool {
        let slot = self.tasks.remove(&id);
        let found = slot.is_some();
        drop(slot);
        self.admit();
        found
    }

    /// The tags of the tasks still alive.
    pub(crate) fn live(&mut self) -> Vec<Tag> {
        self.admit();
        self.tasks.values().map(|s| s.tag).collect()
    }

    /// Drops every task (at the end of a run, so that nothing keeps anything alive).
    pub(crate) fn clear(&mut self) {
        loop {
            self.admit();
            if self.tasks.is_empty() {
                break;
            }
            let tasks = std::mem::take(&mut self.tasks);
            drop(tasks);
        }
    }
}

/// The [`Runtime`] the driver runs on in the simulation: it spawns on the simulated
/// executor and sleeps on a [`VirtualClock`], whose time is also `now()`.
#[derive(Clone)]
pub struct SimRuntime {
    exec: Arc<ExecShared>,
    clock: VirtualClock,
    /// Dead once the driver has let go of its runtime (the leak check).
    pub(crate) token: Arc<()>,
    /// What `can_hold_timers` says.
    hold_timers: bool,
}

impl SimRuntime {
    pub(crate) fn new(exec: Arc<ExecShared>, clock: VirtualClock, hold_timers: bool) -> Self {
        SimRuntime {
            exec,
            clock,
            token: Arc::new(()),
            hold_timers,
        }
    }
}

impl Runtime for SimRuntime {
    fn spawn(&self, task: BoxFuture<()>) {
        self.exec.spawn_from_runtime(task);
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(self.clock.sleep(duration))
    }
    /// Virtual sleeps can be moved: the driver's retry timer is reset, not remade, as on
    /// the real runtimes.
    fn timer(&self, duration: Duration) -> BoxTimer {
        Box::pin(self.clock.sleep(duration))
    }
    fn now(&self) -> Instant {
        self.clock.instant()
    }
    fn can_hold_timers(&self) -> bool {
        self.hold_timers
    }
}

/// A future that is ready once `poll` returns ready: `std::future::poll_fn` for a stream.
pub(crate) fn next_item<S: futures_core::Stream + Unpin>(
    stream: &mut S,
) -> impl Future<Output = Option<S::Item>> + '_ {
    std::future::poll_fn(move |cx| -> Poll<Option<S::Item>> {
        std::pin::Pin::new(&mut *stream).poll_next(cx)
    })
}
