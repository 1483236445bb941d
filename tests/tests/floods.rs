//! Floods and amplifications (issue 13, items 2 and 4): a client that sends pings as fast as it
//! can and never reads, and one frame holding a thousand requests, must neither make the server
//! hold memory without bound nor keep other clients from syncing and editing.
//!
//! The server runs in this process, so its memory is this process's resident set
//! (`/proc/self/status`). The tests of this file run one at a time so that they do not measure
//! each other; each attack would grow the resident set by far more than the bound it checks.

use std::time::Duration;

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use tandem_server::{Config, RateLimit};
use tandem_tests::{http_get, sync_message, within, Closed, SyncClient, TestServer, DEADLINE};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async_with_config, MaybeTlsStream, WebSocketStream};
use yrs::updates::encoder::Encode;
use yrs::{Text, Transact, WriteTxn};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The tests of this file one at a time: each measures the process's memory.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// What an attacker sends in pings: before the fix the server queued a pong for each, about as
/// many bytes as it read.
const FLOOD_BYTES: usize = 48 * 1024 * 1024;

/// How long a write may make no progress before the flooder concludes the server stopped
/// reading.
const STALL: Duration = Duration::from_millis(500);

/// The most the server's resident set may grow under an attack.
const RSS_BOUND: u64 = 16 * 1024 * 1024;

/// The most the server's resident set may grow while it answers a frame of a thousand requests
/// for a document (or presence) of a few hundred KiB; before the fix, a thousand times that.
const ANSWER_RSS_BOUND: u64 = 32 * 1024 * 1024;

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// This process's resident set, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    kib * 1024
}

async fn connect(url: &str) -> anyhow::Result<Socket> {
    let (socket, _) = within("connect", connect_async_with_config(url, None, true)).await??;
    Ok(socket)
}

/// `count` masked 125-byte ping frames as a client sends them (a zero mask leaves the payload
/// as it is).
fn pings(count: usize) -> Vec<u8> {
    let mut frame = vec![0x89, 0x80 | 125, 0, 0, 0, 0];
    frame.extend_from_slice(&[b'p'; 125]);
    frame.repeat(count)
}

/// Writes pings straight to the TCP stream until `FLOOD_BYTES` are sent or the server stops
/// reading; returns the bytes sent. Nothing is read meanwhile.
async fn flood(socket: &mut Socket) -> anyhow::Result<usize> {
    let chunk = pings(64);
    let MaybeTlsStream::Plain(stream) = socket.get_mut() else {
        bail!("not a plain TCP stream");
    };
    let mut sent = 0;
    while sent < FLOOD_BYTES {
        match timeout(STALL, stream.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            // The server stopped reading or closed the connection.
            Err(_) | Ok(Err(_)) => break,
        }
    }
    Ok(sent)
}

/// Reads (pongs, frames) until the server closes the connection; returns how.
async fn closed(socket: &mut Socket) -> anyhow::Result<Closed> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, socket.next()).await {
            Err(_) => bail!("timed out waiting for the server to close"),
            Ok(None | Some(Err(_))) => return Ok(Closed::Dropped),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Ok(Closed::Code(
                    frame.map_or(1005, |frame| u16::from(frame.code)),
                ));
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Floods `url` with pings without reading and checks what it cost and how it ended.
async fn ping_flood_is_closed_for_rate(server: &TestServer, url: &str) -> anyhow::Result<()> {
    let mut socket = connect(url).await?;
    let before = rss();
    let sent = flood(&mut socket).await?;
    let grown = rss().saturating_sub(before);
    eprintln!("{url}: {sent} bytes of pings, resident set +{grown} bytes");
    assert!(
        grown < RSS_BOUND,
        "{url}: {sent} bytes of pings grew the resident set by {grown} bytes"
    );
    assert_eq!(closed(&mut socket).await?, Closed::Code(1008), "{url}");
    assert!(server.tandem.counters().rate_limited >= 1);
    let health = within("healthz", http_get(server.addr, "/healthz", &[])).await??;
    assert_eq!(health.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_on_a_document_socket_is_closed_with_1008() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let dir = tempdir();
    let server = TestServer::start(dir.path(), Config::default()).await?;
    ping_flood_is_closed_for_rate(&server, &server.url("doc")).await?;
    // Others are unaffected.
    let mut writer = SyncClient::connect_synced(&server.url("doc")).await?;
    writer
        .edit(|txn| txn.get_or_insert_text("text").insert(txn, 0, "still here"))
        .await?;
    writer.await_server(&server.url("doc")).await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_on_a_hocuspocus_socket_before_auth_is_closed_with_1008() -> anyhow::Result<()>
{
    let _serial = SERIAL.lock().await;
    let dir = tempdir();
    let server = TestServer::start(dir.path(), Config::default()).await?;
    let url = format!("ws://{}/ws", server.addr);
    ping_flood_is_closed_for_rate(&server, &url).await?;
    server.stop().await
}

/// Without a rate limit, the pongs a non-reading flooder is owed stop at the socket's write
/// buffer bound (here about 1 MiB: the largest frame the server may send, for documents of at
/// most 1 MiB), however much it sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_to_a_peer_that_does_not_read_are_bounded_in_bytes() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let dir = tempdir();
    let mut config = Config {
        rate_limit: RateLimit::off(),
        max_frame_bytes: 1024 * 1024,
        ..Config::default()
    };
    config.doc.max_doc_bytes = 1024 * 1024;
    let server = TestServer::start(dir.path(), config).await?;
    for url in [server.url("doc"), format!("ws://{}/ws", server.addr)] {
        let mut socket = connect(&url).await?;
        let before = rss();
        let sent = flood(&mut socket).await?;
        let grown = rss().saturating_sub(before);
        assert!(sent >= FLOOD_BYTES, "{url}: the server stopped reading");
        eprintln!("{url}: {sent} bytes of pings, resident set +{grown} bytes");
        assert!(
            grown < RSS_BOUND,
            "{url}: {sent} bytes of pings grew the resident set by {grown} bytes"
        );
        let health = within("healthz", http_get(server.addr, "/healthz", &[])).await??;
        assert_eq!(health.status, 200);
    }
    server.stop().await
}

/// A sync update of the attacker's own, sent first in the attack frame: once an observer sees
/// it, the document has the rest of the frame in hand.
fn marker_update() -> Vec<u8> {
    let doc = yrs::Doc::new();
    let mut txn = doc.transact_mut();
    txn.get_or_insert_text("marker").insert(&mut txn, 0, "m");
    txn.commit();
    txn.encode_update_v1()
}

/// Sends `frame` on a socket that never reads, then waits until an observer saw the frame's
/// marker and got an answer to a sync step 1 of its own, which the document handles after the
/// whole attack frame. Checks that the resident set grew by less than [`ANSWER_RSS_BOUND`] and
/// that the observer edits as usual.
async fn answers_stay_bounded(server: &TestServer, frame: Vec<u8>) -> anyhow::Result<()> {
    let url = server.url("doc");
    let mut attacker = connect(&url).await?;
    let before = rss();
    let frame_len = frame.len();
    attacker.send(Message::Binary(frame.into())).await?;
    let mut observer = SyncClient::connect_synced(&url).await?;
    observer
        .pump_until("the attacker's marker", |c| c.text("marker") == "m")
        .await?;
    observer.synced = false;
    let sv = observer.state_vector().encode_v1();
    observer.send_raw(sync_message(0, &sv)).await?;
    observer.sync().await?;
    let grown = rss().saturating_sub(before);
    eprintln!(
        "a frame of {} bytes of requests: resident set +{grown} bytes",
        frame_len
    );
    assert!(
        grown < ANSWER_RSS_BOUND,
        "one frame of requests grew the resident set by {grown} bytes"
    );
    observer
        .edit(|txn| txn.get_or_insert_text("text").insert(txn, 0, "meanwhile "))
        .await?;
    observer.await_server(&url).await?;
    drop(attacker);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_of_a_thousand_sync_step_1s_encodes_the_document_once() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let dir = tempdir();
    let server = TestServer::start(dir.path(), Config::default()).await?;
    let url = server.url("doc");
    let mut writer = SyncClient::connect_synced(&url).await?;
    let text = "0123456789abcdef".repeat(16 * 1024);
    writer
        .edit(move |txn| txn.get_or_insert_text("text").insert(txn, 0, &text))
        .await?;
    writer.await_server(&url).await?;

    let mut frame = sync_message(2, &marker_update());
    for _ in 0..1_000 {
        frame.extend(sync_message(0, &yrs::StateVector::default().encode_v1()));
    }
    assert!(frame.len() < 4_500);
    answers_stay_bounded(&server, frame).await?;
    assert_eq!(server.tandem.counters().rate_limited, 0);
    writer.close().await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_of_a_thousand_awareness_queries_encodes_the_states_once() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let dir = tempdir();
    let server = TestServer::start(dir.path(), Config::default()).await?;
    let url = server.url("doc");
    let mut present = Vec::new();
    for i in 0..10 {
        let mut client = SyncClient::connect_synced(&url).await?;
        let state = serde_json::json!({ "note": "x".repeat(30_000), "i": i }).to_string();
        client.set_awareness(1, Some(&state)).await?;
        present.push(client);
    }
    let mut watcher = SyncClient::connect_synced(&url).await?;
    watcher
        .pump_until("every presence state", |c| {
            c.awareness.values().filter(|s| s.is_some()).count() >= 10
        })
        .await?;

    let mut frame = sync_message(2, &marker_update());
    frame.extend([3u8; 1_000]);
    answers_stay_bounded(&server, frame).await?;
    for client in present {
        client.close().await?;
    }
    watcher.close().await?;
    server.stop().await
}

/// Every message of a frame counts against the rate, not the frame: a frame of more messages
/// than the burst allows is refused before it is decoded in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_of_more_messages_than_the_burst_is_closed_with_1008() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let dir = tempdir();
    let config = Config {
        rate_limit: RateLimit {
            message_burst: 100,
            ..RateLimit::default()
        },
        ..Config::default()
    };
    let server = TestServer::start(dir.path(), config).await?;
    let url = server.url("doc");
    let mut calm = SyncClient::connect_synced(&url).await?;
    // Fifty messages in a frame are within the burst.
    let mut ok = SyncClient::connect_synced(&url).await?;
    ok.send_raw(vec![3; 50]).await?;
    ok.edit(|txn| txn.get_or_insert_text("text").insert(txn, 0, "ok"))
        .await?;
    ok.await_server(&url).await?;
    let mut greedy = SyncClient::connect_synced(&url).await?;
    greedy.send_raw(vec![3; 1_000]).await?;
    assert_eq!(greedy.closed().await?, Closed::Code(1008));
    assert_eq!(server.tandem.counters().rate_limited, 1);
    calm.edit(|txn| txn.get_or_insert_text("text").insert(txn, 0, "calm "))
        .await?;
    calm.await_server(&url).await?;
    let fresh = SyncClient::connect_synced(&url).await?;
    assert!(fresh.text("text").contains("ok") && fresh.text("text").contains("calm"));
    ok.close().await?;
    server.stop().await
}
