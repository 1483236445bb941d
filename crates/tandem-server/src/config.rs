//! Connection-level limits and options, each with the default the binary uses.
//!
//! Every limit is checked before the work it guards is done: a frame's size before it is read,
//! a connection count before the upgrade, a rate before the frame is decoded, a document's size
//! before the update touches it.

use std::time::Duration;

use tandem_core::DocConfig;

/// Largest WebSocket frame (and message) accepted; a larger one closes the connection with
/// 1009. A document's first sync can legitimately be megabytes.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// How often the server pings each connection. A connection that has not answered one ping by
/// the next is closed: dead peers are found within two intervals. Matches the y-websocket server.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Longest document name, in bytes after percent-decoding; longer ones get 414.
pub const DEFAULT_MAX_DOC_NAME_BYTES: usize = 1024;

/// Largest awareness state of one client, in bytes of JSON. A cursor and a user name take a few
/// hundred; more is someone using presence as a side channel. Over it: close 1008.
pub const DEFAULT_MAX_AWARENESS_BYTES: usize = 32 * 1024;

/// WebSocket connections open at once, in total; more get 503 before the upgrade.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// WebSocket connections open at once from one IP address; more get 503.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 500;

/// How long a client has to send a request's headers: from the moment the connection is accepted
/// (for its first request) or from the first byte of a later one. A connection that sends nothing,
/// or half a request, is closed when it runs out. Headers arrive in one packet from real clients;
/// a slow sender holding a descriptor is an attack (slowloris).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a keep-alive HTTP connection may wait with no request in flight before it is
/// closed. Event streams and WebSockets are not idle: a response still being sent, or an
/// upgraded connection, never counts. Browsers reuse idle connections for about a minute.
pub const DEFAULT_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// HTTP connections open at once, in total (an event stream holds one; WebSockets count against
/// [`DEFAULT_MAX_CONNECTIONS`] instead once upgraded). More are answered 503 and closed at
/// accept, so idle sockets cannot use up the process's file descriptors.
pub const DEFAULT_MAX_HTTP_CONNECTIONS: usize = 4_096;

/// HTTP connections open at once from one IP address; more are answered 503 and closed at
/// accept. A browser opens at most six per origin, so this leaves room for a few dozen users
/// behind one NAT.
pub const DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP: usize = 256;

/// Largest HTTP request body; larger ones get 413.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Messages a connection may send per second, sustained: every y-protocols message counts,
/// however many share a frame, and so does every control frame (ping, pong). Typing and cursor
/// moves in a busy whiteboard stay well under it.
pub const DEFAULT_MESSAGES_PER_SEC: u32 = 300;

/// Messages a connection may send in a burst above the sustained rate (a reconnect's initial
/// sync, a paste that becomes many updates).
pub const DEFAULT_MESSAGE_BURST: u32 = 3_000;

/// Bytes a connection may send per second, sustained.
pub const DEFAULT_BYTES_PER_SEC: u64 = 4 * 1024 * 1024;

/// Bytes a connection may send in a burst: two of the largest frames.
pub const DEFAULT_BYTE_BURST: u64 = 2 * DEFAULT_MAX_FRAME_BYTES as u64;

/// Largest custom event, in bytes of JSON; larger: close 1008.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 64 * 1024;

/// Custom events one connection may send per second, sustained (chat, typing indicators and
/// reactions stay far below).
pub const DEFAULT_EVENTS_PER_SEC: u32 = 20;

/// Custom events one connection may send in a burst.
pub const DEFAULT_EVENT_BURST: u32 = 100;

/// New documents one caller (a token's subject, else an IP address) may create per minute,
/// sustained. Opening existing documents is never limited; an app creating a document per
/// page view of a busy user stays far below.
pub const DEFAULT_DOC_CREATIONS_PER_MIN: u32 = 300;

/// New documents one caller may create in a burst above the sustained rate (an import).
pub const DEFAULT_DOC_CREATION_BURST: u32 = 600;

/// Token buckets limiting what one connection may send. Over either: close 1008.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained messages (and control frames) per second; 0 turns the message limit off.
    pub messages_per_sec: u32,
    /// Messages allowed in a burst.
    pub message_burst: u32,
    /// Sustained bytes per second; 0 turns the byte limit off.
    pub bytes_per_sec: u64,
    /// Bytes allowed in a burst; a single frame larger than this can never be accepted.
    pub byte_burst: u64,
}

impl RateLimit {
    /// No limit at all (benchmarks, trusted networks).
    pub fn off() -> Self {
        Self {
            messages_per_sec: 0,
            message_burst: 0,
            bytes_per_sec: 0,
            byte_burst: 0,
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            messages_per_sec: DEFAULT_MESSAGES_PER_SEC,
            message_burst: DEFAULT_MESSAGE_BURST,
            bytes_per_sec: DEFAULT_BYTES_PER_SEC,
            byte_burst: DEFAULT_BYTE_BURST,
        }
    }
}

/// Connection tunables.
#[derive(Debug, Clone)]
pub struct Config {
    /// See [`DEFAULT_MAX_FRAME_BYTES`].
    pub max_frame_bytes: usize,
    /// See [`DEFAULT_PING_INTERVAL`].
    pub ping_interval: Duration,
    /// Frames queued for one peer before it is disconnected as too slow
    /// (see [`tandem_core::config::DEFAULT_PEER_QUEUE`]).
    pub peer_queue: usize,
    /// Bytes queued for one peer before it is disconnected as too slow
    /// (see [`tandem_core::config::DEFAULT_PEER_QUEUE_BYTES`]).
    pub peer_queue_bytes: usize,
    /// See [`DEFAULT_MAX_DOC_NAME_BYTES`].
    pub max_doc_name_bytes: usize,
    /// See [`DEFAULT_MAX_AWARENESS_BYTES`].
    pub max_awareness_bytes: usize,
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`DEFAULT_MAX_CONNECTIONS_PER_IP`]. Applies when the server knows the peer's address
    /// (axum's `ConnectInfo<SocketAddr>`, which [`serve`](crate::serve) provides).
    pub max_connections_per_ip: usize,
    /// See [`DEFAULT_HEADER_READ_TIMEOUT`]. Applied by [`serve`](crate::serve), not by a router
    /// served another way.
    pub header_read_timeout: Duration,
    /// See [`DEFAULT_HTTP_IDLE_TIMEOUT`]. Applied by [`serve`](crate::serve).
    pub http_idle_timeout: Duration,
    /// See [`DEFAULT_MAX_HTTP_CONNECTIONS`]. Applied by [`serve`](crate::serve).
    pub max_http_connections: usize,
    /// See [`DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP`]. Applied by [`serve`](crate::serve).
    pub max_http_connections_per_ip: usize,
    /// See [`DEFAULT_MAX_BODY_BYTES`].
    pub max_body_bytes: usize,
    /// What one connection may send per second.
    pub rate_limit: RateLimit,
    /// Browser origins allowed to open WebSockets and call the HTTP API (CORS). Empty: any.
    /// Requests without an `Origin` header (servers, scripts) are not browsers and always pass.
    pub allowed_origins: Vec<String>,
    /// A cookie that may carry the token, besides `?token=` and `Authorization: Bearer`.
    pub token_cookie: Option<String>,
    /// See [`DEFAULT_MAX_EVENT_BYTES`].
    pub max_event_bytes: usize,
    /// See [`DEFAULT_EVENTS_PER_SEC`]; 0 turns the limit off.
    pub events_per_sec: u32,
    /// See [`DEFAULT_EVENT_BURST`].
    pub event_burst: u32,
    /// See [`DEFAULT_DOC_CREATIONS_PER_MIN`]; 0 turns the limit off.
    pub doc_creations_per_min: u32,
    /// See [`DEFAULT_DOC_CREATION_BURST`].
    pub doc_creation_burst: u32,
    /// Document tunables.
    pub doc: DocConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            ping_interval: DEFAULT_PING_INTERVAL,
            peer_queue: tandem_core::config::DEFAULT_PEER_QUEUE,
            peer_queue_bytes: tandem_core::config::DEFAULT_PEER_QUEUE_BYTES,
            max_doc_name_bytes: DEFAULT_MAX_DOC_NAME_BYTES,
            max_awareness_bytes: DEFAULT_MAX_AWARENESS_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            http_idle_timeout: DEFAULT_HTTP_IDLE_TIMEOUT,
            max_http_connections: DEFAULT_MAX_HTTP_CONNECTIONS,
            max_http_connections_per_ip: DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            rate_limit: RateLimit::default(),
            allowed_origins: Vec::new(),
            token_cookie: None,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            events_per_sec: DEFAULT_EVENTS_PER_SEC,
            event_burst: DEFAULT_EVENT_BURST,
            doc_creations_per_min: DEFAULT_DOC_CREATIONS_PER_MIN,
            doc_creation_burst: DEFAULT_DOC_CREATION_BURST,
            doc: DocConfig::default(),
        }
    }
}
