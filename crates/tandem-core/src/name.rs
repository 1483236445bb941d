//! Document names.
//!
//! A name is whatever bytes the client asked for, kept exactly: y-websocket room names arrive
//! percent-decoded from the URL and may contain `/`, spaces or bytes that are not UTF-8. The
//! store keys documents by these bytes.
//!
//! Where a name is shown (listings, `/status`, webhooks, logs) it must be readable back into
//! the same bytes: [`DocName::text`] is the name itself when it is valid UTF-8, and otherwise
//! its bytes percent-encoded ([`NameText::Percent`]). JSON carries the second kind with a marker
//! field (`"nameEncoding": "percent"`), so a UTF-8 name that happens to contain `%` stays
//! unambiguous and unchanged.

use std::fmt;

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

/// The name of a document: arbitrary bytes, compared and stored exactly.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocName(Bytes);

impl DocName {
    /// Wraps raw name bytes.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Self(bytes.into())
    }

    /// The exact bytes of the name.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length of the name in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the name is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The name as text that reads back into exactly these bytes.
    pub fn text(&self) -> NameText<'_> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => NameText::Utf8(text),
            Err(_) => NameText::Percent(percent_encode(&self.0)),
        }
    }
}

/// A name shown as text: see [`DocName::text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameText<'a> {
    /// The name is valid UTF-8 and is shown as it is.
    Utf8(&'a str),
    /// The name is not UTF-8: every byte outside `A-Z a-z 0-9 - . _ ~ /` (so `%` too) is shown
    /// as `%XX`. Percent-decoding the text gives the name back, and the text can be used in a
    /// URL path as it is.
    Percent(String),
}

impl NameText<'_> {
    /// The text.
    pub fn as_str(&self) -> &str {
        match self {
            NameText::Utf8(text) => text,
            NameText::Percent(text) => text,
        }
    }

    /// `Some("percent")` when the text is percent-encoded, `None` when it is the name itself:
    /// the value of the marker field JSON carries beside the name.
    pub fn encoding(&self) -> Option<&'static str> {
        match self {
            NameText::Utf8(_) => None,
            NameText::Percent(_) => Some("percent"),
        }
    }
}

impl From<&str> for DocName {
    fn from(name: &str) -> Self {
        Self(Bytes::copy_from_slice(name.as_bytes()))
    }
}

impl From<String> for DocName {
    fn from(name: String) -> Self {
        Self(Bytes::from(name))
    }
}

impl From<Vec<u8>> for DocName {
    fn from(name: Vec<u8>) -> Self {
        Self(Bytes::from(name))
    }
}

/// Every byte but `A-Z a-z 0-9 - . _ ~ /` is encoded: the result is a valid URL path as it is.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn percent_encode(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, ENCODED).to_string()
}

/// Shows the name as [`DocName::text`] does: as it is when UTF-8, percent-encoded otherwise.
impl fmt::Display for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl fmt::Debug for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text() {
            NameText::Utf8(text) => write!(f, "{text:?}"),
            NameText::Percent(text) => write!(f, "percent({text:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_names_are_shown_as_they_are() {
        for name in ["notes/a b", "100%", "%FF%FE", "é/ü"] {
            let doc = DocName::from(name);
            assert_eq!(doc.text(), NameText::Utf8(name));
            assert_eq!(doc.text().encoding(), None);
            assert_eq!(doc.to_string(), name);
        }
    }

    #[test]
    fn other_names_are_percent_encoded_and_decode_back() {
        for bytes in [&b"\xFF\xFE"[..], b"\xC0\xAF", b"a%b \xFF/c~", b"\x80"] {
            let doc = DocName::from(bytes.to_vec());
            let text = doc.text();
            assert_eq!(text.encoding(), Some("percent"));
            let decoded: Vec<u8> = percent_encoding::percent_decode_str(text.as_str()).collect();
            assert_eq!(decoded, bytes, "{text:?}");
        }
        assert_eq!(DocName::from(b"\xFF\xFE".to_vec()).to_string(), "%FF%FE");
        assert_eq!(
            DocName::from(b"a%b \xFF/c~".to_vec()).to_string(),
            "a%25b%20%FF/c~"
        );
    }
}
