//! The fill guard ([`FillGuard::Atomic`](larder_core::FillGuard::Atomic)).
//!
//! A clock hands out strictly increasing readings: the wall clock in
//! milliseconds shifted left by 16 bits, bumped by one when two readings
//! fall in the same millisecond (a hybrid logical clock). `begin_fill`
//! returns a reading as the [`FillToken`]. `delete`, `get_delete`,
//! `invalidate_tags`, `delete_matching` and `clear` take a reading and
//! write it, as a maximum, into the stamps of what they invalidate: the
//! key's slot, each tag's slot, the namespace (`svc:v1` of `svc:v1:…`), or
//! every key (`a`, for a prefix that names no namespace). Keys and tags
//! hash (FNV-1a) into 4,096 slots each, so the stamps tree stays small; a
//! collision only refuses a fill that could have been stored.
//!
//! `set_filled` reads the stamps of its key, its tags, its namespace and
//! the `a` stamp inside its write transaction and stores only when none is
//! newer than its token: the check and the store are one step. A token
//! older than [`MAX_FILL_AGE`] is refused outright, as the contract says.
//!
//! At open the clock resumes after the largest stamp on disk, so a stamp
//! written before a restart is never newer than a token taken after it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use larder_core::{FillStore, FillToken, MAX_FILL_AGE, Result, WriteOptions};

use crate::connection::{Store, Tx, TxResult};
use crate::format::{now_ms, read_u64};

/// Bits of a clock reading below the milliseconds.
const SHIFT: u32 = 16;
/// Slots keys (and, separately, tags) hash into.
const SLOTS: u64 = 4096;
/// The stamp of every key.
const ALL: &[u8] = b"a";

/// A hybrid logical clock: strictly increasing readings whose high bits are
/// wall-clock milliseconds.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    last: AtomicU64,
}

impl Clock {
    /// A reading greater than every earlier one.
    pub(crate) fn next(&self) -> u64 {
        let floor = now_ms().saturating_mul(1 << SHIFT);
        let step = |last: u64| last.saturating_add(1).max(floor);
        let previous = self
            .last
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(step(last)))
            .unwrap_or_else(|last| last);
        step(previous)
    }

    /// Never hand out a reading at or below `reading` (one found on disk).
    pub(crate) fn resume_after(&self, reading: u64) {
        self.last.fetch_max(reading, Ordering::SeqCst);
    }

    /// How long ago `reading` was taken (by the wall clock).
    pub(crate) fn age(reading: u64) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(reading >> SHIFT))
    }
}

/// FNV-1a: stable across processes and releases, as persisted slots need.
fn slot(text: &str) -> [u8; 2] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    u16::try_from(hash % SLOTS).unwrap_or(0).to_be_bytes()
}

/// The stamp row of a key.
pub(crate) fn key_stamp(key: &str) -> Vec<u8> {
    let [a, b] = slot(key);
    vec![b'k', a, b]
}

/// The stamp row of a tag.
pub(crate) fn tag_stamp(tag: &str) -> Vec<u8> {
    let [a, b] = slot(tag);
    vec![b't', a, b]
}

/// The namespace of a stored key or prefix: the text before its second
/// `:` (`svc:v1` of `svc:v1:user:1`).
pub(crate) fn namespace(text: &str) -> Option<&str> {
    let second = text.match_indices(':').nth(1)?.0;
    Some(&text[..second])
}

fn namespace_stamp(namespace: &str) -> Vec<u8> {
    let mut row = Vec::with_capacity(namespace.len() + 1);
    row.push(b'n');
    row.extend_from_slice(namespace.as_bytes());
    row
}

/// The stamp row an invalidation of every key starting with `prefix`
/// writes: its namespace's, or the stamp of every key when the prefix names
/// no namespace.
pub(crate) fn prefix_stamp(prefix: &str) -> Vec<u8> {
    match namespace(prefix) {
        Some(ns) => namespace_stamp(ns),
        None => ALL.to_vec(),
    }
}

/// Every stamp a fill of `key` with `tags` depends on.
fn fill_stamps(key: &str, tags: &[String]) -> Vec<Vec<u8>> {
    let mut rows = vec![key_stamp(key), ALL.to_vec()];
    if let Some(ns) = namespace(key) {
        rows.push(namespace_stamp(ns));
    }
    rows.extend(tags.iter().map(|t| tag_stamp(t)));
    rows
}

impl Tx<'_> {
    /// Raise the stamp `row` to `reading`.
    pub(crate) fn stamp(&self, row: &[u8], reading: u64) -> TxResult<()> {
        let current = self.stamps.get(row)?.map_or(0, |v| read_u64(&v));
        if current < reading {
            self.stamps.insert(row, reading.to_be_bytes().to_vec())?;
        }
        Ok(())
    }

    /// Whether any of `rows` was stamped after `token` was taken.
    fn stamped_after(&self, rows: &[Vec<u8>], token: u64) -> TxResult<bool> {
        for row in rows {
            if self
                .stamps
                .get(row.as_slice())?
                .is_some_and(|v| read_u64(&v) > token)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Store {
    /// Stamp `row` in a transaction of its own, before an invalidation that
    /// reads an index or a range outside of a transaction.
    pub(crate) fn stamp_first(&self, operation: &'static str, row: &[u8]) -> Result<()> {
        let reading = self.clock.next();
        self.write(operation, |tx| tx.stamp(row, reading))
    }

    /// The largest stamp on disk.
    pub(crate) fn max_stamp(&self) -> Result<u64> {
        let mut max = 0;
        for item in self.stamps.iter().values() {
            max = max.max(read_u64(&item.map_err(self.err("open"))?));
        }
        Ok(max)
    }

    pub(crate) fn begin_fill(&self, key: &str) -> Result<(Option<Bytes>, FillToken)> {
        // The token first: an invalidation that lands between the two steps
        // then refuses the fill.
        let token = FillToken::new(self.clock.next());
        Ok((self.get(key)?, token))
    }

    pub(crate) fn set_filled(
        &self,
        key: &str,
        value: &[u8],
        options: &WriteOptions,
        token: FillToken,
    ) -> Result<FillStore> {
        let now = now_ms();
        let prepared = self.prepare(key, value, options, now)?;
        if Clock::age(token.reading()) > MAX_FILL_AGE {
            return Ok(FillStore::Refused);
        }
        let rows = fill_stamps(key, &prepared.tags);
        let outcome = self.write("set_filled", |tx| {
            if tx.stamped_after(&rows, token.reading())? {
                return Ok(None);
            }
            tx.set_one(&prepared, options.mode, now).map(Some)
        })?;
        Ok(match outcome {
            None => FillStore::Refused,
            Some(done) => {
                self.after_write(u64::from(done.created));
                if done.written {
                    FillStore::Stored
                } else {
                    FillStore::Declined
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_only_goes_up() {
        let clock = Clock::default();
        let a = clock.next();
        let b = clock.next();
        assert!(b > a);
        clock.resume_after(b + 1_000_000);
        assert!(clock.next() > b + 1_000_000);
        assert!(Clock::age(a) < Duration::from_secs(5));
        assert!(Clock::age(1) > Duration::from_secs(3600));
    }

    #[test]
    fn namespaces_and_rows() {
        assert_eq!(namespace("svc:v1:user:1"), Some("svc:v1"));
        assert_eq!(namespace("svc:v1:"), Some("svc:v1"));
        assert_eq!(namespace("svc:v1"), None);
        assert_eq!(prefix_stamp("svc:v10:"), b"nsvc:v10");
        assert_eq!(prefix_stamp("svc"), b"a");
        assert_eq!(key_stamp("x"), key_stamp("x"));
        assert_eq!(key_stamp("x").len(), 3);
        let rows = fill_stamps("svc:v1:k", &["svc:v1:t".to_owned()]);
        assert_eq!(rows.len(), 4);
    }
}
