//! Checks R1 (cycle), R8 (connected) and R11 (close) of CONTRACT.md with a real hyper 1.x
//! HTTP/2 client (`Driven<SendRequest<_>>`) against the in-process hyper HTTP/2 server of
//! `persistent_connection_clients::http2_server`, on 127.0.0.1.
//!
//! No sleeps: every wait is on a signal (a request's outcome, an event, the server's count
//! of open connections), bounded with a message.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use persistent_connection_clients::http2_server::Http2Server;
use persistent_connection_tokio::{
    Connection, Driven, DriverEvent, Ending, Event, Jitter, PersistentConnection,
    WeakPersistentConnection, builder,
};
use tokio::sync::mpsc;

type BoxError = Box<dyn StdError + Send + Sync>;
type H2 = Driven<SendRequest<Full<Bytes>>>;
type Pc = PersistentConnection<SocketAddr, H2, BoxError>;
type Ev = DriverEvent<SocketAddr, H2, BoxError>;

/// Every wait is bounded: a hang fails with what it waited for.
const BOUND: Duration = Duration::from_secs(20);

async fn bounded<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("waited {BOUND:?} for {what}"))
}

/// Where `get_address` looks: the test points it at the live server.
type Catalog = Arc<Mutex<SocketAddr>>;

/// What the test sees of the persistent connection, written by its `on_event` handler.
#[derive(Default)]
struct Watch {
    /// The connection of the last `Connected`, until its `Disconnected`.
    current: Mutex<Option<H2>>,
    /// Every connection whose `Disconnected` has been reported (kept, so that no new
    /// connection can reuse a dead one's address and be taken for it).
    dead: Mutex<Vec<H2>>,
    /// `last_ending()` as read in each `Disconnected` handler.
    endings: Mutex<Vec<Option<Ending>>>,
    handle: OnceLock<WeakPersistentConnection<SocketAddr, H2, BoxError>>,
}

impl Watch {
    /// How many connections have been reported dead so far.
    fn dead_so_far(&self) -> usize {
        self.dead.lock().unwrap().len()
    }

    /// Whether `conn` is among the first `reported` connections reported dead: those whose
    /// `Disconnected` came before a given moment (the list only grows).
    fn was_dead(&self, conn: &H2, reported: usize) -> bool {
        let dead = self.dead.lock().unwrap();
        dead[..reported]
            .iter()
            .any(|d| std::ptr::eq(d.handle(), conn.handle()))
    }
}

/// The event as a short string: `A`, `O <addr>`, `F`, `C`, `D`.
fn show(event: &Ev) -> String {
    match event {
        Event::AttemptingToConnect => "A".into(),
        Event::ObtainedAddress(addr) => format!("O {addr}"),
        Event::FailedToConnect(_) => "F".into(),
        Event::Connected(_) => "C".into(),
        Event::Disconnected => "D".into(),
    }
}

/// The persistent HTTP/2 connection, as a user writes it (see the crate's docs), plus an
/// `on_event` that records what the test checks.
fn spawn_h2(catalog: &Catalog) -> (Pc, Arc<Watch>, mpsc::UnboundedReceiver<String>) {
    let watch = Arc::new(Watch::default());
    let (events_tx, events) = mpsc::unbounded_channel();
    let lookup = catalog.clone();
    let seen = watch.clone();
    let pc = builder(
        "http2",
        move || {
            let addr = *lookup.lock().unwrap();
            async move { Ok::<_, BoxError>(addr) }
        },
        |addr: SocketAddr, _ctx| async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let (send_request, connection) =
                http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
            Ok::<_, BoxError>(Driven::new(send_request, connection).closed_when(|s| s.is_closed()))
        },
    )
    .retry_delay(|_| Duration::from_millis(20))
    .jitter(Jitter::Off)
    .on_event(move |event: Ev| {
        match &event {
            Event::Connected(conn) => *seen.current.lock().unwrap() = Some(conn.clone()),
            Event::Disconnected => {
                let ending = seen.handle.get().and_then(|w| w.upgrade()?.last_ending());
                seen.endings.lock().unwrap().push(ending);
                if let Some(conn) = seen.current.lock().unwrap().take() {
                    seen.dead.lock().unwrap().push(conn);
                }
            }
            _ => {}
        }
        let _ = events_tx.send(show(&event));
        async {}
    })
    .spawn();
    watch.handle.set(pc.downgrade()).unwrap();
    (pc, watch, events)
}

fn get(path: &str) -> hyper::Request<Full<Bytes>> {
    hyper::Request::get(format!("http://test{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// One request on `conn`: the body, or the error's text.
async fn request(conn: &H2) -> Result<String, String> {
    let mut send_request = conn.handle().clone();
    let response = send_request
        .send_request(get("/"))
        .await
        .map_err(|e| e.to_string())?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8(body.to_bytes().to_vec()).unwrap())
}

/// What one turn of a requester came to.
#[derive(Debug)]
enum Outcome {
    /// Answered by the server on this port.
    Ok(u16),
    /// Failed. `known_dead`: its connection's `Disconnected` had been reported before
    /// `connected()` was called (a request sent on a connection known to be dead).
    /// `on`: which requester, and which connection (its handle's address).
    Failed {
        known_dead: bool,
        error: String,
        on: (usize, usize),
    },
    /// `connected()` handed out a connection that hyper already knew was closed, whose
    /// driving future had not ended yet; nothing was sent on it.
    Skipped { known_dead: bool },
}

/// A client that sends requests back to back, each on the connection `connected()` hands
/// out at that moment, until `stop`. It sends nothing on a connection that hyper already
/// knows is closed (`SendRequest::is_closed`): it waits for the persistent connection to
/// notice too (the driving future ends a moment later), then asks again.
fn requester(
    id: usize,
    pc: Pc,
    watch: Arc<Watch>,
    stop: Arc<AtomicBool>,
    out: mpsc::UnboundedSender<Outcome>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            // Dead before `connected()` was called: one reported dead after it returned
            // (the server killed meanwhile) was not known dead when it was handed out.
            let reported = watch.dead_so_far();
            let conn = bounded("connected()", pc.connected()).await;
            let known_dead = watch.was_dead(&conn, reported);
            let outcome = if conn.handle().is_closed() {
                bounded("the driving future to end", Connection::closed(&conn)).await;
                Outcome::Skipped { known_dead }
            } else {
                match request(&conn).await {
                    Ok(body) => {
                        assert!(!known_dead, "a dead connection answered: {body}");
                        Outcome::Ok(body.split(' ').nth(1).unwrap().parse().unwrap())
                    }
                    Err(error) => Outcome::Failed {
                        known_dead,
                        error,
                        on: (id, std::ptr::from_ref(conn.handle()) as usize),
                    },
                }
            };
            if out.send(outcome).is_err() {
                return;
            }
        }
    })
}

/// Reads events until `C`; returns those read.
async fn until_connected(events: &mut mpsc::UnboundedReceiver<String>) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let event = bounded("the next event", events.recv())
            .await
            .expect("events go on while the persistent connection runs");
        let done = event == "C";
        seen.push(event);
        if done {
            return seen;
        }
    }
}

/// R1: a stream of requests from four concurrent clients keeps succeeding while the server
/// is killed twice and comes back each time on a new port that only the catalog knows;
/// each time the events are `D A (O|F)* C` and the last address obtained is the new one.
/// R8: `connected()` never hands out a connection whose `Disconnected` was reported, so no
/// request fails because it went to a connection known to be dead; the only failures are
/// requests on the wire when the server died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_r8_requests_keep_succeeding_across_restarts_on_new_ports() {
    const REQUESTERS: usize = 4;
    const RESTARTS: usize = 2;
    const PER_SERVER: usize = 50;

    let mut server = Http2Server::start().await.expect("an HTTP/2 server");
    let catalog: Catalog = Arc::new(Mutex::new(server.addr()));
    let (pc, watch, mut events) = spawn_h2(&catalog);
    assert_eq!(
        until_connected(&mut events).await,
        ["A".to_string(), format!("O {}", server.addr()), "C".into()]
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (out_tx, mut outcomes) = mpsc::unbounded_channel();
    let requesters: Vec<_> = (0..REQUESTERS)
        .map(|id| requester(id, pc.clone(), watch.clone(), stop.clone(), out_tx.clone()))
        .collect();
    drop(out_tx);

    let mut failures = Vec::new();
    let mut answered_by = std::collections::BTreeMap::<u16, usize>::new();
    // Reads outcomes until `port` has answered PER_SERVER requests.
    let mut skipped = Vec::new();
    let mut read_until = async |port: u16, failures: &mut Vec<(bool, String, (usize, usize))>| loop {
        match bounded(
            &format!("requests answered on port {port}"),
            outcomes.recv(),
        )
        .await
        {
            Some(Outcome::Ok(p)) => {
                let n = answered_by.entry(p).or_default();
                *n += 1;
                if p == port && *n >= PER_SERVER {
                    return;
                }
            }
            Some(Outcome::Failed {
                known_dead,
                error,
                on,
            }) => failures.push((known_dead, error, on)),
            Some(Outcome::Skipped { known_dead }) => skipped.push(known_dead),
            None => panic!("the requesters stopped"),
        }
    };

    read_until(server.addr().port(), &mut failures).await;
    let mut ports = vec![server.addr().port()];
    for restart in 1..=RESTARTS {
        // The server dies; it comes back on a port of its own, which only the catalog says.
        let old = server.addr();
        server.kill().await;
        server = Http2Server::start().await.expect("an HTTP/2 server");
        assert_ne!(server.addr(), old);
        *catalog.lock().unwrap() = server.addr();

        let cycle = until_connected(&mut events).await;
        assert_eq!(cycle[..2], ["D", "A"], "restart {restart}: {cycle:?}");
        assert!(
            cycle[2..cycle.len() - 1]
                .iter()
                .all(|e| e == "F" || e.starts_with("O ")),
            "restart {restart}: {cycle:?}"
        );
        let last_obtained = cycle.iter().rev().find(|e| e.starts_with("O "));
        assert_eq!(
            last_obtained,
            Some(&format!("O {}", server.addr())),
            "restart {restart}: {cycle:?}"
        );
        read_until(server.addr().port(), &mut failures).await;
        ports.push(server.addr().port());
        // HTTP/2 multiplexes: the four clients share one connection.
        assert_eq!(server.open_connections(), 1, "restart {restart}");
    }

    stop.store(true, Ordering::SeqCst);
    while let Some(outcome) = bounded("the requesters to stop", outcomes.recv()).await {
        match outcome {
            Outcome::Ok(_) => {}
            Outcome::Failed {
                known_dead,
                error,
                on,
            } => failures.push((known_dead, error, on)),
            Outcome::Skipped { known_dead } => skipped.push(known_dead),
        }
    }
    for r in requesters {
        bounded("a requester to end", r).await.unwrap();
    }

    println!(
        "answered per port: {answered_by:?}; failed: {failures:?}; \
         handed out while hyper knew it closed: {}",
        skipped.len()
    );
    for port in &ports {
        assert!(answered_by[port] >= PER_SERVER, "{answered_by:?}");
    }
    let on_dead: Vec<_> = failures
        .iter()
        .filter(|(known_dead, _, _)| *known_dead)
        .collect();
    assert!(
        on_dead.is_empty(),
        "requests sent on a connection after its Disconnected: {on_dead:?}"
    );
    assert!(
        !skipped.contains(&true),
        "connected() handed out a connection after its Disconnected"
    );
    // Only requests on the wire at a kill fail: per requester and killed connection, the
    // one in flight, and at most one more, sent in the moment between the kill and hyper
    // marking the connection closed (after that, the requester sends nothing on it).
    let mut per_requester_and_connection = std::collections::HashMap::<_, usize>::new();
    for (_, _, on) in &failures {
        *per_requester_and_connection.entry(on).or_default() += 1;
    }
    let most = per_requester_and_connection
        .values()
        .max()
        .copied()
        .unwrap_or(0);
    assert!(most <= 2, "{most} failures on one connection: {failures:?}");
    assert!(
        per_requester_and_connection.len() <= REQUESTERS * RESTARTS,
        "failures on {} (requester, connection) pairs: {failures:?}",
        per_requester_and_connection.len()
    );
    println!("most failures of one requester on one connection: {most}");

    // The Disconnected handler could tell why each connection ended: the server went away
    // (the driving future finished or failed), not a close from this side.
    let endings = watch.endings.lock().unwrap().clone();
    assert_eq!(endings.len(), RESTARTS, "{endings:?}");
    for ending in &endings {
        assert!(
            matches!(ending, Some(Ending::Finished | Ending::Failed(_))),
            "{ending:?}"
        );
    }
    println!("endings: {endings:?}");

    bounded("close", pc.close()).await;
    bounded(
        "the server to see the connection go",
        server.wait_open_connections(0),
    )
    .await;
}

/// R11: `close()` drops the driving future, and with it the socket: the server sees the
/// connection go, `Disconnected` is the last event, the handle says it was closed from
/// this side, and a clone of the handle kept by the user fails fast instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_close_drops_the_http2_connection() {
    let server = Http2Server::start().await.expect("an HTTP/2 server");
    let catalog: Catalog = Arc::new(Mutex::new(server.addr()));
    let (pc, watch, mut events) = spawn_h2(&catalog);

    let conn = bounded("connected()", pc.connected()).await;
    let body = bounded("a request", request(&conn))
        .await
        .expect("an answer");
    assert_eq!(body, format!("server {} request 1", server.addr().port()));
    bounded(
        "the server to count the connection",
        server.wait_open_connections(1),
    )
    .await;

    bounded("close", pc.close()).await;
    bounded(
        "the server to see the connection go",
        server.wait_open_connections(0),
    )
    .await;
    assert!(
        matches!(pc.last_ending(), Some(Ending::Closed)),
        "{:?}",
        pc.last_ending()
    );
    assert!(matches!(conn.ending(), Some(Ending::Closed)));
    let mut events_seen = Vec::new();
    while let Some(event) = bounded("the events to end", events.recv()).await {
        events_seen.push(event);
    }
    assert_eq!(
        events_seen,
        [
            "A".to_string(),
            format!("O {}", server.addr()),
            "C".into(),
            "D".into()
        ]
    );
    assert!(matches!(
        watch.endings.lock().unwrap()[..],
        [Some(Ending::Closed)]
    ));

    let after = bounded("a request on the closed connection", request(&conn)).await;
    assert!(after.is_err(), "{after:?}");
    println!("a request on the closed connection: {}", after.unwrap_err());
}
