//! One task per loaded document: the `DocActor` owns the `yrs::Doc`, its awareness and its
//! peers; everything else talks to it through a cloneable [`DocHandle`].
//!
//! The actor applies updates, answers sync requests, fans frames out (encoded once, shared by
//! reference count) and keeps the store up to date: applied updates wait in `pending` while at
//! most one store operation is in flight, so a burst of updates becomes one append and one flush
//! (group commit). When the log grows past its thresholds the next store operation is a
//! compaction instead, whose snapshot also covers everything pending. Some time after the last
//! peer leaves, the actor compacts, deregisters and ends.
//!
//! Reading this file, top to bottom: the errors and peer types; [`DocHandle`], the requests
//! other tasks make; `DocActor::run` and `handle`, its loop over commands; `on_message` and
//! `apply`, what a peer's frames do; `broadcast`, `send_to` and `cut_off`, the fan-out;
//! awareness (`awareness_changed`, `send_awareness`); custom events (`emit`, `replay_events`);
//! the store (`start_persist`, `persisted`, `snapshot`, compaction); and the endings
//! (`unload`, `delete`, `fail`, `stop_broken`).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use yrs::{
    Doc, IdSet, ReadTxn, StateVector, Transact, Transaction, TransactionMut, Update, WriteTxn,
};

use crate::awareness::{AwarenessTable, ClientState, PresenceLimits};
use crate::config::DocConfig;
use crate::events::{DocEvent, EventSink, Origin};
use crate::integrity::{self, Claims};
use crate::name::DocName;
use crate::nesting::{NestingIndex, TooDeep, MAX_TYPE_NESTING};
use crate::peer::{Answer, Delivery, Eviction, PeerId, PeerOutbox};
use crate::protocol::{self, ClientEvent, ClientMessage, ReceivedUpdate};
use crate::registry::RegistryInner;
use crate::store::{LogEntry, Snapshot, Store, StoreError, StoredEvent};

/// How often awareness states are checked for expiry (y-protocols checks every 3 s too).
const AWARENESS_SWEEP: Duration = Duration::from_secs(3);

/// Commands taken from the mailbox in one go before the actor looks at its store again; bounds
/// the latency a long burst adds to persistence.
const BATCH: usize = 128;

/// Why a document operation failed.
#[derive(Debug, Error, Clone)]
pub enum DocError {
    /// The document was unloading when the request arrived; asking the registry again loads it.
    #[error("document is unloading")]
    Unloaded,
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// The store failed; the document stopped.
    #[error("store failed: {0}")]
    Store(Arc<StoreError>),
    /// A server-side read or change panicked; the document went on without it.
    #[error("the operation panicked")]
    Aborted,
    /// The document was deleted while the request waited.
    #[error("document was deleted")]
    Deleted,
    /// The document nests shared types deeper than
    /// [`MAX_TYPE_NESTING`] (it was stored before the limit
    /// existed), too deep to walk safely.
    #[error("the document nests shared types deeper than {limit}")]
    NestedTooDeeply {
        /// The deepest nesting walked.
        limit: u16,
    },
}

/// Why an update from server code was not applied.
#[derive(Debug, Error, Clone)]
pub enum UpdateError {
    /// The bytes are not a Yjs v1 update.
    #[error("malformed update")]
    Malformed,
    /// The update would make the document larger than its limit.
    #[error("the document would exceed its size limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes as stored.
        limit: u64,
    },
    /// The update decoded but yrs could not integrate it.
    #[error("update could not be integrated: {0}")]
    Invalid(String),
    /// The update would nest a shared type deeper than
    /// [`MAX_TYPE_NESTING`]; nothing of it was applied.
    #[error("the update nests shared types {depth} deep, deeper than the limit of {limit}")]
    TooDeep {
        /// The depth the update asked for.
        depth: u16,
        /// The deepest nesting accepted.
        limit: u16,
    },
    /// The update depends on changes the document does not have (an update from before was
    /// lost or is still on its way). An update with a clock gap (structs of a client starting
    /// past the document's clock of that client) was refused whole; of one whose structs or
    /// deletions refer to missing structs, what could be integrated was. The sender should
    /// send what the document lacks, computed from its state vector.
    #[error("the update depends on changes the document lacks")]
    Incomplete,
    /// The document is unavailable.
    #[error(transparent)]
    Document(#[from] DocError),
}

/// A read run inside the document's actor.
pub(crate) type ReadJob = Box<dyn FnOnce(&Transaction<'_>) + Send>;
/// A change run inside the document's actor.
pub(crate) type WriteJob = Box<dyn FnOnce(&mut TransactionMut<'_>) + Send>;

/// What a document knows about a peer besides its queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Who the peer is (a token's `sub`); the same subject may take over its own awareness
    /// clients from an older connection.
    pub subject: Option<String>,
    /// Whether the peer receives custom events (it opted in with `?events=1`).
    pub events: bool,
    /// Whether the peer expects the server's sync step 1 in answer to its own rather than when
    /// it joins (Hocuspocus: the provider's `forceSync` counts on that answer).
    pub sync_on_request: bool,
}

/// A joined peer.
struct Peer {
    outbox: PeerOutbox,
    info: PeerInfo,
}

pub(crate) enum Command {
    Join {
        peer: PeerId,
        outbox: PeerOutbox,
        info: PeerInfo,
        respond_to: oneshot::Sender<Result<(), DocError>>,
    },
    Messages {
        peer: PeerId,
        messages: Vec<ClientMessage>,
    },
    Leave {
        peer: PeerId,
    },
    Persist {
        respond_to: oneshot::Sender<Result<(), DocError>>,
    },
    /// Runs a read; a document that is unloading (or failed) hands the job back through
    /// `returned`, with the reason.
    Read {
        job: ReadJob,
        returned: oneshot::Sender<(ReadJob, DocError)>,
    },
    /// Runs a change; a document that is unloading (or failed) hands the job back through
    /// `returned`, with the reason.
    Write {
        job: WriteJob,
        returned: oneshot::Sender<(WriteJob, DocError)>,
    },
    /// Applies an update from server code; with `durable`, answers once it is in the store.
    Apply {
        update: ReceivedUpdate,
        durable: bool,
        respond_to: oneshot::Sender<Result<(), UpdateError>>,
    },
    /// Answers whether the document already contains everything an update carries.
    Covers {
        claims: Claims,
        respond_to: oneshot::Sender<bool>,
    },
    /// Sends a custom event from server code; answers with its sequence number.
    Emit {
        from: String,
        kind: String,
        data: String,
        respond_to: oneshot::Sender<Result<u64, DocError>>,
    },
    /// Reports every awareness state.
    Presence {
        respond_to: oneshot::Sender<Vec<ClientState>>,
    },
    /// Reports the document's peers and size.
    Stats {
        respond_to: oneshot::Sender<DocStats>,
    },
    /// Evicts every peer, removes the document from the store and ends the actor.
    Delete {
        respond_to: oneshot::Sender<Result<(), DocError>>,
    },
}

/// A loaded document's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocStats {
    /// Peers joined now.
    pub peers: usize,
    /// Size as stored (snapshot plus log), updates not yet flushed included.
    pub size: u64,
    /// The sequence number of the newest custom event, 0 before the first.
    pub last_event: u64,
}

/// A cheap, cloneable handle to a loaded document's actor.
#[derive(Clone, Debug)]
pub struct DocHandle {
    name: DocName,
    pub(crate) actor_id: u64,
    tx: mpsc::Sender<Command>,
}

impl DocHandle {
    /// The document's name.
    pub fn name(&self) -> &DocName {
        &self.name
    }

    async fn request(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), DocError>>) -> Command,
    ) -> Result<(), DocError> {
        let (respond_to, response) = oneshot::channel();
        self.tx
            .send(make(respond_to))
            .await
            .map_err(|_| DocError::Unloaded)?;
        response.await.unwrap_or(Err(DocError::Unloaded))
    }

    /// Adds a peer. The document queues sync step 1 and the current awareness states for it
    /// before anything else.
    pub(crate) async fn join(
        &self,
        peer: PeerId,
        outbox: PeerOutbox,
        info: PeerInfo,
    ) -> Result<(), DocError> {
        self.request(|respond_to| Command::Join {
            peer,
            outbox,
            info,
            respond_to,
        })
        .await
    }

    /// Hands decoded messages from a joined peer to the document, in order.
    pub async fn send(&self, peer: PeerId, messages: Vec<ClientMessage>) -> Result<(), DocError> {
        self.tx
            .send(Command::Messages { peer, messages })
            .await
            .map_err(|_| DocError::Unloaded)
    }

    /// Removes a peer and its awareness states.
    pub async fn leave(&self, peer: PeerId) {
        // A document that is gone has no peers left to remove.
        let _ = self.tx.send(Command::Leave { peer }).await;
    }

    /// Waits until every update applied before this call is durable in the store.
    pub async fn persist(&self) -> Result<(), DocError> {
        self.request(|respond_to| Command::Persist { respond_to })
            .await
    }

    /// Queues a read. `Err` gives the job back: the document is unloading and a new actor must
    /// run it. `Ok` carries what tells whether it ran.
    pub(crate) async fn read(
        &self,
        job: ReadJob,
    ) -> Result<oneshot::Receiver<(ReadJob, DocError)>, ReadJob> {
        let (returned, comes_back) = oneshot::channel();
        match self.tx.send(Command::Read { job, returned }).await {
            Ok(()) => Ok(comes_back),
            Err(mpsc::error::SendError(Command::Read { job, .. })) => Err(job),
            Err(_) => unreachable!("the command sent is the one returned"),
        }
    }

    /// Queues a change; see [`DocHandle::read`].
    pub(crate) async fn write(
        &self,
        job: WriteJob,
    ) -> Result<oneshot::Receiver<(WriteJob, DocError)>, WriteJob> {
        let (returned, comes_back) = oneshot::channel();
        match self.tx.send(Command::Write { job, returned }).await {
            Ok(()) => Ok(comes_back),
            Err(mpsc::error::SendError(Command::Write { job, .. })) => Err(job),
            Err(_) => unreachable!("the command sent is the one returned"),
        }
    }

    /// Whether the document already contains every struct and every deletion of `update`, so
    /// that applying it would change nothing. The update's ranges are sorted and merged here, in
    /// the caller's task; the document compares ranges, never clocks, and answers `false`
    /// without a look for more than `integrity::MAX_CLAIMED_DELETIONS` deleted ranges.
    pub async fn covers(&self, update: ReceivedUpdate) -> Result<bool, DocError> {
        let claims = Claims::of(&update.update);
        let (respond_to, response) = oneshot::channel();
        self.tx
            .send(Command::Covers { claims, respond_to })
            .await
            .map_err(|_| DocError::Unloaded)?;
        response.await.map_err(|_| DocError::Unloaded)
    }

    /// Sends a custom event from server code to every opted-in peer; returns its sequence number.
    pub(crate) async fn emit(&self, kind: String, data: String) -> Result<u64, DocError> {
        self.request_emit("server".to_owned(), kind, data).await
    }

    /// Sends a custom event from server code on behalf of `from` (the event's `from` field) to
    /// every opted-in peer; returns its sequence number. A document that is unloading answers
    /// [`DocError::Unloaded`]: take a new handle from the registry and try again.
    pub async fn emit_as(
        &self,
        from: String,
        kind: String,
        data: &serde_json::Value,
    ) -> Result<u64, DocError> {
        self.request_emit(from, kind, data.to_string()).await
    }

    async fn request_emit(
        &self,
        from: String,
        kind: String,
        data: String,
    ) -> Result<u64, DocError> {
        let (respond_to, response) = oneshot::channel();
        self.tx
            .send(Command::Emit {
                from,
                kind,
                data,
                respond_to,
            })
            .await
            .map_err(|_| DocError::Unloaded)?;
        response.await.unwrap_or(Err(DocError::Unloaded))
    }

    /// Applies an update as if a peer had sent it, size limit included; with `durable`, answers
    /// only once the document's state after the update is in the store.
    pub(crate) async fn apply(
        &self,
        update: ReceivedUpdate,
        durable: bool,
    ) -> Result<(), UpdateError> {
        let (respond_to, response) = oneshot::channel();
        self.tx
            .send(Command::Apply {
                update,
                durable,
                respond_to,
            })
            .await
            .map_err(|_| DocError::Unloaded)?;
        response
            .await
            .unwrap_or(Err(UpdateError::Document(DocError::Unloaded)))
    }

    /// Every client's current awareness state, with the peer that published it.
    pub async fn presence(&self) -> Result<Vec<ClientState>, DocError> {
        let (respond_to, response) = oneshot::channel();
        self.tx
            .send(Command::Presence { respond_to })
            .await
            .map_err(|_| DocError::Unloaded)?;
        response.await.map_err(|_| DocError::Unloaded)
    }

    /// The document's peers and size.
    pub async fn stats(&self) -> Result<DocStats, DocError> {
        let (respond_to, response) = oneshot::channel();
        self.tx
            .send(Command::Stats { respond_to })
            .await
            .map_err(|_| DocError::Unloaded)?;
        response.await.map_err(|_| DocError::Unloaded)
    }

    /// Deletes the document: every peer is evicted ([`Eviction::DocumentDeleted`]), the store
    /// forgets it and the actor ends. Requests queued behind the deletion go to a new, empty
    /// document.
    pub async fn delete(&self) -> Result<(), DocError> {
        self.request(|respond_to| Command::Delete { respond_to })
            .await
    }
}

/// Creates a handle and its actor, which the caller spawns.
pub(crate) fn spawn_parts(
    name: DocName,
    actor_id: u64,
    store: Arc<dyn Store>,
    config: DocConfig,
    registry: Weak<RegistryInner>,
    events: Option<EventSink>,
) -> (DocHandle, DocActor, mpsc::Receiver<Command>) {
    let (tx, rx) = mpsc::channel(config.mailbox.max(1));
    let handle = DocHandle {
        name: name.clone(),
        actor_id,
        tx,
    };
    let actor = DocActor {
        name,
        actor_id,
        doc: Doc::new(),
        awareness: AwarenessTable::with_limits(PresenceLimits {
            clients_per_peer: config.max_presence_clients,
            document_bytes: config.max_presence_bytes,
        }),
        nesting: NestingIndex::default(),
        awareness_changed: BTreeSet::new(),
        awareness_sent: None,
        peers: HashMap::new(),
        history: VecDeque::new(),
        next_event: 1,
        pending_events: Vec::new(),
        store,
        config,
        registry,
        events,
        last_seq: 0,
        durable_seq: 0,
        pending: Vec::new(),
        log_bytes: 0,
        log_entries: 0,
        doc_bytes: 0,
        waiters: Vec::new(),
        idle_since: Some(Instant::now()),
        deleting: None,
        broken: false,
        deleted: None,
    };
    (handle, actor, rx)
}

/// Someone waiting for a sequence number to become durable.
enum Waiter {
    /// [`DocHandle::persist`].
    Persist(oneshot::Sender<Result<(), DocError>>),
    /// [`DocHandle::apply_durable`]: the update was applied and waits for its flush.
    Apply(oneshot::Sender<Result<(), UpdateError>>),
}

impl Waiter {
    fn send(self, outcome: Result<(), DocError>) {
        match self {
            Waiter::Persist(respond_to) => {
                let _ = respond_to.send(outcome);
            }
            Waiter::Apply(respond_to) => {
                let _ = respond_to.send(outcome.map_err(UpdateError::Document));
            }
        }
    }
}

/// What a finished store operation made durable.
type Persisted = Result<u64, StoreError>;

/// The task that owns one document.
pub(crate) struct DocActor {
    name: DocName,
    actor_id: u64,
    doc: Doc,
    awareness: AwarenessTable,
    /// How deeply the document's shared types nest, to refuse updates nesting deeper.
    nesting: NestingIndex,
    /// Clients whose awareness changed since the last awareness frame went out.
    awareness_changed: BTreeSet<u64>,
    /// When the last awareness frame went out.
    awareness_sent: Option<Instant>,
    peers: HashMap<PeerId, Peer>,
    /// The newest custom events, oldest first, at most `config.event_history`.
    history: VecDeque<StoredEvent>,
    /// The sequence number the next custom event gets.
    next_event: u64,
    /// Custom events not yet handed to the store.
    pending_events: Vec<StoredEvent>,
    store: Arc<dyn Store>,
    config: DocConfig,
    registry: Weak<RegistryInner>,
    /// Where loads, changes and unloads are reported, if anyone listens.
    events: Option<EventSink>,
    /// Sequence number of the newest applied update.
    last_seq: u64,
    /// Sequence number of the newest update known to be durable.
    durable_seq: u64,
    /// Applied updates not yet handed to the store.
    pending: Vec<LogEntry>,
    /// Size of the log since the last snapshot, pending updates included.
    log_bytes: u64,
    /// Entries in the log since the last snapshot, pending updates included.
    log_entries: u64,
    /// Size of the document as stored: the snapshot plus the log, pending updates included.
    doc_bytes: u64,
    /// Callers waiting for a sequence number to become durable.
    waiters: Vec<(u64, Waiter)>,
    /// Since when the document has had no peers.
    idle_since: Option<Instant>,
    /// Who asked for the document to be deleted; the run loop deletes after the batch.
    deleting: Option<oneshot::Sender<Result<(), DocError>>>,
    /// yrs panicked while changing the document, which may be half-changed now: the run loop
    /// stops the document after the batch, and the next use reloads it from the store.
    broken: bool,
    /// The document's delete set as of a sequence number (every change takes a new one), kept
    /// for `covers`: building it walks every block of the document.
    deleted: Option<(u64, IdSet)>,
}

impl DocActor {
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) {
        if let Err(error) = self.load().await {
            warn!(%error, "could not load document");
            self.deregister(&mut rx, DocError::Store(Arc::new(error)));
            return;
        }
        let mut in_flight: Option<JoinHandle<Persisted>> = None;
        let mut sweep = tokio::time::interval(AWARENESS_SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if in_flight.is_none() {
                in_flight = self.start_persist();
            }
            let unload_at = self
                .idle_since
                .map(|since| since + self.config.unload_delay);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                done = async { in_flight.as_mut().expect("guarded by precondition").await },
                    if in_flight.is_some() =>
                {
                    in_flight = None;
                    if let Err(error) = self.persisted(done) {
                        self.fail(&mut rx, error);
                        return;
                    }
                }
                command = rx.recv() => {
                    let Some(command) = command else { break };
                    self.handle(command);
                    for _ in 1..BATCH {
                        if self.deleting.is_some() || self.broken {
                            break;
                        }
                        match rx.try_recv() {
                            Ok(command) => self.handle(command),
                            Err(_) => break,
                        }
                    }
                    if self.broken {
                        self.stop_broken(in_flight.take(), &mut rx).await;
                        return;
                    }
                    if let Some(respond_to) = self.deleting.take() {
                        self.delete(in_flight.take(), &mut rx, respond_to).await;
                        return;
                    }
                }
                _ = sweep.tick(), if self.awareness.has_entries() => self.sweep_awareness(),
                _ = tokio::time::sleep_until(self.next_awareness_frame()),
                    if !self.awareness_changed.is_empty() =>
                {
                    self.send_awareness();
                }
                _ = tokio::time::sleep_until(unload_at.unwrap_or_else(Instant::now)),
                    if unload_at.is_some() =>
                {
                    match self.unload(in_flight.take(), &mut rx).await {
                        Ok(true) => return,
                        Ok(false) => {}
                        Err(error) => {
                            self.fail(&mut rx, error);
                            return;
                        }
                    }
                }
            }
        }
        // Shutting down: make everything applied durable, then stop.
        let result = self.drain_store(in_flight.take()).await;
        if let Err(error) = result {
            warn!(%error, "could not store document at shutdown");
        }
        debug!("document stopped");
    }

    async fn load(&mut self) -> Result<(), StoreError> {
        let stored = self.store.load(&self.name).await?;
        let corrupt =
            |what: &str| StoreError::Corrupt(format!("{what} of {} does not decode", self.name));
        {
            let mut txn = self.doc.transact_mut();
            if let Some(snapshot) = &stored.snapshot {
                self.doc_bytes = snapshot.len() as u64;
                let update = protocol::decode_update(snapshot).map_err(|_| corrupt("snapshot"))?;
                txn.apply_update(update).map_err(|_| corrupt("snapshot"))?;
                self.nesting
                    .record(snapshot)
                    .map_err(|_| corrupt("snapshot"))?;
            }
            for entry in &stored.log {
                let update =
                    protocol::decode_update(&entry.update).map_err(|_| corrupt("log entry"))?;
                txn.apply_update(update).map_err(|_| corrupt("log entry"))?;
                self.nesting
                    .record(&entry.update)
                    .map_err(|_| corrupt("log entry"))?;
                self.log_bytes += entry.update.len() as u64;
            }
            self.doc_bytes += self.log_bytes;
        }
        self.log_entries = stored.log.len() as u64;
        if self.config.event_history > 0 {
            let events = self.store.load_events(&self.name).await?;
            self.next_event = events.last().map_or(1, |event| event.seq + 1);
            let skip = events.len().saturating_sub(self.config.event_history);
            self.history = events.into_iter().skip(skip).collect();
        }
        self.last_seq = stored.last_seq();
        self.durable_seq = self.last_seq;
        debug!(
            snapshot_seq = stored.snapshot_seq,
            log = stored.log.len(),
            nesting = self.nesting.deepest(),
            "document loaded"
        );
        self.emit_doc_event(DocEvent::Loaded {
            doc: self.name.clone(),
        });
        Ok(())
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Join {
                peer,
                outbox,
                info,
                respond_to,
            } => self.join(peer, outbox, info, respond_to),
            Command::Messages { peer, messages } => {
                for message in messages {
                    // A peer whose connection ended after the server read its messages is no
                    // longer joined, but what it sent was received and allowed: its changes
                    // and events still count. Only what would be answered or owned by it
                    // (sync requests, presence) is moot.
                    let joined = self.peers.contains_key(&peer);
                    if joined || message.outlives_its_peer() {
                        self.on_message(peer, message);
                    }
                }
            }
            Command::Leave { peer } => self.remove_peer(peer),
            Command::Read { job, returned } => {
                drop(returned);
                self.touch();
                let txn = self.doc.transact();
                if catch_unwind(AssertUnwindSafe(|| job(&txn))).is_err() {
                    warn!("a server-side read panicked");
                }
            }
            Command::Write { job, returned } => {
                drop(returned);
                self.touch();
                self.write(job);
            }
            Command::Apply {
                update,
                durable,
                respond_to,
            } => {
                self.touch();
                let result = self.apply(Origin::Server, update);
                // The same document state that reported the outcome registers the wait, so a
                // store failure in between cannot be missed.
                if durable && result.is_ok() && self.durable_seq < self.last_seq {
                    self.waiters
                        .push((self.last_seq, Waiter::Apply(respond_to)));
                } else {
                    let _ = respond_to.send(result);
                }
            }
            Command::Covers { claims, respond_to } => {
                let _ = respond_to.send(self.covers(&claims));
            }
            Command::Emit {
                from,
                kind,
                data,
                respond_to,
            } => {
                self.touch();
                let seq = self.emit(Origin::Server, &from, &kind, &data);
                let _ = respond_to.send(Ok(seq));
            }
            Command::Persist { respond_to } => {
                if self.durable_seq >= self.last_seq {
                    let _ = respond_to.send(Ok(()));
                } else {
                    self.waiters
                        .push((self.last_seq, Waiter::Persist(respond_to)));
                }
            }
            Command::Presence { respond_to } => {
                let _ = respond_to.send(self.awareness.states());
            }
            Command::Stats { respond_to } => {
                let _ = respond_to.send(DocStats {
                    peers: self.peers.len(),
                    size: self.doc_bytes,
                    last_event: self.next_event - 1,
                });
            }
            Command::Delete { respond_to } => self.deleting = Some(respond_to),
        }
    }

    /// Deletes the document: evicts every peer, waits for the store operation in flight (so
    /// nothing is written after the deletion), removes the document from the store, and leaves
    /// the registry. Requests still queued are refused as `Unloaded`, so their callers retry on
    /// a new actor, which finds the document empty.
    async fn delete(
        &mut self,
        in_flight: Option<JoinHandle<Persisted>>,
        rx: &mut mpsc::Receiver<Command>,
        respond_to: oneshot::Sender<Result<(), DocError>>,
    ) {
        for p in self.peers.values() {
            p.outbox.evict(Eviction::DocumentDeleted);
        }
        self.peers.clear();
        if let Some(job) = in_flight {
            // Its outcome no longer matters: the document is going away.
            let _ = job.await;
        }
        self.pending.clear();
        self.pending_events.clear();
        self.history.clear();
        let result = self.store.delete(&self.name).await;
        for (_, waiter) in self.waiters.drain(..) {
            waiter.send(Err(DocError::Deleted));
        }
        self.deregister(rx, DocError::Unloaded);
        match result {
            Ok(()) => {
                info!("document deleted");
                self.emit_doc_event(DocEvent::Unloaded {
                    doc: self.name.clone(),
                });
                let _ = respond_to.send(Ok(()));
            }
            Err(error) => {
                warn!(%error, "could not delete document");
                let _ = respond_to.send(Err(DocError::Store(Arc::new(error))));
            }
        }
    }

    /// Whether the document already has every struct and deletion claimed. The document's
    /// delete set is built once per change of the document (it takes a walk over every
    /// block), not once per question.
    fn covers(&mut self, claims: &Claims) -> bool {
        let txn = self.doc.transact();
        let state = txn.state_vector();
        let deleted = match self.deleted.take() {
            Some((seq, deleted)) if seq == self.last_seq => deleted,
            _ => txn.snapshot().delete_set,
        };
        drop(txn);
        let coverage = claims.covered_by(&state, &deleted);
        debug!(
            covered = coverage.covered,
            steps = coverage.steps,
            "compared an update with the document"
        );
        self.deleted = Some((self.last_seq, deleted));
        coverage.covered
    }

    fn join(
        &mut self,
        peer: PeerId,
        outbox: PeerOutbox,
        info: PeerInfo,
        respond_to: oneshot::Sender<Result<(), DocError>>,
    ) {
        if !info.sync_on_request {
            let step1 = protocol::encode_sync_step1(&self.doc.transact().state_vector());
            outbox.push(step1);
        }
        if let Some(states) = self.awareness.encode_all() {
            outbox.push(states);
        }
        self.peers.insert(peer, Peer { outbox, info });
        self.idle_since = None;
        debug!(%peer, peers = self.peers.len(), "peer joined");
        let _ = respond_to.send(Ok(()));
    }

    fn on_message(&mut self, peer: PeerId, message: ClientMessage) {
        match message {
            ClientMessage::SyncStep1(sv) => {
                let Some(p) = self.peers.get(&peer) else {
                    return;
                };
                if p.outbox.answering(Answer::SyncStep2) {
                    // An answer to an earlier step 1 still waits in the peer's queue. It holds
                    // everything the document had then that the peer lacked, and every change
                    // since is broadcast to the peer behind it, so an empty step 2 here loses
                    // nothing; it still answers in order (a step 2 proves that everything the
                    // peer sent before its step 1 is applied) without encoding the document
                    // once per request. A Hocuspocus session's step 1 in return went with the
                    // waiting answer too: the provider sends what it made since as updates.
                    self.send_to(peer, protocol::encode_sync_step2(Update::EMPTY_V1));
                    return;
                }
                let asks_back = p.info.sync_on_request;
                let txn = self.doc.transact();
                let step1 = asks_back.then(|| protocol::encode_sync_step1(&txn.state_vector()));
                let update = txn.encode_state_as_update_v1(&sv);
                drop(txn);
                if let Some(step1) = step1 {
                    self.send_to(peer, step1);
                }
                self.send_answer(
                    peer,
                    protocol::encode_sync_step2(&update),
                    Answer::SyncStep2,
                );
            }
            ClientMessage::SyncStep2(update) => self.apply_from(peer, update, false),
            ClientMessage::Update(update) => self.apply_from(peer, update, true),
            ClientMessage::Awareness(update) => {
                let subject = self.peers.get(&peer).and_then(|p| p.info.subject.clone());
                let peers = &self.peers;
                // The same user on another connection may update its clients' states.
                let same_user = |owner: PeerId| {
                    subject.is_some()
                        && peers.get(&owner).and_then(|p| p.info.subject.as_ref())
                            == subject.as_ref()
                };
                let applied = self
                    .awareness
                    .apply(peer, update, Instant::now(), same_user);
                if applied.refused > 0 {
                    debug!(%peer, refused = applied.refused, "refusing awareness for clients another connection owns");
                }
                self.awareness_changed(applied.changed);
                if let Some(limit) = applied.over_limit {
                    warn!(%peer, ?limit, bytes = self.awareness.bytes(), "closing peer: presence limit");
                    self.cut_off(peer, Eviction::PresenceLimit(limit));
                }
            }
            ClientMessage::QueryAwareness => {
                // While an earlier answer waits in the peer's queue the query is dropped: that
                // answer has every state, and every change since is broadcast to the peer.
                let answering = self
                    .peers
                    .get(&peer)
                    .is_none_or(|p| p.outbox.answering(Answer::Awareness));
                if answering {
                    return;
                }
                if let Some(states) = self.awareness.encode_all() {
                    self.send_answer(peer, states, Answer::Awareness);
                }
            }
            ClientMessage::Auth => {}
            ClientMessage::Event(ClientEvent::Emit { kind, data, .. }) => {
                let from = match self.peers.get(&peer).and_then(|p| p.info.subject.clone()) {
                    Some(subject) => subject,
                    None => format!("peer:{peer}"),
                };
                let seq = self.emit(Origin::Peer(peer), &from, &kind, &data);
                let ack = protocol::encode_event(&format!(r#"{{"ack":{seq}}}"#));
                if self.opted_in(peer) {
                    self.send_to(peer, ack);
                }
            }
            ClientMessage::Event(ClientEvent::Since(after)) => {
                if self.opted_in(peer) {
                    self.replay_events(peer, after);
                }
            }
        }
    }

    /// Applies a peer's update; a peer whose update is refused is cut off. A live update that
    /// depends on changes the document lacks is answered with a sync step 1 (`ask_back`): the
    /// peer answers with everything it has that the document lacks. A sync step 2 is that
    /// answer already; if it is still incomplete the peer lacks the changes too (they come from
    /// someone else), and asking again would only loop.
    fn apply_from(&mut self, peer: PeerId, received: ReceivedUpdate, ask_back: bool) {
        match self.apply(Origin::Peer(peer), received) {
            Ok(()) => {}
            Err(UpdateError::Incomplete) => {
                if ask_back {
                    let sv = self.doc.transact().state_vector();
                    self.send_to(peer, protocol::encode_sync_step1(&sv));
                }
            }
            Err(UpdateError::TooLarge { .. }) => self.cut_off(peer, Eviction::DocumentTooLarge),
            Err(UpdateError::TooDeep { .. }) => self.cut_off(peer, Eviction::NestedTooDeeply),
            Err(_) => self.cut_off(peer, Eviction::InvalidUpdate),
        }
    }

    /// Applies an update and, if it changed anything, logs and broadcasts exactly the change.
    ///
    /// An update that could push the document past its size limit, or whose structs of some
    /// client start past what the document has of that client (a clock gap, which Yjs would
    /// keep pending and yrs would integrate behind a hole), is refused before it touches the
    /// document.
    fn apply(&mut self, origin: Origin, received: ReceivedUpdate) -> Result<(), UpdateError> {
        if received.is_empty() {
            return Ok(());
        }
        let limit = self.config.max_doc_bytes;
        if self.doc_bytes + received.encoded_len as u64 > limit {
            warn!(
                %origin,
                doc_bytes = self.doc_bytes,
                update_bytes = received.encoded_len,
                limit,
                "refusing update: the document would exceed its size limit"
            );
            return Err(UpdateError::TooLarge { limit });
        }
        if let Err(TooDeep { depth }) = self.nesting.check(&received.layout, MAX_TYPE_NESTING) {
            warn!(%origin, depth, limit = MAX_TYPE_NESTING, "refusing update: shared types nested too deeply");
            return Err(UpdateError::TooDeep {
                depth,
                limit: MAX_TYPE_NESTING,
            });
        }
        if let Some(gap) =
            integrity::first_gap(&received.update, &self.doc.transact().state_vector())
        {
            debug!(
                %origin,
                client = gap.client,
                reached = gap.reached,
                starts = gap.starts,
                "refusing update with a clock gap"
            );
            return Err(UpdateError::Incomplete);
        }
        let started = std::time::Instant::now();
        let applied = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = self.doc.transact_mut();
            let result = txn.apply_update(received.update);
            // Structs and deletions whose dependencies the document lacks wait in yrs' pending
            // set, invisible to state vectors and encodings; drop them and ask for a resend.
            let incomplete = txn.prune_pending().is_some();
            txn.commit();
            (result, incomplete, txn.encode_update_v1())
        }));
        crate::metrics::UPDATE_APPLY.observe(started.elapsed());
        let Ok((result, incomplete, delta)) = applied else {
            // The document may be half-changed: stop it; it is reloaded from the store.
            warn!(%origin, "applying an update panicked, stopping the document");
            self.broken = true;
            return Err(UpdateError::Invalid("applying the update failed".into()));
        };
        // Whatever was integrated is part of the document now: record it.
        self.record(origin, delta);
        if let Err(error) = result {
            warn!(%origin, %error, "update could not be integrated");
            return Err(UpdateError::Invalid(error.to_string()));
        }
        if incomplete {
            debug!(%origin, "update depends on changes the document lacks");
            return Err(UpdateError::Incomplete);
        }
        Ok(())
    }

    /// Runs a server-side change and records what it changed. A panicking job still leaves
    /// whatever it did before panicking, which is recorded like any change.
    fn write(&mut self, job: WriteJob) {
        let (outcome, delta) = {
            let mut txn = self.doc.transact_mut();
            let outcome = catch_unwind(AssertUnwindSafe(|| job(&mut txn)));
            txn.commit();
            (outcome, txn.encode_update_v1())
        };
        if outcome.is_err() {
            warn!("a server-side change panicked");
        }
        self.record(Origin::Server, delta);
    }

    /// Logs and broadcasts a change (an update encoding exactly what was new), if any.
    fn record(&mut self, origin: Origin, delta: Vec<u8>) {
        // `00 00`: no new structs and no deletions, e.g. a sync step 2 with nothing new.
        if delta.len() <= 2 && delta.iter().all(|&b| b == 0) {
            return;
        }
        if let Err(error) = self.nesting.record(&delta) {
            // yrs' own encoding: cannot happen, and the index only gets more conservative.
            warn!(%error, "could not index a change's nesting");
        }
        let delta = Bytes::from(delta);
        self.last_seq += 1;
        self.doc_bytes += delta.len() as u64;
        self.log_bytes += delta.len() as u64;
        self.log_entries += 1;
        self.pending.push(LogEntry {
            seq: self.last_seq,
            update: delta.clone(),
        });
        self.broadcast(protocol::encode_update(&delta));
        self.emit_doc_event(DocEvent::Changed {
            doc: self.name.clone(),
            update: delta,
            origin,
        });
    }

    fn emit_doc_event(&self, event: DocEvent) {
        if let Some(events) = &self.events {
            events(event);
        }
    }

    /// Server-side use counts as activity: an idle document stays loaded a while longer.
    fn touch(&mut self) {
        if self.peers.is_empty() {
            self.idle_since = Some(Instant::now());
        }
    }

    fn send_to(&mut self, peer: PeerId, frame: Bytes) {
        if let Some(p) = self.peers.get(&peer) {
            if p.outbox.push(frame) != Delivery::Queued {
                self.remove_peer(peer);
            }
        }
    }

    /// Sends a peer the answer to its request (see [`Answer`]).
    fn send_answer(&mut self, peer: PeerId, frame: Bytes, answer: Answer) {
        if let Some(p) = self.peers.get(&peer) {
            if p.outbox.push_answer(frame, answer) != Delivery::Queued {
                self.remove_peer(peer);
            }
        }
    }

    /// Sends one frame to every peer; the bytes are shared, not copied.
    fn broadcast(&mut self, frame: Bytes) {
        let mut dropped = Vec::new();
        for (&peer, p) in &self.peers {
            match p.outbox.push(frame.clone()) {
                Delivery::Queued => {}
                Delivery::Evicted => {
                    info!(%peer, "evicting slow peer");
                    dropped.push(peer);
                }
                Delivery::Gone => dropped.push(peer),
            }
        }
        for peer in dropped {
            self.remove_peer(peer);
        }
    }

    /// Evicts a peer (its connection closes with the reason) and removes it.
    fn cut_off(&mut self, peer: PeerId, reason: Eviction) {
        if let Some(p) = self.peers.get(&peer) {
            p.outbox.evict(reason);
        }
        self.remove_peer(peer);
    }

    fn remove_peer(&mut self, peer: PeerId) {
        if self.peers.remove(&peer).is_none() {
            return;
        }
        debug!(%peer, peers = self.peers.len(), "peer left");
        let removed = self.awareness.remove_peer(peer);
        self.awareness_changed(removed);
        if self.peers.is_empty() {
            self.idle_since = Some(Instant::now());
        }
    }

    fn sweep_awareness(&mut self) {
        let removed = self.awareness.remove_outdated(Instant::now());
        self.awareness_changed(removed);
    }

    /// Notes clients whose awareness changed. They go out together in the next awareness frame:
    /// at once if none went out for an interval, else when the interval is over.
    fn awareness_changed(&mut self, clients: Vec<u64>) {
        if clients.is_empty() {
            return;
        }
        self.awareness_changed.extend(clients);
        if self.next_awareness_frame() <= Instant::now() {
            self.send_awareness();
        }
    }

    fn next_awareness_frame(&self) -> Instant {
        self.awareness_sent
            .map_or_else(Instant::now, |sent| sent + self.config.awareness_interval)
    }

    /// Broadcasts one frame with the newest state (or removal) of every changed client.
    fn send_awareness(&mut self) {
        if self.awareness_changed.is_empty() {
            return;
        }
        let clients: Vec<u64> = std::mem::take(&mut self.awareness_changed)
            .into_iter()
            .collect();
        self.awareness_sent = Some(Instant::now());
        self.broadcast(self.awareness.encode(&clients));
    }

    fn opted_in(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.info.events)
    }

    /// Stamps a custom event, relays it to every other opted-in peer, keeps it in the history
    /// and returns its sequence number.
    fn emit(&mut self, origin: Origin, from: &str, kind: &str, data: &str) -> u64 {
        let seq = self.next_event;
        self.next_event += 1;
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        // `data` is compact JSON already; the strings are escaped by serde.
        let json = format!(
            r#"{{"seq":{seq},"type":{},"data":{data},"from":{},"at":{at}}}"#,
            serde_json::Value::from(kind),
            serde_json::Value::from(from),
        );
        let frame = protocol::encode_event(&json);
        let sender = match origin {
            Origin::Peer(peer) => Some(peer),
            Origin::Server => None,
        };
        let mut dropped = Vec::new();
        for (&peer, p) in &self.peers {
            if p.info.events
                && Some(peer) != sender
                && p.outbox.push(frame.clone()) != Delivery::Queued
            {
                dropped.push(peer);
            }
        }
        for peer in dropped {
            self.remove_peer(peer);
        }
        let event = StoredEvent {
            seq,
            json: Bytes::from(json),
        };
        if self.config.event_history > 0 {
            self.history.push_back(event.clone());
            while self.history.len() > self.config.event_history {
                self.history.pop_front();
            }
            self.pending_events.push(event.clone());
        }
        self.emit_doc_event(DocEvent::Event {
            doc: self.name.clone(),
            seq,
            json: event.json,
        });
        seq
    }

    /// Sends a peer the events after `after` that the history still has, preceded by a gap
    /// marker when it no longer reaches back that far.
    fn replay_events(&mut self, peer: PeerId, after: u64) {
        let newest = self.next_event - 1;
        if after >= newest {
            return;
        }
        let oldest = self
            .history
            .front()
            .map_or(self.next_event, |event| event.seq);
        if oldest > after + 1 {
            let gap = format!(r#"{{"gap":{{"from":{},"to":{}}}}}"#, after + 1, oldest - 1);
            self.send_to(peer, protocol::encode_event(&gap));
        }
        let frames: Vec<Bytes> = self
            .history
            .iter()
            .filter(|event| event.seq > after)
            .map(|event| protocol::encode_event(&String::from_utf8_lossy(&event.json)))
            .collect();
        for frame in frames {
            self.send_to(peer, frame);
        }
    }

    fn needs_compaction(&self) -> bool {
        self.log_entries >= self.config.compact_log_entries
            || self.log_bytes >= self.config.compact_log_bytes
    }

    fn snapshot(&mut self) -> Snapshot {
        let state = self
            .doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        // The snapshot contains every applied update, pending ones included.
        self.pending.clear();
        self.doc_bytes = state.len() as u64;
        self.log_bytes = 0;
        self.log_entries = 0;
        Snapshot {
            state: state.into(),
            seq: self.last_seq,
        }
    }

    /// Starts the next store operation, if there is anything to store.
    fn start_persist(&mut self) -> Option<JoinHandle<Persisted>> {
        if self.pending.is_empty() && self.pending_events.is_empty() {
            return None;
        }
        let store = self.store.clone();
        let name = self.name.clone();
        let events = std::mem::take(&mut self.pending_events);
        let keep = self.config.event_history;
        // With nothing pending, every applied update is durable already: one store operation
        // is in flight at a time and pending updates are handed over only in operations.
        let seq = self.last_seq;
        let updates = if self.pending.is_empty() {
            None
        } else if self.needs_compaction() {
            let snapshot = self.snapshot();
            debug!(
                seq = snapshot.seq,
                bytes = snapshot.state.len(),
                "compacting"
            );
            Some(Ok(snapshot))
        } else {
            Some(Err(std::mem::take(&mut self.pending)))
        };
        Some(tokio::spawn(async move {
            match updates {
                Some(Ok(snapshot)) => store.compact(&name, snapshot).await?,
                Some(Err(entries)) => store.append(&name, entries).await?,
                None => {}
            }
            if !events.is_empty() {
                store.append_events(&name, events, keep).await?;
            }
            Ok(seq)
        }))
    }

    fn persisted(
        &mut self,
        done: Result<Persisted, tokio::task::JoinError>,
    ) -> Result<(), StoreError> {
        let seq = done.map_err(|e| StoreError::Task(e.to_string()))??;
        self.durable_seq = self.durable_seq.max(seq);
        let durable = self.durable_seq;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|(wanted, _)| *wanted <= durable);
        self.waiters = waiting;
        for (_, waiter) in ready {
            waiter.send(Ok(()));
        }
        Ok(())
    }

    /// Finishes the store operation in flight and stores everything pending.
    async fn drain_store(
        &mut self,
        in_flight: Option<JoinHandle<Persisted>>,
    ) -> Result<(), StoreError> {
        if let Some(job) = in_flight {
            self.persisted(job.await)?;
        }
        while let Some(job) = self.start_persist() {
            self.persisted(job.await)?;
        }
        Ok(())
    }

    /// Stores the document compactly and leaves the registry, unless a request arrived meanwhile.
    /// Returns whether the actor is done.
    async fn unload(
        &mut self,
        in_flight: Option<JoinHandle<Persisted>>,
        rx: &mut mpsc::Receiver<Command>,
    ) -> Result<bool, StoreError> {
        self.drain_store(in_flight).await?;
        if self.log_entries > 0 {
            let snapshot = self.snapshot();
            let seq = snapshot.seq;
            self.store.compact(&self.name, snapshot).await?;
            self.durable_seq = seq;
        }
        let Some(registry) = self.registry.upgrade() else {
            return Ok(true);
        };
        if registry.remove_if(&self.name, self.actor_id, || rx.is_empty()) {
            debug!("document unloaded");
            self.close_mailbox(rx, DocError::Unloaded);
            self.emit_doc_event(DocEvent::Unloaded {
                doc: self.name.clone(),
            });
            return Ok(true);
        }
        // Someone is knocking: serve them and try again after the next idle period.
        self.idle_since = Some(Instant::now());
        Ok(false)
    }

    /// Leaves the registry and refuses whatever is still queued.
    fn deregister(&mut self, rx: &mut mpsc::Receiver<Command>, error: DocError) {
        if let Some(registry) = self.registry.upgrade() {
            registry.remove_if(&self.name, self.actor_id, || true);
        }
        self.close_mailbox(rx, error);
    }

    fn close_mailbox(&mut self, rx: &mut mpsc::Receiver<Command>, error: DocError) {
        rx.close();
        while let Ok(command) = rx.try_recv() {
            match command {
                Command::Join { respond_to, .. }
                | Command::Persist { respond_to }
                | Command::Delete { respond_to } => {
                    let _ = respond_to.send(Err(error.clone()));
                }
                Command::Apply { respond_to, .. } => {
                    let _ = respond_to.send(Err(UpdateError::Document(error.clone())));
                }
                Command::Covers { .. } => {}
                Command::Emit { respond_to, .. } => {
                    let _ = respond_to.send(Err(error.clone()));
                }
                // Not run: the caller gets the job back and runs it on the next actor.
                Command::Read { job, returned } => {
                    let _ = returned.send((job, error.clone()));
                }
                Command::Write { job, returned } => {
                    let _ = returned.send((job, error.clone()));
                }
                Command::Messages { .. }
                | Command::Leave { .. }
                | Command::Presence { .. }
                | Command::Stats { .. } => {}
            }
        }
        for (_, waiter) in self.waiters.drain(..) {
            waiter.send(Err(error.clone()));
        }
    }

    /// yrs panicked inside the document: store nothing more from memory (the state may be
    /// half-changed), let the store operation in flight finish, evict every peer (they resync
    /// with the document reloaded from the store) and leave the registry.
    async fn stop_broken(
        &mut self,
        in_flight: Option<JoinHandle<Persisted>>,
        rx: &mut mpsc::Receiver<Command>,
    ) {
        if let Some(job) = in_flight {
            if let Ok(Ok(seq)) = job.await {
                self.durable_seq = self.durable_seq.max(seq);
            }
        }
        self.pending.clear();
        let durable = self.durable_seq;
        for (wanted, waiter) in std::mem::take(&mut self.waiters) {
            waiter.send(if wanted <= durable {
                Ok(())
            } else {
                Err(DocError::Aborted)
            });
        }
        for p in self.peers.values() {
            p.outbox.evict(Eviction::DocumentFailed);
        }
        self.peers.clear();
        self.deregister(rx, DocError::Unloaded);
    }

    /// The store failed: nothing more can be made durable, so the document stops and every peer
    /// is told to reconnect (it still holds its edits and resends them when it syncs again).
    fn fail(&mut self, rx: &mut mpsc::Receiver<Command>, error: StoreError) {
        warn!(%error, "store failed, stopping document");
        for p in self.peers.values() {
            p.outbox.evict(Eviction::DocumentFailed);
        }
        self.peers.clear();
        self.deregister(rx, DocError::Store(Arc::new(error)));
    }
}
