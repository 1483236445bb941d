//! Server-Sent Events over real TCP: resuming with `Last-Event-ID` (exactly the missing
//! changes), multiplexed streams, pings, errors, and a client that edits with only HTTP (SSE to
//! read, POST to write) converging with a y-websocket client across a server restart.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use tandem_server::{ApiConfig, Config, Tandem};
use tandem_tests::{SseClient, SyncClient, TestServer};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, TransactionMut, Update, WriteTxn};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

async fn start(dir: &Path) -> TestServer {
    TestServer::start(dir, Config::default())
        .await
        .expect("server")
}

fn events_url(server: &TestServer, doc: &str) -> String {
    format!("http://{}/docs/{doc}/events", server.addr)
}

fn apply_base64(doc: &Doc, data: &str) -> anyhow::Result<Update> {
    let bytes = STANDARD.decode(data)?;
    let update = Update::decode_v1(&bytes)?;
    doc.transact_mut()
        .apply_update(Update::decode_v1(&bytes)?)?;
    Ok(update)
}

fn text_of(doc: &Doc) -> String {
    let text = doc.get_or_insert_text("text");
    text.get_string(&doc.transact())
}

async fn push(client: &mut SyncClient, what: String) -> anyhow::Result<()> {
    client
        .edit(move |txn| txn.get_or_insert_text("text").push(txn, &what))
        .await
}

#[tokio::test]
async fn a_resumed_stream_gets_exactly_the_missing_changes() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path()).await;
    let url = server.url("resume");
    let mut writer = SyncClient::connect_synced(&url).await?;
    push(&mut writer, "start;".into()).await?;
    writer.await_server(&url).await?;

    let mirror = Doc::new();
    let mut stream = SseClient::connect(&events_url(&server, "resume"), &[]).await?;
    let first = stream.next_of("update").await?;
    apply_base64(&mirror, &first.data)?;
    let last_id = first.id.context("every event has an id")?;
    assert_eq!(text_of(&mirror), "start;");
    drop(stream);

    for i in 0..100 {
        push(&mut writer, format!("{i};")).await?;
    }
    writer.await_server(&url).await?;

    let before = mirror.transact().state_vector();
    let mut resumed = SseClient::connect(
        &events_url(&server, "resume"),
        &[("last-event-id", &last_id)],
    )
    .await?;
    let catch_up = resumed.next_of("update").await?;
    let update = apply_base64(&mirror, &catch_up.data)?;
    // Nothing the stream had sent before comes again…
    for (client, clock) in update.state_vector_lower().iter() {
        assert!(
            *clock >= before.get(client),
            "client {client} repeated from {clock}"
        );
    }
    // … and nothing is missing.
    assert_eq!(text_of(&mirror), writer.text("text"));
    assert_eq!(mirror.transact().state_vector(), writer.state_vector());
    assert!(
        resumed
            .next_within(Duration::from_millis(300))
            .await?
            .filter(|event| event.event == "update")
            .is_none(),
        "an update was sent twice"
    );
    // Live changes follow, one event each.
    push(&mut writer, "live".into()).await?;
    let live = resumed.next_of("update").await?;
    apply_base64(&mirror, &live.data)?;
    assert_eq!(text_of(&mirror), writer.text("text"));
    assert_ne!(live.id, catch_up.id);

    // A stream resumed with nothing new sends no update at all.
    let mut idle = SseClient::connect(
        &events_url(&server, "resume"),
        &[("last-event-id", live.id.as_deref().context("id")?)],
    )
    .await?;
    assert!(idle
        .next_within(Duration::from_millis(300))
        .await?
        .filter(|event| event.event == "update")
        .is_none());
    server.stop().await
}

#[tokio::test]
async fn one_stream_follows_several_documents() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path()).await;
    let mut a = SyncClient::connect_synced(&server.url("multi/a")).await?;
    let mut b = SyncClient::connect_synced(&server.url("multi%2Fb")).await?;
    push(&mut a, "in a".into()).await?;
    push(&mut b, "in b".into()).await?;
    a.await_server(&server.url("multi/a")).await?;
    b.await_server(&server.url("multi%2Fb")).await?;

    let url = format!("http://{}/events?doc=multi/a&doc=multi%2Fb", server.addr);
    let mut stream = SseClient::connect(&url, &[]).await?;
    let (doc_a, doc_b) = (Doc::new(), Doc::new());
    let mut last_id = String::new();
    for _ in 0..2 {
        let event = stream.next_of("update").await?;
        let data: Value = serde_json::from_str(&event.data)?;
        let target = match data["doc"].as_str() {
            Some("multi/a") => &doc_a,
            Some("multi/b") => &doc_b,
            other => anyhow::bail!("unexpected document {other:?}"),
        };
        apply_base64(target, data["update"].as_str().context("update")?)?;
        last_id = event.id.context("id")?;
    }
    assert_eq!(
        (text_of(&doc_a), text_of(&doc_b)),
        ("in a".into(), "in b".into())
    );
    assert_eq!(
        last_id.split('~').count(),
        2,
        "one cursor per document: {last_id}"
    );
    drop(stream);

    // Only b changes while the stream is away: only b catches up.
    push(&mut b, " and more".into()).await?;
    b.await_server(&server.url("multi%2Fb")).await?;
    let mut resumed = SseClient::connect(&url, &[("last-event-id", &last_id)]).await?;
    let event = resumed.next_of("update").await?;
    let data: Value = serde_json::from_str(&event.data)?;
    assert_eq!(data["doc"], "multi/b");
    apply_base64(&doc_b, data["update"].as_str().context("update")?)?;
    assert_eq!(text_of(&doc_b), "in b and more");
    assert!(resumed
        .next_within(Duration::from_millis(300))
        .await?
        .filter(|event| event.event == "update")
        .is_none());

    // JSON format names the document too.
    let mut as_json = SseClient::connect(&format!("{url}&format=json"), &[]).await?;
    let event = as_json.next_of("json").await?;
    let data: Value = serde_json::from_str(&event.data)?;
    assert!(
        data["doc"] == "multi/a" || data["doc"] == "multi/b",
        "{data}"
    );
    assert!(data["json"]["text"].is_string(), "{data}");
    server.stop().await
}

#[tokio::test]
async fn streams_ping_and_refuse_bad_requests() -> anyhow::Result<()> {
    let dir = tempdir();
    let tandem = Tandem::builder()
        .store(std::sync::Arc::new(tandem_core::SledStore::open(
            dir.path(),
        )?))
        .api_config(ApiConfig {
            sse_ping_interval: Duration::from_millis(50),
            max_stream_docs: 2,
            ..ApiConfig::default()
        })
        .build()?;
    let server = TestServer::serve(tandem).await?;
    let mut stream = SseClient::connect(&events_url(&server, "quiet"), &[]).await?;
    assert!(stream
        .next_within(Duration::from_millis(400))
        .await?
        .is_none());
    assert!(stream.comments >= 2, "{} pings", stream.comments);

    let client = reqwest::Client::new();
    for (path, code) in [
        ("/events", "missing_document"),
        ("/events?doc=a&doc=b&doc=c", "too_many_documents"),
        ("/docs/a/events?format=xml", "invalid_format"),
        ("/docs/a/events?sv=%%%", "invalid_state_vector"),
    ] {
        let response = client
            .get(format!("http://{}{path}", server.addr))
            .send()
            .await?;
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await?;
        assert_eq!(body["code"], code, "{path}");
    }
    // A garbled Last-Event-ID starts the stream afresh rather than failing it.
    let mut writer = SyncClient::connect_synced(&server.url("quiet")).await?;
    push(&mut writer, "hello".into()).await?;
    writer.await_server(&server.url("quiet")).await?;
    let mut fresh = SseClient::connect(
        &events_url(&server, "quiet"),
        &[("last-event-id", "not a cursor")],
    )
    .await?;
    let mirror = Doc::new();
    apply_base64(&mirror, &fresh.next_of("update").await?.data)?;
    assert_eq!(text_of(&mirror), "hello");
    // The stream ends when the server shuts down.
    let stop = server.stop();
    let (stopped, ended) = tokio::join!(stop, fresh.ended());
    stopped?;
    ended
}

/// A client with only an HTTP library: it reads with SSE and writes with POST.
struct HttpOnlyClient {
    doc: Doc,
    http: reqwest::Client,
    base: String,
    stream: Option<SseClient>,
}

impl HttpOnlyClient {
    fn new(server: &TestServer) -> Self {
        Self {
            doc: Doc::new(),
            http: reqwest::Client::new(),
            base: format!("http://{}", server.addr),
            stream: None,
        }
    }

    /// (Re)connects: subscribes from its own state vector (so the server sends exactly what it
    /// lacks), then sends the server what the server lacks.
    async fn connect(&mut self, server: &TestServer) -> anyhow::Result<()> {
        self.base = format!("http://{}", server.addr);
        let sv = URL_SAFE_NO_PAD.encode(self.doc.transact().state_vector().encode_v1());
        self.stream = Some(
            SseClient::connect(&format!("{}/docs/transport/events?sv={sv}", self.base), &[])
                .await?,
        );
        let response = self
            .http
            .get(format!("{}/docs/transport/state-vector", self.base))
            .send()
            .await?;
        let theirs = match response.status().as_u16() {
            200 => StateVector::decode_v1(&response.bytes().await?)?,
            404 => StateVector::default(),
            other => anyhow::bail!("state vector: {other}"),
        };
        let missing = self.doc.transact().encode_state_as_update_v1(&theirs);
        self.post(missing).await
    }

    async fn post(&self, update: Vec<u8>) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/docs/transport/update", self.base))
            .body(update)
            .send()
            .await?;
        anyhow::ensure!(response.status() == 204, "POST: {}", response.status());
        Ok(())
    }

    /// Edits locally and, when connected, posts the change.
    async fn edit(&mut self, change: impl FnOnce(&mut TransactionMut)) -> anyhow::Result<()> {
        let update = {
            let mut txn = self.doc.transact_mut();
            change(&mut txn);
            txn.commit();
            txn.encode_update_v1()
        };
        if self.stream.is_some() {
            self.post(update).await?;
        }
        Ok(())
    }

    /// Applies streamed updates until `done` holds.
    async fn pump_until(&mut self, done: impl Fn(&Doc) -> bool) -> anyhow::Result<()> {
        while !done(&self.doc) {
            let stream = self.stream.as_mut().context("not connected")?;
            let event = stream.next_of("update").await?;
            apply_base64(&self.doc, &event.data)?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn an_http_only_client_converges_with_a_websocket_client_across_a_restart(
) -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path()).await;
    let url = server.url("transport");
    let mut ws = SyncClient::connect_synced(&url).await?;
    let mut http = HttpOnlyClient::new(&server);
    http.connect(&server).await?;

    for i in 0..20 {
        push(&mut ws, format!("w{i};")).await?;
        http.edit(|txn| {
            txn.get_or_insert_text("text")
                .insert(txn, 0, &format!("h{i};"))
        })
        .await?;
    }
    let target = ws.state_vector();
    http.pump_until(|doc| doc.transact().state_vector() >= target)
        .await?;
    let http_sv = http.doc.transact().state_vector();
    ws.pump_until("the http client's edits", |c| c.state_vector() >= http_sv)
        .await?;
    assert_eq!(text_of(&http.doc), ws.text("text"));
    assert_eq!(text_of(&http.doc).len(), 20 * 3 * 2 + 10 + 10);

    // The server restarts; both clients edit while it is away.
    let ws_state = ws
        .doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    ws.close().await?;
    server.stop().await?;
    http.stream = None;
    http.edit(|txn| txn.get_or_insert_text("text").push(txn, "offline http;"))
        .await?;
    let ws_doc = Doc::new();
    ws_doc
        .transact_mut()
        .apply_update(Update::decode_v1(&ws_state)?)?;
    {
        let text = ws_doc.get_or_insert_text("text");
        let mut txn = ws_doc.transact_mut();
        text.insert(&mut txn, 0, "offline ws;");
    }

    let server = start(dir.path()).await;
    let url = server.url("transport");
    let mut ws = SyncClient::connect_with(&url, ws_doc).await?;
    ws.sync().await?;
    http.connect(&server).await?;
    ws.await_server(&url).await?;
    let target = ws.state_vector();
    http.pump_until(|doc| doc.transact().state_vector() >= target)
        .await?;
    let http_sv = http.doc.transact().state_vector();
    ws.pump_until("the http client's offline edit", |c| {
        c.state_vector() >= http_sv
    })
    .await?;
    let text = text_of(&http.doc);
    assert_eq!(text, ws.text("text"));
    assert!(
        text.contains("offline http;") && text.contains("offline ws;"),
        "{text}"
    );
    let json: Value = reqwest::get(format!("http://{}/docs/transport/json", server.addr))
        .await?
        .json()
        .await?;
    assert_eq!(json, json!({ "text": text }));
    server.stop().await
}

/// Posts a custom event over HTTP; returns its sequence number.
async fn post_event(
    server: &TestServer,
    doc: &str,
    kind: &str,
    data: Value,
) -> anyhow::Result<u64> {
    let response = reqwest::Client::new()
        .post(format!("http://{}/docs/{doc}/events", server.addr))
        .json(&json!({ "type": kind, "data": data }))
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "POST event: {}",
        response.status()
    );
    let body: Value = response.json().await?;
    body["seq"].as_u64().context("seq")
}

/// The custom events (not acks or gaps) a y-websocket client received.
fn seqs_of(client: &SyncClient) -> Vec<u64> {
    client
        .events
        .iter()
        .filter_map(|event| event.get("seq").and_then(Value::as_u64))
        .chain(
            client
                .events
                .iter()
                .filter_map(|event| event.get("ack").and_then(Value::as_u64)),
        )
        .collect()
}

/// Every event of a stream until none comes for `quiet`.
async fn until_quiet(
    stream: &mut SseClient,
    quiet: Duration,
) -> anyhow::Result<Vec<tandem_tests::SseEvent>> {
    let mut events = Vec::new();
    while let Some(event) = stream.next_within(quiet).await? {
        events.push(event);
    }
    Ok(events)
}

fn event_seq(event: &tandem_tests::SseEvent) -> anyhow::Result<u64> {
    let data: Value = serde_json::from_str(&event.data)?;
    data["seq"].as_u64().context("an event has a seq")
}

#[tokio::test]
async fn a_resumed_stream_gets_exactly_the_missing_changes_and_events() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path()).await;
    let url = server.url("resume-events");
    let events_url_ws = format!("{url}?events=1");
    let mut writer = SyncClient::connect_synced(&events_url_ws).await?;
    push(&mut writer, "start;".into()).await?;
    writer.await_server(&url).await?;
    // Events from before the stream began are not replayed to a fresh stream.
    for i in 0..3 {
        post_event(&server, "resume-events", "old", json!(i)).await?;
    }

    let mirror = Doc::new();
    let mut stream = SseClient::connect(&events_url(&server, "resume-events"), &[]).await?;
    let first = stream.next_of("update").await?;
    apply_base64(&mirror, &first.data)?;
    assert!(
        first.id.as_deref().context("id")?.ends_with(".3"),
        "the cursor starts at the newest event: {first:?}"
    );
    // A live event, with its sequence number in the cursor.
    assert_eq!(
        post_event(&server, "resume-events", "live", json!("before")).await?,
        4
    );
    let live = stream.next().await?;
    assert_eq!(live.event, "event", "{live:?}");
    let data: Value = serde_json::from_str(&live.data)?;
    assert_eq!(
        (
            data["seq"].as_u64(),
            data["type"].as_str(),
            data["from"].as_str()
        ),
        (Some(4), Some("live"), Some("http"))
    );
    let last_id = live.id.context("every event has an id")?;
    assert!(last_id.ends_with(".4"), "{last_id}");
    drop(stream);

    // Away: 100 changes and 10 events, half of them from the y-websocket peer.
    for i in 0..100 {
        push(&mut writer, format!("{i};")).await?;
        if i % 10 == 9 {
            let n = i / 10;
            if n % 2 == 0 {
                writer
                    .send_event(json!({ "type": "missed", "data": n }))
                    .await?;
            } else {
                post_event(&server, "resume-events", "missed", json!(n)).await?;
            }
        }
    }
    writer.await_server(&url).await?;
    writer
        .pump_until("every event stamped", |c| {
            let seen = seqs_of(c);
            (5..=14).all(|seq| seen.contains(&seq))
        })
        .await?;

    let before = mirror.transact().state_vector();
    let mut resumed = SseClient::connect(
        &events_url(&server, "resume-events"),
        &[("last-event-id", &last_id)],
    )
    .await?;
    let received = until_quiet(&mut resumed, Duration::from_millis(500)).await?;
    let updates: Vec<_> = received.iter().filter(|e| e.event == "update").collect();
    let events: Vec<_> = received.iter().filter(|e| e.event == "event").collect();
    assert_eq!(updates.len(), 1, "one catch-up: {received:?}");
    assert!(
        received
            .iter()
            .all(|e| e.event == "update" || e.event == "event"),
        "{received:?}"
    );
    let update = apply_base64(&mirror, &updates[0].data)?;
    for (client, clock) in update.state_vector_lower().iter() {
        assert!(
            *clock >= before.get(client),
            "client {client} repeated from {clock}"
        );
    }
    assert_eq!(text_of(&mirror), writer.text("text"));
    assert_eq!(mirror.transact().state_vector(), writer.state_vector());
    // Exactly the ten missed events, in order, each once.
    let seqs = events
        .iter()
        .map(|e| event_seq(e))
        .collect::<anyhow::Result<Vec<_>>>()?;
    assert_eq!(seqs, (5..=14).collect::<Vec<_>>());
    for (n, event) in events.iter().enumerate() {
        let data: Value = serde_json::from_str(&event.data)?;
        assert_eq!(
            (data["type"].as_str(), data["data"].as_u64()),
            (Some("missed"), Some(n as u64))
        );
        let from = data["from"].as_str().context("from")?;
        assert_eq!(from == "http", n % 2 == 1, "{from}");
    }
    let resumed_id = received.last().and_then(|e| e.id.clone()).context("id")?;
    assert!(resumed_id.ends_with(".14"), "{resumed_id}");

    // Live events and changes follow, once each.
    writer.send_event(json!({ "type": "after" })).await?;
    let live = resumed.next_of("event").await?;
    assert_eq!(event_seq(&live)?, 15);
    push(&mut writer, "live".into()).await?;
    let change = resumed.next_of("update").await?;
    apply_base64(&mirror, &change.data)?;
    assert_eq!(text_of(&mirror), writer.text("text"));
    assert!(until_quiet(&mut resumed, Duration::from_millis(300))
        .await?
        .is_empty());
    drop(resumed);

    // From the cursor before those two, a stream gets just them…
    let mut again = SseClient::connect(
        &events_url(&server, "resume-events"),
        &[("last-event-id", resumed_id.as_str())],
    )
    .await?;
    let received = until_quiet(&mut again, Duration::from_millis(300)).await?;
    let kinds: Vec<&str> = received.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["update", "event"], "{received:?}");
    assert_eq!(event_seq(&received[1])?, 15);
    // … and from the newest cursor, nothing.
    let newest = change.id.context("id")?;
    assert!(newest.ends_with(".15"), "{newest}");
    let mut idle = SseClient::connect(
        &events_url(&server, "resume-events"),
        &[("last-event-id", newest.as_str())],
    )
    .await?;
    assert!(until_quiet(&mut idle, Duration::from_millis(300))
        .await?
        .is_empty());
    server.stop().await
}

#[tokio::test]
async fn a_stream_resumed_past_the_history_gets_a_gap_first() -> anyhow::Result<()> {
    let dir = tempdir();
    let mut config = Config::default();
    config.doc.event_history = 5;
    let server = TestServer::start(dir.path(), config).await?;
    let mut stream = SseClient::connect(&events_url(&server, "short"), &[]).await?;
    // An empty document sends no catch-up: the first event is the first id.
    assert_eq!(post_event(&server, "short", "n", json!(1)).await?, 1);
    let first = stream.next_of("event").await?;
    let cursor = first.id.context("id")?;
    drop(stream);
    for n in 2..=13 {
        post_event(&server, "short", "n", json!(n)).await?;
    }

    // The history holds 9 to 13: events 2 to 8 are reported missing, then the rest come.
    let mut resumed =
        SseClient::connect(&events_url(&server, "short"), &[("last-event-id", &cursor)]).await?;
    let received = until_quiet(&mut resumed, Duration::from_millis(300)).await?;
    assert_eq!(received[0].event, "gap", "{received:?}");
    let gap: Value = serde_json::from_str(&received[0].data)?;
    assert_eq!(gap, json!({ "from": 2, "to": 8 }));
    let gap_id = received[0].id.clone().context("id")?;
    assert!(gap_id.ends_with(".8"), "{gap_id}");
    let seqs = received[1..]
        .iter()
        .map(|event| {
            anyhow::ensure!(event.event == "event", "{event:?}");
            event_seq(event)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    assert_eq!(seqs, [9, 10, 11, 12, 13]);

    // From the gap's id, the history alone; no gap again.
    let mut after_gap =
        SseClient::connect(&events_url(&server, "short"), &[("last-event-id", &gap_id)]).await?;
    let received = until_quiet(&mut after_gap, Duration::from_millis(300)).await?;
    let seqs = received
        .iter()
        .map(event_seq)
        .collect::<anyhow::Result<Vec<_>>>()?;
    assert_eq!(seqs, [9, 10, 11, 12, 13]);

    // A fresh stream starts at the newest event; the history survives a restart.
    server.stop().await?;
    let mut config = Config::default();
    config.doc.event_history = 5;
    let server = TestServer::start(dir.path(), config).await?;
    let mut fresh = SseClient::connect(&events_url(&server, "short"), &[]).await?;
    assert!(until_quiet(&mut fresh, Duration::from_millis(300))
        .await?
        .is_empty());
    assert_eq!(post_event(&server, "short", "n", json!(14)).await?, 14);
    assert_eq!(event_seq(&fresh.next_of("event").await?)?, 14);
    let mut resumed =
        SseClient::connect(&events_url(&server, "short"), &[("last-event-id", &gap_id)]).await?;
    let received = until_quiet(&mut resumed, Duration::from_millis(300)).await?;
    assert_eq!(received[0].event, "gap", "{received:?}");
    let gap: Value = serde_json::from_str(&received[0].data)?;
    assert_eq!(
        gap,
        json!({ "from": 9, "to": 9 }),
        "the history is five long"
    );
    let seqs = received[1..]
        .iter()
        .map(event_seq)
        .collect::<anyhow::Result<Vec<_>>>()?;
    assert_eq!(seqs, [10, 11, 12, 13, 14]);
    server.stop().await
}

#[tokio::test]
async fn multiplexed_streams_resume_events_per_document() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path()).await;
    post_event(&server, "mux/a", "x", json!("a1")).await?;
    let url = format!("http://{}/events?doc=mux/a&doc=mux%2Fb", server.addr);
    let mut stream = SseClient::connect(&url, &[]).await?;
    post_event(&server, "mux/b", "x", json!("b1")).await?;
    let event = stream.next_of("event").await?;
    let data: Value = serde_json::from_str(&event.data)?;
    assert_eq!(
        (
            data["doc"].as_str(),
            data["seq"].as_u64(),
            data["data"].as_str()
        ),
        (Some("mux/b"), Some(1), Some("b1"))
    );
    let cursor = event.id.context("id")?;
    let parts: Vec<&str> = cursor.split('~').collect();
    assert!(
        parts[0].ends_with(".1") && parts[1].ends_with(".1"),
        "{cursor}"
    );
    drop(stream);

    post_event(&server, "mux/a", "x", json!("a2")).await?;
    post_event(&server, "mux/b", "x", json!("b2")).await?;
    post_event(&server, "mux/a", "x", json!("a3")).await?;
    let mut resumed = SseClient::connect(&url, &[("last-event-id", &cursor)]).await?;
    let received = until_quiet(&mut resumed, Duration::from_millis(300)).await?;
    let mut got: Vec<(String, String)> = received
        .iter()
        .map(|event| {
            anyhow::ensure!(event.event == "event", "{event:?}");
            let data: Value = serde_json::from_str(&event.data)?;
            Ok((
                data["doc"].as_str().context("doc")?.to_owned(),
                data["data"].as_str().context("data")?.to_owned(),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    got.sort();
    assert_eq!(
        got,
        [("mux/a", "a2"), ("mux/a", "a3"), ("mux/b", "b2")]
            .map(|(doc, data)| (doc.to_owned(), data.to_owned()))
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_flowing_across_reconnects_are_neither_lost_nor_repeated() -> anyhow::Result<()> {
    let dir = tempdir();
    let mut config = Config {
        events_per_sec: 0,
        ..Config::default()
    };
    config.doc.event_history = 1000;
    let server = TestServer::start(dir.path(), config).await?;
    let mut sender =
        SyncClient::connect_synced(&format!("{}?events=1", server.url("flow"))).await?;
    push(&mut sender, "content".into()).await?;
    sender.await_server(&server.url("flow")).await?;
    let mut stream = SseClient::connect(&events_url(&server, "flow"), &[]).await?;
    let mut cursor = stream.next_of("update").await?.id.context("id")?;

    const TOTAL: u64 = 400;
    let addr = server.addr;
    let posting = tokio::spawn(async move {
        for n in 0..TOTAL {
            if n % 2 == 0 {
                sender
                    .send_event(json!({ "type": "flow", "data": n }))
                    .await?;
                tokio::task::yield_now().await;
            } else {
                let response = reqwest::Client::new()
                    .post(format!("http://{addr}/docs/flow/events"))
                    .json(&json!({ "type": "flow", "data": n }))
                    .send()
                    .await?;
                anyhow::ensure!(response.status() == 200);
            }
        }
        anyhow::Ok(sender)
    });
    // Reconnect every few events while they keep coming.
    let mut seen = Vec::new();
    let mut reconnects = 0;
    while seen.last() != Some(&TOTAL) {
        for _ in 0..(7 + reconnects % 5) {
            let event = stream.next().await?;
            anyhow::ensure!(event.event == "event", "{event:?}");
            seen.push(event_seq(&event)?);
            cursor = event.id.context("id")?;
            if seen.last() == Some(&TOTAL) {
                break;
            }
        }
        drop(stream);
        reconnects += 1;
        stream =
            SseClient::connect(&events_url(&server, "flow"), &[("last-event-id", &cursor)]).await?;
    }
    posting.await??;
    assert_eq!(
        seen,
        (1..=TOTAL).collect::<Vec<_>>(),
        "after {reconnects} reconnects"
    );
    assert!(until_quiet(&mut stream, Duration::from_millis(300))
        .await?
        .is_empty());
    server.stop().await
}
