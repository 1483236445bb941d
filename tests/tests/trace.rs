//! Replays a real editing history (the automerge paper: 259,778 keystrokes) from one client
//! through the server, one update per keystroke, in batches. A second client and a restarted
//! server must both end with exactly the trace's final text.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tandem_server::{Config, RateLimit};
use tandem_tests::{sync_message, within, SyncClient, TestServer};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact};

/// The whole replay must finish within this (it takes seconds in a release build).
const REPLAY_DEADLINE: Duration = Duration::from_secs(600);

/// Updates sent before the writer waits for the server to echo them all back.
const BATCH: u64 = 256;

#[derive(Deserialize)]
struct Trace {
    #[serde(rename = "endContent")]
    end_content: String,
    txns: Vec<Txn>,
}

#[derive(Deserialize)]
struct Txn {
    patches: Vec<(u32, u32, String)>,
}

/// One client sends a quarter million updates as fast as the server takes them: far beyond
/// what the default rate limit lets a single connection do.
fn unlimited() -> Config {
    Config {
        rate_limit: RateLimit::off(),
        // The writer keeps a batch of updates in flight and the reader receives every one of
        // them; on a loaded test machine the reader can fall a batch or two behind, which must
        // not count as too slow here.
        peer_queue: 8 * BATCH as usize,
        ..Config::default()
    }
}

/// The editing traces checked into the repository (`data/editing-traces`, CC BY 4.0).
fn traces_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/editing-traces")
}

fn load_trace(name: &str) -> anyhow::Result<Trace> {
    let path = traces_dir().join(name);
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut json = String::new();
    flate2::read::GzDecoder::new(file).read_to_string(&mut json)?;
    Ok(serde_json::from_str(&json)?)
}

/// One y-websocket update per keystroke, as a typing client sends them, and the state vector
/// of the finished document.
fn keystroke_updates(trace: &Trace) -> (Vec<Vec<u8>>, StateVector) {
    let doc = Doc::new();
    let text = doc.get_or_insert_text("text");
    let updates = trace
        .txns
        .iter()
        .map(|txn| {
            let mut t = doc.transact_mut();
            for (at, deleted, inserted) in &txn.patches {
                if *deleted > 0 {
                    text.remove_range(&mut t, *at, *deleted);
                }
                if !inserted.is_empty() {
                    text.insert(&mut t, *at, inserted);
                }
            }
            t.commit();
            sync_message(2, &t.encode_update_v1())
        })
        .collect();
    let sv = doc.transact().state_vector();
    (updates, sv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automerge_paper_trace_replays_exactly_and_survives_restart() -> anyhow::Result<()> {
    let trace = load_trace("automerge-paper.json.gz")?;
    let (updates, final_sv) = keystroke_updates(&trace);
    assert_eq!(updates.len(), 259_778);
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path(), unlimited()).await?;
    let url = server.url("automerge-paper");

    let mut reader = SyncClient::connect_synced(&url).await?;
    let expected = trace.end_content.clone();
    let reading = tokio::spawn(async move {
        // The text is only compared once every insertion arrived: building it per frame would
        // make the wait quadratic.
        reader
            .pump_until_within("the final text", REPLAY_DEADLINE, |c| {
                c.state_vector() >= final_sv && c.text("text") == expected
            })
            .await?;
        anyhow::Ok(reader)
    });

    let (socket, _) = tokio_tungstenite::connect_async_with_config(&url, None, true).await?;
    let (mut sink, mut stream) = socket.split();
    let (counter, mut echoed) = watch::channel(0u64);
    let echoes = tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            // Echoes of the writer's own updates: `00 02 …`.
            if matches!(&message, Message::Binary(frame) if frame.starts_with(&[0, 2])) {
                counter.send_modify(|n| *n += 1);
            }
        }
    });
    let started = Instant::now();
    for (sent, update) in updates.into_iter().enumerate() {
        sink.feed(Message::Binary(update.into())).await?;
        let sent = sent as u64 + 1;
        if sent % BATCH == 0 {
            sink.flush().await?;
            within("echoes of the batch", echoed.wait_for(|&n| n >= sent)).await??;
        }
    }
    sink.flush().await?;
    let reader = reading.await??;
    let elapsed = started.elapsed();
    eprintln!(
        "replayed {} keystrokes in {:.2?} ({:.0} updates/s)",
        trace.txns.len(),
        elapsed,
        trace.txns.len() as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(reader.text("text"), trace.end_content);
    drop(sink);
    echoes.abort();
    reader.close().await?;
    server.stop().await?;

    let server = TestServer::start(dir.path(), unlimited()).await?;
    let restarted = SyncClient::connect_synced(&url.replace(
        &url[..url.find("/ws/").expect("url")],
        &format!("ws://{}", server.addr),
    ))
    .await?;
    let text = restarted.doc.get_or_insert_text("text");
    assert_eq!(
        text.get_string(&restarted.doc.transact()),
        trace.end_content
    );
    server.stop().await
}
