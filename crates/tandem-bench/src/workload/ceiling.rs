//! The ceilings Tandem is measured against, from the same machine and the same generator:
//!
//! - **ceiling-ingest**: yrs alone, in this process, decoding and integrating the trace's
//!   keystroke updates one transaction each, and again encoding what each transaction changed
//!   (what a server broadcasts). No server can ingest faster than yrs integrates.
//! - **ceiling-server**: a minimal tokio-tungstenite broadcast server with no CRDT and no store.
//!   It answers sync step 1 with an empty step 2 (so clients complete their handshake) and
//!   relays every other frame to every connection of the same path, the sender included, with
//!   the same batched writes and bounded queues as Tandem. No y-websocket server can fan out
//!   faster than a server that only copies frames.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, Transact, Update};

use crate::protocol::{self, Frame};
use crate::trace::{self, Keystrokes, Trace};

/// Options of `ceiling-ingest`.
#[derive(Debug, clap::Args)]
pub struct CeilingIngestArgs {
    /// The editing trace to replay (gzipped JSON: endContent, txns[].patches).
    #[arg(long, env = "TANDEM_BENCH_TRACE", default_value_os_t = trace::default_trace_path())]
    trace: PathBuf,
}

/// What yrs alone achieved.
#[derive(Debug, Serialize)]
pub struct CeilingIngestReport {
    /// Updates applied, one per trace transaction.
    pub updates: usize,
    /// Decoding and integrating every update, seconds.
    pub apply_s: f64,
    /// Updates per second, decode and integrate only.
    pub apply_per_s: f64,
    /// Decoding, integrating and encoding what each transaction changed, seconds.
    pub apply_encode_s: f64,
    /// Updates per second, with the encoding.
    pub apply_encode_per_s: f64,
}

/// Applies the trace's updates to fresh documents, twice, and checks the final text each time.
pub fn ingest(args: &CeilingIngestArgs) -> anyhow::Result<CeilingIngestReport> {
    let trace = Trace::load(&args.trace)?;
    let keystrokes = Keystrokes::generate(&trace);
    let updates: Vec<&[u8]> = keystrokes
        .frames
        .iter()
        .map(|frame| match protocol::parse(frame)? {
            Frame::Update(update) => Ok(update),
            other => bail!("not an update: {other:?}"),
        })
        .collect::<anyhow::Result<_>>()?;

    let apply_s = replay(&updates, &trace.end_content, |_| {})?;
    let mut encoded = 0usize;
    let apply_encode_s = replay(&updates, &trace.end_content, |txn| {
        encoded += protocol::update(&txn.encode_update_v1()).len();
    })?;
    // Keeps the encoding from being optimized away, and is a sanity check on it.
    if encoded < updates.len() {
        bail!("encoded {encoded} bytes for {} updates", updates.len());
    }
    Ok(CeilingIngestReport {
        updates: updates.len(),
        apply_s,
        apply_per_s: updates.len() as f64 / apply_s,
        apply_encode_s,
        apply_encode_per_s: updates.len() as f64 / apply_encode_s,
    })
}

/// Decodes and applies each update in its own transaction, calling `after` with the transaction
/// before it commits; returns the seconds it took, once the text is checked.
fn replay(
    updates: &[&[u8]],
    expected: &str,
    mut after: impl FnMut(&mut yrs::TransactionMut<'_>),
) -> anyhow::Result<f64> {
    let doc = Doc::new();
    let text = doc.get_or_insert_text(trace::TEXT);
    let started = Instant::now();
    for update in updates {
        let update = Update::decode_v1(update).context("decoding an update")?;
        let mut txn = doc.transact_mut();
        txn.apply_update(update).context("applying an update")?;
        after(&mut txn);
    }
    let elapsed = started.elapsed().as_secs_f64();
    trace::ensure_text(&text.get_string(&doc.transact()), expected)?;
    Ok(elapsed)
}

impl CeilingIngestReport {
    /// The rows of the human table.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("updates", self.updates.to_string()),
            (
                "decode + apply",
                format!("{:.3} s, {:.0} updates/s", self.apply_s, self.apply_per_s),
            ),
            (
                "decode + apply + encode the change",
                format!(
                    "{:.3} s, {:.0} updates/s",
                    self.apply_encode_s, self.apply_encode_per_s
                ),
            ),
        ]
    }
}

/// Options of `ceiling-server`.
#[derive(Debug, clap::Args)]
pub struct CeilingServerArgs {
    /// Address to listen on; loopback only.
    #[arg(long, default_value = "127.0.0.1:4470")]
    addr: SocketAddr,

    /// Frames queued for one connection before it is dropped as too slow (Tandem's default
    /// `--peer-queue`).
    #[arg(long, default_value_t = 1024)]
    queue: usize,
}

/// Frames written with one flush, at most (as Tandem does).
const WRITE_BATCH: usize = 64;

/// A sync step 2 carrying an empty update: what a server with an empty document answers.
const EMPTY_STEP2: [u8; 5] = [0, 1, 2, 0, 0];

/// The connections of each path: an id and the queue of frames to write to it.
type Rooms = Arc<Mutex<HashMap<String, Vec<(u64, mpsc::Sender<Bytes>)>>>>;

/// Serves until SIGTERM or Ctrl-C.
pub async fn serve(args: &CeilingServerArgs) -> anyhow::Result<()> {
    if !args.addr.ip().is_loopback() {
        bail!(
            "the ceiling server listens on loopback only, not {}",
            args.addr
        );
    }
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    eprintln!("ceiling server listening on {}", args.addr);
    let rooms = Rooms::default();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            _ = terminate.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
            accepted = listener.accept() => {
                let (stream, _) = accepted.context("accepting")?;
                next_id += 1;
                tokio::spawn(connection(stream, next_id, rooms.clone(), args.queue));
            }
        }
    }
}

/// One connection: relays its frames to its room, writes the room's frames to it.
// The handshake callback's error type is tungstenite's (an HTTP response), whatever its size.
#[allow(clippy::result_large_err)]
async fn connection(stream: TcpStream, id: u64, rooms: Rooms, queue: usize) {
    let _ = stream.set_nodelay(true);
    let mut path = String::new();
    let accepted = tokio_tungstenite::accept_hdr_async(stream, |request: &Request, response| {
        path = request.uri().path().to_owned();
        Ok::<Response, _>(response)
    })
    .await;
    let Ok(socket) = accepted else { return };
    let (mut sink, mut stream) = socket.split();
    let (to_socket, mut frames) = mpsc::channel::<Bytes>(queue.max(1));
    rooms
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(path.clone())
        .or_default()
        .push((id, to_socket.clone()));
    let writer = tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            sink.feed(Message::Binary(frame)).await?;
            for _ in 1..WRITE_BATCH {
                match frames.try_recv() {
                    Ok(frame) => sink.feed(Message::Binary(frame)).await?,
                    Err(_) => break,
                }
            }
            sink.flush().await?;
        }
        Ok::<_, tokio_tungstenite::tungstenite::Error>(())
    });
    while let Some(Ok(message)) = stream.next().await {
        let Message::Binary(frame) = message else {
            continue;
        };
        if frame.starts_with(&[0, 0]) {
            if to_socket
                .try_send(Bytes::from_static(&EMPTY_STEP2))
                .is_err()
            {
                break;
            }
            continue;
        }
        let mut rooms = rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(peers) = rooms.get_mut(&path) {
            // A peer whose queue is full is dropped, as Tandem evicts it.
            peers.retain(|(_, peer)| peer.try_send(frame.clone()).is_ok());
        }
    }
    let mut rooms = rooms.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(peers) = rooms.get_mut(&path) {
        peers.retain(|(peer, _)| *peer != id);
        if peers.is_empty() {
            rooms.remove(&path);
        }
    }
    drop(rooms);
    drop(to_socket);
    writer.abort();
}
