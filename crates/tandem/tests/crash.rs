//! The crash test: the real binary under write load (HTTP updates, each acknowledged only once
//! durable, plus y-websocket writers) is killed with SIGKILL at random moments and restarted on
//! the same data directory. After every restart the store must open and every acknowledged
//! update must be there.
//!
//! `TANDEM_CRASH_ITERATIONS` (default 20) sets the number of kills, `TANDEM_CRASH_SEED` the
//! seed of the kill moments.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_tests::{sync_message, SyncClient};
use yrs::{Map, Text, Transact, WriteTxn};

const DOC: &str = "crash";

/// xorshift64*: the kill moments are the same on every run with the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// An update that adds key `h{n}` to the map `acked`, from a client of its own.
fn http_update(n: u64) -> Vec<u8> {
    let doc = yrs::Doc::with_client_id(1_000_000 + n);
    let mut txn = doc.transact_mut();
    txn.get_or_insert_map("acked")
        .insert(&mut txn, format!("h{n}"), n as f64);
    txn.encode_update_v1()
}

/// Posts updates one after another until told to stop; records each one the server
/// acknowledged (204) in `acked`.
async fn http_writer(
    http: String,
    next: Arc<Mutex<u64>>,
    acked: Arc<Mutex<BTreeSet<u64>>>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::new();
    let url = format!("{http}/docs/{DOC}/update");
    while !stop.load(Ordering::SeqCst) {
        let n = {
            let mut next = next.lock().expect("counter");
            *next += 1;
            *next
        };
        let sent = client
            .post(&url)
            .timeout(Duration::from_secs(5))
            .body(http_update(n))
            .send()
            .await;
        match sent {
            Ok(response) if response.status() == 204 => {
                acked.lock().expect("acked").insert(n);
            }
            Ok(response) => panic!("update {n} refused: {}", response.status()),
            // The server died under it: not acknowledged.
            Err(_) => return,
        }
    }
}

/// A y-websocket client typing into the text `typed` until told to stop or the server dies.
async fn ws_writer(ws: String, id: u64, stop: Arc<AtomicBool>) {
    let Ok(mut client) = SyncClient::connect(&format!("{ws}/ws/{DOC}")).await else {
        return;
    };
    let mut typed = 0u32;
    while !stop.load(Ordering::SeqCst) {
        let update = {
            let mut txn = client.doc.transact_mut();
            txn.get_or_insert_text("typed")
                .insert(&mut txn, 0, &format!("{id}."));
            txn.encode_update_v1()
        };
        if client.send_raw(sync_message(2, &update)).await.is_err() {
            return;
        }
        typed += 1;
        if typed % 16 == 0 && client.drain().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Reads the document and returns the keys of `acked` it holds.
async fn stored_keys(http: &str) -> BTreeSet<u64> {
    let json: serde_json::Value = reqwest::get(format!("{http}/docs/{DOC}/json"))
        .await
        .expect("GET json")
        .json()
        .await
        .expect("json body");
    json.get("acked")
        .and_then(|acked| acked.as_object())
        .map(|acked| {
            acked
                .keys()
                .map(|key| key[1..].parse().expect("h<number>"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_updates_survive_sigkill() {
    let iterations: u32 = env_or("TANDEM_CRASH_ITERATIONS", 20);
    let mut rng = Rng(env_or("TANDEM_CRASH_SEED", 0x7a4d_e11e_c0ff_ee01_u64) | 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let next = Arc::new(Mutex::new(0u64));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let started = Instant::now();
    let mut checked = 0usize;
    for iteration in 0..=iterations {
        let server =
            support::start(&data, &["--compact-log-entries", "64"]).unwrap_or_else(|error| {
                panic!("restart {iteration}: the store does not open: {error}")
            });
        let want = acked.lock().expect("acked").clone();
        if !want.is_empty() {
            let have = stored_keys(&server.http).await;
            let lost: Vec<_> = want.difference(&have).collect();
            assert!(
                lost.is_empty(),
                "restart {iteration}: {} acknowledged updates lost: {lost:?}",
                lost.len()
            );
            checked += want.len();
        }
        if iteration == iterations {
            break;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut load = Vec::new();
        for _ in 0..2 {
            load.push(tokio::spawn(http_writer(
                server.http.clone(),
                next.clone(),
                acked.clone(),
                stop.clone(),
            )));
        }
        for id in 0..2 {
            load.push(tokio::spawn(ws_writer(
                server.ws.clone(),
                u64::from(iteration) * 2 + id,
                stop.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_millis(rng.between(30, 400))).await;
        server.kill();
        stop.store(true, Ordering::SeqCst);
        for task in load {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("a writer stops once the server is gone")
                .expect("writer");
        }
    }
    let acked = acked.lock().expect("acked").len();
    assert!(acked > 0, "the load never got an update acknowledged");
    println!(
        "crash test: {iterations} SIGKILLs, {acked} acknowledged updates, {checked} checks of \
         acknowledged updates after restarts, 0 lost, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
