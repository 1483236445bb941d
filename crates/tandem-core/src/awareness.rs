//! Presence: the awareness states of every client in one document, with the y-protocols rules
//! for which update wins (`../shared/PROTOCOLS.md` §2.3).
//!
//! The server is not an awareness participant (it has no local state), so unlike yrs'
//! `Awareness` this table never bumps a remote client's clock on removal: a removal keeps the
//! clock it had, exactly as the JavaScript reference server does, so the client's next renewal is
//! accepted. Each state remembers which connection introduced it, so the states of a connection
//! that goes away can be removed and the removal announced.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::peer::PeerId;
use crate::protocol::{encode_awareness, AwarenessUpdate};

/// A state not renewed for this long is removed, as y-protocols' `outdatedTimeout` does.
/// Clients renew their state every 15 s.
pub const OUTDATED_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct ClientMeta {
    clock: u64,
    state: Option<Arc<str>>,
    last_updated: Instant,
    owner: PeerId,
}

/// What an awareness update did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Clients whose state changed or was renewed.
    pub changed: Vec<u64>,
    /// Newer entries refused because another connection owns the client id.
    pub refused: usize,
    /// The update broke a limit: the entries from the first one over it on were refused, and
    /// the connection should be closed.
    pub over_limit: Option<PresenceLimit>,
}

/// A limit of [`PresenceLimits`] an awareness update broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceLimit {
    /// The connection would publish more client ids than allowed.
    ClientsPerPeer,
    /// The document's states would take more bytes than allowed.
    DocumentBytes,
}

/// How much presence one document holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceLimits {
    /// Client ids one connection may publish states for at once (see
    /// [`DEFAULT_MAX_PRESENCE_CLIENTS`](crate::config::DEFAULT_MAX_PRESENCE_CLIENTS)).
    pub clients_per_peer: usize,
    /// Bytes of JSON all of a document's states may take together (see
    /// [`DEFAULT_MAX_PRESENCE_BYTES`](crate::config::DEFAULT_MAX_PRESENCE_BYTES)).
    pub document_bytes: usize,
}

impl Default for PresenceLimits {
    fn default() -> Self {
        Self {
            clients_per_peer: crate::config::DEFAULT_MAX_PRESENCE_CLIENTS,
            document_bytes: crate::config::DEFAULT_MAX_PRESENCE_BYTES,
        }
    }
}

/// One client's current awareness state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientState {
    /// The client's Yjs client id.
    pub client: u64,
    /// Its awareness clock.
    pub clock: u64,
    /// Its state, as JSON text.
    pub state: Arc<str>,
    /// When the state was last set or renewed.
    pub last_updated: Instant,
    /// The connection that published it.
    pub owner: PeerId,
}

/// Every client's awareness state in one document.
///
/// A removed client is remembered (its clock, so an older state arriving late stays refused)
/// for [`OUTDATED_TIMEOUT`], then forgotten; a removal of a client the table does not know is
/// not stored at all, so removals cannot grow the table.
#[derive(Debug, Default)]
pub struct AwarenessTable {
    clients: HashMap<u64, ClientMeta>,
    /// Bytes of JSON of the present states.
    bytes: usize,
    limits: PresenceLimits,
}

impl AwarenessTable {
    /// An empty table enforcing `limits`.
    pub fn with_limits(limits: PresenceLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Applies an update from `peer`; returns the ids of the clients it changed or renewed, which
    /// are what must be broadcast (renewals included: they are the clients' keep-alive), and the
    /// number of entries refused.
    ///
    /// A state belongs to the connection that introduced it, which is the one whose closing
    /// removes it (as in the JavaScript server). Another connection may update it only when
    /// `may_speak_for(owner)` says so (the same user in another tab, or reconnecting before the
    /// server noticed the old connection die); otherwise a newer entry is refused: nobody speaks
    /// for someone else. Entries that are not newer are ignored first, so the copies of other
    /// clients' states that y-websocket clients send back are neither applied nor refused.
    pub fn apply(
        &mut self,
        peer: PeerId,
        update: AwarenessUpdate,
        now: Instant,
        may_speak_for: impl Fn(PeerId) -> bool,
    ) -> Applied {
        let mut applied = Applied {
            changed: Vec::with_capacity(update.entries.len()),
            ..Applied::default()
        };
        for entry in update.entries {
            let current = self.clients.get(&entry.client);
            if current.is_none() && entry.state.is_none() {
                // The removal of a client nobody knows: nothing to remember it by.
                continue;
            }
            let present = current.is_some_and(|meta| meta.state.is_some());
            let current_clock = current.map_or(0, |meta| meta.clock);
            let accept = current_clock < entry.clock
                || (current_clock == entry.clock && entry.state.is_none() && present);
            if !accept {
                continue;
            }
            let owner = match current {
                Some(meta) if present => meta.owner,
                _ => peer,
            };
            if owner != peer && !may_speak_for(owner) {
                applied.refused += 1;
                continue;
            }
            let old_len = current
                .and_then(|meta| meta.state.as_ref())
                .map_or(0, |s| s.len());
            let new_len = entry.state.as_ref().map_or(0, |s| s.len());
            if entry.state.is_some() && !(present && owner == peer) {
                let published = self
                    .clients
                    .values()
                    .filter(|meta| meta.owner == peer && meta.state.is_some())
                    .count();
                if published >= self.limits.clients_per_peer {
                    applied.over_limit = Some(PresenceLimit::ClientsPerPeer);
                    break;
                }
            }
            let bytes = self.bytes - old_len + new_len;
            if new_len > old_len && bytes > self.limits.document_bytes {
                applied.over_limit = Some(PresenceLimit::DocumentBytes);
                break;
            }
            self.bytes = bytes;
            // A removal of a client that is already gone changes nothing anyone can see.
            let visible = present || entry.state.is_some();
            self.clients.insert(
                entry.client,
                ClientMeta {
                    clock: entry.clock,
                    state: entry.state,
                    last_updated: now,
                    owner,
                },
            );
            if visible {
                applied.changed.push(entry.client);
            }
        }
        applied
    }

    /// Removes every state `peer` introduced; returns the removed client ids.
    pub fn remove_peer(&mut self, peer: PeerId) -> Vec<u64> {
        let now = Instant::now();
        let mut removed = Vec::new();
        for (&client, meta) in &mut self.clients {
            if meta.owner == peer {
                if let Some(state) = meta.state.take() {
                    self.bytes -= state.len();
                    meta.last_updated = now;
                    removed.push(client);
                }
            }
        }
        removed
    }

    /// Removes states not renewed within [`OUTDATED_TIMEOUT`], and forgets clients removed
    /// longer ago than that; returns the removed client ids.
    pub fn remove_outdated(&mut self, now: Instant) -> Vec<u64> {
        let mut removed = Vec::new();
        let bytes = &mut self.bytes;
        self.clients.retain(|&client, meta| {
            if now.duration_since(meta.last_updated) < OUTDATED_TIMEOUT {
                return true;
            }
            match meta.state.take() {
                Some(state) => {
                    *bytes -= state.len();
                    meta.last_updated = now;
                    removed.push(client);
                    true
                }
                None => false,
            }
        });
        removed
    }

    /// Whether the table holds anything: states, or removals it still remembers.
    pub fn has_entries(&self) -> bool {
        !self.clients.is_empty()
    }

    /// Bytes of JSON the present states take together.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Encodes the given clients (their current clock and state, `null` when removed).
    pub fn encode(&self, clients: &[u64]) -> bytes::Bytes {
        let entries: Vec<_> = clients
            .iter()
            .filter_map(|id| self.clients.get(id).map(|meta| (*id, meta)))
            .map(|(id, meta)| (id, meta.clock, meta.state.as_deref()))
            .collect();
        encode_awareness(entries.into_iter())
    }

    /// Every client that currently has a state.
    pub fn states(&self) -> Vec<ClientState> {
        let mut states: Vec<ClientState> = self
            .clients
            .iter()
            .filter_map(|(&client, meta)| {
                Some(ClientState {
                    client,
                    clock: meta.clock,
                    state: meta.state.clone()?,
                    last_updated: meta.last_updated,
                    owner: meta.owner,
                })
            })
            .collect();
        states.sort_by_key(|state| state.client);
        states
    }

    /// Encodes every client that currently has a state, or `None` when there is none.
    pub fn encode_all(&self) -> Option<bytes::Bytes> {
        let present: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, meta)| meta.state.is_some())
            .map(|(id, _)| *id)
            .collect();
        (!present.is_empty()).then(|| self.encode(&present))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode_awareness, AwarenessEntry};

    /// Applies with the rule that nobody takes over anybody.
    fn apply(
        table: &mut AwarenessTable,
        peer: PeerId,
        update: AwarenessUpdate,
        now: Instant,
    ) -> Vec<u64> {
        table.apply(peer, update, now, |_| false).changed
    }

    fn update(client: u64, clock: u64, state: Option<&str>) -> AwarenessUpdate {
        AwarenessUpdate {
            entries: vec![AwarenessEntry {
                client,
                clock,
                state: state.map(Arc::from),
            }],
        }
    }

    #[test]
    fn newer_clock_wins_and_renewals_are_broadcast() {
        let mut table = AwarenessTable::default();
        let now = Instant::now();
        assert_eq!(
            apply(&mut table, PeerId(1), update(7, 1, Some("{}")), now),
            [7]
        );
        assert!(apply(&mut table, PeerId(1), update(7, 1, Some("{\"x\":1}")), now).is_empty());
        assert_eq!(
            apply(&mut table, PeerId(1), update(7, 2, Some("{}")), now),
            [7]
        );
        assert!(apply(&mut table, PeerId(1), update(7, 1, Some("{}")), now).is_empty());
    }

    #[test]
    fn same_clock_removal_is_accepted_once() {
        let mut table = AwarenessTable::default();
        let now = Instant::now();
        apply(&mut table, PeerId(1), update(7, 3, Some("{}")), now);
        assert_eq!(apply(&mut table, PeerId(1), update(7, 3, None), now), [7]);
        assert!(apply(&mut table, PeerId(1), update(7, 3, None), now).is_empty());
        assert!(table.states().is_empty());
    }

    #[test]
    fn removing_a_peer_keeps_the_clock_so_the_client_can_come_back() {
        let mut table = AwarenessTable::default();
        let now = Instant::now();
        apply(&mut table, PeerId(1), update(7, 3, Some("{}")), now);
        apply(&mut table, PeerId(2), update(8, 1, Some("{}")), now);
        assert_eq!(table.remove_peer(PeerId(1)), [7]);
        let removal = table.encode(&[7]);
        let decoded = decode_awareness(&removal[2..]).expect("valid");
        assert_eq!(decoded, update(7, 3, None));
        assert_eq!(
            apply(&mut table, PeerId(3), update(7, 4, Some("{}")), now),
            [7]
        );
        assert!(table.remove_peer(PeerId(1)).is_empty());
    }

    #[test]
    fn a_connection_cannot_speak_for_a_client_another_one_owns() {
        let mut table = AwarenessTable::default();
        let now = Instant::now();
        table.apply(PeerId(1), update(7, 1, Some("{}")), now, |_| false);
        // The same state sent back, as y-websocket clients do with states they receive: ignored.
        let echo = table.apply(PeerId(2), update(7, 1, Some("{}")), now, |_| false);
        assert_eq!(echo, Applied::default());
        let spoof = table.apply(PeerId(2), update(7, 2, Some("{\"evil\":1}")), now, |_| {
            false
        });
        assert_eq!(
            spoof,
            Applied {
                changed: vec![],
                refused: 1,
                ..Applied::default()
            }
        );
        let removal = table.apply(PeerId(2), update(7, 2, None), now, |_| false);
        assert_eq!(removal.refused, 1);
        assert_eq!(&*table.states()[0].state, "{}");
        // The same user on another connection may update it; it stays the first connection's.
        let same_user = table.apply(PeerId(3), update(7, 2, Some("{}")), now, |owner| {
            owner == PeerId(1)
        });
        assert_eq!(same_user.changed, [7]);
        assert!(table.remove_peer(PeerId(3)).is_empty());
        assert_eq!(table.remove_peer(PeerId(1)), [7]);
    }

    #[test]
    fn outdated_states_are_removed() {
        let mut table = AwarenessTable::default();
        let start = Instant::now();
        apply(&mut table, PeerId(1), update(7, 1, Some("{}")), start);
        table.apply(
            PeerId(1),
            update(8, 1, Some("{}")),
            start + Duration::from_secs(20),
            |_| false,
        );
        assert!(table
            .remove_outdated(start + Duration::from_secs(29))
            .is_empty());
        assert_eq!(table.remove_outdated(start + OUTDATED_TIMEOUT), [7]);
        assert!(table.encode_all().is_some());
    }

    #[test]
    fn removals_of_unknown_clients_are_not_stored_and_removed_clients_are_forgotten() {
        let mut table = AwarenessTable::default();
        let start = Instant::now();
        let removals = AwarenessUpdate {
            entries: (1..=10_000)
                .map(|client| AwarenessEntry {
                    client,
                    clock: 1,
                    state: None,
                })
                .collect(),
        };
        let applied = table.apply(PeerId(1), removals, start, |_| false);
        assert!(applied.changed.is_empty());
        assert!(!table.has_entries());
        apply(&mut table, PeerId(1), update(7, 1, Some("{}")), start);
        assert_eq!(table.remove_peer(PeerId(1)), [7]);
        // Remembered a while, so a late older state stays refused; then forgotten.
        assert!(table.has_entries());
        table.remove_outdated(Instant::now() + OUTDATED_TIMEOUT);
        assert!(!table.has_entries());
    }

    #[test]
    fn one_connection_publishes_a_bounded_number_of_clients() {
        let mut table = AwarenessTable::with_limits(PresenceLimits {
            clients_per_peer: 2,
            document_bytes: 1 << 20,
        });
        let now = Instant::now();
        let crowd = AwarenessUpdate {
            entries: (1..=3)
                .map(|client| AwarenessEntry {
                    client,
                    clock: 1,
                    state: Some(Arc::from("{}")),
                })
                .collect(),
        };
        let applied = table.apply(PeerId(1), crowd, now, |_| false);
        assert_eq!(applied.changed, [1, 2]);
        assert_eq!(applied.over_limit, Some(PresenceLimit::ClientsPerPeer));
        // Renewing its own clients stays allowed; another connection has its own allowance.
        assert_eq!(
            apply(&mut table, PeerId(1), update(2, 2, Some("{}")), now),
            [2]
        );
        assert_eq!(
            apply(&mut table, PeerId(2), update(9, 1, Some("{}")), now),
            [9]
        );
    }

    #[test]
    fn a_document_holds_a_bounded_number_of_presence_bytes() {
        let mut table = AwarenessTable::with_limits(PresenceLimits {
            clients_per_peer: 4,
            document_bytes: 100,
        });
        let now = Instant::now();
        let big = format!("\"{}\"", "x".repeat(58));
        assert_eq!(
            apply(&mut table, PeerId(1), update(1, 1, Some(&big)), now),
            [1]
        );
        let applied = table.apply(PeerId(2), update(2, 1, Some(&big)), now, |_| false);
        assert_eq!(applied.over_limit, Some(PresenceLimit::DocumentBytes));
        assert_eq!(table.bytes(), 60);
        // Shrinking is always allowed, and frees room.
        assert_eq!(
            apply(&mut table, PeerId(1), update(1, 2, Some("{}")), now),
            [1]
        );
        assert_eq!(
            apply(&mut table, PeerId(2), update(2, 1, Some(&big)), now),
            [2]
        );
        assert_eq!(table.bytes(), 62);
        table.remove_peer(PeerId(2));
        assert_eq!(table.bytes(), 2);
    }
}
