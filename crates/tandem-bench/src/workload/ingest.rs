//! **ingest**: one client types a whole editing trace into a fresh document, one update per
//! keystroke, as fast as the server takes them; a second client watches until it has the final
//! text. This is the server's write path end to end: decode, integrate, log to the store,
//! broadcast.
//!
//! The writer keeps at most `--window` updates unacknowledged, an acknowledgement being the
//! server's echo of the update to its sender (Hocuspocus: its SyncStatus for the update).
//! Without a window a client could pile the whole trace into socket buffers and the server's
//! mailbox, and the run would measure buffering; with one, it measures how fast the server
//! turns updates around while never going idle.
//!
//! The reader hands every frame to a thread of its own that applies them in batches: applying
//! on the socket task would make the reader, not the server, the bottleneck, and a reader that
//! falls behind is disconnected by servers that bound their queues (Tandem's 1013).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Transact, Update};

use crate::client::{self, Socket};
use crate::probe::{self, Sample, Usage};
use crate::protocol::{self, Dialect, Frame};
use crate::trace::{self, Keystrokes, Trace};
use crate::workload::{fresh_doc_name, Target, CLOSE_DEADLINE};

/// Updates in flight by default: enough to keep a server busy across a loopback round trip
/// and to let it batch, far more than a person typing has in flight, and small enough that a
/// server on one core keeps up with its passive readers (on one core Tandem cuts the reader off
/// as too slow from a window of about 128: `docs/BENCHMARKS.md`).
pub const DEFAULT_WINDOW: u32 = 32;

/// Options of the ingest workload.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    #[command(flatten)]
    target: Target,

    /// The editing trace to replay (gzipped JSON: endContent, txns[].patches).
    #[arg(long, env = "TANDEM_BENCH_TRACE", default_value_os_t = trace::default_trace_path())]
    trace: PathBuf,

    /// Document to write into; it must be empty. Default: a new `ingest-{unix ms}`.
    #[arg(long)]
    doc: Option<String>,

    /// Updates sent but not yet echoed back to the writer before it waits.
    #[arg(long, default_value_t = DEFAULT_WINDOW, value_parser = clap::value_parser!(u32).range(1..))]
    window: u32,

    /// Longest the whole run may take, connecting included.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// What an ingest run measured.
#[derive(Debug, Serialize)]
pub struct IngestReport {
    /// The document's URL.
    pub url: String,
    /// The document written, for a later cold load.
    pub doc: String,
    /// The `--window` used.
    pub window: u32,
    /// Updates sent, one per trace transaction.
    pub updates: usize,
    /// Bytes of all update frames.
    pub update_bytes: u64,
    /// From the first update sent to the reader holding the final text, seconds.
    pub elapsed_s: f64,
    /// Updates per second over `elapsed_s`.
    pub updates_per_s: f64,
    /// From the first update sent to the writer receiving the echo of the last one, seconds.
    pub echoed_s: f64,
    /// The server's memory at the end and CPU time during the run (with `--server-pid`).
    pub server: Option<Usage>,
    /// CPU time this generator spent during the run, seconds: when it nears `elapsed_s` on
    /// one core, the generator rather than the server is the limit.
    pub generator_cpu_s: f64,
    /// Size of the server's data directory right after the run (with `--data-dir`).
    pub data_dir_bytes: Option<u64>,
}

/// Replays the trace through the server and checks the reader's final text.
pub async fn run(args: &IngestArgs) -> anyhow::Result<IngestReport> {
    let generating = Instant::now();
    let trace = Trace::load(&args.trace)?;
    let keystrokes = Keystrokes::generate(&trace);
    eprintln!(
        "generated {} updates ({} bytes) in {:.2?}",
        keystrokes.frames.len(),
        keystrokes.bytes,
        generating.elapsed()
    );
    let doc = args.doc.clone().unwrap_or_else(|| fresh_doc_name("ingest"));
    let endpoint = args.target.endpoint(&doc)?;
    let dialect = endpoint.dialect;
    let to_send: Vec<Bytes> = keystrokes
        .frames
        .iter()
        .map(|frame| endpoint.frame(frame))
        .collect();
    let deadline = Instant::now() + args.timeout;

    let reader_doc = Doc::new();
    let mut reader = endpoint.connect(deadline).await?;
    client::sync(&mut reader, &endpoint, &reader_doc, deadline).await?;
    ensure_empty(&reader_doc, &doc)?;
    let writer_doc = Doc::new();
    let mut writer = endpoint.connect(deadline).await?;
    client::sync(&mut writer, &endpoint, &writer_doc, deadline).await?;
    let (mut sink, stream) = writer.split();

    let (to_applier, frames) = mpsc::unbounded_channel();
    let final_state = keystrokes.final_state.clone();
    let applier = tokio::task::spawn_blocking(move || {
        apply_until(&reader_doc, frames, &final_state, &trace.end_content)
    });
    let permits = Arc::new(Semaphore::new(args.window as usize));
    let total = to_send.len();
    let before = args.target.server_pid.map(Sample::read).transpose()?;
    let generator_before = Sample::read(std::process::id())?;

    // The reader and the echo counter are tasks of their own, so that neither waits on the
    // writer's turn: a reader that falls behind is cut off by servers that bound their queues.
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let reading = tokio::spawn(read_until_final(
        reader,
        dialect,
        to_applier,
        applier,
        progress.clone(),
        deadline,
    ));
    let echoes = tokio::spawn(count_echoes(
        stream,
        dialect,
        permits.clone(),
        progress.clone(),
        total,
        deadline,
    ));
    let ((echoed_at, stream), (done_at, reader)) =
        client::by(deadline, "the reader to have the final text", async {
            tokio::try_join!(
                async {
                    let sent = send_all(&mut sink, &to_send, &permits).await;
                    // When the writer stops early, the echo counter knows why: its error first.
                    let echoed = echoes.await.context("the echo counter failed")??;
                    sent.map(|()| echoed)
                },
                async { reading.await.context("the reader failed")? },
            )
        })
        .await
        .and_then(|outcome| outcome)
        .with_context(|| progress.describe(total))?;
    let elapsed = done_at - started;
    let generator = Usage::between(&generator_before, Sample::read(std::process::id())?);

    let server = match (args.target.server_pid, before) {
        (Some(pid), Some(before)) => Some(Usage::between(&before, Sample::read(pid)?)),
        _ => None,
    };
    let data_dir_bytes = args
        .target
        .data_dir
        .as_deref()
        .map(probe::dir_bytes)
        .transpose()?;

    let close_by = Instant::now() + CLOSE_DEADLINE;
    let writer = sink
        .reunite(stream)
        .map_err(|_| anyhow!("the writer's socket halves do not match"))?;
    client::close(writer, close_by).await?;
    client::close(reader, close_by).await?;

    Ok(IngestReport {
        url: endpoint.url,
        doc,
        window: args.window,
        updates: total,
        update_bytes: keystrokes.bytes,
        elapsed_s: elapsed.as_secs_f64(),
        updates_per_s: total as f64 / elapsed.as_secs_f64(),
        echoed_s: (echoed_at - started).as_secs_f64(),
        server,
        generator_cpu_s: generator.cpu_s,
        data_dir_bytes,
    })
}

/// Refuses to measure on top of an existing document: the final text would not match, and the
/// server would be doing different work.
fn ensure_empty(doc: &Doc, name: &str) -> anyhow::Result<()> {
    ensure!(
        doc.transact().state_vector().is_empty(),
        "document {name:?} is not empty: ingest needs a fresh one"
    );
    Ok(())
}

/// Sends every frame, waiting for an echo whenever `window` are in flight. Frames are written
/// out whenever the writer would wait, so the server always has the whole window to work on.
async fn send_all(
    sink: &mut SplitSink<Socket, Message>,
    frames: &[Bytes],
    window: &Semaphore,
) -> anyhow::Result<()> {
    for frame in frames {
        let permit = match window.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                sink.flush().await.context("sending updates")?;
                window.acquire().await.context("waiting for echoes")?
            }
        };
        // Given back by `count_echoes` when the echo arrives.
        permit.forget();
        sink.feed(Message::Binary(frame.clone()))
            .await
            .context("sending updates")?;
    }
    sink.flush().await.context("sending updates")
}

/// How far the writer's echoes and the reader's frames got. When a run fails this tells
/// whether the reader kept pace with the writer on the client side: if it did, what it lacked
/// was still queued in the server.
#[derive(Debug, Default)]
struct Progress {
    echoed: AtomicUsize,
    read: AtomicUsize,
}

impl Progress {
    fn describe(&self, total: usize) -> String {
        format!(
            "{} of {total} updates echoed to the writer, {} received by the reader",
            self.echoed.load(Ordering::Relaxed),
            self.read.load(Ordering::Relaxed)
        )
    }
}

/// Counts the server's acknowledgements (echoes, or Hocuspocus' SyncStatus) of the writer's
/// updates, opening the window by one for each;
/// returns when the last one arrived. When it fails it closes the window, so the writer stops.
async fn count_echoes(
    mut stream: SplitStream<Socket>,
    dialect: Dialect,
    window: Arc<Semaphore>,
    progress: Arc<Progress>,
    total: usize,
    deadline: Instant,
) -> anyhow::Result<(Instant, SplitStream<Socket>)> {
    let mut echoed = 0;
    while echoed < total {
        let what = "the echoes of the writer's updates";
        match client::next_message(&mut stream, dialect, deadline, what).await {
            Ok(message) if dialect.is_ack(&message) => {
                echoed += 1;
                window.add_permits(1);
                progress.echoed.store(echoed, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(error) => {
                window.close();
                return Err(error);
            }
        }
    }
    Ok((Instant::now(), stream))
}

/// Passes the reader's frames to its applier until the applier reports the final text; returns
/// when, with the socket for closing.
async fn read_until_final(
    mut socket: Socket,
    dialect: Dialect,
    to_applier: mpsc::UnboundedSender<Bytes>,
    mut applier: JoinHandle<anyhow::Result<Instant>>,
    progress: Arc<Progress>,
    deadline: Instant,
) -> anyhow::Result<(Instant, Socket)> {
    loop {
        tokio::select! {
            biased;
            applied = &mut applier => {
                let done_at = applied.context("the reader's applier failed")??;
                return Ok((done_at, socket));
            }
            frame = client::next_message(&mut socket, dialect, deadline, "updates for the reader") => {
                let frame = frame?;
                progress.read.fetch_add(1, Ordering::Relaxed);
                // A closed channel means the applier is done; its result is taken next turn.
                let _ = to_applier.send(frame);
            }
        }
    }
}

/// Applies frames to the reader's document, everything already received in one transaction,
/// until it reaches `final_state`; then its text must be exactly `expected`. Returns when that
/// was established.
fn apply_until(
    doc: &Doc,
    mut frames: mpsc::UnboundedReceiver<Bytes>,
    final_state: &StateVector,
    expected: &str,
) -> anyhow::Result<Instant> {
    let text = doc.get_or_insert_text(trace::TEXT);
    let mut applied = 0usize;
    while let Some(first) = frames.blocking_recv() {
        let mut txn = doc.transact_mut();
        let mut next = Some(first);
        while let Some(frame) = next {
            match protocol::parse(&frame)? {
                Frame::Update(update) | Frame::SyncStep2(update) => {
                    let update = Update::decode_v1(update).context("decoding an update")?;
                    txn.apply_update(update).context("applying an update")?;
                    applied += 1;
                }
                Frame::SyncStep1(_) | Frame::Other(_) => {}
            }
            next = frames.try_recv().ok();
        }
        if txn.state_vector() >= *final_state {
            trace::ensure_text(&text.get_string(&txn), expected)?;
            return Ok(Instant::now());
        }
    }
    bail!("the reader's connection ended after {applied} updates, before the final text")
}

impl IngestReport {
    /// The rows of the human table.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![
            ("url", self.url.clone()),
            ("window", self.window.to_string()),
            ("updates", self.updates.to_string()),
            ("update bytes", self.update_bytes.to_string()),
            ("elapsed", format!("{:.3} s", self.elapsed_s)),
            ("updates/s", format!("{:.0}", self.updates_per_s)),
            ("last echo to writer", format!("{:.3} s", self.echoed_s)),
        ];
        if let Some(server) = &self.server {
            rows.extend(server.rows());
        }
        rows.push(("generator CPU", format!("{:.2} s", self.generator_cpu_s)));
        if let Some(bytes) = self.data_dir_bytes {
            rows.push(("data dir after run", crate::report::mib(bytes)));
        }
        rows
    }
}
