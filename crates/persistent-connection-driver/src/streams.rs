//! Subscriptions: events (R14) and state changes, as `futures_core::Stream`s.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_broadcast::{Receiver, RecvError};
use futures_core::Stream;

use persistent_connection::State;

/// A subscriber fell behind and missed this many events (R14). The stream goes on with the
/// oldest event it still has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the subscriber fell behind and missed {0} events")]
pub struct Lagged(pub u64);

/// The events of a persistent connection, as a stream. It never holds the connection up:
/// a subscriber that falls behind gets `Err(Lagged(n))` and then the newer events. It ends
/// when the persistent connection has finished.
#[derive(Debug)]
pub struct Events<T> {
    rx: Receiver<T>,
}

impl<T> Events<T> {
    pub(crate) fn new(rx: Receiver<T>) -> Self {
        Events { rx }
    }
}

impl<T: Clone> Stream for Events<T> {
    type Item = Result<T, Lagged>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.rx).poll_recv(cx).map(|item| match item {
            Some(Ok(event)) => Some(Ok(event)),
            Some(Err(RecvError::Overflowed(n))) => Some(Err(Lagged(n))),
            Some(Err(RecvError::Closed)) | None => None,
        })
    }
}

/// The states of a persistent connection: the current one first, then each change. A slow
/// subscriber skips to the newer states. It ends after [`State::Closed`].
#[derive(Debug)]
pub struct StateChanges {
    first: Option<State>,
    last: Option<State>,
    rx: Receiver<State>,
}

impl StateChanges {
    pub(crate) fn new(first: State, rx: Receiver<State>) -> Self {
        StateChanges {
            first: Some(first),
            last: None,
            rx,
        }
    }
}

impl Stream for StateChanges {
    type Item = State;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<State>> {
        if let Some(first) = self.first.take() {
            self.last = Some(first);
            return Poll::Ready(Some(first));
        }
        loop {
            return match Pin::new(&mut self.rx).poll_recv(cx) {
                // The first item may already show a change that is also queued.
                Poll::Ready(Some(Ok(state))) if self.last == Some(state) => continue,
                Poll::Ready(Some(Ok(state))) => {
                    self.last = Some(state);
                    Poll::Ready(Some(state))
                }
                Poll::Ready(Some(Err(RecvError::Overflowed(_)))) => continue,
                Poll::Ready(Some(Err(RecvError::Closed)) | None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}
