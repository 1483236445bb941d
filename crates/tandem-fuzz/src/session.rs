//! `session`: a script of frames from several peers, some read-only, into one document actor.

use arbitrary::Arbitrary;
use tandem_core::nesting;
use tandem_core::protocol::{
    encode_awareness, encode_sync_step1, encode_sync_step2, encode_update,
};
use tandem_core::Rights;
use yrs::{Map, ReadTxn, Text, Transact, WriteTxn};

use crate::edits::{self, Edit};
use crate::server::{reload, server_state, Connection, Server};

/// Peers in a session, at most.
const MAX_PEERS: usize = 4;

/// What a peer may do.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// May change the document.
    ReadWrite,
    /// May not: every change it sends must be dropped.
    ReadOnly,
}

/// A session: who takes part and what they send, in order.
#[derive(Arbitrary, Debug)]
pub struct SessionScript {
    /// The peers (the first four count).
    pub peers: Vec<Access>,
    /// What happens.
    pub steps: Vec<Step>,
}

/// One thing a peer does.
#[derive(Arbitrary, Debug)]
pub enum Step {
    /// Edits its own copy and sends the update, as a client does.
    Edit {
        /// Which peer (modulo the count).
        peer: u8,
        /// The edit.
        edit: Edit,
    },
    /// Sends sync step 1 with its state vector.
    SyncStep1 {
        /// Which peer.
        peer: u8,
    },
    /// Sends, as sync step 2, everything it has that the server's last state vector lacks.
    SyncStep2 {
        /// Which peer.
        peer: u8,
    },
    /// Sends arbitrary bytes as one frame.
    Raw {
        /// Which peer.
        peer: u8,
        /// The frame.
        frame: Vec<u8>,
    },
    /// Sends arbitrary bytes as the payload of an update message.
    HostileUpdate {
        /// Which peer.
        peer: u8,
        /// The payload.
        update: Vec<u8>,
    },
    /// Sends one of its own updates again, or one from another peer.
    Replay {
        /// Which peer sends.
        peer: u8,
        /// Which earlier update (modulo the count).
        pick: u16,
    },
    /// Sends, from a fresh client, a change that uses a root under another type than the other
    /// peers do: map entries in the root `text`, or text in the root `map` (what a buggy or
    /// hostile writer does; Yjs roots carry no type on the wire).
    MixedRoot {
        /// Which peer.
        peer: u8,
        /// Map entries into `text` (true) or text into `map` (false).
        map_into_text: bool,
        /// The content.
        text: edits::Short,
    },
    /// Sends, from a fresh client, maps nested `levels` deep under the root `map`: past
    /// `MAX_TYPE_NESTING` the update must be refused whole.
    Nest {
        /// Which peer.
        peer: u8,
        /// How many maps, one inside the other.
        levels: u8,
    },
    /// Sends one frame repeating one message many times: the amplification of many answers
    /// asked for in one frame.
    Repeat {
        /// Which peer.
        peer: u8,
        /// What is repeated.
        message: Repeated,
        /// How many times (at most 4,096).
        count: u16,
    },
    /// Publishes (or removes) awareness states for many client ids at once: one connection
    /// posing as a crowd.
    Crowd {
        /// Which peer.
        peer: u8,
        /// How many client ids, from 1 on.
        clients: u8,
        /// Removals (of clients the document may not know) instead of states.
        removals: bool,
    },
    /// Leaves and joins again (a reconnect).
    Reconnect {
        /// Which peer.
        peer: u8,
    },
}

/// A message a [`Step::Repeat`] frame repeats.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeated {
    /// Sync step 1 with an empty state vector: each asks for the whole document.
    SyncStep1,
    /// Query-awareness: each asks for every presence state.
    QueryAwareness,
}

struct Peer {
    access: Access,
    doc: yrs::Doc,
    conn: Option<Connection>,
}

/// Runs a session against a fresh server and checks, after every step and at the end:
/// - nothing panics (a panic is the finding),
/// - a read-only peer's frames never change the document (its full encoded state is the same
///   before and after),
/// - the document always encodes to an update that decodes and loads without missing parts,
/// - after a restart from the store the document is exactly what it was in memory.
pub fn session(script: &SessionScript) {
    crate::server::block_on(run(script));
}

async fn run(script: &SessionScript) {
    let mut server = Server::start();
    let mut peers: Vec<Peer> = Vec::new();
    for &access in script.peers.iter().take(MAX_PEERS) {
        peers.push(Peer {
            access,
            doc: yrs::Doc::new(),
            conn: None,
        });
    }
    if peers.is_empty() {
        peers.push(Peer {
            access: Access::ReadWrite,
            doc: yrs::Doc::new(),
            conn: None,
        });
    }
    let mut sent: Vec<Vec<u8>> = Vec::new();
    for step in &script.steps {
        let index = match step {
            Step::Edit { peer, .. }
            | Step::SyncStep1 { peer }
            | Step::SyncStep2 { peer }
            | Step::Raw { peer, .. }
            | Step::HostileUpdate { peer, .. }
            | Step::Replay { peer, .. }
            | Step::MixedRoot { peer, .. }
            | Step::Nest { peer, .. }
            | Step::Repeat { peer, .. }
            | Step::Crowd { peer, .. }
            | Step::Reconnect { peer } => usize::from(*peer) % peers.len(),
        };
        let p = &mut peers[index];
        if let Step::Reconnect { .. } = step {
            if let Some(conn) = p.conn.take() {
                conn.leave().await;
            }
            continue;
        }
        let frame = match step {
            Step::Edit { edit, .. } => match edits::apply(&p.doc, edit) {
                Some(update) => encode_update(&update).to_vec(),
                None => continue,
            },
            Step::SyncStep1 { .. } => encode_sync_step1(&p.doc.transact().state_vector()).to_vec(),
            Step::SyncStep2 { .. } => {
                let (_, sv, _) = server_state(&server).await;
                encode_sync_step2(&p.doc.transact().encode_state_as_update_v1(&sv)).to_vec()
            }
            Step::Raw { frame, .. } => frame.clone(),
            Step::HostileUpdate { update, .. } => encode_update(update).to_vec(),
            Step::Replay { pick, .. } => {
                if sent.is_empty() {
                    continue;
                }
                sent[usize::from(*pick) % sent.len()].clone()
            }
            Step::MixedRoot {
                map_into_text,
                text,
                ..
            } => encode_update(&mixed_root(*map_into_text, &text.0)).to_vec(),
            Step::Nest { levels, .. } => encode_update(&nested(usize::from(*levels))).to_vec(),
            Step::Repeat { message, count, .. } => repeated(*message, *count),
            Step::Crowd {
                clients, removals, ..
            } => {
                let state = (!*removals).then_some(r#"{"user":"crowd"}"#);
                let entries: Vec<_> = (1..=u64::from(*clients))
                    .map(|client| (client, 1, state))
                    .collect();
                encode_awareness(entries.into_iter()).to_vec()
            }
            Step::Reconnect { .. } => unreachable!("handled above"),
        };
        sent.push(frame.clone());
        if p.conn.is_none() {
            let rights = match p.access {
                Access::ReadWrite => Rights::ALL,
                Access::ReadOnly => Rights::READ,
            };
            p.conn = Some(Connection::join(&server, rights).await);
        }
        let state_before = if p.access == Access::ReadOnly {
            Some(server_state(&server).await)
        } else {
            None
        };
        let conn = p.conn.as_mut().expect("joined above");
        let outcome = match conn.send(&frame).await {
            Ok(()) => conn.receive().await.map(drop),
            Err(closed) => Err(closed),
        };
        if outcome.is_err() {
            // The connection is closed (malformed frame, eviction, failed document): the
            // client would reconnect.
            if let Some(conn) = p.conn.take() {
                conn.leave().await;
            }
        }
        let (state, sv, json) = server_state(&server).await;
        if let Some((state_before, sv_before, json_before)) = state_before {
            assert_eq!(sv_before, sv, "a read-only peer changed the state vector");
            assert_eq!(json_before, json, "a read-only peer changed the document");
            assert_eq!(state_before, state, "a read-only peer changed the document");
        }
        let (reloaded_sv, reloaded_json) = reload(&state);
        assert_eq!(
            reloaded_sv, sv,
            "the encoded state has another state vector"
        );
        assert_eq!(reloaded_json, json, "the encoded state reads differently");
        let deepest = nesting::deepest_in(&state).expect("the server's own encoding");
        assert!(
            deepest <= nesting::MAX_TYPE_NESTING,
            "the document nests {deepest} deep"
        );
    }
    for p in &mut peers {
        if let Some(conn) = p.conn.take() {
            conn.leave().await;
        }
    }
    let before = server_state(&server).await;
    server.restart().await;
    let after = server_state(&server).await;
    assert_eq!(
        before.1, after.1,
        "the state vector changed across a restart"
    );
    assert_eq!(before.2, after.2, "the document changed across a restart");
    server.stop().await;
}

/// An update from a fresh client nesting `levels` maps, one inside the other, under `map`.
fn nested(levels: usize) -> Vec<u8> {
    let doc = yrs::Doc::new();
    let mut txn = doc.transact_mut();
    let mut map = txn.get_or_insert_map(edits::MAP);
    for _ in 0..levels {
        map = map.insert(&mut txn, "nest", yrs::MapPrelim::default());
    }
    txn.encode_update_v1()
}

/// One frame holding `count` (at most 4,096) copies of one message.
fn repeated(message: Repeated, count: u16) -> Vec<u8> {
    let one = match message {
        Repeated::SyncStep1 => encode_sync_step1(&yrs::StateVector::default()).to_vec(),
        Repeated::QueryAwareness => vec![3],
    };
    one.repeat(usize::from(count.clamp(1, 4096)))
}

/// An update from a fresh client writing into a root under the other type.
fn mixed_root(map_into_text: bool, text: &str) -> Vec<u8> {
    let doc = yrs::Doc::new();
    let mut txn = doc.transact_mut();
    if map_into_text {
        txn.get_or_insert_map(edits::TEXT)
            .insert(&mut txn, "k", text);
    } else {
        txn.get_or_insert_text(edits::MAP).insert(&mut txn, 0, text);
    }
    txn.encode_update_v1()
}
