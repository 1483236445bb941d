//! How many new documents one caller may create (issue 13, item 12): an anonymous script
//! created 42,112 documents in 20 s. Past the caller's burst, creating is refused with 429 and
//! `Retry-After` (on REST, SSE and the WebSocket upgrade) while existing documents stay open.

use tandem_server::Config;
use tandem_tests::{http_get, http_request, SyncClient, TestServer};
use yrs::{Doc, Map, Transact, WriteTxn};

fn update() -> Vec<u8> {
    let doc = Doc::new();
    let mut txn = doc.transact_mut();
    txn.get_or_insert_map("m").insert(&mut txn, "k", 1);
    txn.encode_update_v1()
}

#[tokio::test]
async fn new_documents_past_the_burst_are_refused_and_existing_ones_stay_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        doc_creations_per_min: 1,
        doc_creation_burst: 3,
        ..Config::default()
    };
    let server = TestServer::start(dir.path(), config).await.expect("server");
    for i in 0..3 {
        let response = http_request(
            server.addr,
            "POST",
            &format!("/docs/new-{i}/update"),
            &[],
            &update(),
        )
        .await
        .expect("response");
        assert_eq!(response.status, 204);
    }
    let refused = http_request(server.addr, "POST", "/docs/new-3/update", &[], &update())
        .await
        .expect("response");
    assert_eq!(refused.status, 429);
    assert!(String::from_utf8_lossy(&refused.body).contains("rate_limited"));
    let wait: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    // Nothing was created: the refused name does not exist.
    let missing = http_get(server.addr, "/docs/new-3/json", &[])
        .await
        .expect("json");
    assert_eq!(missing.status, 404);
    // Existing documents cost nothing: writes, streams and sockets keep working.
    let again = http_request(server.addr, "POST", "/docs/new-0/update", &[], &update())
        .await
        .expect("response");
    assert_eq!(again.status, 204);
    SyncClient::connect_synced(&server.url("new-1"))
        .await
        .expect("an existing document opens");
    // A new one does not, on any path.
    let upgrade =
        tandem_tests::refused(tandem_tests::request(&server.url("new-4"), &[]).expect("request"))
            .await
            .expect("refused");
    assert_eq!(upgrade.0, 429, "{upgrade:?}");
    let stream = http_get(server.addr, "/docs/new-5/events", &[])
        .await
        .expect("events");
    assert_eq!(stream.status, 429);
    server.stop().await.expect("stop");
}
