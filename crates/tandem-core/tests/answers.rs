//! Costly answers are not computed again while the previous one waits in the peer's queue: a
//! frame of a thousand sync step 1s or awareness queries costs one encoding, not a thousand.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_core::peer::{queue, PeerId, PeerInbox};
use tandem_core::protocol::{
    decode_frame, encode_awareness, encode_sync_step2, ClientMessage, MSG_AWARENESS,
};
use tandem_core::{DocConfig, DocName, Registry, SledStore};
use yrs::{StateVector, Text, Transact, Update, WriteTxn};

async fn next(inbox: &mut PeerInbox) -> Bytes {
    tokio::time::timeout(Duration::from_secs(5), inbox.recv())
        .await
        .expect("a frame in time")
        .expect("the peer is joined")
}

fn is_step2(frame: &[u8]) -> bool {
    matches!(
        &decode_frame(frame).expect("decodes")[..],
        [ClientMessage::SyncStep2(_)]
    )
}

#[tokio::test]
async fn a_duplicate_sync_step_1_is_not_answered_in_full_while_the_first_answer_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Registry::new(
        Arc::new(SledStore::open(dir.path()).expect("open")),
        DocConfig::default(),
    );
    let content = {
        let doc = yrs::Doc::new();
        let mut txn = doc.transact_mut();
        txn.get_or_insert_text("t")
            .insert(&mut txn, 0, &"x".repeat(10_000));
        txn.encode_update_v1()
    };
    let document = registry.document("d").await.expect("load");
    document
        .apply_update_durable(&content)
        .await
        .expect("applied");
    let peer = PeerId::next();
    let (outbox, mut inbox) = queue(64);
    let handle = registry
        .join(&DocName::from("d"), peer, outbox)
        .await
        .expect("join");
    let joined = next(&mut inbox).await;
    assert!(matches!(
        &decode_frame(&joined).expect("decodes")[..],
        [ClientMessage::SyncStep1(_)]
    ));

    let step1 = || ClientMessage::SyncStep1(StateVector::default());
    handle
        .send(peer, vec![step1(), step1(), step1()])
        .await
        .expect("send");
    let first = next(&mut inbox).await;
    assert!(
        is_step2(&first) && first.len() > 10_000,
        "the first is answered in full"
    );
    let empty = encode_sync_step2(Update::EMPTY_V1);
    for _ in 0..2 {
        let answer = next(&mut inbox).await;
        assert!(
            answer == empty,
            "the others are answered, in order, with nothing (the first answer holds it all), \
             not with {} bytes",
            answer.len()
        );
    }
    // Once the answer left the queue, a new request is answered in full again.
    handle.send(peer, vec![step1()]).await.expect("send");
    assert!(next(&mut inbox).await == first);
    registry.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_duplicate_awareness_query_is_dropped_while_the_first_answer_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Registry::new(
        Arc::new(SledStore::open(dir.path()).expect("open")),
        DocConfig::default(),
    );
    let name = DocName::from("d");
    let (present, watcher) = (PeerId::next(), PeerId::next());
    let (outbox, _present_inbox) = queue(64);
    let present_handle = registry.join(&name, present, outbox).await.expect("join");
    let state = format!(r#"{{"note":"{}"}}"#, "y".repeat(5_000));
    let update = encode_awareness([(7, 1, Some(state.as_str()))].into_iter());
    present_handle
        .send(present, decode_frame(&update).expect("decodes"))
        .await
        .expect("send");

    let (outbox, mut inbox) = queue(64);
    let handle = registry.join(&name, watcher, outbox).await.expect("join");
    // On join: a sync step 1 and every awareness state.
    next(&mut inbox).await;
    let states = next(&mut inbox).await;
    assert_eq!(u64::from(states[0]), MSG_AWARENESS);
    handle
        .send(
            watcher,
            vec![
                ClientMessage::QueryAwareness,
                ClientMessage::QueryAwareness,
                ClientMessage::QueryAwareness,
                ClientMessage::SyncStep1(StateVector::default()),
            ],
        )
        .await
        .expect("send");
    assert_eq!(
        next(&mut inbox).await,
        states,
        "the first query is answered"
    );
    assert!(
        is_step2(&next(&mut inbox).await),
        "the other queries are dropped while the answer waits"
    );
    registry.shutdown().await.expect("shutdown");
}
