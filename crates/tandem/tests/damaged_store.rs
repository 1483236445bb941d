//! Damaged stores: truncated or corrupted database files make `tandem serve` refuse to start
//! with a message naming the problem, and `tandem check` report them (exit 1); a document whose
//! records do not decode is reported by `tandem check` and never served partially.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use tandem_core::store::LogEntry;
use tandem_core::{DocName, SledStore, Store};
use yrs::{Map, Transact, WriteTxn};

fn update(key: &str, client: u64) -> Vec<u8> {
    let doc = yrs::Doc::with_client_id(client);
    let mut txn = doc.transact_mut();
    txn.get_or_insert_map("m").insert(&mut txn, key, 1);
    txn.encode_update_v1()
}

/// Writes `count` acknowledged updates through the real server, then kills it.
async fn written_store(data: &Path, count: u64) {
    let server = support::start(data, &[]).expect("start");
    let client = reqwest::Client::new();
    for n in 0..count {
        let response = client
            .post(format!("{}/docs/doc/update", server.http))
            .body(update(&format!("k{n}"), n + 1))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 204);
    }
    server.kill();
}

fn check(data: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["check", "--data-dir"])
        .arg(data)
        .output()
        .expect("run tandem check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn serve_refuses(data: &Path) -> String {
    let error = match support::start(data, &[]) {
        Ok(_) => panic!("a damaged store was served"),
        Err(error) => error,
    };
    assert!(
        error.contains("refusing to serve a damaged store"),
        "the refusal names the problem: {error}"
    );
    error
}

/// The file sled keeps its log in.
fn db_file(data: &Path) -> std::path::PathBuf {
    data.join("db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intact_store_checks_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    written_store(&data, 5).await;
    let (ok, report) = check(&data);
    assert!(ok, "{report}");
    assert!(report.contains("ok doc"), "{report}");
    assert!(report.contains("1 documents intact, 0 damaged"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_database_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    written_store(&data, 200).await;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(db_file(&data))
        .expect("open the database file");
    let len = file.metadata().expect("metadata").len();
    file.set_len(len / 2).expect("truncate");
    drop(file);
    let error = serve_refuses(&data);
    let (ok, report) = check(&data);
    assert!(!ok, "check passed a truncated store: {report}");
    assert!(report.contains("DAMAGED store"), "{report}");
    println!("serve: {error}\ncheck: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_database_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    written_store(&data, 200).await;
    let path = db_file(&data);
    let mut bytes = std::fs::read(&path).expect("read the database file");
    let len = bytes.len();
    for byte in &mut bytes[len / 3..len / 3 + 64] {
        *byte ^= 0xa5;
    }
    std::fs::write(&path, bytes).expect("write the database file");
    serve_refuses(&data);
    let (ok, report) = check(&data);
    assert!(!ok, "check passed a corrupted store: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_that_does_not_decode_is_reported_and_not_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    {
        let store = Arc::new(SledStore::open(&data).expect("open"));
        let good = DocName::from("good");
        let bad = DocName::from("bad");
        let entry = |seq, update: Vec<u8>| LogEntry {
            seq,
            update: update.into(),
        };
        store
            .append(&good, vec![entry(1, update("a", 1))])
            .await
            .expect("append");
        store
            .append(
                &bad,
                vec![entry(1, update("a", 1)), entry(2, vec![1, 7, 0xff])],
            )
            .await
            .expect("append");
    }
    let (ok, report) = check(&data);
    assert!(!ok, "{report}");
    assert!(report.contains("ok good"), "{report}");
    assert!(
        report.contains("DAMAGED bad: log entry 2 does not decode"),
        "{report}"
    );
    assert!(report.contains("1 documents intact, 1 damaged"), "{report}");

    let server = support::start(&data, &[]).expect("an undamaged database opens");
    let bad = reqwest::get(format!("{}/docs/bad/json", server.http))
        .await
        .expect("get");
    assert_eq!(
        bad.status(),
        500,
        "a damaged document is not served partially"
    );
    assert!(bad.text().await.expect("body").contains("store_failed"));
    let good = reqwest::get(format!("{}/docs/good/json", server.http))
        .await
        .expect("get");
    assert_eq!(good.status(), 200);
}
