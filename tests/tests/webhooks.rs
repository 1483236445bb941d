//! Webhooks against a receiver running in the test: one debounced, signed call per burst of
//! changes, a retry with the same delivery id after a 500, and peer events.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tandem_core::SledStore;
use tandem_server::webhooks::signature;
use tandem_server::{Tandem, WebhookConfig};
use tandem_tests::{wait_until, SyncClient, TestServer};
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
