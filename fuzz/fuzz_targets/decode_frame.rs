//! Arbitrary bytes into every frame decoder: see `tandem_fuzz::decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tandem_fuzz::decode_frame(data));
