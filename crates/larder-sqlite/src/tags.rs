//! Writes, deletes and the tag index: every change to `entries` goes
//! through here so that a key's tag rows always change with it.
//!
//! Tags are native: the `tags` table holds one `(tag, key)` row per
//! membership, indexed both ways. A write replaces the key's rows, a
//! delete, expiry sweep or eviction removes them, so the index never holds
//! a key that is not in `entries`. Between an entry's expiry and the sweep
//! its rows stay, but every read filters on `expires_at`.

use std::time::Duration;

use bytes::Bytes;
use larder_core::{Count, Error, Result, SetMode, WriteOptions};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Place;
use crate::fill::{self, Stamp};
use crate::writer::Tx;

/// `ttl` in whole milliseconds, rounded up (a TTL under a millisecond
/// still expires, never lives forever). The caller has checked it with
/// `Error::check_ttl`, so it is at most a year.
pub(crate) fn ttl_ms(ttl: Duration) -> i64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000).max(1);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// `expires_at` for a TTL starting `now`.
pub(crate) fn expires_at(now: i64, ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|ttl| now.saturating_add(ttl_ms(ttl)))
}

/// The remaining life of a live row.
pub(crate) fn remaining(expires_at: i64, now: i64) -> Duration {
    Duration::from_millis(u64::try_from(expires_at.saturating_sub(now)).unwrap_or(0))
}

/// What `entries` holds under a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Row {
    /// No row.
    Missing,
    /// A row whose time has passed (not yet swept).
    Expired,
    /// A live row, expiring at this time (ms) or never.
    Live(Option<i64>),
}

/// The state of `key` at `now`.
pub(crate) fn row(conn: &Connection, key: &str, now: i64, place: &Place) -> Result<Row> {
    let found: Option<Option<i64>> = conn
        .prepare_cached("SELECT expires_at FROM entries WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(|e| place.map(e))?;
    Ok(match found {
        None => Row::Missing,
        Some(Some(at)) if at <= now => Row::Expired,
        Some(at) => Row::Live(at),
    })
}

/// Store `value` under `key` with its tags, replacing whatever was there
/// (value, expiry and tag rows). `existed`: a row was there before.
pub(crate) fn put(
    tx: &mut Tx<'_>,
    key: &str,
    value: &[u8],
    expires_at: Option<i64>,
    tags: &[String],
    existed: bool,
) -> Result<()> {
    tx.conn
        .prepare_cached(
            "INSERT INTO entries (key, value, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
        )
        .and_then(|mut s| s.execute(params![key, value, expires_at]))
        .map_err(|e| tx.map(e))?;
    if existed {
        drop_tag_rows(tx, key)?;
    } else {
        tx.state.added();
    }
    if !tags.is_empty() {
        let mut insert = tx
            .conn
            .prepare_cached("INSERT OR IGNORE INTO tags (tag, key) VALUES (?1, ?2)")
            .map_err(|e| tx.map(e))?;
        for tag in tags {
            insert.execute([tag, key]).map_err(|e| tx.map(e))?;
        }
    }
    Ok(())
}

fn drop_tag_rows(tx: &Tx<'_>, key: &str) -> Result<()> {
    tx.conn
        .prepare_cached("DELETE FROM tags WHERE key = ?1")
        .and_then(|mut s| s.execute([key]))
        .map_err(|e| tx.map(e))?;
    Ok(())
}

/// Remove `key` and its tag rows. Returns whether a row was there.
pub(crate) fn remove(tx: &mut Tx<'_>, key: &str) -> Result<bool> {
    let n = tx
        .conn
        .prepare_cached("DELETE FROM entries WHERE key = ?1")
        .and_then(|mut s| s.execute([key]))
        .map_err(|e| tx.map(e))?;
    if n > 0 {
        tx.state.removed(n as u64);
        drop_tag_rows(tx, key)?;
    }
    Ok(n > 0)
}

/// `set`: store unless the mode declines. An expired row counts as absent
/// (and is swept here, lazily, with its tag rows).
pub(crate) fn set(
    tx: &mut Tx<'_>,
    key: &str,
    value: &[u8],
    options: &WriteOptions,
) -> Result<bool> {
    let found = row(tx.conn, key, tx.now, tx.place)?;
    let live = matches!(found, Row::Live(_));
    let write = match options.mode {
        SetMode::IfAbsent => !live,
        SetMode::IfPresent => live,
        _ => true,
    };
    if !write {
        if found == Row::Expired {
            remove(tx, key)?;
        }
        return Ok(false);
    }
    let at = expires_at(tx.now, options.ttl);
    put(tx, key, value, at, &options.tags, found != Row::Missing)?;
    Ok(true)
}

/// Delete every key carrying one of `tags`; counts the live ones.
pub(crate) fn invalidate(tx: &mut Tx<'_>, tags: &[String]) -> Result<Count> {
    let stamps: Vec<Stamp<'_>> = tags.iter().map(|t| Stamp::Tag(t)).collect();
    fill::stamp(tx, &stamps)?;
    let mut deleted = 0u64;
    for tag in tags {
        let keys: Vec<(String, bool)> = tx
            .conn
            .prepare_cached(
                "SELECT t.key, e.expires_at IS NULL OR e.expires_at > ?2
                 FROM tags t JOIN entries e ON e.key = t.key WHERE t.tag = ?1",
            )
            .and_then(|mut s| {
                s.query_map(params![tag, tx.now], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(|e| tx.map(e))?;
        for (key, live) in keys {
            if remove(tx, &key)? && live {
                deleted += 1;
            }
        }
        // Rows of keys missing from `entries` should not exist; remove any.
        tx.conn
            .prepare_cached("DELETE FROM tags WHERE tag = ?1")
            .and_then(|mut s| s.execute([tag]))
            .map_err(|e| tx.map(e))?;
    }
    Ok(Count::Exact(deleted))
}

/// The tags of `key`, sorted.
pub(crate) fn tags_of(conn: &Connection, key: &str, place: &Place) -> Result<Vec<String>> {
    conn.prepare_cached("SELECT tag FROM tags WHERE key = ?1 ORDER BY tag")
        .and_then(|mut s| s.query_map([key], |r| r.get(0))?.collect())
        .map_err(|e| place.map(e))
}

/// Up to `limit` live keys carrying `tag`, sorted.
pub(crate) fn members(
    conn: &Connection,
    tag: &str,
    limit: usize,
    now: i64,
    place: &Place,
) -> Result<Vec<String>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "SELECT t.key FROM tags t JOIN entries e ON e.key = t.key
         WHERE t.tag = ?1 AND (e.expires_at IS NULL OR e.expires_at > ?2)
         ORDER BY t.key LIMIT ?3",
    )
    .and_then(|mut s| {
        s.query_map(params![tag, now, limit], |r| r.get(0))?
            .collect()
    })
    .map_err(|e| place.map(e))
}

/// Every key the index holds for `tag`, live or not, sorted.
pub(crate) fn raw_index(conn: &Connection, tag: &str, place: &Place) -> Result<Vec<String>> {
    conn.prepare_cached("SELECT key FROM tags WHERE tag = ?1 ORDER BY key")
        .and_then(|mut s| s.query_map([tag], |r| r.get(0))?.collect())
        .map_err(|e| place.map(e))
}

/// Remove up to `limit` expired entries with their tag rows; returns how
/// many.
pub(crate) fn sweep_expired(tx: &mut Tx<'_>, limit: usize) -> Result<usize> {
    let keys: Vec<String> = tx
        .conn
        .prepare_cached(
            "SELECT key FROM entries WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
        )
        .and_then(|mut s| {
            s.query_map(
                params![tx.now, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| r.get(0),
            )?
            .collect()
        })
        .map_err(|e| tx.map(e))?;
    for key in &keys {
        remove(tx, key)?;
    }
    Ok(keys.len())
}

/// Keep `entries` within `max_entries`: expired rows go first, then the
/// soonest to expire, then the oldest rows without expiry. Evicted keys
/// leave their tags. Runs at the end of each write transaction.
pub(crate) fn enforce_bound(tx: &mut Tx<'_>) -> Result<()> {
    let Some(max) = tx.state.max_entries else {
        return Ok(());
    };
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let over = tx.state.count - max;
    if over <= 0 {
        return Ok(());
    }
    let mut victims: Vec<(String, bool)> = tx
        .conn
        .prepare_cached(
            "SELECT key, expires_at > ?2 FROM entries WHERE expires_at IS NOT NULL
             ORDER BY expires_at LIMIT ?1",
        )
        .and_then(|mut s| {
            s.query_map(params![over, tx.now], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(|e| tx.map(e))?;
    let rest = over - i64::try_from(victims.len()).unwrap_or(0);
    if rest > 0 {
        let persistent: Vec<String> = tx
            .conn
            .prepare_cached(
                "SELECT key FROM entries WHERE expires_at IS NULL ORDER BY rowid LIMIT ?1",
            )
            .and_then(|mut s| s.query_map([rest], |r| r.get(0))?.collect())
            .map_err(|e| tx.map(e))?;
        victims.extend(persistent.into_iter().map(|k| (k, true)));
    }
    let mut evicted = 0u64;
    for (key, live) in victims {
        if remove(tx, &key)? && live {
            evicted += 1;
        }
    }
    tx.state
        .evictions
        .fetch_add(evicted, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Read a live value and its expiry.
pub(crate) fn live_value(
    conn: &Connection,
    key: &str,
    now: i64,
    place: &Place,
) -> Result<Option<(Bytes, Option<i64>)>> {
    conn.prepare_cached(
        "SELECT value, expires_at FROM entries
         WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
    )
    .and_then(|mut s| {
        s.query_row(params![key, now], |r| {
            Ok((Bytes::from(r.get::<_, Vec<u8>>(0)?), r.get(1)?))
        })
        .optional()
    })
    .map_err(|e| place.map(e))
}

/// `incr`: add `delta` to the decimal integer under `key`, creating it at
/// `delta` with `ttl` when missing (or expired). An existing key keeps its
/// expiry and tags.
pub(crate) fn incr(tx: &mut Tx<'_>, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
    match live_value(tx.conn, key, tx.now, tx.place)? {
        None => {
            // An expired row goes first, with its tag rows.
            remove(tx, key)?;
            let text = delta.to_string();
            put(
                tx,
                key,
                text.as_bytes(),
                expires_at(tx.now, ttl),
                &[],
                false,
            )?;
            Ok(delta)
        }
        Some((value, _)) => {
            let current = parse_counter(&value).ok_or_else(|| Error::NotAnInteger {
                key: key.to_owned(),
            })?;
            let next = current.checked_add(delta).ok_or_else(|| {
                tx.place.backend(format!(
                    "incr of key {key:?} by {delta} would overflow a 64-bit counter ({current})"
                ))
            })?;
            tx.conn
                .prepare_cached("UPDATE entries SET value = ?2 WHERE key = ?1")
                .and_then(|mut s| s.execute(params![key, next.to_string().as_bytes()]))
                .map_err(|e| tx.map(e))?;
            Ok(next)
        }
    }
}

/// A counter's value: an optional `-` and decimal digits, nothing else.
fn parse_counter(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_strict_decimals() {
        assert_eq!(parse_counter(b"42"), Some(42));
        assert_eq!(parse_counter(b"-7"), Some(-7));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1.0",
            b"\xffL",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_counter(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ttls_round_up_to_a_millisecond() {
        assert_eq!(ttl_ms(Duration::from_micros(1)), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_ms(Duration::from_secs(2)), 2000);
        assert_eq!(expires_at(1000, None), None);
        assert_eq!(expires_at(1000, Some(Duration::from_secs(1))), Some(2000));
        assert_eq!(remaining(2000, 1500), Duration::from_millis(500));
        assert_eq!(remaining(1000, 1500), Duration::ZERO);
    }
}
