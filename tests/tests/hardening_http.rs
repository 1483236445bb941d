//! Hardening of the HTTP surface against a hostile client (issue 13): tokens whose expiry no
//! clock can hold, document names that are not UTF-8, and HTTP presence ownership, caps and rate.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use tandem_core::auth::jwt::unix_now;
use tandem_core::auth::{Authorizer, JwtAuthorizer};
use tandem_core::SledStore;
use tandem_server::{ApiConfig, Config, Tandem, WebhookConfig};
use tandem_tests::{http_get, http_request, refused, request, within, SyncClient, TestServer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use yrs::{Doc, ReadTxn, StateVector, Text, Transact};

const SECRET: &[u8] = b"the hardening test secret, 32+ bytes";

async fn start(dir: &Path, authorizer: impl Authorizer, config: Config) -> TestServer {
    let tandem = Tandem::builder()
        .store(Arc::new(SledStore::open(dir).expect("store")))
        .authorizer(Arc::new(authorizer))
        .config(config)
        .build()
        .expect("valid configuration");
    TestServer::serve(tandem).await.expect("server")
}

/// An HS256 token with these claims, signed with [`SECRET`].
fn sign(claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .expect("sign")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_past_any_clock_gets_401_and_the_server_stays_up() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), JwtAuthorizer::hs256(SECRET)?, Config::default()).await;
    let good =
        sign(&json!({ "sub": "alice", "exp": unix_now() + 3600, "docs": { "*": ["write"] } }));
    // 9.3e18 seconds overflowed the expiry arithmetic; u64::MAX is the largest `exp` that still
    // parses.
    for exp in [9_300_000_000_000_000_000_u64, u64::MAX - 1, u64::MAX] {
        let absurd = sign(&json!({ "sub": "mallory", "exp": exp, "docs": { "*": ["write"] } }));
        let json = http_get(
            server.addr,
            "/docs/x/json",
            &[("authorization", &bearer(&absurd))],
        )
        .await?;
        assert_eq!(json.status, 401, "GET /docs/x/json with exp {exp}");
        let body: serde_json::Value = serde_json::from_slice(&json.body)?;
        assert_eq!(body["code"], "unauthenticated", "exp {exp}: {body}");
        let (status, _) = refused(request(
            &format!("{}?token={absurd}", server.url("x")),
            &[],
        )?)
        .await?;
        assert_eq!(status, 401, "WebSocket upgrade with exp {exp}");
        let health = http_get(server.addr, "/healthz", &[]).await?;
        assert_eq!(
            health.status, 200,
            "the server still answers after exp {exp}"
        );
    }
    let json = http_get(
        server.addr,
        "/docs/x/json",
        &[("authorization", &bearer(&good))],
    )
    .await?;
    assert_eq!(
        json.status, 404,
        "a sound token gets past authentication (x does not exist)"
    );
    server.stop().await
}

/// An update that sets the text `text` to `content`.
fn text_update(content: &str) -> Vec<u8> {
    let doc = Doc::new();
    let text = doc.get_or_insert_text("text");
    let mut txn = doc.transact_mut();
    text.insert(&mut txn, 0, content);
    txn.encode_state_as_update_v1(&StateVector::default())
}

/// The URL path segment for a name as a listing shows it: used as it is when the listing marks
/// it percent-encoded, percent-encoded (as any client does with a name) otherwise.
fn path_of(listed: &Value, key: &str) -> String {
    let name = listed[key].as_str().expect("a name");
    match listed[format!("{key}Encoding")].as_str() {
        Some("percent") => name.to_owned(),
        None => utf8_percent_encode(name, NON_ALPHANUMERIC).to_string(),
        Some(other) => panic!("unknown name encoding {other}"),
    }
}

async fn json_of(server: &TestServer, path: &str) -> anyhow::Result<Value> {
    let response = http_get(server.addr, path, &[]).await?;
    anyhow::ensure!(response.status == 200, "GET {path}: {}", response.status);
    Ok(serde_json::from_slice(&response.body)?)
}

/// A webhook receiver: every body it gets goes into the channel.
async fn receiver() -> anyhow::Result<(String, mpsc::UnboundedReceiver<Value>)> {
    let (calls, received) = mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route(
        "/hook",
        post(move |body: axum::body::Bytes| {
            let calls = calls.clone();
            async move {
                let _ = calls.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}/hook"), received))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_is_not_utf8_is_listed_in_a_form_that_leads_back_to_it() -> anyhow::Result<()> {
    let (hook, mut hooked) = receiver().await?;
    let dir = tempfile::tempdir()?;
    let tandem = Tandem::builder()
        .store(Arc::new(SledStore::open(dir.path())?))
        .webhooks(WebhookConfig {
            debounce: Duration::from_millis(50),
            ..WebhookConfig::new(vec![hook])
        })
        .build()?;
    let server = TestServer::serve(tandem).await?;
    // The bytes FF FE, and the UTF-8 name "%FF%FE" whose text looks the same.
    for (path, content) in [("%FF%FE", "bytes"), ("%25FF%25FE", "literal")] {
        let posted = http_request(
            server.addr,
            "POST",
            &format!("/docs/{path}/update"),
            &[],
            &text_update(content),
        )
        .await?;
        assert_eq!(posted.status, 204, "creating {path}");
    }

    let listing = json_of(&server, "/docs").await?;
    let documents = listing["documents"].as_array().expect("documents");
    assert_eq!(documents.len(), 2, "{listing}");
    let bytes = documents
        .iter()
        .find(|d| d["nameEncoding"] == "percent")
        .expect("the non-UTF-8 name is marked");
    assert_eq!(bytes["name"], "%FF%FE");
    let literal = documents
        .iter()
        .find(|d| d["nameEncoding"].is_null())
        .expect("the UTF-8 name is not marked");
    assert_eq!(literal["name"], "%FF%FE");
    for (listed, content) in [(bytes, "bytes"), (literal, "literal")] {
        let path = path_of(listed, "name");
        let json = json_of(&server, &format!("/docs/{path}/json")).await?;
        assert_eq!(
            json["text"], content,
            "the listed name {listed} leads to its document"
        );
        let info = json_of(&server, &format!("/docs/{path}")).await?;
        assert_eq!(info["name"], listed["name"]);
        assert_eq!(info["nameEncoding"], listed["nameEncoding"]);
    }

    // The webhook of the change names the document the same way.
    let delivered = within("a webhook for the non-UTF-8 name", async {
        loop {
            let call = hooked.recv().await.expect("receiver open");
            if call["docEncoding"] == "percent" {
                return call;
            }
        }
    })
    .await?;
    assert_eq!(delivered["doc"], "%FF%FE");

    // So does /status while a peer is connected.
    let peer = SyncClient::connect_synced(&server.url("%FF%FE")).await?;
    assert_eq!(peer.text("text"), "bytes");
    within("/status to list the connected document", async {
        loop {
            let status = json_of(&server, "/status").await?;
            let busiest = status["documents"].as_array().expect("busiest documents");
            if busiest
                .iter()
                .any(|d| d["name"] == "%FF%FE" && d["nameEncoding"] == "percent")
            {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await??;
    peer.close().await?;

    // Deleting through the listed name deletes that document and no other.
    let deleted = http_request(
        server.addr,
        "DELETE",
        &format!("/docs/{}", path_of(bytes, "name")),
        &[],
        b"",
    )
    .await?;
    assert_eq!(deleted.status, 204);
    let listing = json_of(&server, "/docs").await?;
    let left: Vec<&Value> = listing["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .collect();
    assert_eq!(left.len(), 1, "{listing}");
    assert!(left[0]["nameEncoding"].is_null(), "{listing}");
    let json = json_of(&server, "/docs/%25FF%25FE/json").await?;
    assert_eq!(json["text"], "literal");
    server.stop().await
}

/// A token for `sub` (none: a token without `sub`) with these rights on every document.
fn token_for(sub: Option<&str>, rights: &[&str]) -> String {
    let mut claims = json!({ "exp": unix_now() + 3600, "docs": { "*": rights } });
    if let Some(sub) = sub {
        claims["sub"] = json!(sub);
    }
    sign(&claims)
}

/// `POST /docs/{doc}/presence` with a token.
async fn post_presence(
    server: &TestServer,
    token: &str,
    doc: &str,
    client: u64,
    state: Value,
) -> anyhow::Result<tandem_tests::HttpResponse> {
    let body = serde_json::to_vec(&json!({ "clientId": client, "state": state }))?;
    http_request(
        server.addr,
        "POST",
        &format!("/docs/{doc}/presence"),
        &[("authorization", &bearer(token))],
        &body,
    )
    .await
}

/// The error code of a JSON refusal.
fn code(response: &tandem_tests::HttpResponse) -> String {
    serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|body| body["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The presence states of a document, by client id: (state, sub).
async fn presence_of(
    server: &TestServer,
    token: &str,
    doc: &str,
) -> anyhow::Result<Vec<(u64, Value, Value)>> {
    let response = http_get(
        server.addr,
        &format!("/docs/{doc}/presence"),
        &[("authorization", &bearer(token))],
    )
    .await?;
    anyhow::ensure!(response.status == 200, "GET presence: {}", response.status);
    let body: Value = serde_json::from_slice(&response.body)?;
    let mut clients: Vec<_> = body["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .map(|c| {
            (
                c["clientId"].as_u64().expect("id"),
                c["state"].clone(),
                c["sub"].clone(),
            )
        })
        .collect();
    clients.sort_by_key(|(id, _, _)| *id);
    Ok(clients)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_caller_cannot_change_or_remove_a_http_presence() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), JwtAuthorizer::hs256(SECRET)?, Config::default()).await;
    let alice = token_for(Some("alice"), &["write"]);
    let bob = token_for(Some("bob"), &["read"]);
    let nobody = token_for(None, &["write"]);
    let posted = post_presence(&server, &alice, "room", 42, json!({ "name": "alice" })).await?;
    assert_eq!(posted.status, 200);

    for (who, token) in [("bob", &bob), ("a token without sub", &nobody)] {
        let overwrite = post_presence(&server, token, "room", 42, json!({ "name": "bob" })).await?;
        assert_eq!(overwrite.status, 403, "{who} overwrote alice's presence");
        assert_eq!(code(&overwrite), "presence_not_owned");
        let remove = post_presence(&server, token, "room", 42, Value::Null).await?;
        assert_eq!(remove.status, 403, "{who} removed alice's presence");
        assert_eq!(code(&remove), "presence_not_owned");
    }
    assert_eq!(
        presence_of(&server, &bob, "room").await?,
        vec![(42, json!({ "name": "alice" }), json!("alice"))],
        "alice's state is intact"
    );

    // Bob has his own client ids; alice still changes and removes hers.
    assert_eq!(
        post_presence(&server, &bob, "room", 43, json!({ "name": "bob" }))
            .await?
            .status,
        200
    );
    assert_eq!(
        post_presence(&server, &alice, "room", 42, json!({ "name": "alice 2" }))
            .await?
            .status,
        200
    );
    assert_eq!(
        post_presence(&server, &alice, "room", 42, Value::Null)
            .await?
            .status,
        200
    );
    assert_eq!(
        presence_of(&server, &bob, "room").await?,
        vec![(43, json!({ "name": "bob" }), json!("bob"))]
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_presence_client_ids_are_capped_per_caller_and_per_document() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tandem = Tandem::builder()
        .store(Arc::new(SledStore::open(dir.path())?))
        .authorizer(Arc::new(JwtAuthorizer::hs256(SECRET)?))
        .api_config(ApiConfig {
            max_http_presence_per_caller: 3,
            max_http_presence_per_doc: 5,
            http_presence_per_sec: 0,
            ..ApiConfig::default()
        })
        .build()?;
    let server = TestServer::serve(tandem).await?;
    let alice = token_for(Some("alice"), &["write"]);
    let bob = token_for(Some("bob"), &["write"]);
    for id in 1..=3 {
        assert_eq!(
            post_presence(&server, &alice, "d", id, json!({ "n": id }))
                .await?
                .status,
            200
        );
    }
    let refused = post_presence(&server, &alice, "d", 4, json!({ "n": 4 })).await?;
    assert_eq!(refused.status, 429);
    assert_eq!(code(&refused), "caller_presence_limit");
    assert_eq!(refused.header("retry-after"), Some("30"));
    // Renewing a client id she has is not a new one.
    assert_eq!(
        post_presence(&server, &alice, "d", 3, json!({ "n": 33 }))
            .await?
            .status,
        200
    );
    // Removing one frees its slot.
    assert_eq!(
        post_presence(&server, &alice, "d", 1, Value::Null)
            .await?
            .status,
        200
    );
    assert_eq!(
        post_presence(&server, &alice, "d", 4, json!({ "n": 4 }))
            .await?
            .status,
        200
    );

    // The document holds 5 at most, whoever posts them; other documents are unaffected.
    for id in 10..=11 {
        assert_eq!(
            post_presence(&server, &bob, "d", id, json!({ "n": id }))
                .await?
                .status,
            200
        );
    }
    let full = post_presence(&server, &bob, "d", 12, json!({ "n": 12 })).await?;
    assert_eq!(full.status, 429);
    assert_eq!(code(&full), "document_presence_limit");
    assert_eq!(
        post_presence(&server, &bob, "e", 12, json!({ "n": 12 }))
            .await?
            .status,
        200
    );
    let ids: Vec<u64> = presence_of(&server, &bob, "d")
        .await?
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(ids, vec![2, 3, 4, 10, 11], "nothing refused was published");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_presence_posts_are_rate_limited_per_caller() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tandem = Tandem::builder()
        .store(Arc::new(SledStore::open(dir.path())?))
        .authorizer(Arc::new(JwtAuthorizer::hs256(SECRET)?))
        .api_config(ApiConfig {
            http_presence_per_sec: 1,
            http_presence_burst: 3,
            ..ApiConfig::default()
        })
        .build()?;
    let server = TestServer::serve(tandem).await?;
    let alice = token_for(Some("alice"), &["write"]);
    let bob = token_for(Some("bob"), &["write"]);
    let mut statuses = Vec::new();
    let mut limited = None;
    // The burst is 3 and one more comes a second: ten posts in a row run out of tokens.
    for n in 0..10 {
        let response = post_presence(&server, &alice, "r", 1, json!({ "n": n })).await?;
        statuses.push(response.status);
        if response.status == 429 {
            limited = Some(response);
            break;
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "the burst is admitted");
    let limited = limited.expect("ten posts in a row are rate limited");
    assert_eq!(code(&limited), "rate_limited");
    assert_eq!(limited.header("retry-after"), Some("1"));
    // Another caller has a bucket of its own.
    assert_eq!(
        post_presence(&server, &bob, "r", 2, json!({ "n": 0 }))
            .await?
            .status,
        200
    );
    // And alice is admitted again once her bucket refills.
    within("alice's bucket to refill", async {
        loop {
            let response = post_presence(&server, &alice, "r", 1, json!({ "n": "again" })).await?;
            if response.status == 200 {
                return anyhow::Ok(());
            }
            anyhow::ensure!(response.status == 429, "unexpected {}", response.status);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await??;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_anonymous_caller_cannot_flood_a_document_with_http_presence() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = tandem_tests::TestServer::start(dir.path(), Config::default()).await?;
    // The attack: thousands of client ids from one caller. With the defaults it gets a handful.
    let mut accepted = 0;
    for id in 0..200_u64 {
        let body = serde_json::to_vec(&json!({ "clientId": id, "state": { "n": id } }))?;
        let response =
            http_request(server.addr, "POST", "/docs/flood/presence", &[], &body).await?;
        match response.status {
            200 => accepted += 1,
            429 => {}
            other => anyhow::bail!("unexpected status {other}"),
        }
    }
    assert_eq!(
        accepted,
        tandem_server::DEFAULT_MAX_HTTP_PRESENCE_PER_CALLER,
        "one caller holds at most the default cap of client ids"
    );
    let health = http_get(server.addr, "/healthz", &[]).await?;
    assert_eq!(health.status, 200);
    server.stop().await
}
