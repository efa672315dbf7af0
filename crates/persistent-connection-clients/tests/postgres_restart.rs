//! Checks R1 (cycle) and R8 (connected) of CONTRACT.md with a real tokio-postgres client
//! (`Driven<Client>`) against real PostgreSQL servers: throw-away clusters made with
//! `initdb` and run with `pg_ctl` on 127.0.0.1 (see
//! `persistent_connection_clients::postgres_server`), stopped and deleted at the end, also
//! when a test fails.
//!
//! Without PostgreSQL's binaries each test says that it skips and returns, except under
//! `CI=true`, where it fails. No sleeps: every wait is on an event or a query, bounded.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use persistent_connection_clients::postgres_server::{PgCluster, available_or_skip};
use persistent_connection_tokio::{
    ConnectError, Driven, DriverEvent, Ending, Event, Jitter, PersistentConnection,
    WeakPersistentConnection, builder,
};
use tokio::sync::mpsc;
use tokio_postgres::{Client, Config, NoTls};

type BoxError = Box<dyn StdError + Send + Sync>;
type Pg = Driven<Client>;
type Pc = PersistentConnection<SocketAddr, Pg, BoxError>;
type Ev = DriverEvent<SocketAddr, Pg, BoxError>;
type Catalog = Arc<Mutex<SocketAddr>>;
/// `last_ending()` as read in each `Disconnected` handler.
type Endings = Arc<Mutex<Vec<Option<Ending>>>>;

/// Every wait is bounded: a hang fails with what it waited for.
const BOUND: Duration = Duration::from_secs(30);

async fn bounded<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("waited {BOUND:?} for {what}"))
}

/// Runs a blocking step (`initdb`, `pg_ctl`) off the runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a blocking step")
}

fn show(event: &Ev) -> String {
    match event {
        Event::AttemptingToConnect => "A".into(),
        Event::ObtainedAddress(addr) => format!("O {addr}"),
        Event::FailedToConnect(_) => "F".into(),
        Event::Connected(_) => "C".into(),
        Event::Disconnected => "D".into(),
    }
}

/// The persistent tokio-postgres client, as a user writes it (see the crate's docs), with
/// an `on_event` that records the events and, at each `Disconnected`, `last_ending()`.
fn spawn_pg(catalog: &Catalog) -> (Pc, mpsc::UnboundedReceiver<String>, Endings) {
    let (events_tx, events) = mpsc::unbounded_channel();
    let endings = Endings::default();
    let handle: Arc<OnceLock<WeakPersistentConnection<SocketAddr, Pg, BoxError>>> = Arc::default();
    let lookup = catalog.clone();
    let (seen, weak) = (endings.clone(), handle.clone());
    let pc = builder(
        "postgres",
        move || {
            let addr = *lookup.lock().unwrap();
            async move { Ok::<_, BoxError>(addr) }
        },
        |addr: SocketAddr, _ctx| async move {
            let (client, connection) = Config::new()
                .host(addr.ip().to_string())
                .port(addr.port())
                .user("postgres")
                .dbname("postgres")
                .connect_timeout(Duration::from_secs(5))
                .connect(NoTls)
                .await?;
            Ok::<_, BoxError>(Driven::new(client, connection))
        },
    )
    .retry_delay(|_| Duration::from_millis(50))
    .jitter(Jitter::Off)
    .on_event(move |event: Ev| {
        if let Event::Disconnected = event {
            let ending = weak.get().and_then(|w| w.upgrade()?.last_ending());
            seen.lock().unwrap().push(ending);
        }
        let _ = events_tx.send(show(&event));
        async {}
    })
    .spawn();
    handle.set(pc.downgrade()).unwrap();
    (pc, events, endings)
}

/// Reads events until one equals `last`; returns those read.
async fn until(events: &mut mpsc::UnboundedReceiver<String>, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let event = bounded(&format!("event {last} (seen {seen:?})"), events.recv())
            .await
            .expect("events go on while the persistent connection runs");
        let done = event == last;
        seen.push(event);
        if done {
            return seen;
        }
    }
}

/// Asserts `cycle` is `D A (O|F)* C` with `addr` as the last address obtained.
fn assert_cycle(cycle: &[String], addr: SocketAddr) {
    assert_eq!(cycle[..2], ["D", "A"], "{cycle:?}");
    assert_eq!(cycle.last().map(String::as_str), Some("C"), "{cycle:?}");
    assert!(
        cycle[2..cycle.len() - 1]
            .iter()
            .all(|e| e == "F" || e.starts_with("O ")),
        "{cycle:?}"
    );
    let last_obtained = cycle.iter().rev().find(|e| e.starts_with("O "));
    assert_eq!(last_obtained, Some(&format!("O {addr}")), "{cycle:?}");
}

/// The server's port and the backend's process id, through `client`.
async fn who(client: &Client) -> (u16, i32) {
    let row = bounded(
        "a query",
        client.query_one("SELECT inet_server_port(), pg_backend_pid()", &[]),
    )
    .await
    .expect("the query succeeds");
    let port: i32 = row.get(0);
    (u16::try_from(port).unwrap(), row.get(1))
}

/// R1: queries succeed; the server is stopped (`pg_ctl stop -m fast`): the idle connection's
/// driving future ends, `Disconnected`, and attempts fail while it is down; the server
/// comes back on the same port: the next cycle connects, and queries succeed through a new
/// `Client` with a new backend. R8: after the `Disconnected`, `connected()` never hands
/// out the dead client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_r8_queries_succeed_again_after_the_server_restarts() {
    if !available_or_skip("r1_r8_queries_succeed_again_after_the_server_restarts") {
        return;
    }
    let cluster = blocking(PgCluster::create_and_start)
        .await
        .expect("a PostgreSQL cluster");
    let (addr, dir) = (cluster.addr(), cluster.dir().to_owned());
    let catalog: Catalog = Arc::new(Mutex::new(addr));
    let (pc, mut events, endings) = spawn_pg(&catalog);

    let first = bounded("connected()", pc.connected()).await;
    assert_eq!(
        until(&mut events, "C").await,
        ["A".to_string(), format!("O {addr}"), "C".into()]
    );
    let row = bounded("a query", first.query_one("SELECT 1 + 1", &[]))
        .await
        .expect("SELECT 1 + 1");
    assert_eq!(row.get::<_, i32>(0), 2);
    let (port, first_pid) = who(&first).await;
    assert_eq!(port, addr.port());

    // Stopped: the server ends the session; nothing of ours is on the data path, yet the
    // persistent connection notices, and retries (and fails) while the server is down.
    let mut cluster = blocking(move || {
        let mut cluster = cluster;
        cluster.stop().expect("pg_ctl stop");
        cluster
    })
    .await;
    let down = until(&mut events, "F").await;
    assert_eq!(
        down,
        ["D".to_string(), "A".into(), format!("O {addr}"), "F".into()]
    );
    assert!(first.is_closed());
    let ending = endings.lock().unwrap()[0].clone();
    assert!(
        matches!(ending, Some(Ending::Failed(_) | Ending::Finished)),
        "{ending:?}"
    );
    if let Some(Ending::Failed(e)) = &ending {
        println!(
            "the server was stopped: {e}: {}",
            e.source().map_or(String::new(), |s| s.to_string())
        );
    }
    let stale = bounded(
        "a query on the dead client",
        first.query_one("SELECT 1", &[]),
    )
    .await;
    let stale = stale.expect_err("the client's connection is gone");
    assert!(stale.is_closed(), "{stale}");
    let outage = bounded(
        "the outcome of an attempt during the outage",
        pc.connected_or_failed_to_connect(),
    )
    .await;
    assert!(
        matches!(outage, Err(ConnectError::Attempt(_))),
        "{outage:?}"
    );

    // Back on the same port: a new client, a new backend.
    let cluster = blocking(move || {
        cluster.start().expect("pg_ctl start");
        cluster
    })
    .await;
    let second = bounded("connected() after the restart", pc.connected()).await;
    assert!(!std::ptr::eq(first.handle(), second.handle()));
    assert!(!second.is_closed());
    let (port, second_pid) = who(&second).await;
    assert_eq!(port, addr.port());
    assert_ne!(second_pid, first_pid);
    let mut cycle = down;
    cycle.extend(until(&mut events, "C").await);
    assert_cycle(&cycle, addr);

    bounded("close", pc.close()).await;
    assert!(matches!(pc.last_ending(), Some(Ending::Closed)));
    drop(cluster);
    assert!(!dir.exists(), "{} was not deleted", dir.display());
}

/// R1 with failover: two clusters; the first is stopped and the catalog now names the
/// second, so the next cycle connects there and queries are answered by it. R8: the
/// client handed out after the `Disconnected` is the second cluster's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_r8_failover_to_a_second_cluster_through_the_catalog() {
    if !available_or_skip("r1_r8_failover_to_a_second_cluster_through_the_catalog") {
        return;
    }
    let (primary, replica) = tokio::join!(
        blocking(PgCluster::create_and_start),
        blocking(PgCluster::create_and_start)
    );
    let (primary, replica) = (primary.expect("cluster 1"), replica.expect("cluster 2"));
    assert_ne!(primary.addr(), replica.addr());
    let catalog: Catalog = Arc::new(Mutex::new(primary.addr()));
    let (pc, mut events, _endings) = spawn_pg(&catalog);

    let first = bounded("connected()", pc.connected()).await;
    assert_eq!(who(&first).await.0, primary.port());
    until(&mut events, "C").await;

    // The primary goes away; the catalog names the replica.
    let primary_addr = primary.addr();
    let primary = blocking(move || {
        let mut primary = primary;
        primary.stop().expect("pg_ctl stop");
        primary
    })
    .await;
    *catalog.lock().unwrap() = replica.addr();

    let second = bounded("connected() after the failover", pc.connected()).await;
    assert_eq!(who(&second).await.0, replica.port());
    assert!(first.is_closed());
    let cycle = until(&mut events, "C").await;
    assert_cycle(&cycle, replica.addr());
    println!(
        "failover from {primary_addr} to {}: {cycle:?}",
        replica.addr()
    );

    bounded("close", pc.close()).await;
    let dirs = [primary.dir().to_owned(), replica.dir().to_owned()];
    drop((primary, replica));
    for dir in dirs {
        assert!(!dir.exists(), "{} was not deleted", dir.display());
    }
}
