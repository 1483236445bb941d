//! Tandem inside an app: the app's own routes, its own sessions deciding who may open what,
//! a handler that edits a document server-side, and a hook that logs changes.
//!
//! ```sh
//! cargo run -p tandem-server --example embed
//! # in another shell: append to notes/1 as alice; y-websocket clients on
//! # ws://127.0.0.1:4456/collab/ws/notes/1 (cookie `session=alice-session`) see it live
//! curl -X POST --cookie session=alice-session -d 'hello' http://127.0.0.1:4456/notes/1/append
//! ```
//!
//! `EMBED_ADDR` (default `127.0.0.1:4456`) and `EMBED_DATA_DIR` (default `./embed-data`)
//! override where it listens and stores.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use tandem_core::{AuthError, Authorizer, Credentials, DocName, Grant, Rights, SledStore};
use tandem_server::hooks::FnHooks;
use tandem_server::Tandem;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use yrs::{GetString, Text, WriteTxn};

/// The app's users, by session id: who they are and whether they may edit.
#[derive(Clone)]
struct Sessions(Arc<HashMap<&'static str, (&'static str, Rights)>>);

impl Sessions {
    fn demo() -> Self {
        Self(Arc::new(HashMap::from([
            (
                "alice-session",
                (
                    "alice",
                    Rights::parse_list(&["write"]).expect("known right"),
                ),
            ),
            (
                "bob-session",
                ("bob", Rights::parse_list(&["read"]).expect("known right")),
            ),
        ])))
    }

    /// The user behind the request's `session` cookie.
    fn user(&self, headers: &HeaderMap) -> Option<(&'static str, Rights)> {
        let cookies = headers.get("cookie")?.to_str().ok()?;
        let session = cookies
            .split(';')
            .find_map(|pair| pair.trim().strip_prefix("session="))?;
        self.0.get(session).copied()
    }
}

/// The app's own authorization: its session cookie instead of tokens. Everyone with a session
/// may open `notes/...`, with the rights their account has.
#[async_trait]
impl Authorizer for Sessions {
    async fn authorize(
        &self,
        credentials: &Credentials,
        doc: &DocName,
    ) -> Result<Grant, AuthError> {
        let (user, rights) = self
            .user(&credentials.headers)
            .ok_or_else(|| AuthError::Unauthenticated("log in first".into()))?;
        if !doc.as_bytes().starts_with(b"notes/") {
            return Err(AuthError::Forbidden("only notes are shared".into()));
        }
        Ok(Grant {
            subject: Some(user.to_owned()),
            rights,
            expires_at: None,
        })
    }
}

#[derive(Clone)]
struct App {
    tandem: Tandem,
    sessions: Sessions,
}

/// `POST /notes/{id}/append`: appends the body to the note's text, server-side. Answers with
/// the note's new length once the change is durable.
async fn append(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Result<String, (StatusCode, String)> {
    let Some((_, rights)) = app.sessions.user(&headers) else {
        return Err((StatusCode::UNAUTHORIZED, "log in first".into()));
    };
    if !rights.contains(Rights::WRITE) {
        return Err((StatusCode::FORBIDDEN, "read-only account".into()));
    }
    let unavailable =
        |error: tandem_core::DocError| (StatusCode::SERVICE_UNAVAILABLE, error.to_string());
    let note = app
        .tandem
        .document(format!("notes/{id}"))
        .await
        .map_err(unavailable)?;
    let length = note
        .transact(move |txn| {
            let text = txn.get_or_insert_text("text");
            let end = text.len(txn);
            text.insert(txn, end, &body);
            text.get_string(txn).chars().count()
        })
        .await
        .map_err(unavailable)?;
    note.persisted().await.map_err(unavailable)?;
    Ok(length.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr: SocketAddr = std::env::var("EMBED_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:4456".into())
        .parse()?;
    let data_dir = std::env::var("EMBED_DATA_DIR").unwrap_or_else(|_| "./embed-data".into());

    let sessions = Sessions::demo();
    let hooks = FnHooks::new().on_change(|change| async move {
        tracing::info!(doc = %change.doc, updates = change.updates.len(), "note changed");
    });
    let tandem = Tandem::builder()
        .store(Arc::new(SledStore::open(&data_dir)?))
        .authorizer(Arc::new(sessions.clone()))
        .hooks(Arc::new(hooks))
        .build()?;
    let app = Router::new()
        .route(
            "/",
            get(|| async { "an app with Tandem inside: see /collab/ws/notes/{id}" }),
        )
        .route("/notes/{id}/append", post(append))
        .with_state(App {
            tandem: tandem.clone(),
            sessions,
        })
        .nest("/collab", tandem.router());

    let listener = TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        signal.cancel();
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await?;
    // The app's server stopped accepting; now close Tandem's sockets and store everything.
    tandem.shutdown().await?;
    Ok(())
}
