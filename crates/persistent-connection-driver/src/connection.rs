//! What the driver needs of a connection, and helpers for types that lack it.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use crate::runtime::BoxFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use atomic_waker::AtomicWaker;

/// A connection the persistent connection can hand out, watch and close: the seed's
/// `Closable`.
///
/// It is a handle (`Clone`): the driver keeps one to watch and close, and hands clones to
/// your code. Wrap a bare stream in [`Tracked`] or your own `Arc`-based type.
///
/// The methods are called from the driver's task and, for `is_closed`, while it holds its
/// lock: they must not block, and must not call back into the persistent connection.
pub trait Connection: Clone + Send + Sync + 'static {
    /// Starts closing the connection; the future resolves once it is closed. Calling it on a
    /// closed connection is harmless.
    fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<Self>;
    /// Whether the connection has closed (or started closing), for whatever reason.
    fn is_closed(&self) -> bool;
    /// Resolves once the connection has closed, however it closed: the peer went away, an
    /// error, or `close`. The driver reports `Disconnected` when it resolves.
    fn closed(&self) -> impl Future<Output = ()> + Send + 'static + use<Self>;
    /// The future that drives the connection's I/O, if it has one (see `Driven`): the
    /// persistent connection runs it on its runtime as
    /// soon as the connection is handed over. Asked once. The default: none.
    fn take_driver(&self) -> Option<BoxFuture<()>> {
        None
    }
    /// Why the connection ended, if it knows; asked once it has closed. The default: it
    /// does not know.
    fn ending(&self) -> Option<Ending> {
        None
    }
}

/// Why a connection ended, as far as it knows: what
/// [`Connection::ending`] reports, and what the `Disconnected` handler can read with
/// `PersistentConnection::last_ending`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Ending {
    /// The driving future finished cleanly: the peer closed the connection.
    Finished,
    /// The driving future ended with this error (a transport failure, a protocol error).
    Failed(Arc<dyn StdError + Send + Sync>),
    /// The driving future panicked, with this message (also given to the panic hook).
    Panicked(Arc<str>),
    /// It was closed from this side (`close`, a failed health check, `reconnect_now`).
    Closed,
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Finished => f.write_str("the peer closed the connection"),
            Ending::Failed(e) => {
                write!(f, "the connection failed: {e}")?;
                // Clients often say little at the top ("db error") and the why below.
                let mut cause = e.source();
                while let Some(inner) = cause {
                    write!(f, ": {inner}")?;
                    cause = inner.source();
                }
                Ok(())
            }
            Ending::Panicked(message) => write!(f, "the connection's driver panicked: {message}"),
            Ending::Closed => f.write_str("closed from this side"),
        }
    }
}

/// A one-way "closed" flag with a future that waits for it: the close signal for connection
/// types that have none of their own. Clones share the flag.
///
/// Call [`close`](Self::close) where your code learns that the connection is dead (a read
/// returned EOF or an error); the persistent connection then reports `Disconnected` and
/// dials again.
#[derive(Clone)]
pub struct CloseSignal {
    // `dyn`, so that a `Tracked` can keep its value and its flag in one allocation and
    // still hand out its signal.
    inner: Arc<dyn HasFlag>,
}

/// The flag and its waiters (also `Driven`'s, inline in its one allocation): 40 bytes.
#[derive(Debug, Default)]
pub(crate) struct Flag {
    /// `CLOSED`, `SOLO_TAKEN` and, from bit 2 up, how many wait (or are about to) on
    /// `event`: one word, so that `close` sees at once whether anyone listens.
    bits: AtomicUsize,
    /// The first waiter (usually the only one: the driver's watch) waits here, which
    /// allocates nothing; `SOLO_TAKEN` says it is in use.
    solo: AtomicWaker,
    /// Every other waiter: `event_listener` allocates its list on the first of them, and
    /// `close` notifies it only if someone listens, since a notify allocates its list too.
    event: event_listener::Event,
}

/// The flag is raised.
const CLOSED: usize = 1;
/// The solo slot has its waiter.
const SOLO_TAKEN: usize = 2;
/// One waiter on the event.
const LISTENER: usize = 4;

/// Whatever holds a [`Flag`]: a bare one, or a `Tracked`'s shared part.
pub(crate) trait HasFlag: Send + Sync + 'static {
    fn flag(&self) -> &Flag;
}

impl HasFlag for Flag {
    fn flag(&self) -> &Flag {
        self
    }
}

impl Flag {
    pub(crate) fn close(&self) {
        let before = self.bits.fetch_or(CLOSED, Ordering::SeqCst);
        self.solo.wake();
        // A waiter counted after the `fetch_or` sees `CLOSED` (one word, one order).
        if before >= LISTENER {
            self.event.notify(usize::MAX);
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.bits.load(Ordering::SeqCst) & CLOSED != 0
    }

    /// Takes the solo slot if it is free.
    fn take_solo(&self) -> bool {
        self.bits.fetch_or(SOLO_TAKEN, Ordering::SeqCst) & SOLO_TAKEN == 0
    }
}

/// Waits for a [`Flag`] held by `owner` (the future of every `closed()`): in the flag's solo
/// slot if it is free, which allocates nothing, else on its event. A hand-written future
/// rather than an `async` block, so that it is small (24 bytes for a sized owner): the
/// driver boxes one per connection to watch it.
/// `S` says which of the owner's flags it waits for: a type rather than a stored function,
/// which would take 8 bytes more.
pub(crate) struct FlagWait<T: ?Sized, S: FlagOf<T>> {
    owner: Arc<T>,
    how: How,
    which: PhantomData<fn() -> S>,
}

/// Which of its owner's flags a [`FlagWait`] waits for.
pub(crate) trait FlagOf<T: ?Sized> {
    /// The flag in `owner`.
    fn flag(owner: &T) -> &Flag;
}

/// The owner's own flag: a bare [`Flag`], a `Tracked`'s, or any [`HasFlag`].
pub(crate) struct OwnFlag;

impl<T: ?Sized + HasFlag> FlagOf<T> for OwnFlag {
    fn flag(owner: &T) -> &Flag {
        owner.flag()
    }
}

/// Where a [`FlagWait`] waits.
enum How {
    /// Not polled yet: it holds nothing.
    Unpolled,
    /// In the solo slot, which it holds until it ends or is dropped.
    Solo,
    /// On the event (counted in the flag's bits), with its listener once made.
    Listening(Option<event_listener::EventListener>),
    /// Resolved: it holds nothing any more.
    Done,
}

impl<T: ?Sized, S: FlagOf<T>> FlagWait<T, S> {
    /// Waits for `S::flag(&owner)`.
    pub(crate) fn new(owner: Arc<T>) -> Self {
        FlagWait {
            owner,
            how: How::Unpolled,
            which: PhantomData,
        }
    }

    /// Gives back what it holds: frees the solo slot (and drops the waker it left, which may
    /// keep a finished task's memory alive), or counts itself out of the event's waiters.
    fn release(&mut self) {
        let flag = S::flag(&self.owner);
        match std::mem::replace(&mut self.how, How::Done) {
            How::Solo => {
                drop(flag.solo.take());
                flag.bits.fetch_and(!SOLO_TAKEN, Ordering::SeqCst);
            }
            How::Listening(_) => {
                flag.bits.fetch_sub(LISTENER, Ordering::SeqCst);
            }
            How::Unpolled | How::Done => {}
        }
    }
}

impl<T: ?Sized, S: FlagOf<T>> Future for FlagWait<T, S> {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let flag = S::flag(&this.owner);
        loop {
            match &mut this.how {
                How::Done => return Poll::Ready(()),
                How::Unpolled => {
                    if flag.is_closed() {
                        this.how = How::Done;
                        return Poll::Ready(());
                    }
                    this.how = if flag.take_solo() {
                        How::Solo
                    } else {
                        flag.bits.fetch_add(LISTENER, Ordering::SeqCst);
                        How::Listening(None)
                    };
                }
                How::Solo => {
                    // Register, then look: a `close` in between wakes the registered waker.
                    flag.solo.register(cx.waker());
                    if !flag.is_closed() {
                        return Poll::Pending;
                    }
                    this.release();
                    return Poll::Ready(());
                }
                How::Listening(listener) => {
                    if flag.is_closed() {
                        this.release();
                        return Poll::Ready(());
                    }
                    match listener {
                        // Listen, then look again (the loop): a `close` after the look
                        // above notifies this listener.
                        None => *listener = Some(flag.event.listen()),
                        Some(waiting) => match std::pin::Pin::new(waiting).poll(cx) {
                            // Notified: look again, with a fresh listener if need be.
                            Poll::Ready(()) => *listener = None,
                            Poll::Pending => return Poll::Pending,
                        },
                    }
                }
            }
        }
    }
}

impl<T: ?Sized, S: FlagOf<T>> Drop for FlagWait<T, S> {
    fn drop(&mut self) {
        self.release();
    }
}

impl Default for CloseSignal {
    fn default() -> Self {
        CloseSignal {
            inner: Arc::new(Flag::default()),
        }
    }
}

impl fmt::Debug for CloseSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseSignal")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl CloseSignal {
    /// A signal that is not closed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks it closed and wakes everything waiting in [`closed`](Self::closed). Idempotent.
    pub fn close(&self) {
        self.inner.flag().close();
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.flag().is_closed()
    }

    /// Resolves once [`close`](Self::close) has been called (at once if it has).
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        FlagWait::<_, OwnFlag>::new(self.inner.clone())
    }
}

/// A bare signal is a connection too: handy in tests and for connections whose life is
/// managed elsewhere.
impl Connection for CloseSignal {
    fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        CloseSignal::close(self);
        std::future::ready(())
    }
    fn is_closed(&self) -> bool {
        CloseSignal::is_closed(self)
    }
    fn closed(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        CloseSignal::closed(self)
    }
}

/// Any value shared behind an `Arc` with a [`CloseSignal`]: makes a type with no close
/// signal of its own (a client, a stream half) usable as a [`Connection`].
///
/// Which to use: when the client comes with a future that drives its I/O and ends when
/// the connection dies (hyper, tokio-postgres, tarpc, redis, or your own read loop over a
/// byte stream), use `Driven`: the persistent connection runs that future and notices the
/// death by itself. Use `Tracked` only when there is no such future and your own code is
/// where the death shows (a read that returns 0): your code must then raise
/// [`signal`](Self::signal)`().close()`, or the persistent connection never learns the peer
/// is gone.
///
/// `close` only raises the signal: the value itself is dropped when the last clone goes.
/// Code that owns the value's I/O should watch [`CloseSignal::closed`] to shut it down,
/// and raise the signal when it sees the peer go away.
///
/// [`new`](Self::new) makes one allocation (value and flag together); a clone is one
/// reference count.
pub struct Tracked<T> {
    inner: Arc<TrackedInner<T>>,
}

struct TrackedInner<T> {
    value: T,
    signal: TrackedSignal,
}

/// A `Tracked`'s flag: its own, or a signal given to [`Tracked::with_signal`].
enum TrackedSignal {
    Own(Flag),
    Given(CloseSignal),
}

impl<T> TrackedInner<T> {
    fn flag(&self) -> &Flag {
        match &self.signal {
            TrackedSignal::Own(flag) => flag,
            TrackedSignal::Given(signal) => signal.inner.flag(),
        }
    }
}

impl<T: Send + Sync + 'static> HasFlag for TrackedInner<T> {
    fn flag(&self) -> &Flag {
        TrackedInner::flag(self)
    }
}

impl<T> Tracked<T> {
    /// Wraps `value` with a fresh signal.
    pub fn new(value: T) -> Self {
        Tracked {
            inner: Arc::new(TrackedInner {
                value,
                signal: TrackedSignal::Own(Flag::default()),
            }),
        }
    }

    /// Wraps `value` with `signal` (e.g. one that a reader task already holds).
    pub fn with_signal(value: T, signal: CloseSignal) -> Self {
        Tracked {
            inner: Arc::new(TrackedInner {
                value,
                signal: TrackedSignal::Given(signal),
            }),
        }
    }

    /// The signal: raise it (`signal().close()`) when the connection dies.
    pub fn signal(&self) -> CloseSignal
    where
        T: Send + Sync + 'static,
    {
        match &self.inner.signal {
            TrackedSignal::Own(_) => CloseSignal {
                inner: self.inner.clone(),
            },
            TrackedSignal::Given(signal) => signal.clone(),
        }
    }

    /// Whether the signal was raised (the same as `signal().is_closed()`, without a
    /// reference count).
    pub fn is_closed(&self) -> bool {
        self.inner.flag().is_closed()
    }

    /// Whether `self` and `other` are clones of one `Tracked`.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl<T: fmt::Debug> fmt::Debug for Tracked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("value", &self.inner.value)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T> Clone for Tracked<T> {
    fn clone(&self) -> Self {
        Tracked {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Deref for Tracked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner.value
    }
}

impl<T: Send + Sync + 'static> Connection for Tracked<T> {
    fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<T> {
        self.inner.flag().close();
        std::future::ready(())
    }
    fn is_closed(&self) -> bool {
        Tracked::is_closed(self)
    }
    fn closed(&self) -> impl Future<Output = ()> + Send + 'static + use<T> {
        self.signal().closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Waker};

    fn bits(flag: &Flag) -> usize {
        flag.bits.load(Ordering::SeqCst)
    }

    /// The promise behind "the driver's watch allocates nothing to wait": the first waiter
    /// takes the solo slot, later ones wait on the event (whose listener allocates), and
    /// each gives its place back when it resolves or is dropped. Not visible from outside
    /// but in allocations, so checked on the flag's bits.
    #[test]
    fn the_first_waiter_takes_the_solo_slot_and_the_others_wait_on_the_event() {
        let flag = Arc::new(Flag::default());
        let mut cx = Context::from_waker(Waker::noop());
        let mut first = FlagWait::<_, OwnFlag>::new(flag.clone());
        let mut second = FlagWait::<_, OwnFlag>::new(flag.clone());
        assert!(Pin::new(&mut first).poll(&mut cx).is_pending());
        assert!(matches!(first.how, How::Solo), "the first waiter is solo");
        assert_eq!(bits(&flag), SOLO_TAKEN);
        assert!(Pin::new(&mut second).poll(&mut cx).is_pending());
        assert!(
            matches!(second.how, How::Listening(Some(_))),
            "the second waits on the event"
        );
        assert_eq!(bits(&flag), SOLO_TAKEN | LISTENER);

        drop(first);
        assert_eq!(
            bits(&flag),
            LISTENER,
            "a dropped solo waiter frees the slot"
        );
        let mut third = FlagWait::<_, OwnFlag>::new(flag.clone());
        assert!(Pin::new(&mut third).poll(&mut cx).is_pending());
        assert!(
            matches!(third.how, How::Solo),
            "the freed slot is taken again"
        );

        flag.close();
        assert!(Pin::new(&mut second).poll(&mut cx).is_ready());
        assert!(Pin::new(&mut third).poll(&mut cx).is_ready());
        assert_eq!(bits(&flag), CLOSED, "resolved waiters hold nothing");
        assert!(
            Pin::new(&mut third).poll(&mut cx).is_ready(),
            "a resolved wait stays resolved"
        );
    }
}
