//! What operators need beyond the seed (R17 health check, R18 reconnect now, R19 healthy
//! uptime, live statistics), against real faults: a proxy that black-holes a connection, a
//! server that accepts and drops at once. Time is virtual where the driver waits (probe
//! intervals and timeouts, retry delays); the I/O is real.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_channel::mpsc;
use persistent_connection_tokio::{
    Backoff, Builder, Ending, Event, Exponential, HealthCheck, Jitter, State, VirtualClock,
};

use super::echo::{EchoConn, dial};
use super::proxy::{Fault, Proxy};
use super::server::{Mode, Server};
use super::{
    Catalog, EventLog, Recording, Sleeps, TestRuntime, bounded, logged, name, next, replace_addr,
};

/// The echo client's probe: a round trip.
async fn ping(conn: EchoConn) -> std::io::Result<()> {
    conn.request("ping").await.map(drop)
}

/// Dials what the catalog names, on `clock`; retry after 5 ms, no jitter.
fn on_clock<T: TestRuntime>(
    catalog: &Catalog,
    clock: &VirtualClock,
) -> Builder<SocketAddr, EchoConn, std::io::Error> {
    let catalog = catalog.clone();
    Builder::new(
        clock.runtime(T::runtime()),
        "echo",
        move || catalog.lookup(),
        |addr, _ctx| dial::<T>(addr),
    )
    .retry_delay(|_| Duration::from_millis(5))
    .jitter(Jitter::Off)
}

/// Moves the clock from one timer to the next until `done` holds; at most `steps` timers.
/// `done` is checked once a timer is set too, so a step that starts real I/O (a probe, a
/// dial) is seen before its deadline is passed.
async fn advance_until<T: TestRuntime>(
    clock: &VirtualClock,
    steps: usize,
    what: &str,
    done: impl Fn() -> bool,
) {
    for _ in 0..steps {
        if done() {
            return;
        }
        bounded::<T, _>(clock.next_timer(), what).await;
        if done() {
            return;
        }
        clock.advance_to_next();
    }
    assert!(done(), "{what}: not after {steps} timers");
}

/// R17: a connection whose peer goes silent (a proxy black-holes it, nothing is closed) is
/// declared dead by the health check within interval x failures + timeout of virtual time,
/// closed, and replaced by a connection to the healthy replica the catalog now names.
pub async fn r17_black_holed_connection_is_declared_dead_and_replaced<T: TestRuntime>() {
    let first = Server::start(Mode::Echo);
    let second = Server::start(Mode::Echo);
    let proxy = Proxy::start(first.addr());
    let catalog = Catalog::new(proxy.addr());
    let clock = VirtualClock::new();
    let disconnected_at = Arc::new(Mutex::new(None));
    let (at, event_clock) = (disconnected_at.clone(), clock.clone());
    let started = Arc::new(AtomicUsize::new(0));
    let (done_tx, mut done_rx) = mpsc::unbounded();
    let counted = started.clone();
    let check = HealthCheck::new(Duration::from_secs(1), Duration::from_millis(500), 2);
    let (mut log, tx) = EventLog::new();
    let pc = on_clock::<T>(&catalog, &clock)
        .health_check(check, move |conn| {
            counted.fetch_add(1, Ordering::SeqCst);
            let done = done_tx.clone();
            async move {
                let result = ping(conn).await;
                let _ = done.unbounded_send(result.is_ok());
                result
            }
        })
        .on_event(move |event| {
            if matches!(event, Event::Disconnected) {
                at.lock().unwrap().get_or_insert(event_clock.now());
            }
            let _ = tx.unbounded_send(name(&event));
            async {}
        })
        .spawn();
    let conn = bounded::<T, _>(pc.connected(), "the first connection").await;
    assert_eq!(conn.request("hello").await.unwrap(), "hello");

    // The first probe, one interval in, passes: a healthy connection stays.
    advance_until::<T>(&clock, 4, "the first probe", || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    let passed = bounded::<T, _>(next(&mut done_rx), "the first probe to end").await;
    assert_eq!(passed, Some(true), "a probe of a healthy connection passes");
    assert_eq!(pc.stats().health_check_failures, 0);

    // The peer goes silent; the catalog moves to the healthy replica.
    let silent_from = clock.now();
    proxy.set(Fault::BlackHole);
    catalog.set(second.addr());
    advance_until::<T>(
        &clock,
        20,
        "the health check to declare the connection dead",
        || disconnected_at.lock().unwrap().is_some(),
    )
    .await;
    let detected = disconnected_at.lock().unwrap().unwrap() - silent_from;
    assert!(
        detected <= Duration::from_millis(3500),
        "declared dead after {detected:?} of silence: more than interval x failures + timeout"
    );
    let conn = bounded::<T, _>(pc.connected(), "the connection to the replica").await;
    assert_eq!(conn.peer(), second.addr());
    assert_eq!(conn.request("again").await.unwrap(), "again");
    assert_eq!(pc.stats().health_check_failures, 2);

    pc.close().await;
    let events = replace_addr(&log.rest().await, proxy.addr(), "P");
    let events = replace_addr(&events, second.addr(), "2");
    assert_eq!(events, ["A", "O P", "C P", "D", "A", "O 2", "C 2", "D"]);
}

/// R17's default, the seed's behaviour: without a health check, a black-holed connection
/// is never reported dead, however long it stays silent.
pub async fn r17_without_health_check_silence_goes_unnoticed<T: TestRuntime>() {
    let server = Server::start(Mode::Echo);
    let proxy = Proxy::start(server.addr());
    let catalog = Catalog::new(proxy.addr());
    let clock = VirtualClock::new();
    let pc = on_clock::<T>(&catalog, &clock).spawn();
    let conn = bounded::<T, _>(pc.connected(), "the connection").await;
    assert_eq!(conn.request("hello").await.unwrap(), "hello");
    proxy.set(Fault::BlackHole);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(clock.pending_timers(), 0, "nothing probes the connection");
    let stats = pc.stats();
    assert_eq!(stats.state, State::Connected);
    assert_eq!(stats.disconnections, 0);
    assert_eq!(stats.health_check_failures, 0);
    assert!(!conn.is_closed(), "nothing closed the silent connection");
    pc.close().await;
}

/// Live statistics follow a failover: attempts, failures, connections, disconnections,
/// the state and since when, the uptime, the last failure's text.
pub async fn stats_follow_a_failover<T: TestRuntime>() {
    let mut first = Server::start(Mode::Echo);
    let second = Server::start(Mode::Echo);
    let refused = super::server::closed_port();
    // Gated: the driver runs on another thread, and must not have connected before the
    // first reading.
    let catalog = Catalog::gated(first.addr());
    let clock = VirtualClock::new();
    let (b, mut log) = logged(on_clock::<T>(&catalog, &clock));
    let pc = b.spawn();
    let before = pc.stats();
    assert_eq!(before.connections + before.failures, 0);
    assert!(before.last_failure.is_none());
    catalog.open();
    bounded::<T, _>(pc.connected(), "the first connection").await;
    clock.advance(Duration::from_secs(7));
    let up = pc.stats();
    assert_eq!((up.attempts, up.connections, up.failures), (1, 1, 0));
    assert_eq!(up.state, State::Connected);
    assert_eq!(up.uptime, Some(Duration::from_secs(7)));

    // The replica dies and the catalog names a closed port: one failure, then the replica.
    catalog.set(refused);
    first.stop();
    bounded::<T, _>(log.until("F"), "the refused attempt").await;
    let failed = pc.stats();
    assert_eq!(failed.disconnections, 1);
    assert_eq!(failed.failures, 1);
    assert_eq!(failed.consecutive_failures, 1);
    assert_eq!(failed.uptime, None);
    let text = failed.last_failure.expect("the failure's text");
    assert!(text.starts_with("could not connect: "), "{text}");
    catalog.set(second.addr());
    // The next attempt waits for the failed one's retry delay (5 ms), then connects.
    bounded::<T, _>(clock.next_timer(), "the retry timer").await;
    clock.advance_to_next();
    bounded::<T, _>(log.until("C"), "the connection to the replica").await;
    let after = pc.stats();
    assert_eq!((after.attempts, after.connections), (3, 2));
    assert_eq!(after.consecutive_failures, 0);
    assert_eq!(after.state_since, clock.instant());
    pc.close().await;
    assert_eq!(pc.stats().state, State::Closed);
}

/// R18: `reconnect_now` moves a connected client to the catalog's new address at once,
/// without waiting for the retry timer, and leaves the failure count alone.
pub async fn r18_reconnect_now_moves_to_the_new_address_at_once<T: TestRuntime>() {
    let first = Server::start(Mode::Echo);
    let second = Server::start(Mode::Echo);
    let catalog = Catalog::new(first.addr());
    let clock = VirtualClock::new();
    let (b, mut log) = logged(
        on_clock::<T>(&catalog, &clock).retry_policy(Backoff::Constant(Duration::from_secs(60))),
    );
    let pc = b.spawn();
    let conn = bounded::<T, _>(pc.connected(), "the first connection").await;
    assert_eq!(conn.peer(), first.addr());
    catalog.set(second.addr());
    pc.reconnect_now();
    let conn = bounded::<T, _>(pc.connected(), "the connection to the new address").await;
    assert_eq!(conn.peer(), second.addr());
    assert_eq!(clock.now(), Duration::ZERO, "no retry delay was waited for");
    assert_eq!(pc.stats().consecutive_failures, 0);
    pc.close().await;
    let events = replace_addr(&log.rest().await, first.addr(), "1");
    let events = replace_addr(&events, second.addr(), "2");
    assert_eq!(events, ["A", "O 1", "C 1", "D", "A", "O 2", "C 2", "D"]);
}

/// R19: a server that accepts, greets and drops every connection at once, 200 times. With
/// `min_uptime`, the failure count keeps growing and so do the delays between attempts, as
/// the backoff says; without it, every brief success resets the count and the delays stay
/// at the minimum.
pub async fn r19_flapping_server_backoff_grows_only_with_min_uptime<T: TestRuntime>() {
    const FLAPS: usize = 200;
    let backoff = Exponential {
        initial: Duration::from_millis(10),
        multiplier: 2.0,
        max: Duration::from_secs(5),
    };
    for min_uptime in [Some(Duration::from_secs(10)), None] {
        let server = Server::start(Mode::GreetThenClose);
        let catalog = Catalog::new(server.addr());
        let clock = VirtualClock::new();
        let (sleeps, _waits) = Sleeps::new();
        let runtime = Recording {
            inner: clock.runtime(T::runtime()),
            sleeps: sleeps.clone(),
        };
        let lookup = catalog.clone();
        let mut builder = Builder::new(
            runtime,
            "flapping",
            move || lookup.lookup(),
            |addr, _ctx| dial::<T>(addr),
        )
        .retry_policy(Backoff::Exponential(backoff))
        .jitter(Jitter::Off);
        if let Some(uptime) = min_uptime {
            builder = builder.min_uptime(uptime);
        }
        let (b, mut log): (_, EventLog) = logged(builder);
        let pc = b.spawn();
        let mut retry_delays = Vec::new();
        for flap in 0..FLAPS {
            bounded::<T, _>(log.until("D"), "the connection to drop").await;
            // The next cycle waits for the rest of the retry delay of the attempt that
            // connected: the first sleep asked for since the last one we counted.
            let delay = bounded::<T, _>(clock.next_timer(), "the retry timer").await;
            retry_delays.push(delay - clock.now());
            clock.advance_to_next();
            let _ = flap;
        }
        pc.close().await;
        let expected: Vec<Duration> = (0..FLAPS as u32)
            .map(|n| match min_uptime {
                Some(_) => backoff.delay(n),
                None => backoff.initial,
            })
            .collect();
        // The first retry timer is that of the very first attempt (0 failures).
        assert_eq!(
            retry_delays, expected,
            "min_uptime {min_uptime:?}: delays between attempts"
        );
        assert!(!sleeps.seen.lock().unwrap().is_empty());
    }
}

/// R1, R11 with a `Driven` connection: its end is the connection's death, and the
/// `Disconnected` handler can read why it ended (the peer went away: the driving future
/// finished); `close` drops the driving future (ended from this side).
pub async fn r1_disconnected_handler_reads_why_a_driven_connection_ended<T: TestRuntime>() {
    let mut server = Server::start(Mode::Echo);
    let catalog = Catalog::new(server.addr());
    let clock = VirtualClock::new();
    let endings = Arc::new(Mutex::new(Vec::new()));
    let seen = endings.clone();
    let handle: Arc<Mutex<Option<persistent_connection_tokio::WeakPersistentConnection<_, _, _>>>> =
        Arc::default();
    let weak = handle.clone();
    let (mut log, tx) = EventLog::new();
    let pc = on_clock::<T>(&catalog, &clock)
        .on_event(move |event| {
            if matches!(event, Event::Disconnected) {
                let pc = weak.lock().unwrap().as_ref().and_then(|w| w.upgrade());
                let ending = pc.and_then(|pc| pc.last_ending()).map(|e| e.to_string());
                seen.lock().unwrap().push(ending);
            }
            let _ = tx.unbounded_send(name(&event));
            async {}
        })
        .spawn();
    *handle.lock().unwrap() = Some(pc.downgrade());
    let first = bounded::<T, _>(pc.connected(), "the first connection").await;
    server.stop();
    bounded::<T, _>(log.until("D"), "the server's end to end the connection").await;
    assert!(first.is_closed());
    assert!(
        matches!(first.ending(), Some(Ending::Finished)),
        "{:?}",
        first.ending()
    );
    let restarted = Server::start(Mode::Echo);
    catalog.set(restarted.addr());
    let second = loop {
        bounded::<T, _>(clock.next_timer(), "the retry timer").await;
        clock.advance_to_next();
        if let Some(conn) = pc.current_connection() {
            break conn;
        }
        if let Ok(conn) =
            bounded::<T, _>(pc.connected_or_failed_to_connect(), "the next attempt").await
        {
            break conn;
        }
    };
    bounded::<T, _>(pc.close(), "the close").await;
    assert!(
        matches!(second.ending(), Some(Ending::Closed)),
        "close drops the driving future: {:?}",
        second.ending()
    );
    let endings = endings.lock().unwrap().clone();
    assert_eq!(
        endings,
        [
            Some("the peer closed the connection".to_string()),
            Some("closed from this side".to_string())
        ]
    );
}
