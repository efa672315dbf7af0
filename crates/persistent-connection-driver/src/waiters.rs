//! The callers of `connected*` waiting for an outcome, and who gets what (R3, R8, R9), and
//! those of `close_finished` waiting for the task to finish. Kept inside the shared state,
//! under its lock.
//!
//! Each waiting call has a slot here: its waker, and its answer once given. The answer
//! waits in the slot until the call's future takes it, and a future that is dropped takes
//! its slot with it, so a waiting call costs no allocation of its own beyond the slots'
//! list, and nothing is lost. The list's room is freed once no call is left, so an idle
//! persistent connection keeps none (the next call that waits makes it again: one
//! allocation per reconnection for a client that waits on each).

use std::task::{Poll, Waker};

use crate::error::{AttemptError, ConnectError, Stopped};

/// What a waiting call is told.
pub(crate) enum Answer<C, E> {
    /// An attempt made this connection.
    Connected(C),
    /// An attempt failed (only calls that wait for any outcome are told).
    Failed(AttemptError<E>),
    /// No connection will come.
    Stopped(Stopped<E>),
    /// The task has finished (only calls of `close_finished` are told, and only this).
    Finished,
}

impl<C, E> Answer<C, E> {
    /// The answer of `connected_or_closed`; `None` for a failure, which it is never given.
    pub(crate) fn connected(self) -> Option<Result<C, Stopped<E>>> {
        match self {
            Answer::Connected(conn) => Some(Ok(conn)),
            Answer::Stopped(reason) => Some(Err(reason)),
            Answer::Failed(_) | Answer::Finished => None,
        }
    }

    /// The answer of `connected_or_failed_to_connect`; `None` for a finish, which it is
    /// never given.
    pub(crate) fn any_outcome(self) -> Option<Result<C, ConnectError<E>>> {
        Some(match self {
            Answer::Connected(conn) => Ok(conn),
            Answer::Failed(error) => Err(ConnectError::Attempt(error)),
            Answer::Stopped(reason) => Err(ConnectError::Stopped(reason)),
            Answer::Finished => return None,
        })
    }

    /// The answer of `close_finished`: the only one it is given is the finish.
    pub(crate) fn finished(self) -> Option<()> {
        matches!(self, Answer::Finished).then_some(())
    }
}

/// What a waiting call waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wants {
    /// A connection, or the stop (`connected_or_closed`).
    Connection,
    /// The next attempt's outcome, or the stop (`connected_or_failed_to_connect`).
    AnyOutcome,
    /// The task's finish (`close_finished`).
    Finish,
}

/// One waiting call.
pub(crate) struct Slot<C, E> {
    wants: Wants,
    waker: Option<Waker>,
    answer: Option<Answer<C, E>>,
}

/// The waiting calls, each keyed by its slot's index. Allocates nothing until someone
/// waits, then room for one; frees it when the last call goes. (A plain vector rather than
/// a slab: 24 bytes instead of 40 in every persistent connection, and a search for a free
/// slot among the few waiting calls costs nothing worth a free list.)
pub(crate) struct Waiters<C, E>(Vec<Option<Slot<C, E>>>);

impl<C, E> Waiters<C, E> {
    /// The call for `key` went away: its slot, with any answer it had not taken, for the
    /// caller to drop outside the lock (the answer may hold a connection).
    pub(crate) fn remove(&mut self, key: usize) -> Option<Slot<C, E>> {
        let slot = self.0.get_mut(key)?.take();
        self.trim();
        slot
    }

    /// Drops the free slots at the end (no live call's key changes), and once no call is
    /// left frees the room (nothing in it to drop), so that an idle persistent connection
    /// keeps none. Keys then restart from 0, which no live call holds.
    fn trim(&mut self) {
        while matches!(self.0.last(), Some(None)) {
            self.0.pop();
        }
        if self.0.is_empty() && self.0.capacity() > 0 {
            self.0 = Vec::new();
        }
    }
}

impl<C: Clone, E> Waiters<C, E> {
    pub(crate) const fn new() -> Self {
        Waiters(Vec::new())
    }

    /// A new waiting call, for what it `wants`: its key, the first free slot's (or a new
    /// one at the end).
    pub(crate) fn register(&mut self, wants: Wants) -> usize {
        let slot = Some(Slot {
            wants,
            waker: None,
            answer: None,
        });
        if let Some(key) = self.0.iter().position(Option::is_none) {
            self.0[key] = slot;
            return key;
        }
        if self.0.capacity() == 0 {
            // Most persistent connections have one waiter at a time.
            self.0.reserve_exact(1);
        }
        self.0.push(slot);
        self.0.len() - 1
    }

    /// The answer for `key` once given (its slot is then freed); until then `waker` is
    /// woken when it comes. `Ready(None)`: no such slot (cannot happen while its future
    /// lives, which alone frees it).
    pub(crate) fn poll(&mut self, key: usize, waker: &Waker) -> Poll<Option<Answer<C, E>>> {
        let Some(Some(slot)) = self.0.get_mut(key) else {
            return Poll::Ready(None);
        };
        if let Some(answer) = slot.answer.take() {
            self.0[key] = None;
            self.trim();
            return Poll::Ready(Some(answer));
        }
        match &mut slot.waker {
            Some(known) if known.will_wake(waker) => {}
            other => *other = Some(waker.clone()),
        }
        Poll::Pending
    }

    /// Gives `answer` to every call still waiting that wants it, and wakes it.
    fn answer(&mut self, wants: impl Fn(&Slot<C, E>) -> bool, answer: impl Fn() -> Answer<C, E>) {
        for slot in self.0.iter_mut().flatten() {
            if slot.answer.is_none() && wants(slot) {
                slot.answer = Some(answer());
                if let Some(waker) = slot.waker.take() {
                    waker.wake();
                }
            }
        }
    }

    /// An attempt made `conn`: every call waiting for a connection gets it.
    pub(crate) fn connected(&mut self, conn: &C) {
        self.answer(
            |slot| slot.wants != Wants::Finish,
            || Answer::Connected(conn.clone()),
        );
    }

    /// An attempt failed: the calls of `connected_or_failed_to_connect` get the error;
    /// those of `connected` wait on.
    pub(crate) fn failed(&mut self, error: &AttemptError<E>) {
        self.answer(
            |slot| slot.wants == Wants::AnyOutcome,
            || Answer::Failed(error.clone()),
        );
    }

    /// No connection will come: every call waiting for one gets `reason`.
    pub(crate) fn stopped(&mut self, reason: &Stopped<E>) {
        self.answer(
            |slot| slot.wants != Wants::Finish,
            || Answer::Stopped(reason.clone()),
        );
    }

    /// The task has finished: the calls of `close_finished` are released.
    pub(crate) fn finished(&mut self) {
        self.answer(|slot| slot.wants == Wants::Finish, || Answer::Finished);
    }

    /// How many calls have a slot (waiting, or answered and not yet polled).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.iter().flatten().count()
    }

    /// How many slots there is room for.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    fn woken(count: &Count) -> usize {
        count.0.load(Ordering::SeqCst)
    }

    type W = Waiters<u32, String>;

    #[test]
    fn an_answer_waits_in_its_slot_until_taken() {
        let mut waiters = W::new();
        let (count, waker) = counting();
        let key = waiters.register(Wants::Connection);
        assert!(waiters.poll(key, &waker).is_pending());
        waiters.connected(&7);
        assert_eq!(woken(&count), 1, "the waiter is woken");
        assert_eq!(waiters.len(), 1, "the answer waits in the slot");
        match waiters.poll(key, &waker) {
            Poll::Ready(Some(answer)) => assert_eq!(answer.connected().unwrap().unwrap(), 7),
            _ => panic!("expected the connection"),
        }
        assert_eq!(waiters.len(), 0, "taking the answer frees the slot");
        assert_eq!(waiters.capacity(), 0, "and the last slot's room");
        assert!(matches!(waiters.poll(key, &waker), Poll::Ready(None)));
    }

    #[test]
    fn failures_go_only_to_calls_that_want_them() {
        let mut waiters = W::new();
        let (connected_count, connected_waker) = counting();
        let (any_count, any_waker) = counting();
        let connected = waiters.register(Wants::Connection);
        let any = waiters.register(Wants::AnyOutcome);
        assert!(waiters.poll(connected, &connected_waker).is_pending());
        assert!(waiters.poll(any, &any_waker).is_pending());
        let error = AttemptError::Connect(Arc::new(String::from("refused")));
        waiters.failed(&error);
        assert_eq!(woken(&connected_count), 0, "connected() waits on");
        assert_eq!(woken(&any_count), 1);
        assert!(waiters.poll(connected, &connected_waker).is_pending());
        match waiters.poll(any, &any_waker) {
            Poll::Ready(Some(answer)) => match answer.any_outcome() {
                Some(Err(ConnectError::Attempt(e))) => {
                    assert_eq!(e.to_string(), "could not connect: refused")
                }
                _ => panic!("expected the failure"),
            },
            _ => panic!("expected an answer"),
        }
        waiters.stopped(&Stopped::Closed);
        assert_eq!(woken(&connected_count), 1);
        match waiters.poll(connected, &connected_waker) {
            Poll::Ready(Some(answer)) => {
                assert!(matches!(answer.connected(), Some(Err(Stopped::Closed))))
            }
            _ => panic!("expected the stop"),
        }
    }

    #[test]
    fn only_the_finish_releases_close_finished_and_only_it() {
        let mut waiters = W::new();
        let (finish_count, finish_waker) = counting();
        let (connected_count, connected_waker) = counting();
        let finish = waiters.register(Wants::Finish);
        let connected = waiters.register(Wants::Connection);
        assert!(waiters.poll(finish, &finish_waker).is_pending());
        assert!(waiters.poll(connected, &connected_waker).is_pending());
        waiters.failed(&AttemptError::TimedOut(std::time::Duration::from_secs(1)));
        waiters.connected(&5);
        waiters.stopped(&Stopped::Closed);
        assert_eq!(woken(&finish_count), 0, "no outcome or stop releases it");
        assert_eq!(
            woken(&connected_count),
            1,
            "the connection goes to its caller"
        );
        assert!(waiters.poll(finish, &finish_waker).is_pending());
        waiters.finished();
        assert_eq!(woken(&finish_count), 1);
        match waiters.poll(finish, &finish_waker) {
            Poll::Ready(Some(answer)) => assert_eq!(answer.finished(), Some(())),
            _ => panic!("expected the finish"),
        }
        match waiters.poll(connected, &connected_waker) {
            Poll::Ready(Some(answer)) => assert_eq!(answer.connected().unwrap().unwrap(), 5),
            _ => panic!("the connection, not the finish"),
        }
        assert_eq!(waiters.capacity(), 0);
    }

    #[test]
    fn a_given_answer_is_not_replaced_and_the_latest_waker_is_woken() {
        let mut waiters = W::new();
        let (old_count, old_waker) = counting();
        let (new_count, new_waker) = counting();
        let key = waiters.register(Wants::AnyOutcome);
        assert!(waiters.poll(key, &old_waker).is_pending());
        assert!(waiters.poll(key, &new_waker).is_pending());
        waiters.connected(&1);
        waiters.stopped(&Stopped::Closed);
        assert_eq!(woken(&old_count), 0, "a replaced waker is not woken");
        assert_eq!(woken(&new_count), 1, "the latest is, once");
        match waiters.poll(key, &new_waker) {
            Poll::Ready(Some(answer)) => assert_eq!(answer.any_outcome().unwrap().unwrap(), 1),
            _ => panic!("the first answer stays"),
        }
    }

    #[test]
    fn a_freed_key_is_reused_and_live_keys_never_change() {
        let mut waiters = W::new();
        let (count, waker) = counting();
        let first = waiters.register(Wants::Connection);
        let middle = waiters.register(Wants::AnyOutcome);
        let last = waiters.register(Wants::Finish);
        assert_eq!((first, middle, last), (0, 1, 2));
        assert!(waiters.remove(middle).is_some());
        assert_eq!(waiters.len(), 2);
        let again = waiters.register(Wants::Connection);
        assert_eq!(again, middle, "the first free slot is reused");
        // The others still answer to their keys, with what they wanted.
        for key in [first, again, last] {
            assert!(waiters.poll(key, &waker).is_pending());
        }
        waiters.connected(&9);
        assert_eq!(woken(&count), 2, "the two waiting for a connection");
        assert!(
            waiters.poll(last, &waker).is_pending(),
            "close_finished waits on"
        );
        for key in [first, again] {
            match waiters.poll(key, &waker) {
                Poll::Ready(Some(answer)) => assert_eq!(answer.connected().unwrap().unwrap(), 9),
                _ => panic!("expected the connection for key {key}"),
            }
        }
        assert_eq!(waiters.len(), 1);
        assert!(waiters.capacity() > 0, "the last call still has its slot");
        // Freeing the last key leaves the free slots before it nothing to keep them.
        let key = waiters.register(Wants::Connection);
        assert_eq!(key, first, "the lowest free key");
        assert!(waiters.remove(last).is_some());
        assert_eq!(waiters.0.len(), 1, "trailing free slots are dropped");
        assert!(waiters.remove(key).is_some());
        assert_eq!(waiters.capacity(), 0);
    }

    #[test]
    fn removed_calls_free_their_slots_and_the_last_one_the_room() {
        let mut waiters = W::new();
        let keys: Vec<usize> = (0..1000)
            .map(|i| {
                waiters.register(if i % 2 == 0 {
                    Wants::AnyOutcome
                } else {
                    Wants::Connection
                })
            })
            .collect();
        let (last, others) = keys.split_last().expect("keys");
        for &key in others {
            assert!(waiters.remove(key).is_some());
        }
        assert!(
            waiters.capacity() > 0,
            "the room is kept while a call waits"
        );
        assert!(waiters.remove(*last).is_some());
        assert_eq!(waiters.len(), 0);
        assert_eq!(waiters.capacity(), 0, "no room kept once no call is left");
        assert!(waiters.remove(0).is_none(), "a slot is removed once");
        let key = waiters.register(Wants::Connection);
        waiters.connected(&3);
        let slot = waiters.remove(key).expect("the slot");
        assert!(
            matches!(slot.answer, Some(Answer::Connected(3))),
            "an answer nobody took comes back with its slot"
        );
        assert_eq!(
            Answer::<u32, String>::Failed(AttemptError::TimedOut(std::time::Duration::from_secs(
                1
            )))
            .connected()
            .map(|_| ()),
            None
        );
    }
}
