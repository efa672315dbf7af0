//! A hyper 1.x HTTP/2 client kept alive by a persistent connection, while its server is
//! killed and comes back on a new port that only a catalog knows.
//!
//! ```sh
//! cargo run -p persistent-connection-clients --example hyper_restart
//! ```
//!
//! Four tasks send requests back to back, each on the connection `connected()` hands out at
//! that moment. The server (in this process, on 127.0.0.1) is killed three times; each time
//! a new one starts on a fresh port and the catalog is updated. The persistent connection
//! notices the death by itself (the driving future ends), looks the address up again and
//! dials the new server; the requests go on.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use persistent_connection_clients::http2_server::Http2Server;
use persistent_connection_tokio::{Driven, Event, Jitter, builder};
use tokio::sync::mpsc;

type BoxError = Box<dyn StdError + Send + Sync>;
type H2 = Driven<SendRequest<Full<Bytes>>>;

const REQUESTERS: usize = 4;
const RESTARTS: usize = 3;
const PER_SERVER: usize = 200;

/// What one request came to: the port of the server that answered, or the error.
type Outcome = Result<u16, String>;

/// One GET on `conn`; the answer is `server <port> request <n>`.
async fn request(conn: &H2) -> Result<u16, BoxError> {
    let mut send_request = conn.handle().clone();
    let request = hyper::Request::get("http://example/").body(Full::new(Bytes::new()))?;
    let response = send_request.send_request(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    let body = String::from_utf8(body.to_vec())?;
    Ok(body.split(' ').nth(1).ok_or("a port")?.parse()?)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut server = Http2Server::start().await?;
    // The catalog: where replicas publish their address; `get_address` reads it.
    let catalog = Arc::new(Mutex::new(server.addr()));
    let started = Instant::now();
    let at = move || format!("{:>7.1} ms", started.elapsed().as_secs_f64() * 1e3);

    let lookup = catalog.clone();
    let api = builder(
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
    // Attempts start at least 50 ms apart (R7): a connection that dies sooner than that
    // after its attempt started (these servers live about 50 ms) is redialled only once the
    // rest of the 50 ms has passed; one that lived longer is redialled at once.
    .retry_delay(|_failures| Duration::from_millis(50))
    .jitter(Jitter::Off)
    .on_event(move |event| {
        match &event {
            Event::ObtainedAddress(addr) => println!("{} ObtainedAddress({addr})", at()),
            Event::FailedToConnect(e) => println!("{} FailedToConnect({e})", at()),
            other => println!("{} {}", at(), other.name()),
        }
        async {}
    })
    .spawn();

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut outcomes) = mpsc::unbounded_channel::<Outcome>();
    let mut tasks = Vec::new();
    for _ in 0..REQUESTERS {
        let (api, stop, tx) = (api.clone(), stop.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let conn = api.connected().await;
                let outcome = request(&conn).await.map_err(|e| e.to_string());
                if tx.send(outcome).is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);

    let mut answered = BTreeMap::<u16, usize>::new();
    let mut failed = Vec::new();
    let mut killed_at = Instant::now();
    for restart in 0..=RESTARTS {
        let port = server.addr().port();
        let mut first_answer = None;
        while answered.get(&port).copied().unwrap_or(0) < PER_SERVER {
            match outcomes.recv().await.ok_or("the requesters stopped")? {
                Ok(p) => {
                    *answered.entry(p).or_default() += 1;
                    if p == port && first_answer.is_none() {
                        first_answer = Some(killed_at.elapsed());
                    }
                }
                Err(e) => failed.push(e),
            }
        }
        if restart > 0 {
            println!(
                "{} {PER_SERVER} requests answered by the server on port {port}; the first {:.2} ms after the old one was killed",
                at(),
                first_answer.unwrap_or_default().as_secs_f64() * 1e3
            );
        } else {
            println!(
                "{} {PER_SERVER} requests answered by the server on port {port}",
                at()
            );
        }
        if restart == RESTARTS {
            break;
        }
        killed_at = Instant::now();
        server.kill().await;
        server = Http2Server::start().await?;
        *catalog.lock().unwrap() = server.addr();
        println!(
            "{} killed the server on port {port}; a new one listens on {} (in the catalog)",
            at(),
            server.addr()
        );
    }

    stop.store(true, Ordering::SeqCst);
    while let Some(outcome) = outcomes.recv().await {
        if let Err(e) = outcome {
            failed.push(e);
        }
    }
    for task in tasks {
        task.await?;
    }
    api.close().await;
    println!(
        "answered per server port: {answered:?}; failed: {} (requests on the wire when a server was killed: {failed:?})",
        failed.len()
    );
    Ok(())
}
