//! What operators see: `GET /metrics` (Prometheus text), `GET /status` (JSON) and
//! `GET /readyz`.
//!
//! Counters are plain atomics updated where the work happens (the WebSocket task counts the
//! frames it reads and writes, the HTTP handlers what they receive and stream, the webhook
//! sender its deliveries); latency histograms come from `tandem_core::metrics`, measured in the
//! document actor and the store. Rendering reads them all without stopping anyone.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tandem_core::metrics::{HistogramSnapshot, STORE_FLUSH, UPDATE_APPLY};

use crate::api::{with_name, ApiError};
use crate::peers::PeerKind;
use crate::Tandem;

/// Kinds of messages counted, by the label they carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageType {
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    Awareness,
    Auth,
    QueryAwareness,
    /// A frame that does not start like any y-protocols message.
    Unknown,
    /// A document update posted over HTTP.
    HttpUpdate,
    /// Presence posted over HTTP.
    HttpPresence,
    /// Event stream events, by type.
    SseUpdate,
    SsePresence,
    SseJson,
}

const MESSAGE_TYPES: [MessageType; 12] = [
    MessageType::SyncStep1,
    MessageType::SyncStep2,
    MessageType::SyncUpdate,
    MessageType::Awareness,
    MessageType::Auth,
    MessageType::QueryAwareness,
    MessageType::Unknown,
    MessageType::HttpUpdate,
    MessageType::HttpPresence,
    MessageType::SseUpdate,
    MessageType::SsePresence,
    MessageType::SseJson,
];

impl MessageType {
    fn label(self) -> &'static str {
        match self {
            MessageType::SyncStep1 => "sync_step1",
            MessageType::SyncStep2 => "sync_step2",
            MessageType::SyncUpdate => "sync_update",
            MessageType::Awareness => "awareness",
            MessageType::Auth => "auth",
            MessageType::QueryAwareness => "query_awareness",
            MessageType::Unknown => "unknown",
            MessageType::HttpUpdate => "http_update",
            MessageType::HttpPresence => "http_presence",
            MessageType::SseUpdate => "sse_update",
            MessageType::SsePresence => "sse_presence",
            MessageType::SseJson => "sse_json",
        }
    }

    /// The type of a y-protocols frame, by its first message.
    pub(crate) fn of_frame(frame: &[u8]) -> Self {
        match frame {
            [0, 0, ..] => MessageType::SyncStep1,
            [0, 1, ..] => MessageType::SyncStep2,
            [0, 2, ..] => MessageType::SyncUpdate,
            [1, ..] => MessageType::Awareness,
            [2, ..] => MessageType::Auth,
            [3, ..] => MessageType::QueryAwareness,
            _ => MessageType::Unknown,
        }
    }
}

/// Whether a message came in or went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    In,
    Out,
}

/// What webhook deliveries came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryResult {
    /// The receiver answered 2xx.
    Delivered,
    /// An attempt failed; it is retried later.
    Failed,
    /// Every attempt failed; the delivery was given up.
    Dropped,
}

/// The server's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    messages: [[AtomicU64; MESSAGE_TYPES.len()]; 2],
    bytes: [[AtomicU64; MESSAGE_TYPES.len()]; 2],
    /// HTTP API refusals by error code.
    refusals: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    webhooks: [AtomicU64; 3],
}

impl Metrics {
    /// Counts one message of `bytes` bytes.
    pub(crate) fn message(&self, direction: Direction, kind: MessageType, bytes: usize) {
        let row = direction as usize;
        let column = MESSAGE_TYPES
            .iter()
            .position(|&known| known == kind)
            .unwrap_or(MESSAGE_TYPES.len() - 1);
        self.messages[row][column].fetch_add(1, Ordering::Relaxed);
        self.bytes[row][column].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts an HTTP API request refused with an error code.
    pub(crate) fn refused(&self, code: &'static str) {
        let mut refusals = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *refusals.entry(code).or_default() += 1;
    }

    /// Counts a webhook delivery attempt's outcome.
    pub(crate) fn webhook(&self, result: DeliveryResult) {
        self.webhooks[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The number of webhook attempts with this outcome so far.
    pub(crate) fn webhooks(&self, result: DeliveryResult) -> u64 {
        self.webhooks[result as usize].load(Ordering::Relaxed)
    }
}

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
pub(crate) async fn metrics(State(tandem): State<Tandem>) -> Response {
    let text = render(&tandem);
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

fn render(tandem: &Tandem) -> String {
    let inner = &tandem.inner;
    let metrics = &inner.metrics;
    let counters = tandem.counters();
    let mut out = String::with_capacity(8 * 1024);
    gauge(
        &mut out,
        "tandem_connections",
        "Open WebSocket connections and event streams",
        counters.open_connections,
    );
    let _ = writeln!(
        out,
        "# HELP tandem_peers Peers joined to documents, by transport\n# TYPE tandem_peers gauge"
    );
    for kind in [
        PeerKind::WebSocket,
        PeerKind::EventStream,
        PeerKind::HttpPresence,
    ] {
        let _ = writeln!(
            out,
            "tandem_peers{{transport=\"{}\"}} {}",
            kind.as_str(),
            inner.peers.count(kind)
        );
    }
    gauge(
        &mut out,
        "tandem_documents_loaded",
        "Documents loaded in memory",
        inner.registry.loaded() as u64,
    );
    for (name, help, table) in [
        (
            "tandem_messages_total",
            "Messages received and sent, by direction and type",
            &metrics.messages,
        ),
        (
            "tandem_message_bytes_total",
            "Bytes of messages received and sent, by direction and type",
            &metrics.bytes,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (row, direction) in ["in", "out"].iter().enumerate() {
            for (column, kind) in MESSAGE_TYPES.iter().enumerate() {
                let value = table[row][column].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{name}{{direction=\"{direction}\",type=\"{}\"}} {value}",
                    kind.label()
                );
            }
        }
    }
    histogram(
        &mut out,
        "tandem_update_apply_seconds",
        "Time to apply one update in its document",
        &UPDATE_APPLY.snapshot(),
    );
    histogram(
        &mut out,
        "tandem_store_flush_seconds",
        "Time of one store flush to disk",
        &STORE_FLUSH.snapshot(),
    );
    let _ = writeln!(
        out,
        "# HELP tandem_refusals_total Requests, connections and messages refused, by reason\n\
         # TYPE tandem_refusals_total counter"
    );
    let mut refusals: Vec<(&str, u64)> = vec![
        ("read_only_update", counters.denied_updates),
        ("rate_limited", counters.rate_limited),
        ("connection_cap", counters.refused_connections),
    ];
    refusals.extend(
        metrics
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(code, count)| (*code, *count)),
    );
    for (reason, count) in refusals {
        let _ = writeln!(out, "tandem_refusals_total{{reason=\"{reason}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "# HELP tandem_webhook_deliveries_total Webhook delivery attempts, by result\n\
         # TYPE tandem_webhook_deliveries_total counter"
    );
    for (result, label) in [
        (DeliveryResult::Delivered, "delivered"),
        (DeliveryResult::Failed, "failed"),
        (DeliveryResult::Dropped, "dropped"),
    ] {
        let _ = writeln!(
            out,
            "tandem_webhook_deliveries_total{{result=\"{label}\"}} {}",
            metrics.webhooks(result)
        );
    }
    out
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn histogram(out: &mut String, name: &str, help: &str, snapshot: &HistogramSnapshot) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (bound, count) in &snapshot.cumulative {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
        snapshot.count, snapshot.sum, snapshot.count
    );
}

/// `GET /status`: what the server is doing, as JSON.
pub(crate) async fn status(State(tandem): State<Tandem>) -> Result<Response, ApiError> {
    let inner = &tandem.inner;
    let store_bytes = inner
        .store
        .size_on_disk()
        .await
        .map_err(|error| ApiError::store(&error))?;
    let documents: Vec<_> = inner
        .peers
        .busiest(inner.api.status_top)
        .into_iter()
        .map(|(doc, peers)| with_name(json!({ "peers": peers }), "name", &doc))
        .collect();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": inner.started.elapsed().as_secs_f64(),
        "connections": tandem.counters().open_connections,
        "peers": {
            "websocket": inner.peers.count(PeerKind::WebSocket),
            "sse": inner.peers.count(PeerKind::EventStream),
            "http": inner.peers.count(PeerKind::HttpPresence),
        },
        "loadedDocuments": inner.registry.loaded(),
        "documents": documents,
        "storeBytes": store_bytes,
        "shuttingDown": inner.closing.is_cancelled(),
    }))
    .into_response())
}

/// `GET /readyz`: 200 while the store answers and the server accepts work, 503 once it is
/// shutting down or the store fails.
pub(crate) async fn readyz(State(tandem): State<Tandem>) -> Result<Response, ApiError> {
    if tandem.inner.closing.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        ));
    }
    tandem.inner.store.size_on_disk().await.map_err(|error| {
        let mut error = ApiError::store(&error);
        error.status = StatusCode::SERVICE_UNAVAILABLE;
        error
    })?;
    Ok(Json(json!({ "status": "ready" })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_classified_by_their_first_message() {
        assert_eq!(MessageType::of_frame(&[0, 0, 1, 0]), MessageType::SyncStep1);
        assert_eq!(MessageType::of_frame(&[0, 2, 0]), MessageType::SyncUpdate);
        assert_eq!(MessageType::of_frame(&[1, 0]), MessageType::Awareness);
        assert_eq!(MessageType::of_frame(&[9]), MessageType::Unknown);
        assert_eq!(MessageType::of_frame(&[]), MessageType::Unknown);
    }

    #[test]
    fn messages_are_counted_by_direction_and_type() {
        let metrics = Metrics::default();
        metrics.message(Direction::In, MessageType::SyncUpdate, 10);
        metrics.message(Direction::In, MessageType::SyncUpdate, 5);
        metrics.message(Direction::Out, MessageType::SseJson, 7);
        let update = MESSAGE_TYPES
            .iter()
            .position(|&t| t == MessageType::SyncUpdate)
            .expect("known");
        assert_eq!(metrics.messages[0][update].load(Ordering::Relaxed), 2);
        assert_eq!(metrics.bytes[0][update].load(Ordering::Relaxed), 15);
        assert_eq!(metrics.messages[1][update].load(Ordering::Relaxed), 0);
    }
}
