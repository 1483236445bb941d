//! **cold load**: a fresh client opens a document that holds a long history (the whole trace,
//! written by `ingest`) while the server has it unloaded, and waits until it has the text.
//!
//! This is what the first visitor of an idle document waits for: the server reads the snapshot
//! and log from its store, builds the document, encodes it as sync step 2, and the client
//! applies it. The server's memory is read while the document is loaded, which is what every
//! open document costs it.
//!
//! Whether the document really is unloaded is up to the caller (wait past the server's unload
//! delay, or restart it): a server keeps no public record of that.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use yrs::{Doc, GetString, Transact};

use crate::client;
use crate::probe::{self, Sample, Usage};
use crate::trace::{self, Trace};
use crate::workload::{Target, CLOSE_DEADLINE};

/// Options of the cold-load workload.
#[derive(Debug, clap::Args)]
pub struct ColdLoadArgs {
    #[command(flatten)]
    target: Target,

    /// The trace the document holds; its final text is what the client must end with.
    #[arg(long, env = "TANDEM_BENCH_TRACE", default_value_os_t = trace::default_trace_path())]
    trace: PathBuf,

    /// The document to open, e.g. the one an `ingest` run wrote.
    #[arg(long)]
    doc: String,

    /// Longest the load may take.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// What a cold load measured. Times are from the start of the TCP connect.
#[derive(Debug, Serialize)]
pub struct ColdLoadReport {
    /// The document's URL.
    pub url: String,
    /// Until the WebSocket was open, milliseconds.
    pub open_ms: f64,
    /// Until the server's sync step 2 (the whole document) arrived, milliseconds.
    pub step2_ms: f64,
    /// Until the client had applied it and its text was checked, milliseconds.
    pub synced_ms: f64,
    /// Size of the sync step 2 frame.
    pub step2_bytes: usize,
    /// Characters of the final text.
    pub text_chars: usize,
    /// The server's memory before connecting (with `--server-pid`).
    pub server_before: Option<Sample>,
    /// Size of the server's data directory before connecting (with `--data-dir`): what the
    /// document takes on disk once stored compactly.
    pub data_dir_bytes: Option<u64>,
    /// The server's memory with the document loaded and CPU time spent loading it.
    pub server: Option<Usage>,
}

/// Opens the document, checks its text against the trace and reads the server's cost.
pub async fn run(args: &ColdLoadArgs) -> anyhow::Result<ColdLoadReport> {
    let trace = Trace::load(&args.trace)?;
    let endpoint = args.target.endpoint(&args.doc)?;
    let server_before = args.target.server_pid.map(Sample::read).transpose()?;
    let data_dir_bytes = args
        .target
        .data_dir
        .as_deref()
        .map(probe::dir_bytes)
        .transpose()?;

    let started = Instant::now();
    let deadline = started + args.timeout;
    let mut socket = endpoint.connect(deadline).await?;
    let opened_at = Instant::now();
    let doc = Doc::new();
    let synced = client::sync(&mut socket, &endpoint, &doc, deadline).await?;
    let text = doc
        .get_or_insert_text(trace::TEXT)
        .get_string(&doc.transact());
    trace::ensure_text(&text, &trace.end_content)?;
    let synced_at = Instant::now();

    let server = match (args.target.server_pid, server_before) {
        (Some(pid), Some(before)) => Some(Usage::between(&before, Sample::read(pid)?)),
        _ => None,
    };
    client::close(socket, Instant::now() + CLOSE_DEADLINE).await?;

    let ms = |at: Instant| (at - started).as_secs_f64() * 1000.0;
    Ok(ColdLoadReport {
        url: endpoint.url,
        open_ms: ms(opened_at),
        step2_ms: ms(synced.step2_at),
        synced_ms: ms(synced_at),
        step2_bytes: synced.step2_bytes,
        text_chars: text.chars().count(),
        server_before,
        data_dir_bytes,
        server,
    })
}

impl ColdLoadReport {
    /// The rows of the human table.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![
            ("url", self.url.clone()),
            ("websocket open", format!("{:.1} ms", self.open_ms)),
            ("sync step 2 received", format!("{:.1} ms", self.step2_ms)),
            (
                "synced (applied, text checked)",
                format!("{:.1} ms", self.synced_ms),
            ),
            ("sync step 2 bytes", self.step2_bytes.to_string()),
            ("text chars", self.text_chars.to_string()),
        ];
        if let Some(before) = &self.server_before {
            rows.push(("server RSS before", crate::report::kib(before.rss_kib)));
        }
        if let Some(server) = &self.server {
            rows.extend(server.rows());
        }
        if let Some(bytes) = self.data_dir_bytes {
            rows.push(("data dir before load", crate::report::mib(bytes)));
        }
        rows
    }
}
