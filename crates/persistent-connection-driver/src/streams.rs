//! Subscriptions: events (R14) and state changes, as `futures_core::Stream`s.

use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use async_broadcast::{InactiveReceiver, Receiver, RecvError, Sender};
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

/// A broadcast channel made on first subscription, so that a persistent connection nobody
/// watches allocates nothing for it. Sending before anyone subscribed costs one check.
/// 24 bytes in every persistent connection (the channel's two ends are boxed with it, on
/// the first subscription).
pub(crate) struct Lazy<T> {
    channel: OnceLock<Box<(Sender<T>, InactiveReceiver<T>)>>,
    capacity: u32,
    closed: AtomicBool,
}

impl<T: Clone> Lazy<T> {
    /// A channel of `capacity` items per subscriber, not made yet.
    pub(crate) fn new(capacity: usize) -> Self {
        Lazy {
            channel: OnceLock::new(),
            // No buffer of 4 billion items fits anyway.
            capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
            closed: AtomicBool::new(false),
        }
    }

    /// A receiver of everything sent from now on (made at once, ended if closed).
    pub(crate) fn subscribe(&self) -> Receiver<T> {
        let (sender, keep) = &**self.channel.get_or_init(|| {
            let (mut sender, receiver) = async_broadcast::broadcast(self.capacity as usize);
            // A slow subscriber loses the oldest items; nobody is ever waited for.
            sender.set_overflow(true);
            sender.set_await_active(false);
            Box::new((sender, receiver.deactivate()))
        });
        let receiver = keep.activate_cloned();
        // Closed before or while we made it: the new subscriber sees the end at once.
        if self.closed.load(Ordering::SeqCst) {
            sender.close();
        }
        receiver
    }

    /// Sends a clone of `item` to the subscribers, if there are any; never waits.
    pub(crate) fn send(&self, item: &T) {
        if let Some(channel) = self.channel.get() {
            let sender = &channel.0;
            if sender.receiver_count() > 0 {
                let _ = sender.try_broadcast(item.clone());
            }
        }
    }

    /// Ends every stream, present and future.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(channel) = self.channel.get() {
            channel.0.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn next(stream: &mut StateChanges) -> Poll<Option<State>> {
        Pin::new(stream).poll_next(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_change_already_shown_as_the_first_state_is_not_repeated() {
        let (sender, receiver) = async_broadcast::broadcast(4);
        // The change was queued, and is also the state read when subscribing.
        sender.try_broadcast(State::Connected).expect("room");
        let mut states = StateChanges::new(State::Connected, receiver);
        assert_eq!(next(&mut states), Poll::Ready(Some(State::Connected)));
        assert_eq!(next(&mut states), Poll::Pending, "not twice");
        sender.try_broadcast(State::Disconnected).expect("room");
        assert_eq!(next(&mut states), Poll::Ready(Some(State::Disconnected)));
        drop(sender);
        assert_eq!(
            next(&mut states),
            Poll::Ready(None),
            "ends with the channel"
        );
    }
}
