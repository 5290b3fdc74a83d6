//! [`Cache`]: the typed handle users hold.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::backend::{Backend, HealthReport, KeyTtl, WriteOptions};
use crate::codec::{self, Codec};
use crate::config::CacheConfig;
use crate::error::{Error, Result};
use crate::flight::Flights;
use crate::key::{Namespace, validate_namespace_part};
use crate::options::{ReadRequest, SetOptions, SetRequest, Ttl};
use crate::stats::{Counters, Stats};

/// A cheap-to-clone cache handle: a namespace, TTL policy and codec over one
/// backend. Clones share the backend, the counters and the single-flight
/// table.
///
/// ```
/// # async fn demo(cache: larder_core::Cache) -> larder_core::Result<()> {
/// cache.set("greeting", &"hello").await?;
/// let v: Option<String> = cache.get("greeting").await?;
/// assert_eq!(v.as_deref(), Some("hello"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) namespace: Namespace,
    pub(crate) config: CacheConfig,
    pub(crate) counters: Counters,
    pub(crate) flights: Flights,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.backend)
            .field("namespace", &self.inner.namespace.head())
            .field("codec", &self.inner.config.codec)
            .field("default_ttl", &self.inner.config.default_ttl)
            .finish()
    }
}

/// Builds a [`Cache`]. Start from [`Cache::builder`].
#[must_use]
#[derive(Debug, Default)]
pub struct CacheBuilder {
    backend: Option<Arc<dyn Backend>>,
    config: CacheConfig,
}

impl CacheBuilder {
    /// The backend to store in.
    pub fn backend(self, backend: impl Backend) -> Self {
        self.backend_arc(Arc::new(backend))
    }

    /// The backend to store in, already shared.
    pub fn backend_arc(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Take every setting from `config` (its `url` is not opened here; see
    /// `larder::connect`).
    pub fn config(mut self, config: CacheConfig) -> Self {
        self.config = config;
        self
    }

    /// Key prefix (default `larder`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// Key version (default `v1`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.config.version = version.into();
        self
    }

    /// TTL of writes that do not give one (default 300 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = ttl;
        self
    }

    /// TTL of the `short` bucket (default 30 s).
    pub fn ttl_short(mut self, ttl: Duration) -> Self {
        self.config.ttl_short = ttl;
        self
    }

    /// TTL of the `long` bucket (default 3600 s).
    pub fn ttl_long(mut self, ttl: Duration) -> Self {
        self.config.ttl_long = ttl;
        self
    }

    /// Codec of new writes (default JSON).
    pub fn codec(mut self, codec: Codec) -> Self {
        self.config.codec = codec;
        self
    }

    /// Longest key accepted from callers (default 8 KiB).
    pub fn max_key_length(mut self, bytes: usize) -> Self {
        self.config.max_key_length = bytes;
        self
    }

    /// Largest encoded value accepted (default 32 MiB, or less when the
    /// backend has a lower limit).
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.config.max_value_size = bytes;
        self
    }

    /// Check the settings and build the cache.
    pub fn build(self) -> Result<Cache> {
        let Some(backend) = self.backend else {
            return Err(Error::config(
                "backend",
                "the cache builder",
                "a backend: call .backend(MemoryBackend::new()) or use larder::open(url)",
                "none",
            ));
        };
        let mut config = self.config;
        validate_namespace_part("prefix", &config.prefix, "the cache builder")?;
        validate_namespace_part("version", &config.version, "the cache builder")?;
        for (field, ttl) in [
            ("default_ttl", config.default_ttl),
            ("ttl_short", config.ttl_short),
            ("ttl_long", config.ttl_long),
        ] {
            if ttl.is_zero() {
                return Err(Error::config(
                    field,
                    "the cache builder",
                    "a positive duration",
                    "0s",
                ));
            }
        }
        if let Some(limit) = backend.capabilities().max_value_size {
            config.max_value_size = config.max_value_size.min(limit);
        }
        let namespace = Namespace::new(&config.prefix, &config.version)?
            .with_max_key_length(config.max_key_length);
        Ok(Cache {
            inner: Arc::new(Inner {
                backend,
                namespace,
                config,
                counters: Counters::default(),
                flights: Flights::default(),
            }),
        })
    }
}

/// One match of [`Cache::fuzzy_search`].
#[derive(Debug, Clone, PartialEq)]
pub struct FuzzyMatch<T> {
    /// The key (without the namespace).
    pub key: String,
    /// Similarity from 0 to 1; 1 when the key contains the query.
    pub score: f64,
    /// The value stored under the key.
    pub value: T,
}

/// Options of [`Cache::fuzzy_search`].
#[derive(Debug, Clone, PartialEq)]
pub struct FuzzyOptions {
    /// Lowest score kept (default 0.6).
    pub threshold: f64,
    /// Most matches returned (default 10).
    pub limit: usize,
    /// Only consider keys carrying this tag.
    pub tag: Option<String>,
    /// Most keys examined (default 10,000).
    pub scan_limit: usize,
}

impl Default for FuzzyOptions {
    fn default() -> Self {
        FuzzyOptions {
            threshold: 0.6,
            limit: 10,
            tag: None,
            scan_limit: 10_000,
        }
    }
}

/// How well `key` matches `query`: 1.0 when the key contains the query
/// (ignoring case), else the best Jaro-Winkler similarity of the query to the
/// whole key or to one of its `:`-separated parts.
pub fn fuzzy_score(query: &str, key: &str) -> f64 {
    let query = query.to_lowercase();
    let key = key.to_lowercase();
    if key.contains(&query) {
        return 1.0;
    }
    key.split(':')
        .map(|part| strsim::jaro_winkler(&query, part))
        .fold(strsim::jaro_winkler(&query, &key), f64::max)
}

/// A held distributed lock; release it with [`Lock::release`]. If dropped
/// unreleased, the lock expires after its TTL.
#[derive(Debug)]
pub struct Lock {
    cache: Cache,
    key: String,
    token: String,
}

impl Lock {
    /// The random token identifying this holder.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Release the lock if this holder still has it. Returns `false` when it
    /// had expired and someone else (or no one) holds it now.
    pub async fn release(self) -> Result<bool> {
        let backend = &self.cache.inner.backend;
        let released = backend.unlock(&self.key, &self.token).await;
        self.cache.observe(released)
    }
}

/// A token unlikely to repeat across processes: a process-random seed mixed
/// with time and a counter.
fn lock_token() -> String {
    use std::hash::{BuildHasher, RandomState};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = RandomState::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let a = state.hash_one((n, nanos, std::process::id()));
    let b = state.hash_one((a, n));
    format!("{a:016x}{b:016x}")
}

impl Cache {
    /// Start building a cache.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// The backend behind this cache.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// The namespace keys are stored under.
    pub fn namespace(&self) -> &Namespace {
        &self.inner.namespace
    }

    /// The settings this cache was built with.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The stored form of `key` (namespaced, validated, hashed when long).
    pub fn stored_key(&self, key: &str) -> Result<String> {
        self.inner.namespace.key(key)
    }

    /// Count and log a failed operation; pass results through.
    pub(crate) fn observe<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            self.record_error("operation", e);
        }
        result
    }

    /// Count and log a failure that happened on this cache's behalf (a
    /// failed recache, say) but was not returned to a caller.
    pub fn record_error(&self, operation: &str, error: &Error) {
        Counters::add(&self.inner.counters.errors, 1);
        tracing::warn!(
            backend = self.inner.backend.name(),
            namespace = self.inner.namespace.head(),
            operation,
            kind = error.kind(),
            "larder: {error}"
        );
    }

    /// Decode stored bytes; undecodable bytes are a miss plus a counted error.
    pub(crate) fn decode_hit<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Option<T> {
        match codec::decode::<T>(bytes) {
            Ok((value, _)) => {
                Counters::add(&self.inner.counters.hits, 1);
                Some(value)
            }
            Err(e) => {
                Counters::add(&self.inner.counters.misses, 1);
                tracing::warn!(
                    key,
                    "larder: stored value does not decode; treated as a miss"
                );
                self.record_error("decode", &e);
                None
            }
        }
    }

    /// The backend-level form of `options`: TTL resolved, tags namespaced.
    pub fn write_options(&self, options: &SetOptions) -> Result<WriteOptions> {
        let config = &self.inner.config;
        let ttl = match options.ttl {
            Ttl::Default => Some(config.default_ttl),
            Ttl::Bucket(b) => Some(config.ttl(b)),
            Ttl::Fixed(d) if d.is_zero() => {
                return Err(Error::config(
                    "ttl",
                    "a write",
                    "a positive duration; use no_expiry() to store without expiry",
                    "0s",
                ));
            }
            Ttl::Fixed(d) => Some(d),
            Ttl::Never => None,
        };
        let tags = options
            .tags
            .iter()
            .map(|t| self.inner.namespace.tag(t))
            .collect::<Result<Vec<_>>>()?;
        Ok(WriteOptions {
            ttl,
            tags,
            mode: options.mode,
        })
    }

    pub(crate) fn encode<T: Serialize + ?Sized>(
        &self,
        stored_key: &str,
        value: &T,
    ) -> Result<Bytes> {
        let bytes = codec::encode(self.inner.config.codec, value, None)?;
        let limit = self.inner.config.max_value_size;
        if bytes.len() > limit {
            return Err(Error::PayloadTooLarge {
                key: stored_key.to_owned(),
                size: bytes.len(),
                limit,
            });
        }
        Ok(bytes)
    }

    /// The value under `key`, or `None`. Stored bytes that do not decode as
    /// `T` are a miss (and a counted error), never a panic or a wrong value.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let stored = self.inner.namespace.key(key)?;
        match self.inner.backend.get(&stored).await {
            Ok(Some(bytes)) => Ok(self.decode_hit(key, &bytes)),
            Ok(None) => {
                Counters::add(&self.inner.counters.misses, 1);
                Ok(None)
            }
            Err(e) => {
                self.record_error("get", &e);
                Err(e)
            }
        }
    }

    /// Values of `keys` in the same order, `None` where missing.
    pub async fn get_many<T, K>(&self, keys: &[K]) -> Result<Vec<Option<T>>>
    where
        T: DeserializeOwned,
        K: AsRef<str>,
    {
        let stored = keys
            .iter()
            .map(|k| self.inner.namespace.key(k.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let found = self.observe(self.inner.backend.get_many(&stored).await)?;
        Ok(keys
            .iter()
            .zip(found)
            .map(|(key, bytes)| match bytes {
                Some(b) => self.decode_hit(key.as_ref(), &b),
                None => {
                    Counters::add(&self.inner.counters.misses, 1);
                    None
                }
            })
            .collect())
    }

    /// Store `value` under `key`; configure TTL, tags and mode on the
    /// returned request, then `.await` it.
    pub fn set<'a, T: Serialize + Sync + ?Sized>(
        &'a self,
        key: &'a str,
        value: &'a T,
    ) -> SetRequest<'a, T> {
        SetRequest {
            cache: self,
            key,
            value,
            options: SetOptions::default(),
        }
    }

    /// Store `value` under `key` with `options`. Returns whether it was
    /// written.
    pub async fn set_with<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        options: &SetOptions,
    ) -> Result<bool> {
        let stored = self.inner.namespace.key(key)?;
        let write = self.write_options(options)?;
        let bytes = self.encode(&stored, value)?;
        let written = self.observe(self.inner.backend.set(&stored, bytes, &write).await)?;
        if written {
            Counters::add(&self.inner.counters.sets, 1);
        }
        Ok(written)
    }

    /// Store several values with the same options (mode is ignored: every
    /// entry is written).
    pub async fn set_many<K, T, I>(&self, entries: I, options: &SetOptions) -> Result<()>
    where
        I: IntoIterator<Item = (K, T)>,
        K: AsRef<str>,
        T: Serialize,
    {
        let write = WriteOptions {
            mode: crate::SetMode::Always,
            ..self.write_options(options)?
        };
        let mut encoded = Vec::new();
        for (key, value) in entries {
            let stored = self.inner.namespace.key(key.as_ref())?;
            let bytes = self.encode(&stored, &value)?;
            encoded.push((stored, bytes));
        }
        if encoded.is_empty() {
            return Ok(());
        }
        self.observe(self.inner.backend.set_many(&encoded, &write).await)?;
        Counters::add(&self.inner.counters.sets, encoded.len() as u64);
        Ok(())
    }

    /// Delete `key`; returns whether it held a value.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.delete_many(&[key]).await? > 0)
    }

    /// Delete `keys`; returns how many held a value.
    pub async fn delete_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64> {
        let stored = keys
            .iter()
            .map(|k| self.inner.namespace.key(k.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let n = self.observe(self.inner.backend.delete(&stored).await)?;
        Counters::add(&self.inner.counters.deletes, n);
        Ok(n)
    }

    /// Whether `key` holds a live value.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        let stored = self.inner.namespace.key(key)?;
        self.observe(self.inner.backend.exists(&stored).await)
    }

    /// Give `key` a new TTL; returns `false` when the key is missing.
    pub async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let stored = self.inner.namespace.key(key)?;
        if ttl.is_zero() {
            return Err(Error::config(
                "ttl",
                "expire",
                "a positive duration; use delete() to remove a key",
                "0s",
            ));
        }
        self.observe(self.inner.backend.expire(&stored, ttl).await)
    }

    /// Remaining life of `key`.
    pub async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let stored = self.inner.namespace.key(key)?;
        self.observe(self.inner.backend.ttl(&stored).await)
    }

    /// Add `delta` to the counter under `key` and return the new value. A
    /// missing key starts at 0 and has no expiry; read it back with
    /// `get::<i64>`.
    pub async fn incr(&self, key: &str, delta: i64) -> Result<i64> {
        let stored = self.inner.namespace.key(key)?;
        self.observe(self.inner.backend.incr(&stored, delta).await)
    }

    /// Delete every key carrying any of `tags`; returns how many.
    pub async fn invalidate_tags<S: AsRef<str>>(&self, tags: &[S]) -> Result<u64> {
        let stored = tags
            .iter()
            .map(|t| self.inner.namespace.tag(t.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let n = self.observe(self.inner.backend.invalidate_tags(&stored).await)?;
        Counters::add(&self.inner.counters.invalidations, 1);
        Counters::add(&self.inner.counters.deletes, n);
        Ok(n)
    }

    /// Delete every key carrying `tag`; returns how many.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64> {
        self.invalidate_tags(&[tag]).await
    }

    /// Delete every key of this namespace matching the glob `pattern` (see
    /// [`crate::glob`]); returns how many.
    pub async fn invalidate_pattern(&self, pattern: &str) -> Result<u64> {
        let stored = self.inner.namespace.pattern(pattern)?;
        let n = self.observe(self.inner.backend.delete_matching(&stored).await)?;
        Counters::add(&self.inner.counters.invalidations, 1);
        Counters::add(&self.inner.counters.deletes, n);
        Ok(n)
    }

    /// Up to `limit` keys of this namespace matching `pattern`, without the
    /// namespace.
    pub async fn scan(&self, pattern: &str, limit: usize) -> Result<Vec<String>> {
        let stored = self.inner.namespace.pattern(pattern)?;
        let keys = self.observe(self.inner.backend.scan(&stored, limit).await)?;
        Ok(self.strip_all(keys))
    }

    /// Up to `limit` keys carrying `tag`, without the namespace.
    pub async fn tag_members(&self, tag: &str, limit: usize) -> Result<Vec<String>> {
        let stored = self.inner.namespace.tag(tag)?;
        let keys = self.observe(self.inner.backend.tag_members(&stored, limit).await)?;
        Ok(self.strip_all(keys))
    }

    fn strip_all(&self, keys: Vec<String>) -> Vec<String> {
        keys.iter()
            .filter_map(|k| self.inner.namespace.strip(k).map(str::to_owned))
            .collect()
    }

    /// Delete every key and tag of this cache's namespace (and only those);
    /// returns how many keys.
    pub async fn clear(&self) -> Result<u64> {
        let n = self.observe(self.inner.backend.clear(self.inner.namespace.head()).await)?;
        Counters::add(&self.inner.counters.deletes, n);
        Ok(n)
    }

    /// Keys similar to `query` with their values, best first.
    pub async fn fuzzy_search<T: DeserializeOwned>(
        &self,
        query: &str,
        options: &FuzzyOptions,
    ) -> Result<Vec<FuzzyMatch<T>>> {
        let keys = match &options.tag {
            Some(tag) => self.tag_members(tag, options.scan_limit).await?,
            None => self.scan("*", options.scan_limit).await?,
        };
        let mut scored: Vec<(f64, String)> = keys
            .into_iter()
            .map(|k| (fuzzy_score(query, &k), k))
            .filter(|(score, _)| *score >= options.threshold)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        scored.truncate(options.limit);
        let keys: Vec<&str> = scored.iter().map(|(_, k)| k.as_str()).collect();
        let values = self.get_many::<T, _>(&keys).await?;
        Ok(scored
            .into_iter()
            .zip(values)
            .filter_map(|((score, key), value)| value.map(|value| FuzzyMatch { key, score, value }))
            .collect())
    }

    /// The value under `key`, or the loader's value, stored with the default
    /// TTL. Shorthand for `self.read(key).load(loader)`; see
    /// [`ReadRequest::load`].
    pub async fn get_or_load<T, E, F, Fut>(&self, key: &str, loader: F) -> std::result::Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send,
        E: From<Error>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        self.read(key).load(loader).await
    }

    /// A read-through lookup of `key`; configure, then call `.load(loader)`.
    pub fn read<'a>(&'a self, key: &'a str) -> ReadRequest<'a> {
        ReadRequest::new(self, key)
    }

    /// Try to take the distributed lock `name` for `ttl`. `None` when someone
    /// else holds it.
    pub async fn try_lock(&self, name: &str, ttl: Duration) -> Result<Option<Lock>> {
        let key = self.inner.namespace.key(&format!("__lock:{name}"))?;
        let token = lock_token();
        let taken = self.observe(self.inner.backend.lock(&key, &token, ttl).await)?;
        Ok(taken.then(|| Lock {
            cache: self.clone(),
            key,
            token,
        }))
    }

    /// Probe the backend. Never fails: an unreachable backend is reported
    /// as unhealthy with the error in `details`.
    pub async fn health(&self) -> HealthReport {
        let started = Instant::now();
        match self.inner.backend.health().await {
            Ok(report) => report,
            Err(e) => {
                self.record_error("health", &e);
                HealthReport {
                    backend: self.inner.backend.name(),
                    healthy: false,
                    latency: started.elapsed(),
                    details: vec![("error".to_owned(), e.to_string())],
                }
            }
        }
    }

    /// Counters since this cache was built.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot(self.inner.backend.evictions())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzzy_scores() {
        assert_eq!(fuzzy_score("alice", "user:alice"), 1.0);
        assert_eq!(fuzzy_score("ALI", "user:alice"), 1.0);
        assert!(fuzzy_score("alise", "user:alice") > 0.85);
        assert!(fuzzy_score("zzz", "user:alice") < 0.5);
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(lock_token(), lock_token());
        assert_eq!(lock_token().len(), 32);
    }
}
