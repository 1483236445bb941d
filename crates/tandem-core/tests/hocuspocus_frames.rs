//! The Hocuspocus framing against frames captured from the real thing
//! (`tests/fixtures/hocuspocus/README.md` says how):
//!
//! - `provider-v4/`, `provider-v3/`: what `@hocuspocus/provider` 4.8.0 and 3.4.4 send. Every one
//!   decodes with [`decode_client_frame`] to the address, message and token/version it carries.
//! - `server-v4/`, `server-v3/`: what `@hocuspocus/server` 4.7.0 and 3.4.4 send back to those
//!   frames. Tandem's encoders produce exactly these bytes, so the provider reads Tandem's frames
//!   as it reads the reference server's.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use tandem_core::hocuspocus::{
    decode_client_frame, encode_authenticated, encode_close, encode_permission_denied,
    encode_stateless, encode_sync_status, encode_token_request, wrap_document_frame, ClientFrame,
    ClientMessageHp,
};
use tandem_core::protocol::{
    encode_awareness, encode_sync_step1, encode_sync_step2, encode_update, AwarenessEntry,
    ClientMessage,
};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Transact, Update};

const ADDRESS: &[u8] = b"my-doc";
const CLIENT: u64 = 1_234_567;
const USER: &str = r##"{"user":{"name":"Alice","color":"#ff0000"}}"##;

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hocuspocus")
        .join(name)
}

fn hex(text: &str) -> Vec<u8> {
    text.trim()
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            assert_eq!(pair.len(), 2, "odd hex length");
            u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex")
        })
        .collect()
}

fn fixture(folder: &str, label: &str) -> Vec<u8> {
    let path = dir(folder).join(format!("{label}.hex"));
    hex(&fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Every `*.hex` label in a fixture folder.
fn labels(folder: &str) -> BTreeSet<String> {
    fs::read_dir(dir(folder))
        .expect("fixture folder")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8")
        })
        .filter_map(|name| name.strip_suffix(".hex").map(str::to_owned))
        .collect()
}

/// The version a provider fixture folder was captured with (`VERSION`: "@hocuspocus/provider 4.8.0").
fn provider_version(folder: &str) -> String {
    let text = fs::read_to_string(dir(folder).join("VERSION")).expect("VERSION");
    text.split_whitespace()
        .last()
        .expect("a version")
        .to_owned()
}

fn decode(folder: &str, label: &str) -> (Vec<u8>, ClientMessageHp) {
    let bytes = fixture(folder, label);
    match decode_client_frame(&bytes) {
        Ok(ClientFrame::Message { address, message }) => (address.to_vec(), message),
        Ok(ClientFrame::Pong) => panic!("{folder}/{label}: decoded as a Pong"),
        Err(error) => panic!("{folder}/{label} does not decode: {error}"),
    }
}

fn document_name(address: &[u8]) -> &[u8] {
    ClientFrame::document_name(address)
}

fn assert_auth(folder: &str, label: &str, address: &[u8], token: &str, version: Option<&str>) {
    let (got_address, message) = decode(folder, label);
    assert_eq!(got_address, address, "{folder}/{label}: address");
    match message {
        ClientMessageHp::Auth {
            token: got_token,
            version: got_version,
        } => {
            assert_eq!(got_token, token, "{folder}/{label}: token");
            assert_eq!(got_version.as_deref(), version, "{folder}/{label}: version");
        }
        other => panic!("{folder}/{label}: expected Auth, got {other:?}"),
    }
}

fn assert_step1_empty(folder: &str, label: &str, address: &[u8]) {
    let (got_address, message) = decode(folder, label);
    assert_eq!(got_address, address, "{folder}/{label}: address");
    match message {
        ClientMessageHp::Document(ClientMessage::SyncStep1(sv)) => {
            assert_eq!(sv, StateVector::default(), "{folder}/{label}: empty doc")
        }
        other => panic!("{folder}/{label}: expected SyncStep1, got {other:?}"),
    }
}

fn assert_step2_empty(folder: &str, label: &str, address: &[u8]) {
    let (got_address, message) = decode(folder, label);
    assert_eq!(got_address, address, "{folder}/{label}: address");
    match message {
        ClientMessageHp::Document(ClientMessage::SyncStep2(update)) => {
            assert!(update.is_empty(), "{folder}/{label}: nothing to send");
            assert_eq!(update.encoded_len, 2, "{folder}/{label}: `00 00`");
        }
        other => panic!("{folder}/{label}: expected SyncStep2, got {other:?}"),
    }
}

fn assert_close(folder: &str, label: &str, address: &[u8]) {
    let (got_address, message) = decode(folder, label);
    assert_eq!(got_address, address, "{folder}/{label}: address");
    assert!(
        matches!(message, ClientMessageHp::Close),
        "{folder}/{label}: expected Close, got {message:?}"
    );
}

fn assert_awareness(folder: &str, label: &str, clock: u64, state: Option<&str>) {
    let (address, message) = decode(folder, label);
    assert_eq!(address, ADDRESS, "{folder}/{label}: address");
    match message {
        ClientMessageHp::Document(ClientMessage::Awareness(update)) => assert_eq!(
            update.entries,
            [AwarenessEntry {
                client: CLIENT,
                clock,
                state: state.map(Into::into),
            }],
            "{folder}/{label}"
        ),
        other => panic!("{folder}/{label}: expected Awareness, got {other:?}"),
    }
}

/// The provider's update (`update.hex`): client 1234567 inserted "hello" into Y.Text "text".
fn hello_update(folder: &str) -> Vec<u8> {
    let (address, message) = decode(folder, "update");
    assert_eq!(address, ADDRESS);
    match message {
        ClientMessageHp::Document(ClientMessage::Update(update)) => {
            assert_eq!(update.encoded_len, 20);
            let doc = Doc::with_client_id(99);
            let text = doc.get_or_insert_text("text");
            doc.transact_mut()
                .apply_update(update.update)
                .expect("the provider's update applies");
            assert_eq!(text.get_string(&doc.transact()), "hello");
        }
        other => panic!("{folder}/update: expected Update, got {other:?}"),
    }
    // The payload as raw bytes: after the address, type 0, subtype 2 and the length.
    let bytes = fixture(folder, "update");
    bytes[1 + ADDRESS.len() + 3..].to_vec()
}

/// The labels both provider majors have, checked the same way; returns the labels checked.
fn check_common_provider_frames(folder: &str, version: Option<&str>) -> BTreeSet<String> {
    let utf8 = "notes/2024/plän".as_bytes();
    assert_auth(folder, "auth", ADDRESS, "secret-token", version);
    // The answer to a server's token request is the same Auth message again.
    assert_auth(folder, "auth-renewal", ADDRESS, "secret-token", version);
    assert_eq!(fixture(folder, "auth-renewal"), fixture(folder, "auth"));
    // No token: the provider still authenticates, with an empty string.
    assert_auth(folder, "auth-empty-token-utf8-name", utf8, "", version);
    assert_step1_empty(folder, "sync-step1", ADDRESS);
    assert_step1_empty(folder, "sync-step1-utf8-name", utf8);
    assert_step2_empty(folder, "sync-step2", ADDRESS);
    assert_step2_empty(folder, "sync-step2-utf8-name", utf8);
    hello_update(folder);
    assert_awareness(folder, "awareness-initial", 0, Some("{}"));
    assert_awareness(folder, "awareness-user", 1, Some(USER));
    assert_awareness(folder, "awareness-query-reply", 1, Some(USER));
    assert_awareness(folder, "awareness-removal", 2, None);
    let (address, message) = decode(folder, "stateless");
    assert_eq!(address, ADDRESS);
    assert!(
        matches!(message, ClientMessageHp::Stateless(ref s) if s == r#"{"a":1}"#),
        "{folder}/stateless: {message:?}"
    );
    assert_close(folder, "close", ADDRESS);
    assert_close(folder, "close-utf8-name", utf8);
    [
        "auth",
        "auth-renewal",
        "auth-empty-token-utf8-name",
        "sync-step1",
        "sync-step1-utf8-name",
        "sync-step2",
        "sync-step2-utf8-name",
        "update",
        "awareness-initial",
        "awareness-user",
        "awareness-query-reply",
        "awareness-removal",
        "stateless",
        "close",
        "close-utf8-name",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

#[test]
fn provider_v4_frames_decode() {
    let folder = "provider-v4";
    let version = provider_version(folder);
    assert!(version.starts_with("4."), "{version}");
    let mut checked = check_common_provider_frames(folder, Some(&version));

    // Session awareness: the address is `name \0 sessionId`, naming the document before the NUL.
    let session = b"my-doc\0abc123";
    assert_auth(
        folder,
        "auth-session",
        session,
        "secret-token",
        Some(&version),
    );
    assert_eq!(document_name(session), ADDRESS);
    assert_step1_empty(folder, "sync-step1-session", session);
    assert_step2_empty(folder, "sync-step2-session", session);
    assert_close(folder, "close-session", session);
    // The one-byte Pong, which has no address.
    assert_eq!(fixture(folder, "pong"), [10]);
    assert!(matches!(
        decode_client_frame(&fixture(folder, "pong")),
        Ok(ClientFrame::Pong)
    ));
    checked.extend(
        [
            "auth-session",
            "sync-step1-session",
            "sync-step2-session",
            "close-session",
            "pong",
        ]
        .map(str::to_owned),
    );
    assert_eq!(
        labels(folder),
        checked,
        "every v4 fixture is checked, and only these"
    );
}

#[test]
fn provider_v3_frames_decode() {
    let folder = "provider-v3";
    assert!(provider_version(folder).starts_with("3."));
    // v3 sends no version after the token.
    let checked = check_common_provider_frames(folder, None);
    assert_eq!(
        labels(folder),
        checked,
        "every v3 fixture is checked, and only these"
    );
}

#[test]
fn v3_and_v4_frames_differ_only_in_the_auth_version() {
    for label in labels("provider-v3") {
        let (v3, v4) = (
            fixture("provider-v3", &label),
            fixture("provider-v4", &label),
        );
        if label.starts_with("auth") {
            // v4 = v3 · varString(version).
            let version = provider_version("provider-v4");
            let mut expected = v3.clone();
            expected.push(u8::try_from(version.len()).expect("short"));
            expected.extend_from_slice(version.as_bytes());
            assert_eq!(v4, expected, "{label}");
        } else {
            assert_eq!(v3, v4, "{label}");
        }
    }
}

/// Tandem's encoders produce the reference server's bytes, for v4 and v3 servers alike.
#[test]
fn server_encoders_match_the_reference_server() {
    for folder in ["server-v4", "server-v3"] {
        let server = |label: &str| fixture(folder, label);
        let mut checked = BTreeSet::new();
        let mut check = |label: &str, ours: &[u8]| {
            assert_eq!(ours, server(label), "{folder}/{label}");
            checked.insert(label.to_owned());
        };

        check(
            "authenticated-read-write",
            &encode_authenticated(ADDRESS, false),
        );
        check(
            "authenticated-readonly",
            &encode_authenticated(ADDRESS, true),
        );
        check(
            "permission-denied",
            &encode_permission_denied(ADDRESS, "permission-denied"),
        );
        check("sync-status-applied", &encode_sync_status(ADDRESS, true));
        check("sync-status-refused", &encode_sync_status(ADDRESS, false));
        check("stateless", &encode_stateless(ADDRESS, r#"{"a":1}"#));
        check(
            "close-provider-initiated",
            &encode_close(ADDRESS, "provider_initiated"),
        );

        // Document frames: y-websocket framing wrapped with the address, computed with yrs.
        let empty = Doc::with_client_id(99);
        let txn = empty.transact();
        check(
            "sync-step1-empty-doc",
            &wrap_document_frame(ADDRESS, &encode_sync_step1(&txn.state_vector())).expect("sync"),
        );
        check(
            "sync-step2-empty-doc",
            &wrap_document_frame(
                ADDRESS,
                &encode_sync_step2(&txn.encode_state_as_update_v1(&StateVector::default())),
            )
            .expect("sync"),
        );
        drop(txn);

        // The document after the provider's "hello" (provider-v4/update.hex, which the
        // reference server was sent): its state vector, its state, and the update's broadcast.
        let hello = hello_update("provider-v4");
        let doc = Doc::with_client_id(99);
        doc.get_or_insert_text("text");
        doc.transact_mut()
            .apply_update(Update::decode_v1(&hello).expect("update"))
            .expect("applies");
        let txn = doc.transact();
        check(
            "sync-step1-hello",
            &wrap_document_frame(ADDRESS, &encode_sync_step1(&txn.state_vector())).expect("sync"),
        );
        check(
            "sync-step2-hello",
            &wrap_document_frame(
                ADDRESS,
                &encode_sync_step2(&txn.encode_state_as_update_v1(&StateVector::default())),
            )
            .expect("sync"),
        );
        check(
            "update-broadcast",
            &wrap_document_frame(ADDRESS, &encode_update(&hello)).expect("sync"),
        );

        assert_eq!(
            labels(folder),
            checked,
            "{folder}: every fixture is checked, and only these"
        );
    }
}

/// Frames the reference server was not captured sending, against PROTOCOLS.md §8.4.
#[test]
fn server_encoders_match_protocols_md_examples() {
    // Token request (s→c), which v3.3+ providers answer with a new Auth message.
    assert_eq!(
        &encode_token_request(ADDRESS)[..],
        hex("066d792d646f630200").as_slice()
    );
    // Server-side CLOSE with Hocuspocus's default reason.
    let mut close = hex("066d792d646f63071c");
    close.extend_from_slice(b"Server closed the connection");
    assert_eq!(
        &encode_close(ADDRESS, "Server closed the connection")[..],
        close.as_slice()
    );
    // The v4 session address is echoed as is.
    let session = b"my-doc\0abc123";
    assert_eq!(
        &encode_sync_status(session, true)[..],
        hex("0d6d792d646f6300616263313233 0801"
            .replace(' ', "")
            .as_str())
        .as_slice()
    );
    // Awareness (§8.3, Hocuspocus form): the y-websocket frame wrapped with the address; the
    // same bytes the provider itself sent (provider-v4/awareness-user.hex).
    let awareness = encode_awareness([(CLIENT, 1, Some(USER))].into_iter());
    assert_eq!(
        wrap_document_frame(ADDRESS, &awareness).expect("awareness")[..],
        fixture("provider-v4", "awareness-user")
    );
    // Frames Hocuspocus has no place for are not wrapped (y-websocket events, auth).
    assert_eq!(wrap_document_frame(ADDRESS, &[5, 0]), None);
    assert_eq!(wrap_document_frame(ADDRESS, &[2, 0, 0]), None);
}
