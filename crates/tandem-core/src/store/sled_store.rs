//! The default [`Store`]: sled, an embedded key-value store.
//!
//! Layout (format version [`FORMAT_VERSION`]), in six trees:
//! - `meta`: `format_version` → u32 big-endian.
//! - `snapshots`: name bytes → `seq: u64 BE · state`.
//! - `log`: `len(name): u32 BE · name · seq: u64 BE` → update. The length prefix makes each
//!   document's keys a prefix no other document shares; big-endian numbers sort in log order.
//! - `events`: `len(name): u32 BE · name · seq: u64 BE` → the event's JSON (custom event
//!   history; a tree that stores written before it existed simply lack).
//! - `docs`: name bytes → `size: u64 BE · last change: u64 BE` (milliseconds since the Unix
//!   epoch), kept up to date by appends and compactions, for listings. Stores written before
//!   it existed are indexed when first opened.
//! - `outbox`: `id: u64 BE` → record, deliveries waiting to go out (webhooks).
//!
//! Writes go to sled on the blocking pool; durability is group-committed: callers that wrote
//! while a flush was running share the next flush.
//!
//! **Flush marker.** Every flush also writes a generation number into `meta` and, once the
//! flush returned, into the file [`FLUSH_MARKER`] beside the database. sled recovers a
//! truncated or partly overwritten log by silently dropping its tail, which would serve
//! documents missing acknowledged changes; a marker ahead of the database's own generation
//! reveals exactly that, and opening fails with [`StoreError::Behind`]. The marker is written
//! after the database's flush and is not itself synced, so it can lag (a power cut may lose
//! it) but never lead the database by accident.
//!
//! **No batches.** Every write is a single `insert` or `remove`, never a `sled::Batch` or a
//! transaction. sled 0.34 guards those with a process-wide `RwLock` that, once any batch has
//! run, every later read, write and background flush also takes; with parking_lot's fair lock
//! a batch waiting for the write side while a flush holds the read side and takes it again
//! deadlocks the whole process (seen as a hang with threads in `Tree::apply_batch` and
//! `iobuf::make_stable`; spacejam/sled#1412). Without batches sled never turns that lock on.
//! Nothing here needs a batch's atomicity: log entries and events are only acknowledged after
//! the flush that follows them, and compaction only removes entries a durable snapshot
//! already covers, so a crash between single writes loses nothing acknowledged. (A crash in
//! the middle of a delete, before it is acknowledged, can leave part of the document behind,
//! as it could with batches: the snapshot went first.)

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

use super::{DocInfo, LogEntry, Snapshot, Store, StoreError, StoredDoc, StoredEvent};
use crate::name::DocName;

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

const FORMAT_KEY: &[u8] = b"format_version";

/// `meta` key of the generation of the newest flush.
const FLUSH_KEY: &[u8] = b"flush_generation";

/// The file beside the database that records the newest flush generation acknowledged.
pub const FLUSH_MARKER: &str = "tandem-flushed";

/// sled's page cache. Its default is 1 GiB, which a server with many small documents never
/// needs and which a compaction of a long log fills (and keeps): measured at 700 MiB of RSS for
/// a 259k-entry log.
pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Log entries removed per step when a snapshot supersedes them. Collecting every key of a
/// long log holds them all in memory at once; entries already covered by the snapshot are
/// ignored on load, so removing them in several steps is safe.
const REMOVE_BATCH: usize = 4096;
/// Present in `meta` once the `docs` tree indexes every stored document.
const DOCS_INDEXED_KEY: &[u8] = b"docs_indexed";

/// A [`Store`] in a sled database directory.
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    meta: sled::Tree,
    /// Where the flush marker lives.
    marker: std::path::PathBuf,
    /// The generation the next flush records.
    generation: AtomicU64,
    snapshots: sled::Tree,
    log: sled::Tree,
    events: sled::Tree,
    docs: sled::Tree,
    outbox: sled::Tree,
    /// Count of completed writes; a flush that starts after a write completed covers it.
    writes: AtomicU64,
    /// The `writes` value the newest completed flush covers.
    flushed: AtomicU64,
    /// One flush at a time; waiters whose writes a finished flush covered return at once.
    flush_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, refusing a format this build does not understand.
    ///
    /// Blocking: call it at startup or from the blocking pool.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        let config = sled::Config::new().path(dir).cache_capacity(CACHE_BYTES);
        // sled panics on some kinds of damage instead of reporting them.
        let db = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || config.open()))
        {
            Ok(Ok(db)) => db,
            Ok(Err(error)) => return Err(StoreError::Open(error.to_string())),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("sled panicked");
                return Err(StoreError::Open(format!("its files are damaged ({why})")));
            }
        };
        let meta = db.open_tree("meta")?;
        let marker = dir.join(FLUSH_MARKER);
        let flushed = meta
            .get(FLUSH_KEY)?
            .map(|raw| {
                <[u8; 8]>::try_from(raw.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt("flush generation record".into()))
            })
            .transpose()?
            .unwrap_or(0);
        if let Some(acknowledged) = read_marker(&marker)? {
            if acknowledged > flushed {
                return Err(StoreError::Behind {
                    acknowledged,
                    found: flushed,
                });
            }
        }
        match meta.get(FORMAT_KEY)? {
            Some(raw) => {
                let bytes: [u8; 4] = raw
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("format version record".into()))?;
                let found = u32::from_be_bytes(bytes);
                if found != FORMAT_VERSION {
                    return Err(StoreError::UnsupportedFormat { found });
                }
            }
            None => {
                meta.insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())?;
                db.flush()?;
            }
        }
        let snapshots = db.open_tree("snapshots")?;
        let log = db.open_tree("log")?;
        let events = db.open_tree("events")?;
        let docs = db.open_tree("docs")?;
        let outbox = db.open_tree("outbox")?;
        if meta.get(DOCS_INDEXED_KEY)?.is_none() {
            index_docs(&snapshots, &log, &docs)?;
            meta.insert(DOCS_INDEXED_KEY, &[1])?;
            db.flush()?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                meta,
                marker,
                generation: AtomicU64::new(flushed + 1),
                snapshots,
                log,
                events,
                docs,
                outbox,
                writes: AtomicU64::new(0),
                flushed: AtomicU64::new(0),
                flush_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db.size_on_disk()?)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Waits until every write completed before this call is flushed to disk.
    async fn durable(&self) -> Result<(), StoreError> {
        let ticket = self.inner.writes.load(Ordering::Acquire);
        let _turn = self.inner.flush_lock.lock().await;
        if self.inner.flushed.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        let covers = self.inner.writes.load(Ordering::Acquire);
        let started = std::time::Instant::now();
        self.blocking(|inner| inner.flush()).await?;
        crate::metrics::STORE_FLUSH.observe(started.elapsed());
        self.inner.flushed.fetch_max(covers, Ordering::AcqRel);
        Ok(())
    }
}

fn doc_prefix(name: &DocName) -> Vec<u8> {
    let bytes = name.as_bytes();
    let mut prefix = Vec::with_capacity(bytes.len() + 12);
    // Names longer than 4 GiB cannot reach the store: frames and URLs are far smaller.
    prefix.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    prefix.extend_from_slice(bytes);
    prefix
}

fn log_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    key.len()
        .checked_sub(8)
        .and_then(|at| key[at..].try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt("log key without sequence number".into()))
}

/// The generation the marker file records, if there is one.
fn read_marker(path: &Path) -> Result<Option<u64>, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            StoreError::Corrupt(format!("flush marker {} is unreadable", path.display()))
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(StoreError::Io(error.to_string())),
    }
}

impl Inner {
    /// Flushes the database with a new generation, then records the generation in the marker.
    fn flush(&self) -> Result<(), StoreError> {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel);
        self.meta.insert(FLUSH_KEY, &generation.to_be_bytes())?;
        self.db.flush()?;
        // Written next to the marker and renamed over it, so it is never half-written.
        let next = self.marker.with_extension("next");
        std::fs::write(&next, generation.to_string())
            .and_then(|()| std::fs::rename(&next, &self.marker))
            .map_err(|error| StoreError::Io(error.to_string()))
    }

    fn load(&self, name: &DocName) -> Result<StoredDoc, StoreError> {
        let mut doc = StoredDoc::default();
        if let Some(raw) = self.snapshots.get(name.as_bytes())? {
            if raw.len() < 8 {
                return Err(StoreError::Corrupt(format!(
                    "snapshot of {name} is truncated"
                )));
            }
            let (seq, state) = raw.split_at(8);
            doc.snapshot_seq = u64::from_be_bytes(seq.try_into().expect("split at 8"));
            doc.snapshot = Some(Bytes::copy_from_slice(state));
        }
        for item in self.log.scan_prefix(doc_prefix(name)) {
            let (key, value) = item?;
            let seq = seq_of(&key)?;
            if seq > doc.snapshot_seq {
                doc.log.push(LogEntry {
                    seq,
                    update: Bytes::copy_from_slice(&value),
                });
            }
        }
        Ok(doc)
    }

    fn append(&self, name: &DocName, entries: Vec<LogEntry>) -> Result<(), StoreError> {
        let prefix = doc_prefix(name);
        let mut added = 0;
        // One insert each, never a `sled::Batch`: see "No batches" above.
        for entry in entries {
            added += entry.update.len() as u64;
            self.log
                .insert(log_key(&prefix, entry.seq), entry.update.as_ref())?;
        }
        let size = self.stored_size(name)?.unwrap_or(0) + added;
        self.docs
            .insert(name.as_bytes(), &doc_record(size, now_ms()))?;
        self.writes.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn append_events(
        &self,
        name: &DocName,
        events: Vec<StoredEvent>,
        keep: usize,
    ) -> Result<(), StoreError> {
        let prefix = doc_prefix(name);
        let newest = events.last().map_or(0, |event| event.seq);
        for event in events {
            self.events
                .insert(log_key(&prefix, event.seq), event.json.as_ref())?;
        }
        // Everything older than the newest `keep` goes.
        if let Some(oldest_kept) = newest.checked_sub(keep as u64) {
            let old = self
                .events
                .range(prefix.clone()..=log_key(&prefix, oldest_kept))
                .keys()
                .collect::<Result<Vec<_>, _>>()?;
            for key in old {
                self.events.remove(key)?;
            }
        }
        self.writes.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn load_events(&self, name: &DocName) -> Result<Vec<StoredEvent>, StoreError> {
        self.events
            .scan_prefix(doc_prefix(name))
            .map(|item| {
                let (key, value) = item?;
                Ok(StoredEvent {
                    seq: seq_of(&key)?,
                    json: Bytes::copy_from_slice(&value),
                })
            })
            .collect()
    }

    fn compact(&self, name: &DocName, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut record = Vec::with_capacity(snapshot.state.len() + 8);
        record.extend_from_slice(&snapshot.seq.to_be_bytes());
        record.extend_from_slice(&snapshot.state);
        self.snapshots.insert(name.as_bytes(), record)?;
        // The snapshot must be durable before the log entries it replaces disappear.
        self.db.flush()?;
        let prefix = doc_prefix(name);
        let last = log_key(&prefix, snapshot.seq);
        loop {
            let keys = self
                .log
                .range(prefix.clone()..=last.clone())
                .keys()
                .take(REMOVE_BATCH)
                .collect::<Result<Vec<_>, _>>()?;
            if keys.is_empty() {
                break;
            }
            for key in keys {
                self.log.remove(key)?;
            }
        }
        let mut size = snapshot.state.len() as u64;
        for value in self.log.scan_prefix(&prefix).values() {
            size += value?.len() as u64;
        }
        self.docs
            .insert(name.as_bytes(), &doc_record(size, now_ms()))?;
        self.writes.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The size the `docs` index records for a document.
    fn stored_size(&self, name: &DocName) -> Result<Option<u64>, StoreError> {
        Ok(self
            .docs
            .get(name.as_bytes())?
            .map(|raw| decode_doc_record(name, &raw))
            .transpose()?
            .map(|info| info.size))
    }

    fn doc_info(&self, name: &DocName) -> Result<Option<DocInfo>, StoreError> {
        self.docs
            .get(name.as_bytes())?
            .map(|raw| decode_doc_record(name, &raw))
            .transpose()
    }

    fn list(
        &self,
        prefix: &[u8],
        after: Option<&DocName>,
        limit: usize,
    ) -> Result<Vec<DocInfo>, StoreError> {
        let mut found = Vec::with_capacity(limit.min(1024));
        let start = match after {
            Some(after) if after.as_bytes() >= prefix => {
                // The smallest key greater than `after`.
                let mut next = after.as_bytes().to_vec();
                next.push(0);
                next
            }
            _ => prefix.to_vec(),
        };
        for item in self.docs.range(start..) {
            if found.len() >= limit {
                break;
            }
            let (key, value) = item?;
            if !key.starts_with(prefix) {
                break;
            }
            let name = DocName::from(key.to_vec());
            found.push(decode_doc_record(&name, &value)?);
        }
        Ok(found)
    }

    fn delete(&self, name: &DocName) -> Result<(), StoreError> {
        self.snapshots.remove(name.as_bytes())?;
        for tree in [&self.log, &self.events] {
            let keys = tree
                .scan_prefix(doc_prefix(name))
                .keys()
                .collect::<Result<Vec<_>, _>>()?;
            for key in keys {
                tree.remove(key)?;
            }
        }
        self.docs.remove(name.as_bytes())?;
        self.writes.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// One insert per record (never a `sled::Batch`: see "No batches" above); the caller's one
    /// flush then covers them all.
    fn outbox_push(&self, records: &[Bytes]) -> Result<Vec<u64>, StoreError> {
        let mut ids = Vec::with_capacity(records.len());
        for record in records {
            let id = self.db.generate_id()?;
            self.outbox.insert(id.to_be_bytes(), record.as_ref())?;
            ids.push(id);
        }
        self.writes.fetch_add(1, Ordering::AcqRel);
        Ok(ids)
    }

    fn outbox_pending(&self) -> Result<Vec<(u64, Bytes)>, StoreError> {
        self.outbox
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let id: [u8; 8] = key
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("outbox key".into()))?;
                Ok((u64::from_be_bytes(id), Bytes::copy_from_slice(&value)))
            })
            .collect()
    }

    fn outbox_remove(&self, ids: &[u64]) -> Result<(), StoreError> {
        for id in ids {
            self.outbox.remove(id.to_be_bytes())?;
        }
        self.writes.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn doc_record(size: u64, last_change_ms: u64) -> [u8; 16] {
    let mut record = [0; 16];
    record[..8].copy_from_slice(&size.to_be_bytes());
    record[8..].copy_from_slice(&last_change_ms.to_be_bytes());
    record
}

fn decode_doc_record(name: &DocName, raw: &[u8]) -> Result<DocInfo, StoreError> {
    let record: [u8; 16] = raw
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("index record of {name}")))?;
    let (size, at) = record.split_at(8);
    Ok(DocInfo {
        name: name.clone(),
        size: u64::from_be_bytes(size.try_into().expect("split at 8")),
        last_change: UNIX_EPOCH
            + Duration::from_millis(u64::from_be_bytes(at.try_into().expect("8 bytes"))),
    })
}

/// Builds the `docs` index of a store written before it existed; the last change of those
/// documents is the time of indexing.
fn index_docs(
    snapshots: &sled::Tree,
    log: &sled::Tree,
    docs: &sled::Tree,
) -> Result<(), StoreError> {
    let mut sizes: std::collections::BTreeMap<Vec<u8>, u64> = Default::default();
    for item in snapshots.iter() {
        let (name, value) = item?;
        *sizes.entry(name.to_vec()).or_default() += value.len().saturating_sub(8) as u64;
    }
    for item in log.iter() {
        let (key, value) = item?;
        let len = key
            .get(..4)
            .and_then(|raw| raw.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| StoreError::Corrupt("log key without name".into()))?;
        let name = key
            .get(4..4 + len as usize)
            .ok_or_else(|| StoreError::Corrupt("log key without name".into()))?;
        *sizes.entry(name.to_vec()).or_default() += value.len() as u64;
    }
    let now = now_ms();
    for (name, size) in sizes {
        docs.insert(name, &doc_record(size, now))?;
    }
    Ok(())
}

#[async_trait]
impl Store for SledStore {
    async fn load(&self, name: &DocName) -> Result<StoredDoc, StoreError> {
        let name = name.clone();
        self.blocking(move |inner| inner.load(&name)).await
    }

    async fn append(&self, name: &DocName, entries: Vec<LogEntry>) -> Result<(), StoreError> {
        let name = name.clone();
        self.blocking(move |inner| inner.append(&name, entries))
            .await?;
        self.durable().await
    }

    async fn compact(&self, name: &DocName, snapshot: Snapshot) -> Result<(), StoreError> {
        let name = name.clone();
        self.blocking(move |inner| inner.compact(&name, snapshot))
            .await?;
        self.durable().await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.writes.fetch_add(1, Ordering::AcqRel);
        self.durable().await
    }

    async fn append_events(
        &self,
        name: &DocName,
        events: Vec<StoredEvent>,
        keep: usize,
    ) -> Result<(), StoreError> {
        let name = name.clone();
        self.blocking(move |inner| inner.append_events(&name, events, keep))
            .await?;
        self.durable().await
    }

    async fn load_events(&self, name: &DocName) -> Result<Vec<StoredEvent>, StoreError> {
        let name = name.clone();
        self.blocking(move |inner| inner.load_events(&name)).await
    }

    async fn doc_info(&self, name: &DocName) -> Result<Option<DocInfo>, StoreError> {
        let name = name.clone();
        self.blocking(move |inner| inner.doc_info(&name)).await
    }

    async fn list(
        &self,
        prefix: &[u8],
        after: Option<&DocName>,
        limit: usize,
    ) -> Result<Vec<DocInfo>, StoreError> {
        let prefix = prefix.to_vec();
        let after = after.cloned();
        self.blocking(move |inner| inner.list(&prefix, after.as_ref(), limit))
            .await
    }

    async fn delete(&self, name: &DocName) -> Result<(), StoreError> {
        let name = name.clone();
        self.blocking(move |inner| inner.delete(&name)).await?;
        self.durable().await
    }

    async fn size_on_disk(&self) -> Result<Option<u64>, StoreError> {
        self.blocking(|inner| Ok(Some(inner.db.size_on_disk()?)))
            .await
    }

    async fn outbox_push(&self, records: Vec<Bytes>) -> Result<Vec<u64>, StoreError> {
        let ids = self
            .blocking(move |inner| inner.outbox_push(&records))
            .await?;
        self.durable().await?;
        Ok(ids)
    }

    async fn outbox_pending(&self) -> Result<Vec<(u64, Bytes)>, StoreError> {
        self.blocking(|inner| inner.outbox_pending()).await
    }

    async fn outbox_remove(&self, ids: Vec<u64>) -> Result<(), StoreError> {
        self.blocking(move |inner| inner.outbox_remove(&ids))
            .await?;
        self.durable().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, update: &'static [u8]) -> LogEntry {
        LogEntry {
            seq,
            update: Bytes::from_static(update),
        }
    }

    #[tokio::test]
    async fn event_history_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        let name = DocName::from("doc");
        let other = DocName::from("doc2");
        let event = |seq: u64| StoredEvent {
            seq,
            json: Bytes::from(format!("{{\"seq\":{seq}}}")),
        };
        store
            .append_events(&name, (1..=5).map(event).collect(), 3)
            .await
            .expect("append");
        store
            .append_events(&other, vec![event(1)], 3)
            .await
            .expect("append");
        store
            .append_events(&name, vec![event(6)], 3)
            .await
            .expect("append");
        let kept = store.load_events(&name).await.expect("load");
        assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5, 6]);
        assert_eq!(kept[0].json, Bytes::from_static(b"{\"seq\":4}"));
        assert_eq!(store.load_events(&other).await.expect("load").len(), 1);
    }

    #[tokio::test]
    async fn log_and_snapshot_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        let a = DocName::from("a");
        let ab = DocName::from("a/b");
        assert_eq!(store.load(&a).await.expect("load"), StoredDoc::default());
        store
            .append(&a, vec![entry(1, b"one"), entry(2, b"two")])
            .await
            .expect("append");
        store
            .append(&ab, vec![entry(1, b"other")])
            .await
            .expect("append");
        store
            .append(&a, vec![entry(3, b"three")])
            .await
            .expect("append");
        let loaded = store.load(&a).await.expect("load");
        assert_eq!(
            loaded.log,
            [entry(1, b"one"), entry(2, b"two"), entry(3, b"three")]
        );
        assert_eq!(loaded.last_seq(), 3);

        let snapshot = Snapshot {
            state: Bytes::from_static(b"state"),
            seq: 2,
        };
        store.compact(&a, snapshot).await.expect("compact");
        let loaded = store.load(&a).await.expect("load");
        assert_eq!(loaded.snapshot.as_deref(), Some(&b"state"[..]));
        assert_eq!(loaded.snapshot_seq, 2);
        assert_eq!(loaded.log, [entry(3, b"three")]);
        assert_eq!(
            store.load(&ab).await.expect("load").log,
            [entry(1, b"other")]
        );
    }

    #[tokio::test]
    async fn names_are_exact_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        let odd = DocName::from(vec![0xff, 0x00, b'/', 0xfe]);
        store
            .append(&odd, vec![entry(1, b"x")])
            .await
            .expect("append");
        assert_eq!(store.load(&odd).await.expect("load").log, [entry(1, b"x")]);
        assert!(store
            .load(&DocName::from(vec![0xff]))
            .await
            .expect("load")
            .log
            .is_empty());
    }

    #[tokio::test]
    async fn reopening_keeps_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = DocName::from("doc");
        {
            let store = SledStore::open(dir.path()).expect("open");
            store
                .append(&name, vec![entry(1, b"kept")])
                .await
                .expect("append");
        }
        let store = SledStore::open(dir.path()).expect("reopen");
        assert_eq!(
            store.load(&name).await.expect("load").log,
            [entry(1, b"kept")]
        );
    }

    #[tokio::test]
    async fn documents_are_listed_described_and_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        for name in ["a/1", "a/2", "a/3", "b"] {
            store
                .append(&DocName::from(name), vec![entry(1, b"12345")])
                .await
                .expect("append");
        }
        let a2 = DocName::from("a/2");
        store
            .append(&a2, vec![entry(2, b"678")])
            .await
            .expect("append");
        let info = store.doc_info(&a2).await.expect("info").expect("stored");
        assert_eq!(info.size, 8);
        let names = |page: Vec<DocInfo>| -> Vec<String> {
            page.iter().map(|info| info.name.to_string()).collect()
        };
        assert_eq!(
            names(store.list(b"a/", None, 2).await.expect("list")),
            ["a/1", "a/2"]
        );
        assert_eq!(
            names(store.list(b"a/", Some(&a2), 2).await.expect("list")),
            ["a/3"]
        );
        assert_eq!(
            names(store.list(b"", None, 10).await.expect("list")).len(),
            4
        );
        store
            .compact(
                &a2,
                Snapshot {
                    state: Bytes::from_static(b"st"),
                    seq: 2,
                },
            )
            .await
            .expect("compact");
        assert_eq!(
            store.doc_info(&a2).await.expect("info").map(|i| i.size),
            Some(2)
        );
        store.delete(&a2).await.expect("delete");
        assert_eq!(store.load(&a2).await.expect("load"), StoredDoc::default());
        assert!(store.doc_info(&a2).await.expect("info").is_none());
        assert_eq!(
            names(store.list(b"a/", None, 10).await.expect("list")),
            ["a/1", "a/3"]
        );
    }

    #[tokio::test]
    async fn the_outbox_keeps_records_across_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, second) = {
            let store = SledStore::open(dir.path()).expect("open");
            let ids = store
                .outbox_push(vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")])
                .await
                .expect("push");
            let [first, second] = ids[..] else {
                panic!("one id per record: {ids:?}")
            };
            assert_ne!(first, second);
            store.outbox_remove(vec![first]).await.expect("remove");
            (first, second)
        };
        let store = SledStore::open(dir.path()).expect("reopen");
        assert_eq!(
            store.outbox_pending().await.expect("pending"),
            [(second, Bytes::from_static(b"two"))]
        );
        let third = store
            .outbox_push(vec![Bytes::from_static(b"three")])
            .await
            .expect("push");
        assert!(
            third[0] != first && third[0] != second,
            "ids are never reused"
        );
    }

    #[tokio::test]
    async fn a_batch_of_outbox_records_is_one_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        let flushes = || store.inner.generation.load(Ordering::Acquire);
        let before = flushes();
        let records = (0..500)
            .map(|i| Bytes::from(format!("record {i}")))
            .collect();
        let ids = store.outbox_push(records).await.expect("push");
        assert_eq!(flushes(), before + 1, "one flush for the batch");
        assert_eq!(ids.len(), 500);
        store
            .outbox_remove(ids[..499].to_vec())
            .await
            .expect("remove");
        assert_eq!(flushes(), before + 2, "one flush for the removals");
        let pending = store.outbox_pending().await.expect("pending");
        assert_eq!(pending, [(ids[499], Bytes::from_static(b"record 499"))]);
    }

    #[test]
    fn stores_written_before_the_index_are_indexed_when_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = sled::open(dir.path()).expect("open");
            let meta = db.open_tree("meta").expect("tree");
            meta.insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())
                .expect("insert");
            let prefix = doc_prefix(&DocName::from("old"));
            db.open_tree("log")
                .expect("tree")
                .insert(log_key(&prefix, 1), &b"abc"[..])
                .expect("insert");
            db.flush().expect("flush");
        }
        let store = SledStore::open(dir.path()).expect("open");
        let indexed = store.inner.doc_info(&DocName::from("old")).expect("info");
        assert_eq!(indexed.map(|info| info.size), Some(3));
    }

    #[test]
    fn a_newer_format_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = sled::open(dir.path()).expect("open");
            let meta = db.open_tree("meta").expect("tree");
            meta.insert(FORMAT_KEY, &99u32.to_be_bytes())
                .expect("insert");
            db.flush().expect("flush");
        }
        assert!(matches!(
            SledStore::open(dir.path()),
            Err(StoreError::UnsupportedFormat { found: 99 })
        ));
    }
}
