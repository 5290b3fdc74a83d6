//! [`SyncSled`]: the backend as a [`BlockingBackend`], each operation
//! delegating to the module of its concern. [`SledBackend`](crate::SledBackend)
//! runs it behind [`larder_core::Blocking`].

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use larder_core::sync::{lock, read, write};
use larder_core::{
    BlockingBackend, Capabilities, Count, Entry, FillGuard, FillStore, FillToken, HealthReport,
    KeyTtl, Result, WriteOptions,
};

use crate::config::SledConfig;
use crate::connection::Store;
use crate::error::{self, KIND};
use crate::format::HEADER_LEN;
use crate::sweep::Sweeper;

/// The sled backend, synchronous: every call blocks on disk I/O. Use
/// [`SledBackend`](crate::SledBackend) from async code; this type is for
/// synchronous programs and for [`larder_core::Blocking`].
///
/// Closing (or dropping) it stops the sweeper, flushes, and releases the
/// directory once operations in flight have finished.
pub struct SyncSled {
    store: RwLock<Option<Arc<Store>>>,
    sweeper: Mutex<Option<Sweeper>>,
    config: SledConfig,
    label: String,
}

impl std::fmt::Debug for SyncSled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncSled")
            .field("label", &self.label)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SyncSled {
    /// Open (or create) the directory of `config` and start the sweeper.
    ///
    /// Fails with [`Error::Unavailable`](larder_core::Error::Unavailable)
    /// naming the directory when another process has it open, and with
    /// [`Error::Backend`](larder_core::Error::Backend) naming it when it is
    /// not a readable sled database.
    pub fn open(config: SledConfig) -> Result<Self> {
        let store = Arc::new(Store::open(&config)?);
        let sweeper = Sweeper::start(&store, config.sweep_every)?;
        Ok(SyncSled {
            label: format!("{KIND}@{}", config.path.display()),
            store: RwLock::new(Some(store)),
            sweeper: Mutex::new(Some(sweeper)),
            config,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &SledConfig {
        &self.config
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.config.path
    }

    /// The open store, or the error of a closed backend.
    fn store(&self, operation: &'static str) -> Result<Arc<Store>> {
        read(&self.store)
            .clone()
            .ok_or_else(|| error::closed(&self.config.path, operation))
    }

    /// Make every acknowledged write durable now (write out sled's buffers
    /// and `fsync`).
    pub fn flush(&self) -> Result<()> {
        self.store("flush")?.flush("flush")
    }

    /// Run the sweeper once now: remove every expired entry with its index
    /// rows, and expired locks. Returns how many entries were removed.
    pub fn purge_expired(&self) -> Result<u64> {
        self.store("purge_expired")?.sweep()
    }

    /// Entries stored (live or expired but not yet swept). Known when the
    /// store is bounded (`max_entries`); `None` otherwise, since counting
    /// means reading every entry.
    pub fn entry_count(&self) -> Option<u64> {
        let store = read(&self.store).clone()?;
        store.config.max_entries?;
        u64::try_from(store.count.load(Ordering::Relaxed)).ok()
    }

    /// The keys the tag index holds under `tag` (a stored tag), live or
    /// not, unfiltered: what the conformance suite inspects to check that
    /// the index is kept clean.
    #[doc(hidden)]
    pub fn tag_index(&self, tag: &str) -> Result<Vec<String>> {
        self.store("tag_index")?.tag_index(tag)
    }

    /// Stop the sweeper, flush, and let the directory go: once operations
    /// in flight have ended, wait (up to [`RELEASE_WAIT`]) for sled to drop
    /// its lock on the directory, so that another process (or a new
    /// backend) can open it as soon as this returns. Idempotent.
    fn shutdown(&self) -> Result<()> {
        if let Some(sweeper) = lock(&self.sweeper).take() {
            sweeper.stop();
        }
        let Some(store) = write(&self.store).take() else {
            return Ok(());
        };
        let flushed = store.flush("close");
        let released = Arc::downgrade(&store);
        drop(store);
        flushed?;
        // Operations in flight still hold the store; sled's own threads
        // finish their last writes and then close its files.
        let deadline = Instant::now() + RELEASE_WAIT;
        while released.strong_count() > 0 || !lock_is_free(&self.config.path) {
            if Instant::now() >= deadline {
                return Err(larder_core::Error::Backend {
                    backend: KIND,
                    message: format!(
                        "close: everything is flushed, but {} was still locked {RELEASE_WAIT:?} \
                         later (an operation still running?)",
                        self.config.path.display()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }
}

/// How long `close` waits for sled to let go of the directory.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Whether nobody holds sled's lock on the directory `dir` (the same
/// `flock` on `dir/db` that sled takes).
fn lock_is_free(dir: &Path) -> bool {
    match std::fs::File::open(dir.join("db")) {
        Ok(file) => file.try_lock().is_ok(),
        Err(_) => true,
    }
}

impl Drop for SyncSled {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, dir = %self.config.path.display(), "closing sled on drop failed");
        }
    }
}

/// What the sled backend does.
pub(crate) fn capabilities(config: &SledConfig) -> Capabilities {
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
    caps.persistent = true;
    caps.shared = false;
    caps.ttl_resolution = Duration::from_millis(1);
    caps.max_value_size = Some(config.max_value_size.saturating_sub(HEADER_LEN));
    caps
}

impl BlockingBackend for SyncSled {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn capabilities(&self) -> Capabilities {
        capabilities(&self.config)
    }

    fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.store("get")?.get(key)
    }

    fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        self.store("get_entry")?.get_entry(key)
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.store("get_many")?.get_many(keys)
    }

    fn get_and_touch(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        self.store("get_and_touch")?.get_and_touch(key, ttl)
    }

    fn get_delete(&self, key: &str) -> Result<Option<Bytes>> {
        self.store("get_delete")?.get_delete(key)
    }

    fn set(&self, key: &str, value: Bytes, options: &WriteOptions) -> Result<bool> {
        self.store("set")?.set(key, &value, options)
    }

    fn set_many(&self, entries: &[(String, Bytes)], options: &WriteOptions) -> Result<u64> {
        self.store("set_many")?.set_many(entries, options)
    }

    fn delete(&self, keys: &[String]) -> Result<u64> {
        self.store("delete")?.delete(keys)
    }

    fn exists(&self, key: &str) -> Result<bool> {
        self.store("exists")?.exists(key)
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.store("expire")?.expire(key, ttl)
    }

    fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.store("ttl")?.ttl(key)
    }

    fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        self.store("incr")?.incr(key, delta, ttl)
    }

    fn invalidate_tags(&self, tags: &[String]) -> Result<Count> {
        self.store("invalidate_tags")?.invalidate_tags(tags)
    }

    fn tag_members(&self, tag: &str, limit: usize) -> Result<Vec<String>> {
        self.store("tag_members")?.tag_members(tag, limit)
    }

    fn delete_matching(&self, pattern: &str) -> Result<Count> {
        self.store("delete_matching")?.delete_matching(pattern)
    }

    fn scan(&self, pattern: &str, limit: usize) -> Result<Vec<String>> {
        self.store("scan")?.scan(pattern, limit)
    }

    fn clear(&self, prefix: &str) -> Result<Count> {
        self.store("clear")?.clear(prefix)
    }

    fn lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        self.store("lock")?.lock(key, token, ttl)
    }

    fn unlock(&self, key: &str, token: &str) -> Result<bool> {
        self.store("unlock")?.unlock(key, token)
    }

    fn begin_fill(&self, key: &str) -> Result<(Option<Bytes>, FillToken)> {
        self.store("begin_fill")?.begin_fill(key)
    }

    fn set_filled(
        &self,
        key: &str,
        value: Bytes,
        options: &WriteOptions,
        token: FillToken,
    ) -> Result<FillStore> {
        self.store("set_filled")?
            .set_filled(key, &value, options, token)
    }

    fn health(&self) -> Result<HealthReport> {
        let started = Instant::now();
        let store = match self.store("health") {
            Ok(store) => store,
            Err(e) => {
                return Ok(HealthReport::unhealthy(
                    KIND,
                    &self.label,
                    started.elapsed(),
                    e,
                ));
            }
        };
        let probe = store
            .entries
            .get(b"\0larder-sled/health")
            .map_err(store.err("health"))
            .and_then(|_| store.size_on_disk());
        let size = match probe {
            Ok(size) => size,
            Err(e) => {
                return Ok(HealthReport::unhealthy(
                    KIND,
                    &self.label,
                    started.elapsed(),
                    e,
                ));
            }
        };
        let mut report = HealthReport::healthy(KIND, &self.label, started.elapsed())
            .detail("dir", self.config.path.display())
            .detail("flush", self.config.flush)
            .detail("size_on_disk", size)
            .detail("recovered", store.db.was_recovered())
            .detail("evictions", store.evictions.load(Ordering::Relaxed));
        if let Some(max) = self.config.max_entries {
            report = report
                .detail("entries", store.count.load(Ordering::Relaxed))
                .detail("max_entries", max);
        }
        Ok(report)
    }

    fn close(&self) -> Result<()> {
        self.shutdown()
    }

    fn evictions(&self) -> Option<u64> {
        read(&self.store)
            .as_ref()
            .map(|s| s.evictions.load(Ordering::Relaxed))
    }
}
