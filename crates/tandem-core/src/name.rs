//! Document names.
//!
//! A name is whatever bytes the client asked for, kept exactly: y-websocket room names arrive
//! percent-decoded from the URL and may contain `/`, spaces or bytes that are not UTF-8. The
//! store keys documents by these bytes; logs show them lossily.

use std::fmt;

use bytes::Bytes;

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

/// Shows the name as UTF-8, with invalid bytes replaced, for logs.
impl fmt::Display for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}
