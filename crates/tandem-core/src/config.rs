//! Tunables of the document layer, each with the default the binary uses.

use std::time::Duration;

/// How long a document stays loaded after its last peer left. Reconnects (a page reload, a
/// flaky network) within this window find the document still in memory.
pub const DEFAULT_UNLOAD_DELAY: Duration = Duration::from_secs(30);

/// Compact a document's log into a snapshot once the updates since the last snapshot reach this
/// many bytes: loading stays fast and the log small.
pub const DEFAULT_COMPACT_LOG_BYTES: u64 = 4 * 1024 * 1024;

/// Compact a document's log once it holds this many updates (keystroke updates are tiny, so
/// the byte threshold alone would let a typed document's log grow to hundreds of thousands).
pub const DEFAULT_COMPACT_LOG_ENTRIES: u64 = 10_000;

/// Frames waiting for one peer before it counts as too slow and is disconnected. A peer that
/// reads normally never has more than a handful queued; a thousand is seconds of heavy typing.
pub const DEFAULT_PEER_QUEUE: usize = 1024;

/// Bytes waiting for one peer past which it counts as too slow and is disconnected (1013). A
/// peer that reads normally has a few frames waiting; 8 MiB is seconds of a busy document.
/// Frame counts alone let a queue of large frames (event replays, awareness states) pin
/// gigabytes. A single larger frame (a big document's sync step 2) still goes to a peer whose
/// queue is below the limit, so the limit need not exceed the largest document.
pub const DEFAULT_PEER_QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// Commands waiting for one document actor. Senders wait when it is full, which slows the
/// sockets feeding a busy document instead of buffering without bound.
pub const DEFAULT_MAILBOX: usize = 256;

/// Largest size a document may reach, in bytes of its stored form (snapshot plus the updates
/// since). An update that would push a document past it is refused and the document is left as
/// it was; the sender is disconnected (4413). Big enough for a book with its whole history.
pub const DEFAULT_MAX_DOC_BYTES: u64 = 64 * 1024 * 1024;

/// How often a document sends the awareness changes of all its clients, coalesced into one
/// frame with the newest state of each: 20 times a second is what moving cursors need, and
/// what keeps hundreds of peers from multiplying each other's traffic.
pub const DEFAULT_AWARENESS_INTERVAL: Duration = Duration::from_millis(50);

/// Custom events kept per document (on disk) for peers that reconnect and ask what they
/// missed; 0 keeps none.
pub const DEFAULT_EVENT_HISTORY: usize = 100;

/// Client ids one connection may publish awareness states for at once. A y-websocket or
/// Hocuspocus client publishes one per document; more is one socket posing as a crowd (and
/// every newcomer's first awareness frame carrying all of it). Over it: close 1008.
pub const DEFAULT_MAX_PRESENCE_CLIENTS: usize = 4;

/// Bytes of JSON all awareness states of one document may take together: a thousand users
/// with a cursor, a name and a colour take a few hundred KiB. Bounds the table and the first
/// awareness frame each newcomer gets. An update that would pass it: close 1008.
pub const DEFAULT_MAX_PRESENCE_BYTES: usize = 4 * 1024 * 1024;

/// Tunables of documents.
#[derive(Debug, Clone)]
pub struct DocConfig {
    /// See [`DEFAULT_UNLOAD_DELAY`].
    pub unload_delay: Duration,
    /// See [`DEFAULT_COMPACT_LOG_BYTES`].
    pub compact_log_bytes: u64,
    /// See [`DEFAULT_COMPACT_LOG_ENTRIES`].
    pub compact_log_entries: u64,
    /// See [`DEFAULT_MAILBOX`].
    pub mailbox: usize,
    /// See [`DEFAULT_MAX_DOC_BYTES`].
    pub max_doc_bytes: u64,
    /// See [`DEFAULT_AWARENESS_INTERVAL`].
    pub awareness_interval: Duration,
    /// See [`DEFAULT_EVENT_HISTORY`].
    pub event_history: usize,
    /// See [`DEFAULT_MAX_PRESENCE_CLIENTS`].
    pub max_presence_clients: usize,
    /// See [`DEFAULT_MAX_PRESENCE_BYTES`].
    pub max_presence_bytes: usize,
}

impl Default for DocConfig {
    fn default() -> Self {
        Self {
            unload_delay: DEFAULT_UNLOAD_DELAY,
            compact_log_bytes: DEFAULT_COMPACT_LOG_BYTES,
            compact_log_entries: DEFAULT_COMPACT_LOG_ENTRIES,
            mailbox: DEFAULT_MAILBOX,
            max_doc_bytes: DEFAULT_MAX_DOC_BYTES,
            awareness_interval: DEFAULT_AWARENESS_INTERVAL,
            event_history: DEFAULT_EVENT_HISTORY,
            max_presence_clients: DEFAULT_MAX_PRESENCE_CLIENTS,
            max_presence_bytes: DEFAULT_MAX_PRESENCE_BYTES,
        }
    }
}
