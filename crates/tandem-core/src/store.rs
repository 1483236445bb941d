//! Where documents live between runs: the [`Store`] trait and its sled implementation.
//!
//! Each document is a compacted snapshot plus an append-only log of the updates applied since
//! (the y-leveldb model). A snapshot records the sequence number of the last update it contains;
//! log entries at or below it are superseded, ignored on load and removed after the snapshot is
//! written, so compaction never needs a multi-key transaction and a crash at any point leaves a
//! loadable document.
//!
//! The trait is async and byte-oriented so that a networked store (Redis, S3) can implement it
//! and batch; the document actor calls it for one document at a time, never concurrently.

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;

use crate::name::DocName;

mod sled_store;

pub use sled_store::{SledStore, FLUSH_MARKER, FORMAT_VERSION};

/// One update in a document's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Position in the document's log, increasing by one per update.
    pub seq: u64,
    /// The update, Yjs v1 encoding.
    pub update: Bytes,
}

/// A document's state as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredDoc {
    /// The compacted state (Yjs v1 update), if the document was ever compacted.
    pub snapshot: Option<Bytes>,
    /// The sequence number of the last update the snapshot contains (0 without a snapshot).
    pub snapshot_seq: u64,
    /// Updates applied after the snapshot, in order.
    pub log: Vec<LogEntry>,
}

impl StoredDoc {
    /// The sequence number of the newest stored update.
    pub fn last_seq(&self) -> u64 {
        self.log.last().map_or(self.snapshot_seq, |entry| entry.seq)
    }
}

/// A compacted document state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The whole document as one Yjs v1 update.
    pub state: Bytes,
    /// The sequence number of the last update the state contains.
    pub seq: u64,
}

/// A custom event kept in a document's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event's sequence number in its document.
    pub seq: u64,
    /// The event as sent to peers (JSON).
    pub json: Bytes,
}

/// Why the store failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The underlying database reported an error.
    #[error("database error: {0}")]
    Database(#[from] sled::Error),
    /// The data on disk is not in a format this version understands.
    #[error(
        "unsupported store format version {found} (this build reads version {FORMAT_VERSION})"
    )]
    UnsupportedFormat {
        /// The version found on disk.
        found: u32,
    },
    /// A stored record is damaged.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The database could not be opened: its files are damaged, or another process holds it.
    #[error("the database does not open: {0}")]
    Open(String),
    /// The database holds less than was acknowledged: its files were truncated or replaced by
    /// an older copy, and serving it would silently lose acknowledged changes.
    #[error(
        "the database is behind what was acknowledged (flush {acknowledged} was recorded, the \
         database ends at flush {found}): its files were truncated or replaced by an older copy"
    )]
    Behind {
        /// The newest flush the marker recorded.
        acknowledged: u64,
        /// The newest flush the database contains.
        found: u64,
    },
    /// A file beside the database could not be read or written.
    #[error("i/o error: {0}")]
    Io(String),
    /// A blocking store task could not complete.
    #[error("store task failed: {0}")]
    Task(String),
    /// This store does not implement the operation.
    #[error("the store does not support {0}")]
    Unsupported(&'static str),
}

/// Durable storage of documents, keyed by exact name bytes.
///
/// Every method returns only once its effect is durable (flushed), so a caller may acknowledge
/// what it wrote. Implementations should group-commit: many concurrent calls, one flush.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Loads a document; an unknown document is an empty [`StoredDoc`].
    async fn load(&self, name: &DocName) -> Result<StoredDoc, StoreError>;

    /// Appends updates to a document's log.
    async fn append(&self, name: &DocName, entries: Vec<LogEntry>) -> Result<(), StoreError>;

    /// Replaces a document's snapshot and drops the log entries it supersedes.
    async fn compact(&self, name: &DocName, snapshot: Snapshot) -> Result<(), StoreError>;

    /// Makes everything written so far durable.
    async fn flush(&self) -> Result<(), StoreError>;

    /// Appends custom events to a document's history, then keeps only the newest `keep`.
    ///
    /// The default keeps nothing: a store that does not override this and
    /// [`Store::load_events`] has no event history across restarts.
    async fn append_events(
        &self,
        _name: &DocName,
        _events: Vec<StoredEvent>,
        _keep: usize,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// A document's event history, oldest first.
    async fn load_events(&self, _name: &DocName) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(Vec::new())
    }
    /// What the store knows about one document, or `None` when it holds nothing for it.
    async fn doc_info(&self, _name: &DocName) -> Result<Option<DocInfo>, StoreError> {
        Err(StoreError::Unsupported("document metadata"))
    }

    /// Stored documents whose names start with `prefix`, in byte order of their names, starting
    /// after `after` (the last name of the previous page), at most `limit` of them.
    async fn list(
        &self,
        _prefix: &[u8],
        _after: Option<&DocName>,
        _limit: usize,
    ) -> Result<Vec<DocInfo>, StoreError> {
        Err(StoreError::Unsupported("listing documents"))
    }

    /// Removes a document: its snapshot, its log and its metadata. The caller makes sure the
    /// document is not loaded.
    async fn delete(&self, _name: &DocName) -> Result<(), StoreError> {
        Err(StoreError::Unsupported("deleting documents"))
    }

    /// Bytes the store occupies, when it can tell.
    async fn size_on_disk(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// Adds records to the outbox (deliveries that must survive a restart, such as webhooks)
    /// and returns their ids in the same order, each unique for the life of the store. Durable
    /// when it returns; a batch should cost one flush, not one per record.
    async fn outbox_push(&self, _records: Vec<Bytes>) -> Result<Vec<u64>, StoreError> {
        Err(StoreError::Unsupported("an outbox"))
    }

    /// Every record in the outbox, oldest first.
    async fn outbox_pending(&self) -> Result<Vec<(u64, Bytes)>, StoreError> {
        Err(StoreError::Unsupported("an outbox"))
    }

    /// Removes delivered records from the outbox. Durable when it returns (one flush per batch).
    async fn outbox_remove(&self, _ids: Vec<u64>) -> Result<(), StoreError> {
        Err(StoreError::Unsupported("an outbox"))
    }
}

/// A stored document, as listings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocInfo {
    /// The document's name.
    pub name: DocName,
    /// Bytes stored: the snapshot plus the update log.
    pub size: u64,
    /// When the store last wrote the document (an append or a compaction).
    pub last_change: SystemTime,
}

/// Checks that a stored document loads: its snapshot and every log entry decode as Yjs v1
/// updates (passing the same [`preflight`](crate::preflight) walk as peers' updates) and
/// integrate into an empty document in order, with nothing left depending on missing changes.
/// Returns the document's size in bytes as stored.
pub fn check_document(stored: &StoredDoc) -> Result<u64, String> {
    use yrs::{ReadTxn, Transact, WriteTxn};
    let doc = yrs::Doc::new();
    let mut txn = doc.transact_mut();
    let mut size = 0;
    let parts = stored
        .snapshot
        .iter()
        .map(|state| ("the snapshot".to_owned(), state))
        .chain(
            stored
                .log
                .iter()
                .map(|entry| (format!("log entry {}", entry.seq), &entry.update)),
        );
    for (what, bytes) in parts {
        size += bytes.len() as u64;
        let update = crate::protocol::decode_update(bytes)
            .map_err(|error| format!("{what} does not decode ({error})"))?;
        let applied =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| txn.apply_update(update)));
        match applied {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(format!("{what} does not apply ({error})")),
            Err(_) => return Err(format!("{what} does not apply (yrs panicked)")),
        }
    }
    if txn.has_missing_updates() {
        txn.prune_pending();
        return Err("changes depend on changes that are not stored".into());
    }
    Ok(size)
}
