//! Connections made of a handle and the future that drives their I/O: the shape of most
//! Rust clients (hyper's `SendRequest` and `Connection`, tokio-postgres's `Client` and
//! `Connection`, tarpc's client and dispatch, redis's multiplexed connection and driver).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

use crate::catch::panic_message;
use crate::connection::{Connection, Ending, Flag, FlagOf, FlagWait};
use crate::runtime::{BoxFuture, Runtime};

/// What a driving future may end with: nothing, or a `Result` whose error says why.
pub trait DriveOutput {
    /// How the connection ended.
    fn into_ending(self) -> Ending;
}

impl DriveOutput for () {
    fn into_ending(self) -> Ending {
        Ending::Finished
    }
}

impl<E: StdError + Send + Sync + 'static> DriveOutput for Result<(), E> {
    fn into_ending(self) -> Ending {
        match self {
            Ok(()) => Ending::Finished,
            Err(e) => Ending::Failed(Arc::new(e)),
        }
    }
}

/// A connection made of a handle and the future that drives its I/O. Return one from
/// `connect`, and the persistent connection does the rest:
///
/// - it runs the driving future on its runtime from the moment the connection is handed
///   over;
/// - the connection counts as closed the moment that future ends (`Ok`, `Err`, or a panic,
///   which is also given to the panic hook), so the persistent connection notices a dead
///   peer with no code of yours on the data path;
/// - `close` stops the future (drops it) and resolves once it is gone;
/// - [`ending`](Self::ending) says afterwards why it ended (for logs), and so does
///   `PersistentConnection::last_ending` in the `Disconnected` handler.
///
/// `connected()` hands out clones; each dereferences to the handle.
///
/// ```
/// # use persistent_connection_driver::Driven;
/// # struct SendRequest; async fn connection() -> std::io::Result<()> { Ok(()) }
/// // hyper: `let (send_request, connection) = http2::handshake(exec, io).await?;`
/// // tokio-postgres: `let (client, connection) = config.connect(NoTls).await?;`
/// let (handle, driving) = (SendRequest, connection());
/// let conn = Driven::new(handle, driving);
/// ```
///
/// Use [`Tracked`](crate::connection::Tracked) instead for a type with no driving future of its own,
/// whose death your code must see and report (a bare `TcpStream` your code reads).
pub struct Driven<H>(Arc<Inner<H>>);

/// One allocation per connection: the handle, the state of its driving future, its `gone`
/// flag and its stop (and one more for the driving future, with what runs around it).
struct Inner<H> {
    handle: H,
    state: DriveState,
    /// The handle's own verdict, if it has one (see `closed_when`).
    dead: OnceLock<fn(&H) -> bool>,
}

struct DriveState {
    /// Where the driving future is in its life, and how it ended: one lock for what is
    /// pending, then running, then ended, since each follows the other (24 B less than a
    /// lock for each, which takes the connection's allocation down a size class).
    slot: Mutex<Slot>,
    /// Raised once the driving future is gone (ended, or dropped by `close`).
    gone: Flag,
    /// The running driving future's waker, which `close` wakes. Only the driving future
    /// waits for `stop`, so it needs no list of waiters, as `gone` does (8 B less).
    stop_waker: AtomicWaker,
    /// Raised by `close`: the running future is to be dropped.
    stop: AtomicBool,
}

/// The driving future's life.
enum Slot {
    /// Not started: the driving future, until the persistent connection (or `start`)
    /// takes it: the user's future inside what stops it on `close`, catches its panics and
    /// records how it ended.
    Pending(BoxFuture<()>),
    /// Taken to run (or to be dropped by `close`), and not ended yet.
    Taken,
    /// Ended, and why: the first ending recorded stays.
    Ended(Ending),
}

impl DriveState {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The driving future, if it was neither taken nor ended yet.
    fn take_pending(&self) -> Option<BoxFuture<()>> {
        let mut slot = self.slot();
        match std::mem::replace(&mut *slot, Slot::Taken) {
            Slot::Pending(driving) => Some(driving),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Records why it ended, unless an ending was recorded already (the first stays), and
    /// raises `gone`.
    fn end(&self, ending: Ending) {
        let mut slot = self.slot();
        if !matches!(*slot, Slot::Ended(_)) {
            let before = std::mem::replace(&mut *slot, Slot::Ended(ending));
            // Whatever it held (nothing, as the driver calls this) is dropped unlocked.
            drop(slot);
            drop(before);
        }
        self.gone.close();
    }

    /// Why it ended, once it has.
    fn ending(&self) -> Option<Ending> {
        match &*self.slot() {
            Slot::Ended(ending) => Some(ending.clone()),
            Slot::Pending(_) | Slot::Taken => None,
        }
    }
}

/// `Driven`'s `gone` flag, for [`FlagWait`].
struct Gone;

impl<H> FlagOf<Inner<H>> for Gone {
    fn flag(owner: &Inner<H>) -> &Flag {
        &owner.state.gone
    }
}

impl<H> Driven<H> {
    /// `handle` (what `connected()` hands out) driven by `driving` (the future that does
    /// the connection's I/O and ends when it dies).
    pub fn new<F>(handle: H, driving: F) -> Self
    where
        H: Send + Sync + 'static,
        F: Future + Send + 'static,
        F::Output: DriveOutput,
    {
        Driven(Arc::new_cyclic(|inner: &Weak<Inner<H>>| Inner {
            handle,
            dead: OnceLock::new(),
            state: DriveState {
                slot: Mutex::new(Slot::Pending(Box::pin(Drive {
                    inner: inner.clone(),
                    owner: None,
                    driving: Some(driving),
                }))),
                gone: Flag::default(),
                stop_waker: AtomicWaker::new(),
                stop: AtomicBool::new(false),
            },
        }))
    }

    /// Also counts the connection as closed when `dead` says so of the handle: for clients
    /// that know a moment before their driving future ends (hyper's
    /// `SendRequest::is_closed`), so that `connected()` never hands out a connection the
    /// client already knows is dead. Call it once, where the connection is made (a second
    /// call changes nothing).
    ///
    /// ```
    /// # use persistent_connection_driver::Driven;
    /// # struct SendRequest; impl SendRequest { fn is_closed(&self) -> bool { false } }
    /// let conn = Driven::new(SendRequest, async {}).closed_when(SendRequest::is_closed);
    /// ```
    #[must_use]
    pub fn closed_when(self, dead: fn(&H) -> bool) -> Self {
        let _ = self.0.dead.set(dead);
        self
    }

    /// Whether the connection is closed: its driving future has ended, `close` was called,
    /// or the handle says it is dead (see [`closed_when`](Self::closed_when)). The same
    /// as `Connection::is_closed`, and not the handle's own `is_closed`, which `Deref`
    /// would reach.
    pub fn is_closed(&self) -> bool {
        let state = self.state();
        state.stop.load(Ordering::SeqCst)
            || state.gone.is_closed()
            || self.0.dead.get().is_some_and(|dead| dead(&self.0.handle))
    }

    /// Resolves once the driving future is gone (it ended, or `close` dropped it).
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static + use<H>
    where
        H: Send + Sync + 'static,
    {
        FlagWait::<_, Gone>::new(self.0.clone())
    }

    /// Whether `a` and `b` are clones of the same connection.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// The handle (also reachable through `Deref`).
    pub fn handle(&self) -> &H {
        &self.0.handle
    }

    fn state(&self) -> &DriveState {
        &self.0.state
    }

    /// Runs the driving future on `runtime` now, for a connection used on its own, without
    /// a persistent connection (which starts it itself). Does nothing if it was started, or
    /// closed, already. Until it runs, the handle's requests get no answers.
    pub fn start(&self, runtime: &impl Runtime)
    where
        H: Send + Sync + 'static,
    {
        if let Some(driving) = self.take_driver() {
            runtime.spawn(driving);
        }
    }

    /// Why it ended, once it has.
    pub fn ending(&self) -> Option<Ending> {
        self.state().ending()
    }
}

impl<H> Deref for Driven<H> {
    type Target = H;
    fn deref(&self) -> &H {
        self.handle()
    }
}

impl<H> Clone for Driven<H> {
    fn clone(&self) -> Self {
        Driven(self.0.clone())
    }
}

impl<H> fmt::Debug for Driven<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driven")
            .field("closed", &self.state().gone.is_closed())
            .field("ending", &self.ending())
            .finish_non_exhaustive()
    }
}

impl<H: Send + Sync + 'static> Connection for Driven<H> {
    /// Stops the driving future (drops it, and with it the transport); resolves once it is
    /// gone.
    fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<H> {
        self.state().stop.store(true, Ordering::SeqCst);
        self.state().stop_waker.wake();
        let never_started = self.state().take_pending();
        if never_started.is_some() {
            drop(never_started);
            self.state().end(Ending::Closed);
        }
        Driven::closed(self)
    }

    fn is_closed(&self) -> bool {
        Driven::is_closed(self)
    }

    fn closed(&self) -> impl Future<Output = ()> + Send + 'static + use<H> {
        Driven::closed(self)
    }

    fn take_driver(&self) -> Option<BoxFuture<()>> {
        self.state().take_pending()
    }

    fn ending(&self) -> Option<Ending> {
        Driven::ending(self)
    }
}

pin_project_lite::pin_project! {
    /// The driving future as the persistent connection runs it: `driving` until it ends (or
    /// panics, or `close` stops it: then it is dropped, and with it the transport), then the
    /// ending recorded and the connection marked gone. It holds its connection weakly until
    /// it first runs, so a connection dropped before that is simply freed.
    ///
    /// Hand-written rather than an `async fn`, whose state would hold `driving` twice (the
    /// argument and the pinned local): it is boxed once per connection.
    struct Drive<H, F> {
        inner: Weak<Inner<H>>,
        // The connection, held strongly from the first poll on (for its `stop`).
        owner: Option<Arc<Inner<H>>>,
        // `None` once it has ended or was dropped.
        #[pin]
        driving: Option<F>,
    }
}

impl<H, F> Future for Drive<H, F>
where
    F: Future,
    F::Output: DriveOutput,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let owner = match this.owner.take().or_else(|| this.inner.upgrade()) {
            Some(owner) => owner,
            None => {
                // The connection is gone: nobody wants it driven.
                this.driving.set(None);
                return Poll::Ready(());
            }
        };
        let Some(driving) = this.driving.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        let ending = match catch_unwind(AssertUnwindSafe(|| driving.poll(cx))) {
            Ok(Poll::Ready(output)) => output.into_ending(),
            Err(payload) => Ending::Panicked(panic_message(payload)),
            Ok(Poll::Pending) => {
                // Register, then look: a `close` in between wakes the registered waker.
                owner.state.stop_waker.register(cx.waker());
                if !owner.state.stop.load(Ordering::SeqCst) {
                    *this.owner = Some(owner);
                    return Poll::Pending;
                }
                Ending::Closed
            }
        };
        // The driving future, and so the transport, is dropped before the end is told.
        this.driving.set(None);
        // The waker left for `close` would keep this finished task's memory alive.
        drop(owner.state.stop_waker.take());
        owner.state.end(ending);
        Poll::Ready(())
    }
}
