//! What an update claims, compared with a document in clock ranges rather than clocks: whether
//! the update has a clock gap (structs of a client starting past what the document has), and
//! whether the document already contains everything the update carries.
//!
//! Both checks run inside the document's actor, so their cost is bounded by the number of clock
//! ranges involved, never by the clocks those ranges span: [`Claims::of`] sorts and merges an
//! update's ranges (in the caller's task, not the actor's) and [`Claims::covered_by`] looks
//! each one up in the document's delete set by binary search.

use std::ops::Range;

use yrs::{IdSet, StateVector, Update};

/// The most deleted ranges (after merging) an update may claim for [`Claims::covered_by`] to
/// look at them: beyond it the answer is "not covered" at once, so one question costs the actor
/// at most this many binary searches of the document's delete set (about 1.3 million range
/// comparisons for a million deleted ranges). Only a read-only Hocuspocus session asks, and
/// the answer decides nothing but whether its sync step 2 is acknowledged as harmless: its
/// changes are never applied either way. A reconnecting reader repeats the deletions it knows,
/// which stay far below this for documents of ordinary history.
pub(crate) const MAX_CLAIMED_DELETIONS: usize = 1 << 16;

/// A client's sorted, disjoint, non-adjacent clock ranges.
type ClientRanges = (yrs::ClientID, Vec<Range<u32>>);

/// An update's structs and deletions as merged clock ranges per client, sorted by client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Claims {
    inserts: Vec<ClientRanges>,
    deletes: Vec<ClientRanges>,
}

/// The outcome of [`Claims::covered_by`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Coverage {
    /// Whether the document contains every struct and every deletion claimed.
    pub(crate) covered: bool,
    /// Range comparisons made: one per client, plus for every claimed deleted range a binary
    /// search of the client's deleted ranges in the document, whatever the clocks they span.
    pub(crate) steps: usize,
}

impl Claims {
    /// The ranges of every struct (skips excluded, deleted and collected structs included) and
    /// every deletion of `update`. A decoded delete set keeps its ranges as they came on the
    /// wire (unsorted, overlapping, repeated); here they are sorted and merged, in
    /// O(r log r) for r ranges.
    pub(crate) fn of(update: &Update) -> Self {
        Self {
            inserts: merged(&update.insertions(true)),
            deletes: merged(update.delete_set()),
        }
    }

    /// Whether a document whose state vector is `state` and whose delete set is `deleted`
    /// already has everything claimed: every struct below the document's clock of its client,
    /// every deletion inside one of the document's deleted ranges. Stops at the first claim
    /// the document lacks; claims of more than [`MAX_CLAIMED_DELETIONS`] deleted ranges are
    /// answered "not covered" without a look.
    pub(crate) fn covered_by(&self, state: &StateVector, deleted: &IdSet) -> Coverage {
        let lacking = |steps| Coverage {
            covered: false,
            steps,
        };
        let claimed: usize = self.deletes.iter().map(|(_, ranges)| ranges.len()).sum();
        if claimed > MAX_CLAIMED_DELETIONS {
            return lacking(0);
        }
        let mut steps = 0;
        for (client, ranges) in &self.inserts {
            steps += 1;
            if ranges
                .last()
                .is_some_and(|last| last.end > state.get(client))
            {
                return lacking(steps);
            }
        }
        for (client, ranges) in &self.deletes {
            steps += 1;
            let Some(have) = deleted.get(client) else {
                return lacking(steps);
            };
            // The document's ranges are sorted, disjoint and not adjacent, like ours: the
            // first one ending after a claimed range starts is the only one that can hold it.
            let have = have.as_slice();
            for range in ranges {
                let at = have.partition_point(|(next, ())| {
                    steps += 1;
                    next.end <= range.start
                });
                let inside = have
                    .get(at)
                    .is_some_and(|(next, ())| next.start <= range.start && range.end <= next.end);
                if !inside {
                    return lacking(steps);
                }
            }
        }
        Coverage {
            covered: true,
            steps,
        }
    }
}

/// Where an update's structs of one client start past the clock the document (with the
/// update's own earlier structs of that client) reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gap {
    /// The client.
    pub(crate) client: u64,
    /// The clock the document and the update's earlier structs reach.
    pub(crate) reached: u32,
    /// Where the update's next structs start.
    pub(crate) starts: u32,
}

/// The first clock gap of `update` against a document whose state vector is `state`, if any.
///
/// Yjs keeps structs past a gap pending until the gap is filled; yrs 0.28 integrates them
/// behind a placeholder (a skip), after which the document shows them to server-side reads
/// while its state vector, its encodings and every Yjs client do not. Such an update is refused
/// whole. One comparison per struct range of the update.
pub(crate) fn first_gap(update: &Update, state: &StateVector) -> Option<Gap> {
    // `insertions` merges each client's struct ranges, sorted by clock.
    for (client, ranges) in update.insertions(true).iter() {
        let mut reached = state.get(client);
        for range in ranges.iter() {
            if range.start > reached {
                return Some(Gap {
                    client: client.get(),
                    reached,
                    starts: range.start,
                });
            }
            reached = reached.max(range.end);
        }
    }
    None
}

/// Every client's ranges of `set`, sorted by client, each client's sorted and merged.
fn merged(set: &IdSet) -> Vec<ClientRanges> {
    let mut clients: Vec<ClientRanges> = set
        .iter()
        .map(|(client, ranges)| {
            let mut ranges: Vec<Range<u32>> =
                ranges.iter().filter(|r| !r.is_empty()).cloned().collect();
            ranges.sort_unstable_by_key(|range| range.start);
            let mut out: Vec<Range<u32>> = Vec::with_capacity(ranges.len());
            for range in ranges {
                match out.last_mut() {
                    Some(last) if last.end >= range.start => last.end = last.end.max(range.end),
                    _ => out.push(range),
                }
            }
            (*client, out)
        })
        .filter(|(_, ranges)| !ranges.is_empty())
        .collect();
    clients.sort_unstable_by_key(|(client, _)| *client);
    clients
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lib0::write_var_u64;
    use yrs::updates::decoder::Decode;
    use yrs::{ClientID, Doc, Map, ReadTxn, Text, Transact, ID};

    /// A v1 update with no structs and the given deletions, exactly as listed (yrs keeps a
    /// decoded delete set in wire order).
    fn deletions(ranges: &[(u64, Vec<Range<u32>>)]) -> Update {
        let mut bytes = vec![0];
        write_var_u64(&mut bytes, ranges.len() as u64);
        for (client, ranges) in ranges {
            write_var_u64(&mut bytes, *client);
            write_var_u64(&mut bytes, ranges.len() as u64);
            for range in ranges {
                write_var_u64(&mut bytes, u64::from(range.start));
                write_var_u64(&mut bytes, u64::from(range.end - range.start));
            }
        }
        Update::decode_v1(&bytes).expect("a delete set decodes")
    }

    /// The check before ranges: every clock of every claimed deletion looked up by itself.
    fn clock_walk(update: &Update, deleted: &IdSet) -> bool {
        update.delete_set().iter().all(|(client, ranges)| {
            ranges.iter().all(|range| {
                range
                    .clone()
                    .all(|clock| deleted.contains(&ID::new(*client, clock)))
            })
        })
    }

    /// A document of client 777 with `len` characters, every other run of 10 deleted (and the
    /// last `len / 2` deleted in one go when `tail` is set).
    fn document_with_deletions(len: u32, tail: bool) -> Doc {
        let doc = Doc::with_client_id(777);
        let text = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, &"x".repeat(len as usize));
        if tail {
            text.remove_range(&mut txn, len / 2, len / 2);
        }
        let mut at = 0;
        while at + 10 <= text.len(&txn) {
            text.remove_range(&mut txn, at, 10);
            at += 10;
        }
        drop(txn);
        doc
    }

    fn coverage(doc: &Doc, update: &Update) -> Coverage {
        let txn = doc.transact();
        Claims::of(update).covered_by(&txn.state_vector(), &txn.snapshot().delete_set)
    }

    /// Comparisons one binary search over `ranges` ranges makes at most.
    fn per_search(ranges: usize) -> usize {
        (usize::BITS - ranges.leading_zeros()) as usize + 1
    }

    #[test]
    fn ten_thousand_repeated_ranges_cost_one_search() {
        let doc = document_with_deletions(100_000, true);
        let deleted = doc.transact().snapshot().delete_set;
        let doc_ranges = deleted.get(&ClientID::new(777)).expect("deletions").len();
        assert!(doc_ranges > 2_000, "{doc_ranges}");
        // The attack: one range of 40,000 or 100,000 clocks, repeated 10,000 times; covered
        // (the tail was deleted in one go) and not (it reaches past the document). The clock
        // walk looked up every clock of every repetition: 400 million lookups and more.
        for (range, expect) in [(60_000..100_000, true), (0..100_000, false)] {
            let update = deletions(&[(777, vec![range.clone(); 10_000])]);
            let found = coverage(&doc, &update);
            assert_eq!(found.covered, expect, "{range:?}");
            // Merged into one range: one search of the document's ranges.
            assert!(
                found.steps <= 1 + per_search(doc_ranges),
                "{} steps for {doc_ranges} ranges of the document",
                found.steps
            );
        }
        // Ten thousand distinct ranges, all covered, listed backwards: one search each.
        let ranges: Vec<Range<u32>> = (0..10_000)
            .map(|i| 60_000 + 4 * i..60_002 + 4 * i)
            .collect();
        let update = deletions(&[(777, ranges.iter().rev().cloned().collect())]);
        let found = coverage(&doc, &update);
        assert!(found.covered);
        assert_eq!(found.covered, clock_walk(&update, &deleted));
        assert!(
            found.steps <= 1 + ranges.len() * per_search(doc_ranges),
            "{}",
            found.steps
        );
    }

    #[test]
    fn claims_past_the_bound_are_not_looked_at() {
        let mut deleted = IdSet::new();
        deleted.insert(ID::new(ClientID::new(9), 0), 1_000_000);
        let claim = |count: usize| {
            let ranges = (0..count as u32).map(|i| 2 * i..2 * i + 1).collect();
            Claims::of(&deletions(&[(9, ranges)]))
        };
        let at_bound = claim(MAX_CLAIMED_DELETIONS).covered_by(&StateVector::default(), &deleted);
        assert!(at_bound.covered);
        assert!(at_bound.steps <= 1 + MAX_CLAIMED_DELETIONS * per_search(1));
        let past = claim(MAX_CLAIMED_DELETIONS + 1).covered_by(&StateVector::default(), &deleted);
        assert_eq!(
            past,
            Coverage {
                covered: false,
                steps: 0
            }
        );
    }

    #[test]
    fn ranges_agree_with_the_clock_walk_on_random_inputs() {
        // xorshift64 with a fixed seed: the same cases on every run.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |below: u32| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % u64::from(below)) as u32
        };
        let mut covered = 0;
        for _ in 0..2_000 {
            let mut deleted = IdSet::new();
            for _ in 0..next(6) {
                let client = 1 + u64::from(next(2));
                let start = next(40);
                deleted.insert(ID::new(ClientID::new(client), start), 1 + next(8));
            }
            let claims: Vec<(u64, Vec<Range<u32>>)> = (1..=1 + u64::from(next(2)))
                .map(|client| {
                    let ranges = (0..next(5))
                        .map(|_| {
                            let start = next(48);
                            start..start + next(6)
                        })
                        .collect();
                    (client, ranges)
                })
                .collect();
            let update = deletions(&claims);
            let expected = clock_walk(&update, &deleted);
            let found = Claims::of(&update).covered_by(&StateVector::default(), &deleted);
            assert_eq!(found.covered, expected, "{claims:?} against {deleted:?}");
            covered += usize::from(expected);
        }
        assert!(
            covered > 100,
            "the cases cover both answers: {covered} covered"
        );
    }

    #[test]
    fn structs_are_covered_below_the_state_vector_only() {
        let doc = Doc::with_client_id(1);
        let map = doc.get_or_insert_map("m");
        let first = {
            let mut txn = doc.transact_mut();
            map.insert(&mut txn, "a", 1);
            txn.encode_update_v1()
        };
        let second = {
            let mut txn = doc.transact_mut();
            map.insert(&mut txn, "b", 2);
            txn.encode_update_v1()
        };
        let server = Doc::new();
        server
            .transact_mut()
            .apply_update(Update::decode_v1(&first).expect("decodes"))
            .expect("applies");
        let first = Update::decode_v1(&first).expect("decodes");
        let second = Update::decode_v1(&second).expect("decodes");
        assert!(coverage(&server, &first).covered);
        assert!(!coverage(&server, &second).covered);
    }

    /// Ten changes of one writer after the first ten: what a writer sends once the document
    /// was deleted.
    fn late_changes() -> (Update, Update) {
        let doc = Doc::with_client_id(5);
        let map = doc.get_or_insert_map("m");
        for i in 0..10 {
            map.insert(&mut doc.transact_mut(), format!("k{i}"), i);
        }
        let early = doc.transact().state_vector();
        for i in 10..20 {
            map.insert(&mut doc.transact_mut(), format!("k{i}"), i);
        }
        let txn = doc.transact();
        let late = Update::decode_v1(&txn.encode_state_as_update_v1(&early)).expect("decodes");
        let all = Update::decode_v1(&txn.encode_state_as_update_v1(&StateVector::default()))
            .expect("decodes");
        (late, all)
    }

    #[test]
    fn changes_past_what_the_document_has_are_a_gap() {
        let (late, all) = late_changes();
        assert_eq!(
            first_gap(&late, &StateVector::default()),
            Some(Gap {
                client: 5,
                reached: 0,
                starts: 10
            })
        );
        assert_eq!(first_gap(&all, &StateVector::default()), None);
        let mut has_early = StateVector::default();
        has_early.set_max(ClientID::new(5), 10);
        assert_eq!(first_gap(&late, &has_early), None);
        // Overlapping what the document has is no gap either.
        has_early.set_max(ClientID::new(5), 15);
        assert_eq!(first_gap(&late, &has_early), None);
    }

    #[test]
    fn a_gap_inside_one_update_is_found() {
        let (late, _) = late_changes();
        let early = {
            let doc = Doc::with_client_id(5);
            let map = doc.get_or_insert_map("m");
            map.insert(&mut doc.transact_mut(), "k0", 0);
            let update = doc
                .transact()
                .encode_state_as_update_v1(&StateVector::default());
            Update::decode_v1(&update).expect("decodes")
        };
        // k0 and k10..k19 together: the first range fits, the second starts past it.
        let merged = Update::merge_updates([early, late]);
        assert_eq!(
            first_gap(&merged, &StateVector::default()),
            Some(Gap {
                client: 5,
                reached: 1,
                starts: 10
            })
        );
    }
}
