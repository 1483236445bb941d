//! **many documents**: K documents are each opened once, given one small edit and left, as a
//! wiki's pages are by passing readers. The server must load (create) each, store its edit,
//! and, once nobody is left in it, let it go: the measure is what it still holds after it had
//! time to unload them, against what it held before and at the peak.
//!
//! Each visit connects, syncs, sends one update, waits for the server's acknowledgement (its
//! echo, or Hocuspocus' SyncStatus), and closes. Visits run `--at-once` at a time.

use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use yrs::{Doc, Text, Transact};

use crate::client::{self, Endpoint};
use crate::probe::{self, Sample, Usage};
use crate::protocol;
use crate::trace::TEXT;
use crate::workload::{fresh_doc_name, Target, CLOSE_DEADLINE};

/// Options of the many-documents workload.
#[derive(Debug, clap::Args)]
pub struct ManyDocsArgs {
    #[command(flatten)]
    target: Target,

    /// Documents to touch.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    docs: u32,

    /// Visits in flight at once.
    #[arg(long, default_value_t = 32)]
    at_once: usize,

    /// How long to leave the server idle afterwards, for it to unload the documents, before
    /// reading its memory again.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    idle: Duration,

    /// Longest touching every document may take.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// Prefix of the documents' names. Default: `many-{unix ms}`.
    #[arg(long)]
    doc_prefix: Option<String>,
}

/// What the many-documents workload measured.
#[derive(Debug, Serialize)]
pub struct ManyDocsReport {
    /// The first document's URL.
    pub url: String,
    /// Documents touched.
    pub docs: usize,
    /// Touching all of them, seconds.
    pub touch_s: f64,
    /// Documents touched per second.
    pub docs_per_s: f64,
    /// The server's memory before the first visit.
    pub server_before: Option<Sample>,
    /// Its memory right after the last visit (and its peak), and the CPU time of the visits.
    pub server_touched: Option<Usage>,
    /// Its memory after `idle_s` of nothing.
    pub server_idle: Option<Sample>,
    /// The idle wait, seconds.
    pub idle_s: f64,
    /// Size of the server's data directory after the idle wait (with `--data-dir`).
    pub data_dir_bytes: Option<u64>,
}

/// Touches every document, then waits and reads the server's memory.
pub async fn run(args: &ManyDocsArgs) -> anyhow::Result<ManyDocsReport> {
    let prefix = args
        .doc_prefix
        .clone()
        .unwrap_or_else(|| fresh_doc_name("many"));
    let endpoints = (0..args.docs as usize)
        .map(|i| args.target.endpoint(&format!("{prefix}-{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let edit = {
        let doc = Doc::new();
        let text = doc.get_or_insert_text(TEXT);
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "visited once");
        protocol::update(&txn.encode_update_v1())
    };
    let server_before = args.target.server_pid.map(Sample::read).transpose()?;

    let started = Instant::now();
    let deadline = started + args.timeout;
    let visits: Vec<anyhow::Result<()>> = futures_util::stream::iter(endpoints.iter())
        .map(|endpoint| visit(endpoint, &edit, deadline))
        .buffer_unordered(args.at_once.max(1))
        .collect()
        .await;
    let failed = visits.iter().filter(|visit| visit.is_err()).count();
    if let Some(Err(error)) = visits.into_iter().find(|visit| visit.is_err()) {
        return Err(error.context(format!("{failed} of {} visits failed", args.docs)));
    }
    let touch_s = started.elapsed().as_secs_f64();
    let server_touched = match (args.target.server_pid, server_before) {
        (Some(pid), Some(before)) => Some(Usage::between(&before, Sample::read(pid)?)),
        _ => None,
    };
    eprintln!(
        "touched {} documents in {touch_s:.2} s; idle for {:?}",
        args.docs, args.idle
    );
    tokio::time::sleep(args.idle).await;
    let server_idle = args.target.server_pid.map(Sample::read).transpose()?;
    let data_dir_bytes = args
        .target
        .data_dir
        .as_deref()
        .map(probe::dir_bytes)
        .transpose()?;

    Ok(ManyDocsReport {
        url: endpoints
            .first()
            .map(|endpoint| endpoint.url.clone())
            .unwrap_or_default(),
        docs: endpoints.len(),
        touch_s,
        docs_per_s: endpoints.len() as f64 / touch_s,
        server_before,
        server_touched,
        server_idle,
        idle_s: args.idle.as_secs_f64(),
        data_dir_bytes,
    })
}

/// Connects to one document, syncs, sends `edit`, waits for its acknowledgement and closes.
async fn visit(endpoint: &Endpoint, edit: &[u8], deadline: Instant) -> anyhow::Result<()> {
    let mut socket = client::connect_synced(endpoint, deadline)
        .await
        .with_context(|| format!("opening {}", endpoint.doc))?;
    socket
        .send(Message::Binary(endpoint.frame(edit)))
        .await
        .context("sending the edit")?;
    loop {
        let message = client::next_message(
            &mut socket,
            endpoint.dialect,
            deadline,
            "the edit's acknowledgement",
        )
        .await?;
        if endpoint.dialect.is_ack(&message) {
            break;
        }
    }
    client::close(socket, Instant::now() + CLOSE_DEADLINE).await
}

impl ManyDocsReport {
    /// The rows of the human table.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![
            ("first url", self.url.clone()),
            (
                "documents touched",
                format!(
                    "{} in {:.2} s ({:.0} per s)",
                    self.docs, self.touch_s, self.docs_per_s
                ),
            ),
        ];
        if let Some(before) = &self.server_before {
            rows.push(("server RSS before", crate::report::kib(before.rss_kib)));
        }
        if let Some(touched) = &self.server_touched {
            rows.push((
                "server RSS after the last visit",
                crate::report::kib(touched.after.rss_kib),
            ));
            rows.push((
                "server peak RSS (VmHWM)",
                crate::report::kib(touched.after.hwm_kib),
            ));
            rows.push((
                "server CPU for the visits",
                format!("{:.2} s", touched.cpu_s),
            ));
        }
        if let Some(idle) = &self.server_idle {
            rows.push((
                "server RSS after the idle wait",
                format!(
                    "{} (after {:.0} s)",
                    crate::report::kib(idle.rss_kib),
                    self.idle_s
                ),
            ));
        }
        if let Some(bytes) = self.data_dir_bytes {
            rows.push(("data dir", crate::report::mib(bytes)));
        }
        rows
    }
}
