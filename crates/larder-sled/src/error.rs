//! Every sled error becomes a larder error here, and only here.

use std::io;
use std::path::Path;

use larder_core::Error;
use sled::transaction::TransactionError;

/// The backend kind, in errors and labels.
pub(crate) const KIND: &str = "sled";

/// What sled says when another process holds the directory's lock.
const LOCKED: &str = "could not acquire lock";

/// An error of `operation` on the database in `dir`.
pub(crate) fn storage(dir: &Path, operation: &str, e: sled::Error) -> Error {
    let dir = dir.display();
    let message = match e {
        sled::Error::Io(io) => format!("{operation} on {dir}: I/O error: {}", io_text(&io)),
        sled::Error::Corruption { .. } => format!(
            "{operation} on {dir}: sled read corrupted data; the directory is damaged: remove it \
             to start an empty cache, or restore it from a backup"
        ),
        other => format!("{operation} on {dir}: {other}"),
    };
    Error::Backend {
        backend: KIND,
        message,
    }
}

/// The error of a transaction: the larder error it aborted with, or the
/// storage error that stopped it.
pub(crate) fn transaction(dir: &Path, operation: &str, e: TransactionError<Error>) -> Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => storage(dir, operation, e),
    }
}

/// Why the directory `dir` could not be opened, in plain words.
pub(crate) fn open(dir: &Path, e: sled::Error) -> Error {
    let shown = dir.display();
    match e {
        sled::Error::Io(io) if io.to_string().contains(LOCKED) => Error::Unavailable {
            backend: KIND,
            message: format!(
                "the sled directory {shown} is in use: another process (or another open backend \
                 in this process) holds its lock, on {}; sled lets one process at a time open a \
                 directory: stop that process or close that backend, or use another directory",
                dir.join("db").display()
            ),
        },
        sled::Error::Io(io) => Error::Backend {
            backend: KIND,
            message: format!("cannot open the sled directory {shown}: {}", io_text(&io)),
        },
        sled::Error::Corruption { .. } => corrupted(dir, "sled read corrupted data in its files"),
        other => Error::Backend {
            backend: KIND,
            message: format!("cannot open the sled directory {shown}: {other}"),
        },
    }
}

/// The directory `dir` holds something sled cannot read.
pub(crate) fn corrupted(dir: &Path, detail: &str) -> Error {
    Error::Backend {
        backend: KIND,
        message: format!(
            "the sled directory {} is corrupted or not a sled database ({detail}); remove it to \
             start an empty cache, or restore it from a backup",
            dir.display()
        ),
    }
}

/// The backend was closed.
pub(crate) fn closed(dir: &Path, operation: &str) -> Error {
    Error::Unavailable {
        backend: KIND,
        message: format!(
            "{operation}: the sled backend on {} is closed",
            dir.display()
        ),
    }
}

/// An I/O error with its kind when the message does not say it.
fn io_text(e: &io::Error) -> String {
    let text = e.to_string();
    match e.kind() {
        io::ErrorKind::PermissionDenied if !text.contains("ermission") => {
            format!("permission denied ({text})")
        }
        io::ErrorKind::NotFound if !text.contains("not found") && !text.contains("No such") => {
            format!("not found ({text})")
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_names_the_directory() {
        let dir = Path::new("/tmp/cache-dir");
        let e = sled::Error::Io(io::Error::other(
            "could not acquire lock on \"/tmp/cache-dir/db\": Os { code: 11 }",
        ));
        let err = open(dir, e);
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("/tmp/cache-dir is in use"), "{text}");
        assert!(text.contains("/tmp/cache-dir/db"), "{text}");
    }

    #[test]
    fn aborts_pass_through() {
        let e = transaction(
            Path::new("d"),
            "incr",
            TransactionError::Abort(Error::NotAnInteger { key: "k".into() }),
        );
        assert!(matches!(e, Error::NotAnInteger { .. }));
    }
}
