//! Edits a simulated client makes to its own `yrs::Doc`: text, map, array and XML, nested types
//! included. Indexes are taken modulo the current length, so every edit is valid.

use arbitrary::Arbitrary;
use yrs::{
    Any, Array, ArrayRef, Doc, Map, MapPrelim, MapRef, Text, TextPrelim, TextRef, Transact,
    TransactionMut, Xml, XmlElementPrelim, XmlFragment, XmlFragmentRef, XmlTextPrelim,
};

/// The root names clients use, each always with the same type.
pub const TEXT: &str = "text";
/// The map root.
pub const MAP: &str = "map";
/// The array root.
pub const ARRAY: &str = "array";
/// The XML fragment root (what ProseMirror and Tiptap use).
pub const XML: &str = "xml";

/// A scalar value clients store in maps and arrays.
#[derive(Arbitrary, Debug, Clone)]
pub enum Value {
    /// A number.
    Int(i32),
    /// A boolean.
    Bool(bool),
    /// A short string.
    Str(Short),
    /// Null.
    Null,
}

/// A string of at most 8 characters from a small alphabet (plus one astral character, whose
/// UTF-16 length is 2), so edits collide often.
#[derive(Debug, Clone)]
pub struct Short(pub String);

impl<'a> Arbitrary<'a> for Short {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = u.int_in_range(1..=8)?;
        let mut s = String::new();
        for _ in 0..len {
            s.push(*u.choose(&['a', 'b', 'c', ' ', 'é', '😀', '\n'])?);
        }
        Ok(Short(s))
    }
}

impl Value {
    fn any(&self) -> Any {
        match self {
            Value::Int(n) => Any::from(*n as f64),
            Value::Bool(b) => Any::from(*b),
            Value::Str(s) => Any::from(s.0.as_str()),
            Value::Null => Any::Null,
        }
    }
}

/// One edit by one client.
#[derive(Arbitrary, Debug, Clone)]
pub enum Edit {
    /// Inserts text into the text root.
    TextInsert {
        /// Position, modulo the length + 1 (in UTF-16 units, clamped to a char boundary by yrs).
        at: u16,
        /// What to insert.
        text: Short,
    },
    /// Removes a range of the text root.
    TextRemove {
        /// Start, modulo the length.
        at: u16,
        /// Length, at most what is left.
        len: u8,
    },
    /// Formats a range of the text root (bold on or off).
    TextFormat {
        /// Start, modulo the length.
        at: u16,
        /// Length.
        len: u8,
        /// Bold or not.
        bold: bool,
    },
    /// Sets a key of the map root.
    MapSet {
        /// One of a few keys.
        key: u8,
        /// The value.
        value: Value,
    },
    /// Sets a key of the map root to a nested text.
    MapSetText {
        /// One of a few keys.
        key: u8,
        /// Its content.
        text: Short,
    },
    /// Removes a key of the map root.
    MapRemove {
        /// One of a few keys.
        key: u8,
    },
    /// Inserts values into the array root.
    ArrayInsert {
        /// Position, modulo the length + 1.
        at: u16,
        /// The values.
        values: Vec<Value>,
    },
    /// Inserts a nested map into the array root.
    ArrayInsertMap {
        /// Position, modulo the length + 1.
        at: u16,
        /// A key and value in it.
        key: u8,
        /// The value.
        value: Value,
    },
    /// Removes a range of the array root.
    ArrayRemove {
        /// Start, modulo the length.
        at: u16,
        /// Length, at most what is left.
        len: u8,
    },
    /// Edits a nested map found in the array root (if any).
    NestedMapSet {
        /// Which array element, modulo the length.
        at: u16,
        /// One of a few keys.
        key: u8,
        /// The value.
        value: Value,
    },
    /// Inserts an element into the XML root.
    XmlInsertElement {
        /// Position, modulo the child count + 1.
        at: u16,
        /// One of a few tags.
        tag: u8,
    },
    /// Inserts XML text into the XML root.
    XmlInsertText {
        /// Position, modulo the child count + 1.
        at: u16,
        /// Its content.
        text: Short,
    },
    /// Removes children of the XML root.
    XmlRemove {
        /// Start, modulo the child count.
        at: u16,
        /// Count, at most what is left.
        len: u8,
    },
    /// Sets an attribute of an element of the XML root (if the child is an element).
    XmlSetAttribute {
        /// Which child, modulo the child count.
        at: u16,
        /// One of a few attribute names.
        key: u8,
        /// Its value.
        value: Short,
    },
}

const KEYS: [&str; 4] = ["a", "b", "c", "d"];
const TAGS: [&str; 3] = ["p", "h1", "li"];

fn key(k: u8) -> &'static str {
    KEYS[usize::from(k) % KEYS.len()]
}

/// Declares the roots every client uses, with their types.
pub fn roots(doc: &Doc) -> (TextRef, MapRef, ArrayRef, XmlFragmentRef) {
    (
        doc.get_or_insert_text(TEXT),
        doc.get_or_insert_map(MAP),
        doc.get_or_insert_array(ARRAY),
        doc.get_or_insert_xml_fragment(XML),
    )
}

/// Applies an edit to a client's document and returns the update it produced (Yjs v1), or
/// `None` when it changed nothing.
pub fn apply(doc: &Doc, edit: &Edit) -> Option<Vec<u8>> {
    let (text, map, array, xml) = roots(doc);
    let mut txn = doc.transact_mut();
    edit_in(&mut txn, edit, &text, &map, &array, &xml);
    let update = txn.encode_update_v1();
    (update != [0, 0]).then_some(update)
}

fn at(at: u16, len: u32) -> u32 {
    u32::from(at) % len.max(1)
}

fn edit_in(
    txn: &mut TransactionMut<'_>,
    edit: &Edit,
    text: &TextRef,
    map: &MapRef,
    array: &ArrayRef,
    xml: &XmlFragmentRef,
) {
    match edit {
        Edit::TextInsert { at: i, text: s } => {
            let len = text.len(txn);
            text.insert(txn, at(*i, len + 1), &s.0);
        }
        Edit::TextRemove { at: i, len } | Edit::TextFormat { at: i, len, .. } => {
            let total = text.len(txn);
            if total == 0 {
                return;
            }
            let start = at(*i, total);
            let n = u32::from(*len).min(total - start);
            if let Edit::TextFormat { bold, .. } = edit {
                let attrs = [("bold".into(), Any::from(*bold))].into_iter().collect();
                text.format(txn, start, n, attrs);
            } else {
                text.remove_range(txn, start, n);
            }
        }
        Edit::MapSet { key: k, value } => {
            map.insert(txn, key(*k), value.any());
        }
        Edit::MapSetText { key: k, text: s } => {
            map.insert(txn, key(*k), TextPrelim::new(s.0.as_str()));
        }
        Edit::MapRemove { key: k } => {
            map.remove(txn, key(*k));
        }
        Edit::ArrayInsert { at: i, values } => {
            if values.is_empty() {
                return;
            }
            let len = array.len(txn);
            let values: Vec<Any> = values.iter().take(4).map(Value::any).collect();
            array.insert_range(txn, at(*i, len + 1), values);
        }
        Edit::ArrayInsertMap {
            at: i,
            key: k,
            value,
        } => {
            let len = array.len(txn);
            let prelim = MapPrelim::from([(key(*k).to_owned(), value.any())]);
            array.insert(txn, at(*i, len + 1), prelim);
        }
        Edit::ArrayRemove { at: i, len } => {
            let total = array.len(txn);
            if total == 0 {
                return;
            }
            let start = at(*i, total);
            let n = u32::from(*len).clamp(1, total - start);
            array.remove_range(txn, start, n);
        }
        Edit::NestedMapSet {
            at: i,
            key: k,
            value,
        } => {
            let total = array.len(txn);
            if total == 0 {
                return;
            }
            if let Some(yrs::Out::YMap(nested)) = array.get(txn, at(*i, total)) {
                nested.insert(txn, key(*k), value.any());
            }
        }
        Edit::XmlInsertElement { at: i, tag } => {
            let len = xml.len(txn);
            let tag = TAGS[usize::from(*tag) % TAGS.len()];
            let element = XmlElementPrelim::new(tag, [XmlTextPrelim::new("x").into()]);
            xml.insert(txn, at(*i, len + 1), element);
        }
        Edit::XmlInsertText { at: i, text: s } => {
            let len = xml.len(txn);
            xml.insert(txn, at(*i, len + 1), XmlTextPrelim::new(s.0.as_str()));
        }
        Edit::XmlRemove { at: i, len } => {
            let total = xml.len(txn);
            if total == 0 {
                return;
            }
            let start = at(*i, total);
            let n = u32::from(*len).clamp(1, total - start);
            xml.remove_range(txn, start, n);
        }
        Edit::XmlSetAttribute {
            at: i,
            key: k,
            value,
        } => {
            let total = xml.len(txn);
            if total == 0 {
                return;
            }
            if let Some(yrs::XmlOut::Element(element)) = xml.get(txn, at(*i, total)) {
                element.insert_attribute(txn, key(*k), value.0.as_str());
            }
        }
    }
}
