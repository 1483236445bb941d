//! Presence that cannot grow without bound (issue 13, items 6 and 13): a connection publishes
//! a few client ids at most, a document's states take a bounded number of bytes, and awareness
//! JSON nests no deeper than update content. (That removals of unknown clients are not stored
//! is a unit test of `AwarenessTable`: nothing outside the table can see it.)

use tandem_core::protocol::encode_awareness;
use tandem_server::{Config, CLOSE_POLICY, CLOSE_PROTOCOL_ERROR};
use tandem_tests::{http_get, Closed, SyncClient, TestServer};

async fn server(dir: &std::path::Path, config: Config) -> TestServer {
    TestServer::start(dir, config).await.expect("server")
}

#[tokio::test]
async fn one_connection_posing_as_a_crowd_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), Config::default()).await;
    let mut crowd = SyncClient::connect_synced(&server.url("room"))
        .await
        .expect("client");
    let states: Vec<(u64, u64, Option<&str>)> =
        (1..=300).map(|client| (client, 1, Some("{}"))).collect();
    crowd
        .send_raw(encode_awareness(states.into_iter()).to_vec())
        .await
        .expect("send");
    assert_eq!(
        crowd.closed().await.expect("closed"),
        Closed::Code(CLOSE_POLICY)
    );
    // What it published before the limit goes with it.
    let deadline = std::time::Instant::now() + tandem_tests::DEADLINE;
    loop {
        let presence = http_get(server.addr, "/docs/room/presence", &[])
            .await
            .expect("presence");
        let body: serde_json::Value = serde_json::from_slice(&presence.body).expect("json");
        let states = body["clients"].as_array().expect("clients").len();
        assert!(
            states <= tandem_core::config::DEFAULT_MAX_PRESENCE_CLIENTS,
            "{body}"
        );
        if states == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "states still shown: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn a_documents_presence_is_bounded_in_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.doc.max_presence_bytes = 64 * 1024;
    let server = server(dir.path(), config).await;
    let state = format!("{{\"pad\":\"{}\"}}", "x".repeat(30 * 1024));
    let mut first = SyncClient::connect_synced(&server.url("board"))
        .await
        .expect("first");
    first
        .set_awareness(1, Some(&state))
        .await
        .expect("first state");
    let mut second = SyncClient::connect_synced(&server.url("board"))
        .await
        .expect("second");
    second
        .set_awareness(1, Some(&state))
        .await
        .expect("second state");
    let mut third = SyncClient::connect_synced(&server.url("board"))
        .await
        .expect("third");
    third
        .set_awareness(1, Some(&state))
        .await
        .expect("third state");
    assert_eq!(
        third.closed().await.expect("closed"),
        Closed::Code(CLOSE_POLICY)
    );
    // The others stay, and a small state still fits.
    let mut small = SyncClient::connect_synced(&server.url("board"))
        .await
        .expect("small");
    small
        .set_awareness(1, Some("{}"))
        .await
        .expect("small state");
    small
        .pump_until("both big states and its own", |client| {
            client.awareness.values().filter(|s| s.is_some()).count() == 3
        })
        .await
        .expect("three states");
    first.sync().await.expect("first still connected");
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn deeply_nested_awareness_json_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path(), Config::default()).await;
    let mut client = SyncClient::connect_synced(&server.url("deep"))
        .await
        .expect("client");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    client
        .send_raw(encode_awareness([(1, 1, Some(deep.as_str()))].into_iter()).to_vec())
        .await
        .expect("send");
    assert_eq!(
        client.closed().await.expect("closed"),
        Closed::Code(CLOSE_PROTOCOL_ERROR)
    );
    server.stop().await.expect("stop");
}
