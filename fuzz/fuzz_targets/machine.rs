//! Fuzz target `machine`: arbitrary bytes become a Machine configuration (any policy,
//! seed, jitter, connect timeout, min uptime) and a sequence of inputs, valid and invalid,
//! with stops in the middle of batches, `reconnect_now` at any point and uptime timers on
//! time or late (R18, R19); the rule checker of `persistent-connection-tests` checks every
//! step, and any broken rule (or panic) is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use persistent_connection_tests::script::run_bytes;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = run_bytes(data) {
        panic!("{violation}");
    }
});
