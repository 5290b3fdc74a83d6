//! How a tagged value is stored: its tags ride in front of the payload, in
//! the same Redis string, so the value and the list of tags it belongs to
//! change together in one `SET` (on every topology, cluster included).
//!
//! `\xFE T <header length> : <tag>\n<tag>... <payload>`. Untagged values are
//! stored as they are (a larder envelope starts with `\xFF L`, a counter with
//! a digit or `-`), so `redis-cli GET` shows them unchanged and `INCRBY`
//! works on counters.

use bytes::Bytes;

const MAGIC: &[u8; 2] = b"\xFET";

/// `value` with `tags` in front.
pub(crate) fn frame(tags: &[String], value: &[u8]) -> Bytes {
    let header = tags.join("\n");
    let len = header.len().to_string();
    let mut out = Vec::with_capacity(MAGIC.len() + len.len() + 1 + header.len() + value.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(len.as_bytes());
    out.push(b':');
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(value);
    Bytes::from(out)
}

/// Split stored bytes into the payload and, for a framed value, its tags.
/// Bytes that are not a frame come back whole, with no tags.
pub(crate) fn unframe(stored: Bytes) -> (Bytes, Vec<String>) {
    match split(&stored) {
        Some((header_end, payload_start)) => {
            let header = &stored[header_end.0..header_end.1];
            let tags = String::from_utf8_lossy(header)
                .split('\n')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            (stored.slice(payload_start..), tags)
        }
        None => (stored, Vec::new()),
    }
}

/// The payload alone.
pub(crate) fn payload(stored: Bytes) -> Bytes {
    match split(&stored) {
        Some((_, start)) => stored.slice(start..),
        None => stored,
    }
}

/// Whether the stored bytes carry `tag`.
pub(crate) fn has_tag(stored: &[u8], tag: &str) -> bool {
    split(stored).is_some_and(|((from, to), _)| {
        stored[from..to]
            .split(|b| *b == b'\n')
            .any(|t| t == tag.as_bytes())
    })
}

/// ((header start, header end), payload start) of a frame.
fn split(stored: &[u8]) -> Option<((usize, usize), usize)> {
    let rest = stored.strip_prefix(MAGIC)?;
    let colon = rest.iter().position(|b| *b == b':')?;
    let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    let start = MAGIC.len() + colon + 1;
    let end = start.checked_add(len).filter(|e| *e <= stored.len())?;
    Some(((start, end), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let tags = vec!["svc:v1:a".to_owned(), "svc:v1:b".to_owned()];
        let framed = frame(&tags, b"\xffLpayload");
        let (payload_bytes, back) = unframe(framed.clone());
        assert_eq!(&payload_bytes[..], b"\xffLpayload");
        assert_eq!(back, tags);
        assert!(has_tag(&framed, "svc:v1:a"));
        assert!(!has_tag(&framed, "svc:v1:"));
        assert_eq!(&payload(framed)[..], b"\xffLpayload");
    }

    #[test]
    fn plain_values_pass_through() {
        for raw in [
            &b"42"[..],
            b"",
            b"\xffL...",
            b"\xfeT",
            b"\xfeT99:ab",
            b"\xfeTx:ab",
        ] {
            let (p, tags) = unframe(Bytes::copy_from_slice(raw));
            assert_eq!(&p[..], raw);
            assert!(tags.is_empty());
            assert!(!has_tag(raw, "a"));
        }
    }
}
