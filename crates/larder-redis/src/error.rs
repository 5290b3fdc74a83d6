//! Every fred error becomes a larder error here, and only here.

use std::time::Duration;

use fred::error::{Error as FredError, ErrorKind};
use larder_core::Error;

const BACKEND: &str = "redis";

/// Map a fred error from `operation`.
pub(crate) fn map(operation: &'static str, error: &FredError) -> Error {
    let details = error.details();
    let message = format!("{operation}: {details}");
    let server_says =
        |prefix: &str| details.starts_with(prefix) || details.contains(&format!(" {prefix}"));
    if matches!(error.kind(), ErrorKind::Auth)
        || server_says("NOPERM")
        || server_says("WRONGPASS")
        || server_says("NOAUTH")
    {
        return Error::Auth {
            backend: BACKEND,
            message: format!(
                "{message} (check the user and password in the URL, and the ACL grants listed in docs/backends/redis.md)"
            ),
        };
    }
    match error.kind() {
        ErrorKind::Timeout => Error::Timeout {
            backend: BACKEND,
            operation,
            elapsed: Duration::ZERO,
        },
        ErrorKind::IO
        | ErrorKind::Canceled
        | ErrorKind::Routing
        | ErrorKind::Cluster
        | ErrorKind::Sentinel
        | ErrorKind::Backpressure => Error::Unavailable {
            backend: BACKEND,
            message,
        },
        ErrorKind::Tls => Error::Unavailable {
            backend: BACKEND,
            message: format!("TLS: {message}"),
        },
        ErrorKind::Config | ErrorKind::Url => Error::config(
            "url",
            "the redis backend",
            "a valid Redis configuration",
            message,
        ),
        _ if server_says("LOADING")
            || server_says("MASTERDOWN")
            || server_says("CLUSTERDOWN")
            || server_says("READONLY")
            || server_says("TRYAGAIN") =>
        {
            Error::Unavailable {
                backend: BACKEND,
                message,
            }
        }
        _ => Error::Backend {
            backend: BACKEND,
            message,
        },
    }
}

/// `map` for use with `map_err`.
pub(crate) fn on(operation: &'static str) -> impl Fn(FredError) -> Error {
    move |e| map(operation, &e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let e = map("get", &FredError::new(ErrorKind::IO, "Connection refused"));
        assert!(e.is_transient(), "{e:?}");
        let e = map(
            "get",
            &FredError::new(
                ErrorKind::Unknown,
                "NOPERM this user has no permissions to run the 'flushall' command",
            ),
        );
        assert!(matches!(e, Error::Auth { .. }), "{e:?}");
        let e = map(
            "connect",
            &FredError::new(ErrorKind::Auth, "WRONGPASS invalid username-password pair"),
        );
        assert!(matches!(e, Error::Auth { .. }));
        assert!(!e.is_transient());
        let e = map(
            "get",
            &FredError::new(ErrorKind::Timeout, "Request timed out."),
        );
        assert!(matches!(e, Error::Timeout { .. }));
        let e = map(
            "get",
            &FredError::new(
                ErrorKind::Unknown,
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
        );
        assert!(matches!(e, Error::Backend { .. }), "{e:?}");
        let e = map(
            "get",
            &FredError::new(
                ErrorKind::Unknown,
                "LOADING Redis is loading the dataset in memory",
            ),
        );
        assert!(e.is_transient());
    }
}
