//! Fuzz target `retry_policy`: arbitrary exponential policies (any durations, any `f64`
//! multiplier including NaN and infinities), failure counts up to `u32::MAX`, any jitter
//! and seed: no panic, no overflow, delays capped, monotone, close to
//! `initial * multiplier^n`, and every Machine delay within the jitter's bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use persistent_connection_tests::policy::check_policy_bytes;

fuzz_target!(|data: &[u8]| {
    if let Err(problem) = check_policy_bytes(data) {
        panic!("{problem}");
    }
});
