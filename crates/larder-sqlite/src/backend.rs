//! `impl Backend`: reads through core's [`Blocking`] adapter on the
//! read-only pool, writes sent to the writer thread and awaited without
//! holding a thread. Each operation checks its TTL and value size before
//! any I/O, and does its work only when its future is polled.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use larder_core::{
    Backend, Blocking, BoxFuture, Capabilities, Count, Entry, Error, FillStore, FillToken,
    HealthReport, KeyTtl, Result, WriteOptions,
};

use crate::config::SqliteConfig;
use crate::error::KIND;
use crate::store::{Store, jobs};

/// The SQLite backend. Cheap to clone: clones share the database, its
/// writer thread and its readers. See the crate docs for the design.
#[derive(Clone)]
pub struct SqliteBackend {
    store: Arc<Store>,
    reads: Arc<Blocking<Store>>,
}

impl fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("label", &self.store.label)
            .field("location", &self.store.config.location)
            .field("readers", &self.store.config.readers)
            .field("max_entries", &self.store.config.max_entries)
            .finish_non_exhaustive()
    }
}

impl SqliteBackend {
    /// Open the database a URL names (`sqlite://cache.db`,
    /// `sqlite:///var/cache/a.db`, `sqlite::memory:`, with options; see
    /// [`SqliteConfig`]). Blocks while it opens the file, switches it to
    /// WAL and migrates the schema: call it before serving, or from
    /// `spawn_blocking`.
    pub fn open(url: &str) -> Result<Self> {
        Self::with_config(SqliteConfig::parse(url)?)
    }

    /// Open the database `config` describes. Blocks like [`SqliteBackend::open`].
    pub fn with_config(config: SqliteConfig) -> Result<Self> {
        let readers = config.readers;
        let store = Arc::new(Store::open(config)?);
        let reads = Arc::new(Blocking::from_arc(store.clone()).max_concurrency(readers));
        Ok(SqliteBackend { store, reads })
    }

    /// [`SqliteBackend::with_config`] off the async workers: on tokio's
    /// blocking pool when called inside a runtime (what an async caller such
    /// as the `larder` facade wants), in place otherwise.
    pub async fn connect(config: SqliteConfig) -> Result<Self> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(move || Self::with_config(config))
                .await
                .map_err(|e| Error::Backend {
                    backend: KIND,
                    message: format!("opening the database did not finish: {e}"),
                })?,
            Err(_) => Self::with_config(config),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &SqliteConfig {
        &self.store.config
    }

    /// Sweep every expired entry (with its tag rows), expired lock and old
    /// fill stamp now, instead of waiting for the periodic sweep; returns
    /// how many entries went.
    pub async fn purge_expired(&self) -> Result<u64> {
        self.store.writer.sweep().await
    }

    /// Every key the tag index holds for `tag` (stored form), live or not,
    /// sorted: the raw index, for tests and diagnostics. Blocks for one
    /// indexed read.
    pub fn tag_index(&self, tag: &str) -> Result<Vec<String>> {
        self.store.raw_tag_index(tag)
    }

    fn write<'a, T, J>(&'a self, operation: &'static str, job: J) -> BoxFuture<'a, Result<T>>
    where
        T: Send + 'static,
        J: jobs::Job<T>,
    {
        Box::pin(async move { self.store.writer.call(operation, job).await })
    }
}

impl Backend for SqliteBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn label(&self) -> &str {
        &self.store.label
    }

    fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        self.reads.get(key)
    }

    fn get_entry<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>>> {
        self.reads.get_entry(key)
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        self.reads.get_many(keys)
    }

    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move {
            Error::check_ttl(ttl)?;
            let job = jobs::get_and_touch(key, ttl);
            self.store.writer.call("get_and_touch", job).await
        })
    }

    fn get_delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        self.write("get_delete", jobs::get_delete(key))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            Store::check_ttl(options.ttl)?;
            self.store.check_size(key, &value)?;
            let job = jobs::set(key, value, options);
            self.store.writer.call("set", job).await
        })
    }

    fn set_many<'a>(
        &'a self,
        entries: &'a [(String, Bytes)],
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            Store::check_ttl(options.ttl)?;
            for (key, value) in entries {
                self.store.check_size(key, value)?;
            }
            let job = jobs::set_many(entries, options);
            self.store.writer.call("set_many", job).await
        })
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        self.write("delete", jobs::delete(keys))
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        self.reads.exists(key)
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            Error::check_ttl(ttl)?;
            let job = jobs::expire(key, ttl);
            self.store.writer.call("expire", job).await
        })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        self.reads.ttl(key)
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            Store::check_ttl(ttl)?;
            let job = jobs::incr(key, delta, ttl);
            self.store.writer.call("incr", job).await
        })
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<Count>> {
        self.write("invalidate_tags", jobs::invalidate_tags(tags))
    }

    fn tag_members<'a>(&'a self, tag: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        self.reads.tag_members(tag, limit)
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<Count>> {
        Box::pin(async move {
            let job = jobs::delete_matching(pattern)?;
            self.store.writer.call("delete_matching", job).await
        })
    }

    fn scan<'a>(&'a self, pattern: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        self.reads.scan(pattern, limit)
    }

    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Count>> {
        self.write("clear", jobs::clear(prefix))
    }

    fn lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            Error::check_ttl(ttl)?;
            let job = jobs::lock(key, token, ttl);
            self.store.writer.call("lock", job).await
        })
    }

    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<bool>> {
        self.write("unlock", jobs::unlock(key, token))
    }

    fn begin_fill<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(Option<Bytes>, FillToken)>> {
        self.reads.begin_fill(key)
    }

    fn set_filled<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
        token: FillToken,
    ) -> BoxFuture<'a, Result<FillStore>> {
        Box::pin(async move {
            Store::check_ttl(options.ttl)?;
            self.store.check_size(key, &value)?;
            let job = jobs::set_filled(key, value, options, token);
            self.store.writer.call("set_filled", job).await
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<HealthReport>> {
        self.reads.health()
    }

    /// Close the readers, let the writer finish the queued writes,
    /// checkpoint the WAL into the database file (truncating the WAL) and
    /// stop the writer and its sweeper. Every write acknowledged before
    /// this returns is in the database file. Later operations fail with
    /// [`Error::Unavailable`]; closing again does nothing.
    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.store.readers.close();
            self.store.writer.close().await
        })
    }

    fn evictions(&self) -> Option<u64> {
        Some(
            self.store
                .evictions
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}
