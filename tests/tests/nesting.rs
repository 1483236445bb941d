//! Deeply nested shared types (issue 13, item 1): an update nesting `Y.Map`s thousands deep
//! used to be stored, and the next JSON read overflowed the stack and aborted the process.
//! Now nesting past `MAX_TYPE_NESTING` is refused up front, on every path, in one update or
//! built up over many, and everything else keeps working.

use tandem_core::nesting::MAX_TYPE_NESTING;
use tandem_server::Config;
use tandem_tests::{http_get, http_request, Closed, SyncClient, TestServer};
use yrs::{Doc, Map, MapPrelim, MapRef, Transact, WriteTxn};

/// An update putting `levels` maps one inside the other under root map `m` (the root is at
/// depth 1, so the innermost map is at depth `levels + 1`).
fn nested_update(levels: usize) -> Vec<u8> {
    let doc = Doc::with_client_id(42);
    let mut txn = doc.transact_mut();
    let mut map: MapRef = txn.get_or_insert_map("m");
    for _ in 0..levels {
        map = map.insert(&mut txn, "k", MapPrelim::default());
    }
    txn.encode_update_v1()
}

async fn post_update(server: &TestServer, doc: &str, update: &[u8]) -> (u16, String) {
    let response = http_request(
        server.addr,
        "POST",
        &format!("/docs/{doc}/update"),
        &[],
        update,
    )
    .await
    .expect("response");
    (
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

#[tokio::test]
async fn thousands_of_nested_maps_are_refused_and_reads_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), Config::default())
        .await
        .expect("server");
    let (status, body) = post_update(&server, "deep", &nested_update(5_000)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("nested_too_deeply"), "{body}");
    let json = http_get(server.addr, "/docs/deep/json", &[])
        .await
        .expect("json");
    assert_eq!(json.status, 200);
    assert_eq!(json.body, b"{}");
    assert_eq!(
        http_get(server.addr, "/healthz", &[])
            .await
            .expect("healthz")
            .status,
        200
    );
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn the_limit_is_accepted_and_one_more_level_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), Config::default())
        .await
        .expect("server");
    let limit = usize::from(MAX_TYPE_NESTING);
    let (status, body) = post_update(&server, "at-limit", &nested_update(limit - 1)).await;
    assert_eq!(status, 204, "{body}");
    let json = http_get(server.addr, "/docs/at-limit/json", &[])
        .await
        .expect("json");
    assert_eq!(json.status, 200);
    let (status, body) = post_update(&server, "past-limit", &nested_update(limit)).await;
    assert_eq!(status, 422, "{body}");
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn nesting_built_up_one_level_per_update_is_refused_past_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), Config::default())
        .await
        .expect("server");
    let mut client = SyncClient::connect_synced(&server.url("stairs"))
        .await
        .expect("client");
    let limit = usize::from(MAX_TYPE_NESTING);
    let mut map = client.doc.get_or_insert_map("m");
    // One level per update, each placed in the map the previous update made: only the
    // server's knowledge of the document tells how deep each one lands.
    for _ in 0..limit - 1 {
        let mut inner = None;
        client
            .edit(|txn| inner = Some(map.insert(txn, "k", MapPrelim::default())))
            .await
            .expect("edit");
        map = inner.expect("inserted");
    }
    client.sync().await.expect("every level so far was applied");
    client
        .edit(|txn| {
            map.insert(txn, "k", MapPrelim::default());
        })
        .await
        .expect("edit");
    assert_eq!(
        client.closed().await.expect("closed"),
        Closed::Code(tandem_server::CLOSE_POLICY)
    );
    // The refused level is not in the document; after a restart it loads as deep as before.
    server.stop().await.expect("stop");
    let server = TestServer::start(dir.path(), Config::default())
        .await
        .expect("server");
    let json = http_get(server.addr, "/docs/stairs/json", &[])
        .await
        .expect("json");
    assert_eq!(json.status, 200);
    let text = String::from_utf8(json.body).expect("utf-8");
    assert_eq!(text.matches("\"k\"").count(), limit - 1);
    let (status, _) = post_update(&server, "stairs", &nested_update(3)).await;
    assert_eq!(status, 204, "a shallow change still goes in");
    server.stop().await.expect("stop");
}
