//! The schema, its version (`PRAGMA user_version`) and the migrations that
//! bring an older database up to it.
//!
//! Version 1:
//!
//! ```sql
//! entries (key TEXT PRIMARY KEY, value BLOB, expires_at INTEGER)  -- ms since the epoch, NULL: never
//! entries_expires_at ON entries (expires_at)
//! tags    (tag TEXT, key TEXT, PRIMARY KEY (tag, key)) WITHOUT ROWID
//! tags_by_key ON tags (key, tag)
//! locks   (key TEXT PRIMARY KEY, token TEXT, expires_at INTEGER) WITHOUT ROWID
//! stamps  (kind INTEGER, name TEXT, seq INTEGER, at INTEGER, PRIMARY KEY (kind, name)) WITHOUT ROWID
//! stamps_at ON stamps (at)
//! meta    (name TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID  -- stamp_seq, swept_seq
//! ```
//!
//! A migration step upgrades from one version to the next; opening runs
//! every step from the database's version to [`SCHEMA_VERSION`] in one
//! `IMMEDIATE` transaction, so two processes opening an old file at once
//! migrate it once. A database with a newer version is refused, naming the
//! file and both versions.

use larder_core::Result;
use rusqlite::Connection;

use crate::error::Place;

/// The version this crate writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

/// One migration: from version `i` to `i + 1` (its index in the list).
pub(crate) type Step = fn(&Connection) -> rusqlite::Result<()>;

/// Every migration, in order: `STEPS[i]` upgrades version `i` to `i + 1`.
const STEPS: &[Step] = &[create_v1];

/// Version 0 (an empty file) to version 1.
fn create_v1(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE entries (
             key TEXT PRIMARY KEY NOT NULL,
             value BLOB NOT NULL,
             expires_at INTEGER
         );
         CREATE INDEX entries_expires_at ON entries (expires_at);
         CREATE TABLE tags (
             tag TEXT NOT NULL,
             key TEXT NOT NULL,
             PRIMARY KEY (tag, key)
         ) WITHOUT ROWID;
         CREATE INDEX tags_by_key ON tags (key, tag);
         CREATE TABLE locks (
             key TEXT PRIMARY KEY NOT NULL,
             token TEXT NOT NULL,
             expires_at INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE stamps (
             kind INTEGER NOT NULL,
             name TEXT NOT NULL,
             seq INTEGER NOT NULL,
             at INTEGER NOT NULL,
             PRIMARY KEY (kind, name)
         ) WITHOUT ROWID;
         CREATE INDEX stamps_at ON stamps (at);
         CREATE TABLE meta (
             name TEXT PRIMARY KEY NOT NULL,
             value INTEGER NOT NULL
         ) WITHOUT ROWID;
         INSERT INTO meta (name, value) VALUES ('stamp_seq', 0), ('swept_seq', 0);",
    )
}

/// Bring the database on `conn` (the writer) to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &Connection, place: &Place) -> Result<()> {
    migrate_with(conn, place, STEPS)
}

/// The database's schema version.
pub(crate) fn version(conn: &Connection, place: &Place) -> Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| place.map(e))
}

/// [`migrate`] with the given steps (tests use their own list).
pub(crate) fn migrate_with(conn: &Connection, place: &Place, steps: &[Step]) -> Result<()> {
    let target = i64::try_from(steps.len()).unwrap_or(i64::MAX);
    let found = version(conn, place)?;
    if found == target {
        return Ok(());
    }
    check_not_newer(found, target, place)?;
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| place.map(e))?;
    let outcome = apply(conn, place, steps, target);
    let end = if outcome.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    let ended = conn.execute_batch(end).map_err(|e| place.map(e));
    outcome.and(ended)
}

fn apply(conn: &Connection, place: &Place, steps: &[Step], target: i64) -> Result<()> {
    // Another process may have migrated while we waited for the lock.
    let found = version(conn, place)?;
    check_not_newer(found, target, place)?;
    if found == 0 {
        let foreign: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .and_then(|mut s| {
                s.query_map([], |row| row.get::<_, String>(0))?
                    .collect::<rusqlite::Result<_>>()
            })
            .map_err(|e| place.map(e))?;
        if !foreign.is_empty() {
            return Err(place.backend(format!(
                "this SQLite database is not a larder cache (schema version 0 and tables {}): \
                 point the URL at a new file",
                foreign.join(", ")
            )));
        }
    }
    for (from, step) in steps
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        step(conn).map_err(|e| {
            place.backend(format!(
                "migrating the schema from version {from} to {} failed: {}",
                from + 1,
                place.map(e)
            ))
        })?;
    }
    conn.pragma_update(None, "user_version", target)
        .map_err(|e| place.map(e))?;
    tracing::info!(database = %place.name, from = found, to = target, "sqlite schema migrated");
    Ok(())
}

fn check_not_newer(found: i64, target: i64, place: &Place) -> Result<()> {
    if found > target {
        return Err(place.backend(format!(
            "its schema version is {found}, newer than the version {target} this larder-sqlite \
             knows: a newer larder wrote it; upgrade larder, or point the URL at another file"
        )));
    }
    if found < 0 {
        return Err(place.backend(format!(
            "its schema version is {found}, not one larder writes: point the URL at a new file"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn place() -> Place {
        Place {
            name: Arc::from("test.db"),
            busy_timeout: Duration::from_secs(1),
        }
    }

    fn step_a(conn: &Connection) -> rusqlite::Result<()> {
        conn.execute_batch("CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1);")
    }

    fn step_b(conn: &Connection) -> rusqlite::Result<()> {
        conn.execute_batch("ALTER TABLE a ADD COLUMN y INTEGER DEFAULT 2;")
    }

    fn broken(conn: &Connection) -> rusqlite::Result<()> {
        conn.execute_batch("CREATE TABLE c (x INTEGER); SELECT * FROM missing;")
    }

    #[test]
    fn upgrades_from_each_older_version() {
        let conn = Connection::open_in_memory().unwrap();
        migrate_with(&conn, &place(), &[step_a]).unwrap();
        assert_eq!(version(&conn, &place()).unwrap(), 1);
        migrate_with(&conn, &place(), &[step_a, step_b]).unwrap();
        assert_eq!(version(&conn, &place()).unwrap(), 2);
        let y: i64 = conn.query_row("SELECT y FROM a", [], |r| r.get(0)).unwrap();
        assert_eq!(y, 2);
        // From nothing straight to the last version.
        let fresh = Connection::open_in_memory().unwrap();
        migrate_with(&fresh, &place(), &[step_a, step_b]).unwrap();
        assert_eq!(version(&fresh, &place()).unwrap(), 2);
        // Up to date: nothing to do.
        migrate_with(&fresh, &place(), &[step_a, step_b]).unwrap();
    }

    #[test]
    fn a_failed_step_changes_nothing() {
        let conn = Connection::open_in_memory().unwrap();
        migrate_with(&conn, &place(), &[step_a]).unwrap();
        let err = migrate_with(&conn, &place(), &[step_a, step_b, broken])
            .unwrap_err()
            .to_string();
        assert!(err.contains("from version 2 to 3"), "{err}");
        assert_eq!(version(&conn, &place()).unwrap(), 1);
        let has_y = conn.query_row("SELECT y FROM a", [], |r| r.get::<_, i64>(0));
        assert!(has_y.is_err(), "step b was rolled back");
    }

    #[test]
    fn newer_versions_are_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 7).unwrap();
        let err = migrate_with(&conn, &place(), &[step_a])
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.db"), "{err}");
        assert!(err.contains("version is 7"), "{err}");
        assert!(err.contains("version 1"), "{err}");
    }

    #[test]
    fn foreign_databases_are_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE invoices (id INTEGER)")
            .unwrap();
        let err = migrate(&conn, &place()).unwrap_err().to_string();
        assert!(err.contains("not a larder cache"), "{err}");
        assert!(err.contains("invoices"), "{err}");
    }

    #[test]
    fn the_real_schema_applies() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn, &place()).unwrap();
        assert_eq!(version(&conn, &place()).unwrap(), SCHEMA_VERSION);
    }
}
