//! The y-websocket wire protocol: y-protocols sync, awareness and auth messages, one or more per
//! binary frame (`../shared/PROTOCOLS.md` §2–3).
//!
//! Decoding happens in the connection task, before anything reaches a document: a frame either
//! decodes completely (every update parsed by yrs, every awareness state valid JSON with a client
//! id below 2^53) or it is refused whole and nothing in it is applied.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{StateVector, Update};

use crate::lib0::{write_var_bytes, write_var_u64, DecodeError, Reader};

/// Outer message type of sync messages.
pub const MSG_SYNC: u64 = 0;
/// Outer message type of awareness updates.
pub const MSG_AWARENESS: u64 = 1;
/// Outer message type of auth messages (server to client: permission denied).
pub const MSG_AUTH: u64 = 2;
/// Outer message type asking the other side for every awareness state it knows.
pub const MSG_QUERY_AWARENESS: u64 = 3;
/// Outer message type of Tandem's custom events: `5 · varString(json)`. Not part of
/// y-protocols: only peers that opted in (`?events=1`) are ever sent one. Client to server:
/// `{"type": string, "data": any}` emits an event, `{"since": seq}` asks for the history after
/// `seq`. Server to client: `{"seq", "type", "data", "from", "at"}` (an event), `{"ack": seq}`
/// (the sequence number given to the peer's own event), `{"gap": {"from", "to"}}` (events no
/// longer in the history).
pub const MSG_EVENT: u64 = 5;

/// Longest custom event type name, in bytes.
pub const MAX_EVENT_TYPE_BYTES: usize = 128;

/// Auth subtype of y-protocols' "permission denied" (Hocuspocus numbers its subtypes differently).
const AUTH_PERMISSION_DENIED: u64 = 0;

const SYNC_STEP_1: u64 = 0;
const SYNC_STEP_2: u64 = 1;
const SYNC_UPDATE: u64 = 2;

/// JavaScript clients cannot represent integers from 2^53 on; yrs asserts on them
/// (PROTOCOLS.md §6.3 item 9), so they are refused at the edge.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A message a y-websocket client sent, fully decoded and validated.
#[derive(Debug)]
pub enum ClientMessage {
    /// Sync step 1: the client's state vector, asking for what it lacks.
    SyncStep1(StateVector),
    /// Sync step 2: what the server lacks, as computed by the client.
    SyncStep2(ReceivedUpdate),
    /// A live document update.
    Update(ReceivedUpdate),
    /// Awareness states (presence) of one or more clients.
    Awareness(AwarenessUpdate),
    /// A request for every awareness state the server knows.
    QueryAwareness,
    /// An auth message; clients have nothing to say here, so it is ignored.
    Auth,
    /// A custom event message.
    Event(ClientEvent),
}

/// What a peer says with a custom event message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Send an event to the document's other opted-in peers.
    Emit {
        /// The application's name for the kind of event (`"chat"`, `"typing"`).
        kind: String,
        /// The event's payload as compact JSON text (`null` when absent).
        data: String,
        /// Size of the message on the wire, for limits.
        encoded_len: usize,
    },
    /// Send me every event after this sequence number that the history still has.
    Since(u64),
}

impl ClientMessage {
    /// Whether the message would change the document.
    pub fn is_document_change(&self) -> bool {
        matches!(self, Self::SyncStep2(_) | Self::Update(_))
    }

    /// Whether the message still means something once its sender's connection is gone:
    /// document changes and events do; requests for an answer and presence do not.
    pub fn outlives_its_peer(&self) -> bool {
        matches!(
            self,
            Self::SyncStep2(_) | Self::Update(_) | Self::Event(ClientEvent::Emit { .. })
        )
    }
}

/// What [`withhold`] took out of a peer's messages because its rights do not allow it.
#[derive(Debug, Default)]
pub struct Withheld {
    /// Document changes from a peer without the `write` right: dropped.
    pub changes: u64,
    /// Custom events from a peer without the `events` right: dropped.
    pub events: u64,
    /// Awareness entries of a peer without the `presence` right: not published (the
    /// connection echoes them to the peer alone).
    pub presence: Vec<AwarenessEntry>,
}

/// Removes from `messages` what `rights` do not allow, and says what it removed. An empty
/// update (a sync step 2 with nothing new) is harmless and stays.
///
/// Every connection applies this before its messages reach a document, so a read-only peer can
/// never change one.
pub fn withhold(messages: &mut Vec<ClientMessage>, rights: crate::Rights) -> Withheld {
    let may_write = rights.contains(crate::Rights::WRITE);
    let may_publish = rights.contains(crate::Rights::PRESENCE);
    let may_emit = rights.contains(crate::Rights::EVENTS);
    let mut withheld = Withheld::default();
    messages.retain_mut(|message| match message {
        ClientMessage::SyncStep2(update) | ClientMessage::Update(update) => {
            let allowed = may_write || update.is_empty();
            if !allowed {
                withheld.changes += 1;
            }
            allowed
        }
        ClientMessage::Awareness(update) if !may_publish => {
            withheld.presence.append(&mut update.entries);
            false
        }
        ClientMessage::Event(ClientEvent::Emit { .. }) if !may_emit => {
            withheld.events += 1;
            false
        }
        _ => true,
    });
    withheld
}

/// A document update as received: decoded, with the size it had on the wire.
#[derive(Debug)]
pub struct ReceivedUpdate {
    /// The decoded update.
    pub update: Update,
    /// Its encoded size in bytes: what it can add to the document at most, give or take the
    /// encoding, so size limits are checked against it before the update is applied.
    pub encoded_len: usize,
    /// Where its items belong, for the nesting check before it is applied.
    pub(crate) layout: crate::nesting::Layout,
}

impl ReceivedUpdate {
    /// Decodes a Yjs v1 update as [`decode_update`] does, keeping what the document checks
    /// before applying it.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let layout = crate::nesting::Layout::read(bytes)?;
        Ok(Self {
            update: decode_checked(bytes)?,
            encoded_len: bytes.len(),
            layout,
        })
    }

    /// Whether the update carries nothing: no structs and no deletions (a client's sync step 2
    /// when the server already has everything).
    pub fn is_empty(&self) -> bool {
        self.update.is_empty()
    }
}

/// An awareness update: the newest state of some clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwarenessUpdate {
    /// One entry per client.
    pub entries: Vec<AwarenessEntry>,
}

/// The awareness state of one client at one clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwarenessEntry {
    /// The client's Yjs client id (below 2^53).
    pub client: u64,
    /// The client's awareness clock; a higher clock replaces a lower one.
    pub clock: u64,
    /// The state as JSON text, or `None` when the client is gone (`null` on the wire).
    pub state: Option<Arc<str>>,
}

/// Decodes every message in one binary frame.
///
/// Clients up to y-websocket 3.x send one message per frame; 4.x may send several. Trailing bytes
/// that do not form a message make the whole frame invalid.
pub fn decode_frame(frame: &[u8]) -> Result<Vec<ClientMessage>, DecodeError> {
    decode_frame_at_most(frame, usize::MAX).map(Option::unwrap_or_default)
}

/// Decodes every message in one binary frame like [`decode_frame`], unless it holds more than
/// `max_messages`: then `Ok(None)`, found before the message past the limit is decoded, so a
/// frame of a million one-byte messages costs no more than the limit allows.
pub fn decode_frame_at_most(
    frame: &[u8],
    max_messages: usize,
) -> Result<Option<Vec<ClientMessage>>, DecodeError> {
    let mut reader = Reader::new(frame);
    let mut messages = Vec::with_capacity(1);
    if !reader.has_content() {
        return Err(DecodeError::Invalid("empty frame"));
    }
    while reader.has_content() {
        if messages.len() >= max_messages {
            return Ok(None);
        }
        messages.push(decode_message(&mut reader)?);
    }
    Ok(Some(messages))
}

fn decode_message(reader: &mut Reader<'_>) -> Result<ClientMessage, DecodeError> {
    match reader.var_u64()? {
        MSG_SYNC => match reader.var_u64()? {
            SYNC_STEP_1 => Ok(ClientMessage::SyncStep1(decode_state_vector(
                reader.var_bytes()?,
            )?)),
            SYNC_STEP_2 => Ok(ClientMessage::SyncStep2(received_update(
                reader.var_bytes()?,
            )?)),
            SYNC_UPDATE => Ok(ClientMessage::Update(received_update(reader.var_bytes()?)?)),
            _ => Err(DecodeError::Invalid("unknown sync message type")),
        },
        MSG_AWARENESS => Ok(ClientMessage::Awareness(decode_awareness(
            reader.var_bytes()?,
        )?)),
        MSG_AUTH => {
            // y-protocols auth: a subtype and, for "permission denied", a reason.
            let subtype = reader.var_u64()?;
            if subtype == AUTH_PERMISSION_DENIED {
                reader.var_str()?;
            }
            Ok(ClientMessage::Auth)
        }
        MSG_QUERY_AWARENESS => Ok(ClientMessage::QueryAwareness),
        MSG_EVENT => Ok(ClientMessage::Event(decode_event(reader.var_str()?)?)),
        _ => Err(DecodeError::Invalid("unknown message type")),
    }
}

fn received_update(bytes: &[u8]) -> Result<ReceivedUpdate, DecodeError> {
    ReceivedUpdate::decode(bytes)
}

/// Decodes a Yjs v1 update, refusing bytes yrs cannot parse.
///
/// The bytes are walked first ([`crate::preflight`]): what would make yrs allocate without
/// bound or recurse too deep is refused before yrs sees it. Decoding is pure (it touches no
/// document), so a panic inside yrs on other hostile input is caught and reported as a decode
/// error instead of taking the connection task down.
pub fn decode_update(bytes: &[u8]) -> Result<Update, DecodeError> {
    crate::preflight::check_update(bytes)?;
    decode_checked(bytes)
}

/// Decodes bytes the preflight walk accepted.
fn decode_checked(bytes: &[u8]) -> Result<Update, DecodeError> {
    match catch_unwind(AssertUnwindSafe(|| Update::decode_v1(bytes))) {
        Ok(Ok(update)) => Ok(update),
        _ => Err(DecodeError::Invalid("malformed update")),
    }
}

/// Decodes a Yjs v1 state vector.
pub fn decode_state_vector(bytes: &[u8]) -> Result<StateVector, DecodeError> {
    crate::preflight::check_state_vector(bytes)?;
    match catch_unwind(AssertUnwindSafe(|| StateVector::decode_v1(bytes))) {
        Ok(Ok(sv)) => Ok(sv),
        _ => Err(DecodeError::Invalid("malformed state vector")),
    }
}

/// Decodes an awareness update (`count · (client · clock · json)*`), validating every entry.
pub fn decode_awareness(bytes: &[u8]) -> Result<AwarenessUpdate, DecodeError> {
    let mut reader = Reader::new(bytes);
    let count = reader.var_u64()?;
    // Each entry takes at least three bytes, which bounds the allocation by the input size.
    if count > (reader.remaining() / 3) as u64 {
        return Err(DecodeError::UnexpectedEnd);
    }
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let client = reader.var_u64()?;
        if client > MAX_SAFE_INTEGER {
            return Err(DecodeError::Invalid("awareness client id above 2^53"));
        }
        let clock = reader.var_u64()?;
        if clock > MAX_SAFE_INTEGER {
            return Err(DecodeError::Invalid("awareness clock above 2^53"));
        }
        let json = reader.var_str()?;
        // Like update content: a deep state would be relayed to every peer yet read as
        // `null` by `GET /presence` and SSE (serde_json stops at 128 levels).
        crate::preflight::json_depth(json)?;
        if serde_json::from_str::<serde::de::IgnoredAny>(json).is_err() {
            return Err(DecodeError::Invalid("awareness state is not json"));
        }
        let state = (json.trim() != "null").then(|| Arc::<str>::from(json));
        entries.push(AwarenessEntry {
            client,
            clock,
            state,
        });
    }
    if reader.has_content() {
        return Err(DecodeError::Invalid("trailing bytes in awareness update"));
    }
    Ok(AwarenessUpdate { entries })
}

/// Decodes the JSON of a client's custom event message.
pub fn decode_event(json: &str) -> Result<ClientEvent, DecodeError> {
    let invalid = DecodeError::Invalid(
        "event is not {\"type\": string, \"data\": any} or {\"since\": integer}",
    );
    let serde_json::Value::Object(mut fields) =
        serde_json::from_str(json).map_err(|_| DecodeError::Invalid("event is not json"))?
    else {
        return Err(invalid);
    };
    if let Some(since) = fields.get("since") {
        return match (since.as_u64(), fields.len()) {
            (Some(since), 1) => Ok(ClientEvent::Since(since)),
            _ => Err(invalid),
        };
    }
    let Some(serde_json::Value::String(kind)) = fields.remove("type") else {
        return Err(invalid);
    };
    if kind.is_empty() || kind.len() > MAX_EVENT_TYPE_BYTES {
        return Err(DecodeError::Invalid("event type empty or too long"));
    }
    let data = fields.remove("data").unwrap_or(serde_json::Value::Null);
    if !fields.is_empty() {
        return Err(invalid);
    }
    Ok(ClientEvent::Emit {
        kind,
        data: data.to_string(),
        encoded_len: json.len(),
    })
}

/// Encodes a custom event message carrying `json`.
pub fn encode_event(json: &str) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 6);
    write_var_u64(&mut out, MSG_EVENT);
    write_var_bytes(&mut out, json.as_bytes());
    out.into()
}

fn sync_frame(kind: u64, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 8);
    write_var_u64(&mut out, MSG_SYNC);
    write_var_u64(&mut out, kind);
    write_var_bytes(&mut out, payload);
    out.into()
}

/// Encodes sync step 1 carrying the server's state vector.
pub fn encode_sync_step1(sv: &StateVector) -> Bytes {
    sync_frame(SYNC_STEP_1, &sv.encode_v1())
}

/// Encodes sync step 2 carrying what the peer lacks.
pub fn encode_sync_step2(update: &[u8]) -> Bytes {
    sync_frame(SYNC_STEP_2, update)
}

/// Encodes a live update.
pub fn encode_update(update: &[u8]) -> Bytes {
    sync_frame(SYNC_UPDATE, update)
}

/// Encodes a y-protocols "permission denied" auth message. y-websocket clients log the reason
/// and stay connected.
pub fn encode_permission_denied(reason: &str) -> Bytes {
    let mut out = Vec::with_capacity(reason.len() + 4);
    write_var_u64(&mut out, MSG_AUTH);
    write_var_u64(&mut out, AUTH_PERMISSION_DENIED);
    write_var_bytes(&mut out, reason.as_bytes());
    out.into()
}

/// Encodes an awareness message with the given entries; `None` states go out as `null`.
pub fn encode_awareness<'a>(
    entries: impl ExactSizeIterator<Item = (u64, u64, Option<&'a str>)>,
) -> Bytes {
    let mut body = Vec::new();
    write_var_u64(&mut body, entries.len() as u64);
    for (client, clock, state) in entries {
        write_var_u64(&mut body, client);
        write_var_u64(&mut body, clock);
        write_var_bytes(&mut body, state.unwrap_or("null").as_bytes());
    }
    let mut out = Vec::with_capacity(body.len() + 6);
    write_var_u64(&mut out, MSG_AWARENESS);
    write_var_bytes(&mut out, &body);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("test hex"))
            .collect()
    }

    #[test]
    fn decodes_the_clients_first_sync_step1() {
        let messages = decode_frame(&hex("00 00 01 00")).expect("valid");
        assert!(matches!(&messages[..], [ClientMessage::SyncStep1(sv)] if sv.is_empty()));
    }

    #[test]
    fn decodes_an_update_from_the_protocol_reference() {
        let frame = hex("00 02 0f 01 01 02 00 84 01 04 06 20 77 6f 72 6c 64 00");
        let messages = decode_frame(&frame).expect("valid");
        assert!(matches!(&messages[..], [ClientMessage::Update(_)]));
    }

    #[test]
    fn decodes_awareness_from_the_protocol_reference() {
        let json = r##"{"user":{"name":"Alice","color":"#ff0000"}}"##;
        let mut frame = hex("01 31 01 87 ad 4b 01 2b");
        frame.extend_from_slice(json.as_bytes());
        let messages = decode_frame(&frame).expect("valid");
        let [ClientMessage::Awareness(update)] = &messages[..] else {
            panic!("expected one awareness message, got {messages:?}");
        };
        assert_eq!(
            update.entries,
            [AwarenessEntry {
                client: 1_234_567,
                clock: 1,
                state: Some(json.into())
            }]
        );
        let encoded = encode_awareness(
            update
                .entries
                .iter()
                .map(|e| (e.client, e.clock, e.state.as_deref())),
        );
        assert_eq!(&encoded[..], &frame[..]);
    }

    #[test]
    fn null_awareness_state_is_a_removal() {
        let frame = hex("01 0a 01 87 ad 4b 01 04 6e 75 6c 6c");
        let messages = decode_frame(&frame).expect("valid");
        let [ClientMessage::Awareness(update)] = &messages[..] else {
            panic!("{messages:?}")
        };
        assert_eq!(update.entries[0].state, None);
    }

    #[test]
    fn refuses_hostile_awareness() {
        // client id 2^60
        let mut body = vec![1];
        write_var_u64(&mut body, 1 << 60);
        body.extend_from_slice(&[1, 2, b'{', b'}']);
        let mut frame = vec![1];
        write_var_bytes(&mut frame, &body);
        assert!(decode_frame(&frame).is_err());
        // invalid json
        let frame = hex("01 07 01 01 01 03 7b 7b 7b");
        assert!(decode_frame(&frame).is_err());
        // a count far beyond the bytes present
        let frame = hex("01 05 ff ff ff ff 0f");
        assert!(decode_frame(&frame).is_err());
    }

    #[test]
    fn refuses_garbage() {
        for frame in [
            hex(""),
            hex("07"),
            hex("00 05 00"),
            hex("00 02 05 01 02"),
            hex("00 02 03 ff ff ff"),
            hex("00 00 01 00 ff"),
        ] {
            assert!(
                decode_frame(&frame).is_err(),
                "{frame:02x?} should not decode"
            );
        }
    }

    #[test]
    fn decodes_events_and_refuses_malformed_ones() {
        let frame = |json: &str| {
            let mut frame = vec![5];
            write_var_bytes(&mut frame, json.as_bytes());
            decode_frame(&frame)
        };
        let messages = frame(r#"{"type":"chat","data":{"text":"hi"}}"#).expect("valid");
        assert!(matches!(
            &messages[..],
            [ClientMessage::Event(ClientEvent::Emit { kind, data, .. })]
                if kind == "chat" && data == r#"{"text":"hi"}"#
        ));
        let messages = frame(r#"{"since":42}"#).expect("valid");
        assert!(matches!(
            &messages[..],
            [ClientMessage::Event(ClientEvent::Since(42))]
        ));
        for bad in [
            "not json",
            "[1]",
            r#"{"data":1}"#,
            r#"{"type":""}"#,
            r#"{"type":7}"#,
            r#"{"type":"a","extra":1}"#,
            r#"{"since":-1}"#,
            r#"{"since":1,"type":"a"}"#,
        ] {
            assert!(frame(bad).is_err(), "{bad} should not decode");
        }
        assert_eq!(&encode_event("{}")[..], &[5, 2, b'{', b'}']);
    }

    #[test]
    fn several_messages_in_one_frame() {
        let frame = hex("00 00 01 00 03");
        let messages = decode_frame(&frame).expect("valid");
        assert!(matches!(
            &messages[..],
            [ClientMessage::SyncStep1(_), ClientMessage::QueryAwareness]
        ));
    }

    #[test]
    fn encodes_like_the_reference_server() {
        let sv = decode_state_vector(&hex("01 01 05")).expect("sv");
        assert_eq!(&encode_sync_step1(&sv)[..], &hex("00 00 03 01 01 05")[..]);
        assert_eq!(
            &encode_sync_step2(&hex("00 00"))[..],
            &hex("00 01 02 00 00")[..]
        );
        assert_eq!(
            &encode_permission_denied("no")[..],
            &hex("02 00 02 6e 6f")[..]
        );
    }
}
