//! Counting what clients use: open connections (in total and per IP address) and what each
//! connection sends per second (token buckets).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::time::Instant;

use crate::config::RateLimit;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server holds its maximum of connections.
    Total,
    /// This address holds its maximum of connections.
    PerIp,
}

/// Open WebSocket connections, in total and per client address.
#[derive(Debug)]
pub(crate) struct ConnectionLimiter {
    max_total: usize,
    max_per_ip: usize,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    // The counts stay consistent across a panic elsewhere: every update is a single step.
    counts.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ConnectionLimiter {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            max_total,
            max_per_ip,
            counts: Arc::default(),
        }
    }

    /// Admits one more connection, from `ip` if known, or says which limit it would break.
    /// The connection counts until the permit is dropped.
    pub(crate) fn admit(&self, ip: Option<IpAddr>) -> Result<ConnectionPermit, Refusal> {
        let mut counts = lock(&self.counts);
        if counts.total >= self.max_total {
            return Err(Refusal::Total);
        }
        if let Some(ip) = ip {
            let from_ip = counts.per_ip.entry(ip).or_default();
            if *from_ip >= self.max_per_ip {
                return Err(Refusal::PerIp);
            }
            *from_ip += 1;
        }
        counts.total += 1;
        Ok(ConnectionPermit {
            ip,
            counts: self.counts.clone(),
        })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        lock(&self.counts).total
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    ip: Option<IpAddr>,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total -= 1;
        if let Some(ip) = self.ip {
            if let Some(from_ip) = counts.per_ip.get_mut(&ip) {
                *from_ip -= 1;
                if *from_ip == 0 {
                    counts.per_ip.remove(&ip);
                }
            }
        }
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    /// A full bucket, or none when `rate` is 0 (no limit).
    fn new(rate: f64, burst: f64, now: Instant) -> Option<Self> {
        (rate > 0.0).then(|| Self {
            rate,
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            refilled: now,
        })
    }

    fn take(&mut self, amount: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens < amount {
            return false;
        }
        self.tokens -= amount;
        true
    }
}

/// A rate of single things (custom events) per second with a burst; `None` when unlimited.
#[derive(Debug)]
pub(crate) struct CountRate(Option<Bucket>);

impl CountRate {
    pub(crate) fn new(per_sec: u32, burst: u32) -> Self {
        Self(Bucket::new(
            f64::from(per_sec),
            f64::from(burst),
            Instant::now(),
        ))
    }

    /// Takes one; false when the bucket is empty.
    pub(crate) fn admit(&mut self) -> bool {
        let now = Instant::now();
        self.0.as_mut().is_none_or(|bucket| bucket.take(1.0, now))
    }
}

/// What one connection may send: messages and bytes per second.
#[derive(Debug)]
pub(crate) struct ConnectionRate {
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
}

impl ConnectionRate {
    pub(crate) fn new(limit: &RateLimit) -> Self {
        let now = Instant::now();
        Self {
            messages: Bucket::new(
                f64::from(limit.messages_per_sec),
                f64::from(limit.message_burst),
                now,
            ),
            bytes: Bucket::new(limit.bytes_per_sec as f64, limit.byte_burst as f64, now),
        }
    }

    /// Messages the bucket holds now, after the one [`admit`](Self::admit) took; `usize::MAX`
    /// without a message limit.
    pub(crate) fn messages_left(&mut self) -> usize {
        let now = Instant::now();
        match self.messages.as_mut() {
            None => usize::MAX,
            Some(bucket) => {
                bucket.take(0.0, now);
                bucket.tokens.max(0.0) as usize
            }
        }
    }

    /// Takes `count` more messages (beyond the frame's first) from the message bucket; false
    /// when it holds fewer.
    pub(crate) fn admit_more(&mut self, count: usize) -> bool {
        let now = Instant::now();
        self.messages
            .as_mut()
            .is_none_or(|bucket| bucket.take(count as f64, now))
    }

    /// Takes one message (a frame, or a control frame) of `len` bytes from the buckets; false
    /// when either is exhausted.
    pub(crate) fn admit(&mut self, len: usize) -> bool {
        let now = Instant::now();
        let message = self
            .messages
            .as_mut()
            .is_none_or(|bucket| bucket.take(1.0, now));
        message
            && self
                .bytes
                .as_mut()
                .is_none_or(|bucket| bucket.take(len as f64, now))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn connections_are_capped_in_total_and_per_ip() {
        let limiter = ConnectionLimiter::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = limiter.admit(Some(a)).expect("first");
        let _second = limiter.admit(Some(a)).expect("second");
        assert_eq!(limiter.admit(Some(a)).err(), Some(Refusal::PerIp));
        let _third = limiter.admit(Some(b)).expect("other ip");
        assert_eq!(limiter.admit(None).err(), Some(Refusal::Total));
        drop(first);
        assert_eq!(limiter.open(), 2);
        limiter.admit(Some(a)).expect("freed by the drop");
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_allow_bursts_then_the_rate() {
        let mut rate = ConnectionRate::new(&RateLimit {
            messages_per_sec: 10,
            message_burst: 5,
            bytes_per_sec: 0,
            byte_burst: 0,
        });
        for _ in 0..5 {
            assert!(rate.admit(1_000_000));
        }
        assert!(!rate.admit(1));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(rate.admit(1));
        assert!(!rate.admit(1));
    }

    #[tokio::test(start_paused = true)]
    async fn every_message_of_a_frame_counts() {
        let mut rate = ConnectionRate::new(&RateLimit {
            messages_per_sec: 10,
            message_burst: 100,
            bytes_per_sec: 0,
            byte_burst: 0,
        });
        assert!(rate.admit(1_000));
        assert_eq!(rate.messages_left(), 99);
        assert!(rate.admit_more(99));
        assert_eq!(rate.messages_left(), 0);
        assert!(!rate.admit_more(1));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(rate.messages_left(), 5);
        assert_eq!(
            ConnectionRate::new(&RateLimit::off()).messages_left(),
            usize::MAX
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_are_limited_too() {
        let mut rate = ConnectionRate::new(&RateLimit {
            messages_per_sec: 0,
            message_burst: 0,
            bytes_per_sec: 100,
            byte_burst: 1_000,
        });
        assert!(rate.admit(1_000));
        assert!(!rate.admit(10));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(rate.admit(10));
    }
}
