//! Server-side counters read from a health report's details: Redis `INFO`
//! figures and Memcached `stats`, under one set of names.

use std::time::Duration;

/// The counters a backend exposes, where it does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ServerCounters {
    /// Reads that found a value (`keyspace_hits`, `get_hits`).
    pub(crate) hits: Option<u64>,
    /// Reads that found nothing (`keyspace_misses`, `get_misses`).
    pub(crate) misses: Option<u64>,
    /// Commands served (`total_commands_processed`; `cmd_get + cmd_set`).
    pub(crate) commands: Option<u64>,
    /// Keys held (`keys`, `curr_items`).
    pub(crate) keys: Option<u64>,
    /// Memory used in bytes (`used_memory`, `bytes`).
    pub(crate) memory: Option<u64>,
}

impl ServerCounters {
    /// The counters among `details`.
    pub(crate) fn from_details(details: &[(String, String)]) -> Self {
        let find = |name: &str| {
            details
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        };
        let either = |a: &str, b: &str| find(a).or_else(|| find(b));
        let commands =
            find("total_commands_processed").or_else(|| match (find("cmd_get"), find("cmd_set")) {
                (Some(g), Some(s)) => Some(g + s),
                _ => None,
            });
        ServerCounters {
            hits: either("keyspace_hits", "get_hits"),
            misses: either("keyspace_misses", "get_misses"),
            commands,
            keys: either("keys", "curr_items"),
            memory: either("used_memory", "bytes"),
        }
    }

    /// Hits over lookups since the server started, when it counts them.
    pub(crate) fn hit_rate(&self) -> Option<f64> {
        ratio(self.hits?, self.misses?)
    }

    /// Rates between `earlier` and `self`, taken `elapsed` apart.
    pub(crate) fn rates_since(&self, earlier: &ServerCounters, elapsed: Duration) -> Rates {
        let secs = elapsed.as_secs_f64();
        let delta = |now: Option<u64>, then: Option<u64>| now?.checked_sub(then?);
        let ops_per_s = match delta(self.commands, earlier.commands) {
            Some(n) if secs > 0.0 => Some(n as f64 / secs),
            _ => None,
        };
        let hit_rate = match (
            delta(self.hits, earlier.hits),
            delta(self.misses, earlier.misses),
        ) {
            (Some(h), Some(m)) => ratio(h, m),
            _ => None,
        };
        Rates {
            ops_per_s,
            hit_rate,
        }
    }
}

/// What happened between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Rates {
    /// Commands per second.
    pub(crate) ops_per_s: Option<f64>,
    /// Hit rate of the lookups in between (`None` when there were none).
    pub(crate) hit_rate: Option<f64>,
}

fn ratio(hits: u64, misses: u64) -> Option<f64> {
    let lookups = hits + misses;
    (lookups > 0).then(|| hits as f64 / lookups as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn redis_and_memcached_names() {
        let redis = ServerCounters::from_details(&details(&[
            ("keyspace_hits", "3"),
            ("keyspace_misses", "1"),
            ("total_commands_processed", "10"),
        ]));
        assert_eq!(redis.hit_rate(), Some(0.75));
        assert_eq!(redis.commands, Some(10));
        let memcached = ServerCounters::from_details(&details(&[
            ("get_hits", "1"),
            ("get_misses", "1"),
            ("cmd_get", "2"),
            ("cmd_set", "5"),
        ]));
        assert_eq!(memcached.hit_rate(), Some(0.5));
        assert_eq!(memcached.commands, Some(7));
        assert_eq!(ServerCounters::from_details(&[]).hit_rate(), None);
    }

    #[test]
    fn rates_between_samples() {
        let a = ServerCounters {
            hits: Some(10),
            misses: Some(10),
            commands: Some(100),
            ..ServerCounters::default()
        };
        let b = ServerCounters {
            hits: Some(13),
            misses: Some(11),
            commands: Some(300),
            ..ServerCounters::default()
        };
        let r = b.rates_since(&a, Duration::from_secs(2));
        assert_eq!(r.ops_per_s, Some(100.0));
        assert_eq!(r.hit_rate, Some(0.75));
    }
}
