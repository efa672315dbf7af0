//! `Timer`, the resettable sleep the driver keeps as its retry timer (R7): a virtual sleep
//! moves to its new deadline, and a runtime with no resettable timer says so. Polled by
//! hand with a no-op waker on a `VirtualClock`: nothing here can hang.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

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
    struct NoSpawn;
    impl Runtime for NoSpawn {
        fn spawn(&self, _: BoxFuture<()>) {}
        fn sleep(&self, _: Duration) -> BoxFuture<()> {
            Box::pin(std::future::pending())
        }
    }
    let clock = VirtualClock::new();
    let runtime = clock.runtime(NoSpawn);
    let mut timer = runtime.timer(Duration::from_secs(4));
    assert_eq!(clock.next_deadline(), Some(Duration::from_secs(4)));
    assert!(timer.as_mut().reset(Duration::from_secs(1)));
    assert_eq!(clock.next_deadline(), Some(Duration::from_secs(1)));
    clock.advance(Duration::from_secs(1));
    assert!(ready(timer.as_mut()));
}

#[test]
fn a_runtime_without_resettable_timers_says_so() {
    /// Sleeps are ready at once; `timer` is the trait's default.
    struct Instant;
    impl Runtime for Instant {
        fn spawn(&self, _: BoxFuture<()>) {}
        fn sleep(&self, _: Duration) -> BoxFuture<()> {
            Box::pin(std::future::ready(()))
        }
    }
    let mut timer = Instant.timer(Duration::from_secs(1));
    assert!(
        ready(timer.as_mut()),
        "the default timer is the runtime's sleep"
    );
    assert!(
        !timer.as_mut().reset(Duration::from_secs(1)),
        "and cannot be moved: the driver makes a new one"
    );
}
