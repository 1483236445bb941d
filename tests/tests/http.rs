//! The HTTP API over real TCP: REST reads and writes (names with `/`, `%2F`, unicode), errors
//! with their codes, limits, rights, presence over HTTP, listing and deletion, status, metrics
//! and readiness, and the OpenAPI document against the router.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use tandem_core::auth::jwt::unix_now;
use tandem_core::auth::{Authorizer, JwtAuthorizer};
use tandem_core::SledStore;
use tandem_server::{Config, Tandem, CLOSE_DOCUMENT_DELETED};
use tandem_tests::{wait_until, Closed, SseClient, SyncClient, TestServer};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, Map, ReadTxn, StateVector, Text, Transact, Update, WriteTxn};

const SECRET: &[u8] = b"the http test secret, longer than 32 bytes";

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

async fn start(dir: &Path, config: Config) -> TestServer {
    TestServer::start(dir, config).await.expect("server")
}

async fn start_with_auth(dir: &Path, authorizer: impl Authorizer, config: Config) -> TestServer {
    let tandem = Tandem::builder()
        .store(Arc::new(SledStore::open(dir).expect("store")))
        .authorizer(Arc::new(authorizer))
        .config(config)
        .build()
        .expect("valid configuration");
    TestServer::serve(tandem).await.expect("server")
}

fn token(docs: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": "tester", "exp": unix_now() + 3600, "docs": docs }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .expect("sign")
}

fn base(server: &TestServer) -> String {
    format!("http://{}", server.addr)
}

/// An update inserting `what` at the start of the root text `text` of a fresh client.
fn text_update(what: &str) -> Vec<u8> {
    let doc = Doc::new();
    let text = doc.get_or_insert_text("text");
    let mut txn = doc.transact_mut();
    text.insert(&mut txn, 0, what);
    txn.commit();
    txn.encode_update_v1()
}

struct Http {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Http {
    fn new(server: &TestServer) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: base(server),
            token: None,
        }
    }

    fn with_token(server: &TestServer, token: String) -> Self {
        Self {
            token: Some(token),
            ..Self::new(server)
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self.request(reqwest::Method::GET, path).send().await?)
    }

    async fn post(&self, path: &str, body: Vec<u8>) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .request(reqwest::Method::POST, path)
            .body(body)
            .send()
            .await?)
    }

    async fn delete(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self.request(reqwest::Method::DELETE, path).send().await?)
    }
}

/// Asserts a JSON error with its status and code.
async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> anyhow::Result<()> {
    let got = response.status().as_u16();
    let body: Value = response.json().await.context("error body is json")?;
    anyhow::ensure!(
        got == status && body["code"] == code,
        "expected {status} {code}, got {got} {body}"
    );
    anyhow::ensure!(body["message"].is_string(), "no message in {body}");
    Ok(())
}

#[tokio::test]
async fn documents_are_read_and_written_over_rest() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path(), Config::default()).await;
    let http = Http::new(&server);

    for (path, name) in [
        ("notes/2024/plan", "notes/2024/plan"),
        ("a%2Fb%2Fc", "a/b/c"),
        ("%C3%A9t%C3%A9/%E3%83%89%E3%82%AD", "été/ドキ"),
        ("x%2Fjson", "x/json"),
    ] {
        let response = http
            .post(&format!("/docs/{path}/update"), text_update(name))
            .await?;
        assert_eq!(response.status(), 204, "POST {path}");
        let json: Value = http
            .get(&format!("/docs/{path}/json"))
            .await?
            .json()
            .await?;
        assert_eq!(json, json!({ "text": name }), "json of {path}");
        let info: Value = http.get(&format!("/docs/{path}")).await?.json().await?;
        assert_eq!(info["name"], name);
        assert!(info["size"].as_u64().is_some_and(|size| size > 0), "{info}");
        assert!(info["lastChange"].is_string(), "{info}");
    }
    // `a/b/c` written with slashes is the same document.
    let json: Value = http.get("/docs/a/b/c/json").await?.json().await?;
    assert_eq!(json, json!({ "text": "a/b/c" }));

    // The whole document, what a state vector lacks, and the state vector.
    let whole = http.get("/docs/notes/2024/plan/update").await?;
    assert_eq!(whole.headers()["content-type"], "application/octet-stream");
    let whole = whole.bytes().await?;
    let mine = Doc::new();
    mine.transact_mut()
        .apply_update(Update::decode_v1(&whole)?)?;
    let sv = mine.transact().state_vector();
    let served_sv = http
        .get("/docs/notes/2024/plan/state-vector")
        .await?
        .bytes()
        .await?;
    assert_eq!(StateVector::decode_v1(&served_sv)?, sv);
    http.post("/docs/notes/2024/plan/update", text_update("more "))
        .await?;
    let diff = http
        .get(&format!(
            "/docs/notes/2024/plan/update?sv={}",
            STANDARD.encode(sv.encode_v1())
        ))
        .await?;
    assert_eq!(diff.status(), 200);
    let diff = Update::decode_v1(&diff.bytes().await?)?;
    assert!(
        diff.state_vector_lower()
            .iter()
            .all(|(client, clock)| *clock >= sv.get(client)),
        "the diff repeats what the state vector has"
    );
    mine.transact_mut().apply_update(diff)?;
    let text = mine.get_or_insert_text("text");
    assert_eq!(
        text.get_string(&mine.transact()).len(),
        "more notes/2024/plan".len()
    );

    // Errors, each with its code.
    expect_error(http.get("/docs/nothing-here/json").await?, 404, "not_found").await?;
    expect_error(
        http.get("/docs/nothing-here/update").await?,
        404,
        "not_found",
    )
    .await?;
    expect_error(
        http.get("/docs/nothing-here/state-vector").await?,
        404,
        "not_found",
    )
    .await?;
    expect_error(http.get("/docs/nothing-here").await?, 404, "not_found").await?;
    expect_error(
        http.get("/docs/nothing-here/presence").await?,
        404,
        "not_found",
    )
    .await?;
    assert!(
        !server.tandem.registry().is_loaded(&"nothing-here".into()),
        "reading an unknown document loaded it"
    );
    expect_error(
        http.get("/docs/notes/2024/plan/update?sv=***").await?,
        400,
        "invalid_state_vector",
    )
    .await?;
    expect_error(
        http.get("/docs/notes/2024/plan/update?sv=_____w").await?,
        400,
        "invalid_state_vector",
    )
    .await?;
    expect_error(
        http.post("/docs/notes/2024/plan/update", b"\xff\x01garbage".to_vec())
            .await?,
        400,
        "invalid_update",
    )
    .await?;
    expect_error(
        http.post("/docs/notes/2024/plan/update", Vec::new())
            .await?,
        400,
        "invalid_update",
    )
    .await?;
    expect_error(
        http.request(reqwest::Method::PUT, "/docs/a/json")
            .send()
            .await?,
        405,
        "method_not_allowed",
    )
    .await?;
    // Two inserts at the start by different clients: Yjs orders them by client id, so the
    // expected text is what the client that applied both has.
    let json: Value = http.get("/docs/notes/2024/plan/json").await?.json().await?;
    assert_eq!(
        json,
        json!({ "text": text.get_string(&mine.transact()) }),
        "a refusal changed it"
    );
    server.stop().await
}

#[tokio::test]
async fn xml_fragments_read_as_nodes() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path(), Config::default()).await;
    let http = Http::new(&server);
    let doc = Doc::new();
    let fragment = doc.get_or_insert_xml_fragment("prosemirror");
    let update = {
        use yrs::{Xml, XmlElementPrelim, XmlFragment, XmlTextPrelim};
        let mut txn = doc.transact_mut();
        let paragraph = fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        paragraph.insert_attribute(&mut txn, "align", "left");
        let text = paragraph.push_back(&mut txn, XmlTextPrelim::new("hello "));
        text.push(&mut txn, "world");
        let bold = yrs::types::Attrs::from([(Arc::from("bold"), yrs::Any::Bool(true))]);
        text.format(&mut txn, 6, 5, bold);
        txn.commit();
        txn.encode_update_v1()
    };
    assert_eq!(http.post("/docs/rich/update", update).await?.status(), 204);
    let json: Value = http.get("/docs/rich/json").await?.json().await?;
    assert_eq!(
        json,
        json!({ "prosemirror": { "children": [{
            "nodeName": "paragraph",
            "attributes": { "align": "left" },
            "children": [{
                "text": "hello world",
                "delta": [
                    { "insert": "hello " },
                    { "insert": "world", "attributes": { "bold": true } },
                ],
            }],
        }]}})
    );
    server.stop().await
}

#[tokio::test]
async fn http_and_websocket_clients_see_each_other() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path(), Config::default()).await;
    let http = Http::new(&server);
    let mut ws = SyncClient::connect_synced(&server.url("shared/doc")).await?;

    // An HTTP write appears in the y-websocket client.
    http.post("/docs/shared/doc/update", text_update("from http"))
        .await?;
    ws.pump_until("the http write", |c| c.text("text") == "from http")
        .await?;

    // A y-websocket edit appears in SSE (binary and JSON) and in /json.
    let url = format!("{}/docs/shared/doc/events", base(&server));
    let mut binary = SseClient::connect(&url, &[]).await?;
    let mut as_json = SseClient::connect(&format!("{url}?format=json"), &[]).await?;
    let first = binary.next_of("update").await?;
    let mirror = Doc::new();
    mirror
        .transact_mut()
        .apply_update(Update::decode_v1(&STANDARD.decode(&first.data)?)?)?;
    let first_json = as_json.next_of("json").await?;
    assert_eq!(
        serde_json::from_str::<Value>(&first_json.data)?,
        json!({ "text": "from http" })
    );
    ws.edit(|txn| {
        txn.get_or_insert_map("map").insert(txn, "k", "v");
    })
    .await?;
    let live = binary.next_of("update").await?;
    mirror
        .transact_mut()
        .apply_update(Update::decode_v1(&STANDARD.decode(&live.data)?)?)?;
    let map = mirror.get_or_insert_map("map");
    assert_eq!(
        map.get(&mirror.transact(), "k")
            .map(|v| v.to_string(&mirror.transact())),
        Some("v".to_owned())
    );
    let expected = json!({ "text": "from http", "map": { "k": "v" } });
    loop {
        let event = as_json.next_of("json").await?;
        if serde_json::from_str::<Value>(&event.data)? == expected {
            break;
        }
    }
    let json: Value = http.get("/docs/shared/doc/json").await?.json().await?;
    assert_eq!(json, expected);
    server.stop().await
}

#[tokio::test]
async fn json_streams_are_throttled() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path(), Config::default()).await;
    let http = Http::new(&server);
    http.post("/docs/busy/update", text_update("start")).await?;
    let url = format!("{}/docs/busy/events?format=json", base(&server));
    let mut stream = SseClient::connect(&url, &[]).await?;
    stream.next_of("json").await?;
    let mut ws = SyncClient::connect_synced(&server.url("busy")).await?;
    let started = std::time::Instant::now();
    for i in 0..50 {
        ws.edit(move |txn| {
            txn.get_or_insert_text("text").push(txn, &format!("{i},"));
        })
        .await?;
    }
    ws.await_server(&server.url("busy")).await?;
    let mut events = 0;
    loop {
        let event = stream.next_of("json").await?;
        events += 1;
        if event.data.contains("49,") {
            break;
        }
    }
    // 50 edits within the 250 ms windows that passed: never one event per edit.
    let windows = (started.elapsed().as_millis() / 250 + 2) as usize;
    assert!(
        events <= windows,
        "{events} json events for {windows} windows"
    );
    server.stop().await
}

#[tokio::test]
async fn limits_answer_413_and_414() -> anyhow::Result<()> {
    let dir = tempdir();
    let mut config = Config {
        max_body_bytes: 1024,
        max_doc_name_bytes: 16,
        ..Config::default()
    };
    config.doc.max_doc_bytes = 4096;
    let server = start(dir.path(), config).await;
    let http = Http::new(&server);
    // The body limit (issue 3): larger bodies are refused before they are read.
    expect_error(
        http.post("/docs/small/update", text_update(&"x".repeat(2000)))
            .await?,
        413,
        "body_too_large",
    )
    .await?;
    expect_error(
        http.post("/docs/small/presence", vec![b' '; 2000]).await?,
        413,
        "body_too_large",
    )
    .await?;
    // The document size limit: each update fits the body limit, the document does not.
    let mut refused = None;
    for i in 0..10 {
        let response = http
            .post(
                "/docs/small/update",
                text_update(&format!("{i}{}", "y".repeat(900))),
            )
            .await?;
        if response.status() != 204 {
            refused = Some(response);
            break;
        }
    }
    expect_error(
        refused.context("the document grew past its limit")?,
        413,
        "document_too_large",
    )
    .await?;
    expect_error(
        http.get(&format!("/docs/{}/json", "n".repeat(17))).await?,
        414,
        "name_too_long",
    )
    .await?;
    let metrics = http.get("/metrics").await?.text().await?;
    assert!(
        metrics.contains("tandem_refusals_total{reason=\"body_too_large\"} 2"),
        "{metrics}"
    );
    server.stop().await
}

#[tokio::test]
async fn rights_are_enforced_with_json_errors() -> anyhow::Result<()> {
    let dir = tempdir();
    let server =
        start_with_auth(dir.path(), JwtAuthorizer::hs256(SECRET)?, Config::default()).await;
    let writer = Http::with_token(&server, token(json!({ "*": ["write"] })));
    let reader = Http::with_token(&server, token(json!({ "*": ["read"] })));
    let invisible = Http::with_token(&server, token(json!({ "*": ["read", "-presence"] })));
    let notes_admin = Http::with_token(&server, token(json!({ "notes/*": ["admin"] })));
    let anonymous = Http::new(&server);

    let response = anonymous.get("/docs/notes/a/json").await?;
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    expect_error(response, 401, "unauthenticated").await?;
    let by_query = anonymous
        .get(&format!(
            "/docs/notes/a/update?token={}",
            token(json!({ "other": ["read"] }))
        ))
        .await?;
    expect_error(by_query, 403, "forbidden").await?;
    assert_eq!(
        writer
            .post("/docs/notes/a/update", text_update("hi"))
            .await?
            .status(),
        204
    );
    expect_error(
        reader
            .post("/docs/notes/a/update", text_update("no"))
            .await?,
        403,
        "forbidden",
    )
    .await?;
    assert_eq!(reader.get("/docs/notes/a/json").await?.status(), 200);
    let presence = serde_json::to_vec(&json!({ "clientId": 7, "state": { "name": "r" } }))?;
    assert_eq!(
        reader
            .post("/docs/notes/a/presence", presence.clone())
            .await?
            .status(),
        200
    );
    expect_error(
        invisible.post("/docs/notes/a/presence", presence).await?,
        403,
        "forbidden",
    )
    .await?;
    // Listing and deleting need admin.
    expect_error(writer.get("/docs").await?, 403, "forbidden").await?;
    expect_error(writer.delete("/docs/notes/a").await?, 403, "forbidden").await?;
    expect_error(notes_admin.get("/docs").await?, 403, "forbidden").await?;
    let listed: Value = notes_admin.get("/docs?prefix=notes/").await?.json().await?;
    assert_eq!(listed["documents"][0]["name"], "notes/a");
    let stream = reader.get("/events?doc=notes/a&doc=secret").await?;
    assert_eq!(
        stream.status(),
        200,
        "a stream of covered documents is allowed"
    );
    drop(stream);
    let limited = Http::with_token(&server, token(json!({ "notes/*": ["read"] })));
    expect_error(
        limited.get("/events?doc=notes/a&doc=secret").await?,
        403,
        "forbidden",
    )
    .await?;
    assert_eq!(notes_admin.delete("/docs/notes/a").await?.status(), 204);
    server.stop().await
}

#[tokio::test]
async fn presence_is_read_and_published_over_http() -> anyhow::Result<()> {
    let dir = tempdir();
    let server =
        start_with_auth(dir.path(), JwtAuthorizer::hs256(SECRET)?, Config::default()).await;
    let secret_token = token(json!({ "*": ["write"] }));
    let http = Http::with_token(&server, secret_token.clone());
    let url = format!("{}?token={secret_token}", server.url("room"));
    let mut ws = SyncClient::connect_synced(&url).await?;
    ws.set_awareness(1, Some(r#"{"user":"alice"}"#)).await?;
    let id = ws.doc.client_id().get();
    ws.pump_until("own awareness", |c| c.awareness.contains_key(&id))
        .await?;

    let presence: Value = http.get("/docs/room/presence").await?.json().await?;
    let clients = presence["clients"].as_array().context("clients")?;
    assert_eq!(clients.len(), 1, "{presence}");
    assert_eq!(clients[0]["clientId"], id);
    assert_eq!(clients[0]["sub"], "tester");
    assert_eq!(clients[0]["state"], json!({ "user": "alice" }));
    assert!(clients[0]["lastUpdated"].is_string());

    // A client without a WebSocket publishes its presence; everyone sees it, SSE included.
    let events_url = format!("{}/docs/room/events", base(&server));
    let auth = format!("Bearer {secret_token}");
    let mut stream = SseClient::connect(&events_url, &[("authorization", &auth)]).await?;
    let first = stream.next_of("presence").await?;
    assert_eq!(
        serde_json::from_str::<Value>(&first.data)?["added"][0]["clientId"],
        id
    );
    let body = serde_json::to_vec(&json!({ "clientId": 4242, "state": { "user": "bot" } }))?;
    let posted = http.post("/docs/room/presence", body).await?;
    assert_eq!(posted.status(), 200);
    let posted: Value = posted.json().await?;
    assert_eq!(posted["ttlMs"], 30_000);
    ws.pump_until("the http presence", |c| {
        c.awareness.get(&4242) == Some(&Some(r#"{"user":"bot"}"#.to_owned()))
    })
    .await?;
    let added = stream.next_of("presence").await?;
    assert_eq!(
        serde_json::from_str::<Value>(&added.data)?,
        json!({ "added": [{ "clientId": 4242, "state": { "user": "bot" } }], "updated": [], "removed": [] })
    );
    let presence: Value = http.get("/docs/room/presence").await?.json().await?;
    assert_eq!(presence["clients"].as_array().map(Vec::len), Some(2));
    // Removing it.
    let body = serde_json::to_vec(&json!({ "clientId": 4242, "state": null }))?;
    assert_eq!(http.post("/docs/room/presence", body).await?.status(), 200);
    ws.pump_until("the removal", |c| c.awareness.get(&4242) == Some(&None))
        .await?;
    let removed = stream.next_of("presence").await?;
    assert_eq!(
        serde_json::from_str::<Value>(&removed.data)?["removed"],
        json!([4242])
    );
    // Bad bodies.
    for (body, code) in [
        (b"not json".to_vec(), "invalid_json"),
        (br#"{"clientId": 1}"#.to_vec(), "invalid_json"),
        (
            br#"{"clientId": 9007199254740992, "state": {}}"#.to_vec(),
            "invalid_client_id",
        ),
    ] {
        expect_error(http.post("/docs/room/presence", body).await?, 400, code).await?;
    }
    let huge = serde_json::to_vec(&json!({ "clientId": 5, "state": { "x": "y".repeat(40_000) } }))?;
    expect_error(
        http.post("/docs/room/presence", huge).await?,
        413,
        "awareness_too_large",
    )
    .await?;
    server.stop().await
}

#[tokio::test]
async fn documents_are_listed_in_pages_and_deleted() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path(), Config::default()).await;
    let http = Http::new(&server);
    for name in ["a/1", "a/2", "a/3", "b/1"] {
        http.post(&format!("/docs/{name}/update"), text_update(name))
            .await?;
    }
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/docs?prefix=a/&limit=2&cursor={cursor}"),
            None => "/docs?prefix=a/&limit=2".to_owned(),
        };
        let page: Value = http.get(&path).await?.json().await?;
        for doc in page["documents"].as_array().context("documents")? {
            names.push(doc["name"].as_str().context("name")?.to_owned());
            assert!(doc["size"].as_u64().is_some_and(|size| size > 0));
            assert!(doc["lastChange"].is_string());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(names, ["a/1", "a/2", "a/3"]);
    expect_error(http.get("/docs?limit=0").await?, 400, "invalid_limit").await?;
    expect_error(http.get("/docs?limit=1001").await?, 400, "invalid_limit").await?;
    expect_error(http.get("/docs?cursor=***").await?, 400, "invalid_cursor").await?;

    // Deleting closes the document's peers with 4404 and forgets it.
    let mut peer = SyncClient::connect_synced(&server.url("a/2")).await?;
    assert_eq!(http.delete("/docs/a/2").await?.status(), 204);
    assert_eq!(peer.closed().await?, Closed::Code(CLOSE_DOCUMENT_DELETED));
    expect_error(http.get("/docs/a/2/json").await?, 404, "not_found").await?;
    expect_error(http.delete("/docs/a/2").await?, 404, "not_found").await?;
    let page: Value = http.get("/docs?prefix=a/").await?.json().await?;
    assert_eq!(page["documents"].as_array().map(Vec::len), Some(2));
    // The name can be used again, from nothing.
    let mut again = SyncClient::connect_synced(&server.url("a/2")).await?;
    assert_eq!(again.text("text"), "");
    again
        .edit(|txn| txn.get_or_insert_text("text").push(txn, "new"))
        .await?;
    again.await_server(&server.url("a/2")).await?;
    server.stop().await?;

    let server = start(dir.path(), Config::default()).await;
    let http = Http::new(&server);
    let json: Value = http.get("/docs/a/2/json").await?.json().await?;
    assert_eq!(json, json!({ "text": "new" }));
    server.stop().await
}

#[tokio::test]
async fn status_metrics_and_readiness() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path(), Config::default()).await;
    let http = Http::new(&server);
    let mut a = SyncClient::connect_synced(&server.url("busy")).await?;
    let _b = SyncClient::connect_synced(&server.url("busy")).await?;
    let _c = SyncClient::connect_synced(&server.url("quiet")).await?;
    a.edit(|txn| txn.get_or_insert_text("text").push(txn, "x"))
        .await?;
    a.await_server(&server.url("busy")).await?;
    wait_until("three peers", || {
        server.tandem.counters().open_connections == 3
    })
    .await?;

    let status: Value = http.get("/status").await?.json().await?;
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert!(status["uptimeSeconds"].as_f64().is_some());
    assert_eq!(status["connections"], 3);
    assert_eq!(status["loadedDocuments"], 2);
    assert_eq!(
        status["documents"],
        json!([{ "name": "busy", "peers": 2 }, { "name": "quiet", "peers": 1 }])
    );
    assert!(status["storeBytes"].as_u64().is_some_and(|bytes| bytes > 0));

    let metrics = http.get("/metrics").await?;
    assert!(metrics.headers()["content-type"]
        .to_str()?
        .starts_with("text/plain; version=0.0.4"));
    let metrics = metrics.text().await?;
    for expected in [
        "tandem_connections 3",
        "tandem_documents_loaded 2",
        "tandem_peers{transport=\"websocket\"} 3",
        "# TYPE tandem_update_apply_seconds histogram",
        "# TYPE tandem_store_flush_seconds histogram",
        "tandem_webhook_deliveries_total{result=\"delivered\"} 0",
    ] {
        assert!(metrics.contains(expected), "no {expected:?} in\n{metrics}");
    }
    let count = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(count("tandem_messages_total{direction=\"in\",type=\"sync_update\"}") >= 1);
    assert!(count("tandem_messages_total{direction=\"out\",type=\"sync_step1\"}") >= 3);
    assert!(count("tandem_update_apply_seconds_count") >= 1);
    assert!(count("tandem_store_flush_seconds_count") >= 1);

    assert_eq!(http.get("/healthz").await?.status(), 200);
    assert_eq!(http.get("/readyz").await?.status(), 200);
    server.tandem.begin_shutdown();
    expect_error(http.get("/readyz").await?, 503, "shutting_down").await?;
    server.stop().await
}

#[tokio::test]
async fn openapi_describes_every_route() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path(), Config::default()).await;
    let http = Http::new(&server);
    let text = http.get("/openapi.json").await?.text().await?;
    // A structurally valid OpenAPI 3.1 document, as a typed parser reads it.
    let spec = oas3::from_json(&text).context("the OpenAPI document does not parse")?;
    assert_eq!(spec.openapi, "3.1.0");
    let openapi: Value = serde_json::from_str(&text)?;
    let mut described = BTreeSet::new();
    for (path, operations) in openapi["paths"].as_object().context("paths")? {
        for (method, operation) in operations.as_object().context("operations")? {
            assert!(operation["operationId"].is_string(), "{path} {method}");
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{path} {method} has no responses"
            );
            described.insert((method.to_uppercase(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> = tandem_server::routes()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path))
        .collect();
    assert_eq!(
        described, routed,
        "the OpenAPI document and the router differ"
    );
    // And each described path is really served: none answers as an unknown route.
    http.post("/docs/probe/update", text_update("probe"))
        .await?;
    for (method, path) in &described {
        if path.starts_with("/ws/") || path.ends_with("/events") || method == "DELETE" {
            continue;
        }
        let path = path.replace("{doc}", "probe");
        let response = http
            .request(reqwest::Method::from_bytes(method.as_bytes())?, &path)
            .send()
            .await?;
        assert!(
            response.status() != 404 && response.status() != 405,
            "{method} {path}: {}",
            response.status()
        );
    }
    server.stop().await
}

fn token_as(sub: &str, docs: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": sub, "exp": unix_now() + 3600, "docs": docs }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .expect("sign")
}

/// The events (not acks or gaps) a y-websocket client received.
fn custom_events(client: &SyncClient) -> Vec<&Value> {
    client
        .events
        .iter()
        .filter(|event| event.get("seq").is_some())
        .collect()
}

#[tokio::test]
async fn custom_events_are_posted_over_http() -> anyhow::Result<()> {
    let dir = tempdir();
    let config = Config {
        max_event_bytes: 256,
        events_per_sec: 1,
        event_burst: 3,
        ..Config::default()
    };
    let server = start_with_auth(dir.path(), JwtAuthorizer::hs256(SECRET)?, config).await;
    let writer_token = token(json!({ "*": ["write"] }));
    let writer = Http::with_token(&server, writer_token.clone());
    let events_only = Http::with_token(&server, token_as("bot", json!({ "*": ["events"] })));
    let reader = Http::with_token(&server, token(json!({ "*": ["read"] })));
    let post = |http: &Http, doc: &str, body: Value| {
        let request = http
            .request(reqwest::Method::POST, &format!("/docs/{doc}/events"))
            .json(&body);
        async move { anyhow::Ok(request.send().await?) }
    };

    // A y-websocket peer that opted in, one that did not, and an event stream.
    let mut peer = SyncClient::connect_synced(&format!(
        "{}?events=1&token={writer_token}",
        server.url("chat")
    ))
    .await?;
    let mut plain =
        SyncClient::connect_synced(&format!("{}?token={writer_token}", server.url("chat"))).await?;
    let mut stream = SseClient::connect(
        &format!("{}/docs/chat/events", base(&server)),
        &[("authorization", &format!("Bearer {writer_token}"))],
    )
    .await?;

    let response = post(
        &writer,
        "chat",
        json!({ "type": "chat", "data": { "text": "hi" } }),
    )
    .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await?, json!({ "seq": 1 }));
    peer.pump_until("the posted event", |c| !custom_events(c).is_empty())
        .await?;
    let received = custom_events(&peer)[0].clone();
    assert_eq!(received["seq"], 1);
    assert_eq!(received["type"], "chat");
    assert_eq!(received["data"], json!({ "text": "hi" }));
    assert_eq!(received["from"], "tester", "from is the token's sub");
    assert!(received["at"]
        .as_u64()
        .is_some_and(|at| at > 1_600_000_000_000));
    let streamed = stream.next_of("event").await?;
    assert_eq!(serde_json::from_str::<Value>(&streamed.data)?, received);
    assert!(streamed.id.context("id")?.ends_with(".1"));

    // The events right is enough; `data` may be left out; reading is not enough.
    let response = post(&events_only, "chat", json!({ "type": "typing" })).await?;
    assert_eq!(response.json::<Value>().await?, json!({ "seq": 2 }));
    let typing: Value = serde_json::from_str(&stream.next_of("event").await?.data)?;
    assert_eq!(
        (&typing["type"], &typing["data"], &typing["from"]),
        (&json!("typing"), &Value::Null, &json!("bot"))
    );
    expect_error(
        post(&reader, "chat", json!({ "type": "chat", "data": 1 })).await?,
        403,
        "forbidden",
    )
    .await?;
    expect_error(
        post(&Http::new(&server), "chat", json!({ "type": "chat" })).await?,
        401,
        "unauthenticated",
    )
    .await?;

    // Malformed bodies, each with its code; nothing is sent.
    let garbage = writer
        .post("/docs/chat/events", b"{\"type\": ".to_vec())
        .await?;
    expect_error(garbage, 400, "invalid_json").await?;
    for body in [
        json!(["chat"]),
        json!({ "data": 1 }),
        json!({ "type": 7 }),
        json!({ "type": "" }),
        json!({ "type": "x".repeat(129) }),
        json!({ "type": "chat", "data": 1, "extra": true }),
        json!({ "since": 0 }),
    ] {
        expect_error(post(&writer, "chat", body).await?, 422, "invalid_event").await?;
    }
    // Larger than --max-event-bytes.
    let big = json!({ "type": "chat", "data": "x".repeat(300) });
    expect_error(post(&writer, "chat", big).await?, 413, "event_too_large").await?;

    // Each caller has its own rate per document: a burst of three, then one a second.
    for seq in 1..=3 {
        let response = post(&writer, "flood", json!({ "type": "n", "data": seq })).await?;
        assert_eq!(response.json::<Value>().await?, json!({ "seq": seq }));
    }
    let limited = post(&writer, "flood", json!({ "type": "n" })).await?;
    assert_eq!(limited.headers()["retry-after"], "1");
    expect_error(limited, 429, "rate_limited").await?;
    let other_caller = post(&events_only, "flood", json!({ "type": "n" })).await?;
    assert_eq!(other_caller.status(), 200, "another sub has its own bucket");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        post(&writer, "flood", json!({ "type": "n" }))
            .await?
            .status(),
        200,
        "the bucket refills"
    );

    // Only the two accepted chat events reached the peer; the plain peer got none.
    peer.pump_until_within(
        "nothing more",
        std::time::Duration::from_millis(300),
        |_| false,
    )
    .await
    .ok();
    assert_eq!(custom_events(&peer).len(), 2);
    plain.drain().await?;
    assert!(plain.events.is_empty());
    let metrics = reqwest::get(format!("{}/metrics", base(&server)))
        .await?
        .text()
        .await?;
    for reason in [
        "invalid_json",
        "invalid_event",
        "event_too_large",
        "rate_limited",
    ] {
        assert!(
            metrics.contains(&format!("tandem_refusals_total{{reason=\"{reason}\"}}")),
            "{reason}: {metrics}"
        );
    }
    server.stop().await
}

#[tokio::test]
async fn an_update_missing_its_dependencies_is_refused_with_409() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path(), Config::default()).await;
    let http = Http::new(&server);
    let doc = Doc::with_client_id(7);
    let text = doc.get_or_insert_text("text");
    let first = {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "hello");
        txn.encode_update_v1()
    };
    let second = {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 5, " world");
        txn.encode_update_v1()
    };
    let refused = http.post("/docs/dep/update", second.clone()).await?;
    expect_error(refused, 409, "missing_dependencies").await?;
    let json: Value = http.get("/docs/dep/json").await?.json().await?;
    anyhow::ensure!(json == json!({}), "nothing was applied: {json}");
    anyhow::ensure!(http.post("/docs/dep/update", first).await?.status() == 204);
    anyhow::ensure!(http.post("/docs/dep/update", second).await?.status() == 204);
    let json: Value = http.get("/docs/dep/json").await?.json().await?;
    anyhow::ensure!(json == json!({ "text": "hello world" }), "{json}");
    server.stop().await
}
