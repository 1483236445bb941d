//! Webhook deliveries survive the server being killed: a delivery that was pending (its first
//! attempt failed) when the process died of SIGKILL arrives, with the same delivery id, after
//! the server starts again on the same data directory. And a graceful stop (SIGTERM) right
//! after thousands of documents changed keeps every pending delivery, within its deadline.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

const DEADLINE: Duration = Duration::from_secs(30);

/// Delivery ids received, with the status answered and the document the body names.
type Log = Arc<Mutex<Vec<(String, u16, String)>>>;

async fn receiver(log: Log, accepting: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (log, accepting) = (log.clone(), accepting.clone());
            async move {
                let id = headers
                    .get("x-tandem-delivery")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let status = if accepting.load(Ordering::SeqCst) {
                    StatusCode::OK
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                let doc = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|body| body["doc"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                log.lock().expect("lock").push((id, status.as_u16(), doc));
                status
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

/// Starts the binary and returns it with the address it listens on.
fn serve(data: &std::path::Path, hook: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["serve", "--addr", "127.0.0.1:0", "--log-format", "json"])
        .args(["--webhook-url", hook, "--webhook-debounce", "50ms"])
        // No retry before the kill: the delivery stays pending in the outbox.
        .args(["--webhook-retry-base", "10m", "--data-dir"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run tandem");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, logged) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = logged.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not start");
        };
        let addr = line
            .contains("\"listening\"")
            .then(|| line.split("\"addr\":\"").nth(1))
            .flatten()
            .and_then(|rest| rest.split('"').next());
        if let Some(addr) = addr {
            return (child, addr.to_owned());
        }
    }
}

async fn wait_for(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_delivery_arrives_after_a_kill_and_restart() {
    let log: Log = Arc::default();
    let accepting = Arc::new(AtomicBool::new(false));
    let hook = receiver(log.clone(), accepting.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");

    let (mut first, addr) = serve(&data, &hook);
    // An update (`insert "x"` into the root text `t` by client 1) written over HTTP.
    let update = vec![1, 1, 1, 0, 4, 1, 1, b't', 1, b'x', 0];
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/docs/killed/update"))
        .body(update)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 204);
    wait_for("the first, failing attempt", || {
        !log.lock().expect("lock").is_empty()
    })
    .await;
    let id = log.lock().expect("lock")[0].0.clone();
    assert!(!id.is_empty());
    first.kill().expect("SIGKILL");
    first.wait().expect("wait");

    accepting.store(true, Ordering::SeqCst);
    let (mut second, _) = serve(&data, &hook);
    wait_for("the delivery after the restart", || {
        log.lock()
            .expect("lock")
            .iter()
            .any(|(delivered, status, _)| *delivered == id && *status == 200)
    })
    .await;
    second.kill().expect("kill");
    second.wait().expect("wait");
}

/// Documents changed before the SIGTERM: enough that one flush per pending delivery took the
/// shutdown past [`SHUTDOWN_TIMEOUT`] (and lost what it had not written).
const BURST_DOCS: usize = 4_000;

/// The shutdown deadline given to the binary: shutdown costs a couple of outbox flushes
/// however many deliveries are pending.
const SHUTDOWN_TIMEOUT: &str = "1s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_a_burst_exits_cleanly_and_every_change_is_delivered_after_restart() {
    let log: Log = Arc::default();
    let accepting = Arc::new(AtomicBool::new(false));
    let hook = receiver(log.clone(), accepting.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let args = [
        "--webhook-url",
        &hook,
        "--webhook-debounce",
        "50ms",
        "--webhook-retry-base",
        "10m",
        "--shutdown-timeout",
        SHUTDOWN_TIMEOUT,
        // One caller creates every document of the burst.
        "--doc-creations-per-min",
        "0",
    ];
    let server = support::start(&data, &args).expect("start");
    let client = reqwest::Client::new();
    let update = [1, 1, 1, 0, 4, 1, 1, b't', 1, b'x', 0];
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (client, base, next) = (client.clone(), server.http.clone(), next.clone());
        writers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= BURST_DOCS {
                    return;
                }
                let response = client
                    .post(format!("{base}/docs/term/{i}/update"))
                    .body(update.to_vec())
                    .send()
                    .await
                    .expect("post");
                assert_eq!(response.status(), 204);
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    drop(client);
    let (status, took) = tokio::task::spawn_blocking(move || server.terminate(DEADLINE))
        .await
        .expect("join")
        .expect("terminate");
    eprintln!("{BURST_DOCS} documents changed; SIGTERM to exit took {took:?} ({status})");
    assert!(status.success(), "after SIGTERM: {status} in {took:?}");

    accepting.store(true, Ordering::SeqCst);
    let server = support::start(&data, &args).expect("restart");
    let delivered = || -> HashSet<String> {
        log.lock()
            .expect("lock")
            .iter()
            .filter(|(_, status, _)| *status == 200)
            .map(|(_, _, doc)| doc.clone())
            .collect()
    };
    wait_for("a delivery for every changed document", || {
        delivered().len() >= BURST_DOCS
    })
    .await;
    let expected: HashSet<String> = (0..BURST_DOCS).map(|i| format!("term/{i}")).collect();
    assert_eq!(delivered(), expected);
    server.kill();
}
