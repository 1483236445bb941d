//! How deeply shared types nest in a document, known before an update is applied.
//!
//! yrs walks nested types recursively (deleting a type deletes its children level by level,
//! converting to JSON descends level by level), and so does any code reading a document's
//! structure. A few kilobytes of update can nest thousands of `Y.Map`s, one inside the other,
//! and the first such walk overflows the stack, which aborts the whole process. So the actor
//! refuses, before applying it, any update that would put a shared type deeper than
//! [`MAX_TYPE_NESTING`], and every walk over a document is bounded by that depth.
//!
//! The update's bytes say where each item belongs, but often only indirectly: Yjs encodes an
//! item's parent only when the item has no neighbour, otherwise the item lives beside its left
//! (or right) origin, wherever that is. The `NestingIndex` answers that for items already in
//! the document: for every run of clocks of one client it keeps the depth of the type the
//! items were placed in. Runs merge while the depth stays the same, so a text typed by one
//! client is one run, whatever its length.

use std::collections::{BTreeMap, HashMap};

use crate::lib0::DecodeError;
use crate::preflight::{walk_update, Placement, Struct};

/// Deepest nesting of shared types Tandem accepts: a root type is at depth 1, a type inside it
/// at depth 2. Rich-text documents nest a few levels per list level (a Tiptap list item in a
/// list in a list item is about 6), whiteboards 3 to 5; 64 leaves room for any real document
/// while keeping every recursive walk far from the stack's end.
pub const MAX_TYPE_NESTING: u16 = 64;

/// The depth of the deepest shared type in a document holding exactly `update` (a document's
/// encoded state, for instance), without recursion; a root is at depth 1, an empty document 0.
pub fn deepest_in(update: &[u8]) -> Result<u16, DecodeError> {
    let mut index = NestingIndex::default();
    index.record(update)?;
    Ok(index.deepest())
}

/// A run of clocks of one client whose items sit in types of the same depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    /// The clock after the run.
    end: u32,
    /// Depth of the type holding the run's items (1: a root).
    parent_depth: u16,
}

/// The depth of what every item of a document is placed in; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct NestingIndex {
    clients: HashMap<u64, BTreeMap<u32, Run>>,
    /// The deepest shared type in the document.
    deepest: u16,
}

/// An update that would nest a shared type deeper than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooDeep {
    /// The depth the update asks for.
    pub(crate) depth: u16,
}

/// What resolving one struct's depth needs next.
enum Need {
    /// Its parent's depth is known (`None`: it depends on something missing).
    Ready(Option<u16>),
    /// The depth of another struct of the same update first.
    Struct(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    Unvisited,
    InProgress,
    Done(Option<u16>),
}

/// Where the items of one update say they belong, findable by id: what
/// `NestingIndex::check` judges. Read off the update's bytes by the preflight walk.
#[derive(Debug, Default)]
pub struct Layout {
    structs: Vec<Struct>,
    /// Per client: (clock, index into `structs`), sorted by clock.
    by_client: HashMap<u64, Vec<(u32, usize)>>,
}

impl Layout {
    /// Walks `update` (refusing what the preflight walk refuses) and lays out its structs.
    pub(crate) fn read(update: &[u8]) -> Result<Self, DecodeError> {
        let mut structs = Vec::new();
        walk_update(update, |s| structs.push(s))?;
        Ok(Self::new(structs))
    }

    fn new(structs: Vec<Struct>) -> Self {
        let mut by_client: HashMap<u64, Vec<(u32, usize)>> = HashMap::new();
        for (i, s) in structs.iter().enumerate() {
            by_client.entry(s.client).or_default().push((s.clock, i));
        }
        for list in by_client.values_mut() {
            list.sort_unstable();
        }
        Self { structs, by_client }
    }

    /// The struct holding clock `clock` of `client`.
    fn find(&self, client: u64, clock: u32) -> Option<usize> {
        let list = self.by_client.get(&client)?;
        let at = list.partition_point(|&(start, _)| start <= clock);
        let (_, i) = *list.get(at.checked_sub(1)?)?;
        let s = &self.structs[i];
        (clock < s.clock + s.len).then_some(i)
    }
}

impl NestingIndex {
    /// The deepest shared type of the document.
    pub(crate) fn deepest(&self) -> u16 {
        self.deepest
    }

    /// The depth of the type holding the item at `clock` of `client`, if the document has it.
    fn parent_depth(&self, client: u64, clock: u32) -> Option<u16> {
        let (_, run) = self.clients.get(&client)?.range(..=clock).next_back()?;
        (clock < run.end).then_some(run.parent_depth)
    }

    /// Refuses an update that would place a shared type deeper than `limit`. Items whose place
    /// depends on something neither the document nor the update has are not judged: yrs keeps
    /// them out of the document until what they depend on arrives, and they are judged then.
    pub(crate) fn check(&self, batch: &Layout, limit: u16) -> Result<(), TooDeep> {
        let depths = self.resolve(batch);
        for (s, depth) in batch.structs.iter().zip(depths) {
            let already_here = self.parent_depth(s.client, s.clock).is_some();
            if let (true, false, Some(parent)) = (s.is_type, already_here, depth) {
                let depth = parent.saturating_add(1);
                if depth > limit {
                    return Err(TooDeep { depth });
                }
            }
        }
        Ok(())
    }

    /// Records the items of an update the document integrated (a transaction's delta, or a
    /// stored snapshot or log entry).
    pub(crate) fn record(&mut self, update: &[u8]) -> Result<(), DecodeError> {
        let batch = Layout::read(update)?;
        let depths = self.resolve(&batch);
        for (s, depth) in batch.structs.iter().zip(depths) {
            // What the document integrated has a known place: `None` cannot happen for a
            // delta, and counting such an item as a root's keeps the index total.
            let parent_depth = depth.unwrap_or(1);
            if s.is_type {
                self.deepest = self.deepest.max(parent_depth.saturating_add(1));
            }
            self.insert(s.client, s.clock, s.len, parent_depth);
        }
        Ok(())
    }

    fn insert(&mut self, client: u64, clock: u32, len: u32, parent_depth: u16) {
        let runs = self.clients.entry(client).or_default();
        let end = clock + len;
        if let Some((_, run)) = runs.range_mut(..=clock).next_back() {
            if clock < run.end {
                // Already known (a resent change): ids never change meaning.
                return;
            }
            if run.end == clock && run.parent_depth == parent_depth {
                run.end = end;
                merge_next(runs, clock, end, parent_depth);
                return;
            }
        }
        runs.insert(clock, Run { end, parent_depth });
        merge_next(runs, clock, end, parent_depth);
    }

    /// The depth of the type each struct of `batch` is placed in, `None` where it depends on
    /// something missing (or on itself). Iterative: a chain of placements as long as the
    /// update is followed without recursion.
    fn resolve(&self, batch: &Layout) -> Vec<Option<u16>> {
        let mut state = vec![Resolution::Unvisited; batch.structs.len()];
        let mut stack = Vec::new();
        for first in 0..batch.structs.len() {
            if state[first] != Resolution::Unvisited {
                continue;
            }
            stack.push(first);
            while let Some(&i) = stack.last() {
                state[i] = Resolution::InProgress;
                match self.need(batch, &state, i) {
                    Need::Ready(depth) => {
                        state[i] = Resolution::Done(depth);
                        stack.pop();
                    }
                    Need::Struct(j) => stack.push(j),
                }
            }
        }
        state
            .into_iter()
            .map(|resolution| match resolution {
                Resolution::Done(depth) => depth,
                _ => None,
            })
            .collect()
    }

    fn need(&self, batch: &Layout, state: &[Resolution], i: usize) -> Need {
        let Some(placement) = batch.structs[i].placement else {
            // Garbage collected: it holds nothing, wherever it was.
            return Need::Ready(Some(1));
        };
        match placement {
            Placement::Root => Need::Ready(Some(1)),
            Placement::Under(client, clock) => {
                // The parent is the type held by that item, one level below the item's own place.
                let inner = |depth: Option<u16>| depth.map(|d| d.saturating_add(1));
                if let Some(depth) = self.parent_depth(client, clock) {
                    return Need::Ready(inner(Some(depth)));
                }
                match batch.find(client, clock) {
                    None => Need::Ready(None),
                    Some(j) => match state[j] {
                        Resolution::Done(depth) => Need::Ready(inner(depth)),
                        Resolution::InProgress => Need::Ready(None),
                        Resolution::Unvisited => Need::Struct(j),
                    },
                }
            }
            Placement::Beside(origin, right_origin) => {
                for (client, clock) in [origin, right_origin].into_iter().flatten() {
                    if let Some(depth) = self.parent_depth(client, clock) {
                        return Need::Ready(Some(depth));
                    }
                    if let Some(j) = batch.find(client, clock) {
                        match state[j] {
                            Resolution::Done(Some(depth)) => return Need::Ready(Some(depth)),
                            Resolution::Unvisited => return Need::Struct(j),
                            Resolution::Done(None) | Resolution::InProgress => {}
                        }
                    }
                }
                Need::Ready(None)
            }
        }
    }
}

/// Joins the run at `clock` with the one right after it when they continue each other.
fn merge_next(runs: &mut BTreeMap<u32, Run>, clock: u32, end: u32, parent_depth: u16) {
    if let Some(next) = runs.get(&end).copied() {
        if next.parent_depth == parent_depth {
            runs.remove(&end);
            if let Some(run) = runs.get_mut(&clock) {
                run.end = next.end;
            } else if let Some((_, run)) = runs.range_mut(..clock).next_back() {
                run.end = next.end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use yrs::updates::decoder::Decode;
    use yrs::{Array, ArrayPrelim, Doc, Map, MapPrelim, MapRef, ReadTxn, Transact, Update};

    use super::*;

    /// A document with `levels` maps nested under root `m`, built one level per transaction,
    /// and the index that recorded every transaction's delta.
    fn nested(levels: usize) -> (Doc, NestingIndex, MapRef) {
        let doc = Doc::with_client_id(1);
        let mut index = NestingIndex::default();
        let mut map = doc.get_or_insert_map("m");
        for _ in 0..levels {
            let mut txn = doc.transact_mut();
            let inner = map.insert(&mut txn, "k", MapPrelim::default());
            let delta = txn.encode_update_v1();
            drop(txn);
            index.record(&delta).expect("yrs' encoding");
            map = inner;
        }
        (doc, index, map)
    }

    #[test]
    fn follows_chains_of_nested_maps_across_updates() {
        let (doc, index, deepest) = nested(10);
        assert_eq!(index.deepest(), 11);
        // One more level: depth 12, refused under a limit of 11, accepted under 12.
        let mut txn = doc.transact_mut();
        deepest.insert(&mut txn, "k", MapPrelim::default());
        let update = txn.encode_update_v1();
        drop(txn);
        let layout = Layout::read(&update).expect("yrs' encoding");
        assert_eq!(index.check(&layout, 11), Err(TooDeep { depth: 12 }));
        assert_eq!(index.check(&layout, 12), Ok(()));
    }

    #[test]
    fn follows_placements_beside_neighbours_and_within_one_update() {
        // Arrays nested 20 deep in one transaction, each inserted after a sibling, so most
        // items name only their origin.
        let doc = Doc::with_client_id(2);
        let root = doc.get_or_insert_array("a");
        let mut txn = doc.transact_mut();
        let mut array = root;
        for _ in 0..20 {
            array.push_back(&mut txn, 1);
            array = array.push_back(&mut txn, ArrayPrelim::default());
        }
        let update = txn.encode_update_v1();
        drop(txn);
        let index = NestingIndex::default();
        let layout = Layout::read(&update).expect("yrs' encoding");
        assert_eq!(index.check(&layout, 20), Err(TooDeep { depth: 21 }));
        assert_eq!(index.check(&layout, 21), Ok(()));
        // Reordering the update's clients does not matter: the same state from another doc.
        let copy = Doc::with_client_id(3);
        copy.transact_mut()
            .apply_update(Update::decode_v1(&update).expect("decodes"))
            .expect("applies");
        let state = copy
            .transact()
            .encode_state_as_update_v1(&yrs::StateVector::default());
        let mut index = NestingIndex::default();
        index.record(&state).expect("records");
        assert_eq!(index.deepest(), 21);
    }

    #[test]
    fn a_text_typed_by_one_client_is_one_run() {
        let doc = Doc::with_client_id(4);
        let text = doc.get_or_insert_text("t");
        let mut index = NestingIndex::default();
        for i in 0..100 {
            let mut txn = doc.transact_mut();
            yrs::Text::insert(&text, &mut txn, i, "x");
            let delta = txn.encode_update_v1();
            drop(txn);
            index.record(&delta).expect("records");
        }
        assert_eq!(index.clients[&4].len(), 1);
        assert_eq!(index.parent_depth(4, 99), Some(1));
        assert_eq!(index.parent_depth(4, 100), None);
    }

    #[test]
    fn items_placed_on_missing_ids_are_not_judged() {
        let (source, _, deepest) = nested(30);
        let mut txn = source.transact_mut();
        deepest.insert(&mut txn, "k", MapPrelim::default());
        let update = txn.encode_update_v1();
        drop(txn);
        // A fresh index has none of the 30 levels: the new map's parent is unknown.
        let index = NestingIndex::default();
        let layout = Layout::read(&update).expect("yrs' encoding");
        assert_eq!(index.check(&layout, 2), Ok(()));
    }
}
