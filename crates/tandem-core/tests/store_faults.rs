//! A store that fails on demand (a full disk, an I/O error): the document stops accepting
//! writes, its peers are told (eviction `DocumentFailed`, close 1011 on a socket), nothing that
//! was not written is acknowledged, and the next use reloads what the store has.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tandem_core::peer::{queue, Eviction, PeerId};
use tandem_core::store::{LogEntry, Snapshot, StoredDoc};
use tandem_core::{
    DocConfig, DocError, DocInfo, DocName, Registry, SledStore, Store, StoreError, StoredEvent,
    UpdateError,
};
use yrs::{Map, Transact, WriteTxn};

/// A real sled store whose writes fail while `failing` is set, like a full disk.
struct FaultyStore {
    inner: SledStore,
    failing: AtomicBool,
}

impl FaultyStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::Io(
                "No space left on device (os error 28)".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn load(&self, name: &DocName) -> Result<StoredDoc, StoreError> {
        self.inner.load(name).await
    }
    async fn append(&self, name: &DocName, entries: Vec<LogEntry>) -> Result<(), StoreError> {
        self.check()?;
        self.inner.append(name, entries).await
    }
    async fn compact(&self, name: &DocName, snapshot: Snapshot) -> Result<(), StoreError> {
        self.check()?;
        self.inner.compact(name, snapshot).await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.flush().await
    }
    async fn append_events(
        &self,
        name: &DocName,
        events: Vec<StoredEvent>,
        keep: usize,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.append_events(name, events, keep).await
    }
    async fn load_events(&self, name: &DocName) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.load_events(name).await
    }
    async fn doc_info(&self, name: &DocName) -> Result<Option<DocInfo>, StoreError> {
        self.inner.doc_info(name).await
    }
}

fn update_setting(key: &str, client: u64) -> Vec<u8> {
    let doc = yrs::Doc::with_client_id(client);
    let mut txn = doc.transact_mut();
    txn.get_or_insert_map("m").insert(&mut txn, key, 1);
    txn.encode_update_v1()
}

#[tokio::test]
async fn a_failing_store_stops_the_document_and_acknowledges_nothing_unwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FaultyStore {
        inner: SledStore::open(dir.path()).expect("open"),
        failing: AtomicBool::new(false),
    });
    let registry = Registry::new(store.clone(), DocConfig::default());
    let doc = registry.document("d").await.expect("load");
    doc.apply_update_durable(&update_setting("written", 1))
        .await
        .expect("a healthy store acknowledges");

    let (outbox, inbox) = queue(64);
    registry
        .join(&DocName::from("d"), PeerId::next(), outbox)
        .await
        .expect("join");
    let evicted = inbox.eviction();

    store.failing.store(true, Ordering::SeqCst);
    let refused = doc.apply_update_durable(&update_setting("lost", 2)).await;
    assert!(
        matches!(refused, Err(UpdateError::Document(DocError::Store(_)))),
        "an update the store could not write is not acknowledged: {refused:?}"
    );
    let reason = tokio::time::timeout(Duration::from_secs(5), evicted.evicted())
        .await
        .expect("the peer is told");
    assert_eq!(reason, Eviction::DocumentFailed);

    // The store recovers (space freed): the document reloads exactly what was written.
    store.failing.store(false, Ordering::SeqCst);
    let json = registry
        .document("d")
        .await
        .expect("reload")
        .get_json()
        .await
        .expect("json");
    assert_eq!(json, serde_json::json!({ "m": { "written": 1 } }));
    registry.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn persist_after_a_failure_is_not_answered_by_a_fresh_actor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FaultyStore {
        inner: SledStore::open(dir.path()).expect("open"),
        failing: AtomicBool::new(true),
    });
    let registry = Registry::new(store.clone(), DocConfig::default());
    let doc = registry.document("d").await.expect("load");
    // Many writers at once: none of them may be told its update is durable.
    let writers: Vec<_> = (0..20)
        .map(|i| {
            let doc = doc.clone();
            tokio::spawn(async move {
                doc.apply_update_durable(&update_setting(&format!("k{i}"), 10 + i))
                    .await
            })
        })
        .collect();
    for writer in writers {
        let outcome = writer.await.expect("writer");
        assert!(
            outcome.is_err(),
            "acknowledged without a store: {outcome:?}"
        );
    }
    store.failing.store(false, Ordering::SeqCst);
    let json = doc.get_json().await.expect("json");
    assert_eq!(json, serde_json::json!({}));
    registry.shutdown().await.expect("shutdown");
}
