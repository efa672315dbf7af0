//! Failover between two replicas, on Tokio.
//!
//! Two line-echo replicas run in-process and publish their address in a small catalog. A
//! persistent connection keeps a connection to whichever replica the catalog names; a
//! client sends a line every 100 ms. Then the live replica dies: the events show the
//! connection drop and the reconnection to the other one. Then everything closes.
//!
//! Run it with `cargo demo` (an alias for `cargo run -p persistent-connection-tokio
//! --example failover`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use persistent_connection_tokio::{Driven, builder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Where replicas publish their address: `get_address` reads it before every attempt.
#[derive(Clone, Default)]
struct Catalog(Arc<Mutex<Option<(&'static str, SocketAddr)>>>);

impl Catalog {
    fn publish(&self, name: &'static str, addr: SocketAddr) {
        *self.0.lock().unwrap() = Some((name, addr));
    }
    fn lookup(&self) -> std::io::Result<SocketAddr> {
        match *self.0.lock().unwrap() {
            Some((_, addr)) => Ok(addr),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no replica published",
            )),
        }
    }
}

/// An in-process line-echo server that can be killed.
struct Replica {
    name: &'static str,
    addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl Replica {
    async fn start(name: &'static str) -> std::io::Result<Replica> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let reply = format!("{name} echoes: {line}\n");
                        if write.write_all(reply.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Ok(Replica { name, addr, tasks })
    }

    /// Kills the replica: the listener and every connection go at once.
    fn kill(mut self) {
        self.tasks.abort_all();
    }
}

/// A line client: the template for a client over a plain byte stream. Its handle sends a
/// line and awaits the reply; its read loop is the driving future of a [`Driven`]
/// connection, so when the server goes away the loop ends and the persistent connection
/// notices, with no code of ours on the data path.
struct LineClient {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    replies: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
}

impl LineClient {
    /// Dials `addr`: the handle, driven by the read loop.
    async fn connect(addr: SocketAddr) -> std::io::Result<Driven<LineClient>> {
        let (read, writer) = TcpStream::connect(addr).await?.into_split();
        let (tx, replies) = mpsc::unbounded_channel();
        let read_loop = async move {
            let mut lines = BufReader::new(read).lines();
            while let Some(line) = lines.next_line().await? {
                let _ = tx.send(line);
            }
            Ok::<(), std::io::Error>(()) // EOF: the server went away
        };
        let client = LineClient {
            writer: tokio::sync::Mutex::new(writer),
            replies: tokio::sync::Mutex::new(replies),
        };
        Ok(Driven::new(client, read_loop))
    }

    /// Sends `line`; the reply, or an error once the connection is dead.
    async fn request(&self, line: &str) -> std::io::Result<String> {
        let mut replies = self.replies.lock().await;
        self.writer
            .lock()
            .await
            .write_all(format!("{line}\n").as_bytes())
            .await?;
        replies
            .recv()
            .await
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"))
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let start = Instant::now();
    let stamp = move || format!("{:>6.3}s", start.elapsed().as_secs_f64());

    let first = Replica::start("replica-1").await?;
    let second = Replica::start("replica-2").await?;
    let catalog = Catalog::default();
    catalog.publish(first.name, first.addr);
    println!(
        "{} {} at {}, {} at {}",
        stamp(),
        first.name,
        first.addr,
        second.name,
        second.addr
    );
    println!("{} catalog names {}", stamp(), first.name);

    let lookup = catalog.clone();
    let conn = builder(
        "echo",
        move || {
            let found = lookup.lookup();
            async move { found }
        },
        |addr, _ctx| LineClient::connect(addr),
    )
    // A dead long-lived connection is redialled at once; failed attempts wait ~300 ms.
    .retry_delay(|_failures| Duration::from_millis(300))
    .on_event(move |event| async move { println!("{} event: {event}", stamp()) })
    .spawn();

    // What an operator would export to a metrics system: a snapshot once a second.
    let watched = conn.downgrade();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await; // the first tick is at once
            let Some(conn) = watched.upgrade() else { break };
            let s = conn.stats();
            println!(
                "{} stats: {:?} for {:.1}s, attempts {}, failures {}, connections {}, \
                 disconnections {}, uptime {}, last failure: {}",
                stamp(),
                s.state,
                s.state_since.elapsed().as_secs_f64(),
                s.attempts,
                s.failures,
                s.connections,
                s.disconnections,
                s.uptime
                    .map_or("-".into(), |u| format!("{:.1}s", u.as_secs_f64())),
                s.last_failure.as_deref().unwrap_or("none"),
            );
        }
    });

    let (mut sent, mut failed) = (0, 0);
    let mut died_at = None;
    let mut failover = None;
    let mut first = Some(first);
    for i in 1..=20 {
        if i == 8 {
            if let Some(replica) = first.take() {
                println!(
                    "{} killing {}; catalog now names {}",
                    stamp(),
                    replica.name,
                    second.name
                );
                catalog.publish(second.name, second.addr);
                replica.kill();
                died_at = Some(Instant::now());
            }
        }
        let client = conn.connected().await;
        sent += 1;
        match client.request(&format!("line {i}")).await {
            Ok(reply) => {
                println!("{} sent line {i:<2} -> {reply}", stamp());
                if let (Some(died), None, true) =
                    (died_at, failover, reply.starts_with("replica-2"))
                {
                    failover = Some(died.elapsed());
                }
            }
            Err(e) => {
                failed += 1;
                println!("{} sent line {i:<2} -> failed: {e}", stamp());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    conn.close().await;
    println!(
        "{} closed: {sent} lines sent, {failed} failed during the failover",
        stamp()
    );
    if let Some(took) = failover {
        println!(
            "{} failover took {:.1} ms (death to first echo from replica-2)",
            stamp(),
            took.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
