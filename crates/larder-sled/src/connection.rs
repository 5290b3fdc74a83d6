//! Opening the directory, the trees, running a write transaction, flushing.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use larder_core::{Error, Result};
use sled::transaction::{ConflictableTransactionError, ConflictableTransactionResult};
use sled::transaction::{Transactional, TransactionalTree};
use sled::{Db, Tree};

use crate::config::{FlushPolicy, SledConfig};
use crate::error;
use crate::fill::Clock;

/// The on-disk layout version, kept in the default tree under
/// [`FORMAT_KEY`]. A directory written by a later, incompatible version is
/// refused rather than misread.
pub(crate) const FORMAT: &[u8] = b"1";
const FORMAT_KEY: &[u8] = b"larder-sled/format";

/// What a write transaction's closure returns: its value, or a larder error
/// that aborts the transaction.
pub(crate) type TxResult<T> = ConflictableTransactionResult<T, Error>;

/// Abort the running transaction with `e`.
pub(crate) fn abort<T>(e: Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

/// The trees one write transaction sees. A transaction's closure may run
/// more than once (sled re-runs it on a conflict), so it only reads and
/// writes through these views and has no other effect.
pub(crate) struct Tx<'a> {
    pub(crate) entries: &'a TransactionalTree,
    pub(crate) tags: &'a TransactionalTree,
    pub(crate) expiry: &'a TransactionalTree,
    pub(crate) stamps: &'a TransactionalTree,
}

/// An open database: its trees and the bookkeeping kept in memory.
pub(crate) struct Store {
    pub(crate) db: Db,
    /// key -> header ++ body (see `format`).
    pub(crate) entries: Tree,
    /// tag \0 key -> empty.
    pub(crate) tags: Tree,
    /// be_u64(expires_at) ++ key -> empty.
    pub(crate) expiry: Tree,
    /// invalidation stamps of the fill guard.
    pub(crate) stamps: Tree,
    /// lock key -> be_u64(expires_at) ++ token.
    pub(crate) locks: Tree,
    pub(crate) config: SledConfig,
    /// The fill guard's clock (tokens and stamps).
    pub(crate) clock: Clock,
    /// Entries held, counted when the store is bounded.
    pub(crate) count: AtomicI64,
    /// Entries evicted since the directory was opened.
    pub(crate) evictions: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.config.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Open (or create) the database directory of `config`.
    pub(crate) fn open(config: &SledConfig) -> Result<Store> {
        let dir = config.path.as_path();
        if dir.exists() && !dir.is_dir() {
            return Err(Error::Backend {
                backend: error::KIND,
                message: format!(
                    "cannot open the sled directory {}: it is a file, not a directory",
                    dir.display()
                ),
            });
        }
        // sled treats a log it cannot read past as a torn tail and recovers
        // what comes before: a damaged log can look like an empty one. The
        // format marker, flushed when the directory is created, tells the
        // two apart.
        let existed = std::fs::metadata(dir.join("db")).is_ok_and(|m| m.len() > 0);
        let sled_config = sled::Config::new()
            .path(dir)
            .cache_capacity(config.cache_capacity)
            .flush_every_ms(Some(
                u64::try_from(config.flush_every.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            ));
        // sled 0.34 has assertions on its recovery path; should one fire on
        // a damaged file, the caller still gets an error naming the
        // directory rather than a panic.
        let db = match catch_unwind(AssertUnwindSafe(|| sled_config.open())) {
            Ok(opened) => opened.map_err(|e| error::open(dir, e))?,
            Err(_) => return Err(error::corrupted(dir, "sled panicked while reading it")),
        };
        let open_tree = |name: &str| db.open_tree(name).map_err(|e| error::open(dir, e));
        let format = db.get(FORMAT_KEY).map_err(|e| error::open(dir, e))?;
        match format {
            Some(found) if found.as_ref() != FORMAT => {
                return Err(Error::Backend {
                    backend: error::KIND,
                    message: format!(
                        "the sled directory {} holds larder-sled format {}, this version reads \
                         format {}: open it with the larder version that wrote it, or move the \
                         cache with `larder::migrate` run by that version",
                        dir.display(),
                        String::from_utf8_lossy(&found),
                        String::from_utf8_lossy(FORMAT)
                    ),
                });
            }
            Some(_) => {}
            None if existed => {
                return Err(error::corrupted(
                    dir,
                    "it holds sled files but not larder-sled's format marker: its log is \
                     damaged, or another program wrote it",
                ));
            }
            None => {
                db.insert(FORMAT_KEY, FORMAT)
                    .map_err(|e| error::open(dir, e))?;
                db.flush().map_err(|e| error::open(dir, e))?;
            }
        }
        let store = Store {
            entries: open_tree("entries")?,
            tags: open_tree("tags")?,
            expiry: open_tree("expiry")?,
            stamps: open_tree("stamps")?,
            locks: open_tree("locks")?,
            db: db.clone(),
            config: config.clone(),
            clock: Clock::default(),
            count: AtomicI64::new(0),
            evictions: AtomicU64::new(0),
        };
        store.clock.resume_after(store.max_stamp()?);
        if config.max_entries.is_some() {
            let n = store.entries.len();
            store
                .count
                .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
        }
        Ok(store)
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.config.path
    }

    /// A sled error of `operation` as a larder error.
    pub(crate) fn err<'a>(&'a self, operation: &'a str) -> impl Fn(sled::Error) -> Error + 'a {
        move |e| error::storage(self.dir(), operation, e)
    }

    /// Run `f` as one transaction over the entries, tags, expiry and stamps
    /// trees, then flush when the policy says so. `f` may run more than once.
    pub(crate) fn write<T>(
        &self,
        operation: &'static str,
        f: impl Fn(&Tx<'_>) -> TxResult<T>,
    ) -> Result<T> {
        let out = self.transact(operation, f)?;
        self.flush_if_always(operation)?;
        Ok(out)
    }

    /// [`Store::write`] without the flush: for the sweeper and eviction,
    /// whose removals a crash may undo (expired entries are hidden on read
    /// anyway).
    pub(crate) fn transact<T>(
        &self,
        operation: &'static str,
        f: impl Fn(&Tx<'_>) -> TxResult<T>,
    ) -> Result<T> {
        (&self.entries, &self.tags, &self.expiry, &self.stamps)
            .transaction(|(entries, tags, expiry, stamps)| {
                f(&Tx {
                    entries,
                    tags,
                    expiry,
                    stamps,
                })
            })
            .map_err(|e| error::transaction(self.dir(), operation, e))
    }

    /// Flush when every write must be durable before it is acknowledged.
    pub(crate) fn flush_if_always(&self, operation: &'static str) -> Result<()> {
        if self.config.flush == FlushPolicy::Always {
            self.flush(operation)?;
        }
        Ok(())
    }

    /// Write every dirty buffer to disk and `fsync`.
    pub(crate) fn flush(&self, operation: &str) -> Result<()> {
        self.db.flush().map_err(self.err(operation))?;
        Ok(())
    }

    /// Add `delta` to the entry count (bounded stores only).
    pub(crate) fn counted(&self, delta: i64) {
        if self.config.max_entries.is_some() && delta != 0 {
            self.count.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// Bytes the directory takes on disk.
    pub(crate) fn size_on_disk(&self) -> Result<u64> {
        self.db.size_on_disk().map_err(self.err("health"))
    }
}
