//! The real server core the targets talk to: a [`Registry`] over a real [`SledStore`], a
//! document of its own per run, restartable from the store, and peers joined to it through real
//! peer queues.
//!
//! Every run of a process shares one sled database in a scratch directory (in memory when
//! `/dev/shm` exists) and uses a document name of its own. A restart shuts the registry down
//! (every document stores what it applied and unloads) and starts a new one over the same
//! database, so the document is loaded back from what was stored. The database itself stays
//! open: opening sled costs tens of milliseconds, which would cut fuzzing speed tenfold, and
//! sled's own recovery after a kill is what the SIGKILL crash test checks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tandem_core::actor::PeerInfo;
use tandem_core::peer::{queue, Eviction, PeerId, PeerInbox};
use tandem_core::protocol::{decode_frame, withhold, ClientMessage};
use tandem_core::{DocConfig, DocHandle, DocName, Document, Registry, Rights, SledStore, Store};
use yrs::{ReadTxn, StateVector, Update};

/// Frames one simulated peer may have waiting; scripts are short, so a full queue is a bug.
const PEER_QUEUE: usize = 4096;

/// The database every run of this process shares, and the directory it lives in.
fn shared_store() -> Arc<SledStore> {
    static STORE: OnceLock<(tempfile::TempDir, Arc<SledStore>)> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let shm = std::path::Path::new("/dev/shm");
            let dir = tempfile::Builder::new()
                .prefix("tandem-fuzz-")
                .tempdir_in(shm)
                .or_else(|_| tempfile::tempdir())
                .expect("a scratch directory");
            let store = SledStore::open(dir.path()).expect("the scratch store opens");
            (dir, Arc::new(store))
        })
        .1
        .clone()
}

fn registry(store: &Arc<SledStore>) -> Registry {
    let config = DocConfig {
        // Small thresholds so scripts exercise compaction too.
        compact_log_entries: 16,
        ..DocConfig::default()
    };
    Registry::new(store.clone(), config)
}

/// A registry over the shared store, serving one document of its own.
pub struct Server {
    store: Arc<SledStore>,
    doc: DocName,
    registry: Registry,
}

impl Server {
    /// Starts a server with a new, empty document.
    pub fn start() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let store = shared_store();
        let doc = DocName::from(format!("fuzz-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        Self {
            registry: registry(&store),
            store,
            doc,
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The fuzzed document's name.
    pub fn doc(&self) -> &DocName {
        &self.doc
    }

    /// Stops every document (each stores what it applied and unloads) and starts a new
    /// registry over the store, which loads the document back from what was stored.
    pub async fn restart(&mut self) {
        self.registry
            .shutdown()
            .await
            .expect("the store flushes at shutdown");
        self.registry = registry(&self.store);
    }

    /// The fuzzed document, loaded if it was not.
    pub async fn document(&self) -> Document {
        self.registry
            .document(self.doc.clone())
            .await
            .expect("the fuzzed document loads")
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.registry
            .shutdown()
            .await
            .expect("the store flushes at shutdown");
        self.store
            .delete(&self.doc)
            .await
            .expect("the scratch document is removed");
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
            .join_as(server.doc(), peer, outbox, PeerInfo::default())
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

/// Runs one fuzz input's future to completion on a fresh single-threaded runtime, so every
/// input starts from the same scheduler state.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
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
    (
        txn.state_vector(),
        tandem_core::document::json_of(&txn).expect("nesting is bounded"),
    )
}
