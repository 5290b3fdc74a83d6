//! Fuzz target `url`: see `larder_core::fuzzing::url`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| larder_core::fuzzing::url(data));
