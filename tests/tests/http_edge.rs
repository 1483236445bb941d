//! The HTTP edge over real TCP: connections that send nothing, half a request or a trickle are
//! closed by the header-read timeout; keep-alive connections by the idle timeout; connections
//! over the HTTP caps are answered 503 and closed at accept; event streams and WebSockets are
//! never cut for being idle.
//!
//! Several client addresses are used (127.0.0.2, …: all of 127.0.0.0/8 is loopback) to tell the
//! per-address cap from the total one.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::future::join_all;
use tandem_server::Config;
use tandem_tests::{SseClient, SyncClient, TestServer, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};
use yrs::{GetString, Text, Transact, WriteTxn};

/// How late a timeout may fire on a busy machine and still pass.
const MARGIN: Duration = Duration::from_secs(2);

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

async fn start(dir: &Path, config: Config) -> TestServer {
    TestServer::start(dir, config).await.expect("server")
}

/// A TCP connection to `server` from the loopback address 127.0.0.`host`.
async fn connect_from(host: u8, server: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), 0)))?;
    Ok(timeout(DEADLINE, socket.connect(server)).await??)
}

/// Reads until the server closes the connection (end of stream, or a reset); returns what it
/// sent. Fails after [`DEADLINE`].
async fn read_until_closed(stream: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match timeout(DEADLINE, stream.read(&mut buffer)).await {
            Err(_) => bail!("the server kept the connection open"),
            Ok(Ok(0) | Err(_)) => return Ok(received),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Sends a keep-alive `GET /healthz` and reads its response; returns the status line.
async fn healthz_kept_alive(stream: &mut TcpStream) -> anyhow::Result<String> {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: tandem\r\n\r\n")
        .await?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    // The body is "ok": the response ends with it.
    while !received.ends_with(b"\r\n\r\nok") {
        let n = timeout(DEADLINE, stream.read(&mut buffer))
            .await
            .context("waiting for the response")??;
        if n == 0 {
            bail!("closed before the response ended");
        }
        received.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&received);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// `GET /healthz` on a fresh connection from 127.0.0.`host`, `connection: close`; returns the
/// whole response.
async fn healthz_from(host: u8, server: SocketAddr) -> anyhow::Result<String> {
    let mut stream = connect_from(host, server).await?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: tandem\r\nconnection: close\r\n\r\n")
        .await?;
    Ok(String::from_utf8_lossy(&read_until_closed(&mut stream).await?).into_owned())
}

#[tokio::test]
async fn silent_half_sent_and_trickling_connections_are_closed_by_the_header_timeout(
) -> anyhow::Result<()> {
    const HEADER_TIMEOUT: Duration = Duration::from_millis(500);
    let dir = tempdir();
    let server = start(
        dir.path(),
        Config {
            header_read_timeout: HEADER_TIMEOUT,
            // Far longer: what closes these connections is the header-read timeout.
            http_idle_timeout: Duration::from_secs(600),
            ..Config::default()
        },
    )
    .await;
    let partials: [&[u8]; 3] = [
        b"",
        b"GET /heal",
        b"GET /healthz HTTP/1.1\r\nhost: tandem\r\n",
    ];
    let addr = server.addr;
    let mut clients = Vec::new();
    for i in 0..40 {
        let partial = partials[i % partials.len()];
        clients.push(tokio::spawn(async move {
            let opened = Instant::now();
            let mut stream = TcpStream::connect(addr).await?;
            stream.write_all(partial).await?;
            let answer = read_until_closed(&mut stream).await?;
            anyhow::Ok((opened.elapsed(), answer))
        }));
    }
    // Slowloris: a byte every 50 ms, never the end of the headers.
    for _ in 0..4 {
        clients.push(tokio::spawn(async move {
            let opened = Instant::now();
            let stream = TcpStream::connect(addr).await?;
            let (mut reader, mut writer) = stream.into_split();
            let trickle = tokio::spawn(async move {
                for byte in b"GET /healthz HTTP/1.1\r\nx-padding: ".iter().cycle() {
                    if writer.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
            let mut answer = Vec::new();
            // The server's close ends the read with an end of stream or a reset.
            let _ = timeout(DEADLINE, reader.read_to_end(&mut answer)).await?;
            trickle.abort();
            anyhow::Ok((opened.elapsed(), answer))
        }));
    }
    let mut closed = Vec::new();
    for client in join_all(clients).await {
        closed.push(client??);
    }
    let fastest = closed
        .iter()
        .map(|(after, _)| *after)
        .min()
        .context("none")?;
    let slowest = closed
        .iter()
        .map(|(after, _)| *after)
        .max()
        .context("none")?;
    eprintln!(
        "{} connections closed by the server, after {fastest:?} to {slowest:?} \
         (header-read timeout {HEADER_TIMEOUT:?})",
        closed.len()
    );
    assert_eq!(closed.len(), 44);
    assert!(
        fastest >= HEADER_TIMEOUT,
        "closed before its time: {fastest:?}"
    );
    assert!(
        slowest <= HEADER_TIMEOUT + MARGIN,
        "closed too late: {slowest:?}"
    );
    for (_, answer) in &closed {
        assert!(answer.is_empty(), "no request, no response: {answer:?}");
    }
    assert!(
        healthz_from(1, server.addr)
            .await?
            .starts_with("HTTP/1.1 200"),
        "the server still serves"
    );
    server.stop().await
}

#[tokio::test]
async fn a_keep_alive_connection_is_closed_by_the_idle_timeout_not_the_header_timeout(
) -> anyhow::Result<()> {
    const HEADER_TIMEOUT: Duration = Duration::from_millis(200);
    const IDLE_TIMEOUT: Duration = Duration::from_millis(1500);
    let dir = tempdir();
    let server = start(
        dir.path(),
        Config {
            header_read_timeout: HEADER_TIMEOUT,
            http_idle_timeout: IDLE_TIMEOUT,
            ..Config::default()
        },
    )
    .await;
    let mut stream = TcpStream::connect(server.addr).await?;
    assert_eq!(healthz_kept_alive(&mut stream).await?, "HTTP/1.1 200 OK");
    // Idle for several header timeouts, well within the idle timeout: still open.
    tokio::time::sleep(HEADER_TIMEOUT * 3).await;
    assert_eq!(healthz_kept_alive(&mut stream).await?, "HTTP/1.1 200 OK");
    let answered = Instant::now();
    let after = read_until_closed(&mut stream).await?;
    let idle = answered.elapsed();
    eprintln!("idle keep-alive connection closed after {idle:?} (idle timeout {IDLE_TIMEOUT:?})");
    assert!(after.is_empty(), "nothing more was sent: {after:?}");
    assert!(idle >= IDLE_TIMEOUT, "closed before its time: {idle:?}");
    assert!(idle <= IDLE_TIMEOUT + MARGIN, "closed too late: {idle:?}");
    server.stop().await
}

#[tokio::test]
async fn shutdown_does_not_wait_for_connections_without_a_request_in_flight() -> anyhow::Result<()>
{
    let dir = tempdir();
    let server = start(
        dir.path(),
        Config {
            // Far beyond the test's deadline: only shutdown can close these.
            header_read_timeout: Duration::from_secs(600),
            http_idle_timeout: Duration::from_secs(600),
            ..Config::default()
        },
    )
    .await;
    let mut silent = TcpStream::connect(server.addr).await?;
    let mut half = TcpStream::connect(server.addr).await?;
    half.write_all(b"GET /healthz HTTP/1.1\r\n").await?;
    let mut kept_alive = TcpStream::connect(server.addr).await?;
    assert_eq!(
        healthz_kept_alive(&mut kept_alive).await?,
        "HTTP/1.1 200 OK"
    );
    // The server has accepted all three once it answers on a fourth.
    assert!(healthz_from(1, server.addr)
        .await?
        .starts_with("HTTP/1.1 200"));
    let stopping = Instant::now();
    server.stop().await?;
    eprintln!(
        "shutdown with 3 connections between requests took {:?}",
        stopping.elapsed()
    );
    for stream in [&mut silent, &mut half, &mut kept_alive] {
        assert!(read_until_closed(stream).await?.is_empty());
    }
    Ok(())
}

/// Opens `count` connections from 127.0.0.`host` and makes a request on each, so each is
/// known to be admitted; they stay open, idle.
async fn hold(host: u8, count: usize, server: SocketAddr) -> anyhow::Result<Vec<TcpStream>> {
    let mut held = Vec::new();
    for _ in 0..count {
        let mut stream = connect_from(host, server).await?;
        assert_eq!(healthz_kept_alive(&mut stream).await?, "HTTP/1.1 200 OK");
        held.push(stream);
    }
    Ok(held)
}

/// Opens a connection from 127.0.0.`host` that the server must refuse at once: a 503 with
/// `reason`, then the end of the stream, within [`MARGIN`].
async fn refused_at_once(host: u8, server: SocketAddr, reason: &str) -> anyhow::Result<()> {
    let opened = Instant::now();
    let mut stream = connect_from(host, server).await?;
    let answer = String::from_utf8(read_until_closed(&mut stream).await?)?;
    assert!(
        opened.elapsed() < MARGIN,
        "refused late: {:?}",
        opened.elapsed()
    );
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with(&format!("\r\n\r\n{reason}")), "{answer}");
    Ok(())
}

fn capped(total: usize, per_ip: usize) -> Config {
    Config {
        max_http_connections: total,
        max_http_connections_per_ip: per_ip,
        // Long: the held connections stay open for the whole test.
        header_read_timeout: Duration::from_secs(600),
        http_idle_timeout: Duration::from_secs(600),
        ..Config::default()
    }
}

#[tokio::test]
async fn connections_over_the_per_ip_cap_are_refused_at_once_and_others_are_served(
) -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path(), capped(100, 10)).await;
    let held = hold(1, 10, server.addr).await?;
    let refusals = join_all(
        (0..40).map(|_| refused_at_once(1, server.addr, "too many connections from this address")),
    )
    .await;
    refusals.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    assert!(server.tandem.counters().refused_connections >= 40);

    let asked = Instant::now();
    let answer = healthz_from(2, server.addr).await?;
    eprintln!(
        "/healthz from another address answered in {:?} with 10 idle connections held and 40 refused",
        asked.elapsed()
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(asked.elapsed() < Duration::from_secs(1));

    // Places free up when connections close.
    drop(held);
    let deadline = Instant::now() + DEADLINE;
    while !healthz_from(1, server.addr)
        .await?
        .starts_with("HTTP/1.1 200")
    {
        assert!(
            Instant::now() < deadline,
            "the closed connections kept their places"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop().await
}

#[tokio::test]
async fn connections_over_the_total_cap_are_refused_at_once() -> anyhow::Result<()> {
    let dir = tempdir();
    let server = start(dir.path(), capped(20, 10)).await;
    let held = [
        hold(3, 10, server.addr).await?,
        hold(4, 10, server.addr).await?,
    ];
    for _ in 0..10 {
        refused_at_once(5, server.addr, "too many connections").await?;
    }
    drop(held);
    let deadline = Instant::now() + DEADLINE;
    while !healthz_from(5, server.addr)
        .await?
        .starts_with("HTTP/1.1 200")
    {
        assert!(
            Instant::now() < deadline,
            "the closed connections kept their places"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop().await
}

#[tokio::test]
async fn event_streams_and_websockets_outlive_the_idle_timeout() -> anyhow::Result<()> {
    const TIMEOUT: Duration = Duration::from_millis(200);
    let dir = tempdir();
    let server = start(
        dir.path(),
        Config {
            header_read_timeout: TIMEOUT,
            http_idle_timeout: TIMEOUT,
            ..Config::default()
        },
    )
    .await;
    let url = server.url("long-lived");
    let mut writer = SyncClient::connect_synced(&url).await?;
    writer
        .edit(|txn| txn.get_or_insert_text("text").push(txn, "before;"))
        .await?;
    writer.await_server(&url).await?;
    drop(writer);

    let events = format!("http://{}/docs/long-lived/events", server.addr);
    let mut stream = SseClient::connect(&events, &[]).await?;
    stream.next_of("update").await?;
    let mut reader = SyncClient::connect_synced(&url).await?;
    // Quiet for many idle timeouts (the stream's pings are 15 s apart: nothing is sent).
    tokio::time::sleep(TIMEOUT * 6).await;

    let mut writer = SyncClient::connect_synced(&url).await?;
    writer
        .edit(|txn| txn.get_or_insert_text("text").push(txn, "after;"))
        .await?;
    stream
        .next_of("update")
        .await
        .context("the event stream was cut")?;
    reader
        .pump_until("the change", |client| {
            let text = client.doc.get_or_insert_text("text");
            text.get_string(&client.doc.transact()) == "before;after;"
        })
        .await
        .context("the WebSocket was cut")?;
    assert_eq!(stream.comments, 0, "no ping kept the stream busy");
    server.stop().await
}
