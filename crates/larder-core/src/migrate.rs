//! [`migrate`]: copy a cache from one backend to another, entry by entry,
//! with each entry's remaining TTL and tags.
//!
//! ```
//! # async fn demo(from: &dyn larder_core::Backend, to: &dyn larder_core::Backend) -> larder_core::Result<()> {
//! use larder_core::migrate::{MigrateOptions, migrate};
//! let summary = migrate(from, to, &MigrateOptions::namespace("svc", "v1"), |p| {
//!     eprintln!("{} of {} copied", p.copied, p.total);
//! })
//! .await?;
//! println!("{summary}");
//! # Ok(()) }
//! ```
//!
//! Running it again copies again: a migration is idempotent, so an
//! interrupted one is finished by running it once more. Entries written to
//! the source while it runs may or may not be copied; stop writers (or
//! point them at the target) first for an exact copy.

use std::fmt;
use std::time::Duration;

use crate::backend::{Backend, Expiry, WriteOptions};
use crate::error::{Error, Result};

/// What to copy and how.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrateOptions {
    /// A glob over stored keys (`svc:v1:*`, `svc:v1:user:*`).
    pub pattern: String,
    /// Entries read and written per batch (default 500).
    pub batch: usize,
    /// The TTL given to entries whose remaining life the source cannot
    /// tell (Memcached). Without it such entries are counted as failed
    /// rather than copied without expiry.
    pub ttl_when_unknown: Option<Duration>,
}

impl MigrateOptions {
    /// Every entry of the namespace `prefix:version:`.
    pub fn namespace(prefix: &str, version: &str) -> Self {
        Self::pattern(format!(
            "{}:{}:*",
            crate::glob::escape(prefix),
            crate::glob::escape(version)
        ))
    }

    /// Every entry whose stored key matches `pattern`.
    pub fn pattern(pattern: impl Into<String>) -> Self {
        MigrateOptions {
            pattern: pattern.into(),
            batch: 500,
            ttl_when_unknown: None,
        }
    }

    /// Entries per batch (at least one).
    #[must_use]
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// See [`MigrateOptions::ttl_when_unknown`](#structfield.ttl_when_unknown).
    #[must_use]
    pub fn ttl_when_unknown(mut self, ttl: Duration) -> Self {
        self.ttl_when_unknown = Some(ttl);
        self
    }
}

/// Where a migration stands; passed to the progress callback after each
/// batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrateProgress {
    /// Keys the pattern matched in the source.
    pub total: u64,
    /// Keys handled so far.
    pub done: u64,
    /// Entries written to the target.
    pub copied: u64,
    /// Keys that had expired or were deleted before they were read.
    pub skipped_expired: u64,
    /// Entries that could not be read or written.
    pub failed: u64,
}

/// The outcome of [`migrate`].
#[derive(Debug)]
#[non_exhaustive]
pub struct MigrateSummary {
    /// The final counts.
    pub progress: MigrateProgress,
    /// The first failures (up to 100): the stored key and the error.
    pub failures: Vec<(String, Error)>,
}

impl fmt::Display for MigrateSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.progress;
        write!(
            f,
            "{} of {} keys copied, {} skipped as expired, {} failed",
            p.copied, p.total, p.skipped_expired, p.failed
        )?;
        if let Some((key, error)) = self.failures.first() {
            write!(f, " (first: {key}: {error})")?;
        }
        Ok(())
    }
}

const KEPT_FAILURES: usize = 100;

/// Copy every live entry of `from` whose key matches `options.pattern` to
/// `to`, with its value unchanged, its remaining TTL and its tags, in
/// batches; call `progress` after each batch. The source must support
/// `scan` ([`Error::Unsupported`] otherwise). Failures of single entries
/// are counted and reported in the summary, not returned; an error
/// reaching the source or the target as a whole is returned.
pub async fn migrate(
    from: &dyn Backend,
    to: &dyn Backend,
    options: &MigrateOptions,
    mut progress: impl FnMut(&MigrateProgress),
) -> Result<MigrateSummary> {
    if !from.capabilities().scan {
        return Err(from.unsupported("scan (migrate lists the source's keys)"));
    }
    let keys = from.scan(&options.pattern, usize::MAX).await?;
    let mut state = MigrateProgress {
        total: keys.len() as u64,
        ..MigrateProgress::default()
    };
    let mut failures = Vec::new();
    let mut fail = |state: &mut MigrateProgress, key: &str, error: Error| {
        state.failed += 1;
        if failures.len() < KEPT_FAILURES {
            failures.push((key.to_owned(), error));
        }
    };
    for batch in keys.chunks(options.batch.max(1)) {
        for key in batch {
            state.done += 1;
            let entry = match from.get_entry(key).await {
                Ok(Some(entry)) => entry,
                Ok(None) => {
                    state.skipped_expired += 1;
                    continue;
                }
                Err(e) => {
                    fail(&mut state, key, e);
                    continue;
                }
            };
            let ttl = match entry.expiry {
                Expiry::Never => None,
                Expiry::After(left) if left.is_zero() => {
                    state.skipped_expired += 1;
                    continue;
                }
                Expiry::After(left) => Some(left),
                _ => match options.ttl_when_unknown {
                    Some(ttl) => Some(ttl),
                    None => {
                        fail(
                            &mut state,
                            key,
                            Error::Unsupported {
                                backend: from.kind(),
                                operation: "reading a TTL back (set ttl_when_unknown)",
                            },
                        );
                        continue;
                    }
                },
            };
            let write = WriteOptions::new().ttl(ttl).tags(entry.tags);
            match to.set(key, entry.value, &write).await {
                Ok(_) => state.copied += 1,
                Err(e) => fail(&mut state, key, e),
            }
        }
        progress(&state);
    }
    Ok(MigrateSummary {
        progress: state,
        failures,
    })
}
