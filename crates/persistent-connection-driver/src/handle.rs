//! The handle users hold: `connected`, `close` and the rest (R8..R14), and its weak twin.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Weak};

use persistent_connection::State;

use crate::connection::Connection;
use crate::error::{ConnectError, DriverEvent, Stopped};
use crate::shared::{Shared, StopRequest};
use crate::streams::{Events, StateChanges};

/// Closes the persistent connection when the last handle goes (R13).
struct DropGuard<A, C, E>(Arc<Shared<A, C, E>>)
where
    A: Clone + PartialEq,
    C: Connection,
    E: fmt::Debug;

impl<A, C, E> Drop for DropGuard<A, C, E>
where
    A: Clone + PartialEq,
    C: Connection,
    E: fmt::Debug,
{
    fn drop(&mut self) {
        self.0.request_stop(StopRequest::Close);
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
    C: Connection,
    E: fmt::Debug,
{
    shared: Arc<Shared<A, C, E>>,
    guard: Arc<DropGuard<A, C, E>>,
}

impl<A, C, E> Clone for PersistentConnection<A, C, E>
where
    A: Clone + PartialEq,
    C: Connection,
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
    C: Connection,
    E: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentConnection")
            .field("server_name", self.shared.server_name())
            .field("state", &self.shared.state())
            .finish()
    }
}

impl<A, C, E> PersistentConnection<A, C, E>
where
    A: Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
    C: Connection,
    E: fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    pub(crate) fn new(shared: Arc<Shared<A, C, E>>) -> Self {
        PersistentConnection {
            guard: Arc::new(DropGuard(shared.clone())),
            shared,
        }
    }

    /// The name given at creation, for logs.
    pub fn server_name(&self) -> &str {
        self.shared.server_name()
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

    /// As [`connected`](Self::connected), but resolves with the [`Stopped`] reason
    /// (`Closed`, or `Aborted(reason)`) once no connection will come any more.
    pub fn connected_or_closed(
        &self,
    ) -> impl Future<Output = Result<C, Stopped<E>>> + Send + 'static + use<A, C, E> {
        let wait = self.shared.wait_connected();
        wait.get(|| Err(Stopped::Closed))
    }

    /// `Ok(current)` at once when connected and the connection is not closed;
    /// [`ConnectError::Stopped`] at once when closed or aborted; otherwise the outcome of
    /// the next attempt ([`ConnectError::Attempt`] if it fails), or
    /// `ConnectError::Stopped` if a stop comes first (R9).
    pub fn connected_or_failed_to_connect(
        &self,
    ) -> impl Future<Output = Result<C, ConnectError<E>>> + Send + 'static + use<A, C, E> {
        let wait = self.shared.wait_outcome();
        wait.get(|| Err(ConnectError::Stopped(Stopped::Closed)))
    }

    /// The current connection, if any, without waiting (R10). It may have closed a moment
    /// ago; [`connected`](Self::connected) checks that.
    pub fn current_connection(&self) -> Option<C> {
        self.shared.current_connection()
    }

    /// Closes the current connection, cancels any address fetch or dial in flight, and
    /// stops retrying (R11). The close starts at this call; the future resolves once the
    /// last connection is closed, no callback runs and no event will be reported again.
    /// Idempotent, and safe from anywhere, including inside `on_event` (but do not await it
    /// there: it waits for that very handler to finish).
    pub fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<A, C, E> {
        self.shared.request_stop(StopRequest::Close);
        self.close_finished()
    }

    /// Resolves when the close has finished, without starting one.
    pub fn close_finished(&self) -> impl Future<Output = ()> + Send + 'static + use<A, C, E> {
        self.shared.finished()
    }

    /// Whether `close` (or an abort, or `close_when_current_connection_is_closed`) has been
    /// called, even if it has not finished.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Makes no new attempts: the current connection (if any) is kept until it closes, then
    /// the persistent connection finishes as closed (R12).
    pub fn close_when_current_connection_is_closed(&self) {
        self.shared
            .request_stop(StopRequest::WhenCurrentConnectionCloses);
    }

    /// What the persistent connection is doing now.
    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// The events from now on, as a stream (R14). Any number of subscribers; none ever
    /// holds the persistent connection up. To see every event from the first, subscribe on
    /// the builder (`Builder::events`) before `spawn`.
    pub fn events(&self) -> Events<DriverEvent<A, C, E>> {
        self.shared.events()
    }

    /// The current state, then every change, as a stream.
    pub fn state_changes(&self) -> StateChanges {
        self.shared.state_changes()
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
    C: Connection,
    E: fmt::Debug,
{
    shared: Weak<Shared<A, C, E>>,
    guard: Weak<DropGuard<A, C, E>>,
}

impl<A, C, E> WeakPersistentConnection<A, C, E>
where
    A: Clone + PartialEq,
    C: Connection,
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
    C: Connection,
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
    C: Connection,
    E: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakPersistentConnection")
            .finish_non_exhaustive()
    }
}
