//! Checks of the retry policies and the jitter, for any parameters and any failure count
//! (the body of the `retry_policy` fuzz target, replayed by the corpus test).
//!
//! - [`Exponential::delay`] never panics, never exceeds `max`, starts at
//!   `min(initial, max)`, never decreases as the count grows, and matches
//!   `initial * multiplier^n` (to a relative 1e-6) wherever that is below the cap.
//! - [`RetryPolicy::delay`] gives the constant, the exponential delay, or `None` for custom.
//! - [`Jitter::bounds`] never panics and is symmetric around the (clamped) delay, at most
//!   `percent`% wide.
//! - Through a real [`Machine`](persistent_connection::Machine) under the
//!   [`Checker`](crate::check::Checker): every attempt's jittered delay lies within the
//!   bounds of the policy's delay for its failure count.

use std::time::Duration;

use persistent_connection::{Config, Exponential, Input, Jitter, RetryPolicy};

use crate::script::{ByteReader, TestChecked, TestError, duration_from_byte, multiplier_from_byte};

/// Failure counts worth trying whatever the bytes say.
const COUNTS: [u32; 12] = [0, 1, 2, 3, 10, 31, 32, 63, 64, 1000, u32::MAX - 1, u32::MAX];

fn duration_any(r: &mut ByteReader<'_>) -> Duration {
    let b = r.u8();
    if b < 128 {
        duration_from_byte(b)
    } else {
        Duration::new(r.u64(), r.u32() % 1_000_000_000)
    }
}

fn multiplier_any(r: &mut ByteReader<'_>) -> f64 {
    let b = r.u8();
    if b < 128 {
        multiplier_from_byte(b)
    } else {
        f64::from_bits(r.u64())
    }
}

fn jitter_any(r: &mut ByteReader<'_>) -> Jitter {
    match r.u8() {
        0..=63 => Jitter::STANDARD,
        64..=95 => Jitter::Off,
        _ => Jitter::Uniform { percent: r.u8() },
    }
}

/// Checks one exponential policy at failure count `n` (and `n + 1` for monotony).
pub fn check_exponential(e: &Exponential, n: u32) -> Result<(), String> {
    let d = e.delay(n);
    let first = e.initial.min(e.max);
    if d > e.max {
        return Err(format!("{e:?}: delay({n}) = {d:?} exceeds max"));
    }
    if n == 0 && d != first {
        return Err(format!(
            "{e:?}: delay(0) = {d:?}, want min(initial, max) = {first:?}"
        ));
    }
    if n < u32::MAX {
        let next = e.delay(n + 1);
        if next < d {
            return Err(format!(
                "{e:?}: delay({}) = {next:?} is shorter than delay({n}) = {d:?}",
                n + 1
            ));
        }
    }
    // NaN and multipliers up to 1 count as 1.
    let grows = e.multiplier.partial_cmp(&1.0) == Some(std::cmp::Ordering::Greater);
    if !grows || first.is_zero() {
        if d != first {
            return Err(format!(
                "{e:?}: delay({n}) = {d:?}, want {first:?} (multiplier <= 1)"
            ));
        }
        return Ok(());
    }
    let reference = first.as_secs_f64() * e.multiplier.powf(f64::from(n));
    let cap = e.max.as_secs_f64();
    let got = d.as_secs_f64();
    if reference < cap * (1.0 - 1e-6) {
        // Durations have a resolution of 1 ns: allow that much rounding too.
        if (got - reference).abs() > reference * 1e-6 + 1e-9 {
            return Err(format!(
                "{e:?}: delay({n}) = {d:?}, want about {reference} s (initial * multiplier^n)"
            ));
        }
    } else if reference > cap * (1.0 + 1e-6) && d != e.max {
        return Err(format!(
            "{e:?}: delay({n}) = {d:?}, want the cap {:?}",
            e.max
        ));
    }
    Ok(())
}

/// Checks [`Jitter::bounds`] for one delay.
pub fn check_bounds(jitter: Jitter, base: Duration) -> Result<(), String> {
    let (lo, hi) = jitter.bounds(base);
    if lo > hi {
        return Err(format!(
            "{jitter:?}.bounds({base:?}) = ({lo:?}, {hi:?}) is empty"
        ));
    }
    let clamped = Duration::from_nanos(u64::try_from(base.as_nanos()).unwrap_or(u64::MAX));
    let pct = match jitter {
        Jitter::Uniform { percent } => u128::from(percent.min(100)),
        _ => 0,
    };
    let spread = clamped.as_nanos() * pct / 100;
    if lo > clamped
        || hi < clamped
        || hi - clamped != clamped - lo
        || (hi - clamped).as_nanos() > spread
    {
        return Err(format!(
            "{jitter:?}.bounds({base:?}) = ({lo:?}, {hi:?}): not symmetric around {clamped:?} \
             within {pct}%"
        ));
    }
    Ok(())
}

/// Runs `attempts` failing attempts of a Machine with this policy and jitter under the
/// checker, which checks each attempt's delay against the policy (R7).
pub fn check_machine_delays(
    policy: RetryPolicy,
    jitter: Jitter,
    seed: u64,
    attempts: u32,
) -> Result<(), String> {
    let config = Config::new().retry_policy(policy).jitter(jitter);
    let mut m = TestChecked::new(config, seed);
    let mut fetches = 0u32;
    loop {
        while m.poll().map_err(|v| v.to_string())?.is_some() {}
        // What is owed comes from the checker's model.
        let c = m.checker();
        let input = if c.handler_running() {
            Input::EventHandled
        } else if let Some(attempt) = c.fetch_out() {
            fetches += 1;
            if fetches > attempts {
                break;
            }
            Input::AddressObtained {
                attempt,
                result: Err(TestError((fetches % 2) as u8)),
            }
        } else if c.delay_wanted() {
            let n = m.machine().consecutive_failures();
            Input::RetryDelay(Duration::from_millis(100).saturating_mul(n.saturating_add(1)))
        } else if let Some(t) = c.timer_out() {
            Input::TimerFired(t)
        } else {
            return Err("the machine waits for nothing".into());
        };
        if let Err(r) = m.feed(input).map_err(|v| v.to_string())? {
            return Err(format!("a valid input was rejected: {}", r.error));
        }
    }
    Ok(())
}

/// Decodes a policy, a jitter, a seed and some failure counts from `data`, and runs every
/// check of this module on them. Every byte string is valid input.
pub fn check_policy_bytes(data: &[u8]) -> Result<(), String> {
    crate::watchdog::arm();
    let mut r = ByteReader::new(data);
    let e = Exponential {
        initial: duration_any(&mut r),
        multiplier: multiplier_any(&mut r),
        max: duration_any(&mut r),
    };
    let jitter = jitter_any(&mut r);
    let base = duration_any(&mut r);
    let seed = r.u64();
    let attempts = u32::from(r.u8() % 12) + 1;
    let mut counts: Vec<u32> = COUNTS.to_vec();
    for _ in 0..4 {
        counts.push(r.u32());
    }
    for &n in &counts {
        check_exponential(&e, n)?;
        for (policy, want) in [
            (RetryPolicy::Constant(base), Some(base)),
            (RetryPolicy::Exponential(e), Some(e.delay(n))),
            (RetryPolicy::Custom, None),
        ] {
            if policy.delay(n) != want {
                return Err(format!(
                    "{policy:?}.delay({n}) = {:?}, want {want:?}",
                    policy.delay(n)
                ));
            }
        }
    }
    check_bounds(jitter, base)?;
    check_bounds(jitter, e.max)?;
    check_bounds(jitter, e.initial)?;
    check_machine_delays(RetryPolicy::Constant(base), jitter, seed, attempts)?;
    check_machine_delays(RetryPolicy::Exponential(e), jitter, seed, attempts)?;
    Ok(())
}
