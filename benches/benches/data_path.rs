//! The data path: 64 MiB echoed through the connection we hand out against a raw
//! `TcpStream`, over loopback. Goal: 1.00x, we add nothing to the data path.
//!
//! The connection a persistent connection hands out (`connected().await`) is the
//! application's own type; here the documented one, `Tracked<TcpStream>`, an `Arc` around
//! the Tokio stream with a close signal beside it. The bytes go through `&TcpStream`
//! (`Deref`), so the same function echoes through both:
//!
//! * **ours**: `&*conn`, with `conn` from `connected()` (the persistent connection runs on);
//! * **raw**: `&stream`, a `TcpStream` connected by hand;
//! * **raw, split**: the idiomatic `stream.split()` with `AsyncReadExt`/`AsyncWriteExt`,
//!   for reference (it shows the `&TcpStream` style costs nothing either).
//!
//! Every run uses a fresh connection (a socket's buffers adapt to its history, so reusing
//! one socket per variant compares sockets, not code): ours closes the connection it was
//! handed and the persistent connection re-dials at once (retry delay 0); raw connects
//! anew. Each run first checks an 8-byte echo (so the server has accepted), then times the
//! 64 MiB: the client writes 64 KiB chunks while it reads the echo back. The echo server
//! runs on the client's current-thread runtime (one core). Criterion measures each
//! (throughput in bytes); then a summary runs the three in interleaved rounds and prints
//! the ratios.
//!
//! Run: `cargo bench -p persistent-connection-benches --bench data_path`

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use persistent_connection_benches::{
    EchoServer, ServerThread, Stats, echo_through_ref, echo_through_split, full_run,
    note_smoke_run, ping_ref, ratio,
};
use persistent_connection_tokio::{Backoff, PersistentConnection, Tracked, builder};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

const TOTAL: usize = 64 * 1024 * 1024;

type Conn = PersistentConnection<SocketAddr, Tracked<TcpStream>, io::Error>;

/// What the benches echo through.
struct Setup {
    rt: Runtime,
    _servers: ServerThread,
    addr: SocketAddr,
    pc: Conn,
}

impl Setup {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime");
        // The server shares the client's thread: one core, no cross-core scheduling, which
        // on a shared 2-core machine made the runs bimodal (33 ms or 77 ms at random). Set
        // DATA_PATH_SERVER_THREAD=1 to give it its own thread.
        let servers = ServerThread::start();
        let server = if std::env::var_os("DATA_PATH_SERVER_THREAD").is_some() {
            EchoServer::start_on(servers.handle()).expect("server")
        } else {
            EchoServer::start_on(rt.handle()).expect("server")
        };
        let addr = server.addr();
        let pc = rt.block_on(async {
            let pc = builder(
                "echo",
                move || async move { Ok::<SocketAddr, io::Error>(addr) },
                |addr, _ctx| async move { TcpStream::connect(addr).await.map(Tracked::new) },
            )
            // Each run closes its connection (so that every run, ours or raw, uses a fresh
            // socket: a socket's buffers adapt to its history); re-dial at once.
            .retry_policy(Backoff::Constant(Duration::ZERO))
            .spawn();
            pc.connected().await;
            pc
        });
        Setup {
            rt,
            _servers: servers,
            addr,
            pc,
        }
    }

    /// Echoes through the connection handed out; returns the echo's duration.
    fn ours(&self, total: usize) -> Duration {
        self.rt.block_on(async {
            let conn = self.pc.connected().await;
            ping_ref(&conn).await.expect("echo"); // the server side is ready too
            let start = Instant::now();
            echo_through_ref(&conn, total).await.expect("echo");
            let took = start.elapsed();
            conn.signal().close(); // done with it: the next run gets a new one
            took
        })
    }

    /// Echoes through a raw stream, connected for this run.
    fn raw(&self, total: usize) -> Duration {
        self.rt.block_on(async {
            let stream = TcpStream::connect(self.addr).await.expect("connect");
            ping_ref(&stream).await.expect("echo");
            let start = Instant::now();
            echo_through_ref(&stream, total).await.expect("echo");
            start.elapsed()
        })
    }

    /// Echoes through a raw stream's halves, connected for this run.
    fn split(&self, total: usize) -> Duration {
        self.rt.block_on(async {
            let mut stream = TcpStream::connect(self.addr).await.expect("connect");
            ping_ref(&stream).await.expect("echo");
            let start = Instant::now();
            echo_through_split(&mut stream, total).await.expect("echo");
            start.elapsed()
        })
    }
}

fn criterion_benches(c: &mut Criterion, setup: &Setup, total: usize) {
    let mut group = c.benchmark_group("data_path");
    group
        .throughput(Throughput::Bytes(total as u64 * 2)) // out and back
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    group.bench_function("ours", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| setup.ours(total)).sum())
    });
    group.bench_function("raw", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| setup.raw(total)).sum())
    });
    group.bench_function("raw_split", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| setup.split(total)).sum())
    });
    group.finish();
}

fn summary(setup: &Setup, total: usize, rounds: usize) {
    let mut samples: [Vec<Duration>; 3] = Default::default();
    // ours / raw within each round: the two ran back to back, under the same conditions.
    let mut paired = Vec::new();
    for round in 0..rounds + 1 {
        let mut this_round = [Duration::ZERO; 3];
        for k in 0..3 {
            let which = (round + k) % 3;
            this_round[which] = match which {
                0 => setup.ours(total),
                1 => setup.raw(total),
                _ => setup.split(total),
            };
        }
        if round > 0 {
            // Round 0 warms up.
            for (all, took) in samples.iter_mut().zip(this_round) {
                all.push(took);
            }
            paired.push(ratio(this_round[0], this_round[1]));
        }
    }
    // DATA_PATH_DUMP=1 prints every sample (to see the distribution).
    if std::env::var_os("DATA_PATH_DUMP").is_some() {
        for (name, all) in ["ours", "raw", "split"].iter().zip(&samples) {
            let ms: Vec<String> = all
                .iter()
                .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
                .collect();
            println!("{name:>6} ms: {}", ms.join(" "));
        }
    }
    paired.sort_by(f64::total_cmp);
    let paired_median = paired[paired.len() / 2];
    let [ours, raw, split] = samples.map(|mut s| Stats::of(&mut s));
    let mib = total as f64 / (1024.0 * 1024.0);
    println!();
    note_smoke_run();
    println!(
        "== data_path: {mib:.0} MiB echoed (out and back), loopback, {rounds} interleaved rounds =="
    );
    println!(
        "{:<40} {:>10} {:>10} {:>10} {:>10}",
        "through", "median ms", "p10 ms", "p90 ms", "MiB/s each way"
    );
    for (name, s) in [
        ("ours: the connection handed out", ours),
        ("raw TcpStream (same code, &TcpStream)", raw),
        ("raw TcpStream, split + AsyncRead/Write", split),
    ] {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{name:<40} {:>10.1} {:>10.1} {:>10.1} {:>10.0}",
            ms(s.median),
            ms(s.p10),
            ms(s.p90),
            mib / s.median.as_secs_f64()
        );
    }
    let r = ratio(ours.median, raw.median);
    // Noise floor: how far apart the raw stream's own p10 and p90 are, relative to its median.
    let noise = ratio(raw.p90, raw.median) - ratio(raw.p10, raw.median);
    println!(
        "ours / raw = {r:.3}x (goal 1.00x; the raw stream's own p10..p90 spread is {:.1}%)",
        noise * 100.0
    );
    println!("median of the per-round ratios ours / raw = {paired_median:.3}x");
    println!(
        "ours / raw split = {:.3}x",
        ratio(ours.median, split.median)
    );
}

fn main() {
    let (total, rounds) = if full_run() {
        (TOTAL, 25)
    } else {
        (1 << 20, 2)
    };
    let setup = Setup::new();
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &setup, total);
    c.final_summary();
    if !std::env::args().any(|a| a == "--profile-time") {
        summary(&setup, total, rounds);
    }
}
