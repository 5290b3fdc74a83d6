//! Read-through: look up, else load once (single-flight, optionally under a
//! distributed lock) and store what is worth storing, unless an
//! invalidation happened while the load ran; refresh values whose fresh
//! window has passed, and serve them stale while a refresh fails.
//!
//! `mod.rs` holds the public types (what an outcome stores, the fill
//! options); `through.rs` the lookup, single-flight, load and store;
//! `refresh.rs` early refresh and stale serving.

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

use crate::options::Ttl;

mod refresh;
mod through;

pub(crate) use through::{FillPlan, Looked, ReadThrough};

/// What a cached function returns, and which part of it is stored.
///
/// Implemented for `Result<T, E>` (only `Ok` is stored), `Option<T>` (only
/// `Some`, unless `cache_none`), and [`Plain<T>`] (always stored).
pub trait Outcome: Sized {
    /// The stored form.
    type Value: Serialize + DeserializeOwned;
    /// What a `condition` predicate sees.
    type Subject;
    /// The part to store, if any.
    fn stored(&self, cache_none: bool) -> Option<&Self::Value>;
    /// The value to hand to callers that shared the load, whether or not it
    /// is stored; `None` for a failure.
    fn value(&self) -> Option<&Self::Value>;
    /// What the predicate judges, when there is a value.
    fn subject(&self) -> Option<&Self::Subject>;
    /// Rebuild the outcome from a stored value.
    fn from_stored(value: Self::Value) -> Self;
}

impl<T: Serialize + DeserializeOwned, E> Outcome for std::result::Result<T, E> {
    type Value = T;
    type Subject = T;
    fn stored(&self, _cache_none: bool) -> Option<&T> {
        self.as_ref().ok()
    }
    fn value(&self) -> Option<&T> {
        self.as_ref().ok()
    }
    fn subject(&self) -> Option<&T> {
        self.as_ref().ok()
    }
    fn from_stored(value: T) -> Self {
        Ok(value)
    }
}

impl<T: Serialize + DeserializeOwned> Outcome for Option<T> {
    type Value = Option<T>;
    type Subject = T;
    fn stored(&self, cache_none: bool) -> Option<&Option<T>> {
        (self.is_some() || cache_none).then_some(self)
    }
    fn value(&self) -> Option<&Option<T>> {
        Some(self)
    }
    fn subject(&self) -> Option<&T> {
        self.as_ref()
    }
    fn from_stored(value: Option<T>) -> Self {
        value
    }
}

/// A return value that is always stored (neither `Result` nor `Option`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plain<T>(pub T);

impl<T: Serialize + DeserializeOwned> Outcome for Plain<T> {
    type Value = T;
    type Subject = T;
    fn stored(&self, _cache_none: bool) -> Option<&T> {
        Some(&self.0)
    }
    fn value(&self) -> Option<&T> {
        Some(&self.0)
    }
    fn subject(&self) -> Option<&T> {
        Some(&self.0)
    }
    fn from_stored(value: T) -> Self {
        Plain(value)
    }
}

/// Fill-time settings of a read-through.
///
/// ```
/// use std::time::Duration;
/// use larder_core::FillOptions;
/// let fill = FillOptions::new()
///     .ttl(Duration::from_secs(300))
///     .stale_ttl(Duration::from_secs(60))
///     .lock(true);
/// assert!(fill.lock);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FillOptions {
    /// How long a loaded value is fresh (and, without a stale window, how
    /// long it is kept).
    pub ttl: Ttl,
    /// Store `None` results too.
    pub cache_none: bool,
    /// Take a distributed lock around the load, so that one process loads.
    pub lock: bool,
    /// How long the lock is held at most, and how long others wait for the
    /// holder's value before loading themselves.
    pub lock_timeout: Duration,
    /// Renew the TTL on every hit (sliding expiry).
    pub refresh_on_hit: bool,
    /// Early refresh window: the value's fresh window ends this long after
    /// it is stored (at most the TTL). Recorded in the value's header
    /// (`fresh_until`).
    pub early_ttl: Option<Duration>,
    /// Stale window: the value is kept this long past its TTL, so that it can
    /// be served stale. The physical TTL is `ttl + stale_ttl`; the header's
    /// `fresh_until` marks where freshness ends.
    pub stale_ttl: Option<Duration>,
    /// Probabilistic early expiration (XFetch): refresh before the fresh
    /// window ends, with a probability that rises as it nears its end and
    /// with how long the value took to load, scaled by this factor (1.0 is
    /// the usual choice). Needs no coordination between callers.
    pub xfetch: Option<f64>,
}

impl Default for FillOptions {
    fn default() -> Self {
        FillOptions {
            ttl: Ttl::Default,
            cache_none: false,
            lock: false,
            lock_timeout: Duration::from_secs(5),
            refresh_on_hit: false,
            early_ttl: None,
            stale_ttl: None,
            xfetch: None,
        }
    }
}

impl FillOptions {
    /// The defaults: the cache's default TTL, no lock, no windows.
    pub fn new() -> Self {
        Self::default()
    }

    /// See [`FillOptions::ttl`](#structfield.ttl).
    #[must_use]
    pub fn ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.ttl = ttl.into();
        self
    }

    /// See [`FillOptions::cache_none`](#structfield.cache_none).
    #[must_use]
    pub fn cache_none(mut self, cache_none: bool) -> Self {
        self.cache_none = cache_none;
        self
    }

    /// See [`FillOptions::lock`](#structfield.lock).
    #[must_use]
    pub fn lock(mut self, lock: bool) -> Self {
        self.lock = lock;
        self
    }

    /// See [`FillOptions::lock_timeout`](#structfield.lock_timeout).
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// See [`FillOptions::refresh_on_hit`](#structfield.refresh_on_hit).
    #[must_use]
    pub fn refresh_on_hit(mut self, refresh: bool) -> Self {
        self.refresh_on_hit = refresh;
        self
    }

    /// See [`FillOptions::early_ttl`](#structfield.early_ttl).
    #[must_use]
    pub fn early_ttl(mut self, window: impl Into<Option<Duration>>) -> Self {
        self.early_ttl = window.into();
        self
    }

    /// See [`FillOptions::stale_ttl`](#structfield.stale_ttl).
    #[must_use]
    pub fn stale_ttl(mut self, window: impl Into<Option<Duration>>) -> Self {
        self.stale_ttl = window.into();
        self
    }

    /// See [`FillOptions::xfetch`](#structfield.xfetch).
    #[must_use]
    pub fn xfetch(mut self, beta: impl Into<Option<f64>>) -> Self {
        self.xfetch = beta.into();
        self
    }

    /// Whether a hit may trigger a refresh.
    pub(crate) fn refreshes(&self) -> bool {
        self.early_ttl.is_some() || self.stale_ttl.is_some() || self.xfetch.is_some()
    }
}
