//! The persistent-connection driver under a simulated executor.
//!
//! A single-threaded, deterministic executor ([`exec`]) whose choice of which woken task
//! runs next is drawn from the input, with a [`VirtualClock`] for every sleep, runs the
//! real driver (`persistent-connection-driver`) against a scripted world ([`world`]):
//! `get_address`, `connect`, `on_event`, the health probe, the connections' `close` and
//! `Driven` connections' driving futures are futures the world completes, fails, hangs,
//! panics or lets die as the input says. Many handles call every public method of
//! [`PersistentConnection`](persistent_connection_driver::PersistentConnection) (also from
//! inside handlers, and `abort` through the attempts' contexts) and are dropped at random
//! points. After every step the rules of `CONTRACT.md` are checked ([`sim`]); the first
//! broken one is a [`Violation`], with the trace that led to it.
//!
//! Entry points: [`run`] (bytes: the fuzz target), [`run_seed`] (a seed: the property
//! test), [`run_with`] (either, with a trace). The same input gives the same trace, byte
//! for byte.
//!
//! How hung callbacks are bounded: a fetch, dial, probe or driving future the world hangs
//! is never ended by the world (the driver must cancel it, or the connection must die);
//! a hung `on_event` handler or connection `close` is ended by the world
//! [`HANG_STEPS`] steps into the final phase, and `close` must have finished within
//! [`CLOSE_STEPS`] steps of that phase without the virtual clock having to move.

#![forbid(unsafe_code)]

pub mod exec;
pub mod sim;
pub mod world;

use std::fmt;

use persistent_connection_driver::VirtualClock;

pub use exec::SimRuntime;
pub use sim::{CLOSE_STEPS, HANG_STEPS};

/// The rules a [`Violation`] can name.
pub mod rule {
    /// The event grammar `(A (O|F)* (C D)?)*`, and nothing after the close has finished.
    pub const GRAMMAR: &str = "R1 (event grammar)";
    /// R2: attempts (one at a time, the address fetched is the one dialled).
    pub const R2: &str = "R2";
    /// R5: the connection is current when `Connected` is reported.
    pub const R5: &str = "R5";
    /// R6: handlers gate progress; panics are reported.
    pub const R6: &str = "R6";
    /// R8: `connected` and `connected_or_closed`.
    pub const R8: &str = "R8";
    /// R9: `connected_or_failed_to_connect`.
    pub const R9: &str = "R9";
    /// R10: `current_connection`.
    pub const R10: &str = "R10";
    /// R11: `close`.
    pub const R11: &str = "R11";
    /// R12: abort and `close_when_current_connection_is_closed`.
    pub const R12: &str = "R12";
    /// R13: dropping the last handle; nothing leaks.
    pub const R13: &str = "R13";
    /// R14: events and state changes as streams.
    pub const R14: &str = "R14";
    /// R17: health checks.
    pub const R17: &str = "R17";
    /// The statistics agree with the events.
    pub const STATS: &str = "stats";
}

/// A rule the simulation saw broken.
#[derive(Clone, Debug)]
pub struct Violation {
    /// Which rule (see [`rule`]).
    pub rule: &'static str,
    /// What was seen.
    pub message: String,
    /// At which step of the run.
    pub step: u64,
    /// The trace up to the violation (empty when the run kept no trace); `Display` shows
    /// its last 40 lines.
    pub trace_tail: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} broken at step {}: {}",
            self.rule, self.step, self.message
        )?;
        for line in &self.trace_tail[self.trace_tail.len().saturating_sub(40)..] {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Steps taken.
    pub steps: u64,
    /// Events reported to `on_event`.
    pub events: usize,
    /// Connections the world made.
    pub connections: usize,
    /// Callers of the handle's futures.
    pub waiters: usize,
    /// Panics the world injected that the driver reported.
    pub panics: u32,
    /// How often a known driver bug ([`KNOWN_BUGS`]) showed (tolerated).
    pub known_bugs: u32,
    /// Virtual time at the end.
    pub virtual_time: std::time::Duration,
    /// One line per step and per thing that happened in it (when asked for).
    pub trace: Vec<String>,
}

/// Runs the simulation on `data` (the fuzz target's entry point): no trace kept.
pub fn run(data: &[u8]) -> Result<Report, Violation> {
    run_with(data, false)
}

/// Runs the simulation on the input that `seed` expands to (the property test's entry
/// point).
pub fn run_seed(seed: u64, trace: bool) -> Result<Report, Violation> {
    run_with(&seed_input(seed), trace)
}

/// The input a seed expands to: 64 to 2,111 bytes of SplitMix64.
pub fn seed_input(seed: u64) -> Vec<u8> {
    let mut state = seed;
    let len = 64 + (world::splitmix(&mut state) % 2048) as usize;
    (0..len)
        .map(|_| (world::splitmix(&mut state) >> 56) as u8)
        .collect()
}

/// Runs the simulation on `data`, keeping a trace if asked. The driver bugs of
/// [`KNOWN_BUGS`] (none at present) would be tolerated (counted in
/// [`Report::known_bugs`]).
pub fn run_with(data: &[u8], trace: bool) -> Result<Report, Violation> {
    silence_injected_panics();
    sim::Sim::new(data, trace, KNOWN_BUGS.is_empty(), VirtualClock::new()).run()
}

/// As [`run_with`], but a known driver bug is a [`Violation`] too.
pub fn run_strict(data: &[u8], trace: bool) -> Result<Report, Violation> {
    silence_injected_panics();
    sim::Sim::new(data, trace, true, VirtualClock::new()).run()
}

/// Driver bugs the simulation has found and not yet seen fixed, which [`run`], [`run_seed`]
/// and [`run_with`] would tolerate so that they keep looking for others ([`run_strict`]
/// does not). None at present. The two it found first are fixed, and their seeds are
/// regression tests (`tests/sim.rs`): a connection the health check closed was closed
/// again by a later `reconnect_now` or `close` (seed 1610), and a fetch queued before a
/// `close()` was started after it (seed 2677).
pub const KNOWN_BUGS: &[&str] = &[];

/// Installs (once) a panic hook that keeps quiet about the panics the world injects and
/// passes every other panic to the hook that was there before (under libFuzzer: abort).
pub fn silence_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() == Some(&world::INJECTED) {
                return;
            }
            previous(info);
        }));
    });
}
