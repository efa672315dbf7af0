//! Tokio-specific checks: paused Tokio time drives the retry delays (the seed's
//! `time_source`), and the handle is usable across the multi-threaded runtime. Checks R7
//! (retry delay) and R8..R11 of `CONTRACT.md` on real Tokio time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use persistent_connection_tokio::{
    Backoff, CloseSignal, Event, Jitter, PersistentConnection, Runtime, Stopped, Tokio,
    VirtualClock, builder,
};
use tokio::time::Instant;

mod common;
use common::within;

fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

#[test]
fn r13_handle_is_clone_send_sync() {
    assert_send_sync_clone::<PersistentConnection<std::net::SocketAddr, CloseSignal, std::io::Error>>(
    );
}

/// A runtime built without timers is refused when the adapter is made, with Tokio's own
/// message, not later at the first retry (the driver makes its retry timer only then).
#[test]
fn a_runtime_without_timers_is_refused_at_once() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let handle = runtime.handle().clone();
    let refused = std::panic::catch_unwind(move || Tokio::from_handle(handle))
        .expect_err("a runtime without timers is refused");
    let message = refused
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| refused.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(message.contains("timers are disabled"), "{message}");
    let timed = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime with timers");
    let _accepted = Tokio::from_handle(timed.handle().clone());
}

/// R7 on paused Tokio time: with the seed's default policy (10 s, jitter off here), each
/// failed attempt starts 10 s after the previous one, and a connection that lived longer
/// than the delay is redialled at once when it dies.
#[tokio::test(start_paused = true)]
async fn r7_default_delay_on_paused_tokio_time() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let fetch_starts = starts.clone();
    let script = Arc::new(Mutex::new(
        vec![Err("refused"), Err("refused"), Ok(())].into_iter(),
    ));
    let conn = builder(
        "scripted",
        move || {
            fetch_starts.lock().unwrap().push(Instant::now());
            async { Ok::<_, String>("service") }
        },
        move |_addr, _ctx| {
            let next = script.lock().unwrap().next().unwrap_or(Ok(()));
            async move { next.map(|()| CloseSignal::new()).map_err(String::from) }
        },
    )
    .retry_policy(Backoff::Constant(Duration::from_secs(10)))
    .jitter(Jitter::Off)
    .spawn();

    // Bounded on paused time (a retry timer that is never armed would hang it otherwise).
    let first = within(
        "a connection after two retries of 10 s (paused time)",
        conn.connected(),
    )
    .await;
    let t = starts.lock().unwrap().clone();
    assert_eq!(t.len(), 3);
    assert_eq!(t[1] - t[0], Duration::from_secs(10));
    assert_eq!(t[2] - t[1], Duration::from_secs(10));

    // The connection lives a minute, then dies: the next attempt starts at once.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let died = Instant::now();
    first.close();
    let second = conn.connected().await;
    assert!(!second.is_closed());
    let t = starts.lock().unwrap().clone();
    assert_eq!(t.len(), 4);
    assert_eq!(
        t[3], died,
        "a long-lived connection is redialled without waiting"
    );
    conn.close().await;
}

/// R7 without a timer while nobody waits for it: the retry timer of the attempt that
/// connected is held back (no timer on the clock while connected, so an idle connection is
/// never woken for it); a connection that dies young waits for the rest of the delay, one
/// that outlived it is redialled at once.
#[tokio::test]
async fn r7_connected_holds_back_its_retry_timer() {
    assert!(
        Tokio::current().can_hold_timers(),
        "Tokio's runtime lets the driver hold timers back"
    );
    let clock = VirtualClock::new();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let fetch_starts = starts.clone();
    let fetch_clock = clock.clone();
    let conn = builder(
        "held",
        move || {
            fetch_starts.lock().unwrap().push(fetch_clock.now());
            async { Ok::<_, String>("service") }
        },
        |_addr, _ctx| async { Ok::<_, String>(CloseSignal::new()) },
    )
    .runtime(clock.runtime(Tokio::current()))
    .retry_policy(Backoff::Constant(Duration::from_secs(10)))
    .jitter(Jitter::Off)
    .spawn();

    let first = within("the first connection", conn.connected()).await;
    assert_eq!(clock.pending_timers(), 0, "connected: no retry timer armed");
    // Dies young, 4 s into its attempt's 10 s: the next cycle waits for the other 6 s.
    clock.advance(Duration::from_secs(4));
    first.close();
    let next = within(
        "the retry timer to be armed for the rest of the delay",
        clock.next_timer(),
    )
    .await;
    assert_eq!(
        next,
        Duration::from_secs(10),
        "armed at the attempt's deadline"
    );
    assert_eq!(
        starts.lock().unwrap().len(),
        1,
        "no attempt before the deadline"
    );
    clock.advance_to_next();
    let second = within("the second connection", conn.connected()).await;
    assert_eq!(
        starts.lock().unwrap().clone(),
        [Duration::ZERO, Duration::from_secs(10)]
    );
    assert_eq!(clock.pending_timers(), 0, "connected again: none armed");

    // Outlives its delay (20 s, with no wake-up on the way), then dies: redialled at once.
    clock.advance(Duration::from_secs(20));
    second.close();
    let third = within(
        "the third connection, without waiting for a timer",
        conn.connected(),
    )
    .await;
    assert!(!third.is_closed());
    assert_eq!(
        starts.lock().unwrap().clone(),
        [
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_secs(30)
        ]
    );
    conn.close().await;
}

/// A runtime that does not say its `now` is its timers' clock (here it is, but the driver
/// cannot know): every retry timer is armed when it starts, as before timers were held.
struct Eager(persistent_connection_tokio::VirtualRuntime<Tokio>);

impl Runtime for Eager {
    fn spawn(&self, task: persistent_connection_tokio::BoxFuture<()>) {
        self.0.spawn(task)
    }
    fn sleep(&self, duration: Duration) -> persistent_connection_tokio::BoxFuture<()> {
        self.0.sleep(duration)
    }
    fn now(&self) -> std::time::Instant {
        self.0.now()
    }
}

/// R7 on a runtime that cannot hold timers: the retry timer is armed while connected.
#[tokio::test]
async fn r7_runtime_that_cannot_hold_timers_arms_them() {
    let clock = VirtualClock::new();
    let conn = builder(
        "eager",
        || async { Ok::<_, String>("service") },
        |_addr, _ctx| async { Ok::<_, String>(CloseSignal::new()) },
    )
    .runtime(Eager(clock.runtime(Tokio::current())))
    .retry_policy(Backoff::Constant(Duration::from_secs(10)))
    .jitter(Jitter::Off)
    .spawn();
    let _first = within("the first connection", conn.connected()).await;
    assert_eq!(clock.pending_timers(), 1, "the retry timer is armed");
    assert_eq!(clock.next_deadline(), Some(Duration::from_secs(10)));
    conn.close().await;
}

/// R8, R11 across threads: waiters on other worker threads see the connection, and a
/// close from another thread wakes the `Closed` form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_waiters_on_other_threads_and_close_from_another_thread() {
    let gate = CloseSignal::new();
    let address_gate = gate.clone();
    let conn = builder(
        "gated",
        move || {
            let gate = address_gate.clone();
            async move {
                gate.closed().await;
                Ok::<_, String>("service")
            }
        },
        |_addr, _ctx| async { Ok::<_, String>(CloseSignal::new()) },
    )
    .spawn();
    let waiters: Vec<_> = (0..8).map(|_| tokio::spawn(conn.connected())).collect();
    gate.close();
    let mut got = Vec::new();
    for waiter in waiters {
        got.push(waiter.await.unwrap());
    }
    let current = conn.current_connection().unwrap();
    assert!(got.iter().all(|c| !c.is_closed()));

    let closer = conn.clone();
    let waiting = tokio::spawn(async move {
        // Not connected any more once closed: the Closed form resolves.
        closer.close().await;
        closer.connected_or_closed().await
    });
    assert!(matches!(waiting.await.unwrap(), Err(Stopped::Closed)));
    assert!(current.is_closed(), "close closed the connection");
    let mut events = conn.events();
    use futures_core::Stream;
    let end = std::future::poll_fn(|cx| std::pin::Pin::new(&mut events).poll_next(cx)).await;
    assert!(end.is_none(), "the event stream ends once closed");
    let _ = Event::<(), (), ()>::Disconnected;
}
