//! [`SledBackend`]: [`SyncSled`] behind core's blocking adapter, each
//! operation on tokio's blocking pool.

use std::path::Path;
use std::sync::Arc;

use larder_core::url::BackendUrl;
use larder_core::{Backend, Blocking, BoxFuture, Error, Result};

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

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        self.inner.close()
    }

    larder_core::forward_backend!(inner);
}
