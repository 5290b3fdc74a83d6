//! The names of the metrics larder emits through the [`metrics`] facade,
//! with their kind, labels and meaning. `docs/observability.md` lists the
//! same (a test compares them).
//!
//! Every metric is labelled `backend` (the backend's label, such as
//! `redis@cache.internal:6379` or `router`) and, when emitted by a
//! [`Cache`](crate::Cache), `namespace` (its key prefix and version).

/// Lookups that found a value. Counter.
pub const HITS: &str = "larder_hits_total";
/// Lookups that found nothing, or bytes that did not decode. Counter.
pub const MISSES: &str = "larder_misses_total";
/// Values written. Counter.
pub const SETS: &str = "larder_sets_total";
/// Keys deleted (by `delete`, and by invalidations that count). Counter.
pub const DELETES: &str = "larder_deletes_total";
/// Invalidations run, labelled `kind` = `tag`, `pattern` or `clear`.
/// Counter.
pub const INVALIDATIONS: &str = "larder_invalidations_total";
/// Failures, labelled `operation` and `kind` (an error kind such as
/// `timeout`, `unavailable`, `codec`). Counter.
pub const ERRORS: &str = "larder_errors_total";
/// Entries the backend evicted, where it counts them (memory, sled).
/// Counter.
pub const EVICTIONS: &str = "larder_evictions_total";
/// Loader runs by the read-through. Counter.
pub const LOADER_RUNS: &str = "larder_loader_runs_total";
/// Read-through callers that took another caller's load. Counter.
pub const SINGLE_FLIGHT_JOINS: &str = "larder_single_flight_joins_total";
/// Refresh loads (early refresh, stale-while-revalidate). Counter.
pub const REFRESHES: &str = "larder_refreshes_total";
/// Values served past their fresh window because the refresh failed.
/// Counter.
pub const STALE_SERVED: &str = "larder_stale_served_total";
/// Writes and invalidations let pass while the backend was out. Counter.
pub const DROPPED_WRITES: &str = "larder_dropped_writes_total";
/// Stored values that failed their integrity check (unsigned on a cache
/// that requires signatures, a signature that does not match, a value that
/// does not decrypt); each was treated as a miss. Counter.
pub const INTEGRITY_ERRORS: &str = "larder_integrity_errors_total";
/// Operation latency in seconds, labelled `operation`; one operation in 16
/// per thread is timed. Histogram.
pub const OPERATION_DURATION: &str = "larder_operation_duration_seconds";
/// The resilience layer's circuit: 0 closed, 1 half-open, 2 open; labelled
/// `backend` only. Gauge.
pub const CIRCUIT_STATE: &str = "larder_circuit_state";
/// Times the circuit opened; labelled `backend` only. Counter.
pub const CIRCUIT_OPENED: &str = "larder_circuit_opened_total";
/// Invalidations waiting in the resilience layer's journal; labelled
/// `backend` only. Gauge.
pub const PENDING_INVALIDATIONS: &str = "larder_pending_invalidations";

/// Reads the near cache (L1) served, without the backend. Also counted in
/// `larder_hits_total`. Counter.
pub const NEAR_HITS: &str = "larder_near_hits_total";
/// Invalidation messages the near cache received from the backend's
/// stream. Counter.
pub const NEAR_INVALIDATIONS_RECEIVED: &str = "larder_near_invalidations_received_total";
/// Near cache flushes because its invalidation stream disconnected, lagged
/// or sent something unreadable. Counter.
pub const NEAR_DISCONNECT_FLUSHES: &str = "larder_near_disconnect_flushes_total";
/// Invalidation lag in seconds: from the writer sending a message to this
/// process applying it. Histogram.
pub const NEAR_INVALIDATION_LAG: &str = "larder_near_invalidation_lag_seconds";

/// Every metric: name, kind, and what it measures.
pub const ALL: &[(&str, &str, &str)] = &[
    (HITS, "counter", "lookups that found a value"),
    (MISSES, "counter", "lookups that found nothing"),
    (SETS, "counter", "values written"),
    (DELETES, "counter", "keys deleted"),
    (INVALIDATIONS, "counter", "invalidations run, by kind"),
    (ERRORS, "counter", "failures, by operation and kind"),
    (EVICTIONS, "counter", "entries the backend evicted"),
    (LOADER_RUNS, "counter", "loader runs by the read-through"),
    (
        SINGLE_FLIGHT_JOINS,
        "counter",
        "callers that took another caller's load",
    ),
    (REFRESHES, "counter", "refresh loads"),
    (
        STALE_SERVED,
        "counter",
        "values served past their fresh window after a failed refresh",
    ),
    (
        DROPPED_WRITES,
        "counter",
        "writes let pass while the backend was out",
    ),
    (
        INTEGRITY_ERRORS,
        "counter",
        "stored values that failed their integrity check",
    ),
    (
        OPERATION_DURATION,
        "histogram",
        "operation latency in seconds (sampled)",
    ),
    (
        CIRCUIT_STATE,
        "gauge",
        "circuit state: 0 closed, 1 half-open, 2 open",
    ),
    (CIRCUIT_OPENED, "counter", "times the circuit opened"),
    (
        PENDING_INVALIDATIONS,
        "gauge",
        "invalidations waiting in the journal",
    ),
    (NEAR_HITS, "counter", "reads the near cache served"),
    (
        NEAR_INVALIDATIONS_RECEIVED,
        "counter",
        "invalidation messages the near cache received",
    ),
    (
        NEAR_DISCONNECT_FLUSHES,
        "counter",
        "near cache flushes because its invalidation stream was down",
    ),
    (
        NEAR_INVALIDATION_LAG,
        "histogram",
        "invalidation lag in seconds, writer to near cache",
    ),
];

/// Describe every metric to the installed recorder (their help text).
pub(crate) fn describe() {
    for (name, kind, help) in ALL {
        match *kind {
            "counter" => metrics::describe_counter!(*name, *help),
            "gauge" => metrics::describe_gauge!(*name, *help),
            _ if *name == OPERATION_DURATION || *name == NEAR_INVALIDATION_LAG => {
                metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help);
            }
            _ => metrics::describe_histogram!(*name, *help),
        }
    }
}
