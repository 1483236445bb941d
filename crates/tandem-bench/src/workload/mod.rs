//! The workloads, one module each, and what they share: which server to drive and what to read
//! about it. Each module exposes `XArgs` (its command-line options), `run(&XArgs)` and an
//! `XReport` that serializes to JSON and lists its rows for the human table.

pub mod ceiling;
pub mod cold_load;
pub mod connections;
pub mod fan_out;
pub mod ingest;
pub mod many_docs;
pub mod presence;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::client::Endpoint;
use crate::protocol::Dialect;

/// How long closing a connection may take once a workload is done with it.
pub const CLOSE_DEADLINE: Duration = Duration::from_secs(10);

/// WebSocket handshakes a workload keeps in flight while it connects many clients: enough to
/// keep a server's accept loop busy, few enough not to overflow its listen backlog.
pub const CONNECT_AT_ONCE: usize = 64;

/// A document name no earlier run used: `{prefix}-{unix ms}`.
pub fn fresh_doc_name(prefix: &str) -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    format!("{prefix}-{ms}")
}

/// The server under test.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The server's URL prefix: for y-websocket a document's URL is this, `/` and its name;
    /// for Hocuspocus it is the URL of every document.
    #[arg(
        long,
        env = "TANDEM_BENCH_URL",
        default_value = "ws://127.0.0.1:4455/ws"
    )]
    pub url: String,

    /// How the server addresses documents: in the URL (y-websocket) or in every frame
    /// (Hocuspocus, whose URL is the same for every document).
    #[arg(long, default_value = "y-websocket")]
    pub protocol: Dialect,

    /// The server's process id: report its memory (VmRSS, VmHWM) and the CPU time it spent.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// The server's data directory: report its size (sum of file sizes) after the run.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl Target {
    /// Where the document `doc` is on this server.
    pub fn endpoint(&self, doc: &str) -> anyhow::Result<Endpoint> {
        Endpoint::new(&self.url, self.protocol, doc)
    }
}
