//! [`Cache`]: the typed handle users hold.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::backend::{Backend, Count, Expiry, HealthReport, KeyTtl, WriteOptions};
use crate::codec::{self, Format};
use crate::config::CacheConfig;
use crate::core::Core;
use crate::error::{Error, Result};
use crate::fuzzy::{FuzzyMatch, FuzzyOptions, fuzzy_score};
use crate::key::Namespace;
use crate::lock::{self, Lock};
use crate::near::{NearConfig, NearHit};
use crate::options::SetOptions;
use crate::payload::{Raw, Typed};
use crate::read::{FillOptions, FillPlan, Outcome, ReadThrough};
use crate::request::{IncrRequest, ReadRequest, SetRequest};
use crate::resilient::ResilienceConfig;
use crate::seal::{KeyRing, Sealer};
use crate::shared::Shared;
use crate::stats::{Op, Stats};

/// Into how many groups, each with its own jittered TTL, `set_many` splits
/// a batch.
const JITTER_GROUPS: usize = 16;

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
    inner: Arc<Shared>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = self.core();
        f.debug_struct("Cache")
            .field("backend", &core.backend.label())
            .field("namespace", &core.namespace.head())
            .field("codec", &core.config.codec)
            .field("default_ttl", &core.config.default_ttl)
            .finish()
    }
}

/// Builds a [`Cache`]. Start from [`Cache::builder`].
#[must_use]
#[derive(Debug, Default)]
pub struct CacheBuilder {
    backend: Option<Arc<dyn Backend>>,
    local_fallback: Option<Arc<dyn Backend>>,
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
    pub fn codec(mut self, codec: crate::Codec) -> Self {
        self.config.codec = codec;
        self
    }

    /// Longest key accepted from callers (default 8 KiB).
    pub fn max_key_length(mut self, bytes: usize) -> Self {
        self.config.max_key_length = bytes;
        self
    }

    /// Largest serialized value accepted (default 8 MiB, or less when the
    /// backend has a lower limit); also the most a compressed value may
    /// decompress to.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.config.max_value_size = bytes;
        self
    }

    /// Most tags one write may carry (default 64).
    pub fn max_tags(mut self, tags: usize) -> Self {
        self.config.max_tags = tags;
        self
    }

    /// Longest tag accepted, in bytes (default 1 KiB).
    pub fn max_tag_length(mut self, bytes: usize) -> Self {
        self.config.max_tag_length = bytes;
        self
    }

    /// Sign new values with the first of `keys` (HMAC-SHA256, bound to the
    /// stored key) and accept values signed with any of them; values that
    /// are not signed or encrypted are then refused (a miss plus an
    /// `integrity` error). See `docs/security.md`.
    pub fn signing_keys(mut self, keys: KeyRing) -> Self {
        self.config.security.signing_keys = keys;
        self
    }

    /// Encrypt new values with the first of `keys` (AES-256-GCM, 32-byte
    /// keys, the stored key as associated data) and decrypt with any of
    /// them. Encryption authenticates values as signing does.
    pub fn encryption_keys(mut self, keys: KeyRing) -> Self {
        self.config.security.encryption_keys = keys;
        self
    }

    /// Accept values neither signed nor encrypted although keys are
    /// configured (default off): for rolling signing out over a cache that
    /// already holds unsigned values.
    pub fn allow_unsigned(mut self, allow: bool) -> Self {
        self.config.security.allow_unsigned = allow;
        self
    }

    /// Compress payloads of at least this many bytes (default 1 KiB);
    /// `None` turns compression off.
    pub fn compress_min_size(mut self, bytes: Option<usize>) -> Self {
        self.config.security.compress_min_size = bytes;
        self
    }

    /// Spread write TTLs by up to this fraction either way (default 0.1;
    /// 0 turns it off).
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.config.ttl_jitter = fraction;
        self
    }

    /// The resilience layer's settings (see [`ResilienceConfig`]).
    pub fn resilience(mut self, resilience: ResilienceConfig) -> Self {
        self.config.resilience = resilience;
        self
    }

    /// An in-process near cache (L1) of decoded values in front of the
    /// backend; see [`crate::near`]. `NearConfig { max_entries: 0, .. }`
    /// turns off the one an in-process backend gets by default.
    pub fn near(mut self, near: NearConfig) -> Self {
        self.config.near = Some(near);
        self
    }

    /// An in-process backend to serve from while the shared one is out
    /// (see [`Resilient::with_local_fallback`](crate::Resilient::with_local_fallback)).
    pub fn local_fallback(mut self, backend: Arc<dyn Backend>) -> Self {
        self.local_fallback = Some(backend);
        self
    }

    /// Check the settings and build the cache. A shared backend (Redis,
    /// SQLite) is wrapped in the resilience layer unless
    /// `resilience.enabled` is off or the backend already does its work
    /// ([`Backend::journals_invalidations`]: Memcached, per server).
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
        config.validate()?;
        let caps = backend.capabilities();
        if let Some(limit) = caps.max_value_size {
            config.max_value_size = config.max_value_size.min(limit);
        }
        let sealer = Sealer::new(&config.security, config.max_value_size)?;
        let owns_backend = Arc::strong_count(&backend) == 1 && Arc::weak_count(&backend) == 0;
        // An in-process backend this cache owns gets a near cache unless
        // told otherwise: a hit then skips the decode.
        let near = match config.near {
            Some(near) => near.enabled().then_some(near),
            None if !caps.shared && owns_backend => {
                Some(NearConfig::new(crate::near::DEFAULT_IN_PROCESS_ENTRIES))
            }
            None => None,
        };
        let backend = crate::resilient::wrap(backend, &config.resilience, self.local_fallback);
        let namespace = Namespace::new(&config.prefix, &config.version)?
            .with_max_key_length(config.max_key_length);
        Ok(Cache {
            inner: Arc::new(Shared {
                core: Core::new(backend, namespace, config, sealer, near),
                reads: ReadThrough::default(),
                owns_backend,
            }),
        })
    }
}

/// An entry read whole by [`Cache::get_entry`]: what is stored, how, for
/// how long, and with which tags.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheEntry {
    /// How the payload is encoded.
    pub format: Format,
    /// The payload (serde bytes, raw bytes or a counter's digits).
    pub payload: Bytes,
    /// When the entry expires.
    pub expiry: Expiry,
    /// Its tags, without the namespace.
    pub tags: Vec<String>,
    /// End of its fresh window, when it has one.
    pub fresh_until: Option<SystemTime>,
}

impl CacheEntry {
    /// The payload decoded as `T` (serde values and counters).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        match self.format {
            Format::Codec(codec) => codec.decode_payload(&self.payload),
            Format::Counter => codec::Codec::Json.decode_payload(&self.payload),
            _ => Err(codec::raw_is_not_typed()),
        }
    }
}

impl Cache {
    /// Start building a cache.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    fn core(&self) -> &Core {
        &self.inner.core
    }

    /// The backend behind this cache.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.core().backend
    }

    /// The namespace keys are stored under.
    pub fn namespace(&self) -> &Namespace {
        &self.core().namespace
    }

    /// The settings this cache was built with.
    pub fn config(&self) -> &CacheConfig {
        &self.core().config
    }

    /// The stored form of `key` (namespaced, validated, hashed when long or
    /// when the backend forbids one of its characters).
    pub fn stored_key(&self, key: &str) -> Result<String> {
        self.core().key(key)
    }

    /// Count and log a failure that happened on this cache's behalf (a
    /// failed recache, say) but was not returned to a caller. Support for
    /// the attributes.
    #[doc(hidden)]
    pub fn record_error(&self, operation: &str, error: &Error) {
        self.core().record_error(operation, error);
    }

    /// Note a write, delete or invalidation, for the read-through.
    fn invalidated(&self) {
        self.core().note_invalidation();
    }

    fn strip(&self, stored: &str) -> Option<String> {
        self.namespace().strip(stored).map(str::to_owned)
    }

    /// The value under `key`, or `None`. Stored bytes that do not decode as
    /// `T` are a miss (and a counted error), never a panic or a wrong value.
    /// With a near cache, a hit there costs one `clone` of the decoded
    /// value and no decode (see [`Cache::get_shared`]).
    pub async fn get<T>(&self, key: &str) -> Result<Option<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let core = self.core();
        if let Some(near) = &core.near {
            // A hit there clones the value in place (no reference count).
            if let Some(NearHit::Value(value)) = near.get::<T, T>(key, |_, v| v.clone()) {
                let timing = core.counters.start();
                near.hit();
                core.counters.finish(Op::Get, timing);
                return Ok(Some(value));
            }
            return Ok(self.get_shared::<T>(key).await?.map(Arc::unwrap_or_clone));
        }
        core.timed(Op::Get, async {
            let stored = core.key(key)?;
            let found = core.fail_open("get", core.backend.get(&stored).await, None)?;
            Ok(self.decoded(key, &stored, found))
        })
        .await
    }

    /// The value under `key`, decoded on every read (the near cache, if
    /// any, still saves the round trip): for types that are not `Clone`,
    /// `Send`, `Sync` or `'static`, which [`Cache::get`] needs.
    pub async fn get_decoded<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let core = self.core();
        core.timed(Op::Get, async {
            let stored = core.key(key)?;
            if let Some(near) = core.near.as_ref().filter(|n| n.holds(key, &stored))
                && let Some(bytes) = near.get_bytes(key)
            {
                return Ok(core.decode_near::<T>(key, &bytes).map(|(v, _)| v));
            }
            let found = core.fail_open("get", core.backend.get(&stored).await, None)?;
            Ok(self.decoded(key, &stored, found))
        })
        .await
    }

    /// Whether this cache has a near cache (L1) in front of its backend:
    /// then [`Cache::get_shared`] serves repeated reads of a key without a
    /// round trip or a decode.
    pub fn has_near(&self) -> bool {
        self.core().near.is_some()
    }

    /// The value under `key`, shared: with a near cache, a hit there returns
    /// the decoded value it holds without allocating or decoding. A value
    /// stored as another type is decoded again as `T` (a miss and a counted
    /// error when it does not decode), never returned as the wrong type.
    pub async fn get_shared<T>(&self, key: &str) -> Result<Option<Arc<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let core = self.core();
        let found = core.near.as_ref().and_then(|near| {
            let shared = |d: &crate::near::Decoded, _: &T| d.clone().downcast::<T>().ok();
            near.get::<T, _>(key, shared)
        });
        if let Some(NearHit::Value(Some(value))) = found {
            // The hit path: no allocation, no decode, no await.
            let timing = core.counters.start();
            if let Some(near) = &core.near {
                near.hit();
            }
            core.counters.finish(Op::Get, timing);
            return Ok(Some(value));
        }
        core.timed(Op::Get, async {
            // Bytes in the near cache: not decoded yet, or decoded as
            // another type. Decode them as `T` (never hand out the other).
            if let (Some(near), Some(NearHit::Bytes(bytes))) = (&core.near, found) {
                let Some((value, _)) = core.decode_near::<T>(key, &bytes) else {
                    return Ok(None);
                };
                let value = Arc::new(value);
                near.remember_decoded(key, &bytes, value.clone());
                return Ok(Some(value));
            }
            let stored = core.key(key)?;
            let near = core
                .near
                .as_ref()
                .filter(|n| n.live() && n.holds(key, &stored));
            let Some(near) = near else {
                let found = core.fail_open("get", core.backend.get(&stored).await, None)?;
                return Ok(self.decoded::<T>(key, &stored, found).map(Arc::new));
            };
            // The fill race: the sequence is read before the backend read,
            // and the entry kept only if no invalidation came in between.
            let ticket = near.ticket();
            let Some(entry) = core.fail_open("get", core.backend.get_entry(&stored).await, None)?
            else {
                core.miss();
                return Ok(None);
            };
            let Some(plain) = core.open_hit(key, &stored, entry.value) else {
                return Ok(None);
            };
            let Some((value, header)) = core.decode_opened::<T>(key, &plain) else {
                return Ok(None);
            };
            let value = Arc::new(value);
            near.fill(
                key,
                ticket,
                plain,
                Some(value.clone()),
                entry.expiry,
                header.and_then(|h| h.fresh_until),
                &entry.tags,
            );
            Ok(Some(value))
        })
        .await
    }

    /// Values of `keys` in the same order, `None` where missing.
    pub async fn get_many<T, K>(&self, keys: &[K]) -> Result<Vec<Option<T>>>
    where
        T: DeserializeOwned,
        K: AsRef<str>,
    {
        let core = self.core();
        core.timed(Op::GetMany, self.get_many_untimed(keys)).await
    }

    async fn get_many_untimed<T, K>(&self, keys: &[K]) -> Result<Vec<Option<T>>>
    where
        T: DeserializeOwned,
        K: AsRef<str>,
    {
        let core = self.core();
        let stored = keys
            .iter()
            .map(|k| core.key(k.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let found = {
            let missing = vec![None; stored.len()];
            core.fail_open("get_many", core.backend.get_many(&stored).await, missing)?
        };
        Ok(keys
            .iter()
            .zip(stored.iter().zip(found))
            .map(|(key, (stored, bytes))| match bytes {
                Some(b) => core.decode_hit(key.as_ref(), stored, &b),
                None => {
                    core.miss();
                    None
                }
            })
            .collect())
    }

    /// The value under `key`, whose TTL is renewed to `ttl` by the same read
    /// (sliding expiry). On a backend without
    /// [`Capabilities::touch`](crate::Capabilities::touch) this is a read
    /// and an `expire`.
    pub async fn get_and_touch<T: DeserializeOwned>(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<T>> {
        let core = self.core();
        let stored = core.key(key)?;
        let ttl = Error::check_ttl(ttl)?;
        let found = if core.caps.touch {
            core.fail_open("get", core.backend.get_and_touch(&stored, ttl).await, None)?
        } else {
            let found = core.fail_open("get", core.backend.get(&stored).await, None)?;
            if found.is_some() {
                core.fail_open("expire", core.backend.expire(&stored, ttl).await, false)?;
            }
            found
        };
        Ok(self.decoded(key, &stored, found))
    }

    /// The value under `key`, deleted by the same step: no other caller can
    /// read it afterwards. Needs
    /// [`Capabilities::get_delete`](crate::Capabilities::get_delete).
    pub async fn get_delete<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let core = self.core();
        let stored = core.key(key)?;
        self.invalidated();
        let found = core.backend.get_delete(&stored).await;
        core.near_drop(&[key]);
        let found = core.fail_open_write("get_delete", found, None)?;
        if found.is_some() {
            core.counters.deletes.add(1);
        }
        Ok(self.decoded(key, &stored, found))
    }

    fn decoded<T: DeserializeOwned>(
        &self,
        key: &str,
        stored: &str,
        found: Option<Bytes>,
    ) -> Option<T> {
        let core = self.core();
        match found {
            Some(bytes) => core.decode_hit(key, stored, &bytes),
            None => {
                core.miss();
                None
            }
        }
    }

    /// The entry under `key` whole: payload, format, remaining life, tags
    /// and fresh window. For tools (`larder get`) and migrations.
    pub async fn get_entry(&self, key: &str) -> Result<Option<CacheEntry>> {
        let core = self.core();
        let stored = core.key(key)?;
        let Some(entry) =
            core.fail_open("get_entry", core.backend.get_entry(&stored).await, None)?
        else {
            return Ok(None);
        };
        // A value that fails its integrity check is not shown: a miss.
        let Ok(value) = core.observe("get_entry", core.open_bytes(&stored, entry.value)) else {
            core.miss();
            return Ok(None);
        };
        let parsed = core.observe("get_entry", codec::parse(value))?;
        Ok(Some(CacheEntry {
            format: parsed.format,
            payload: parsed.payload,
            expiry: entry.expiry,
            tags: entry.tags.iter().filter_map(|t| self.strip(t)).collect(),
            fresh_until: parsed.fresh_until,
        }))
    }

    /// The bytes stored under `key` by [`Cache::set_raw`], unchanged. A value
    /// stored as a serde value or a counter is an
    /// [`Error::Codec`] that says how to read it.
    pub async fn get_raw(&self, key: &str) -> Result<Option<Bytes>> {
        let core = self.core();
        let stored = core.key(key)?;
        let Some(bytes) = core.fail_open("get", core.backend.get(&stored).await, None)? else {
            core.miss();
            return Ok(None);
        };
        let Ok(bytes) = core.observe("decode", core.open_bytes(&stored, bytes)) else {
            core.miss();
            return Ok(None);
        };
        let parsed = core.observe("decode", codec::parse(bytes))?;
        match parsed.format {
            Format::Raw => {
                core.counters.hits.add(1);
                Ok(Some(parsed.payload))
            }
            other => Err(Error::Codec {
                codec: other.name(),
                message: format!(
                    "the value at {key:?} was stored as {}, not as raw bytes; read it with get::<T>",
                    other.name()
                ),
            }),
        }
    }

    /// Store `value` under `key`; configure TTL, tags and mode on the
    /// returned request, then `.await` it.
    pub fn set<'a, T: Serialize + Sync + ?Sized>(
        &'a self,
        key: &'a str,
        value: &'a T,
    ) -> SetRequest<'a, Typed<'a, T>> {
        SetRequest::new(self.core(), key, Typed(value))
    }

    /// Store `bytes` under `key` unchanged (no codec); read them back with
    /// [`Cache::get_raw`]. Configure and `.await` as [`Cache::set`].
    pub fn set_raw<'a>(&'a self, key: &'a str, bytes: impl Into<Bytes>) -> SetRequest<'a, Raw> {
        SetRequest::new(self.core(), key, Raw(bytes.into()))
    }

    /// Store `value` under `key` with `options`. Returns whether it was
    /// written.
    pub async fn set_with<T: Serialize + Sync + ?Sized>(
        &self,
        key: &str,
        value: &T,
        options: &SetOptions,
    ) -> Result<bool> {
        self.core().set(key, &Typed(value), options).await
    }

    /// Store several values with the same options; the mode applies to each
    /// entry. Returns how many were written.
    pub async fn set_many<K, T, I>(&self, entries: I, options: &SetOptions) -> Result<u64>
    where
        I: IntoIterator<Item = (K, T)>,
        K: AsRef<str>,
        T: Serialize,
    {
        let core = self.core();
        core.timed(Op::SetMany, self.set_many_untimed(entries, options))
            .await
    }

    async fn set_many_untimed<K, T, I>(&self, entries: I, options: &SetOptions) -> Result<u64>
    where
        I: IntoIterator<Item = (K, T)>,
        K: AsRef<str>,
        T: Serialize,
    {
        let core = self.core();
        let write = core.write_options_exact("(set_many)", options)?;
        let mut encoded = Vec::new();
        for (key, value) in entries {
            let stored = core.key(key.as_ref())?;
            let bytes = codec::encode(core.config.codec, &value, None)?;
            let bytes = core.seal(&stored, bytes)?;
            encoded.push((stored, bytes));
        }
        if encoded.is_empty() {
            return Ok(0);
        }
        self.invalidated();
        // Entries written together should not expire together: with TTL
        // jitter, the batch goes in groups, each with its own TTL.
        let groups = match write.ttl {
            Some(_) if core.config.ttl_jitter > 0.0 => encoded.len().min(JITTER_GROUPS),
            _ => 1,
        };
        let mut written = 0;
        for group in encoded.chunks(encoded.len().div_ceil(groups)) {
            let options = WriteOptions {
                ttl: core.jitter(write.ttl),
                ..write.clone()
            };
            let n = core.backend.set_many(group, &options).await;
            if let Some(near) = &core.near {
                let keys: Vec<&str> = group
                    .iter()
                    .filter_map(|(k, _)| core.namespace.strip(k))
                    .collect();
                near.drop_keys(&keys);
            }
            written += core.fail_open_write("set_many", n, 0)?;
        }
        core.counters.sets.add(written);
        Ok(written)
    }

    /// Delete `key`; returns whether it held a value.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.delete_many(&[key]).await? > 0)
    }

    /// Delete `keys`; returns how many held a value.
    pub async fn delete_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64> {
        let core = self.core();
        core.timed(Op::Delete, async {
            let stored = keys
                .iter()
                .map(|k| core.key(k.as_ref()))
                .collect::<Result<Vec<_>>>()?;
            self.invalidated();
            let n = core.backend.delete(&stored).await;
            core.near_drop(keys);
            let n = core.fail_open_write("delete", n, 0)?;
            core.counters.deletes.add(n);
            Ok(n)
        })
        .await
    }

    /// Whether `key` holds a live value.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        let core = self.core();
        let stored = core.key(key)?;
        core.fail_open("exists", core.backend.exists(&stored).await, false)
    }

    /// Give `key` a new TTL; returns `false` when the key is missing.
    pub async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let core = self.core();
        let stored = core.key(key)?;
        let ttl = Error::check_ttl(ttl)?;
        let result = core.backend.expire(&stored, ttl).await;
        core.near_drop(&[key]);
        core.fail_open("expire", result, false)
    }

    /// Remaining life of `key`.
    pub async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let core = self.core();
        let stored = core.key(key)?;
        core.fail_open("ttl", core.backend.ttl(&stored).await, KeyTtl::Missing)
    }

    /// Add `delta` to the counter under `key` and return the new value; a
    /// negative delta decrements (on backends with
    /// [`Capabilities::signed_counters`](crate::Capabilities::signed_counters)).
    /// A missing key starts at 0 and lives without expiry, or for the TTL
    /// given with `.ttl(..)`, set in the same atomic step. Read it back with
    /// `get::<i64>`.
    pub fn incr<'a>(&'a self, key: &'a str, delta: i64) -> IncrRequest<'a> {
        IncrRequest::new(self.core(), key, delta)
    }

    /// Delete every key carrying any of `tags`; returns how many, when the
    /// backend can tell ([`Count::Unknown`] otherwise).
    pub async fn invalidate_tags<S: AsRef<str>>(&self, tags: &[S]) -> Result<Count> {
        let core = self.core();
        core.timed(Op::Invalidate, async {
            let stored = core.tags(tags)?;
            self.invalidated();
            let n = core.backend.invalidate_tags(&stored).await;
            if let Some(near) = &core.near {
                near.drop_tags(&stored);
            }
            let n = core.fail_open_write("invalidate_tags", n, Count::Unknown)?;
            core.counters.tag_invalidations.add(1);
            core.counters.deletes.add(n.exact().unwrap_or(0));
            Ok(n)
        })
        .await
    }

    /// Delete every key carrying `tag`; returns how many, when known.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<Count> {
        self.invalidate_tags(&[tag]).await
    }

    /// Delete every key of this namespace matching the glob `pattern` (see
    /// [`crate::glob`]); returns how many, when known.
    pub async fn invalidate_pattern(&self, pattern: &str) -> Result<Count> {
        let core = self.core();
        core.timed(Op::Invalidate, async {
            let stored = core.namespace.pattern(pattern)?;
            self.invalidated();
            let n = core.backend.delete_matching(&stored).await;
            if let Some(near) = &core.near {
                near.drop_pattern(&stored);
            }
            let n = core.fail_open_write("invalidate_pattern", n, Count::Unknown)?;
            core.counters.pattern_invalidations.add(1);
            core.counters.deletes.add(n.exact().unwrap_or(0));
            Ok(n)
        })
        .await
    }

    /// Up to `limit` keys of this namespace matching `pattern`, without the
    /// namespace, each once.
    pub async fn scan(&self, pattern: &str, limit: usize) -> Result<Vec<String>> {
        let core = self.core();
        let stored = core.namespace.pattern(pattern)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let keys = core.fail_open("scan", core.backend.scan(&stored, limit).await, Vec::new())?;
        Ok(keys.iter().filter_map(|k| self.strip(k)).collect())
    }

    /// Up to `limit` keys carrying `tag`, without the namespace.
    pub async fn tag_members(&self, tag: &str, limit: usize) -> Result<Vec<String>> {
        let core = self.core();
        let stored = core.namespace.tag(tag)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let keys = core.fail_open(
            "tag_members",
            core.backend.tag_members(&stored, limit).await,
            Vec::new(),
        )?;
        Ok(keys.iter().filter_map(|k| self.strip(k)).collect())
    }

    /// Delete every key and tag of this cache's namespace (and only those);
    /// returns how many keys, when known.
    pub async fn clear(&self) -> Result<Count> {
        let core = self.core();
        core.timed(Op::Clear, async {
            self.invalidated();
            let n = core.backend.clear(core.namespace.head()).await;
            if let Some(near) = &core.near {
                near.flush();
            }
            let n = core.fail_open_write("clear", n, Count::Unknown)?;
            core.counters.clears.add(1);
            core.counters.deletes.add(n.exact().unwrap_or(0));
            Ok(n)
        })
        .await
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
        T: Serialize + DeserializeOwned + Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        self.read(key).load(loader).await
    }

    /// A read-through lookup of `key`; configure, then call `.load(loader)`.
    pub fn read<'a>(&'a self, key: &'a str) -> ReadRequest<'a> {
        ReadRequest::new(&self.inner, key)
    }

    /// The read-through behind `#[cache_read]`: never fails because of the
    /// cache. An invalid key, a backend error or a value that does not
    /// encode is logged and counted, and the loader's outcome is returned.
    /// `tags` is called only when something is stored; `share` copies a
    /// failed outcome for the callers that shared the load (`None`: they
    /// load for themselves). Inside [`refresh`](crate::recache::refresh)
    /// the lookup is skipped and the loader's value overwrites the entry.
    #[doc(hidden)]
    pub async fn read_through<O, L, Fut, T, C, S>(
        &self,
        key: &str,
        tags: T,
        fill: &FillOptions,
        condition: C,
        share: S,
        loader: L,
    ) -> O
    where
        O: Outcome + Send + 'static,
        L: FnOnce() -> Fut,
        Fut: Future<Output = O>,
        T: FnOnce() -> Vec<String>,
        C: FnOnce(&O::Subject) -> bool,
        S: Fn(&O) -> Option<O>,
    {
        let core = self.core();
        core.timed(Op::Load, async {
            match core.key(key) {
                Ok(stored) => {
                    let plan = FillPlan {
                        key,
                        stored: &stored,
                        tags,
                        options: fill,
                        condition,
                        share,
                    };
                    self.inner.reads.fill(core, plan, loader).await
                }
                Err(e) => {
                    core.record_error("read_through", &e);
                    core.run_loader(loader).await
                }
            }
        })
        .await
    }

    /// Try to take the distributed lock `name` for `ttl`. `None` when someone
    /// else holds it.
    pub async fn try_lock(&self, name: &str, ttl: Duration) -> Result<Option<Lock>> {
        let core = self.core();
        core.observe("lock", lock::take(core, name, ttl).await)
    }

    /// Whether the backend serves (healthy or degraded): a readiness probe.
    /// See [`Cache::health_report`] for why.
    pub async fn health(&self) -> bool {
        self.health_report().await.is_healthy()
    }

    /// Probe the backend (every route of a router). Never fails: an
    /// unreachable backend is reported as unhealthy with the error in
    /// `reasons`. Degraded means serving with a part missing or recovering
    /// (a route down, a circuit half-open, invalidations waiting).
    pub async fn health_report(&self) -> HealthReport {
        let core = self.core();
        let started = Instant::now();
        match core.backend.health().await {
            Ok(report) => report,
            Err(e) => {
                core.record_error("health", &e);
                HealthReport::unhealthy(
                    core.backend.kind(),
                    core.backend.label(),
                    started.elapsed(),
                    &e,
                )
            }
        }
    }

    /// Counters since this cache was built.
    pub fn stats(&self) -> Stats {
        let core = self.core();
        let mut stats = core.counters.snapshot(core.backend.evictions());
        if let Some(near) = &core.near {
            let mut n = near.stats();
            n.l2_hits = stats.hits;
            n.misses = stats.misses;
            stats.hits += n.l1_hits;
            let lookups = stats.hits + stats.misses;
            if lookups > 0 {
                stats.hit_rate = stats.hits as f64 / lookups as f64;
            }
            stats.near = Some(n);
        }
        stats
    }

    /// Flush what the backend acknowledged and release its connections and
    /// files. Call it before the process exits: dropping the last handle
    /// also closes the backend, but only when the cache holds the only
    /// handle on it (as `larder::open` builds it; not a backend shared
    /// between caches through an `Arc`) and a tokio runtime is still
    /// running to do it. Later operations may fail.
    pub async fn close(&self) -> Result<()> {
        let core = self.core();
        core.observe("close", core.backend.close().await)
    }
}
