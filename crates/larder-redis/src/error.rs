//! Every fred error becomes a larder error here, and only here.

use std::time::Duration;

use fred::error::{Error as FredError, ErrorKind};
use larder_core::Error;

use crate::config::Topology;

const BACKEND: &str = "redis";

/// `std::io::ErrorKind` names (as `Debug` writes them) and what to say.
const IO_KINDS: &[(&str, &str)] = &[
    ("ConnectionRefused", "connection refused"),
    ("ConnectionReset", "connection reset"),
    ("ConnectionAborted", "connection aborted"),
    ("TimedOut", "timed out"),
    ("HostUnreachable", "no route to host"),
    ("NetworkUnreachable", "network unreachable"),
    ("NetworkDown", "network down"),
    ("AddrNotAvailable", "address not available"),
    ("NotConnected", "not connected"),
    ("BrokenPipe", "connection closed (broken pipe)"),
    ("UnexpectedEof", "connection closed by the server"),
    ("PermissionDenied", "permission denied"),
];

/// Operating-system messages (lowercased) and what to say, for detail text
/// that carries no kind.
const IO_MESSAGES: &[(&str, &str)] = &[
    ("connection refused", "connection refused"),
    ("connection reset", "connection reset"),
    ("timed out", "timed out"),
    ("no route to host", "no route to host"),
    ("network is unreachable", "network unreachable"),
    ("broken pipe", "connection closed (broken pipe)"),
];

/// Signs of a failed host name lookup, lowercased.
const RESOLVE_FAILURES: &[&str] = &[
    "failed to lookup address",
    "failed to resolve",
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
    "no such host",
];

/// The `io::ErrorKind` name in `Debug` output of an `io::Error`: what
/// follows `kind: ` or `Kind(` (`kind: ConnectionRefused`,
/// `Kind(TimedOut)`), up to the next `,`, `)`, `}` or space.
fn debug_kind(details: &str) -> Option<&str> {
    let start = details
        .find("kind: ")
        .map(|i| i + "kind: ".len())
        .or_else(|| details.find("Kind(").map(|i| i + "Kind(".len()))?;
    let rest = &details[start..];
    let end = rest.find([',', ')', '}', ' ']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The string after `field: "` in `Debug` output, unescaped.
fn debug_string(details: &str, field: &str) -> Option<String> {
    let start = details.find(&format!("{field}: \""))? + field.len() + 3;
    let mut out = String::new();
    let mut chars = details[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push(' '),
                't' => out.push(' '),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// `text` without a trailing `.`, its first letter lowercased unless the
/// first word is an acronym (`TLS`).
fn lower_first(text: &str) -> String {
    let text = text.trim().trim_end_matches('.');
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), second) if !second.is_some_and(char::is_uppercase) => first
            .to_lowercase()
            .chain(text[first.len_utf8()..].chars())
            .collect(),
        _ => text.to_owned(),
    }
}

/// A short human phrase for the detail text of a fred IO error.
///
/// fred formats an `std::io::Error` with `Debug`
/// (`Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }`);
/// this gives `connection refused`. Common kinds get a fixed phrase, a
/// failed lookup is `cannot resolve host`, anything else is the quoted
/// `message` or `error` with its first letter lowercased, or failing that
/// the text itself.
pub(crate) fn describe_io(details: &str) -> String {
    let lower = details.to_lowercase();
    if RESOLVE_FAILURES.iter().any(|sign| lower.contains(sign)) {
        return "cannot resolve host".to_owned();
    }
    let known = debug_kind(details)
        .and_then(|kind| IO_KINDS.iter().find(|(k, _)| *k == kind))
        .or_else(|| IO_MESSAGES.iter().find(|(m, _)| lower.contains(m)));
    if let Some((_, phrase)) = known {
        return (*phrase).to_owned();
    }
    match debug_string(details, "message").or_else(|| debug_string(details, "error")) {
        Some(message) => lower_first(&message),
        None => lower_first(details),
    }
}

/// Why `error` happened, short: the [`describe_io`] phrase for IO errors,
/// fred's own text otherwise.
fn reason(error: &FredError) -> String {
    match error.kind() {
        ErrorKind::IO => describe_io(error.details()),
        ErrorKind::Tls => format!("TLS: {}", error.details()),
        _ => error.details().to_owned(),
    }
}

/// [`map`] for a failed first connection to `topology`: when the servers
/// cannot be reached the message names them and says why in plain words
/// (`cannot reach 127.0.0.1:6380: connection refused; is the server running
/// and the URL right?`).
pub(crate) fn connect_failed(topology: &Topology, error: &FredError) -> Error {
    match map("connect", error) {
        Error::Unavailable { backend, .. } => Error::Unavailable {
            backend,
            message: format!(
                "cannot reach {topology}: {}; is the server running and the URL right?",
                reason(error)
            ),
        },
        other => other,
    }
}

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
        // The caller knows how long it waited: see `Connection::fail`.
        ErrorKind::Timeout => Error::Timeout {
            backend: BACKEND,
            operation,
            elapsed: Duration::ZERO,
            limit: Duration::ZERO,
        },
        ErrorKind::IO => Error::Unavailable {
            backend: BACKEND,
            message: format!("{operation}: {}", reason(error)),
        },
        ErrorKind::Canceled
        | ErrorKind::Routing
        | ErrorKind::Cluster
        | ErrorKind::Sentinel
        | ErrorKind::Backpressure => Error::Unavailable {
            backend: BACKEND,
            message,
        },
        ErrorKind::Tls => Error::Unavailable {
            backend: BACKEND,
            message: format!("{operation}: {}", reason(error)),
        },
        ErrorKind::Config | ErrorKind::Url => Error::config(
            "url",
            "the redis backend",
            "a valid Redis configuration",
            message,
        ),
        // A command is written once (max_command_attempts = 1): when the
        // connection drops while it is in flight, fred gives up on it.
        _ if details.contains("Too many failed write attempts") => Error::Unavailable {
            backend: BACKEND,
            message: format!(
                "{operation}: the connection closed while the command was in flight; it may or \
                 may not have run (it is not sent again, since repeating it could apply it twice)"
            ),
        },
        // No connection to send on (fred reconnects meanwhile).
        _ if details.contains("Failed to route command") => Error::Unavailable {
            backend: BACKEND,
            message: format!(
                "{operation}: no connection to the server (it went away; the client reconnects)"
            ),
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_connection_to_route_on_is_transient() {
        let e = map(
            "invalidate_tags",
            &FredError::new(ErrorKind::Unknown, "Failed to route command."),
        );
        assert!(e.is_transient(), "{e:?}");
        assert!(e.to_string().contains("no connection"), "{e}");
    }

    #[test]
    fn io_details_become_short_phrases() {
        for (details, phrase) in [
            (
                r#"Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }"#,
                "connection refused",
            ),
            (
                r#"Os { code: 104, kind: ConnectionReset, message: "Connection reset by peer" }"#,
                "connection reset",
            ),
            (
                r#"Os { code: 110, kind: TimedOut, message: "Connection timed out" }"#,
                "timed out",
            ),
            (
                r#"Os { code: 113, kind: HostUnreachable, message: "No route to host" }"#,
                "no route to host",
            ),
            (
                r#"Os { code: 101, kind: NetworkUnreachable, message: "Network is unreachable" }"#,
                "network unreachable",
            ),
            (
                r#"Custom { kind: Uncategorized, error: "failed to lookup address information: Name or service not known" }"#,
                "cannot resolve host",
            ),
            (
                "Failed to resolve cache.internal:6379",
                "cannot resolve host",
            ),
            ("Kind(TimedOut)", "timed out"),
            ("Kind(UnexpectedEof)", "connection closed by the server"),
            (
                r#"Os { code: 24, kind: Uncategorized, message: "Too many open files" }"#,
                "too many open files",
            ),
            (
                r#"Custom { kind: Other, error: "Peer sent \"bye\"" }"#,
                r#"peer sent "bye""#,
            ),
            (
                r#"Error { kind: InvalidInput, message: "Invalid socket address" }"#,
                "invalid socket address",
            ),
            ("Connection refused", "connection refused"),
            ("Failed to connect.", "failed to connect"),
            ("Invalid server.", "invalid server"),
            ("TLS handshake failed", "TLS handshake failed"),
        ] {
            assert_eq!(describe_io(details), phrase, "{details}");
        }
    }

    #[test]
    fn a_refused_first_connection_reads_like_a_sentence() {
        let topology = Topology::Standalone {
            host: "127.0.0.1".into(),
            port: 6380,
        };
        let refused = FredError::new(
            ErrorKind::IO,
            r#"Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }"#,
        );
        let e = connect_failed(&topology, &refused);
        assert!(e.is_transient(), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains(
                "cannot reach 127.0.0.1:6380: connection refused; is the server running and the URL right?"
            ),
            "{msg}"
        );
        assert!(
            !msg.contains("Os {") && !msg.contains("Standalone"),
            "{msg}"
        );
        let later = map("get", &refused).to_string();
        assert!(later.contains("get: connection refused"), "{later}");
        let auth = connect_failed(
            &topology,
            &FredError::new(ErrorKind::Auth, "WRONGPASS invalid username-password pair"),
        );
        assert!(matches!(auth, Error::Auth { .. }), "{auth:?}");
    }

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
