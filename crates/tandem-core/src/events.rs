//! What documents report as they live: loaded, changed, unloaded. Servers turn these into hooks,
//! webhooks or metrics; the document never waits for them.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::name::DocName;
use crate::peer::PeerId;

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A connected peer.
    Peer(PeerId),
    /// Server code, through a [`Document`](crate::Document).
    Server,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Peer(peer) => write!(f, "peer {peer}"),
            Origin::Server => f.write_str("server"),
        }
    }
}

/// Something that happened to a document.
#[derive(Debug, Clone)]
pub enum DocEvent {
    /// The document was loaded from the store into memory.
    Loaded {
        /// Which document.
        doc: DocName,
    },
    /// The document changed.
    Changed {
        /// Which document.
        doc: DocName,
        /// Exactly what changed, as a Yjs v1 update.
        update: Bytes,
        /// Who changed it.
        origin: Origin,
    },
    /// A custom event was sent to the document's peers.
    Event {
        /// Which document.
        doc: DocName,
        /// The event's sequence number in the document.
        seq: u64,
        /// The event as peers receive it (JSON with `seq`, `type`, `data`, `from`, `at`).
        json: Bytes,
    },
    /// The document was stored compactly and left memory.
    Unloaded {
        /// Which document.
        doc: DocName,
    },
}

/// Receives document events. Called from the document's task, so it must return at once:
/// queue the event and handle it elsewhere.
pub type EventSink = Arc<dyn Fn(DocEvent) + Send + Sync>;
