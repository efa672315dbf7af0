//! Checks R1, R2, R5, R6, R8 to R14 and R17 of CONTRACT.md on the real driver, run by a
//! seeded simulated executor on a virtual clock against a scripted world (see the crate's
//! docs): a property test over thousands of seeds, the determinism of a run, and the
//! replay of one seed.
//!
//! Replay a seed with its trace:
//! `SIM_SEED=<n> cargo test -p persistent-connection-driver-sim replay -- --nocapture`.

use std::time::{Duration, Instant};

use persistent_connection_driver_sim::{run, run_seed, seed_input};

/// How many seeds the property test runs (`SIM_SEEDS` overrides), within `BUDGET`.
const SEEDS: u64 = 5_000;
const BUDGET: Duration = Duration::from_secs(25);

fn check_seed(seed: u64) {
    if let Err(v) = run_seed(seed, false) {
        // Replay with the trace, for the report.
        let traced = run_seed(seed, true).err().unwrap_or(v);
        panic!(
            "seed {seed}: {traced}\nreplay: SIM_SEED={seed} cargo test -p persistent-connection-driver-sim replay -- --nocapture"
        );
    }
}

/// Every rule the simulation checks, over many seeds (R1 grammar, R2, R5, R6, R8..R14,
/// R17), within a bounded time.
#[test]
fn r1_to_r17_hold_for_thousands_of_seeds() {
    let seeds = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS);
    let start = Instant::now();
    let mut ran = 0;
    for seed in 0..seeds {
        if start.elapsed() > BUDGET {
            break;
        }
        check_seed(seed);
        ran += 1;
    }
    eprintln!("{ran} seeds in {:?}", start.elapsed());
    assert!(ran >= 500, "only {ran} seeds ran within {BUDGET:?}");
}

/// R15 at the driver's level: the same seed gives the same trace, byte for byte.
#[test]
fn r15_the_same_seed_gives_the_same_trace() {
    for seed in [0, 1, 7, 42, 1234, 99_999] {
        let a = run_seed(seed, true)
            .map(|r| r.trace)
            .unwrap_or_else(|v| v.trace_tail);
        let b = run_seed(seed, true)
            .map(|r| r.trace)
            .unwrap_or_else(|v| v.trace_tail);
        assert!(!a.is_empty());
        assert_eq!(a.join("\n"), b.join("\n"), "seed {seed}");
    }
}

/// The fuzz target's entry point takes any bytes, including none.
#[test]
fn any_bytes_run() {
    for data in [&[][..], &[0], &[255; 7], &seed_input(3)[..100]] {
        if let Err(v) = run(data) {
            panic!("{data:?}: {v}");
        }
    }
}

/// `SIM_SEED=<n>`: runs that one seed and prints its trace.
#[test]
fn replay() {
    let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) else {
        return;
    };
    match run_seed(seed, true) {
        Ok(report) => {
            for line in &report.trace {
                println!("{line}");
            }
            println!(
                "seed {seed}: ok, {} steps, {} events",
                report.steps, report.events
            );
        }
        Err(v) => {
            for line in &v.trace_tail {
                println!("{line}");
            }
            panic!("seed {seed}: {v}")
        }
    }
}

/// Regression (found by the simulation, seed 1610): a `Driven` connection whose health
/// probe panicked is declared dead and closed by the health check; `reconnect_now` comes
/// before its `Disconnected`, and the Machine's `CloseConnection` closed it a second time.
#[test]
fn r17_r18_a_connection_is_closed_once_after_the_health_check_closed_it() {
    if let Err(v) = persistent_connection_driver_sim::run_strict(&seed_input(1610), true) {
        panic!("{v}");
    }
}

/// Regression (found by the simulation, seed 2677): while waiting for the retry timer,
/// `reconnect_now` makes the Machine ask for a fetch; `close()` comes before the task
/// runs, and the task called `get_address` (after `close()`), then cancelled it.
#[test]
fn r11_no_attempt_starts_after_close() {
    if let Err(v) = persistent_connection_driver_sim::run_strict(&seed_input(2677), true) {
        panic!("{v}");
    }
}
