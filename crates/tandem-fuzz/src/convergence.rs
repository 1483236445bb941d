//! `convergence`: simulated clients edit their own `yrs::Doc`s and talk y-websocket to the real
//! server core through a network the fuzzer controls. Once it quiesces, all must agree.

use std::collections::VecDeque;

use arbitrary::Arbitrary;
use bytes::Bytes;
use tandem_core::peer::Eviction;
use tandem_core::protocol::{decode_frame, encode_sync_step1, encode_sync_step2, encode_update};
use tandem_core::protocol::{ClientMessage, ReceivedUpdate};
use tandem_core::Rights;
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, Transact};

use crate::edits::{self, Edit};
use crate::server::{reload, server_state, Closed, Connection, Server};

/// Clients in a run: 2 to 4.
const MIN_CLIENTS: u8 = 2;
const MAX_CLIENTS: u8 = 4;

/// Rounds of delivering everything in the final, loss-free phase before giving up: each round
/// moves every queued frame one hop, and a sync needs three.
const QUIESCE_ROUNDS: usize = 32;

/// A run: how many clients and what happens.
#[derive(Arbitrary, Debug)]
pub struct ConvergenceScript {
    /// 2 + this modulo 3 clients.
    pub clients: u8,
    /// What happens, in order.
    pub ops: Vec<NetOp>,
}

/// One event: an edit, or something the network or the server does.
#[derive(Arbitrary, Debug)]
pub enum NetOp {
    /// A client edits its document (and sends the update if connected).
    Edit {
        /// Which client (modulo the count).
        client: u8,
        /// The edit.
        edit: Edit,
    },
    /// Delivers one queued frame, picked anywhere in the queue (reordering).
    Deliver {
        /// Which client's link.
        client: u8,
        /// Towards the server, or towards the client.
        up: bool,
        /// Which frame (modulo the queue's length).
        pick: u8,
    },
    /// Delivers a copy of a queued frame and keeps it queued.
    Duplicate {
        /// Which client's link.
        client: u8,
        /// Towards the server, or towards the client.
        up: bool,
        /// Which frame.
        pick: u8,
    },
    /// Loses a queued frame.
    Drop {
        /// Which client's link.
        client: u8,
        /// Towards the server, or towards the client.
        up: bool,
        /// Which frame.
        pick: u8,
    },
    /// Delivers everything queued on a link, in order.
    Flush {
        /// Which client's link.
        client: u8,
    },
    /// The connection breaks; what was in flight is lost.
    Disconnect {
        /// Which client.
        client: u8,
    },
    /// A disconnected client connects again and syncs (sync step 1 both ways).
    Reconnect {
        /// Which client.
        client: u8,
    },
    /// The server stops (storing every document) and starts again from its store; every
    /// connection breaks.
    Restart,
}

/// One client's connection: the server's end and the frames in flight both ways.
struct Link {
    conn: Connection,
    up: VecDeque<Bytes>,
    down: VecDeque<Bytes>,
}

struct Client {
    doc: yrs::Doc,
    link: Option<Link>,
}

/// Runs a script and checks that, after the network quiesces (every client reconnects and
/// every frame is delivered), every client and the server have the same state vector and the
/// same JSON, and that the server's state decodes and survives a restart unchanged. An honest
/// client is never cut off for its updates.
pub fn convergence(script: &ConvergenceScript) {
    crate::server::block_on(run(script));
}

async fn run(script: &ConvergenceScript) {
    let count = MIN_CLIENTS + script.clients % (MAX_CLIENTS - MIN_CLIENTS + 1);
    let mut server = Server::start();
    let mut clients: Vec<Client> = (0..count)
        .map(|i| Client {
            doc: yrs::Doc::with_client_id(u64::from(i) + 1),
            link: None,
        })
        .collect();
    for client in &mut clients {
        edits::roots(&client.doc);
        connect(&server, client).await;
    }
    for op in &script.ops {
        let n = clients.len();
        let pick_client = |c: &u8| usize::from(*c) % n;
        match op {
            NetOp::Edit { client, edit } => {
                let c = &mut clients[pick_client(client)];
                if let Some(update) = edits::apply(&c.doc, edit) {
                    if let Some(link) = &mut c.link {
                        link.up.push_back(encode_update(&update));
                    }
                }
            }
            NetOp::Deliver { client, up, pick } | NetOp::Duplicate { client, up, pick } => {
                let keep = matches!(op, NetOp::Duplicate { .. });
                let c = &mut clients[pick_client(client)];
                deliver(c, *up, Some(usize::from(*pick)), keep).await;
            }
            NetOp::Drop { client, up, pick } => {
                let c = &mut clients[pick_client(client)];
                if let Some(link) = &mut c.link {
                    let queue = if *up { &mut link.up } else { &mut link.down };
                    if !queue.is_empty() {
                        queue.remove(usize::from(*pick) % queue.len());
                    }
                }
            }
            NetOp::Flush { client } => {
                let c = &mut clients[pick_client(client)];
                flush(c).await;
            }
            NetOp::Disconnect { client } => {
                disconnect(&mut clients[pick_client(client)]).await;
            }
            NetOp::Reconnect { client } => {
                let c = &mut clients[pick_client(client)];
                if c.link.is_none() {
                    connect(&server, c).await;
                }
            }
            NetOp::Restart => {
                for c in &mut clients {
                    disconnect(c).await;
                }
                server.restart().await;
            }
        }
    }
    quiesce(&server, &mut clients).await;
    let (state, server_sv, server_json) = server_state(&server).await;
    let (reloaded_sv, reloaded_json) = reload(&state);
    assert_eq!(
        reloaded_sv, server_sv,
        "the server's state encodes another state vector"
    );
    assert_eq!(
        reloaded_json, server_json,
        "the server's state encodes other content"
    );
    for (i, c) in clients.iter().enumerate() {
        let client_state = c
            .doc
            .transact()
            .encode_state_as_update_v1(&Default::default());
        let (sv, json) = reload(&client_state);
        assert_eq!(
            sv.encode_v1(),
            server_sv.encode_v1(),
            "client {i} and the server have different state vectors"
        );
        assert_eq!(json, server_json, "client {i} and the server differ");
    }
    for c in &mut clients {
        disconnect(c).await;
    }
    server.restart().await;
    let (_, sv, json) = server_state(&server).await;
    assert_eq!(sv, server_sv, "the state vector changed across a restart");
    assert_eq!(json, server_json, "the document changed across a restart");
    server.stop().await;
}

/// Connects a client: the server queues its sync step 1; the client sends its own.
async fn connect(server: &Server, client: &mut Client) {
    let conn = Connection::join(server, Rights::ALL).await;
    let step1 = encode_sync_step1(&client.doc.transact().state_vector());
    let mut link = Link {
        conn,
        up: VecDeque::from([step1]),
        down: VecDeque::new(),
    };
    if receive(&mut link).await.is_ok() {
        client.link = Some(link);
    }
}

async fn disconnect(client: &mut Client) {
    if let Some(link) = client.link.take() {
        link.conn.leave().await;
    }
}

/// Moves what the server queued for the client onto the link. An honest client is never cut
/// off for what it sent.
async fn receive(link: &mut Link) -> Result<(), Closed> {
    match link.conn.receive().await {
        Ok(frames) => {
            link.down.extend(frames);
            Ok(())
        }
        Err(Closed::Evicted(reason @ (Eviction::InvalidUpdate | Eviction::DocumentTooLarge))) => {
            panic!("an honest client was cut off: {reason:?}")
        }
        Err(Closed::Malformed) => panic!("an honest client's frame did not decode"),
        Err(closed) => Err(closed),
    }
}

/// Delivers one frame of a link (the first, or the picked one), keeping it queued if `keep`.
/// Returns whether there was one.
async fn deliver(client: &mut Client, up: bool, pick: Option<usize>, keep: bool) -> bool {
    let Some(link) = &mut client.link else {
        return false;
    };
    let queue = if up { &mut link.up } else { &mut link.down };
    if queue.is_empty() {
        return false;
    }
    let at = pick.map_or(0, |p| p % queue.len());
    let frame = if keep {
        queue[at].clone()
    } else {
        queue.remove(at).expect("index within the queue")
    };
    let alive = if up {
        match link.conn.send(&frame).await {
            Ok(()) => receive(link).await.is_ok(),
            Err(Closed::Malformed) => panic!("an honest client's frame did not decode"),
            Err(_) => false,
        }
    } else {
        on_server_frame(&client.doc, link, &frame);
        true
    };
    if !alive {
        disconnect(client).await;
    }
    true
}

/// Delivers everything queued on a link, both ways, in order, until it is empty.
async fn flush(client: &mut Client) -> bool {
    let mut moved = false;
    for _ in 0..QUIESCE_ROUNDS {
        let mut any = false;
        if let Some(link) = &mut client.link {
            if receive(link).await.is_err() {
                disconnect(client).await;
                return moved;
            }
        }
        while deliver(client, false, None, false).await {
            any = true;
        }
        while deliver(client, true, None, false).await {
            any = true;
        }
        moved |= any;
        if !any {
            break;
        }
    }
    moved
}

/// What a y-websocket client does with a frame from the server.
fn on_server_frame(doc: &yrs::Doc, link: &mut Link, frame: &[u8]) {
    let messages = decode_frame(frame).expect("the server sends frames that decode");
    for message in messages {
        match message {
            ClientMessage::SyncStep1(sv) => {
                let diff = doc.transact().encode_state_as_update_v1(&sv);
                link.up.push_back(encode_sync_step2(&diff));
            }
            ClientMessage::SyncStep2(ReceivedUpdate { update, .. })
            | ClientMessage::Update(ReceivedUpdate { update, .. }) => {
                doc.transact_mut()
                    .apply_update(update)
                    .expect("a client applies the server's update");
            }
            ClientMessage::Awareness(_)
            | ClientMessage::QueryAwareness
            | ClientMessage::Event(_) => {}
            ClientMessage::Auth => panic!("the server denied a read-write client"),
        }
    }
}

/// The loss-free end: every client reconnects and every frame is delivered until nothing moves.
async fn quiesce(server: &Server, clients: &mut [Client]) {
    for c in clients.iter_mut() {
        disconnect(c).await;
        connect(server, c).await;
        assert!(c.link.is_some(), "a client could not connect");
    }
    for round in 0.. {
        assert!(round < QUIESCE_ROUNDS, "the network did not quiesce");
        let mut moved = false;
        for c in clients.iter_mut() {
            moved |= flush(c).await;
            assert!(
                c.link.is_some(),
                "a client was disconnected while quiescing"
            );
        }
        if !moved {
            break;
        }
    }
}
