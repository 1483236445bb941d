//! The binary's command line: refusing to serve the network anonymously, and minting tokens the
//! server accepts.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tandem_core::auth::{Credentials, JwtAuthorizer, Rights};
use tandem_core::{Authorizer, DocName};

const SECRET: &str = "a secret for the command line tests, long enough";

fn tandem() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
}

fn secret_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("secret.key");
    // With the newline `echo` adds, which is not part of the secret.
    std::fs::write(&path, format!("{SECRET}\n")).expect("write secret");
    path
}

#[test]
fn serving_a_public_address_without_a_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = tandem()
        .args(["serve", "--addr", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .expect("run tandem");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--insecure-allow-anonymous"),
        "unhelpful error: {stderr}"
    );
    assert!(!dir.path().join("data").exists(), "the store was opened");
}

#[test]
fn insecure_allow_anonymous_serves_a_public_address_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = tandem()
        .args([
            "serve",
            "--addr",
            "0.0.0.0:0",
            "--insecure-allow-anonymous",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run tandem");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, logged) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.expect("log line")).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut warned = false;
    let mut listening = false;
    while !listening {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = logged.recv_timeout(left) else {
            break;
        };
        warned |= line.contains("WARN") && line.contains("no authentication configured");
        listening |= line.contains("\"listening\"");
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(
        warned && listening,
        "warned: {warned}, listening: {listening}"
    );
}

#[tokio::test]
async fn minted_tokens_open_what_they_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = secret_file(&dir);
    let output = tandem()
        .args(["token", "--doc", "notes/*", "--doc", "todo"])
        .args([
            "--rights",
            "read,-presence",
            "--ttl",
            "10m",
            "--sub",
            "alice",
        ])
        .arg("--jwt-secret-file")
        .arg(&secret)
        .output()
        .expect("run tandem token");
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let authorizer = JwtAuthorizer::hs256(SECRET.as_bytes()).expect("secret");
    let credentials = Credentials {
        token: Some(token.trim().to_owned()),
        ..Credentials::default()
    };
    let grant = authorizer
        .authorize(&credentials, &DocName::from("notes/today"))
        .await
        .expect("covered");
    assert_eq!(grant.rights, Rights::READ);
    assert_eq!(grant.subject.as_deref(), Some("alice"));
    let expires_in = grant
        .expires_at
        .expect("expiry")
        .duration_since(std::time::SystemTime::now())
        .expect("in the future");
    assert!(expires_in <= Duration::from_secs(600) && expires_in > Duration::from_secs(590));
    authorizer
        .authorize(&credentials, &DocName::from("todo"))
        .await
        .expect("covered");
    authorizer
        .authorize(&credentials, &DocName::from("notesX"))
        .await
        .expect_err("not covered");
}

#[test]
fn bad_token_requests_fail_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = secret_file(&dir);
    let unknown = tandem()
        .args(["token", "--doc", "a", "--rights", "rule"])
        .arg("--jwt-secret-file")
        .arg(&secret)
        .output()
        .expect("run");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown right"));

    let short = dir.path().join("short.key");
    std::fs::write(&short, "too short").expect("write");
    let output = tandem()
        .args(["token", "--doc", "a", "--jwt-secret-file"])
        .arg(&short)
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 32"));
}

/// Runs `tandem` to its end, killing it (and failing) if it is still running after 30 s: a
/// command expected to refuse must not be left serving.
fn run_to_exit(command: &mut Command) -> std::process::Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tandem");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            child.kill().expect("kill");
            let output = child.wait_with_output().expect("wait");
            panic!("still running after 30 s: {output:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn guessable_secrets_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, contents, why) in [
        (
            "spaces.key",
            format!("{}\n", " ".repeat(32)),
            "only whitespace",
        ),
        ("repeated.key", "x".repeat(48), "too repetitive"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).expect("write secret");
        let data = dir.path().join(format!("data-{name}"));
        let output = run_to_exit(
            tandem()
                .args(["serve", "--addr", "127.0.0.1:0", "--jwt-secret-file"])
                .arg(&path)
                .arg("--data-dir")
                .arg(&data),
        );
        assert!(!output.status.success(), "{name} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(why) && stderr.contains(name),
            "unhelpful error for {name}: {stderr}"
        );
        assert!(!data.exists(), "the store was opened with {name}");
    }
}
