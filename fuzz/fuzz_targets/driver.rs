//! Fuzz target `driver`: arbitrary bytes drive the real persistent-connection driver on
//! the simulated executor of `persistent-connection-driver-sim` (which task runs next,
//! what the world's fetches, dials, handlers, probes and connections do, what the handles
//! call, when they are dropped); the contract is checked after every step, and any broken
//! rule (or a panic the world did not inject) is a crash. Replay a crash with
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run driver fuzz/artifacts/driver/<file>`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use persistent_connection_driver_sim::{run, silence_injected_panics};

fuzz_target!(
    init: {
        // After libFuzzer's own hook (which aborts on any panic): the world's injected
        // panics, which the driver catches, must not abort.
        silence_injected_panics();
    },
    |data: &[u8]| {
        if let Err(violation) = run(data) {
            panic!("{violation}");
        }
    }
);
