//! The callers of `connected*` waiting for an outcome, and who gets what (R3, R8, R9).
//! Kept inside the shared state, under its lock.

use futures_channel::oneshot;

use crate::error::{AttemptError, ConnectError, Stopped};

/// A caller of `connected*` waiting for the next outcome.
enum Waiter<C, E> {
    /// `connected` / `connected_or_closed`: a connection, or the stop.
    Connected(oneshot::Sender<Result<C, Stopped<E>>>),
    /// `connected_or_failed_to_connect`: the next outcome, whatever it is.
    AnyOutcome(oneshot::Sender<Result<C, ConnectError<E>>>),
}

impl<C, E> Waiter<C, E> {
    fn is_canceled(&self) -> bool {
        match self {
            Waiter::Connected(tx) => tx.is_canceled(),
            Waiter::AnyOutcome(tx) => tx.is_canceled(),
        }
    }
}

/// What a `connected*` call gets: its answer now, or a receiver for it.
pub(crate) enum Wait<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

impl<T> Wait<T> {
    /// The answer; `gone` if the persistent connection went away without giving one.
    pub(crate) async fn get(self, gone: impl FnOnce() -> T) -> T {
        match self {
            Wait::Now(answer) => answer,
            Wait::Later(rx) => rx.await.unwrap_or_else(|_| gone()),
        }
    }
}

/// The waiting callers. Allocates nothing until someone waits.
pub(crate) struct Waiters<C, E>(Vec<Waiter<C, E>>);

impl<C: Clone, E> Waiters<C, E> {
    pub(crate) const fn new() -> Self {
        Waiters(Vec::new())
    }

    fn push(&mut self, waiter: Waiter<C, E>) {
        // Forget waiters whose futures were dropped, so cancelled calls cost nothing; at
        // each doubling, so the scan is amortised O(1) per call.
        if self.0.len() >= 32 && self.0.len().is_power_of_two() {
            self.0.retain(|w| !w.is_canceled());
        }
        self.0.push(waiter);
    }

    /// A `connected`/`connected_or_closed` caller: answered by a connection or a stop.
    pub(crate) fn wait_connected(&mut self) -> Wait<Result<C, Stopped<E>>> {
        let (tx, rx) = oneshot::channel();
        self.push(Waiter::Connected(tx));
        Wait::Later(rx)
    }

    /// A `connected_or_failed_to_connect` caller: answered by the next outcome.
    pub(crate) fn wait_outcome(&mut self) -> Wait<Result<C, ConnectError<E>>> {
        let (tx, rx) = oneshot::channel();
        self.push(Waiter::AnyOutcome(tx));
        Wait::Later(rx)
    }

    /// An attempt made `conn`: every waiter gets it. The list keeps its allocation for
    /// the next waiters (one allocation less per reconnection).
    pub(crate) fn connected(&mut self, conn: &C) {
        for waiter in self.0.drain(..) {
            match waiter {
                Waiter::Connected(tx) => drop(tx.send(Ok(conn.clone()))),
                Waiter::AnyOutcome(tx) => drop(tx.send(Ok(conn.clone()))),
            }
        }
    }

    /// An attempt failed: the waiters of `connected_or_failed_to_connect` get the error;
    /// those of `connected` wait on.
    pub(crate) fn failed(&mut self, error: &AttemptError<E>) {
        // In place, so the list keeps its allocation; the order of waiters is immaterial.
        let mut i = 0;
        while i < self.0.len() {
            match &self.0[i] {
                Waiter::Connected(_) => i += 1,
                Waiter::AnyOutcome(_) => {
                    if let Waiter::AnyOutcome(tx) = self.0.swap_remove(i) {
                        let _ = tx.send(Err(error.clone().into()));
                    }
                }
            }
        }
    }

    /// No connection will come: every waiter gets `reason`.
    pub(crate) fn stopped(&mut self, reason: &Stopped<E>) {
        for waiter in self.0.drain(..) {
            match waiter {
                Waiter::Connected(tx) => drop(tx.send(Err(reason.clone()))),
                Waiter::AnyOutcome(tx) => drop(tx.send(Err(reason.clone().into()))),
            }
        }
    }
}
