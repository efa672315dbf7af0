//! The cost of `connected()` on a connected handle, next to a clone of the connection it
//! hands out (the floor: `connected()` returns a clone).
//!
//! One persistent connection (Tokio adapter, `Tracked<TcpStream>`, default settings) to a
//! local listener, connected and idle. Criterion times:
//!
//! * `connected_poll`: `pc.connected()` created and polled once with a no-op waker (it is
//!   ready at once: the connection is current and not closed), the connection dropped;
//! * `current_connection`: `pc.current_connection()` (no wait, no closed check);
//! * `clone_connection`: a clone of the `Tracked<TcpStream>` it hands out, dropped.
//!
//! Then a summary prints the median ns of each (41 batches) and the allocations per call
//! over 1,000,000 calls, counted by a global allocator in this binary (goal: none).
//!
//! Run: `cargo bench -p persistent-connection-benches --bench connected`

use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::Criterion;
use persistent_connection_benches::{full_run, note_smoke_run};
use persistent_connection_tokio::{PersistentConnection, Tracked, builder};
use tokio::net::TcpStream;

#[global_allocator]
static GLOBAL: persistent_connection_benches::CountingAlloc =
    persistent_connection_benches::CountingAlloc;

type Pc = PersistentConnection<SocketAddr, Tracked<TcpStream>, std::io::Error>;

/// `connected()`, polled once; panics if it is not ready at once.
fn connected_now(pc: &Pc) -> Tracked<TcpStream> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(pc.connected()).as_mut().poll(&mut cx) {
        Poll::Ready(conn) => conn,
        Poll::Pending => panic!("connected() was not ready on a connected handle"),
    }
}

/// One operation on the handle or the connection it handed out.
type Op = fn(&Pc, &Tracked<TcpStream>);

/// The three operations, by name.
fn ops() -> [(&'static str, Op); 3] {
    [
        ("connected_poll", |pc, _| drop(black_box(connected_now(pc)))),
        ("current_connection", |pc, _| {
            drop(black_box(pc.current_connection()));
        }),
        ("clone_connection", |_, conn| drop(black_box(conn.clone()))),
    ]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let (pc, conn, _listener) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let pc: Pc = builder(
            "connected",
            move || async move { Ok::<SocketAddr, std::io::Error>(addr) },
            |addr, _ctx| async move { TcpStream::connect(addr).await.map(Tracked::new) },
        )
        .spawn();
        let (accepted, _) = listener.accept().await.expect("accept");
        let conn = pc.connected().await;
        (pc, conn, (listener, accepted))
    });
    let _guard = rt.enter();

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(50)
        .configure_from_args();
    {
        let mut group = c.benchmark_group("connected");
        for (name, op) in ops() {
            group.bench_function(name, |b| b.iter(|| op(&pc, &conn)));
        }
        group.finish();
    }
    c.final_summary();
    if std::env::args().any(|a| a == "--profile-time") {
        return;
    }

    let (batches, per_batch, long_run) = if full_run() {
        (41, 200_000, 1_000_000)
    } else {
        (3, 100, 1_000)
    };
    println!();
    note_smoke_run();
    println!("== connected: on a connected handle, next to a clone of the connection ==");
    println!(
        "{:<20} {:>10} {:>10} {:>22}",
        "operation", "median ns", "vs clone", "allocations (calls)"
    );
    let mut results = Vec::new();
    for (name, op) in ops() {
        let mut samples: Vec<f64> = (0..batches)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..per_batch {
                    op(&pc, &conn);
                }
                start.elapsed().as_secs_f64() * 1e9 / per_batch as f64
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        let before = persistent_connection_benches::ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..long_run {
            op(&pc, &conn);
        }
        let allocs = persistent_connection_benches::ALLOCATIONS.load(Ordering::Relaxed) - before;
        results.push((name, samples[samples.len() / 2], allocs));
    }
    let clone_ns = results
        .iter()
        .find(|r| r.0 == "clone_connection")
        .map_or(f64::NAN, |r| r.1);
    for (name, ns, allocs) in &results {
        println!(
            "{name:<20} {ns:>10.1} {:>9.2}x {allocs:>10} ({long_run})",
            ns / clone_ns
        );
    }
    let connected_allocs = results[0].2;
    println!(
        "connected() on a connected handle: {connected_allocs} allocations in {long_run} calls (goal 0: {})",
        if connected_allocs == 0 {
            "met"
        } else {
            "MISSED"
        }
    );
}
