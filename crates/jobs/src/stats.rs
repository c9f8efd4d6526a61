//! Run-duration statistics: exact order statistics (nearest rank), as `/scheduler/job/stat` shows.
//!
//! Used by [`crate::planner::Planner::stats`] and the runtime's stat endpoints.

use serde::{Deserialize, Serialize};

/// Order statistics over run durations in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Number of samples.
    pub count: u64,
    /// 50th percentile.
    pub median: f64,
    /// 75th percentile.
    pub p75: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 98th percentile.
    pub p98: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Arithmetic mean (the real mean, unlike upstream Chronos which reports the median).
    pub mean: f64,
}

/// The nearest-rank `q`-quantile (0 < q ≤ 1) of sorted samples: the smallest sample with at
/// least `q × n` samples at or below it.
pub fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let n = sorted.len();
    // Ranks are small integers; the float product is exact enough to ceil.
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

impl Stats {
    /// Statistics of the given samples (non-finite ones are ignored); all zero when empty.
    pub fn from_samples(mut samples: Vec<f64>) -> Stats {
        samples.retain(|s| s.is_finite());
        if samples.is_empty() {
            return Stats::default();
        }
        samples.sort_by(f64::total_cmp);
        let sum: f64 = samples.iter().sum();
        Stats {
            count: samples.len() as u64,
            median: nearest_rank(&samples, 0.5),
            p75: nearest_rank(&samples, 0.75),
            p95: nearest_rank(&samples, 0.95),
            p98: nearest_rank(&samples, 0.98),
            p99: nearest_rank(&samples, 0.99),
            mean: sum / samples.len() as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_to_hundred() {
        let s = Stats::from_samples((1..=100).rev().map(f64::from).collect());
        assert_eq!(s.count, 100);
        assert_eq!(
            (s.median, s.p75, s.p95, s.p98, s.p99),
            (50.0, 75.0, 95.0, 98.0, 99.0)
        );
        assert_eq!(s.mean, 50.5);
    }

    #[test]
    fn percentiles_are_samples_not_averages() {
        let s = Stats::from_samples(vec![10.0, 1000.0]);
        assert_eq!(s.median, 10.0);
        assert_eq!(s.p99, 1000.0);
        assert_eq!(s.mean, 505.0);
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(Stats::from_samples(vec![f64::NAN]), Stats::default());
    }
}
