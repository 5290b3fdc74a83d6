//! Every SQLite error becomes a larder [`Error`] here, and only here. Each
//! message names the database file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use larder_core::Error;
use rusqlite::ErrorCode;

/// The backend kind, for errors and metric labels.
pub(crate) const KIND: &str = "sqlite";

/// Where errors happen: the database's name and the busy timeout in force.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    /// The file's path as configured, or `:memory:`.
    pub(crate) name: Arc<str>,
    /// `PRAGMA busy_timeout`.
    pub(crate) busy_timeout: Duration,
}

impl Place {
    /// A [`Error::Backend`] about this database.
    pub(crate) fn backend(&self, message: impl std::fmt::Display) -> Error {
        Error::Backend {
            backend: KIND,
            message: format!("{}: {message}", self.name),
        }
    }

    /// The backend has been closed.
    pub(crate) fn closed(&self, operation: &str) -> Error {
        Error::Unavailable {
            backend: KIND,
            message: format!(
                "{}: {operation} after close(): the backend is closed",
                self.name
            ),
        }
    }

    /// Map an SQLite error.
    pub(crate) fn map(&self, e: rusqlite::Error) -> Error {
        let name = &self.name;
        let rusqlite::Error::SqliteFailure(failure, detail) = &e else {
            return self.backend(e);
        };
        let detail = detail.clone().unwrap_or_else(|| failure.to_string());
        let message = match failure.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                return Error::Unavailable {
                    backend: KIND,
                    message: format!(
                        "{name} is locked by another connection or program and stayed locked \
                         past the busy timeout ({:?}): {detail}; raise busy_timeout, or find \
                         the program holding the file",
                        self.busy_timeout
                    ),
                };
            }
            ErrorCode::NotADatabase => format!(
                "{name} is not a SQLite database (file is not a database): point the URL at a \
                 new file or an existing larder cache; this file was left as it is"
            ),
            ErrorCode::DatabaseCorrupt => format!(
                "{name} is corrupted ({detail}); it only holds a cache: close every program \
                 using it and delete it (with its -wal and -shm files) to start empty"
            ),
            ErrorCode::CannotOpen => format!("cannot open {name}: {detail}"),
            ErrorCode::ReadOnly | ErrorCode::PermissionDenied => {
                format!(
                    "cannot write {name}: {detail}; larder needs to write the file and its directory"
                )
            }
            ErrorCode::DiskFull => format!("cannot write {name}: the disk is full ({detail})"),
            ErrorCode::SystemIoFailure => format!("{name}: I/O error ({detail})"),
            _ => format!("{name}: {detail}"),
        };
        Error::Backend {
            backend: KIND,
            message,
        }
    }

    /// Explain why `path` cannot be opened or created, from the file system
    /// itself; `None` when nothing is visibly wrong.
    pub(crate) fn diagnose_open(&self, path: &Path) -> Option<Error> {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => Path::new(".").to_path_buf(),
        };
        let fail = |why: String| {
            Some(Error::Backend {
                backend: KIND,
                message: format!("cannot open {}: {why}", self.name),
            })
        };
        match std::fs::metadata(&parent) {
            Err(e) => {
                return fail(format!(
                    "its directory {} cannot be used ({e}); create it first",
                    parent.display()
                ));
            }
            Ok(meta) if !meta.is_dir() => {
                return fail(format!("{} is not a directory", parent.display()));
            }
            Ok(_) => {}
        }
        // SQLite creates the file and, in WAL mode, `-wal` and `-shm` files
        // beside it: the directory must take new files.
        let probe = parent.join(format!(".larder-probe-{}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
        {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return fail(format!(
                    "the directory {} is not writable ({e}); SQLite needs to create the \
                     database and its -wal and -shm files there",
                    parent.display()
                ));
            }
        }
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.is_dir() {
                return fail("it is a directory".to_owned());
            }
            if meta.permissions().readonly() {
                return fail("the file is read-only".to_owned());
            }
        }
        None
    }
}
