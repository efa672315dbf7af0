//! A hang becomes a failure. The Machine's tests are pure computation, so a defect that
//! loops forever (a mutant of a loop condition, say) cannot be bounded by a timer the test
//! awaits: instead, the first checker a test binary makes arms this watchdog, which ends
//! the binary with a message if it is still running after a generous limit (300 s, or
//! `PC_TEST_WATCHDOG_SECS`; `scripts/mutants.sh` sets a shorter one). It never fires while
//! the code is right: every test binary here finishes in seconds. Off in fuzz builds
//! (`cfg(fuzzing)`), whose runs are long on purpose.

/// Arms the watchdog of this test binary (once; later calls do nothing).
pub fn arm() {
    #[cfg(not(fuzzing))]
    {
        static ARMED: std::sync::Once = std::sync::Once::new();
        ARMED.call_once(|| {
            let secs = std::env::var("PC_TEST_WATCHDOG_SECS")
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(300);
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_secs(secs));
                use std::io::Write;
                let binary = std::env::args().next().unwrap_or_default();
                // Straight to stderr: the test harness's capture would be lost with the process.
                let _ = writeln!(
                    std::io::stderr(),
                    "{binary}: still running after {secs} s (PC_TEST_WATCHDOG_SECS): a test \
                     that never ends, most likely a loop in the code under test; ending it"
                );
                std::process::exit(101);
            });
        });
    }
}
