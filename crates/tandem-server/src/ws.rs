//! One task per y-websocket connection.
//!
//! Before the upgrade the request is checked, cheapest first: the document name (400, 414), the
//! browser origin (403), the connection caps (503), the credentials (401, 403). After it, the
//! task rate-limits, decodes and validates every frame before the document sees it, enforces the
//! peer's rights, writes the frames the document queued for it, pings, and closes with a code
//! that says why:
//!
//! | code | when |
//! | --- | --- |
//! | 1001 | the server is shutting down, or the peer stopped answering pings |
//! | 1002 | a frame does not decode (nothing in it was applied) |
//! | 1003 | a text frame (the protocol is binary) |
//! | 1008 | the peer sent faster than its rate limit (every message of a frame counts, and every ping and pong), an update nesting shared types deeper than the limit (refused), presence for more client ids than allowed or past the document's presence bytes, an awareness state or custom event over the size limit, or events faster than their rate limit |
//! | 1009 | a frame larger than the limit |
//! | 1011 | the document failed (its store did) |
//! | 1013 | the peer reads too slowly: its queue filled up (frames or bytes), or its socket's write buffer did |
//! | 4401 | the peer's token expired |
//! | 4413 | the peer's update would have made the document larger than its limit (refused) |
//! | 4404 | the document was deleted |
//!
//! A peer without the `write` right receives everything, but each document change it sends is
//! dropped, counted and answered with a y-protocols "permission denied" message; one without
//! `presence` is invisible: its awareness updates go back to it alone. Custom events need
//! `events`; a peer receives them only when it connected with `?events=1`.
//!
//! What a connection may have waiting to be written is bounded in bytes twice: its peer queue
//! (`peer_queue` frames, `peer_queue_bytes` bytes) and its socket's write buffer
//! ([`max_write_buffer`]), which also holds the pongs tungstenite answers pings with by itself.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::ORIGIN;
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::SinkExt;
use percent_encoding::percent_decode_str;
use tandem_core::awareness::PresenceLimit;
use tandem_core::protocol::{self, decode_frame_at_most, ClientEvent, ClientMessage};
use tandem_core::{
    peer, DocError, DocHandle, DocName, Eviction, EvictionSignal, Grant, PeerId, PeerInbox,
    PeerInfo, Rights,
};
use tokio::time::{interval_at, sleep_until, timeout, Instant, MissedTickBehavior};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::Config;
use crate::creation::Creator;
use crate::hooks::{ConnectionInfo, HookEvent};
use crate::limits::{ConnectionPermit, ConnectionRate, CountRate, Refusal};
use crate::metrics::{Direction, MessageType};
use crate::peers::PeerKind;
use crate::{auth, Tandem};

/// Close code: going away (shutdown, unanswered pings).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: protocol error (a frame that does not decode).
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code: unsupported data (text frames).
pub const CLOSE_UNSUPPORTED: u16 = 1003;
/// Close code: message too big.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code: internal error.
pub const CLOSE_INTERNAL: u16 = 1011;
/// Close code: try again later (peer too slow).
pub const CLOSE_TRY_AGAIN: u16 = 1013;
/// Close code: policy violation (rate limit, awareness state too large).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code: the token expired while connected; reconnect with a fresh one.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4401;
/// Close code: an update would have made the document larger than its limit.
pub const CLOSE_DOCUMENT_TOO_LARGE: u16 = 4413;
/// Close code: the document was deleted (`DELETE /docs/{doc}`); reconnecting starts it anew.
pub const CLOSE_DOCUMENT_DELETED: u16 = 4404;

/// Why a peer without the `write` right is told its change was dropped.
const READ_ONLY: &str = "read-only: document changes are not accepted from this connection";

/// Why a peer without the `events` right is told its event was dropped.
const NO_EVENTS: &str = "custom events are not allowed on this connection";

/// Frames written to a socket with one flush, at most.
const WRITE_BATCH: usize = 64;

/// Bytes a socket reads at a time. tungstenite zero-fills this much of its read buffer before
/// each read, so its default (128 KiB) costs every idle connection 128 KiB of resident memory;
/// 8 KiB holds hundreds of keystroke frames, and a larger frame grows the buffer as it arrives.
pub(crate) const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Bytes a socket collects before it writes them out (tungstenite's default, named because
/// [`max_write_buffer`] is computed from it).
pub(crate) const WRITE_BUFFER_BYTES: usize = 128 * 1024;

/// Room for what surrounds the largest payload in a frame the server sends: the WebSocket
/// header, y-protocols message types and lengths, a Hocuspocus address's length.
const FRAME_OVERHEAD: usize = 64 * 1024;

/// The most a socket may hold written but not yet sent. A peer that stops reading (say, while
/// it floods pings: tungstenite queues the pong to each by itself) can make the server keep this
/// much and no more; a write past it fails and the connection closes with 1013, and tungstenite
/// stops queueing pongs. It must hold the buffer plus the largest frame the server sends, or that
/// frame could never be written: a sync step 2 of a document at its size limit (a document's
/// encoding is no larger than its stored size, which the limit bounds), or a frame as large as
/// a client may send (an awareness state or event relayed).
pub(crate) fn max_write_buffer(config: &Config) -> usize {
    let document = usize::try_from(config.doc.max_doc_bytes).unwrap_or(usize::MAX);
    WRITE_BUFFER_BYTES
        .saturating_add(document.max(config.max_frame_bytes))
        .saturating_add(config.max_doc_name_bytes)
        .saturating_add(FRAME_OVERHEAD)
}

/// How long a close frame may take to go out before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// `GET /ws/{doc}`: upgrades to a y-websocket connection on the document named by the rest of
/// the path, once the request passed every check.
pub(crate) async fn upgrade(State(tandem): State<Tandem>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let config = tandem.config();
    let Some(name) = doc_name(&parts.uri) else {
        return (StatusCode::BAD_REQUEST, "missing document name").into_response();
    };
    if name.len() > config.max_doc_name_bytes {
        return (
            StatusCode::URI_TOO_LONG,
            format!(
                "document name longer than {} bytes",
                config.max_doc_name_bytes
            ),
        )
            .into_response();
    }
    let (remote, permit) = match admit(&tandem, &parts) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let credentials = auth::credentials(&parts, remote, config.token_cookie.as_deref());
    let grant = match tandem.inner.authorizer.authorize(&credentials, &name).await {
        Ok(grant) => grant,
        Err(error) => {
            info!(doc = %name, ?remote, %error, "refusing connection");
            return auth::refusal(&error);
        }
    };
    let creator = Creator::of(grant.subject.as_deref(), remote.map(|addr| addr.ip()));
    if let Err(refusal) = tandem.admit_document(&name, &creator).await {
        return refusal.into_response();
    }
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &tandem).await {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let events = wants_events(parts.uri.query());
    let info = ConnectionInfo {
        doc: name,
        peer: PeerId::next(),
        subject: grant.subject.clone(),
        rights: grant.rights,
        remote_addr: remote,
    };
    if let Some((hooks, _)) = &tandem.inner.hooks {
        if let Err(veto) = hooks.on_connect(&info).await {
            info!(doc = %info.doc, ?remote, reason = %veto.reason, "connection vetoed by a hook");
            return (StatusCode::FORBIDDEN, veto.reason).into_response();
        }
    }
    let limit = config.max_frame_bytes;
    let tracker = tandem.inner.tasks.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(max_write_buffer(config))
        .on_upgrade(move |socket| {
            let span = info_span!(
                "conn",
                doc = %info.doc,
                peer = %info.peer,
                sub = info.subject.as_deref()
            );
            tracker.track_future(
                connection(tandem, socket, info, grant, events, permit).instrument(span),
            )
        })
}

/// The checks every WebSocket upgrade passes first, cheapest first: the browser origin (403) and
/// the connection caps (503). Returns the peer's address and its place among the connections.
pub(crate) fn admit(
    tandem: &Tandem,
    parts: &Parts,
) -> Result<(Option<SocketAddr>, ConnectionPermit), NotAdmitted> {
    if !origin_allowed(parts, &tandem.config().allowed_origins) {
        return Err(NotAdmitted(StatusCode::FORBIDDEN, "origin not allowed"));
    }
    let remote = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    match tandem.inner.connections.admit(remote.map(|addr| addr.ip())) {
        Ok(permit) => Ok((remote, permit)),
        Err(refusal) => {
            tandem
                .inner
                .stats
                .refused_connections
                .fetch_add(1, Ordering::Relaxed);
            let reason = match refusal {
                Refusal::Total => "too many connections",
                Refusal::PerIp => "too many connections from this address",
            };
            warn!(?remote, reason, "refusing connection");
            Err(NotAdmitted(StatusCode::SERVICE_UNAVAILABLE, reason))
        }
    }
}

/// Why [`admit`] refused an upgrade: the status and the reason for the client.
pub(crate) struct NotAdmitted(StatusCode, &'static str);

impl IntoResponse for NotAdmitted {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// Whether the connection opted in to custom events: `?events=1` (or `true`).
fn wants_events(query: Option<&str>) -> bool {
    query.is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair == "events=1" || pair == "events=true")
    })
}

/// Browsers name the page's origin; a request without one is not from a browser page.
fn origin_allowed(parts: &Parts, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match parts.headers.get(ORIGIN) {
        None => true,
        Some(origin) => allowed
            .iter()
            .any(|allowed| allowed.as_bytes() == origin.as_bytes()),
    }
}

/// The document name: the path after `/ws/`, percent-decoded to exact bytes.
fn doc_name(uri: &Uri) -> Option<DocName> {
    let raw = uri.path().strip_prefix("/ws/")?;
    if raw.is_empty() {
        return None;
    }
    Some(DocName::from(percent_decode_str(raw).collect::<Vec<u8>>()))
}

async fn connection(
    tandem: Tandem,
    mut socket: WebSocket,
    info: ConnectionInfo,
    grant: Grant,
    events: bool,
    _permit: ConnectionPermit,
) {
    let peer = info.peer;
    let config = tandem.config();
    let (outbox, inbox) = peer::bounded_queue(config.peer_queue, config.peer_queue_bytes);
    let peer_info = PeerInfo {
        subject: info.subject.clone(),
        events,
        sync_on_request: false,
    };
    let handle = match tandem
        .registry()
        .join_as(&info.doc, peer, outbox, peer_info)
        .await
    {
        Ok(handle) => handle,
        Err(error) => {
            warn!(%error, "could not open document");
            let code = match error {
                DocError::ShuttingDown => CLOSE_GOING_AWAY,
                _ => CLOSE_INTERNAL,
            };
            close(&mut socket, code, "document unavailable").await;
            disconnected(&tandem, info);
            return;
        }
    };
    debug!(rights = ?grant.rights, "connected");
    let _registration =
        tandem.register_peer(&info.doc, peer, info.subject.clone(), PeerKind::WebSocket);
    let eviction = inbox.eviction();
    let mut connection = Connection {
        tandem: &tandem,
        socket: &mut socket,
        handle: &handle,
        peer,
        rights: grant.rights,
        inbox,
        eviction,
        rate: ConnectionRate::new(&tandem.config().rate_limit),
        event_rate: CountRate::new(tandem.config().events_per_sec, tandem.config().event_burst),
        expiry: grant.expires_at.map(|at| {
            Instant::now()
                + at.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
        }),
        denied: 0,
    };
    let ending = connection.run().await;
    let denied = connection.denied;
    handle.leave(peer).await;
    match ending {
        Ending::Close(code, reason) => {
            debug!(code, reason, denied, "closing connection");
            close(&mut socket, code, reason).await;
        }
        Ending::ClosedByPeer => {
            // The WebSocket layer queued the reply to the peer's close frame; send it.
            let _ = timeout(CLOSE_TIMEOUT, socket.flush()).await;
            debug!(denied, "connection closed by peer");
        }
        Ending::Gone => debug!(denied, "connection lost"),
    }
    disconnected(&tandem, info);
}

fn disconnected(tandem: &Tandem, info: ConnectionInfo) {
    if let Some((_, queue)) = &tandem.inner.hooks {
        queue.send(HookEvent::Disconnected(info));
    }
}

pub(crate) async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let closing = async {
        socket.send(Message::Close(Some(frame))).await?;
        // Read until the peer answers the close (or goes away): dropping a socket with unread
        // data makes the kernel reset the connection, and the close frame is lost with it.
        while let Some(message) = socket.recv().await {
            if matches!(message?, Message::Close(_)) {
                break;
            }
        }
        Ok::<(), axum::Error>(())
    };
    let _ = timeout(CLOSE_TIMEOUT, closing).await;
}

/// How a connection ended.
pub(crate) enum Ending {
    /// The server closes it with this code and reason.
    Close(u16, &'static str),
    /// The peer sent a close frame; only the reply is left to send.
    ClosedByPeer,
    /// The socket failed or ended; nothing more to send.
    Gone,
}

struct Connection<'a> {
    tandem: &'a Tandem,
    socket: &'a mut WebSocket,
    handle: &'a DocHandle,
    peer: PeerId,
    rights: Rights,
    inbox: PeerInbox,
    eviction: EvictionSignal,
    rate: ConnectionRate,
    event_rate: CountRate,
    /// When the peer's grant ends.
    expiry: Option<Instant>,
    /// Document changes dropped because the peer may not write.
    denied: u64,
}

impl Connection<'_> {
    async fn run(&mut self) -> Ending {
        let expiry = self.expiry;
        let ping_interval = self.tandem.config().ping_interval;
        let mut ping = interval_at(Instant::now() + ping_interval, ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut awaiting_pong = false;
        let closing = self.tandem.inner.closing.clone();
        loop {
            tokio::select! {
                biased;
                _ = closing.cancelled() => return Ending::Close(CLOSE_GOING_AWAY, "server shutting down"),
                reason = self.eviction.evicted() => return eviction(reason),
                _ = sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => {
                    return Ending::Close(CLOSE_TOKEN_EXPIRED, "token expired");
                }
                frame = self.inbox.recv() => {
                    let Some(frame) = frame else {
                        return Ending::Close(CLOSE_INTERNAL, "document closed");
                    };
                    if let Some(ending) = self.write_queued(frame, ping_interval).await {
                        return ending;
                    }
                }
                message = self.socket.recv() => {
                    if let Some(ending) = self.on_message(message).await {
                        return ending;
                    }
                    if awaiting_pong {
                        // Any traffic proves the peer alive, as a pong would.
                        awaiting_pong = false;
                    }
                }
                _ = ping.tick() => {
                    if awaiting_pong {
                        return Ending::Close(CLOSE_GOING_AWAY, "ping timeout");
                    }
                    awaiting_pong = true;
                    if let Some(ending) = self.write(Message::Ping(Default::default()), ping_interval).await {
                        return ending;
                    }
                }
            }
        }
    }

    /// Writes one message, giving up if the peer is evicted meanwhile or the write takes longer
    /// than a ping interval (the peer stopped reading).
    /// Writes `first` and whatever else is already queued for the peer (up to
    /// [`WRITE_BATCH`] frames) with one flush: a busy document's peer keeps up with one system
    /// call per batch instead of one per frame.
    async fn write_queued(&mut self, first: Bytes, limit: Duration) -> Option<Ending> {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        batch.push(first);
        while batch.len() < WRITE_BATCH {
            match self.inbox.try_recv() {
                Some(frame) => batch.push(frame),
                None => break,
            }
        }
        let metrics = &self.tandem.inner.metrics;
        for frame in &batch {
            metrics.message(Direction::Out, MessageType::of_frame(frame), frame.len());
        }
        let socket = &mut *self.socket;
        let send_all = async move {
            for frame in batch {
                socket.feed(Message::Binary(frame)).await?;
            }
            socket.flush().await
        };
        tokio::select! {
            result = timeout(limit, send_all) => match result {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(write_error(error)),
                Err(_) => Some(Ending::Close(CLOSE_TRY_AGAIN, "write timeout")),
            },
            reason = self.eviction.evicted() => Some(eviction(reason)),
        }
    }

    async fn write(&mut self, message: Message, limit: Duration) -> Option<Ending> {
        tokio::select! {
            result = timeout(limit, self.socket.send(message)) => match result {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(write_error(error)),
                Err(_) => Some(Ending::Close(CLOSE_TRY_AGAIN, "write timeout")),
            },
            reason = self.eviction.evicted() => Some(eviction(reason)),
        }
    }

    async fn on_message(
        &mut self,
        message: Option<Result<Message, axum::Error>>,
    ) -> Option<Ending> {
        let message = match message {
            None => return Some(Ending::Gone),
            Some(Err(error)) => return Some(read_error(error)),
            Some(Ok(message)) => message,
        };
        match message {
            Message::Binary(frame) => {
                self.tandem.inner.metrics.message(
                    Direction::In,
                    MessageType::of_frame(&frame),
                    frame.len(),
                );
                // The timer may not have fired yet for a frame read right at expiry.
                if self.expiry.is_some_and(|at| Instant::now() >= at) {
                    return Some(Ending::Close(CLOSE_TOKEN_EXPIRED, "token expired"));
                }
                if !self.rate.admit(frame.len()) {
                    return Some(rate_exceeded(self.tandem));
                }
                // Every message counts, not only the frame: one frame of a thousand sync step
                // 1s is a thousand requests. Decoding stops at the first message past what the
                // bucket holds.
                let left = self.rate.messages_left();
                match decode_frame_at_most(&frame, left.saturating_add(1)) {
                    Ok(Some(messages)) => {
                        if !self.rate.admit_more(messages.len().saturating_sub(1)) {
                            return Some(rate_exceeded(self.tandem));
                        }
                        self.deliver(messages).await
                    }
                    Ok(None) => Some(rate_exceeded(self.tandem)),
                    Err(error) => {
                        warn!(%error, bytes = frame.len(), "refusing frame");
                        Some(Ending::Close(CLOSE_PROTOCOL_ERROR, "malformed message"))
                    }
                }
            }
            Message::Text(_) => Some(Ending::Close(CLOSE_UNSUPPORTED, "binary frames only")),
            Message::Close(_) => Some(Ending::ClosedByPeer),
            // tungstenite has queued the pong already; the rate bounds how many.
            Message::Ping(payload) | Message::Pong(payload) => {
                (!self.rate.admit(payload.len())).then(|| rate_exceeded(self.tandem))
            }
        }
    }
}

/// Counts and logs a connection over its rate limit; the ending that closes it (1008).
pub(crate) fn rate_exceeded(tandem: &Tandem) -> Ending {
    tandem
        .inner
        .stats
        .rate_limited
        .fetch_add(1, Ordering::Relaxed);
    warn!("closing connection: rate limit exceeded");
    Ending::Close(CLOSE_POLICY, "rate limit exceeded")
}

impl Connection<'_> {
    /// Hands a frame's messages to the document, minus what the peer's rights do not allow.
    async fn deliver(&mut self, mut messages: Vec<ClientMessage>) -> Option<Ending> {
        let max_awareness = self.tandem.config().max_awareness_bytes;
        let oversized = messages.iter().any(|message| match message {
            ClientMessage::Awareness(update) => update.entries.iter().any(|entry| {
                entry
                    .state
                    .as_ref()
                    .is_some_and(|state| state.len() > max_awareness)
            }),
            _ => false,
        });
        if oversized {
            warn!(
                limit = max_awareness,
                "closing connection: awareness state too large"
            );
            return Some(Ending::Close(CLOSE_POLICY, "awareness state too large"));
        }
        let max_event = self.tandem.config().max_event_bytes;
        for message in &messages {
            if let ClientMessage::Event(ClientEvent::Emit { encoded_len, .. }) = message {
                if *encoded_len > max_event {
                    warn!(
                        limit = max_event,
                        "closing connection: custom event too large"
                    );
                    return Some(Ending::Close(CLOSE_POLICY, "event too large"));
                }
                if !self.event_rate.admit() {
                    warn!("closing connection: custom event rate exceeded");
                    return Some(Ending::Close(CLOSE_POLICY, "event rate exceeded"));
                }
            }
        }
        let withheld = protocol::withhold(&mut messages, self.rights);
        let (denied, denied_events, unpublished) =
            (withheld.changes, withheld.events, withheld.presence);
        if denied_events > 0 {
            debug!(
                denied_events,
                "dropping custom events from a peer without the events right"
            );
            let reply = protocol::encode_permission_denied(NO_EVENTS);
            let limit = self.tandem.config().ping_interval;
            if let Some(ending) = self.write(Message::Binary(reply), limit).await {
                return Some(ending);
            }
        }
        if !unpublished.is_empty() {
            // An invisible peer's presence goes back to it alone. y-websocket clients reconnect
            // after 30 s without a message, and their own renewed state echoed back is what
            // keeps a viewer alone on a quiet document connected.
            let echo = protocol::encode_awareness(
                unpublished
                    .iter()
                    .map(|entry| (entry.client, entry.clock, entry.state.as_deref())),
            );
            let limit = self.tandem.config().ping_interval;
            if let Some(ending) = self.write(Message::Binary(echo), limit).await {
                return Some(ending);
            }
        }
        if denied > 0 {
            self.denied += denied;
            self.tandem
                .inner
                .stats
                .denied_updates
                .fetch_add(denied, Ordering::Relaxed);
            debug!(denied, "dropping document changes from a read-only peer");
            let reply = protocol::encode_permission_denied(READ_ONLY);
            let limit = self.tandem.config().ping_interval;
            if let Some(ending) = self.write(Message::Binary(reply), limit).await {
                return Some(ending);
            }
        }
        if messages.is_empty() {
            return None;
        }
        if self.handle.send(self.peer, messages).await.is_err() {
            return Some(Ending::Close(CLOSE_GOING_AWAY, "document closed"));
        }
        None
    }
}

fn eviction(reason: Eviction) -> Ending {
    match reason {
        Eviction::TooSlow => Ending::Close(CLOSE_TRY_AGAIN, "peer too slow"),
        Eviction::DocumentFailed => Ending::Close(CLOSE_INTERNAL, "document failed"),
        Eviction::InvalidUpdate => Ending::Close(CLOSE_PROTOCOL_ERROR, "invalid update"),
        Eviction::DocumentTooLarge => Ending::Close(CLOSE_DOCUMENT_TOO_LARGE, "document too large"),
        Eviction::DocumentDeleted => Ending::Close(CLOSE_DOCUMENT_DELETED, "document deleted"),
        Eviction::NestedTooDeeply => Ending::Close(CLOSE_POLICY, "shared types nested too deeply"),
        Eviction::PresenceLimit(PresenceLimit::ClientsPerPeer) => {
            Ending::Close(CLOSE_POLICY, "too many presence clients")
        }
        Eviction::PresenceLimit(PresenceLimit::DocumentBytes) => {
            Ending::Close(CLOSE_POLICY, "document presence full")
        }
    }
}

/// How a failed write ends the connection: a full write buffer means the peer does not read
/// (1013); anything else means the socket is gone.
pub(crate) fn write_error(error: axum::Error) -> Ending {
    let full = error
        .into_inner()
        .downcast_ref::<tungstenite::Error>()
        .is_some_and(|error| matches!(error, tungstenite::Error::WriteBufferFull(_)));
    if full {
        warn!("closing connection: write buffer full");
        Ending::Close(CLOSE_TRY_AGAIN, "peer too slow")
    } else {
        Ending::Gone
    }
}

pub(crate) fn read_error(error: axum::Error) -> Ending {
    let too_big = error
        .into_inner()
        .downcast_ref::<tungstenite::Error>()
        .is_some_and(|error| matches!(error, tungstenite::Error::Capacity(_)));
    if too_big {
        warn!("refusing oversized frame");
        Ending::Close(CLOSE_TOO_BIG, "frame too large")
    } else {
        Ending::Gone
    }
}
