//! Subscriptions: events (R14) and state changes, as `futures_core::Stream`s.

use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::{Arc, OnceLock};

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

/// A broadcast channel's two ends: the sender, and an inactive receiver that keeps the
/// channel open while no subscriber is left, for the next one to activate.
pub(crate) struct Channel<T> {
    sender: Sender<T>,
    keep: InactiveReceiver<T>,
}

impl<T> Channel<T> {
    /// A channel of `capacity` items per subscriber, in which a slow subscriber loses the
    /// oldest items and nobody is ever waited for.
    fn new(capacity: usize) -> Self {
        let (mut sender, receiver) = async_broadcast::broadcast(capacity);
        sender.set_overflow(true);
        sender.set_await_active(false);
        Channel {
            sender,
            keep: receiver.deactivate(),
        }
    }

    /// A receiver of everything sent from now on; ended at once if `closed` (the channel
    /// was closed before or while it was made).
    fn subscribe(&self, closed: bool) -> Receiver<T> {
        let receiver = self.keep.activate_cloned();
        if closed {
            self.sender.close();
        }
        receiver
    }

    /// Sends a clone of `item` to the subscribers, if there are any; never waits.
    fn send(&self, item: &T)
    where
        T: Clone,
    {
        if self.sender.receiver_count() > 0 {
            let _ = self.sender.try_broadcast(item.clone());
        }
    }

    /// Ends every stream, present and future.
    fn close(&self) {
        self.sender.close();
    }
}

/// Another pair of ends of the same channel (no bound on `T`: nothing is cloned but them).
impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Channel {
            sender: self.sender.clone(),
            keep: self.keep.clone(),
        }
    }
}

/// The builder's event channel, made on its first subscription (`Builder::events`), so that
/// a builder nobody subscribes to allocates nothing for it. `spawn` hands what it made to
/// the persistent connection's [`Subscriptions`].
pub(crate) struct Lazy<T> {
    channel: OnceLock<Channel<T>>,
    capacity: usize,
}

impl<T> Lazy<T> {
    /// A channel of `capacity` items per subscriber, not made yet.
    pub(crate) fn new(capacity: usize) -> Self {
        Lazy {
            channel: OnceLock::new(),
            capacity,
        }
    }

    /// A receiver of everything sent from now on (the channel is made at once).
    pub(crate) fn subscribe(&self) -> Receiver<T> {
        self.channel
            .get_or_init(|| Channel::new(self.capacity))
            .subscribe(false)
    }

    /// The channel, if someone subscribed.
    pub(crate) fn into_channel(self) -> Option<Channel<T>> {
        self.channel.into_inner()
    }
}

/// The event channel and the state channel of a persistent connection, each made on its
/// first subscription, both behind one pointer: 8 bytes in every persistent connection,
/// nothing allocated until someone subscribes. Kept under the shared state's lock, which
/// decides who makes what, so it needs no synchronisation of its own; the events are sent
/// outside that lock, through a clone of the `Arc` (see [`senders`](Self::senders)).
pub(crate) struct Subscriptions<T>(Option<Arc<Channels<T>>>);

/// What [`Subscriptions`] points to.
pub(crate) struct Channels<T> {
    events: Option<Channel<T>>,
    states: Option<Channel<State>>,
}

impl<T> Clone for Channels<T> {
    fn clone(&self) -> Self {
        Channels {
            events: self.events.clone(),
            states: self.states.clone(),
        }
    }
}

impl<T: Clone> Subscriptions<T> {
    /// None made yet, but the event channel the builder made, if any.
    pub(crate) fn new(events: Option<Channel<T>>) -> Self {
        Subscriptions(events.map(|events| {
            Arc::new(Channels {
                events: Some(events),
                states: None,
            })
        }))
    }

    /// The channels, to change: made now if need be. Someone sending outside the lock may
    /// hold the current `Arc`; then its ends are cloned into a new one (rare: only while a
    /// first subscription to the other channel races with an event).
    fn channels_mut(&mut self) -> &mut Channels<T> {
        Arc::make_mut(self.0.get_or_insert_with(|| {
            Arc::new(Channels {
                events: None,
                states: None,
            })
        }))
    }

    /// A receiver of every event sent from now on, with room for `capacity` (if made now);
    /// ended at once if `closed`.
    pub(crate) fn subscribe_events(&mut self, capacity: usize, closed: bool) -> Receiver<T> {
        self.channels_mut()
            .events
            .get_or_insert_with(|| Channel::new(capacity))
            .subscribe(closed)
    }

    /// A receiver of every state sent from now on, with room for `capacity` (if made now);
    /// ended at once if `closed`.
    pub(crate) fn subscribe_states(&mut self, capacity: usize, closed: bool) -> Receiver<State> {
        self.channels_mut()
            .states
            .get_or_insert_with(|| Channel::new(capacity))
            .subscribe(closed)
    }

    /// Sends `state` to its subscribers, if there are any; never waits.
    pub(crate) fn send_state(&self, state: &State) {
        if let Some(states) = self.0.as_ref().and_then(|c| c.states.as_ref()) {
            states.send(state);
        }
    }

    /// The channels as they are, to send or close through once the lock is released (an
    /// event may hold a connection, whose drop must not run under it); `None` while nobody
    /// has subscribed.
    pub(crate) fn senders(&self) -> Option<Arc<Channels<T>>> {
        self.0.clone()
    }
}

impl<T: Clone> Channels<T> {
    /// Sends a clone of `event` to the event subscribers, if there are any; never waits.
    pub(crate) fn send_event(&self, event: &T) {
        if let Some(events) = &self.events {
            events.send(event);
        }
    }

    /// Ends every stream of both channels, present and future (a later subscriber is ended
    /// by `subscribe_*`'s `closed`).
    pub(crate) fn close(&self) {
        if let Some(events) = &self.events {
            events.close();
        }
        if let Some(states) = &self.states {
            states.close();
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

    #[test]
    fn both_channels_share_one_slot_and_ends_held_outside_the_lock_keep_working() {
        use async_broadcast::TryRecvError;
        let mut subscriptions = Subscriptions::<u32>::new(None);
        assert!(
            subscriptions.senders().is_none(),
            "nothing made before a subscription"
        );
        let mut events = subscriptions.subscribe_events(4, false);
        // A publisher holds the slot while the state channel is made: the slot is copied.
        let in_flight = subscriptions.senders().expect("made on subscription");
        let mut states = subscriptions.subscribe_states(4, false);
        in_flight.send_event(&1);
        subscriptions.send_state(&State::Connected);
        assert_eq!(events.try_recv(), Ok(1));
        assert_eq!(states.try_recv(), Ok(State::Connected));
        drop(in_flight);
        let current = subscriptions.senders().expect("made");
        current.send_event(&2);
        assert_eq!(
            events.try_recv(),
            Ok(2),
            "the old slot's ends closed nothing"
        );
        current.close();
        assert_eq!(events.try_recv(), Err(TryRecvError::Closed));
        assert_eq!(states.try_recv(), Err(TryRecvError::Closed));
        let mut late = subscriptions.subscribe_states(4, true);
        assert_eq!(late.try_recv(), Err(TryRecvError::Closed), "ended at once");
    }
}
