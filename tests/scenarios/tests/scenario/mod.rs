//! The scenario suite, written once and run on every runtime (see `suite!`). Each scenario
//! is named after the rule of `CONTRACT.md` (at the repository's root) that it checks:
//! `r4_...` checks R4.
//!
//! Real TCP on 127.0.0.1 against servers the tests start and stop; a [`VirtualClock`]
//! where a scenario needs long delays. No sleeps: every wait is on an explicit signal
//! (an event, a server counter, a timer being set).

#![allow(dead_code, unreachable_pub)]

pub mod echo;
pub mod operators;
pub mod proxy;
pub mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_channel::mpsc;
use futures_core::Stream;
use persistent_connection::{Command, Config, Failure, Input, Machine, TimerId};
use persistent_connection_tokio::{
    AttemptError, Backoff, BoxFuture, BoxTimer, Builder, CloseSignal, ConnectError, Connection,
    Event, Jitter, PersistentConnection, Runtime, Stopped, Timer, VirtualClock,
};

use echo::{EchoConn, dial};
use server::{Mode, Server, closed_port};

/// What a runtime must provide to run the suite: an executor, its adapter's [`Runtime`],
/// and its own TCP connect.
pub trait TestRuntime: Sized + 'static {
    /// The adapter's runtime.
    type Rt: Runtime + Clone;
    /// Runs `future` to completion on this runtime.
    fn block_on<F: Future>(future: F) -> F::Output;
    /// The adapter's runtime (called inside `block_on`).
    fn runtime() -> Self::Rt;
    /// Dials with the runtime's own TCP, then hands back the std stream.
    fn connect(addr: SocketAddr) -> BoxFuture<std::io::Result<std::net::TcpStream>>;
}

type Pc = PersistentConnection<SocketAddr, EchoConn, std::io::Error>;
type PcEvent = Event<SocketAddr, EchoConn, AttemptError<std::io::Error>>;

/// Where `get_address` looks: the test points it at a replica. A gated catalog answers
/// only once opened, so a test can register a waiter before the first attempt ends (on a
/// multi-threaded executor the task may otherwise finish it first).
#[derive(Clone)]
pub struct Catalog(Arc<Mutex<SocketAddr>>, CloseSignal);

impl Catalog {
    fn new(addr: SocketAddr) -> Self {
        let catalog = Catalog::gated(addr);
        catalog.open();
        catalog
    }
    fn gated(addr: SocketAddr) -> Self {
        Catalog(Arc::new(Mutex::new(addr)), CloseSignal::new())
    }
    fn open(&self) {
        self.1.close();
    }
    fn set(&self, addr: SocketAddr) {
        *self.0.lock().unwrap() = addr;
    }
    fn get(&self) -> SocketAddr {
        *self.0.lock().unwrap()
    }
    /// The address, once the catalog is open.
    fn lookup(&self) -> impl Future<Output = std::io::Result<SocketAddr>> + Send + 'static + use<> {
        let (catalog, open) = (self.0.clone(), self.1.closed());
        async move {
            open.await;
            Ok(*catalog.lock().unwrap())
        }
    }
}

/// The events as short strings, in order, read from the `on_event` handler.
pub struct EventLog {
    rx: mpsc::UnboundedReceiver<String>,
    /// Everything read so far.
    pub seen: Vec<String>,
}

fn name(event: &PcEvent) -> String {
    match event {
        Event::AttemptingToConnect => "A".into(),
        Event::ObtainedAddress(a) => format!("O {a}"),
        Event::FailedToConnect(_) => "F".into(),
        Event::Connected(c) => format!("C {}", c.peer()),
        Event::Disconnected => "D".into(),
    }
}

impl EventLog {
    fn new() -> (EventLog, mpsc::UnboundedSender<String>) {
        let (tx, rx) = mpsc::unbounded();
        (
            EventLog {
                rx,
                seen: Vec::new(),
            },
            tx,
        )
    }

    /// Reads events until one starts with `prefix`; returns all seen so far.
    async fn until(&mut self, prefix: &str) -> Vec<String> {
        loop {
            let next = std::future::poll_fn(|cx| Pin::new(&mut self.rx).poll_next(cx)).await;
            match next {
                Some(event) => {
                    let done = event.starts_with(prefix);
                    self.seen.push(event);
                    if done {
                        return self.seen.clone();
                    }
                }
                None => panic!("events ended before {prefix:?}; seen {:?}", self.seen),
            }
        }
    }

    /// Reads every event left (the handler is gone once the connection has finished).
    async fn rest(&mut self) -> Vec<String> {
        while let Some(event) =
            std::future::poll_fn(|cx| Pin::new(&mut self.rx).poll_next(cx)).await
        {
            self.seen.push(event);
        }
        self.seen.clone()
    }
}

/// How long one wait may take, in real time, before it counts as a hang.
const WAIT_LIMIT: Duration = Duration::from_secs(20);
/// How long a whole scenario may take before it counts as a hang.
const SCENARIO_LIMIT: Duration = Duration::from_secs(25);
/// How long before the watchdog ends the test binary: a scenario that spins without ever
/// awaiting cannot be stopped by a timer it never lets run.
const WATCHDOG_LIMIT: Duration = Duration::from_secs(30);

/// Set by the first wait that hung: later waits of this test binary fail at once, so a
/// defect that hangs every scenario fails the binary in one limit, not one per scenario.
static HUNG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Awaits `future`, failing with a message naming `what` if it takes more than 20 s of
/// real time: a hang becomes a failure that says what it waited for.
pub async fn bounded<T: TestRuntime, F: Future>(future: F, what: &str) -> F::Output {
    bounded_for::<T, F>(future, what, WAIT_LIMIT).await
}

async fn bounded_for<T: TestRuntime, F: Future>(
    future: F,
    what: &str,
    limit: Duration,
) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut timer = T::runtime().sleep(limit);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = future.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if HUNG.load(Ordering::SeqCst) {
            panic!("not waiting for {what}: an earlier wait of this test binary hung");
        }
        if timer.as_mut().poll(cx).is_ready() {
            HUNG.store(true, Ordering::SeqCst);
            panic!("waited {limit:?} for {what}");
        }
        Poll::Pending
    })
    .await
}

/// Runs one scenario on `T`, bounded: every await of it together within 25 s (then it
/// fails naming the scenario), and a watchdog that ends the test binary after 30 s for a
/// scenario that spins without awaiting. Neither fires unless something hangs.
pub fn run<T: TestRuntime, F: Future<Output = ()>>(name: &str, scenario: F) {
    use std::sync::Condvar;
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    /// Stops the watchdog however the scenario ends (also by a panic).
    struct Done(Arc<(Mutex<bool>, Condvar)>);
    impl Drop for Done {
        fn drop(&mut self) {
            *self.0.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
            self.0.1.notify_all();
        }
    }
    let _done = Done(done.clone());
    let watched = name.to_string();
    std::thread::spawn(move || {
        let (lock, finished) = &*done;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = finished
            .wait_timeout_while(guard, WATCHDOG_LIMIT, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        if !*guard {
            use std::io::Write;
            // Straight to stderr: the test harness's capture would be lost with the process.
            let _ = writeln!(
                std::io::stderr(),
                "scenario {watched} did not finish within {WATCHDOG_LIMIT:?} and never \
                 yielded to its timers (a loop that spins?): ending the test binary"
            );
            std::process::exit(101);
        }
    });
    T::block_on(bounded_for::<T, F>(
        scenario,
        &format!("the scenario {name} to finish"),
        SCENARIO_LIMIT,
    ));
}

/// The next item of a channel (`None` once every sender is gone).
pub async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> Option<T> {
    std::future::poll_fn(|cx| Pin::new(&mut *rx).poll_next(cx)).await
}

/// The usual set-up: dial the address the catalog names; retry after 5 ms, no jitter.
fn builder<T: TestRuntime>(catalog: &Catalog) -> Builder<SocketAddr, EchoConn, std::io::Error> {
    let catalog = catalog.clone();
    Builder::new(
        T::runtime(),
        "echo",
        move || catalog.lookup(),
        |addr, _ctx| dial::<T>(addr),
    )
    .retry_delay(|_| Duration::from_millis(5))
    .jitter(Jitter::Off)
}

/// Adds an `on_event` that writes to an [`EventLog`].
fn logged(
    builder: Builder<SocketAddr, EchoConn, std::io::Error>,
) -> (Builder<SocketAddr, EchoConn, std::io::Error>, EventLog) {
    let (log, tx) = EventLog::new();
    let builder = builder.on_event(move |event| {
        let _ = tx.unbounded_send(name(&event));
        async {}
    });
    (builder, log)
}

fn replace_addr(events: &[String], addr: SocketAddr, with: &str) -> Vec<String> {
    events
        .iter()
        .map(|e| e.replace(&addr.to_string(), with))
        .collect()
}

/// A runtime wrapper that knows when every task it spawned has ended (R13).
#[derive(Clone)]
pub struct Tracking<R> {
    inner: R,
    live: Arc<AtomicUsize>,
    all_done: CloseSignal,
}

struct TaskGuard {
    live: Arc<AtomicUsize>,
    all_done: CloseSignal,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.all_done.close();
        }
    }
}

impl<R: Runtime> Tracking<R> {
    fn new(inner: R) -> Self {
        Tracking {
            inner,
            live: Arc::new(AtomicUsize::new(0)),
            all_done: CloseSignal::new(),
        }
    }
    /// Resolves once every spawned task has ended (been dropped).
    fn all_tasks_ended(&self) -> impl Future<Output = ()> + use<R> {
        self.all_done.closed()
    }
}

impl<R: Runtime> Runtime for Tracking<R> {
    fn spawn(&self, task: BoxFuture<()>) {
        self.live.fetch_add(1, Ordering::SeqCst);
        let guard = TaskGuard {
            live: self.live.clone(),
            all_done: self.all_done.clone(),
        };
        self.inner.spawn(Box::pin(async move {
            let _guard = guard;
            task.await;
        }));
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        self.inner.sleep(duration)
    }
    fn now(&self) -> std::time::Instant {
        self.inner.now()
    }
    fn can_hold_timers(&self) -> bool {
        self.inner.can_hold_timers()
    }
}

/// A runtime wrapper that records every wait the driver starts on its timers (R15): a
/// sleep or timer's duration is recorded when it is first polled after it was made or
/// moved, i.e. when something waits on it (the driver makes its retry timer before it needs
/// it, and holds it back while nothing waits for it).
#[derive(Clone)]
struct Recording<R> {
    inner: R,
    sleeps: Sleeps,
}

/// The waits [`Recording`] saw, and a signal for each.
#[derive(Clone)]
struct Sleeps {
    seen: Arc<Mutex<Vec<Duration>>>,
    signal: mpsc::UnboundedSender<()>,
}

impl Sleeps {
    /// An empty record, and the receiving end of its signal.
    fn new() -> (Self, mpsc::UnboundedReceiver<()>) {
        let (signal, waits) = mpsc::unbounded();
        let sleeps = Sleeps {
            seen: Arc::new(Mutex::new(Vec::new())),
            signal,
        };
        (sleeps, waits)
    }

    fn record(&self, duration: Duration) {
        self.seen.lock().unwrap().push(duration);
        let _ = self.signal.unbounded_send(());
    }
}

impl<R: Runtime> Runtime for Recording<R> {
    fn spawn(&self, task: BoxFuture<()>) {
        self.inner.spawn(task)
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(self.timer(duration))
    }
    fn timer(&self, duration: Duration) -> BoxTimer {
        Box::pin(RecordedTimer {
            inner: self.inner.timer(duration),
            duration: Some(duration),
            sleeps: self.sleeps.clone(),
        })
    }
    fn now(&self) -> std::time::Instant {
        self.inner.now()
    }
    fn can_hold_timers(&self) -> bool {
        self.inner.can_hold_timers()
    }
}

/// A timer of [`Recording`]: `duration` is recorded at the first poll.
struct RecordedTimer {
    inner: BoxTimer,
    duration: Option<Duration>,
    sleeps: Sleeps,
}

impl Future for RecordedTimer {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(duration) = self.duration.take() {
            self.sleeps.record(duration);
        }
        self.inner.as_mut().poll(cx)
    }
}

impl Timer for RecordedTimer {
    fn reset(mut self: Pin<&mut Self>, duration: Duration) -> bool {
        let moved = self.inner.as_mut().reset(duration);
        if moved {
            self.duration = Some(duration);
        }
        moved
    }
}

/// Counts how often a future is polled.
struct CountPolls<F> {
    future: Pin<Box<F>>,
    polls: usize,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = (F::Output, usize);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.polls += 1;
        let polls = self.polls;
        self.future.as_mut().poll(cx).map(|out| (out, polls))
    }
}

// ---------------------------------------------------------------- scenarios

/// R1, R2: the full cycle, and failover to the replica the catalog names after the live
/// one dies.
pub async fn r1_failover_between_replicas_through_catalog<T: TestRuntime>() {
    let mut first = Server::start(Mode::Echo);
    let second = Server::start(Mode::Echo);
    let catalog = Catalog::new(first.addr());
    let (b, mut log) = logged(builder::<T>(&catalog));
    let pc = b.spawn();

    let conn = pc.connected().await;
    assert_eq!(conn.peer(), first.addr());
    assert_eq!(conn.request("ping").await.unwrap(), "ping");

    catalog.set(second.addr());
    first.stop();
    log.until("D").await;
    let conn = pc.connected().await;
    assert_eq!(conn.peer(), second.addr(), "reconnected to the replica");
    assert_eq!(conn.request("pong").await.unwrap(), "pong");

    pc.close().await;
    let events = replace_addr(&log.rest().await, first.addr(), "1");
    let events = replace_addr(&events, second.addr(), "2");
    assert_eq!(events, ["A", "O 1", "C 1", "D", "A", "O 2", "C 2", "D"]);
    assert_eq!(pc.state(), persistent_connection::State::Closed);
}

/// R4, R7: the server restarts on the same port; attempts fail (each distinct error
/// reported once) until it is back, then a working connection is handed out.
pub async fn r4_server_restart_reconnects_on_same_port<T: TestRuntime>() {
    let mut server = Server::start(Mode::Echo);
    let addr = server.addr();
    let catalog = Catalog::new(addr);
    let (b, mut log) = logged(builder::<T>(&catalog));
    let pc = b.spawn();
    let conn = pc.connected().await;
    assert_eq!(conn.request("one").await.unwrap(), "one");

    server.stop();
    log.until("D").await;
    // Let at least one attempt fail while the server is down.
    assert!(pc.connected_or_failed_to_connect().await.is_err());
    let _server = Server::start_on(addr, Mode::Echo).expect("rebind the same port");
    let conn = loop {
        // Attempts may still fail until the new listener is seen; each outcome comes back.
        if let Ok(conn) = pc.connected_or_failed_to_connect().await {
            break conn;
        }
    };
    assert_eq!(conn.request("two").await.unwrap(), "two");
    pc.close().await;

    let events = replace_addr(&log.rest().await, addr, "S");
    assert_eq!(events[..6], ["A", "O S", "C S", "D", "A", "O S"]);
    assert_eq!(events[events.len() - 2..], ["C S", "D"]);
    let failures = events.iter().filter(|e| *e == "F").count();
    assert_eq!(
        failures, 1,
        "the same refusal is reported once per cycle: {events:?}"
    );
}

/// R11: `close()` during a dial that never completes: resolves without waiting for it,
/// reports no `FailedToConnect`, and the half-open socket is closed.
pub async fn r11_close_during_hung_dial<T: TestRuntime>() {
    let server = Server::start(Mode::Silent);
    let catalog = Catalog::new(server.addr());
    let (b, mut log) = logged(builder::<T>(&catalog));
    let pc = b.spawn();
    log.until("O").await;
    assert!(server.wait_for_accepted(1), "the dial reached the server");

    pc.close().await;
    assert!(pc.is_closed());
    let events = replace_addr(&log.rest().await, server.addr(), "S");
    assert_eq!(
        events,
        ["A", "O S"],
        "no FailedToConnect for a cancelled dial"
    );
    assert!(
        server.wait_for_eofs(1),
        "the cancelled dial's socket was closed"
    );
}

/// R11: `close()` called from inside the handler of each kind of event.
pub async fn r11_close_from_inside_each_event_handler<T: TestRuntime>() {
    for target in ["A", "O", "F", "C", "D"] {
        let server = Arc::new(Server::start(Mode::Echo));
        let refused = closed_port();
        let catalog = Catalog::new(if target == "F" {
            refused
        } else {
            server.addr()
        });
        let slot: Arc<Mutex<Option<Pc>>> = Arc::new(Mutex::new(None));
        let (tx_log, mut log) = {
            let (log, tx) = EventLog::new();
            (tx, log)
        };
        let handler_slot = slot.clone();
        let handler_server = server.clone();
        // The handle goes into the slot after spawn; the handler waits for it.
        let ready = CloseSignal::new();
        let handler_ready = ready.clone();
        let pc = builder::<T>(&catalog)
            .on_event(move |event| {
                let name = name(&event);
                let _ = tx_log.unbounded_send(name.clone());
                let (slot, ready, server) = (
                    handler_slot.clone(),
                    handler_ready.clone(),
                    handler_server.clone(),
                );
                async move {
                    ready.closed().await;
                    if name.starts_with(target) {
                        if let Some(pc) = slot.lock().unwrap().take() {
                            // Starts the close; awaiting it here would wait for this handler.
                            drop(pc.close());
                        }
                    } else if name.starts_with('C') && target == "D" {
                        server.kill_connections();
                    }
                }
            })
            .spawn();
        *slot.lock().unwrap() = Some(pc.clone());
        ready.close();
        pc.close_finished().await;
        let events = replace_addr(&log.rest().await, server.addr(), "S");
        let events = replace_addr(&events, refused, "R");
        let expected: &[&str] = match target {
            "A" => &["A"],
            "O" => &["A", "O S"],
            "F" => &["A", "O R", "F"],
            // Closing the current connection still reports Disconnected.
            "C" | "D" => &["A", "O S", "C S", "D"],
            _ => unreachable!(),
        };
        assert_eq!(events, expected, "close from the {target} handler");
        assert!(pc.is_closed());
        assert!(pc.current_connection().is_none());
    }
}

/// R5: the connection dies while the `Connected` handler runs: `Disconnected` comes only
/// after that handler has finished.
pub async fn r5_connection_dies_during_connected_handler<T: TestRuntime>() {
    let server = Arc::new(Server::start(Mode::Echo));
    let catalog = Catalog::new(server.addr());
    let (tx, mut log) = {
        let (log, tx) = EventLog::new();
        (tx, log)
    };
    let handler_server = server.clone();
    let pc = builder::<T>(&catalog)
        .on_event(move |event| {
            let tx = tx.clone();
            let server = handler_server.clone();
            async move {
                match event {
                    Event::Connected(conn) if tx.unbounded_send("C start".into()).is_ok() => {
                        server.kill_connections();
                        conn.closed().await;
                        let _ = tx.unbounded_send("C end".into());
                    }
                    other => {
                        let _ = tx.unbounded_send(name(&other));
                    }
                }
            }
        })
        .spawn();
    let events = log.until("D").await;
    let events = replace_addr(&events, server.addr(), "S");
    assert_eq!(events, ["A", "O S", "C start", "C end", "D"]);
    pc.close().await;
}

/// R4: the same error over and over is reported once per cycle, while every outcome still
/// reaches the waiters (R3).
pub async fn r4_repeated_identical_errors_reported_once<T: TestRuntime>() {
    let refused = closed_port();
    let catalog = Catalog::new(refused);
    let (b, mut log) = logged(builder::<T>(&catalog));
    let pc = b.spawn();
    for _ in 0..5 {
        let outcome = pc.connected_or_failed_to_connect().await;
        assert!(
            matches!(
                outcome,
                Err(ConnectError::Attempt(AttemptError::Connect(_)))
            ),
            "each failed attempt's outcome is given to the waiter: {outcome:?}"
        );
    }
    pc.close().await;
    let events = replace_addr(&log.rest().await, refused, "R");
    assert_eq!(events, ["A", "O R", "F"]);
}

/// R8: 1,000 callers of `connected()` waiting before the first connection are each woken
/// once, all with the same connection.
pub async fn r8_thousand_waiters_woken_once_with_same_connection<T: TestRuntime>() {
    let server = Server::start(Mode::Echo);
    let gate = CloseSignal::new();
    let address_gate = gate.clone();
    let addr = server.addr();
    let pc = Builder::new(
        T::runtime(),
        "echo",
        move || {
            let gate = address_gate.clone();
            async move {
                gate.closed().await;
                Ok::<_, std::io::Error>(addr)
            }
        },
        |addr, _ctx| dial::<T>(addr),
    )
    .spawn();
    let (tx, mut rx) = mpsc::unbounded();
    // The futures register when called, so all 1,000 wait before the gate opens.
    for _ in 0..1000 {
        let waiter = CountPolls {
            future: Box::pin(pc.connected()),
            polls: 0,
        };
        let tx = tx.clone();
        T::runtime().spawn(Box::pin(async move {
            let (conn, polls) = waiter.await;
            let _ = tx.unbounded_send((conn.id(), polls));
        }));
    }
    drop(tx);
    gate.close();
    let mut ids = Vec::new();
    while let Some((id, polls)) = std::future::poll_fn(|cx| Pin::new(&mut rx).poll_next(cx)).await {
        assert!(
            polls <= 2,
            "a waiter was polled {polls} times: woken more than once"
        );
        ids.push(id);
    }
    assert_eq!(ids.len(), 1000);
    let conn = pc.current_connection().expect("connected");
    assert!(
        ids.iter().all(|id| *id == conn.id()),
        "all got the same connection"
    );
    pc.close().await;
}

/// R13: dropping every handle while connected ends the task and closes the socket.
pub async fn r13_drop_all_handles_while_connected<T: TestRuntime>() {
    let server = Server::start(Mode::Echo);
    let catalog = Catalog::new(server.addr());
    let runtime = Tracking::new(T::runtime());
    let pc = builder::<T>(&catalog).runtime(runtime.clone()).spawn();
    let conn = pc.connected().await;
    assert_eq!(conn.request("hi").await.unwrap(), "hi");
    drop(pc);
    runtime.all_tasks_ended().await;
    assert!(server.wait_for_eofs(1), "the server saw the socket close");
    assert!(conn.is_closed());
}

/// R13: dropping every handle while a dial hangs ends the task and closes the socket.
pub async fn r13_drop_all_handles_while_connecting<T: TestRuntime>() {
    let server = Server::start(Mode::Silent);
    let catalog = Catalog::new(server.addr());
    let runtime = Tracking::new(T::runtime());
    let pc = builder::<T>(&catalog).runtime(runtime.clone()).spawn();
    assert!(server.wait_for_accepted(1));
    let clone = pc.clone();
    drop(pc);
    drop(clone);
    runtime.all_tasks_ended().await;
    assert!(server.wait_for_eofs(1), "the hung dial's socket was closed");
}

/// R13: dropping every handle while waiting out a 10 s retry delay ends the task at once.
pub async fn r13_drop_all_handles_while_sleeping<T: TestRuntime>() {
    let clock = VirtualClock::new();
    let runtime = Tracking::new(clock.runtime(T::runtime()));
    let catalog = Catalog::gated(closed_port());
    let pc = builder::<T>(&catalog)
        .runtime(runtime.clone())
        .retry_policy(Backoff::Constant(Duration::from_secs(10)))
        .spawn();
    let first = pc.connected_or_failed_to_connect();
    catalog.open();
    assert!(first.await.is_err());
    assert_eq!(clock.next_timer().await, Duration::from_secs(10));
    drop(pc);
    runtime.all_tasks_ended().await;
    assert_eq!(
        clock.pending_timers(),
        0,
        "the retry timer went with the task"
    );
    assert_eq!(clock.now(), Duration::ZERO, "no time had to pass");
}

/// R7: the default policy (10 s, +-30 % jitter) on a virtual clock: the next attempt
/// starts when the jittered delay has passed, and not before.
pub async fn r7_default_retry_delay_on_virtual_clock<T: TestRuntime>() {
    let clock = VirtualClock::new();
    let catalog = Catalog::gated(closed_port());
    let lookup = catalog.clone();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let pc = Builder::new(
        clock.runtime(T::runtime()),
        "echo",
        move || {
            counter.fetch_add(1, Ordering::SeqCst);
            lookup.lookup()
        },
        |addr, _ctx| dial::<T>(addr),
    )
    .seed(7)
    .spawn();
    let first = pc.connected_or_failed_to_connect();
    catalog.open();
    assert!(first.await.is_err());
    let deadline = clock.next_timer().await;
    assert!(
        (Duration::from_secs(7)..=Duration::from_secs(13)).contains(&deadline),
        "default delay 10 s +-30 %: {deadline:?}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    clock.advance(deadline - Duration::from_millis(1));
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "not before the delay");
    let next = pc.connected_or_failed_to_connect();
    clock.advance(Duration::from_millis(1));
    assert!(next.await.is_err());
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    pc.close().await;
}

/// R9, R12: `abort` from inside `connect` stops everything; waiters get the reason, later
/// callers get it at once, and the persistent connection finishes as closed.
pub async fn r12_abort_from_connect<T: TestRuntime>() {
    let server = Server::start(Mode::Echo);
    let addr = server.addr();
    let pc = Builder::new(
        T::runtime(),
        "echo",
        move || async move { Ok::<_, std::io::Error>(addr) },
        |addr, ctx| async move {
            let conn = dial::<T>(addr).await?;
            ctx.abort(std::io::Error::other("wrong protocol version"));
            Ok(conn)
        },
    )
    .spawn();
    let outcome = pc.connected_or_failed_to_connect().await;
    match outcome {
        Err(ConnectError::Stopped(Stopped::Aborted(reason))) => {
            assert_eq!(reason.to_string(), "wrong protocol version")
        }
        other => panic!("expected the abort reason, got {other:?}"),
    }
    pc.close_finished().await;
    assert!(pc.is_closed());
    assert!(
        pc.current_connection().is_none(),
        "the aborted attempt's connection is not handed out"
    );
    assert!(matches!(
        pc.connected_or_failed_to_connect().await,
        Err(ConnectError::Stopped(Stopped::Aborted(_)))
    ));
    assert!(matches!(
        pc.connected_or_closed().await,
        Err(Stopped::Aborted(_))
    ));
    assert!(
        server.wait_for_eofs(1),
        "the connection made after the abort was closed"
    );
}

/// R9, R11: after `close`, waiters get `Closed` at once and nothing is ever reported again.
pub async fn r9_after_close_waiters_get_closed<T: TestRuntime>() {
    let catalog = Catalog::gated(closed_port());
    let clock = VirtualClock::new();
    let pc = builder::<T>(&catalog)
        .runtime(clock.runtime(T::runtime()))
        .retry_policy(Backoff::Constant(Duration::from_secs(10)))
        .spawn();
    let first = pc.connected_or_failed_to_connect();
    catalog.open();
    assert!(first.await.is_err());
    let waiting = pc.connected_or_failed_to_connect();
    let closing = pc.close();
    assert!(
        matches!(waiting.await, Err(ConnectError::Stopped(Stopped::Closed))),
        "a waiter gets Closed"
    );
    closing.await;
    assert!(matches!(
        pc.connected_or_failed_to_connect().await,
        Err(ConnectError::Stopped(Stopped::Closed))
    ));
    assert!(matches!(
        pc.connected_or_closed().await,
        Err(Stopped::Closed)
    ));
    assert_eq!(pc.state(), persistent_connection::State::Closed);
    pc.close().await; // idempotent
}

/// R6: a panicking handler is reported to the hook and counts as finished; a panicking
/// `connect` is a failed attempt whose error says so.
pub async fn r6_panics_in_callbacks_are_reported<T: TestRuntime>() {
    let server = Server::start(Mode::Echo);
    let catalog = Catalog::gated(server.addr());
    let lookup = catalog.clone();
    let reports = Arc::new(Mutex::new(Vec::new()));
    let hook_reports = reports.clone();
    let dials = Arc::new(AtomicUsize::new(0));
    let pc = Builder::new(
        T::runtime(),
        "echo",
        move || lookup.lookup(),
        move |addr, _ctx| {
            let first = dials.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    panic!("connect blew up");
                }
                dial::<T>(addr).await
            }
        },
    )
    .retry_delay(|_| Duration::from_millis(1))
    .on_event(|event| async move {
        if matches!(event, Event::AttemptingToConnect) {
            panic!("handler blew up");
        }
    })
    .on_callback_panic(move |report| hook_reports.lock().unwrap().push(report.to_string()))
    .spawn();
    let first = pc.connected_or_failed_to_connect();
    catalog.open();
    match first.await {
        Err(ConnectError::Attempt(AttemptError::Panicked { message, .. })) => {
            assert_eq!(&*message, "connect blew up")
        }
        other => panic!("expected the panic as the error, got {other:?}"),
    }
    let conn = pc.connected().await;
    assert_eq!(conn.request("still alive").await.unwrap(), "still alive");
    let reports = reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(
        reports[0].contains("on_event panicked: handler blew up"),
        "{reports:?}"
    );
    pc.close().await;
}

/// R14: a subscriber that does not read is told how many events it missed, and never
/// held the persistent connection up.
pub async fn r14_lagging_subscriber_is_told_what_it_missed<T: TestRuntime>() {
    let ports = [closed_port(), closed_port()];
    let turn = Arc::new(AtomicUsize::new(0));
    let pc = Builder::new(
        T::runtime(),
        "echo",
        move || {
            let i = turn.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, std::io::Error>(ports[i % 2]) }
        },
        |addr, _ctx| dial::<T>(addr),
    )
    .retry_delay(|_| Duration::ZERO)
    .spawn();
    let mut events = pc.events();
    for _ in 0..400 {
        assert!(pc.connected_or_failed_to_connect().await.is_err());
    }
    // Closed before reading: the driver (retrying with no delay, on another thread under
    // some runtimes) would otherwise keep overflowing the buffer between two reads, and a
    // second `Lagged` would be right, not a failure.
    pc.close().await;
    let first = std::future::poll_fn(|cx| Pin::new(&mut events).poll_next(cx)).await;
    match first {
        Some(Err(lagged)) => assert!(lagged.0 >= 100, "missed {}", lagged.0),
        other => panic!("expected Lagged first, got {other:?}"),
    }
    // Then the newer events it kept, each one whole, and the end of the stream.
    let mut kept = 0;
    while let Some(next) = std::future::poll_fn(|cx| Pin::new(&mut events).poll_next(cx)).await {
        assert!(
            next.is_ok(),
            "lagged twice with nothing sent after the close: {next:?}"
        );
        kept += 1;
    }
    assert!(
        kept > 0,
        "after Lagged the stream should go on with the events it kept"
    );
}

/// R14: a subscription made on the builder sees every event from the very first, and the
/// stream ends once the persistent connection has finished.
pub async fn r14_builder_subscription_sees_every_event<T: TestRuntime>() {
    let server = Server::start(Mode::Echo);
    let catalog = Catalog::new(server.addr());
    let b = builder::<T>(&catalog);
    let mut events = b.events();
    let pc = b.spawn();
    let conn = pc.connected().await;
    assert_eq!(conn.request("x").await.unwrap(), "x");
    pc.close().await;
    let mut seen = Vec::new();
    while let Some(event) = std::future::poll_fn(|cx| Pin::new(&mut events).poll_next(cx)).await {
        seen.push(name(&event.expect("no lag")));
    }
    let seen = replace_addr(&seen, server.addr(), "S");
    assert_eq!(seen, ["A", "O S", "C S", "D"]);
}

/// The scripted world of the R15 test: attempt results and connection deaths, no network.
const SCRIPT: &[Result<u16, &str>] = &[
    Err("refused"),
    Err("refused"),
    Err("reset"),
    Ok(1),
    Err("refused"),
    Ok(2),
];

/// Runs the script on a bare Machine; returns the events and the timer delays.
fn bare_machine_log(seed: u64) -> (Vec<String>, Vec<Duration>) {
    let mut m: Machine<u16, u16, String> = Machine::new(Config::new(), seed);
    let (mut events, mut delays) = (Vec::new(), Vec::new());
    let mut script = SCRIPT.iter();
    let mut timer: Option<TimerId> = None;
    let mut connections = 0;
    loop {
        let Some(command) = m.poll_command() else {
            // Waiting: on the retry timer, or done once both connections have come and gone.
            if connections == 2 {
                break;
            }
            m.handle_input(Input::TimerFired(timer.take().expect("a timer")))
                .unwrap();
            continue;
        };
        match command {
            Command::Emit { event, attempt } => {
                events.push(match event {
                    Event::AttemptingToConnect => "A".to_string(),
                    Event::ObtainedAddress(a) => format!("O {a}"),
                    Event::Disconnected => "D".to_string(),
                    Event::Connected(c) => {
                        connections += 1;
                        // Dies young, inside the handler, as in the driver run.
                        let attempt = attempt.expect("Connected names its attempt");
                        m.handle_input(Input::ConnectionClosed { attempt }).unwrap();
                        format!("C {c}")
                    }
                    Event::FailedToConnect(Failure::Error(e)) => format!("F {e}"),
                    Event::FailedToConnect(other) => panic!("{other:?}"),
                });
                m.handle_input(Input::EventHandled).unwrap();
            }
            Command::FailedAgain { .. } => {}
            Command::StartTimer { timer: t, delay } => {
                delays.push(delay);
                timer = Some(t);
            }
            Command::FetchAddress { attempt } => {
                let address = if connections == 0 { 7000 } else { 7001 };
                m.handle_input(Input::AddressObtained {
                    attempt,
                    result: Ok(address),
                })
                .unwrap();
            }
            Command::Dial { attempt, .. } => {
                let result = match script.next().expect("script long enough") {
                    Ok(c) => Ok(*c),
                    Err(e) => Err(e.to_string()),
                };
                m.handle_input(Input::Dialed { attempt, result }).unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (events, delays)
}

/// A scripted connection for R15: closed by the `Connected` handler, as in the bare run.
#[derive(Clone, Debug)]
struct Scripted(u16, CloseSignal);

impl Connection for Scripted {
    fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        self.1.close();
        std::future::ready(())
    }
    fn is_closed(&self) -> bool {
        self.1.is_closed()
    }
    fn closed(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        self.1.closed()
    }
}

/// R15: with a scripted `get_address`/`connect` and a fixed seed, the driver on this
/// runtime reports the same events and asks for the same delays as the bare Machine.
pub async fn r15_same_events_and_delays_as_bare_machine<T: TestRuntime>() {
    const SEED: u64 = 42;
    let clock = VirtualClock::new();
    let (sleeps, mut waits) = Sleeps::new();
    let runtime = Recording {
        inner: clock.runtime(T::runtime()),
        sleeps: sleeps.clone(),
    };
    let script = Arc::new(Mutex::new(SCRIPT.iter()));
    let connections = Arc::new(AtomicUsize::new(0));
    let fetch_connections = connections.clone();
    let (tx, mut log) = {
        let (log, tx) = EventLog::new();
        (tx, log)
    };
    let pc = Builder::new(
        runtime,
        "scripted",
        move || {
            let n = fetch_connections.load(Ordering::SeqCst);
            async move { Ok::<u16, String>(if n == 0 { 7000 } else { 7001 }) }
        },
        move |_addr, _ctx| {
            let next = script.lock().unwrap().next().copied();
            async move {
                match next.expect("script long enough") {
                    Ok(c) => Ok(Scripted(c, CloseSignal::new())),
                    Err(e) => Err(e.to_string()),
                }
            }
        },
    )
    .seed(SEED)
    .on_event(move |event| {
        let line = match &event {
            Event::AttemptingToConnect => "A".to_string(),
            Event::ObtainedAddress(a) => format!("O {a}"),
            Event::FailedToConnect(AttemptError::Connect(e)) => format!("F {e}"),
            Event::FailedToConnect(other) => format!("F? {other}"),
            Event::Connected(c) => {
                connections.fetch_add(1, Ordering::SeqCst);
                c.1.close(); // dies young, inside the handler
                format!("C {}", c.0)
            }
            Event::Disconnected => "D".to_string(),
        };
        let _ = tx.unbounded_send(line);
        async {}
    })
    .spawn();
    let (expected_events, expected_delays) = bare_machine_log(SEED);
    let mut seen = 0;
    while log.seen.len() < expected_events.len() {
        // Run until the machine waits on its timer, then jump to it.
        if log.seen.len() == seen {
            let _ = clock.next_timer().await;
        }
        seen = log.seen.len();
        let pending_before = clock.pending_timers();
        if pending_before > 0 {
            clock.advance_to_next();
        }
        if let Some(event) = next_now(&mut log) {
            log.seen.push(event);
        }
    }
    // The last wait starts once the last `Disconnected` handler has returned: wait for it
    // before `close` cancels it.
    while sleeps.seen.lock().unwrap().len() < expected_delays.len() {
        let next = std::future::poll_fn(|cx| Pin::new(&mut waits).poll_next(cx));
        bounded::<T, _>(next, "the driver to wait on its next retry timer").await;
    }
    pc.close().await;
    let events = log.rest().await;
    assert_eq!(events[..expected_events.len()], expected_events[..]);
    let delays = sleeps.seen.lock().unwrap().clone();
    assert_eq!(delays[..expected_delays.len()], expected_delays[..]);
}

/// The next event if one is already queued.
fn next_now(log: &mut EventLog) -> Option<String> {
    log.rx.try_recv().ok()
}

/// Generates one `#[test]` per scenario for a [`TestRuntime`].
#[macro_export]
macro_rules! suite {
    ($rt:ty) => {
        $crate::suite!(@tests $rt;
            r1_failover_between_replicas_through_catalog,
            r4_server_restart_reconnects_on_same_port,
            r11_close_during_hung_dial,
            r11_close_from_inside_each_event_handler,
            r5_connection_dies_during_connected_handler,
            r4_repeated_identical_errors_reported_once,
            r8_thousand_waiters_woken_once_with_same_connection,
            r13_drop_all_handles_while_connected,
            r13_drop_all_handles_while_connecting,
            r13_drop_all_handles_while_sleeping,
            r7_default_retry_delay_on_virtual_clock,
            r12_abort_from_connect,
            r9_after_close_waiters_get_closed,
            r6_panics_in_callbacks_are_reported,
            r14_lagging_subscriber_is_told_what_it_missed,
            r14_builder_subscription_sees_every_event,
            r15_same_events_and_delays_as_bare_machine,
        );
        $crate::suite!(@operators $rt;
            r17_black_holed_connection_is_declared_dead_and_replaced,
            r17_without_health_check_silence_goes_unnoticed,
            r18_reconnect_now_moves_to_the_new_address_at_once,
            r19_flapping_server_backoff_grows_only_with_min_uptime,
            stats_follow_a_failover,
            r1_disconnected_handler_reads_why_a_driven_connection_ended,
        );
    };
    (@operators $rt:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::scenario::run::<$rt, _>(
                    stringify!($name),
                    $crate::scenario::operators::$name::<$rt>(),
                );
            }
        )*
    };
    (@tests $rt:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::scenario::run::<$rt, _>(
                    stringify!($name),
                    $crate::scenario::$name::<$rt>(),
                );
            }
        )*
    };
}
