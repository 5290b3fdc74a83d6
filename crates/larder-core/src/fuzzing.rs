//! Entry points of the fuzz targets in `fuzz/` (cargo-fuzz), shared with
//! the corpus regression test (`tests/fuzz_corpus.rs`) so that `cargo
//! test` replays every committed input through exactly the code the fuzzer
//! ran. Each function takes arbitrary bytes, must never panic on them, and
//! panics only when an invariant it checks is broken (a finding).
//!
//! Not part of the API: hidden from the docs, may change at any time.

use bytes::Bytes;

use crate::codec::{self, Codec};
use crate::config::CacheConfig;
use crate::glob::{self, Glob};
use crate::seal::{KeyRing, Sealer, SecurityConfig};
use crate::url::{self, BackendUrl};

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (the directories of `fuzz/corpus/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("envelope", envelope),
    ("url", url),
    ("duration", duration),
    ("glob", glob),
    ("config", config),
];

const KEY: &str = "fuzz:v1:user:42";

fn sealers() -> Vec<Sealer> {
    let ring = |text: &str| KeyRing::parse(text, "keys", "fuzzing").unwrap_or_default();
    let signing = ring("s1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
    let encryption =
        ring("e1:hex:abababababababababababababababababababababababababababababababab");
    let configs = [
        SecurityConfig::default(),
        SecurityConfig {
            signing_keys: signing.clone(),
            ..SecurityConfig::default()
        },
        SecurityConfig {
            encryption_keys: encryption.clone(),
            ..SecurityConfig::default()
        },
        SecurityConfig {
            signing_keys: signing,
            encryption_keys: encryption,
            compress_min_size: Some(8),
            ..SecurityConfig::default()
        },
    ];
    configs
        .iter()
        .filter_map(|c| Sealer::new(c, 1 << 16).ok())
        .collect()
}

/// Stored bytes as a cache reads them: opened (verified, decrypted,
/// decompressed) by each kind of cache, then decoded. And the bytes as a
/// payload: sealed and opened again, they must come back unchanged.
pub fn envelope(data: &[u8]) {
    for sealer in sealers() {
        if let Ok(opened) = sealer.open(KEY, data) {
            let plain = opened.as_deref().unwrap_or(data);
            let _ = codec::decode::<serde_json::Value>(plain);
            let _ = codec::parse(Bytes::copy_from_slice(plain));
        }
        let _ = codec::decode::<serde_json::Value>(data);
        for plain in [
            codec::encode_raw(data, None),
            codec::encode(Codec::Json, &String::from_utf8_lossy(data), None).unwrap_or_default(),
        ] {
            let Ok(sealed) = sealer.seal(KEY, plain.clone()) else {
                continue;
            };
            let opened = sealer.open(KEY, &sealed);
            assert!(
                matches!(&opened, Ok(Some(p)) if p[..] == plain[..])
                    || (matches!(opened, Ok(None)) && sealed == plain),
                "a sealed value does not open to what was sealed"
            );
            if sealer.requires_integrity() {
                assert!(
                    sealer.open("fuzz:v1:user:43", &sealed).is_err(),
                    "a sealed value opened under another key"
                );
            }
        }
    }
}

/// Seed inputs of the `envelope` target: plain, signed, encrypted and
/// compressed values of a few shapes, as each sealer of the target writes
/// them (`cargo test -p larder-core --test fuzz_corpus -- --ignored`
/// rewrites `fuzz/corpus/envelope/` from them).
pub fn envelope_seeds() -> Vec<(String, Vec<u8>)> {
    let values = [
        codec::encode(
            Codec::Json,
            &serde_json::json!({"id": 7, "name": "Ada"}),
            None,
        ),
        codec::encode(Codec::Json, &"lovelace ".repeat(40), None),
        Ok(codec::encode_raw(b"\x00\x01raw", None)),
    ];
    let mut seeds = Vec::new();
    for (s, sealer) in sealers().iter().enumerate() {
        for (v, value) in values.iter().enumerate() {
            let Ok(value) = value else { continue };
            if let Ok(sealed) = sealer.seal(KEY, value.clone()) {
                seeds.push((format!("sealer{s}-value{v}"), sealed.to_vec()));
            }
        }
    }
    seeds
}

/// A backend URL: parsed, and masked.
pub fn url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = BackendUrl::parse(text) {
        let _ = parsed.masked();
    }
    let _ = url::mask(text);
}

/// A duration and a size in the configuration's grammar.
pub fn duration(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::config::parse_duration(text);
    let _ = crate::config::parse_size(text);
}

/// A glob pattern and a key, separated by the first NUL byte: compiled and
/// matched. Any text, escaped, is a pattern that matches itself.
pub fn glob(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, key) = text.split_once('\0').unwrap_or((text, text));
    if let Ok(glob) = Glob::new(pattern) {
        let _ = glob.matches(key);
    }
    if !key.is_empty()
        && let Ok(exact) = Glob::new(&glob::escape(key))
    {
        assert!(exact.matches(key), "an escaped key does not match itself");
    }
}

/// A `larder.toml` document: merged over the defaults, then validated.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut config = CacheConfig::default();
    if config.merge_toml(text, "fuzz.toml").is_ok() {
        let _ = config.validate();
        let _ = format!("{config:?}");
    }
}
