//! Failover under load: two in-process replicas of a small tarpc service publish their
//! address in a catalog; a persistent connection looks the catalog up before every attempt;
//! a caller makes a call every 10 ms; we kill the live replica (and start a fresh one to
//! take its place in the catalog) a few times, and print how many calls failed during
//! each failover and how long it took.
//!
//! Run: `cargo run -p persistent-connection-tarpc --example rpc` (a few seconds).
//!
//! The caller uses `current_connection()`, so a call made while no connection is up fails
//! at once ("not connected") instead of waiting: that is what makes failed calls visible.
//! A caller that awaits `connected()` instead would wait for the next replica.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use persistent_connection_tarpc::{Event, PersistentRpc};
use support::{Catalog, GreeterClient, Replica};
use tarpc::context;

const ROUNDS: usize = 5;
const CALL_EVERY: Duration = Duration::from_millis(10);
const LOAD_BETWEEN_KILLS: Duration = Duration::from_millis(400);

/// One call: when it was made, when it finished, and which replica answered (`Err` if none).
struct Call {
    sent: Instant,
    done: Instant,
    outcome: Result<String, String>,
}

#[tokio::main]
async fn main() {
    let start = Instant::now();
    let catalog = Catalog::default();
    let mut replicas = Vec::new();
    for name in ["r1", "r2"] {
        let replica = Replica::start(name).await.expect("a replica");
        catalog.publish(&replica);
        replicas.push(replica);
    }

    // When each `Connected` was reported.
    let connected_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let lookup = catalog.clone();
    let on_connected = connected_at.clone();
    let greeter: PersistentRpc<SocketAddr, GreeterClient> = persistent_connection_tarpc::builder(
        "greeter",
        move || {
            let catalog = lookup.clone();
            async move { catalog.lookup().await }
        },
        GreeterClient::new,
    )
    .retry_delay(|_| Duration::from_millis(100))
    .on_event(move |event| {
        let at = Instant::now();
        if let Event::Connected(_) = &event {
            on_connected.lock().unwrap().push(at);
        }
        let line = match &event {
            Event::ObtainedAddress(addr) => format!("ObtainedAddress({addr})"),
            Event::FailedToConnect(e) => format!("FailedToConnect({e})"),
            other => other.name().to_string(),
        };
        async move { println!("{:>8.1?}  event: {line}", at - start) }
    })
    .spawn();
    greeter.connected().await;

    // The caller: a call every 10 ms, each in its own task so a slow one never delays the
    // next.
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let load = {
        let greeter = greeter.clone();
        let calls = calls.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CALL_EVERY);
            loop {
                tick.tick().await;
                let current = greeter.current_connection().filter(|c| !c.is_closed());
                let calls = calls.clone();
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let outcome = match current {
                        None => Err("not connected".to_string()),
                        Some(client) => {
                            let call = client.replica(context::current());
                            match tokio::time::timeout(Duration::from_secs(1), call).await {
                                Ok(Ok(replica)) => Ok(replica),
                                Ok(Err(e)) => Err(e.to_string()),
                                Err(_) => Err("no answer within 1 s".to_string()),
                            }
                        }
                    };
                    let done = Instant::now();
                    calls.lock().unwrap().push(Call {
                        sent,
                        done,
                        outcome,
                    });
                });
            }
        })
    };

    let mut summary = Vec::new();
    for round in 1..=ROUNDS {
        tokio::time::sleep(LOAD_BETWEEN_KILLS).await;
        // Kill the live replica: the one the current connection talks to, first in the
        // catalog. A fresh one takes its place at the end of the list.
        let live = replicas.remove(0);
        let name = live.name.clone();
        println!("{:>8.1?}  killing {name}", start.elapsed());
        catalog.withdraw(&live);
        let killed = Instant::now();
        live.kill().await;
        let fresh = Replica::start(&format!("r{}", round + 2))
            .await
            .expect("a replica");
        catalog.publish(&fresh);
        replicas.push(fresh);
        greeter.connected().await;
        summary.push((round, name, killed));
    }
    tokio::time::sleep(LOAD_BETWEEN_KILLS).await;
    load.abort();
    greeter.close().await;

    for replica in replicas {
        replica.kill().await;
    }

    let calls = std::mem::take(&mut *calls.lock().unwrap());
    let connected_at = std::mem::take(&mut *connected_at.lock().unwrap());
    println!();
    println!(
        "{} calls, one every {CALL_EVERY:?}; {} failed in all",
        calls.len(),
        calls.iter().filter(|c| c.outcome.is_err()).count()
    );
    println!("round  killed  failed calls  kill -> Connected  kill -> first good call");
    for (round, name, killed) in summary {
        // Calls that failed from just before the kill until the next good answer.
        let first_good = calls
            .iter()
            .filter(|c| c.sent >= killed && c.outcome.as_ref().is_ok_and(|r| *r != name))
            .map(|c| c.done)
            .min();
        let failed = calls
            .iter()
            .filter(|c| c.done >= killed && first_good.is_none_or(|g| c.sent <= g))
            .filter(|c| c.outcome.is_err())
            .count();
        let reconnected = connected_at.iter().copied().find(|t| *t >= killed);
        println!(
            "{round:>5}  {name:>6}  {failed:>12}  {:>17}  {:>23}",
            show(reconnected.map(|t| t - killed)),
            show(first_good.map(|t| t - killed)),
        );
    }
    let mut errors: Vec<&str> = calls
        .iter()
        .filter_map(|c| c.outcome.as_ref().err().map(String::as_str))
        .collect();
    errors.sort_unstable();
    errors.dedup();
    if !errors.is_empty() {
        println!("errors seen: {errors:?}");
    }
}

fn show(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "-".to_string(), |d| format!("{d:.2?}"))
}
