//! What the trees hold, byte for byte.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `entries` | stored key | header (9 bytes) ++ body |
//! | `tags` | tag `\0` key | empty |
//! | `expiry` | `be_u64(expires_at_ms)` ++ key | empty |
//! | `stamps` | `k`/`t` ++ `be_u16(slot)`, `n` ++ namespace, `a` | `be_u64(stamp)` |
//! | `locks` | lock key | `be_u64(expires_at_ms)` ++ token |
//!
//! The entry header is one kind byte (1: the body is the payload; 2: the
//! body is a [`larder_core::frame`], the tags in front of the payload) and
//! the expiry as big-endian milliseconds since the Unix epoch (0: never).
//! The kind byte keeps an untagged value that happens to start like a frame
//! from being read as one, and leaves room for a later format.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use larder_core::frame;
use sled::IVec;

/// Bytes before the body of an entry.
pub(crate) const HEADER_LEN: usize = 9;
const PLAIN: u8 = 1;
const FRAMED: u8 = 2;

/// Milliseconds since the Unix epoch. Expiry is wall-clock time, so that
/// it means the same after a restart.
pub(crate) fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// `ttl` in whole milliseconds, rounded up (a TTL under 1 ms still lives
/// 1 ms).
pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// The parsed header of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Milliseconds since the epoch; 0 for no expiry.
    pub(crate) expires_at: u64,
    /// Whether the body is a tag frame.
    pub(crate) framed: bool,
}

impl Header {
    /// The header of stored bytes; `None` when they are not an entry of
    /// this format.
    pub(crate) fn parse(raw: &[u8]) -> Option<Header> {
        let (&kind, rest) = raw.split_first()?;
        let framed = match kind {
            PLAIN => false,
            FRAMED => true,
            _ => return None,
        };
        let expires_at = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        Some(Header { expires_at, framed })
    }

    /// Whether the entry is live at `now`.
    pub(crate) fn live(self, now: u64) -> bool {
        self.expires_at == 0 || self.expires_at > now
    }

    /// Remaining life at `now`: `None` for no expiry.
    pub(crate) fn remaining(self, now: u64) -> Option<Duration> {
        (self.expires_at != 0)
            .then(|| Duration::from_millis(self.expires_at.saturating_sub(now).max(1)))
    }
}

/// An entry: header, then the payload, framed with its tags when it has
/// any (`tags` already deduplicated, see [`dedup`]).
pub(crate) fn encode(expires_at: u64, tags: &[String], payload: &[u8]) -> Vec<u8> {
    let frame_header = frame::encode(tags, Bytes::new());
    let kind = if tags.is_empty() { PLAIN } else { FRAMED };
    let mut out = Vec::with_capacity(HEADER_LEN + frame_header.len() + payload.len());
    out.push(kind);
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(&frame_header);
    out.extend_from_slice(payload);
    out
}

/// `raw` with another expiry.
pub(crate) fn with_expiry(raw: &[u8], expires_at: u64) -> Vec<u8> {
    let mut out = raw.to_vec();
    if let Some(slot) = out.get_mut(1..HEADER_LEN) {
        slot.copy_from_slice(&expires_at.to_be_bytes());
    }
    out
}

/// The tags of an entry.
pub(crate) fn tags(raw: &[u8]) -> Vec<String> {
    match Header::parse(raw) {
        Some(h) if h.framed => frame::tags(&raw[HEADER_LEN..]),
        _ => Vec::new(),
    }
}

/// Whether the entry carries `tag`.
pub(crate) fn has_tag(raw: &[u8], tag: &str) -> bool {
    match Header::parse(raw) {
        Some(h) if h.framed => frame::has_tag(&raw[HEADER_LEN..], tag),
        _ => false,
    }
}

/// The payload of an entry, without copying it.
pub(crate) fn payload(raw: IVec) -> Bytes {
    let framed = Header::parse(&raw).is_some_and(|h| h.framed);
    let body = Bytes::from_owner(raw).slice(HEADER_LEN..);
    if framed { frame::payload(body) } else { body }
}

/// The payload of an entry, borrowed.
pub(crate) fn payload_slice(raw: &[u8]) -> &[u8] {
    let body = &raw[HEADER_LEN.min(raw.len())..];
    match Header::parse(raw) {
        Some(h) if h.framed => {
            let probe = &body[..frame::PROBE_LEN.min(body.len())];
            match frame::header_len(probe) {
                Some(n) if n <= body.len() => &body[n..],
                _ => body,
            }
        }
        _ => body,
    }
}

/// Tags deduplicated, in order.
pub(crate) fn dedup(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

/// The `tags` tree row of `key` under `tag`.
pub(crate) fn tag_row(tag: &str, key: &str) -> Vec<u8> {
    let mut row = tag_prefix(tag);
    row.extend_from_slice(key.as_bytes());
    row
}

/// Every row of `tag` starts with this.
pub(crate) fn tag_prefix(tag: &str) -> Vec<u8> {
    let mut row = Vec::with_capacity(tag.len() + 1);
    row.extend_from_slice(tag.as_bytes());
    row.push(0);
    row
}

/// The `expiry` tree row of `key`.
pub(crate) fn expiry_row(expires_at: u64, key: &str) -> Vec<u8> {
    let mut row = Vec::with_capacity(8 + key.len());
    row.extend_from_slice(&expires_at.to_be_bytes());
    row.extend_from_slice(key.as_bytes());
    row
}

/// The expiry and key of an `expiry` row.
pub(crate) fn split_expiry_row(row: &[u8]) -> Option<(u64, &str)> {
    let (at, key) = row.split_at_checked(8)?;
    Some((
        u64::from_be_bytes(at.try_into().ok()?),
        std::str::from_utf8(key).ok()?,
    ))
}

/// A `locks` tree value.
pub(crate) fn lock_value(expires_at: u64, token: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + token.len());
    v.extend_from_slice(&expires_at.to_be_bytes());
    v.extend_from_slice(token.as_bytes());
    v
}

/// The expiry and token of a `locks` tree value.
pub(crate) fn split_lock(value: &[u8]) -> Option<(u64, &[u8])> {
    let (at, token) = value.split_at_checked(8)?;
    Some((u64::from_be_bytes(at.try_into().ok()?), token))
}

/// A big-endian `u64` value (stamps).
pub(crate) fn read_u64(value: &[u8]) -> u64 {
    value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_roundtrip() {
        let tags = vec!["a:v1:t".to_owned(), "a:v1:u".to_owned()];
        let raw = encode(1234, &tags, b"payload");
        let h = Header::parse(&raw).unwrap();
        assert_eq!(h.expires_at, 1234);
        assert!(h.framed);
        assert_eq!(self::tags(&raw), tags);
        assert!(has_tag(&raw, "a:v1:u"));
        assert!(!has_tag(&raw, "a:v1"));
        assert_eq!(&payload(IVec::from(raw.clone()))[..], b"payload");
        assert_eq!(payload_slice(&raw), b"payload");
        let moved = with_expiry(&raw, 99);
        assert_eq!(Header::parse(&moved).unwrap().expires_at, 99);
        assert_eq!(payload_slice(&moved), b"payload");
    }

    #[test]
    fn a_plain_value_that_looks_like_a_frame_stays_plain() {
        let raw = encode(0, &[], b"\xfeT3:abcrest");
        assert!(!Header::parse(&raw).unwrap().framed);
        assert_eq!(&payload(IVec::from(raw.clone()))[..], b"\xfeT3:abcrest");
        assert!(tags(&raw).is_empty());
    }

    #[test]
    fn liveness() {
        let h = Header {
            expires_at: 100,
            framed: false,
        };
        assert!(h.live(99));
        assert!(!h.live(100));
        assert_eq!(h.remaining(90), Some(Duration::from_millis(10)));
        let never = Header {
            expires_at: 0,
            framed: false,
        };
        assert!(never.live(u64::MAX));
        assert_eq!(never.remaining(5), None);
        assert_eq!(ttl_ms(Duration::from_micros(1)), 1);
        assert_eq!(ttl_ms(Duration::from_millis(1500)), 1500);
    }

    #[test]
    fn rows() {
        let row = expiry_row(7, "k:é");
        assert_eq!(split_expiry_row(&row), Some((7, "k:é")));
        assert!(expiry_row(1, "z") < expiry_row(2, "a"), "ordered by time");
        assert_eq!(tag_row("t", "k"), b"t\0k");
        let lock = lock_value(5, "tok");
        assert_eq!(split_lock(&lock), Some((5, &b"tok"[..])));
        assert_eq!(Header::parse(b"\x07xxxxxxxx"), None);
        assert_eq!(Header::parse(b"\x01short"), None);
    }
}
