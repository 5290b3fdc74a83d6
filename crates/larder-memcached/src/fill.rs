//! The fill guard: a read-through load's store is refused when its key,
//! one of its tags or its namespace was invalidated after the load began.
//!
//! - **Key deletes** leave a tombstone in the key's place for
//!   `MAX_FILL_AGE`. `begin_fill` remembers the key's CAS id (or that it
//!   held nothing); `set_filled` stores with `cas` on that id, or with
//!   `add` when it held nothing. A delete in between changed the item, so
//!   the store fails on the server, in the same step as the write.
//! - **Tag invalidations and `clear`** renew the namespace's *fill epoch*
//!   on each server, then change the versions. `begin_fill` reads the
//!   epoch; `set_filled` reads the versions it will record and then the
//!   epoch (one multi-get, processed in that order), and refuses when the
//!   epoch changed. An invalidation that changed a version before that read
//!   renewed the epoch before it, so the store is refused; one that changes
//!   a version after it makes the stored entry stale, so no reader sees it.
//!
//! Either way no read that starts after the invalidation returned sees the
//! loaded value: [`FillGuard::Atomic`](larder_core::FillGuard::Atomic) in
//! effect. The exception is memory pressure: a tombstone memcached evicts
//! within the minute of a fill no longer stops an `add`.
//!
//! The token is a number local to this backend instance, naming what
//! `begin_fill` saw (kept for `MAX_FILL_AGE`); a token older than that, or
//! unknown, is refused. Tags outside the key's namespace are refused too:
//! their epochs were not read when the load began (a `Cache` never writes
//! such tags).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use larder_core::sync::lock;
use larder_core::{FillStore, FillToken, MAX_FILL_AGE, Result, SetMode, WriteOptions};

use crate::connection::Cluster;
use crate::item;
use crate::tags::{self, ATTEMPTS};

/// What `begin_fill` saw.
#[derive(Debug)]
struct Pending {
    key: String,
    began: Instant,
    /// The key's CAS id, `None` when it held nothing.
    cas: Option<u64>,
    /// Whether the key held a live entry.
    live: bool,
    /// The namespace's fill epoch; `None` when it could not be read.
    epoch: Option<u64>,
}

/// Fills under way.
#[derive(Debug, Default)]
pub(crate) struct Fills {
    next: AtomicU64,
    pending: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<u64, Pending>,
    /// Prune expired entries when the table grows past this.
    prune_at: usize,
}

impl Fills {
    fn insert(&self, pending: Pending) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut table = lock(&self.pending);
        if table.entries.len() >= table.prune_at.max(1024) {
            table
                .entries
                .retain(|_, p| p.began.elapsed() <= MAX_FILL_AGE);
            table.prune_at = table.entries.len() * 2;
        }
        table.entries.insert(id, pending);
        id
    }

    fn take(&self, token: FillToken, key: &str) -> Option<Pending> {
        let pending = lock(&self.pending).entries.remove(&token.reading())?;
        (pending.key == key && pending.began.elapsed() <= MAX_FILL_AGE).then_some(pending)
    }
}

/// The live value of `key`, if any, and a token naming what was seen.
pub(crate) fn begin_fill(
    cluster: &Cluster,
    fills: &Fills,
    key: &str,
) -> Result<(Option<Bytes>, FillToken)> {
    let mut conn = cluster.server_of(key).conn("get")?;
    let epoch_key = item::epoch_key(item::namespace(key));
    let (mut found, extra) = tags::read(&mut conn, &[key], std::slice::from_ref(&epoch_key))?;
    let found = found.pop().unwrap_or_default();
    let epoch = match extra
        .get(&epoch_key)
        .and_then(|raw| item::parse_number(&raw.0))
    {
        Some(epoch) => Some(epoch),
        None => {
            // No epoch yet: start one, so that a later renewal shows.
            let fresh = item::fresh_version();
            if conn.add(&epoch_key, fresh.to_string().as_bytes(), 0, 0)? {
                Some(fresh)
            } else {
                let again = conn.get_many(&[&epoch_key])?;
                again
                    .get(&epoch_key)
                    .and_then(|raw| item::parse_number(&raw.0))
            }
        }
    };
    let id = fills.insert(Pending {
        key: key.to_owned(),
        began: Instant::now(),
        cas: found.cas,
        live: found.live.is_some(),
        epoch,
    });
    Ok((found.live.map(|l| l.bytes()), FillToken::new(id)))
}

/// Store a loaded value unless an invalidation came after `token`.
pub(crate) fn set_filled(
    cluster: &Cluster,
    fills: &Fills,
    key: &str,
    value: Bytes,
    options: &WriteOptions,
    token: FillToken,
) -> Result<FillStore> {
    let exptime = tags::exptime(options.ttl)?;
    tags::check_size(key, &value, &options.tags, cluster.item_size_max())?;
    let Some(pending) = fills.take(token, key) else {
        return Ok(FillStore::Refused);
    };
    let Some(epoch) = pending.epoch else {
        return Ok(FillStore::Refused);
    };
    let ns = item::namespace(key);
    if options.tags.iter().any(|t| item::namespace(t) != ns) {
        return Ok(FillStore::Refused);
    }
    match options.mode {
        SetMode::IfAbsent if pending.live => return Ok(FillStore::Declined),
        SetMode::IfPresent if !pending.live => return Ok(FillStore::Declined),
        _ => {}
    }
    let mut conn = cluster.server_of(key).conn("set")?;
    let version_keys = tags::version_keys([key], &options.tags);
    let epoch_key = item::epoch_key(ns);
    let mut wanted: Vec<&str> = version_keys.iter().map(String::as_str).collect();
    wanted.push(&epoch_key);
    let mut read = None;
    for _ in 0..ATTEMPTS {
        // The versions, then the epoch: in this order on the server.
        let map = conn.get_many(&wanted)?;
        let versions: HashMap<String, u64> = version_keys
            .iter()
            .filter_map(|k| Some((k.clone(), item::parse_number(&map.get(k)?.0)?)))
            .collect();
        if versions.len() == version_keys.len() {
            let now = map
                .get(&epoch_key)
                .and_then(|raw| item::parse_number(&raw.0));
            read = Some((versions, now));
            break;
        }
        // Create what is missing, then read everything again so that the
        // epoch is read after the versions.
        let missing: Vec<String> = version_keys
            .iter()
            .filter(|k| !versions.contains_key(*k))
            .cloned()
            .collect();
        tags::current_versions(&mut conn, &missing)?;
    }
    let Some((versions, now)) = read else {
        return Ok(FillStore::Refused);
    };
    if now != Some(epoch) {
        return Ok(FillStore::Refused);
    }
    let (bytes, flags) = tags::stored_value(key, value, &options.tags, &versions)?;
    let stored = match pending.cas {
        None => conn.add(key, &bytes, flags, exptime)?,
        Some(cas) => conn.cas(key, &bytes, flags, exptime, cas)?,
    };
    if stored {
        return Ok(FillStore::Stored);
    }
    // The key changed since the load began: a live value is another
    // writer's (it stands); anything else is a delete's tombstone.
    Ok(match tags::read_one(&mut conn, key)?.live {
        Some(_) => FillStore::Declined,
        None => FillStore::Refused,
    })
}
