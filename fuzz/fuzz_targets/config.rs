//! Fuzz target `config`: see `larder_core::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| larder_core::fuzzing::config(data));
