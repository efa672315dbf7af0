//! Retry policies (how long an attempt waits before the next may start) and jitter.

use core::time::Duration;

/// Where the retry delay of each attempt comes from (R7).
///
/// The policy is consulted once per attempt, when the attempt starts, with the number of
/// consecutive failures so far (0 for the first attempt after a success).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum RetryPolicy {
    /// The same delay every time: the seed's policy (default: 10 s).
    Constant(Duration),
    /// `initial * multiplier^failures`, capped at `max` (gRPC's backoff).
    Exponential(Exponential),
    /// The caller computes the delay: for each attempt the machine emits
    /// [`Command::ComputeRetryDelay`](crate::Command::ComputeRetryDelay) and waits for
    /// [`Input::RetryDelay`](crate::Input::RetryDelay). This is how a closure of the failure
    /// count is used without the machine ever calling caller code.
    Custom,
}

impl RetryPolicy {
    /// The seed's default: a constant 10 s.
    pub const DEFAULT: RetryPolicy = RetryPolicy::Constant(Duration::from_secs(10));

    /// The delay before jitter for an attempt made after `consecutive_failures` failures.
    ///
    /// Returns `None` for [`RetryPolicy::Custom`], whose delay comes from the caller.
    /// Never panics or overflows, whatever the count.
    #[inline]
    pub fn delay(&self, consecutive_failures: u32) -> Option<Duration> {
        match self {
            RetryPolicy::Constant(d) => Some(*d),
            RetryPolicy::Exponential(e) => Some(e.delay(consecutive_failures)),
            RetryPolicy::Custom => None,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::DEFAULT
    }
}

/// Exponential backoff with a cap: `min(max, initial * multiplier^failures)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exponential {
    /// The delay of the first attempt after a success.
    pub initial: Duration,
    /// The factor applied per consecutive failure. Values below 1 (or NaN) count as 1.
    pub multiplier: f64,
    /// The largest delay ever returned.
    pub max: Duration,
}

impl Exponential {
    /// gRPC's connection backoff: 1 s, x1.6 per failure, at most 120 s.
    pub const GRPC: Exponential = Exponential {
        initial: Duration::from_secs(1),
        multiplier: 1.6,
        max: Duration::from_secs(120),
    };

    /// The delay after `failures` consecutive failures (see the type's docs).
    pub fn delay(&self, failures: u32) -> Duration {
        let first = if self.initial < self.max {
            self.initial
        } else {
            self.max
        };
        // NaN and values up to 1 do not grow.
        let grows = self.multiplier.partial_cmp(&1.0) == Some(core::cmp::Ordering::Greater);
        if failures == 0 || first.is_zero() || !grows {
            return first;
        }
        let cap = self.max.as_secs_f64();
        // Exponentiation by squaring: at most 32 rounds for any count, and it stops as soon
        // as the cap is passed, so huge counts cost nothing and never overflow.
        let limit = cap / first.as_secs_f64();
        let (mut factor, mut base, mut n) = (1.0f64, self.multiplier, failures);
        while n > 0 {
            if n & 1 == 1 {
                factor *= base;
                if !below(factor, limit) {
                    return self.max;
                }
            }
            n >>= 1;
            if n > 0 {
                base *= base;
                // Once the base alone passes the cap, any remaining set bit would too.
                if !below(base, limit) {
                    return self.max;
                }
            }
        }
        let secs = first.as_secs_f64() * factor;
        match Duration::try_from_secs_f64(secs) {
            Ok(d) if d < self.max => d,
            _ => self.max,
        }
    }
}

impl Default for Exponential {
    fn default() -> Self {
        Exponential::GRPC
    }
}

/// Randomisation of each retry delay (R7), so that many clients that lost the same server
/// do not all come back at the same instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Jitter {
    /// Use the policy's delay as it is.
    Off,
    /// Draw a distance uniformly from `[0, percent% of the delay)`, in steps of 1/32,768 of
    /// that range (one 16-bit draw per attempt: a sign and 15 bits), and add it or take it
    /// off with even odds. `percent` above 100 counts as 100.
    Uniform {
        /// The largest distance, in percent of the delay.
        percent: u8,
    },
}

impl Jitter {
    /// The seed's jitter: +-30 %.
    pub const STANDARD: Jitter = Jitter::Uniform { percent: 30 };

    /// The largest distance in percent of the delay: at most 100, 0 when off. Inlined:
    /// every attempt asks (out of line, the call cost a tenth of the jitter).
    #[inline(always)]
    fn percent(self) -> u64 {
        match self {
            Jitter::Off => 0,
            Jitter::Uniform { percent } => u64::from(percent.min(100)),
        }
    }

    /// The smallest and the largest delay this jitter can make of `delay`.
    pub fn bounds(self, delay: Duration) -> (Duration, Duration) {
        let d = clamp_nanos(delay);
        let spread = d * u128::from(self.percent()) / 100;
        (from_nanos(d - spread), from_nanos(d + spread))
    }

    /// Applies the jitter to `delay` with one draw from `rng`.
    ///
    /// In `u64` but for one product: every attempt jitters its delay, and `u128` divisions
    /// are calls into the runtime. The results are those of the `u128` formula
    /// (`d * frac * percent / 100`, clamped as in [`bounds`](Self::bounds)); the tests
    /// compare the two.
    pub(crate) fn apply(self, delay: Duration, draw: impl FnOnce() -> u16) -> Duration {
        // At most 100, so the products below fit.
        let pct = self.percent();
        let d = clamp_nanos_u64(delay);
        if pct == 0 || d == 0 {
            // Clamped as when jittered, so that `bounds` holds for every jitter.
            return Duration::from_nanos(d);
        }
        let draw = draw();
        // 15 bits of magnitude, 1 bit of sign: d * frac with frac uniform in [0, 1), which
        // is below d, so it fits in a u64.
        let scaled = ((u128::from(d) * u128::from(draw >> 1)) >> 15) as u64;
        // scaled * pct / 100 without its 71-bit product: with scaled = 100 q + r, it is
        // q * pct + r * pct / 100 exactly, and q * pct <= scaled.
        let distance = scaled / 100 * pct + scaled % 100 * pct / 100;
        if draw & 1 == 0 {
            Duration::from_nanos(d - distance)
        } else {
            match d.checked_add(distance) {
                Some(n) => Duration::from_nanos(n),
                None => from_nanos(u128::from(d) + u128::from(distance)),
            }
        }
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter::STANDARD
    }
}

/// `x < limit`, false for NaN or infinity.
fn below(x: f64, limit: f64) -> bool {
    x.partial_cmp(&limit) == Some(core::cmp::Ordering::Less)
}

/// Delays are computed in nanoseconds, at most `u64::MAX` (about 584 years), so that the
/// products above fit in `u128`.
fn clamp_nanos(d: Duration) -> u128 {
    d.as_nanos().min(u128::from(u64::MAX))
}

/// [`clamp_nanos`] in a `u64`, without a `u128` product.
fn clamp_nanos_u64(d: Duration) -> u64 {
    d.as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(u64::from(d.subsec_nanos())))
        .unwrap_or(u64::MAX)
}

fn from_nanos(n: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    // `n` is at most 2 * u64::MAX, so the seconds fit in a u64.
    let secs = u64::try_from(n / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it fits in a u32.
    let nanos = u32::try_from(n % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec;

    use super::*;

    /// `Jitter::apply` as first written, in `u128` throughout: the reference.
    fn reference(jitter: Jitter, delay: Duration, draw: u16) -> Duration {
        let pct = u128::from(jitter.percent());
        let d = clamp_nanos(delay);
        if pct == 0 || d == 0 {
            return from_nanos(d);
        }
        let scaled = (d * u128::from(draw >> 1)) >> 15;
        let distance = scaled * pct / 100;
        if draw & 1 == 0 {
            from_nanos(d - distance)
        } else {
            from_nanos(d + distance)
        }
    }

    #[test]
    fn apply_in_u64_gives_the_u128_formulas_results() {
        let nanos_max = Duration::from_nanos(u64::MAX);
        let delays = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_nanos(99),
            Duration::from_nanos(101),
            Duration::from_millis(1),
            Duration::from_secs(10),
            Duration::new(1, 1),
            Duration::new(123_456, 789_012_345),
            nanos_max - Duration::from_nanos(1),
            nanos_max,
            nanos_max + Duration::from_nanos(1),
            Duration::from_secs(u64::MAX / 1_000_000_000 + 1),
            Duration::MAX,
        ];
        let percents = [0, 1, 29, 30, 99, 100, 101, 255];
        let mut draws = vec![0, 1, 2, 3, 0x7fff, 0x8000, u16::MAX - 1, u16::MAX];
        // And a spread of others (an LCG: no need for quality here).
        let mut x = 12_345u32;
        for _ in 0..2_000 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            draws.push((x >> 16) as u16);
        }
        for delay in delays {
            for percent in percents {
                let jitter = Jitter::Uniform { percent };
                for &draw in &draws {
                    assert_eq!(
                        jitter.apply(delay, || draw),
                        reference(jitter, delay, draw),
                        "delay {delay:?}, {percent} %, draw {draw:#x}"
                    );
                }
            }
            assert_eq!(
                Jitter::Off.apply(delay, || unreachable!("Off draws nothing")),
                reference(Jitter::Off, delay, 0)
            );
        }
    }
}
