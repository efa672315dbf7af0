//! The jitter's random generator: ChaCha8, seeded by the caller, kept small.

use rand_chacha::ChaCha8Core;
use rand_core::SeedableRng;
use rand_core::block::Generator;

/// How many 32-bit words of each refill are kept. A refill makes 64 words (256 bytes) at
/// once; keeping them all would nearly double the Machine, so the rest is dropped.
const KEPT: usize = 4;

/// Draws per refill: each kept word gives two 16-bit draws, its low half first. A draw is
/// one attempt's jitter (a sign and 15 bits of distance: steps of 1/32,768 of the largest
/// distance, 92 us for the standard jitter of a 10 s delay, below Tokio's 1 ms timer
/// resolution for any delay up to 109 s), so a refill serves eight attempts. The refill is
/// the dearest step of an attempt (a long chain of dependent steps: about 5 ns per input
/// of the `machine` bench's `fail_retry` loop at a refill every four attempts,
/// BENCHMARKS.md F5); 32-bit draws would make it twice as often.
pub(crate) const DRAWS: usize = 2 * KEPT;

/// The draws kept from the last refill, drawn in order.
pub(crate) type Words = [u16; DRAWS];

/// A ChaCha8 stream in 16 bytes plus the caller's [`Words`]: the seed and how many refills
/// were made. Refill `k` runs ChaCha8 keyed with the seed (bytes 0..8 of the key,
/// little-endian) and `k` (bytes 8..16; the rest zero) from block 0, and keeps its first
/// `KEPT` words. Keeping the generator itself (its key, counter and stream: 48 bytes at an
/// alignment of 16) would make the Machine 40 bytes larger, for a refill that costs the
/// same. The caller keeps the draws and the index of the next one (`next`) apart from
/// this: every attempt draws, but only every `DRAWS`th refills, so the Machine keeps the
/// seed and count away from what each attempt touches, and the index where it packs with
/// other small fields.
#[derive(Clone)]
pub(crate) struct JitterRng {
    seed: u64,
    /// Refills made so far: the number of the next one.
    refills: u64,
}

impl JitterRng {
    /// The index that makes the first draw refill.
    pub(crate) const EMPTY: u8 = DRAWS as u8;

    pub(crate) fn new(seed: u64) -> Self {
        JitterRng { seed, refills: 0 }
    }

    /// The next 16 random bits from `words`; `next` is the index of the next unused draw.
    /// The draws are refilled once the last is taken, not when the next one needs them:
    /// then nothing waits for the refill, and the processor runs the attempt's other work
    /// beside it. The same draws come in the same order either way. Only the first draw
    /// finds them empty.
    #[inline(always)]
    pub(crate) fn next_u16(&mut self, words: &mut Words, next: &mut u8) -> u16 {
        if usize::from(*next) >= DRAWS {
            self.refill(words);
            *next = 0;
        }
        let draw = words[usize::from(*next)];
        *next += 1;
        if usize::from(*next) == DRAWS {
            self.refill(words);
            *next = 0;
        }
        draw
    }

    /// Out of line: one attempt in `DRAWS` needs it, and inlined it would make every
    /// attempt's code longer.
    #[inline(never)]
    fn refill(&mut self, words: &mut Words) {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.seed.to_le_bytes());
        key[8..16].copy_from_slice(&self.refills.to_le_bytes());
        self.refills = self.refills.wrapping_add(1);
        let mut block = [0u32; 64];
        ChaCha8Core::from_seed(key).generate(&mut block);
        for (pair, word) in words.chunks_exact_mut(2).zip(&block[..KEPT]) {
            pair[0] = *word as u16;
            pair[1] = (*word >> 16) as u16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each refill keys a fresh ChaCha8 with the seed and the refill's number, and the
    /// draws come out in order: the first `KEPT` words of each refill, each low half first.
    #[test]
    fn draws_the_halves_of_the_first_words_of_each_keyed_refill() {
        for seed in [0, 7, u64::MAX] {
            let mut rng = JitterRng::new(seed);
            let (mut words, mut next) = ([0; DRAWS], JitterRng::EMPTY);
            for k in 0u64..5 {
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&seed.to_le_bytes());
                key[8..16].copy_from_slice(&k.to_le_bytes());
                let mut block = [0u32; 64];
                ChaCha8Core::from_seed(key).generate(&mut block);
                for word in &block[..KEPT] {
                    for expected in [*word & 0xffff, *word >> 16] {
                        assert_eq!(
                            u32::from(rng.next_u16(&mut words, &mut next)),
                            expected,
                            "seed {seed}, refill {k}"
                        );
                    }
                }
            }
        }
    }

    /// The next refill is made as the last draw of a refill is taken (so that no draw
    /// waits for it), and only then: the first draw makes the first, the eighth the second.
    #[test]
    fn refills_once_the_last_draw_is_taken() {
        let mut rng = JitterRng::new(3);
        let (mut words, mut next) = ([0; DRAWS], JitterRng::EMPTY);
        let mut refills = [0; 2 * DRAWS];
        for made in &mut refills {
            rng.next_u16(&mut words, &mut next);
            *made = rng.refills;
        }
        let expected: [u64; 2 * DRAWS] =
            core::array::from_fn(|i| 1 + (i as u64 + 1) / DRAWS as u64);
        assert_eq!(refills, expected, "refills made after each draw");
    }

    /// Two seeds, or two refills of one seed, do not share draws.
    #[test]
    fn seeds_and_refills_differ() {
        let draw16 = |seed| {
            let mut rng = JitterRng::new(seed);
            let (mut words, mut next) = ([0; DRAWS], JitterRng::EMPTY);
            core::array::from_fn::<u16, 16, _>(|_| rng.next_u16(&mut words, &mut next))
        };
        let (a, b) = (draw16(1), draw16(2));
        assert_ne!(a, b);
        assert_ne!(a[..DRAWS], a[DRAWS..]);
    }
}
