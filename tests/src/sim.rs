//! Deterministic simulation on virtual time: an [`EventQueue`] that is also the clock (time only
//! moves by jumping to the next event), and [`run_swarm`], a seeded swarm of checked
//! Machines with injected faults.
//!
//! Per seed the swarm draws fault probabilities (the address fetch fails, the dial fails,
//! the dial or fetch hangs, a connection dies young, the persistent connection is closed
//! or aborted at a random moment, `reconnect_now` is called at random moments, R18) and a
//! configuration per Machine (constant, exponential, gRPC or custom policy; jitter on or
//! off; a connect timeout or none; a min uptime or none, R19). Every uptime timer the
//! Machine starts fires, and its `UptimeReached` is fed even when it comes late (the
//! connection closed meanwhile), so the Machine must refuse those. Every input and
//! command goes through the [`Checker`](crate::check::Checker). When the fault window
//! ends, faults stop (connections stop dying; new fetches and dials succeed) and every
//! Machine that was not stopped must be connected within
//! `max(1.3 x its retry delay, its connect timeout) + fetch and dial time + handler time`
//! (1.3 for the standard jitter; `1 + percent/100` for another),
//! and stay connected. A failure names the seed that replays it.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Duration;

use persistent_connection::{
    AttemptId, Command, Config, Event, Exponential, Input, Jitter, RetryPolicy, State, TimerId,
};

use crate::check::Violation;
use crate::rng::Rng;
use crate::script::{StopInput, TestChecked, TestConn, TestError, TestInput};

/// One scheduled item: due at `at`; `seq` keeps equal times in scheduling order.
#[derive(Debug)]
struct Entry<T> {
    at: Duration,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A virtual clock with a queue of future events: [`pop`](Self::pop) jumps the clock to
/// the earliest event. Events due at the same instant come out in the order they were
/// scheduled, so a run depends only on its seed.
#[derive(Debug)]
pub struct EventQueue<T> {
    now: Duration,
    seq: u64,
    heap: BinaryHeap<Reverse<Entry<T>>>,
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        EventQueue {
            now: Duration::ZERO,
            seq: 0,
            heap: BinaryHeap::new(),
        }
    }
}

impl<T> EventQueue<T> {
    /// An empty queue at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The virtual time now.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Schedules `item` `after` from now (saturating).
    pub fn schedule(&mut self, after: Duration, item: T) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at: self.now.saturating_add(after),
            seq: self.seq,
            item,
        }));
    }

    /// The earliest event, with the clock moved to its time; `None` when none is left.
    pub fn pop(&mut self) -> Option<T> {
        let Reverse(entry) = self.heap.pop()?;
        self.now = self.now.max(entry.at);
        Some(entry.item)
    }

    /// How many events wait.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// The longest address fetch.
const FETCH_MAX: Duration = Duration::from_millis(10);
/// The longest dial.
const DIAL_MAX: Duration = Duration::from_millis(50);
/// The longest event handler.
const HANDLER_MAX: Duration = Duration::from_millis(3);
/// The longest close of a connection asked for by `CloseConnection`.
const CLOSE_MAX: Duration = Duration::from_millis(5);
/// Events a seed may take before the run counts as a loop.
const MAX_EVENTS: u64 = 5_000_000;

/// The fault probabilities of one seed.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// An address fetch fails.
    pub fetch_fails: f64,
    /// A dial fails.
    pub dial_fails: f64,
    /// A fetch or dial never answers (only for Machines with a connect timeout).
    pub hangs: f64,
    /// A connection dies young (within half its attempt's delay).
    pub dies_young: f64,
    /// A Machine is closed, aborted or told to close with its connection, at a random
    /// moment of the fault window.
    pub stopped: f64,
    /// A Machine gets `reconnect_now` calls (R18) at random moments of the fault window.
    pub reconnects: f64,
}

/// What a swarm run did.
#[derive(Clone, Debug, Default)]
pub struct SwarmReport {
    /// Events processed.
    pub events: u64,
    /// Inputs fed (including stale timers and late results).
    pub inputs: u64,
    /// Connections handed out.
    pub connections: u64,
    /// Attempts that failed.
    pub failures: u64,
    /// Attempts that ended with the connect timeout.
    pub timeouts: u64,
    /// Machines that got a stop input.
    pub stopped: usize,
    /// Machines checked connected after the faults stopped.
    pub recovered: usize,
    /// `ReconnectNow` inputs fed (R18).
    pub reconnects: u64,
    /// Uptime timers started (R19).
    pub uptime_timers: u64,
    /// `UptimeReached` inputs taken (R19).
    pub uptimes_reached: u64,
    /// `UptimeReached` inputs refused: late, the connection had closed (R19).
    pub uptimes_refused: u64,
    /// The virtual time the run ended at.
    pub end: Duration,
}

#[derive(Debug)]
enum Ev {
    HandlerDone,
    Fetched(AttemptId, Result<u8, TestError>),
    Dialed(AttemptId, Result<TestConn, TestError>),
    Timer(TimerId),
    Dies(TestConn),
    CloseDone(TestConn),
    Delay(Duration),
    Stop(StopInput),
    Uptime(AttemptId),
    Reconnect,
    Check,
}

/// One Machine of the swarm and what its environment decided (what the Machine asked for,
/// and which connection is live, come from the checker's model).
struct Node {
    m: TestChecked,
    custom_base: Duration,
    has_timeout: bool,
    /// Cancelled attempts whose result the cancel stopped for good.
    dropped: Vec<AttemptId>,
    replica: u8,
    stop: Option<StopInput>,
    close_fed: bool,
    deadline: Option<Duration>,
    checked_connected: bool,
}

impl Node {
    /// The custom policy's closure of the failure count.
    fn custom_delay(&self, failures: u32) -> Duration {
        self.custom_base
            .saturating_mul(failures.saturating_add(1))
            .min(Duration::from_secs(2))
    }
}

struct Swarm {
    seed: u64,
    rng: Rng,
    faults: Faults,
    fault_end: Duration,
    q: EventQueue<(usize, Ev)>,
    nodes: Vec<Node>,
    next_conn: u64,
    report: SwarmReport,
}

/// A configuration, the custom policy's base delay and a jitter seed.
fn random_config(rng: &mut Rng) -> (Config, Duration, u64) {
    let ms = |rng: &mut Rng, lo: u64, hi: u64| Duration::from_millis(lo + rng.below(hi - lo + 1));
    let custom_base = ms(rng, 20, 300);
    let policy = match rng.below(4) {
        0 => RetryPolicy::Constant(ms(rng, 50, 1000)),
        1 => RetryPolicy::Exponential(Exponential {
            initial: ms(rng, 20, 200),
            multiplier: 1.2 + rng.unit() * 1.3,
            max: ms(rng, 500, 4000),
        }),
        2 => RetryPolicy::Exponential(Exponential::GRPC),
        _ => RetryPolicy::Custom,
    };
    let jitter = match rng.below(10) {
        0..=6 => Jitter::STANDARD,
        7 | 8 => Jitter::Off,
        _ => Jitter::Uniform { percent: 50 },
    };
    // A timeout longer than a fetch, a handler and a dial together (63 ms), so that once
    // the faults stop, attempts succeed.
    let timeout = rng.chance(0.5).then(|| ms(rng, 80, 500));
    // Around the lifetimes of connections that die young and those that do not (R19).
    let min_uptime = rng.chance(0.5).then(|| ms(rng, 5, 1500));
    let seed = rng.next_u64();
    let config = Config::new()
        .retry_policy(policy)
        .jitter(jitter)
        .connect_timeout(timeout)
        .min_uptime(min_uptime);
    (config, custom_base, seed)
}

impl Swarm {
    fn fail(&self, i: usize, v: Violation) -> String {
        format!(
            "swarm seed {} (replay: SWARM_SEED={} cargo test -p persistent-connection-tests \
             --test swarm), machine {i} ({:?}), virtual time {:?}:\n{v}",
            self.seed,
            self.seed,
            self.nodes[i].m.machine().config(),
            self.q.now()
        )
    }

    fn faulty(&self) -> bool {
        self.q.now() < self.fault_end
    }

    fn feed(&mut self, i: usize, input: TestInput) -> Result<(), String> {
        self.report.inputs += 1;
        if matches!(input, Input::Close) {
            self.nodes[i].close_fed = true;
        }
        // A rejected input (a stale timer, a late result) changes nothing; the checker has
        // checked that it had to be rejected and came back unchanged.
        if let Err(v) = self.nodes[i].m.feed(input) {
            return Err(self.fail(i, v));
        }
        self.drain(i)
    }

    fn drain(&mut self, i: usize) -> Result<(), String> {
        loop {
            let cmd = match self.nodes[i].m.poll() {
                Ok(Some(cmd)) => cmd,
                Ok(None) => return Ok(()),
                Err(v) => return Err(self.fail(i, v)),
            };
            self.carry_out(i, cmd);
        }
    }

    fn handler_time(&mut self) -> Duration {
        self.rng.duration(Duration::ZERO, HANDLER_MAX)
    }

    fn carry_out(&mut self, i: usize, cmd: Command<u8, TestConn, TestError>) {
        match cmd {
            Command::Emit { event, .. } => {
                let t = self.handler_time();
                self.q.schedule(t, (i, Ev::HandlerDone));
                match event {
                    Event::Connected(_) => self.report.connections += 1,
                    Event::FailedToConnect(error) => {
                        self.report.failures += 1;
                        if error.is_timeout() {
                            self.report.timeouts += 1;
                        }
                    }
                    _ => {}
                }
            }
            Command::FailedAgain { error, .. } => {
                self.report.failures += 1;
                if error.is_timeout() {
                    self.report.timeouts += 1;
                }
            }
            Command::ComputeRetryDelay {
                consecutive_failures,
                ..
            } => {
                let d = self.nodes[i].custom_delay(consecutive_failures);
                self.q.schedule(Duration::ZERO, (i, Ev::Delay(d)));
            }
            Command::StartTimer { timer, delay } => self.q.schedule(delay, (i, Ev::Timer(timer))),
            // Always fires; fed even when late (the Machine must refuse it then).
            Command::StartUptimeTimer { attempt, delay } => {
                self.report.uptime_timers += 1;
                self.q.schedule(delay, (i, Ev::Uptime(attempt)));
            }
            Command::FetchAddress { attempt } => {
                let latency = self.rng.duration(Duration::ZERO, FETCH_MAX);
                if self.faulty() && self.rng.chance(self.faults.fetch_fails) {
                    let e = TestError(self.rng.below(3) as u8);
                    self.q.schedule(latency, (i, Ev::Fetched(attempt, Err(e))));
                } else if self.faulty()
                    && self.nodes[i].has_timeout
                    && self.rng.chance(self.faults.hangs)
                {
                    // Hangs: never answers.
                } else {
                    if self.faulty() && self.rng.chance(0.2) {
                        self.nodes[i].replica = self.rng.below(3) as u8;
                    }
                    let replica = self.nodes[i].replica;
                    self.q
                        .schedule(latency, (i, Ev::Fetched(attempt, Ok(replica))));
                }
            }
            Command::Dial { attempt, .. } => {
                let latency = self.rng.duration(Duration::from_millis(1), DIAL_MAX);
                if self.faulty() && self.rng.chance(self.faults.dial_fails) {
                    let e = TestError(self.rng.below(3) as u8);
                    self.q.schedule(latency, (i, Ev::Dialed(attempt, Err(e))));
                } else if self.faulty()
                    && self.nodes[i].has_timeout
                    && self.rng.chance(self.faults.hangs)
                {
                    // Hangs: never answers.
                } else {
                    self.next_conn += 1;
                    let conn = TestConn(self.next_conn);
                    self.q.schedule(latency, (i, Ev::Dialed(attempt, Ok(conn))));
                    if self.faulty() {
                        let lifetime = if self.rng.chance(self.faults.dies_young) {
                            let base = self.nodes[i]
                                .m
                                .checker()
                                .latest_attempt_base_delay()
                                .unwrap_or(Duration::from_millis(100));
                            self.rng.duration(
                                Duration::from_millis(1),
                                (base / 2).max(Duration::from_millis(2)),
                            )
                        } else {
                            self.rng
                                .duration(Duration::from_millis(200), Duration::from_secs(5))
                        };
                        self.q.schedule(latency + lifetime, (i, Ev::Dies(conn)));
                    }
                }
            }
            Command::CancelAttempt { attempt } => {
                // Half the time the cancel wins; otherwise the result still comes, late.
                if self.rng.chance(0.5) {
                    self.nodes[i].dropped.push(attempt);
                }
            }
            Command::CloseConnection { connection, .. } => {
                if self.live(i).is_some_and(|(l, _)| l == connection) {
                    let t = self.rng.duration(Duration::ZERO, CLOSE_MAX);
                    self.q.schedule(t, (i, Ev::CloseDone(connection)));
                }
            }
            Command::Stopped(_) | Command::Finished => {}
        }
    }

    /// The connection handed out and not yet reported closed, as the checker knows it.
    fn live(&self, i: usize) -> Option<(TestConn, AttemptId)> {
        self.nodes[i].m.checker().live_connection().copied()
    }

    fn closes(&mut self, i: usize, c: TestConn) -> Result<(), String> {
        match self.live(i) {
            Some((l, attempt)) if l == c => self.feed(i, Input::ConnectionClosed { attempt }),
            _ => Ok(()),
        }
    }

    fn step(&mut self, i: usize, ev: Ev) -> Result<(), String> {
        match ev {
            Ev::HandlerDone => self.feed(i, Input::EventHandled),
            Ev::Fetched(attempt, result) => {
                if self.nodes[i].dropped.contains(&attempt) {
                    return Ok(());
                }
                self.feed(i, Input::AddressObtained { attempt, result })
            }
            Ev::Dialed(attempt, result) => {
                if self.nodes[i].dropped.contains(&attempt) {
                    return Ok(());
                }
                self.feed(i, Input::Dialed { attempt, result })
            }
            // Stale timers are fed too: the Machine must reject them.
            Ev::Timer(t) => self.feed(i, Input::TimerFired(t)),
            Ev::Dies(c) => {
                if self.faulty() {
                    self.closes(i, c)
                } else {
                    Ok(()) // faults have stopped: connections no longer die
                }
            }
            Ev::CloseDone(c) => self.closes(i, c),
            Ev::Delay(d) => self.feed(i, Input::RetryDelay(d)),
            Ev::Stop(s) => self.feed(i, s.input()),
            Ev::Uptime(attempt) => {
                self.report.inputs += 1;
                match self.nodes[i].m.feed(Input::UptimeReached { attempt }) {
                    Err(v) => return Err(self.fail(i, v)),
                    Ok(Ok(())) => self.report.uptimes_reached += 1,
                    Ok(Err(_)) => self.report.uptimes_refused += 1,
                }
                self.drain(i)
            }
            Ev::Reconnect => {
                self.report.reconnects += 1;
                self.feed(i, Input::ReconnectNow)
            }
            Ev::Check => {
                let m = self.nodes[i].m.machine();
                if m.state() != State::Connected {
                    let msg = format!(
                        "not connected by {:?}, the deadline after the faults stopped at {:?} \
                         (state {:?}, {} consecutive failures, retry delay {:?})",
                        self.nodes[i].deadline,
                        self.fault_end,
                        m.state(),
                        m.consecutive_failures(),
                        m.retry_delay()
                    );
                    let mut v = crate::check::violation("R7 recovery", msg);
                    v.trace = self.nodes[i].m.checker().trace();
                    return Err(self.fail(i, v));
                }
                self.nodes[i].checked_connected = true;
                self.report.recovered += 1;
                Ok(())
            }
        }
    }

    /// The faults stop: each Machine not stopped gets its deadline to be connected.
    fn faults_end(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].stop.is_some() {
                continue;
            }
            let m = self.nodes[i].m.machine();
            let base = self.nodes[i]
                .m
                .checker()
                .latest_attempt_base_delay()
                .unwrap_or(Duration::ZERO);
            let timeout = m.config().connect_timeout.unwrap_or_default();
            let ops = FETCH_MAX + DIAL_MAX;
            // 1.3 for the standard jitter; 1 + percent/100 in general.
            let spread = match m.config().jitter {
                Jitter::Uniform { percent } => 1.0 + f64::from(percent.min(100)) / 100.0,
                _ => 1.0,
            };
            let wait = base.mul_f64(spread).max(timeout).max(ops + 2 * HANDLER_MAX);
            let bound = wait + ops + 4 * HANDLER_MAX + Duration::from_millis(1);
            // Measured from the end of the faults (nothing happened between it and now).
            let deadline = self.fault_end + bound;
            self.nodes[i].deadline = Some(deadline);
            self.q
                .schedule(deadline.saturating_sub(self.q.now()), (i, Ev::Check));
        }
    }
}

/// Runs one seed of the swarm: `machines` checked Machines on virtual time, faults for
/// `fault_window`, then recovery. `Err` carries a message naming the seed.
pub fn run_swarm(
    seed: u64,
    machines: usize,
    fault_window: Duration,
) -> Result<SwarmReport, String> {
    let mut rng = Rng::new(seed);
    let faults = Faults {
        fetch_fails: rng.unit() * 0.5,
        dial_fails: rng.unit() * 0.6,
        hangs: rng.unit() * 0.3,
        dies_young: rng.unit() * 0.6,
        stopped: rng.unit() * 0.4,
        reconnects: rng.unit() * 0.5,
    };
    let mut swarm = Swarm {
        seed,
        rng,
        faults,
        fault_end: fault_window,
        q: EventQueue::new(),
        nodes: Vec::with_capacity(machines),
        next_conn: 0,
        report: SwarmReport::default(),
    };
    for i in 0..machines {
        let (config, custom_base, jitter_seed) = random_config(&mut swarm.rng);
        let stop = swarm.rng.chance(faults.stopped).then(|| {
            let at = swarm.rng.duration(Duration::ZERO, fault_window);
            let kind = match swarm.rng.below(5) {
                0..=2 => StopInput::Close,
                3 => StopInput::Abort,
                _ => StopInput::CloseWhenCurrentConnectionCloses,
            };
            (at, kind)
        });
        swarm.nodes.push(Node {
            m: TestChecked::new(config, jitter_seed),
            custom_base,
            has_timeout: config.connect_timeout.is_some(),
            dropped: Vec::new(),
            replica: 0,
            stop: stop.map(|(_, k)| k),
            close_fed: false,
            deadline: None,
            checked_connected: false,
        });
        if let Some((at, kind)) = stop {
            swarm.q.schedule(at, (i, Ev::Stop(kind)));
        }
        // R18: a few calls of reconnect_now, all within the fault window (once the faults
        // stop, a Machine must reconnect and stay connected).
        if swarm.rng.chance(faults.reconnects) {
            for _ in 0..1 + swarm.rng.below(4) {
                let last = fault_window.saturating_sub(Duration::from_millis(1));
                let at = swarm.rng.duration(Duration::ZERO, last);
                swarm.q.schedule(at, (i, Ev::Reconnect));
            }
        }
        swarm.drain(i)?;
    }
    let mut faults_over = false;
    while let Some((i, ev)) = swarm.q.pop() {
        if !faults_over && swarm.q.now() >= fault_window {
            faults_over = true;
            swarm.faults_end();
        }
        swarm.report.events += 1;
        if swarm.report.events > MAX_EVENTS {
            return Err(format!(
                "swarm seed {seed}: more than {MAX_EVENTS} events (a loop?)"
            ));
        }
        swarm.step(i, ev)?;
    }
    if !faults_over {
        swarm.faults_end();
        while let Some((i, ev)) = swarm.q.pop() {
            swarm.step(i, ev)?;
        }
    }
    swarm.report.end = swarm.q.now();
    for i in 0..swarm.nodes.len() {
        let node = &swarm.nodes[i];
        let m = node.m.machine();
        let live = node.m.checker().live_connection();
        let fine = match node.stop {
            None => node.checked_connected && m.state() == State::Connected,
            Some(_) if node.close_fed => m.is_finished(),
            // abort / close_when_current_connection_is_closed keep a live connection.
            Some(_) => m.is_finished() || (m.state() == State::Closing && live.is_some()),
        };
        if !fine {
            let v = crate::check::violation(
                "R11 end state",
                format!(
                    "at the end: state {:?}, stop {:?}, live {:?}, checked connected {}",
                    m.state(),
                    node.stop,
                    live,
                    node.checked_connected
                ),
            );
            return Err(swarm.fail(i, v));
        }
        if node.stop.is_some() {
            swarm.report.stopped += 1;
        }
    }
    Ok(swarm.report)
}
