//! The core of Tandem, a realtime collaboration server for Yjs documents: documents and their
//! actors, the registry, the y-websocket protocol, presence and storage. No HTTP lives here;
//! `tandem-server` puts it on the network.
//!
//! An app embedding Tandem meets two things here: the [`Authorizer`] trait, to decide with its
//! own code who may open which document, and [`Document`], to read and change documents
//! without a socket. A [`Store`] of its own can replace [`SledStore`].
//!
//! ```
//! use std::sync::Arc;
//!
//! use async_trait::async_trait;
//! use tandem_core::{
//!     AuthError, Authorizer, Credentials, DocConfig, DocName, Grant, Registry, Rights, SledStore,
//! };
//! use yrs::{Map, WriteTxn};
//!
//! /// Lets the `x-user` header `admin` write everything and everyone else read.
//! struct HeaderAuthorizer;
//!
//! #[async_trait]
//! impl Authorizer for HeaderAuthorizer {
//!     async fn authorize(&self, credentials: &Credentials, _doc: &DocName) -> Result<Grant, AuthError> {
//!         let user = credentials
//!             .headers
//!             .get("x-user")
//!             .and_then(|value| value.to_str().ok())
//!             .ok_or_else(|| AuthError::Unauthenticated("who are you?".into()))?;
//!         let rights = if user == "admin" { Rights::ALL } else { Rights::READ };
//!         Ok(Grant { subject: Some(user.to_owned()), rights, expires_at: None })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let mut credentials = Credentials::default();
//! credentials.headers.insert("x-user", "admin".parse()?);
//! let grant = HeaderAuthorizer.authorize(&credentials, &DocName::from("board")).await?;
//! assert!(grant.rights.contains(Rights::WRITE));
//!
//! let registry = Registry::new(Arc::new(SledStore::open(dir.path())?), DocConfig::default());
//! let board = registry.document("board").await?;
//! board
//!     .transact(|txn| txn.get_or_insert_map("shapes").insert(txn, "circle", 3))
//!     .await?;
//! board.persisted().await?;
//! assert_eq!(board.get_json().await?, serde_json::json!({ "shapes": { "circle": 3 } }));
//! # drop(board);
//! registry.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`registry`]: name → document actor; loads each document once, unloads idle ones.
//! - [`actor`]: one task per loaded document owning its `yrs::Doc`, awareness and peers; a
//!   cloneable [`DocHandle`] talks to it.
//! - [`document`]: [`Document`], reading and changing a document from server code.
//! - [`events`]: what documents report (loaded, changed, unloaded) to whoever listens.
//! - [`hocuspocus`]: the Hocuspocus framing (many documents per socket, in-band auth).
//! - [`peer`]: a peer's bounded outbound queue and the eviction of peers that fall behind.
//! - [`protocol`]: decoding and encoding y-websocket frames (sync, awareness, auth).
//! - [`nesting`]: how deeply shared types nest; deeper than the limit is refused.
//! - [`preflight`]: the walk over an update's bytes that refuses what yrs would choke on.
//! - `integrity`: an update's clock ranges against a document's: clock gaps, and whether the
//!   document already has everything an update carries.
//! - [`awareness`]: presence states with the y-protocols rules.
//! - [`auth`]: the [`Authorizer`] trait, [`Rights`], and JWT verification and minting.
//! - [`store`]: the [`Store`] trait (snapshot + update log per document) and [`SledStore`].
//! - [`lib0`]: the variable-length integers and strings Yjs messages are made of.
//! - [`metrics`]: latency histograms of update application and store flushes.
//! - [`config`]: tunables and their defaults.
//! - [`name`]: document names (exact bytes).

pub mod actor;
pub mod auth;
pub mod awareness;
pub mod config;
pub mod document;
pub mod events;
pub mod hocuspocus;
mod integrity;
pub mod lib0;
pub mod metrics;
pub mod name;
pub mod nesting;
pub mod peer;
pub mod preflight;
pub mod protocol;
pub mod registry;
pub mod store;

pub use actor::{DocError, DocHandle, DocStats, PeerInfo, UpdateError};
pub use auth::{AuthError, Authorizer, Credentials, Grant, Rights};
pub use config::DocConfig;
pub use document::Document;
pub use events::{DocEvent, EventSink, Origin};
pub use name::DocName;
pub use peer::{Eviction, EvictionSignal, PeerId, PeerInbox, PeerOutbox};
pub use registry::Registry;
pub use store::{DocInfo, SledStore, Store, StoreError, StoredEvent};
