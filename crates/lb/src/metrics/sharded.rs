//! Counters and histograms counted per thread and added up on scrape.
//!
//! Every proxied request counts into its backend's series from whichever worker thread served
//! it. A single atomic (or a locked histogram) shared by the workers moves its cache line
//! between cores on every request; here each thread counts into a shard of its own (a
//! cache-line-aligned slot picked once per thread), and `/metrics` sums the shards.
//!
//! ```text
//!  worker 0 ─inc─▶ shard 0 ┐
//!  worker 1 ─inc─▶ shard 1 ├─ sum on scrape ─▶ one counter / histogram in the exposition
//!  other    ─inc─▶ shard k ┘
//! ```
//!
//! Both types plug into `prometheus_client`'s `Family` like its own `Counter` and `Histogram`,
//! under the same names and with the same text exposition.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Slots per series; threads beyond this share slots (still correct, only slower).
pub(crate) const SHARDS: usize = 8;

/// Upper bounds of the latency histogram, in seconds (the last bucket, `+Inf`, is implicit).
pub const LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of a histogram: one per bound plus `+Inf`.
const BUCKETS: usize = LATENCY_BOUNDS.len() + 1;

/// The shard of the calling thread, chosen on its first count.
pub(crate) fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// A value on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// A monotonic counter, counted per thread.
#[derive(Clone, Debug, Default)]
pub struct ShardedCounter {
    shards: Arc<[Padded<AtomicU64>; SHARDS]>,
}

impl ShardedCounter {
    /// Adds one.
    pub fn inc(&self) {
        self.shards[shard()].0.fetch_add(1, Ordering::Relaxed);
    }

    /// The sum over all threads.
    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

impl TypedMetric for ShardedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// One thread's observations: a count per bucket and the sum in nanoseconds.
#[derive(Debug, Default)]
struct HistogramShard {
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

/// A histogram of durations over [`LATENCY_BOUNDS`], counted per thread.
#[derive(Clone, Debug, Default)]
pub struct ShardedHistogram {
    shards: Arc<[Padded<HistogramShard>; SHARDS]>,
}

impl ShardedHistogram {
    /// Records one duration of `seconds`.
    pub fn observe(&self, seconds: f64) {
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(BUCKETS - 1);
        let s = &self.shards[shard()].0;
        s.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // Saturating float-to-int cast: negative or NaN durations add nothing.
        let nanos = (seconds * 1e9) as u64;
        s.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Sum in seconds, count, and the (non-cumulative) count per bucket with its bound.
    pub fn snapshot(&self) -> (f64, u64, [(f64, u64); BUCKETS]) {
        let mut buckets = [(f64::INFINITY, 0u64); BUCKETS];
        for (b, bound) in buckets.iter_mut().zip(LATENCY_BOUNDS) {
            b.0 = bound;
        }
        let mut nanos = 0u64;
        for s in self.shards.iter() {
            for (b, n) in buckets.iter_mut().zip(&s.0.buckets) {
                b.1 = b.1.wrapping_add(n.load(Ordering::Relaxed));
            }
            nanos = nanos.wrapping_add(s.0.sum_nanos.load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|b| b.1).fold(0, u64::wrapping_add);
        (nanos as f64 / 1e9, count, buckets)
    }
}

impl TypedMetric for ShardedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ShardedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        let c = ShardedCounter::default();
        let h = ShardedHistogram::default();
        std::thread::scope(|s| {
            for _ in 0..(SHARDS + 3) {
                s.spawn(|| {
                    for _ in 0..1000 {
                        c.inc();
                        h.observe(0.002);
                    }
                });
            }
        });
        let n = (SHARDS as u64 + 3) * 1000;
        assert_eq!(c.get(), n);
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, n);
        assert!((sum - 0.002 * n as f64).abs() < 1e-6, "{sum}");
        let b = buckets.iter().position(|b| b.1 > 0).expect("a bucket");
        assert_eq!(
            buckets[b],
            (0.0025, n),
            "0.002 s falls in the 2.5 ms bucket"
        );
    }

    #[test]
    fn bounds_are_inclusive_and_the_last_bucket_is_infinite() {
        let h = ShardedHistogram::default();
        h.observe(0.001);
        h.observe(60.0);
        h.observe(-1.0);
        let (_, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert_eq!(
            buckets[0],
            (0.0005, 1),
            "a negative duration counts in the first"
        );
        assert_eq!(buckets[1], (0.001, 1));
        assert_eq!(buckets[BUCKETS - 1], (f64::INFINITY, 1));
    }
}
