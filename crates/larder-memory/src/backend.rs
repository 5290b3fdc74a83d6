//! [`MemoryBackend`]: the [`Backend`] implementation over [`Store`], and
//! [`SyncMemory`], the same store as a [`BlockingBackend`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use larder_core::{
    Backend, BlockingBackend, BoxFuture, Capabilities, Count, Entry, FillGuard, FillStore,
    FillToken, HealthReport, KeyTtl, Result, WriteOptions,
};

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

const KIND: &str = "memory";

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

    /// The keys the tag index holds for `tag` (a stored tag), live or not,
    /// unfiltered: what the conformance suite inspects to check that the
    /// index is kept clean.
    pub fn tag_index(&self, tag: &str) -> Vec<String> {
        self.store.tag_index(tag)
    }

    /// Remove expired entries now. Writes do this for their shard anyway;
    /// call it to release memory in a cache that is only read.
    pub fn purge_expired(&self) {
        self.store.purge_expired();
    }

    /// The same store as a [`BlockingBackend`], to run behind
    /// [`larder_core::Blocking`].
    pub fn blocking(&self) -> SyncMemory {
        SyncMemory {
            store: self.store.clone(),
        }
    }
}

fn capabilities(store: &Store) -> Capabilities {
    let mut caps = Capabilities::none();
    caps.tags = true;
    caps.tag_listing = true;
    caps.scan = true;
    caps.locks = true;
    caps.touch = true;
    caps.get_delete = true;
    caps.signed_counters = true;
    caps.ttl_readable = true;
    caps.exact_counts = true;
    caps.fill_guard = FillGuard::Atomic;
    caps.ttl_resolution = Duration::from_millis(1);
    caps.max_value_size = store.max_value_size();
    caps
}

fn health(store: &Store) -> HealthReport {
    let started = Instant::now();
    let bounds = store.bounds();
    HealthReport::healthy(KIND, KIND, started.elapsed())
        .detail("entries", store.len())
        .detail("max_entries", bounds.max_entries)
        .detail("bytes", store.weighted_size())
        .detail(
            "max_bytes",
            bounds
                .max_bytes
                .map_or("none".to_owned(), |b| b.to_string()),
        )
        .detail("evictions", store.evictions())
}

// Every operation runs inside its future, never when the future is built.
impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        capabilities(&self.store)
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move { Ok(self.store.get(key)) })
    }

    fn get_entry<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>>> {
        Box::pin(async move { Ok(self.store.get_entry(key)) })
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        Box::pin(async move { Ok(keys.iter().map(|k| self.store.get(k)).collect()) })
    }

    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move { self.store.get_and_touch(key, ttl) })
    }

    fn get_delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move { Ok(self.store.get_delete(key)) })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { self.store.set(key, value, options) })
    }

    fn set_many<'a>(
        &'a self,
        entries: &'a [(String, Bytes)],
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { self.blocking().set_many(entries, options) })
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { Ok(self.store.delete(keys)) })
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.store.exists(key)) })
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { self.store.expire(key, ttl) })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        Box::pin(async move { Ok(self.store.ttl(key)) })
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move { self.store.incr(key, delta, ttl) })
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<Count>> {
        Box::pin(async move { Ok(Count::Exact(self.store.invalidate_tags(tags))) })
    }

    fn tag_members<'a>(&'a self, tag: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move { Ok(self.store.tag_members(tag, limit)) })
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<Count>> {
        Box::pin(async move { self.store.delete_matching(pattern) })
    }

    fn scan<'a>(&'a self, pattern: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move { self.store.scan(pattern, limit) })
    }

    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Count>> {
        Box::pin(async move { Ok(self.store.clear(prefix)) })
    }

    fn lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { self.store.lock(key, token, ttl) })
    }

    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.store.unlock(key, token)) })
    }

    fn begin_fill<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(Option<Bytes>, FillToken)>> {
        Box::pin(async move {
            // The token first: an invalidation after it refuses the store.
            let token = self.store.fill_token();
            Ok((self.store.get(key), token))
        })
    }

    fn set_filled<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
        token: FillToken,
    ) -> BoxFuture<'a, Result<FillStore>> {
        Box::pin(async move { self.store.set_filled(key, value, options, token) })
    }

    fn health(&self) -> BoxFuture<'_, Result<HealthReport>> {
        Box::pin(async move { Ok(health(&self.store)) })
    }

    fn evictions(&self) -> Option<u64> {
        Some(self.store.evictions())
    }
}

/// The memory store as a [`BlockingBackend`]: the same store, synchronous.
/// Wrapped in [`larder_core::Blocking`], it runs every operation on the
/// blocking pool; the test suite runs the conformance suite that way to
/// hold core's blocking adapter to the contract. Get one with
/// [`MemoryBackend::blocking`].
#[derive(Debug, Clone)]
pub struct SyncMemory {
    store: Arc<Store>,
}

impl BlockingBackend for SyncMemory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        capabilities(&self.store)
    }

    fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.store.get(key))
    }

    fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        Ok(self.store.get_entry(key))
    }

    fn get_and_touch(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        self.store.get_and_touch(key, ttl)
    }

    fn get_delete(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.store.get_delete(key))
    }

    fn set(&self, key: &str, value: Bytes, options: &WriteOptions) -> Result<bool> {
        self.store.set(key, value, options)
    }

    fn delete(&self, keys: &[String]) -> Result<u64> {
        Ok(self.store.delete(keys))
    }

    fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.store.exists(key))
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.store.expire(key, ttl)
    }

    fn ttl(&self, key: &str) -> Result<KeyTtl> {
        Ok(self.store.ttl(key))
    }

    fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        self.store.incr(key, delta, ttl)
    }

    fn invalidate_tags(&self, tags: &[String]) -> Result<Count> {
        Ok(Count::Exact(self.store.invalidate_tags(tags)))
    }

    fn tag_members(&self, tag: &str, limit: usize) -> Result<Vec<String>> {
        Ok(self.store.tag_members(tag, limit))
    }

    fn delete_matching(&self, pattern: &str) -> Result<Count> {
        self.store.delete_matching(pattern)
    }

    fn scan(&self, pattern: &str, limit: usize) -> Result<Vec<String>> {
        self.store.scan(pattern, limit)
    }

    fn clear(&self, prefix: &str) -> Result<Count> {
        Ok(self.store.clear(prefix))
    }

    fn lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        self.store.lock(key, token, ttl)
    }

    fn unlock(&self, key: &str, token: &str) -> Result<bool> {
        Ok(self.store.unlock(key, token))
    }

    fn begin_fill(&self, key: &str) -> Result<(Option<Bytes>, FillToken)> {
        let token = self.store.fill_token();
        Ok((self.store.get(key), token))
    }

    fn set_filled(
        &self,
        key: &str,
        value: Bytes,
        options: &WriteOptions,
        token: FillToken,
    ) -> Result<FillStore> {
        self.store.set_filled(key, value, options, token)
    }

    fn health(&self) -> Result<HealthReport> {
        Ok(health(&self.store))
    }

    fn evictions(&self) -> Option<u64> {
        Some(self.store.evictions())
    }
}
