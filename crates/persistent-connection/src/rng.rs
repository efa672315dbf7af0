//! The jitter's random generator: ChaCha8, seeded by the caller, kept small.

use rand_chacha::ChaCha8Core;
use rand_core::SeedableRng;
use rand_core::block::Generator;

/// How many words of each ChaCha8 refill are kept: one is drawn per attempt. A refill makes
/// 64 words (256 bytes) at once; keeping them all would nearly double the Machine, so the
/// rest is dropped: a refill every 4 attempts costs a few nanoseconds per input.
const KEPT: usize = 4;

/// A ChaCha8 stream with a 16-byte buffer instead of `ChaCha8Rng`'s 256 bytes. The index
/// of the next word is kept by the caller (`next`), where it packs with other small fields.
#[derive(Clone)]
pub(crate) struct JitterRng {
    core: ChaCha8Core,
    words: [u32; KEPT],
}

impl JitterRng {
    /// The index that makes the first draw refill.
    pub(crate) const EMPTY: u8 = KEPT as u8;

    pub(crate) fn new(seed: u64) -> Self {
        JitterRng {
            core: ChaCha8Core::seed_from_u64(seed),
            words: [0; KEPT],
        }
    }

    /// The next 32 random bits; `next` is the index of the next unused word.
    pub(crate) fn next_u32(&mut self, next: &mut u8) -> u32 {
        if usize::from(*next) >= KEPT {
            let mut block = [0u32; 64];
            self.core.generate(&mut block);
            self.words.copy_from_slice(&block[..KEPT]);
            *next = 0;
        }
        let word = self.words[usize::from(*next)];
        *next += 1;
        word
    }
}
