//! Hardening of the HTTP surface against a hostile client (issue 13): tokens whose expiry no
//! clock can hold, document names that are not UTF-8, and HTTP presence ownership, caps and rate.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use tandem_core::auth::jwt::unix_now;
use tandem_core::auth::{Authorizer, JwtAuthorizer};
use tandem_core::SledStore;
use tandem_server::{Config, Tandem};
use tandem_tests::{http_get, refused, request, TestServer};

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
