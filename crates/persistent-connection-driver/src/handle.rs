//! The handle users hold: `connected`, `close` and the rest (R8..R14), and its weak twin.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Weak};

use persistent_connection::State;

use crate::connection::{Connection, Ending};
use crate::error::{ConnectError, DriverEvent, Stopped};
use crate::shared::{Shared, StopRequest};
use crate::stats::Stats;
use crate::streams::{Events, StateChanges};

/// A connection to a service that is kept alive: looked up, dialled, handed out, watched,
/// and dialled again when it dies, until closed.
///
/// Cheap to clone (`Clone + Send + Sync`); every clone is the same persistent connection.
/// Dropping the last clone closes it (R13). Every future it returns is cancel-safe:
/// dropping one loses nothing.
pub struct PersistentConnection<A, C, E> {
    /// The shared state, which counts the handles: the last one to go closes (R13). A weak
    /// handle points here too, without being counted. (The count lives in the shared state
    /// rather than in an `Arc` of its own: one allocation fewer per connection.)
    shared: Arc<Shared<A, C, E>>,
}

impl<A, C, E> Clone for PersistentConnection<A, C, E> {
    fn clone(&self) -> Self {
        self.shared.add_handle();
        PersistentConnection {
            shared: self.shared.clone(),
        }
    }
}

impl<A, C, E> Drop for PersistentConnection<A, C, E> {
    fn drop(&mut self) {
        if self.shared.drop_handle() {
            self.shared.close_on_drop();
        }
    }
}

impl<A, C, E> fmt::Debug for PersistentConnection<A, C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentConnection")
            .field("server_name", &self.shared.server_name())
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
    /// The first handle of `shared` (whose count of handles starts at one).
    pub(crate) fn new(shared: Arc<Shared<A, C, E>>) -> Self {
        PersistentConnection { shared }
    }

    fn shared(&self) -> &Shared<A, C, E> {
        &self.shared
    }

    /// The name given at creation, for logs.
    pub fn server_name(&self) -> &str {
        self.shared().server_name()
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
        self.shared.wait_connected()
    }

    /// `Ok(current)` at once when connected and the connection is not closed;
    /// [`ConnectError::Stopped`] at once when closed or aborted; otherwise the outcome of
    /// the next attempt ([`ConnectError::Attempt`] if it fails), or
    /// `ConnectError::Stopped` if a stop comes first (R9).
    pub fn connected_or_failed_to_connect(
        &self,
    ) -> impl Future<Output = Result<C, ConnectError<E>>> + Send + 'static + use<A, C, E> {
        self.shared.wait_outcome()
    }

    /// The current connection, if any, without waiting (R10). It may have closed a moment
    /// ago; [`connected`](Self::connected) checks that.
    pub fn current_connection(&self) -> Option<C> {
        self.shared().current_connection()
    }

    /// Closes the current connection, cancels any address fetch or dial in flight, and
    /// stops retrying (R11). The close starts at this call; the future resolves once the
    /// last connection is closed, no callback runs and no event will be reported again.
    /// Idempotent, and safe from anywhere, including inside `on_event` (but do not await it
    /// there: it waits for that very handler to finish).
    pub fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<A, C, E> {
        self.shared().request_stop(StopRequest::Close);
        self.close_finished()
    }

    /// Resolves when the close has finished, without starting one.
    pub fn close_finished(&self) -> impl Future<Output = ()> + Send + 'static + use<A, C, E> {
        self.shared.finished()
    }

    /// Whether `close` (or an abort, or `close_when_current_connection_is_closed`) has been
    /// called, even if it has not finished.
    pub fn is_closed(&self) -> bool {
        self.shared().is_closed()
    }

    /// Makes no new attempts: the current connection (if any) is kept until it closes, then
    /// the persistent connection finishes as closed (R12).
    pub fn close_when_current_connection_is_closed(&self) {
        self.shared()
            .request_stop(StopRequest::WhenCurrentConnectionCloses);
    }

    /// Moves on now (R18), the call to make after the catalog changed: when connected, the
    /// current connection is closed (`Disconnected` as usual) and the next cycle starts
    /// without waiting for the retry timer; when waiting for the retry timer between
    /// attempts, the timer counts as fired now. While an attempt is in flight, or after
    /// `close`, nothing changes. The failure count is left as it is.
    pub fn reconnect_now(&self) {
        self.shared().reconnect_now();
    }

    /// Why the last current connection ended, if it said: a [`Driven`](crate::driven::Driven)
    /// connection tells whether its driving future finished, failed (with the error) or
    /// panicked, or whether it was closed from this side. Set before `Disconnected` is
    /// reported, so the `Disconnected` handler can read it (through a weak handle).
    pub fn last_ending(&self) -> Option<Ending> {
        self.shared().last_ending()
    }

    /// What the persistent connection is doing now.
    pub fn state(&self) -> State {
        self.shared().state()
    }

    /// A snapshot of the statistics: attempts, failures, connections, disconnections,
    /// failed health probes, the state and since when, the current connection's uptime,
    /// the last failure's text. Cheap (one lock, no waiting); poll it as often as your
    /// metrics system scrapes.
    pub fn stats(&self) -> Stats {
        self.shared().stats()
    }

    /// The events from now on, as a stream (R14). Any number of subscribers; none ever
    /// holds the persistent connection up. To see every event from the first, subscribe on
    /// the builder (`Builder::events`) before `spawn`.
    pub fn events(&self) -> Events<DriverEvent<A, C, E>> {
        self.shared().events()
    }

    /// The current state, then every change, as a stream.
    pub fn state_changes(&self) -> StateChanges {
        self.shared().state_changes()
    }

    /// A handle that does not keep the persistent connection alive (R13): for callbacks
    /// that need to reach it (a strong handle inside `on_event` would keep it open forever).
    pub fn downgrade(&self) -> WeakPersistentConnection<A, C, E> {
        WeakPersistentConnection(Arc::downgrade(&self.shared))
    }
}

/// A [`PersistentConnection`] that does not keep it alive; [`upgrade`](Self::upgrade) it
/// to use it.
pub struct WeakPersistentConnection<A, C, E>(Weak<Shared<A, C, E>>);

impl<A, C, E> WeakPersistentConnection<A, C, E> {
    /// The persistent connection, while some handle still keeps it alive.
    pub fn upgrade(&self) -> Option<PersistentConnection<A, C, E>> {
        let shared = self.0.upgrade()?;
        // Made only once counted: a handle that was never counted must not be dropped.
        if shared.try_add_handle() {
            Some(PersistentConnection { shared })
        } else {
            None
        }
    }
}

/// Shows whether the persistent connection is still alive, nothing more (looking further
/// would need an upgrade).
impl<A, C, E> fmt::Debug for WeakPersistentConnection<A, C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakPersistentConnection")
            .field(
                "alive",
                &self.0.upgrade().is_some_and(|shared| shared.has_handles()),
            )
            .finish()
    }
}

impl<A, C, E> Clone for WeakPersistentConnection<A, C, E> {
    fn clone(&self) -> Self {
        WeakPersistentConnection(self.0.clone())
    }
}
