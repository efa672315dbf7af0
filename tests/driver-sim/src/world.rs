//! The scripted world: the futures the driver waits on (address fetches, dials, handlers,
//! health probes, connection closes, driving futures), which the world completes, fails,
//! hangs, panics or lets die as the input says; the connection type, which counts its
//! `close` calls and its drops; and the ledger the checks read.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

use persistent_connection_driver::{
    AttemptContext, AttemptError, BoxFuture, CloseSignal, Connection, Driven, Ending,
    PersistentConnection, VirtualClock, WeakPersistentConnection,
};

use crate::exec::ExecShared;
use crate::{Violation, rule};

/// The address type of the simulation: a small number, so that addresses repeat.
pub(crate) type Addr = u8;
/// The handle under test.
pub(crate) type Pc = PersistentConnection<Addr, SimConn, SimError>;
pub(crate) type WeakPc = WeakPersistentConnection<Addr, SimConn, SimError>;

/// The panic message of every panic the world injects: the panic hook lets these through
/// silently, and any other panic the driver reports is a finding.
pub(crate) const INJECTED: &str = "sim: injected panic";

/// Panics as the world decided to.
pub(crate) fn injected_panic() -> ! {
    std::panic::panic_any(INJECTED)
}

/// The error type of the simulation. Its `Debug` text (and so its key, R4) is its `key`
/// only, so errors repeat; `serial` tells the instances apart for the checks.
#[derive(Clone)]
pub struct SimError {
    /// What R4 compares (through the `Debug` text).
    pub key: u8,
    /// Unique per error made.
    pub serial: u32,
}

impl fmt::Debug for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.key)
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.key)
    }
}

impl std::error::Error for SimError {}

/// The bytes that drive a run, then a seeded generator once they are used up.
pub(crate) struct Source {
    data: Vec<u8>,
    pos: usize,
    rng: u64,
}

impl Source {
    pub(crate) fn new(data: &[u8]) -> Self {
        // FNV-1a of the input seeds what comes after it.
        let rng = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
        Source {
            data: data.to_vec(),
            pos: 0,
            rng,
        }
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte of the input, or of the generator once the input is used up.
    pub(crate) fn byte(&mut self) -> u8 {
        if let Some(b) = self.data.get(self.pos) {
            self.pos += 1;
            return *b;
        }
        (splitmix(&mut self.rng) >> 56) as u8
    }

    /// A number below `n` (`n` > 0).
    pub(crate) fn pick(&mut self, n: usize) -> usize {
        if n <= 256 {
            usize::from(self.byte()) % n
        } else {
            (usize::from(self.byte()) << 8 | usize::from(self.byte())) % n
        }
    }

    /// True with probability `num / 256`.
    pub(crate) fn chance(&mut self, num: u8) -> bool {
        self.byte() < num
    }
}

/// SplitMix64: the seeded generator of the property tests and of the end of a run.
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What kind of future an op is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    Fetch,
    Dial,
    Handler,
    Probe,
    /// A connection's `close` future.
    Close,
    /// A `Driven` connection's driving future: its end is the connection's death.
    Drive,
}

/// How the world ends an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok(u8),
    Err(u8),
    Panic,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Pending,
    /// Pending, and the world will not end it until the end of the run (for handlers and
    /// closes) or ever (for fetches, dials, probes and driving futures).
    Hung,
    Resolved(Outcome),
    /// Its future returned.
    Done,
}

pub(crate) struct Op {
    pub(crate) kind: OpKind,
    pub(crate) status: Status,
    /// Its future still exists.
    pub(crate) alive: bool,
    waker: Option<Waker>,
    /// The connection it is about (probes, closes, driving futures).
    pub(crate) conn: Option<u32>,
}

/// One event as the checks see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ev {
    pub(crate) kind: char,
    pub(crate) value: u64,
}

impl Ev {
    pub(crate) fn of(
        event: &persistent_connection_driver::DriverEvent<Addr, SimConn, SimError>,
    ) -> Self {
        use persistent_connection_driver::Event;
        let (kind, value) = match event {
            Event::AttemptingToConnect => ('A', 0),
            Event::ObtainedAddress(a) => ('O', u64::from(*a)),
            Event::FailedToConnect(e) => ('F', error_code(e)),
            Event::Connected(c) => ('C', u64::from(c.id())),
            Event::Disconnected => ('D', 0),
        };
        Ev { kind, value }
    }
}

impl fmt::Display for Ev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            'O' => write!(f, "O(addr {})", self.value),
            'F' => write!(f, "F({})", self.value),
            'C' => write!(f, "C(conn {})", self.value),
            k => write!(f, "{k}"),
        }
    }
}

/// An attempt error as a number: which kind, and the serial of the world's error.
pub(crate) fn error_code(e: &AttemptError<SimError>) -> u64 {
    match e {
        AttemptError::Address(e) => 100_000 + u64::from(e.serial),
        AttemptError::Connect(e) => 200_000 + u64::from(e.serial),
        AttemptError::TimedOut(_) => 1,
        AttemptError::Panicked { .. } => 2,
        _ => 3,
    }
}

/// Everything the world knows about one connection it made.
#[derive(Debug, Default)]
pub(crate) struct ConnRec {
    pub(crate) created_tick: u64,
    pub(crate) driven: bool,
    /// `Connection::close` calls (by the driver: user code never calls it).
    pub(crate) close_calls: u32,
    pub(crate) close_tick: Option<u64>,
    /// When it died on its own (peer close, or the driving future ended or was dropped).
    pub(crate) died_tick: Option<u64>,
    /// Every clone is gone.
    pub(crate) dropped: bool,
    /// A `Driven` connection: its handle (and so the `Driven`) is gone.
    pub(crate) handle_dropped: bool,
    pub(crate) drive_op: Option<usize>,
}

impl ConnRec {
    pub(crate) fn closed_at(&self) -> Option<u64> {
        match (self.close_tick, self.died_tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The world's connection: a close signal, or a `Driven` whose driving future is an op of
/// the world. Counts `close` calls and drops.
#[derive(Clone)]
pub struct SimConn(Arc<ConnInner>);

struct ConnInner {
    id: u32,
    env: Weak<Env>,
    kind: ConnKind,
}

enum ConnKind {
    Signal(CloseSignal),
    Driven(Driven<DrivenHandle>),
}

/// The handle inside a `Driven` connection: its drop is recorded.
struct DrivenHandle {
    id: u32,
    env: Weak<Env>,
}

impl Drop for DrivenHandle {
    fn drop(&mut self) {
        if let Some(env) = self.env.upgrade() {
            env.conns()[self.id as usize].handle_dropped = true;
        }
    }
}

impl Drop for ConnInner {
    fn drop(&mut self) {
        if let Some(env) = self.env.upgrade() {
            env.conns()[self.id as usize].dropped = true;
        }
    }
}

impl fmt::Debug for SimConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn {}", self.0.id)
    }
}

impl SimConn {
    /// The world's number for it.
    pub fn id(&self) -> u32 {
        self.0.id
    }

    /// The peer goes away (a plain connection's signal is raised; a `Driven` one's driving
    /// future ends).
    pub(crate) fn die(&self, env: &Env) {
        match &self.0.kind {
            ConnKind::Signal(signal) => {
                let tick = env.world().tick();
                let mut conns = env.conns();
                let rec = &mut conns[self.0.id as usize];
                if rec.died_tick.is_none() {
                    rec.died_tick = Some(tick);
                }
                drop(conns);
                signal.close();
            }
            ConnKind::Driven(_) => {
                let op = env.conns()[self.0.id as usize].drive_op;
                if let Some(op) = op {
                    let mut w = env.world();
                    if matches!(w.ops[op].status, Status::Pending | Status::Hung) {
                        env.resolve_locked(&mut w, op, Outcome::Ok(0));
                    }
                }
            }
        }
    }
}

impl Connection for SimConn {
    fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let env = self.0.env.upgrade();
        let mut delay = None;
        if let Some(env) = &env {
            let mut w = env.world();
            let tick = w.tick();
            let slow = w.src.chance(48);
            {
                let mut conns = env.conns();
                let rec = &mut conns[self.0.id as usize];
                rec.close_calls += 1;
                if rec.close_calls > 1 && w.allow_known && w.health {
                    w.known_bugs += 1;
                    w.trace(format_args!(
                        "known driver bug: conn {} closed again (health check on)",
                        self.0.id
                    ));
                } else if rec.close_calls > 1 {
                    w.fail(
                        rule::R11,
                        format!(
                            "conn {} closed {} times by the driver",
                            self.0.id, rec.close_calls
                        ),
                    );
                }
                rec.close_tick.get_or_insert(tick);
            }
            if slow {
                delay = Some(OpFuture::new(env, &mut w, OpKind::Close, Some(self.0.id)));
            }
            w.trace(format_args!("driver closes conn {}", self.0.id));
        }
        let inner: BoxFuture<()> = match &self.0.kind {
            ConnKind::Signal(signal) => {
                signal.close();
                Box::pin(std::future::ready(()))
            }
            ConnKind::Driven(driven) => Box::pin(Connection::close(driven)),
        };
        async move {
            if let Some(delay) = delay {
                // A close that panics is the driver's to report; here it only waits.
                let _ = delay.await;
            }
            inner.await;
        }
    }

    fn is_closed(&self) -> bool {
        match &self.0.kind {
            ConnKind::Signal(signal) => signal.is_closed(),
            ConnKind::Driven(driven) => driven.is_closed(),
        }
    }

    fn closed(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let closed: BoxFuture<()> = match &self.0.kind {
            ConnKind::Signal(signal) => Box::pin(signal.closed()),
            ConnKind::Driven(driven) => Box::pin(Connection::closed(driven)),
        };
        closed
    }

    fn take_driver(&self) -> Option<BoxFuture<()>> {
        match &self.0.kind {
            ConnKind::Signal(_) => None,
            ConnKind::Driven(driven) => driven.take_driver(),
        }
    }

    fn ending(&self) -> Option<Ending> {
        match &self.0.kind {
            ConnKind::Signal(_) => None,
            ConnKind::Driven(driven) => Connection::ending(driven),
        }
    }
}

/// A future of the world: pending until the world ends it.
pub(crate) struct OpFuture {
    env: Arc<Env>,
    id: usize,
}

impl OpFuture {
    pub(crate) fn new(env: &Arc<Env>, w: &mut World, kind: OpKind, conn: Option<u32>) -> Self {
        let id = w.ops.len();
        w.ops.push(Op {
            kind,
            status: Status::Pending,
            alive: true,
            waker: None,
            conn,
        });
        w.trace(format_args!("op {id} {kind:?} starts"));
        OpFuture {
            env: env.clone(),
            id,
        }
    }
}

impl Future for OpFuture {
    type Output = Outcome;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut w = self.env.world();
        let op = &mut w.ops[self.id];
        match op.status {
            Status::Resolved(outcome) => {
                op.status = Status::Done;
                let (kind, conn) = (op.kind, op.conn);
                if kind == OpKind::Handler {
                    w.handler_running = false;
                }
                if kind == OpKind::Drive {
                    w.conn_died(&self.env, conn);
                }
                Poll::Ready(outcome)
            }
            Status::Done => Poll::Pending,
            _ => {
                op.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for OpFuture {
    fn drop(&mut self) {
        let mut w = self.env.world();
        let op = &mut w.ops[self.id];
        op.alive = false;
        op.waker = None;
        let (kind, conn, done) = (op.kind, op.conn, op.status == Status::Done);
        if !done {
            w.trace(format_args!("op {} {kind:?} dropped", self.id));
            if kind == OpKind::Drive {
                w.conn_died(&self.env, conn);
            }
        }
    }
}

/// A caller of one of the handle's futures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitKind {
    Connected,
    ConnectedOrClosed,
    ConnectedOrFailed,
    Close,
    CloseFinished,
}

/// What a caller got.
#[derive(Debug)]
pub(crate) enum Answer {
    Conn(SimConn),
    Stopped(Option<u32>),
    Attempt(u64),
    Unit,
}

pub(crate) struct WaiterRec {
    pub(crate) kind: WaitKind,
    pub(crate) call_tick: u64,
    pub(crate) task: usize,
    pub(crate) resolved: bool,
    pub(crate) cancelled: bool,
}

pub(crate) struct StreamRec {
    /// Events: the index in the log of the next event it should see.
    pub(crate) next: usize,
    pub(crate) last_state: Option<persistent_connection::State>,
    pub(crate) ended: bool,
    pub(crate) task: usize,
    pub(crate) cancelled: bool,
}

/// The first stop of the persistent connection, as the checks see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stop {
    pub(crate) tick: u64,
    /// `Some(serial)` for an abort.
    pub(crate) aborted: Option<u32>,
}

/// The world's state and the ledger of what happened.
pub(crate) struct World {
    pub(crate) src: Source,
    tick: u64,
    pub(crate) step: u64,
    pub(crate) ops: Vec<Op>,
    pub(crate) log: Vec<Ev>,
    /// Where the event grammar is: 0 expects A, 1 inside a cycle, 2 after C.
    pub(crate) grammar: u8,
    pub(crate) handler_running: bool,
    /// The driver's task has completed.
    pub(crate) driver_done: bool,
    pub(crate) first_stop: Option<Stop>,
    pub(crate) close_tick: Option<u64>,
    pub(crate) waiters: Vec<WaiterRec>,
    pub(crate) streams: Vec<StreamRec>,
    /// Connections callers got, which they keep a while.
    pub(crate) held: Vec<SimConn>,
    pub(crate) contexts: Vec<AttemptContext<SimError>>,
    pub(crate) serial: u32,
    pub(crate) last_address: Option<Addr>,
    pub(crate) current: Option<u32>,
    pub(crate) disconnected: Vec<u32>,
    pub(crate) panics: u32,
    pub(crate) violation: Option<Violation>,
    pub(crate) trace: Option<Vec<String>>,
    /// Which kind of connection the world makes.
    pub(crate) driven: bool,
    pub(crate) weak: Option<WeakPc>,
    pub(crate) clock: VirtualClock,
    /// The health check is on.
    pub(crate) health: bool,
    /// Tolerate the driver bugs found so far (see [`crate::KNOWN_BUGS`]).
    pub(crate) allow_known: bool,
    /// How often a known driver bug showed.
    pub(crate) known_bugs: u32,
}

impl World {
    pub(crate) fn new(data: &[u8], trace: bool, clock: VirtualClock) -> Self {
        World {
            src: Source::new(data),
            tick: 0,
            step: 0,
            ops: Vec::new(),
            log: Vec::new(),
            grammar: 0,
            handler_running: false,
            driver_done: false,
            first_stop: None,
            close_tick: None,
            waiters: Vec::new(),
            streams: Vec::new(),
            held: Vec::new(),
            contexts: Vec::new(),
            serial: 0,
            last_address: None,
            current: None,
            disconnected: Vec::new(),
            panics: 0,
            violation: None,
            trace: trace.then(Vec::new),
            driven: false,
            weak: None,
            clock,
            health: false,
            allow_known: true,
            known_bugs: 0,
        }
    }

    /// A fresh point in the order of things.
    pub(crate) fn tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    pub(crate) fn trace(&mut self, line: fmt::Arguments<'_>) {
        if let Some(trace) = &mut self.trace {
            let now = self.clock.now();
            trace.push(format!(
                "{:>5} {:>9.3}s {line}",
                self.step,
                now.as_secs_f64()
            ));
        }
    }

    /// Records the first rule broken.
    pub(crate) fn fail(&mut self, rule: &'static str, message: String) {
        self.trace(format_args!("VIOLATION {rule}: {message}"));
        if self.violation.is_none() {
            let trace_tail = self.trace.clone().unwrap_or_default();
            self.violation = Some(Violation {
                rule,
                message,
                step: self.step,
                trace_tail,
            });
        }
    }

    pub(crate) fn error(&mut self, key: u8) -> SimError {
        self.serial += 1;
        SimError {
            key,
            serial: self.serial,
        }
    }

    /// Records a stop request (close, abort, close_when_current, drop of the last handle).
    pub(crate) fn note_stop(&mut self, aborted: Option<u32>, close: bool) {
        let tick = self.tick();
        if self.first_stop.is_none() && !self.driver_done {
            self.first_stop = Some(Stop { tick, aborted });
        }
        if close && self.close_tick.is_none() && !self.driver_done {
            self.close_tick = Some(tick);
        }
    }

    /// Whether an op of `kind` is alive and not yet done.
    pub(crate) fn live_op(&self, kind: OpKind) -> bool {
        self.ops
            .iter()
            .any(|op| op.kind == kind && op.alive && op.status != Status::Done)
    }

    fn conn_died(&mut self, env: &Env, conn: Option<u32>) {
        let tick = self.tick();
        if let Some(id) = conn {
            let mut conns = env.conns();
            let rec = &mut conns[id as usize];
            rec.died_tick.get_or_insert(tick);
        }
    }
}

/// What the world's futures, callbacks and connections share.
pub(crate) struct Env {
    world: Mutex<World>,
    conns: Mutex<Vec<ConnRec>>,
    pub(crate) exec: Arc<ExecShared>,
}

impl Env {
    pub(crate) fn new(world: World, exec: Arc<ExecShared>) -> Arc<Self> {
        Arc::new(Env {
            world: Mutex::new(world),
            conns: Mutex::new(Vec::new()),
            exec,
        })
    }

    /// Locks the world. Never held while calling into the driver.
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the connection ledger. Taken after the world's lock, never before.
    pub(crate) fn conns(&self) -> MutexGuard<'_, Vec<ConnRec>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends op `id` with `outcome`.
    pub(crate) fn resolve_locked(&self, w: &mut World, id: usize, outcome: Outcome) {
        let op = &mut w.ops[id];
        op.status = Status::Resolved(outcome);
        let waker = op.waker.take();
        let kind = op.kind;
        w.trace(format_args!("world ends op {id} {kind:?}: {outcome:?}"));
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Makes a connection (the world's answer to a dial).
    pub(crate) fn make_conn(self: &Arc<Self>, w: &mut World) -> SimConn {
        let tick = w.tick();
        let id = {
            let mut conns = self.conns();
            conns.push(ConnRec {
                created_tick: tick,
                driven: w.driven,
                ..ConnRec::default()
            });
            (conns.len() - 1) as u32
        };
        let kind = if w.driven {
            let op = OpFuture::new(self, w, OpKind::Drive, Some(id));
            self.conns()[id as usize].drive_op = Some(op.id);
            let driving = async move {
                match op.await {
                    Outcome::Ok(_) => Ok(()),
                    Outcome::Err(k) => Err(std::io::Error::other(format!("e{k}"))),
                    Outcome::Panic => injected_panic(),
                }
            };
            let handle = DrivenHandle {
                id,
                env: Arc::downgrade(self),
            };
            ConnKind::Driven(Driven::new(handle, driving))
        } else {
            ConnKind::Signal(CloseSignal::new())
        };
        w.trace(format_args!("world makes conn {id}"));
        SimConn(Arc::new(ConnInner {
            id,
            env: Arc::downgrade(self),
            kind,
        }))
    }
}
