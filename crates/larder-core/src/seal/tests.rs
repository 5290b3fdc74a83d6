#![allow(clippy::unwrap_used)]

use bytes::Bytes;

use super::*;
use crate::codec::{self, Codec};

const K1: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const K2: &str = "k2:hex:abababababababababababababababababababababababababababababababab";

fn ring(text: &str) -> KeyRing {
    KeyRing::parse(text, "keys", "test").unwrap()
}

fn sealer(signing: &str, encryption: &str, compress: Option<usize>) -> Sealer {
    let config = SecurityConfig {
        signing_keys: ring(signing),
        encryption_keys: ring(encryption),
        allow_unsigned: false,
        compress_min_size: compress,
    };
    Sealer::new(&config, 1 << 20).unwrap()
}

fn json(len: usize) -> Bytes {
    let text: String = (0..len)
        .map(|i| ["alpha", "beta", "gamma"][i % 3])
        .collect::<Vec<_>>()
        .join(",");
    codec::encode(Codec::Json, &text, None).unwrap()
}

fn roundtrip(s: &Sealer, key: &str, plain: &Bytes) -> Bytes {
    let sealed = s.seal(key, plain.clone()).unwrap();
    let opened = s.open(key, &sealed).unwrap();
    assert_eq!(opened.as_deref().unwrap_or(&sealed[..]), &plain[..]);
    sealed
}

#[test]
fn every_combination_round_trips() {
    for (signing, encryption) in [("", ""), (K1, ""), ("", K2), (K1, K2)] {
        for compress in [None, Some(16)] {
            let s = sealer(signing, encryption, compress);
            for len in [0, 3, 400] {
                let plain = json(len);
                let sealed = roundtrip(&s, "svc:v1:user:1", &plain);
                let flags = sealed[4];
                assert_eq!(
                    flags & FLAG_SIGNED != 0,
                    !signing.is_empty() && encryption.is_empty()
                );
                assert_eq!(flags & FLAG_ENCRYPTED != 0, !encryption.is_empty());
                if len == 400 && compress.is_some() {
                    assert!(flags & FLAG_COMPRESSED != 0, "large values are compressed");
                }
            }
        }
    }
}

#[test]
fn a_value_that_would_not_shrink_is_stored_raw() {
    let s = sealer("", "", Some(1));
    // Random-looking bytes: LZ4 cannot shrink them.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..512)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let plain = codec::encode_raw(&noise, None);
    let sealed = s.seal("k", plain.clone()).unwrap();
    assert_eq!(sealed, plain, "stored as it is");
    assert!(s.open("k", &sealed).unwrap().is_none());
}

#[test]
fn signatures_bind_the_stored_key() {
    let s = sealer(K1, "", None);
    let sealed = s.seal("svc:v1:user:1", json(5)).unwrap();
    let err = s.open("svc:v1:user:2", &sealed).unwrap_err();
    assert_eq!(err.kind(), "integrity", "{err}");
    let e = sealer("", K2, Some(8));
    let sealed = e.seal("svc:v1:user:1", json(50)).unwrap();
    assert_eq!(
        e.open("svc:v1:user:2", &sealed).unwrap_err().kind(),
        "integrity"
    );
}

#[test]
fn any_flipped_bit_is_rejected() {
    for s in [
        sealer(K1, "", None),
        sealer("", K2, None),
        sealer(K1, "", Some(8)),
        sealer("", K2, Some(8)),
    ] {
        let sealed = s.seal("key", json(60)).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.to_vec();
            bad[i] ^= 0x10;
            let err = match s.open("key", &bad) {
                // Without its magic the bytes are not a larder value at
                // all: the decoder refuses them.
                Ok(None) if i < 2 => codec::decode::<String>(&bad).unwrap_err(),
                other => other.unwrap_err(),
            };
            assert!(
                matches!(err.kind(), "integrity" | "codec"),
                "byte {i}: {err}"
            );
        }
    }
}

#[test]
fn unsigned_values_are_refused_when_keys_are_configured() {
    let plain = json(5);
    for s in [sealer(K1, "", None), sealer("", K2, None)] {
        assert_eq!(s.open("k", &plain).unwrap_err().kind(), "integrity");
        // Compressed only: still unauthenticated.
        let compressed = sealer("", "", Some(1)).seal("k", json(100)).unwrap();
        assert_ne!(compressed[4], 0);
        assert_eq!(s.open("k", &compressed).unwrap_err().kind(), "integrity");
    }
    let config = SecurityConfig {
        signing_keys: ring(K1),
        allow_unsigned: true,
        ..SecurityConfig::default()
    };
    let lenient = Sealer::new(&config, 1 << 20).unwrap();
    assert!(
        lenient.open("k", &plain).unwrap().is_none(),
        "allowed during a roll-out"
    );
    // Counters (no header) pass through: they only decode as numbers.
    assert!(sealer(K1, "", None).open("k", b"42").unwrap().is_none());
}

#[test]
fn rotation_reads_old_keys_and_writes_with_the_current_one() {
    let old = sealer(K1, "", None);
    let sealed = old.seal("k", json(5)).unwrap();
    let rotated = sealer(&format!("{K2},{K1}"), "", None);
    assert!(
        rotated.open("k", &sealed).unwrap().is_some(),
        "retired key still verifies"
    );
    let resealed = rotated.seal("k", json(5)).unwrap();
    assert_eq!(&resealed[HEADER_LEN..HEADER_LEN + 3], b"\x02k2");
    let dropped = sealer(K2, "", None);
    let err = dropped.open("k", &sealed).unwrap_err().to_string();
    assert!(
        err.contains("\"k1\"") && err.contains("does not list"),
        "{err}"
    );

    let old = sealer("", K1, None);
    let sealed = old.seal("k", json(5)).unwrap();
    let rotated = sealer("", &format!("{K2},{K1}"), None);
    assert!(rotated.open("k", &sealed).unwrap().is_some());
    // A reader without keys says what to configure.
    let err = sealer("", "", None)
        .open("k", &sealed)
        .unwrap_err()
        .to_string();
    assert!(err.contains("LARDER_ENCRYPTION_KEYS"), "{err}");
}

#[test]
fn encrypted_bytes_do_not_contain_the_plaintext_and_nonces_differ() {
    let s = sealer("", K2, None);
    let plain = codec::encode(Codec::Json, &"top secret: 4111-1111-1111-1111", None).unwrap();
    let a = s.seal("k", plain.clone()).unwrap();
    let b = s.seal("k", plain).unwrap();
    assert!(!a.windows(10).any(|w| w == b"top secret"));
    assert_ne!(a, b, "a fresh nonce for every value");
}

#[test]
fn decompression_stops_at_the_limit() {
    let big = json(20_000);
    let writer = Sealer::new(&SecurityConfig::default(), 1 << 20).unwrap();
    let sealed = writer.seal("k", big.clone()).unwrap();
    assert!(
        sealed.len() < big.len() / 4,
        "{} -> {}",
        big.len(),
        sealed.len()
    );
    let small = Sealer::new(&SecurityConfig::default(), 1000).unwrap();
    let err = small.open("k", &sealed).unwrap_err().to_string();
    assert!(
        err.contains("max_value_size") && err.contains("not decompressed"),
        "{err}"
    );
    // A forged header claiming 4 GiB is refused before anything is allocated.
    let mut bomb = sealed[..HEADER_LEN].to_vec();
    bomb.extend_from_slice(&u32::MAX.to_le_bytes());
    bomb.extend_from_slice(&[0x1f; 16]);
    assert!(
        writer
            .open("k", &bomb)
            .unwrap_err()
            .to_string()
            .contains("max_value_size")
    );
}

#[test]
fn encryption_keys_must_be_32_bytes() {
    let long = format!("k:hex:{}", "ab".repeat(40));
    let config = SecurityConfig {
        encryption_keys: ring(&long),
        ..SecurityConfig::default()
    };
    let err = Sealer::new(&config, 100).unwrap_err().to_string();
    assert!(
        err.contains("exactly 32 bytes") && !err.contains("abab"),
        "{err}"
    );
}

#[test]
fn sealed_bytes_given_to_the_plain_decoder_say_how_to_read_them() {
    let sealed = sealer(K1, "", None).seal("k", json(3)).unwrap();
    let err = codec::decode::<String>(&sealed).unwrap_err().to_string();
    assert!(err.contains("sealed"), "{err}");
}
