//! A script of frames from several peers into one document actor: see `tandem_fuzz::session`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|script: tandem_fuzz::SessionScript| tandem_fuzz::session(&script));
