//! One adapter for synchronous backends (SQLite, sled, the memcache client):
//! implement [`BlockingBackend`], wrap it in [`Blocking`], and every
//! operation runs on tokio's blocking pool, off the async workers, with a
//! bound on how many run at once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::{
    Backend, BoxFuture, Capabilities, Count, Entry, FillStore, FillToken, HealthReport, KeyTtl,
    WriteOptions,
};
use crate::error::{Error, Result};

/// The synchronous form of [`Backend`]: the same operations and rules,
/// blocking. Run it behind [`Blocking`]. Optional operations default to
/// [`Error::Unsupported`] and batches to one call per key, as in
/// [`Backend`].
#[allow(missing_docs)] // Each method is documented on `Backend`.
pub trait BlockingBackend: Send + Sync + fmt::Debug + 'static {
    fn kind(&self) -> &'static str;
    fn label(&self) -> &str {
        self.kind()
    }
    fn capabilities(&self) -> Capabilities;
    fn get(&self, key: &str) -> Result<Option<Bytes>>;
    fn get_entry(&self, key: &str) -> Result<Option<Entry>>;
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }
    fn get_and_touch(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        let _ = (key, ttl);
        Err(self.unsupported("get_and_touch"))
    }
    fn get_delete(&self, key: &str) -> Result<Option<Bytes>> {
        let _ = key;
        Err(self.unsupported("get_delete"))
    }
    fn set(&self, key: &str, value: Bytes, options: &WriteOptions) -> Result<bool>;
    fn set_many(&self, entries: &[(String, Bytes)], options: &WriteOptions) -> Result<u64> {
        let mut written = 0;
        for (key, value) in entries {
            written += u64::from(self.set(key, value.clone(), options)?);
        }
        Ok(written)
    }
    fn delete(&self, keys: &[String]) -> Result<u64>;
    fn exists(&self, key: &str) -> Result<bool>;
    fn expire(&self, key: &str, ttl: Duration) -> Result<bool>;
    fn ttl(&self, key: &str) -> Result<KeyTtl>;
    fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64>;
    fn invalidate_tags(&self, tags: &[String]) -> Result<Count>;
    fn tag_members(&self, tag: &str, limit: usize) -> Result<Vec<String>> {
        let _ = (tag, limit);
        Err(self.unsupported("tag_members"))
    }
    fn delete_matching(&self, pattern: &str) -> Result<Count> {
        let _ = pattern;
        Err(self.unsupported("delete_matching"))
    }
    fn scan(&self, pattern: &str, limit: usize) -> Result<Vec<String>> {
        let _ = (pattern, limit);
        Err(self.unsupported("scan"))
    }
    fn clear(&self, prefix: &str) -> Result<Count>;
    fn lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let _ = (key, token, ttl);
        Err(self.unsupported("lock"))
    }
    fn unlock(&self, key: &str, token: &str) -> Result<bool> {
        let _ = (key, token);
        Err(self.unsupported("unlock"))
    }
    fn begin_fill(&self, key: &str) -> Result<(Option<Bytes>, FillToken)> {
        Ok((self.get(key)?, FillToken::new(0)))
    }
    fn set_filled(
        &self,
        key: &str,
        value: Bytes,
        options: &WriteOptions,
        token: FillToken,
    ) -> Result<FillStore> {
        let _ = token;
        Ok(if self.set(key, value, options)? {
            FillStore::Stored
        } else {
            FillStore::Declined
        })
    }
    fn health(&self) -> Result<HealthReport>;
    fn close(&self) -> Result<()> {
        Ok(())
    }
    fn evictions(&self) -> Option<u64> {
        None
    }
    fn unsupported(&self, operation: &'static str) -> Error {
        Error::Unsupported {
            backend: self.kind(),
            operation,
        }
    }
}

/// Runs a [`BlockingBackend`] as a [`Backend`]: each operation on tokio's
/// blocking pool (`spawn_blocking`), at most `max_concurrency` at a time.
/// Operations start when their future is first polled, and, once started,
/// complete even if the future is dropped (a blocking call cannot be
/// interrupted). Outside a tokio runtime an operation fails with
/// [`Error::Unavailable`] instead of panicking.
///
/// ```
/// use larder_core::{Blocking, BlockingBackend};
/// # fn wrap<B: BlockingBackend>(b: B) -> Blocking<B> {
/// let backend = Blocking::new(b).max_concurrency(16);
/// # backend }
/// ```
pub struct Blocking<B> {
    inner: Arc<B>,
    permits: Arc<Semaphore>,
    max_concurrency: usize,
}

impl<B: fmt::Debug> fmt::Debug for Blocking<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blocking")
            .field("backend", &self.inner)
            .field("max_concurrency", &self.max_concurrency)
            .finish()
    }
}

impl<B: BlockingBackend> Blocking<B> {
    /// Default bound on operations running at once.
    pub const DEFAULT_MAX_CONCURRENCY: usize = 64;

    /// Wrap `backend`.
    pub fn new(backend: B) -> Self {
        Self::from_arc(Arc::new(backend))
    }

    /// Wrap a shared `backend`.
    pub fn from_arc(backend: Arc<B>) -> Self {
        Blocking {
            inner: backend,
            permits: Arc::new(Semaphore::new(Self::DEFAULT_MAX_CONCURRENCY)),
            max_concurrency: Self::DEFAULT_MAX_CONCURRENCY,
        }
    }

    /// Run at most `n` operations at once (at least one); the others wait
    /// their turn without holding a thread.
    #[must_use]
    pub fn max_concurrency(mut self, n: usize) -> Self {
        let n = n.max(1);
        self.permits = Arc::new(Semaphore::new(n));
        self.max_concurrency = n;
        self
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<B> {
        &self.inner
    }

    /// Run `op` on the blocking pool when the returned future is polled.
    fn run<T, F>(&self, operation: &'static str, op: F) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&B) -> Result<T> + Send + 'static,
    {
        let backend = self.inner.clone();
        let permits = self.permits.clone();
        Box::pin(async move {
            let kind = backend.kind();
            let handle = tokio::runtime::Handle::try_current().map_err(|_| Error::Unavailable {
                backend: kind,
                message: format!("{operation} needs a tokio runtime to run the blocking backend"),
            })?;
            let permit = permits
                .acquire_owned()
                .await
                .map_err(|_| Error::Unavailable {
                    backend: kind,
                    message: format!("{operation}: the backend is shutting down"),
                })?;
            let task = handle.spawn_blocking(move || {
                let _permit = permit;
                op(&backend)
            });
            match task.await {
                Ok(result) => result,
                Err(e) if e.is_panic() => Err(Error::Backend {
                    backend: kind,
                    message: format!("{operation} panicked inside the backend"),
                }),
                Err(_) => Err(Error::Unavailable {
                    backend: kind,
                    message: format!("{operation} was cancelled: the runtime is shutting down"),
                }),
            }
        })
    }
}

impl<B: BlockingBackend> Backend for Blocking<B> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn label(&self) -> &str {
        self.inner.label()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        let key = key.to_owned();
        self.run("get", move |b| b.get(&key))
    }

    fn get_entry<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>>> {
        let key = key.to_owned();
        self.run("get_entry", move |b| b.get_entry(&key))
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        let keys = keys.to_vec();
        self.run("get_many", move |b| b.get_many(&keys))
    }

    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Bytes>>> {
        let key = key.to_owned();
        self.run("get_and_touch", move |b| b.get_and_touch(&key, ttl))
    }

    fn get_delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        let key = key.to_owned();
        self.run("get_delete", move |b| b.get_delete(&key))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<bool>> {
        let (key, options) = (key.to_owned(), options.clone());
        self.run("set", move |b| b.set(&key, value, &options))
    }

    fn set_many<'a>(
        &'a self,
        entries: &'a [(String, Bytes)],
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<u64>> {
        let (entries, options) = (entries.to_vec(), options.clone());
        self.run("set_many", move |b| b.set_many(&entries, &options))
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        let keys = keys.to_vec();
        self.run("delete", move |b| b.delete(&keys))
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        let key = key.to_owned();
        self.run("exists", move |b| b.exists(&key))
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        let key = key.to_owned();
        self.run("expire", move |b| b.expire(&key, ttl))
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        let key = key.to_owned();
        self.run("ttl", move |b| b.ttl(&key))
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        let key = key.to_owned();
        self.run("incr", move |b| b.incr(&key, delta, ttl))
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<Count>> {
        let tags = tags.to_vec();
        self.run("invalidate_tags", move |b| b.invalidate_tags(&tags))
    }

    fn tag_members<'a>(&'a self, tag: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        let tag = tag.to_owned();
        self.run("tag_members", move |b| b.tag_members(&tag, limit))
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<Count>> {
        let pattern = pattern.to_owned();
        self.run("delete_matching", move |b| b.delete_matching(&pattern))
    }

    fn scan<'a>(&'a self, pattern: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        let pattern = pattern.to_owned();
        self.run("scan", move |b| b.scan(&pattern, limit))
    }

    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Count>> {
        let prefix = prefix.to_owned();
        self.run("clear", move |b| b.clear(&prefix))
    }

    fn lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        let (key, token) = (key.to_owned(), token.to_owned());
        self.run("lock", move |b| b.lock(&key, &token, ttl))
    }

    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<bool>> {
        let (key, token) = (key.to_owned(), token.to_owned());
        self.run("unlock", move |b| b.unlock(&key, &token))
    }

    fn begin_fill<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(Option<Bytes>, FillToken)>> {
        let key = key.to_owned();
        self.run("begin_fill", move |b| b.begin_fill(&key))
    }

    fn set_filled<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
        token: FillToken,
    ) -> BoxFuture<'a, Result<FillStore>> {
        let (key, options) = (key.to_owned(), options.clone());
        self.run("set_filled", move |b| {
            b.set_filled(&key, value, &options, token)
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<HealthReport>> {
        self.run("health", |b| b.health())
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        self.run("close", |b| b.close())
    }

    fn evictions(&self) -> Option<u64> {
        self.inner.evictions()
    }
}
