//! How many new documents one caller may create: a token bucket per caller.
//!
//! Every document costs an actor while loaded and a record in the store once written, so an
//! anonymous script opening a fresh name per request could fill both (42,112 documents in
//! 20 s in an attack run). Opening or writing a document that exists costs nothing here; a
//! name that is neither loaded nor stored takes one token from the caller's bucket. A caller
//! is its token's subject when it has one, else its IP address (callers without either share
//! one bucket). An empty bucket refuses the creation with a clear error (HTTP 429 with
//! `Retry-After`, or the Hocuspocus session's `PermissionDenied`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use tandem_core::{DocName, StoreError};
use tokio::time::Instant;

use crate::api::ApiError;
use crate::Tandem;

/// Who creates a document, for [`CreationLimiter`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Creator {
    /// A token's subject.
    Subject(String),
    /// An address without a subject.
    Address(IpAddr),
    /// Neither: an embedding app's server without `ConnectInfo`.
    Unknown,
}

impl Creator {
    /// The subject if there is one, else the address.
    pub(crate) fn of(subject: Option<&str>, remote: Option<IpAddr>) -> Self {
        match (subject, remote) {
            (Some(subject), _) => Self::Subject(subject.to_owned()),
            (None, Some(ip)) => Self::Address(ip),
            (None, None) => Self::Unknown,
        }
    }
}

/// Why a document was not created.
#[derive(Debug)]
pub(crate) enum NotCreated {
    /// The caller created documents faster than allowed; try again after this long.
    RateLimited(Duration),
    /// The store could not tell whether the document exists.
    Store(StoreError),
}

impl IntoResponse for NotCreated {
    fn into_response(self) -> Response {
        match self {
            Self::RateLimited(wait) => {
                ApiError::rate_limited("too many new documents; slow down", wait).into_response()
            }
            Self::Store(error) => ApiError::store(&error).into_response(),
        }
    }
}

impl NotCreated {
    /// Why, for a Hocuspocus session's `PermissionDenied`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::RateLimited(_) => "too many new documents; slow down",
            Self::Store(_) => "document unavailable",
        }
    }
}

/// Buckets older than this without use are forgotten (a full bucket is no different from none).
const IDLE_BUCKET: Duration = Duration::from_secs(600);

/// Buckets kept before idle ones are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// New documents per caller: `per_minute` sustained, `burst` at once; 0 per minute: no limit.
#[derive(Debug)]
pub(crate) struct CreationLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<Creator, Bucket>>,
}

impl CreationLimiter {
    pub(crate) fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            per_sec: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        }
    }

    /// Takes a token for `creator`, or says how long until one is there.
    fn take(&self, creator: &Creator, now: Instant) -> Result<(), Duration> {
        if self.per_sec <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|_, bucket| now.duration_since(bucket.refilled) < IDLE_BUCKET);
        }
        let bucket = buckets.entry(creator.clone()).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_sec).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens < 1.0 {
            let wait = (1.0 - bucket.tokens) / self.per_sec;
            return Err(Duration::from_secs_f64(wait.max(0.001)));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

impl Tandem {
    /// Lets `creator` open `name`: at once if the document is loaded or stored, else if the
    /// creator's bucket has a token.
    pub(crate) async fn admit_document(
        &self,
        name: &DocName,
        creator: &Creator,
    ) -> Result<(), NotCreated> {
        if self.registry().is_loaded(name) {
            return Ok(());
        }
        match self.inner.store.doc_info(name).await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            // A store without metadata cannot tell: nothing to count against.
            Err(StoreError::Unsupported(_)) => return Ok(()),
            Err(error) => return Err(NotCreated::Store(error)),
        }
        self.inner
            .creations
            .take(creator, Instant::now())
            .map_err(|wait| {
                tracing::warn!(doc = %name, ?creator, "refusing document creation: rate exceeded");
                NotCreated::RateLimited(wait)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_creator_has_its_own_bucket() {
        let limiter = CreationLimiter::new(60, 3);
        let alice = Creator::of(Some("alice"), None);
        let anonymous = Creator::of(None, Some([127, 0, 0, 1].into()));
        let now = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take(&alice, now).is_ok());
        }
        let wait = limiter.take(&alice, now).expect_err("bucket empty");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limiter.take(&anonymous, now).is_ok());
        assert!(limiter
            .take(&alice, now + Duration::from_millis(1_001))
            .is_ok());
        assert!(CreationLimiter::new(0, 0).take(&alice, now).is_ok());
    }
}
