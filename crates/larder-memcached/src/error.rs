//! Every memcache client error becomes a larder error here, and only here.

use std::io::ErrorKind as IoKind;
use std::time::Duration;

use larder_core::Error;
use memcache::{ClientError, CommandError, MemcacheError};

pub(crate) const BACKEND: &str = "memcached";

/// Binary protocol status: `incr` on a value that is not a number.
const NON_NUMERIC: u16 = 0x06;
/// Binary protocol status: the server is out of memory (and may not evict).
const OUT_OF_MEMORY: u16 = 0x82;

/// Whether the connection that returned `error` must be closed rather than
/// reused: after a transport error, a malformed reply or an error in the
/// middle of a multi-key reply, the bytes still in flight could be read as
/// the answer to the next command. A status reply to a one-key command
/// (not found, exists, too large) was read whole and leaves it usable.
pub(crate) fn breaks_connection(error: &MemcacheError, multi_key: bool) -> bool {
    match error {
        MemcacheError::CommandError(_) => multi_key,
        MemcacheError::ClientError(ClientError::KeyTooLong) => false,
        _ => true,
    }
}

/// Whether `error` is memcached refusing `incr` on a value that is not a
/// decimal number.
pub(crate) fn is_non_numeric(error: &MemcacheError) -> bool {
    matches!(
        error,
        MemcacheError::CommandError(CommandError::Unknown(NON_NUMERIC))
    )
}

/// A short phrase for an I/O error.
pub(crate) fn describe_io(error: &std::io::Error) -> String {
    match error.kind() {
        IoKind::ConnectionRefused => "connection refused".to_owned(),
        IoKind::ConnectionReset => "connection reset".to_owned(),
        IoKind::ConnectionAborted => "connection aborted".to_owned(),
        IoKind::BrokenPipe => "connection closed (broken pipe)".to_owned(),
        IoKind::UnexpectedEof => "connection closed by the server".to_owned(),
        IoKind::NotConnected => "not connected".to_owned(),
        IoKind::TimedOut | IoKind::WouldBlock => "timed out".to_owned(),
        IoKind::HostUnreachable => "no route to host".to_owned(),
        IoKind::NetworkUnreachable => "network unreachable".to_owned(),
        IoKind::AddrNotAvailable => "address not available".to_owned(),
        _ => {
            let text = error.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text);
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => "I/O error".to_owned(),
            }
        }
    }
}

/// Map an error of `operation` on `server` that failed after `elapsed`,
/// with `limit` the command timeout in force.
pub(crate) fn map(
    operation: &'static str,
    server: &str,
    error: &MemcacheError,
    elapsed: Duration,
    limit: Duration,
) -> Error {
    match error {
        MemcacheError::IOError(e) if matches!(e.kind(), IoKind::TimedOut | IoKind::WouldBlock) => {
            Error::Timeout {
                backend: BACKEND,
                operation,
                elapsed,
                limit,
            }
        }
        MemcacheError::IOError(e) => Error::Unavailable {
            backend: BACKEND,
            message: format!(
                "{operation} on {server}: {}; the command may or may not have run (it is not \
                 sent again)",
                describe_io(e)
            ),
        },
        MemcacheError::PoolError(e) => Error::Unavailable {
            backend: BACKEND,
            message: format!("cannot connect to {server}: {e}"),
        },
        MemcacheError::CommandError(CommandError::AuthenticationRequired) => Error::Auth {
            backend: BACKEND,
            message: format!(
                "{server} requires SASL authentication, which larder does not support"
            ),
        },
        MemcacheError::CommandError(CommandError::Unknown(OUT_OF_MEMORY)) => Error::Backend {
            backend: BACKEND,
            message: format!(
                "{operation} on {server}: the server is out of memory and does not evict \
                 (started with -M?)"
            ),
        },
        MemcacheError::CommandError(c) => Error::Backend {
            backend: BACKEND,
            message: format!("{operation} on {server}: {}", lower(&c.to_string())),
        },
        MemcacheError::ClientError(ClientError::KeyTooLong) => Error::Backend {
            backend: BACKEND,
            message: format!(
                "{operation}: a key is over memcached's 250-byte limit (keys given to the \
                 backend directly must fit; a Cache hashes long keys)"
            ),
        },
        other => Error::Backend {
            backend: BACKEND,
            message: format!(
                "{operation} on {server}: unexpected reply ({}); the connection was closed",
                lower(&other.to_string())
            ),
        },
    }
}

/// A server that could not be reached: `cannot reach h:p: connection
/// refused; …`.
pub(crate) fn cannot_reach(server: &str, reason: &str) -> Error {
    Error::Unavailable {
        backend: BACKEND,
        message: format!(
            "cannot reach {server}: {reason}; is the server running and the URL right?"
        ),
    }
}

/// A call for a server that is being left alone after a failure.
pub(crate) fn left_alone(server: &str, reason: &str, next_attempt: Duration) -> Error {
    Error::Unavailable {
        backend: BACKEND,
        message: format!(
            "{server} is unreachable ({reason}); next attempt in {} ms",
            next_attempt.as_millis()
        ),
    }
}

/// Every connection to a server stayed busy for the whole command timeout.
pub(crate) fn no_free_connection(
    operation: &'static str,
    elapsed: Duration,
    limit: Duration,
) -> Error {
    Error::Timeout {
        backend: BACKEND,
        operation,
        elapsed,
        limit,
    }
}

/// A call after `close`.
pub(crate) fn closed(operation: &'static str) -> Error {
    Error::Unavailable {
        backend: BACKEND,
        message: format!("{operation}: the backend was closed"),
    }
}

/// `text` with a lowercase first letter and no final `.`.
fn lower(text: &str) -> String {
    let text = text.trim().trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: IoKind) -> MemcacheError {
        MemcacheError::IOError(std::io::Error::from(kind))
    }

    #[test]
    fn kinds() {
        let ms = Duration::from_millis;
        let e = map("get", "h:1", &io(IoKind::WouldBlock), ms(1003), ms(1000));
        assert!(
            matches!(e, Error::Timeout { elapsed, limit, .. } if elapsed == ms(1003) && limit == ms(1000)),
            "{e:?}"
        );
        let e = map("get", "h:1", &io(IoKind::ConnectionReset), ms(1), ms(1000));
        assert!(e.is_transient());
        assert!(
            e.to_string().contains("get on h:1: connection reset"),
            "{e}"
        );
        let e = map(
            "set",
            "h:1",
            &MemcacheError::CommandError(CommandError::Unknown(OUT_OF_MEMORY)),
            ms(1),
            ms(1),
        );
        assert!(matches!(e, Error::Backend { .. }) && e.to_string().contains("out of memory"));
        let e = map(
            "get",
            "h:1",
            &MemcacheError::CommandError(CommandError::AuthenticationRequired),
            ms(1),
            ms(1),
        );
        assert!(matches!(e, Error::Auth { .. }), "{e:?}");
    }

    #[test]
    fn which_errors_close_the_connection() {
        let status = MemcacheError::CommandError(CommandError::KeyExists);
        assert!(!breaks_connection(&status, false));
        assert!(breaks_connection(&status, true));
        assert!(breaks_connection(&io(IoKind::UnexpectedEof), false));
        assert!(!breaks_connection(
            &MemcacheError::ClientError(ClientError::KeyTooLong),
            true
        ));
        assert!(is_non_numeric(&MemcacheError::CommandError(
            CommandError::Unknown(6)
        )));
    }

    #[test]
    fn io_phrases() {
        assert_eq!(
            describe_io(&std::io::Error::from(IoKind::ConnectionRefused)),
            "connection refused"
        );
        let other = std::io::Error::other("Too many open files (os error 24)");
        assert_eq!(describe_io(&other), "too many open files");
    }
}
