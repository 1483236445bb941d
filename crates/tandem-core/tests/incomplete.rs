//! Updates that build on changes the document lacks are not kept pending inside yrs (where
//! neither state vectors nor the store would show them): they are reported as incomplete, a
//! peer is asked for what is missing, and the stored document always equals the live one.

use std::sync::Arc;
use std::time::Duration;

use tandem_core::peer::{queue, PeerId};
use tandem_core::protocol::{decode_frame, encode_update, ClientMessage};
use tandem_core::{DocConfig, DocName, Registry, SledStore, UpdateError};
use yrs::{Text, Transact, WriteTxn};

/// Two updates from one client: the second inserts after text the first one wrote.
fn dependent_updates() -> (Vec<u8>, Vec<u8>) {
    let doc = yrs::Doc::with_client_id(42);
    let first = {
        let mut txn = doc.transact_mut();
        txn.get_or_insert_text("t").insert(&mut txn, 0, "hello");
        txn.encode_update_v1()
    };
    let second = {
        let mut txn = doc.transact_mut();
        txn.get_or_insert_text("t").insert(&mut txn, 5, " world");
        txn.encode_update_v1()
    };
    (first, second)
}

#[tokio::test]
async fn an_incomplete_update_is_refused_and_nothing_stays_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Registry::new(
        Arc::new(SledStore::open(dir.path()).expect("open")),
        DocConfig::default(),
    );
    let doc = registry.document("d").await.expect("load");
    let (first, second) = dependent_updates();
    assert!(matches!(
        doc.apply_update_durable(&second).await,
        Err(UpdateError::Incomplete)
    ));
    assert_eq!(doc.get_json().await.expect("json"), serde_json::json!({}));
    doc.apply_update_durable(&first).await.expect("complete");
    doc.apply_update_durable(&second)
        .await
        .expect("complete now");
    let json = doc.get_json().await.expect("json");
    assert_eq!(json, serde_json::json!({ "t": "hello world" }));
    registry.shutdown().await.expect("shutdown");
    // The document handle holds the registry, which holds the store and its lock.
    drop((doc, registry));

    let registry = Registry::new(
        Arc::new(SledStore::open(dir.path()).expect("reopen")),
        DocConfig::default(),
    );
    let reloaded = registry.document("d").await.expect("load");
    assert_eq!(reloaded.get_json().await.expect("json"), json);
    registry.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_peer_whose_update_is_incomplete_is_asked_for_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Registry::new(
        Arc::new(SledStore::open(dir.path()).expect("open")),
        DocConfig::default(),
    );
    let peer = PeerId::next();
    let (outbox, mut inbox) = queue(16);
    let handle = registry
        .join(&DocName::from("d"), peer, outbox)
        .await
        .expect("join");
    let joined = inbox.recv().await.expect("sync step 1 on join");
    assert!(matches!(
        &decode_frame(&joined).expect("decodes")[..],
        [ClientMessage::SyncStep1(_)]
    ));
    let (_, second) = dependent_updates();
    let messages = decode_frame(&encode_update(&second)).expect("decodes");
    handle.send(peer, messages).await.expect("send");
    let asked = tokio::time::timeout(Duration::from_secs(5), inbox.recv())
        .await
        .expect("an answer")
        .expect("a frame");
    assert!(
        matches!(&decode_frame(&asked).expect("decodes")[..], [ClientMessage::SyncStep1(sv)] if sv.is_empty()),
        "the peer is asked for everything from its state vector on"
    );
    registry.shutdown().await.expect("shutdown");
}
