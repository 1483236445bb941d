//! The real server core the targets talk to: a [`Registry`] over a [`SledStore`] in a scratch
//! directory, restartable from that store, and peers joined to it through real peer queues.

use std::sync::Arc;

use bytes::Bytes;
use tandem_core::actor::PeerInfo;
use tandem_core::peer::{queue, Eviction, PeerId, PeerInbox};
use tandem_core::protocol::{decode_frame, withhold, ClientMessage};
use tandem_core::{DocConfig, DocHandle, DocName, Document, Registry, Rights, SledStore};
use yrs::{ReadTxn, StateVector, Update};

/// The document every target uses.
pub const DOC: &str = "fuzz";

/// Frames one simulated peer may have waiting; scripts are short, so a full queue is a bug.
const PEER_QUEUE: usize = 4096;

/// A registry over a sled store in its own scratch directory.
pub struct Server {
    dir: tempfile::TempDir,
    /// `None` only while restarting.
    registry: Option<Registry>,
}

/// Where scratch stores go: memory when the machine has it (fuzzing opens thousands of them).
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let builder = tempfile::Builder::new()
        .prefix("tandem-fuzz-")
        .tempdir_in(shm);
    builder.unwrap_or_else(|_| tempfile::tempdir().expect("a scratch directory"))
}

fn open(dir: &std::path::Path) -> Registry {
    // sled's background threads may hold the previous instance's directory lock for a moment
    // after the last handle is dropped.
    let mut attempts = 0;
    let store = loop {
        match SledStore::open(dir) {
            Ok(store) => break store,
            Err(error) if attempts < 400 && error.to_string().contains("lock") => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(error) => panic!("the scratch store does not open: {error}"),
        }
    };
    let config = DocConfig {
        // Small thresholds so scripts exercise compaction too.
        compact_log_entries: 16,
        ..DocConfig::default()
    };
    Registry::new(Arc::new(store), config)
}

impl Server {
    /// Starts a server on a new, empty store.
    pub fn start() -> Self {
        let dir = scratch_dir();
        let registry = Some(open(dir.path()));
        Self { dir, registry }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        self.registry.as_ref().expect("the server is running")
    }

    /// Stops every document (each stores what it applied), closes the store and opens it again.
    pub async fn restart(&mut self) {
        self.registry()
            .shutdown()
            .await
            .expect("the store flushes at shutdown");
        // sled releases its directory lock once the last handle is gone: the registry's.
        self.registry = None;
        self.registry = Some(open(self.dir.path()));
    }

    /// The fuzzed document, loaded if it was not.
    pub async fn document(&self) -> Document {
        self.registry()
            .document(DOC)
            .await
            .expect("the fuzzed document loads")
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.registry()
            .shutdown()
            .await
            .expect("the store flushes at shutdown");
    }
}

/// One connection of a simulated peer to the fuzzed document.
pub struct Connection {
    /// The peer's id in the document.
    pub peer: PeerId,
    /// The document's actor.
    pub handle: DocHandle,
    /// What the document sends the peer.
    pub inbox: PeerInbox,
    rights: Rights,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The frame did not decode (close 1002 on a socket).
    Malformed,
    /// The document evicted the peer.
    Evicted(Eviction),
    /// The document is gone (restart, failure): reconnect.
    Gone,
}

impl Connection {
    /// Joins the fuzzed document with `rights`, as a WebSocket connection does.
    pub async fn join(server: &Server, rights: Rights) -> Self {
        let peer = PeerId::next();
        let (outbox, inbox) = queue(PEER_QUEUE);
        let handle = server
            .registry()
            .join_as(&DocName::from(DOC), peer, outbox, PeerInfo::default())
            .await
            .expect("the fuzzed document accepts peers");
        Self {
            peer,
            handle,
            inbox,
            rights,
        }
    }

    /// Sends one binary frame the way the WebSocket connection task does: decoded whole,
    /// stripped of what the peer's rights do not allow, handed to the document.
    pub async fn send(&mut self, frame: &[u8]) -> Result<(), Closed> {
        let mut messages: Vec<ClientMessage> =
            decode_frame(frame).map_err(|_| Closed::Malformed)?;
        withhold(&mut messages, self.rights);
        if messages.is_empty() {
            return Ok(());
        }
        self.handle
            .send(self.peer, messages)
            .await
            .map_err(|_| Closed::Gone)
    }

    /// Waits until the document handled everything sent before, then takes what it queued for
    /// the peer. Reports an eviction.
    pub async fn receive(&mut self) -> Result<Vec<Bytes>, Closed> {
        // A request through the same mailbox runs after every message sent before it.
        let alive = self.handle.stats().await.is_ok();
        let mut frames = Vec::new();
        while let Some(frame) = self.inbox.try_recv() {
            frames.push(frame);
        }
        let signal = self.inbox.eviction();
        let evicted = tokio::select! {
            biased;
            reason = signal.evicted() => Some(reason),
            () = std::future::ready(()) => None,
        };
        match (evicted, alive) {
            (Some(reason), _) => Err(Closed::Evicted(reason)),
            (None, false) => Err(Closed::Gone),
            (None, true) => Ok(frames),
        }
    }

    /// Leaves the document.
    pub async fn leave(self) {
        self.handle.leave(self.peer).await;
    }
}

/// The fuzzed document's full state, state vector and JSON, read from the server.
pub async fn server_state(server: &Server) -> (Vec<u8>, StateVector, serde_json::Value) {
    let document = server.document().await;
    let state = document.encode_state().await.expect("the document encodes");
    let (json, sv) = document
        .get_json_with_state_vector()
        .await
        .expect("the document reads");
    (state, sv, json)
}

/// Checks that a full state decodes and loads into a fresh document without pending parts, and
/// returns that document's state vector and JSON (as the server computes JSON).
pub fn reload(state: &[u8]) -> (StateVector, serde_json::Value) {
    use yrs::updates::decoder::Decode;
    use yrs::Transact;
    let update = Update::decode_v1(state).expect("the stored state decodes");
    let doc = yrs::Doc::new();
    let mut txn = doc.transact_mut();
    txn.apply_update(update).expect("the stored state applies");
    assert!(
        !txn.has_missing_updates(),
        "the state has parts that depend on missing changes"
    );
    drop(txn);
    let txn = doc.transact();
    (txn.state_vector(), tandem_core::document::json_of(&txn))
}
