//! Summaries of many measurements: percentiles of latencies, kept in microseconds so that a
//! million of them fit in 4 MB.

use serde::Serialize;

/// Percentiles of a set of latencies, milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Latency {
    /// How many were measured.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// Summarizes latencies given in microseconds; `None` when there are none.
    pub fn of(mut micros: Vec<u32>) -> Option<Self> {
        if micros.is_empty() {
            return None;
        }
        micros.sort_unstable();
        let at = |q: f64| {
            let rank = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len());
            f64::from(micros[rank - 1]) / 1000.0
        };
        Some(Self {
            count: micros.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        })
    }

    /// `p50 / p99 / max ms`, for the human table.
    pub fn row(&self) -> String {
        format!(
            "{:.2} / {:.2} / {:.2} ms",
            self.p50_ms, self.p99_ms, self.max_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_nearest_rank_percentiles() {
        assert_eq!(Latency::of(Vec::new()), None);
        let latency = Latency::of((1..=1000).rev().map(|ms| ms * 1000).collect());
        assert_eq!(
            latency,
            Some(Latency {
                count: 1000,
                p50_ms: 500.0,
                p99_ms: 990.0,
                max_ms: 1000.0
            })
        );
        let one = Latency::of(vec![1500]).map(|l| (l.p50_ms, l.p99_ms, l.max_ms));
        assert_eq!(one, Some((1.5, 1.5, 1.5)));
    }
}
