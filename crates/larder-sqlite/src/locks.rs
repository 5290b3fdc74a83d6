//! Token-checked locks in their own table: a lock is taken when it is free
//! (never taken, released, or expired), released only by its holder's
//! token while it has not expired. Lock keys never appear in `entries`.

use std::time::Duration;

use larder_core::Result;
use rusqlite::params;

use crate::tags::expires_at;
use crate::writer::Tx;

/// Take `key` for `ttl` if it is free; returns whether it was taken.
pub(crate) fn lock(tx: &mut Tx<'_>, key: &str, token: &str, ttl: Duration) -> Result<bool> {
    let until = expires_at(tx.now, Some(ttl));
    let n = tx
        .conn
        .prepare_cached(
            "INSERT INTO locks (key, token, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
             WHERE locks.expires_at <= ?4",
        )
        .and_then(|mut s| s.execute(params![key, token, until, tx.now]))
        .map_err(|e| tx.map(e))?;
    Ok(n == 1)
}

/// Release `key` if `token` holds it; returns whether it was released.
pub(crate) fn unlock(tx: &mut Tx<'_>, key: &str, token: &str) -> Result<bool> {
    let n = tx
        .conn
        .prepare_cached("DELETE FROM locks WHERE key = ?1 AND token = ?2 AND expires_at > ?3")
        .and_then(|mut s| s.execute(params![key, token, tx.now]))
        .map_err(|e| tx.map(e))?;
    Ok(n == 1)
}

/// Remove expired locks; returns how many.
pub(crate) fn sweep(tx: &mut Tx<'_>) -> Result<usize> {
    tx.conn
        .prepare_cached("DELETE FROM locks WHERE expires_at <= ?1")
        .and_then(|mut s| s.execute([tx.now]))
        .map_err(|e| tx.map(e))
}
