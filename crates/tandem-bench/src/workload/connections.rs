//! **connections**: C clients open a connection each, spread over D documents, complete the
//! handshake and then sit idle, as the open tabs of a team do. What each idle connection costs
//! the server in memory, and how long opening them all takes, are the measures.
//!
//! The memory is read from the server's `/proc` before the first connection and once every
//! connection is open and the server had a moment to settle; the difference, divided by C, is
//! the cost of a connection (the documents' own cost, D empty documents, is included).

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::time::Instant;

use crate::client;
use crate::probe::{Sample, Usage};
use crate::workload::{fresh_doc_name, Target, CONNECT_AT_ONCE};

/// Options of the connections workload.
#[derive(Debug, clap::Args)]
pub struct ConnectionsArgs {
    #[command(flatten)]
    target: Target,

    /// Connections to open (each needs a file descriptor here and one in the server: raise
    /// `ulimit -n` for both).
    #[arg(long, default_value_t = 1000)]
    connections: usize,

    /// Documents they are spread over, round robin.
    #[arg(long, default_value_t = 100)]
    docs: usize,

    /// How long to wait once all are open before reading the server's memory.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    settle: Duration,

    /// Longest opening them all may take.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// Prefix of the documents' names. Default: `connections-{unix ms}`.
    #[arg(long)]
    doc_prefix: Option<String>,
}

/// What the connections workload measured.
#[derive(Debug, Serialize)]
pub struct ConnectionsReport {
    /// The first document's URL.
    pub url: String,
    /// Connections opened.
    pub connections: usize,
    /// Documents they were spread over.
    pub docs: usize,
    /// Opening and syncing all of them, seconds.
    pub connect_s: f64,
    /// Connections opened per second.
    pub connections_per_s: f64,
    /// The server's memory before the first connection.
    pub server_before: Option<Sample>,
    /// Its memory with all open, and the CPU time opening them took.
    pub server: Option<Usage>,
    /// (RSS with all open − RSS before) / connections, KiB.
    pub rss_per_connection_kib: Option<f64>,
}

/// Opens the connections, reads the server's memory, and closes them.
pub async fn run(args: &ConnectionsArgs) -> anyhow::Result<ConnectionsReport> {
    let prefix = args
        .doc_prefix
        .clone()
        .unwrap_or_else(|| fresh_doc_name("connections"));
    let docs = args.docs.max(1);
    let endpoints = (0..args.connections)
        .map(|i| args.target.endpoint(&format!("{prefix}-{}", i % docs)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let server_before = args.target.server_pid.map(Sample::read).transpose()?;

    let started = Instant::now();
    let sockets = client::connect_many(&endpoints, CONNECT_AT_ONCE, started + args.timeout)
        .await
        .context("opening the connections")?;
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(args.settle).await;
    let server = match (args.target.server_pid, server_before) {
        (Some(pid), Some(before)) => Some(Usage::between(&before, Sample::read(pid)?)),
        _ => None,
    };
    // Dropping closes the TCP connections; the server cleans up on its own time.
    drop(sockets);

    let rss_per_connection_kib = match (&server_before, &server) {
        (Some(before), Some(after)) if args.connections > 0 => {
            Some((after.after.rss_kib as f64 - before.rss_kib as f64) / args.connections as f64)
        }
        _ => None,
    };
    Ok(ConnectionsReport {
        url: endpoints
            .first()
            .map(|endpoint| endpoint.url.clone())
            .unwrap_or_default(),
        connections: args.connections,
        docs,
        connect_s,
        connections_per_s: args.connections as f64 / connect_s,
        server_before,
        server,
        rss_per_connection_kib,
    })
}

impl ConnectionsReport {
    /// The rows of the human table.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![
            ("first url", self.url.clone()),
            (
                "connections over documents",
                format!("{} over {}", self.connections, self.docs),
            ),
            (
                "all open and synced in",
                format!(
                    "{:.2} s ({:.0} per s)",
                    self.connect_s, self.connections_per_s
                ),
            ),
        ];
        if let Some(before) = &self.server_before {
            rows.push(("server RSS before", crate::report::kib(before.rss_kib)));
        }
        if let Some(server) = &self.server {
            rows.extend(server.rows());
        }
        if let Some(per) = self.rss_per_connection_kib {
            rows.push(("server RSS per connection", format!("{per:.1} KiB")));
        }
        rows
    }
}
