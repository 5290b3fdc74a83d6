//! The byte-level storage contract every backend implements.
//!
//! A backend knows bytes, keys, TTLs and tags: nothing about serde, templates
//! or functions. Keys and tags arrive fully namespaced (`svc:v1:user:42`).
//! The trait is object-safe so a [`Cache`](crate::Cache) can hold an
//! `Arc<dyn Backend>` chosen at run time from a URL.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};

/// A boxed, `Send` future: the return type of every [`Backend`] operation.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// When a `set` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetMode {
    /// Always write (the default).
    #[default]
    Always,
    /// Write only when the key holds no live value (`SET NX`).
    IfAbsent,
    /// Write only when the key holds a live value (`SET XX`).
    IfPresent,
}

/// Options of one write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Time to live; `None` stores without expiry.
    pub ttl: Option<Duration>,
    /// Namespaced tags the key joins. A re-set replaces the key's tag set.
    pub tags: Vec<String>,
    /// When to write.
    pub mode: SetMode,
}

/// The remaining life of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    /// No live value under this key.
    Missing,
    /// The key lives until deleted or evicted.
    Persistent,
    /// The key expires after this long.
    Expires(Duration),
}

/// What a backend does natively. Operations a backend cannot do answer
/// [`Error::Unsupported`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Tags are kept by the backend (rather than emulated).
    pub tags: bool,
    /// `scan` and `delete_matching` are available.
    pub scan: bool,
    /// `lock` / `unlock` are available.
    pub locks: bool,
    /// Values are shared between processes.
    pub shared: bool,
    /// Values survive a restart.
    pub persistent: bool,
    /// The smallest TTL step the backend honours.
    pub ttl_resolution: Duration,
    /// The largest value the backend stores, if it has a limit.
    pub max_value_size: Option<usize>,
}

impl Capabilities {
    /// Capabilities of a backend that does everything with millisecond TTLs;
    /// adjust the fields that differ.
    pub fn full() -> Self {
        Capabilities {
            tags: true,
            scan: true,
            locks: true,
            shared: false,
            persistent: false,
            ttl_resolution: Duration::from_millis(1),
            max_value_size: None,
        }
    }
}

/// Whether a backend answered its health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// Backend name.
    pub backend: &'static str,
    /// `true` when the backend answered.
    pub healthy: bool,
    /// Round-trip time of the probe.
    pub latency: Duration,
    /// Extra facts (pool state, server version, entry counts), as name/value.
    pub details: Vec<(String, String)>,
}

/// The storage contract. See the module docs.
///
/// Required operations are the ones every cache needs; the rest have default
/// implementations (batches fall back to one call per key; optional features
/// answer [`Error::Unsupported`]). Override a default when the backend can do
/// better, for instance by pipelining.
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Short backend name for errors and metrics (`memory`, `redis`).
    fn name(&self) -> &'static str;

    /// What this backend does natively.
    fn capabilities(&self) -> Capabilities;

    /// The live value under `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>>;

    /// Live values of `keys`, in the same order, `None` for missing ones.
    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(self.get(key).await?);
            }
            Ok(out)
        })
    }

    /// Store `value` under `key`. Returns whether it was written (a set in
    /// `IfAbsent` / `IfPresent` mode may decline).
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Store several values with the same options.
    fn set_many<'a>(
        &'a self,
        entries: &'a [(String, Bytes)],
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for (key, value) in entries {
                self.set(key, value.clone(), options).await?;
            }
            Ok(())
        })
    }

    /// Delete `keys`; returns how many held a live value.
    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>>;

    /// Whether `key` holds a live value.
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>>;

    /// Give a live key a new TTL. Returns `false` when the key is missing.
    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>>;

    /// Remaining life of `key`.
    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>>;

    /// Add `delta` to the decimal integer under `key` (a missing key counts
    /// as 0 and is created without expiry; an existing key keeps its TTL).
    /// A value that is not a decimal integer is [`Error::NotAnInteger`].
    fn incr<'a>(&'a self, key: &'a str, delta: i64) -> BoxFuture<'a, Result<i64>>;

    /// Delete every key carrying any of `tags`; returns how many live keys
    /// were deleted. Costs O(keys in the tags).
    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<u64>>;

    /// Up to `limit` live keys carrying `tag`.
    fn tag_members<'a>(&'a self, tag: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        let _ = (tag, limit);
        Box::pin(async move { Err(self.unsupported("tag_members")) })
    }

    /// Delete live keys matching the glob `pattern` (see [`crate::glob`]);
    /// returns how many.
    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64>> {
        let _ = pattern;
        Box::pin(async move { Err(self.unsupported("delete_matching")) })
    }

    /// Up to `limit` live keys matching the glob `pattern`.
    fn scan<'a>(&'a self, pattern: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        let _ = (pattern, limit);
        Box::pin(async move { Err(self.unsupported("scan")) })
    }

    /// Delete every key and tag whose name starts with `prefix` (a cache's
    /// own namespace, `svc:v1:`); returns how many keys.
    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64>>;

    /// Take the lock `key` for `ttl` if it is free, recording `token` as the
    /// holder. Returns whether the lock was taken.
    fn lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        let _ = (key, token, ttl);
        Box::pin(async move { Err(self.unsupported("lock")) })
    }

    /// Release the lock `key` if `token` still holds it. Returns whether it
    /// was released.
    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<bool>> {
        let _ = (key, token);
        Box::pin(async move { Err(self.unsupported("unlock")) })
    }

    /// Probe the backend.
    fn health(&self) -> BoxFuture<'_, Result<HealthReport>>;

    /// Entries evicted to respect the backend's bounds, when the backend
    /// counts them locally.
    fn evictions(&self) -> Option<u64> {
        None
    }

    /// The [`Error::Unsupported`] error for `operation` on this backend.
    fn unsupported(&self, operation: &'static str) -> Error {
        Error::Unsupported {
            backend: self.name(),
            operation,
        }
    }
}
