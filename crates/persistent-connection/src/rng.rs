//! The jitter's random generator: ChaCha8, seeded by the caller, kept small.

use rand_chacha::ChaCha8Core;
use rand_core::SeedableRng;
use rand_core::block::Generator;

/// How many words of each refill are kept: one is drawn per attempt. A refill makes 64
/// words (256 bytes) at once; keeping them all would nearly double the Machine, so the
/// rest is dropped: a refill every 4 attempts costs a few nanoseconds per input.
const KEPT: usize = 4;

/// The words kept from the last refill, drawn in order.
pub(crate) type Words = [u32; KEPT];

/// A ChaCha8 stream in 16 bytes plus the caller's [`Words`]: the seed and how many refills
/// were made. Refill `k` runs ChaCha8 keyed with the seed (bytes 0..8 of the key,
/// little-endian) and `k` (bytes 8..16; the rest zero) from block 0, and keeps its first
/// `KEPT` words. Keeping the generator itself (its key, counter and stream: 48 bytes at an
/// alignment of 16) would make the Machine 40 bytes larger, for a refill that costs the
/// same. The caller keeps the words and the index of the next one (`next`) apart from
/// this: every attempt draws a word, but only every `KEPT`th refills, so the Machine keeps
/// the seed and count away from what each attempt touches, and the index where it packs
/// with other small fields.
#[derive(Clone)]
pub(crate) struct JitterRng {
    seed: u64,
    /// Refills made so far: the number of the next one.
    refills: u64,
}

impl JitterRng {
    /// The index that makes the first draw refill.
    pub(crate) const EMPTY: u8 = KEPT as u8;

    pub(crate) fn new(seed: u64) -> Self {
        JitterRng { seed, refills: 0 }
    }

    /// The next 32 random bits from `words`, refilled once drawn; `next` is the index of
    /// the next unused word.
    pub(crate) fn next_u32(&mut self, words: &mut Words, next: &mut u8) -> u32 {
        if usize::from(*next) >= KEPT {
            self.refill(words);
            *next = 0;
        }
        let word = words[usize::from(*next)];
        *next += 1;
        word
    }

    /// Out of line: one attempt in `KEPT` needs it, and inlined it would make every
    /// attempt's code longer.
    #[inline(never)]
    fn refill(&mut self, words: &mut Words) {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.seed.to_le_bytes());
        key[8..16].copy_from_slice(&self.refills.to_le_bytes());
        self.refills = self.refills.wrapping_add(1);
        let mut block = [0u32; 64];
        ChaCha8Core::from_seed(key).generate(&mut block);
        words.copy_from_slice(&block[..KEPT]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each refill keys a fresh ChaCha8 with the seed and the refill's number, and the
    /// words come out in order: the first `KEPT` of each refill.
    #[test]
    fn draws_the_first_words_of_each_keyed_refill() {
        for seed in [0, 7, u64::MAX] {
            let mut rng = JitterRng::new(seed);
            let (mut words, mut next) = ([0; KEPT], JitterRng::EMPTY);
            for k in 0u64..5 {
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&seed.to_le_bytes());
                key[8..16].copy_from_slice(&k.to_le_bytes());
                let mut block = [0u32; 64];
                ChaCha8Core::from_seed(key).generate(&mut block);
                for expected in &block[..KEPT] {
                    assert_eq!(
                        rng.next_u32(&mut words, &mut next),
                        *expected,
                        "seed {seed}, refill {k}"
                    );
                }
            }
        }
    }

    /// Two seeds, or two refills of one seed, do not share words.
    #[test]
    fn seeds_and_refills_differ() {
        let draw8 = |seed| {
            let mut rng = JitterRng::new(seed);
            let (mut words, mut next) = ([0; KEPT], JitterRng::EMPTY);
            core::array::from_fn::<u32, 8, _>(|_| rng.next_u32(&mut words, &mut next))
        };
        let (a, b) = (draw8(1), draw8(2));
        assert_ne!(a, b);
        assert_ne!(a[..4], a[4..]);
    }
}
