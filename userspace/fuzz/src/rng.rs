//! The fuzzer's own PRNG (SplitMix64): the same seed gives the same
//! sequence on every kernel and architecture, and a round's streams are
//! derived from (seed, round, stream) alone, so any round replays by
//! itself.

/// A SplitMix64 generator.
pub struct Rng(u64);

impl Rng {
    /// The generator for stream `stream` of round `round` of run `seed`.
    pub fn new(seed: u64, round: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ 0x6a09_e667_f3bc_c908);
        r.0 ^= r
            .next()
            .wrapping_add(round.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.0 ^= r
            .next()
            .wrapping_add(stream.wrapping_mul(0xbf58_476d_1ce4_e5b9));
        r
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}
