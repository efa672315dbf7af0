//! The cost of one Machine input: feed it with `handle_input` and drain `poll_command`,
//! in three realistic steady-state loops, for `Machine<SocketAddr, Arc<()>, io::Error>` with
//! the default configuration (constant 10 s, +-30 % jitter: one RNG draw per attempt):
//!
//! * `fail_retry`: a server that refuses: timer fires, address, dial fails (a repeated
//!   error, so no event). 3 inputs per attempt.
//! * `connect_cycle`: a long-lived connection that closes and is re-made at the first
//!   try: closed, 4 handled events, address, dial, timer. 8 inputs per cycle.
//! * `restart_cycle`: the mix of a server restart: the connection closes, three attempts
//!   are refused, the fourth connects. 18 inputs per cycle.
//! * `fail_retry_os_error`: `fail_retry` with the error a real refused `connect` returns
//!   (`io::Error::from_raw_os_error(ECONNREFUSED)`), whose `Debug` text (the F
//!   de-duplication key) is formatted with a heap-allocated message.
//! * `fail_retry_os_error_keyed`: the same, with `Machine::with_error_key` comparing
//!   errors by kind and OS error code: no formatting, no allocation.
//!
//! Criterion measures each; then a summary prints the median ns per input (as a ratio of
//! the 25 ns goal), `size_of` the Machine, and the allocations over a long run, counted by
//! a global allocator in this binary.
//!
//! Run: `cargo bench -p persistent-connection-benches --bench machine`; instructions per
//! input of each loop under callgrind: `scripts/machine-ir.sh`.

use std::hint::black_box;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::Criterion;
use persistent_connection::{AttemptId, Command, Config, Input, Machine, TimerId};
use persistent_connection_benches::{Stats, full_run, note_smoke_run};

#[global_allocator]
static GLOBAL: persistent_connection_benches::CountingAlloc =
    persistent_connection_benches::CountingAlloc;

type M = Machine<SocketAddr, Arc<()>, io::Error>;

/// One step of a script: which input to feed next.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// `ConnectionClosed` for the current connection.
    Closed,
    /// `EventHandled`.
    Handled,
    /// `AddressObtained(Ok)`.
    Addr,
    /// `Dialed(Err)`.
    DialErr,
    /// `Dialed(Ok)`.
    DialOk,
    /// `TimerFired` for the timer out.
    Timer,
}

use Step::*;

/// From a new machine to "connected, its retry timer has fired" (a long-lived connection).
const TO_CONNECTED: &[Step] = &[Handled, Addr, Handled, DialOk, Handled, Timer];
/// From a new machine to "the first attempt failed, waiting for the retry timer".
const TO_FAILED: &[Step] = &[Handled, Addr, Handled, DialErr, Handled];

const FAIL_RETRY: &[Step] = &[Timer, Addr, DialErr];
const CONNECT_CYCLE: &[Step] = &[
    Closed, Handled, Handled, Addr, Handled, DialOk, Handled, Timer,
];
const RESTART_CYCLE: &[Step] = &[
    Closed, Handled, Handled, Addr, Handled, DialErr, Handled, // first refusal is reported
    Timer, Addr, DialErr, // repeated refusals are not
    Timer, Addr, DialErr, //
    Timer, Addr, DialOk, Handled, Timer,
];

/// A machine driven round a script, one input per [`Harness::step`].
struct Harness {
    m: M,
    script: &'static [Step],
    pos: usize,
    timer: TimerId,
    attempt: AttemptId,
    addr: SocketAddr,
    conn: Arc<()>,
    os_error: bool,
}

impl Harness {
    fn new(setup: &[Step], script: &'static [Step], os_error: bool) -> Self {
        Self::with_machine(Machine::new(Config::new(), 42), setup, script, os_error)
    }

    fn with_machine(m: M, setup: &[Step], script: &'static [Step], os_error: bool) -> Self {
        let mut h = Harness {
            m,
            script,
            pos: 0,
            timer: TimerId(0),
            attempt: AttemptId(0),
            addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
            conn: Arc::new(()),
            os_error,
        };
        h.drain();
        for &s in setup {
            h.feed(s);
        }
        h
    }

    fn error(&self) -> io::Error {
        if self.os_error {
            io::Error::from_raw_os_error(111) // ECONNREFUSED, as a refused connect returns
        } else {
            io::Error::from(io::ErrorKind::ConnectionRefused)
        }
    }

    #[inline]
    fn feed(&mut self, step: Step) {
        let input = match step {
            Closed => Input::ConnectionClosed {
                attempt: self.attempt,
            },
            Handled => Input::EventHandled,
            Addr => Input::AddressObtained {
                attempt: self.attempt,
                result: Ok(self.addr),
            },
            DialErr => Input::Dialed {
                attempt: self.attempt,
                result: Err(self.error()),
            },
            DialOk => Input::Dialed {
                attempt: self.attempt,
                result: Ok(self.conn.clone()),
            },
            Timer => Input::TimerFired(self.timer),
        };
        let accepted = self.m.handle_input(input).is_ok();
        assert!(accepted, "the script went out of step at {step:?}");
        self.drain();
    }

    #[inline]
    fn drain(&mut self) {
        while let Some(command) = self.m.poll_command() {
            match &command {
                Command::StartTimer { timer, .. } => self.timer = *timer,
                Command::FetchAddress { attempt } => self.attempt = *attempt,
                _ => {}
            }
            black_box(command);
        }
    }

    /// Feeds the script's next input and drains the commands.
    #[inline]
    fn step(&mut self) {
        let s = self.script[self.pos];
        self.pos += 1;
        if self.pos == self.script.len() {
            self.pos = 0;
        }
        self.feed(s);
    }
}

/// The loops measured, by name.
fn scenarios() -> [(&'static str, Harness); 5] {
    [
        ("fail_retry", Harness::new(TO_FAILED, FAIL_RETRY, false)),
        (
            "connect_cycle",
            Harness::new(TO_CONNECTED, CONNECT_CYCLE, false),
        ),
        (
            "restart_cycle",
            Harness::new(TO_CONNECTED, RESTART_CYCLE, false),
        ),
        (
            "fail_retry_os_error",
            Harness::new(TO_FAILED, FAIL_RETRY, true),
        ),
        (
            "fail_retry_os_error_keyed",
            Harness::with_machine(
                Machine::with_error_key(Config::new(), 42, io_error_key),
                TO_FAILED,
                FAIL_RETRY,
                true,
            ),
        ),
    ]
}

/// Compares `io::Error`s by kind and OS error code: what a user of the bare Machine with
/// real socket errors would pass to `Machine::with_error_key`.
fn io_error_key(e: &io::Error) -> u64 {
    let code = e.raw_os_error().map_or(u64::MAX, |c| c as u32 as u64);
    (code << 8) ^ e.kind() as u64
}

fn criterion_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("machine");
    for (name, mut h) in scenarios() {
        group.bench_function(name, |b| b.iter(|| h.step()));
    }
    group.finish();
}

/// Median ns per input over `batches` timed batches of `per_batch` inputs.
fn median_ns(h: &mut Harness, batches: usize, per_batch: usize) -> f64 {
    for _ in 0..per_batch {
        h.step(); // warm up
    }
    let mut samples: Vec<Duration> = (0..batches)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_batch {
                h.step();
            }
            start.elapsed()
        })
        .collect();
    Stats::of(&mut samples).median.as_secs_f64() * 1e9 / per_batch as f64
}

/// Allocations made by `inputs` steps (the harness's own inputs carry no heap data).
fn allocations(h: &mut Harness, inputs: u64) -> u64 {
    let before = persistent_connection_benches::ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..inputs {
        h.step();
    }
    persistent_connection_benches::ALLOCATIONS.load(Ordering::Relaxed) - before
}

fn summary() {
    const GOAL_NS: f64 = 25.0;
    const GOAL_BYTES: usize = 512;
    let full = full_run();
    // 72 is a multiple of every script's length, so each batch runs whole cycles.
    let (batches, per_batch, long_run) = if full {
        (41, 72 * 1000, 10_000_000)
    } else {
        (3, 72, 10_000)
    };
    println!();
    note_smoke_run();
    println!("== machine: one input (handle_input + drain poll_command), same run ==");
    let sizes = [
        ("Machine<SocketAddr, Arc<()>, io::Error>", size_of::<M>()),
        (
            "Machine<SocketAddr, Tracked<TcpStream>, AttemptError<io::Error>> (the driver's)",
            size_of::<
                Machine<
                    SocketAddr,
                    persistent_connection_tokio::Tracked<tokio::net::TcpStream>,
                    persistent_connection_tokio::AttemptError<io::Error>,
                >,
            >(),
        ),
        (
            "Machine<SocketAddr, Driven<()>, AttemptError<io::Error>> (the driver's)",
            size_of::<
                Machine<
                    SocketAddr,
                    persistent_connection_tokio::Driven<()>,
                    persistent_connection_tokio::AttemptError<io::Error>,
                >,
            >(),
        ),
    ];
    for (name, size) in sizes {
        println!(
            "size_of {name} = {size} bytes (goal <= {GOAL_BYTES}: {})",
            if size <= GOAL_BYTES { "met" } else { "MISSED" }
        );
    }
    println!(
        "{:<22} {:>10} {:>14} {:>22}",
        "loop", "median ns", "vs 25 ns goal", "allocations (inputs)"
    );
    for (name, mut h) in scenarios() {
        let ns = median_ns(&mut h, batches, per_batch);
        let allocs = allocations(&mut h, long_run);
        let verdict = if ns <= GOAL_NS { "met" } else { "MISSED" };
        println!(
            "{name:<22} {ns:>10.1} {:>9.2}x {verdict:<6} {allocs:>10} ({long_run})",
            ns / GOAL_NS
        );
    }
}

fn main() {
    // `MACHINE_IR=<loop>:<inputs>`: feed that many inputs of one loop and stop, for an
    // instruction count under callgrind (`scripts/machine-ir.sh`), which wall time on a
    // shared VM cannot give to a few percent.
    if let Ok(spec) = std::env::var("MACHINE_IR") {
        let (which, inputs) = spec
            .split_once(':')
            .expect("MACHINE_IR=<loop>:<inputs>, e.g. fail_retry:100000");
        let inputs: usize = inputs.parse().expect("MACHINE_IR: a count of inputs");
        let (_, mut harness) = scenarios()
            .into_iter()
            .find(|(name, _)| *name == which)
            .unwrap_or_else(|| panic!("MACHINE_IR: no loop named {which:?}"));
        for _ in 0..inputs {
            harness.step();
        }
        black_box(&harness);
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
    // `--profile-time` (criterion's mode for profilers) runs the benches alone.
    if !std::env::args().any(|a| a == "--profile-time") {
        summary();
    }
}
