//! The [`Registry`]: document name → running actor, loading each document once however many
//! peers arrive together, and the shutdown of all of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info_span, warn, Instrument};

use crate::actor::{spawn_parts, DocError, DocHandle, PeerInfo};
use crate::config::DocConfig;
use crate::document::Document;
use crate::events::EventSink;
use crate::name::DocName;
use crate::peer::{PeerId, PeerOutbox};
use crate::store::{Store, StoreError};

/// How often a join retries when it meets a document in the middle of unloading. Each retry
/// finds either the same new actor or spawns it, so two is already unusual.
pub(crate) const JOIN_ATTEMPTS: usize = 8;

/// All loaded documents. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

pub(crate) struct RegistryInner {
    /// Name → handle of the live actor. The lock is never held across an await.
    docs: Mutex<HashMap<DocName, DocHandle>>,
    store: Arc<dyn Store>,
    config: DocConfig,
    events: Option<EventSink>,
    next_actor: AtomicU64,
    shutdown: CancellationToken,
    actors: TaskTracker,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("loaded", &self.loaded())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Creates an empty registry over a store. Must be called within a tokio runtime's context
    /// only when documents are first used, not at construction.
    pub fn new(store: Arc<dyn Store>, config: DocConfig) -> Self {
        Self::with_events(store, config, None)
    }

    /// Like [`Registry::new`], reporting every document's loads, changes and unloads to `events`.
    pub fn with_events(
        store: Arc<dyn Store>,
        config: DocConfig,
        events: Option<EventSink>,
    ) -> Self {
        Self {
            inner: Arc::new(RegistryInner {
                docs: Mutex::new(HashMap::new()),
                store,
                config,
                events,
                next_actor: AtomicU64::new(1),
                shutdown: CancellationToken::new(),
                actors: TaskTracker::new(),
            }),
        }
    }

    /// The handle of a document's actor, spawning it (which loads the document) on first use.
    pub fn handle(&self, name: &DocName) -> Result<DocHandle, DocError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(DocError::ShuttingDown);
        }
        let mut docs = self.inner.docs.lock().expect("registry lock poisoned");
        if let Some(handle) = docs.get(name) {
            return Ok(handle.clone());
        }
        let actor_id = self.inner.next_actor.fetch_add(1, Ordering::Relaxed);
        let (handle, actor, rx) = spawn_parts(
            name.clone(),
            actor_id,
            self.inner.store.clone(),
            self.inner.config.clone(),
            Arc::downgrade(&self.inner),
            self.inner.events.clone(),
        );
        let span = info_span!(parent: None, "doc", doc = %name);
        self.inner
            .actors
            .spawn(actor.run(rx, self.inner.shutdown.clone()).instrument(span));
        docs.insert(name.clone(), handle.clone());
        Ok(handle)
    }

    /// Adds an anonymous peer that does not receive custom events to a document, loading it if
    /// needed, and returns the document's handle.
    pub async fn join(
        &self,
        name: &DocName,
        peer: PeerId,
        outbox: PeerOutbox,
    ) -> Result<DocHandle, DocError> {
        self.join_as(name, peer, outbox, PeerInfo::default()).await
    }

    /// Adds a peer to a document, loading it if needed, and returns the document's handle.
    pub async fn join_as(
        &self,
        name: &DocName,
        peer: PeerId,
        outbox: PeerOutbox,
        info: PeerInfo,
    ) -> Result<DocHandle, DocError> {
        for _ in 0..JOIN_ATTEMPTS {
            let handle = self.handle(name)?;
            match handle.join(peer, outbox.clone(), info.clone()).await {
                Ok(()) => return Ok(handle),
                Err(DocError::Unloaded) => {
                    // The actor is gone or going; make sure the next attempt starts a new one.
                    self.forget(&handle);
                }
                Err(error) => return Err(error),
            }
        }
        warn!(doc = %name, "document kept unloading while joining");
        Err(DocError::Unloaded)
    }

    /// A document for server code to read and change, loaded if it was not.
    pub async fn document(&self, name: impl Into<DocName>) -> Result<Document, DocError> {
        let document = Document::new(self.clone(), name.into());
        document.read(|_| ()).await?;
        Ok(document)
    }

    /// Forgets a handle whose actor refused work because it was unloading, so the next
    /// [`Registry::handle`] starts a new actor.
    pub(crate) fn forget(&self, handle: &DocHandle) {
        self.inner
            .remove_if(handle.name(), handle.actor_id, || true);
    }

    /// Number of documents currently loaded.
    pub fn loaded(&self) -> usize {
        self.inner
            .docs
            .lock()
            .expect("registry lock poisoned")
            .len()
    }

    /// Whether a document is currently loaded.
    pub fn is_loaded(&self, name: &DocName) -> bool {
        self.inner
            .docs
            .lock()
            .expect("registry lock poisoned")
            .contains_key(name)
    }

    /// Stops every document: each stores what it has applied and ends. Then flushes the store.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.inner.shutdown.cancel();
        self.inner.actors.close();
        self.inner.actors.wait().await;
        self.inner.store.flush().await
    }
}

impl RegistryInner {
    /// Removes a document's entry if it still belongs to `actor_id` and `allowed()` holds; the
    /// check runs under the lock, so nobody can fetch the handle in between.
    pub(crate) fn remove_if(
        &self,
        name: &DocName,
        actor_id: u64,
        allowed: impl FnOnce() -> bool,
    ) -> bool {
        let mut docs = self.docs.lock().expect("registry lock poisoned");
        match docs.get(name) {
            Some(handle) if handle.actor_id == actor_id && allowed() => {
                docs.remove(name);
                true
            }
            _ => false,
        }
    }
}
