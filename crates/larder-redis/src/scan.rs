//! Patterns, scans and `clear`: `SCAN` narrowed by the glob's literal
//! prefix on every primary, larder's own glob deciding, each key once.
//! Never `KEYS`, `FLUSHDB` or `FLUSHALL`.

use std::collections::HashSet;

use fred::types::Value;
use larder_core::glob::{Glob, escape};
use larder_core::{Count, Error, Result};

use crate::connection::Connection;
use crate::scripts::namespace_stamp_key;

fn parse_scan(reply: Value) -> Result<(String, Vec<String>)> {
    let bad = || Error::Backend {
        backend: "redis",
        message: "SCAN returned an unexpected reply".into(),
    };
    let Value::Array(mut parts) = reply else {
        return Err(bad());
    };
    if parts.len() != 2 {
        return Err(bad());
    }
    let keys = parts.pop().ok_or_else(bad)?;
    let cursor = parts.pop().and_then(Value::into_string).ok_or_else(bad)?;
    let keys = match keys {
        Value::Array(items) => items.into_iter().filter_map(Value::into_string).collect(),
        _ => return Err(bad()),
    };
    Ok((cursor, keys))
}

/// Gathers the keys of successive `SCAN` pages: each key once (`SCAN` may
/// return a key more than once while the server rehashes), at most `limit`.
struct Collector<F> {
    keep: F,
    seen: HashSet<String>,
    found: Vec<String>,
    limit: usize,
}

impl<F: Fn(&str) -> bool> Collector<F> {
    fn new(keep: F, limit: usize) -> Self {
        Collector {
            keep,
            seen: HashSet::new(),
            found: Vec::new(),
            limit,
        }
    }

    fn full(&self) -> bool {
        self.found.len() >= self.limit
    }

    /// Take a page; `true` once the limit is reached.
    fn take(&mut self, page: Vec<String>) -> bool {
        for key in page {
            if self.full() {
                break;
            }
            if (self.keep)(&key) && self.seen.insert(key.clone()) {
                self.found.push(key);
            }
        }
        self.full()
    }
}

impl Connection {
    /// Up to `limit` distinct keys matching the Redis `MATCH` pattern and
    /// `keep`, on every primary. `SCAN` may return a key more than once:
    /// each is counted and returned once.
    pub(crate) async fn scan_match(
        &self,
        pattern: &str,
        keep: impl Fn(&str) -> bool,
        limit: usize,
    ) -> Result<Vec<String>> {
        let mut collector = Collector::new(keep, limit);
        if collector.full() {
            return Ok(Vec::new());
        }
        for node in self.nodes()? {
            let mut cursor = "0".to_owned();
            loop {
                let args = vec![
                    Value::from(cursor.as_str()),
                    Value::from("MATCH"),
                    Value::from(pattern),
                    Value::from("COUNT"),
                    Value::from(1000i64),
                ];
                let reply: Value = match &node {
                    Some(server) => self.call_on(server, "SCAN", args).await?,
                    None => self.call("SCAN", args).await?,
                };
                let (next, keys) = parse_scan(reply)?;
                if collector.take(keys) {
                    return Ok(collector.found);
                }
                if next == "0" {
                    break;
                }
                cursor = next;
            }
        }
        Ok(collector.found)
    }

    /// Keys matching a larder glob: Redis narrows by the literal prefix,
    /// the glob decides (so `?` matches a whole character, as everywhere).
    pub(crate) async fn matching(&self, pattern: &str, limit: usize) -> Result<Vec<String>> {
        let glob = Glob::new(pattern)?;
        let coarse = format!("{}*", escape(&glob.literal_prefix()));
        self.scan_match(&coarse, |k| glob.matches(k), limit).await
    }

    /// Stamp the namespace of `name` (a key or pattern in it), so that fills
    /// running now do not store what a pattern delete or clear removes.
    async fn stamp_namespace(&self, name: &str) -> Result<()> {
        let stamp = namespace_stamp_key(name);
        if self.cluster() {
            return self.cluster_stamp(vec![stamp]).await;
        }
        let _: () = self
            .call(
                "SET",
                vec![
                    Value::from(stamp),
                    Value::from(self.server_time_ms().await?),
                    Value::from("PX"),
                    Value::from(
                        i64::try_from(larder_core::MAX_FILL_AGE.as_millis()).unwrap_or(60_000)
                            + 1000,
                    ),
                ],
            )
            .await?;
        Ok(())
    }

    async fn server_time_ms(&self) -> Result<i64> {
        let (secs, micros): (i64, i64) = self.call("TIME", Vec::new()).await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// Delete the keys matching `pattern` (untagging them).
    pub(crate) async fn delete_matching(&self, pattern: &str) -> Result<Count> {
        self.stamp_namespace(pattern).await?;
        let keys = self.matching(pattern, usize::MAX).await?;
        Ok(Count::Exact(self.delete_keys(&keys).await?))
    }

    /// Delete every key of the namespace `prefix` (`svc:v1:`) and its tag
    /// sets and locks. Invalidation stamps are left to expire, so that fills
    /// running now are still refused.
    pub(crate) async fn clear(&self, prefix: &str) -> Result<Count> {
        self.stamp_namespace(prefix).await?;
        let values = self
            .scan_match(&format!("{}*", escape(prefix)), |_| true, usize::MAX)
            .await?;
        let n = self.unlink(&values).await?;
        let head = prefix.strip_suffix(':').unwrap_or(prefix);
        for kind in ['t', 'l'] {
            let internal = self
                .scan_match(&format!("{}#{kind}:*", escape(head)), |_| true, usize::MAX)
                .await?;
            self.unlink(&internal).await?;
        }
        Ok(Count::Exact(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn duplicates_are_returned_and_counted_once() {
        let mut c = Collector::new(|k: &str| k.starts_with('k'), 3);
        assert!(!c.take(page(&["k1", "k2", "x", "k1"])));
        assert!(!c.take(page(&["k2", "k1"])), "only duplicates: not full");
        assert!(c.take(page(&["k3", "k4"])));
        assert_eq!(c.found, page(&["k1", "k2", "k3"]));
    }

    #[test]
    fn limit_zero_takes_nothing() {
        let mut c = Collector::new(|_: &str| true, 0);
        assert!(c.full());
        assert!(c.take(page(&["k1"])));
        assert!(c.found.is_empty());
    }
}
