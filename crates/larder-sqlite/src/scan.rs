//! Patterns, `scan` and `clear`.
//!
//! Patterns have larder's glob semantics ([`larder_core::glob`]), never
//! SQLite's `GLOB` or `LIKE` (their classes, escapes and case rules
//! differ): the pattern's literal prefix narrows the read to a range of the
//! primary key (`key >= prefix AND key < successor(prefix)`), and every key
//! in that range is checked with [`Glob::matches`]. A pattern that starts
//! with a wildcard reads the whole table.

use larder_core::glob::Glob;
use larder_core::{Count, Result};
use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use crate::error::Place;
use crate::fill::{self, Stamp};
use crate::tags;
use crate::writer::Tx;

/// The smallest string greater than every string starting with `prefix`
/// (in SQLite's byte order, which for UTF-8 is code point order); `None`
/// when there is none (an empty prefix, or one of `char::MAX` only).
pub(crate) fn successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        // Skip the surrogate gap.
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// `WHERE` clause and parameters selecting the keys (of column `column`)
/// that start with `prefix`.
fn range(column: &str, prefix: &str) -> (String, Vec<Value>) {
    if prefix.is_empty() {
        return ("1".to_owned(), Vec::new());
    }
    match successor(prefix) {
        Some(upper) => (
            format!("{column} >= ? AND {column} < ?"),
            vec![Value::Text(prefix.to_owned()), Value::Text(upper)],
        ),
        None => (
            format!("{column} >= ?"),
            vec![Value::Text(prefix.to_owned())],
        ),
    }
}

/// Walk the keys in the range of `glob`'s literal prefix, in key order,
/// with whether each is live; `visit` returns `false` to stop.
fn walk(
    conn: &Connection,
    glob: &Glob,
    now: i64,
    place: &Place,
    mut visit: impl FnMut(String, bool) -> bool,
) -> Result<()> {
    let (condition, mut args) = range("key", &glob.literal_prefix());
    let sql = format!(
        "SELECT key, expires_at IS NULL OR expires_at > ? FROM entries WHERE {condition} ORDER BY key"
    );
    args.insert(0, Value::Integer(now));
    let mut statement = conn.prepare_cached(&sql).map_err(|e| place.map(e))?;
    let mut rows = statement
        .query(params_from_iter(args))
        .map_err(|e| place.map(e))?;
    while let Some(row) = rows.next().map_err(|e| place.map(e))? {
        let key: String = row.get(0).map_err(|e| place.map(e))?;
        let live: bool = row.get(1).map_err(|e| place.map(e))?;
        if glob.matches(&key) && !visit(key, live) {
            break;
        }
    }
    Ok(())
}

/// Up to `limit` live keys matching `pattern`, each once, in key order.
pub(crate) fn scan(
    conn: &Connection,
    pattern: &str,
    limit: usize,
    now: i64,
    place: &Place,
) -> Result<Vec<String>> {
    let glob = Glob::new(pattern)?;
    let mut found = Vec::new();
    if limit == 0 {
        return Ok(found);
    }
    walk(conn, &glob, now, place, |key, live| {
        if live {
            found.push(key);
        }
        found.len() < limit
    })?;
    Ok(found)
}

/// Delete every key matching `pattern` (expired ones too, silently);
/// returns how many live ones. Stamps the pattern for the fill guard.
pub(crate) fn delete_matching(tx: &mut Tx<'_>, glob: &Glob, pattern: &str) -> Result<Count> {
    fill::stamp(tx, &[Stamp::Pattern(pattern)])?;
    let mut keys = Vec::new();
    walk(tx.conn, glob, tx.now, tx.place, |key, live| {
        keys.push((key, live));
        true
    })?;
    let mut live_deleted = 0u64;
    for (key, live) in keys {
        if tags::remove(tx, &key)? && live {
            live_deleted += 1;
        }
    }
    Ok(Count::Exact(live_deleted))
}

/// Delete every entry, tag row and lock whose key (or tag) starts with
/// `prefix`; returns how many live entries. Stamps the prefix for the fill
/// guard.
pub(crate) fn clear(tx: &mut Tx<'_>, prefix: &str) -> Result<Count> {
    fill::stamp(tx, &[Stamp::Prefix(prefix)])?;
    let (keys, args) = range("key", prefix);
    let live: i64 = {
        let sql = format!(
            "SELECT count(*) FROM entries WHERE {keys} AND (expires_at IS NULL OR expires_at > ?)"
        );
        let mut with_now = args.clone();
        with_now.push(Value::Integer(tx.now));
        tx.conn
            .prepare_cached(&sql)
            .and_then(|mut s| s.query_row(params_from_iter(with_now), |r| r.get(0)))
            .map_err(|e| tx.map(e))?
    };
    let removed = run(tx, &format!("DELETE FROM entries WHERE {keys}"), &args)?;
    tx.state.removed(removed);
    run(tx, &format!("DELETE FROM tags WHERE {keys}"), &args)?;
    let (tag_names, tag_args) = range("tag", prefix);
    run(
        tx,
        &format!("DELETE FROM tags WHERE {tag_names}"),
        &tag_args,
    )?;
    run(tx, &format!("DELETE FROM locks WHERE {keys}"), &args)?;
    Ok(Count::Exact(u64::try_from(live).unwrap_or(0)))
}

fn run(tx: &Tx<'_>, sql: &str, args: &[Value]) -> Result<u64> {
    tx.conn
        .prepare_cached(sql)
        .and_then(|mut s| s.execute(params_from_iter(args.iter())))
        .map(|n| n as u64)
        .map_err(|e| tx.map(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successors_bound_every_extension() {
        assert_eq!(successor("ab").as_deref(), Some("ac"));
        assert_eq!(successor("a:").as_deref(), Some("a;"));
        assert_eq!(successor(""), None);
        assert_eq!(successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(successor("\u{10FFFF}"), None);
        assert_eq!(successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
        for key in ["ab", "ab:", "ab\u{10FFFF}\u{10FFFF}", "abé"] {
            let upper = successor("ab").unwrap_or_default();
            assert!(key.as_bytes() < upper.as_bytes(), "{key}");
        }
        assert!("ac".as_bytes() >= successor("ab").unwrap_or_default().as_bytes());
    }
}
