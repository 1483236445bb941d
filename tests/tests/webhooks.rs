//! Webhooks against a receiver running in the test: one debounced, signed call per burst of
//! changes, a retry with the same delivery id after a 500, peer events, and thousands of
//! documents changed at once with the receiver down (delivery is not starved, and shutdown
//! keeps every pending delivery for the next start).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tandem_core::SledStore;
use tandem_server::webhooks::signature;
use tandem_server::{Tandem, WebhookConfig};
use tandem_tests::{wait_until, within, SyncClient, TestServer};
use tokio::net::TcpListener;
use yrs::{Text, WriteTxn};

const SECRET: &[u8] = b"the webhook secret";

/// A request the receiver got: its headers and body.
type Call = (HeaderMap, Vec<u8>);

/// What the receiver got.
#[derive(Clone, Default)]
struct Received {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Requests still to answer with 500.
    failures: Arc<AtomicUsize>,
}

impl Received {
    fn calls(&self) -> Vec<(HeaderMap, Value)> {
        self.calls
            .lock()
            .expect("lock")
            .iter()
            .map(|(headers, body)| {
                (
                    headers.clone(),
                    serde_json::from_slice(body).expect("json body"),
                )
            })
            .collect()
    }

    fn len(&self) -> usize {
        self.calls.lock().expect("lock").len()
    }

    /// The documents named by `document.changed` calls.
    fn changed_docs(&self) -> HashSet<String> {
        self.calls()
            .into_iter()
            .filter(|(_, body)| body["type"] == "document.changed")
            .filter_map(|(_, body)| body["doc"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Documents changed in a burst: enough that one store flush per document shows (it held
/// deliveries back until the burst ended, and shutdown took over 2 s).
const BURST_DOCS: usize = 4_000;

/// Longest a shutdown with a burst's deliveries pending may take. It costs a couple of
/// flushes however many deliveries are pending (measured: well under 100 ms for 4,000).
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(1);

/// REST writers posting the burst at once.
const BURST_WRITERS: usize = 16;

/// An update inserting "x" into the root text `t` (client 1), valid for any new document.
const UPDATE: [u8; 11] = [1, 1, 1, 0, 4, 1, 1, b't', 1, b'x', 0];

/// Changes `count` documents named `{prefix}{i}` over REST, [`BURST_WRITERS`] at a time,
/// counting in `done` those the server acknowledged.
async fn burst(
    base: String,
    prefix: &'static str,
    count: usize,
    done: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..BURST_WRITERS {
        let (client, base, next, done) = (client.clone(), base.clone(), next.clone(), done.clone());
        writers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                let response = client
                    .post(format!("{base}/docs/{prefix}{i}/update"))
                    .body(UPDATE.to_vec())
                    .send()
                    .await?;
                anyhow::ensure!(response.status() == 204, "{}", response.status());
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    Ok(())
}

/// The receiver always fails, retries wait long: every attempt the receiver sees is a first one.
fn burst_config(url: String) -> WebhookConfig {
    WebhookConfig {
        debounce: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        retry_base: Duration::from_secs(600),
        ..config(url)
    }
}

async fn receiver(received: Received) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                received
                    .calls
                    .lock()
                    .expect("lock")
                    .push((headers, body.to_vec()));
                let failing = received
                    .failures
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if failing {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/hook"))
}

fn config(url: String) -> WebhookConfig {
    WebhookConfig {
        secret: Some(SECRET.to_vec()),
        debounce: Duration::from_millis(300),
        max_delay: Duration::from_secs(3),
        retry_base: Duration::from_millis(100),
        ..WebhookConfig::new(vec![url])
    }
}

async fn start(dir: &std::path::Path, webhooks: WebhookConfig) -> anyhow::Result<TestServer> {
    let tandem = Tandem::builder()
        .store(Arc::new(SledStore::open(dir)?))
        .webhooks(webhooks)
        // The bursts create thousands of documents from one address.
        .config(tandem_server::Config {
            doc_creations_per_min: 0,
            ..tandem_server::Config::default()
        })
        .build()?;
    TestServer::serve(tandem).await
}

#[tokio::test]
async fn a_burst_of_changes_is_one_signed_call_retried_after_a_500() -> anyhow::Result<()> {
    let received = Received::default();
    received.failures.store(1, Ordering::SeqCst);
    let url = receiver(received.clone()).await?;
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), config(url)).await?;
    let mut client = SyncClient::connect_synced(&server.url("hooked/doc")).await?;
    for i in 0..20 {
        client
            .edit(move |txn| txn.get_or_insert_text("text").push(txn, &format!("{i}")))
            .await?;
    }
    // The first attempt fails with 500, the retry succeeds.
    wait_until("a delivery and its retry", || received.len() >= 2).await?;
    let calls = received.calls();
    let (first_headers, first) = &calls[0];
    let (retry_headers, retry) = &calls[1];
    assert_eq!(first["type"], "document.changed");
    assert_eq!(first["doc"], "hooked/doc");
    assert_eq!(first, retry, "a retry repeats the delivery");
    assert_eq!(
        first_headers["x-tandem-delivery"],
        retry_headers["x-tandem-delivery"]
    );
    assert_eq!(first["id"], first_headers["x-tandem-delivery"].to_str()?);
    assert_eq!(first_headers["x-tandem-event"], "document.changed");
    let body = serde_json::to_vec(first)?;
    assert_eq!(
        first_headers["x-tandem-signature-256"].to_str()?,
        signature(SECRET, &body)
    );
    // One burst, one delivery: nothing else arrives after the debounce.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(received.len(), 2, "{:?}", received.calls());

    // A second burst is a second delivery, with a new id.
    client
        .edit(|txn| txn.get_or_insert_text("text").push(txn, "again"))
        .await?;
    wait_until("the second burst's delivery", || received.len() >= 3).await?;
    let calls = received.calls();
    assert_ne!(calls[2].1["id"], calls[0].1["id"]);
    let metrics = reqwest::get(format!("http://{}/metrics", server.addr))
        .await?
        .text()
        .await?;
    assert!(metrics.contains("tandem_webhook_deliveries_total{result=\"delivered\"} 2"));
    assert!(metrics.contains("tandem_webhook_deliveries_total{result=\"failed\"} 1"));
    server.stop().await
}

#[tokio::test]
async fn peers_joining_and_leaving_are_reported_when_asked() -> anyhow::Result<()> {
    let received = Received::default();
    let url = receiver(received.clone()).await?;
    let dir = tempfile::tempdir()?;
    let server = start(
        dir.path(),
        WebhookConfig {
            peer_events: true,
            ..config(url)
        },
    )
    .await?;
    let client = SyncClient::connect_synced(&server.url("room")).await?;
    wait_until("the join", || received.len() >= 1).await?;
    client.close().await?;
    wait_until("the leave", || received.len() >= 2).await?;
    let calls = received.calls();
    let types: Vec<&str> = calls
        .iter()
        .filter_map(|(_, body)| body["type"].as_str())
        .collect();
    assert_eq!(types, ["peer.joined", "peer.left"]);
    assert_eq!(calls[0].1["doc"], "room");
    assert_eq!(calls[0].1["transport"], "websocket");
    assert_eq!(calls[0].1["peer"], calls[1].1["peer"]);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_start_while_a_burst_of_changes_arrives() -> anyhow::Result<()> {
    let received = Received::default();
    received.failures.store(usize::MAX, Ordering::SeqCst);
    let url = receiver(received.clone()).await?;
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), burst_config(url)).await?;
    let written_docs = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let writing = tokio::spawn(burst(
        format!("http://{}", server.addr),
        "burst/",
        BURST_DOCS,
        written_docs.clone(),
    ));
    wait_until("the first delivery attempt", || received.len() >= 1).await?;
    let first_attempt = started.elapsed();
    let written_before_first_attempt = written_docs.load(Ordering::Relaxed);
    within("the burst", writing).await???;
    let written = started.elapsed();
    wait_until("an attempt for every document", || {
        received.changed_docs().len() >= BURST_DOCS
    })
    .await?;
    let all_attempted = started.elapsed();
    eprintln!(
        "{BURST_DOCS} documents written in {written:?} ({:.0}/s); first attempt after \
         {first_attempt:?} ({written_before_first_attempt} documents written); every document \
         attempted after {all_attempted:?} ({:.0}/s)",
        BURST_DOCS as f64 / written.as_secs_f64(),
        BURST_DOCS as f64 / all_attempted.as_secs_f64(),
    );
    // Sending is not starved by new changes: attempts begin while the burst is still arriving
    // (the debounce is 50 ms), not after it.
    assert!(
        written_before_first_attempt < BURST_DOCS / 2,
        "first attempt after {written_before_first_attempt} of {BURST_DOCS} documents"
    );
    // The outbox keeps up with the burst: one flush per batch, not per document.
    assert!(
        all_attempted < written + Duration::from_secs(2),
        "every document attempted after {all_attempted:?}, the burst took {written:?}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_after_a_burst_keeps_every_delivery_for_the_next_start() -> anyhow::Result<()> {
    let received = Received::default();
    received.failures.store(usize::MAX, Ordering::SeqCst);
    let url = receiver(received.clone()).await?;
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), burst_config(url.clone())).await?;
    let started = Instant::now();
    let written_docs = Arc::new(AtomicUsize::new(0));
    burst(
        format!("http://{}", server.addr),
        "stop/",
        BURST_DOCS,
        written_docs,
    )
    .await?;
    let written = started.elapsed();
    let stopping = Instant::now();
    server.stop().await?;
    let stopped = stopping.elapsed();
    eprintln!("{BURST_DOCS} documents written in {written:?}; shutdown took {stopped:?}");
    assert!(stopped < SHUTDOWN_DEADLINE, "shutdown took {stopped:?}");

    // Only what arrives after the restart counts, and all of it is answered 200.
    received.calls.lock().expect("lock").clear();
    received.failures.store(0, Ordering::SeqCst);
    let server = start(dir.path(), burst_config(url)).await?;
    let restarted = Instant::now();
    wait_until("a delivery for every changed document", || {
        received.changed_docs().len() >= BURST_DOCS
    })
    .await?;
    eprintln!(
        "every document delivered {:?} after the restart",
        restarted.elapsed()
    );
    let expected: HashSet<String> = (0..BURST_DOCS).map(|i| format!("stop/{i}")).collect();
    assert_eq!(received.changed_docs(), expected);
    server.stop().await
}
