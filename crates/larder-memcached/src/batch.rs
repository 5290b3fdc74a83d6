//! Batches: one multi-get per server for `get_many`, the versions read
//! once per server for `set_many`, tombstones for `delete`.

use bytes::Bytes;
use larder_core::{Error, Result, SetMode, WriteOptions};

use crate::connection::{Cluster, Missed};
use crate::tags;

/// Indices of `keys`, grouped by the server each lives on (servers in the
/// order first met).
pub(crate) fn group<'a>(
    cluster: &Cluster,
    keys: impl Iterator<Item = &'a str>,
) -> Vec<(usize, Vec<usize>)> {
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, key) in keys.enumerate() {
        let server = cluster.index_of(key);
        match groups.iter_mut().find(|(s, _)| *s == server) {
            Some((_, members)) => members.push(i),
            None => groups.push((server, vec![i])),
        }
    }
    groups
}

/// Live values of `keys`, in order. Keys on a server that cannot be
/// reached read as misses (logged), so that the other servers' hits still
/// count; when no server answers, the error is returned.
pub(crate) fn get_many(cluster: &Cluster, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
    let mut out = vec![None; keys.len()];
    let groups = group(cluster, keys.iter().map(String::as_str));
    let mut first_error: Option<Error> = None;
    let mut answered = 0;
    for (server, members) in &groups {
        let batch: Vec<&str> = members.iter().map(|i| keys[*i].as_str()).collect();
        let read = cluster.servers[*server]
            .conn("get_many")
            .and_then(|mut conn| tags::read(&mut conn, &batch, &[]));
        match read {
            Ok((found, _)) => {
                answered += 1;
                for (i, f) in members.iter().zip(found) {
                    out[*i] = f.live.map(|l| l.bytes());
                }
            }
            Err(e) => {
                tracing::warn!(
                    server = %cluster.servers[*server].address,
                    error = %e,
                    keys = members.len(),
                    "larder: memcached server failed in get_many; its keys read as misses"
                );
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if answered == 0 => Err(e),
        _ => Ok(out),
    }
}

/// Write `entries` with the same options; how many were written.
pub(crate) fn set_many(
    cluster: &Cluster,
    entries: &[(String, Bytes)],
    options: &WriteOptions,
) -> Result<u64> {
    let exptime = tags::exptime(options.ttl)?;
    let limit = cluster.item_size_max();
    for (key, value) in entries {
        tags::check_size(key, value, &options.tags, limit)?;
    }
    let mut written = 0;
    let mut failure = None;
    for (server, members) in group(cluster, entries.iter().map(|(k, _)| k.as_str())) {
        let server = &cluster.servers[server];
        let keys = || members.iter().map(|i| entries[*i].0.as_str());
        let on_server = (|| {
            let mut conn = server.conn("set_many")?;
            let versions =
                tags::current_versions(&mut conn, &tags::version_keys(keys(), &options.tags))?;
            let mut written = 0;
            for i in &members {
                let (key, value) = &entries[*i];
                written += u64::from(tags::write(
                    &mut conn,
                    key,
                    value.clone(),
                    options,
                    exptime,
                    &versions,
                )?);
            }
            Ok(written)
        })();
        match on_server {
            Ok(n) => written += n,
            Err(e) => {
                // The values these writes meant to replace may still be
                // there when the server answers again.
                if options.mode != SetMode::IfAbsent {
                    server.record_missed(Missed::keys(keys()));
                }
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        None => Ok(written),
        Some(e) => Err(e),
    }
}

/// Delete `keys`; how many held a live entry.
pub(crate) fn delete(cluster: &Cluster, keys: &[String]) -> Result<u64> {
    let mut live = 0;
    let mut failure = None;
    for (server, members) in group(cluster, keys.iter().map(String::as_str)) {
        let server = &cluster.servers[server];
        let batch: Vec<&str> = members.iter().map(|i| keys[*i].as_str()).collect();
        let deleted = server
            .conn("delete")
            .and_then(|mut conn| tags::delete_on(&mut conn, &batch));
        match deleted {
            Ok(n) => live += n,
            Err(e) => {
                // Deleted when the server answers again, before anything
                // else reaches it.
                server.record_missed(Missed::keys(batch.iter().copied()));
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        None => Ok(live),
        Some(e) => Err(e),
    }
}
