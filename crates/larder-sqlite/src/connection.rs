//! Opening the database: the writer connection (WAL, `synchronous`, busy
//! timeout, schema migration) and the pool of read-only connections.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use larder_core::Result;
use larder_core::sync::lock;
use rusqlite::{Connection, OpenFlags};

use crate::config::{Location, SqliteConfig};
use crate::error::Place;
use crate::schema;

/// Milliseconds since the Unix epoch: the clock of `expires_at` and of the
/// stamps. Wall-clock time, shared by every process using the file.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Prepared statements kept per connection: more than the distinct
/// statements the backend runs, so none is prepared twice.
const STATEMENT_CACHE: usize = 64;

/// What the connections open: a file path, or an in-memory database's URI.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A file, opened by path (no URI interpretation).
    File(std::path::PathBuf),
    /// `file:/larder-…?vfs=memdb`: an in-memory database that every
    /// connection of this process opening the same name shares, with
    /// ordinary file locking (so the busy timeout works as for a file).
    Memory(String),
}

impl Target {
    pub(crate) fn of(location: &Location) -> Self {
        match location {
            Location::File(path) => Target::File(path.clone()),
            Location::Memory => {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                Target::Memory(format!(
                    "file:/larder-{}-{n}-{nanos:x}?vfs=memdb",
                    std::process::id()
                ))
            }
        }
    }

    fn open(&self, read_only: bool) -> rusqlite::Result<Connection> {
        let mode = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        };
        let flags = mode | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        match self {
            Target::File(path) => Connection::open_with_flags(path, flags),
            Target::Memory(uri) => {
                Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
            }
        }
    }
}

/// Open the writer connection: create the file if needed, switch to WAL
/// (checking SQLite's answer), set `synchronous` and the busy timeout, and
/// migrate the schema.
pub(crate) fn open_writer(
    config: &SqliteConfig,
    target: &Target,
    place: &Place,
) -> Result<Connection> {
    let conn = target
        .open(false)
        .map_err(|e| open_error(target, place, e))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.busy_timeout(config.busy_timeout)
        .map_err(|e| place.map(e))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| open_error(target, place, e))?;
    if matches!(target, Target::File(_)) && !mode.eq_ignore_ascii_case("wal") {
        return Err(place.backend(format!(
            "SQLite answered journal_mode={mode} when asked for WAL: the file system may not \
             support the shared memory WAL needs (a network file system?), or another program \
             holds the file in another mode; put the cache on a local disk"
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {};
         PRAGMA foreign_keys = OFF;
         PRAGMA journal_size_limit = 67108864;",
        config.synchronous.pragma()
    ))
    .map_err(|e| place.map(e))?;
    schema::migrate(&conn, place)?;
    Ok(conn)
}

/// An open failure, explained from the file system when SQLite's own words
/// (`unable to open database file`) do not say why.
fn open_error(target: &Target, place: &Place, e: rusqlite::Error) -> larder_core::Error {
    use rusqlite::ErrorCode;
    if let (Target::File(path), Some(code)) = (target, e.sqlite_error_code())
        && matches!(
            code,
            ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
                | ErrorCode::PermissionDenied
                | ErrorCode::SystemIoFailure
        )
        && let Some(explained) = place.diagnose_open(path)
    {
        return explained;
    }
    place.map(e)
}

/// Read-only connections, handed out one per running read.
#[derive(Debug)]
pub(crate) struct Readers {
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
    closed: AtomicBool,
    place: Place,
}

impl Readers {
    /// Open `n` read-only connections to `target`.
    pub(crate) fn open(
        config: &SqliteConfig,
        target: &Target,
        place: &Place,
        n: usize,
    ) -> Result<Self> {
        let mut idle = Vec::with_capacity(n);
        for _ in 0..n {
            let conn = target
                .open(true)
                .map_err(|e| open_error(target, place, e))?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            conn.busy_timeout(config.busy_timeout)
                .map_err(|e| place.map(e))?;
            conn.execute_batch("PRAGMA query_only = ON;")
                .map_err(|e| place.map(e))?;
            idle.push(conn);
        }
        Ok(Readers {
            idle: Mutex::new(idle),
            returned: Condvar::new(),
            closed: AtomicBool::new(false),
            place: place.clone(),
        })
    }

    /// Run `read` on an idle connection, waiting (up to the busy timeout)
    /// for one when all are busy.
    pub(crate) fn with<T>(
        &self,
        operation: &'static str,
        read: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        let conn = self.take(operation)?;
        let lease = Lease {
            readers: self,
            conn: Some(conn),
        };
        match &lease.conn {
            Some(conn) => read(conn),
            None => Err(self.place.closed(operation)),
        }
    }

    fn take(&self, operation: &'static str) -> Result<Connection> {
        let deadline = Instant::now() + self.place.busy_timeout.max(Duration::from_secs(1));
        let mut idle = lock(&self.idle);
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(self.place.closed(operation));
            }
            if let Some(conn) = idle.pop() {
                return Ok(conn);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(larder_core::Error::Unavailable {
                    backend: crate::error::KIND,
                    message: format!(
                        "{}: {operation} found every read connection busy for {:?}",
                        self.place.name, self.place.busy_timeout
                    ),
                });
            }
            idle = self
                .returned
                .wait_timeout(idle, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Close every connection: idle ones now, busy ones when their read
    /// ends. Later reads fail.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        lock(&self.idle).clear();
        self.returned.notify_all();
    }
}

/// A connection out of the pool, returned on drop (even if the read
/// panicked).
struct Lease<'a> {
    readers: &'a Readers,
    conn: Option<Connection>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !self.readers.closed.load(Ordering::Acquire)
        {
            lock(&self.readers.idle).push(conn);
            self.readers.returned.notify_one();
        }
    }
}

/// The path shown in messages for a target.
pub(crate) fn display_name(location: &Location) -> String {
    match location {
        Location::File(path) => Path::new(path).display().to_string(),
        Location::Memory => ":memory:".to_owned(),
    }
}
