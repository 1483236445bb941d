//! A walk over a Yjs v1 update's bytes before yrs decodes it, refusing what yrs would choke on.
//!
//! yrs trusts the counts and lengths it reads: a hostile update that declares a billion structs
//! or a nesting a million levels deep makes it allocate gigabytes or overflow the stack, which
//! no `catch_unwind` can stop. This walk reads every field of the v1 encoding with the same
//! checked [`Reader`] the protocol uses and refuses, without allocating, an update with
//! - a count or a length larger than the bytes left (every element takes at least one byte),
//! - a client id of 2^53 or more (JavaScript clients cannot represent it),
//! - a clock range past `u32::MAX` (yrs clocks are 32-bit and would wrap),
//! - values or JSON nested deeper than [`MAX_NESTING`],
//! - content yrs cannot or should not keep on a server: sub-documents, weak links, unknown
//!   struct or type kinds, and legacy JSON content (struct kind 2, which Yjs has not written
//!   since version 13: yrs 0.28 reads one string more than the count says and reserves memory
//!   for a negative count, so the rest of the update is misread; found by fuzzing),
//! - trailing bytes.

use crate::lib0::{DecodeError, Reader};
use crate::protocol::MAX_SAFE_INTEGER;

/// Deepest nesting of `Any` values (arrays and maps in a struct's content) and of JSON in
/// embeds and format attributes. Editors' documents nest a handful of levels; yrs decodes
/// recursively, so a deep one would overflow the stack.
pub const MAX_NESTING: usize = 64;

const GC: u8 = 0;
const DELETED: u8 = 1;
const JSON: u8 = 2;
const BINARY: u8 = 3;
const STRING: u8 = 4;
const EMBED: u8 = 5;
const FORMAT: u8 = 6;
const TYPE: u8 = 7;
const ANY: u8 = 8;
const SKIP: u8 = 10;

const TYPE_XML_ELEMENT: u64 = 3;
const TYPE_XML_HOOK: u64 = 5;
const TYPE_XML_TEXT: u64 = 6;

/// Checks that `bytes` is a Yjs v1 update yrs can decode safely; see the module documentation.
pub fn check_update(bytes: &[u8]) -> Result<(), DecodeError> {
    walk_update(bytes, |_| {})
}

/// Where an item says it belongs: Yjs encodes its parent only when the item has no neighbour
/// to inherit the parent from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Directly under a root type.
    Root,
    /// Directly under the type held by this item (client, clock).
    Under(u64, u32),
    /// Beside these items (origin, right origin): in the same parent as them.
    Beside(Option<(u64, u32)>, Option<(u64, u32)>),
}

/// One struct of an update, as [`walk_update`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Struct {
    /// The client that wrote it.
    pub(crate) client: u64,
    /// Its first clock.
    pub(crate) clock: u32,
    /// Its length in clock ticks.
    pub(crate) len: u32,
    /// Where it belongs; `None` for garbage-collected ranges and skips.
    pub(crate) placement: Option<Placement>,
    /// Whether it holds a shared type (which other items can be placed under).
    pub(crate) is_type: bool,
}

/// [`check_update`], telling `visit` about every struct (garbage collected ranges included,
/// skips not) in the order of the encoding.
pub(crate) fn walk_update(bytes: &[u8], mut visit: impl FnMut(Struct)) -> Result<(), DecodeError> {
    let mut r = Reader::new(bytes);
    let clients = count(&mut r)?;
    for _ in 0..clients {
        let structs = count(&mut r)?;
        let client = client_id(&mut r)?;
        let mut clock = clock(&mut r)?;
        for _ in 0..structs {
            let (len, kind) = structure(&mut r)?;
            let end = clock
                .checked_add(len)
                .filter(|&end| end <= u64::from(u32::MAX))
                .ok_or(DecodeError::Invalid("struct clock range past 2^32"))?;
            if let Some((placement, is_type)) = kind {
                visit(Struct {
                    client,
                    // Both fit: `end` is at most 2^32 - 1.
                    clock: clock as u32,
                    len: len as u32,
                    placement,
                    is_type,
                });
            }
            clock = end;
        }
    }
    let clients = count(&mut r)?;
    for _ in 0..clients {
        client_id(&mut r)?;
        let ranges = count(&mut r)?;
        for _ in 0..ranges {
            let start = clock(&mut r)?;
            let len = r.var_u64()?;
            if start
                .checked_add(len)
                .is_none_or(|end| end > u64::from(u32::MAX))
            {
                return Err(DecodeError::Invalid("deleted range past 2^32"));
            }
        }
    }
    if r.has_content() {
        return Err(DecodeError::Invalid("trailing bytes after the update"));
    }
    Ok(())
}

/// Checks that `bytes` is a Yjs v1 state vector with sane client ids and clocks and nothing after.
pub fn check_state_vector(bytes: &[u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(bytes);
    let entries = count(&mut r)?;
    for _ in 0..entries {
        client_id(&mut r)?;
        clock(&mut r)?;
    }
    if r.has_content() {
        return Err(DecodeError::Invalid(
            "trailing bytes after the state vector",
        ));
    }
    Ok(())
}

/// Reads a count of elements that each take at least one byte.
fn count(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    let n = r.var_u64()?;
    if n > r.remaining() as u64 {
        return Err(DecodeError::Invalid("count larger than the bytes left"));
    }
    Ok(n)
}

fn client_id(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    let client = r.var_u64()?;
    if client > MAX_SAFE_INTEGER {
        return Err(DecodeError::Invalid("client id above 2^53"));
    }
    Ok(client)
}

fn clock(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    let clock = r.var_u64()?;
    if clock > u64::from(u32::MAX) {
        return Err(DecodeError::Invalid("clock above 2^32"));
    }
    Ok(clock)
}

fn id(r: &mut Reader<'_>) -> Result<(u64, u32), DecodeError> {
    let client = client_id(r)?;
    // `clock` refuses values past u32::MAX.
    let clock = clock(r)? as u32;
    Ok((client, clock))
}

/// What a struct is besides its length: `None` for a garbage-collected range or a skip, else
/// where the item belongs and whether it holds a shared type.
type Kind = Option<(Option<Placement>, bool)>;

/// Reads one struct and returns its length in clock ticks and its kind.
fn structure(r: &mut Reader<'_>) -> Result<(u64, Kind), DecodeError> {
    let [info] = r.bytes(1)? else {
        unreachable!("one byte was read")
    };
    let info = *info;
    match info & 0x1f {
        GC => return Ok((positive_len(r)?, Some((None, false)))),
        SKIP => return Ok((positive_len(r)?, None)),
        _ => {}
    }
    let origin = (info & 0x80 != 0).then(|| id(r)).transpose()?;
    let right_origin = (info & 0x40 != 0).then(|| id(r)).transpose()?;
    let placement = if origin.is_none() && right_origin.is_none() {
        // The parent: a root's name or the id of the item holding the type.
        let placement = if r.var_u64()? == 1 {
            r.var_str()?;
            Placement::Root
        } else {
            let (client, clock) = id(r)?;
            Placement::Under(client, clock)
        };
        if info & 0x20 != 0 {
            r.var_str()?;
        }
        placement
    } else {
        Placement::Beside(origin, right_origin)
    };
    let kind = |is_type| Some((Some(placement), is_type));
    let len = match info & 0x1f {
        DELETED => positive_len(r)?,
        JSON => return Err(DecodeError::Invalid("legacy json content is not supported")),
        BINARY => {
            r.var_bytes()?;
            1
        }
        STRING => {
            // yrs counts UTF-16 code units, like JavaScript.
            let s = r.var_str()?;
            nonzero(s.encode_utf16().count() as u64)?
        }
        EMBED => {
            json_depth(r.var_str()?)?;
            1
        }
        FORMAT => {
            r.var_str()?;
            json_depth(r.var_str()?)?;
            1
        }
        TYPE => {
            match r.var_u64()? {
                TYPE_XML_ELEMENT | TYPE_XML_HOOK => {
                    r.var_str()?;
                }
                0..=TYPE_XML_TEXT => {}
                _ => return Err(DecodeError::Invalid("unsupported shared type")),
            }
            return Ok((1, kind(true)));
        }
        ANY => {
            let n = count(r)?;
            for _ in 0..n {
                any(r, 0)?;
            }
            nonzero(n)?
        }
        _ => return Err(DecodeError::Invalid("unsupported struct kind")),
    };
    Ok((len, kind(false)))
}

fn positive_len(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    nonzero(r.var_u64()?)
}

fn nonzero(len: u64) -> Result<u64, DecodeError> {
    if len == 0 {
        return Err(DecodeError::Invalid("empty struct"));
    }
    Ok(len)
}

/// Reads one lib0 `Any` value.
fn any(r: &mut Reader<'_>, depth: usize) -> Result<(), DecodeError> {
    if depth > MAX_NESTING {
        return Err(DecodeError::Invalid("values nested too deeply"));
    }
    let [tag] = r.bytes(1)? else {
        unreachable!("one byte was read")
    };
    match tag {
        // undefined, null, false, true
        127 | 126 | 121 | 120 => Ok(()),
        // integer (signed varint)
        125 => r.var_u64().map(drop),
        124 => r.bytes(4).map(drop),
        123 | 122 => r.bytes(8).map(drop),
        119 => r.var_str().map(drop),
        118 => {
            let n = count(r)?;
            for _ in 0..n {
                r.var_str()?;
                any(r, depth + 1)?;
            }
            Ok(())
        }
        117 => {
            let n = count(r)?;
            for _ in 0..n {
                any(r, depth + 1)?;
            }
            Ok(())
        }
        116 => r.var_bytes().map(drop),
        _ => Err(DecodeError::Invalid("unknown value type")),
    }
}

/// Refuses JSON text nested deeper than [`MAX_NESTING`] (whether it parses is yrs' business).
pub(crate) fn json_depth(json: &str) -> Result<(), DecodeError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(DecodeError::Invalid("json nested too deeply"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{Doc, GetString, Map, Text, Transact, WriteTxn};

    #[test]
    fn accepts_what_yrs_encodes() {
        let doc = Doc::with_client_id(7);
        let text = doc.get_or_insert_text("text");
        let map = doc.get_or_insert_map("map");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "héllo 👋");
        text.remove_range(&mut txn, 1, 2);
        map.insert(&mut txn, "n", 1.5);
        map.insert(
            &mut txn,
            "nested",
            yrs::any!({"a": [1, {"b": null}], "c": true}),
        );
        txn.get_or_insert_xml_fragment("xml");
        let update = txn.encode_update_v1();
        drop(txn);
        check_update(&update).expect("yrs' own encoding passes");
        // yrs counts bytes by default: the two removed are those of "é".
        assert_eq!(text.get_string(&doc.transact()), "hllo 👋");
    }

    #[test]
    fn refuses_hostile_counts_ids_and_depth() {
        // a billion clients in four bytes
        assert!(check_update(&[0x80, 0x94, 0xeb, 0xdc, 0x03]).is_err());
        // client id 2^60
        let mut update = vec![1, 1];
        crate::lib0::write_var_u64(&mut update, 1 << 60);
        update.extend_from_slice(&[0, 0, 1, 0]);
        assert!(check_update(&update).is_err());
        // an Any array nested 100 deep
        let mut update = vec![1, 1, 1, 0, 8, 1, 4, b'r', b'o', b'o', b't', 1];
        update.extend(std::iter::repeat_n([117, 1], 100).flatten());
        update.extend_from_slice(&[126, 0]);
        assert!(check_update(&update).is_err());
        // GC of length 2^32
        assert!(check_update(&[1, 1, 1, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0]).is_err());
        // legacy JSON content, which yrs misreads (regressions/decode_frame/legacy-json-*)
        assert!(check_update(&[1, 1, 1, 0, 2, 1, 1, b'r', 1, 1, b'1', 0]).is_err());
        // trailing bytes
        assert!(check_update(&[0, 0, 0]).is_err());
        assert!(check_update(&[0, 0]).is_ok());
    }
}
