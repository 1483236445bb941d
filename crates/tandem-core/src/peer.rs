//! A peer's side of a document: its id and the bounded queue of frames the document sends it.
//!
//! The document never waits for a peer. It puts frames into the peer's bounded queue with
//! `try_send`; when the queue is full the peer has fallen behind, and the document evicts it
//! (the connection closes with 1013 and the client resyncs on reconnect, losslessly, because the
//! CRDT state is on the server). Buffering without bound or dropping an update would each be worse.
//!
//! A queue is bounded in frames and in bytes: a frame is refused (and the peer evicted) once the
//! bytes already waiting reach the byte limit, so a queue holds at most the limit plus one frame,
//! and a single frame larger than the limit (a big document's sync step 2) still goes to a peer
//! that keeps up. The queue also remembers which [`Answer`]s wait in it, so that the document
//! computes a costly answer again only once the previous one left the queue.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// A costly answer to a peer's request, of which at most one waits in the peer's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A sync step 2 answering the peer's sync step 1 (the document encoded against its state
    /// vector).
    SyncStep2,
    /// Every awareness state, answering the peer's awareness query.
    Awareness,
}

impl Answer {
    fn index(self) -> usize {
        match self {
            Self::SyncStep2 => 0,
            Self::Awareness => 1,
        }
    }
}

/// What became of a frame pushed to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the peer.
    Queued,
    /// The queue was full (in frames or bytes); the peer is evicted.
    Evicted,
    /// The connection is gone.
    Gone,
}

#[derive(Debug, Default)]
struct Shared {
    evicted: CancellationToken,
    reason: OnceLock<Eviction>,
    /// Bytes of the frames waiting in the queue.
    queued_bytes: AtomicUsize,
    /// Per [`Answer`]: whether one waits in the queue.
    answering: [AtomicBool; 2],
}

/// A frame in the queue, with the answer it is, if any.
#[derive(Debug)]
struct Queued {
    frame: Bytes,
    answer: Option<Answer>,
}

/// The document's end of a peer: where it puts frames for the peer.
#[derive(Debug, Clone)]
pub struct PeerOutbox {
    frames: mpsc::Sender<Queued>,
    max_bytes: usize,
    shared: Arc<Shared>,
}

/// The connection's end of a peer: the frames to write to the socket, and the eviction signal.
#[derive(Debug)]
pub struct PeerInbox {
    frames: mpsc::Receiver<Queued>,
    shared: Arc<Shared>,
}

/// Creates a peer queue holding at most `capacity` frames and
/// [`DEFAULT_PEER_QUEUE_BYTES`](crate::config::DEFAULT_PEER_QUEUE_BYTES) bytes.
pub fn queue(capacity: usize) -> (PeerOutbox, PeerInbox) {
    bounded_queue(capacity, crate::config::DEFAULT_PEER_QUEUE_BYTES)
}

/// Creates a peer queue holding at most `capacity` frames; once `max_bytes` bytes wait in it,
/// the next frame evicts the peer.
pub fn bounded_queue(capacity: usize, max_bytes: usize) -> (PeerOutbox, PeerInbox) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let shared = Arc::new(Shared::default());
    (
        PeerOutbox {
            frames: tx,
            max_bytes: max_bytes.max(1),
            shared: shared.clone(),
        },
        PeerInbox { frames: rx, shared },
    )
}

impl PeerOutbox {
    /// Queues a frame; on a full queue (in frames or bytes) the peer is evicted.
    pub fn push(&self, frame: Bytes) -> Delivery {
        self.enqueue(frame, None)
    }

    /// Queues a frame that is `answer`; until the connection takes it from the queue,
    /// [`answering`](Self::answering) says so.
    pub fn push_answer(&self, frame: Bytes, answer: Answer) -> Delivery {
        self.enqueue(frame, Some(answer))
    }

    /// Whether an `answer` pushed earlier still waits in the queue.
    pub fn answering(&self, answer: Answer) -> bool {
        self.shared.answering[answer.index()].load(Ordering::Acquire)
    }

    fn enqueue(&self, frame: Bytes, answer: Option<Answer>) -> Delivery {
        if self.frames.is_closed() {
            return Delivery::Gone;
        }
        let len = frame.len();
        let queued = &self.shared.queued_bytes;
        if queued.load(Ordering::Acquire) >= self.max_bytes {
            self.evict(Eviction::TooSlow);
            return Delivery::Evicted;
        }
        // Counted before it can be taken, so that taking it never subtracts more than was added.
        queued.fetch_add(len, Ordering::AcqRel);
        if let Some(answer) = answer {
            self.shared.answering[answer.index()].store(true, Ordering::Release);
        }
        match self.frames.try_send(Queued { frame, answer }) {
            Ok(()) => Delivery::Queued,
            Err(error) => {
                queued.fetch_sub(len, Ordering::AcqRel);
                if let Some(answer) = answer {
                    self.shared.answering[answer.index()].store(false, Ordering::Release);
                }
                match error {
                    mpsc::error::TrySendError::Full(_) => {
                        self.evict(Eviction::TooSlow);
                        Delivery::Evicted
                    }
                    mpsc::error::TrySendError::Closed(_) => Delivery::Gone,
                }
            }
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
        let queued = self.frames.recv().await?;
        Some(self.taken(queued))
    }

    /// The next frame if one is already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        let queued = self.frames.try_recv().ok()?;
        Some(self.taken(queued))
    }

    /// Bytes of the frames waiting in the queue.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued_bytes.load(Ordering::Acquire)
    }

    fn taken(&self, queued: Queued) -> Bytes {
        self.shared
            .queued_bytes
            .fetch_sub(queued.frame.len(), Ordering::AcqRel);
        if let Some(answer) = queued.answer {
            self.shared.answering[answer.index()].store(false, Ordering::Release);
        }
        queued.frame
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

    #[tokio::test]
    async fn a_queue_over_its_bytes_evicts_the_peer() {
        let (outbox, mut inbox) = bounded_queue(100, 1_000);
        // A single frame larger than the whole limit goes to a peer that keeps up.
        assert_eq!(outbox.push(Bytes::from(vec![0; 5_000])), Delivery::Queued);
        assert_eq!(inbox.queued_bytes(), 5_000);
        assert_eq!(inbox.recv().await.map(|f| f.len()), Some(5_000));
        assert_eq!(inbox.queued_bytes(), 0);
        for _ in 0..3 {
            assert_eq!(outbox.push(Bytes::from(vec![0; 300])), Delivery::Queued);
        }
        assert_eq!(inbox.try_recv().map(|f| f.len()), Some(300));
        assert_eq!(outbox.push(Bytes::from(vec![0; 300])), Delivery::Queued);
        assert_eq!(inbox.queued_bytes(), 900);
        assert_eq!(outbox.push(Bytes::from(vec![0; 300])), Delivery::Queued);
        // 1,200 bytes wait: the limit plus less than one frame. The next frame is refused.
        assert_eq!(outbox.push(Bytes::from_static(b"x")), Delivery::Evicted);
        assert_eq!(inbox.eviction().evicted().await, Eviction::TooSlow);
        assert_eq!(inbox.queued_bytes(), 1_200);
    }

    #[test]
    fn an_answer_is_outstanding_until_taken() {
        let (outbox, mut inbox) = bounded_queue(8, 1_000);
        assert!(!outbox.answering(Answer::SyncStep2));
        outbox.push(Bytes::from_static(b"update"));
        outbox.push_answer(Bytes::from_static(b"step 2"), Answer::SyncStep2);
        assert!(outbox.answering(Answer::SyncStep2));
        assert!(!outbox.answering(Answer::Awareness));
        assert_eq!(inbox.try_recv().as_deref(), Some(&b"update"[..]));
        assert!(outbox.answering(Answer::SyncStep2));
        assert_eq!(inbox.try_recv().as_deref(), Some(&b"step 2"[..]));
        assert!(!outbox.answering(Answer::SyncStep2));
    }
}
