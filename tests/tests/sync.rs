//! The server over real TCP with real sled stores: convergence, persistence, unloading, and
//! what happens to bad or slow peers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tandem_core::store::{LogEntry, Snapshot, StoredDoc};
use tandem_core::{DocName, SledStore, Store, StoreError};
use tandem_server::Config;
use tandem_tests::{sync_message, wait_until, within, Closed, SyncClient, TestServer};
use tokio_tungstenite::tungstenite::Message;
use yrs::{Array, Doc, Map, StateVector, Text, Transact, WriteTxn};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

async fn insert_text(client: &mut SyncClient, at: u32, what: &str) -> anyhow::Result<()> {
    let what = what.to_owned();
    client
        .edit(move |txn| txn.get_or_insert_text("text").insert(txn, at, &what))
        .await
}

/// Waits until every client has every insertion any of them made. Deletions do not show in a
/// state vector, so callers end each peer's edits with an insertion.
async fn converge(clients: &mut [&mut SyncClient]) -> anyhow::Result<()> {
    let mut target = StateVector::default();
    for client in clients.iter() {
        target.merge(client.state_vector());
    }
    for client in clients.iter_mut() {
        let target = target.clone();
        client
            .pump_until("convergence", move |c| c.state_vector() >= target)
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_converge_on_text_map_and_array() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = TestServer::start(dir.path(), Config::default()).await?;
    let url = server.url("shared");
    let mut a = SyncClient::connect_synced(&url).await?;
    let mut b = SyncClient::connect_synced(&url).await?;
    // Concurrent: neither has seen the other's edits when making its own.
    a.edit(|txn| {
        txn.get_or_insert_text("text")
            .insert(txn, 0, "hello from a");
        txn.get_or_insert_map("map").insert(txn, "a", 1);
        txn.get_or_insert_array("array").push_back(txn, "a");
    })
    .await?;
    b.edit(|txn| {
        txn.get_or_insert_text("text")
            .insert(txn, 0, "hello from b");
        txn.get_or_insert_map("map").insert(txn, "b", 2);
        txn.get_or_insert_array("array").push_back(txn, "b");
    })
    .await?;
    converge(&mut [&mut a, &mut b]).await?;
    assert_eq!(a.json(), b.json());
    assert_eq!(a.text("text").len(), "hello from a".len() * 2);
    assert!(
        a.json().contains("\"a\":1") && a.json().contains("\"b\":2"),
        "{}",
        a.json()
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_gets_the_full_state_and_offline_edits_merge() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = TestServer::start(dir.path(), Config::default()).await?;
    let url = server.url("late");
    let mut a = SyncClient::connect_synced(&url).await?;
    insert_text(&mut a, 0, "online").await?;
    a.await_server(&url).await?;

    let late = SyncClient::connect_synced(&url).await?;
    assert_eq!(late.text("text"), "online");

    // Edited before connecting, as a client that was offline.
    let offline = Doc::new();
    {
        let text = offline.get_or_insert_text("text");
        text.insert(&mut offline.transact_mut(), 0, "offline ");
    }
    let mut b = SyncClient::connect_with(&url, offline).await?;
    b.sync().await?;
    converge(&mut [&mut a, &mut b]).await?;
    assert_eq!(a.text("text"), b.text("text"));
    assert!(a.text("text").contains("offline ") && a.text("text").contains("online"));
    server.stop().await
}

/// A tiny deterministic generator, enough for picking edits.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_peers_converge_under_concurrent_random_edits() -> anyhow::Result<()> {
    const PEERS: u64 = 50;
    const EDITS: u64 = 20;
    let dir = tempdir();
    let server = TestServer::start(dir.path(), Config::default()).await?;
    let url = server.url("crowd");
    let mut tasks = Vec::new();
    for seed in 0..PEERS {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (seed + 1));
            let mut client = SyncClient::connect_synced(&url).await?;
            for edit in 0..EDITS {
                let choice = rng.below(4);
                let len = client.text("text").len() as u64;
                let at = rng.below(len + 1) as u32;
                let del = rng.below(3) as u32;
                client
                    .edit(move |txn| match choice {
                        0 | 1 => txn.get_or_insert_text("text").insert(
                            txn,
                            at,
                            &format!("{seed}.{edit} "),
                        ),
                        2 => {
                            let text = txn.get_or_insert_text("text");
                            let len = text.len(txn);
                            if at < len {
                                text.remove_range(txn, at, del.min(len - at));
                            }
                        }
                        _ => {
                            txn.get_or_insert_map("map").insert(
                                txn,
                                format!("k{}", seed % 7),
                                edit as i64,
                            );
                            txn.get_or_insert_array("array").push_back(txn, seed as i64);
                        }
                    })
                    .await?;
                client.drain().await?;
            }
            // Deletions do not advance a state vector; a final insertion does, and everything
            // this peer sent before it arrives before it (one socket, one ordered queue).
            client
                .edit(move |txn| {
                    txn.get_or_insert_map("map")
                        .insert(txn, format!("done{seed}"), true);
                })
                .await?;
            anyhow::Ok(client)
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(within("peer edits", task).await???);
    }
    let mut refs: Vec<&mut SyncClient> = clients.iter_mut().collect();
    converge(&mut refs).await?;
    let json = clients[0].json();
    for client in &clients {
        assert_eq!(client.json(), json);
    }
    let late = SyncClient::connect_synced(&url).await?;
    assert_eq!(late.json(), json);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_every_document_exactly() -> anyhow::Result<()> {
    let dir = tempdir();
    let names = ["plain", "notes%2F2024%2Fplan", "with%20space", "a/b/c"];
    let mut before = HashMap::new();
    {
        let server = TestServer::start(dir.path(), Config::default()).await?;
        for name in names {
            let mut client = SyncClient::connect_synced(&server.url(name)).await?;
            insert_text(&mut client, 0, name).await?;
            client
                .edit(|txn| {
                    txn.get_or_insert_map("map").insert(txn, "k", "v");
                })
                .await?;
            client.await_server(&server.url(name)).await?;
            before.insert(name, (client.json(), client.state_vector()));
        }
        server.stop().await?;
    }
    let server = TestServer::start(dir.path(), Config::default()).await?;
    for name in names {
        let client = SyncClient::connect_synced(&server.url(name)).await?;
        assert_eq!(
            (client.json(), client.state_vector()),
            before[name],
            "{name}"
        );
    }
    // `a/b/c` and `a%2Fb%2Fc` name the same document; `a/b` is another one.
    let encoded = SyncClient::connect_synced(&server.url("a%2Fb%2Fc")).await?;
    assert_eq!(encoded.text("text"), "a/b/c");
    let other = SyncClient::connect_synced(&server.url("a/b")).await?;
    assert_eq!(other.text("text"), "");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_state_and_shrinks_the_log() -> anyhow::Result<()> {
    let dir = tempdir();
    let mut config = Config::default();
    config.doc.compact_log_entries = 10;
    let expected;
    {
        let server = TestServer::start(dir.path(), config.clone()).await?;
        let mut client = SyncClient::connect_synced(&server.url("compact")).await?;
        for i in 0..95u32 {
            insert_text(&mut client, i, "x").await?;
        }
        client.await_server(&server.url("compact")).await?;
        expected = client.json();
        server.stop().await?;
    }
    {
        let store = SledStore::open(dir.path())?;
        let stored = store.load(&DocName::from("compact")).await?;
        assert!(stored.snapshot.is_some(), "a snapshot was written");
        assert!(
            stored.log.len() < 10,
            "log holds {} entries",
            stored.log.len()
        );
        assert_eq!(stored.last_seq(), 95);
    }
    let server = TestServer::start(dir.path(), config).await?;
    let client = SyncClient::connect_synced(&server.url("compact")).await?;
    assert_eq!(client.json(), expected);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_documents_unload_and_reload_with_their_state() -> anyhow::Result<()> {
    let dir = tempdir();
    let mut config = Config::default();
    config.doc.unload_delay = Duration::from_millis(50);
    let server = TestServer::start(dir.path(), config).await?;
    let name = DocName::from("idle");
    let mut client = SyncClient::connect_synced(&server.url("idle")).await?;
    insert_text(&mut client, 0, "remember me").await?;
    client.await_server(&server.url("idle")).await?;
    assert!(server.tandem.registry().is_loaded(&name));
    client.close().await?;
    let registry = server.tandem.registry().clone();
    wait_until("the document to unload", || !registry.is_loaded(&name)).await?;
    let client = SyncClient::connect_synced(&server.url("idle")).await?;
    assert_eq!(client.text("text"), "remember me");
    server.stop().await
}

/// A store that counts loads, to show a document is loaded once however many peers arrive.
struct CountingStore {
    inner: SledStore,
    loads: AtomicUsize,
}

#[async_trait]
impl Store for CountingStore {
    async fn load(&self, name: &DocName) -> Result<StoredDoc, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(name).await
    }
    async fn append(&self, name: &DocName, entries: Vec<LogEntry>) -> Result<(), StoreError> {
        self.inner.append(name, entries).await
    }
    async fn compact(&self, name: &DocName, snapshot: Snapshot) -> Result<(), StoreError> {
        self.inner.compact(name, snapshot).await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_loads_once_under_concurrent_joins() -> anyhow::Result<()> {
    let dir = tempdir();
    let store = Arc::new(CountingStore {
        inner: SledStore::open(dir.path())?,
        loads: AtomicUsize::new(0),
    });
    let server = TestServer::start_with(store.clone(), Config::default()).await?;
    let url = server.url("crowded");
    let joins: Vec<_> = (0..100)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { SyncClient::connect_synced(&url).await })
        })
        .collect();
    for join in joins {
        within("join", join).await???;
    }
    assert_eq!(store.loads.load(Ordering::SeqCst), 1);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_closes_with_1009_and_harms_nobody() -> anyhow::Result<()> {
    let dir = tempdir();
    let config = Config {
        max_frame_bytes: 4096,
        ..Config::default()
    };
    let server = TestServer::start(dir.path(), config).await?;
    let url = server.url("big");
    let mut good = SyncClient::connect_synced(&url).await?;
    insert_text(&mut good, 0, "before").await?;
    good.await_server(&url).await?;

    let mut bad = SyncClient::connect_synced(&url).await?;
    bad.edit(|txn| {
        txn.get_or_insert_text("text")
            .insert(txn, 0, &"x".repeat(10_000))
    })
    .await?;
    assert_eq!(bad.closed().await?, Closed::Code(1009));

    insert_text(&mut good, 6, " after").await?;
    good.await_server(&url).await?;
    let fresh = SyncClient::connect_synced(&url).await?;
    assert_eq!(fresh.text("text"), "before after");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_frames_close_with_1002_and_change_nothing() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = TestServer::start(dir.path(), Config::default()).await?;
    let url = server.url("garbage");
    let mut good = SyncClient::connect_synced(&url).await?;
    insert_text(&mut good, 0, "intact").await?;
    good.await_server(&url).await?;
    let state = good.state_vector();

    // A valid update followed by garbage in the same frame: the whole frame is refused.
    let sneaky = {
        let doc = Doc::new();
        let text = doc.get_or_insert_text("text");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "SNEAKY");
        txn.commit();
        let mut frame = sync_message(2, &txn.encode_update_v1());
        frame.extend_from_slice(&[0x00, 0x02, 0x05, 0xff]);
        frame
    };
    let hostile_awareness = {
        // client id 2^60, which yrs would assert on
        let mut body = vec![1];
        tandem_core::lib0::write_var_u64(&mut body, 1 << 60);
        body.extend_from_slice(&[1, 2, b'{', b'}']);
        let mut frame = vec![1];
        tandem_core::lib0::write_var_bytes(&mut frame, &body);
        frame
    };
    let frames = [
        vec![0xff, 0x01],
        vec![0x00, 0x02, 0x04, 0xde, 0xad, 0xbe, 0xef],
        vec![0x01, 0x05, 0x01, 0x01, 0x01, 0x01, b'{'],
        hostile_awareness,
        sneaky,
        vec![],
    ];
    for frame in frames {
        let mut bad = SyncClient::connect_synced(&url).await?;
        bad.send_raw(frame.clone()).await?;
        assert_eq!(
            bad.closed().await?,
            Closed::Code(1002),
            "frame {frame:02x?}"
        );
    }
    let mut text = SyncClient::connect_synced(&url).await?;
    text.send_message(Message::Text("hello".into())).await?;
    assert_eq!(text.closed().await?, Closed::Code(1003));

    good.drain().await?;
    assert_eq!(good.state_vector(), state);
    assert_eq!(good.text("text"), "intact");
    insert_text(&mut good, 6, "!").await?;
    good.await_server(&url).await?;
    let fresh = SyncClient::connect_synced(&url).await?;
    assert_eq!(fresh.text("text"), "intact!");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_peer_is_cut_off_while_others_keep_receiving() -> anyhow::Result<()> {
    let dir = tempdir();
    let config = Config {
        peer_queue: 32,
        ping_interval: Duration::from_secs(600),
        ..Config::default()
    };
    let server = TestServer::start(dir.path(), config).await?;
    let url = server.url("stall");
    let mut writer = SyncClient::connect_synced(&url).await?;
    let reader = SyncClient::connect_synced(&url).await?;
    let mut stalled = SyncClient::connect_synced(&url).await?;

    // Big updates fill the stalled peer's socket buffers, then its queue (32 frames of 64 KiB
    // plus the buffers are well under the 12.5 MiB sent). The reader reads every update before
    // the next is sent, and the writer reads its echoes, so only the stalled peer falls behind
    // however busy the machine is.
    let chunk = "y".repeat(64 * 1024);
    let mut reader = reader;
    for sent in (1..=200).map(|n| n * chunk.len()) {
        let piece = chunk.clone();
        writer
            .edit(move |txn| txn.get_or_insert_text("text").insert(txn, 0, &piece))
            .await?;
        writer.drain().await?;
        reader
            .pump_until("the update", |c| c.text("text").len() == sent)
            .await?;
    }
    let sent = 200 * chunk.len();
    writer.drain().await?;
    assert_eq!(writer.closed, None, "the writer was cut off");
    assert_eq!(reader.closed, None, "the reader was cut off");

    let closed = stalled.closed().await?;
    assert!(
        matches!(closed, Closed::Code(1013) | Closed::Dropped),
        "stalled peer ended with {closed:?}"
    );
    assert!(
        stalled.text("text").len() < sent,
        "the stalled peer did not get everything"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awareness_is_echoed_relayed_and_removed_on_disconnect() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = TestServer::start(dir.path(), Config::default()).await?;
    let url = server.url("presence");
    let mut a = SyncClient::connect_synced(&url).await?;
    let mut b = SyncClient::connect_synced(&url).await?;
    let a_id = a.doc.client_id().get();
    let state = r#"{"user":{"name":"A"}}"#;
    a.set_awareness(1, Some(state)).await?;
    a.pump_until("own awareness echoed", |c| {
        c.awareness.get(&a_id) == Some(&Some(state.into()))
    })
    .await?;
    b.pump_until("a's awareness", |c| {
        c.awareness.get(&a_id) == Some(&Some(state.into()))
    })
    .await?;

    // A renewal (same state, next clock) is echoed too: it is the clients' keep-alive.
    let seen = a.awareness_messages;
    a.set_awareness(2, Some(state)).await?;
    a.pump_until("renewal echoed", |c| c.awareness_messages > seen)
        .await?;

    // A newcomer receives the current states right after sync step 1.
    let c = SyncClient::connect_synced(&url).await?;
    let mut c = c;
    c.pump_until("states on join", |c| {
        c.awareness.get(&a_id) == Some(&Some(state.into()))
    })
    .await?;

    // Query-awareness is answered with every state.
    let seen = c.awareness_messages;
    c.send_raw(vec![3]).await?;
    c.pump_until("query answered", |c| c.awareness_messages > seen)
        .await?;

    a.abort();
    b.pump_until("a's removal", |c| c.awareness.get(&a_id) == Some(&None))
        .await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_pings_is_dropped() -> anyhow::Result<()> {
    let dir = tempdir();
    let mut config = Config {
        ping_interval: Duration::from_millis(100),
        ..Config::default()
    };
    config.doc.unload_delay = Duration::from_millis(10);
    let server = TestServer::start(dir.path(), config).await?;
    let silent = SyncClient::connect(&server.url("silent")).await?;
    let name = DocName::from("silent");
    let registry = server.tandem.registry().clone();
    wait_until("the document to load", || registry.is_loaded(&name)).await?;
    // The client never reads, so it never answers a ping; the server must drop it, after which
    // the document has no peers and unloads.
    wait_until("the silent peer to be dropped", || {
        !registry.is_loaded(&name)
    })
    .await?;
    drop(silent);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_sent_just_before_closing_are_kept() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = TestServer::start(dir.path(), Config::default()).await?;
    let url = server.url("leaving");
    for round in 0..10 {
        let mut leaver = SyncClient::connect_synced(&url).await?;
        for i in 0..20 {
            let what = format!("{round}.{i} ");
            leaver
                .edit(move |txn| {
                    let text = txn.get_or_insert_text("text");
                    let end = text.len(txn);
                    text.insert(txn, end, &what)
                })
                .await?;
        }
        let target = leaver.state_vector();
        // Gone at once: the server read the edits, but its echoes find the peer closed.
        leaver.close().await?;
        let mut fresh = SyncClient::connect_synced(&url).await?;
        fresh
            .pump_until("every edit of the peer that left", |c| {
                c.state_vector() >= target
            })
            .await?;
    }
    server.stop().await
}
