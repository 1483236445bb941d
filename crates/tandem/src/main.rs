//! `tandem`: the Tandem server binary. Thin by design: it parses configuration, sets up logging,
//! opens the store and hands everything to `tandem_server::serve`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use tandem_core::auth::jwt::{unix_now, MAX_EXP_SECS};
use tandem_core::auth::{AllowAll, JwtAuthorizer, JwtClaims, JwtSigner};
use tandem_core::config as doc_defaults;
use tandem_core::store::check_document;
use tandem_core::{Authorizer, DocConfig, Rights, SledStore, Store};
use tandem_server::config as server_defaults;
use tandem_server::{ApiConfig, Config, RateLimit, Tandem, WebhookConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

mod web;

/// File descriptors kept for everything but client connections: the store's files, the
/// listener, the runtime's own descriptors, webhook deliveries, the log, and sockets accepted
/// only to be refused. The connection caps must fit in what the limit leaves.
const FD_RESERVE: u64 = 256;

/// A realtime collaboration server for Yjs documents.
#[derive(Debug, Parser)]
#[command(name = "tandem", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve documents to y-websocket clients.
    Serve(Box<ServeArgs>),
    /// Print a signed access token, for development and scripts.
    Token(TokenArgs),
    /// Check a data directory: the store opens and every stored document decodes. Lists each
    /// document; exits with 1 if anything is damaged.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// Directory of the embedded store (sled) to check.
    #[arg(long, env = "TANDEM_DATA_DIR", default_value = "./tandem-data")]
    data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TANDEM_ADDR", default_value = "127.0.0.1:4455")]
    addr: SocketAddr,

    /// Directory of the embedded store (sled); created if missing.
    #[arg(long, env = "TANDEM_DATA_DIR", default_value = "./tandem-data")]
    data_dir: PathBuf,

    /// Log format. Filter with RUST_LOG (default: info).
    #[arg(long, env = "TANDEM_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,

    /// Largest WebSocket frame accepted, in bytes; larger ones close the connection with 1009.
    #[arg(long, env = "TANDEM_MAX_FRAME_BYTES", default_value_t = server_defaults::DEFAULT_MAX_FRAME_BYTES)]
    max_frame_bytes: usize,

    /// Interval between pings; a connection that does not answer by the next ping is closed.
    #[arg(long, env = "TANDEM_PING_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    ping_interval: Duration,

    /// Frames queued for one peer before it is disconnected as too slow (close 1013).
    #[arg(long, env = "TANDEM_PEER_QUEUE", default_value_t = doc_defaults::DEFAULT_PEER_QUEUE)]
    peer_queue: usize,

    /// Bytes queued for one peer before it is disconnected as too slow (close 1013); one larger
    /// frame still goes to a peer whose queue is below it.
    #[arg(long, env = "TANDEM_PEER_QUEUE_BYTES", default_value_t = doc_defaults::DEFAULT_PEER_QUEUE_BYTES)]
    peer_queue_bytes: usize,

    /// How long a document stays in memory after its last peer left.
    #[arg(long, env = "TANDEM_UNLOAD_DELAY", default_value = "30s", value_parser = humantime::parse_duration)]
    unload_delay: Duration,

    /// Compact a document's log into a snapshot once it holds this many bytes.
    #[arg(long, env = "TANDEM_COMPACT_LOG_BYTES", default_value_t = doc_defaults::DEFAULT_COMPACT_LOG_BYTES)]
    compact_log_bytes: u64,

    /// Compact a document's log into a snapshot once it holds this many updates.
    #[arg(long, env = "TANDEM_COMPACT_LOG_ENTRIES", default_value_t = doc_defaults::DEFAULT_COMPACT_LOG_ENTRIES)]
    compact_log_entries: u64,

    /// Commands queued for one document before senders wait.
    #[arg(long, env = "TANDEM_MAILBOX", default_value_t = doc_defaults::DEFAULT_MAILBOX)]
    mailbox: usize,

    /// Longest a graceful shutdown may take before the process gives up and exits with 1.
    #[arg(long, env = "TANDEM_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,

    /// Require HS256 tokens signed with the secret in this file (at least 32 bytes; one
    /// trailing newline is ignored).
    #[arg(
        long,
        env = "TANDEM_JWT_SECRET_FILE",
        conflicts_with = "jwt_public_key"
    )]
    jwt_secret_file: Option<PathBuf>,

    /// Require tokens signed by the private half of this PEM public key: RSA (RS256),
    /// EC P-256 (ES256) or Ed25519 (EdDSA).
    #[arg(long, env = "TANDEM_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,

    /// Require tokens to carry this audience (`aud`).
    #[arg(long, env = "TANDEM_JWT_AUDIENCE")]
    jwt_audience: Option<String>,

    /// A cookie that may carry the token (besides `?token=` and `Authorization: Bearer`).
    #[arg(long, env = "TANDEM_TOKEN_COOKIE")]
    token_cookie: Option<String>,

    /// Without a key, serve anyone on a non-loopback address too. Everyone who can reach the
    /// port can then read and change every document.
    #[arg(long, env = "TANDEM_INSECURE_ALLOW_ANONYMOUS")]
    insecure_allow_anonymous: bool,

    /// A browser origin allowed to connect and call the API (repeat, or separate with commas).
    /// None: any origin.
    #[arg(
        long = "allowed-origin",
        env = "TANDEM_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,

    /// Largest document, in bytes as stored; an update that would exceed it is refused (4413).
    #[arg(long, env = "TANDEM_MAX_DOC_BYTES", default_value_t = doc_defaults::DEFAULT_MAX_DOC_BYTES)]
    max_doc_bytes: u64,

    /// Longest document name, in bytes after percent-decoding (longer: 414).
    #[arg(long, env = "TANDEM_MAX_DOC_NAME_BYTES", default_value_t = server_defaults::DEFAULT_MAX_DOC_NAME_BYTES)]
    max_doc_name_bytes: usize,

    /// Largest awareness state of one client, in bytes (larger: close 1008).
    #[arg(long, env = "TANDEM_MAX_AWARENESS_BYTES", default_value_t = server_defaults::DEFAULT_MAX_AWARENESS_BYTES)]
    max_awareness_bytes: usize,

    /// WebSocket connections open at once (more: 503).
    #[arg(long, env = "TANDEM_MAX_CONNECTIONS", default_value_t = server_defaults::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// WebSocket connections open at once from one IP address (more: 503).
    #[arg(long, env = "TANDEM_MAX_CONNECTIONS_PER_IP", default_value_t = server_defaults::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    max_connections_per_ip: usize,

    /// Time a client has to send a request's headers, from the accept (first request) or from
    /// its first byte (later ones); then the connection is closed.
    #[arg(long, env = "TANDEM_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_read_timeout: Duration,

    /// Time a keep-alive HTTP connection may wait with no request in flight before it is
    /// closed (event streams and WebSockets are never idle).
    #[arg(long, env = "TANDEM_HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    http_idle_timeout: Duration,

    /// HTTP connections open at once, event streams included (more: 503 and closed at accept).
    #[arg(long, env = "TANDEM_MAX_HTTP_CONNECTIONS", default_value_t = server_defaults::DEFAULT_MAX_HTTP_CONNECTIONS)]
    max_http_connections: usize,

    /// HTTP connections open at once from one IP address (more: 503 and closed at accept).
    #[arg(long, env = "TANDEM_MAX_HTTP_CONNECTIONS_PER_IP", default_value_t = server_defaults::DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP)]
    max_http_connections_per_ip: usize,

    /// Largest HTTP request body, in bytes (larger: 413).
    #[arg(long, env = "TANDEM_MAX_BODY_BYTES", default_value_t = server_defaults::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,

    /// Messages (every y-protocols message of a frame, and pings and pongs) one connection may
    /// send per second, sustained; 0 turns the limit off (over it: close 1008).
    #[arg(long, env = "TANDEM_MAX_MESSAGES_PER_SEC", default_value_t = server_defaults::DEFAULT_MESSAGES_PER_SEC)]
    max_messages_per_sec: u32,

    /// Messages one connection may send in a burst above the sustained rate.
    #[arg(long, env = "TANDEM_MESSAGE_BURST", default_value_t = server_defaults::DEFAULT_MESSAGE_BURST)]
    message_burst: u32,

    /// Bytes one connection may send per second, sustained; 0 turns the limit off
    /// (over it: close 1008).
    #[arg(long, env = "TANDEM_MAX_BYTES_PER_SEC", default_value_t = server_defaults::DEFAULT_BYTES_PER_SEC)]
    max_bytes_per_sec: u64,

    /// Bytes one connection may send in a burst above the sustained rate.
    #[arg(long, env = "TANDEM_BYTE_BURST", default_value_t = server_defaults::DEFAULT_BYTE_BURST)]
    byte_burst: u64,

    /// New documents one caller (token subject, else IP address) may create per minute,
    /// sustained; 0 turns the limit off (over it: 429, Hocuspocus PermissionDenied).
    #[arg(long, env = "TANDEM_DOC_CREATIONS_PER_MIN", default_value_t = server_defaults::DEFAULT_DOC_CREATIONS_PER_MIN)]
    doc_creations_per_min: u32,

    /// New documents one caller may create in a burst above the sustained rate.
    #[arg(long, env = "TANDEM_DOC_CREATION_BURST", default_value_t = server_defaults::DEFAULT_DOC_CREATION_BURST)]
    doc_creation_burst: u32,

    /// Client ids one connection may publish presence for at once (more: close 1008).
    #[arg(long, env = "TANDEM_MAX_PRESENCE_CLIENTS", default_value_t = doc_defaults::DEFAULT_MAX_PRESENCE_CLIENTS)]
    max_presence_clients: usize,

    /// Bytes of JSON all presence states of one document may take together (more: close 1008).
    #[arg(long, env = "TANDEM_MAX_PRESENCE_BYTES", default_value_t = doc_defaults::DEFAULT_MAX_PRESENCE_BYTES)]
    max_presence_bytes: usize,

    /// Awareness (presence) changes of a document are coalesced and sent at most this often.
    #[arg(long, env = "TANDEM_AWARENESS_INTERVAL", default_value = "50ms", value_parser = humantime::parse_duration)]
    awareness_interval: Duration,

    /// Custom events kept per document for reconnecting peers (on disk); 0 keeps none.
    #[arg(long, env = "TANDEM_EVENT_HISTORY", default_value_t = doc_defaults::DEFAULT_EVENT_HISTORY)]
    event_history: usize,

    /// Largest custom event, in bytes of JSON (larger: close 1008).
    #[arg(long, env = "TANDEM_MAX_EVENT_BYTES", default_value_t = server_defaults::DEFAULT_MAX_EVENT_BYTES)]
    max_event_bytes: usize,

    /// Custom events one connection may send per second, sustained; 0 turns the limit off
    /// (over it: close 1008).
    #[arg(long, env = "TANDEM_EVENTS_PER_SEC", default_value_t = server_defaults::DEFAULT_EVENTS_PER_SEC)]
    events_per_sec: u32,

    /// Custom events one connection may send in a burst above the sustained rate.
    #[arg(long, env = "TANDEM_EVENT_BURST", default_value_t = server_defaults::DEFAULT_EVENT_BURST)]
    event_burst: u32,

    /// Interval of the `ping` comment on idle event streams.
    #[arg(long, env = "TANDEM_SSE_PING_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    sse_ping_interval: Duration,

    /// Shortest time between two whole-document events of a `?format=json` event stream.
    #[arg(long, env = "TANDEM_SSE_JSON_INTERVAL", default_value = "250ms", value_parser = humantime::parse_duration)]
    sse_json_interval: Duration,

    /// Documents one multiplexed event stream (`/events?doc=…`) may follow (more: 400).
    #[arg(long, env = "TANDEM_MAX_STREAM_DOCS", default_value_t = tandem_server::DEFAULT_MAX_STREAM_DOCS)]
    max_stream_docs: usize,

    /// Documents `/status` lists with their peer counts (the busiest).
    #[arg(long, env = "TANDEM_STATUS_TOP", default_value_t = tandem_server::DEFAULT_STATUS_TOP)]
    status_top: usize,

    /// HTTP presence client ids one caller (token `sub`, else IP address) may hold at once,
    /// over all documents (a new one past it: 429 `caller_presence_limit`).
    #[arg(long, env = "TANDEM_MAX_HTTP_PRESENCE_PER_CALLER", default_value_t = tandem_server::DEFAULT_MAX_HTTP_PRESENCE_PER_CALLER)]
    max_http_presence_per_caller: usize,

    /// HTTP presence client ids one document may have at once (a new one past it: 429
    /// `document_presence_limit`).
    #[arg(long, env = "TANDEM_MAX_HTTP_PRESENCE_PER_DOC", default_value_t = tandem_server::DEFAULT_MAX_HTTP_PRESENCE_PER_DOC)]
    max_http_presence_per_doc: usize,

    /// Presence posts one caller may send per second, sustained; 0 turns the limit off (over
    /// it: 429 `rate_limited` with `Retry-After`).
    #[arg(long, env = "TANDEM_HTTP_PRESENCE_PER_SEC", default_value_t = tandem_server::DEFAULT_HTTP_PRESENCE_PER_SEC)]
    http_presence_per_sec: u32,

    /// Presence posts one caller may send in a burst above the sustained rate.
    #[arg(long, env = "TANDEM_HTTP_PRESENCE_BURST", default_value_t = tandem_server::DEFAULT_HTTP_PRESENCE_BURST)]
    http_presence_burst: u32,

    /// A URL that receives webhooks (repeat, or separate with commas).
    #[arg(
        long = "webhook-url",
        env = "TANDEM_WEBHOOK_URLS",
        value_delimiter = ','
    )]
    webhook_urls: Vec<String>,

    /// Sign webhook bodies with HMAC-SHA256 and the secret in this file (one trailing newline
    /// ignored); the signature is in `X-Tandem-Signature-256`.
    #[arg(long, env = "TANDEM_WEBHOOK_SECRET_FILE")]
    webhook_secret_file: Option<PathBuf>,

    /// Quiet time after a document's last change before its webhook goes out.
    #[arg(long, env = "TANDEM_WEBHOOK_DEBOUNCE", default_value = "2s", value_parser = humantime::parse_duration)]
    webhook_debounce: Duration,

    /// Longest a change waits for its webhook while the document keeps changing.
    #[arg(long, env = "TANDEM_WEBHOOK_MAX_DELAY", default_value = "10s", value_parser = humantime::parse_duration)]
    webhook_max_delay: Duration,

    /// Also send webhooks when peers join and leave documents.
    #[arg(long, env = "TANDEM_WEBHOOK_PEER_EVENTS")]
    webhook_peer_events: bool,

    /// How long one webhook delivery attempt may take.
    #[arg(long, env = "TANDEM_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    webhook_timeout: Duration,

    /// Attempts per webhook delivery before it is given up.
    #[arg(long, env = "TANDEM_WEBHOOK_MAX_ATTEMPTS", default_value_t = tandem_server::webhooks::DEFAULT_WEBHOOK_MAX_ATTEMPTS)]
    webhook_max_attempts: u32,

    /// Wait before the first webhook retry; it doubles with each retry.
    #[arg(long, env = "TANDEM_WEBHOOK_RETRY_BASE", default_value = "1s", value_parser = humantime::parse_duration)]
    webhook_retry_base: Duration,

    /// Longest wait between two webhook retries.
    #[arg(long, env = "TANDEM_WEBHOOK_RETRY_MAX", default_value = "5m", value_parser = humantime::parse_duration)]
    webhook_retry_max: Duration,
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// A document name or pattern the token opens (`notes/*`: every name under `notes/`;
    /// `*`: all). Repeat for several.
    #[arg(long = "doc", required = true)]
    docs: Vec<String>,

    /// The rights on those documents, comma-separated: read, presence, events, write, admin;
    /// `-presence` takes one away (an invisible viewer: `read,-presence`).
    #[arg(long, default_value = "read", value_delimiter = ',')]
    rights: Vec<String>,

    /// How long the token is valid.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,

    /// Who the token is for (`sub`).
    #[arg(long)]
    sub: Option<String>,

    /// The audience (`aud`), for servers started with `--jwt-audience`.
    #[arg(long)]
    aud: Option<String>,

    /// Sign HS256 with the secret in this file (the server's `--jwt-secret-file`).
    #[arg(
        long,
        env = "TANDEM_JWT_SECRET_FILE",
        conflicts_with = "private_key",
        required_unless_present = "private_key"
    )]
    jwt_secret_file: Option<PathBuf>,

    /// Sign with this PEM private key (RSA: RS256, EC P-256: ES256, Ed25519: EdDSA); the server
    /// gets the public half with `--jwt-public-key`.
    #[arg(long)]
    private_key: Option<PathBuf>,
}

impl ServeArgs {
    /// Refuses limits the process cannot honour: zero timeouts, and connection caps beyond the
    /// file descriptor limit (raised to the hard limit first). Caps the user gave (`explicit`
    /// says which, by argument id) must fit; caps left at their defaults shrink to fit.
    fn check_limits(&mut self, explicit: impl Fn(&str) -> bool) -> anyhow::Result<()> {
        if self.header_read_timeout.is_zero() || self.http_idle_timeout.is_zero() {
            bail!("--header-read-timeout and --http-idle-timeout must be longer than zero");
        }
        let Some(fd_limit) = raise_fd_limit() else {
            return Ok(());
        };
        let mut caps = [
            Cap {
                flag: "max-connections",
                value: self.max_connections,
                explicit: explicit("max_connections"),
            },
            Cap {
                flag: "max-http-connections",
                value: self.max_http_connections,
                explicit: explicit("max_http_connections"),
            },
        ];
        fit_caps(&mut caps, fd_limit)?;
        let [ws, http] = caps;
        self.max_connections = ws.value;
        self.max_http_connections = http.value;
        Ok(())
    }

    fn config(&self) -> Config {
        Config {
            max_frame_bytes: self.max_frame_bytes,
            ping_interval: self.ping_interval,
            peer_queue: self.peer_queue,
            peer_queue_bytes: self.peer_queue_bytes,
            max_doc_name_bytes: self.max_doc_name_bytes,
            max_awareness_bytes: self.max_awareness_bytes,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            header_read_timeout: self.header_read_timeout,
            http_idle_timeout: self.http_idle_timeout,
            max_http_connections: self.max_http_connections,
            max_http_connections_per_ip: self.max_http_connections_per_ip,
            max_body_bytes: self.max_body_bytes,
            rate_limit: RateLimit {
                messages_per_sec: self.max_messages_per_sec,
                message_burst: self.message_burst,
                bytes_per_sec: self.max_bytes_per_sec,
                byte_burst: self.byte_burst,
            },
            allowed_origins: self.allowed_origins.clone(),
            token_cookie: self.token_cookie.clone(),
            max_event_bytes: self.max_event_bytes,
            events_per_sec: self.events_per_sec,
            event_burst: self.event_burst,
            doc_creations_per_min: self.doc_creations_per_min,
            doc_creation_burst: self.doc_creation_burst,
            doc: DocConfig {
                unload_delay: self.unload_delay,
                compact_log_bytes: self.compact_log_bytes,
                compact_log_entries: self.compact_log_entries,
                mailbox: self.mailbox,
                max_doc_bytes: self.max_doc_bytes,
                awareness_interval: self.awareness_interval,
                event_history: self.event_history,
                max_presence_clients: self.max_presence_clients,
                max_presence_bytes: self.max_presence_bytes,
            },
        }
    }

    fn api_config(&self) -> ApiConfig {
        ApiConfig {
            sse_ping_interval: self.sse_ping_interval,
            sse_json_interval: self.sse_json_interval,
            max_stream_docs: self.max_stream_docs,
            status_top: self.status_top,
            max_http_presence_per_caller: self.max_http_presence_per_caller,
            max_http_presence_per_doc: self.max_http_presence_per_doc,
            http_presence_per_sec: self.http_presence_per_sec,
            http_presence_burst: self.http_presence_burst,
        }
    }

    fn webhooks(&self) -> anyhow::Result<WebhookConfig> {
        Ok(WebhookConfig {
            urls: self.webhook_urls.clone(),
            secret: self
                .webhook_secret_file
                .as_deref()
                .map(read_secret)
                .transpose()?,
            debounce: self.webhook_debounce,
            max_delay: self.webhook_max_delay,
            peer_events: self.webhook_peer_events,
            timeout: self.webhook_timeout,
            max_attempts: self.webhook_max_attempts.max(1),
            retry_base: self.webhook_retry_base,
            retry_max: self.webhook_retry_max,
        })
    }

    /// The authorizer the key flags ask for; `None` when no key is configured.
    fn authorizer(&self) -> anyhow::Result<Option<JwtAuthorizer>> {
        let authorizer = if let Some(path) = &self.jwt_secret_file {
            JwtAuthorizer::hs256(&read_secret(path)?)
                .with_context(|| format!("using {} as HS256 secret", path.display()))?
        } else if let Some(path) = &self.jwt_public_key {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            JwtAuthorizer::from_public_key_pem(&pem)
                .with_context(|| format!("using {} as public key", path.display()))?
        } else {
            return Ok(None);
        };
        Ok(Some(match &self.jwt_audience {
            Some(audience) => authorizer.with_audience(audience),
            None => authorizer,
        }))
    }
}

/// Raises the soft limit of open files to the hard limit, logs both, and returns the soft limit
/// now in effect (`None`: unlimited, or a platform without one).
#[cfg(unix)]
fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    fn shown(limit: Option<u64>) -> String {
        limit.map_or_else(|| "unlimited".to_owned(), |limit| limit.to_string())
    }
    let before = getrlimit(Resource::Nofile);
    if before.current != before.maximum {
        let raised = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            warn!(%error, soft = %shown(before.current), hard = %shown(before.maximum),
                "could not raise the file descriptor limit");
        }
    }
    let now = getrlimit(Resource::Nofile);
    info!(
        soft = %shown(now.current),
        hard = %shown(now.maximum),
        was = %shown(before.current),
        "file descriptor limit"
    );
    now.current
}

#[cfg(not(unix))]
fn raise_fd_limit() -> Option<u64> {
    None
}

/// A connection cap, by its flag, and whether the user gave it.
#[derive(Debug, Clone, Copy)]
struct Cap {
    flag: &'static str,
    value: usize,
    explicit: bool,
}

/// Fits the connection caps into `fd_limit` minus [`FD_RESERVE`]: caps the user gave must fit
/// together (a clear error otherwise); caps left at their defaults shrink, in proportion, to
/// what the others leave.
fn fit_caps(caps: &mut [Cap], fd_limit: u64) -> anyhow::Result<()> {
    let available = fd_limit.saturating_sub(FD_RESERVE);
    let sum = |explicit: bool| {
        caps.iter()
            .filter(|cap| cap.explicit == explicit)
            .fold(0u64, |sum, cap| sum.saturating_add(cap.value as u64))
    };
    let (given, defaults) = (sum(true), sum(false));
    if given > available {
        let flags = caps
            .iter()
            .filter(|cap| cap.explicit)
            .map(|cap| format!("--{} {}", cap.flag, cap.value))
            .collect::<Vec<_>>()
            .join(" with ");
        bail!(
            "{flags} need {given} file descriptors, but the open-file limit (RLIMIT_NOFILE) is \
             {fd_limit} and {FD_RESERVE} of them are kept for the store, the listener and the \
             runtime: lower the cap to at most {available} or raise the hard limit \
             (ulimit -Hn, LimitNOFILE= in systemd)"
        );
    }
    let left = available - given;
    if defaults <= left {
        return Ok(());
    }
    for cap in caps.iter_mut().filter(|cap| !cap.explicit) {
        // Below `defaults`, which is a sum of a few defaults: no overflow.
        let fitted = (cap.value as u64 * left / defaults) as usize;
        if fitted == 0 {
            bail!(
                "the open-file limit (RLIMIT_NOFILE) of {fd_limit} leaves no file descriptors \
                 for --{}: give lower caps or raise the hard limit (ulimit -Hn)",
                cap.flag
            );
        }
        warn!(
            flag = cap.flag,
            default = cap.value,
            fitted,
            fd_limit,
            "lowering a connection cap to fit the file descriptor limit"
        );
        cap.value = fitted;
    }
    Ok(())
}

/// Reads an HS256 secret file; one trailing newline (what `echo` and editors add) is not part of
/// the secret.
fn read_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut secret = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if secret.ends_with(b"\n") {
        secret.pop();
        if secret.ends_with(b"\r") {
            secret.pop();
        }
    }
    Ok(secret)
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let signer = match (&args.jwt_secret_file, &args.private_key) {
        (Some(path), _) => JwtSigner::hs256(&read_secret(path)?)
            .with_context(|| format!("using {} as HS256 secret", path.display()))?,
        (None, Some(path)) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            JwtSigner::from_private_key_pem(&pem)
                .with_context(|| format!("using {} as private key", path.display()))?
        }
        (None, None) => bail!("give --jwt-secret-file or --private-key"),
    };
    let rights = Rights::parse_list(&args.rights)?;
    if rights.is_empty() {
        bail!("the rights {:?} grant nothing", args.rights);
    }
    let now = unix_now();
    let exp = now.saturating_add(args.ttl.as_secs().max(1));
    if exp > MAX_EXP_SECS {
        bail!(
            "--ttl {:?} ends after the year 9999, which servers refuse",
            args.ttl
        );
    }
    let claims = JwtClaims {
        sub: args.sub,
        exp,
        nbf: None,
        iat: Some(now),
        aud: args.aud,
        docs: args
            .docs
            .into_iter()
            .map(|doc| (doc, args.rights.clone()))
            .collect::<BTreeMap<_, _>>(),
    };
    println!("{}", signer.sign(&claims)?);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    match cli.command {
        Command::Serve(mut args) => {
            init_tracing(args.log_format);
            let given = matches.subcommand_matches("serve");
            args.check_limits(|id| {
                given
                    .and_then(|matches| matches.value_source(id))
                    .is_some_and(|source| source != ValueSource::DefaultValue)
            })?;
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(serve(*args))
        }
        Command::Token(args) => token(args),
        Command::Check(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            if runtime.block_on(check(&args))? {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
    }
}

/// Opens the store and checks every document; prints one line per document and a summary.
/// Returns whether everything is intact.
async fn check(args: &CheckArgs) -> anyhow::Result<bool> {
    if !args.data_dir.is_dir() {
        bail!("{} is not a directory", args.data_dir.display());
    }
    let data_dir = args.data_dir.clone();
    let store = match tokio::task::spawn_blocking(move || SledStore::open(&data_dir)).await? {
        Ok(store) => store,
        Err(error) => {
            println!("DAMAGED store {}: {error}", args.data_dir.display());
            return Ok(false);
        }
    };
    let (mut intact, mut damaged) = (0u64, 0u64);
    let mut after = None;
    loop {
        let page = store.list(b"", after.as_ref(), 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.name.clone());
        for info in page {
            let outcome = match store.load(&info.name).await {
                Ok(stored) => check_document(&stored),
                Err(error) => Err(error.to_string()),
            };
            match outcome {
                Ok(bytes) => {
                    intact += 1;
                    println!("ok {} ({bytes} bytes)", info.name);
                }
                Err(why) => {
                    damaged += 1;
                    println!("DAMAGED {}: {why}", info.name);
                }
            }
        }
    }
    println!("{intact} documents intact, {damaged} damaged");
    Ok(damaged == 0)
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let jwt = args.authorizer()?;
    if jwt.is_none() && !args.addr.ip().is_loopback() && !args.insecure_allow_anonymous {
        bail!(
            "refusing to serve {} without authentication: configure --jwt-secret-file or \
             --jwt-public-key, or pass --insecure-allow-anonymous",
            args.addr
        );
    }
    let data_dir = args.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || SledStore::open(&data_dir))
        .await?
        .with_context(|| {
            format!(
                "opening the store in {dir} (refusing to serve a damaged store; \
                 `tandem check --data-dir {dir}` lists what is damaged)",
                dir = args.data_dir.display()
            )
        })?;
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let addr = listener.local_addr()?;
    let authorizer: Arc<dyn Authorizer> = match jwt {
        Some(jwt) => {
            info!(algorithm = %jwt.algorithm(), "tokens required");
            Arc::new(jwt)
        }
        None => {
            warn!("no authentication configured: anyone who can reach {addr} can read and change every document");
            Arc::new(AllowAll)
        }
    };
    let webhooks = args.webhooks()?;
    if !webhooks.urls.is_empty() && webhooks.secret.is_none() {
        warn!("webhooks are not signed: give --webhook-secret-file");
    }
    let tandem = Tandem::builder()
        .store(Arc::new(store))
        .authorizer(authorizer)
        .config(args.config())
        .api_config(args.api_config())
        .webhooks(webhooks)
        .build()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    info!(%addr, data_dir = %args.data_dir.display(), "listening");
    let app = web::with_demo(tandem.router());
    let server = tokio::spawn(tandem_server::serve_app(
        listener,
        tandem,
        app,
        shutdown.clone(),
    ));
    shutdown.cancelled().await;
    info!("shutting down");
    match tokio::time::timeout(args.shutdown_timeout, server).await {
        Ok(result) => result?.context("serving")?,
        Err(_) => {
            error!(timeout = ?args.shutdown_timeout, "shutdown took too long");
            anyhow::bail!("shutdown did not finish within {:?}", args.shutdown_timeout);
        }
    }
    info!("stopped");
    Ok(())
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    error!(%error, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(ws: (usize, bool), http: (usize, bool)) -> [Cap; 2] {
        [
            Cap {
                flag: "max-connections",
                value: ws.0,
                explicit: ws.1,
            },
            Cap {
                flag: "max-http-connections",
                value: http.0,
                explicit: http.1,
            },
        ]
    }

    fn values(caps: &[Cap; 2]) -> [usize; 2] {
        [caps[0].value, caps[1].value]
    }

    #[test]
    fn caps_that_fit_are_kept() {
        let mut fitting = caps((10_000, false), (4_096, true));
        fit_caps(&mut fitting, 1_048_576).expect("fits");
        assert_eq!(values(&fitting), [10_000, 4_096]);
    }

    #[test]
    fn defaults_shrink_in_proportion_to_fit() {
        let mut defaults = caps((3_000, false), (1_000, false));
        fit_caps(&mut defaults, 1_024).expect("defaults fit after shrinking");
        assert_eq!(values(&defaults), [576, 192]);

        let mut one_given = caps((500, true), (1_000, false));
        fit_caps(&mut one_given, 1_024).expect("the default takes what is left");
        assert_eq!(values(&one_given), [500, 268]);
    }

    #[test]
    fn given_caps_beyond_the_limit_are_refused() {
        let mut over = caps((1_000, true), (100, false));
        let error = fit_caps(&mut over, 1_024).expect_err("768 descriptors for 1000");
        let message = error.to_string();
        assert!(message.contains("--max-connections 1000"), "{message}");
        assert!(message.contains("at most 768"), "{message}");

        let mut both = caps((400, true), (400, true));
        assert!(
            fit_caps(&mut both, 1_024).is_err(),
            "800 together do not fit"
        );

        let mut nothing_left = caps((768, true), (100, false));
        let error = fit_caps(&mut nothing_left, 1_024).expect_err("nothing left for http");
        assert!(error.to_string().contains("--max-http-connections"));
    }
}
