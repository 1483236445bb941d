//! Who is connected where: every peer of every document with its subject and transport, for
//! `GET /docs/{doc}/presence` (which `sub` published a state), `GET /status` (peer counts per
//! document) and webhooks (peer joined and left).
//!
//! Registering returns a [`PeerRegistration`]; dropping it unregisters the peer, so no path
//! out of a connection can forget to.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tandem_core::{DocName, PeerId};

use crate::webhooks::WebhookEvent;
use crate::Tandem;

/// How a peer is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerKind {
    /// A y-websocket connection.
    WebSocket,
    /// A document session on a Hocuspocus connection.
    Hocuspocus,
    /// A Server-Sent Events stream.
    EventStream,
    /// A client publishing presence over HTTP.
    HttpPresence,
}

impl PeerKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PeerKind::WebSocket => "websocket",
            PeerKind::Hocuspocus => "hocuspocus",
            PeerKind::EventStream => "sse",
            PeerKind::HttpPresence => "http",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PeerEntry {
    pub(crate) doc: DocName,
    pub(crate) subject: Option<String>,
    pub(crate) kind: PeerKind,
}

/// Every registered peer.
#[derive(Debug, Default)]
pub(crate) struct PeerDirectory {
    peers: Mutex<HashMap<PeerId, PeerEntry>>,
}

impl PeerDirectory {
    fn lock(&self) -> MutexGuard<'_, HashMap<PeerId, PeerEntry>> {
        // Every change is one insert or remove: the map is consistent across a panic elsewhere.
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The subject of a peer, if it is registered and has one.
    pub(crate) fn subject(&self, peer: PeerId) -> Option<String> {
        self.lock()
            .get(&peer)
            .and_then(|entry| entry.subject.clone())
    }

    /// The `top` documents with the most peers, busiest first, and their peer counts.
    pub(crate) fn busiest(&self, top: usize) -> Vec<(DocName, usize)> {
        let mut counts: HashMap<DocName, usize> = HashMap::new();
        for entry in self.lock().values() {
            *counts.entry(entry.doc.clone()).or_default() += 1;
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts.truncate(top);
        counts
    }

    /// Registered peers by transport.
    pub(crate) fn count(&self, kind: PeerKind) -> usize {
        self.lock()
            .values()
            .filter(|entry| entry.kind == kind)
            .count()
    }

    /// Peers of one document.
    pub(crate) fn peers_of(&self, doc: &DocName) -> usize {
        self.lock()
            .values()
            .filter(|entry| &entry.doc == doc)
            .count()
    }
}

/// A registered peer; dropping it unregisters the peer and reports that it left.
#[derive(Debug)]
pub(crate) struct PeerRegistration {
    tandem: Tandem,
    peer: PeerId,
}

impl Tandem {
    /// Registers a peer that joined a document, and reports the join to webhooks.
    pub(crate) fn register_peer(
        &self,
        doc: &DocName,
        peer: PeerId,
        subject: Option<String>,
        kind: PeerKind,
    ) -> PeerRegistration {
        let entry = PeerEntry {
            doc: doc.clone(),
            subject,
            kind,
        };
        self.inner.peers.lock().insert(peer, entry.clone());
        if let Some(webhooks) = &self.inner.webhooks {
            webhooks.send(WebhookEvent::PeerJoined { peer, entry });
        }
        PeerRegistration {
            tandem: self.clone(),
            peer,
        }
    }
}

impl Drop for PeerRegistration {
    fn drop(&mut self) {
        let entry = self.tandem.inner.peers.lock().remove(&self.peer);
        if let (Some(entry), Some(webhooks)) = (entry, &self.tandem.inner.webhooks) {
            webhooks.send(WebhookEvent::PeerLeft {
                peer: self.peer,
                entry,
            });
        }
    }
}
