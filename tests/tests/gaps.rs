//! Updates with a clock gap (a writer's changes k10..k19 without k0..k9, what a REST writer
//! sends after the document was deleted) are refused on every path, with nothing integrated:
//! REST answers 409 `missing_dependencies`, a y-websocket or Hocuspocus peer is asked with a
//! sync step 1 for what the document lacks. Server-side reads agree with what clients see.

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tandem_core::lib0::{write_var_bytes, write_var_u64, Reader};
use tandem_server::Config;
use tandem_tests::{sync_message, within, SyncClient, TestServer};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, Map, ReadTxn, StateVector, Transact, Update};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The writer's client id.
const WRITER: u64 = 5;

fn writer() -> ClientID {
    ClientID::new(WRITER)
}

/// A writer's changes k10..k19 alone, and all of its changes k0..k19.
fn late_and_all() -> (Vec<u8>, Vec<u8>) {
    let doc = Doc::with_client_id(WRITER);
    let map = doc.get_or_insert_map("map");
    for i in 0..10 {
        map.insert(&mut doc.transact_mut(), format!("k{i}"), i);
    }
    let early = doc.transact().state_vector();
    for i in 10..20 {
        map.insert(&mut doc.transact_mut(), format!("k{i}"), i);
    }
    let txn = doc.transact();
    (
        txn.encode_state_as_update_v1(&early),
        txn.encode_state_as_update_v1(&StateVector::default()),
    )
}

/// The root map `map` as the writer fills it with k0..k19.
fn all_keys() -> Value {
    let keys: serde_json::Map<String, Value> =
        (0..20).map(|i| (format!("k{i}"), json!(i))).collect();
    Value::Object(keys)
}

/// The root map `map` of a document, as JSON.
fn map_json(doc: &Doc) -> anyhow::Result<Value> {
    let map = doc.get_or_insert_map("map");
    let mut json = String::new();
    map.to_json(&doc.transact()).to_json(&mut json);
    Ok(serde_json::from_str(&json)?)
}

/// What `GET /docs/{doc}/json` shows, what a Yjs peer holds in the root map after applying
/// `GET /docs/{doc}/update`, and the document's state vector.
struct Reads {
    json: Value,
    from_update: Value,
    state_vector: StateVector,
}

async fn reads(server: &TestServer, doc: &str) -> anyhow::Result<Reads> {
    let base = format!("http://{}/docs/{doc}", server.addr);
    let json: Value = reqwest::get(format!("{base}/json")).await?.json().await?;
    let update = reqwest::get(format!("{base}/update"))
        .await?
        .bytes()
        .await?;
    let replica = Doc::new();
    replica
        .transact_mut()
        .apply_update(Update::decode_v1(&update)?)?;
    let from_update = map_json(&replica)?;
    let sv = reqwest::get(format!("{base}/state-vector"))
        .await?
        .bytes()
        .await?;
    Ok(Reads {
        json,
        from_update,
        state_vector: StateVector::decode_v1(&sv)?,
    })
}

/// Nothing of the writer is in the document, whichever way one looks.
async fn shows_nothing(server: &TestServer, doc: &str) -> anyhow::Result<()> {
    let reads = reads(server, doc).await?;
    anyhow::ensure!(reads.json == json!({}), "GET /json: {}", reads.json);
    anyhow::ensure!(
        reads.from_update == json!({}),
        "GET /update: {}",
        reads.from_update
    );
    anyhow::ensure!(
        reads.state_vector.get(&writer()) == 0,
        "state vector {:?}",
        reads.state_vector
    );
    Ok(())
}

/// The writer's twenty keys are in the document, whichever way one looks.
async fn shows_all(server: &TestServer, doc: &str) -> anyhow::Result<()> {
    let reads = reads(server, doc).await?;
    anyhow::ensure!(
        reads.json == json!({ "map": all_keys() }),
        "GET /json: {}",
        reads.json
    );
    anyhow::ensure!(
        reads.from_update == all_keys(),
        "GET /update: {}",
        reads.from_update
    );
    anyhow::ensure!(reads.state_vector.get(&writer()) == 20);
    Ok(())
}

#[tokio::test]
async fn a_rest_update_with_a_clock_gap_is_refused_with_409() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path(), Config::default()).await?;
    let http = reqwest::Client::new();
    let url = format!("http://{}/docs/gap/update", server.addr);
    let (late, all) = late_and_all();

    let refused = http.post(&url).body(late.clone()).send().await?;
    let status = refused.status().as_u16();
    anyhow::ensure!(status == 409, "refused with 409, not {status}");
    let body: Value = refused.json().await?;
    anyhow::ensure!(
        status == 409 && body["code"] == "missing_dependencies",
        "{status} {body}"
    );
    shows_nothing(&server, "gap").await?;

    let accepted = http.post(&url).body(all).send().await?;
    anyhow::ensure!(accepted.status() == 204, "{}", accepted.status());
    shows_all(&server, "gap").await?;
    // The late part again is old news now.
    let again = http.post(&url).body(late).send().await?;
    anyhow::ensure!(again.status() == 204, "{}", again.status());
    shows_all(&server, "gap").await?;
    server.stop().await
}

async fn next_frame(socket: &mut Socket) -> anyhow::Result<Vec<u8>> {
    loop {
        match within("a frame", socket.next()).await? {
            Some(Ok(Message::Binary(frame))) => return Ok(frame.to_vec()),
            Some(Ok(Message::Close(close))) => bail!("closed: {close:?}"),
            Some(Ok(_)) => {}
            Some(Err(error)) => bail!("socket failed: {error}"),
            None => bail!("socket ended"),
        }
    }
}

/// Reads y-websocket frames until a sync message of `kind` (0: step 1, 1: step 2), and returns
/// its payload.
async fn next_sync(socket: &mut Socket, kind: u64) -> anyhow::Result<Vec<u8>> {
    loop {
        let frame = next_frame(socket).await?;
        let mut reader = Reader::new(&frame);
        if reader.var_u64()? == 0 && reader.var_u64()? == kind {
            return Ok(reader.var_bytes()?.to_vec());
        }
    }
}

#[tokio::test]
async fn a_y_websocket_update_with_a_clock_gap_is_answered_with_sync_step_1() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path(), Config::default()).await?;
    let (mut socket, _) = within(
        "connect",
        tokio_tungstenite::connect_async(server.url("gap")),
    )
    .await??;
    // Joined and synced: the server's own step 1 first, then its answer to ours.
    next_sync(&mut socket, 0).await?;
    socket
        .send(Message::Binary(
            sync_message(0, &StateVector::default().encode_v1()).into(),
        ))
        .await?;
    next_sync(&mut socket, 1).await?;

    let (late, all) = late_and_all();
    socket
        .send(Message::Binary(sync_message(2, &late).into()))
        .await?;
    let asked = next_sync(&mut socket, 0).await?;
    let asked = StateVector::decode_v1(&asked)?;
    anyhow::ensure!(asked.get(&writer()) == 0, "{asked:?}");
    // The document answered after handling the update: nothing of it is in.
    shows_nothing(&server, "gap").await?;
    let mut observer = SyncClient::connect_synced(&server.url("gap")).await?;
    anyhow::ensure!(
        map_json(&observer.doc)? == json!({}),
        "a y-websocket client sees {}",
        observer.json()
    );

    // What the peer sends in answer (everything from the state vector on) goes in, and every
    // peer gets it.
    socket
        .send(Message::Binary(sync_message(1, &all).into()))
        .await?;
    observer
        .pump_until("the writer's keys", |client| {
            client.doc.transact().state_vector().get(&writer()) == 20
        })
        .await?;
    shows_all(&server, "gap").await?;
    server.stop().await
}

/// A Hocuspocus frame for the document `gap`: the address, then `body`.
fn hocuspocus(body: &[u8]) -> Message {
    let mut frame = Vec::new();
    write_var_bytes(&mut frame, b"gap");
    frame.extend_from_slice(body);
    Message::Binary(frame.into())
}

/// Reads Hocuspocus frames until a sync message of `kind`, and returns its payload.
async fn next_hocuspocus_sync(socket: &mut Socket, kind: u64) -> anyhow::Result<Vec<u8>> {
    loop {
        let frame = next_frame(socket).await?;
        let mut reader = Reader::new(&frame);
        reader.var_bytes().context("an address")?;
        if reader.var_u64()? == 0 && reader.var_u64()? == kind {
            return Ok(reader.var_bytes()?.to_vec());
        }
    }
}

#[tokio::test]
async fn a_hocuspocus_update_with_a_clock_gap_is_answered_with_sync_step_1() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path(), Config::default()).await?;
    let (mut socket, _) = within(
        "connect",
        tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr)),
    )
    .await??;
    let mut auth = Vec::new();
    write_var_u64(&mut auth, 2);
    write_var_u64(&mut auth, 0);
    write_var_bytes(&mut auth, b"");
    write_var_bytes(&mut auth, b"4.8.0");
    socket.send(hocuspocus(&auth)).await?;
    socket
        .send(hocuspocus(&sync_message(
            0,
            &StateVector::default().encode_v1(),
        )))
        .await?;
    // Hocuspocus answers a step 1 with its own step 1, then the step 2.
    next_hocuspocus_sync(&mut socket, 1).await?;

    let (late, all) = late_and_all();
    socket.send(hocuspocus(&sync_message(2, &late))).await?;
    let asked = StateVector::decode_v1(&next_hocuspocus_sync(&mut socket, 0).await?)?;
    anyhow::ensure!(asked.get(&writer()) == 0, "{asked:?}");
    shows_nothing(&server, "gap").await?;

    socket.send(hocuspocus(&sync_message(1, &all))).await?;
    // A step 1 is answered after everything before it: the step 2 proves `all` is in.
    socket
        .send(hocuspocus(&sync_message(
            0,
            &StateVector::default().encode_v1(),
        )))
        .await?;
    let state = next_hocuspocus_sync(&mut socket, 1).await?;
    let replica = Doc::new();
    replica
        .transact_mut()
        .apply_update(Update::decode_v1(&state)?)?;
    anyhow::ensure!(replica.transact().state_vector().get(&writer()) == 20);
    shows_all(&server, "gap").await?;
    server.stop().await
}
