//! Who gets in and what they can do: tokens refused with the right status, read-only and
//! invisible peers, expiry, and every limit. Each refusal also shows that the document, the other
//! peers and the server are unaffected.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use tandem_core::auth::jwt::unix_now;
use tandem_core::auth::{Authorizer, JwtAuthorizer};
use tandem_core::SledStore;
use tandem_server::{Config, RateLimit, Tandem};
use tandem_tests::{http_get, refused, request, wait_until, Closed, SyncClient, TestServer};
use yrs::{ReadTxn, StateVector, Text, Transact, WriteTxn};

const SECRET: &[u8] = b"the test secret, longer than 32 bytes";
const AUDIENCE: &str = "tandem-tests";

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn key(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "fixtures", "keys", name]
        .iter()
        .collect();
    std::fs::read(&path).expect("test key")
}

async fn start(dir: &Path, authorizer: impl Authorizer, config: Config) -> TestServer {
    let tandem = Tandem::builder()
        .store(Arc::new(SledStore::open(dir).expect("store")))
        .authorizer(Arc::new(authorizer))
        .config(config)
        .build()
        .expect("valid configuration");
    TestServer::serve(tandem).await.expect("server")
}

fn hs256() -> JwtAuthorizer {
    JwtAuthorizer::hs256(SECRET)
        .expect("secret")
        .with_audience(AUDIENCE)
}

/// Signs arbitrary claims with an arbitrary header algorithm and key.
fn sign(
    algorithm: jsonwebtoken::Algorithm,
    key: &jsonwebtoken::EncodingKey,
    claims: &serde_json::Value,
) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(algorithm), claims, key).expect("sign")
}

/// A valid HS256 token for the test audience, expiring in an hour.
fn token(docs: serde_json::Value) -> String {
    sign(
        jsonwebtoken::Algorithm::HS256,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
        &json!({ "sub": "tester", "aud": AUDIENCE, "exp": unix_now() + 3600, "docs": docs }),
    )
}

fn with_token(url: &str, token: &str) -> String {
    format!("{url}?token={token}")
}

async fn insert_text(client: &mut SyncClient, at: u32, what: &str) -> anyhow::Result<()> {
    let what = what.to_owned();
    client
        .edit(move |txn| txn.get_or_insert_text("text").insert(txn, at, &what))
        .await
}

/// The document as the server has it: what a fresh client receives.
async fn server_state(url: &str) -> anyhow::Result<Vec<u8>> {
    let fresh = SyncClient::connect_synced(url).await?;
    let state = fresh
        .doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    fresh.close().await?;
    Ok(state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_and_change_nothing() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path(), hs256(), Config::default()).await;
    let url = server.url("doc");
    let good = token(json!({ "doc": ["write"] }));
    let mut writer = SyncClient::connect_synced(&with_token(&url, &good)).await?;
    insert_text(&mut writer, 0, "before").await?;
    writer.await_server(&with_token(&url, &good)).await?;

    let now = unix_now();
    let secret = jsonwebtoken::EncodingKey::from_secret(SECRET);
    let hs = jsonwebtoken::Algorithm::HS256;
    let claims = |extra: serde_json::Value| {
        let mut claims =
            json!({ "aud": AUDIENCE, "exp": now + 3600, "docs": { "doc": ["write"] } });
        for (key, value) in extra.as_object().expect("object") {
            claims[key] = value.clone();
        }
        claims
    };
    let unsigned = {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
        format!("{header}.{body}.")
    };
    let forged = sign(
        hs,
        &jsonwebtoken::EncodingKey::from_secret(b"somebody else's secret, also long"),
        &claims(json!({})),
    );
    let mut no_expiry = claims(json!({}));
    no_expiry.as_object_mut().expect("object").remove("exp");
    let cases = [
        ("no token", None),
        ("garbage", Some("not.a.token".to_owned())),
        ("alg none", Some(unsigned)),
        ("forged signature", Some(forged)),
        (
            "expired",
            Some(sign(hs, &secret, &claims(json!({ "exp": now - 10 })))),
        ),
        (
            "not valid yet",
            Some(sign(hs, &secret, &claims(json!({ "nbf": now + 3600 })))),
        ),
        (
            "wrong audience",
            Some(sign(hs, &secret, &claims(json!({ "aud": "another-app" })))),
        ),
        (
            "no audience",
            Some(sign(hs, &secret, &claims(json!({ "aud": null })))),
        ),
        ("no expiry", Some(sign(hs, &secret, &no_expiry))),
        (
            "unknown right",
            Some(sign(
                hs,
                &secret,
                &claims(json!({ "docs": { "doc": ["rule"] } })),
            )),
        ),
    ];
    for (case, token) in cases {
        let target = match &token {
            Some(token) => with_token(&url, token),
            None => url.clone(),
        };
        let (status, body) = refused(request(&target, &[])?)
            .await
            .with_context(|| case.to_owned())?;
        assert_eq!(status, 401, "{case}: {body}");
    }
    // The same bad token in a header is refused the same way.
    let (status, _) = refused(request(&url, &[("authorization", "Bearer not.a.token")])?).await?;
    assert_eq!(status, 401);

    insert_text(&mut writer, 6, " after").await?;
    writer.await_server(&with_token(&url, &good)).await?;
    let fresh = SyncClient::connect_synced(&with_token(&url, &good)).await?;
    assert_eq!(fresh.text("text"), "before after");
    assert_eq!(server.tandem.counters().open_connections, 2);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_arrive_by_query_header_or_cookie() -> anyhow::Result<()> {
    let dir = tempdir();
    let config = Config {
        token_cookie: Some("tandem_token".into()),
        ..Config::default()
    };
    let server = start(dir.path(), hs256(), config).await;
    let url = server.url("doc");
    let good = token(json!({ "doc": ["write"] }));
    let bearer = format!("Bearer {good}");
    let cookie = format!("theme=dark; tandem_token={good}");
    let mut by_header = SyncClient::connect_request(
        request(&url, &[("authorization", &bearer)])?,
        Default::default(),
    )
    .await?;
    by_header.sync().await?;
    let mut by_cookie =
        SyncClient::connect_request(request(&url, &[("cookie", &cookie)])?, Default::default())
            .await?;
    by_cookie.sync().await?;
    insert_text(&mut by_header, 0, "via header").await?;
    let target = by_header.state_vector();
    by_cookie
        .pump_until("the header client's edit", |c| c.state_vector() >= target)
        .await?;
    assert_eq!(by_cookie.text("text"), "via header");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asymmetric_keys_pin_their_algorithm() -> anyhow::Result<()> {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let now = unix_now();
    let claims = json!({ "exp": now + 3600, "docs": { "*": ["write"] } });
    let keys = [
        (
            "rsa",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&key("rsa-private.pem"))?,
        ),
        (
            "ec",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&key("ec-private.pem"))?,
        ),
        (
            "ed",
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&key("ed-private.pem"))?,
        ),
    ];
    for (name, algorithm, private) in &keys {
        let public = key(&format!("{name}-public.pem"));
        let authorizer = JwtAuthorizer::from_public_key_pem(&public)?;
        assert_eq!(authorizer.algorithm(), format!("{algorithm:?}"));
        let dir = tempdir();
        let server = start(dir.path(), authorizer, Config::default()).await;
        let url = server.url("doc");
        // The right key and algorithm: in.
        let good = sign(*algorithm, private, &claims);
        SyncClient::connect_synced(&with_token(&url, &good)).await?;
        // HS256 keyed with the public key, the classic confusion: out.
        let confused = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(&public),
            &claims,
        );
        let (status, _) = refused(request(&with_token(&url, &confused), &[])?).await?;
        assert_eq!(status, 401, "{name}: HS256 with the public key as secret");
        // Another key type's token: out.
        for (other, other_algorithm, other_private) in &keys {
            if other == name {
                continue;
            }
            let foreign = sign(*other_algorithm, other_private, &claims);
            let (status, _) = refused(request(&with_token(&url, &foreign), &[])?).await?;
            assert_eq!(status, 401, "{other} token against {name} key");
        }
        server.stop().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_open_only_the_documents_they_cover() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path(), hs256(), Config::default()).await;
    let notes = token(json!({ "notes/*": ["read"], "todo": ["write"] }));
    for allowed in ["notes/a", "notes/a/b", "todo"] {
        SyncClient::connect_synced(&with_token(&server.url(allowed), &notes)).await?;
    }
    for forbidden in ["notesX", "notes", "todo/x", "tod", "other"] {
        let (status, body) =
            refused(request(&with_token(&server.url(forbidden), &notes), &[])?).await?;
        assert_eq!(status, 403, "{forbidden}: {body}");
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_peer_receives_everything_and_changes_nothing() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path(), hs256(), Config::default()).await;
    let url = server.url("doc");
    let write = with_token(&url, &token(json!({ "doc": ["write"] })));
    let read = with_token(&url, &token(json!({ "doc": ["read"] })));
    let mut writer = SyncClient::connect_synced(&write).await?;
    let mut observer = SyncClient::connect_synced(&write).await?;
    let mut viewer = SyncClient::connect_synced(&read).await?;

    insert_text(&mut writer, 0, "hello").await?;
    let target = writer.state_vector();
    viewer
        .pump_until("the writer's edit", |c| c.state_vector() >= target)
        .await?;
    let before = server_state(&write).await?;

    // A live update and a sync step 2 carrying a change: both dropped, both answered.
    insert_text(&mut viewer, 0, "EVIL").await?;
    let sneaky = {
        let doc = yrs::Doc::new();
        let text = doc.get_or_insert_text("text");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "SNEAKY");
        txn.commit();
        txn.encode_update_v1()
    };
    viewer
        .send_raw(tandem_tests::sync_message(1, &sneaky))
        .await?;
    viewer
        .pump_until("two permission denied messages", |c| c.denied.len() == 2)
        .await?;
    assert!(
        viewer.denied[0].contains("read-only"),
        "{:?}",
        viewer.denied
    );
    assert_eq!(server_state(&write).await?, before, "the document changed");
    assert_eq!(server.tandem.counters().denied_updates, 2);

    // Presence is part of reading: the writer sees the viewer.
    viewer
        .set_awareness(1, Some(r#"{"user":"viewer"}"#))
        .await?;
    let viewer_id = viewer.doc.client_id().get();
    writer
        .pump_until("the viewer's presence", |c| {
            c.awareness.get(&viewer_id).is_some_and(Option::is_some)
        })
        .await?;

    // The viewer is still connected and still receives.
    insert_text(&mut writer, 5, " world").await?;
    let target = writer.state_vector();
    viewer
        .pump_until("the writer's second edit", |c| {
            c.text("text").ends_with("hello world")
                && c.state_vector().get(&writer.doc.client_id())
                    >= target.get(&writer.doc.client_id())
        })
        .await?;
    observer
        .pump_until("the writer's second edit", |c| c.state_vector() >= target)
        .await?;
    assert_eq!(observer.text("text"), "hello world");
    assert_eq!(
        SyncClient::connect_synced(&write).await?.text("text"),
        "hello world"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invisible_viewer_is_not_seen() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path(), hs256(), Config::default()).await;
    let url = server.url("doc");
    let write = with_token(&url, &token(json!({ "doc": ["write"] })));
    let invisible = with_token(&url, &token(json!({ "doc": ["read", "-presence"] })));
    let mut writer = SyncClient::connect_synced(&write).await?;
    writer
        .set_awareness(1, Some(r#"{"user":"writer"}"#))
        .await?;
    let writer_id = writer.doc.client_id().get();
    let mut viewer = SyncClient::connect_synced(&invisible).await?;
    viewer.set_awareness(1, Some(r#"{"user":"ghost"}"#)).await?;
    // The document handles the viewer's frames in order: its answer to this query comes after
    // its awareness update was (not) applied.
    viewer.send_raw(vec![3]).await?;
    let viewer_id = viewer.doc.client_id().get();
    viewer
        .pump_until("the writer's presence", |c| {
            c.awareness.get(&writer_id).is_some_and(Option::is_some)
        })
        .await?;
    let seen = viewer.awareness_messages;
    viewer
        .pump_until("the answer to the query", |c| c.awareness_messages > seen)
        .await?;
    // Its own presence comes back to it alone (keeping y-websocket's liveness check happy).
    assert!(viewer
        .awareness
        .get(&viewer_id)
        .is_some_and(Option::is_some));
    writer.send_raw(vec![3]).await?;
    let seen = writer.awareness_messages;
    writer
        .pump_until("the answer to the query", |c| c.awareness_messages > seen)
        .await?;
    assert!(
        !writer.awareness.contains_key(&viewer_id),
        "{:?}",
        writer.awareness
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_closes_its_connection_with_4401() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path(), hs256(), Config::default()).await;
    let url = server.url("doc");
    let lasting = with_token(&url, &token(json!({ "doc": ["write"] })));
    let short = sign(
        jsonwebtoken::Algorithm::HS256,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
        &json!({ "aud": AUDIENCE, "exp": unix_now() + 2, "docs": { "doc": ["write"] } }),
    );
    let mut other = SyncClient::connect_synced(&lasting).await?;
    let mut expiring = SyncClient::connect_synced(&with_token(&url, &short)).await?;
    insert_text(&mut expiring, 0, "kept").await?;
    assert_eq!(expiring.closed().await?, Closed::Code(4401));
    other
        .pump_until("the expired peer's edit", |c| c.text("text") == "kept")
        .await?;
    insert_text(&mut other, 0, "still here, ").await?;
    other.await_server(&lasting).await?;
    let fresh = SyncClient::connect_synced(&lasting).await?;
    assert_eq!(fresh.text("text"), "still here, kept");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_past_the_document_size_limit_is_refused_with_4413() -> anyhow::Result<()> {
    let dir = tempdir();
    let mut config = Config::default();
    config.doc.max_doc_bytes = 4096;
    let server = TestServer::start(dir.path(), config).await?;
    let url = server.url("doc");
    let mut writer = SyncClient::connect_synced(&url).await?;
    insert_text(&mut writer, 0, &"a".repeat(1000)).await?;
    writer.await_server(&url).await?;
    let before = server_state(&url).await?;

    let mut big = SyncClient::connect_synced(&url).await?;
    insert_text(&mut big, 0, &"B".repeat(5000)).await?;
    assert_eq!(big.closed().await?, Closed::Code(4413));
    assert_eq!(server_state(&url).await?, before, "the document changed");

    // Below the limit, edits go on.
    insert_text(&mut writer, 1000, "!").await?;
    writer.await_server(&url).await?;
    assert_eq!(
        SyncClient::connect_synced(&url).await?.text("text"),
        format!("{}!", "a".repeat(1000))
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_awareness_state_closes_with_1008() -> anyhow::Result<()> {
    let dir = tempdir();
    let config = Config {
        max_awareness_bytes: 1024,
        ..Config::default()
    };
    let server = TestServer::start(dir.path(), config).await?;
    let url = server.url("doc");
    let mut watcher = SyncClient::connect_synced(&url).await?;
    let mut big = SyncClient::connect_synced(&url).await?;
    let big_id = big.doc.client_id().get();
    let state = json!({ "user": "x".repeat(2000) }).to_string();
    big.set_awareness(1, Some(&state)).await?;
    assert_eq!(big.closed().await?, Closed::Code(1008));
    watcher.send_raw(vec![3]).await?;
    watcher
        .set_awareness(1, Some(r#"{"user":"watcher"}"#))
        .await?;
    let watcher_id = watcher.doc.client_id().get();
    watcher
        .pump_until("its own presence echoed", |c| {
            c.awareness.get(&watcher_id).is_some_and(Option::is_some)
        })
        .await?;
    assert!(!watcher.awareness.contains_key(&big_id));
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_rate_limit_is_closed_with_1008() -> anyhow::Result<()> {
    let dir = tempdir();
    let config = Config {
        rate_limit: RateLimit {
            messages_per_sec: 20,
            message_burst: 20,
            bytes_per_sec: 10_000,
            byte_burst: 20_000,
        },
        ..Config::default()
    };
    let server = TestServer::start(dir.path(), config).await?;
    let url = server.url("doc");
    let mut calm = SyncClient::connect_synced(&url).await?;

    // Sending stops at the first failure: the server may already have closed the socket.
    let mut chatty = SyncClient::connect_synced(&url).await?;
    for i in 0..100 {
        if insert_text(&mut chatty, 0, "x").await.is_err() {
            break;
        }
        if i % 10 == 0 {
            chatty.drain().await?;
        }
        if chatty.closed.is_some() {
            break;
        }
    }
    assert_eq!(chatty.closed().await?, Closed::Code(1008));

    let mut heavy = SyncClient::connect_synced(&url).await?;
    for _ in 0..3 {
        if insert_text(&mut heavy, 0, &"y".repeat(9_000))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(heavy.closed().await?, Closed::Code(1008));
    assert_eq!(server.tandem.counters().rate_limited, 2);

    insert_text(&mut calm, 0, "calm").await?;
    calm.await_server(&url).await?;
    // The calm peer never saw the others' edits, so "calm" lands somewhere among them.
    assert!(SyncClient::connect_synced(&url)
        .await?
        .text("text")
        .contains("calm"));
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_answer_503() -> anyhow::Result<()> {
    let dir = tempdir();
    let config = Config {
        max_connections_per_ip: 2,
        ..Config::default()
    };
    let server = TestServer::start(dir.path(), config).await?;
    let url = server.url("doc");
    let mut first = SyncClient::connect_synced(&url).await?;
    let second = SyncClient::connect_synced(&url).await?;
    let (status, body) = refused(request(&url, &[])?).await?;
    assert_eq!(
        (status, body.as_str()),
        (503, "too many connections from this address")
    );
    second.close().await?;
    wait_until("the closed connection to be freed", || {
        server.tandem.counters().open_connections == 1
    })
    .await?;
    let mut third = SyncClient::connect_synced(&url).await?;
    insert_text(&mut first, 0, "ok").await?;
    let target = first.state_vector();
    third
        .pump_until("the first peer's edit", |c| c.state_vector() >= target)
        .await?;
    assert_eq!(server.tandem.counters().refused_connections, 1);
    server.stop().await?;

    let dir = tempdir();
    let config = Config {
        max_connections: 1,
        ..Config::default()
    };
    let server = TestServer::start(dir.path(), config).await?;
    let url = server.url("doc");
    let _only = SyncClient::connect_synced(&url).await?;
    let (status, body) = refused(request(&url, &[])?).await?;
    assert_eq!((status, body.as_str()), (503, "too many connections"));
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_outside_the_list_get_403() -> anyhow::Result<()> {
    let dir = tempdir();
    let config = Config {
        allowed_origins: vec!["https://app.example".into()],
        ..Config::default()
    };
    let server = TestServer::start(dir.path(), config).await?;
    let url = server.url("doc");
    let (status, _) = refused(request(&url, &[("origin", "https://evil.example")])?).await?;
    assert_eq!(status, 403);
    let mut page = SyncClient::connect_request(
        request(&url, &[("origin", "https://app.example")])?,
        Default::default(),
    )
    .await?;
    page.sync().await?;
    // No Origin header: not a browser page.
    SyncClient::connect_synced(&url).await?;

    // CORS for the HTTP API follows the same list.
    let allowed = http_get(
        server.addr,
        "/healthz",
        &[("origin", "https://app.example")],
    )
    .await?;
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let other = http_get(
        server.addr,
        "/healthz",
        &[("origin", "https://evil.example")],
    )
    .await?;
    assert_eq!(other.header("access-control-allow-origin"), None);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_document_names_get_414() -> anyhow::Result<()> {
    let dir = tempdir();
    let config = Config {
        max_doc_name_bytes: 16,
        ..Config::default()
    };
    let server = TestServer::start(dir.path(), config).await?;
    // 16 bytes once decoded: allowed, though the URL spells it with 48 characters.
    SyncClient::connect_synced(&server.url(&"%41".repeat(16))).await?;
    let (status, _) = refused(request(&server.url(&"a".repeat(17)), &[])?).await?;
    assert_eq!(status, 414);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_document_name_gets_400() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = TestServer::start(dir.path(), Config::default()).await?;
    let (status, body) = refused(request(&server.url(""), &[])?).await?;
    assert_eq!((status, body.as_str()), (400, "missing document name"));
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_claims_have_no_leeway() -> anyhow::Result<()> {
    // `exp` one second in the past is already refused: tokens end exactly when they say.
    let dir = tempdir();
    let server = start(dir.path(), hs256(), Config::default()).await;
    let stale = sign(
        jsonwebtoken::Algorithm::HS256,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
        &json!({ "aud": AUDIENCE, "exp": unix_now() - 1, "docs": { "*": ["read"] } }),
    );
    let (status, body) = refused(request(&with_token(&server.url("doc"), &stale), &[])?).await?;
    assert_eq!((status, body.as_str()), (401, "token expired"));
    server.stop().await
}
