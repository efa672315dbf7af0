//! Support code shared by the benchmarks in `benches/benches/`: an in-process Tokio echo
//! server whose connections can be killed, socket I/O helpers that work through a shared
//! `&TcpStream` (which is what the connection we hand out, `Tracked<TcpStream>`, gives),
//! a `Runtime` wrapper that counts polls of the driver task, RSS, and statistics.
//!
//! Every bench is a `harness = false` binary. Like criterion, each one runs its full
//! measurement only when `cargo bench` passes `--bench`; under `cargo test --benches` it runs
//! a tiny smoke version, so the test suite stays fast.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use persistent_connection_driver::{BoxFuture, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Whether `cargo bench` runs this binary (it passes `--bench`), as opposed to
/// `cargo test --benches`, which runs it without and wants a quick smoke run.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Prints, under `cargo test`, that this is a smoke run whose figures mean nothing.
pub fn note_smoke_run() {
    if !full_run() {
        println!(
            "(smoke run: not `cargo bench`, so tiny sizes and maybe an unoptimised build; the figures and verdicts below are not measurements)"
        );
    }
}

/// An echo server on 127.0.0.1 whose live connections can all be killed at once (the
/// server side closes them: the client reads EOF, as after a server restart).
#[derive(Clone, Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    kill: Arc<Notify>,
    accepted: Arc<AtomicU64>,
}

/// The size of the server's echo buffer, per connection.
const ECHO_BUF: usize = 64 * 1024;

impl EchoServer {
    /// Binds 127.0.0.1 on a free port and serves on `runtime` (usually a
    /// [`ServerThread`]'s, so that the server's work does not share the client's thread, as
    /// with a server in another process).
    pub fn start_on(runtime: &tokio::runtime::Handle) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let server = EchoServer {
            addr: listener.local_addr()?,
            kill: Arc::new(Notify::new()),
            accepted: Arc::new(AtomicU64::new(0)),
        };
        let (kill, accepted) = (server.kill.clone(), server.accepted.clone());
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("a Tokio listener");
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve(stream, kill.clone()));
            }
        });
        Ok(server)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every live connection (server side).
    pub fn kill_all(&self) {
        self.kill.notify_waiters();
    }

    /// How many connections it has accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

async fn serve(mut stream: TcpStream, kill: Arc<Notify>) {
    let killed = kill.notified();
    tokio::pin!(killed);
    // Registered now, so a kill_all() from here on reaches this connection.
    killed.as_mut().enable();
    // Capacity, not zeroed contents: `read_buf` fills the spare capacity, so a new
    // connection costs no 64 KiB memset.
    let mut buf = Vec::with_capacity(ECHO_BUF);
    loop {
        buf.clear();
        tokio::select! {
            biased;
            _ = &mut killed => return, // dropping the stream closes it: the client sees EOF
            read = stream.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if stream.write_all(&buf).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}

/// A current-thread Tokio runtime on its own OS thread, for servers. Dropping it stops the
/// runtime and joins the thread.
#[derive(Debug)]
pub struct ServerThread {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Starts the thread and its runtime.
    pub fn start() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime");
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-server".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .expect("a server thread");
        ServerThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The runtime to start servers on.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where a service is, looked up before every attempt (as a catalog or DNS would answer).
#[derive(Clone, Debug)]
pub struct Catalog(Arc<Mutex<SocketAddr>>);

impl Catalog {
    /// A catalog that names `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Catalog(Arc::new(Mutex::new(addr)))
    }

    /// The address it names now.
    pub fn get(&self) -> SocketAddr {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes all of `buf` through a shared `&TcpStream` (readiness + `try_write`).
pub async fn write_all_ref(stream: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        stream.writable().await?;
        match stream.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills `buf` through a shared `&TcpStream` (readiness + `try_read`).
pub async fn read_exact_ref(stream: &TcpStream, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        stream.readable().await?;
        match stream.try_read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until the peer closes `stream` (a read returns EOF or an error): how an
/// application learns that its connection died.
pub async fn wait_eof(stream: &TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// The echo check every reconnect variant does on its new connection.
pub const PING: &[u8; 8] = b"ping-42\n";

/// Sends [`PING`] and reads it back through a shared `&TcpStream`.
pub async fn ping_ref(stream: &TcpStream) -> io::Result<()> {
    write_all_ref(stream, PING).await?;
    let mut back = [0u8; 8];
    read_exact_ref(stream, &mut back).await?;
    if &back != PING {
        return Err(io::Error::other("the echo differs"));
    }
    Ok(())
}

/// Echoes `total` bytes through `stream` (a shared `&TcpStream`): writes in 64 KiB chunks
/// while it reads the echo back, and checks the byte count. The same code runs for the raw
/// stream and for the connection we hand out.
pub async fn echo_through_ref(stream: &TcpStream, total: usize) -> io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    let out = vec![0x5au8; CHUNK];
    let mut back = vec![0u8; CHUNK];
    let write = async {
        let mut sent = 0;
        while sent < total {
            let n = CHUNK.min(total - sent);
            write_all_ref(stream, &out[..n]).await?;
            sent += n;
        }
        Ok::<(), io::Error>(())
    };
    let read = async {
        let mut got = 0;
        while got < total {
            stream.readable().await?;
            match stream.try_read(&mut back) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    };
    tokio::try_join!(write, read)?;
    Ok(())
}

/// The same echo through an owned `TcpStream` split in halves with `AsyncReadExt` /
/// `AsyncWriteExt`: the idiomatic raw-Tokio way, for reference.
pub async fn echo_through_split(stream: &mut TcpStream, total: usize) -> io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    let out = vec![0x5au8; CHUNK];
    let mut back = vec![0u8; CHUNK];
    let (mut r, mut w) = stream.split();
    let write = async {
        let mut sent = 0;
        while sent < total {
            let n = CHUNK.min(total - sent);
            w.write_all(&out[..n]).await?;
            sent += n;
        }
        Ok::<(), io::Error>(())
    };
    let read = async {
        let mut got = 0;
        while got < total {
            match r.read(&mut back).await? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
        Ok(())
    };
    tokio::try_join!(write, read)?;
    Ok(())
}

/// A [`Runtime`] that runs on `R` and counts every poll of the futures it spawns (for the
/// persistent connection: its driver task). Zero polls while idle means zero wake-ups.
#[derive(Clone, Debug)]
pub struct CountPolls<R> {
    inner: R,
    polls: Arc<AtomicU64>,
}

impl<R> CountPolls<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        CountPolls {
            inner,
            polls: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Polls of spawned futures so far.
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }
}

impl<R: Runtime> Runtime for CountPolls<R> {
    fn spawn(&self, task: BoxFuture<()>) {
        self.inner.spawn(Box::pin(Counted {
            task,
            polls: self.polls.clone(),
        }));
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        self.inner.sleep(duration)
    }

    fn timer(&self, duration: Duration) -> persistent_connection_driver::BoxTimer {
        self.inner.timer(duration)
    }

    fn now(&self) -> std::time::Instant {
        self.inner.now()
    }

    fn can_hold_timers(&self) -> bool {
        self.inner.can_hold_timers()
    }
}

struct Counted {
    task: BoxFuture<()>,
    polls: Arc<AtomicU64>,
}

impl Future for Counted {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.task.as_mut().poll(cx)
    }
}

/// This process's resident set size in bytes (`VmRSS` of `/proc/self/status`).
pub fn rss_bytes() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/self/status"))
}

/// Summary statistics of a set of durations.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// The median.
    pub median: Duration,
    /// The 10th percentile.
    pub p10: Duration,
    /// The 90th percentile.
    pub p90: Duration,
    /// How many samples.
    pub n: usize,
}

impl Stats {
    /// Sorts `samples` and summarises them. Panics on an empty slice.
    pub fn of(samples: &mut [Duration]) -> Self {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Stats {
            median: at(0.5),
            p10: at(0.1),
            p90: at(0.9),
            n: samples.len(),
        }
    }
}

/// `a / b` as a ratio of durations.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// A duration in microseconds, for printing.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Allocations made in this process so far, counted by [`CountingAlloc`].
pub static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Heap bytes live in this process now, counted by [`CountingAlloc`].
pub static LIVE_BYTES: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// The system allocator, counting: each bench that measures allocations or heap bytes
/// installs it with `#[global_allocator] static GLOBAL: CountingAlloc = CountingAlloc;`.
pub struct CountingAlloc;

// The workspace forbids unsafe code; this crate only denies it, for this one impl. A global
// allocator is the only way to observe allocations, and `GlobalAlloc` is an unsafe trait:
// every method forwards its arguments unchanged to `System` (so `System`'s guarantees are
// ours) and only updates two counters.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { std::alloc::System.alloc(layout) };
        trace::alloc(ptr, layout.size());
        ptr
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as above.
        let ptr = unsafe { std::alloc::System.alloc_zeroed(layout) };
        trace::alloc(ptr, layout.size());
        ptr
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        trace::dealloc(ptr);
        // SAFETY: as above; `ptr` came from this allocator, i.e. from `System`.
        let new = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        trace::alloc(new, new_size);
        new
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        trace::dealloc(ptr);
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

/// An allocation tracer for [`CountingAlloc`]: between [`trace::start`] and
/// [`trace::stop`], every allocation's address and size is recorded (up to
/// [`trace::SLOTS`]) and forgotten again when freed, so `stop` returns the sizes of the
/// allocations made in that window that are still live. Used by the memory bench to list,
/// one by one, the heap blocks one persistent connection keeps. Lock-free and
/// allocation-free (fixed static slots), so it can run inside the global allocator.
pub mod trace {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// How many live allocations one trace can hold.
    pub const SLOTS: usize = 4096;
    static ON: AtomicBool = AtomicBool::new(false);
    static PTRS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
    static SIZES: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
    static NEXT: AtomicUsize = AtomicUsize::new(0);

    pub(crate) fn alloc(ptr: *mut u8, size: usize) {
        if !ON.load(Ordering::Relaxed) || ptr.is_null() {
            return;
        }
        let at = NEXT.fetch_add(1, Ordering::Relaxed);
        if at < SLOTS {
            SIZES[at].store(size, Ordering::Relaxed);
            PTRS[at].store(ptr as usize, Ordering::Relaxed);
        }
    }

    pub(crate) fn dealloc(ptr: *mut u8) {
        if !ON.load(Ordering::Relaxed) {
            return;
        }
        let end = NEXT.load(Ordering::Relaxed).min(SLOTS);
        for slot in &PTRS[..end] {
            if slot.load(Ordering::Relaxed) == ptr as usize {
                slot.store(0, Ordering::Relaxed);
                return;
            }
        }
    }

    /// Starts recording (single-threaded use: one trace at a time).
    pub fn start() {
        for slot in &PTRS {
            slot.store(0, Ordering::Relaxed);
        }
        NEXT.store(0, Ordering::Relaxed);
        ON.store(true, Ordering::SeqCst);
    }

    /// Stops recording; the sizes of the allocations made since [`start`] and still live,
    /// in the order they were made.
    pub fn stop() -> Vec<usize> {
        ON.store(false, Ordering::SeqCst);
        let end = NEXT.load(Ordering::Relaxed).min(SLOTS);
        (0..end)
            .filter(|&i| PTRS[i].load(Ordering::Relaxed) != 0)
            .map(|i| SIZES[i].load(Ordering::Relaxed))
            .collect()
    }
}
