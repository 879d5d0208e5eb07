//! A histogram of atomic counters: observing takes no lock, so the calls
//! of every worker thread record without waiting on each other.
//!
//! It encodes like `prometheus_client`'s histogram (cumulative `le`
//! buckets, `+Inf`, `_sum` and `_count`). A scrape reads each counter on
//! its own, so it may see an observation in `_count` that a bucket does
//! not show yet; the next scrape does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

struct Inner {
    /// Upper bounds, ascending, without `+Inf`.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
    count: AtomicU64,
}

/// A lock-free histogram over fixed bucket bounds; clones share it.
#[derive(Clone)]
pub(crate) struct AtomicHistogram(Arc<Inner>);

impl std::fmt::Debug for AtomicHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicHistogram").field("count", &self.0.count.load(Ordering::Relaxed)).finish()
    }
}

impl AtomicHistogram {
    /// An empty histogram over `bounds` (ascending upper bounds).
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self(Arc::new(Inner { bounds, counts, sum: AtomicU64::new(0f64.to_bits()), count: AtomicU64::new(0) }))
    }

    /// Records one observation.
    pub(crate) fn observe(&self, v: f64) {
        let inner = &*self.0;
        let bucket = inner.bounds.partition_point(|&le| le < v);
        inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let mut old = inner.sum.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(old) + v).to_bits();
            match inner.sum.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
        inner.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Sum, count and per-bucket `(le, count)` pairs, `+Inf` last (the
    /// encoder makes them cumulative).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let inner = &*self.0;
        let mut buckets = Vec::with_capacity(inner.counts.len());
        for (i, c) in inner.counts.iter().enumerate() {
            buckets.push((inner.bounds.get(i).copied().unwrap_or(f64::MAX), c.load(Ordering::Relaxed)));
        }
        (f64::from_bits(inner.sum.load(Ordering::Relaxed)), inner.count.load(Ordering::Relaxed), buckets)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
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
    use prometheus_client::metrics::histogram::Histogram;

    use super::AtomicHistogram;

    fn text(
        metric: impl prometheus_client::encoding::EncodeMetric + Send + Sync + std::fmt::Debug + 'static,
    ) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("h", "help", metric);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        out
    }

    #[test]
    fn encodes_like_the_locking_histogram() {
        const BOUNDS: [f64; 3] = [0.1, 1.0, 10.0];
        let ours = AtomicHistogram::new(&BOUNDS);
        let theirs = Histogram::new(BOUNDS);
        for v in [0.05, 0.1, 0.5, 1.0, 3.0, 10.0, 11.0, 1e9] {
            ours.observe(v);
            theirs.observe(v);
        }
        assert_eq!(text(ours), text(theirs));
    }
}
