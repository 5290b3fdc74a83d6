//! [`MemoryBackend`]: the [`Backend`] implementation over [`Store`].

use std::future::ready;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use larder_core::{Backend, BoxFuture, Capabilities, HealthReport, KeyTtl, Result, WriteOptions};

use crate::config::MemoryConfig;
use crate::store::{Bounds, Store};

/// The in-process backend. Cheap to clone; clones share the store.
///
/// ```
/// use larder_memory::MemoryBackend;
/// let backend = MemoryBackend::builder().max_entries(50_000).max_bytes(64 << 20).build();
/// assert_eq!(backend.len(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    store: Arc<Store>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// A store of at most [`MemoryConfig::DEFAULT_MAX_ENTRIES`] entries.
    pub fn new() -> Self {
        Self::with_config(&MemoryConfig::default())
    }

    /// Start configuring a backend.
    pub fn builder() -> MemoryConfig {
        MemoryConfig::default()
    }

    /// A backend with these settings.
    pub fn with_config(config: &MemoryConfig) -> Self {
        MemoryBackend {
            store: Arc::new(Store::new(Bounds {
                max_entries: config.max_entries.max(1),
                max_bytes: config.max_bytes,
            })),
        }
    }

    /// The live value under `key` (a stored, namespaced key), synchronously.
    /// This is the bare store lookup the cache's `get` wraps.
    pub fn get_now(&self, key: &str) -> Option<Bytes> {
        self.store.get(key)
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether the store holds no live entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held (keys, values and per-entry bookkeeping).
    pub fn weighted_size(&self) -> usize {
        self.store.weighted_size()
    }

    /// Tags that have at least one member.
    pub fn tag_count(&self) -> usize {
        self.store.tag_count()
    }

    /// Remove expired entries now. Writes do this for their shard anyway;
    /// call it to release memory in a cache that is only read.
    pub fn purge_expired(&self) {
        self.store.purge_expired();
    }
}

fn done<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(ready(value))
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::full();
        caps.max_value_size = self.store.max_value_size();
        caps
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        done(Ok(self.store.get(key)))
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        done(Ok(keys.iter().map(|k| self.store.get(k)).collect()))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<bool>> {
        done(Ok(self.store.set(key, value, options)))
    }

    fn set_many<'a>(
        &'a self,
        entries: &'a [(String, Bytes)],
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<()>> {
        for (key, value) in entries {
            self.store.set(key, value.clone(), options);
        }
        done(Ok(()))
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        done(Ok(self.store.delete(keys)))
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        done(Ok(self.store.exists(key)))
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        done(Ok(self.store.expire(key, ttl)))
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        done(Ok(self.store.ttl(key)))
    }

    fn incr<'a>(&'a self, key: &'a str, delta: i64) -> BoxFuture<'a, Result<i64>> {
        done(self.store.incr(key, delta))
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        done(Ok(self.store.invalidate_tags(tags)))
    }

    fn tag_members<'a>(&'a self, tag: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        done(Ok(self.store.tag_members(tag, limit)))
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64>> {
        done(self.store.delete_matching(pattern))
    }

    fn scan<'a>(&'a self, pattern: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        done(self.store.scan(pattern, limit))
    }

    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64>> {
        done(Ok(self.store.clear(prefix)))
    }

    fn lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        done(Ok(self.store.lock(key, token, ttl)))
    }

    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<bool>> {
        done(Ok(self.store.unlock(key, token)))
    }

    fn health(&self) -> BoxFuture<'_, Result<HealthReport>> {
        let started = Instant::now();
        let bounds = self.store.bounds();
        let details = vec![
            ("entries".to_owned(), self.store.len().to_string()),
            ("max_entries".to_owned(), bounds.max_entries.to_string()),
            ("bytes".to_owned(), self.store.weighted_size().to_string()),
            (
                "max_bytes".to_owned(),
                bounds
                    .max_bytes
                    .map_or("none".to_owned(), |b| b.to_string()),
            ),
            ("evictions".to_owned(), self.store.evictions().to_string()),
        ];
        done(Ok(HealthReport {
            backend: "memory",
            healthy: true,
            latency: started.elapsed(),
            details,
        }))
    }

    fn evictions(&self) -> Option<u64> {
        Some(self.store.evictions())
    }
}
