//! The small value types of the backend contract.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

/// When a `set` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SetMode {
    /// Always write (the default).
    #[default]
    Always,
    /// Write only when the key holds no live value (`SET NX`).
    IfAbsent,
    /// Write only when the key holds a live value (`SET XX`).
    IfPresent,
}

/// Options of one write, as a backend receives them: the TTL resolved, the
/// tags namespaced.
///
/// ```
/// use std::time::Duration;
/// use larder_core::{SetMode, WriteOptions};
/// let options = WriteOptions::new()
///     .ttl(Duration::from_secs(60))
///     .tags(["svc:v1:user:1"])
///     .mode(SetMode::IfAbsent);
/// assert_eq!(options.tags, vec!["svc:v1:user:1".to_owned()]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOptions {
    /// Time to live; `None` stores without expiry. At most
    /// [`MAX_TTL`](crate::MAX_TTL): a backend answers a longer one with
    /// [`Error::InvalidTtl`](crate::Error::InvalidTtl).
    pub ttl: Option<Duration>,
    /// Namespaced tags the key joins. A re-set replaces the key's tag set.
    pub tags: Vec<String>,
    /// When to write.
    pub mode: SetMode,
}

impl WriteOptions {
    /// No expiry, no tags, always write.
    pub fn new() -> Self {
        Self::default()
    }

    /// Expire after `ttl` (`Some`), or never (`None`).
    #[must_use]
    pub fn ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.ttl = ttl.into();
        self
    }

    /// Replace the tags.
    #[must_use]
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// The write mode.
    #[must_use]
    pub fn mode(mut self, mode: SetMode) -> Self {
        self.mode = mode;
        self
    }
}

/// The remaining life of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyTtl {
    /// No live value under this key.
    Missing,
    /// The key lives until deleted or evicted.
    Persistent,
    /// The key expires after this long.
    Expires(Duration),
}

/// When a stored entry expires, as far as the backend can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expiry {
    /// Lives until deleted or evicted.
    Never,
    /// Expires after this long.
    After(Duration),
    /// The backend cannot read TTLs back (see
    /// [`Capabilities::ttl_readable`](crate::Capabilities::ttl_readable)).
    Unknown,
}

impl Expiry {
    /// The remaining life, when the entry expires and the backend knows when.
    pub fn remaining(self) -> Option<Duration> {
        match self {
            Expiry::After(d) => Some(d),
            Expiry::Never | Expiry::Unknown => None,
        }
    }
}

/// A stored entry read whole: the value with its remaining life and its
/// tags. What a near cache needs (an L1 entry must never outlive L2), what
/// `migrate` copies, and what the CLI's `get` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// The stored bytes, as `get` returns them.
    pub value: Bytes,
    /// When it expires.
    pub expiry: Expiry,
    /// Its namespaced tags.
    pub tags: Vec<String>,
}

impl Entry {
    /// An entry.
    pub fn new(value: Bytes, expiry: Expiry, tags: Vec<String>) -> Self {
        Entry {
            value,
            expiry,
            tags,
        }
    }
}

/// How many keys an invalidation removed, when the backend can know it.
///
/// Some backends cannot count: Memcached invalidates a tag by bumping its
/// version, which makes every entry carrying it unreadable without touching
/// them. Such a backend answers [`Count::Unknown`], never a made-up 0.
///
/// ```
/// use larder_core::Count;
/// assert_eq!(Count::Exact(3), 3);
/// assert_ne!(Count::Unknown, 0);
/// assert_eq!(Count::Exact(2) + Count::Exact(1), Count::Exact(3));
/// assert_eq!(Count::Exact(2) + Count::Unknown, Count::Unknown);
/// assert_eq!(Count::Unknown.to_string(), "unknown");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Count {
    /// Exactly this many.
    Exact(u64),
    /// The backend cannot tell.
    Unknown,
}

impl Count {
    /// The count, when it is known.
    pub fn exact(self) -> Option<u64> {
        match self {
            Count::Exact(n) => Some(n),
            Count::Unknown => None,
        }
    }

    /// Whether the backend could not count.
    pub fn is_unknown(self) -> bool {
        self == Count::Unknown
    }
}

impl Default for Count {
    fn default() -> Self {
        Count::Exact(0)
    }
}

impl From<u64> for Count {
    fn from(n: u64) -> Self {
        Count::Exact(n)
    }
}

impl std::ops::Add for Count {
    type Output = Count;

    fn add(self, other: Count) -> Count {
        match (self, other) {
            (Count::Exact(a), Count::Exact(b)) => Count::Exact(a.saturating_add(b)),
            _ => Count::Unknown,
        }
    }
}

impl std::ops::AddAssign for Count {
    fn add_assign(&mut self, other: Count) {
        *self = *self + other;
    }
}

impl PartialEq<u64> for Count {
    fn eq(&self, other: &u64) -> bool {
        *self == Count::Exact(*other)
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Exact(n) => write!(f, "{n}"),
            Count::Unknown => f.write_str("unknown"),
        }
    }
}

/// A backend's (or a cache's) health, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum HealthStatus {
    /// Everything answered.
    Healthy,
    /// Serving, with a part missing or recovering: a route down, a circuit
    /// half-open, invalidations waiting to be replayed.
    Degraded,
    /// Not serving: the probe failed, or the circuit is open.
    Unhealthy,
}

impl HealthStatus {
    /// `healthy`, `degraded` or `unhealthy`.
    pub const fn name(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a backend answered its health probe, and what it says about
/// itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthReport {
    /// Backend kind (`memory`, `redis`, `router`).
    pub backend: &'static str,
    /// The backend instance's label (`redis@cache.internal:6379`).
    pub label: String,
    /// Healthy, degraded or unhealthy.
    pub status: HealthStatus,
    /// Why the status is not healthy, one line each (the error of a failed
    /// probe, an open circuit, a route down). Empty when healthy.
    pub reasons: Vec<String>,
    /// Round-trip time of the probe.
    pub latency: Duration,
    /// Extra facts (pool state, server version, entry counts, circuit
    /// state), as name/value. Never a secret.
    pub details: Vec<(String, String)>,
    /// The report of each route of a router, in routing order (empty for
    /// other backends).
    pub routes: Vec<RouteHealth>,
}

/// The health of one route of a router.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteHealth {
    /// The route's name (`default` for the default route).
    pub name: String,
    /// The key prefix it serves (`""` for the default route).
    pub prefix: String,
    /// The route's backend's report.
    pub report: HealthReport,
}

impl RouteHealth {
    /// The report of route `name`, serving `prefix`.
    pub fn new(name: impl Into<String>, prefix: impl Into<String>, report: HealthReport) -> Self {
        RouteHealth {
            name: name.into(),
            prefix: prefix.into(),
            report,
        }
    }
}

impl HealthReport {
    /// A healthy report for `backend` / `label`, probed in `latency`.
    pub fn healthy(backend: &'static str, label: impl Into<String>, latency: Duration) -> Self {
        HealthReport {
            backend,
            label: label.into(),
            status: HealthStatus::Healthy,
            reasons: Vec::new(),
            latency,
            details: Vec::new(),
            routes: Vec::new(),
        }
    }

    /// An unhealthy report: the probe failed after `latency` with `error`.
    pub fn unhealthy(
        backend: &'static str,
        label: impl Into<String>,
        latency: Duration,
        error: impl fmt::Display,
    ) -> Self {
        HealthReport::healthy(backend, label, latency).fail(error)
    }

    /// Whether the backend serves: healthy or degraded.
    pub fn is_healthy(&self) -> bool {
        self.status != HealthStatus::Unhealthy
    }

    /// Add one fact.
    #[must_use]
    pub fn detail(mut self, name: impl Into<String>, value: impl fmt::Display) -> Self {
        self.details.push((name.into(), value.to_string()));
        self
    }

    /// The value of detail `name`, if present.
    pub fn detail_of(&self, name: &str) -> Option<&str> {
        self.details
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Mark the report degraded (unless it is worse already) because of
    /// `reason`.
    #[must_use]
    pub fn degrade(mut self, reason: impl fmt::Display) -> Self {
        self.status = self.status.max(HealthStatus::Degraded);
        self.reasons.push(reason.to_string());
        self
    }

    /// Mark the report unhealthy because of `reason`.
    #[must_use]
    pub fn fail(mut self, reason: impl fmt::Display) -> Self {
        self.status = HealthStatus::Unhealthy;
        self.reasons.push(reason.to_string());
        self
    }

    /// The report as JSON, as `larder health --format json` prints it and
    /// the axum health route sends it: `status`, `healthy`, `reasons`,
    /// `backend`, `label`, `latency_us`, `details` (an object) and `routes`
    /// (each route's report with its `name` and `prefix`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{Map, Value, json};
        let details: Map<String, Value> = self
            .details
            .iter()
            .map(|(n, v)| (n.clone(), Value::String(v.clone())))
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|route| {
                let mut value = route.report.to_json();
                if let Value::Object(map) = &mut value {
                    map.insert("name".into(), Value::String(route.name.clone()));
                    map.insert("prefix".into(), Value::String(route.prefix.clone()));
                }
                value
            })
            .collect();
        json!({
            "status": self.status.name(),
            "healthy": self.is_healthy(),
            "reasons": self.reasons,
            "backend": self.backend,
            "label": self.label,
            "latency_us": u64::try_from(self.latency.as_micros()).unwrap_or(u64::MAX),
            "details": details,
            "routes": routes,
        })
    }
}

/// Taken when a read-through load starts (see
/// [`Backend::begin_fill`](crate::Backend::begin_fill)): a store made with it
/// is refused when the key, one of the tags it is stored with, or its
/// namespace was invalidated (deleted, tag- or pattern-invalidated, cleared)
/// after the load started. What the number means is the backend's business
/// (a sequence number, a server clock reading); the cache only hands it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FillToken(u64);

impl FillToken {
    /// A token holding a backend's own reading.
    pub const fn new(reading: u64) -> Self {
        FillToken(reading)
    }

    /// The reading this token was made from.
    pub const fn reading(self) -> u64 {
        self.0
    }
}

/// What [`Backend::set_filled`](crate::Backend::set_filled) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FillStore {
    /// The value was stored.
    Stored,
    /// Not stored: a live value was there already (the fill lost a race with
    /// another writer, whose value stands).
    Declined,
    /// Not stored: the key, a tag or the namespace was invalidated after the
    /// load started, or the load took longer than
    /// [`MAX_FILL_AGE`](crate::MAX_FILL_AGE). The loaded value may be older
    /// than what the invalidation stood for.
    Refused,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_json_nests_routes_with_their_names() {
        let down = HealthReport::healthy("redis", "redis@h:6379", Duration::from_micros(1500))
            .fail("connection refused");
        let mut report = HealthReport::healthy("router", "router", Duration::from_millis(2))
            .detail("routes", 1)
            .degrade("route sessions is down");
        report
            .routes
            .push(RouteHealth::new("sessions", "session:", down));
        let json = report.to_json();
        assert_eq!(json["status"], "degraded");
        assert_eq!(json["healthy"], true);
        assert_eq!(json["latency_us"], 2000);
        assert_eq!(json["details"]["routes"], "1");
        assert_eq!(json["routes"][0]["name"], "sessions");
        assert_eq!(json["routes"][0]["prefix"], "session:");
        assert_eq!(json["routes"][0]["status"], "unhealthy");
        assert_eq!(json["routes"][0]["healthy"], false);
        assert_eq!(json["routes"][0]["reasons"][0], "connection refused");
    }
}
