//! A tiny deterministic random generator (SplitMix64) for the simulated agents' failure draws.
//!
//! Used by [`crate::agent`]: each agent seeds its own generator from the cluster seed and its
//! index, so a run with the same seed fails the same launches of each agent.

/// SplitMix64 state.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// The generator of agent `index` in a cluster seeded with `seed`.
    pub(crate) fn for_agent(seed: u64, index: usize) -> Rng {
        let mut r = Rng(seed ^ (index as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        r.next_u64();
        r
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p` (`p <= 0` never, `p >= 1` always).
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws_and_rate_is_respected() {
        let mut a = Rng::for_agent(7, 3);
        let mut b = Rng::for_agent(7, 3);
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(
            Rng::for_agent(7, 4).next_u64(),
            Rng::for_agent(7, 3).next_u64()
        );
        let mut r = Rng::for_agent(1, 0);
        let hits = (0..10_000).filter(|_| r.chance(0.3)).count();
        assert!((2_500..3_500).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| r.chance(0.0)));
        assert!((0..1000).all(|_| r.chance(1.0)));
    }
}
