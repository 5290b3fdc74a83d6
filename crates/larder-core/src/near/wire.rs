//! The invalidation message backends publish for near caches, and the
//! channel it goes to: one per namespace, `{channel_prefix}{prefix}:{version}:`
//! (`larder:inv:svc:v1:`), so that an ACL can grant one namespace's
//! channel.
//!
//! A message is JSON: `{"o":"<origin>","s":<seq>,"t":<sent, µs since the
//! Unix epoch>}` plus one of `"k":[keys]`, `"g":[tags]`, `"p":"pattern"`,
//! `"f":"prefix"` (every key under the prefix), all in stored form. A
//! message that does not parse must flush the near cache.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::backend::{Invalidation, InvalidationEvent};
use crate::error::{Error, Result};

/// The default channel prefix.
pub const CHANNEL_PREFIX: &str = "larder:inv:";

#[derive(Serialize, Deserialize)]
struct Message {
    /// Who wrote (a random id per backend instance).
    o: String,
    /// The writer's sequence number.
    s: u64,
    /// When it was sent, in microseconds since the Unix epoch.
    t: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    g: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    f: Option<String>,
}

/// The namespace head of a stored key, tag, pattern or prefix: the text up
/// to and including its second `:` (`svc:v1:`); the whole text when it has
/// fewer.
pub fn namespace_of(stored: &str) -> &str {
    let mut colons = stored.match_indices(':').map(|(i, _)| i);
    match (colons.next(), colons.next()) {
        (Some(_), Some(second)) => &stored[..=second],
        _ => stored,
    }
}

/// The channel of the namespace `stored` belongs to.
pub fn channel(channel_prefix: &str, stored: &str) -> String {
    format!("{channel_prefix}{}", namespace_of(stored))
}

/// Encode a message. `Connected`, `Disconnected` and `Reset` are local
/// events, never sent: they encode as `None`.
pub fn encode(origin: &str, seq: u64, invalidation: &Invalidation) -> Option<String> {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let mut m = Message {
        o: origin.to_owned(),
        s: seq,
        t,
        k: None,
        g: None,
        p: None,
        f: None,
    };
    match invalidation {
        Invalidation::Keys(keys) => m.k = Some(keys.clone()),
        Invalidation::Tags(tags) => m.g = Some(tags.clone()),
        Invalidation::Pattern(p) => m.p = Some(p.clone()),
        Invalidation::Flush { prefix } => m.f = Some(prefix.clone()),
        _ => return None,
    }
    serde_json::to_string(&m).ok()
}

/// Decode a message into the event a near cache applies. An error means
/// the near cache must flush.
pub fn decode(text: &[u8]) -> Result<InvalidationEvent> {
    let m: Message = serde_json::from_slice(text).map_err(|e| Error::Codec {
        codec: "invalidation message",
        message: e.to_string(),
    })?;
    let invalidation = match (m.k, m.g, m.p, m.f) {
        (Some(k), None, None, None) => Invalidation::Keys(k),
        (None, Some(g), None, None) => Invalidation::Tags(g),
        (None, None, Some(p), None) => Invalidation::Pattern(p),
        (None, None, None, Some(prefix)) => Invalidation::Flush { prefix },
        _ => {
            return Err(Error::Codec {
                codec: "invalidation message",
                message: "exactly one of k, g, p, f is expected".to_owned(),
            });
        }
    };
    let sent_at = UNIX_EPOCH.checked_add(Duration::from_micros(m.t));
    Ok(InvalidationEvent {
        invalidation,
        sent_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        for inv in [
            Invalidation::Keys(vec!["svc:v1:a".into()]),
            Invalidation::Tags(vec!["svc:v1:t".into()]),
            Invalidation::Pattern("svc:v1:user:*".into()),
            Invalidation::Flush {
                prefix: "svc:v1:".into(),
            },
        ] {
            let text = encode("o1", 3, &inv).expect("encodes");
            let event = decode(text.as_bytes()).expect("decodes");
            assert_eq!(event.invalidation, inv);
            assert!(event.sent_at.is_some());
        }
        assert!(encode("o", 1, &Invalidation::Reset).is_none());
        assert!(decode(b"not json").is_err());
        assert!(decode(br#"{"o":"x","s":1,"t":1}"#).is_err());
        assert!(decode(br#"{"o":"x","s":1,"t":1,"k":["a"],"f":"b"}"#).is_err());
    }

    #[test]
    fn channels_are_per_namespace() {
        assert_eq!(namespace_of("svc:v1:user:1"), "svc:v1:");
        assert_eq!(namespace_of("svc:v1:"), "svc:v1:");
        assert_eq!(namespace_of("plain"), "plain");
        assert_eq!(channel(CHANNEL_PREFIX, "svc:v1:*"), "larder:inv:svc:v1:");
    }
}
