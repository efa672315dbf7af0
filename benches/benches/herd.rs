//! A thundering herd on the bare Machine: 1,000,000 clients, each a `Machine` with the
//! default policy (constant 10 s), lose their server at the same instant. The server
//! refuses every dial for `DOWN` (it restarts), then accepts. The simulation runs on
//! virtual time; fetches, dials and event handlers answer
//! at once, so only the retry timers move time.
//!
//! Each client's connection is long-lived (its retry timer fired long ago), so by R7 every
//! client dials again at once when it dies; after that, each attempt waits for its retry
//! timer. Printed for jitter on (the default +-30 %) and off: attempts per 100 ms window as
//! a compact histogram (one row per second that saw attempts, ten 100 ms columns), the
//! peak window, when the last client reconnected, and the machine-steps per second it took
//! to simulate (goal: the whole simulation in under 1 s per core; it runs on one).
//!
//! In time order the 304 MB of Machines are touched in random order, so the simulation
//! prefetches the Machines of the next firings of a calendar bucket (same steps in the same
//! order, checked against a run without prefetching, which is reported too), keeps its
//! calendar entries small (12 bytes) and reuses the drained buckets' memory.
//! `HERD_CACHE=<clients>[:<ahead>|:setup]` runs only the time-ordered simulation, for
//! `valgrind --tool=cachegrind --cache-sim=yes`.
//!
//! Run: `cargo bench -p persistent-connection-benches --bench herd`

use std::hint::black_box;
use std::time::{Duration, Instant};

use persistent_connection::{AttemptId, Command, Config, Event, Input, Jitter, Machine, TimerId};
use persistent_connection_benches::{full_run, note_smoke_run};

/// The address: one server, so a `u16` port.
type Addr = u16;
/// The connection: its client's index.
type Conn = u32;

/// The dial error: "connection refused".
#[derive(Debug)]
struct Refused;

type M = Machine<Addr, Conn, Refused>;

/// How long the server stays down after it dies at t = 0.
const DOWN: Duration = Duration::from_secs(25);
/// The calendar's resolution.
const BUCKET_NS: u64 = 1_000_000;
/// The histogram's window.
const WINDOW_NS: u64 = 100_000_000;
/// Time the calendar covers (longer than any run here needs).
const HORIZON: Duration = Duration::from_secs(120);

/// One client's pending timer, in 12 bytes: the calendar is written and read once per
/// firing, 4 M times a run, so its size is memory traffic (a `(u32, u64, TimerId)` took 24).
#[derive(Clone, Copy)]
struct Entry {
    client: u32,
    /// The deadline, in ns after the start of its bucket (a bucket is 1 ms).
    offset: u32,
    /// The timer's id: a client starts a few dozen timers in a run, far below `u32::MAX`.
    timer: u32,
}

/// How many calendar entries ahead the time-ordered run prefetches a client's Machine.
/// The Machines are 304 MB touched in random order: without it, each firing waits for its
/// Machine's cache lines one miss at a time; with it, the misses of the next firings
/// overlap. About a dozen firings cover the memory latency (3 to 12 were tried, alike within
/// this host's noise, 24 and 48 slower; 0 turns prefetching off, and the bench also reports
/// that run).
const PREFETCH_AHEAD: usize = 12;

struct Sim {
    machines: Vec<M>,
    /// Time-ordered mode: the timers out, by 1 ms bucket of their deadline.
    calendar: Vec<Vec<Entry>>,
    /// Drained buckets' vectors, reused for the buckets filled next: time only moves
    /// forward, so a drained bucket is never filled again, and keeping its allocation there
    /// would touch fresh memory (page faults) for every new bucket.
    spare: Vec<Vec<Entry>>,
    /// Entries ahead to prefetch in time order (0: none).
    prefetch_ahead: usize,
    /// Schedule timers in the calendar (time-ordered mode) or only note the last one.
    use_calendar: bool,
    /// The last timer started: (deadline, id).
    last_timer: (u64, TimerId),
    /// Attempts (dials) per 100 ms window.
    attempts: Vec<u64>,
    steps: u64,
    connected: usize,
    last_connect_ns: u64,
}

impl Sim {
    /// `n` clients, each connected long enough for its retry timer to have fired.
    fn new(n: usize, jitter: Jitter) -> Self {
        let windows = (HORIZON.as_nanos() as u64 / WINDOW_NS) as usize;
        let buckets = (HORIZON.as_nanos() as u64 / BUCKET_NS) as usize;
        let mut sim = Sim {
            machines: Vec::with_capacity(n),
            calendar: (0..buckets).map(|_| Vec::new()).collect(),
            spare: Vec::new(),
            prefetch_ahead: PREFETCH_AHEAD,
            use_calendar: false,
            last_timer: (0, TimerId(0)),
            attempts: vec![0; windows],
            steps: 0,
            connected: 0,
            last_connect_ns: 0,
        };
        for i in 0..n {
            let config = Config::new().jitter(jitter);
            sim.machines.push(Machine::new(config, i as u64));
            // Connect (server up, at "minus infinity"), then let the retry timer fire.
            sim.run(i as u32, None, 0, true);
            let (_, timer) = sim.last_timer;
            sim.run(i as u32, Some(Input::TimerFired(timer)), 0, true);
        }
        sim.attempts.iter_mut().for_each(|a| *a = 0);
        sim.connected = 0;
        sim.steps = 0;
        sim
    }

    /// Feeds `input` (if any) to client `i` at time `now`, then carries out its commands
    /// (which answer at once) until it waits for a timer or a closed connection.
    fn run(&mut self, i: u32, input: Option<Input<Addr, Conn, Refused>>, now: u64, up: bool) {
        let m = &mut self.machines[i as usize];
        let mut next = input;
        loop {
            if let Some(input) = next.take() {
                let accepted = m.handle_input(input).is_ok();
                debug_assert!(accepted, "the simulation fed an input out of turn");
                self.steps += 1;
            }
            while let Some(command) = m.poll_command() {
                match command {
                    Command::Emit { event, .. } => {
                        if let Event::Connected(_) = event {
                            self.connected += 1;
                            self.last_connect_ns = self.last_connect_ns.max(now);
                        }
                        next = Some(Input::EventHandled);
                    }
                    Command::StartTimer { timer, delay } => {
                        let deadline = now + delay.as_nanos() as u64;
                        self.last_timer = (deadline, timer);
                        if self.use_calendar {
                            let bucket = (deadline / BUCKET_NS) as usize;
                            if let Some(b) = self.calendar.get_mut(bucket) {
                                if b.capacity() == 0 {
                                    if let Some(spare) = self.spare.pop() {
                                        *b = spare;
                                    }
                                }
                                b.push(Entry {
                                    client: i,
                                    offset: (deadline % BUCKET_NS) as u32,
                                    timer: u32::try_from(timer.0)
                                        .expect("a client's timer ids stay far below u32::MAX"),
                                });
                            }
                        }
                    }
                    Command::FetchAddress { attempt } => {
                        next = Some(Input::AddressObtained {
                            attempt,
                            result: Ok(7000),
                        });
                    }
                    Command::Dial { attempt, .. } => {
                        if let Some(w) = self.attempts.get_mut((now / WINDOW_NS) as usize) {
                            *w += 1;
                        }
                        next = Some(dial_result(attempt, i, up));
                    }
                    other => {
                        black_box(other);
                    }
                }
            }
            if next.is_none() {
                return;
            }
        }
    }

    /// Time-ordered: the server dies at t = 0, every connection closes; then the calendar
    /// fires the timers of all clients in time order until all have reconnected.
    fn herd_in_time_order(&mut self) {
        self.use_calendar = true;
        let n = self.machines.len();
        for i in 0..n as u32 {
            self.close(i);
        }
        let down = DOWN.as_nanos() as u64;
        for b in 0..self.calendar.len() {
            if self.connected == n {
                break;
            }
            let mut due = std::mem::take(&mut self.calendar[b]);
            for (k, entry) in due.iter().enumerate() {
                if self.prefetch_ahead > 0 {
                    if let Some(ahead) = due.get(k + self.prefetch_ahead) {
                        prefetch(&self.machines[ahead.client as usize]);
                    }
                }
                let deadline = b as u64 * BUCKET_NS + u64::from(entry.offset);
                self.run(
                    entry.client,
                    Some(Input::TimerFired(TimerId(u64::from(entry.timer)))),
                    deadline,
                    deadline >= down,
                );
            }
            due.clear();
            self.spare.push(due);
        }
    }

    /// Client by client: the clients do not interact (the server's state depends only on
    /// time), so each one's whole timeline can run on its own, with its Machine hot in the
    /// cache. Same inputs, same histogram, as in time order.
    fn herd_client_by_client(&mut self) {
        self.use_calendar = false;
        let down = DOWN.as_nanos() as u64;
        let horizon = HORIZON.as_nanos() as u64;
        for i in 0..self.machines.len() as u32 {
            let before = self.connected;
            self.close(i);
            while self.connected == before {
                let (deadline, timer) = self.last_timer;
                if deadline >= horizon {
                    break;
                }
                self.run(
                    i,
                    Some(Input::TimerFired(timer)),
                    deadline,
                    deadline >= down,
                );
            }
        }
    }

    /// Client `i`'s connection closes at t = 0, with the server down.
    fn close(&mut self, i: u32) {
        let attempt = self.machines[i as usize]
            .current_attempt()
            .unwrap_or(AttemptId(0));
        self.run(i, Some(Input::ConnectionClosed { attempt }), 0, false);
    }
}

/// Asks the CPU to start loading `m`'s cache lines; a hint only, it changes no result.
#[allow(unsafe_code)]
fn prefetch(m: &M) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        const LINE: usize = 64;
        let start = std::ptr::from_ref(m).cast::<i8>();
        // Every line `m` overlaps: from the one its first byte is in.
        let skew = start.addr() % LINE;
        let first = start.wrapping_sub(skew);
        for line in 0..(skew + size_of::<M>()).div_ceil(LINE) {
            // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has; a prefetch is a
            // hint that reads nothing the program sees and never faults, whatever the address
            // (here always a line that `m` overlaps).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(line * LINE)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = m; // elsewhere: no prefetch (the same simulation, only slower)
}

fn dial_result(attempt: AttemptId, i: u32, up: bool) -> Input<Addr, Conn, Refused> {
    Input::Dialed {
        attempt,
        result: if up { Ok(i) } else { Err(Refused) },
    }
}

/// `HERD_CACHE=<clients>[:<prefetch ahead>]`: only the time-ordered run, jitter on, for a
/// cache simulator (`valgrind --tool=cachegrind --cache-sim=yes`), whose miss counts are
/// exact where wall time on a shared machine is not. Set-up runs too: subtract a run with
/// `:setup` (`HERD_CACHE=200000:setup`), which stops after it.
fn cache_run(spec: &str) {
    const USAGE: &str = "HERD_CACHE=<clients>[:<prefetch ahead>|:setup], e.g. 1000000:0";
    let (clients, ahead) = spec.split_once(':').unwrap_or((spec, ""));
    let n: usize = clients.parse().expect(USAGE);
    let mut sim = Sim::new(n, Jitter::STANDARD);
    sim.prefetch_ahead = match ahead {
        "setup" => return,
        "" => PREFETCH_AHEAD,
        ahead => ahead.parse().expect(USAGE),
    };
    let start = Instant::now();
    sim.herd_in_time_order();
    println!(
        "{n} clients, {} steps, {} reconnected, {:.3} s",
        sim.steps,
        sim.connected,
        start.elapsed().as_secs_f64()
    );
}

/// Prints the attempts per 100 ms window: one row per second that saw any.
fn histogram(attempts: &[u64]) {
    let fmt = |a: u64| match a {
        0 => String::from("."),
        a if a >= 10_000 => format!("{}k", a / 1000),
        a => a.to_string(),
    };
    for (second, row) in attempts.chunks(10).enumerate() {
        if row.iter().all(|&a| a == 0) {
            continue;
        }
        let cols: Vec<String> = row.iter().map(|&a| format!("{:>6}", fmt(a))).collect();
        println!("  {second:>3} s |{}", cols.join(""));
    }
}

fn main() {
    if let Ok(spec) = std::env::var("HERD_CACHE") {
        return cache_run(&spec);
    }
    let n = if full_run() { 1_000_000 } else { 10_000 };
    note_smoke_run();
    println!("== herd: {n} clients lose their server at t = 0; it refuses dials for {DOWN:?} ==");
    println!(
        "size_of Machine<u16, u32, Refused> = {} bytes ({} MB for all)",
        size_of::<M>(),
        size_of::<M>() * n / 1_000_000
    );
    for (name, jitter) in [
        ("jitter on (+-30%)", Jitter::STANDARD),
        ("jitter off", Jitter::Off),
    ] {
        let setup_start = Instant::now();
        let mut sim = Sim::new(n, jitter);
        let setup = setup_start.elapsed();
        let start = Instant::now();
        sim.herd_client_by_client();
        let by_client = start.elapsed();
        let (attempts, steps, connected) = (sim.attempts.clone(), sim.steps, sim.connected);

        let mut timed = Sim::new(n, jitter);
        let start = Instant::now();
        timed.herd_in_time_order();
        let in_order = start.elapsed();
        assert_eq!(
            timed.attempts, attempts,
            "both orders simulate the same herd"
        );
        assert_eq!(timed.connected, connected);
        // In time order a connected client's retry timer still fires (one more step) while
        // others are reconnecting; client by client stops at the connection.
        let timed_steps = timed.steps;
        drop(timed);

        let mut plain = Sim::new(n, jitter);
        plain.prefetch_ahead = 0;
        let start = Instant::now();
        plain.herd_in_time_order();
        let no_prefetch = start.elapsed();
        assert_eq!(plain.attempts, attempts, "prefetching changes no result");
        assert_eq!(plain.steps, timed_steps, "prefetching changes no step");
        drop(plain);

        let total_attempts: u64 = attempts.iter().sum();
        let (peak_at, peak) = attempts
            .iter()
            .enumerate()
            .skip(1) // window 0 is the instant of death: every client dials at once (R7)
            .max_by_key(|(_, a)| **a)
            .map(|(w, a)| (w, *a))
            .unwrap_or((0, 0));
        println!();
        println!(
            "{name}: {total_attempts} attempts; {connected} reconnected, the last at {:.1} s; window 0 (the death): {}; peak after it: {peak} at {:.1} s",
            sim.last_connect_ns as f64 / 1e9,
            attempts[0],
            peak_at as f64 * 0.1
        );
        println!("  attempts per 100 ms window (columns: tenths of the second; k = thousands)");
        histogram(&attempts);
        let rate = |steps: u64, d: Duration| steps as f64 / d.as_secs_f64() / 1e6;
        let verdict = |d: Duration| {
            if d < Duration::from_secs(1) {
                "met"
            } else {
                "MISSED"
            }
        };
        println!(
            "  setting up {n} connected machines took {:.3} s (not counted below)",
            setup.as_secs_f64()
        );
        println!(
            "  client by client: {:.3} s, {steps} steps = {:.1} M steps/s (goal < 1 s on one core: {})",
            by_client.as_secs_f64(),
            rate(steps, by_client),
            verdict(by_client)
        );
        println!(
            "  in time order:    {:.3} s, {timed_steps} steps = {:.1} M steps/s (goal < 1 s on one core: {}; {:.2}x the time client by client)",
            in_order.as_secs_f64(),
            rate(timed_steps, in_order),
            verdict(in_order),
            in_order.as_secs_f64() / by_client.as_secs_f64()
        );
        println!(
            "  in time order, no prefetch: {:.3} s ({:.2}x the time with it)",
            no_prefetch.as_secs_f64(),
            no_prefetch.as_secs_f64() / in_order.as_secs_f64()
        );
    }
}
