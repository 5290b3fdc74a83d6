//! Settings of the resilience layer, with their defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a cache does when its backend fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Fallback {
    /// A cache outage never fails the caller: reads miss (and a loader
    /// runs), writes are dropped, invalidations are journaled; each is
    /// counted and logged. The default.
    #[default]
    Open,
    /// The backend's error is returned to the caller (the read-through still
    /// runs its loader).
    Closed,
}

/// The resilience layer around a shared backend: timeouts, retries, a
/// circuit breaker, backpressure, the invalidation journal and an optional
/// local fallback. See `docs/resilience.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ResilienceConfig {
    /// Wrap shared backends (Redis, SQLite) in the layer (default true).
    /// In-process backends (memory, sled) are never wrapped, nor a backend
    /// that does the layer's work itself (Memcached, per server).
    pub enabled: bool,
    /// The longest one operation may take, retries included (default 1 s).
    #[serde(with = "crate::config::duration_serde")]
    pub timeout: Duration,
    /// The longest an operation whose cost grows with the data may take:
    /// a tag or pattern invalidation, a clear, the replay of one (default
    /// 30 s). A batch (`get_many`, `set_many`, `delete_many`) gets one
    /// `timeout` per 1,000 keys, up to this.
    #[serde(with = "crate::config::duration_serde")]
    pub bulk_timeout: Duration,
    /// Extra attempts of an operation that is safe to repeat, after a
    /// transient failure (default 2). Never for `incr`, locks, conditional
    /// writes or `get_delete`.
    pub retries: u32,
    /// The first pause between attempts; it doubles, with jitter, up to ten
    /// times itself (default 20 ms).
    #[serde(with = "crate::config::duration_serde")]
    pub retry_backoff: Duration,
    /// Consecutive failed operations that open the circuit (default 5).
    pub breaker_threshold: u32,
    /// Open the circuit when at least this share of the last 20 operations
    /// failed (0 turns it off; default 0.5).
    pub breaker_failure_rate: f64,
    /// How long an open circuit rejects operations before one probe is let
    /// through (default 5 s).
    #[serde(with = "crate::config::duration_serde")]
    pub breaker_open_for: Duration,
    /// Operations running against the backend at once (default 256).
    pub max_concurrency: usize,
    /// Operations that may wait for a free slot; beyond, an operation fails
    /// at once with a backpressure error (default 1024).
    pub queue_limit: usize,
    /// What callers see when the backend fails (default `open`).
    pub fallback: Fallback,
    /// Entries of an in-process cache used while the circuit is open (0
    /// turns it off, the default).
    pub local_fallback_entries: usize,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        ResilienceConfig {
            enabled: true,
            timeout: Duration::from_secs(1),
            bulk_timeout: Duration::from_secs(30),
            retries: 2,
            retry_backoff: Duration::from_millis(20),
            breaker_threshold: 5,
            breaker_failure_rate: 0.5,
            breaker_open_for: Duration::from_secs(5),
            max_concurrency: 256,
            queue_limit: 1024,
            fallback: Fallback::Open,
            local_fallback_entries: 0,
        }
    }
}

impl ResilienceConfig {
    /// The defaults (see each field).
    pub fn new() -> Self {
        Self::default()
    }

    /// No resilience layer: the backend's own errors and timeouts, as they
    /// come.
    pub fn disabled() -> Self {
        ResilienceConfig {
            enabled: false,
            ..Self::default()
        }
    }
}

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitState {
    /// Operations go to the backend.
    Closed,
    /// Operations are rejected at once until the open period ends.
    Open,
    /// One probe is let through; its outcome closes or reopens the circuit.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half-open`.
    pub fn name(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}
