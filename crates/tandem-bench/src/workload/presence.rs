//! **presence storm**: P peers in one document all move their cursors at a steady rate (60 Hz,
//! a cursor dragged across a screen), each sending an awareness update per move. Every peer is
//! also a receiver. What a server relays to each receiver, in frames, bytes and awareness
//! entries per second, and what that costs it, is the measure: a server that relays every
//! update to everyone sends P² × 60 frames a second; one that coalesces sends far fewer.
//!
//! Each peer has its own Yjs client id and sends one entry per update, its clock counting up,
//! with a state the size of y-codemirror's (a user name and colour, a cursor). The updates are
//! pre-generated; peers start evenly spread over one period, as real cursors are not in step.
//! Frames received during the sending window are counted; the run then closes everything.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Socket};
use crate::probe::{Sample, Usage};
use crate::protocol::{self, Dialect};
use crate::workload::{fresh_doc_name, Target, CLOSE_DEADLINE, CONNECT_AT_ONCE};

/// The first peer's Yjs client id; peer `p` has `FIRST_CLIENT + p`.
const FIRST_CLIENT: u64 = 1_000_000;

/// Options of the presence-storm workload.
#[derive(Debug, clap::Args)]
pub struct PresenceArgs {
    #[command(flatten)]
    target: Target,

    /// Peers in the document, each sending and receiving.
    #[arg(long, default_value_t = 200)]
    peers: usize,

    /// Awareness updates each peer sends per second.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=1000))]
    hz: u32,

    /// How long the peers send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,

    /// Longest connecting every peer may take.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,

    /// Document to meet in. Default: a new `presence-{unix ms}`.
    #[arg(long)]
    doc: Option<String>,
}

/// What a presence storm measured.
#[derive(Debug, Serialize)]
pub struct PresenceReport {
    /// The document's URL.
    pub url: String,
    /// Peers.
    pub peers: usize,
    /// Updates each peer sent per second.
    pub hz: u32,
    /// The sending window, seconds.
    pub duration_s: f64,
    /// Awareness updates sent by all peers together.
    pub sent: usize,
    /// Awareness frames one receiver got per second, mean over receivers.
    pub frames_per_receiver_s: f64,
    /// Bytes of those frames per second, mean over receivers.
    pub bytes_per_receiver_s: f64,
    /// Awareness entries (one client's state each) in those frames per second, mean over
    /// receivers; every other peer moving at `hz` would be `(peers − 1) × hz` without coalescing.
    pub entries_per_receiver_s: f64,
    /// Peers whose connection ended during the run.
    pub peers_failed: usize,
    /// Why the first of them ended.
    pub first_failure: Option<String>,
    /// The server's memory at the end and CPU time during the sending window.
    pub server: Option<Usage>,
    /// Server CPU seconds per second of the storm: the share of its core it used.
    pub server_cpu_share: Option<f64>,
    /// CPU time this generator spent meanwhile, seconds.
    pub generator_cpu_s: f64,
}

/// What one peer received.
#[derive(Debug, Default)]
struct Received {
    frames: u64,
    bytes: u64,
    entries: u64,
    failure: Option<String>,
}

/// The awareness frames of peer `peer`, one per move.
fn moves(peer: usize, count: usize, dialect: Dialect, doc: &str) -> Vec<Bytes> {
    let client = FIRST_CLIENT + peer as u64;
    (0..count)
        .map(|tick| {
            let at = (tick * 7 + peer * 13) % 4000;
            let state = format!(
                r##"{{"user":{{"name":"peer-{peer}","color":"#30bced","colorLight":"#30bced33"}},"cursor":{{"anchor":{at},"head":{}}}}}"##,
                at + tick % 5
            );
            dialect.frame(
                doc,
                &protocol::awareness([(client, tick as u32 + 1, state.as_str())].into_iter()),
            )
        })
        .collect()
}

/// Connects the peers, lets them all move at `hz` for the duration, and counts what each
/// received meanwhile.
pub async fn run(args: &PresenceArgs) -> anyhow::Result<PresenceReport> {
    let doc = args
        .doc
        .clone()
        .unwrap_or_else(|| fresh_doc_name("presence"));
    let endpoint = args.target.endpoint(&doc)?;
    let ticks = (args.duration.as_secs_f64() * f64::from(args.hz)).ceil() as usize;
    let all_moves: Vec<Vec<Bytes>> = (0..args.peers)
        .map(|peer| moves(peer, ticks, endpoint.dialect, &doc))
        .collect();

    let connecting = Instant::now();
    let endpoints = vec![endpoint.clone(); args.peers];
    let sockets = client::connect_many(
        &endpoints,
        CONNECT_AT_ONCE,
        connecting + args.connect_timeout,
    )
    .await
    .context("connecting the peers")?;
    eprintln!(
        "{} peers connected in {:.2} s; moving for {:?}",
        args.peers,
        connecting.elapsed().as_secs_f64(),
        args.duration
    );

    let period = Duration::from_secs_f64(1.0 / f64::from(args.hz));
    let before = args.target.server_pid.map(Sample::read).transpose()?;
    let generator_before = Sample::read(std::process::id())?;
    let started = Instant::now() + Duration::from_millis(50);
    let window_end = started + period * ticks as u32;
    let peers = args.peers;
    let tasks: Vec<_> = sockets
        .into_iter()
        .zip(all_moves)
        .enumerate()
        .map(|(peer, (socket, moves))| {
            let offset = period * peer as u32 / peers as u32;
            tokio::spawn(storm(
                socket,
                endpoint.dialect,
                Arc::new(moves),
                started + offset,
                period,
                window_end,
            ))
        })
        .collect();
    let mut received = Vec::with_capacity(tasks.len());
    for task in tasks {
        received.push(task.await.context("a peer panicked")?);
    }
    let generator = Usage::between(&generator_before, Sample::read(std::process::id())?);
    let server = match (args.target.server_pid, before) {
        (Some(pid), Some(before)) => Some(Usage::between(&before, Sample::read(pid)?)),
        _ => None,
    };

    let window_s = (window_end - started).as_secs_f64();
    let per_receiver = |count: fn(&Received) -> u64| {
        received.iter().map(count).sum::<u64>() as f64 / received.len().max(1) as f64 / window_s
    };
    let failed: Vec<&Received> = received.iter().filter(|r| r.failure.is_some()).collect();
    Ok(PresenceReport {
        url: endpoint.url,
        peers: args.peers,
        hz: args.hz,
        duration_s: window_s,
        sent: ticks * args.peers,
        frames_per_receiver_s: per_receiver(|r| r.frames),
        bytes_per_receiver_s: per_receiver(|r| r.bytes),
        entries_per_receiver_s: per_receiver(|r| r.entries),
        peers_failed: failed.len(),
        first_failure: failed.first().and_then(|r| r.failure.clone()),
        server_cpu_share: server.as_ref().map(|server| server.cpu_s / window_s),
        server,
        generator_cpu_s: generator.cpu_s,
    })
}

/// One peer: sends its moves on schedule from `first`, and counts the awareness it receives
/// until `window_end`; then closes.
async fn storm(
    socket: Socket,
    dialect: Dialect,
    moves: Arc<Vec<Bytes>>,
    first: Instant,
    period: Duration,
    window_end: Instant,
) -> Received {
    let (mut sink, mut stream) = socket.split();
    let sending = tokio::spawn(async move {
        for (tick, frame) in moves.iter().enumerate() {
            tokio::time::sleep_until(first + period * tick as u32).await;
            if sink.send(Message::Binary(frame.clone())).await.is_err() {
                break;
            }
        }
        sink
    });
    let mut received = Received::default();
    loop {
        let message = match tokio::time::timeout_at(window_end, stream.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Binary(frame)))) => {
                received.bytes += frame.len() as u64;
                match dialect.message(frame) {
                    Ok(message) => message,
                    Err(error) => {
                        received.failure = Some(format!("{error:#}"));
                        break;
                    }
                }
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(error))) => {
                received.failure = Some(format!("{error}"));
                break;
            }
            Ok(None) => {
                received.failure = Some("the server closed the connection".to_owned());
                break;
            }
        };
        if let Some(entries) = protocol::awareness_entries(&message) {
            received.frames += 1;
            received.entries += entries;
        }
    }
    // The window is over: what is still in flight is not counted, and closing is courtesy.
    if let Ok(sink) = sending.await {
        if let Ok(socket) = sink.reunite(stream) {
            let _ = client::close(socket, Instant::now() + CLOSE_DEADLINE).await;
        }
    }
    received
}

impl PresenceReport {
    /// The rows of the human table.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![
            ("url", self.url.clone()),
            (
                "peers × updates/s",
                format!("{} × {} for {:.1} s", self.peers, self.hz, self.duration_s),
            ),
            ("awareness updates sent", self.sent.to_string()),
            (
                "frames per receiver per s",
                format!("{:.1}", self.frames_per_receiver_s),
            ),
            (
                "bytes per receiver per s",
                format!("{:.0}", self.bytes_per_receiver_s),
            ),
            (
                "entries per receiver per s",
                format!("{:.0}", self.entries_per_receiver_s),
            ),
        ];
        if self.peers_failed > 0 {
            rows.push(("peers failed", self.peers_failed.to_string()));
            rows.push((
                "first failure",
                self.first_failure.clone().unwrap_or_default(),
            ));
        }
        if let Some(server) = &self.server {
            rows.extend(server.rows());
        }
        if let Some(share) = self.server_cpu_share {
            rows.push(("server CPU per s of storm", format!("{share:.2} s")));
        }
        rows.push(("generator CPU", format!("{:.2} s", self.generator_cpu_s)));
        rows
    }
}
