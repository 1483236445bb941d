//! A real full disk: the binary's data directory on a small tmpfs. Writes fill it until the
//! store fails; the document then refuses writes (HTTP 500 `store_failed`, WebSocket close
//! 1011), the server stays up, and after the disk grows and the server restarts every update
//! it acknowledged is there.
//!
//! Mounting needs root (CI runs as root); where mounting is impossible the test says so and
//! passes without running.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tandem_tests::{Closed, SyncClient};
use yrs::{Map, Transact, WriteTxn};

const DOC: &str = "full";

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tandem-test"])
            .arg(dir)
            .output()
            .map_err(|error| format!("running mount: {error}"))?;
        if output.status.success() {
            Ok(Self(dir.to_owned()))
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(status.success(), "remounting the tmpfs larger failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// An update setting key `k{n}` of the map `m` to `bytes` bytes of text no compressor shrinks.
fn big_update(n: u64, bytes: usize) -> Vec<u8> {
    let mut state = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let text: String = (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    let doc = yrs::Doc::with_client_id(n + 1);
    let mut txn = doc.transact_mut();
    txn.get_or_insert_map("m")
        .insert(&mut txn, format!("k{n}"), text);
    txn.encode_update_v1()
}

async fn keys(http: &str) -> Result<Vec<String>, String> {
    let response = reqwest::get(format!("{http}/docs/{DOC}/json"))
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != 200 {
        return Err(format!("GET json: {}", response.status()));
    }
    let json: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    Ok(json["m"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_document_not_the_server_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = match Tmpfs::mount(dir.path(), "8m") {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a tmpfs to fill ({why}); run as root to test");
            return;
        }
    };
    let data = dir.path().join("data");
    let server = support::start(&data, &[]).expect("start on the tmpfs");

    let mut watcher = SyncClient::connect_synced(&format!("{}/ws/{DOC}", server.ws))
        .await
        .expect("connect");
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let refusal = loop {
        assert!(Instant::now() < deadline, "the disk never filled up");
        let n = acked.len() as u64;
        let response = client
            .post(format!("{}/docs/{DOC}/update", server.http))
            .body(big_update(n, 64 * 1024))
            .send()
            .await
            .expect("the server answers");
        if response.status() == 204 {
            acked.push(format!("k{n}"));
            continue;
        }
        break (
            response.status().as_u16(),
            response.text().await.expect("body"),
        );
    };
    assert_eq!(refusal.0, 500, "a failed write answers 500: {}", refusal.1);
    assert!(
        refusal.1.contains("\"store_failed\""),
        "a failed write names the problem: {}",
        refusal.1
    );
    assert!(acked.len() > 10, "{} writes fit on the disk", acked.len());
    assert_eq!(
        watcher.closed().await.expect("the peer is told"),
        Closed::Code(1011)
    );
    let health = reqwest::get(format!("{}/healthz", server.http))
        .await
        .expect("the server is still up");
    assert_eq!(health.status(), 200);
    let other = reqwest::get(format!("{}/docs/other/json", server.http))
        .await
        .expect("another document can be read");
    assert!(other.status() == 404 || other.status() == 200);

    // Room again, and a restart: everything acknowledged is there.
    server.kill();
    disk.resize("64m");
    let server = support::start(&data, &[]).expect("restart after the disk grew");
    let stored = keys(&server.http).await.expect("the document reads");
    let missing: Vec<_> = acked.iter().filter(|k| !stored.contains(k)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but lost: {missing:?} of {}",
        acked.len()
    );
    println!(
        "full disk: {} updates acknowledged before the store failed, all present after restart",
        acked.len()
    );
    drop(server);
    drop(disk);
}
