//! Presence at scale: coalesced awareness frames, exact final views, removals that are never
//! lost, and client ids that belong to their connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tandem_core::auth::jwt::unix_now;
use tandem_core::auth::JwtAuthorizer;
use tandem_core::lib0::{write_var_bytes, write_var_u64, Reader};
use tandem_core::SledStore;
use tandem_server::{Config, RateLimit, Tandem};
use tandem_tests::{within, SyncClient, TestServer};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

const PEERS: usize = 200;
const MOVES_PER_SEC: u64 = 60;
const STORM: Duration = Duration::from_secs(5);

/// An awareness message for one client.
fn awareness_frame(client: u64, clock: u64, state: &str) -> Vec<u8> {
    let mut body = Vec::new();
    write_var_u64(&mut body, 1);
    write_var_u64(&mut body, client);
    write_var_u64(&mut body, clock);
    write_var_bytes(&mut body, state.as_bytes());
    let mut frame = vec![1];
    write_var_bytes(&mut frame, &body);
    frame
}

/// What one receiving peer saw: awareness frames, and the newest (clock, state) per client.
#[derive(Default)]
struct View {
    frames: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    states: HashMap<u64, (u64, String)>,
}

impl View {
    /// Applies an awareness frame without validating the JSON (the server did): the test must
    /// keep up with 200 receivers of 20 frames a second each.
    fn apply(&mut self, frame: &[u8]) -> anyhow::Result<()> {
        let mut reader = Reader::new(frame);
        if reader.var_u64()? != 1 {
            return Ok(());
        }
        let now = Instant::now();
        self.frames += 1;
        self.first.get_or_insert(now);
        self.last = Some(now);
        let mut body = Reader::new(reader.var_bytes()?);
        for _ in 0..body.var_u64()? {
            let client = body.var_u64()?;
            let clock = body.var_u64()?;
            let state = body.var_str()?.to_owned();
            let newer = self
                .states
                .get(&client)
                .is_none_or(|(known, _)| *known <= clock);
            if newer {
                self.states.insert(client, (clock, state));
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_moving_cursors_are_coalesced_and_exact() -> anyhow::Result<()> {
    let dir = tempdir();
    let config = Config {
        // 60 cursor moves a second is within the default rate limit; the bursts of a busy test
        // machine are not always.
        rate_limit: RateLimit::off(),
        ..Config::default()
    };
    let interval = config.doc.awareness_interval;
    let server = TestServer::start(dir.path(), config).await?;
    let url = server.url("board");
    // Each peer's last clock, once it stopped moving; then every peer reads until its view
    // has all of them.
    let finals: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let (all_final_tx, all_final) = watch::channel(false);
    // Everyone connects before the storm starts: on a busy machine connecting 200 sockets can
    // take longer than the storm, and a peer that never moved would have nothing to see.
    let mut sockets = Vec::new();
    for _ in 0..PEERS {
        let (socket, _) = within(
            "connect",
            tokio_tungstenite::connect_async_with_config(url.as_str(), None, true),
        )
        .await??;
        sockets.push(socket);
    }
    let mut peers = Vec::new();
    let started = Instant::now();
    for (index, socket) in sockets.into_iter().enumerate() {
        let client = 1_000 + index as u64;
        let (finals, mut all_final) = (finals.clone(), all_final.clone());
        peers.push(tokio::spawn(async move {
            let (mut sink, mut stream) = socket.split();
            let mut view = View::default();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / MOVES_PER_SEC));
            let mut clock = 0;
            let storm_ends = started + STORM;
            let mut moving = true;
            loop {
                let complete = *all_final.borrow()
                    && finals
                        .lock()
                        .expect("finals")
                        .iter()
                        .all(|(c, clock)| view.states.get(c).is_some_and(|s| s.0 == *clock));
                if complete {
                    break;
                }
                tokio::select! {
                    _ = tick.tick(), if moving => {
                        // Every peer moves at least once, however late it starts.
                        if clock > 0 && Instant::now() >= storm_ends {
                            moving = false;
                            finals.lock().expect("finals").insert(client, clock);
                            continue;
                        }
                        clock += 1;
                        let state = format!(r#"{{"cursor":{clock},"user":{index}}}"#);
                        let frame = awareness_frame(client, clock, &state);
                        sink.send(Message::Binary(frame.into())).await?;
                    }
                    message = stream.next() => match message {
                        Some(Ok(Message::Binary(frame))) => view.apply(&frame)?,
                        Some(Ok(_)) => {}
                        _ => anyhow::bail!("peer {index} lost its connection"),
                    },
                    _ = all_final.changed() => {}
                }
            }
            anyhow::Ok(view)
        }));
    }
    wait_for_finals(&finals).await?;
    let storm = started.elapsed();
    all_final_tx.send(true)?;
    let mut views = Vec::new();
    for peer in peers {
        views.push(within("a peer's view to be complete", peer).await???);
    }
    let elapsed = started.elapsed();
    let finals = finals.lock().expect("finals").clone();
    let moves: u64 = finals.values().sum();
    let mut max_rate: f64 = 0.0;
    for view in &views {
        for (client, clock) in &finals {
            assert_eq!(view.states.get(client).map(|s| s.0), Some(*clock));
        }
        let (Some(first), Some(last)) = (view.first, view.last) else {
            anyhow::bail!("a peer received no awareness at all");
        };
        let span = last.duration_since(first);
        max_rate = max_rate.max(view.frames as f64 / span.as_secs_f64().max(1.0));
        // One frame per interval at most, plus the join frame and scheduling slack.
        let ceiling = span.as_secs_f64() / interval.as_secs_f64() + 5.0;
        assert!(
            (view.frames as f64) <= ceiling,
            "{} awareness frames in {span:?}: more than one per {interval:?}",
            view.frames
        );
    }
    println!(
        "{PEERS} peers sent {moves} cursor moves in {storm:?}; every view exact after {elapsed:?}; \
         at most {max_rate:.1} awareness frames/s per receiver"
    );
    server.stop().await
}

/// Waits until every peer reported its final clock.
async fn wait_for_finals(finals: &Mutex<HashMap<u64, u64>>) -> anyhow::Result<()> {
    tandem_tests::wait_until("every peer to stop moving", || {
        finals.lock().expect("finals").len() == PEERS
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abruptly_dropped_peer_disappears_within_a_ping_and_an_interval() -> anyhow::Result<()> {
    let dir = tempdir();
    let config = Config {
        ping_interval: Duration::from_millis(500),
        ..Config::default()
    };
    let limit = config.ping_interval + config.doc.awareness_interval;
    let server = TestServer::start(dir.path(), config).await?;
    let url = server.url("doc");
    let mut watcher = SyncClient::connect_synced(&url).await?;
    let mut leaver = SyncClient::connect_synced(&url).await?;
    let leaver_id = leaver.doc.client_id().get();
    leaver
        .set_awareness(1, Some(r#"{"user":"leaver"}"#))
        .await?;
    watcher
        .pump_until("the leaver's presence", |c| {
            c.awareness.get(&leaver_id).is_some_and(Option::is_some)
        })
        .await?;
    // No close frame, no goodbye awareness: the socket just goes away.
    leaver.abort();
    let dropped = Instant::now();
    watcher
        .pump_until_within("the leaver's removal", limit * 4, |c| {
            c.awareness.get(&leaver_id) == Some(&None)
        })
        .await?;
    let took = dropped.elapsed();
    assert!(
        took <= limit + Duration::from_millis(250),
        "removal took {took:?}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_speaks_for_a_client_another_connection_owns() -> anyhow::Result<()> {
    let dir = tempdir();
    let secret = b"presence tests secret, at least 32 bytes";
    let tandem = Tandem::builder()
        .store(Arc::new(SledStore::open(dir.path())?))
        .authorizer(Arc::new(JwtAuthorizer::hs256(secret)?))
        .build()?;
    let server = TestServer::serve(tandem).await?;
    let token = |sub: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({ "sub": sub, "exp": unix_now() + 3600, "docs": { "*": ["write"] } }),
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .expect("sign")
    };
    let url = |sub: &str| format!("{}?token={}", server.url("doc"), token(sub));
    let mut alice = SyncClient::connect_synced(&url("alice")).await?;
    let mut watcher = SyncClient::connect_synced(&url("watcher")).await?;
    let alice_id = alice.doc.client_id().get();
    alice.set_awareness(1, Some(r#"{"user":"alice"}"#)).await?;
    watcher
        .pump_until("alice's presence", |c| {
            c.awareness.get(&alice_id).is_some_and(Option::is_some)
        })
        .await?;

    // Mallory tries to rewrite and to remove Alice's state, then publishes her own.
    let mut mallory = SyncClient::connect_synced(&url("mallory")).await?;
    mallory
        .send_raw(awareness_frame(alice_id, 5, r#"{"user":"mallory"}"#))
        .await?;
    mallory
        .send_raw(awareness_frame(alice_id, 6, "null"))
        .await?;
    mallory
        .set_awareness(1, Some(r#"{"user":"mallory"}"#))
        .await?;
    let mallory_id = mallory.doc.client_id().get();
    watcher
        .pump_until("mallory's own presence", |c| {
            c.awareness.get(&mallory_id).is_some_and(Option::is_some)
        })
        .await?;
    assert_eq!(
        watcher.awareness.get(&alice_id),
        Some(&Some(r#"{"user":"alice"}"#.to_owned()))
    );

    // Alice on a second connection (another tab, or a reconnect the server has not noticed yet)
    // may update her client's state. It still belongs to the first connection: closing that
    // removes it, and the second connection's next renewal brings it back.
    let mut again = SyncClient::connect_synced(&url("alice")).await?;
    again
        .send_raw(awareness_frame(
            alice_id,
            2,
            r#"{"user":"alice","again":true}"#,
        ))
        .await?;
    watcher
        .pump_until("alice's new state", |c| {
            c.awareness
                .get(&alice_id)
                .is_some_and(|s| s.as_deref().is_some_and(|s| s.contains("again")))
        })
        .await?;
    alice.close().await?;
    watcher
        .pump_until("alice's state to go with her first connection", |c| {
            c.awareness.get(&alice_id) == Some(&None)
        })
        .await?;
    again
        .send_raw(awareness_frame(
            alice_id,
            3,
            r#"{"user":"alice","still":true}"#,
        ))
        .await?;
    watcher
        .pump_until("alice's state after the old connection closed", |c| {
            c.awareness
                .get(&alice_id)
                .is_some_and(|s| s.as_deref().is_some_and(|s| s.contains("still")))
        })
        .await?;
    server.stop().await
}
