//! Latencies measured where the work happens: applying an update inside a document's actor
//! and flushing the store. Process-wide (every registry in the process adds to the same
//! histograms), lock-free, and cheap enough to record on every update.
//!
//! The server exports them as Prometheus histograms (`tandem-server`'s `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the histogram buckets, in seconds: from 50 µs (a keystroke applied) to
/// 2.5 s (a flush on a saturated disk).
pub const BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    2.5,
];

/// A latency histogram with the fixed [`BUCKETS`].
#[derive(Debug)]
pub struct Histogram {
    /// Observations at or below each bucket's bound (not cumulative).
    buckets: [AtomicU64; BUCKETS.len()],
    /// Observations above the last bound.
    overflow: AtomicU64,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// What a [`Histogram`] holds at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative counts per bucket bound, as Prometheus wants them.
    pub cumulative: Vec<(f64, u64)>,
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram.
    pub const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
            overflow: AtomicU64::new(0),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        match BUCKETS.iter().position(|&bound| seconds <= bound) {
            Some(at) => self.buckets[at].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The current counts.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, count)| {
                running += count.load(Ordering::Relaxed);
                (bound, running)
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            count: self.count.load(Ordering::Relaxed),
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// Time a document's actor takes to apply one update (from a peer or over HTTP), integrate it
/// and encode what changed.
pub static UPDATE_APPLY: Histogram = Histogram::new();

/// Time one flush of the store to disk takes (group-committed: one flush covers many writes).
pub static STORE_FLUSH: Histogram = Histogram::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let histogram = Histogram::new();
        histogram.observe(Duration::from_micros(10));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(10));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 3);
        assert_eq!(snapshot.cumulative[0], (0.000_05, 1));
        assert_eq!(snapshot.cumulative.last(), Some(&(2.5, 2)));
        assert!((snapshot.sum - 10.003_01).abs() < 1e-6);
    }
}
