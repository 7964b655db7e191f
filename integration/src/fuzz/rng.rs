//! A small deterministic PRNG (SplitMix64): the same seed gives the same cases on every
//! machine and every build, without a dependency.

pub struct Rng(u64);

impl Rng {
    /// The generator of case `n` of seed `seed`: every case can be replayed on its own.
    pub fn for_case(seed: u64, n: u64) -> Rng {
        let mut r = Rng(seed ^ 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(n.wrapping_add(1)));
        r.next();
        r
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `pct` percent.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A random subset (each element with probability `pct`), in order.
    pub fn subset<T: Clone>(&mut self, items: &[T], pct: u64) -> Vec<T> {
        items.iter().filter(|_| self.pct(pct)).cloned().collect()
    }

    /// Shuffle in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod unit {
    use super::Rng;

    #[test]
    fn deterministic() {
        let a: Vec<u64> = (0..4).map(|_| Rng::for_case(7, 3).next()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::for_case(7, 3).next(), Rng::for_case(7, 4).next());
        let mut r = Rng::for_case(1, 1);
        assert!((0..1000).all(|_| r.below(5) < 5));
    }
}
