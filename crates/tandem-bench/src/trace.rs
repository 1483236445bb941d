//! Real editing histories (Joseph Gentle's editing traces, checked in at `data/editing-traces`) and
//! the y-websocket updates a typing client would send for them.
//!
//! The updates are generated before any connection opens: typing into yrs costs the generator
//! more than integrating the result costs a server, so it must not be part of a measurement.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use bytes::Bytes;
use serde::Deserialize;
use yrs::{Doc, ReadTxn, StateVector, Text, Transact};

use crate::protocol;

/// The name of the shared text every workload edits and reads, as y-codemirror and the tests
/// call it.
pub const TEXT: &str = "text";

/// An editing trace: transactions of `(position, deleted, inserted)` patches and the text they
/// end with.
#[derive(Debug, Deserialize)]
pub struct Trace {
    /// The text after the last transaction.
    #[serde(rename = "endContent")]
    pub end_content: String,
    /// The edits, in order.
    pub txns: Vec<Txn>,
}

/// One transaction of a trace: what one keystroke (or paste) did.
#[derive(Debug, Deserialize)]
pub struct Txn {
    /// `(position in chars, chars deleted there, text inserted there)`, applied in order.
    pub patches: Vec<(u32, u32, String)>,
}

impl Trace {
    /// Reads a gzipped JSON trace.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut json = String::new();
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut json)
            .with_context(|| format!("decompressing {}", path.display()))?;
        serde_json::from_str(&json).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Where the automerge-paper trace lives in a checkout: `data/editing-traces` at the top of
/// the workspace (the file the tests replay too); `--trace` or `TANDEM_BENCH_TRACE` pick another.
pub fn default_trace_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/editing-traces/automerge-paper.json.gz")
}

/// The frames a client typing the trace sends, one update per transaction, and what the
/// finished document looks like.
pub struct Keystrokes {
    /// One y-websocket update frame per transaction, in order.
    pub frames: Vec<Bytes>,
    /// Bytes of all frames together.
    pub bytes: u64,
    /// The state vector of the finished document: a reader that has reached it has every update.
    pub final_state: StateVector,
}

impl Keystrokes {
    /// Types the whole trace into a yrs document, one transaction per trace transaction.
    pub fn generate(trace: &Trace) -> Self {
        let doc = Doc::new();
        let text = doc.get_or_insert_text(TEXT);
        let frames: Vec<Bytes> = trace
            .txns
            .iter()
            .map(|txn| {
                let mut t = doc.transact_mut();
                for (at, deleted, inserted) in &txn.patches {
                    if *deleted > 0 {
                        text.remove_range(&mut t, *at, *deleted);
                    }
                    if !inserted.is_empty() {
                        text.insert(&mut t, *at, inserted);
                    }
                }
                t.commit();
                protocol::update(&t.encode_update_v1())
            })
            .collect();
        let bytes = frames.iter().map(|frame| frame.len() as u64).sum();
        let final_state = doc.transact().state_vector();
        Self {
            frames,
            bytes,
            final_state,
        }
    }
}

/// Fails loudly, saying where, unless a client ended with exactly the trace's final text.
pub fn ensure_text(got: &str, expected: &str) -> anyhow::Result<()> {
    if got == expected {
        return Ok(());
    }
    let at = got
        .chars()
        .zip(expected.chars())
        .take_while(|(a, b)| a == b)
        .count();
    let around = |s: &str| {
        s.chars()
            .skip(at.saturating_sub(20))
            .take(40)
            .collect::<String>()
    };
    bail!(
        "wrong text: {} chars instead of {}, first difference at char {at}: got {:?}, expected {:?}",
        got.chars().count(),
        expected.chars().count(),
        around(got),
        around(expected)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::decoder::Decode;
    use yrs::{GetString, Update};

    #[test]
    fn keystrokes_rebuild_the_final_text() -> anyhow::Result<()> {
        let trace: Trace = serde_json::from_str(
            r#"{"endContent":"hxllo!","txns":[
                {"patches":[[0,0,"hello"]]},
                {"patches":[[1,1,""],[1,0,"x"]]},
                {"patches":[[5,0,"!"]]}]}"#,
        )?;
        let keystrokes = Keystrokes::generate(&trace);
        assert_eq!(keystrokes.frames.len(), 3);
        let doc = Doc::new();
        let text = doc.get_or_insert_text(TEXT);
        let mut txn = doc.transact_mut();
        for frame in &keystrokes.frames {
            let protocol::Frame::Update(update) = protocol::parse(frame)? else {
                anyhow::bail!("not an update frame");
            };
            txn.apply_update(Update::decode_v1(update)?)?;
        }
        assert_eq!(text.get_string(&txn), trace.end_content);
        assert!(txn.state_vector() >= keystrokes.final_state);
        Ok(())
    }

    #[test]
    fn says_where_texts_differ() {
        assert!(ensure_text("same", "same").is_ok());
        let message = ensure_text("hello world", "hello there")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("first difference at char 6"), "{message}");
        assert!(message.contains("11 chars instead of 11"), "{message}");
    }
}
