//! Secret keys and key rings: parsing `id:base64` / `id:hex`, and keeping
//! the secrets out of `Debug`, `Display`, errors and exported config.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The shortest secret accepted: 32 bytes (256 bits).
pub const MIN_KEY_LEN: usize = 32;

/// The longest key id: it is written into every value's header.
pub const MAX_KEY_ID_LEN: usize = 32;

/// What stands for a secret wherever a key ring is shown.
pub const REDACTED: &str = "<redacted>";

/// What a key ring setting accepts; every key error says it.
pub const KEYS_EXPECTED: &str = "comma-separated `id:secret` pairs, the first the current key, \
     each secret in base64 or hex (prefix `hex:` or 64+ hex digits) of at least 32 bytes, each id \
     1 to 32 characters out of `A-Z a-z 0-9 - _ .`; generate a secret with `openssl rand -base64 32`";

/// One secret key and its id. The bytes are wiped when dropped and never
/// shown: `Debug` prints the id only.
#[derive(Clone)]
pub struct SecretKey {
    id: String,
    secret: Zeroizing<Vec<u8>>,
}

impl SecretKey {
    /// A key named `id` (1 to 32 characters out of `A-Z a-z 0-9 - _ .`)
    /// with at least 32 bytes of secret. The error never contains the
    /// secret.
    pub fn new(id: impl Into<String>, secret: impl Into<Vec<u8>>) -> Result<Self> {
        let id = id.into();
        let secret = Zeroizing::new(secret.into());
        check_id(&id, "builder")?;
        if secret.len() < MIN_KEY_LEN {
            return Err(short_key(&id, secret.len(), "builder"));
        }
        Ok(SecretKey { id, secret })
    }

    /// The key's id, written into the header of each value it protects.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret bytes.
    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && bool::from(self.secret.as_slice().ct_eq(other.secret.as_slice()))
    }
}

impl Eq for SecretKey {}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{REDACTED}", self.id)
    }
}

fn check_id(id: &str, source: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            "key id",
            source,
            "1 to 32 characters out of `A-Z a-z 0-9 - _ .` before the `:`",
            crate::error::shorten(id, 40),
        ))
    }
}

fn short_key(id: &str, len: usize, source: &str) -> Error {
    Error::config(
        format!("key {id:?}"),
        source,
        format!(
            "a secret of at least {MIN_KEY_LEN} bytes (256 bits); generate one with \
             `openssl rand -base64 32`"
        ),
        format!("{len} bytes ({REDACTED})"),
    )
}

/// Keys for one purpose (signing or encryption): the first is the current
/// key, used for new values; the others are retired keys still accepted
/// on reads, so that keys can be rotated without downtime. Shown as
/// `id:<redacted>` pairs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeyRing {
    keys: Vec<SecretKey>,
}

impl KeyRing {
    /// No keys.
    pub fn new() -> Self {
        KeyRing::default()
    }

    /// A ring of `keys`, the first current. Ids must be distinct.
    pub fn from_keys(keys: Vec<SecretKey>) -> Result<Self> {
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.id == key.id) {
                return Err(Error::config(
                    "key id",
                    "builder",
                    "each key id used once in a key ring",
                    &key.id,
                ));
            }
        }
        Ok(KeyRing { keys })
    }

    /// Parse `id:secret,id:secret` (see [`KEYS_EXPECTED`]); `field` and
    /// `source` name the setting in errors, which never contain a secret.
    pub fn parse(text: &str, field: &str, source: &str) -> Result<Self> {
        let mut keys = Vec::new();
        for entry in text.split([',', ' ', '\n', '\t']).filter(|e| !e.is_empty()) {
            let Some((id, secret)) = entry.split_once(':') else {
                return Err(Error::config(
                    field,
                    source,
                    KEYS_EXPECTED,
                    format!("an entry without `id:` ({REDACTED})"),
                ));
            };
            check_id(id, source)?;
            if secret == REDACTED {
                return Err(Error::config(
                    format!("key {id:?}"),
                    source,
                    "the secret itself: exported configuration masks secrets; supply keys \
                     through LARDER_SIGNING_KEYS / LARDER_ENCRYPTION_KEYS",
                    REDACTED,
                ));
            }
            let bytes = decode_secret(secret).ok_or_else(|| {
                Error::config(
                    format!("key {id:?}"),
                    source,
                    KEYS_EXPECTED,
                    format!("a secret that is neither base64 nor hex ({REDACTED})"),
                )
            })?;
            if bytes.len() < MIN_KEY_LEN {
                return Err(short_key(id, bytes.len(), source));
            }
            if keys.iter().any(|k: &SecretKey| k.id == id) {
                return Err(Error::config(field, source, "each key id used once", id));
            }
            keys.push(SecretKey {
                id: id.to_owned(),
                secret: bytes,
            });
        }
        Ok(KeyRing { keys })
    }

    /// The current key (the first), if any.
    pub fn current(&self) -> Option<&SecretKey> {
        self.keys.first()
    }

    /// Every key, the current one first.
    pub fn keys(&self) -> &[SecretKey] {
        &self.keys
    }

    /// Whether the ring has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The ring as shown: `id:<redacted>` pairs separated by commas.
    pub fn redacted(&self) -> String {
        self.keys
            .iter()
            .map(|k| format!("{}:{REDACTED}", k.id))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A secret in hex (`hex:` prefix, or only hex digits and at least 64 of
/// them) or base64 (standard or URL-safe, padded or not).
fn decode_secret(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let hex_digits = |s: &str| {
        !s.is_empty() && s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit())
    };
    if let Some(hex) = text.strip_prefix("hex:") {
        return hex_digits(hex).then(|| Zeroizing::new(decode_hex(hex)));
    }
    if text.len() >= 2 * MIN_KEY_LEN && hex_digits(text) {
        return Some(Zeroizing::new(decode_hex(text)));
    }
    let text = text.trim_end_matches('=');
    let engines = [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|e| e.decode(text).ok())
        .map(Zeroizing::new)
}

fn decode_hex(hex: &str) -> Vec<u8> {
    let nibble = |b: u8| match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    };
    hex.as_bytes()
        .chunks_exact(2)
        .map(|p| nibble(p[0]) << 4 | nibble(p[1]))
        .collect()
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.keys).finish()
    }
}

/// Serialized (exported) as `id:<redacted>` pairs: secrets never leave.
impl Serialize for KeyRing {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for KeyRing {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        KeyRing::parse(&text, "keys", "serialized configuration").map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // "0123456789abcdef" x2

    #[test]
    fn base64_and_hex_keys_parse_first_is_current() {
        let hex = "hex:".to_owned() + &"ab".repeat(32);
        let ring = KeyRing::parse(&format!("new:{B64},old:{hex}"), "signing_keys", "test").unwrap();
        assert_eq!(ring.current().unwrap().id(), "new");
        assert_eq!(ring.keys()[0].secret(), b"0123456789abcdef0123456789abcdef");
        assert_eq!(ring.keys()[1].secret(), &[0xab; 32][..]);
        let bare_hex = KeyRing::parse(&format!("k:{}", "0f".repeat(32)), "f", "t").unwrap();
        assert_eq!(bare_hex.keys()[0].secret(), &[0x0f; 32][..]);
    }

    #[test]
    fn short_or_bad_keys_are_refused_without_the_secret() {
        for text in [
            "k:c2hvcnQ=",        // "short"
            "k:hex:abcd",        // 2 bytes
            "nokeyid",           // no id
            "bad id!:c2hvcnQ=",  // bad id
            "k:!!!notbase64!!!", // neither
        ] {
            let err = KeyRing::parse(text, "signing_keys", "env").unwrap_err();
            let shown = err.to_string();
            assert_eq!(err.kind(), "config", "{text}");
            assert!(
                !shown.contains("c2hvcnQ")
                    && !shown.contains("abcd")
                    && !shown.contains("notbase64"),
                "{shown}"
            );
        }
        let err = KeyRing::parse("k:c2hvcnQ=", "signing_keys", "env")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at least 32 bytes") && err.contains("5 bytes"),
            "{err}"
        );
        assert!(SecretKey::new("k", vec![1; 31]).is_err());
        assert!(
            KeyRing::parse(&format!("a:{B64},a:{B64}"), "f", "t").is_err(),
            "duplicate id"
        );
    }

    #[test]
    fn debug_and_serialize_hide_secrets() {
        let ring = KeyRing::parse(&format!("cur:{B64}"), "f", "t").unwrap();
        let debug = format!("{ring:?}");
        assert_eq!(debug, "[cur:<redacted>]");
        let json = serde_json::to_string(&ring).unwrap();
        assert_eq!(json, "\"cur:<redacted>\"");
        let err = serde_json::from_str::<KeyRing>(&json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("LARDER_SIGNING_KEYS"), "{err}");
    }
}
