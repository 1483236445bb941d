//! The fuzz targets without libFuzzer: each runs over its checked-in corpus
//! (`fuzz/corpus/<target>`), every crash reproducer (`fuzz/regressions/<target>`) and inputs
//! generated from a fixed seed, so the normal test command catches regressions on the stable
//! toolchain. A failure names the input and prints its structured form.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use arbitrary::{Arbitrary, Unstructured};
use tandem_fuzz::{
    convergence, decode_frame, generated_inputs, session, ConvergenceScript, SessionScript,
};

/// The fixed seed of the generated inputs.
const SEED: u64 = 0x7a4d_e11e_5eed_0009;

/// The checked-in inputs of a target: its corpus and its regressions, sorted by path.
fn checked_in(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut inputs = Vec::new();
    for folder in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_file() {
                let bytes = std::fs::read(&path).expect("a corpus file");
                inputs.push((path.display().to_string(), bytes));
            }
        }
    }
    inputs.sort();
    inputs
}

/// Runs `target` on every input; on a panic, fails naming the input and its structured form.
fn run_all<T: for<'a> Arbitrary<'a> + std::fmt::Debug>(
    name: &str,
    inputs: Vec<(String, Vec<u8>)>,
    target: impl Fn(&T),
) -> usize {
    let mut ran = 0;
    for (label, bytes) in inputs {
        let Ok(input) = T::arbitrary_take_rest(Unstructured::new(&bytes)) else {
            continue;
        };
        ran += 1;
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            panic!("{name} failed on {label}; the input:\n{input:#?}");
        }
    }
    ran
}

fn generated(count: usize, max_len: usize) -> Vec<(String, Vec<u8>)> {
    generated_inputs(SEED, count, max_len)
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| (format!("generated case {i} (seed {SEED:#x})"), bytes))
        .collect()
}

#[test]
fn decode_frame_corpus_and_generated() {
    let mut inputs = checked_in("decode_frame");
    let corpus = inputs.len();
    inputs.extend(generated(4000, 256));
    for (label, bytes) in &inputs {
        if catch_unwind(|| decode_frame(bytes)).is_err() {
            panic!("decode_frame failed on {label}: {bytes:02x?}");
        }
    }
    assert!(corpus > 0, "the decode_frame corpus is checked in");
}

#[test]
fn session_corpus_and_generated() {
    run_all::<SessionScript>("session", generated(300, 512), session);
    let ran = run_all::<SessionScript>("session", checked_in("session"), session);
    assert!(ran > 0, "the session corpus is checked in");
}

#[test]
fn convergence_corpus_and_generated() {
    run_all::<ConvergenceScript>("convergence", generated(300, 1024), convergence);
    let ran = run_all::<ConvergenceScript>("convergence", checked_in("convergence"), convergence);
    assert!(ran > 0, "the convergence corpus is checked in");
}
