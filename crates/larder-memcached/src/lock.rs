//! Locks: `add` takes a free lock, and the holder's token is checked with
//! `gets` + `cas` on release, so only the holder releases it.
//!
//! Release replaces the token with a short-lived tombstone through `cas`
//! (the binary protocol's conditional delete is not exposed by the client);
//! taking a lock treats that tombstone as free and replaces it through
//! `cas`, so a lock can be taken again right after its release.

use std::time::Duration;

use larder_core::Result;

use crate::connection::Cluster;
use crate::item::{self, TOMBSTONE};
use crate::tags::{self, ATTEMPTS};

/// Take the lock `key` for `ttl` if it is free; whether it was taken.
pub(crate) fn lock(cluster: &Cluster, key: &str, token: &str, ttl: Duration) -> Result<bool> {
    let exptime = tags::exptime(Some(ttl))?;
    let lock_key = item::lock_key(key);
    let mut conn = cluster.server_of(key).conn("lock")?;
    for _ in 0..ATTEMPTS {
        if conn.add(&lock_key, token.as_bytes(), 0, exptime)? {
            return Ok(true);
        }
        let held = conn.get_many(&[&lock_key])?;
        let released = match held.get(&lock_key) {
            // Expired (or released and gone) meanwhile: try again.
            None => None,
            Some((_, flags, Some(cas))) if flags & TOMBSTONE != 0 => Some(*cas),
            Some(_) => return Ok(false),
        };
        if let Some(cas) = released
            && conn.cas(&lock_key, token.as_bytes(), 0, exptime, cas)?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Release the lock `key` if `token` holds it; whether it was released.
pub(crate) fn unlock(cluster: &Cluster, key: &str, token: &str) -> Result<bool> {
    let lock_key = item::lock_key(key);
    let mut conn = cluster.server_of(key).conn("unlock")?;
    let held = conn.get_many(&[&lock_key])?;
    match held.get(&lock_key) {
        Some((holder, flags, Some(cas)))
            if flags & TOMBSTONE == 0 && holder == token.as_bytes() =>
        {
            conn.cas(&lock_key, b"", TOMBSTONE, 1, *cas)
        }
        _ => Ok(false),
    }
}
