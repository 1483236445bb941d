//! Tandem's fuzz targets as plain functions, so that the libFuzzer harnesses in `fuzz/` (run
//! with `cargo fuzz`) and the deterministic test in the normal test command (the checked-in
//! corpus plus cases generated from a fixed seed) run exactly the same code.
//!
//! A target panics when it finds a problem; its input's `Debug` output is the reproducer.
//!
//! # Layout
//!
//! - [`mod@decode`]: `decode_frame`, arbitrary bytes into every frame decoder.
//! - [`mod@session`]: `session`, a script of frames from several peers (some read-only) into one
//!   document actor.
//! - [`mod@convergence`]: `convergence`, simulated yrs clients editing through a network the fuzzer
//!   controls (delay, reorder, duplicate, drop, reconnect, server restart), which must agree.
//! - [`edits`]: the edits simulated clients make.
//! - [`server`]: the real server core the targets talk to.

pub mod convergence;
pub mod decode;
pub mod edits;
pub mod server;
pub mod session;

use arbitrary::{Arbitrary, Unstructured};

pub use convergence::{convergence, ConvergenceScript};
pub use decode::decode_frame;
pub use session::{session, SessionScript};

/// Builds a structured input from raw bytes the way `libfuzzer-sys` does, and runs `target` on
/// it; bytes that do not make an input are skipped, as libFuzzer skips them.
pub fn run_structured<T: for<'a> Arbitrary<'a>>(data: &[u8], target: impl FnOnce(&T)) {
    if let Ok(input) = T::arbitrary_take_rest(Unstructured::new(data)) {
        target(&input);
    }
}

/// `count` pseudo-random byte strings of up to `max_len` bytes from `seed` (xorshift64*):
/// the same on every machine and every run.
pub fn generated_inputs(seed: u64, count: usize, max_len: usize) -> Vec<Vec<u8>> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..count)
        .map(|_| {
            let len = (next() % (max_len as u64 + 1)) as usize;
            (0..len).map(|_| (next() >> 56) as u8).collect()
        })
        .collect()
}
