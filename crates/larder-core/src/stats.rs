//! Operation counters and their snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters a [`Cache`](crate::Cache) keeps; shared by all its clones.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) sets: AtomicU64,
    pub(crate) deletes: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) dropped_writes: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, evictions: Option<u64>) -> Stats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (hits, misses) = (read(&self.hits), read(&self.misses));
        let lookups = hits + misses;
        Stats {
            hits,
            misses,
            hit_rate: if lookups == 0 {
                0.0
            } else {
                hits as f64 / lookups as f64
            },
            sets: read(&self.sets),
            deletes: read(&self.deletes),
            invalidations: read(&self.invalidations),
            evictions,
            errors: read(&self.errors),
            refreshes: read(&self.refreshes),
            stale_served: read(&self.stale),
            dropped_writes: read(&self.dropped_writes),
        }
    }
}

/// A snapshot of a cache's counters since it was built.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Lookups that found a value.
    pub hits: u64,
    /// Lookups that found nothing (or bytes that failed to decode).
    pub misses: u64,
    /// `hits / (hits + misses)`, 0 before the first lookup.
    pub hit_rate: f64,
    /// Values written.
    pub sets: u64,
    /// Keys deleted by `delete`, tag or pattern invalidation, and `clear`.
    pub deletes: u64,
    /// Tag and pattern invalidations run.
    pub invalidations: u64,
    /// Entries the backend evicted, when it counts them locally.
    pub evictions: Option<u64>,
    /// Refresh loads of values whose fresh window had passed (early refresh,
    /// stale-while-revalidate, probabilistic early expiration).
    pub refreshes: u64,
    /// Values served past their fresh window because their refresh failed
    /// (stale-if-error).
    pub stale_served: u64,
    /// Writes, deletes and invalidations that failed while the backend was
    /// out and were let pass (fail-open); those that could leave a replaced
    /// value behind were journaled, to be replayed before the next read.
    pub dropped_writes: u64,
    /// Operations that failed, plus stored values that failed to decode.
    pub errors: u64,
}
