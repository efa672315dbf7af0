//! A tokio-postgres client kept alive by a persistent connection while a real PostgreSQL
//! server is stopped and started again; then the time from the server's return to the
//! first successful query, next to a hand-written reconnect loop with the same retry
//! delay, measured in the same run.
//!
//! ```sh
//! cargo run -p persistent-connection-clients --example postgres_restart
//! ROUNDS=21 cargo run -p persistent-connection-clients --example postgres_restart
//! ```
//!
//! Needs Debian's `postgresql` package (`initdb` and `pg_ctl` under
//! `/usr/lib/postgresql/*/bin`). The cluster is a throw-away one in a directory under
//! `/tmp`, on a free port of 127.0.0.1, deleted at the end.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use persistent_connection_clients::postgres_server::{PgCluster, binaries};
use persistent_connection_tokio::{Connection, Driven, Ending, Event, Jitter, builder};
use tokio::sync::watch;
use tokio_postgres::{Client, Config, NoTls};

type BoxError = Box<dyn StdError + Send + Sync>;

/// The retry delay of both clients.
const RETRY_DELAY: Duration = Duration::from_millis(100);

fn config(addr: SocketAddr) -> Config {
    let mut config = Config::new();
    config
        .host(addr.ip().to_string())
        .port(addr.port())
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5));
    config
}

/// The baseline: what one writes by hand. Dial; on success publish the client and run its
/// connection until it dies, then dial again at once; on failure wait `delay`.
async fn hand_written(addr: SocketAddr, delay: Duration, tx: watch::Sender<Option<Arc<Client>>>) {
    loop {
        match config(addr).connect(NoTls).await {
            Ok((client, connection)) => {
                tx.send_replace(Some(Arc::new(client)));
                let _ = connection.await;
                tx.send_replace(None);
            }
            Err(_) => tokio::time::sleep(delay).await,
        }
    }
}

/// Runs a blocking step (`initdb`, `pg_ctl`) off the runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a blocking step")
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(d: f64) -> String {
    format!("{d:>7.1} ms")
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    if let Err(why) = binaries() {
        return Err(format!("PostgreSQL is needed: {why} (apt-get install postgresql)").into());
    }
    let rounds: usize = std::env::var("ROUNDS").map_or(Ok(9), |r| r.parse())?;
    let mut cluster = blocking(PgCluster::create_and_start).await?;
    let addr = cluster.addr();
    println!(
        "PostgreSQL cluster in {} on {addr}",
        cluster.dir().display()
    );

    // The persistent connection: the code of the crate's docs.
    let db = builder(
        "postgres",
        move || async move { Ok::<_, BoxError>(addr) },
        |addr: SocketAddr, _ctx| async move {
            let (client, connection) = config(addr).connect(NoTls).await?;
            Ok::<_, BoxError>(Driven::new(client, connection))
        },
    )
    .retry_delay(|_failures| RETRY_DELAY)
    .jitter(Jitter::Off)
    .on_event(|event| async move {
        match &event {
            Event::FailedToConnect(e) => println!("  event: FailedToConnect({e})"),
            Event::ObtainedAddress(a) => println!("  event: ObtainedAddress({a})"),
            other => println!("  event: {}", other.name()),
        }
    })
    .spawn();

    // 1. Queries, a restart, queries through the new client.
    let client = db.connected().await;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    println!("query answered by backend {pid}");
    cluster = blocking(move || cluster.stop().map(|()| cluster)).await?;
    println!("server stopped (pg_ctl stop -m fast)");
    Connection::closed(&client).await;
    let why = match db.last_ending() {
        // tokio-postgres says "db error"; the server's message is its source.
        Some(Ending::Failed(e)) => format!(
            "{e}: {}",
            e.source().map(|s| s.to_string()).unwrap_or_default()
        ),
        other => format!("{other:?}"),
    };
    println!("the persistent connection noticed: {why}");
    cluster = blocking(move || cluster.start().map(|()| cluster)).await?;
    println!("server started again (pg_ctl start)");
    let client = db.connected().await;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    println!("query answered by backend {pid}, through a new client");

    // 2. The time from the server's return to the first successful query, against the
    //    hand-written loop, both running through the same restarts. Events are no longer
    //    printed: the handler only gates progress.
    println!(
        "\n{rounds} rounds, retry delay {} ms for both; from `pg_ctl start` returning to the first successful query:",
        RETRY_DELAY.as_millis()
    );
    let (hand_tx, hand_rx) = watch::channel(None);
    let baseline = tokio::spawn(hand_written(addr, RETRY_DELAY, hand_tx));
    let (mut ours, mut hand) = (Vec::new(), Vec::new());
    let mut hand_watch = hand_rx.clone();
    hand_watch.wait_for(Option::is_some).await?;
    for round in 1..=rounds {
        let current = db.connected().await;
        hand_watch.wait_for(Option::is_some).await?;
        // Let both connections live longer than the retry delay, so that both clients
        // redial the moment the server goes (a connection that dies younger waits for the
        // rest of its attempt's delay first: R7).
        tokio::time::sleep(RETRY_DELAY + Duration::from_millis(20)).await;
        cluster = blocking(move || cluster.stop().map(|()| cluster)).await?;
        // Both have noticed: neither can hand out the dead client any more.
        Connection::closed(&current).await;
        hand_watch.wait_for(Option::is_none).await?;
        // Outages of different lengths, so that the server comes back at every phase of
        // the clients' retry timers (and of pg_ctl's own 100 ms polling), evenly spread
        // over the rounds: 0.618 * round, modulo 1, of the retry delay.
        let phase = (round as f64 * 0.618_033_988_7).fract();
        tokio::time::sleep(RETRY_DELAY.mul_f64(phase)).await;

        let ours_first = tokio::spawn({
            let db = db.clone();
            async move {
                loop {
                    let client = db.connected().await;
                    if client.simple_query("SELECT 1").await.is_ok() {
                        return Instant::now();
                    }
                }
            }
        });
        let hand_first = tokio::spawn({
            let mut rx = hand_rx.clone();
            async move {
                loop {
                    let client = rx.wait_for(Option::is_some).await.unwrap().clone().unwrap();
                    if client.simple_query("SELECT 1").await.is_ok() {
                        return Instant::now();
                    }
                    rx.wait_for(Option::is_none).await.unwrap();
                }
            }
        });
        cluster = blocking(move || cluster.start().map(|()| cluster)).await?;
        let back = Instant::now();
        let signed = |at: Instant| {
            if at >= back {
                (at - back).as_secs_f64() * 1e3
            } else {
                -((back - at).as_secs_f64() * 1e3)
            }
        };
        let (o, h) = (signed(ours_first.await?), signed(hand_first.await?));
        println!(
            "  round {round:>2}: persistent connection {}   hand-written loop {}   difference {}",
            ms(o),
            ms(h),
            ms(o - h)
        );
        ours.push(o);
        hand.push(h);
    }
    let diffs: Vec<f64> = ours.iter().zip(&hand).map(|(o, h)| o - h).collect();
    println!(
        "median: persistent connection {}   hand-written loop {}   difference {} (per-round median)",
        ms(median(&ours)),
        ms(median(&hand)),
        ms(median(&diffs))
    );

    let half = RETRY_DELAY.as_secs_f64() * 1e3 / 2.0;
    println!(
        "rounds where one client needed one more retry than the other: the persistent connection {} of {rounds}, the hand-written loop {} of {rounds}",
        diffs.iter().filter(|d| **d > half).count(),
        diffs.iter().filter(|d| **d < -half).count()
    );

    baseline.abort();
    db.close().await;
    drop(cluster);
    Ok(())
}
