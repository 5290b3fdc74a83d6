//! Writes, deletes and the tag index.
//!
//! Every write is one transaction over the entries, tags, expiry and stamps
//! trees, so an entry and its index rows always change together. The
//! closures only read and write through the transaction's views (sled may
//! run them again on a conflict); everything else (the clock, encoding,
//! checks) happens before.
//!
//! `invalidate_tags` cannot read the index inside a transaction (sled's
//! transactional trees have no range reads), so it stamps the tags first,
//! in a transaction of its own, then reads the index and deletes the
//! members in small transactions, each checking that the entry still
//! carries the tag. A fill that commits before the stamp is in the index
//! when it is read, and one that commits after sees the stamp: either way
//! it does not survive the invalidation.

use bytes::Bytes;
use larder_core::codec::is_counter;
use larder_core::{Count, Error, Result, SetMode, WriteOptions};
use sled::IVec;

use crate::connection::{Store, Tx, TxResult, abort};
use crate::error::KIND;
use crate::fill::{key_stamp, tag_stamp};
use crate::format::{self, Header, dedup, encode, expiry_row, now_ms, tag_prefix, tag_row, ttl_ms};

/// Rows read and removed per transaction by invalidations and scans.
pub(crate) const CHUNK: usize = 256;

/// A write checked and encoded before any I/O.
pub(crate) struct Prepared<'a> {
    pub(crate) key: &'a str,
    pub(crate) raw: IVec,
    pub(crate) expires_at: u64,
    pub(crate) tags: Vec<String>,
}

/// What a write transaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// The value was stored (the mode did not decline).
    pub(crate) written: bool,
    /// The key had no entry at all before (live or expired).
    pub(crate) created: bool,
}

/// Whether stored bytes are a live entry at `now`.
pub(crate) fn live_at(raw: &[u8], now: u64) -> bool {
    Header::parse(raw).is_some_and(|h| h.live(now))
}

/// Tags reach a backend namespaced and free of control characters; a
/// direct caller could still pass the separators the index relies on.
pub(crate) fn check_tag(tag: &str) -> Result<()> {
    if tag.contains(['\0', '\n']) {
        return Err(Error::invalid_key(
            tag,
            "a tag cannot hold a NUL byte or a line break",
        ));
    }
    Ok(())
}

/// The expiry (ms since the epoch, 0 for none) of a write made at `now`.
pub(crate) fn expiry_of(now: u64, ttl: Option<std::time::Duration>) -> Result<u64> {
    match ttl {
        Some(ttl) => Ok(now.saturating_add(ttl_ms(Error::check_ttl(ttl)?))),
        None => Ok(0),
    }
}

impl Tx<'_> {
    /// Remove the index rows of `key`'s entry `old`.
    pub(crate) fn unindex(&self, key: &str, old: &[u8]) -> TxResult<()> {
        let Some(header) = Header::parse(old) else {
            return Ok(());
        };
        if header.expires_at != 0 {
            self.expiry.remove(expiry_row(header.expires_at, key))?;
        }
        for tag in format::tags(old) {
            self.tags.remove(tag_row(&tag, key))?;
        }
        Ok(())
    }

    /// Add the index rows of an entry.
    pub(crate) fn index(&self, key: &str, expires_at: u64, tags: &[String]) -> TxResult<()> {
        if expires_at != 0 {
            self.expiry
                .insert(expiry_row(expires_at, key), IVec::default())?;
        }
        for tag in tags {
            self.tags.insert(tag_row(tag, key), IVec::default())?;
        }
        Ok(())
    }

    /// Replace `key`'s entry (`old`, if any) with `raw`, index rows
    /// included.
    pub(crate) fn put(
        &self,
        key: &str,
        old: Option<&[u8]>,
        raw: &IVec,
        expires_at: u64,
        tags: &[String],
    ) -> TxResult<()> {
        if let Some(old) = old {
            self.unindex(key, old)?;
        }
        self.entries.insert(key.as_bytes(), raw.clone())?;
        self.index(key, expires_at, tags)
    }

    /// Remove `key`'s entry and its index rows; the entry removed, if any.
    pub(crate) fn remove(&self, key: &str) -> TxResult<Option<IVec>> {
        let old = self.entries.remove(key.as_bytes())?;
        if let Some(old) = &old {
            self.unindex(key, old)?;
        }
        Ok(old)
    }

    /// Write a prepared entry as `mode` says.
    pub(crate) fn set_one(&self, p: &Prepared<'_>, mode: SetMode, now: u64) -> TxResult<Written> {
        let old = self.entries.get(p.key)?;
        let live = old.as_deref().is_some_and(|o| live_at(o, now));
        let declined = match mode {
            SetMode::IfAbsent => live,
            SetMode::IfPresent => !live,
            _ => false,
        };
        if declined {
            return Ok(Written::default());
        }
        self.put(p.key, old.as_deref(), &p.raw, p.expires_at, &p.tags)?;
        Ok(Written {
            written: true,
            created: old.is_none(),
        })
    }

    /// Give `key`'s live entry the expiry `at`; the entry as it was, when
    /// it was live.
    pub(crate) fn retime(&self, key: &str, now: u64, at: u64) -> TxResult<Option<IVec>> {
        let Some(old) = self.entries.get(key)? else {
            return Ok(None);
        };
        let Some(header) = Header::parse(&old).filter(|h| h.live(now)) else {
            return Ok(None);
        };
        if header.expires_at != 0 {
            self.expiry.remove(expiry_row(header.expires_at, key))?;
        }
        self.entries
            .insert(key.as_bytes(), format::with_expiry(&old, at))?;
        self.expiry.insert(expiry_row(at, key), IVec::default())?;
        Ok(Some(old))
    }
}

impl Store {
    /// Check and encode a write: TTL, tags and size, before any I/O.
    pub(crate) fn prepare<'a>(
        &self,
        key: &'a str,
        value: &[u8],
        options: &WriteOptions,
        now: u64,
    ) -> Result<Prepared<'a>> {
        let expires_at = expiry_of(now, options.ttl)?;
        let tags = dedup(&options.tags);
        for tag in &tags {
            check_tag(tag)?;
        }
        let raw = encode(expires_at, &tags, value);
        if raw.len() > self.config.max_value_size {
            return Err(Error::PayloadTooLarge {
                key: key.to_owned(),
                size: raw.len(),
                limit: self.config.max_value_size,
            });
        }
        Ok(Prepared {
            key,
            raw: IVec::from(raw),
            expires_at,
            tags,
        })
    }

    /// Book-keeping after a write that created `created` entries: count
    /// them and evict beyond the bound.
    pub(crate) fn after_write(&self, created: u64) {
        if created > 0 {
            self.counted(i64::try_from(created).unwrap_or(i64::MAX));
            self.evict_if_over();
        }
    }

    pub(crate) fn set(&self, key: &str, value: &[u8], options: &WriteOptions) -> Result<bool> {
        let now = now_ms();
        let prepared = self.prepare(key, value, options, now)?;
        let done = self.write("set", |tx| tx.set_one(&prepared, options.mode, now))?;
        self.after_write(u64::from(done.created));
        Ok(done.written)
    }

    pub(crate) fn expire(&self, key: &str, ttl: std::time::Duration) -> Result<bool> {
        let now = now_ms();
        let at = expiry_of(now, Some(ttl))?;
        self.write("expire", |tx| Ok(tx.retime(key, now, at)?.is_some()))
    }

    pub(crate) fn get_and_touch(
        &self,
        key: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<Bytes>> {
        let now = now_ms();
        let at = expiry_of(now, Some(ttl))?;
        let old = self.write("get_and_touch", |tx| tx.retime(key, now, at))?;
        Ok(old.map(format::payload))
    }

    pub(crate) fn get_delete(&self, key: &str) -> Result<Option<Bytes>> {
        let now = now_ms();
        let stamp = self.clock.next();
        let stamp_row = key_stamp(key);
        let old = self.write("get_delete", |tx| {
            tx.stamp(&stamp_row, stamp)?;
            tx.remove(key)
        })?;
        if old.is_some() {
            self.counted(-1);
        }
        Ok(old.filter(|raw| live_at(raw, now)).map(format::payload))
    }

    pub(crate) fn incr(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<std::time::Duration>,
    ) -> Result<i64> {
        let now = now_ms();
        let created_at = expiry_of(now, ttl)?;
        let (next, created) = self.write("incr", |tx| {
            let old = tx.entries.get(key)?;
            let live = old
                .as_deref()
                .and_then(|o| Header::parse(o).filter(|h| h.live(now)).map(|h| (o, h)));
            match live {
                Some((raw, header)) => {
                    let payload = format::payload_slice(raw);
                    let current = std::str::from_utf8(payload)
                        .ok()
                        .filter(|_| is_counter(payload))
                        .and_then(|t| t.parse::<i64>().ok());
                    let Some(current) = current else {
                        return abort(Error::NotAnInteger {
                            key: key.to_owned(),
                        });
                    };
                    let Some(next) = current.checked_add(delta) else {
                        return abort(Error::Backend {
                            backend: KIND,
                            message: format!(
                                "incr of {key:?} by {delta} overflows a 64-bit integer"
                            ),
                        });
                    };
                    let tags = format::tags(raw);
                    let raw = encode(header.expires_at, &tags, next.to_string().as_bytes());
                    tx.entries.insert(key.as_bytes(), raw)?;
                    Ok((next, false))
                }
                None => {
                    let raw = IVec::from(encode(created_at, &[], delta.to_string().as_bytes()));
                    tx.put(key, old.as_deref(), &raw, created_at, &[])?;
                    Ok((delta, old.is_none()))
                }
            }
        })?;
        self.after_write(u64::from(created));
        Ok(next)
    }

    pub(crate) fn invalidate_tags(&self, tags: &[String]) -> Result<Count> {
        for tag in tags {
            check_tag(tag)?;
        }
        // Stamp first: see the module docs.
        let stamp = self.clock.next();
        let rows: Vec<Vec<u8>> = tags.iter().map(|t| tag_stamp(t)).collect();
        self.write("invalidate_tags", |tx| {
            for row in &rows {
                tx.stamp(row, stamp)?;
            }
            Ok(())
        })?;
        let mut live = 0;
        for tag in tags {
            live += self.drop_members(tag)?;
        }
        Ok(Count::Exact(live))
    }

    /// Delete every entry the index lists under `tag`; how many were live.
    fn drop_members(&self, tag: &str) -> Result<u64> {
        let prefix = tag_prefix(tag);
        let mut live = 0;
        loop {
            let rows = self
                .tags
                .scan_prefix(&prefix)
                .keys()
                .take(CHUNK)
                .collect::<std::result::Result<Vec<IVec>, _>>()
                .map_err(self.err("invalidate_tags"))?;
            if rows.is_empty() {
                return Ok(live);
            }
            let now = now_ms();
            let (n, removed) = self.write("invalidate_tags", |tx| {
                let (mut n, mut removed) = (0, 0);
                for row in &rows {
                    let key = std::str::from_utf8(&row[prefix.len()..]).ok();
                    let entry = match key {
                        Some(key) => tx.entries.get(key)?,
                        None => None,
                    };
                    match (key, entry) {
                        (Some(key), Some(raw)) if format::has_tag(&raw, tag) => {
                            tx.remove(key)?;
                            removed += 1;
                            n += u64::from(live_at(&raw, now));
                        }
                        // A row its entry no longer backs.
                        _ => {
                            tx.tags.remove(row.clone())?;
                        }
                    }
                }
                Ok((n, removed))
            })?;
            self.counted(-removed);
            live += n;
        }
    }

    pub(crate) fn tag_members(&self, tag: &str, limit: usize) -> Result<Vec<String>> {
        check_tag(tag)?;
        let prefix = tag_prefix(tag);
        let now = now_ms();
        let mut out = Vec::new();
        for row in self.tags.scan_prefix(&prefix).keys() {
            if out.len() >= limit {
                break;
            }
            let row = row.map_err(self.err("tag_members"))?;
            let Ok(key) = std::str::from_utf8(&row[prefix.len()..]) else {
                continue;
            };
            let entry = self.entries.get(key).map_err(self.err("tag_members"))?;
            if entry.is_some_and(|raw| live_at(&raw, now) && format::has_tag(&raw, tag)) {
                out.push(key.to_owned());
            }
        }
        Ok(out)
    }

    /// Every key the index holds under `tag`, live or not, unfiltered.
    pub(crate) fn tag_index(&self, tag: &str) -> Result<Vec<String>> {
        let prefix = tag_prefix(tag);
        self.tags
            .scan_prefix(&prefix)
            .keys()
            .map(|row| {
                row.map(|r| String::from_utf8_lossy(&r[prefix.len()..]).into_owned())
                    .map_err(self.err("tag_index"))
            })
            .collect()
    }
}
