//! Simulated clients over a fuzzer-controlled network must converge: see
//! `tandem_fuzz::convergence`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|script: tandem_fuzz::ConvergenceScript| tandem_fuzz::convergence(&script));
