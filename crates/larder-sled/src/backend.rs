//! [`SledBackend`]: [`SyncSled`] behind core's blocking adapter, each
//! operation on tokio's blocking pool.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use larder_core::url::BackendUrl;
use larder_core::{
    Backend, Blocking, BoxFuture, Capabilities, Count, Entry, Error, FillStore, FillToken,
    HealthReport, KeyTtl, Result, WriteOptions,
};

use crate::config::SledConfig;
use crate::error::KIND;
use crate::sync::SyncSled;

/// The sled backend. Cheap to clone; clones share the database.
///
/// Opening is synchronous (sled reads its log to recover); in async code,
/// open it before the runtime starts or inside `spawn_blocking` when the
/// directory may be large.
///
/// ```no_run
/// # async fn demo() -> larder_core::Result<()> {
/// use larder_core::Cache;
/// use larder_sled::SledBackend;
///
/// let backend = SledBackend::open("sled:///var/cache/app?flush=always")?;
/// let cache = Cache::builder().backend(backend).prefix("svc").build()?;
/// cache.set("user:1", &"Ada").await?;
/// cache.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SledBackend {
    inner: Arc<Blocking<SyncSled>>,
}

impl std::fmt::Debug for SledBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SledBackend")
            .field(self.inner.inner())
            .finish()
    }
}

impl SledBackend {
    /// Open the directory a `sled://` URL names (see [`SledConfig`] for
    /// the options).
    pub fn open(url: &str) -> Result<Self> {
        let parsed = BackendUrl::parse(url)?;
        Self::with_config(SledConfig::from_url(&parsed)?)
    }

    /// Open (or create) the directory of `config` and start its sweeper.
    /// A directory another process has open is
    /// [`Error::Unavailable`]; one that is not a readable sled database is
    /// [`Error::Backend`]; both name the directory.
    pub fn with_config(config: SledConfig) -> Result<Self> {
        let max_concurrency = config.max_concurrency;
        let sync = SyncSled::open(config)?;
        Ok(SledBackend {
            inner: Arc::new(Blocking::new(sync).max_concurrency(max_concurrency)),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &SledConfig {
        self.sync().config()
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        self.sync().path()
    }

    /// The synchronous backend underneath.
    pub fn sync(&self) -> &Arc<SyncSled> {
        self.inner.inner()
    }

    /// Make every acknowledged write durable now, on the blocking pool
    /// (see [`SyncSled::flush`]).
    pub async fn flush(&self) -> Result<()> {
        let sync = self.sync().clone();
        blocking("flush", move || sync.flush()).await
    }

    /// Run the sweeper once now, on the blocking pool (see
    /// [`SyncSled::purge_expired`]).
    pub async fn purge_expired(&self) -> Result<u64> {
        let sync = self.sync().clone();
        blocking("purge_expired", move || sync.purge_expired()).await
    }
}

/// Run `op` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    operation: &'static str,
    op: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| Error::Unavailable {
        backend: KIND,
        message: format!("{operation} needs a tokio runtime"),
    })?;
    handle
        .spawn_blocking(op)
        .await
        .map_err(|e| Error::Backend {
            backend: KIND,
            message: format!("{operation} did not finish: {e}"),
        })?
}

// Every operation delegates to the blocking adapter, which does its work
// when the future is polled.
impl Backend for SledBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn label(&self) -> &str {
        self.inner.label()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        self.inner.get(key)
    }

    fn get_entry<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>>> {
        self.inner.get_entry(key)
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        self.inner.get_many(keys)
    }

    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Bytes>>> {
        self.inner.get_and_touch(key, ttl)
    }

    fn get_delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        self.inner.get_delete(key)
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<bool>> {
        self.inner.set(key, value, options)
    }

    fn set_many<'a>(
        &'a self,
        entries: &'a [(String, Bytes)],
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<u64>> {
        self.inner.set_many(entries, options)
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        self.inner.delete(keys)
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        self.inner.exists(key)
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        self.inner.expire(key, ttl)
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        self.inner.ttl(key)
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        self.inner.incr(key, delta, ttl)
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<Count>> {
        self.inner.invalidate_tags(tags)
    }

    fn tag_members<'a>(&'a self, tag: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        self.inner.tag_members(tag, limit)
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<Count>> {
        self.inner.delete_matching(pattern)
    }

    fn scan<'a>(&'a self, pattern: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        self.inner.scan(pattern, limit)
    }

    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Count>> {
        self.inner.clear(prefix)
    }

    fn lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        self.inner.lock(key, token, ttl)
    }

    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<bool>> {
        self.inner.unlock(key, token)
    }

    fn begin_fill<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(Option<Bytes>, FillToken)>> {
        self.inner.begin_fill(key)
    }

    fn set_filled<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
        token: FillToken,
    ) -> BoxFuture<'a, Result<FillStore>> {
        self.inner.set_filled(key, value, options, token)
    }

    fn health(&self) -> BoxFuture<'_, Result<HealthReport>> {
        self.inner.health()
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        self.inner.close()
    }

    fn evictions(&self) -> Option<u64> {
        self.inner.evictions()
    }
}
