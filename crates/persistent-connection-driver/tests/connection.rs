//! `CloseSignal` and `Tracked`: the close signal for connection types that have none of
//! their own (CONTRACT.md, "Driven connections": which to use when). Polled by hand with a
//! no-op waker: every wait here is one poll, so nothing can hang.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use persistent_connection_driver::{CloseSignal, Connection, Tracked};

/// Polls `future` once.
fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    pin!(future).poll(&mut cx)
}

#[test]
fn close_signal_is_shared_by_its_clones_and_wakes_waiters() {
    let signal = CloseSignal::new();
    let clone = signal.clone();
    let mut cx = Context::from_waker(Waker::noop());
    let mut waiting = pin!(clone.closed());
    assert!(
        waiting.as_mut().poll(&mut cx).is_pending(),
        "closed() before close"
    );
    assert!(!signal.is_closed() && !clone.is_closed());
    signal.close();
    assert!(
        signal.is_closed() && clone.is_closed(),
        "a clone sees the close"
    );
    assert!(
        waiting.as_mut().poll(&mut cx).is_ready(),
        "closed() registered before the close resolves after it"
    );
    assert!(
        poll_once(signal.closed()).is_ready(),
        "closed() after close"
    );
    signal.close(); // idempotent
    assert!(signal.is_closed());
    assert_eq!(format!("{signal:?}"), "CloseSignal { closed: true }");
    assert_eq!(
        format!("{:?}", CloseSignal::default()),
        "CloseSignal { closed: false }"
    );
}

#[test]
fn close_signal_as_a_connection() {
    let signal = CloseSignal::new();
    assert!(!Connection::is_closed(&signal));
    assert!(poll_once(Connection::closed(&signal)).is_pending());
    assert!(poll_once(Connection::close(&signal)).is_ready());
    assert!(Connection::is_closed(&signal));
    assert!(poll_once(Connection::closed(&signal)).is_ready());
    assert!(signal.take_driver().is_none());
    assert!(signal.ending().is_none());
}

#[test]
fn tracked_derefs_to_its_value_and_its_clones_share_one_signal() {
    let tracked = Tracked::new(String::from("value"));
    let clone = tracked.clone();
    assert_eq!(tracked.len(), 5, "Deref reaches the value");
    assert_eq!(*clone, "value");
    assert!(tracked.ptr_eq(&clone));
    assert!(!tracked.ptr_eq(&Tracked::new(String::from("value"))));
    assert!(!tracked.is_closed() && !Connection::is_closed(&clone));
    assert!(poll_once(Connection::closed(&clone)).is_pending());

    let signal = tracked.signal();
    assert!(!signal.is_closed());
    signal.close();
    assert!(
        tracked.is_closed() && clone.is_closed(),
        "signal().close() closes it"
    );
    assert!(Connection::is_closed(&tracked));
    assert!(poll_once(Connection::closed(&clone)).is_ready());
    assert!(tracked.signal().is_closed());
    assert_eq!(
        format!("{tracked:?}"),
        r#"Tracked { value: "value", closed: true }"#
    );
}

#[test]
fn tracked_close_raises_the_signal_its_reader_holds() {
    let tracked = Tracked::new(7u32);
    let reader_side = tracked.signal();
    let mut cx = Context::from_waker(Waker::noop());
    let mut reader = pin!(reader_side.closed());
    assert!(reader.as_mut().poll(&mut cx).is_pending());
    assert!(poll_once(Connection::close(&tracked)).is_ready());
    assert!(reader_side.is_closed(), "close raises the signal");
    assert!(
        reader.as_mut().poll(&mut cx).is_ready(),
        "and wakes its waiters"
    );
}

#[test]
fn tracked_with_signal_uses_the_given_signal() {
    let given = CloseSignal::new();
    let tracked = Tracked::with_signal([1u8, 2], given.clone());
    assert_eq!(tracked[1], 2);
    assert!(!tracked.is_closed());
    given.close();
    assert!(tracked.is_closed(), "the given signal closed it");
    assert!(Connection::is_closed(&tracked));
    assert!(poll_once(Connection::closed(&tracked)).is_ready());

    let given = CloseSignal::new();
    let tracked = Tracked::with_signal((), given.clone());
    tracked.signal().close();
    assert!(given.is_closed(), "signal() is the given signal");
    let other = Tracked::with_signal((), CloseSignal::new());
    assert!(poll_once(Connection::close(&other)).is_ready());
    assert!(other.is_closed());
}

/// A waker that counts its wake-ups.
struct Count(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Count {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn counting_waker() -> (std::sync::Arc<Count>, Waker) {
    let count = std::sync::Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
    (count.clone(), Waker::from(count))
}

fn wakes(count: &Count) -> usize {
    count.0.load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn close_wakes_every_waiter_the_first_and_the_others() {
    let signal = CloseSignal::new();
    let (first_count, first_waker) = counting_waker();
    let (second_count, second_waker) = counting_waker();
    let (third_count, third_waker) = counting_waker();
    let mut first = pin!(signal.closed());
    let mut second = pin!(signal.closed());
    let mut third = pin!(signal.closed());
    assert!(
        first
            .as_mut()
            .poll(&mut Context::from_waker(&first_waker))
            .is_pending()
    );
    assert!(
        second
            .as_mut()
            .poll(&mut Context::from_waker(&second_waker))
            .is_pending()
    );
    assert!(
        third
            .as_mut()
            .poll(&mut Context::from_waker(&third_waker))
            .is_pending()
    );
    signal.close();
    assert_eq!(wakes(&first_count), 1, "the first waiter is woken");
    assert_eq!(wakes(&second_count), 1, "the second waiter is woken");
    assert_eq!(wakes(&third_count), 1, "the third waiter is woken");
    assert!(
        first
            .as_mut()
            .poll(&mut Context::from_waker(&first_waker))
            .is_ready()
    );
    assert!(
        second
            .as_mut()
            .poll(&mut Context::from_waker(&second_waker))
            .is_ready()
    );
    assert!(
        third
            .as_mut()
            .poll(&mut Context::from_waker(&third_waker))
            .is_ready()
    );
}

#[test]
fn a_dropped_waiter_leaves_no_waker_behind_and_the_next_is_woken() {
    let signal = CloseSignal::new();
    let (dropped_count, dropped_waker) = counting_waker();
    {
        let mut dropped = pin!(signal.closed());
        let mut cx = Context::from_waker(&dropped_waker);
        assert!(dropped.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(
        std::sync::Arc::strong_count(&dropped_count),
        2,
        "a dropped waiter's waker is released (ours and the Waker we hold)"
    );
    let (next_count, next_waker) = counting_waker();
    let mut next = pin!(signal.closed());
    assert!(
        next.as_mut()
            .poll(&mut Context::from_waker(&next_waker))
            .is_pending()
    );
    signal.close();
    assert_eq!(
        wakes(&next_count),
        1,
        "the waiter after a dropped one is woken"
    );
    assert_eq!(wakes(&dropped_count), 0, "the dropped waiter is not");
    assert!(
        next.as_mut()
            .poll(&mut Context::from_waker(&next_waker))
            .is_ready()
    );
}
