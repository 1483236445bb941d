//! The Hocuspocus wire protocol (`@hocuspocus/provider` v3 and v4, `../shared/PROTOCOLS.md`
//! §4): one socket carries many documents, so every frame starts with the document's address
//! (`varString`), then a message type and its payload. Sync and awareness payloads are
//! y-protocols' own; authentication, stateless messages, closing one document and sync
//! acknowledgements are Hocuspocus's.
//!
//! Framed here by hand: Hocuspocus's auth subtypes mean the opposite of y-protocols' (0 is a
//! token here, "permission denied" there), so a y-protocols reader cannot parse them.

use bytes::Bytes;

use crate::lib0::{write_var_bytes, write_var_u64, DecodeError, Reader};
use crate::protocol::{decode_awareness, decode_state_vector, AwarenessUpdate};
use crate::protocol::{ClientMessage, ReceivedUpdate, MSG_AWARENESS, MSG_SYNC};

/// Message type: y-protocols sync.
pub const SYNC: u64 = 0;
/// Message type: awareness.
pub const AWARENESS: u64 = 1;
/// Message type: authentication.
pub const AUTH: u64 = 2;
/// Message type: query awareness.
pub const QUERY_AWARENESS: u64 = 3;
/// Message type: stateless (an application string).
pub const STATELESS: u64 = 5;
/// Message type: broadcast stateless (server-internal in Hocuspocus; refused from clients).
pub const BROADCAST_STATELESS: u64 = 6;
/// Message type: close one document's session.
pub const CLOSE: u64 = 7;
/// Message type: sync status (acknowledgement of a change).
pub const SYNC_STATUS: u64 = 8;
/// The whole frame of a v4 Pong, which has no address.
pub const PONG: u8 = 10;

/// Auth subtype: a token (client to server) or a token request (server to client).
const AUTH_TOKEN: u64 = 0;
/// Auth subtype: permission denied, with a reason.
const AUTH_PERMISSION_DENIED: u64 = 1;
/// Auth subtype: authenticated, with the scope.
const AUTH_AUTHENTICATED: u64 = 2;

/// A frame from a Hocuspocus provider.
#[derive(Debug)]
pub enum ClientFrame {
    /// The v4 keep-alive answer: one byte, no address.
    Pong,
    /// A message for one document session.
    Message {
        /// The address exactly as sent (`name` or v4 `name\0session`); replies use it.
        address: Bytes,
        /// What was said.
        message: ClientMessageHp,
    },
}

/// What a provider says to one document session.
#[derive(Debug)]
pub enum ClientMessageHp {
    /// A y-protocols sync message or awareness update, as y-websocket clients send them.
    Document(ClientMessage),
    /// The token (possibly empty) and, from v4 on, the provider's version.
    Auth {
        /// The token.
        token: String,
        /// The provider's version, if it said.
        version: Option<String>,
    },
    /// An application string for the document's other peers.
    Stateless(String),
    /// A client-sent broadcast-stateless message, which Hocuspocus itself refuses.
    BroadcastStateless,
    /// The provider detaches from the document.
    Close,
}

impl ClientFrame {
    /// The address's document name: the part before a v4 session separator (NUL).
    pub fn document_name(address: &[u8]) -> &[u8] {
        address
            .iter()
            .position(|&b| b == 0)
            .map_or(address, |at| &address[..at])
    }
}

/// Decodes one frame from a provider (one message per frame).
pub fn decode_client_frame(frame: &[u8]) -> Result<ClientFrame, DecodeError> {
    if frame == [PONG] {
        return Ok(ClientFrame::Pong);
    }
    let mut reader = Reader::new(frame);
    let address = Bytes::copy_from_slice(reader.var_bytes()?);
    let message = match reader.var_u64()? {
        SYNC => ClientMessageHp::Document(decode_sync(&mut reader)?),
        AWARENESS => ClientMessageHp::Document(ClientMessage::Awareness(decode_awareness(
            reader.var_bytes()?,
        )?)),
        AUTH => {
            // Hocuspocus reads the token whatever the subtype says.
            reader.var_u64()?;
            let token = reader.var_str()?.to_owned();
            let version = if reader.has_content() {
                Some(reader.var_str()?.to_owned())
            } else {
                None
            };
            ClientMessageHp::Auth { token, version }
        }
        QUERY_AWARENESS => ClientMessageHp::Document(ClientMessage::QueryAwareness),
        STATELESS => ClientMessageHp::Stateless(reader.var_str()?.to_owned()),
        BROADCAST_STATELESS => ClientMessageHp::BroadcastStateless,
        CLOSE => ClientMessageHp::Close,
        _ => return Err(DecodeError::Invalid("unknown hocuspocus message type")),
    };
    if reader.has_content() && !matches!(message, ClientMessageHp::BroadcastStateless) {
        return Err(DecodeError::Invalid("trailing bytes in hocuspocus message"));
    }
    Ok(ClientFrame::Message { address, message })
}

fn decode_sync(reader: &mut Reader<'_>) -> Result<ClientMessage, DecodeError> {
    let received = ReceivedUpdate::decode;
    match reader.var_u64()? {
        0 => Ok(ClientMessage::SyncStep1(decode_state_vector(
            reader.var_bytes()?,
        )?)),
        1 => Ok(ClientMessage::SyncStep2(received(reader.var_bytes()?)?)),
        2 => Ok(ClientMessage::Update(received(reader.var_bytes()?)?)),
        _ => Err(DecodeError::Invalid("unknown sync message type")),
    }
}

fn addressed(address: &[u8], capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(address.len() + capacity + 4);
    write_var_bytes(&mut out, address);
    out
}

/// Wraps a y-websocket frame (sync or awareness, as documents produce them) for a session.
/// Returns `None` for frames Hocuspocus has no place for.
pub fn wrap_document_frame(address: &[u8], frame: &[u8]) -> Option<Bytes> {
    match frame.first().map(|&b| u64::from(b)) {
        Some(MSG_SYNC | MSG_AWARENESS) => {
            let mut out = addressed(address, frame.len());
            out.extend_from_slice(frame);
            Some(out.into())
        }
        _ => None,
    }
}

/// `Authenticated` with the scope: `read-write`, or `readonly` (no hyphen, as Hocuspocus
/// spells it).
pub fn encode_authenticated(address: &[u8], read_only: bool) -> Bytes {
    let scope = if read_only { "readonly" } else { "read-write" };
    let mut out = addressed(address, scope.len() + 3);
    write_var_u64(&mut out, AUTH);
    write_var_u64(&mut out, AUTH_AUTHENTICATED);
    write_var_bytes(&mut out, scope.as_bytes());
    out.into()
}

/// `PermissionDenied` with a reason.
pub fn encode_permission_denied(address: &[u8], reason: &str) -> Bytes {
    let mut out = addressed(address, reason.len() + 3);
    write_var_u64(&mut out, AUTH);
    write_var_u64(&mut out, AUTH_PERMISSION_DENIED);
    write_var_bytes(&mut out, reason.as_bytes());
    out.into()
}

/// A request for a fresh token (v3.3+ providers answer with a new `Auth`).
pub fn encode_token_request(address: &[u8]) -> Bytes {
    let mut out = addressed(address, 2);
    write_var_u64(&mut out, AUTH);
    write_var_u64(&mut out, AUTH_TOKEN);
    out.into()
}

/// `SyncStatus`: whether the provider's change was applied (and, here, made durable).
pub fn encode_sync_status(address: &[u8], applied: bool) -> Bytes {
    let mut out = addressed(address, 2);
    write_var_u64(&mut out, SYNC_STATUS);
    write_var_u64(&mut out, u64::from(applied));
    out.into()
}

/// A stateless message.
pub fn encode_stateless(address: &[u8], payload: &str) -> Bytes {
    let mut out = addressed(address, payload.len() + 4);
    write_var_u64(&mut out, STATELESS);
    write_var_bytes(&mut out, payload.as_bytes());
    out.into()
}

/// `CLOSE` for one document session, with a reason; the socket stays open.
pub fn encode_close(address: &[u8], reason: &str) -> Bytes {
    let mut out = addressed(address, reason.len() + 3);
    write_var_u64(&mut out, CLOSE);
    write_var_bytes(&mut out, reason.as_bytes());
    out.into()
}

/// Whether an awareness update is in a document frame (for the size limit).
pub fn awareness_of(message: &ClientMessageHp) -> Option<&AwarenessUpdate> {
    match message {
        ClientMessageHp::Document(ClientMessage::Awareness(update)) => Some(update),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pong_has_no_address_and_a_nine_byte_address_is_not_a_ping() {
        assert!(matches!(decode_client_frame(&[10]), Ok(ClientFrame::Pong)));
        // Address "doc" (3 bytes), close.
        let frame = [3, b'd', b'o', b'c', 7];
        assert!(matches!(
            decode_client_frame(&frame),
            Ok(ClientFrame::Message { ref address, message: ClientMessageHp::Close }) if &address[..] == b"doc"
        ));
    }

    #[test]
    fn session_addresses_name_their_document() {
        assert_eq!(ClientFrame::document_name(b"notes\0abc"), b"notes");
        assert_eq!(ClientFrame::document_name(b"notes"), b"notes");
    }

    #[test]
    fn encoders_write_the_reference_bytes() {
        assert_eq!(
            &encode_authenticated(b"d", true)[..],
            [1, b'd', 2, 2, 8, b'r', b'e', b'a', b'd', b'o', b'n', b'l', b'y']
        );
        assert_eq!(&encode_sync_status(b"d", true)[..], [1, b'd', 8, 1]);
        assert_eq!(&encode_token_request(b"d")[..], [1, b'd', 2, 0]);
        assert_eq!(
            &encode_stateless(b"my-doc", r#"{"a":1}"#)[..],
            [
                0x06, 0x6d, 0x79, 0x2d, 0x64, 0x6f, 0x63, 0x05, 0x07, 0x7b, 0x22, 0x61, 0x22, 0x3a,
                0x31, 0x7d
            ]
        );
        assert_eq!(
            wrap_document_frame(b"d", &[0, 0, 1, 0]).as_deref(),
            Some(&[1, b'd', 0, 0, 1, 0][..])
        );
        assert_eq!(wrap_document_frame(b"d", &[5, 0]), None);
    }

    #[test]
    fn garbage_is_refused() {
        for frame in [
            &[][..],
            &[3, b'd', b'o'][..],
            &[1, b'd', 42][..],
            &[1, b'd', 0, 9, 0][..],
            &[1, b'd', 7, 1][..],
        ] {
            assert!(decode_client_frame(frame).is_err(), "{frame:?}");
        }
    }
}
