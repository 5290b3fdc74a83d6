//! The fill guard ([`FillGuard::Atomic`](larder_core::FillGuard::Atomic)).
//!
//! Every invalidation (`delete`, `get_delete`, `invalidate_tags`,
//! `delete_matching`, `clear`) takes the next number of a sequence kept in
//! the database (`meta.stamp_seq`) and stamps what it invalidated with it,
//! in the same transaction as the deletion: the key, the tag, the pattern
//! or the namespace prefix. `begin_fill` reads the value and the sequence
//! in one read transaction; the sequence number is the fill token.
//! `set_filled` runs in the writer's `IMMEDIATE` transaction and refuses
//! the store when the key, one of its tags, a prefix of it or a pattern
//! matching it carries a stamp newer than the token: the check and the
//! write are one step, and the sequence orders invalidations of every
//! process sharing the file.
//!
//! Stamps older than [`MAX_FILL_AGE`](larder_core::MAX_FILL_AGE) are
//! swept; the highest swept number is kept (`meta.swept_seq`), and a token
//! older than it is refused, since a stamp it should be checked against
//! may be gone.

use bytes::Bytes;
use larder_core::glob::Glob;
use larder_core::{FillStore, FillToken, MAX_FILL_AGE, Result, WriteOptions};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Place;
use crate::tags;
use crate::writer::Tx;

/// What an invalidation stamps.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stamp<'a> {
    /// One key.
    Key(&'a str),
    /// One tag.
    Tag(&'a str),
    /// Every key starting with this (a namespace, by `clear`).
    Prefix(&'a str),
    /// Every key matching this glob (by `delete_matching`).
    Pattern(&'a str),
}

impl Stamp<'_> {
    fn kind(self) -> i64 {
        match self {
            Stamp::Key(_) => 0,
            Stamp::Tag(_) => 1,
            Stamp::Prefix(_) => 2,
            Stamp::Pattern(_) => 3,
        }
    }

    fn name(&self) -> &str {
        match self {
            Stamp::Key(n) | Stamp::Tag(n) | Stamp::Prefix(n) | Stamp::Pattern(n) => n,
        }
    }
}

/// Stamp `what` with the next sequence number, in the caller's
/// transaction.
pub(crate) fn stamp(tx: &mut Tx<'_>, what: &[Stamp<'_>]) -> Result<()> {
    if what.is_empty() {
        return Ok(());
    }
    let seq: i64 = tx
        .conn
        .prepare_cached(
            "UPDATE meta SET value = value + 1 WHERE name = 'stamp_seq' RETURNING value",
        )
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(|e| tx.map(e))?;
    let mut insert = tx
        .conn
        .prepare_cached(
            "INSERT INTO stamps (kind, name, seq, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, name) DO UPDATE SET seq = excluded.seq, at = excluded.at",
        )
        .map_err(|e| tx.map(e))?;
    for s in what {
        insert
            .execute(params![s.kind(), s.name(), seq, tx.now])
            .map_err(|e| tx.map(e))?;
    }
    Ok(())
}

/// The live value of `key` and a fill token, read in one transaction.
pub(crate) fn begin(
    conn: &Connection,
    key: &str,
    now: i64,
    place: &Place,
) -> Result<(Option<Bytes>, FillToken)> {
    let (value, seq): (Option<Vec<u8>>, i64) = conn
        .prepare_cached(
            "SELECT (SELECT value FROM entries
                     WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)),
                    (SELECT value FROM meta WHERE name = 'stamp_seq')",
        )
        .and_then(|mut s| s.query_row(params![key, now], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(|e| place.map(e))?;
    let token = FillToken::new(u64::try_from(seq).unwrap_or(0));
    Ok((value.map(Bytes::from), token))
}

/// `set_filled`: store unless something the value depends on was stamped
/// after `token`, or the mode declines.
pub(crate) fn set_filled(
    tx: &mut Tx<'_>,
    key: &str,
    value: &[u8],
    options: &WriteOptions,
    token: FillToken,
) -> Result<FillStore> {
    if invalidated_since(tx, key, &options.tags, token)? {
        return Ok(FillStore::Refused);
    }
    Ok(if tags::set(tx, key, value, options)? {
        FillStore::Stored
    } else {
        FillStore::Declined
    })
}

fn invalidated_since(tx: &Tx<'_>, key: &str, tags: &[String], token: FillToken) -> Result<bool> {
    let token = i64::try_from(token.reading()).unwrap_or(i64::MAX);
    let meta = |name: &str| -> Result<i64> {
        tx.conn
            .prepare_cached("SELECT value FROM meta WHERE name = ?1")
            .and_then(|mut s| s.query_row([name], |r| r.get(0)))
            .map_err(|e| tx.map(e))
    };
    if meta("swept_seq")? > token {
        return Ok(true);
    }
    let mut newer = tx
        .conn
        .prepare_cached("SELECT seq FROM stamps WHERE kind = ?1 AND name = ?2")
        .map_err(|e| tx.map(e))?;
    let mut stamped = |s: Stamp<'_>| -> Result<bool> {
        let seq: Option<i64> = newer
            .query_row(params![s.kind(), s.name()], |r| r.get(0))
            .optional()
            .map_err(|e| tx.map(e))?;
        Ok(seq.is_some_and(|seq| seq > token))
    };
    if stamped(Stamp::Key(key))? {
        return Ok(true);
    }
    for tag in tags {
        if stamped(Stamp::Tag(tag))? {
            return Ok(true);
        }
    }
    // Prefixes and patterns: the few stamped since the token.
    let recent: Vec<(i64, String)> = tx
        .conn
        .prepare_cached("SELECT kind, name FROM stamps WHERE kind >= 2 AND seq > ?1")
        .and_then(|mut s| {
            s.query_map([token], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(|e| tx.map(e))?;
    for (kind, name) in recent {
        let hit = match kind {
            2 => key.starts_with(&name),
            // A pattern that no longer compiles cannot have been stamped;
            // be safe and refuse.
            _ => Glob::new(&name).map_or(true, |glob| glob.matches(key)),
        };
        if hit {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Sweep up to `limit` stamps older than `MAX_FILL_AGE`, remembering the
/// highest number swept. Returns how many.
pub(crate) fn sweep_stamps(tx: &mut Tx<'_>, limit: usize) -> Result<usize> {
    let age = i64::try_from(MAX_FILL_AGE.as_millis()).unwrap_or(i64::MAX);
    let before = tx.now.saturating_sub(age);
    let old: Vec<(i64, String, i64)> = tx
        .conn
        .prepare_cached("SELECT kind, name, seq FROM stamps WHERE at < ?1 ORDER BY at LIMIT ?2")
        .and_then(|mut s| {
            s.query_map(
                params![before, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?
            .collect()
        })
        .map_err(|e| tx.map(e))?;
    let Some(highest) = old.iter().map(|(_, _, seq)| *seq).max() else {
        return Ok(0);
    };
    let mut delete = tx
        .conn
        .prepare_cached("DELETE FROM stamps WHERE kind = ?1 AND name = ?2")
        .map_err(|e| tx.map(e))?;
    for (kind, name, _) in &old {
        delete.execute(params![kind, name]).map_err(|e| tx.map(e))?;
    }
    tx.conn
        .prepare_cached("UPDATE meta SET value = max(value, ?1) WHERE name = 'swept_seq'")
        .and_then(|mut s| s.execute([highest]))
        .map_err(|e| tx.map(e))?;
    Ok(old.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    use super::*;
    use crate::writer::State;

    fn database() -> (Connection, Place, State) {
        let place = Place {
            name: Arc::from("fill.db"),
            busy_timeout: Duration::from_secs(1),
        };
        let conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&conn, &place).unwrap();
        let state = State {
            max_entries: None,
            count: 0,
            evictions: Arc::new(AtomicU64::new(0)),
        };
        (conn, place, state)
    }

    fn fill(tx: &mut Tx<'_>, key: &str, tags: &[&str], token: FillToken) -> FillStore {
        let options = WriteOptions::new().tags(tags.iter().copied());
        set_filled(tx, key, b"v", &options, token).unwrap()
    }

    #[test]
    fn stamps_refuse_older_tokens_only() {
        let (conn, place, mut state) = database();
        let mut tx = Tx {
            conn: &conn,
            now: 1_000,
            place: &place,
            state: &mut state,
        };
        let (_, before) = begin(tx.conn, "ns:v1:k", 1_000, &place).unwrap();
        stamp(&mut tx, &[Stamp::Key("ns:v1:k")]).unwrap();
        stamp(&mut tx, &[Stamp::Tag("ns:v1:t")]).unwrap();
        stamp(&mut tx, &[Stamp::Prefix("other:v1:")]).unwrap();
        stamp(&mut tx, &[Stamp::Pattern("pat:*:x")]).unwrap();
        let (_, after) = begin(tx.conn, "ns:v1:k", 1_000, &place).unwrap();
        assert!(after.reading() > before.reading());
        assert_eq!(fill(&mut tx, "ns:v1:k", &[], before), FillStore::Refused);
        assert_eq!(
            fill(&mut tx, "ns:v1:j", &["ns:v1:t"], before),
            FillStore::Refused
        );
        assert_eq!(fill(&mut tx, "other:v1:j", &[], before), FillStore::Refused);
        assert_eq!(fill(&mut tx, "pat:1:x", &[], before), FillStore::Refused);
        assert_eq!(fill(&mut tx, "pat:1:y", &[], before), FillStore::Stored);
        assert_eq!(
            fill(&mut tx, "ns:v1:k", &["ns:v1:t"], after),
            FillStore::Stored
        );
    }

    #[test]
    fn tokens_older_than_a_swept_stamp_are_refused() {
        let (conn, place, mut state) = database();
        let mut tx = Tx {
            conn: &conn,
            now: 1_000,
            place: &place,
            state: &mut state,
        };
        let (_, old) = begin(tx.conn, "a", 1_000, &place).unwrap();
        stamp(&mut tx, &[Stamp::Key("unrelated")]).unwrap();
        let (_, newer) = begin(tx.conn, "a", 1_000, &place).unwrap();
        // Not yet old enough to sweep.
        assert_eq!(sweep_stamps(&mut tx, 100).unwrap(), 0);
        assert_eq!(fill(&mut tx, "a", &[], old), FillStore::Stored);
        tx.now = 1_000 + i64::try_from(MAX_FILL_AGE.as_millis()).unwrap() + 1;
        assert_eq!(sweep_stamps(&mut tx, 100).unwrap(), 1);
        // The stamp `old` would need is gone: refuse, whatever the key.
        assert_eq!(fill(&mut tx, "b", &[], old), FillStore::Refused);
        assert_eq!(fill(&mut tx, "b", &[], newer), FillStore::Stored);
    }
}
