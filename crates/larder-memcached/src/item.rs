//! What a memcached item holds: the stored form of values, counters,
//! tombstones and the internal keys (versions, epochs, locks).
//!
//! # Items
//!
//! Every item's 32-bit flags say what it is:
//!
//! | flags | item | bytes |
//! |---|---|---|
//! | `FRAMED` + stamp | a value | a [`frame`] whose first header line is the namespace version, the others `tag=version`; then the payload |
//! | stamp (1 to 2³⁰−1) | a counter | decimal digits, so that memcached's `incr` works on it |
//! | `TOMBSTONE` | a deleted key (or a released lock) | nothing |
//! | anything else | not ours, or created by a bare `incr` | read as missing |
//!
//! The *stamp* is the namespace version folded into 30 bits
//! ([`stamp`]). A value also carries the whole 64-bit namespace version in
//! its header; a counter has only the stamp (its bytes must stay digits).
//!
//! # Versions
//!
//! Each server keeps, for the entries it holds, a version per namespace
//! (`~n:<namespace>`) and per tag (`~t:<tag>`): random 62-bit numbers when
//! created, bumped by one to invalidate. An entry is live when every version
//! it recorded is still the server's current one; a missing version makes
//! it stale (it was evicted or never existed, so nothing can vouch for the
//! entry). `~e:<namespace>` is the namespace's fill epoch (see `fill.rs`)
//! and `~l:<key>` a lock.

use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use larder_core::frame;
use sha2::{Digest, Sha256};

/// Flag bit of a tombstone: a key deleted less than `MAX_FILL_AGE` ago.
pub(crate) const TOMBSTONE: u32 = 1 << 31;
/// Flag bit of a framed value.
pub(crate) const FRAMED: u32 = 1 << 30;
/// The bits of the namespace stamp.
const STAMP_BITS: u32 = FRAMED - 1;

/// Memcached's longest key.
pub(crate) const MAX_KEY_LEN: usize = 250;

/// The namespace version folded into the 30 bits a counter's flags can
/// hold: 1 to 2³⁰−1, never 0 (the flags of items larder did not write).
/// Consecutive versions have distinct stamps.
pub(crate) fn stamp(ns_version: u64) -> u32 {
    let folded = ns_version % u64::from(STAMP_BITS);
    u32::try_from(folded).unwrap_or(0) + 1
}

/// The namespace of a stored key or tag: everything up to and including
/// its second `:` (`svc:v1:` of `svc:v1:user:42`); empty for a key with
/// fewer than two colons. Prefixes and versions never hold a `:`, and
/// hashed long keys keep their head, so this is the cache's namespace.
pub(crate) fn namespace(key: &str) -> &str {
    let mut colons = key.match_indices(':');
    match (colons.next(), colons.next()) {
        (Some(_), Some((at, _))) => &key[..=at],
        _ => "",
    }
}

/// Whether `prefix` is a whole namespace: `a:b:` with no other colon.
pub(crate) fn is_namespace(prefix: &str) -> bool {
    !prefix.is_empty() && namespace(prefix) == prefix && prefix.matches(':').count() == 2
}

/// An internal key: `~<kind>:<name>`, or `~<KIND>:<sha256 hex of name>`
/// when that would be too long for memcached or hold a space or a control
/// character (names from a direct caller may).
fn internal(kind: char, name: &str) -> String {
    let fits =
        3 + name.len() <= MAX_KEY_LEN && !name.contains(|c: char| c == ' ' || c.is_control());
    if fits {
        let mut key = String::with_capacity(3 + name.len());
        key.push('~');
        key.push(kind);
        key.push(':');
        key.push_str(name);
        return key;
    }
    let mut key = format!("~{}:", kind.to_ascii_uppercase());
    for b in Sha256::digest(name.as_bytes()) {
        let _ = write!(key, "{b:02x}");
    }
    key
}

/// The version key of a namespace.
pub(crate) fn ns_version_key(ns: &str) -> String {
    internal('n', ns)
}

/// The version key of a tag.
pub(crate) fn tag_version_key(tag: &str) -> String {
    internal('t', tag)
}

/// The fill epoch key of a namespace.
pub(crate) fn epoch_key(ns: &str) -> String {
    internal('e', ns)
}

/// The key of the lock named `key`.
pub(crate) fn lock_key(key: &str) -> String {
    internal('l', key)
}

/// 64 random bits (not for secrets: for versions and epochs, which must
/// only differ from earlier ones).
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}

/// A new version: 1 to 2⁶², leaving room to count up.
pub(crate) fn fresh_version() -> u64 {
    (random_u64() >> 2).max(1)
}

/// A version or epoch as stored (decimal digits), or `None`.
pub(crate) fn parse_number(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// What an item holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A value written by larder.
    Value {
        /// The namespace version when it was written.
        ns: u64,
        /// Its tags and their versions when it was written.
        tags: Vec<(String, u64)>,
        /// The payload, as the caller gave it.
        payload: Bytes,
    },
    /// A counter.
    Counter {
        /// The namespace stamp when it was created.
        stamp: u32,
        /// Its decimal digits.
        digits: Bytes,
    },
    /// A tombstone, an item larder did not write, or one it cannot read:
    /// missing, as far as callers can tell.
    Dead,
}

impl Item {
    /// Read an item from its bytes and flags.
    pub(crate) fn parse(bytes: Vec<u8>, flags: u32) -> Item {
        if flags & TOMBSTONE != 0 {
            return Item::Dead;
        }
        let stored = Bytes::from(bytes);
        if flags & FRAMED != 0 {
            return parse_value(stored).unwrap_or(Item::Dead);
        }
        let stamp = flags & STAMP_BITS;
        if stamp == 0 || stored.is_empty() || !stored.iter().all(u8::is_ascii_digit) {
            return Item::Dead;
        }
        Item::Counter {
            stamp,
            digits: stored,
        }
    }
}

fn parse_value(stored: Bytes) -> Option<Item> {
    let probe = &stored[..frame::PROBE_LEN.min(stored.len())];
    frame::header_len(probe)?;
    let (payload, lines) = frame::decode(stored);
    let mut lines = lines.into_iter();
    let ns = lines.next().and_then(|l| l.parse().ok())?;
    let tags = lines
        .map(|line| {
            let (tag, version) = line.rsplit_once('=')?;
            Some((tag.to_owned(), version.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Item::Value { ns, tags, payload })
}

/// The stored bytes of a value: a frame whose header lines are the
/// namespace version and `tag=version` for each tag, then the payload.
pub(crate) fn encode_value(ns: u64, tags: &[(String, u64)], payload: Bytes) -> Bytes {
    let mut lines = Vec::with_capacity(1 + tags.len());
    lines.push(ns.to_string());
    lines.extend(tags.iter().map(|(tag, v)| format!("{tag}={v}")));
    frame::encode(&lines, payload)
}

/// The flags of a value written under namespace version `ns`.
pub(crate) fn value_flags(ns: u64) -> u32 {
    FRAMED | stamp(ns)
}

/// The flags of a counter created under namespace version `ns`.
pub(crate) fn counter_flags(ns: u64) -> u32 {
    stamp(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_roundtrip() {
        let tags = vec![
            ("svc:v1:a".to_owned(), 7),
            ("svc:v1:x=y".to_owned(), 1 << 61),
        ];
        let payload = Bytes::from_static(b"\xffLpayload");
        let stored = encode_value(42, &tags, payload.clone());
        let item = Item::parse(stored.to_vec(), value_flags(42));
        assert_eq!(
            item,
            Item::Value {
                ns: 42,
                tags,
                payload
            }
        );
        let empty = encode_value(1, &[], Bytes::new());
        assert!(matches!(
            Item::parse(empty.to_vec(), value_flags(1)),
            Item::Value { ns: 1, payload, .. } if payload.is_empty()
        ));
    }

    #[test]
    fn counters_tombstones_and_foreign_items() {
        assert_eq!(
            Item::parse(b"12".to_vec(), counter_flags(5)),
            Item::Counter {
                stamp: stamp(5),
                digits: Bytes::from_static(b"12")
            }
        );
        // A bare `incr` creates items with flags 0: not ours.
        assert_eq!(Item::parse(b"0".to_vec(), 0), Item::Dead);
        assert_eq!(Item::parse(Vec::new(), TOMBSTONE), Item::Dead);
        assert_eq!(Item::parse(b"x1".to_vec(), counter_flags(5)), Item::Dead);
        assert_eq!(Item::parse(b"plain".to_vec(), FRAMED | 3), Item::Dead);
    }

    #[test]
    fn stamps_never_collide_with_foreign_flags() {
        for v in [
            0,
            1,
            u64::from(STAMP_BITS) - 1,
            u64::from(STAMP_BITS),
            u64::MAX,
        ] {
            let s = stamp(v);
            assert!((1..=STAMP_BITS).contains(&s), "{v}: {s}");
            assert_ne!(stamp(v), stamp(v.wrapping_add(1)));
        }
    }

    #[test]
    fn namespaces() {
        assert_eq!(namespace("svc:v1:user:42"), "svc:v1:");
        assert_eq!(namespace("svc:v1:"), "svc:v1:");
        assert_eq!(namespace("svc:v1"), "");
        assert_eq!(namespace("plain"), "");
        assert!(is_namespace("svc:v1:"));
        assert!(!is_namespace("svc:"));
        assert!(!is_namespace("svc:v1:x:"));
        assert!(!is_namespace(""));
    }

    #[test]
    fn internal_keys_fit_memcached() {
        assert_eq!(tag_version_key("svc:v1:t"), "~t:svc:v1:t");
        for name in ["x".repeat(248), "a b".to_owned(), "a\u{1}".to_owned()] {
            let key = tag_version_key(&name);
            assert!(key.starts_with("~T:") && key.len() == 67, "{key}");
        }
        assert_eq!(tag_version_key(&"x".repeat(247)).len(), 250);
        assert_ne!(lock_key("k"), tag_version_key("k"));
        assert!(fresh_version() >= 1 && fresh_version() <= 1 << 62);
        assert_ne!(random_u64(), random_u64());
    }
}
