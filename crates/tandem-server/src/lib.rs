//! Tandem on the network: an axum [`Router`] serving y-websocket clients, ready to run on its
//! own ([`serve`]) or to be mounted inside another axum app ([`Tandem::router`]).
//!
//! # Embedding
//!
//! Build a [`Tandem`] with a store (and, usually, an [`Authorizer`] and [`hooks`]), nest its
//! router into your app, and read or change documents from your own handlers through
//! [`Tandem::document`]. Everything runs on your runtime; on shutdown, stop your server first,
//! then call [`Tandem::shutdown`] to close Tandem's sockets and store every document.
//!
//! ```
//! use std::sync::Arc;
//!
//! use tandem_core::SledStore;
//! use tandem_server::hooks::FnHooks;
//! use tandem_server::Tandem;
//! use yrs::{GetString, ReadTxn, Text, WriteTxn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let tandem = Tandem::builder()
//!     .store(Arc::new(SledStore::open(dir.path())?))
//!     .hooks(Arc::new(FnHooks::new().on_change(|change| async move {
//!         println!("{} changed", change.doc);
//!     })))
//!     .build()?;
//!
//! // y-websocket clients connect to ws://HOST/collab/ws/{document}.
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "my app" }))
//!     .nest("/collab", tandem.router());
//!
//! // Server-side editing: connected clients see the change; it is stored like theirs.
//! let note = tandem.document("notes/1").await?;
//! note.transact(|txn| txn.get_or_insert_text("text").insert(txn, 0, "hello"))
//!     .await?;
//! note.persisted().await?;
//! let text = note.read(|txn| txn.get_text("text").map(|t| t.get_string(txn))).await?;
//! assert_eq!(text.as_deref(), Some("hello"));
//! assert_eq!(note.get_json().await?, serde_json::json!({ "text": "hello" }));
//!
//! // Serve with your shutdown signal (here one that fires at once, to keep the example short).
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! axum::serve(listener, app)
//!     .with_graceful_shutdown(async {})
//!     .await?;
//! drop(note);
//! tandem.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`Tandem`]: the server state (registry, authorizer, hooks, configuration, connection
//!   tracking), built with [`Tandem::builder`], and its graceful [`Tandem::shutdown`].
//! - [`config`]: connection-level limits and their defaults.
//! - [`hooks`]: what the embedding app is told, and how it can veto connections.
//! - `auth`: credentials from requests (query, header, cookie) and 401/403 responses.
//! - `accept`: the accept loop of [`serve`]: HTTP connection caps, header-read and idle
//!   timeouts.
//! - `limits`: connection caps and per-connection token buckets.
//! - `creation`: how many new documents one caller may create.
//! - `ws`: one task per WebSocket connection: checks, limits, rights, keep-alive, eviction.
//! - `hocuspocus`: the Hocuspocus protocol at `GET /ws`: many document sessions per socket.
//! - `api`: what the HTTP endpoints share: [`ApiConfig`], JSON errors, authorization.
//! - `rest`: `/docs`: read, change, list and delete documents; presence over HTTP.
//! - `sse`: Server-Sent Events of one or several documents, resumable.
//! - [`webhooks`]: signed, debounced notifications through an outbox in the store.
//! - `metrics`: `/metrics` (Prometheus), `/status`, `/readyz`.
//! - `peers`: who is connected to which document, by transport.
//! - [`mod@openapi`]: the OpenAPI description, generated from the operation table.
//!
//! # Routes
//!
//! - `GET /ws/{doc}`: y-websocket; the document name is the rest of the path, percent-decoded,
//!   and may contain `/`.
//! - `GET /ws`: Hocuspocus (`@hocuspocus/provider` v3/v4); document names travel in the frames.
//! - `/docs…`, `/events`: the HTTP API (see [`openapi()`] and the README).
//! - `GET /healthz`: 200 while the process serves; `GET /readyz`: 200 while it accepts work.
//! - `GET /status`, `GET /metrics`, `GET /openapi.json`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderValue, Method};
use axum::routing::{any, get, MethodRouter};
use axum::Router;
use tandem_core::auth::AllowAll;
use tandem_core::{Authorizer, DocError, DocEvent, DocName, Document, Registry, Store, StoreError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;
use tracing::info_span;

mod accept;
mod api;
mod auth;
pub mod config;
mod creation;
mod hocuspocus;
pub mod hooks;
mod limits;
mod metrics;
pub mod openapi;
mod peers;
mod rest;
mod sse;
pub mod webhooks;
mod ws;

pub use api::{
    ApiConfig, DEFAULT_HTTP_PRESENCE_BURST, DEFAULT_HTTP_PRESENCE_PER_SEC, DEFAULT_LIST_LIMIT,
    DEFAULT_MAX_HTTP_PRESENCE_PER_CALLER, DEFAULT_MAX_HTTP_PRESENCE_PER_DOC,
    DEFAULT_MAX_STREAM_DOCS, DEFAULT_SSE_JSON_INTERVAL, DEFAULT_SSE_PING_INTERVAL,
    DEFAULT_STATUS_TOP, MAX_LIST_LIMIT,
};
pub use config::{Config, RateLimit};
pub use openapi::openapi;
pub use webhooks::{WebhookConfig, WebhookError};
pub use ws::{
    CLOSE_DOCUMENT_DELETED, CLOSE_DOCUMENT_TOO_LARGE, CLOSE_GOING_AWAY, CLOSE_INTERNAL,
    CLOSE_POLICY, CLOSE_PROTOCOL_ERROR, CLOSE_TOKEN_EXPIRED, CLOSE_TOO_BIG, CLOSE_TRY_AGAIN,
    CLOSE_UNSUPPORTED,
};

use hooks::{HookConfig, HookEvent, HookQueue, Hooks};
use limits::ConnectionLimiter;

/// The state of a Tandem server. Cheap to clone; clones share everything.
#[derive(Clone, Debug)]
pub struct Tandem {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    config: Config,
    authorizer: Arc<dyn Authorizer>,
    /// Where events go for the app's hooks, if it has any.
    hooks: Option<(Arc<dyn Hooks>, HookQueue)>,
    /// Open WebSocket connections, in total and per address.
    connections: ConnectionLimiter,
    /// New documents per caller.
    creations: creation::CreationLimiter,
    stats: Stats,
    /// Cancelled when the server shuts down: every connection closes with 1001.
    closing: CancellationToken,
    /// Every WebSocket connection task, and every HTTP connection task of [`serve`], so
    /// shutdown can wait for them (a server's graceful shutdown does not wait for upgraded
    /// connections).
    tasks: TaskTracker,
    /// The store, for listings, deletions, metadata and readiness.
    store: Arc<dyn Store>,
    /// Tunables of the HTTP API.
    api: ApiConfig,
    /// Counters for `/metrics`.
    metrics: Arc<metrics::Metrics>,
    /// Every peer of every document, with its subject.
    peers: peers::PeerDirectory,
    /// Clients publishing presence over HTTP.
    http_presence: rest::HttpPresence,
    /// Where webhook events go, when webhooks are configured.
    webhooks: Option<webhooks::WebhookQueue>,
    /// The webhook dispatcher and what stops it (after the documents stored their last
    /// changes, so their notifications reach the outbox).
    webhook_task: Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
    /// When the server was built, for its uptime.
    started: std::time::Instant,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tandem")
            .field("config", &self.config)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// Counters of what the server refused, since it started.
#[derive(Debug, Default)]
struct Stats {
    denied_updates: AtomicU64,
    rate_limited: AtomicU64,
    refused_connections: AtomicU64,
}

/// A snapshot of the server's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Document changes dropped because their sender may not write.
    pub denied_updates: u64,
    /// Connections closed for sending faster than their rate limit.
    pub rate_limited: u64,
    /// Connections refused by the connection caps.
    pub refused_connections: u64,
    /// WebSocket connections open now.
    pub open_connections: u64,
}

/// Why a [`Builder`] could not build a server.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No store was given.
    #[error("a store is required")]
    NoStore,
    /// An allowed origin is not a valid header value.
    #[error("invalid allowed origin {0:?}")]
    InvalidOrigin(String),
    /// Hooks need a tokio runtime to deliver events from, and `build` ran outside one.
    #[error("build() must run inside a tokio runtime when hooks or webhooks are set")]
    NoRuntime,
    /// The webhook configuration is not usable.
    #[error(transparent)]
    Webhooks(#[from] WebhookError),
}

/// Configures a [`Tandem`]: its store, who may open what, and its limits.
#[derive(Default)]
pub struct Builder {
    store: Option<Arc<dyn Store>>,
    authorizer: Option<Arc<dyn Authorizer>>,
    hooks: Option<Arc<dyn Hooks>>,
    hook_config: HookConfig,
    config: Config,
    api: ApiConfig,
    webhooks: Option<WebhookConfig>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Where documents are kept. Required.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Who may open what. Without one, everyone may do everything ([`AllowAll`]).
    pub fn authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.authorizer = Some(authorizer);
        self
    }

    /// What the app is told about connections and documents (see [`hooks`]).
    pub fn hooks(mut self, hooks: Arc<dyn Hooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// How changes are batched for [`Hooks::on_change`]; [`HookConfig::default`] unless given.
    pub fn hook_config(mut self, config: HookConfig) -> Self {
        self.hook_config = config;
        self
    }

    /// Limits and tunables; [`Config::default`] unless given.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Tunables of the HTTP API; [`ApiConfig::default`] unless given.
    pub fn api_config(mut self, api: ApiConfig) -> Self {
        self.api = api;
        self
    }

    /// Delivers webhooks (see [`webhooks`]). Needs a store with an outbox to survive restarts.
    pub fn webhooks(mut self, webhooks: WebhookConfig) -> Self {
        self.webhooks = Some(webhooks);
        self
    }

    /// Builds the server. Nothing runs until its router is served.
    pub fn build(self) -> Result<Tandem, BuildError> {
        let store = self.store.ok_or(BuildError::NoStore)?;
        if let Some(origin) = self
            .config
            .allowed_origins
            .iter()
            .find(|origin| HeaderValue::from_str(origin).is_err())
        {
            return Err(BuildError::InvalidOrigin(origin.clone()));
        }
        let config = self.config;
        let hooks = match self.hooks {
            Some(hooks) => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(BuildError::NoRuntime);
                }
                let queue = HookQueue::start(hooks.clone(), self.hook_config);
                Some((hooks, queue))
            }
            None => None,
        };
        let metrics = Arc::new(metrics::Metrics::default());
        let mut webhook_task = None;
        let webhook_queue = match self.webhooks.filter(|webhooks| !webhooks.urls.is_empty()) {
            Some(webhooks) => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(BuildError::NoRuntime);
                }
                let stop = CancellationToken::new();
                let (queue, task) =
                    webhooks::start(webhooks, store.clone(), metrics.clone(), stop.clone())?;
                webhook_task = Some((stop, task));
                Some(queue)
            }
            None => None,
        };
        let hook_queue = hooks.as_ref().map(|(_, queue)| queue.clone());
        let webhook_events = webhook_queue.clone();
        let events = (hook_queue.is_some() || webhook_events.is_some()).then(|| {
            Arc::new(move |event: DocEvent| {
                if let (Some(webhooks), DocEvent::Changed { doc, .. }) = (&webhook_events, &event) {
                    webhooks.send(webhooks::WebhookEvent::Changed { doc: doc.clone() });
                }
                if let Some(queue) = &hook_queue {
                    queue.send(HookEvent::Doc(event));
                }
            }) as _
        });
        Ok(Tandem {
            inner: Arc::new(Inner {
                registry: Registry::with_events(store.clone(), config.doc.clone(), events),
                hooks,
                authorizer: self.authorizer.unwrap_or_else(|| Arc::new(AllowAll)),
                connections: ConnectionLimiter::new(
                    config.max_connections,
                    config.max_connections_per_ip,
                ),
                creations: creation::CreationLimiter::new(
                    config.doc_creations_per_min,
                    config.doc_creation_burst,
                ),
                stats: Stats::default(),
                config,
                closing: CancellationToken::new(),
                tasks: TaskTracker::new(),
                store,
                api: self.api,
                metrics,
                peers: peers::PeerDirectory::default(),
                http_presence: rest::HttpPresence::default(),
                webhooks: webhook_queue,
                webhook_task: Mutex::new(webhook_task),
                started: std::time::Instant::now(),
            }),
        })
    }
}

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be flushed at shutdown.
    #[error("could not flush the store: {0}")]
    Store(#[from] StoreError),
}

impl Tandem {
    /// Starts configuring a server.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// What the server refused so far, and how many connections are open.
    pub fn counters(&self) -> Counters {
        let stats = &self.inner.stats;
        Counters {
            denied_updates: stats.denied_updates.load(Ordering::Relaxed),
            rate_limited: stats.rate_limited.load(Ordering::Relaxed),
            refused_connections: stats.refused_connections.load(Ordering::Relaxed),
            open_connections: self.inner.connections.open() as u64,
        }
    }

    /// A document for server code to read and change (see [`Document`]), loaded if it was
    /// not. Changes reach every connected peer and are stored like a peer's.
    pub async fn document(&self, name: impl Into<DocName>) -> Result<Document, DocError> {
        self.inner.registry.document(name).await
    }

    /// The loaded documents.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The routes of this server, to serve or to nest in another app.
    pub fn router(&self) -> Router {
        router(self.clone())
    }

    /// Starts shutting down without waiting: `/readyz` answers 503, event streams end (so
    /// an HTTP server's graceful shutdown, which waits for open responses, can finish) and
    /// WebSocket connections close with 1001. [`serve`] calls it when its shutdown signal
    /// fires; an embedding app calls it before stopping its own server.
    pub fn begin_shutdown(&self) {
        self.inner.closing.cancel();
    }

    /// Closes every connection (1001), stores every document, flushes the store, and stops
    /// the webhook dispatcher (deliveries not yet made stay in the outbox for the next start).
    ///
    /// Call it after the listener stopped accepting.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.inner.closing.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        let stored = self.inner.registry.shutdown().await;
        if let Some((_, queue)) = &self.inner.hooks {
            queue.flush().await;
        }
        let webhooks = self
            .inner
            .webhook_task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((stop, task)) = webhooks {
            stop.cancel();
            let _ = task.await;
        }
        stored
    }
}

/// What a top-level route serves.
#[derive(Debug, Clone, Copy)]
enum Route {
    WebSocket,
    Hocuspocus,
    Healthz,
    Readyz,
    Status,
    Metrics,
    OpenApi,
    ListDocuments,
    /// Everything under `/docs/{doc}`, dispatched by `rest::DOC_ENDPOINTS`.
    Document,
    Events,
}

/// The router's routes: path, method (`None`: every method, dispatched further) and what
/// serves them.
const ROUTES: [(&str, Option<Method>, Route); 10] = [
    ("/ws", Some(Method::GET), Route::Hocuspocus),
    ("/ws/{*doc}", Some(Method::GET), Route::WebSocket),
    ("/healthz", Some(Method::GET), Route::Healthz),
    ("/readyz", Some(Method::GET), Route::Readyz),
    ("/status", Some(Method::GET), Route::Status),
    ("/metrics", Some(Method::GET), Route::Metrics),
    ("/openapi.json", Some(Method::GET), Route::OpenApi),
    ("/docs", Some(Method::GET), Route::ListDocuments),
    ("/docs/{*rest}", None, Route::Document),
    ("/events", Some(Method::GET), Route::Events),
];

fn method_router(route: Route) -> MethodRouter<Tandem> {
    match route {
        Route::WebSocket => get(ws::upgrade),
        Route::Hocuspocus => get(hocuspocus::upgrade),
        Route::Healthz => get(|| async { "ok" }),
        Route::Readyz => get(metrics::readyz),
        Route::Status => get(metrics::status),
        Route::Metrics => get(metrics::metrics),
        Route::OpenApi => get(openapi::serve),
        Route::ListDocuments => get(rest::list),
        Route::Document => any(rest::doc_route),
        Route::Events => get(sse::events),
    }
}

/// Every method and path the router serves, with document paths written as OpenAPI writes
/// them (`/docs/{doc}/json`). The OpenAPI document lists exactly these.
pub fn routes() -> Vec<(Method, String)> {
    let mut routes = Vec::new();
    for (path, method, route) in ROUTES {
        match (route, method) {
            (Route::Document, _) => {
                for (suffix, method, _) in rest::DOC_ENDPOINTS {
                    routes.push((method, format!("/docs/{{doc}}{suffix}")));
                }
            }
            (_, Some(method)) => routes.push((method, path.replace("{*doc}", "{doc}"))),
            (_, None) => {}
        }
    }
    routes
}

/// The routes of a Tandem server with its state applied.
pub fn router(tandem: Tandem) -> Router {
    let cors = cors(&tandem.config().allowed_origins);
    let body_limit = DefaultBodyLimit::max(tandem.config().max_body_bytes);
    let mut router = Router::new();
    for (path, _, route) in ROUTES {
        router = router.route(path, method_router(route));
    }
    // `/ws/{*doc}` does not match an empty name; `/ws/` gets the handler's 400 rather than 404.
    router = router.route("/ws/", method_router(Route::WebSocket));
    router
        .layer(body_limit)
        .layer(cors)
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                // The matched route, never the raw URI: query strings may carry tokens.
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", MatchedPath::as_str);
                info_span!("http", method = %request.method(), route)
            }),
        )
        .with_state(tandem)
}

/// CORS for the HTTP API: the allowed origins, or any when none are configured (the API takes
/// bearer tokens, not cookies, so a page on another origin gains nothing it could not do with
/// the token itself).
fn cors(allowed_origins: &[String]) -> CorsLayer {
    let origins = if allowed_origins.is_empty() {
        AllowOrigin::any()
    } else {
        // `Builder::build` refused origins that are not header values.
        AllowOrigin::list(
            allowed_origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        // `Last-Event-ID`: browsers' EventSource sends it when it reconnects.
        .allow_headers([
            AUTHORIZATION,
            CONTENT_TYPE,
            axum::http::HeaderName::from_static("last-event-id"),
        ])
}

/// Serves `tandem` on `listener` until `shutdown` is cancelled, then shuts it down gracefully:
/// stop accepting, close every socket, store every document, flush.
///
/// HTTP/1.1 connections are capped ([`Config::max_http_connections`], per IP
/// [`Config::max_http_connections_per_ip`]: more are answered 503 and closed at accept) and
/// closed when their headers are late ([`Config::header_read_timeout`]) or when they idle
/// between requests ([`Config::http_idle_timeout`]). Accept errors such as `EMFILE` pause the
/// loop briefly instead of spinning.
pub async fn serve(
    listener: TcpListener,
    tandem: Tandem,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let app = tandem.router();
    serve_app(listener, tandem, app, shutdown).await
}

/// Like [`serve`], with `app` as the router: [`Tandem::router`] with the host's own routes
/// merged in (the `tandem` binary adds its web demo this way). `app` must hold `tandem`'s
/// routes; `tandem` is shut down the same way when `shutdown` is cancelled.
pub async fn serve_app(
    listener: TcpListener,
    tandem: Tandem,
    app: Router,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    accept::accept_loop(listener, &tandem, app, &shutdown).await;
    // Event streams end and WebSockets close with 1001; connections finish what is in flight.
    tandem.shutdown().await?;
    Ok(())
}
