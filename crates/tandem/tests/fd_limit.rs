//! The binary and its open-file limit: it raises the soft limit to the hard one and logs both,
//! refuses connection caps the limit cannot honour, and under a flood of idle connections keeps
//! its descriptors bounded and `/healthz` answering.
//!
//! The limits are set by a shell (`ulimit`) that then `exec`s the binary, as a service manager
//! would, so the test process itself is not limited.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A shell that applies `limits` (`ulimit` arguments) and then runs the binary with the rest of
/// the arguments.
fn limited(limits: &str) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit {limits} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_tandem"));
    command
}

/// Soft and hard "Max open files" of a process, from /proc.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a Max open files line");
    let mut values = line["Max open files".len()..].split_whitespace();
    let soft = values.next().expect("soft").to_owned();
    let hard = values.next().expect("hard").to_owned();
    (soft, hard)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list fds")
        .count()
}

/// The fields of the first JSON log line whose message is `message`.
fn logged(log: &[String], message: &str) -> Option<serde_json::Value> {
    log.iter().find_map(|line| {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = value.get("fields")?;
        (fields.get("message")? == message).then(|| fields.clone())
    })
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_limit_and_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = support::start_with(limited("-Sn 256"), &dir.path().join("data"), &[])
        .expect("tandem starts");
    let (soft, hard) = open_file_limits(server.pid());
    assert_eq!(soft, hard, "the soft limit was raised to the hard one");
    let fields = logged(&server.log, "file descriptor limit").expect("the limit is logged");
    assert_eq!(fields["was"], "256", "{fields}");
    assert_eq!(fields["soft"], soft.as_str(), "{fields}");
    assert_eq!(fields["hard"], hard.as_str(), "{fields}");
}

#[test]
fn connection_caps_beyond_the_open_file_limit_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let output = limited("-n 512")
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--max-connections",
            "1000",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run tandem");
    assert!(!output.status.success(), "tandem served anyway");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--max-connections 1000 need 1000 file descriptors")
            && stderr.contains("RLIMIT_NOFILE) is 512"),
        "unclear error: {stderr}"
    );
    assert!(!data.exists(), "the store was opened");

    // A cap that fits is served, and the default HTTP cap shrinks to what is left.
    let server = support::start_with(limited("-n 512"), &data, &["--max-connections", "200"])
        .expect("tandem starts");
    let fields = logged(
        &server.log,
        "lowering a connection cap to fit the file descriptor limit",
    )
    .expect("the lowered default is logged");
    assert_eq!(fields["flag"], "max-http-connections", "{fields}");
    assert_eq!(fields["fitted"], 512 - 256 - 200, "{fields}");
}

/// `GET /healthz` from the loopback address 127.0.0.2 (so the per-address cap of 127.0.0.1
/// does not apply); returns the response.
async fn healthz_from_another_address(addr: SocketAddr) -> String {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 0)))
        .expect("bind 127.0.0.2");
    let mut stream = socket.connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: tandem\r\nconnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("response");
    answer
}

#[tokio::test]
async fn a_flood_of_idle_connections_keeps_descriptors_bounded_and_healthz_answering() {
    const HELD: usize = 100;
    const FLOOD: usize = 600;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = support::start_with(
        limited("-n 512"),
        &dir.path().join("data"),
        &[
            "--max-connections",
            "100",
            "--max-http-connections",
            "150",
            "--max-http-connections-per-ip",
            &HELD.to_string(),
            "--header-read-timeout",
            "10m",
        ],
    )
    .expect("tandem starts");
    let pid = server.pid();
    let addr: SocketAddr = server
        .http
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let before = open_fds(pid);

    // More connections than the binary has descriptors, all from 127.0.0.1, none sending.
    let started = Instant::now();
    let (refused, mut refusals) = tokio::sync::mpsc::unbounded_channel();
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let refused = refused.clone();
        flood.push(tokio::spawn(async move {
            let mut stream = stream;
            let mut answer = String::new();
            // Held connections stay open until the test ends and aborts this task.
            if stream.read_to_string(&mut answer).await.is_ok() {
                let _ = refused.send(answer);
            }
        }));
    }
    for _ in 0..FLOOD - HELD {
        let answer = tokio::time::timeout(Duration::from_secs(30), refusals.recv())
            .await
            .expect("over-cap connections are refused")
            .expect("an answer");
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    }
    let refusing = started.elapsed();
    let during = open_fds(pid);

    let asked = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(1), healthz_from_another_address(addr))
        .await
        .expect("/healthz answers within 1 s");
    let answered = asked.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    eprintln!(
        "{FLOOD} idle connections: {} refused in {refusing:?}, {HELD} held; descriptors \
         {before} before, {during} during; /healthz answered in {answered:?}",
        FLOOD - HELD
    );
    assert!(
        during <= before + HELD + 16,
        "{during} descriptors open during the flood ({before} before)"
    );
    for connection in flood {
        connection.abort();
    }
    server.kill();
}
