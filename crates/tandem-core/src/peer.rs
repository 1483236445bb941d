//! A peer's side of a document: its id and the bounded queue of frames the document sends it.
//!
//! The document never waits for a peer. It puts frames into the peer's bounded queue with
//! `try_send`; when the queue is full the peer has fallen behind, and the document evicts it
//! (the connection closes with 1013 and the client resyncs on reconnect, losslessly, because the
//! CRDT state is on the server). Buffering without bound or dropping an update would each be worse.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Identifies one connection to one document, unique within the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl PeerId {
    /// A fresh id, never returned before in this process.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a document cut a peer off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// The peer's outbound queue was full: it reads slower than the document changes.
    TooSlow,
    /// The document could not store an update and stopped; the peer should reconnect.
    DocumentFailed,
    /// The peer sent an update that decoded but could not be integrated.
    InvalidUpdate,
    /// The peer sent an update that would have made the document larger than its limit; the
    /// update was refused.
    DocumentTooLarge,
    /// The document was deleted.
    DocumentDeleted,
    /// The peer sent an update that would have nested shared types deeper than
    /// [`MAX_TYPE_NESTING`](crate::nesting::MAX_TYPE_NESTING); the update was refused.
    NestedTooDeeply,
    /// The peer's awareness update broke a presence limit: too many client ids for one
    /// connection, or too many bytes of states in the document.
    PresenceLimit(crate::awareness::PresenceLimit),
}

/// What became of a frame pushed to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the peer.
    Queued,
    /// The queue was full; the peer is evicted.
    Evicted,
    /// The connection is gone.
    Gone,
}

#[derive(Debug, Default)]
struct Shared {
    evicted: CancellationToken,
    reason: OnceLock<Eviction>,
}

/// The document's end of a peer: where it puts frames for the peer.
#[derive(Debug, Clone)]
pub struct PeerOutbox {
    frames: mpsc::Sender<Bytes>,
    shared: Arc<Shared>,
}

/// The connection's end of a peer: the frames to write to the socket, and the eviction signal.
#[derive(Debug)]
pub struct PeerInbox {
    frames: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
}

/// Creates a peer queue holding at most `capacity` frames.
pub fn queue(capacity: usize) -> (PeerOutbox, PeerInbox) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let shared = Arc::new(Shared::default());
    (
        PeerOutbox {
            frames: tx,
            shared: shared.clone(),
        },
        PeerInbox { frames: rx, shared },
    )
}

impl PeerOutbox {
    /// Queues a frame; on a full queue the peer is evicted.
    pub fn push(&self, frame: Bytes) -> Delivery {
        match self.frames.try_send(frame) {
            Ok(()) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.evict(Eviction::TooSlow);
                Delivery::Evicted
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Gone,
        }
    }

    /// Cuts the peer off; the first reason given is the one reported.
    pub fn evict(&self, reason: Eviction) {
        let _ = self.shared.reason.set(reason);
        self.shared.evicted.cancel();
    }
}

impl PeerInbox {
    /// The next frame to send, or `None` once the document dropped the peer.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.frames.recv().await
    }

    /// The next frame if one is already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.frames.try_recv().ok()
    }

    /// The signal that fires when the document evicts this peer.
    pub fn eviction(&self) -> EvictionSignal {
        EvictionSignal {
            shared: self.shared.clone(),
        }
    }
}

/// Fires when the document evicts a peer.
#[derive(Debug, Clone)]
pub struct EvictionSignal {
    shared: Arc<Shared>,
}

impl EvictionSignal {
    /// Resolves when the document evicted the peer, with the reason.
    pub async fn evicted(&self) -> Eviction {
        self.shared.evicted.cancelled().await;
        self.shared
            .reason
            .get()
            .copied()
            .unwrap_or(Eviction::TooSlow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_evicts_the_peer() {
        let (outbox, mut inbox) = queue(2);
        assert_eq!(outbox.push(Bytes::from_static(b"a")), Delivery::Queued);
        assert_eq!(outbox.push(Bytes::from_static(b"b")), Delivery::Queued);
        assert_eq!(outbox.push(Bytes::from_static(b"c")), Delivery::Evicted);
        assert_eq!(inbox.eviction().evicted().await, Eviction::TooSlow);
        assert_eq!(inbox.recv().await.as_deref(), Some(&b"a"[..]));
        drop(inbox);
        assert_eq!(outbox.push(Bytes::from_static(b"d")), Delivery::Gone);
    }
}
