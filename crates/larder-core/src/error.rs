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
    #[error(
        "{backend} backend timed out during {operation}: no answer after {elapsed:?} \
         (the limit is {limit:?})"
    )]
    Timeout {
        /// Backend name.
        backend: &'static str,
        /// The operation that timed out.
        operation: &'static str,
        /// How long it ran before it was given up.
        elapsed: Duration,
        /// The timeout in force.
        limit: Duration,
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

    /// A TTL that no backend accepts: zero, or longer than
    /// [`MAX_TTL`](crate::MAX_TTL).
    #[error("invalid TTL {ttl:?}: {reason}")]
    InvalidTtl {
        /// The TTL given.
        ttl: Duration,
        /// Why it is refused and what to do instead.
        reason: String,
    },

    /// A read-through load that this call waited for failed. The load's own
    /// error went to the caller that ran it; the callers that shared the load
    /// get this one, and nothing is stored.
    #[error("the shared load of key {key:?} failed: {message}")]
    SharedLoad {
        /// The key (as given by the caller).
        key: String,
        /// What the load returned, as far as it can be told.
        message: String,
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

    /// A stored value failed its integrity check: it is neither signed nor
    /// encrypted on a cache that requires it, its signature does not match
    /// (altered, or copied from another key), or it does not decrypt. It is
    /// never decoded: reads treat it as a miss and count it (kind
    /// `integrity`, [`Stats::integrity_errors`](crate::Stats::integrity_errors)).
    #[error("stored value failed its integrity check: {reason}")]
    Integrity {
        /// What did not check out, and what to do about it.
        reason: String,
    },

    /// A write over one of the cache's limits (tags per write, tag
    /// length), refused before anything is sent to the backend.
    #[error("write to key {key:?} refused: {what} is {size}, over the limit of {limit}; {fix}")]
    LimitExceeded {
        /// The key the write was for.
        key: String,
        /// What is over the limit (`the number of tags`, `tag "x" length`).
        what: String,
        /// Its size.
        size: usize,
        /// The limit in force.
        limit: usize,
        /// How to get under it: the setting to raise.
        fix: &'static str,
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

    /// An operation that goes to several routes of a
    /// [`Router`](crate::Router) failed on some of them; the others did
    /// their part.
    #[error(
        "{operation} failed on {}{}",
        describe_failures(failures),
        done.map_or(String::new(), |n| format!("; the other routes did theirs ({n})"))
    )]
    Routes {
        /// The operation.
        operation: &'static str,
        /// Each failed route and its error.
        failures: Vec<RouteFailure>,
        /// What the routes that succeeded counted, for counting operations.
        done: Option<crate::Count>,
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

/// One route's failure in [`Error::Routes`].
#[derive(Debug)]
#[non_exhaustive]
pub struct RouteFailure {
    /// The route's name.
    pub route: String,
    /// What it answered.
    pub error: Box<Error>,
}

impl RouteFailure {
    /// The failure of `route`.
    pub fn new(route: impl Into<String>, error: Error) -> Self {
        RouteFailure {
            route: route.into(),
            error: Box::new(error),
        }
    }
}

fn describe_failures(failures: &[RouteFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("route {:?} ({})", f.route, f.error))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    /// Whether retrying the same operation may succeed (connection trouble,
    /// timeouts). Auth, config, key and codec errors are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unavailable { .. } | Error::Timeout { .. } => true,
            Error::Routes { failures, .. } => failures.iter().all(|f| f.error.is_transient()),
            _ => false,
        }
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
            Error::InvalidTtl { .. } => "invalid_ttl",
            Error::SharedLoad { .. } => "shared_load",
            Error::Config { .. } => "config",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::NotAnInteger { .. } => "not_an_integer",
            Error::Integrity { .. } => "integrity",
            Error::LimitExceeded { .. } => "limit_exceeded",
            Error::Recache { .. } => "recache",
            Error::Routes { .. } => "routes",
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

    /// `ttl` itself when a backend may be given it; else the
    /// [`Error::InvalidTtl`] for a TTL of zero or over [`MAX_TTL`](crate::MAX_TTL).
    pub fn check_ttl(ttl: Duration) -> Result<Duration> {
        if ttl.is_zero() {
            return Err(Error::InvalidTtl {
                ttl,
                reason: "a TTL must be positive; store without expiry with no_expiry(), or \
                         remove the key with delete()"
                    .to_owned(),
            });
        }
        if ttl > crate::MAX_TTL {
            return Err(Error::InvalidTtl {
                ttl,
                reason: format!(
                    "the longest TTL larder accepts is {} days ({:?}) on every backend; store \
                     without expiry with no_expiry() for values that live until deleted",
                    crate::MAX_TTL.as_secs() / 86_400,
                    crate::MAX_TTL
                ),
            });
        }
        Ok(ttl)
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
