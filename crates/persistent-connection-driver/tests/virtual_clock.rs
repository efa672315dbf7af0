//! `VirtualClock`, the clock users test their own reconnect logic with (and on which the
//! scenario suite checks R7's delays), and `Timer`, the resettable sleep the driver keeps
//! as its retry timer (R7): a virtual sleep moves to its new deadline, and a runtime with
//! no resettable timer says so. Polled by hand with a no-op waker: nothing here can hang.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use persistent_connection_driver::{BoxFuture, Runtime, Timer, VirtualClock};

fn ready<F: Future + ?Sized>(future: Pin<&mut F>) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    future.poll(&mut cx).is_ready()
}

#[test]
fn a_virtual_timer_moves_to_its_new_deadline() {
    let clock = VirtualClock::new();
    let mut timer = clock.sleep(Duration::from_secs(10));
    let mut timer = Pin::new(&mut timer);
    assert!(!ready(timer.as_mut()));
    assert_eq!(clock.next_deadline(), Some(Duration::from_secs(10)));
    clock.advance(Duration::from_secs(2));
    assert!(
        timer.as_mut().reset(Duration::from_secs(3)),
        "virtual sleeps move"
    );
    assert_eq!(clock.pending_timers(), 1, "the old deadline is gone");
    assert_eq!(clock.next_deadline(), Some(Duration::from_secs(5)));
    clock.advance(Duration::from_secs(2));
    assert!(!ready(timer.as_mut()), "4 s: not yet");
    clock.advance(Duration::from_secs(1));
    assert!(ready(timer.as_mut()), "5 s: 3 s after the reset");
    assert_eq!(clock.pending_timers(), 0);
    // Once fired, it can be moved again.
    assert!(timer.as_mut().reset(Duration::from_secs(1)));
    assert_eq!(clock.next_deadline(), Some(Duration::from_secs(6)));
    assert!(!ready(timer.as_mut()));
    clock.advance(Duration::from_secs(1));
    assert!(ready(timer.as_mut()));
    // A zero delay is due at once and waits on nothing.
    assert!(timer.as_mut().reset(Duration::ZERO));
    assert_eq!(clock.pending_timers(), 0);
    assert!(ready(timer.as_mut()));
}

#[test]
fn a_virtual_runtime_gives_timers_on_its_clock() {
    let clock = VirtualClock::new();
    let runtime = clock.runtime(NoSpawn);
    assert!(runtime.can_hold_timers(), "now() is the clock's");
    assert_eq!(runtime.now(), clock.instant());
    let mut timer = runtime.timer(Duration::from_secs(4));
    // As a Tokio timer, it waits on the clock only once polled (or moved).
    assert_eq!(clock.pending_timers(), 0, "made, not yet waited on");
    assert!(!ready(timer.as_mut()));
    assert_eq!(clock.next_deadline(), Some(Duration::from_secs(4)));
    assert!(timer.as_mut().reset(Duration::from_secs(1)));
    assert_eq!(clock.next_deadline(), Some(Duration::from_secs(1)));
    clock.advance(Duration::from_secs(1));
    assert!(ready(timer.as_mut()));
    // Two made for the same deadline wait apart.
    let mut same = [
        runtime.timer(Duration::from_secs(1)),
        runtime.timer(Duration::from_secs(1)),
    ];
    assert!(!ready(same[0].as_mut()) && !ready(same[1].as_mut()));
    assert_eq!(clock.pending_timers(), 2, "two timers, not one");
    clock.advance(Duration::from_secs(1));
    assert!(ready(same[0].as_mut()) && ready(same[1].as_mut()));
    assert_eq!(clock.pending_timers(), 0);
    // Moved before its first poll: pending from the move.
    let mut fresh = runtime.timer(Duration::from_secs(9));
    assert!(fresh.as_mut().reset(Duration::from_secs(2)));
    assert_eq!(clock.pending_timers(), 1);
    assert_eq!(
        clock.next_deadline(),
        Some(Duration::from_secs(4)),
        "2 s after the clock's 2 s"
    );
}

#[test]
fn a_runtime_without_resettable_timers_says_so() {
    /// Sleeps are ready at once; `timer` is the trait's default.
    struct AtOnce;
    impl Runtime for AtOnce {
        fn spawn(&self, _: BoxFuture<()>) {}
        fn sleep(&self, _: Duration) -> BoxFuture<()> {
            Box::pin(std::future::ready(()))
        }
    }
    let mut timer = AtOnce.timer(Duration::from_secs(1));
    assert!(
        ready(timer.as_mut()),
        "the default timer is the runtime's sleep"
    );
    assert!(
        !timer.as_mut().reset(Duration::from_secs(1)),
        "and cannot be moved: the driver makes a new one"
    );
    assert!(
        !AtOnce.can_hold_timers(),
        "by default the driver arms every timer: `now` may be another clock"
    );
    // The driver holds its runtime as an `Arc<dyn Runtime>`: the answer goes through.
    let shared: std::sync::Arc<dyn Runtime> = std::sync::Arc::new(AtOnce);
    assert!(!shared.can_hold_timers());
    let clock = VirtualClock::new();
    let shared: std::sync::Arc<dyn Runtime> = std::sync::Arc::new(clock.runtime(AtOnce));
    assert!(shared.can_hold_timers());
    assert_eq!(shared.now(), clock.instant());
}

#[test]
fn sleeps_fire_at_their_deadline_and_not_before() {
    let clock = VirtualClock::new();
    assert_eq!(clock.now(), Duration::ZERO);
    assert_eq!(clock.pending_timers(), 0);
    assert_eq!(clock.next_deadline(), None);
    assert_eq!(clock.advance_to_next(), None, "no timer: time stays");
    assert_eq!(clock.now(), Duration::ZERO);

    clock.advance(Duration::from_secs(1));
    assert_eq!(clock.now(), Duration::from_secs(1));
    let mut late = clock.sleep(Duration::from_secs(5));
    let mut early = clock.sleep(Duration::from_secs(2));
    // Counted from the moment they are made, before any poll.
    assert_eq!(clock.pending_timers(), 2);
    assert_eq!(clock.next_deadline(), Some(Duration::from_secs(3)));
    assert!(!ready(Pin::new(&mut early)));
    assert!(!ready(Pin::new(&mut late)));

    assert_eq!(clock.advance_to_next(), Some(Duration::from_secs(2)));
    assert_eq!(
        clock.now(),
        Duration::from_secs(3),
        "it jumped to the earliest"
    );
    assert!(ready(Pin::new(&mut early)));
    assert!(!ready(Pin::new(&mut late)));
    assert_eq!(clock.pending_timers(), 1);
    assert_eq!(clock.next_deadline(), Some(Duration::from_secs(6)));

    clock.advance(Duration::from_secs(2));
    assert!(!ready(Pin::new(&mut late)), "5 s: one second early");
    clock.advance(Duration::from_secs(1));
    assert!(ready(Pin::new(&mut late)), "6 s: due");
    assert_eq!(clock.pending_timers(), 0);
}

#[test]
fn a_zero_sleep_is_due_at_once_and_waits_on_nothing() {
    let clock = VirtualClock::new();
    let mut now = clock.sleep(Duration::ZERO);
    assert_eq!(clock.pending_timers(), 0);
    assert_eq!(clock.next_deadline(), None);
    assert!(ready(Pin::new(&mut now)));
}

#[test]
fn sleeps_with_the_same_deadline_are_distinct() {
    let clock = VirtualClock::new();
    let mut a = clock.sleep(Duration::from_secs(1));
    let b = clock.sleep(Duration::from_secs(1));
    assert_eq!(clock.pending_timers(), 2);
    drop(b);
    assert_eq!(clock.pending_timers(), 1, "dropping one leaves the other");
    assert!(!ready(Pin::new(&mut a)));
    clock.advance(Duration::from_secs(1));
    assert!(ready(Pin::new(&mut a)));
}

#[test]
fn advance_wakes_the_sleeps_it_makes_due() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Count(AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let clock = VirtualClock::new();
    let mut due = clock.sleep(Duration::from_millis(10));
    let mut later = clock.sleep(Duration::from_millis(30));
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut due).poll(&mut cx).is_pending());
    assert!(Pin::new(&mut later).poll(&mut cx).is_pending());
    clock.advance(Duration::from_millis(20));
    assert_eq!(
        count.0.load(Ordering::SeqCst),
        1,
        "only the due sleep is woken"
    );
    clock.advance(Duration::from_millis(10));
    assert_eq!(count.0.load(Ordering::SeqCst), 2);
}

#[test]
fn next_timer_waits_for_a_sleep_to_be_set() {
    let clock = VirtualClock::new();
    let mut cx = Context::from_waker(Waker::noop());
    let mut next = Box::pin(clock.next_timer());
    assert!(next.as_mut().poll(&mut cx).is_pending(), "no sleep yet");
    let _sleep = clock.sleep(Duration::from_secs(4));
    assert_eq!(
        next.as_mut().poll(&mut cx),
        Poll::Ready(Duration::from_secs(4))
    );
}

#[test]
fn the_clock_reads_as_an_instant_and_debug() {
    let clock = VirtualClock::new();
    let start = clock.instant();
    assert!(start <= Instant::now());
    clock.advance(Duration::from_secs(90));
    assert_eq!(clock.instant() - start, Duration::from_secs(90));
    let _sleep = clock.sleep(Duration::from_secs(1));
    assert_eq!(
        format!("{clock:?}"),
        "VirtualClock { now: 90s, pending_timers: 1 }"
    );
    let runtime = clock.runtime(NoSpawn);
    assert_eq!(
        runtime.now() - start,
        Duration::from_secs(90),
        "its runtime's now"
    );
    let mut sleep = runtime.sleep(Duration::from_secs(1));
    assert!(!ready(sleep.as_mut()));
    clock.advance(Duration::from_secs(1));
    assert!(ready(sleep.as_mut()));
}

/// Spawns nothing (these tests poll by hand).
struct NoSpawn;

impl Runtime for NoSpawn {
    fn spawn(&self, _: BoxFuture<()>) {}
    fn sleep(&self, _: Duration) -> BoxFuture<()> {
        Box::pin(std::future::pending())
    }
}

#[test]
fn timers_moved_to_the_same_deadline_stay_distinct() {
    let clock = VirtualClock::new();
    let mut a = clock.sleep(Duration::from_secs(1));
    let mut b = clock.sleep(Duration::from_secs(2));
    assert!(Pin::new(&mut a).reset(Duration::from_secs(3)));
    assert!(Pin::new(&mut b).reset(Duration::from_secs(3)));
    let c = clock.sleep(Duration::from_secs(3));
    assert_eq!(clock.pending_timers(), 3, "three timers, one deadline");
    drop(a);
    drop(c);
    assert_eq!(clock.pending_timers(), 1, "dropping two leaves the third");
    assert!(!ready(Pin::new(&mut b)));
    clock.advance(Duration::from_secs(3));
    assert!(ready(Pin::new(&mut b)));
}
