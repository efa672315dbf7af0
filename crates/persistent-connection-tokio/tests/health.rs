//! Checks R17 (health check) of `CONTRACT.md` on virtual time: probes never overlap, stop
//! with the connection, cost nothing while no connection is current, and a probe that
//! panics counts as a failure and is reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use persistent_connection_tokio::{
    Backoff, Builder, Callback, CloseSignal, HealthCheck, Jitter, PersistentConnection, Tokio,
    VirtualClock, builder,
};

type Pc = PersistentConnection<&'static str, CloseSignal, String>;

/// A persistent connection of bare close signals on `clock`, retrying after 1 s.
fn signals(clock: &VirtualClock) -> Builder<&'static str, CloseSignal, String> {
    builder(
        "svc",
        || async { Ok::<_, String>("svc") },
        |_addr, _ctx| async { Ok(CloseSignal::new()) },
    )
    .runtime(clock.runtime(Tokio::current()))
    .retry_policy(Backoff::Constant(Duration::from_secs(1)))
    .jitter(Jitter::Off)
}

/// Moves virtual time to the next timer, failing with `what` if none comes.
async fn step(clock: &VirtualClock, what: &str) {
    tokio::time::timeout(Duration::from_secs(20), clock.next_timer())
        .await
        .unwrap_or_else(|_| panic!("no timer was set while waiting for {what}"));
    clock.advance_to_next();
}

#[tokio::test]
async fn r17_panicking_probes_count_as_failures_and_are_reported() {
    let clock = VirtualClock::new();
    let (reports_tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let pc: Pc = signals(&clock)
        .health_check(
            HealthCheck::new(Duration::from_secs(1), Duration::from_secs(1), 2),
            |_conn: CloseSignal| async move {
                if true {
                    panic!("probe blew up");
                }
                Ok::<(), String>(())
            },
        )
        .on_callback_panic(move |report| {
            let _ = reports_tx.send((report.during, report.message.to_string()));
        })
        .spawn();
    let first = pc.connected().await;
    for probe in 1..=2 {
        assert!(!first.is_closed(), "closed before probe {probe} failed");
        assert_eq!(pc.stats().health_check_failures, probe - 1);
        step(&clock, "the next probe").await;
        let report = tokio::time::timeout(Duration::from_secs(20), reports.recv())
            .await
            .expect("the panicking probe to be reported");
        assert_eq!(
            report,
            Some((Callback::HealthProbe, "probe blew up".to_string()))
        );
    }
    tokio::time::timeout(Duration::from_secs(20), first.closed())
        .await
        .expect("two failed probes close the connection");
    assert_eq!(pc.stats().health_check_failures, 2);
    pc.close().await;
}

#[tokio::test]
async fn r17_probes_never_overlap_and_stop_with_the_connection() {
    let clock = VirtualClock::new();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (r, m, c) = (running.clone(), most.clone(), calls.clone());
    let pc: Pc = signals(&clock)
        .health_check(
            // Each probe hangs: it ends only by its 3 s timeout, longer than the interval.
            HealthCheck::new(Duration::from_secs(1), Duration::from_secs(3), 3),
            move |_conn: CloseSignal| {
                c.fetch_add(1, Ordering::SeqCst);
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                let r = r.clone();
                async move {
                    struct Done(Arc<AtomicUsize>);
                    impl Drop for Done {
                        fn drop(&mut self) {
                            self.0.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    let _done = Done(r);
                    std::future::pending::<Result<(), String>>().await
                }
            },
        )
        .spawn();
    let conn = pc.connected().await;
    for _ in 0..8 {
        if conn.is_closed() {
            break;
        }
        step(&clock, "the next probe or its timeout").await;
    }
    tokio::time::timeout(Duration::from_secs(20), conn.closed())
        .await
        .expect("three timed-out probes close the connection");
    assert_eq!(most.load(Ordering::SeqCst), 1, "probes overlapped");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // The next cycle connects again at once (the attempt's retry timer has fired).
    let second = tokio::time::timeout(Duration::from_secs(20), pc.connected())
        .await
        .expect("the next connection");
    assert!(!second.is_closed());
    assert_eq!(pc.stats().disconnections, 1);
    assert_eq!(
        running.load(Ordering::SeqCst),
        0,
        "a probe outlived its connection"
    );
    pc.close().await;
    assert_eq!(
        clock.pending_timers(),
        0,
        "a probe timer outlived the connection"
    );
}

#[tokio::test]
async fn r17_nothing_runs_while_no_connection_is_current() {
    let clock = VirtualClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let pc = builder(
        "svc",
        || async { Ok::<_, String>("svc") },
        |_addr, _ctx| async { Err::<CloseSignal, _>("refused".to_string()) },
    )
    .runtime(clock.runtime(Tokio::current()))
    .retry_policy(Backoff::Constant(Duration::from_secs(1)))
    .health_check(
        HealthCheck::new(Duration::from_millis(10), Duration::from_millis(10), 1),
        move |_conn: CloseSignal| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), String>(()) }
        },
    )
    .spawn();
    for _ in 0..5 {
        assert!(pc.connected_or_failed_to_connect().await.is_err());
        // Only the retry timer waits: no probe timer while nothing is connected.
        tokio::time::timeout(Duration::from_secs(20), clock.next_timer())
            .await
            .expect("the retry timer");
        assert_eq!(clock.pending_timers(), 1);
        clock.advance_to_next();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    pc.close().await;
}
