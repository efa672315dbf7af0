//! The same Redis restart seen by three clients at once: time from the server being back
//! (answering PING) to each client's first successful command.
//!
//! - `pc exp`: this crate, retry delay 100 ms doubling per failure (as the redis crate's
//!   `ConnectionManager` does by default), +-30 % jitter.
//! - `pc 100ms`: this crate, a constant 100 ms retry delay, +-30 % jitter.
//! - `manager`: the redis crate's own `ConnectionManager`, default settings (100 ms
//!   doubling per retry, with jitter, 6 retries).
//!
//! Each client has a caller that sends PING, waits 10 ms after each answer or error, and
//! sends again; the `pc` callers take the connection with `connected()`. The server is
//! killed (SIGKILL), stays down for a while, and is started again on the same port.
//!
//! Run: `cargo run --release -p persistent-connection-redis --example redis_restart`
//! (needs `redis-server`; about 20 s with 3 trials per outage, set
//! `REDIS_RESTART_TRIALS` for more).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use persistent_connection_redis::{Backoff, Exponential, PersistentRedis};
use redis::aio::ConnectionManager;
use support::{RedisServer, ScratchDir};

const OUTAGES: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(3),
];
/// Trials per outage; `REDIS_RESTART_TRIALS` overrides it.
const TRIALS: usize = 3;
const PAUSE: Duration = Duration::from_millis(10);
const CALL_LIMIT: Duration = Duration::from_secs(5);

/// When each successful PING of one caller finished.
type Successes = Arc<Mutex<Vec<Instant>>>;

fn caller<F, Fut>(ping: F) -> Successes
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = redis::RedisResult<String>> + Send,
{
    let successes = Successes::default();
    let record = successes.clone();
    tokio::spawn(async move {
        loop {
            if let Ok(Ok(_)) = tokio::time::timeout(CALL_LIMIT, ping()).await {
                record.lock().unwrap().push(Instant::now());
            }
            tokio::time::sleep(PAUSE).await;
        }
    });
    successes
}

fn pc_caller(redis: &PersistentRedis) -> Successes {
    let redis = redis.clone();
    caller(move || {
        let connected = redis.connected();
        async move {
            let mut conn = connected.await;
            redis::cmd("PING").query_async(&mut conn).await
        }
    })
}

fn first_after(successes: &Successes, t: Instant) -> Option<Instant> {
    successes.lock().unwrap().iter().copied().find(|s| *s >= t)
}

#[tokio::main]
async fn main() {
    if let Some(why) = support::unavailable() {
        eprintln!("redis_restart: {why}; install redis-server to run this example");
        return;
    }
    let trials = std::env::var("REDIS_RESTART_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(TRIALS);
    let dir = ScratchDir::new("bench");
    let port = support::free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let (mut server, _) = RedisServer::start(port, &dir.0)
        .await
        .expect("redis-server");

    let address = url.clone();
    let get_address = move || {
        let address = address.clone();
        async move { Ok(address) }
    };
    let pc_exp: PersistentRedis = persistent_connection_redis::builder("exp", get_address.clone())
        .retry_policy(Backoff::Exponential(Exponential {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(10),
        }))
        .spawn();
    let pc_flat: PersistentRedis = persistent_connection_redis::builder("flat", get_address)
        .retry_delay(|_| Duration::from_millis(100))
        .spawn();
    let manager = ConnectionManager::new(redis::Client::open(url.as_str()).unwrap())
        .await
        .expect("a ConnectionManager");

    let callers = [
        ("pc exp", pc_caller(&pc_exp)),
        ("pc 100ms", pc_caller(&pc_flat)),
        ("manager", {
            let manager = manager.clone();
            caller(move || {
                let mut manager = manager.clone();
                async move { redis::cmd("PING").query_async(&mut manager).await }
            })
        }),
    ];
    let now = Instant::now();
    for (name, successes) in &callers {
        while first_after(successes, now).is_none() {
            tokio::time::sleep(PAUSE).await;
        }
        println!("{name}: up");
    }

    println!();
    println!("time from the server answering PING again to each client's first good PING:");
    println!(
        "{:>8} {:>6} {:>10} {:>10} {:>10}",
        "outage", "trial", callers[0].0, callers[1].0, callers[2].0
    );
    let mut all: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); callers.len()]; OUTAGES.len()];
    for (o, outage) in OUTAGES.iter().enumerate() {
        for trial in 1..=trials {
            server.kill().await.expect("kill redis-server");
            tokio::time::sleep(*outage).await;
            let (restarted, ready) = RedisServer::start(port, &dir.0).await.expect("restart");
            server = restarted;
            let mut row = format!("{:>8.2?} {trial:>6}", outage);
            for (c, (_, successes)) in callers.iter().enumerate() {
                let deadline = ready + Duration::from_secs(30);
                let first = loop {
                    if let Some(t) = first_after(successes, ready) {
                        break Some(t);
                    }
                    if Instant::now() > deadline {
                        break None;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                };
                match first {
                    Some(t) => {
                        let ms = (t - ready).as_secs_f64() * 1e3;
                        all[o][c].push(ms);
                        row += &format!(" {:>8.1}ms", ms);
                    }
                    None => row += &format!(" {:>10}", ">30s"),
                }
            }
            println!("{row}");
        }
    }
    println!();
    println!("median per outage (ms):");
    for (o, outage) in OUTAGES.iter().enumerate() {
        let mut row = format!("{:>8.2?} {:>6}", outage, "");
        for times in &mut all[o] {
            times.sort_by(f64::total_cmp);
            let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
            row += &format!(" {median:>8.1}ms");
        }
        println!("{row}");
    }
    pc_exp.close().await;
    pc_flat.close().await;
    drop(manager);
    server.kill().await.expect("kill redis-server");
}
