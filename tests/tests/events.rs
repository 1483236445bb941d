//! Custom events on the document's socket: only for peers that opted in, ordered per document,
//! kept in a history on disk that reconnecting peers replay, and limited like everything else.

use std::sync::Arc;

use serde_json::{json, Value};
use tandem_core::auth::jwt::unix_now;
use tandem_core::auth::JwtAuthorizer;
use tandem_core::SledStore;
use tandem_server::{Config, Tandem};
use tandem_tests::{Closed, SyncClient, TestServer};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn events_url(server: &TestServer, doc: &str) -> String {
    format!("{}?events=1", server.url(doc))
}

/// The events (not acks or gaps) a client received.
fn events(client: &SyncClient) -> Vec<&Value> {
    client
        .events
        .iter()
        .filter(|e| e.get("seq").is_some())
        .collect()
}

async fn chat(client: &mut SyncClient, text: &str) -> anyhow::Result<()> {
    client
        .send_event(json!({ "type": "chat", "data": { "text": text } }))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_opted_in_peers_in_order() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = TestServer::start(dir.path(), Config::default()).await?;
    let mut alice = SyncClient::connect_synced(&events_url(&server, "room")).await?;
    let mut bob = SyncClient::connect_synced(&events_url(&server, "room")).await?;
    let mut plain = SyncClient::connect_synced(&server.url("room")).await?;
    let mut elsewhere = SyncClient::connect_synced(&events_url(&server, "other")).await?;

    for i in 0..10 {
        chat(&mut alice, &format!("a{i}")).await?;
        chat(&mut bob, &format!("b{i}")).await?;
    }
    // Each sees the other's ten, not its own; its own come back as acks.
    alice
        .pump_until("bob's events and alice's acks", |c| {
            events(c).len() == 10 && c.events.len() == 20
        })
        .await?;
    bob.pump_until("alice's events and bob's acks", |c| {
        events(c).len() == 10 && c.events.len() == 20
    })
    .await?;
    let stamped = events(&bob)[0];
    assert_eq!(stamped["type"], "chat");
    assert!(stamped["from"]
        .as_str()
        .is_some_and(|f| f.starts_with("peer:")));
    assert!(stamped["at"]
        .as_u64()
        .is_some_and(|at| at > 1_600_000_000_000));
    // One sequence per document: acks and events together number 1..=20 without a gap, and
    // each peer sees them in increasing order.
    for client in [&alice, &bob] {
        let seqs: Vec<u64> = client
            .events
            .iter()
            .map(|e| {
                e.get("seq")
                    .or(e.get("ack"))
                    .and_then(Value::as_u64)
                    .expect("numbered")
            })
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }
    let mut all: Vec<u64> = alice
        .events
        .iter()
        .map(|e| {
            e.get("seq")
                .or(e.get("ack"))
                .and_then(Value::as_u64)
                .expect("numbered")
        })
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..=20).collect::<Vec<_>>());
    let texts: Vec<&str> = events(&alice)
        .iter()
        .map(|e| e["data"]["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, (0..10).map(|i| format!("b{i}")).collect::<Vec<_>>());

    // The plain y-websocket peer and the other document never see an event message: a
    // document change sent after the events arrives with nothing before it.
    alice
        .edit(|txn| {
            use yrs::{Text, WriteTxn};
            txn.get_or_insert_text("text").insert(txn, 0, "after")
        })
        .await?;
    plain
        .pump_until("the edit", |c| c.text("text") == "after")
        .await?;
    assert!(plain.events.is_empty());
    elsewhere.drain().await?;
    assert!(elsewhere.events.is_empty());

    // Server code emits too.
    let doc = server.tandem.document("room").await?;
    let seq = doc
        .emit_event("notice", json!({ "text": "from the server" }))
        .await?;
    assert_eq!(seq, 21);
    bob.pump_until("the server's event", |c| events(c).len() == 11)
        .await?;
    assert_eq!(events(&bob)[10]["from"], "server");
    drop(doc);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_peers_replay_history_with_a_gap_marker_and_across_restarts(
) -> anyhow::Result<()> {
    let dir = tempdir();
    let mut config = Config::default();
    config.doc.event_history = 5;
    config.events_per_sec = 0;
    let server = TestServer::start(dir.path(), config.clone()).await?;
    let mut sender = SyncClient::connect_synced(&events_url(&server, "room")).await?;
    for i in 1..=3 {
        chat(&mut sender, &format!("m{i}")).await?;
    }
    sender
        .pump_until("three acks", |c| c.events.len() == 3)
        .await?;

    // A peer that saw up to 1 gets 2 and 3.
    let mut back = SyncClient::connect_synced(&events_url(&server, "room")).await?;
    back.send_event(json!({ "since": 1 })).await?;
    back.pump_until("the missed events", |c| c.events.len() == 2)
        .await?;
    assert_eq!(
        back.events
            .iter()
            .map(|e| e["seq"].clone())
            .collect::<Vec<_>>(),
        [json!(2), json!(3)]
    );

    // Past the history: events 1..=3 fall out of a history of five after eight.
    for i in 4..=8 {
        chat(&mut sender, &format!("m{i}")).await?;
    }
    sender
        .pump_until("eight acks", |c| c.events.len() == 8)
        .await?;
    drop(sender);
    drop(back);
    server.stop().await?;

    // The history survives a restart, and numbering goes on where it was.
    let server = TestServer::start(dir.path(), config).await?;
    let mut late = SyncClient::connect_synced(&events_url(&server, "room")).await?;
    late.send_event(json!({ "since": 1 })).await?;
    late.pump_until("a gap and the kept events", |c| c.events.len() == 6)
        .await?;
    assert_eq!(late.events[0], json!({ "gap": { "from": 2, "to": 3 } }));
    let seqs: Vec<u64> = late.events[1..]
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [4, 5, 6, 7, 8]);
    assert_eq!(late.events[5]["data"]["text"], "m8");
    chat(&mut late, "after restart").await?;
    late.pump_until("the ack", |c| c.events.len() == 7).await?;
    assert_eq!(late.events[6], json!({ "ack": 9 }));
    // Nothing missed: asking from the newest gives nothing.
    late.send_event(json!({ "since": 9 })).await?;
    late.send_event(json!({ "since": 8 })).await?;
    late.pump_until("the replay of 9", |c| c.events.len() == 8)
        .await?;
    assert_eq!(late.events[7]["seq"], 9);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_limited_in_size_rate_and_rights() -> anyhow::Result<()> {
    let dir = tempdir();
    let secret = b"the events test secret: 32 bytes or more";
    let config = Config {
        max_event_bytes: 256,
        events_per_sec: 5,
        event_burst: 5,
        ..Config::default()
    };
    let tandem = Tandem::builder()
        .store(Arc::new(SledStore::open(dir.path())?))
        .authorizer(Arc::new(JwtAuthorizer::hs256(secret)?))
        .config(config)
        .build()?;
    let server = TestServer::serve(tandem).await?;
    let token = |rights: &[&str]| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({ "exp": unix_now() + 3600, "docs": { "room": rights } }),
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .expect("sign")
    };
    let url = |rights: &[&str]| format!("{}&token={}", events_url(&server, "room"), token(rights));
    let mut listener = SyncClient::connect_synced(&url(&["read"])).await?;

    // Without the events right: dropped and told so; the listener sees nothing.
    let mut viewer = SyncClient::connect_synced(&url(&["read"])).await?;
    chat(&mut viewer, "not allowed").await?;
    viewer
        .pump_until("permission denied", |c| !c.denied.is_empty())
        .await?;
    // With it (`events`, or `write` which implies it): delivered.
    let mut talker = SyncClient::connect_synced(&url(&["events"])).await?;
    chat(&mut talker, "allowed").await?;
    listener
        .pump_until("the allowed event", |c| events(c).len() == 1)
        .await?;
    assert_eq!(events(&listener)[0]["data"]["text"], "allowed");

    // Too large: closed with 1008.
    let mut big = SyncClient::connect_synced(&url(&["write"])).await?;
    big.send_event(json!({ "type": "chat", "data": "x".repeat(300) }))
        .await?;
    assert_eq!(big.closed().await?, Closed::Code(1008));

    // Too fast: the sixth within the burst closes with 1008.
    let mut fast = SyncClient::connect_synced(&url(&["write"])).await?;
    for i in 0..20 {
        if chat(&mut fast, &format!("{i}")).await.is_err() {
            break;
        }
        fast.drain().await?;
        if fast.closed.is_some() {
            break;
        }
    }
    assert_eq!(fast.closed().await?, Closed::Code(1008));
    // A malformed event is a protocol error like any other.
    let mut garbage = SyncClient::connect_synced(&url(&["write"])).await?;
    let mut frame = vec![5];
    tandem_core::lib0::write_var_bytes(&mut frame, b"{\"type\":42}");
    garbage.send_raw(frame).await?;
    assert_eq!(garbage.closed().await?, Closed::Code(1002));

    // The listener is unaffected and saw only what was allowed (the fast peer's first five).
    chat(&mut talker, "still here").await?;
    listener
        .pump_until("the last event", |c| {
            events(c)
                .last()
                .is_some_and(|e| e["data"]["text"] == "still here")
        })
        .await?;
    let texts: Vec<String> = events(&listener)
        .iter()
        .map(|e| e["data"]["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(!texts.iter().any(|t| t == "not allowed"));
    assert_eq!(texts.len(), 1 + 5 + 1, "{texts:?}");
    server.stop().await
}
