//! Webhooks: a signed `POST` to each configured URL when a document changed (debounced per
//! document) and, if asked, when peers join and leave.
//!
//! Deliveries go through an outbox kept in the store ([`Store::outbox_push`]), so they survive
//! a restart: a change opens a delivery record per URL as soon as its burst begins; once the
//! document has been quiet for [`WebhookConfig::debounce`] (or [`WebhookConfig::max_delay`]
//! after the burst began) the records are sent, and each is removed when its receiver answers
//! 2xx. Failures are retried with exponential backoff up to [`WebhookConfig::max_attempts`];
//! records still in the outbox at start (the server stopped or died first) are sent at once.
//! Delivery is at least once: a receiver deduplicates with the `X-Tandem-Delivery` id, which
//! every retry of a delivery repeats.
//!
//! Nothing here touches a document: actors and connections report events to an unbounded
//! queue and go on; one task writes the outbox and schedules the sends, which run concurrently
//! (at most [`MAX_IN_FLIGHT`]).
//!
//! Requests carry `X-Tandem-Event` (the type), `X-Tandem-Delivery` (the id) and, with a secret,
//! `X-Tandem-Signature-256: sha256=<hex HMAC-SHA256 of the body>` (GitHub's scheme).
//!
//! The HTTP client is reqwest with rustls: webhook receivers are usually HTTPS endpoints on
//! the internet, and reqwest brings TLS, proxies-free connection pooling and timeouts without
//! a system OpenSSL.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use tandem_core::{DocName, PeerId, Store, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::{timestamp, with_name};
use crate::metrics::{DeliveryResult, Metrics};
use crate::peers::PeerEntry;

/// Quiet time after a document's last change before its webhook goes out.
pub const DEFAULT_WEBHOOK_DEBOUNCE: Duration = Duration::from_secs(2);

/// Longest a change waits for its webhook while the document keeps changing.
pub const DEFAULT_WEBHOOK_MAX_DELAY: Duration = Duration::from_secs(10);

/// How long one delivery attempt may take.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts per delivery before it is given up (logged and counted as dropped). With the
/// default backoff that is about an hour and a half of retrying.
pub const DEFAULT_WEBHOOK_MAX_ATTEMPTS: u32 = 20;

/// Wait before the first retry; each further retry waits twice as long as the last…
pub const DEFAULT_WEBHOOK_RETRY_BASE: Duration = Duration::from_secs(1);

/// … up to this.
pub const DEFAULT_WEBHOOK_RETRY_MAX: Duration = Duration::from_secs(300);

/// Deliveries sent at once.
pub const MAX_IN_FLIGHT: usize = 16;

/// Events the dispatcher takes in per turn before it looks at its timers, outbox writes and
/// sends again: taking one in costs no store call, so a turn stays short under a flood.
const INTAKE_BATCH: usize = 1024;

/// Where and how webhooks are delivered.
#[derive(Clone)]
pub struct WebhookConfig {
    /// The receivers; each gets every delivery.
    pub urls: Vec<String>,
    /// The HMAC-SHA256 key signing each body; unsigned without one.
    pub secret: Option<Vec<u8>>,
    /// See [`DEFAULT_WEBHOOK_DEBOUNCE`].
    pub debounce: Duration,
    /// See [`DEFAULT_WEBHOOK_MAX_DELAY`].
    pub max_delay: Duration,
    /// Also deliver `peer.joined` and `peer.left`.
    pub peer_events: bool,
    /// See [`DEFAULT_WEBHOOK_TIMEOUT`].
    pub timeout: Duration,
    /// See [`DEFAULT_WEBHOOK_MAX_ATTEMPTS`].
    pub max_attempts: u32,
    /// See [`DEFAULT_WEBHOOK_RETRY_BASE`].
    pub retry_base: Duration,
    /// See [`DEFAULT_WEBHOOK_RETRY_MAX`].
    pub retry_max: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("urls", &self.urls)
            .field("signed", &self.secret.is_some())
            .field("debounce", &self.debounce)
            .field("max_delay", &self.max_delay)
            .field("peer_events", &self.peer_events)
            .finish_non_exhaustive()
    }
}

impl WebhookConfig {
    /// Delivers to `urls` with every other setting at its default.
    pub fn new(urls: Vec<String>) -> Self {
        Self {
            urls,
            secret: None,
            debounce: DEFAULT_WEBHOOK_DEBOUNCE,
            max_delay: DEFAULT_WEBHOOK_MAX_DELAY,
            peer_events: false,
            timeout: DEFAULT_WEBHOOK_TIMEOUT,
            max_attempts: DEFAULT_WEBHOOK_MAX_ATTEMPTS,
            retry_base: DEFAULT_WEBHOOK_RETRY_BASE,
            retry_max: DEFAULT_WEBHOOK_RETRY_MAX,
        }
    }
}

/// Why webhooks could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A URL is not an absolute http(s) URL.
    #[error("invalid webhook url {0:?}")]
    InvalidUrl(String),
    /// The HTTP client could not be built.
    #[error("could not build the webhook client: {0}")]
    Client(String),
}

/// What the dispatcher hears about.
#[derive(Debug)]
pub(crate) enum WebhookEvent {
    Changed { doc: DocName },
    PeerJoined { peer: PeerId, entry: PeerEntry },
    PeerLeft { peer: PeerId, entry: PeerEntry },
}

/// A delivery as kept in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    url: String,
    /// The body, without its `id`.
    body: Value,
}

/// The queue events go to; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct WebhookQueue {
    events: mpsc::UnboundedSender<WebhookEvent>,
}

impl WebhookQueue {
    pub(crate) fn send(&self, event: WebhookEvent) {
        // The dispatcher stops only at shutdown; what is reported after is not delivered.
        let _ = self.events.send(event);
    }
}

/// Checks the configuration and starts the dispatcher; it stops when `closing` is cancelled.
pub(crate) fn start(
    config: WebhookConfig,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    closing: CancellationToken,
) -> Result<(WebhookQueue, tokio::task::JoinHandle<()>), WebhookError> {
    for url in &config.urls {
        let parsed = reqwest::Url::parse(url).map_err(|_| WebhookError::InvalidUrl(url.clone()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(WebhookError::InvalidUrl(url.clone()));
        }
    }
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .build()
        .map_err(|error| WebhookError::Client(error.to_string()))?;
    let (events, received) = mpsc::unbounded_channel();
    let dispatcher = Dispatcher {
        config: Arc::new(config),
        store,
        metrics,
        client,
        bursts: HashMap::new(),
        burst_timers: BinaryHeap::new(),
        next_burst_key: 0,
        unwritten: Vec::new(),
        pushing: Vec::new(),
        finished_ids: Vec::new(),
        due: BTreeMap::new(),
        attempts: HashMap::new(),
        local_ids: 0,
    };
    let span = tracing::info_span!(parent: None, "webhooks");
    let task = tokio::spawn(tracing::Instrument::instrument(
        dispatcher.run(received, closing),
        span,
    ));
    Ok((WebhookQueue { events }, task))
}

/// A burst of changes to one document whose delivery is being debounced.
struct Burst {
    /// Tells this burst from a later one of the same document, for records written late.
    key: u64,
    first: Instant,
    last: Instant,
    /// Its deliveries whose outbox records are written.
    deliveries: Vec<(u64, Record)>,
}

/// Where a record goes once the outbox gave it an id.
enum Owner {
    /// Into its burst if that is still being debounced, else straight to sending.
    Burst { doc: DocName, key: u64 },
    /// Straight to sending.
    Now,
}

/// A finished outbox push: the ids the store gave the records, in order.
type Pushed = Result<Vec<u64>, StoreError>;

/// A finished outbox removal: how many ids, and whether it worked.
type Removed = (usize, Result<(), StoreError>);

/// The outbox writes in flight: at most one push and one removal. Everything that accumulates
/// meanwhile goes in the next one, so a burst of deliveries costs one flush, not one each.
#[derive(Default)]
struct Writes {
    push: JoinSet<Pushed>,
    remove: JoinSet<Removed>,
}

struct Dispatcher {
    config: Arc<WebhookConfig>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    client: reqwest::Client,
    bursts: HashMap<DocName, Burst>,
    /// One entry per burst: the earliest it can be due, soonest first. A burst extended since
    /// its entry was made gets a new entry when the old one comes up.
    burst_timers: BinaryHeap<Reverse<(Instant, DocName)>>,
    next_burst_key: u64,
    /// Records to write to the outbox, with where each goes once written.
    unwritten: Vec<(Owner, Record)>,
    /// The records of the push in flight.
    pushing: Vec<(Owner, Record)>,
    /// Ids to remove from the outbox (delivered or given up).
    finished_ids: Vec<u64>,
    /// Deliveries waiting for their (next) attempt, by when and id.
    due: BTreeMap<(Instant, u64), Record>,
    /// Failed attempts so far, by delivery id.
    attempts: HashMap<u64, u32>,
    /// Ids of deliveries the store could not keep (outbox unsupported or failing).
    local_ids: u64,
}

type Attempt = (u64, Record, Result<(), String>);

impl Dispatcher {
    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<WebhookEvent>,
        closing: CancellationToken,
    ) {
        self.resume().await;
        let mut in_flight: JoinSet<Attempt> = JoinSet::new();
        let mut writes = Writes::default();
        let mut intake = Vec::with_capacity(INTAKE_BATCH);
        // Not biased: intake, outbox writes, timers and sends each get their turn, so a flood
        // of changes cannot hold deliveries back (and taking in an event costs no store call).
        loop {
            self.start_writes(&mut writes);
            let burst_due = self.burst_timers.peek().map(|Reverse((at, _))| *at);
            let next = self
                .due
                .keys()
                .next()
                .map(|(at, _)| *at)
                .filter(|_| in_flight.len() < MAX_IN_FLIGHT);
            tokio::select! {
                _ = closing.cancelled() => break,
                received = events.recv_many(&mut intake, INTAKE_BATCH) => {
                    if received == 0 {
                        break;
                    }
                    for event in intake.drain(..) {
                        self.on_event(event);
                    }
                }
                Some(done) = writes.push.join_next(), if !writes.push.is_empty() => {
                    self.pushed(done);
                }
                Some(done) = writes.remove.join_next(), if !writes.remove.is_empty() => {
                    self.removed(done);
                }
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(attempt) = done {
                        self.finished(attempt);
                    }
                }
                _ = sleep_until(burst_due.unwrap_or_else(Instant::now)), if burst_due.is_some() => {
                    self.release_bursts(Instant::now());
                }
                _ = sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    let now = Instant::now();
                    while in_flight.len() < MAX_IN_FLIGHT {
                        let Some(entry) = self.due.first_entry().filter(|entry| entry.key().0 <= now)
                        else {
                            break;
                        };
                        let ((_, id), record) = entry.remove_entry();
                        in_flight.spawn(attempt(
                            self.client.clone(),
                            self.config.clone(),
                            id,
                            record,
                        ));
                    }
                }
            }
        }
        // Attempts already answered are settled; those cut short here are still in the outbox
        // and go out again at the next start.
        while let Some(done) = in_flight.try_join_next() {
            if let Ok(attempt) = done {
                self.finished(attempt);
            }
        }
        in_flight.abort_all();
        // What documents reported before they stopped still reaches the outbox: in one more
        // write after the one in flight, so shutdown costs at most two flushes however many
        // deliveries are pending.
        while let Ok(event) = events.try_recv() {
            self.on_event(event);
        }
        loop {
            self.start_writes(&mut writes);
            tokio::select! {
                Some(done) = writes.push.join_next() => self.pushed(done),
                Some(done) = writes.remove.join_next() => self.removed(done),
                else => break,
            }
        }
        debug!("webhook dispatcher stopped");
    }

    /// Schedules what the outbox holds from before (the server stopped or died first).
    async fn resume(&mut self) {
        let pending = match self.store.outbox_pending().await {
            Ok(pending) => pending,
            Err(error) => {
                warn!(%error, "could not read the webhook outbox");
                return;
            }
        };
        if !pending.is_empty() {
            info!(
                pending = pending.len(),
                "resuming webhook deliveries from the outbox"
            );
        }
        let now = Instant::now();
        for (id, raw) in pending {
            match serde_json::from_slice::<Record>(&raw) {
                Ok(record) => {
                    self.due.insert((now, id), record);
                }
                Err(error) => {
                    warn!(id, %error, "dropping an unreadable outbox record");
                    self.finished_ids.push(id);
                }
            }
        }
    }

    /// Starts an outbox push and an outbox removal of everything accumulated, unless one of
    /// the kind is already in flight.
    fn start_writes(&mut self, writes: &mut Writes) {
        if writes.push.is_empty() && !self.unwritten.is_empty() {
            self.pushing = std::mem::take(&mut self.unwritten);
            let raw = self
                .pushing
                .iter()
                .map(|(_, record)| Bytes::from(serde_json::to_vec(record).unwrap_or_default()))
                .collect();
            let store = self.store.clone();
            writes
                .push
                .spawn(async move { store.outbox_push(raw).await });
        }
        if writes.remove.is_empty() && !self.finished_ids.is_empty() {
            let ids = std::mem::take(&mut self.finished_ids);
            let store = self.store.clone();
            writes.remove.spawn(async move {
                let count = ids.len();
                (count, store.outbox_remove(ids).await)
            });
        }
    }

    /// Places pushed records: into their burst while it is debounced, else up for sending.
    fn pushed(&mut self, done: Result<Pushed, tokio::task::JoinError>) {
        let records = std::mem::take(&mut self.pushing);
        let ids = match done.unwrap_or_else(|error| Err(StoreError::Task(error.to_string()))) {
            Ok(ids) if ids.len() == records.len() => ids,
            Ok(ids) => {
                warn!(
                    records = records.len(),
                    ids = ids.len(),
                    "the outbox answered the wrong number of ids, webhook deliveries kept in memory only"
                );
                self.local_id_batch(records.len())
            }
            Err(error) => {
                warn!(%error, records = records.len(), "webhook deliveries kept in memory only");
                self.local_id_batch(records.len())
            }
        };
        let now = Instant::now();
        for ((owner, record), id) in records.into_iter().zip(ids) {
            let burst = match &owner {
                Owner::Burst { doc, key } => {
                    self.bursts.get_mut(doc).filter(|burst| burst.key == *key)
                }
                Owner::Now => None,
            };
            match burst {
                Some(burst) => burst.deliveries.push((id, record)),
                None => {
                    self.due.insert((now, id), record);
                }
            }
        }
    }

    fn removed(&mut self, done: Result<Removed, tokio::task::JoinError>) {
        let (count, result) = match done {
            Ok(removed) => removed,
            Err(error) => (0, Err(StoreError::Task(error.to_string()))),
        };
        if let Err(error) = result {
            // They are delivered again after a restart: at least once still holds.
            warn!(%error, count, "could not remove delivered webhooks from the outbox");
        }
    }

    /// Ids for deliveries the store could not keep, marked so they are never removed from it.
    fn local_id_batch(&mut self, count: usize) -> Vec<u64> {
        (0..count)
            .map(|_| {
                self.local_ids += 1;
                (1 << 63) | self.local_ids
            })
            .collect()
    }

    fn burst_due(&self, burst: &Burst) -> Instant {
        (burst.last + self.config.debounce).min(burst.first + self.config.max_delay)
    }

    /// Hands every burst due by `now` to sending.
    fn release_bursts(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.burst_timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, doc))) = self.burst_timers.pop() else {
                break;
            };
            let Some(due) = self.bursts.get(&doc).map(|burst| self.burst_due(burst)) else {
                continue;
            };
            if due > now {
                self.burst_timers.push(Reverse((due, doc)));
                continue;
            }
            if let Some(burst) = self.bursts.remove(&doc) {
                // Records still being written follow when they have their ids.
                for (id, record) in burst.deliveries {
                    self.due.insert((now, id), record);
                }
            }
        }
    }

    fn on_event(&mut self, event: WebhookEvent) {
        let now = Instant::now();
        match event {
            WebhookEvent::Changed { doc } => {
                if let Some(burst) = self.bursts.get_mut(&doc) {
                    burst.last = now;
                    return;
                }
                let body = json!({
                    "type": "document.changed",
                    "changedAt": timestamp(SystemTime::now()),
                });
                let body = with_name(body, "doc", &doc);
                let key = self.next_burst_key;
                self.next_burst_key += 1;
                self.records(body, || Owner::Burst {
                    doc: doc.clone(),
                    key,
                });
                let burst = Burst {
                    key,
                    first: now,
                    last: now,
                    deliveries: Vec::new(),
                };
                self.burst_timers
                    .push(Reverse((self.burst_due(&burst), doc.clone())));
                self.bursts.insert(doc, burst);
            }
            WebhookEvent::PeerJoined { .. } | WebhookEvent::PeerLeft { .. }
                if !self.config.peer_events => {}
            WebhookEvent::PeerJoined { peer, entry } => {
                self.peer_event("peer.joined", peer, entry);
            }
            WebhookEvent::PeerLeft { peer, entry } => {
                self.peer_event("peer.left", peer, entry);
            }
        }
    }

    fn peer_event(&mut self, kind: &str, peer: PeerId, entry: PeerEntry) {
        let body = json!({
            "type": kind,
            "peer": peer.0,
            "sub": entry.subject,
            "transport": entry.kind.as_str(),
            "at": timestamp(SystemTime::now()),
        });
        let body = with_name(body, "doc", &entry.doc);
        self.records(body, || Owner::Now);
    }

    /// Queues one outbox record per URL for the next write; a record the store cannot keep
    /// is delivered from memory only.
    fn records(&mut self, body: Value, owner: impl Fn() -> Owner) {
        for url in &self.config.urls {
            let record = Record {
                url: url.clone(),
                body: body.clone(),
            };
            self.unwritten.push((owner(), record));
        }
    }

    fn finished(&mut self, (id, record, result): Attempt) {
        match result {
            Ok(()) => {
                self.metrics.webhook(DeliveryResult::Delivered);
                self.attempts.remove(&id);
                self.forget(id);
            }
            Err(error) => {
                self.metrics.webhook(DeliveryResult::Failed);
                let attempts = self.attempts.entry(id).or_default();
                *attempts += 1;
                let attempts = *attempts;
                if attempts >= self.config.max_attempts {
                    warn!(id, url = %record.url, %error, attempts, "giving up a webhook delivery");
                    self.metrics.webhook(DeliveryResult::Dropped);
                    self.attempts.remove(&id);
                    self.forget(id);
                    return;
                }
                let backoff = self
                    .config
                    .retry_base
                    .saturating_mul(1 << (attempts - 1).min(20))
                    .min(self.config.retry_max);
                debug!(id, url = %record.url, %error, ?backoff, "webhook delivery failed, retrying");
                self.due.insert((Instant::now() + backoff, id), record);
            }
        }
    }

    /// Queues a finished delivery's record for removal from the outbox.
    fn forget(&mut self, id: u64) {
        if id & (1 << 63) == 0 {
            self.finished_ids.push(id);
        }
    }
}

/// The delivery id receivers see.
fn delivery_id(id: u64) -> String {
    format!("{id:016x}")
}

/// The signature header's value for a body.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + digest.len() * 2);
    hex.push_str("sha256=");
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

async fn attempt(
    client: reqwest::Client,
    config: Arc<WebhookConfig>,
    id: u64,
    record: Record,
) -> Attempt {
    let mut body = record.body.clone();
    body["id"] = json!(delivery_id(id));
    let kind = body["type"].as_str().unwrap_or("unknown").to_owned();
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut request = client
        .post(&record.url)
        .header("content-type", "application/json")
        .header("x-tandem-event", kind)
        .header("x-tandem-delivery", delivery_id(id));
    if let Some(secret) = &config.secret {
        request = request.header("x-tandem-signature-256", signature(secret, &bytes));
    }
    let result = match request.body(bytes).send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("status {}", response.status())),
        Err(error) => Err(error.to_string()),
    };
    (id, record, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_hmac_test_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
