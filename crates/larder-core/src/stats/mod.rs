//! What a cache counts and times: exact counters, sampled operation
//! latency, their in-process snapshot ([`Stats`]), and the same figures
//! for the [`metrics`] facade (names in [`names`]).

pub(crate) mod latency;
pub mod names;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use latency::Histogram;

/// An exact counter, mirrored to a `metrics` counter.
pub(crate) struct Tally {
    n: AtomicU64,
    metric: metrics::Counter,
}

impl Tally {
    pub(crate) fn new(metric: metrics::Counter) -> Self {
        Tally {
            n: AtomicU64::new(0),
            metric,
        }
    }

    pub(crate) fn add(&self, n: u64) {
        if n > 0 {
            self.n.fetch_add(n, Ordering::Relaxed);
            self.metric.increment(n);
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.n.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// The operations a cache times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    GetMany,
    Set,
    SetMany,
    Delete,
    Incr,
    Invalidate,
    Clear,
    Load,
}

impl Op {
    const ALL: [Op; 9] = [
        Op::Get,
        Op::GetMany,
        Op::Set,
        Op::SetMany,
        Op::Delete,
        Op::Incr,
        Op::Invalidate,
        Op::Clear,
        Op::Load,
    ];

    /// The `operation` label.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::GetMany => "get_many",
            Op::Set => "set",
            Op::SetMany => "set_many",
            Op::Delete => "delete",
            Op::Incr => "incr",
            Op::Invalidate => "invalidate",
            Op::Clear => "clear",
            Op::Load => "load",
        }
    }
}

/// A started timing: `None` for the operations that are not sampled.
#[must_use]
pub(crate) struct Timing(Option<Instant>);

/// Counters and latency a [`Cache`](crate::Cache) keeps; shared by all its
/// clones.
pub(crate) struct Counters {
    pub(crate) hits: Tally,
    pub(crate) misses: Tally,
    pub(crate) sets: Tally,
    pub(crate) deletes: Tally,
    pub(crate) tag_invalidations: Tally,
    pub(crate) pattern_invalidations: Tally,
    pub(crate) clears: Tally,
    pub(crate) refreshes: Tally,
    pub(crate) stale: Tally,
    pub(crate) dropped_writes: Tally,
    pub(crate) loads: Tally,
    pub(crate) joins: Tally,
    pub(crate) integrity: Tally,
    errors: AtomicU64,
    evictions: metrics::Counter,
    latency: [Histogram; Op::ALL.len()],
    durations: [metrics::Histogram; Op::ALL.len()],
    backend: String,
    namespace: String,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters")
            .field("backend", &self.backend)
            .field("namespace", &self.namespace)
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish_non_exhaustive()
    }
}

impl Counters {
    /// Counters for a cache over `backend` (its label) in `namespace`; the
    /// `metrics` handles are registered with the recorder installed now.
    pub(crate) fn new(backend: &str, namespace: &str) -> Self {
        names::describe();
        let (b, ns) = (backend.to_owned(), namespace.to_owned());
        let tally = |name: &'static str| {
            Tally::new(metrics::counter!(name, "backend" => b.clone(), "namespace" => ns.clone()))
        };
        let invalidation = |kind: &'static str| {
            Tally::new(metrics::counter!(
                names::INVALIDATIONS,
                "backend" => b.clone(),
                "namespace" => ns.clone(),
                "kind" => kind
            ))
        };
        Counters {
            hits: tally(names::HITS),
            misses: tally(names::MISSES),
            sets: tally(names::SETS),
            deletes: tally(names::DELETES),
            tag_invalidations: invalidation("tag"),
            pattern_invalidations: invalidation("pattern"),
            clears: invalidation("clear"),
            refreshes: tally(names::REFRESHES),
            stale: tally(names::STALE_SERVED),
            dropped_writes: tally(names::DROPPED_WRITES),
            loads: tally(names::LOADER_RUNS),
            joins: tally(names::SINGLE_FLIGHT_JOINS),
            integrity: tally(names::INTEGRITY_ERRORS),
            errors: AtomicU64::new(0),
            evictions: metrics::counter!(
                names::EVICTIONS,
                "backend" => b.clone(),
                "namespace" => ns.clone()
            ),
            latency: std::array::from_fn(|_| Histogram::default()),
            durations: Op::ALL.map(|op| {
                metrics::histogram!(
                    names::OPERATION_DURATION,
                    "backend" => b.clone(),
                    "namespace" => ns.clone(),
                    "operation" => op.name()
                )
            }),
            backend: b,
            namespace: ns,
        }
    }

    /// Start timing an operation (one in
    /// [`SAMPLE_EVERY`](latency::SAMPLE_EVERY) is).
    pub(crate) fn start(&self) -> Timing {
        Timing(latency::sampled().then(Instant::now))
    }

    /// End a timing started by [`Counters::start`].
    pub(crate) fn finish(&self, op: Op, timing: Timing) {
        if let Some(started) = timing.0 {
            let elapsed = started.elapsed();
            self.latency[op as usize].record(elapsed);
            self.durations[op as usize].record(elapsed.as_secs_f64());
        }
    }

    /// Count a failure of `operation` of `kind` (an [`Error::kind`]).
    ///
    /// [`Error::kind`]: crate::Error::kind
    pub(crate) fn error(&self, operation: &str, kind: &'static str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(
            names::ERRORS,
            "backend" => self.backend.clone(),
            "namespace" => self.namespace.clone(),
            "operation" => operation.to_owned(),
            "kind" => kind
        )
        .increment(1);
    }

    /// Report the backend's own eviction count.
    pub(crate) fn evictions(&self, evictions: Option<u64>) {
        if let Some(n) = evictions {
            self.evictions.absolute(n);
        }
    }

    pub(crate) fn snapshot(&self, evictions: Option<u64>) -> Stats {
        self.evictions(evictions);
        let (hits, misses) = (self.hits.get(), self.misses.get());
        let lookups = hits + misses;
        let latency = Op::ALL
            .iter()
            .filter_map(|op| {
                let (samples, [p50, p95, p99, max]) = self.latency[*op as usize].summary()?;
                Some(OperationLatency {
                    operation: op.name(),
                    samples,
                    p50,
                    p95,
                    p99,
                    max,
                })
            })
            .collect();
        Stats {
            hits,
            misses,
            hit_rate: if lookups == 0 {
                0.0
            } else {
                hits as f64 / lookups as f64
            },
            sets: self.sets.get(),
            deletes: self.deletes.get(),
            invalidations: self.tag_invalidations.get() + self.pattern_invalidations.get(),
            clears: self.clears.get(),
            evictions,
            errors: self.errors.load(Ordering::Relaxed),
            refreshes: self.refreshes.get(),
            stale_served: self.stale.get(),
            dropped_writes: self.dropped_writes.get(),
            loader_runs: self.loads.get(),
            single_flight_joins: self.joins.get(),
            integrity_errors: self.integrity.get(),
            latency,
            near: None,
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
    /// Keys deleted by `delete`, tag or pattern invalidation, and `clear`
    /// (where the backend counts them).
    pub deletes: u64,
    /// Tag and pattern invalidations run.
    pub invalidations: u64,
    /// `clear` calls.
    pub clears: u64,
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
    /// Loader runs by the read-through (`get_or_load`, `#[cache_read]`),
    /// refreshes included.
    pub loader_runs: u64,
    /// Callers of the read-through that took the value another caller was
    /// loading instead of running the loader (single-flight).
    pub single_flight_joins: u64,
    /// Stored values that failed their integrity check (not signed or
    /// encrypted on a cache that requires it, a signature that does not
    /// match, a value that does not decrypt). Each was a miss, never
    /// decoded; each is also counted in `errors`.
    pub integrity_errors: u64,
    /// Latency per operation, for the operations run at least once (and
    /// sampled: see [`OperationLatency::samples`]).
    pub latency: Vec<OperationLatency>,
    /// The near cache's counters, when the cache has one (its L1 hits are
    /// also in `hits`).
    pub near: Option<crate::near::NearStats>,
}

impl Stats {
    /// The latency of `operation` (`get`, `set`, `load`...), if it ran.
    pub fn latency_of(&self, operation: &str) -> Option<&OperationLatency> {
        self.latency.iter().find(|l| l.operation == operation)
    }
}

/// Latency percentiles of one operation through a [`Cache`](crate::Cache),
/// from the cache's call to its answer (backend, codec and, for `load`,
/// the loader). Each percentile is the upper bound of its bucket: at most
/// 12.5 % above the true value, never under it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OperationLatency {
    /// `get`, `get_many`, `set`, `set_many`, `delete`, `incr`,
    /// `invalidate`, `clear` or `load`.
    pub operation: &'static str,
    /// Operations timed: one in 16 per thread, so that timing costs nothing
    /// measurable on a memory hit.
    pub samples: u64,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest timed operation.
    pub max: Duration,
}
