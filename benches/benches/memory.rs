//! Memory and wake-ups of idle persistent connections.
//!
//! **RSS per idle connection** at 10,000 and 100,000 connections. Each measurement runs in
//! a fresh child process (this binary again, with `--child`), so allocator state from one
//! does not flatter the next; the servers that accept the connections run in another
//! child, so the client's RSS holds only the client side. The child records its RSS
//! (`VmRSS`) after its runtime has started, makes N connections, waits for all of them to
//! be connected, and records its RSS again: (after - before) / N. A counting global
//! allocator gives the live heap bytes per connection beside it. The kinds:
//!
//! * **ours**: a persistent connection (Tokio adapter, `Tracked<TcpStream>`, default
//!   settings), connected and idle: handle, driver task, Machine, channels, connection.
//! * **hand-written**: the loop a Tokio user writes instead: one task per connection that
//!   owns its `TcpStream`, parked in a read, ready to reconnect on EOF.
//! * **raw**: a bare `tokio::net::TcpStream` held in a `Vec` (no task): the floor.
//! * **ours + client task**: ours plus the user's client task a new user writes around a
//!   `Tracked<TcpStream>`: await `connected()`, read until EOF, close, again.
//! * **ours (Driven read loop)**: the natural user code with the driver's `Driven`: the
//!   connection is a `Driven` whose driving future is the read loop (it owns the stream and
//!   reads until EOF); the driver runs it as a task of its own. No other client task.
//! * **ours + subscriber**: ours with an `events()` and a `state_changes()` subscriber held
//!   per connection: the event buffer, state channel and waiter list are made lazily, so
//!   the difference from **ours** is what those features cost, and only their users pay.
//! * **ours, no socket**: ours with `CloseSignal` connections: no fd, so 100,000 fit even
//!   where sockets do not; the library's own cost per connection (and **.. + subscriber**).
//!
//! **Scaling**: the socket kinds are measured at 1,000, 5,000, 10,000 and 15,000
//! connections (the fd hard limit is 20,000 here), and the slope of the client's RSS
//! growth against N (least squares) is printed: the honest per-connection cost to project
//! to 100,000.
//!
//! **Where the bytes go**: after the 10,000 row of each kind, the client child makes one
//! more connection of that kind with the counting allocator's tracer on and lists the
//! heap blocks it made that are still live once connected and idle (sizes in bytes).
//!
//! The file-descriptor limit is raised with `setrlimit` (the `rlimit` crate); connections
//! are spread over several listening ports so that 100,000 of them fit in the ephemeral
//! port range. If a size does not fit the machine, the table says why.
//!
//! **Wake-ups while connected and idle** (goal 0): 1,000 persistent connections run on a
//! `Runtime` wrapper that counts every poll of the futures it spawns (the driver tasks);
//! after connecting (retry delay 300 ms, so each connection's retry timer fires once in
//! the first second), polls are counted over a 2 s idle window.
//!
//! Run: `cargo bench -p persistent-connection-benches --bench memory`

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use persistent_connection_benches::{
    Catalog, CountPolls, full_run, note_smoke_run, rss_bytes, wait_eof,
};
use persistent_connection_tokio::{
    AttemptContext, Backoff, CloseSignal, Connection, Driven, DriverEvent, Jitter,
    PersistentConnection, Tokio, Tracked, builder,
};
use tokio::net::TcpStream;
use tokio::sync::Notify;

#[global_allocator]
static GLOBAL: persistent_connection_benches::CountingAlloc =
    persistent_connection_benches::CountingAlloc;

/// Connections per listening port (the ephemeral port range holds about 28,000 per
/// destination).
const PER_PORT: usize = 20_000;
/// Connections made at once.
const BATCH: usize = 500;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        let rest = &args[at + 1..];
        match rest.first().map(String::as_str) {
            Some("server") => server_child(rest[1].parse().expect("a port count")),
            Some("client") => client_child(
                &rest[1],
                rest[2].parse().expect("a connection count"),
                &rest[3],
                rest.get(4).is_some_and(|t| t == "trace"),
            ),
            other => panic!("unknown child {other:?}"),
        }
        return;
    }
    let sizes: Vec<usize> = match std::env::var("MEMORY_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("MEMORY_SIZES: a comma-separated list of counts")
            })
            .collect(),
        Err(_) if full_run() => vec![1_000, 5_000, 10_000, 15_000, 100_000],
        Err(_) => vec![200],
    };
    // A part of the kinds, for a quick look: every kind whose name contains one of these.
    let only: Option<Vec<String>> = std::env::var("MEMORY_KINDS")
        .ok()
        .map(|list| list.split(',').map(|k| k.trim().to_owned()).collect());
    let wanted = |kind: &str| {
        only.as_ref()
            .is_none_or(|only| only.iter().any(|k| kind.contains(k.as_str())))
    };
    note_smoke_run();
    println!("== memory: RSS per idle connection (client process only) ==");
    println!(
        "size_of one queued event in a persistent connection's event buffer (made on the first events()): {} bytes",
        size_of::<(
            DriverEvent<SocketAddr, Tracked<TcpStream>, std::io::Error>,
            usize
        )>()
    );
    println!(
        "{:>8} {:<28} {:>11} {:>8} {:>8} {:>12}",
        "N", "kind", "RSS B/conn", "vs raw", "vs hand", "heap B/conn"
    );
    // kind -> (N, RSS growth in bytes) for the slope.
    let mut growth: Vec<(&str, Vec<(f64, f64)>)> = KINDS.iter().map(|k| (*k, Vec::new())).collect();
    let mut traces = Vec::new();
    for &n in &sizes {
        let mut results = Vec::new();
        for &kind in KINDS.iter().filter(|k| wanted(k)) {
            // 100,000 sockets do not fit (fd hard limit 20,000): only the socket-less kinds.
            if n > 20_000 && !kind.contains("no socket") {
                continue;
            }
            let trace = n == 10_000 || (!sizes.contains(&10_000) && n == sizes[0]);
            match measure(kind, n, trace) {
                Ok((per_conn, heap, blocks)) => {
                    results.push((kind, (per_conn, heap)));
                    if let Some(g) = growth.iter_mut().find(|g| g.0 == kind) {
                        g.1.push((n as f64, per_conn * n as f64));
                    }
                    if let Some(blocks) = blocks {
                        traces.push((kind, blocks));
                    }
                }
                Err(why) => println!("{n:>8} {kind:<28} does not fit: {why}"),
            }
        }
        let of = |k: &str| results.iter().find(|(kind, _)| *kind == k).map(|r| r.1);
        for (kind, (per_conn, heap)) in &results {
            let vs = |base: Option<(f64, f64)>| {
                base.map_or(String::from("-"), |b| format!("{:.2}x", per_conn / b.0))
            };
            println!(
                "{n:>8} {kind:<28} {per_conn:>11.0} {:>8} {:>8} {heap:>12.0}",
                vs(of("raw")),
                vs(of("hand-written"))
            );
        }
        // The two ways a user keeps a client: the driver runs its read loop (`Driven`), or
        // the user's own task reads and raises the close signal (`Tracked`, as the issue
        // describes the new user).
        for kind in [DRIVEN, CLIENT_TASK] {
            if let (Some(ours), Some(hand)) = (of(kind), of("hand-written")) {
                let extra = ours.0 - hand.0;
                println!(
                    "{n:>8} {kind} - hand-written = {extra:+.0} B RSS, {:+.0} B heap per connection (goal <= +1024 B: {})",
                    ours.1 - hand.1,
                    if extra <= 1024.0 { "met" } else { "MISSED" }
                );
            }
        }
        if let (Some(with), Some(without)) = (of("ours + subscriber"), of("ours")) {
            println!(
                "{n:>8} a subscriber (events + state_changes) adds {:+.0} B heap per connection; without one nothing is allocated for them",
                with.1 - without.1
            );
        }
    }
    println!();
    println!("== memory: scaling (least-squares slope of the client's RSS growth against N) ==");
    for (kind, points) in &growth {
        if points.len() < 2 {
            continue;
        }
        let slope = slope(points);
        let ns: Vec<String> = points.iter().map(|p| format!("{:.0}", p.0)).collect();
        println!(
            "{kind:<28} {slope:>8.0} B/conn over N = {} -> 100,000 connections: {:.0} MB",
            ns.join(", "),
            slope * 100_000.0 / 1e6
        );
    }
    println!();
    println!("== memory: heap blocks one more connection keeps, once connected and idle ==");
    for (kind, blocks) in &traces {
        let total: usize = blocks.iter().sum();
        let list: Vec<String> = blocks.iter().map(usize::to_string).collect();
        println!(
            "{kind:<28} {total:>6} B in {:>2} blocks: {}",
            blocks.len(),
            list.join(" ")
        );
    }
    println!();
    if wanted("wake-ups") {
        wakeups(if full_run() { 1_000 } else { 20 });
    }
}

/// The kinds of client, in the order they are measured.
const KINDS: &[&str] = &[
    "raw",
    "hand-written",
    "ours",
    CLIENT_TASK,
    DRIVEN,
    "ours + subscriber",
    "ours, no socket",
    "ours, no socket + subscriber",
];
const DRIVEN: &str = "ours (Driven read loop)";
const CLIENT_TASK: &str = "ours + client task";

/// The least-squares slope of `(x, y)` points.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    sxy / sxx
}

/// Raises the file-descriptor limit to `want` (soft and hard). If the hard limit cannot
/// be raised (that needs CAP_SYS_RESOURCE), raises the soft one as far as it goes and says
/// why in the error.
fn raise_nofile(want: u64) -> Result<(), String> {
    match rlimit::setrlimit(rlimit::Resource::NOFILE, want, want) {
        Ok(()) => Ok(()),
        Err(e) => {
            let got = rlimit::increase_nofile_limit(want).unwrap_or(0);
            if got >= want {
                Ok(())
            } else {
                Err(format!(
                    "needs {want} fds, but RLIMIT_NOFILE stops at {got} (raising the hard limit: {e})"
                ))
            }
        }
    }
}

/// RSS bytes and live heap bytes per connection, and (if traced) the live heap blocks of one
/// more connection.
type Measured = (f64, f64, Option<Vec<usize>>);

/// Runs a server child and a client child; returns RSS bytes and live heap bytes per
/// connection (and the traced blocks of one more connection, if `trace`).
fn measure(kind: &str, n: usize, trace: bool) -> Result<Measured, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let ports = n.div_ceil(PER_PORT);
    let mut server = Command::new(&exe)
        .args(["--child", "server", &ports.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("piped"))
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let ports = line
        .strip_prefix("PORTS ")
        .ok_or_else(|| format!("the server child said {line:?}"))?
        .trim()
        .replace(' ', ",");
    let client = Command::new(&exe)
        .args([
            "--child",
            "client",
            kind,
            &n.to_string(),
            &ports,
            if trace { "trace" } else { "-" },
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| e.to_string());
    drop(server.stdin.take()); // the server child exits when its stdin closes
    let _ = server.wait();
    let out = String::from_utf8_lossy(&client?.stdout).into_owned();
    let result = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("the client child said {:?}", out.trim()))?;
    let nums: Vec<f64> = result
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let blocks = out.lines().find_map(|l| l.strip_prefix("TRACE")).map(|t| {
        t.split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect::<Vec<usize>>()
    });
    match nums[..] {
        [before, after, heap] => Ok(((after - before) / n as f64, heap / n as f64, blocks)),
        _ => Err(format!("bad result {result:?}")),
    }
}

/// Listens on `ports` ports, prints them, and holds every accepted connection until its
/// stdin closes.
fn server_child(ports: usize) {
    let _ = raise_nofile((ports * PER_PORT + 1_000) as u64);
    // A deep accept queue (std's is 128), so that batches of connects are not dropped and
    // retried a second later by the kernel.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a Tokio runtime");
    let listeners: Vec<TcpListener> = (0..ports)
        .map(|_| {
            let _guard = rt.enter();
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .expect("bind");
            let listener = socket
                .listen(4096)
                .expect("listen")
                .into_std()
                .expect("std");
            listener.set_nonblocking(false).expect("blocking");
            listener
        })
        .collect();
    let list: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port().to_string())
        .collect();
    println!("PORTS {}", list.join(" "));
    std::io::stdout().flush().expect("stdout");
    for listener in listeners {
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        });
    }
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    std::process::exit(0);
}

/// Makes `n` connections of `kind` to the `ports` and prints `RESULT rss_before rss_after
/// heap`; with `trace`, then one more connection under the allocation tracer, and prints
/// `TRACE` and the sizes of its live heap blocks.
fn client_child(kind: &str, n: usize, ports: &str, trace: bool) {
    if !kind.contains("no socket") {
        if let Err(why) = raise_nofile((n + 1_000) as u64) {
            println!("{why}");
            return;
        }
    }
    let addrs: Vec<SocketAddr> = ports
        .split(',')
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p.parse().expect("a port"))))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let kind = kind.to_owned();
    rt.block_on(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = rss_bytes().expect("rss");
        let heap_before = persistent_connection_benches::LIVE_BYTES.load(Ordering::Relaxed);
        let held = make(&kind, &addrs, n).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = rss_bytes().expect("rss");
        let heap = persistent_connection_benches::LIVE_BYTES.load(Ordering::Relaxed) - heap_before;
        println!("RESULT {before} {after} {heap}");
        if trace {
            persistent_connection_benches::trace::start();
            make(&kind, &addrs, 1).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let blocks = persistent_connection_benches::trace::stop();
            let list: Vec<String> = blocks.iter().map(usize::to_string).collect();
            println!("TRACE {}", list.join(" "));
        }
        std::io::stdout().flush().expect("stdout");
        // Exit at once: tearing down 100,000 connections one by one measures nothing.
        std::process::exit(if held == n { 0 } else { 1 });
    });
}

/// Makes `n` connections of `kind`, waits until all are connected, and keeps them (and
/// what belongs to them) until the process exits.
async fn make(kind: &str, addrs: &[SocketAddr], n: usize) -> usize {
    match kind {
        "raw" => raw(addrs, n).await,
        "hand-written" => hand_written(addrs, n).await,
        "ours" => ours(addrs, n, Extra::None).await,
        CLIENT_TASK => ours(addrs, n, Extra::ClientTask).await,
        "ours + subscriber" => ours(addrs, n, Extra::Subscriber).await,
        DRIVEN => ours_driven(addrs, n).await,
        "ours, no socket" => ours_no_socket(n, false).await,
        "ours, no socket + subscriber" => ours_no_socket(n, true).await,
        other => panic!("unknown kind {other}"),
    }
}

/// What a kind of "ours" keeps beside the handle.
#[derive(Clone, Copy, PartialEq)]
enum Extra {
    None,
    /// The user's client task: await `connected()`, read until EOF, close, again.
    ClientTask,
    /// An `events()` and a `state_changes()` subscriber.
    Subscriber,
}

/// Bare streams in a `Vec`.
async fn raw(addrs: &[SocketAddr], n: usize) -> usize {
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let mut set = tokio::task::JoinSet::new();
        for i in held.len()..(held.len() + BATCH).min(n) {
            let addr = addrs[i % addrs.len()];
            set.spawn(async move { TcpStream::connect(addr).await.expect("connect") });
        }
        while let Some(stream) = set.join_next().await {
            held.push(stream.expect("a task"));
        }
    }
    let count = held.len();
    std::mem::forget(held); // kept until the process exits
    count
}

/// One task per connection, parked in a read, reconnecting on EOF.
async fn hand_written(addrs: &[SocketAddr], n: usize) -> usize {
    let connected = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(Notify::new());
    let catalogs: Vec<Catalog> = addrs.iter().map(|a| Catalog::new(*a)).collect();
    for i in 0..n {
        let catalog = catalogs[i % catalogs.len()].clone();
        let (count, notify) = (connected.clone(), progress.clone());
        tokio::spawn(async move {
            loop {
                let stream = loop {
                    match TcpStream::connect(catalog.get()).await {
                        Ok(stream) => break stream,
                        Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                    }
                };
                count.fetch_add(1, Ordering::Relaxed);
                notify.notify_one();
                wait_eof(&stream).await;
            }
        });
        if i % BATCH == BATCH - 1 {
            wait_for(&connected, &progress, i + 1).await;
        }
    }
    wait_for(&connected, &progress, n).await;
    connected.load(Ordering::Relaxed)
}

async fn wait_for(count: &AtomicUsize, progress: &Notify, target: usize) {
    while count.load(Ordering::Relaxed) < target {
        progress.notified().await;
    }
}

/// `n` persistent connections with the default settings to `addrs` (in turn, through a
/// catalog each), made in batches, each connected once `connect` has made its connection.
async fn connect_all<C, F, Fut>(
    addrs: &[SocketAddr],
    n: usize,
    connect: F,
) -> Vec<PersistentConnection<SocketAddr, C, std::io::Error>>
where
    C: Connection,
    F: Fn(SocketAddr, AttemptContext<std::io::Error>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = std::io::Result<C>> + Send + 'static,
{
    let mut held = Vec::with_capacity(n);
    let catalogs: Vec<Catalog> = addrs.iter().map(|a| Catalog::new(*a)).collect();
    while held.len() < n {
        let start = held.len();
        for i in start..(start + BATCH).min(n) {
            let catalog = catalogs[i % catalogs.len()].clone();
            held.push(
                builder(
                    "memory",
                    move || {
                        let addr = catalog.get();
                        async move { Ok::<SocketAddr, std::io::Error>(addr) }
                    },
                    connect.clone(),
                )
                .spawn(),
            );
        }
        for pc in &held[start..] {
            pc.connected().await;
        }
    }
    held
}

/// Persistent connections with the default settings, and `extra`.
async fn ours(addrs: &[SocketAddr], n: usize, extra: Extra) -> usize {
    let held = connect_all(addrs, n, |addr, _ctx| async move {
        TcpStream::connect(addr).await.map(Tracked::new)
    })
    .await;
    match extra {
        Extra::None => {}
        Extra::ClientTask => {
            for pc in &held {
                let pc = pc.clone();
                tokio::spawn(async move {
                    loop {
                        let conn = pc.connected().await;
                        wait_eof(&conn).await;
                        conn.close().await;
                    }
                });
            }
            // Let every client task start and park in its read.
            tokio::task::yield_now().await;
        }
        Extra::Subscriber => {
            let subs: Vec<_> = held
                .iter()
                .map(|pc| (pc.events(), pc.state_changes()))
                .collect();
            std::mem::forget(subs);
        }
    }
    let count = held.len();
    std::mem::forget(held);
    count
}

/// Persistent connections whose connection is a `Driven` whose driving future is the
/// user's read loop: it owns the stream and reads until EOF (the driver runs it).
async fn ours_driven(addrs: &[SocketAddr], n: usize) -> usize {
    let held = connect_all(addrs, n, |addr, _ctx| async move {
        let stream = TcpStream::connect(addr).await?;
        Ok(Driven::new((), async move { wait_eof(&stream).await }))
    })
    .await;
    let count = held.len();
    std::mem::forget(held);
    count
}

/// Persistent connections whose connections are bare `CloseSignal`s: no socket, no fd, so
/// any number fits; what is left is the library's own cost per connection.
async fn ours_no_socket(n: usize, subscriber: bool) -> usize {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(
            builder(
                "memory",
                || async { Ok::<u16, std::io::Error>(7) },
                |_addr, _ctx| async { Ok::<CloseSignal, std::io::Error>(CloseSignal::new()) },
            )
            .spawn(),
        );
    }
    for pc in &held {
        pc.connected().await;
    }
    if subscriber {
        let subs: Vec<_> = held
            .iter()
            .map(|pc| (pc.events(), pc.state_changes()))
            .collect();
        std::mem::forget(subs);
    }
    let count = held.len();
    std::mem::forget(held);
    count
}

/// Counts polls of the driver tasks of idle persistent connections.
fn wakeups(n: usize) {
    const DELAY: Duration = Duration::from_millis(300);
    const IDLE: Duration = Duration::from_secs(2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let runtime = CountPolls::new(Tokio::current());
        let mut pcs = Vec::new();
        for _ in 0..n {
            let pc = builder(
                "idle",
                move || async move { Ok::<SocketAddr, std::io::Error>(addr) },
                |addr, _ctx| async move { TcpStream::connect(addr).await.map(Tracked::new) },
            )
            .runtime(runtime.clone())
            .retry_policy(Backoff::Constant(DELAY))
            .jitter(Jitter::Off)
            .spawn();
            pcs.push(pc);
        }
        for pc in &pcs {
            pc.connected().await;
        }
        // Past every retry timer's deadline (DELAY after its attempt started): held back, so
        // no poll for it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before_idle = runtime.polls();
        let idle_start = runtime.polls();
        tokio::time::sleep(IDLE).await;
        let idle = runtime.polls() - idle_start;
        println!("== memory: wake-ups while connected and idle ({n} persistent connections) ==");
        println!(
            "polls of the driver tasks from spawn to 1 s after all connected: {before_idle} ({:.1} per connection: spawn and connect; the {DELAY:?} retry timer of the attempt that connected is held back, never armed)",
            before_idle as f64 / n as f64
        );
        println!(
            "polls over the next {IDLE:?} of idleness: {idle} = {:.2} wake-ups/s for {n} connections (goal 0: {})",
            idle as f64 / IDLE.as_secs_f64(),
            if idle == 0 { "met" } else { "MISSED" }
        );
    });
}
