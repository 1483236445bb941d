//! Test harness for Tandem's black-box tests: the server running in-process on an ephemeral
//! port over a real sled store, and a small y-websocket client built from tokio-tungstenite and
//! yrs that speaks the protocol byte for byte like the npm client.
//!
//! Every wait has a deadline; nothing sleeps and hopes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tandem_core::lib0::Reader;
use tandem_core::protocol::{decode_awareness, encode_awareness, AwarenessUpdate};
use tandem_core::{SledStore, Store};
use tandem_server::{Config, Tandem};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async_with_config, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, StateVector, Transact, TransactionMut, Update};

/// How long any single wait in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A Tandem server running in this process.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state, for looking inside (loaded documents).
    pub tandem: Tandem,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), tandem_server::ServeError>>,
}

impl TestServer {
    /// Starts a server with a sled store in `dir`.
    pub async fn start(dir: &Path, config: Config) -> anyhow::Result<Self> {
        let store = SledStore::open(dir).context("opening store")?;
        Self::start_with(Arc::new(store), config).await
    }

    /// Starts a server over any store.
    pub async fn start_with(store: Arc<dyn Store>, config: Config) -> anyhow::Result<Self> {
        let tandem = Tandem::builder().store(store).config(config).build()?;
        Self::serve(tandem).await
    }

    /// Serves a configured server on an ephemeral loopback port.
    pub async fn serve(tandem: Tandem) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(tandem_server::serve(
            listener,
            tandem.clone(),
            shutdown.clone(),
        ));
        Ok(Self {
            addr,
            tandem,
            shutdown,
            task,
        })
    }

    /// The y-websocket URL of a document (the name is used as given: percent-encode it first
    /// if it needs to be).
    pub fn url(&self, doc: &str) -> String {
        format!("ws://{}/ws/{doc}", self.addr)
    }

    /// Shuts down gracefully, as SIGTERM does, and waits until the store is released.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        timeout(DEADLINE, self.task)
            .await
            .context("shutdown timed out")???;
        Ok(())
    }
}

/// Waits until `check` returns true, polling every few milliseconds, failing after [`DEADLINE`].
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Runs `future` with the default deadline.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> anyhow::Result<T> {
    timeout(DEADLINE, future)
        .await
        .map_err(|_| anyhow!("timed out: {what}"))
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a client saw the server do to the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// A close frame with this code.
    Code(u16),
    /// The stream ended or failed without a close frame.
    Dropped,
}

/// A y-websocket client: a yrs document synced over one WebSocket.
pub struct SyncClient {
    /// The client's copy of the document.
    pub doc: Doc,
    socket: Socket,
    /// Whether the server's sync step 2 arrived.
    pub synced: bool,
    /// The newest awareness state seen per client id (`None` once removed).
    pub awareness: std::collections::HashMap<u64, Option<String>>,
    /// Number of awareness messages received.
    pub awareness_messages: usize,
    /// How the server closed the connection, once it did.
    pub closed: Option<Closed>,
    /// The reasons of the "permission denied" messages received.
    pub denied: Vec<String>,
    /// The custom event messages received (events, acks, gap markers), in order.
    pub events: Vec<serde_json::Value>,
}

/// Attempts a WebSocket handshake that the server is expected to refuse, and returns the HTTP
/// status and body of the refusal. Fails if the server upgrades the connection.
pub async fn refused(request: Request) -> anyhow::Result<(u16, String)> {
    match within("handshake", connect_async_with_config(request, None, true)).await? {
        Ok(_) => bail!("the server accepted a connection it should have refused"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|body| String::from_utf8_lossy(body).into_owned())
                .unwrap_or_default();
            Ok((response.status().as_u16(), body))
        }
        Err(other) => bail!("handshake failed without an HTTP refusal: {other}"),
    }
}

/// An HTTP response as read off the wire.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header, by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the whole response.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<HttpResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = within("connect", TcpStream::connect(addr)).await??;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    within("response", stream.read_to_end(&mut raw)).await??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split])?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .context("no status line")?
        .parse()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = raw[split + 4..].to_vec();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// `GET path` with extra headers.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<HttpResponse> {
    http_request(addr, "GET", path, headers, b"").await
}

/// A handshake request for `url` with extra headers.
pub fn request(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Request> {
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes())?,
            http::HeaderValue::from_str(value)?,
        );
    }
    Ok(request)
}

impl SyncClient {
    /// Connects with an empty document and sends sync step 1, as y-websocket does on open.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_with(url, Doc::new()).await
    }

    /// Connects with an existing document (e.g. edited offline) and sends sync step 1.
    pub async fn connect_with(url: &str, doc: Doc) -> anyhow::Result<Self> {
        Self::connect_request(url.into_client_request()?, doc).await
    }

    /// Connects with a prepared handshake request (headers, cookies) and sends sync step 1.
    pub async fn connect_request(request: Request, doc: Doc) -> anyhow::Result<Self> {
        let (socket, _) =
            within("connect", connect_async_with_config(request, None, true)).await??;
        let mut client = Self {
            doc,
            socket,
            synced: false,
            awareness: Default::default(),
            awareness_messages: 0,
            closed: None,
            denied: Vec::new(),
            events: Vec::new(),
        };
        let sv = client.doc.transact().state_vector();
        client.send_raw(sync_message(0, &sv.encode_v1())).await?;
        Ok(client)
    }

    /// Connects and waits until the server's state has arrived.
    pub async fn connect_synced(url: &str) -> anyhow::Result<Self> {
        let mut client = Self::connect(url).await?;
        client.sync().await?;
        Ok(client)
    }

    /// Waits for the server's sync step 2.
    pub async fn sync(&mut self) -> anyhow::Result<()> {
        self.pump_until("sync step 2", |client| client.synced).await
    }

    /// Sends a binary frame as is.
    pub async fn send_raw(&mut self, frame: Vec<u8>) -> anyhow::Result<()> {
        self.socket.send(Message::Binary(frame.into())).await?;
        Ok(())
    }

    /// Sends any WebSocket message.
    pub async fn send_message(&mut self, message: Message) -> anyhow::Result<()> {
        self.socket.send(message).await?;
        Ok(())
    }

    /// Changes the local document and sends the change as an update, like y-websocket does.
    ///
    /// Root types must be reached through the transaction (`txn.get_or_insert_text`): asking
    /// the `Doc` while a transaction is open would wait for that transaction forever.
    pub async fn edit(&mut self, change: impl FnOnce(&mut TransactionMut)) -> anyhow::Result<()> {
        let update = {
            let mut txn = self.doc.transact_mut();
            change(&mut txn);
            txn.commit();
            txn.encode_update_v1()
        };
        self.send_raw(sync_message(2, &update)).await
    }

    /// Sends a custom event message (`{"type", "data"}` or `{"since"}`).
    pub async fn send_event(&mut self, json: serde_json::Value) -> anyhow::Result<()> {
        let mut frame = vec![5];
        tandem_core::lib0::write_var_bytes(&mut frame, json.to_string().as_bytes());
        self.send_raw(frame).await
    }

    /// Publishes an awareness state for the client's own id.
    pub async fn set_awareness(&mut self, clock: u64, state: Option<&str>) -> anyhow::Result<()> {
        let id = self.doc.client_id().get();
        let body = encode_awareness([(id, clock, state)].into_iter());
        self.send_raw(body.to_vec()).await
    }

    /// Reads and handles frames until `done` holds, failing after [`DEADLINE`].
    pub async fn pump_until(
        &mut self,
        what: &str,
        done: impl FnMut(&Self) -> bool,
    ) -> anyhow::Result<()> {
        self.pump_until_within(what, DEADLINE, done).await
    }

    /// Reads and handles frames until `done` holds, failing after `limit`.
    pub async fn pump_until_within(
        &mut self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while !done(self) {
            if self.closed.is_some() {
                bail!(
                    "connection closed ({:?}) while waiting for {what}",
                    self.closed
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.socket.next()).await {
                Err(_) => bail!("timed out waiting for {what}"),
                Ok(message) => self.handle(message).await?,
            }
        }
        Ok(())
    }

    /// Handles whatever frames are already waiting, without blocking for more.
    pub async fn drain(&mut self) -> anyhow::Result<()> {
        while self.closed.is_none() {
            match timeout(Duration::from_millis(1), self.socket.next()).await {
                Err(_) => return Ok(()),
                Ok(message) => self.handle(message).await?,
            }
        }
        Ok(())
    }

    /// Reads until the server closes the connection; returns how.
    pub async fn closed(&mut self) -> anyhow::Result<Closed> {
        self.pump_until("the server to close", |client| client.closed.is_some())
            .await?;
        Ok(self.closed.clone().expect("checked"))
    }

    async fn handle(
        &mut self,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> anyhow::Result<()> {
        let message = match message {
            None | Some(Err(_)) => {
                self.closed.get_or_insert(Closed::Dropped);
                return Ok(());
            }
            Some(Ok(message)) => message,
        };
        match message {
            Message::Binary(frame) => self.on_frame(&frame).await,
            Message::Close(frame) => {
                let code = frame.map_or(1005, |frame| u16::from(frame.code));
                self.closed = Some(Closed::Code(code));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn on_frame(&mut self, frame: &Bytes) -> anyhow::Result<()> {
        let mut reader = Reader::new(frame);
        match reader.var_u64()? {
            0 => {
                let kind = reader.var_u64()?;
                let payload = reader.var_bytes()?;
                match kind {
                    0 => {
                        let sv = StateVector::decode_v1(payload)?;
                        let update = self.doc.transact().encode_state_as_update_v1(&sv);
                        self.send_raw(sync_message(1, &update)).await?;
                    }
                    1 | 2 => {
                        let update = Update::decode_v1(payload)?;
                        self.doc.transact_mut().apply_update(update)?;
                        if kind == 1 {
                            self.synced = true;
                        }
                    }
                    other => bail!("unknown sync message {other}"),
                }
            }
            1 => {
                let AwarenessUpdate { entries } = decode_awareness(reader.var_bytes()?)?;
                self.awareness_messages += 1;
                for entry in entries {
                    self.awareness
                        .insert(entry.client, entry.state.map(|s| s.to_string()));
                }
            }
            2 => match reader.var_u64()? {
                0 => self.denied.push(reader.var_str()?.to_owned()),
                other => bail!("unknown auth message {other}"),
            },
            5 => self.events.push(serde_json::from_str(reader.var_str()?)?),
            other => bail!("unexpected message type {other}"),
        }
        if reader.has_content() {
            bail!("trailing bytes after a message: the y-websocket client would drop them");
        }
        Ok(())
    }

    /// The client's state vector.
    pub fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }

    /// The content of a root text.
    pub fn text(&self, name: &str) -> String {
        use yrs::GetString;
        let text = self.doc.get_or_insert_text(name);
        text.get_string(&self.doc.transact())
    }

    /// The document as canonical JSON (keys sorted), with the root types the tests use
    /// (`text`, `map`, `array`) typed: a root whose type the client never named has no JSON.
    pub fn json(&self) -> String {
        use yrs::types::ToJson;
        self.doc.get_or_insert_text("text");
        self.doc.get_or_insert_map("map");
        self.doc.get_or_insert_array("array");
        let mut json = String::new();
        self.doc.to_json(&self.doc.transact()).to_json(&mut json);
        let value: serde_json::Value = serde_json::from_str(&json).expect("yrs writes valid json");
        value.to_string()
    }

    /// Waits until the server holds everything this client has: a second client connects and
    /// reads until its state covers this one's. (Echoes prove nothing: applying one's own
    /// update again changes nothing.)
    pub async fn await_server(&self, url: &str) -> anyhow::Result<()> {
        let target = self.state_vector();
        let mut observer = Self::connect_synced(url).await?;
        observer
            .pump_until("the server to have every edit", |c| {
                c.state_vector() >= target
            })
            .await?;
        observer.close().await
    }

    /// Closes the connection politely.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let _ = self.socket.close(None).await;
        // A polite client reads until the server answers the close: dropping a socket with
        // unread data (the server's echoes) resets the connection, and the kernel may discard
        // frames the server has not read yet.
        let _ = timeout(DEADLINE, async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
        Ok(())
    }

    /// Drops the TCP connection without a close frame, like a crashed client.
    pub fn abort(self) {
        drop(self.socket);
    }
}

/// Encodes a y-websocket sync message (`0 · kind · payload`).
pub fn sync_message(kind: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    tandem_core::lib0::write_var_u64(&mut out, 0);
    tandem_core::lib0::write_var_u64(&mut out, kind);
    tandem_core::lib0::write_var_bytes(&mut out, payload);
    out
}

/// A close code as a number.
pub fn close_code(code: CloseCode) -> u16 {
    u16::from(code)
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`message` when absent).
    pub event: String,
    /// The `id:` field.
    pub id: Option<String>,
    /// The `data:` lines, joined by newlines.
    pub data: String,
}

/// A client of a `text/event-stream` response, reading events as they arrive.
pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
    /// Comments received (`ping`s).
    pub comments: usize,
}

impl SseClient {
    /// Opens a stream with extra headers; fails unless the server answers 200 with
    /// `text/event-stream`.
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut request = reqwest::Client::new().get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = within("event stream", request.send()).await??;
        if response.status() != 200 {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            bail!("event stream refused: {status} {body}");
        }
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !kind.starts_with("text/event-stream") {
            bail!("not an event stream: {kind}");
        }
        Ok(Self {
            response,
            buffer: String::new(),
            comments: 0,
        })
    }

    /// The next event, failing after [`DEADLINE`] or when the stream ends.
    pub async fn next(&mut self) -> anyhow::Result<SseEvent> {
        self.next_within(DEADLINE)
            .await?
            .context("timed out waiting for an event")
    }

    /// The next event within `limit`, or `None` if none came.
    pub async fn next_within(&mut self, limit: Duration) -> anyhow::Result<Option<SseEvent>> {
        let deadline = Instant::now() + limit;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    event: "message".into(),
                    id: None,
                    data: String::new(),
                };
                let mut data = Vec::new();
                let mut comment = true;
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "" => {}
                        "event" => event.event = value.to_owned(),
                        "id" => event.id = Some(value.to_owned()),
                        "data" => data.push(value.to_owned()),
                        _ => {}
                    }
                    comment &= field.is_empty();
                }
                if comment {
                    self.comments += 1;
                    continue;
                }
                event.data = data.join("\n");
                return Ok(Some(event));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.response.chunk()).await {
                Err(_) => return Ok(None),
                Ok(chunk) => match chunk? {
                    Some(chunk) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                    None => bail!("the event stream ended"),
                },
            }
        }
    }

    /// The next event of type `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> anyhow::Result<SseEvent> {
        loop {
            let event = self.next().await?;
            if event.event == kind {
                return Ok(event);
            }
        }
    }

    /// Waits until the server ends the stream.
    pub async fn ended(mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.response.chunk()).await {
                Err(_) => bail!("the event stream did not end"),
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None) | Err(_)) => return Ok(()),
            }
        }
    }
}
