//! The few y-websocket frames a load generator needs, encoded and parsed byte for byte
//! (`../shared/PROTOCOLS.md` §2.1, §3.1): sync step 1, sync step 2, update and awareness, one
//! y-protocols message per WebSocket frame; and the [`Dialect`] that addresses them to a
//! document, in the URL (y-websocket) or in every frame (Hocuspocus, §4).
//!
//! Parsing is separate from IO and borrows from the frame, so the hot paths (counting echoes,
//! feeding updates to the reader's document) copy nothing.

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;

/// Outer message type of sync messages.
const MESSAGE_SYNC: u8 = 0;
/// Outer message type of awareness messages.
const MESSAGE_AWARENESS: u8 = 1;
/// Hocuspocus: outer message type of auth messages.
const HOCUSPOCUS_AUTH: u8 = 2;
/// Hocuspocus: auth sub-type of the client's token message (§4.2).
const HOCUSPOCUS_AUTH_TOKEN: u8 = 0;
/// Hocuspocus: outer message type of the server's acknowledgement of a change (§4.3).
const HOCUSPOCUS_SYNC_STATUS: u8 = 8;
/// Hocuspocus v4: the server's ping, a whole frame without an address (§4.8).
const HOCUSPOCUS_PING: u8 = 9;
/// Sync sub-type: a state vector, asking for what the sender lacks.
const SYNC_STEP1: u8 = 0;
/// Sync sub-type: the update answering a step 1.
const SYNC_STEP2: u8 = 1;
/// Sync sub-type: an incremental update.
const SYNC_UPDATE: u8 = 2;

/// The first two bytes of every update frame. The server echoes each update to its sender
/// too, so a writer counts frames starting with these as acknowledgements without parsing them.
pub const UPDATE_PREFIX: [u8; 2] = [MESSAGE_SYNC, SYNC_UPDATE];

/// One received frame, as far as the workloads care.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Sync step 1 carrying the sender's encoded state vector.
    SyncStep1(&'a [u8]),
    /// Sync step 2 carrying a v1 update.
    SyncStep2(&'a [u8]),
    /// An incremental v1 update.
    Update(&'a [u8]),
    /// Any other message (awareness, auth, query-awareness), by its type: not needed here.
    Other(u8),
}

/// Parses the single y-protocols message of a binary frame.
pub fn parse(frame: &[u8]) -> anyhow::Result<Frame<'_>> {
    let mut cursor = Cursor::new(frame);
    let kind: u8 = cursor.read_var().context("reading the message type")?;
    if kind != MESSAGE_SYNC {
        return Ok(Frame::Other(kind));
    }
    let sub: u8 = cursor.read_var().context("reading the sync message type")?;
    let len: u32 = cursor.read_var().context("reading the payload length")?;
    let start = cursor.next;
    let payload = frame.get(start..start + len as usize).with_context(|| {
        format!(
            "payload of {len} bytes past the end of a {}-byte frame",
            frame.len()
        )
    })?;
    Ok(match sub {
        SYNC_STEP1 => Frame::SyncStep1(payload),
        SYNC_STEP2 => Frame::SyncStep2(payload),
        SYNC_UPDATE => Frame::Update(payload),
        other => bail!("unknown sync message type {other}"),
    })
}

/// Sync step 1: `00 00 varUint8Array(state vector)`.
pub fn sync_step1(state_vector: &[u8]) -> Bytes {
    sync_message(SYNC_STEP1, state_vector)
}

/// Sync step 2: `00 01 varUint8Array(update)`.
pub fn sync_step2(update: &[u8]) -> Bytes {
    sync_message(SYNC_STEP2, update)
}

/// An update: `00 02 varUint8Array(update)`.
pub fn update(update: &[u8]) -> Bytes {
    sync_message(SYNC_UPDATE, update)
}

/// An awareness message: `01 varUint8Array(count · (client · clock · varString(state))…)`.
pub fn awareness<'a>(entries: impl ExactSizeIterator<Item = (u64, u32, &'a str)>) -> Bytes {
    let mut update = Vec::new();
    update.write_var(entries.len() as u64);
    for (client, clock, state) in entries {
        update.write_var(client);
        update.write_var(clock);
        update.write_string(state);
    }
    let mut frame = Vec::with_capacity(update.len() + 6);
    frame.write_var(MESSAGE_AWARENESS);
    frame.write_buf(&update);
    frame.into()
}

/// The number of entries in an awareness message, or `None` for any other message.
pub fn awareness_entries(message: &[u8]) -> Option<u64> {
    let mut cursor = Cursor::new(message);
    let kind: u8 = cursor.read_var().ok()?;
    if kind != MESSAGE_AWARENESS {
        return None;
    }
    let _len: u32 = cursor.read_var().ok()?;
    cursor.read_var().ok()
}

/// How a server wants a document's messages addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// y-websocket (Tandem, the reference server, pycrdt-websocket, y-sweet): the document is
    /// the last part of the URL; frames carry bare y-protocols messages; a change is
    /// acknowledged by its echo.
    YWebsocket,
    /// Hocuspocus: one URL for every document, every frame starts with `varString(document)`,
    /// an auth message opens the document, and every change is acknowledged with SyncStatus
    /// (the server may merge echoes, so they cannot be counted).
    Hocuspocus,
}

impl Dialect {
    /// The URL to connect to for `doc` under the server's prefix. The name is limited to
    /// characters that need no percent-encoding.
    pub fn url(self, prefix: &str, doc: &str) -> anyhow::Result<String> {
        let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '/');
        if doc.is_empty() || !doc.chars().all(safe) {
            bail!("document name {doc:?} must be non-empty and use only A-Z a-z 0-9 - _ . ~ /");
        }
        let prefix = prefix.trim_end_matches('/');
        Ok(match self {
            Self::YWebsocket => format!("{prefix}/{doc}"),
            Self::Hocuspocus => prefix.to_owned(),
        })
    }

    /// The frame carrying `message` for `doc`.
    pub fn frame(self, doc: &str, message: &[u8]) -> Bytes {
        match self {
            Self::YWebsocket => Bytes::copy_from_slice(message),
            Self::Hocuspocus => {
                let mut frame = Vec::with_capacity(doc.len() + message.len() + 2);
                frame.write_string(doc);
                frame.extend_from_slice(message);
                frame.into()
            }
        }
    }

    /// What a client sends before anything else: Hocuspocus' token message (an empty token:
    /// the servers under test run without authentication).
    pub fn opening(self, doc: &str) -> Option<Bytes> {
        match self {
            Self::YWebsocket => None,
            Self::Hocuspocus => {
                let mut message = vec![HOCUSPOCUS_AUTH, HOCUSPOCUS_AUTH_TOKEN];
                message.write_string("");
                Some(self.frame(doc, &message))
            }
        }
    }

    /// The message in a received frame, its address removed. A Hocuspocus ping (a bare `09`)
    /// comes back as itself, which [`parse`] reads as [`Frame::Other`].
    pub fn message(self, frame: Bytes) -> anyhow::Result<Bytes> {
        match self {
            Self::YWebsocket => Ok(frame),
            Self::Hocuspocus if frame[..] == [HOCUSPOCUS_PING] => Ok(frame),
            Self::Hocuspocus => {
                let mut cursor = Cursor::new(&frame);
                let len: u32 = cursor.read_var().context("reading a frame's address")?;
                let start = cursor.next + len as usize;
                ensure!(start <= frame.len(), "a frame's address runs past its end");
                Ok(frame.slice(start..))
            }
        }
    }

    /// Whether a received message acknowledges one change the client sent: its echo
    /// (y-websocket servers send every update back to its sender too) or Hocuspocus'
    /// SyncStatus(true).
    pub fn is_ack(self, message: &[u8]) -> bool {
        match self {
            Self::YWebsocket => message.starts_with(&UPDATE_PREFIX),
            Self::Hocuspocus => message == [HOCUSPOCUS_SYNC_STATUS, 1],
        }
    }

    /// Whether the server acknowledges the client's sync step 2 too (Hocuspocus does, with
    /// SyncStatus; y-websocket servers echo only what changed the document).
    pub fn acks_sync_step2(self) -> bool {
        self == Self::Hocuspocus
    }
}

fn sync_message(sub: u8, payload: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(payload.len() + 7);
    frame.write_var(MESSAGE_SYNC);
    frame.write_var(sub);
    frame.write_buf(payload);
    frame.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_y_protocols() {
        // PROTOCOLS.md §2.2: an empty document's state vector is `00`, its update `00 00`.
        assert_eq!(&sync_step1(&[0])[..], &[0, 0, 1, 0]);
        assert_eq!(&sync_step2(&[0, 0])[..], &[0, 1, 2, 0, 0]);
        assert_eq!(&update(&[7; 3])[..], &[0, 2, 3, 7, 7, 7]);
        let long = vec![1; 300];
        assert_eq!(&update(&long)[..4], &[0, 2, 0xac, 0x02]);
    }

    #[test]
    fn parses_what_it_encodes() {
        assert_eq!(parse(&sync_step1(&[0])).ok(), Some(Frame::SyncStep1(&[0])));
        assert_eq!(
            parse(&sync_step2(&[0, 0])).ok(),
            Some(Frame::SyncStep2(&[0, 0]))
        );
        let long = vec![5; 300];
        assert_eq!(parse(&update(&long)).ok(), Some(Frame::Update(&long[..])));
        assert!(update(&long).starts_with(&UPDATE_PREFIX));
    }

    #[test]
    fn passes_other_messages_through() {
        assert_eq!(parse(&[1, 0]).ok(), Some(Frame::Other(1)));
        assert_eq!(parse(&[3]).ok(), Some(Frame::Other(3)));
    }

    #[test]
    fn encodes_awareness_like_y_protocols() {
        // PROTOCOLS.md §8.3: client 1234567, clock 1, the 43-byte state.
        let state = r##"{"user":{"name":"Alice","color":"#ff0000"}}"##;
        let frame = awareness([(1_234_567, 1, state)].into_iter());
        assert_eq!(
            &frame[..8],
            &[0x01, 0x31, 0x01, 0x87, 0xad, 0x4b, 0x01, 0x2b]
        );
        assert_eq!(frame.len(), 2 + 0x31);
        assert_eq!(parse(&frame).ok(), Some(Frame::Other(1)));
        assert_eq!(awareness_entries(&frame), Some(1));
        let two = awareness([(1, 1, "{}"), (2, 1, "null")].into_iter());
        assert_eq!(awareness_entries(&two), Some(2));
        assert_eq!(awareness_entries(&update(&[0, 0])), None);
    }

    #[test]
    fn addresses_hocuspocus_frames() -> anyhow::Result<()> {
        let dialect = Dialect::Hocuspocus;
        // PROTOCOLS.md §8.1: the client's first sync step 1 for "my-doc".
        let frame = dialect.frame("my-doc", &sync_step1(&[0]));
        assert_eq!(&frame[..], b"\x06my-doc\x00\x00\x01\x00");
        assert_eq!(&dialect.message(frame)?[..], &[0, 0, 1, 0]);
        // §8.4 without the version: the token message with an empty token.
        let opening = dialect.opening("my-doc").context("no opening")?;
        assert_eq!(&opening[..], b"\x06my-doc\x02\x00\x00");
        let status = Bytes::from_static(b"\x06my-doc\x08\x01");
        assert!(dialect.is_ack(&dialect.message(status)?));
        assert_eq!(&dialect.message(Bytes::from_static(&[9]))?[..], &[9]);
        assert!(dialect.message(Bytes::from_static(b"\x09my")).is_err());
        assert_eq!(dialect.url("ws://h:1/", "a")?, "ws://h:1");
        Ok(())
    }

    #[test]
    fn addresses_y_websocket_frames() -> anyhow::Result<()> {
        let dialect = Dialect::YWebsocket;
        assert_eq!(
            dialect.url("ws://127.0.0.1:1/ws", "a/b-1")?,
            "ws://127.0.0.1:1/ws/a/b-1"
        );
        assert_eq!(
            dialect.url("ws://127.0.0.1:1/ws/", "x")?,
            "ws://127.0.0.1:1/ws/x"
        );
        assert!(dialect.url("ws://h/ws", "a b").is_err());
        assert!(dialect.url("ws://h/ws", "").is_err());
        assert!(dialect.opening("x").is_none());
        assert!(dialect.is_ack(&update(&[0, 0])));
        assert!(!dialect.is_ack(&sync_step2(&[0, 0])));
        Ok(())
    }

    #[test]
    fn refuses_truncated_and_unknown_frames() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[0, 2, 5, 1, 2]).is_err());
        assert!(parse(&[0, 9, 0]).is_err());
    }
}
