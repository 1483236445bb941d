//! Micro-benchmarks of the paths every frame takes through a document, with criterion:
//!
//! - **frame decode**: `protocol::decode_frame` on a keystroke update frame and on an awareness
//!   frame, as a connection task does before anything reaches a document;
//! - **update apply + encode**: integrating keystroke updates into a `yrs::Doc` one transaction
//!   each and encoding what each changed as the broadcast frame, as a document actor does;
//! - **broadcast**: one frame pushed into N peer queues (`PeerOutbox::push`, a reference-counted
//!   clone each) and taken out again by each connection (`PeerInbox::try_recv`);
//! - **awareness coalescing**: 200 peers' cursor moves applied to an `AwarenessTable`, then one
//!   frame with the newest state of each encoded, as one awareness interval does.
//!
//! Run with: `cargo bench -p tandem-core` (or `cargo bench -p tandem-core -- broadcast` for one
//! group). Timing depends on the machine, so nothing checks these numbers; `cargo test` builds
//! this file but does not run it.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use tandem_core::awareness::AwarenessTable;
use tandem_core::peer::{self, PeerId};
use tandem_core::protocol::{self, AwarenessEntry, AwarenessUpdate, ClientMessage};
use tokio::time::Instant;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, Text, Transact, Update};

/// Keystrokes typed into the document whose updates are replayed.
const KEYSTROKES: usize = 2_000;

/// Peers of the awareness benchmark (the presence-storm workload's count).
const AWARENESS_PEERS: u64 = 200;

/// The v1 updates of `count` keystrokes typed by one client, each its own transaction: mostly
/// appends, every seventh one typed in the middle and every eleventh a deletion, so the updates
/// are not all the same shape.
fn keystrokes(count: usize) -> Vec<Vec<u8>> {
    let doc = Doc::with_client_id(1);
    let text = doc.get_or_insert_text("text");
    (0..count)
        .map(|i| {
            let mut txn = doc.transact_mut();
            let len = text.len(&txn);
            if i % 11 == 10 && len > 0 {
                text.remove_range(&mut txn, len / 2, 1);
            } else {
                let at = if i % 7 == 6 { len / 2 } else { len };
                text.insert(&mut txn, at, "x");
            }
            txn.encode_update_v1()
        })
        .collect()
}

/// An awareness state the size of y-codemirror's: a user and a cursor.
fn cursor_state(peer: u64, tick: u64) -> Arc<str> {
    Arc::from(format!(
        r##"{{"user":{{"name":"peer-{peer}","color":"#30bced","colorLight":"#30bced33"}},"cursor":{{"anchor":{tick},"head":{tick}}}}}"##
    ))
}

fn frame_decode(c: &mut Criterion) {
    let update = protocol::encode_update(&keystrokes(1)[0]);
    let awareness = protocol::encode_awareness(std::iter::once((7, 3, Some(&*cursor_state(7, 3)))));
    let mut group = c.benchmark_group("frame_decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("update", |b| {
        b.iter(|| {
            let messages = protocol::decode_frame(black_box(&update)).expect("a valid frame");
            assert!(matches!(messages[0], ClientMessage::Update(_)));
            messages
        })
    });
    group.bench_function("awareness", |b| {
        b.iter(|| protocol::decode_frame(black_box(&awareness)).expect("a valid frame"))
    });
    group.finish();
}

fn update_apply_encode(c: &mut Criterion) {
    let updates = keystrokes(KEYSTROKES);
    let expected = {
        let doc = Doc::new();
        let text = doc.get_or_insert_text("text");
        for update in &updates {
            let update = Update::decode_v1(update).expect("a valid update");
            doc.transact_mut().apply_update(update).expect("integrates");
        }
        let txn = doc.transact();
        text.get_string(&txn)
    };
    let mut group = c.benchmark_group("update_apply_encode");
    group.throughput(Throughput::Elements(KEYSTROKES as u64));
    group.sample_size(20);
    group.bench_function(BenchmarkId::new("keystrokes", KEYSTROKES), |b| {
        b.iter_batched(
            || {
                let doc = Doc::new();
                let text = doc.get_or_insert_text("text");
                (doc, text)
            },
            |(doc, text)| {
                let mut broadcast = 0usize;
                for update in &updates {
                    let update = protocol::decode_update(update).expect("a valid update");
                    let mut txn = doc.transact_mut();
                    txn.apply_update(update).expect("integrates");
                    broadcast += protocol::encode_update(&txn.encode_update_v1()).len();
                }
                assert_eq!(text.get_string(&doc.transact()), expected);
                broadcast
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn broadcast(c: &mut Criterion) {
    let frame = protocol::encode_update(&keystrokes(1)[0]);
    let mut group = c.benchmark_group("broadcast");
    for peers in [10usize, 100, 1_000] {
        let (outboxes, mut inboxes): (Vec<_>, Vec<_>) =
            (0..peers).map(|_| peer::queue(1024)).unzip();
        group.throughput(Throughput::Elements(peers as u64));
        group.bench_function(BenchmarkId::new("peers", peers), |b| {
            b.iter(|| {
                for outbox in &outboxes {
                    outbox.push(Bytes::clone(black_box(&frame)));
                }
                for inbox in &mut inboxes {
                    black_box(inbox.try_recv().expect("the frame just pushed"));
                }
            })
        });
    }
    group.finish();
}

fn awareness_coalescing(c: &mut Criterion) {
    let mut group = c.benchmark_group("awareness_coalescing");
    group.throughput(Throughput::Elements(AWARENESS_PEERS));
    let mut table = AwarenessTable::default();
    let mut tick = 0u64;
    let now = Instant::now();
    group.bench_function(BenchmarkId::new("peers", AWARENESS_PEERS), |b| {
        b.iter_batched(
            || {
                tick += 1;
                (0..AWARENESS_PEERS)
                    .map(|peer| AwarenessUpdate {
                        entries: vec![AwarenessEntry {
                            client: 1_000 + peer,
                            clock: tick,
                            state: Some(cursor_state(peer, tick)),
                        }],
                    })
                    .collect::<Vec<_>>()
            },
            |moves| {
                let mut changed = Vec::with_capacity(moves.len());
                for (peer, update) in moves.into_iter().enumerate() {
                    let applied = table.apply(PeerId(peer as u64 + 1), update, now, |_| false);
                    changed.extend(applied.changed);
                }
                assert_eq!(changed.len(), AWARENESS_PEERS as usize);
                table.encode(&changed)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The groups, in the order they run (a module of their own: `criterion_group!` makes a public
/// function it cannot document).
mod groups {
    use super::{awareness_coalescing, broadcast, frame_decode, update_apply_encode};

    criterion::criterion_group!(
        benches,
        frame_decode,
        update_apply_encode,
        broadcast,
        awareness_coalescing
    );
}

criterion_main!(groups::benches);
