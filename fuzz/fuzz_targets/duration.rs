//! Fuzz target `duration`: see `larder_core::fuzzing::duration`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| larder_core::fuzzing::duration(data));
