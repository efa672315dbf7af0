//! A real `redis-server` restarted under a persistent connection: the events, a working
//! connection after the restart, commands during the outage failing fast, and nothing left
//! behind after `close()`.
//!
//! Skipped (with a message) only when `redis-server` cannot be run at all.

mod support;

use std::sync::Arc;
use std::time::Duration;

use persistent_connection_redis::{
    BoxFuture, ConnectError, Connection, Connector, DriverEvent, Ending, Event, PersistentRedis,
    RedisConnection, Runtime, Tokio,
};
use redis::{AsyncCommands, RedisError};
use support::{RedisServer, ScratchDir};
use tokio::sync::{mpsc, watch};

/// Bounds every wait: a failure to make progress fails the test instead of hanging it.
const BOUND: Duration = Duration::from_secs(5);

type Ev = DriverEvent<String, RedisConnection, RedisError>;

/// A connector that waits for a busy server: a test machine under load can hold a live
/// `redis-server` back longer than the defaults (500 ms per reply, 1 s to connect), and
/// what these tests check is what happens when the server dies, not when it is slow. The
/// hung-handshake case keeps `Connector::new()`, whose timeout it checks.
fn patient() -> Connector {
    let slow = Some(Duration::from_secs(10));
    Connector::new()
        .config(redis::AsyncConnectionConfig::new().set_response_timeout(slow))
        .connect_timeout(slow)
}

async fn bounded<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: did not finish within {BOUND:?}"))
}

/// Tokio, counting the tasks spawned through it that are still alive.
#[derive(Clone)]
struct Counting {
    tokio: Tokio,
    live: Arc<watch::Sender<usize>>,
}

struct Alive(Arc<watch::Sender<usize>>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl Runtime for Counting {
    fn spawn(&self, task: BoxFuture<()>) {
        self.live.send_modify(|n| *n += 1);
        let alive = Alive(self.live.clone());
        self.tokio.spawn(Box::pin(async move {
            let _alive = alive;
            task.await
        }));
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        self.tokio.sleep(duration)
    }

    fn now(&self) -> std::time::Instant {
        self.tokio.now()
    }

    fn can_hold_timers(&self) -> bool {
        self.tokio.can_hold_timers()
    }
}

/// The event's name, with the address or error where it has one.
fn show(event: &Ev) -> String {
    match event {
        Event::ObtainedAddress(addr) => format!("ObtainedAddress({addr})"),
        Event::FailedToConnect(e) => format!("FailedToConnect({e})"),
        other => other.name().to_string(),
    }
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<Ev>) -> Ev {
    bounded("the next event", events.recv())
        .await
        .expect("the persistent connection is still running")
}

/// A connection to watch the server with, outside the persistent connection.
async fn observer(port: u16) -> RedisConnection {
    patient()
        .connect(("127.0.0.1", port))
        .await
        .expect("an observer connection")
}

/// The ids of the server's clients, the asking one left out.
async fn other_clients(observer: &mut RedisConnection) -> Vec<u64> {
    let own: u64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(observer)
        .await
        .unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(observer)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter_map(|line| line.strip_prefix("id=")?.split(' ').next()?.parse().ok())
        .filter(|id| *id != own)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_under_a_persistent_connection() {
    if let Some(why) = support::unavailable() {
        support::skip_unless_ci("restart_under_a_persistent_connection", &why);
        return;
    }
    let dir = ScratchDir::new("restart");
    let (server, _) = RedisServer::start_on_a_free_port(&dir.0)
        .await
        .expect("redis-server");
    let port = server.port;
    let url = format!("redis://127.0.0.1:{port}/");

    let (live, live_rx) = watch::channel(0usize);
    let runtime = Counting {
        tokio: Tokio::current(),
        live: Arc::new(live),
    };
    let (tx, mut events) = mpsc::unbounded_channel();
    let address = url.clone();
    let redis: PersistentRedis = persistent_connection_redis::builder_with(
        "redis",
        move || {
            let address = address.clone();
            async move { Ok(address) }
        },
        patient(),
        runtime,
    )
    .retry_delay(|_| Duration::from_millis(50))
    .on_event(move |event| {
        let _ = tx.send(event);
        async {}
    })
    .spawn();

    // Connected: commands work.
    let mut conn = bounded("connected", redis.connected()).await;
    let () = conn.set("k", "before").await.unwrap();
    let got: String = conn.get("k").await.unwrap();
    assert_eq!(got, "before");
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(show(&next_event(&mut events).await));
    }
    assert_eq!(
        seen,
        [
            "AttemptingToConnect".to_string(),
            format!("ObtainedAddress({url})"),
            "Connected".into()
        ]
    );
    let id: u64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut watcher = observer(port).await;
    assert!(other_clients(&mut watcher).await.contains(&id));

    // Kill the server: the idle connection notices on its own.
    server.kill().await.unwrap();
    let mut seen = Vec::new();
    let refused = loop {
        let event = next_event(&mut events).await;
        seen.push(show(&event));
        if let Event::FailedToConnect(e) = event {
            break e;
        }
    };
    assert_eq!(
        seen[..3],
        [
            "Disconnected".to_string(),
            "AttemptingToConnect".into(),
            format!("ObtainedAddress({url})")
        ]
    );
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(
        refused.user_error().unwrap().is_connection_refusal(),
        "{refused}"
    );
    assert!(conn.is_closed());
    assert!(
        matches!(conn.ending(), Some(Ending::Finished)),
        "the driver ended on its own: {:?}",
        conn.ending()
    );

    // During the outage commands fail with a clear error, at once, rather than hang: on the
    // dead connection, and for a caller that asks for the next attempt's outcome.
    let stale: Result<String, RedisError> =
        bounded("a command on the dead connection", conn.get("k")).await;
    let stale = stale.expect_err("the server is down");
    assert!(stale.is_connection_dropped(), "{stale}");
    println!("command on the dead connection: {stale}");
    let outcome = bounded(
        "connected_or_failed_to_connect during the outage",
        redis.connected_or_failed_to_connect(),
    )
    .await;
    let attempt = outcome.expect_err("the server is down");
    assert!(!attempt.is_stopped());
    let ConnectError::Attempt(attempt) = attempt else {
        panic!("an attempt failed, not a stop: {attempt}")
    };
    assert!(
        attempt.user_error().unwrap().is_connection_refusal(),
        "{attempt}"
    );
    println!("next attempt during the outage: {attempt}");
    assert!(
        redis
            .current_connection()
            .is_none_or(|c: RedisConnection| c.is_closed()),
        "no live connection is handed out during the outage"
    );

    // Start it again on the same port: connected() hands out a working connection to the
    // new server (empty: no persistence).
    let (server, _) = RedisServer::start(port, &dir.0)
        .await
        .expect("redis-server");
    let mut conn = bounded("connected after the restart", redis.connected()).await;
    let got: Option<String> = conn.get("k").await.unwrap();
    assert_eq!(got, None, "a fresh server");
    let () = conn.set("k", "after").await.unwrap();
    let got: String = conn.get("k").await.unwrap();
    assert_eq!(got, "after");
    let id: u64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut watcher = observer(port).await;
    assert!(other_clients(&mut watcher).await.contains(&id));
    // More failed attempts with the same error are not reported again.
    let mut seen = Vec::new();
    loop {
        let event = next_event(&mut events).await;
        seen.push(show(&event));
        if let Event::Connected(_) = event {
            break;
        }
    }
    assert!(
        seen[..seen.len() - 1]
            .iter()
            .all(|e| e.starts_with("FailedToConnect") && !e.contains("refused")),
        "after the restart only Connected, or a failure of another kind: {seen:?}"
    );
    // The persistent connection's task and the live connection's driver.
    bounded("two live tasks", live_rx.clone().wait_for(|n| *n == 2))
        .await
        .unwrap();

    // Close: Disconnected, then nothing more; no task and no connection left behind.
    bounded("close", redis.close()).await;
    assert!(conn.is_closed());
    assert!(
        matches!(conn.ending(), Some(Ending::Closed)),
        "{:?}",
        conn.ending()
    );
    assert_eq!(show(&next_event(&mut events).await), "Disconnected");
    assert!(
        bounded("the end of the events", events.recv())
            .await
            .is_none(),
        "nothing is reported after close"
    );
    let after: Result<String, RedisError> = bounded("a command after close", conn.get("k")).await;
    assert!(after.expect_err("closed").is_connection_dropped());
    bounded("no live task", live_rx.clone().wait_for(|n| *n == 0))
        .await
        .unwrap();
    // The server drops the socket once its event loop sees the close: each CLIENT LIST is
    // a trip through that loop, so a few round trips (no sleeps) are enough.
    let mut clients = Vec::new();
    for _ in 0..1000 {
        clients = other_clients(&mut watcher).await;
        if clients.is_empty() {
            break;
        }
    }
    assert_eq!(
        clients,
        [],
        "the server still has connections (ours was {id})"
    );
    watcher.close().await;
    server.kill().await.unwrap();
}

/// A fresh counting runtime and the receiver that watches its live-task count.
fn counting() -> (Counting, watch::Receiver<usize>) {
    let (live, live_rx) = watch::channel(0usize);
    let runtime = Counting {
        tokio: Tokio::current(),
        live: Arc::new(live),
    };
    (runtime, live_rx)
}

/// A persistent connection to `url` on `runtime` whose `on_event` sends every event to the
/// returned receiver, then waits for `gate` (if given) while handling `Connected`.
fn spawn_redis(
    url: &str,
    runtime: Counting,
    connector: Connector,
    gate: Option<Arc<tokio::sync::Notify>>,
) -> (PersistentRedis, mpsc::UnboundedReceiver<Ev>) {
    let (tx, events) = mpsc::unbounded_channel();
    let address = url.to_string();
    let redis = persistent_connection_redis::builder_with(
        "redis",
        move || {
            let address = address.clone();
            async move { Ok(address) }
        },
        connector,
        runtime,
    )
    .retry_delay(|_| Duration::from_millis(50))
    .on_event(move |event| {
        let connected = matches!(event, Event::Connected(_));
        let _ = tx.send(event);
        let gate = gate.clone().filter(|_| connected);
        async move {
            if let Some(gate) = gate {
                gate.notified().await;
            }
        }
    })
    .spawn();
    (redis, events)
}

/// After `close()`: the events end (a connection reported is followed by `Disconnected`),
/// no task is alive, and the server has no connection from us.
async fn assert_nothing_left(
    stage: &str,
    mut events: mpsc::UnboundedReceiver<Ev>,
    live: watch::Receiver<usize>,
    port: Option<u16>,
) {
    let mut rest = Vec::new();
    while let Some(event) = bounded(stage, events.recv()).await {
        rest.push(show(&event));
    }
    if let Some(connected) = rest.iter().rposition(|e| e == "Connected") {
        assert_eq!(rest[connected + 1..], ["Disconnected"], "{stage}: {rest:?}");
    }
    bounded(stage, live.clone().wait_for(|n| *n == 0))
        .await
        .unwrap();
    if let Some(port) = port {
        let mut watcher = observer(port).await;
        let mut clients = Vec::new();
        for _ in 0..1000 {
            clients = other_clients(&mut watcher).await;
            if clients.is_empty() {
                break;
            }
        }
        assert_eq!(clients, [], "{stage}: the server still has our connection");
        watcher.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_at_any_stage_leaves_nothing_behind() {
    if let Some(why) = support::unavailable() {
        support::skip_unless_ci("close_at_any_stage_leaves_nothing_behind", &why);
        return;
    }
    let dir = ScratchDir::new("close");
    let (server, _) = RedisServer::start_on_a_free_port(&dir.0)
        .await
        .expect("redis-server");
    let port = server.port;
    let url = format!("redis://127.0.0.1:{port}/");

    // Closed at once, before the first attempt has finished.
    let (runtime, live) = counting();
    let (redis, events) = spawn_redis(&url, runtime, patient(), None);
    bounded("close at once", redis.close()).await;
    assert_nothing_left("close at once", events, live, Some(port)).await;

    // Closed while the `Connected` handler runs: close resolves after it.
    let (runtime, live) = counting();
    let gate = Arc::new(tokio::sync::Notify::new());
    let (redis, mut events) = spawn_redis(&url, runtime, patient(), Some(gate.clone()));
    loop {
        if let Event::Connected(_) = next_event(&mut events).await {
            break;
        }
    }
    let closing = redis.close();
    assert!(redis.is_closed());
    gate.notify_one();
    bounded("close in the Connected handler", closing).await;
    assert_eq!(show(&next_event(&mut events).await), "Disconnected");
    assert_nothing_left("close in the Connected handler", events, live, Some(port)).await;

    // Dropped while connected, without close (R13): the same.
    let (runtime, live) = counting();
    let (redis, events) = spawn_redis(&url, runtime, patient(), None);
    let mut conn = bounded("connected", redis.connected()).await;
    let () = conn.set("k", "v").await.unwrap();
    drop(redis);
    assert_nothing_left("dropped while connected", events, live, Some(port)).await;
    assert!(conn.is_closed());

    // Closed while the server is down, between failed attempts.
    let (runtime, live) = counting();
    let (redis, mut events) = spawn_redis(&url, runtime, patient(), None);
    bounded("connected", redis.connected()).await;
    server.kill().await.unwrap();
    loop {
        if let Event::FailedToConnect(_) = next_event(&mut events).await {
            break;
        }
    }
    bounded("close during the outage", redis.close()).await;
    assert_nothing_left("close during the outage", events, live, None).await;

    // Closed while the handshake hangs (a server that accepts and never answers): the
    // socket is dropped, and the server side sees it close.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_url = format!("redis://{}/", hung.local_addr().unwrap());
    let (runtime, live) = counting();
    let (redis, events) = spawn_redis(
        &hung_url,
        runtime,
        Connector::new().connect_timeout(None),
        None,
    );
    let (mut accepted, _) = bounded("the dial", hung.accept()).await.unwrap();
    bounded("close during the handshake", redis.close()).await;
    let mut rest = Vec::new();
    let read = bounded(
        "EOF on the hung server's side",
        tokio::io::AsyncReadExt::read_to_end(&mut accepted, &mut rest),
    )
    .await;
    assert!(read.is_ok(), "{read:?}");
    assert_nothing_left("close during the handshake", events, live, None).await;

    // The same hung server with the default connect timeout: the attempt fails with a
    // timeout error instead of hanging.
    let (runtime, live) = counting();
    let (redis, mut events) = spawn_redis(&hung_url, runtime, Connector::new(), None);
    let failure = loop {
        if let Event::FailedToConnect(e) = next_event(&mut events).await {
            break e;
        }
    };
    assert!(failure.user_error().unwrap().is_timeout(), "{failure}");
    bounded("close", redis.close()).await;
    assert_nothing_left("after a timed-out handshake", events, live, None).await;
}
