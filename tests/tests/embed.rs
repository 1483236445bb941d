//! Tandem inside an app: server-side reads and changes, hooks, and the router nested under a
//! path of the app's own router.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::future::IntoFuture;
use tandem_core::{DocError, SledStore, UpdateError};
use tandem_server::hooks::{FnHooks, HookConfig, Veto};
use tandem_server::{Config, Tandem};
use tandem_tests::{refused, request, wait_until, within, SyncClient, TestServer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use yrs::updates::decoder::Decode;
use yrs::{GetString, ReadTxn, StateVector, Text, Transact, WriteTxn};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn tandem(dir: &std::path::Path, config: Config) -> tandem_server::Builder {
    Tandem::builder()
        .store(Arc::new(SledStore::open(dir).expect("store")))
        .config(config)
}

async fn append(doc: &tandem_core::Document, what: &'static str) -> Result<(), DocError> {
    doc.transact(move |txn| {
        let text = txn.get_or_insert_text("text");
        let end = text.len(txn);
        text.insert(txn, end, what);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_changes_reach_peers_and_persist() -> anyhow::Result<()> {
    let dir = tempdir();
    let mut config = Config::default();
    config.doc.max_doc_bytes = 2048;
    let server = TestServer::serve(tandem(dir.path(), config.clone()).build()?).await?;
    let url = server.url("doc");
    let mut peer = SyncClient::connect_synced(&url).await?;

    let doc = server.tandem.document("doc").await?;
    append(&doc, "from the server").await?;
    peer.pump_until("the server's change", |c| {
        c.text("text") == "from the server"
    })
    .await?;

    // An update made elsewhere, applied like a peer's.
    let other = yrs::Doc::new();
    let update = {
        let text = other.get_or_insert_text("text");
        let mut txn = other.transact_mut();
        text.insert(&mut txn, 0, "elsewhere: ");
        txn.commit();
        txn.encode_update_v1()
    };
    doc.apply_update(&update).await?;
    peer.pump_until("the applied update", |c| {
        c.text("text").contains("elsewhere: ")
    })
    .await?;
    assert!(matches!(
        doc.apply_update(&[0xde, 0xad]).await,
        Err(UpdateError::Malformed)
    ));
    let huge = {
        let text = other.get_or_insert_text("text");
        let mut txn = other.transact_mut();
        text.insert(&mut txn, 0, &"x".repeat(4096));
        txn.commit();
        txn.encode_update_v1()
    };
    let before = doc.encode_state().await?;
    assert!(matches!(
        doc.apply_update(&huge).await,
        Err(UpdateError::TooLarge { limit: 2048 })
    ));
    assert_eq!(doc.encode_state().await?, before);

    let text = peer.text("text");
    assert_eq!(doc.get_json().await?, serde_json::json!({ "text": text }));
    let peer_state = peer
        .doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    assert_eq!(doc.state_vector().await?, peer.state_vector());
    assert_eq!(
        doc.read(|txn| txn.get_text("text").map(|t| t.get_string(txn)))
            .await?,
        Some(text.clone())
    );
    assert_eq!(doc.encode_state().await?.len(), peer_state.len());
    doc.persisted().await?;
    // A `Document` keeps the registry, and so the store, alive.
    drop(doc);
    server.stop().await?;

    let server = TestServer::serve(tandem(dir.path(), config).build()?).await?;
    let fresh = SyncClient::connect_synced(&server.url("doc")).await?;
    assert_eq!(fresh.text("text"), text);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_calls_load_unloaded_documents_and_survive_panics() -> anyhow::Result<()> {
    let dir = tempdir();
    let mut config = Config::default();
    config.doc.unload_delay = Duration::from_millis(20);
    let server = TestServer::serve(tandem(dir.path(), config).build()?).await?;
    let doc = server.tandem.document("doc").await?;
    append(&doc, "one").await?;
    let name = doc.name().clone();
    wait_until("the idle document to unload", || {
        !server.tandem.registry().is_loaded(&name)
    })
    .await?;
    // The handle still works: the next call loads the document again.
    append(&doc, " two").await?;
    assert_eq!(
        doc.get_json().await?,
        serde_json::json!({ "text": "one two" })
    );

    let panicked = doc
        .transact(|txn| {
            let text = txn.get_or_insert_text("text");
            text.insert(txn, 0, "kept ");
            panic!("a bug in the app");
        })
        .await;
    assert!(matches!(panicked, Err(DocError::Aborted)));
    let read_panicked = doc.read(|_| panic!("another bug")).await;
    assert!(matches!(read_panicked, Err(DocError::Aborted)));
    // What the panicking change did before panicking is part of the document, everywhere.
    let fresh = SyncClient::connect_synced(&server.url("doc")).await?;
    assert_eq!(fresh.text("text"), "kept one two");
    server.stop().await
}

/// Hook calls as text, in order.
type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, entry: String) {
    log.lock().expect("log lock").push(entry);
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().expect("log lock").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_hear_connections_changes_and_unloads() -> anyhow::Result<()> {
    let dir = tempdir();
    let log: Log = Arc::default();
    let hooks = {
        let (a, b, c, d, e) = (
            log.clone(),
            log.clone(),
            log.clone(),
            log.clone(),
            log.clone(),
        );
        FnHooks::new()
            .on_connect(move |info| {
                let log = a.clone();
                async move {
                    if info.doc.as_bytes() == b"vetoed" {
                        return Err(Veto::new("closed for renovation"));
                    }
                    push(&log, format!("connect {}", info.doc));
                    Ok(())
                }
            })
            .on_disconnect(move |info| {
                let log = b.clone();
                async move { push(&log, format!("disconnect {}", info.doc)) }
            })
            .on_load(move |doc| {
                let log = c.clone();
                async move { push(&log, format!("load {doc}")) }
            })
            .on_change(move |change| {
                let log = d.clone();
                async move {
                    let merged = change.merged().expect("valid updates");
                    let probe = yrs::Doc::new();
                    let text = probe.get_or_insert_text("text");
                    probe
                        .transact_mut()
                        .apply_update(yrs::Update::decode_v1(&merged).expect("decodes"))
                        .expect("applies");
                    let content = text.get_string(&probe.transact());
                    push(
                        &log,
                        format!("change {} x{}: {content}", change.doc, change.updates.len()),
                    );
                }
            })
            .on_unload(move |doc| {
                let log = e.clone();
                async move { push(&log, format!("unload {doc}")) }
            })
    };
    let mut config = Config::default();
    config.doc.unload_delay = Duration::from_millis(50);
    let built = tandem(dir.path(), config)
        .hooks(Arc::new(hooks))
        .hook_config(HookConfig {
            debounce: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        })
        .build()?;
    let server = TestServer::serve(built).await?;

    let (status, body) = refused(request(&server.url("vetoed"), &[])?).await?;
    assert_eq!((status, body.as_str()), (403, "closed for renovation"));

    let url = server.url("doc");
    let mut peer = SyncClient::connect_synced(&url).await?;
    for word in ["a", "b", "c"] {
        peer.edit(|txn| {
            let text = txn.get_or_insert_text("text");
            let end = text.len(txn);
            text.insert(txn, end, word);
        })
        .await?;
    }
    peer.await_server(&url).await?;
    peer.close().await?;
    wait_until("the unload hook", || {
        entries(&log).iter().any(|e| e == "unload doc")
    })
    .await?;
    let log = entries(&log);
    // The connection is vetted before the document loads. The three edits arrive as one
    // debounced change, before the unload; the observer that `await_server` used connected and
    // disconnected too.
    assert_eq!(log[..2], ["connect doc", "load doc"], "{log:?}");
    assert_eq!(log.last().map(String::as_str), Some("unload doc"));
    let changes: Vec<_> = log.iter().filter(|e| e.starts_with("change")).collect();
    assert_eq!(changes, ["change doc x3: abc"], "{log:?}");
    assert_eq!(
        log.iter().filter(|e| *e == "connect doc").count(),
        2,
        "{log:?}"
    );
    assert_eq!(
        log.iter().filter(|e| *e == "disconnect doc").count(),
        2,
        "{log:?}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_hook_holds_up_no_document() -> anyhow::Result<()> {
    let dir = tempdir();
    let release = Arc::new(Notify::new());
    let calls = Arc::new(Mutex::new(0));
    let hooks = {
        let (release, calls) = (release.clone(), calls.clone());
        FnHooks::new().on_change(move |_| {
            let (release, calls) = (release.clone(), calls.clone());
            async move {
                *calls.lock().expect("lock") += 1;
                release.notified().await;
            }
        })
    };
    let built = tandem(dir.path(), Config::default())
        .hooks(Arc::new(hooks))
        .hook_config(HookConfig {
            debounce: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        })
        .build()?;
    let server = TestServer::serve(built).await?;
    let url = server.url("doc");
    let mut a = SyncClient::connect_synced(&url).await?;
    let mut b = SyncClient::connect_synced(&url).await?;
    a.edit(|txn| txn.get_or_insert_text("text").insert(txn, 0, "first"))
        .await?;
    wait_until("the hook to be stuck", || *calls.lock().expect("lock") == 1).await?;
    // The hook is stuck in its first call; documents go on.
    for i in 0..50 {
        a.edit(|txn| txn.get_or_insert_text("text").insert(txn, 0, "x"))
            .await?;
        if i % 10 == 0 {
            b.drain().await?;
        }
    }
    let doc = server.tandem.document("doc").await?;
    append(&doc, "!").await?;
    let target = a.state_vector();
    b.pump_until("every edit", |c| {
        c.state_vector() >= target && c.text("text").ends_with('!')
    })
    .await?;
    assert_eq!(b.text("text").len(), "first".len() + 50 + 1);
    release.notify_waiters();
    // Shutdown delivers what is pending; the hook is released for every later call too.
    let releaser = {
        let release = release.clone();
        tokio::spawn(async move {
            loop {
                release.notify_waiters();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let stopped = server.stop().await;
    releaser.abort();
    stopped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_nests_under_an_app_path() -> anyhow::Result<()> {
    let dir = tempdir();
    let tandem = tandem(dir.path(), Config::default()).build()?;
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "the app" }))
        .nest("/collab", tandem.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let served = tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .into_future(),
    );
    let url = format!("ws://{addr}/collab/ws/notes/a%2Fb");
    let mut a = SyncClient::connect_synced(&url).await?;
    a.edit(|txn| txn.get_or_insert_text("text").insert(txn, 0, "nested"))
        .await?;
    a.await_server(&url).await?;
    // The name is what follows the app's prefix and `/ws/`, decoded.
    let doc = tandem.document("notes/a/b").await?;
    assert_eq!(
        doc.get_json().await?,
        serde_json::json!({ "text": "nested" })
    );
    let health = tandem_tests::http_get(addr, "/collab/healthz", &[]).await?;
    assert_eq!(health.status, 200);
    drop(a);
    stop.cancel();
    within("the app to stop", served).await???;
    tandem.shutdown().await?;
    Ok(())
}
