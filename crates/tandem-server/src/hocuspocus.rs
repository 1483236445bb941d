//! `GET /ws`: the Hocuspocus protocol, for `@hocuspocus/provider` (Tiptap) v3 and v4.
//!
//! One socket carries many document sessions, each named by the address at the start of every
//! frame. A session starts with an auth message whose token goes to the same [`Authorizer`]
//! as y-websocket connections (an empty token falls back to the socket's `?token=`, header or
//! cookie); until then its frames wait in a bounded queue. Once authenticated, a session is a
//! peer of its document like any y-websocket connection: the same rights, limits and hooks.
//!
//! Differences from y-websocket connections, as the provider expects them:
//! - every change is acknowledged with `SyncStatus` once it is durable in the store, so the
//!   provider's `unsyncedChanges` reaching zero means the edit is on disk; a read-only session's
//!   change is answered `SyncStatus(0)` and dropped;
//! - stateless messages are Tandem's custom events (type `stateless`): they reach the other
//!   Hocuspocus sessions, y-websocket peers with `?events=1` and event listeners, and Tandem
//!   events of other types reach Hocuspocus sessions as stateless messages carrying the event's
//!   JSON;
//! - a refused session gets `PermissionDenied` and may authenticate again on the same socket;
//!   a session ends (`CLOSE` with a reason, the socket stays open) when the provider detaches,
//!   its token expires, it breaks a per-session limit or sends a broadcast-stateless message.
//!
//! Socket-level problems close the socket: a frame that does not decode (1002), the rate limit
//! (1008; every frame counts, pings and pongs too, before and after authentication), a peer
//! that does not read (1013: the socket's write buffer is bounded in bytes, see
//! [`max_write_buffer`](crate::ws::max_write_buffer)), the pre-authentication queue caps (4205),
//! no session authenticated within [`AUTH_DEADLINE`] (4408), shutdown and unanswered pings
//! (1001).
//!
//! [`Authorizer`]: tandem_core::Authorizer

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, FuturesUnordered, SelectAll};
use futures_util::{FutureExt, StreamExt};
use tandem_core::hocuspocus::{self as hp, ClientFrame, ClientMessageHp};
use tandem_core::protocol::{ClientEvent, ClientMessage, MSG_EVENT};
use tandem_core::{
    peer, Credentials, DocError, DocHandle, DocName, Eviction, PeerId, PeerInbox, PeerInfo, Rights,
};
use tokio::time::{interval_at, sleep_until, timeout, Instant, MissedTickBehavior};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::creation::Creator;
use crate::hooks::{ConnectionInfo, HookEvent};
use crate::limits::{ConnectionPermit, ConnectionRate, CountRate};
use crate::peers::{PeerKind, PeerRegistration};
use crate::ws::{admit, close, max_write_buffer, rate_exceeded, read_error, write_error};
use crate::ws::{Ending, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_PROTOCOL_ERROR};
use crate::ws::{READ_BUFFER_BYTES, WRITE_BUFFER_BYTES};
use crate::{auth, Tandem};

/// Close code: the pre-authentication queue caps were exceeded (Hocuspocus's ResetConnection).
pub const CLOSE_RESET: u16 = 4205;
/// Close code: no session authenticated in time (Hocuspocus's ConnectionTimeout).
pub const CLOSE_AUTH_TIMEOUT: u16 = 4408;

/// How long a socket may stay open without any session authenticating (Hocuspocus: 60 s).
pub const AUTH_DEADLINE: Duration = Duration::from_secs(60);
/// Frames waiting for their session's authentication, per socket (as Hocuspocus 4.3+).
const MAX_PENDING_MESSAGES: usize = 1000;
/// Bytes waiting for authentication, per socket (as Hocuspocus 4.3+).
const MAX_PENDING_BYTES: usize = 5 * 1024 * 1024;
/// Documents waiting for authentication, per socket (as Hocuspocus 4.3+).
const MAX_PENDING_DOCUMENTS: usize = 100;
/// Authenticated document sessions on one socket.
const MAX_SESSIONS: usize = 256;

/// The event type Hocuspocus stateless messages become.
const STATELESS_TYPE: &str = "stateless";

/// `GET /ws`: upgrades to a Hocuspocus connection.
pub(crate) async fn upgrade(State(tandem): State<Tandem>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let config = tandem.config();
    let (remote, permit) = match admit(&tandem, &parts) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let credentials = auth::credentials(&parts, remote, config.token_cookie.as_deref());
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &tandem).await {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let limit = config.max_frame_bytes;
    let tracker = tandem.inner.tasks.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(max_write_buffer(config))
        .on_upgrade(move |socket| {
            let span = info_span!("hocuspocus", ?remote);
            tracker.track_future(
                async move {
                    let multiplexed = Multiplexed::new(&tandem, credentials, permit);
                    multiplexed.run(socket).await;
                }
                .instrument(span),
            )
        })
}

/// One authenticated document session.
struct Session {
    handle: DocHandle,
    /// Lists the session among the document's peers until dropped.
    _registration: PeerRegistration,
    rights: Rights,
    expiry: Option<Instant>,
    info: ConnectionInfo,
}

/// What a session's document produced.
enum Outgoing {
    Frame(Bytes, PeerId, Bytes),
    Evicted(Bytes, PeerId, Eviction),
    Ended(Bytes, PeerId),
}

/// Frames of sessions not authenticated yet.
#[derive(Default)]
struct Pending {
    frames: HashMap<Bytes, Vec<ClientMessageHp>>,
    messages: usize,
    bytes: usize,
}

struct Multiplexed<'a> {
    tandem: &'a Tandem,
    credentials: Credentials,
    sessions: HashMap<Bytes, Session>,
    pending: Pending,
    outgoing: SelectAll<BoxStream<'static, Outgoing>>,
    acks: FuturesUnordered<Ack>,
    rate: ConnectionRate,
    event_rate: CountRate,
    authenticated: bool,
    _permit: ConnectionPermit,
}

/// A change waiting to be durable: the session's address and peer, and the outcome.
type Ack = BoxFuture<'static, (Bytes, PeerId, Result<(), DocError>)>;

/// What the loop should do after handling something.
type Step = Option<Ending>;

impl<'a> Multiplexed<'a> {
    fn new(tandem: &'a Tandem, credentials: Credentials, permit: ConnectionPermit) -> Self {
        let config = tandem.config();
        Self {
            tandem,
            credentials,
            sessions: HashMap::new(),
            pending: Pending::default(),
            outgoing: SelectAll::new(),
            acks: FuturesUnordered::new(),
            rate: ConnectionRate::new(&config.rate_limit),
            event_rate: CountRate::new(config.events_per_sec, config.event_burst),
            authenticated: false,
            _permit: permit,
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let ending = self.serve(&mut socket).await;
        let tandem = self.tandem;
        for (_, session) in std::mem::take(&mut self.sessions) {
            end_session(tandem, session).await;
        }
        match ending {
            Ending::Close(code, reason) => {
                debug!(code, reason, "closing connection");
                close(&mut socket, code, reason).await;
            }
            Ending::ClosedByPeer | Ending::Gone => debug!("connection closed by peer"),
        }
    }

    async fn serve(&mut self, socket: &mut WebSocket) -> Ending {
        let ping_interval = self.tandem.config().ping_interval;
        let mut ping = interval_at(Instant::now() + ping_interval, ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut awaiting_pong = false;
        let auth_deadline = Instant::now() + AUTH_DEADLINE;
        let closing = self.tandem.inner.closing.clone();
        loop {
            let next_expiry = self.sessions.values().filter_map(|s| s.expiry).min();
            tokio::select! {
                biased;
                _ = closing.cancelled() => return Ending::Close(CLOSE_GOING_AWAY, "server shutting down"),
                _ = sleep_until(auth_deadline), if !self.authenticated => {
                    return Ending::Close(CLOSE_AUTH_TIMEOUT, "authentication timeout");
                }
                _ = sleep_until(next_expiry.unwrap_or_else(Instant::now)), if next_expiry.is_some() => {
                    if let Some(ending) = self.expire(socket).await {
                        return ending;
                    }
                }
                Some(outgoing) = self.outgoing.next(), if !self.outgoing.is_empty() => {
                    if let Some(ending) = self.on_outgoing(socket, outgoing).await {
                        return ending;
                    }
                }
                Some((address, peer, durable)) = self.acks.next(), if !self.acks.is_empty() => {
                    if let Some(ending) = self.on_durable(socket, address, peer, durable).await {
                        return ending;
                    }
                }
                message = socket.recv() => {
                    awaiting_pong = false;
                    if let Some(ending) = self.on_message(socket, message).await {
                        return ending;
                    }
                }
                _ = ping.tick() => {
                    if awaiting_pong {
                        return Ending::Close(CLOSE_GOING_AWAY, "ping timeout");
                    }
                    awaiting_pong = true;
                    if let Some(ending) = send(socket, Message::Ping(Default::default()), ping_interval).await {
                        return ending;
                    }
                }
            }
        }
    }

    async fn on_message(
        &mut self,
        socket: &mut WebSocket,
        message: Option<Result<Message, axum::Error>>,
    ) -> Step {
        let frame = match message {
            None => return Some(Ending::Gone),
            Some(Err(error)) => return Some(read_error(error)),
            Some(Ok(Message::Binary(frame))) => frame,
            Some(Ok(Message::Close(_))) => return Some(Ending::ClosedByPeer),
            Some(Ok(Message::Text(_))) => {
                return Some(Ending::Close(
                    crate::ws::CLOSE_UNSUPPORTED,
                    "binary frames only",
                ))
            }
            // tungstenite has queued the pong already; the rate bounds how many.
            Some(Ok(Message::Ping(payload) | Message::Pong(payload))) => {
                return (!self.rate.admit(payload.len())).then(|| rate_exceeded(self.tandem));
            }
        };
        if !self.rate.admit(frame.len()) {
            return Some(rate_exceeded(self.tandem));
        }
        let (address, message) = match hp::decode_client_frame(&frame) {
            Ok(ClientFrame::Pong) => return None,
            Ok(ClientFrame::Message { address, message }) => (address, message),
            Err(error) => {
                warn!(%error, bytes = frame.len(), "refusing frame");
                return Some(Ending::Close(CLOSE_PROTOCOL_ERROR, "malformed message"));
            }
        };
        if self.sessions.contains_key(&address) {
            return self.on_session_message(socket, address, message).await;
        }
        match message {
            ClientMessageHp::Auth { token, .. } => self.authenticate(socket, address, token).await,
            ClientMessageHp::Close => {
                self.pending.drop_address(&address);
                None
            }
            other => self.queue(address, other, frame.len()),
        }
    }

    /// Keeps a frame until its session is authenticated, within Hocuspocus's caps.
    fn queue(&mut self, address: Bytes, message: ClientMessageHp, len: usize) -> Step {
        let pending = &mut self.pending;
        if !pending.frames.contains_key(&address) && pending.frames.len() >= MAX_PENDING_DOCUMENTS {
            warn!("closing connection: too many documents waiting for authentication");
            return Some(Ending::Close(CLOSE_RESET, "Reset Connection"));
        }
        pending.messages += 1;
        pending.bytes += len;
        if pending.messages > MAX_PENDING_MESSAGES || pending.bytes > MAX_PENDING_BYTES {
            warn!("closing connection: too much waiting for authentication");
            return Some(Ending::Close(CLOSE_RESET, "Reset Connection"));
        }
        pending.frames.entry(address).or_default().push(message);
        None
    }

    /// Authorizes a session's token; on success opens the session and replays what waited.
    async fn authenticate(
        &mut self,
        socket: &mut WebSocket,
        address: Bytes,
        token: String,
    ) -> Step {
        let limit = self.tandem.config().ping_interval;
        let name = DocName::new(Bytes::copy_from_slice(ClientFrame::document_name(&address)));
        let refusal = if name.is_empty() {
            Some("missing document name".to_owned())
        } else if name.len() > self.tandem.config().max_doc_name_bytes {
            Some("document name too long".to_owned())
        } else if self.sessions.len() >= MAX_SESSIONS {
            Some("too many documents on this connection".to_owned())
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.pending.drop_address(&address);
            return send(
                socket,
                Message::Binary(hp::encode_permission_denied(&address, &reason)),
                limit,
            )
            .await;
        }
        let mut credentials = self.credentials.clone();
        if !token.is_empty() {
            credentials.token = Some(token);
        }
        let grant = match self
            .tandem
            .inner
            .authorizer
            .authorize(&credentials, &name)
            .await
        {
            Ok(grant) => grant,
            Err(error) => {
                info!(doc = %name, %error, "refusing document session");
                self.pending.drop_address(&address);
                let reason = match &error {
                    tandem_core::AuthError::Unauthenticated(reason)
                    | tandem_core::AuthError::Forbidden(reason) => reason.clone(),
                };
                return send(
                    socket,
                    Message::Binary(hp::encode_permission_denied(&address, &reason)),
                    limit,
                )
                .await;
            }
        };
        let creator = Creator::of(
            grant.subject.as_deref(),
            self.credentials.remote_addr.map(|addr| addr.ip()),
        );
        if let Err(refusal) = self.tandem.admit_document(&name, &creator).await {
            self.pending.drop_address(&address);
            return send(
                socket,
                Message::Binary(hp::encode_permission_denied(&address, refusal.reason())),
                limit,
            )
            .await;
        }
        let info = ConnectionInfo {
            doc: name.clone(),
            peer: PeerId::next(),
            subject: grant.subject.clone(),
            rights: grant.rights,
            remote_addr: self.credentials.remote_addr,
        };
        if let Some((hooks, _)) = &self.tandem.inner.hooks {
            if let Err(veto) = hooks.on_connect(&info).await {
                info!(doc = %name, reason = %veto.reason, "document session vetoed by a hook");
                self.pending.drop_address(&address);
                return send(
                    socket,
                    Message::Binary(hp::encode_permission_denied(&address, &veto.reason)),
                    limit,
                )
                .await;
            }
        }
        let read_only = !grant.rights.contains(Rights::WRITE);
        if let Some(ending) = send(
            socket,
            Message::Binary(hp::encode_authenticated(&address, read_only)),
            limit,
        )
        .await
        {
            return Some(ending);
        }
        let config = self.tandem.config();
        let (outbox, inbox) = peer::bounded_queue(config.peer_queue, config.peer_queue_bytes);
        let peer_info = PeerInfo {
            subject: grant.subject.clone(),
            events: true,
            // The provider's `forceSync` expects a sync step 1 in answer to its own.
            sync_on_request: true,
        };
        let handle = match self
            .tandem
            .registry()
            .join_as(&name, info.peer, outbox, peer_info)
            .await
        {
            Ok(handle) => handle,
            Err(error) => {
                warn!(doc = %name, %error, "could not open document");
                self.pending.drop_address(&address);
                disconnected(self.tandem, info);
                return send(
                    socket,
                    Message::Binary(hp::encode_close(&address, "document unavailable")),
                    limit,
                )
                .await;
            }
        };
        debug!(doc = %name, peer = %info.peer, rights = ?grant.rights, "document session opened");
        self.authenticated = true;
        self.outgoing
            .push(session_stream(address.clone(), info.peer, inbox));
        let expiry = grant.expires_at.map(|at| {
            Instant::now()
                + at.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
        });
        let registration =
            self.tandem
                .register_peer(&name, info.peer, info.subject.clone(), PeerKind::Hocuspocus);
        self.sessions.insert(
            address.clone(),
            Session {
                handle,
                _registration: registration,
                rights: grant.rights,
                expiry,
                info,
            },
        );
        let waiting = self.pending.take(&address);
        for message in waiting {
            if let Some(ending) = self
                .on_session_message(socket, address.clone(), message)
                .await
            {
                return Some(ending);
            }
        }
        None
    }

    async fn on_session_message(
        &mut self,
        socket: &mut WebSocket,
        address: Bytes,
        message: ClientMessageHp,
    ) -> Step {
        let limit = self.tandem.config().ping_interval;
        let session = self.sessions.get(&address)?;
        let (handle, peer, rights) = (session.handle.clone(), session.info.peer, session.rights);
        match message {
            ClientMessageHp::Auth { token, .. } => {
                // A fresh token for an open session (the provider answers a token request so).
                let mut credentials = self.credentials.clone();
                if !token.is_empty() {
                    credentials.token = Some(token);
                }
                let name = session.info.doc.clone();
                match self
                    .tandem
                    .inner
                    .authorizer
                    .authorize(&credentials, &name)
                    .await
                {
                    Ok(grant) => {
                        let read_only = !grant.rights.contains(Rights::WRITE);
                        if let Some(session) = self.sessions.get_mut(&address) {
                            session.rights = grant.rights;
                            session.expiry = grant.expires_at.map(|at| {
                                Instant::now()
                                    + at.duration_since(SystemTime::now())
                                        .unwrap_or(Duration::ZERO)
                            });
                        }
                        send(
                            socket,
                            Message::Binary(hp::encode_authenticated(&address, read_only)),
                            limit,
                        )
                        .await
                    }
                    Err(error) => {
                        info!(doc = %name, %error, "refusing a renewed token");
                        let reason = error.to_string();
                        if let Some(ending) = send(
                            socket,
                            Message::Binary(hp::encode_permission_denied(&address, &reason)),
                            limit,
                        )
                        .await
                        {
                            return Some(ending);
                        }
                        self.close_session(socket, &address, "permission denied")
                            .await
                    }
                }
            }
            ClientMessageHp::Close => {
                self.close_session(socket, &address, "provider_initiated")
                    .await
            }
            ClientMessageHp::BroadcastStateless => {
                warn!(doc = %session.info.doc, "closing document session: broadcast-stateless from a client");
                self.close_session(socket, &address, "Reset Connection")
                    .await
            }
            ClientMessageHp::Stateless(payload) => {
                let max = self.tandem.config().max_event_bytes;
                if payload.len() > max {
                    warn!(
                        limit = max,
                        "closing document session: stateless message too large"
                    );
                    return self
                        .close_session(socket, &address, "stateless message too large")
                        .await;
                }
                if !self.event_rate.admit() {
                    warn!("closing connection: custom event rate exceeded");
                    return Some(Ending::Close(CLOSE_POLICY, "event rate exceeded"));
                }
                if !rights.contains(Rights::EVENTS) {
                    debug!("dropping a stateless message from a session without the events right");
                    return None;
                }
                let event = ClientEvent::Emit {
                    kind: STATELESS_TYPE.to_owned(),
                    data: stateless_data(&payload),
                    encoded_len: payload.len(),
                };
                self.forward(
                    socket,
                    &address,
                    &handle,
                    peer,
                    vec![ClientMessage::Event(event)],
                )
                .await
            }
            ClientMessageHp::Document(message) => {
                self.on_document_message(socket, address, handle, peer, rights, message)
                    .await
            }
        }
    }

    async fn on_document_message(
        &mut self,
        socket: &mut WebSocket,
        address: Bytes,
        handle: DocHandle,
        peer: PeerId,
        rights: Rights,
        message: ClientMessage,
    ) -> Step {
        let limit = self.tandem.config().ping_interval;
        match message {
            ClientMessage::Awareness(update) => {
                let max = self.tandem.config().max_awareness_bytes;
                let oversized = update
                    .entries
                    .iter()
                    .any(|entry| entry.state.as_ref().is_some_and(|state| state.len() > max));
                if oversized {
                    warn!(
                        limit = max,
                        "closing document session: awareness state too large"
                    );
                    return self
                        .close_session(socket, &address, "awareness state too large")
                        .await;
                }
                if !rights.contains(Rights::PRESENCE) {
                    // Invisible: the session's own presence goes back to it alone.
                    let echo = tandem_core::protocol::encode_awareness(
                        update
                            .entries
                            .iter()
                            .map(|entry| (entry.client, entry.clock, entry.state.as_deref())),
                    );
                    return match hp::wrap_document_frame(&address, &echo) {
                        Some(frame) => send(socket, Message::Binary(frame), limit).await,
                        None => None,
                    };
                }
                self.forward(
                    socket,
                    &address,
                    &handle,
                    peer,
                    vec![ClientMessage::Awareness(update)],
                )
                .await
            }
            change @ (ClientMessage::SyncStep2(_) | ClientMessage::Update(_))
                if !rights.contains(Rights::WRITE) =>
            {
                // Hocuspocus answers a read-only session's step 2 with success when it brings
                // nothing new (a reconnecting reader repeats the deletions it knows), and every
                // other change with failure; nothing is applied.
                let harmless = match change {
                    ClientMessage::SyncStep2(update) => {
                        update.is_empty() || handle.covers(update).await.unwrap_or(false)
                    }
                    _ => false,
                };
                if !harmless {
                    self.tandem
                        .inner
                        .stats
                        .denied_updates
                        .fetch_add(1, Ordering::Relaxed);
                }
                send(
                    socket,
                    Message::Binary(hp::encode_sync_status(&address, harmless)),
                    limit,
                )
                .await
            }
            change @ (ClientMessage::SyncStep2(_) | ClientMessage::Update(_)) => {
                if let Some(ending) = self
                    .forward(socket, &address, &handle, peer, vec![change])
                    .await
                {
                    return Some(ending);
                }
                // Acknowledged once everything the document applied so far is durable.
                let address = address.clone();
                self.acks
                    .push(async move { (address, peer, handle.persist().await) }.boxed());
                None
            }
            other => {
                self.forward(socket, &address, &handle, peer, vec![other])
                    .await
            }
        }
    }

    async fn forward(
        &mut self,
        socket: &mut WebSocket,
        address: &Bytes,
        handle: &DocHandle,
        peer: PeerId,
        messages: Vec<ClientMessage>,
    ) -> Step {
        if handle.send(peer, messages).await.is_err() {
            return self.close_session(socket, address, "document closed").await;
        }
        None
    }

    async fn on_outgoing(&mut self, socket: &mut WebSocket, outgoing: Outgoing) -> Step {
        let limit = self.tandem.config().ping_interval;
        match outgoing {
            Outgoing::Frame(address, peer, frame) => {
                if !self.is_current(&address, peer) {
                    return None;
                }
                let wrapped = if frame.first().map(|&b| u64::from(b)) == Some(MSG_EVENT) {
                    event_as_stateless(&address, &frame)
                } else {
                    hp::wrap_document_frame(&address, &frame)
                };
                match wrapped {
                    Some(frame) => send(socket, Message::Binary(frame), limit).await,
                    None => None,
                }
            }
            Outgoing::Evicted(address, peer, reason) => {
                if !self.is_current(&address, peer) {
                    return None;
                }
                let reason = match reason {
                    Eviction::TooSlow => "peer too slow",
                    Eviction::DocumentFailed => "document failed",
                    Eviction::InvalidUpdate => "invalid update",
                    Eviction::DocumentTooLarge => "document too large",
                    Eviction::DocumentDeleted => "document deleted",
                    Eviction::NestedTooDeeply => "shared types nested too deeply",
                    Eviction::PresenceLimit(
                        tandem_core::awareness::PresenceLimit::ClientsPerPeer,
                    ) => "too many presence clients",
                    Eviction::PresenceLimit(
                        tandem_core::awareness::PresenceLimit::DocumentBytes,
                    ) => "document presence full",
                };
                self.close_session(socket, &address, reason).await
            }
            Outgoing::Ended(address, peer) => {
                if !self.is_current(&address, peer) {
                    return None;
                }
                self.close_session(socket, &address, "document closed")
                    .await
            }
        }
    }

    async fn on_durable(
        &mut self,
        socket: &mut WebSocket,
        address: Bytes,
        peer: PeerId,
        durable: Result<(), DocError>,
    ) -> Step {
        if !self.is_current(&address, peer) {
            return None;
        }
        match durable {
            Ok(()) => {
                let limit = self.tandem.config().ping_interval;
                send(
                    socket,
                    Message::Binary(hp::encode_sync_status(&address, true)),
                    limit,
                )
                .await
            }
            Err(error) => {
                warn!(%error, "a change could not be stored");
                self.close_session(socket, &address, "document failed")
                    .await
            }
        }
    }

    /// Ends the sessions whose token expired.
    async fn expire(&mut self, socket: &mut WebSocket) -> Step {
        let now = Instant::now();
        let expired: Vec<Bytes> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expiry.is_some_and(|at| at <= now))
            .map(|(address, _)| address.clone())
            .collect();
        for address in expired {
            if let Some(ending) = self.close_session(socket, &address, "token expired").await {
                return Some(ending);
            }
        }
        None
    }

    fn is_current(&self, address: &Bytes, peer: PeerId) -> bool {
        self.sessions
            .get(address)
            .is_some_and(|session| session.info.peer == peer)
    }

    /// Ends one session and tells the provider why; the socket stays open.
    async fn close_session(
        &mut self,
        socket: &mut WebSocket,
        address: &Bytes,
        reason: &str,
    ) -> Step {
        let session = self.sessions.remove(address)?;
        debug!(doc = %session.info.doc, reason, "closing document session");
        end_session(self.tandem, session).await;
        let limit = self.tandem.config().ping_interval;
        send(
            socket,
            Message::Binary(hp::encode_close(address, reason)),
            limit,
        )
        .await
    }
}

async fn end_session(tandem: &Tandem, session: Session) {
    session.handle.leave(session.info.peer).await;
    disconnected(tandem, session.info);
}

impl Pending {
    fn take(&mut self, address: &Bytes) -> Vec<ClientMessageHp> {
        let frames = self.frames.remove(address).unwrap_or_default();
        self.messages = self.messages.saturating_sub(frames.len());
        frames
    }

    fn drop_address(&mut self, address: &Bytes) {
        self.take(address);
    }
}

/// A session's document frames and eviction, as one stream tagged with its address and peer.
fn session_stream(address: Bytes, peer: PeerId, inbox: PeerInbox) -> BoxStream<'static, Outgoing> {
    let eviction = inbox.eviction();
    stream::unfold(Some((inbox, eviction)), move |state| {
        let address = address.clone();
        async move {
            let (mut inbox, eviction) = state?;
            tokio::select! {
                biased;
                reason = eviction.evicted() => Some((Outgoing::Evicted(address, peer, reason), None)),
                frame = inbox.recv() => match frame {
                    Some(frame) => Some((Outgoing::Frame(address, peer, frame), Some((inbox, eviction)))),
                    None => Some((Outgoing::Ended(address, peer), None)),
                },
            }
        }
    })
    .boxed()
}

/// A stateless payload as event data: JSON objects and arrays as their exact text (validated,
/// not re-serialised), anything else as a JSON string, so that it travels back to Hocuspocus
/// sessions byte for byte as sent.
fn stateless_data(payload: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(_) | serde_json::Value::Array(_)) => payload.to_owned(),
        _ => serde_json::Value::from(payload).to_string(),
    }
}

/// The fields of an event that decide what a Hocuspocus session receives; `data` stays raw.
#[derive(serde::Deserialize)]
struct StampedEvent<'a> {
    seq: Option<u64>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(borrow)]
    data: Option<&'a serde_json::value::RawValue>,
}

/// A Tandem event as a stateless message: a `stateless` event gives back its payload, any
/// other event its whole JSON. Acks and gap markers are not for Hocuspocus sessions.
fn event_as_stateless(address: &[u8], frame: &[u8]) -> Option<Bytes> {
    let mut reader = tandem_core::lib0::Reader::new(frame);
    reader.var_u64().ok()?;
    let json = reader.var_str().ok()?;
    let event: StampedEvent<'_> = serde_json::from_str(json).ok()?;
    event.seq?;
    let payload = if event.kind.as_deref() == Some(STATELESS_TYPE) {
        let raw = event.data.map_or("null", |data| data.get());
        // A payload that was not JSON travelled as a JSON string: unwrap it.
        serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_owned())
    } else {
        json.to_owned()
    };
    Some(hp::encode_stateless(address, &payload))
}

fn disconnected(tandem: &Tandem, info: ConnectionInfo) {
    if let Some((_, queue)) = &tandem.inner.hooks {
        queue.send(HookEvent::Disconnected(info));
    }
}

/// Writes one message, giving up after `limit` (the peer stopped reading).
async fn send(socket: &mut WebSocket, message: Message, limit: Duration) -> Step {
    match timeout(limit, socket.send(message)).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(write_error(error)),
        Err(_) => Some(Ending::Close(crate::ws::CLOSE_TRY_AGAIN, "write timeout")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stateless_payloads_round_trip() {
        for payload in [
            r#"{"a":1}"#,
            "[1,2]",
            "plain text",
            r#""quoted""#,
            "42",
            r#"{"b":1, "a":[1.0,2]}"#,
            "[ 1, 2 ]",
            r#"{"s":"\u00e9"}"#,
            r#"{"a":1,"a":2}"#,
        ] {
            let data = stateless_data(payload);
            let event =
                format!(r#"{{"seq":1,"type":"stateless","data":{data},"from":"x","at":0}}"#);
            let frame = tandem_core::protocol::encode_event(&event);
            let wrapped = event_as_stateless(b"d", &frame).expect("an event");
            assert_eq!(wrapped, hp::encode_stateless(b"d", payload), "{payload}");
        }
        let ack = tandem_core::protocol::encode_event(r#"{"ack":3}"#);
        assert_eq!(event_as_stateless(b"d", &ack), None);
        let chat = r#"{"seq":2,"type":"chat","data":{"t":"hi"},"from":"x","at":0}"#;
        let frame = tandem_core::protocol::encode_event(chat);
        assert_eq!(
            event_as_stateless(b"d", &frame),
            Some(hp::encode_stateless(b"d", chat))
        );
    }
}
