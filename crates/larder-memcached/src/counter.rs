//! Counters: memcached's own `incr` on items that hold decimal digits.
//!
//! A missing counter is created with `add` of the delta itself, with the
//! TTL and the namespace stamp, in one command: a crash can never leave a
//! counter without its TTL. An existing live counter gets memcached's
//! atomic `incr`, which keeps its TTL. A tombstone or a stale item in the
//! way is replaced with `cas`, so a concurrent creator is never
//! overwritten. Memcached counters are unsigned: a negative delta answers
//! [`Error::Unsupported`] (`signed_counters: false`).

use larder_core::{Error, Result};

use crate::connection::Cluster;
use crate::error::BACKEND;
use crate::item;
use crate::tags::{self, ATTEMPTS, Live};

/// Add `delta` to the counter `key`, creating it with `ttl` when missing.
pub(crate) fn incr(
    cluster: &Cluster,
    key: &str,
    delta: i64,
    ttl: Option<std::time::Duration>,
) -> Result<i64> {
    let exptime = tags::exptime(ttl)?;
    let Ok(step) = u64::try_from(delta) else {
        return Err(Error::Unsupported {
            backend: BACKEND,
            operation: "incr with a negative delta (memcached counters are unsigned)",
        });
    };
    let not_an_integer = || Error::NotAnInteger {
        key: key.to_owned(),
    };
    let mut conn = cluster.server_of(key).conn("incr")?;
    for _ in 0..ATTEMPTS {
        let found = tags::read_one(&mut conn, key)?;
        match (found.live, found.cas) {
            (Some(Live::Counter(digits)), _) => {
                if step == 0 {
                    let current = item::parse_number(&digits).ok_or_else(not_an_integer)?;
                    return to_i64(key, current);
                }
                match conn.increment(key, step)? {
                    None => return Err(not_an_integer()),
                    // The counter vanished just before the `incr`, which
                    // created a bare "0" in its place (not ours, no TTL):
                    // replace it on the next round.
                    Some(0) => {}
                    Some(n) => return to_i64(key, n),
                }
            }
            (Some(Live::Value { .. }), _) => return Err(not_an_integer()),
            (None, cas) => {
                let ns_key = item::ns_version_key(item::namespace(key));
                let versions = tags::current_versions(&mut conn, std::slice::from_ref(&ns_key))?;
                let Some(ns) = versions.get(&ns_key).copied() else {
                    continue;
                };
                let digits = step.to_string();
                let flags = item::counter_flags(ns);
                let created = match cas {
                    None => conn.add(key, digits.as_bytes(), flags, exptime)?,
                    Some(cas) => conn.cas(key, digits.as_bytes(), flags, exptime, cas)?,
                };
                if created {
                    return Ok(delta);
                }
            }
        }
    }
    Err(Error::Backend {
        backend: BACKEND,
        message: format!(
            "incr of {key:?}: the key kept changing under concurrent writes; nothing was added \
             (every attempt was conditional and failed)"
        ),
    })
}

fn to_i64(key: &str, n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::Backend {
        backend: BACKEND,
        message: format!("counter {key:?} is {n}, beyond what larder's i64 counters hold"),
    })
}
