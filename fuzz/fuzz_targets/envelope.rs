//! Fuzz target `envelope`: see `larder_core::fuzzing::envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| larder_core::fuzzing::envelope(data));
