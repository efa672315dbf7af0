//! Fuzz target `machine`: arbitrary bytes become a Machine configuration (any policy,
//! seed, jitter, connect timeout, min uptime) and a sequence of inputs, valid and invalid,
//! with stops in the middle of batches, `reconnect_now` at any point and uptime timers on
//! time or late (R18, R19); the rule checker of `persistent-connection-tests` checks every
//! step, and any broken rule (or panic) is a crash.
//!
//! At most [`MAX_ACTIONS`](persistent_connection_tests::script::MAX_ACTIONS) actions are
//! decoded from one input (`fuzz/run.sh` passes the matching `-max_len`). When the fuzzer
//! exits normally, the target prints one line to stderr counting what it fed the Machine:
//!
//! ```text
//! machine-stats: executions=N inputs=N rejected=N commands=N
//! ```
//!
//! (`inputs`: every `Input` handed to `handle_input`, the final close included;
//! `rejected`: those it refused; `commands`: those polled.) `fuzz/run.sh` reports it.
#![no_main]

use std::cell::Cell;
use std::io::Write as _;

use libfuzzer_sys::fuzz_target;
use persistent_connection_tests::script::{Report, run_bytes};

/// What this process fed the Machine; printed when the process exits (a thread-local's
/// destructor: the fuzzer runs the target on its main thread and ends with `exit`).
#[derive(Default)]
struct Stats {
    executions: Cell<u64>,
    inputs: Cell<u64>,
    rejected: Cell<u64>,
    commands: Cell<u64>,
}

impl Stats {
    fn add(&self, report: &Report) {
        let bump = |c: &Cell<u64>, n: u64| c.set(c.get() + n);
        bump(&self.executions, 1);
        bump(&self.inputs, report.inputs);
        bump(&self.rejected, report.rejected);
        bump(&self.commands, report.commands);
    }
}

impl Drop for Stats {
    fn drop(&mut self) {
        let _ = writeln!(
            std::io::stderr(),
            "machine-stats: executions={} inputs={} rejected={} commands={}",
            self.executions.get(),
            self.inputs.get(),
            self.rejected.get(),
            self.commands.get(),
        );
    }
}

thread_local! {
    static STATS: Stats = Stats::default();
}

fuzz_target!(|data: &[u8]| {
    match run_bytes(data) {
        Ok(report) => STATS.with(|s| s.add(&report)),
        Err(violation) => panic!("{violation}"),
    }
});
