//! Fuzz target `key_template`: the key template parser of the attribute
//! macros (`#[cache_read(key = "user:{id}")]`), included from larder-macros
//! (see `larder_macros::template::fuzz_one`, replayed over the corpus by
//! larder-macros' own tests).
#![no_main]

#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/larder-macros/src/template.rs"]
mod template;

libfuzzer_sys::fuzz_target!(|data: &[u8]| template::fuzz_one(data));
