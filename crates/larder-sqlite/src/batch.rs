//! Many keys at once: `get_many` in one read transaction, `set_many` and
//! `delete` as one job of the writer (so in one write transaction).

use bytes::Bytes;
use larder_core::{Result, WriteOptions};
use rusqlite::Connection;

use crate::error::Place;
use crate::fill::{self, Stamp};
use crate::tags::{self, Row};
use crate::writer::Tx;

/// Live values of `keys`, in order, read in one transaction.
pub(crate) fn get_many(
    conn: &Connection,
    keys: &[String],
    now: i64,
    place: &Place,
) -> Result<Vec<Option<Bytes>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    conn.execute_batch("BEGIN").map_err(|e| place.map(e))?;
    let read: Result<Vec<_>> = keys
        .iter()
        .map(|key| Ok(tags::live_value(conn, key, now, place)?.map(|(value, _)| value)))
        .collect();
    let ended = conn.execute_batch("COMMIT").map_err(|e| place.map(e));
    let read = read?;
    ended?;
    Ok(read)
}

/// Store every entry with the same options, each honouring the mode;
/// returns how many were written.
pub(crate) fn set_many(
    tx: &mut Tx<'_>,
    entries: &[(String, Bytes)],
    options: &WriteOptions,
) -> Result<u64> {
    let mut written = 0;
    for (key, value) in entries {
        written += u64::from(tags::set(tx, key, value, options)?);
    }
    Ok(written)
}

/// Delete `keys` with their tag rows, stamping each for the fill guard;
/// returns how many held a live value.
pub(crate) fn delete(tx: &mut Tx<'_>, keys: &[String]) -> Result<u64> {
    let stamps: Vec<Stamp<'_>> = keys.iter().map(|k| Stamp::Key(k)).collect();
    fill::stamp(tx, &stamps)?;
    let mut live = 0;
    for key in keys {
        let found = tags::row(tx.conn, key, tx.now, tx.place)?;
        if found != Row::Missing {
            tags::remove(tx, key)?;
        }
        live += u64::from(matches!(found, Row::Live(_)));
    }
    Ok(live)
}
