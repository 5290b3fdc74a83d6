//! Reads judged against versions, writes that record them, deletes, and
//! tag invalidation by version bumps.
//!
//! Memcached keeps no index of which keys carry a tag, so tags are
//! *versions* (see `item.rs`): a write records the current version of its
//! namespace and of each of its tags (on the server that stores it); a read
//! compares them with the server's current ones and answers a miss when any
//! changed or vanished. Invalidating a tag sets a new version on every
//! server: one command per server, however many entries carry the tag. It
//! cannot tell how many entries that made stale, so it answers
//! [`Count::Unknown`].
//!
//! Each server keeps the versions of the entries it stores, so an entry's
//! fate depends on its own server only: a server that goes away takes its
//! entries with it and nothing else.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use larder_core::{Count, Error, Result, SetMode, WriteOptions};

use crate::connection::{Cluster, Conn, ITEM_OVERHEAD, Missed, Raw, Server};
use crate::error::BACKEND;
use crate::item::{self, Item};

/// Relative expiry times memcached accepts; longer ones are read as a unix
/// time.
const MAX_RELATIVE_EXPTIME: u64 = 30 * 24 * 3600;

/// How many times a conditional write is tried when the key changes
/// between the read and the write. Each attempt that fails did not write,
/// so trying again never applies anything twice.
pub(crate) const ATTEMPTS: usize = 4;

/// How long a tombstone lasts: as long as a fill may run.
pub(crate) fn tombstone_exptime() -> u32 {
    u32::try_from(larder_core::MAX_FILL_AGE.as_secs()).unwrap_or(60)
}

/// A TTL as memcached's expiry field: 0 for none, whole seconds (rounded
/// up) up to 30 days, and beyond that the unix time it ends at (memcached
/// reads any number over 30 days as a unix time). TTLs of zero or over
/// `MAX_TTL` are refused before any I/O.
pub(crate) fn exptime(ttl: Option<Duration>) -> Result<u32> {
    let Some(ttl) = ttl else {
        return Ok(0);
    };
    let ttl = Error::check_ttl(ttl)?;
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    if secs <= MAX_RELATIVE_EXPTIME {
        return Ok(u32::try_from(secs).unwrap_or(u32::MAX));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Error::Backend {
            backend: BACKEND,
            message: "the system clock is before 1970; cannot send a TTL over 30 days".into(),
        })?
        .as_secs();
    u32::try_from(now + secs).map_err(|_| Error::InvalidTtl {
        ttl,
        reason: "memcached cannot express an expiry after the year 2106".into(),
    })
}

/// A live entry.
#[derive(Debug, Clone)]
pub(crate) enum Live {
    /// A value and its (stored) tags.
    Value { payload: Bytes, tags: Vec<String> },
    /// A counter's digits.
    Counter(Bytes),
}

impl Live {
    /// What `get` returns.
    pub(crate) fn bytes(&self) -> Bytes {
        match self {
            Live::Value { payload, .. } => payload.clone(),
            Live::Counter(digits) => digits.clone(),
        }
    }
}

/// A key's item, read and judged.
#[derive(Debug, Clone, Default)]
pub(crate) struct Found {
    /// The item's CAS id; `None` when the key holds nothing.
    pub(crate) cas: Option<u64>,
    /// The entry, when the item is live.
    pub(crate) live: Option<Live>,
}

/// A version as stored, if there is one.
fn number(map: &HashMap<String, Raw>, key: &str) -> Option<u64> {
    map.get(key).and_then(|raw| item::parse_number(&raw.0))
}

/// Read `keys` (all living on `conn`'s server) together with the internal
/// keys `extra`, in one round trip (two when a live-looking value has tags
/// whose versions must be checked), and judge each against the server's
/// current versions. Returns one [`Found`] per key and the raw `extra`
/// items.
pub(crate) fn read(
    conn: &mut Conn<'_>,
    keys: &[&str],
    extra: &[String],
) -> Result<(Vec<Found>, HashMap<String, Raw>)> {
    let ns_keys: Vec<String> = keys
        .iter()
        .map(|k| item::ns_version_key(item::namespace(k)))
        .collect();
    let mut wanted: Vec<&str> = keys.to_vec();
    wanted.extend(ns_keys.iter().map(String::as_str));
    wanted.extend(extra.iter().map(String::as_str));
    let mut map = conn.get_many(&wanted)?;

    let mut found = Vec::with_capacity(keys.len());
    // Values whose tags still need checking: (index, tags and versions).
    let mut pending: Vec<(usize, Vec<(String, u64)>)> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let Some((bytes, flags, cas)) = map.get(*key).cloned() else {
            found.push(Found::default());
            continue;
        };
        let current = number(&map, &ns_keys[i]);
        let live = match Item::parse(bytes, flags) {
            Item::Counter { stamp, digits } => current
                .filter(|v| item::stamp(*v) == stamp)
                .map(|_| Live::Counter(digits)),
            Item::Value { ns, tags, payload } if current == Some(ns) => {
                let names = tags.iter().map(|(t, _)| t.clone()).collect();
                if !tags.is_empty() {
                    pending.push((i, tags));
                }
                Some(Live::Value {
                    payload,
                    tags: names,
                })
            }
            Item::Value { .. } | Item::Dead => None,
        };
        found.push(Found {
            cas: Some(cas.unwrap_or(0)),
            live,
        });
    }
    if !pending.is_empty() {
        let version_keys: Vec<String> = pending
            .iter()
            .flat_map(|(_, tags)| tags.iter().map(|(t, _)| item::tag_version_key(t)))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let refs: Vec<&str> = version_keys.iter().map(String::as_str).collect();
        let versions = conn.get_many(&refs)?;
        for (i, tags) in pending {
            let fresh = tags
                .iter()
                .all(|(t, v)| number(&versions, &item::tag_version_key(t)) == Some(*v));
            if !fresh {
                found[i].live = None;
            }
        }
    }
    for key in keys {
        map.remove(*key);
    }
    Ok((found, map))
}

/// One key's item, judged.
pub(crate) fn read_one(conn: &mut Conn<'_>, key: &str) -> Result<Found> {
    let (mut found, _) = read(conn, &[key], &[])?;
    Ok(found.pop().unwrap_or_default())
}

/// The current values of the version keys `keys` on `conn`'s server,
/// creating each missing one with a fresh random version.
pub(crate) fn current_versions(
    conn: &mut Conn<'_>,
    keys: &[String],
) -> Result<HashMap<String, u64>> {
    let mut versions = HashMap::with_capacity(keys.len());
    let mut missing: Vec<&str> = keys.iter().map(String::as_str).collect();
    for _ in 0..ATTEMPTS {
        let map = conn.get_many(&missing)?;
        let mut still = Vec::new();
        for key in missing {
            match number(&map, key) {
                Some(v) => {
                    versions.insert(key.to_owned(), v);
                }
                None if map.contains_key(key) => {
                    // Not a number: not ours. Replace it.
                    let v = item::fresh_version();
                    conn.set(key, v.to_string().as_bytes(), 0, 0)?;
                    versions.insert(key.to_owned(), v);
                }
                None => {
                    let v = item::fresh_version();
                    if conn.add(key, v.to_string().as_bytes(), 0, 0)? {
                        versions.insert(key.to_owned(), v);
                    } else {
                        // Someone created it meanwhile: read theirs.
                        still.push(key);
                    }
                }
            }
        }
        if still.is_empty() {
            return Ok(versions);
        }
        missing = still;
    }
    Err(Error::Backend {
        backend: BACKEND,
        message: format!(
            "{}: version keys kept vanishing on {} (is the server evicting everything?)",
            "write",
            conn.server().address
        ),
    })
}

/// The version keys a write of `keys` with `tags` records.
pub(crate) fn version_keys<'a>(
    keys: impl IntoIterator<Item = &'a str>,
    tags: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in keys {
        let k = item::ns_version_key(item::namespace(key));
        if !out.contains(&k) {
            out.push(k);
        }
    }
    for tag in tags {
        let k = item::tag_version_key(tag);
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// Refuse a value that would not fit in an item of `item_size_max` bytes,
/// before any I/O. Counts the header at its largest (20-digit versions).
pub(crate) fn check_size(
    key: &str,
    payload: &Bytes,
    tags: &[String],
    item_size_max: usize,
) -> Result<()> {
    let header: usize = 2 + 20 + 1 + 20 + tags.iter().map(|t| t.len() + 22).sum::<usize>();
    let size = payload.len() + header;
    let limit = item_size_max.saturating_sub(ITEM_OVERHEAD + key.len());
    if size > limit {
        return Err(Error::PayloadTooLarge {
            key: key.to_owned(),
            size,
            limit,
        });
    }
    Ok(())
}

/// The stored bytes and flags of a value under the `versions` read.
pub(crate) fn stored_value(
    key: &str,
    payload: Bytes,
    tags: &[String],
    versions: &HashMap<String, u64>,
) -> Result<(Bytes, u32)> {
    let missing = || Error::Backend {
        backend: BACKEND,
        message: format!("internal: no version read for a write of {key:?}"),
    };
    let ns = *versions
        .get(&item::ns_version_key(item::namespace(key)))
        .ok_or_else(missing)?;
    let mut recorded: Vec<(String, u64)> = Vec::with_capacity(tags.len());
    for tag in tags {
        if recorded.iter().any(|(t, _)| t == tag) {
            continue;
        }
        let v = *versions
            .get(&item::tag_version_key(tag))
            .ok_or_else(missing)?;
        recorded.push((tag.clone(), v));
    }
    Ok((
        item::encode_value(ns, &recorded, payload),
        item::value_flags(ns),
    ))
}

/// Write one value on `conn` (its key's server) in `options.mode`, with
/// the versions already read. Returns whether it was written.
pub(crate) fn write(
    conn: &mut Conn<'_>,
    key: &str,
    payload: Bytes,
    options: &WriteOptions,
    exptime: u32,
    versions: &HashMap<String, u64>,
) -> Result<bool> {
    let (bytes, flags) = stored_value(key, payload, &options.tags, versions)?;
    match options.mode {
        SetMode::Always => {
            conn.set(key, &bytes, flags, exptime)?;
            Ok(true)
        }
        SetMode::IfAbsent => {
            for _ in 0..ATTEMPTS {
                if conn.add(key, &bytes, flags, exptime)? {
                    return Ok(true);
                }
                // Something is there: a live entry declines the write; a
                // tombstone or a stale entry counts as absent.
                let found = read_one(conn, key)?;
                if found.live.is_some() {
                    return Ok(false);
                }
                if let Some(cas) = found.cas
                    && conn.cas(key, &bytes, flags, exptime, cas)?
                {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        SetMode::IfPresent => {
            for _ in 0..ATTEMPTS {
                let found = read_one(conn, key)?;
                let (Some(_), Some(cas)) = (found.live, found.cas) else {
                    return Ok(false);
                };
                if conn.cas(key, &bytes, flags, exptime, cas)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        other => Err(Error::Backend {
            backend: BACKEND,
            message: format!(
                "write mode {other:?} is not supported by this version of larder-memcached"
            ),
        }),
    }
}

/// Write one value: check, read versions, write.
pub(crate) fn set(
    cluster: &Cluster,
    key: &str,
    payload: Bytes,
    options: &WriteOptions,
) -> Result<bool> {
    let exptime = exptime(options.ttl)?;
    check_size(key, &payload, &options.tags, cluster.item_size_max())?;
    let server = cluster.server_of(key);
    let written = server.conn("set").and_then(|mut conn| {
        let versions = current_versions(&mut conn, &version_keys([key], &options.tags))?;
        write(&mut conn, key, payload, options, exptime, &versions)
    });
    if written.is_err() && options.mode != SetMode::IfAbsent {
        // The value this write meant to replace may still be there when the
        // server answers again.
        server.record_missed(Missed::keys([key]));
    }
    written
}

/// Delete `keys` on one server: a tombstone in place of each (so that a
/// fill that started before cannot store over it); how many held a live
/// entry.
pub(crate) fn delete_on(conn: &mut Conn<'_>, keys: &[&str]) -> Result<u64> {
    let (found, _) = read(conn, keys, &[])?;
    let live = found.iter().filter(|f| f.live.is_some()).count() as u64;
    let exptime = tombstone_exptime();
    let mut done: HashSet<&str> = HashSet::new();
    for key in keys {
        if done.insert(key) {
            conn.set(key, b"", item::TOMBSTONE, exptime)?;
        }
    }
    Ok(live)
}

/// What an invalidation does on one server, so that it can be replayed
/// there if the server cannot be reached now.
pub(crate) struct Invalidation {
    /// Namespaces whose fill epoch to renew first.
    pub(crate) epochs: Vec<String>,
    /// Tag version keys to replace with fresh versions.
    pub(crate) tag_versions: Vec<String>,
    /// Namespace version keys to bump.
    pub(crate) ns_versions: Vec<String>,
}

impl Invalidation {
    fn missed(&self) -> Missed {
        Missed {
            epochs: self.epochs.iter().cloned().collect(),
            versions: self
                .tag_versions
                .iter()
                .chain(&self.ns_versions)
                .cloned()
                .collect(),
            ..Missed::default()
        }
    }

    /// Apply on one server: epochs first (a fill that read a version
    /// before the bump then sees the new epoch and is refused), then the
    /// versions.
    fn apply(&self, server: &Server, operation: &'static str) -> Result<()> {
        let mut conn = server.conn(operation)?;
        for ns in &self.epochs {
            let epoch = item::fresh_version().to_string();
            conn.set(&item::epoch_key(ns), epoch.as_bytes(), 0, 0)?;
        }
        for key in &self.tag_versions {
            let v = item::fresh_version().to_string();
            conn.set(key, v.as_bytes(), 0, 0)?;
        }
        for key in &self.ns_versions {
            bump(&mut conn, key)?;
        }
        Ok(())
    }

    /// Apply on every server. A server that cannot be reached keeps the
    /// invalidation to replay when it answers again, and the call fails,
    /// saying so: until then another client that can reach it may still
    /// read what it holds.
    pub(crate) fn run(&self, cluster: &Cluster, operation: &'static str) -> Result<Count> {
        let mut failure: Option<Error> = None;
        let mut failed = 0;
        for server in &cluster.servers {
            if let Err(e) = self.apply(server, operation) {
                server.record_missed(self.missed());
                failed += 1;
                failure.get_or_insert(e);
            }
        }
        match failure {
            None => Ok(Count::Unknown),
            Some(Error::Unavailable { backend, message }) => Err(Error::Unavailable {
                backend,
                message: format!(
                    "{message} ({operation} reached {} of {} servers; the others get it when \
                     they answer again)",
                    cluster.servers.len() - failed,
                    cluster.servers.len()
                ),
            }),
            Some(other) => Err(other),
        }
    }
}

/// Count a namespace version up by one, so that counters (which keep 30
/// bits of it) see a different stamp. A missing version stays missing:
/// everything that recorded it is stale already.
fn bump(conn: &mut Conn<'_>, key: &str) -> Result<()> {
    let map = conn.get_many(&[key])?;
    let Some((bytes, _, cas)) = map.get(key) else {
        return Ok(());
    };
    match (item::parse_number(bytes), cas) {
        (Some(v), Some(cas)) => {
            // A failed CAS means someone else bumped or replaced it: done.
            conn.cas(
                key,
                v.wrapping_add(1).max(1).to_string().as_bytes(),
                0,
                0,
                *cas,
            )?;
        }
        _ => {
            let v = item::fresh_version().to_string();
            conn.set(key, v.as_bytes(), 0, 0)?;
        }
    }
    Ok(())
}

/// Invalidate `tags` on every server.
pub(crate) fn invalidate_tags(cluster: &Cluster, tags: &[String]) -> Result<Count> {
    if tags.is_empty() {
        return Ok(Count::Unknown);
    }
    let mut epochs: Vec<String> = Vec::new();
    for tag in tags {
        let ns = item::namespace(tag).to_owned();
        if !epochs.contains(&ns) {
            epochs.push(ns);
        }
    }
    Invalidation {
        epochs,
        tag_versions: version_keys(std::iter::empty(), tags),
        ns_versions: Vec::new(),
    }
    .run(cluster, "invalidate_tags")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_times() {
        let secs = Duration::from_secs;
        assert_eq!(exptime(None).unwrap(), 0);
        assert_eq!(exptime(Some(secs(1))).unwrap(), 1);
        assert_eq!(exptime(Some(Duration::from_millis(1500))).unwrap(), 2);
        assert_eq!(exptime(Some(Duration::from_millis(1))).unwrap(), 1);
        // Up to 30 days: relative. Beyond: a unix time, about now + TTL.
        assert_eq!(exptime(Some(secs(2_592_000))).unwrap(), 2_592_000);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let forty_days = u64::from(exptime(Some(secs(40 * 86_400))).unwrap());
        assert!(forty_days.abs_diff(now + 40 * 86_400) <= 2, "{forty_days}");
        let year = u64::from(exptime(Some(larder_core::MAX_TTL)).unwrap());
        assert!(year > now + 364 * 86_400);
        for bad in [
            Duration::ZERO,
            Duration::MAX,
            larder_core::MAX_TTL + secs(1),
        ] {
            assert!(matches!(exptime(Some(bad)), Err(Error::InvalidTtl { .. })));
        }
    }

    #[test]
    fn size_checks_count_key_header_and_tags() {
        let tags = vec!["svc:v1:t".to_owned()];
        let payload = Bytes::from(vec![0u8; 1000]);
        assert!(check_size("svc:v1:k", &payload, &tags, 2000).is_ok());
        let err = check_size("svc:v1:k", &payload, &tags, 1100).unwrap_err();
        assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err:?}");
    }
}
