//! A y-websocket client reduced to what the workloads drive: connect to `{url}/{doc}`, do the
//! sync handshake the npm client does (send step 1, answer the server's step 1 with step 2,
//! apply the server's step 2), then hand the socket to the workload.
//!
//! Every read takes a deadline: a server that stops answering fails the run with what was being
//! waited for, instead of hanging it.

use std::future::Future;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{connect_async_with_config, MaybeTlsStream, WebSocketStream};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

use crate::protocol::{self, Dialect, Frame};

/// A client's WebSocket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where one document is and how to address it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The URL to connect to.
    pub url: String,
    /// How frames are addressed.
    pub dialect: Dialect,
    /// The document's name.
    pub doc: String,
}

impl Endpoint {
    /// The document `doc` of the server at `prefix` (for y-websocket, a document's URL is the
    /// prefix, `/` and its name).
    pub fn new(prefix: &str, dialect: Dialect, doc: &str) -> anyhow::Result<Self> {
        Ok(Self {
            url: dialect.url(prefix, doc)?,
            dialect,
            doc: doc.to_owned(),
        })
    }

    /// The frame carrying `message` for this document.
    pub fn frame(&self, message: &[u8]) -> Bytes {
        self.dialect.frame(&self.doc, message)
    }

    /// Opens a WebSocket to the document and sends what the dialect sends first.
    pub async fn connect(&self, deadline: Instant) -> anyhow::Result<Socket> {
        let mut socket = connect(&self.url, deadline).await?;
        if let Some(opening) = self.dialect.opening(&self.doc) {
            socket
                .send(Message::Binary(opening))
                .await
                .context("sending the opening message")?;
        }
        Ok(socket)
    }
}

/// Runs `future`, failing with `what` if `deadline` passes first.
pub async fn by<T>(
    deadline: Instant,
    what: &str,
    future: impl Future<Output = T>,
) -> anyhow::Result<T> {
    timeout_at(deadline, future)
        .await
        .map_err(|_| anyhow!("timed out waiting for {what}"))
}

/// Opens a WebSocket with Nagle's algorithm off, as browsers do.
pub async fn connect(url: &str, deadline: Instant) -> anyhow::Result<Socket> {
    let (socket, _) = by(
        deadline,
        "the WebSocket handshake",
        connect_async_with_config(url, None, true),
    )
    .await?
    .with_context(|| format!("connecting to {url}"))?;
    Ok(socket)
}

/// The next binary frame; pings and pongs are skipped, anything that ends the conversation is an
/// error saying how it ended.
pub async fn next_binary<S>(stream: &mut S, deadline: Instant, what: &str) -> anyhow::Result<Bytes>
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        match by(deadline, what, stream.next()).await? {
            None => bail!("the connection ended while waiting for {what}"),
            Some(Err(error)) => {
                return Err(error).with_context(|| format!("reading while waiting for {what}"))
            }
            Some(Ok(Message::Binary(frame))) => return Ok(frame),
            Some(Ok(Message::Close(close))) => bail!(
                "the server closed the connection ({}) while we waited for {what}",
                close.map_or_else(
                    || "no close frame".to_owned(),
                    |c| format!("{} {}", u16::from(c.code), c.reason)
                )
            ),
            Some(Ok(Message::Text(_))) => bail!("a text frame while waiting for {what}"),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
        }
    }
}

/// The next message, its address removed (see [`Dialect::message`]).
pub async fn next_message<S>(
    stream: &mut S,
    dialect: Dialect,
    deadline: Instant,
    what: &str,
) -> anyhow::Result<Bytes>
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    dialect.message(next_binary(stream, deadline, what).await?)
}

/// What the handshake brought.
#[derive(Debug, Clone)]
pub struct Synced {
    /// When the server's sync step 2 arrived (before it was applied).
    pub step2_at: Instant,
    /// Size of that step 2 frame.
    pub step2_bytes: usize,
}

/// Syncs `doc` with the server as the npm client does on open: sends step 1, answers the
/// server's step 1 with step 2, and returns once the server's step 2 is applied to `doc` (and,
/// for a server that acknowledges step 2, once ours was acknowledged: an acknowledgement
/// arriving later would be taken for one of a workload's changes).
///
/// The step 2 is applied on the calling task: during a handshake the client has nothing else
/// to do, and the time it takes is part of what a client waits for.
pub async fn sync(
    socket: &mut Socket,
    endpoint: &Endpoint,
    doc: &Doc,
    deadline: Instant,
) -> anyhow::Result<Synced> {
    let dialect = endpoint.dialect;
    let state_vector = doc.transact().state_vector().encode_v1();
    socket
        .send(Message::Binary(
            endpoint.frame(&protocol::sync_step1(&state_vector)),
        ))
        .await
        .context("sending sync step 1")?;
    let mut synced: Option<Synced> = None;
    let mut unacknowledged = 0usize;
    loop {
        if let Some(synced) = &synced {
            if unacknowledged == 0 {
                return Ok(synced.clone());
            }
        }
        let message = next_message(socket, dialect, deadline, "the server's sync step 2").await?;
        if dialect.is_ack(&message) && dialect.acks_sync_step2() {
            unacknowledged = unacknowledged.saturating_sub(1);
            continue;
        }
        match protocol::parse(&message)? {
            Frame::SyncStep1(remote) => {
                let remote = StateVector::decode_v1(remote).context("decoding a state vector")?;
                let update = doc.transact().encode_state_as_update_v1(&remote);
                socket
                    .send(Message::Binary(
                        endpoint.frame(&protocol::sync_step2(&update)),
                    ))
                    .await
                    .context("answering sync step 1")?;
                if dialect.acks_sync_step2() {
                    unacknowledged += 1;
                }
            }
            Frame::SyncStep2(update) => {
                let step2_at = Instant::now();
                apply(doc, update).context("applying sync step 2")?;
                synced = Some(Synced {
                    step2_at,
                    step2_bytes: message.len(),
                });
            }
            Frame::Update(update) => apply(doc, update).context("applying an update")?,
            Frame::Other(_) => {}
        }
    }
}

fn apply(doc: &Doc, update: &[u8]) -> anyhow::Result<()> {
    let update = Update::decode_v1(update)?;
    doc.transact_mut().apply_update(update)?;
    Ok(())
}

/// Closes a socket with a close frame and waits, until `deadline`, for the server's answer.
///
/// A server that drops the connection instead of answering the close frame (RFC 6455 §5.5.1
/// says it should answer) still counts as closed: the workload is over by then.
pub async fn close(mut socket: Socket, deadline: Instant) -> anyhow::Result<()> {
    by(deadline, "the close handshake", async {
        socket.close(None).await?;
        while let Some(message) = socket.next().await {
            match message {
                Ok(_) => {}
                Err(tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                ))
                | Err(tungstenite::Error::ConnectionClosed) => break,
                Err(error) => return Err(error),
            }
        }
        Ok(())
    })
    .await?
    .context("closing the connection")
}

/// Opens a connection to the document and syncs an empty client document with it.
pub async fn connect_synced(endpoint: &Endpoint, deadline: Instant) -> anyhow::Result<Socket> {
    let mut socket = endpoint.connect(deadline).await?;
    sync(&mut socket, endpoint, &Doc::new(), deadline).await?;
    Ok(socket)
}

/// Opens and syncs one connection per endpoint, at most `at_once` handshakes in flight, in
/// the order given. Fails on the first connection that fails, saying which.
pub async fn connect_many(
    endpoints: &[Endpoint],
    at_once: usize,
    deadline: Instant,
) -> anyhow::Result<Vec<Socket>> {
    futures_util::stream::iter(endpoints.iter().enumerate())
        .map(|(index, endpoint)| async move {
            connect_synced(endpoint, deadline)
                .await
                .with_context(|| format!("connection {index} of {}", endpoints.len()))
        })
        .buffered(at_once.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}
