//! What users rely on that `scripts/mutants.sh --driver` found untested: `AttemptContext`
//! (R12's context, R7's count of failures), `Driven` as a `Connection` (R1), Tokio's
//! resettable timer (R7), waiters told of a stop before a slow close ends (R9), no probe
//! of a closed connection (R17), and the `Debug` output of the builder, the handles, the
//! context and `Driven`. Tokio time is paused, so every wait below is bounded by a virtual
//! timeout that fails with what it awaited.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use persistent_connection_tokio::{
    AttemptId, Backoff, CloseSignal, Connection, Driven, Jitter, Tokio, builder,
};

mod common;
use common::within;

#[tokio::test(start_paused = true)]
async fn attempt_context_counts_failures_since_the_last_success() {
    // Each attempt's (id, consecutive failures); the first two dials of each cycle fail.
    let seen: Arc<Mutex<Vec<(AttemptId, u32)>>> = Arc::default();
    let made: Arc<Mutex<Vec<CloseSignal>>> = Arc::default();
    let pc = {
        let seen = seen.clone();
        let made = made.clone();
        builder(
            "ctx",
            || async { Ok::<_, String>("addr") },
            move |_addr, ctx| {
                let seen = seen.clone();
                let made = made.clone();
                async move {
                    let mut seen = seen.lock().unwrap();
                    seen.push((ctx.attempt(), ctx.consecutive_failures()));
                    if ctx.consecutive_failures() < 2 {
                        return Err(format!("refused ({ctx:?})"));
                    }
                    let conn = CloseSignal::new();
                    made.lock().unwrap().push(conn.clone());
                    Ok(conn)
                }
            },
        )
        .retry_policy(Backoff::Constant(Duration::from_millis(10)))
        .jitter(Jitter::Off)
        .spawn()
    };
    let first = within("the first connection", pc.connected()).await;
    // Closed, so `connected()` waits for the next one (R8).
    first.close();
    let second = within("the second connection", pc.connected()).await;
    assert!(!second.is_closed());
    let seen = seen.lock().unwrap().clone();
    let counts: Vec<u32> = seen.iter().map(|(_, n)| *n).collect();
    assert_eq!(
        counts,
        [0, 1, 2, 0, 1, 2],
        "consecutive failures per attempt, reset by the success"
    );
    let ids: Vec<AttemptId> = seen.iter().map(|(id, _)| *id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "every attempt has its own, increasing id");
    let failure = pc.stats().last_failure.expect("two failures were recorded");
    assert!(
        failure.contains("consecutive_failures: 1"),
        "the context's Debug names its count: {failure}"
    );
    pc.close().await;
}

#[test]
fn driven_is_a_connection_that_closes() {
    let conn = Driven::new("handle", std::future::pending::<()>());
    assert!(!Connection::is_closed(&conn), "a new Driven is open");
    assert_eq!(
        format!("{conn:?}"),
        "Driven { closed: false, ending: None, .. }"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async {
        conn.start(&Tokio::current());
        within("Driven::close", Connection::close(&conn)).await;
    });
    assert!(Connection::is_closed(&conn), "closed after close");
    assert!(conn.is_closed());
    assert_eq!(
        format!("{conn:?}"),
        "Driven { closed: true, ending: Some(Closed), .. }"
    );
}

#[tokio::test]
async fn builder_debug_names_the_server_and_settings() {
    let b = builder(
        "debugged",
        || async { Ok::<_, String>(()) },
        |_addr: (), _ctx| async {
            // Held across an await: this future is `Send` but not `Sync`.
            let not_sync = std::cell::Cell::new(0u8);
            tokio::task::yield_now().await;
            not_sync.set(1);
            Ok::<_, String>(CloseSignal::new())
        },
    )
    .seed(42)
    .retry_policy(Backoff::Constant(Duration::from_millis(7)));
    // A builder can be shared across threads, whatever its futures are.
    fn send_sync<T: Send + Sync>(_: &T) {}
    send_sync(&b);
    let text = format!("{b:?}");
    assert!(text.starts_with("Builder {"), "{text}");
    assert!(text.contains("server_name: \"debugged\""), "{text}");
    assert!(text.contains("seed: Some(42)"), "{text}");
    assert!(text.contains("7ms"), "the retry policy: {text}");
}

#[tokio::test(start_paused = true)]
async fn tokio_timers_move_to_their_new_deadline() {
    use persistent_connection_tokio::Runtime;
    let start = tokio::time::Instant::now();
    let mut timer = Tokio::current().timer(Duration::from_secs(10));
    assert!(
        timer.as_mut().reset(Duration::from_secs(2)),
        "Tokio sleeps move"
    );
    within("the moved timer", timer.as_mut()).await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "fired at the new deadline"
    );
    // Once fired, it can be moved again, also past what `Instant` holds.
    assert!(timer.as_mut().reset(Duration::from_secs(3)));
    within("the timer moved again", timer.as_mut()).await;
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert!(timer.as_mut().reset(Duration::MAX));
    assert!(
        tokio::time::timeout(Duration::from_secs(3600), timer.as_mut())
            .await
            .is_err(),
        "a timer moved to Duration::MAX does not fire"
    );
}

/// R13: a weak handle does not count, an upgraded one does, and once the last handle is
/// gone no upgrade brings the persistent connection back; handles name their server.
#[tokio::test(start_paused = true)]
async fn r13_weak_handles_upgrade_only_while_a_handle_is_alive() {
    let pc = builder(
        "shard-7",
        || async { Ok::<_, String>(()) },
        |_addr: (), _ctx| async { Ok::<_, String>(CloseSignal::new()) },
    )
    .spawn();
    assert_eq!(pc.server_name(), "shard-7");
    let conn = within("a connection", pc.connected()).await;
    assert_eq!(
        format!("{pc:?}"),
        r#"PersistentConnection { server_name: "shard-7", state: Connected }"#
    );
    let weak = pc.downgrade();
    assert_eq!(
        format!("{:?}", weak.clone()),
        "WeakPersistentConnection { alive: true }"
    );
    // An upgraded handle counts as a handle: the first one's drop does not close.
    let upgraded = weak
        .upgrade()
        .expect("a live persistent connection upgrades");
    drop(pc);
    assert!(!upgraded.is_closed(), "closed while a handle was left");
    assert_eq!(
        format!("{weak:?}"),
        "WeakPersistentConnection { alive: true }"
    );
    drop(upgraded);
    assert_eq!(
        format!("{weak:?}"),
        "WeakPersistentConnection { alive: false }"
    );
    assert!(weak.upgrade().is_none());
    // A failed upgrade leaves nothing behind: still none, still not alive.
    assert!(weak.upgrade().is_none(), "a second upgrade brought it back");
    assert_eq!(
        format!("{weak:?}"),
        "WeakPersistentConnection { alive: false }"
    );
    within(
        "the connection's close after the last handle",
        conn.closed(),
    )
    .await;
}

/// A connection whose `close` resolves only once the test releases it.
#[derive(Clone, Debug, Default)]
struct SlowClose {
    closed: CloseSignal,
    release: CloseSignal,
}

impl Connection for SlowClose {
    fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        self.closed.close();
        self.release.closed()
    }
    fn is_closed(&self) -> bool {
        self.closed.is_closed()
    }
    fn closed(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        self.closed.closed()
    }
}

#[tokio::test(start_paused = true)]
async fn r9_waiters_hear_of_the_stop_before_a_slow_close_ends() {
    // The first dial succeeds; every later one hangs.
    let first: Arc<Mutex<Option<SlowClose>>> = Arc::default();
    let pc = {
        let first = first.clone();
        builder(
            "slow",
            || async { Ok::<_, String>(()) },
            move |_addr: (), _ctx| {
                let made = {
                    let mut first = first.lock().unwrap();
                    first
                        .is_none()
                        .then(|| first.insert(SlowClose::default()).clone())
                };
                async move {
                    match made {
                        Some(conn) => Ok::<_, String>(conn),
                        None => std::future::pending().await,
                    }
                }
            },
        )
        .retry_policy(Backoff::Constant(Duration::ZERO))
        .spawn()
    };
    let conn = within("the first connection", pc.connected()).await;
    // Closed by the driver (R18), whose close() hangs until released; the next dial hangs.
    pc.reconnect_now();
    within("the slow close to start", conn.closed.closed()).await;
    let waiter = pc.connected_or_closed();
    let closing = pc.clone();
    let close = tokio::spawn(async move { closing.close().await });
    let answer = within(
        "the waiter's answer, with the first connection still closing",
        waiter,
    )
    .await;
    assert!(
        matches!(answer, Err(persistent_connection_tokio::Stopped::Closed)),
        "the waiter is told of the stop: {answer:?}"
    );
    assert!(!close.is_finished(), "close waits for the slow close");
    conn.release.close();
    within("close() once the slow close ended", close)
        .await
        .expect("the close task");
}

#[tokio::test(start_paused = true)]
async fn r17_no_probe_of_a_connection_that_has_closed() {
    use persistent_connection_tokio::HealthCheck;
    // Probes made, by connection number; the second dial hangs, so nothing is current
    // after the first connection closes.
    let probes: Arc<Mutex<Vec<usize>>> = Arc::default();
    let dials: Arc<Mutex<usize>> = Arc::default();
    let pc = {
        let dials = dials.clone();
        let probes = probes.clone();
        builder(
            "probed",
            || async { Ok::<_, String>(()) },
            move |_addr: (), _ctx| {
                let n = {
                    let mut dials = dials.lock().unwrap();
                    *dials += 1;
                    *dials
                };
                async move {
                    if n == 1 {
                        Ok::<_, String>(CloseSignal::new())
                    } else {
                        std::future::pending().await
                    }
                }
            },
        )
        .retry_policy(Backoff::Constant(Duration::ZERO))
        .health_check(
            HealthCheck::new(Duration::from_secs(1), Duration::from_secs(1), 3),
            move |_conn: CloseSignal| {
                probes.lock().unwrap().push(1);
                async { Ok::<_, String>(()) }
            },
        )
        .spawn()
    };
    let conn = within("the first connection", pc.connected()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let while_connected = probes.lock().unwrap().len();
    assert_eq!(while_connected, 2, "probes at 1 s and 2 s");
    conn.close();
    // Ten virtual seconds with no connection: the second dial hangs meanwhile.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(*dials.lock().unwrap(), 2, "the next attempt is dialling");
    assert_eq!(
        probes.lock().unwrap().len(),
        while_connected,
        "no probe after the connection closed"
    );
    pc.close().await;
}

#[tokio::test]
async fn r19_the_uptime_timer_goes_with_its_connection() {
    use persistent_connection_tokio::VirtualClock;
    let clock = VirtualClock::new();
    let dials: Arc<Mutex<usize>> = Arc::default();
    let second_dial = CloseSignal::new();
    let pc = {
        let dials = dials.clone();
        let second_dial = second_dial.clone();
        builder(
            "uptime",
            || async { Ok::<_, String>(()) },
            move |_addr: (), _ctx| {
                let n = {
                    let mut dials = dials.lock().unwrap();
                    *dials += 1;
                    *dials
                };
                if n == 2 {
                    second_dial.close();
                }
                async move {
                    if n == 1 {
                        Ok::<_, String>(CloseSignal::new())
                    } else {
                        std::future::pending().await
                    }
                }
            },
        )
        .runtime(clock.runtime(Tokio::current()))
        .retry_policy(Backoff::Constant(Duration::ZERO))
        .min_uptime(Duration::from_secs(10))
        .spawn()
    };
    let conn = within("the first connection", pc.connected()).await;
    assert_eq!(
        within("the uptime timer", clock.next_timer()).await,
        Duration::from_secs(10),
        "min_uptime's timer runs while connected"
    );
    conn.close();
    // The next attempt dials (and hangs): the connection, and its timer, are gone.
    within("the second dial", second_dial.closed()).await;
    assert_eq!(
        clock.pending_timers(),
        0,
        "no uptime timer for a connection that has closed"
    );
    pc.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_keeps_no_connection() {
    use persistent_connection_tokio::Tracked;
    use std::sync::Weak;
    let gate = CloseSignal::new();
    let made: Arc<Mutex<Option<Weak<()>>>> = Arc::default();
    let pc = {
        let gate = gate.clone();
        let made = made.clone();
        builder(
            "dropped-waiter",
            || async { Ok::<_, String>(()) },
            move |_addr: (), _ctx| {
                let (gate, made) = (gate.clone(), made.clone());
                async move {
                    gate.closed().await;
                    let marker = Arc::new(());
                    *made.lock().unwrap() = Some(Arc::downgrade(&marker));
                    Ok::<_, String>(Tracked::new(marker))
                }
            },
        )
        .spawn()
    };
    {
        let mut waiting = Box::pin(pc.connected());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(waiting.as_mut().poll(&mut cx).is_pending(), "nothing yet");
    } // dropped while waiting
    gate.close();
    let conn = within("the connection", pc.connected()).await;
    within("close", pc.close()).await;
    drop(conn);
    let marker = made.lock().unwrap().clone().expect("a connection was made");
    assert!(
        marker.upgrade().is_none(),
        "no clone of the connection is left behind for the dropped waiter"
    );
}
