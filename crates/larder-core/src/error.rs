//! The one error type of larder.

use std::time::Duration;

/// Result alias used across larder.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in larder.
///
/// Match on the variant to decide what to do: [`Error::is_transient`] says
/// whether a retry may help. Every message names the problem and, where there
/// is one, the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend could not be reached or dropped the connection.
    #[error("{backend} backend unavailable: {message}")]
    Unavailable {
        /// Backend name (`memory`, `redis`, ...).
        backend: &'static str,
        /// What the backend or the network said.
        message: String,
    },

    /// An operation did not finish in time.
    #[error("{backend} backend timed out after {elapsed:?} during {operation}")]
    Timeout {
        /// Backend name.
        backend: &'static str,
        /// The operation that timed out.
        operation: &'static str,
        /// How long it ran before it was given up.
        elapsed: Duration,
    },

    /// The backend refused our credentials or permissions. Not retried.
    #[error("{backend} backend refused authentication or permission: {message}")]
    Auth {
        /// Backend name.
        backend: &'static str,
        /// What the server said.
        message: String,
    },

    /// The backend cannot do this operation.
    #[error("the {backend} backend does not support {operation}")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// The operation asked for.
        operation: &'static str,
    },

    /// A value could not be encoded, or stored bytes could not be decoded.
    #[error("codec error ({codec}): {message}")]
    Codec {
        /// Codec name.
        codec: &'static str,
        /// What went wrong.
        message: String,
    },

    /// A key or tag is not acceptable.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given (shortened when very long).
        key: String,
        /// Why it is rejected and how to fix it.
        reason: String,
    },

    /// A configuration value is invalid.
    #[error("invalid {field} from {source_name}: expected {expected}, got {got:?}")]
    Config {
        /// The configuration field (`default_ttl`, `url`, ...).
        field: String,
        /// Where the value came from: `environment variable LARDER_DEFAULT_TTL`,
        /// `larder.toml line 3`, `builder`, a URL.
        source_name: String,
        /// What a valid value looks like.
        expected: String,
        /// The value given (secrets masked).
        got: String,
    },

    /// An encoded value is larger than the cache or backend accepts.
    #[error(
        "value for key {key:?} is {size} bytes, over the {limit}-byte limit; \
         store a smaller value or raise `max_value_size`"
    )]
    PayloadTooLarge {
        /// The key the value was meant for.
        key: String,
        /// Encoded size in bytes.
        size: usize,
        /// The limit in force.
        limit: usize,
    },

    /// `incr` hit a value that is not an integer counter.
    #[error(
        "value at key {key:?} is not an integer counter; counters are created by `incr` \
         and hold a decimal integer"
    )]
    NotAnInteger {
        /// The key.
        key: String,
    },

    /// A recache call after a write failed. Logged and counted, never
    /// returned by the write.
    #[error("recache of `{call}` failed: {message}")]
    Recache {
        /// The call, as written in `recache = [...]`.
        call: String,
        /// What it returned.
        message: String,
    },

    /// Any other backend failure (a server error reply, a bad response).
    #[error("{backend} backend error: {message}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// Whether retrying the same operation may succeed (connection trouble,
    /// timeouts). Auth, config, key and codec errors are permanent.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Timeout { .. })
    }

    /// A short, stable name for the error kind, used as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Unavailable { .. } => "unavailable",
            Error::Timeout { .. } => "timeout",
            Error::Auth { .. } => "auth",
            Error::Unsupported { .. } => "unsupported",
            Error::Codec { .. } => "codec",
            Error::InvalidKey { .. } => "invalid_key",
            Error::Config { .. } => "config",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::NotAnInteger { .. } => "not_an_integer",
            Error::Recache { .. } => "recache",
            Error::Backend { .. } => "backend",
        }
    }

    /// Shorthand for [`Error::Config`].
    pub fn config(
        field: impl Into<String>,
        source_name: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Error::Config {
            field: field.into(),
            source_name: source_name.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// Shorthand for [`Error::InvalidKey`]; very long keys are shortened in
    /// the message.
    pub fn invalid_key(key: &str, reason: impl Into<String>) -> Self {
        Error::InvalidKey {
            key: shorten(key, 80),
            reason: reason.into(),
        }
    }
}

/// The first `max` bytes of `s` (on a char boundary) followed by `…`.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_kinds() {
        let e = Error::Unavailable {
            backend: "redis",
            message: "connection refused".into(),
        };
        assert!(e.is_transient());
        assert_eq!(e.kind(), "unavailable");
        let e = Error::Auth {
            backend: "redis",
            message: "WRONGPASS".into(),
        };
        assert!(!e.is_transient());
    }

    #[test]
    fn long_keys_are_shortened_in_messages() {
        let key = "é".repeat(100);
        let Error::InvalidKey { key: shown, .. } = Error::invalid_key(&key, "too long") else {
            panic!("wrong variant")
        };
        assert!(shown.len() <= 84, "{}", shown.len());
        assert!(shown.ends_with('…'));
    }
}
