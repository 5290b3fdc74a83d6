//! The tag frame: how a backend without a separate tag index (or one whose
//! index lives elsewhere, such as a Redis sorted set on another slot) keeps a
//! value's tags in the value itself, so that the value and the tags it
//! belongs to always change together in one write.
//!
//! `\xFE T <header length> : <tag>\n<tag>... <payload>`
//!
//! The header length is decimal ASCII. Tags never hold control characters
//! (the key layer refuses them), so `\n` separates them. Untagged values are
//! stored without a frame: a larder envelope starts with `\xFF L`, a counter
//! with a digit or `-`, so none of them is mistaken for a frame.
//!
//! A reader that only needs the tags reads the first [`PROBE_LEN`] bytes,
//! asks [`header_len`] how long the header is, and reads that much: it never
//! needs the payload.

use bytes::Bytes;

/// The first bytes of every frame.
pub const MAGIC: &[u8; 2] = b"\xFET";

/// Enough leading bytes to learn a frame's header length: the magic, up to
/// 20 digits and the `:`.
pub const PROBE_LEN: usize = 24;

/// `payload` with `tags` in front. With no tags, the payload as it is
/// (not copied).
pub fn encode(tags: &[String], payload: Bytes) -> Bytes {
    if tags.is_empty() {
        return payload;
    }
    let header = tags.join("\n");
    let len = header.len().to_string();
    let mut out = Vec::with_capacity(MAGIC.len() + len.len() + 1 + header.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(len.as_bytes());
    out.push(b':');
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&payload);
    Bytes::from(out)
}

/// Split stored bytes into the payload and, for a frame, its tags. Bytes
/// that are not a frame come back whole, with no tags.
pub fn decode(stored: Bytes) -> (Bytes, Vec<String>) {
    match split(&stored) {
        Some((header, payload_start)) => {
            let tags = parse_tags(&stored[header.0..header.1]);
            (stored.slice(payload_start..), tags)
        }
        None => (stored, Vec::new()),
    }
}

/// The payload alone.
pub fn payload(stored: Bytes) -> Bytes {
    match split(&stored) {
        Some((_, start)) => stored.slice(start..),
        None => stored,
    }
}

/// The tags of a frame, from its first bytes (at least the whole header);
/// empty for anything else.
pub fn tags(stored: &[u8]) -> Vec<String> {
    match split(stored) {
        Some((header, _)) => parse_tags(&stored[header.0..header.1]),
        None => Vec::new(),
    }
}

/// Whether the stored bytes (at least the whole header) carry `tag`.
pub fn has_tag(stored: &[u8], tag: &str) -> bool {
    split(stored).is_some_and(|((from, to), _)| {
        stored[from..to]
            .split(|b| *b == b'\n')
            .any(|t| t == tag.as_bytes())
    })
}

/// How many leading bytes hold the whole header of the frame that `probe`
/// (the first [`PROBE_LEN`] bytes or more) starts; `None` when `probe` does
/// not start a frame. Unframed values have a header of length 0.
pub fn header_len(probe: &[u8]) -> Option<usize> {
    let rest = probe.strip_prefix(MAGIC)?;
    let colon = rest.iter().take(21).position(|b| *b == b':')?;
    let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    (MAGIC.len() + colon + 1).checked_add(len)
}

fn parse_tags(header: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(header)
        .split('\n')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// ((header start, header end), payload start) of a frame.
fn split(stored: &[u8]) -> Option<((usize, usize), usize)> {
    let end = header_len(stored).filter(|e| *e <= stored.len())?;
    let rest = &stored[MAGIC.len()..];
    let colon = rest.iter().position(|b| *b == b':')?;
    let start = MAGIC.len() + colon + 1;
    Some(((start, end), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let names = vec!["svc:v1:a".to_owned(), "svc:v1:b".to_owned()];
        let framed = encode(&names, Bytes::from_static(b"\xffLpayload"));
        let (payload_bytes, back) = decode(framed.clone());
        assert_eq!(&payload_bytes[..], b"\xffLpayload");
        assert_eq!(back, names);
        assert!(has_tag(&framed, "svc:v1:a"));
        assert!(!has_tag(&framed, "svc:v1:"));
        assert_eq!(&payload(framed.clone())[..], b"\xffLpayload");
        let header = header_len(&framed[..PROBE_LEN.min(framed.len())]).unwrap();
        assert_eq!(tags(&framed[..header]), names);
        assert_eq!(&framed[header..], b"\xffLpayload");
    }

    #[test]
    fn untagged_values_are_not_framed() {
        assert_eq!(&encode(&[], Bytes::from_static(b"42"))[..], b"42");
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
            let (p, tags) = decode(Bytes::copy_from_slice(raw));
            assert_eq!(&p[..], raw);
            assert!(tags.is_empty());
            assert!(!has_tag(raw, "a"));
        }
        assert_eq!(header_len(b"\xffLxx"), None);
        assert_eq!(header_len(b"\xfeT99999999999999999999999:"), None);
    }
}
