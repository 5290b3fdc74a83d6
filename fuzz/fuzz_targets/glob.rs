//! Fuzz target `glob`: see `larder_core::fuzzing::glob`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| larder_core::fuzzing::glob(data));
