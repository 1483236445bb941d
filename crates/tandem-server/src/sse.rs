//! Server-Sent Events: `GET /docs/{doc}/events` follows one document, `GET /events?doc=a&doc=b`
//! several in one stream.
//!
//! Each followed document is a peer of it, like a WebSocket client that opted in to custom
//! events: the stream joins with [`Registry::join_as`](tandem_core::Registry::join_as), asks for
//! the events after its cursor (`{"since": n}`) and for what its state vector lacks (sync step
//! 1), and turns the frames the document sends it into events:
//!
//! - `update`: a Yjs v1 update, base64 (standard alphabet). The first is the catch-up (the whole
//!   document on a fresh stream), then every change as it is applied.
//! - `json` (with `?format=json`, instead of `update`): the whole document as JSON, at most
//!   once per [`ApiConfig::sse_json_interval`](crate::ApiConfig) while it changes.
//! - `presence`: who came, changed or left: `{"added": [{"clientId", "state"}], "updated":
//!   […], "removed": [clientId, …]}`. The first lists everyone present.
//! - `event`: a custom event, as WebSocket peers receive it: `{"seq", "type", "data", "from",
//!   "at"}`.
//! - `gap`: `{"from", "to"}`, the custom events a resumed stream missed that the document's
//!   history no longer has; sent before the replayed ones.
//! - a `ping` comment every [`ApiConfig::sse_ping_interval`](crate::ApiConfig).
//!
//! In a multiplexed stream the data of every event is a JSON object naming its document:
//! `{"doc": …, "update": …}`, `{"doc": …, "json": …}`, `{"doc": …, "added": …}`,
//! `{"doc": …, "seq": …}`, `{"doc": …, "from": …, "to": …}`.
//!
//! # Resuming
//!
//! Every event's `id` is the stream's cursor: for each document the state vector of what it
//! has sent so far (base64url), a `.`, and the sequence number of the last custom event it
//! sent (or that was the newest when the stream began); one per document joined by `~` in the
//! order of the `doc` parameters. A client reconnecting with `Last-Event-ID` (browsers'
//! `EventSource` does it by itself) gets one catch-up update with exactly the changes it lacks
//! (Yjs computes it from the state vector, so nothing is missed and no change is sent twice;
//! like every Yjs diff it carries the document's delete set, which applying again changes
//! nothing), then the custom events after its sequence number that the history still has
//! (a `gap` first if it no longer reaches back that far), then live changes and events. Updates
//! that arrive while the catch-up is being computed are part of it and are not sent again;
//! events that arrive while the history is replayed are sent once, in order. A client that has
//! its own Yjs state can pass `?sv=` (base64 state vector) instead on a single document stream;
//! its custom events start at the newest. Presence is not replayed: a resumed stream starts
//! with everyone present. A fresh stream does not replay past events either.
//!
//! A stream whose reader falls behind is ended (its document evicts the peer, or a write
//! stalls for a ping interval); the client reconnects and resumes without loss.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use tandem_core::lib0::Reader;
use tandem_core::protocol::{
    decode_awareness, decode_update, ClientEvent, ClientMessage, MSG_AWARENESS, MSG_EVENT, MSG_SYNC,
};
use tandem_core::{peer, DocHandle, DocName, Document, PeerId, PeerInfo, Rights};
use tokio::sync::{mpsc, Mutex};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};
use yrs::updates::encoder::Encode;
use yrs::StateVector;

use crate::api::{
    admit_document, authorize, checked_name, query_value, query_values, remote_addr, ApiError,
};
use crate::metrics::{Direction, MessageType};
use crate::peers::PeerKind;
use crate::rest::{parse_state_vector, respond};
use crate::Tandem;

/// Events queued for one stream's HTTP response before the document tasks wait.
const STREAM_QUEUE: usize = 64;

/// What a stream sends for document changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `update` events with binary Yjs updates.
    Binary,
    /// `json` events with the whole document.
    Json,
}

/// `GET /docs/{doc}/events`.
pub(crate) async fn doc_events(
    tandem: &Tandem,
    parts: &Parts,
    name: DocName,
) -> Result<Response, ApiError> {
    let given = query_value(parts.uri.query(), "sv")
        .map(|sv| parse_state_vector(&sv))
        .transpose()?;
    open(tandem, parts, vec![name], false, given).await
}

/// `GET /events?doc=a&doc=b`.
pub(crate) async fn events(State(tandem): State<Tandem>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let result = async {
        let raw = query_values(parts.uri.query(), "doc");
        if raw.is_empty() {
            return Err(ApiError::bad_request(
                "missing_document",
                "name the documents to follow with ?doc=",
            ));
        }
        let limit = tandem.inner.api.max_stream_docs;
        if raw.len() > limit {
            return Err(ApiError::bad_request(
                "too_many_documents",
                format!("a stream follows at most {limit} documents"),
            ));
        }
        let names = raw
            .into_iter()
            .map(|raw| checked_name(&tandem, raw))
            .collect::<Result<Vec<_>, _>>()?;
        open(&tandem, &parts, names, true, None).await
    }
    .await;
    respond(&tandem, result)
}

/// Where a stream is in one document: what it has of the document, and the custom event it
/// has, when it knows (a fresh stream starts at the newest).
#[derive(Debug, Clone, Default)]
struct Cursor {
    sv: StateVector,
    seq: Option<u64>,
}

/// The cursors a reconnecting client sent, if they are well formed and one per document. A
/// cursor without a sequence number (`?sv=`-style) resumes the document only.
fn resumed_cursors(parts: &Parts, docs: usize) -> Option<Vec<Cursor>> {
    let id = parts.headers.get("last-event-id")?.to_str().ok()?;
    let cursors: Vec<Cursor> = id
        .split('~')
        .map(|cursor| {
            let (sv, seq) = match cursor.split_once('.') {
                Some((sv, seq)) => (sv, Some(seq.parse::<u64>().ok()?)),
                None => (cursor, None),
            };
            let bytes = URL_SAFE_NO_PAD.decode(sv).ok()?;
            let sv = tandem_core::protocol::decode_state_vector(&bytes).ok()?;
            Some(Cursor { sv, seq })
        })
        .collect::<Option<_>>()?;
    (cursors.len() == docs).then_some(cursors)
}

/// The clock after the last block of each client in an update. (`Update::state_vector` counts
/// only clients whose blocks start at clock 0, which a live change rarely does.)
fn upper_bounds(update: &yrs::Update) -> StateVector {
    let mut sv = StateVector::default();
    for (client, ranges) in update.insertions(true).iter() {
        if let Some(end) = ranges.iter().map(|range| range.end).max() {
            sv.set_max(*client, end);
        }
    }
    sv
}

fn encode_cursor(sv: &StateVector, seq: u64) -> String {
    format!("{}.{seq}", URL_SAFE_NO_PAD.encode(sv.encode_v1()))
}

async fn open(
    tandem: &Tandem,
    parts: &Parts,
    names: Vec<DocName>,
    multiplexed: bool,
    given: Option<StateVector>,
) -> Result<Response, ApiError> {
    let format = match query_value(parts.uri.query(), "format").as_deref() {
        None | Some("binary") => Format::Binary,
        Some("json") => Format::Json,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_format",
                "format is binary or json",
            ))
        }
    };
    let mut grants = Vec::with_capacity(names.len());
    for name in &names {
        let grant = authorize(tandem, parts, name, Rights::READ).await?;
        // A stream joins its documents, which creates those that are new.
        admit_document(tandem, parts, name, &grant).await?;
        grants.push(grant);
    }
    let cursors = resumed_cursors(parts, names.len())
        .or_else(|| given.map(|sv| vec![Cursor { sv, seq: None }]))
        .unwrap_or_else(|| vec![Cursor::default(); names.len()]);
    let permit = tandem
        .inner
        .connections
        .admit(remote_addr(parts).map(|addr| addr.ip()))
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_connections",
                "too many connections",
            )
        })?;
    // Each document's first custom event is the one after the cursor's; a stream without one
    // starts at the newest event, taken before it joins so that none is lost in between.
    let mut starts = Vec::with_capacity(names.len());
    for (name, cursor) in names.iter().zip(cursors) {
        let document = tandem.document(name.clone()).await?;
        let seq = match cursor.seq {
            Some(seq) => seq,
            None => document.stats().await?.last_event,
        };
        starts.push((document, cursor.sv, seq));
    }
    let (events, received) = mpsc::channel(STREAM_QUEUE);
    let outlet = Arc::new(Mutex::new(Outlet {
        cursors: starts
            .iter()
            .map(|(_, sv, seq)| encode_cursor(sv, *seq))
            .collect(),
        events: events.clone(),
    }));
    let stop = CancellationToken::new();
    for (index, ((name, grant), (document, cursor, event_seq))) in
        names.into_iter().zip(grants).zip(starts).enumerate()
    {
        let peer = PeerId::next();
        let config = tandem.config();
        let (outbox, inbox) = peer::bounded_queue(config.peer_queue, config.peer_queue_bytes);
        let info = PeerInfo {
            subject: grant.subject.clone(),
            events: true,
            sync_on_request: false,
        };
        let handle = tandem.registry().join_as(&name, peer, outbox, info).await?;
        let registration =
            tandem.register_peer(&name, peer, grant.subject.clone(), PeerKind::EventStream);
        // Ask for the events after the cursor (the replay), then for what its state vector
        // lacks (sync step 2, the catch-up). The document answers in that order, so the
        // replay is complete when the catch-up arrives.
        let asks = vec![
            ClientMessage::Event(ClientEvent::Since(event_seq)),
            ClientMessage::SyncStep1(cursor.clone()),
        ];
        handle.send(peer, asks).await?;
        let expiry = grant.expires_at.map(|at| {
            Instant::now()
                + at.duration_since(std::time::SystemTime::now())
                    .unwrap_or(Duration::ZERO)
        });
        let feed = Feed {
            tandem: tandem.clone(),
            index,
            label: multiplexed.then(|| name.to_string()),
            format,
            handle,
            document,
            peer,
            inbox,
            cursor,
            event_seq,
            replayed: BTreeMap::new(),
            present: HashMap::new(),
            synced: false,
            json_due: None,
            last_json: None,
            outlet: outlet.clone(),
            probe: events.clone(),
        };
        let span = info_span!(parent: None, "sse", doc = %name, %peer);
        let stop = stop.clone();
        tokio::spawn(
            async move {
                feed.run(stop, expiry).await;
                drop(registration);
            }
            .instrument(span),
        );
    }
    drop(outlet);
    drop(events);
    let stream = futures_util::stream::unfold((received, permit), |(mut received, permit)| async {
        received
            .recv()
            .await
            .map(|event| (Ok::<Event, Infallible>(event), (received, permit)))
    });
    let keep_alive = KeepAlive::new()
        .interval(tandem.inner.api.sse_ping_interval)
        .text("ping");
    let mut response = Sse::new(stream).keep_alive(keep_alive).into_response();
    // Tells nginx-style proxies not to buffer the stream.
    response.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(response)
}

/// Where a stream's document tasks put their events: the cursors of every document, from
/// which each event's id is made, and the response's queue. Locked while an event is sent, so
/// ids grow in the order events are sent.
struct Outlet {
    cursors: Vec<String>,
    events: mpsc::Sender<Event>,
}

/// A custom event message from the document.
#[derive(Debug)]
enum Replayed {
    /// An event: `{"seq", "type", "data", "from", "at"}`.
    Event(u64, Value),
    /// Events no longer in the history.
    Gap { from: u64, to: u64 },
}

impl Replayed {
    /// Reads an event message; `None` for what a stream ignores (acks).
    fn parse(payload: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(payload).ok()?;
        if let Some(seq) = value.get("seq").and_then(Value::as_u64) {
            return Some(Self::Event(seq, value));
        }
        let gap = value.get("gap")?;
        Some(Self::Gap {
            from: gap.get("from")?.as_u64()?,
            to: gap.get("to")?.as_u64()?,
        })
    }

    /// Where it sorts among the others of one replay.
    fn key(&self) -> u64 {
        match self {
            Self::Event(seq, _) => *seq,
            Self::Gap { from, .. } => *from,
        }
    }
}

/// One document of one stream.
struct Feed {
    tandem: Tandem,
    /// The document's position among the stream's documents.
    index: usize,
    /// The document's name in event data, in multiplexed streams.
    label: Option<String>,
    format: Format,
    handle: DocHandle,
    document: Document,
    peer: PeerId,
    inbox: peer::PeerInbox,
    /// The state vector of what the stream has sent of this document.
    cursor: StateVector,
    /// The sequence number of the last custom event sent (or skipped, for a gap).
    event_seq: u64,
    /// Custom events and gaps that arrived before the catch-up, by sequence number: the
    /// replay, and live events that may also be in it.
    replayed: BTreeMap<u64, Replayed>,
    /// Who the stream has announced as present, with their state.
    present: HashMap<u64, Value>,
    /// Whether the catch-up (sync step 2) arrived; updates before it are part of it.
    synced: bool,
    /// When the next JSON event is due, if the document changed since the last.
    json_due: Option<Instant>,
    last_json: Option<Instant>,
    outlet: Arc<Mutex<Outlet>>,
    /// Tells when the response is gone.
    probe: mpsc::Sender<Event>,
}

impl Feed {
    async fn run(mut self, stop: CancellationToken, expiry: Option<Instant>) {
        let eviction = self.inbox.eviction();
        let closing = self.tandem.inner.closing.clone();
        let probe = self.probe.clone();
        loop {
            let json_due = self.json_due;
            let ok = tokio::select! {
                _ = stop.cancelled() => false,
                _ = closing.cancelled() => false,
                _ = probe.closed() => false,
                reason = eviction.evicted() => {
                    debug!(?reason, "stream evicted");
                    false
                }
                _ = sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => false,
                _ = sleep_until(json_due.unwrap_or_else(Instant::now)), if json_due.is_some() => {
                    self.json_due = None;
                    self.send_json().await
                }
                frame = self.inbox.recv() => match frame {
                    None => false,
                    Some(frame) => self.on_frame(&frame).await,
                },
            };
            if !ok {
                break;
            }
        }
        // One document ending ends the stream: the client reconnects and resumes all of them.
        stop.cancel();
        self.handle.leave(self.peer).await;
    }

    /// Handles a frame from the document; false ends the stream.
    async fn on_frame(&mut self, frame: &[u8]) -> bool {
        let mut reader = Reader::new(frame);
        let parsed = (|| {
            let kind = reader.var_u64()?;
            let sub = if kind == MSG_SYNC {
                reader.var_u64()?
            } else {
                0
            };
            let payload = reader.var_bytes()?;
            Ok::<_, tandem_core::lib0::DecodeError>((kind, sub, payload))
        })();
        let Ok((kind, sub, payload)) = parsed else {
            return true;
        };
        match (kind, sub) {
            // Sync step 2: the catch-up, then the replayed events.
            (MSG_SYNC, 1) => {
                self.synced = true;
                let sent = match self.format {
                    Format::Binary => self.send_update(payload).await,
                    Format::Json => self.send_json().await,
                };
                if !sent {
                    return false;
                }
                for (_, replayed) in std::mem::take(&mut self.replayed) {
                    if !self.send_replayed(replayed).await {
                        return false;
                    }
                }
                true
            }
            (MSG_SYNC, 2) if self.synced => match self.format {
                Format::Binary => self.send_update(payload).await,
                Format::Json => {
                    if self.json_due.is_none() {
                        let interval = self.tandem.inner.api.sse_json_interval;
                        let earliest = self.last_json.map_or_else(Instant::now, |at| at + interval);
                        self.json_due = Some(earliest.max(Instant::now()));
                    }
                    true
                }
            },
            (MSG_AWARENESS, _) => self.send_presence(payload).await,
            (MSG_EVENT, _) => match Replayed::parse(payload) {
                None => true,
                // A live event that arrives before the replay is complete may be in it too:
                // keyed by sequence number, it is sent once.
                Some(replayed) if !self.synced => {
                    self.replayed.insert(replayed.key(), replayed);
                    true
                }
                Some(replayed) => self.send_replayed(replayed).await,
            },
            _ => true,
        }
    }

    async fn send_replayed(&mut self, replayed: Replayed) -> bool {
        let (kind, mut data) = match replayed {
            Replayed::Event(seq, value) => {
                self.event_seq = seq;
                ("event", value)
            }
            Replayed::Gap { from, to } => {
                self.event_seq = to;
                ("gap", json!({ "from": from, "to": to }))
            }
        };
        if let (Some(doc), Value::Object(fields)) = (&self.label, &mut data) {
            fields.insert("doc".to_owned(), json!(doc));
        }
        self.emit(kind, None, data.to_string()).await
    }

    async fn send_update(&mut self, payload: &[u8]) -> bool {
        let Ok(update) = decode_update(payload) else {
            warn!("the document sent an update that does not decode");
            return true;
        };
        if update.is_empty() {
            return true;
        }
        self.cursor.merge(upper_bounds(&update));
        let encoded = STANDARD.encode(payload);
        let data = match &self.label {
            Some(doc) => json!({ "doc": doc, "update": encoded }).to_string(),
            None => encoded,
        };
        self.emit("update", Some(MessageType::SseUpdate), data)
            .await
    }

    async fn send_json(&mut self) -> bool {
        self.last_json = Some(Instant::now());
        let (document, sv) = match self.document.get_json_with_state_vector().await {
            Ok(read) => read,
            Err(error) => {
                debug!(%error, "could not read the document");
                return false;
            }
        };
        self.cursor.merge(sv);
        let data = match &self.label {
            Some(doc) => json!({ "doc": doc, "json": document }),
            None => document,
        };
        self.emit("json", Some(MessageType::SseJson), data.to_string())
            .await
    }

    async fn send_presence(&mut self, payload: &[u8]) -> bool {
        let Ok(update) = decode_awareness(payload) else {
            return true;
        };
        let (mut added, mut updated, mut removed) = (Vec::new(), Vec::new(), Vec::new());
        for entry in update.entries {
            match entry.state {
                None => {
                    if self.present.remove(&entry.client).is_some() {
                        removed.push(entry.client);
                    }
                }
                Some(state) => {
                    let state: Value = serde_json::from_str(&state).unwrap_or(Value::Null);
                    let change = json!({ "clientId": entry.client, "state": state });
                    match self.present.insert(entry.client, state.clone()) {
                        None => added.push(change),
                        Some(previous) if previous != state => updated.push(change),
                        Some(_) => {}
                    }
                }
            }
        }
        if added.is_empty() && updated.is_empty() && removed.is_empty() {
            return true;
        }
        let mut data = json!({ "added": added, "updated": updated, "removed": removed });
        if let Some(doc) = &self.label {
            data["doc"] = json!(doc);
        }
        self.emit("presence", Some(MessageType::SsePresence), data.to_string())
            .await
    }

    /// Sends an event with the stream's cursor as id; false when the stream is gone or its
    /// reader stalled for a ping interval. (`metrics` has no type for custom events yet.)
    async fn emit(
        &mut self,
        kind: &'static str,
        metric: Option<MessageType>,
        data: String,
    ) -> bool {
        if let Some(metric) = metric {
            self.tandem
                .inner
                .metrics
                .message(Direction::Out, metric, data.len());
        }
        let mut outlet = self.outlet.lock().await;
        outlet.cursors[self.index] = encode_cursor(&self.cursor, self.event_seq);
        let id = outlet.cursors.join("~");
        let event = Event::default().event(kind).id(id).data(data);
        let limit = self.tandem.config().ping_interval;
        match timeout(limit, outlet.events.send(event)).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                debug!("stream reader stalled, ending the stream");
                false
            }
        }
    }
}
