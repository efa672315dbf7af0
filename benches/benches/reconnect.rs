//! Reconnect latency: the time from the death of a long-lived connection (the server
//! closes it) to a working new connection, confirmed by an echo, over loopback.
//!
//! The clients run side by side on one current-thread Tokio runtime; each has its own
//! in-process echo server, and the servers run on a second thread (as a server in another
//! process would: its work does not queue behind the client's). The clients are measured
//! in interleaved rounds (the order rotates every round) so that they share the machine's
//! conditions:
//!
//! * **ours**: the Tokio adapter, `Tracked<TcpStream>` connections, the address looked up
//!   in a catalog before every attempt, retry delay 1 ms without jitter. The application
//!   reads its connection; on EOF it raises the connection's close signal and awaits
//!   `connected()`. The connection has lived 5 ms, longer than its attempt's retry delay,
//!   so it is "long-lived" (R7): its retry timer has fired and the new cycle starts at once.
//! * **hand-written**: the loop a Tokio user writes instead: read until EOF, look the
//!   address up, `TcpStream::connect`, on failure sleep with backoff and retry.
//! * **stubborn-io**: `StubbornTcpStream` with its fastest schedule (a zero delay before
//!   every reconnect; its default waits 4 s). It reconnects inside `poll_read` and reports
//!   the new connection through `on_connect_callback`.
//! * **ours, virtual-clock timers** (diagnostic): ours with its sleeps on a
//!   `VirtualClock` (advanced by hand), i.e. without registering Tokio timers.
//! * **calibration** (only when named in `RECONNECT_ONLY`: `cold`, `hot`): the hand-written
//!   loop that also runs, after each EOF, about 7,200 instructions of straight-line code
//!   run nowhere else (`cold`: some 650 cache lines of code, none of them touched since the
//!   last round) or about as many in a loop of a few lines (`hot`). What a round's extra
//!   code costs when it runs cold, against the same count of instructions run warm
//!   (BENCHMARKS.md, F7).
//! * **two tasks** (only when named: `split`): the hand-written loop cut where the library
//!   cuts it: a connector task dials when told and hands the stream over on a channel; the
//!   application task reads until EOF, tells the connector, and awaits the next stream. The
//!   floor of any design with a background task (BENCHMARKS.md, F7).
//! * **loop + Machine** (only when named: `machine`): the hand-written loop that also takes
//!   a bare Machine through one reconnection after each EOF, the inputs ours' driver feeds
//!   it (closed, four events handled, address, dial, timer): what the Machine's own code
//!   costs in the round (BENCHMARKS.md, F7).
//!
//! Each round: wait 5 ms, take the time, kill the client's connection on the server, and stop
//! the clock when the client has its echo back. Printed: median, p10, p90 and allocations
//! (whole process, median) per round for each client, the ratios of ours against each
//! comparison (goals: <= 1.10x the hand-written loop, below stubborn-io), and, as a
//! diagnostic, the driver's own time and allocations per reconnection without any I/O.
//!
//! Knobs for profiling: `RECONNECT_ONLY=ours,hand,stubborn,virtual` (which clients, in what
//! order; also `cold`, `hot`, `split`, `machine`: the calibration clients),
//! `RECONNECT_ROUNDS=n`, `RECONNECT_HOT=1` (no idle gap for the clients whose timers allow
//! it: warm caches).
//!
//! Run: `cargo bench -p persistent-connection-benches --bench reconnect`

use std::hint::black_box;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use persistent_connection::{AttemptId, Command, Config, Input, Machine, RetryPolicy, TimerId};
use persistent_connection_benches::{
    Catalog, EchoServer, PING, ServerThread, Stats, full_run, note_smoke_run, ping_ref, ratio, us,
    wait_eof,
};
use persistent_connection_tokio::{
    Backoff, CloseSignal, Jitter, Tokio, Tracked, VirtualClock, builder,
};
use stubborn_io::{ReconnectOptions, StubbornTcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

#[global_allocator]
static GLOBAL: persistent_connection_benches::CountingAlloc =
    persistent_connection_benches::CountingAlloc;

/// How long each connection lives before it is killed: longer than the retry delay.
const LIFETIME: Duration = Duration::from_millis(5);
/// Our retry delay (jitter off): the timer of the attempt that made the connection.
const RETRY_DELAY: Duration = Duration::from_millis(1);

/// The name of our client in the table.
const OURS: &str = "ours (tokio adapter)";

/// The name of the hand-written loop in the table.
const HAND: &str = "hand-written loop";

/// The name of the stubborn-io client in the table.
const STUBBORN: &str = "stubborn-io (zero delay)";

/// The names of the calibration clients in the table.
const HAND_COLD: &str = "hand-written + cold code";
const HAND_HOT: &str = "hand-written + hot code";
/// The name of the hand-written loop that also runs a bare Machine's reconnection.
const HAND_MACHINE: &str = "hand-written + Machine";
/// The name of the hand-written loop cut in two tasks.
const SPLIT: &str = "hand-written, two tasks";

/// A client under test, running in its own task; it sends the instant its echo came back
/// after each reconnection.
struct Client {
    name: &'static str,
    server: EchoServer,
    echoed: mpsc::UnboundedReceiver<Instant>,
    samples: Vec<Duration>,
    /// Allocations in the process during each measured round (the server's included).
    allocations: Vec<u64>,
    /// The virtual clock the client's timers run on, if any (diagnostic variant).
    clock: Option<VirtualClock>,
}

impl Client {
    async fn new(
        name: &'static str,
        server: EchoServer,
        mut echoed: mpsc::UnboundedReceiver<Instant>,
    ) -> Self {
        // The first echo: connected and ready.
        echoed.recv().await.expect("the client task runs");
        Client {
            name,
            server,
            echoed,
            samples: Vec::new(),
            allocations: Vec::new(),
            clock: None,
        }
    }

    /// One round: kill the connection once it has lived `LIFETIME`; time until the echo.
    async fn round(&mut self) -> (Duration, u64) {
        match std::env::var("RECONNECT_HOT") {
            // Diagnostic: back-to-back rounds (caches stay warm); only for clients whose
            // retry timer is virtual or absent.
            Ok(_) if self.name != OURS => tokio::task::yield_now().await,
            _ => tokio::time::sleep(LIFETIME).await,
        }
        if let Some(clock) = &self.clock {
            clock.advance(LIFETIME); // the retry timer fires on the virtual clock
            tokio::task::yield_now().await;
        }
        let allocations = persistent_connection_benches::ALLOCATIONS.load(Ordering::Relaxed);
        let start = Instant::now();
        self.server.kill_all();
        let end = self.echoed.recv().await.expect("the client task runs");
        (
            end.duration_since(start),
            persistent_connection_benches::ALLOCATIONS.load(Ordering::Relaxed) - allocations,
        )
    }
}

/// Ours: the Tokio adapter; with `clock`, its sleeps run on that virtual clock instead of
/// Tokio's timer (a diagnostic: what registering Tokio timers costs).
async fn ours(server: EchoServer, clock: Option<VirtualClock>) -> Client {
    let catalog = Catalog::new(server.addr());
    let (tx, rx) = mpsc::unbounded_channel();
    let pc = builder(
        "echo",
        move || {
            let addr = catalog.get();
            async move { Ok::<SocketAddr, io::Error>(addr) }
        },
        |addr, _ctx| async move { TcpStream::connect(addr).await.map(Tracked::new) },
    )
    .retry_policy(Backoff::Constant(RETRY_DELAY))
    .jitter(Jitter::Off);
    let pc = match &clock {
        Some(clock) => pc.runtime(clock.runtime(Tokio::current())),
        None => pc,
    }
    .spawn();
    tokio::spawn(async move {
        let mut conn = pc.connected().await;
        loop {
            ping_ref(&conn).await.expect("echo");
            if tx.send(Instant::now()).is_err() {
                return;
            }
            wait_eof(&conn).await;
            conn.signal().close(); // the application saw it die
            conn = pc.connected().await;
        }
    });
    let name = if clock.is_some() {
        "ours, virtual-clock timers"
    } else {
        OURS
    };
    let mut client = Client::new(name, server, rx).await;
    client.clock = clock;
    client
}

/// The hand-written loop cut in two tasks, as the library cuts it: a connector task that
/// dials when told and hands the stream over, and the application task that reads until
/// EOF, tells the connector, and awaits the next stream. Tokio's own channel and `Notify`
/// carry the hand-over: the least a background task can add to the loop.
async fn split(server: EchoServer) -> Client {
    let catalog = Catalog::new(server.addr());
    let (tx, rx) = mpsc::unbounded_channel();
    let (streams_tx, mut streams) = mpsc::channel::<TcpStream>(1);
    let died = Arc::new(Notify::new());
    let told = died.clone();
    // The connector: dials, hands the stream over, waits to be told it died.
    tokio::spawn(async move {
        loop {
            let stream = loop {
                match TcpStream::connect(catalog.get()).await {
                    Ok(stream) => break stream,
                    Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            };
            if streams_tx.send(stream).await.is_err() {
                return;
            }
            told.notified().await;
        }
    });
    tokio::spawn(async move {
        loop {
            let Some(stream) = streams.recv().await else {
                return;
            };
            ping_ref(&stream).await.expect("echo");
            if tx.send(Instant::now()).is_err() {
                return;
            }
            wait_eof(&stream).await;
            died.notify_one();
        }
    });
    Client::new(SPLIT, server, rx).await
}

/// What the hand-written loop runs after each EOF besides reconnecting: nothing, or one
/// of the calibration codes.
#[derive(Clone, Copy)]
enum Extra {
    Nothing,
    Cold,
    Hot,
    Machine,
}

/// A bare Machine with ours' configuration (retry 1 ms, no jitter), taken through one
/// reconnection per [`cycle`](Self::cycle) as ours' driver takes it: the connection closes,
/// `Disconnected` and `AttemptingToConnect` are handled, the address comes (reported, as the
/// first of a cycle), the dial succeeds, `Connected` is handled, the retry timer fires.
struct MachineCycle {
    machine: Machine<SocketAddr, Arc<()>, io::Error>,
    attempt: AttemptId,
    timer: TimerId,
    address: SocketAddr,
    conn: Arc<()>,
}

impl MachineCycle {
    /// A Machine connected, its retry timer fired (a long-lived connection).
    fn new(address: SocketAddr) -> Self {
        let config = Config::new()
            .retry_policy(RetryPolicy::Constant(RETRY_DELAY))
            .jitter(Jitter::Off);
        let mut cycle = MachineCycle {
            machine: Machine::new(config, 7),
            attempt: AttemptId(0),
            timer: TimerId(0),
            address,
            conn: Arc::new(()),
        };
        cycle.drain();
        cycle.connect();
        cycle
    }

    /// Feeds `input` and carries out nothing of the commands but what the next inputs need.
    fn feed(&mut self, input: Input<SocketAddr, Arc<()>, io::Error>) {
        let accepted = self.machine.handle_input(input).is_ok();
        assert!(accepted, "the Machine's cycle went out of step");
        self.drain();
    }

    /// Takes every command out, keeping the ids the next inputs name.
    fn drain(&mut self) {
        while let Some(command) = self.machine.poll_command() {
            match &command {
                Command::StartTimer { timer, .. } => self.timer = *timer,
                Command::FetchAddress { attempt } => self.attempt = *attempt,
                _ => {}
            }
            black_box(command);
        }
    }

    /// From `AttemptingToConnect` handled to connected, the retry timer fired.
    fn connect(&mut self) {
        self.feed(Input::EventHandled);
        self.feed(Input::AddressObtained {
            attempt: self.attempt,
            result: Ok(self.address),
        });
        self.feed(Input::EventHandled);
        self.feed(Input::Dialed {
            attempt: self.attempt,
            result: Ok(self.conn.clone()),
        });
        self.feed(Input::EventHandled);
        self.feed(Input::TimerFired(self.timer));
    }

    /// One reconnection.
    fn cycle(&mut self) {
        self.feed(Input::ConnectionClosed {
            attempt: self.attempt,
        });
        self.feed(Input::EventHandled);
        self.connect();
    }
}

/// The hand-written Tokio reconnect loop (with `extra`: a calibration client).
async fn hand_written(server: EchoServer, extra: Extra) -> Client {
    async fn connect(catalog: &Catalog) -> TcpStream {
        let mut backoff = Duration::from_millis(1);
        loop {
            match TcpStream::connect(catalog.get()).await {
                Ok(stream) => return stream,
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
    let catalog = Catalog::new(server.addr());
    let (tx, rx) = mpsc::unbounded_channel();
    let mut machine = matches!(extra, Extra::Machine).then(|| MachineCycle::new(server.addr()));
    tokio::spawn(async move {
        let mut stream = connect(&catalog).await;
        loop {
            ping_ref(&stream).await.expect("echo");
            if tx.send(Instant::now()).is_err() {
                return;
            }
            wait_eof(&stream).await;
            match extra {
                Extra::Nothing => {}
                Extra::Cold => drop(black_box(cold_code(black_box(7)))),
                Extra::Hot => drop(black_box(hot_code(black_box(7), HOT_ITERATIONS))),
                Extra::Machine => {
                    if let Some(machine) = &mut machine {
                        machine.cycle();
                    }
                }
            }
            stream = connect(&catalog).await;
        }
    });
    let name = match extra {
        Extra::Nothing => HAND,
        Extra::Cold => HAND_COLD,
        Extra::Hot => HAND_HOT,
        Extra::Machine => HAND_MACHINE,
    };
    Client::new(name, server, rx).await
}

/// One step of the calibration code: a dependent chain (nothing to fold or reorder) whose
/// constants come from the step's index, so that no two steps are the same code.
macro_rules! step {
    ($x:ident, $i:expr) => {
        $x = ($x ^ const { splitmix($i) })
            .rotate_left(const { (splitmix($i + 1) % 63 + 1) as u32 })
            .wrapping_add(const { splitmix($i + 2) >> 40 });
    };
}
/// `$m!` eight times, at indices `$b * 8` to `$b * 8 + 7`: nested, 8, 64 and 512 steps.
macro_rules! times8 {
    ($m:ident, $x:ident, $b:expr) => {
        $m!($x, $b * 8);
        $m!($x, $b * 8 + 1);
        $m!($x, $b * 8 + 2);
        $m!($x, $b * 8 + 3);
        $m!($x, $b * 8 + 4);
        $m!($x, $b * 8 + 5);
        $m!($x, $b * 8 + 6);
        $m!($x, $b * 8 + 7);
    };
}
macro_rules! steps8 {
    ($x:ident, $b:expr) => {
        times8!(step, $x, $b)
    };
}
macro_rules! steps64 {
    ($x:ident, $b:expr) => {
        times8!(steps8, $x, $b)
    };
}
macro_rules! steps512 {
    ($x:ident, $b:expr) => {
        times8!(steps64, $x, $b)
    };
}

/// SplitMix64's output function: the calibration code's constants.
const fn splitmix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The cold calibration code: 1,792 distinct steps, straight-line, run nowhere else.
#[inline(never)]
fn cold_code(mut x: u64) -> u64 {
    steps512!(x, 0);
    steps512!(x, 1);
    steps512!(x, 2);
    steps64!(x, 24);
    steps64!(x, 25);
    steps64!(x, 26);
    steps64!(x, 27);
    x
}

/// How many times `hot_code` loops: about as many instructions as `cold_code` runs.
const HOT_ITERATIONS: u64 = 300;

/// The hot calibration code: a dependent chain of xors and rotations like the cold code's,
/// its constants computed as it goes, in a loop of a few cache lines.
#[inline(never)]
fn hot_code(mut x: u64, iterations: u64) -> u64 {
    for i in 0..iterations {
        x = (x ^ splitmix(i)).rotate_left((i % 63 + 1) as u32);
    }
    x
}

/// stubborn-io, with zero delays (its fastest).
async fn stubborn(server: EchoServer) -> Client {
    let (tx, rx) = mpsc::unbounded_channel();
    let reconnected = Arc::new(Notify::new());
    let notify = reconnected.clone();
    let options = ReconnectOptions::new()
        .with_retries_generator(|| std::iter::repeat(Duration::ZERO))
        .with_on_connect_callback(move || notify.notify_one());
    let mut stream = StubbornTcpStream::connect_with_options(server.addr(), options)
        .await
        .expect("stubborn-io connects");
    reconnected.notified().await; // the permit of the first connection
    tokio::spawn(async move {
        let mut back = [0u8; 8];
        loop {
            stream.write_all(PING).await.expect("echo");
            stream.read_exact(&mut back).await.expect("echo");
            assert_eq!(&back, PING);
            if tx.send(Instant::now()).is_err() {
                return;
            }
            // Reading drives its reconnection; the callback says when it is done.
            let mut buf = [0u8; 64];
            loop {
                tokio::select! {
                    biased;
                    _ = reconnected.notified() => break,
                    read = stream.read(&mut buf) => {
                        if read.is_err() {
                            return; // gave up (never, with an endless schedule)
                        }
                    }
                }
            }
        }
    });
    Client::new(STUBBORN, server, rx).await
}

async fn bench(servers: &ServerThread, warmup: usize, rounds: usize) -> Vec<Client> {
    // RECONNECT_ONLY=ours,hand,stubborn,virtual (any of them) runs only those clients, in
    // that order (for profilers and for checking order effects).
    let only = std::env::var("RECONNECT_ONLY")
        .unwrap_or_else(|_| String::from("ours,hand,stubborn,virtual"));
    let mut clients = Vec::new();
    for name in only.split(',') {
        let server = EchoServer::start_on(servers.handle()).expect("server");
        clients.push(match name {
            "ours" => ours(server, None).await,
            "hand" => hand_written(server, Extra::Nothing).await,
            "cold" => hand_written(server, Extra::Cold).await,
            "hot" => hand_written(server, Extra::Hot).await,
            "stubborn" => stubborn(server).await,
            "split" => split(server).await,
            "machine" => hand_written(server, Extra::Machine).await,
            "virtual" => ours(server, Some(VirtualClock::new())).await,
            other => panic!("RECONNECT_ONLY: unknown client {other:?}"),
        });
    }
    let n = clients.len();
    for round in 0..warmup + rounds {
        for k in 0..n {
            let client = &mut clients[(round + k) % n];
            let (took, allocations) = client.round().await;
            if round >= warmup {
                client.samples.push(took);
                client.allocations.push(allocations);
            }
        }
    }
    for client in &clients {
        // Every round made exactly one new connection per client: nothing was retried.
        let expected = (warmup + rounds + 1) as u64;
        if client.server.accepted() != expected {
            println!(
                "note: {} made {} connections for {} rounds",
                client.name,
                client.server.accepted(),
                warmup + rounds
            );
        }
    }
    clients
}

/// The driver's own cost per reconnection, without I/O: connections are bare
/// `CloseSignal`s, the address and the dial are ready at once, the retry delay is zero (so
/// no timer is started). The loop closes the connection and awaits the next one.
async fn driver_cycle(cycles: u32) -> (Duration, f64) {
    let pc = builder(
        "no-io",
        || async { Ok::<u16, io::Error>(7) },
        |_addr, _ctx| async { Ok::<CloseSignal, io::Error>(CloseSignal::new()) },
    )
    .retry_policy(Backoff::Constant(Duration::ZERO))
    .spawn();
    let mut conn = pc.connected().await;
    for _ in 0..cycles / 10 {
        conn.close(); // warm up
        conn = pc.connected().await;
    }
    let allocations = persistent_connection_benches::ALLOCATIONS.load(Ordering::Relaxed);
    let start = Instant::now();
    for _ in 0..cycles {
        conn.close();
        conn = pc.connected().await;
    }
    let took = start.elapsed() / cycles;
    let allocations =
        persistent_connection_benches::ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    (took, allocations as f64 / f64::from(cycles))
}

fn main() {
    let (warmup, mut rounds) = if full_run() { (20, 200) } else { (1, 3) };
    // RECONNECT_ROUNDS=n: a different number of measured rounds (for profilers).
    if let Some(n) = std::env::var("RECONNECT_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        rounds = n;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let servers = ServerThread::start();
    let mut clients = rt.block_on(bench(&servers, warmup, rounds));
    note_smoke_run();
    println!(
        "== reconnect: long-lived connection killed by the server -> new connection echo-confirmed =="
    );
    println!(
        "loopback, clients on one current-thread Tokio runtime, servers on another thread, {rounds} interleaved rounds (+{warmup} warm-up), lifetime {LIFETIME:?}, our retry delay {RETRY_DELAY:?}"
    );
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>14}",
        "client", "median us", "p10 us", "p90 us", "allocs/round"
    );
    // a / b within each round (same round: the same conditions), before the samples are
    // sorted.
    let find = |name: &str| clients.iter().position(|c| c.name == name);
    let paired_median = |a: &str, b: &str| match (find(a), find(b)) {
        (Some(a), Some(b)) => {
            let mut r: Vec<f64> = clients[a]
                .samples
                .iter()
                .zip(&clients[b].samples)
                .map(|(a, b)| ratio(*a, *b))
                .collect();
            r.sort_by(f64::total_cmp);
            r.get(r.len() / 2).copied()
        }
        _ => None,
    };
    let paired = paired_median(OURS, HAND);
    let calibration: Vec<(&str, f64)> = [OURS, HAND_COLD, HAND_HOT, SPLIT, HAND_MACHINE]
        .into_iter()
        .filter_map(|name| Some((name, paired_median(name, HAND)?)))
        .collect();
    let stats: Vec<Stats> = clients
        .iter_mut()
        .map(|c| Stats::of(&mut c.samples))
        .collect();
    for (client, s) in clients.iter_mut().zip(&stats) {
        client.allocations.sort_unstable();
        let allocations = client.allocations[client.allocations.len() / 2];
        println!(
            "{:<26} {:>10.1} {:>10.1} {:>10.1} {:>14}",
            client.name,
            us(s.median),
            us(s.p10),
            us(s.p90),
            allocations
        );
    }
    let median = |name: &str| {
        clients
            .iter()
            .zip(&stats)
            .find(|(c, _)| c.name == name)
            .map(|(_, s)| s.median)
    };
    let cycles = if full_run() && std::env::var_os("RECONNECT_ROUNDS").is_none() {
        100_000
    } else {
        100
    };
    let (per_cycle, allocations) = rt.block_on(driver_cycle(cycles));
    println!(
        "diagnostic: the driver alone, per reconnection without I/O (CloseSignal connections, zero delay): {:.2} us, {allocations:.1} allocations",
        us(per_cycle)
    );
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    if let (Some(ours), Some(hand)) = (median(OURS), median(HAND)) {
        let vs_hand = ratio(ours, hand);
        println!("ours / hand-written = {vs_hand:.3}x (ratio of the medians)");
    }
    if let Some(paired) = paired {
        println!(
            "median of the per-round ratios ours / hand-written = {paired:.3}x (goal <= 1.03x: {})",
            verdict(paired <= 1.03)
        );
    }
    let allocs = |name: &str| {
        clients
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.allocations[c.allocations.len() / 2])
    };
    if let (Some(ours), Some(hand)) = (allocs(OURS), allocs(HAND)) {
        println!(
            "allocations per reconnection (median round, whole process): ours {ours}, hand-written {hand}: {:+} (goal <= +4: {})",
            ours as i64 - hand as i64,
            verdict(ours <= hand + 4)
        );
    }
    if calibration.len() > 1 {
        let ratios: Vec<String> = calibration
            .iter()
            .map(|(name, r)| format!("{name} {r:.3}x"))
            .collect();
        println!(
            "calibration, median of the per-round ratios to the hand-written loop: {}",
            ratios.join(", ")
        );
    }
    if let (Some(ours), Some(stubborn)) = (median(OURS), median(STUBBORN)) {
        let vs_stubborn = ratio(ours, stubborn);
        println!(
            "ours / stubborn-io  = {vs_stubborn:.2}x (goal < 1.00x: {})",
            verdict(vs_stubborn < 1.0)
        );
    }
}
