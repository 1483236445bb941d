//! Telling the embedding app what happens: connections, document loads, changes and unloads.
//!
//! Implement [`Hooks`] (every method has a default that does nothing), or build one from
//! closures with [`FnHooks`], and give it to [`Builder::hooks`](crate::Builder::hooks).
//!
//! Hooks never hold a document up. Documents report their events to a queue and go on; one task
//! delivers them to the hooks in order. A slow hook delays only the delivery of later events.
//! Changes are debounced per document: the updates of a burst arrive together in one
//! [`Change`], once the document has been quiet for [`HookConfig::debounce`] (or
//! [`HookConfig::max_delay`] after the burst began, whichever comes first).
//! [`Hooks::on_connect`] is the exception: it runs before the WebSocket upgrade, so it can veto
//! the connection (403); it delays only the connection it decides on.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::FutureExt;
use tandem_core::{DocEvent, DocName, Origin, PeerId, Rights};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, error, Instrument};

/// A connection, as hooks see it.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The document it opens.
    pub doc: DocName,
    /// Its peer id, unique in the process.
    pub peer: PeerId,
    /// Who the authorizer said it is.
    pub subject: Option<String>,
    /// What it may do.
    pub rights: Rights,
    /// Where it comes from, when known.
    pub remote_addr: Option<SocketAddr>,
}

/// A refused connection: the client gets 403 with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Veto {
    /// Why, for the client.
    pub reason: String,
}

impl Veto {
    /// A veto with a reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// A burst of changes to one document.
#[derive(Debug, Clone)]
pub struct Change {
    /// Which document.
    pub doc: DocName,
    /// The updates, in the order they were applied, each exactly what it changed (Yjs v1).
    pub updates: Vec<Bytes>,
    /// Who made each update, in the same order.
    pub origins: Vec<Origin>,
}

impl Change {
    /// The updates merged into one Yjs v1 update.
    ///
    /// A convenience for a few updates: `yrs::merge_updates_v1` costs more than linear time in
    /// the number of updates, so for a long burst (thousands of keystrokes) apply `updates` in
    /// order to a `yrs::Doc` instead. Tandem itself never merges: it stores and sends each
    /// update as it is and compacts by encoding the live document.
    pub fn merged(&self) -> Result<Vec<u8>, yrs::encoding::read::Error> {
        yrs::merge_updates_v1(self.updates.iter().map(|update| &update[..]))
    }
}

/// A custom event sent to a document's peers.
#[derive(Debug, Clone)]
pub struct CustomEvent {
    /// Which document.
    pub doc: DocName,
    /// Its sequence number in the document.
    pub seq: u64,
    /// The event as peers receive it: JSON with `seq`, `type`, `data`, `from`, `at`.
    pub json: Bytes,
}

/// What the embedding app is told. Every method does nothing unless overridden.
#[async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// A connection passed authorization and is about to be upgraded. Return a [`Veto`] to
    /// refuse it with 403.
    async fn on_connect(&self, _connection: &ConnectionInfo) -> Result<(), Veto> {
        Ok(())
    }

    /// A connection closed.
    async fn on_disconnect(&self, _connection: &ConnectionInfo) {}

    /// A document was loaded into memory.
    async fn on_load(&self, _doc: &DocName) {}

    /// A document changed (debounced).
    async fn on_change(&self, _change: &Change) {}

    /// A document was stored compactly and left memory. Changes made before are delivered first.
    async fn on_unload(&self, _doc: &DocName) {}

    /// A custom event was sent (not debounced: one call per event).
    async fn on_event(&self, _event: &CustomEvent) {}
}

/// Hooks that do nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Callback<T> = Box<dyn Fn(T) -> BoxFuture + Send + Sync>;
type VetoFuture = Pin<Box<dyn Future<Output = Result<(), Veto>> + Send>>;

/// [`Hooks`] built from closures returning futures, for the hooks an app cares about.
///
/// ```
/// use tandem_server::hooks::FnHooks;
///
/// let hooks = FnHooks::new()
///     .on_change(|change| async move {
///         println!("{} changed: {} updates", change.doc, change.updates.len());
///     })
///     .on_connect(|connection| async move {
///         if connection.subject.as_deref() == Some("mallory") {
///             return Err(tandem_server::hooks::Veto::new("not you"));
///         }
///         Ok(())
///     });
/// # drop(hooks);
/// ```
#[derive(Default)]
pub struct FnHooks {
    connect: Option<Box<dyn Fn(ConnectionInfo) -> VetoFuture + Send + Sync>>,
    disconnect: Option<Callback<ConnectionInfo>>,
    load: Option<Callback<DocName>>,
    change: Option<Callback<Change>>,
    unload: Option<Callback<DocName>>,
    event: Option<Callback<CustomEvent>>,
}

impl std::fmt::Debug for FnHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnHooks").finish_non_exhaustive()
    }
}

fn boxed<T, F, Fut>(f: F) -> Callback<T>
where
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Box::new(move |value| Box::pin(f(value)))
}

impl FnHooks {
    /// No hooks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// See [`Hooks::on_connect`].
    pub fn on_connect<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(ConnectionInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Veto>> + Send + 'static,
    {
        self.connect = Some(Box::new(move |info| Box::pin(f(info))));
        self
    }

    /// See [`Hooks::on_disconnect`].
    pub fn on_disconnect<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(ConnectionInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.disconnect = Some(boxed(f));
        self
    }

    /// See [`Hooks::on_load`].
    pub fn on_load<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(DocName) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.load = Some(boxed(f));
        self
    }

    /// See [`Hooks::on_change`].
    pub fn on_change<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Change) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.change = Some(boxed(f));
        self
    }

    /// See [`Hooks::on_unload`].
    pub fn on_unload<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(DocName) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.unload = Some(boxed(f));
        self
    }

    /// See [`Hooks::on_event`].
    pub fn on_event<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(CustomEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.event = Some(boxed(f));
        self
    }
}

#[async_trait]
impl Hooks for FnHooks {
    async fn on_connect(&self, connection: &ConnectionInfo) -> Result<(), Veto> {
        match &self.connect {
            Some(f) => f(connection.clone()).await,
            None => Ok(()),
        }
    }

    async fn on_disconnect(&self, connection: &ConnectionInfo) {
        if let Some(f) = &self.disconnect {
            f(connection.clone()).await;
        }
    }

    async fn on_load(&self, doc: &DocName) {
        if let Some(f) = &self.load {
            f(doc.clone()).await;
        }
    }

    async fn on_change(&self, change: &Change) {
        if let Some(f) = &self.change {
            f(change.clone()).await;
        }
    }

    async fn on_unload(&self, doc: &DocName) {
        if let Some(f) = &self.unload {
            f(doc.clone()).await;
        }
    }

    async fn on_event(&self, event: &CustomEvent) {
        if let Some(f) = &self.event {
            f(event.clone()).await;
        }
    }
}

/// How changes are batched for [`Hooks::on_change`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookConfig {
    /// Deliver a document's changes once it has been quiet this long.
    pub debounce: Duration,
    /// … but no later than this after the first undelivered change.
    pub max_delay: Duration,
}

/// Quiet time before a document's changes are delivered: a typing pause.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(500);

/// Longest a change waits for delivery during continuous typing.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(5);

impl Default for HookConfig {
    fn default() -> Self {
        Self {
            debounce: DEFAULT_DEBOUNCE,
            max_delay: DEFAULT_MAX_DELAY,
        }
    }
}

/// What the delivery task receives.
pub(crate) enum HookEvent {
    Doc(DocEvent),
    Disconnected(ConnectionInfo),
    /// Deliver everything pending now, then acknowledge.
    Flush(oneshot::Sender<()>),
}

/// Undelivered changes of one document.
struct Pending {
    updates: Vec<Bytes>,
    origins: Vec<Origin>,
    first: Instant,
    last: Instant,
}

impl Pending {
    fn due(&self, config: &HookConfig) -> Instant {
        (self.last + config.debounce).min(self.first + config.max_delay)
    }
}

/// The queue documents and connections report to, and the task that delivers to the hooks.
#[derive(Clone)]
pub(crate) struct HookQueue {
    events: mpsc::UnboundedSender<HookEvent>,
}

impl HookQueue {
    /// Starts the delivery task. Needs a tokio runtime.
    pub(crate) fn start(hooks: Arc<dyn Hooks>, config: HookConfig) -> Self {
        let (events, rx) = mpsc::unbounded_channel();
        let span = tracing::info_span!(parent: None, "hooks");
        tokio::spawn(deliver(hooks, config, rx).instrument(span));
        Self { events }
    }

    pub(crate) fn send(&self, event: HookEvent) {
        // The task ends only when every queue handle is gone.
        let _ = self.events.send(event);
    }

    /// Delivers everything queued so far.
    pub(crate) async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        self.send(HookEvent::Flush(done));
        let _ = flushed.await;
    }
}

async fn deliver(
    hooks: Arc<dyn Hooks>,
    config: HookConfig,
    mut events: mpsc::UnboundedReceiver<HookEvent>,
) {
    let mut pending: HashMap<DocName, Pending> = HashMap::new();
    loop {
        let due = pending.values().map(|p| p.due(&config)).min();
        tokio::select! {
            event = events.recv() => match event {
                None => break,
                Some(HookEvent::Doc(DocEvent::Changed { doc, update, origin })) => {
                    let now = Instant::now();
                    let entry = pending.entry(doc).or_insert_with(|| Pending {
                        updates: Vec::new(),
                        origins: Vec::new(),
                        first: now,
                        last: now,
                    });
                    entry.updates.push(update);
                    entry.origins.push(origin);
                    entry.last = now;
                }
                Some(HookEvent::Doc(DocEvent::Loaded { doc })) => {
                    guarded("on_load", hooks.on_load(&doc)).await;
                }
                Some(HookEvent::Doc(DocEvent::Unloaded { doc })) => {
                    if let Some(changes) = pending.remove(&doc) {
                        guarded("on_change", hooks.on_change(&change(doc.clone(), changes))).await;
                    }
                    guarded("on_unload", hooks.on_unload(&doc)).await;
                }
                Some(HookEvent::Doc(DocEvent::Event { doc, seq, json })) => {
                    let event = CustomEvent { doc, seq, json };
                    guarded("on_event", hooks.on_event(&event)).await;
                }
                Some(HookEvent::Disconnected(connection)) => {
                    guarded("on_disconnect", hooks.on_disconnect(&connection)).await;
                }
                Some(HookEvent::Flush(done)) => {
                    for (doc, changes) in std::mem::take(&mut pending) {
                        guarded("on_change", hooks.on_change(&change(doc, changes))).await;
                    }
                    let _ = done.send(());
                }
            },
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let now = Instant::now();
                let ready: Vec<DocName> = pending
                    .iter()
                    .filter(|(_, p)| p.due(&config) <= now)
                    .map(|(doc, _)| doc.clone())
                    .collect();
                for doc in ready {
                    if let Some(changes) = pending.remove(&doc) {
                        guarded("on_change", hooks.on_change(&change(doc, changes))).await;
                    }
                }
            }
        }
    }
    debug!("hook delivery stopped");
}

/// Runs one hook call; a panicking hook is logged and the delivery goes on.
async fn guarded(hook: &'static str, call: impl Future<Output = ()>) {
    if std::panic::AssertUnwindSafe(call)
        .catch_unwind()
        .await
        .is_err()
    {
        error!(hook, "hook panicked");
    }
}

fn change(doc: DocName, pending: Pending) -> Change {
    Change {
        doc,
        updates: pending.updates,
        origins: pending.origins,
    }
}
