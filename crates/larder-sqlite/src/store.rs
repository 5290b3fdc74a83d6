//! The synchronous store: the read-only pool for reads, the writer thread
//! for writes. [`SqliteBackend`](crate::SqliteBackend) runs its reads
//! through core's `Blocking` adapter over this type and sends its writes to
//! the writer without holding a thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use larder_core::glob::Glob;
use larder_core::{
    BlockingBackend, Capabilities, Count, Entry, Error, Expiry, FillGuard, FillStore, FillToken,
    HealthReport, KeyTtl, Result, WriteOptions,
};
use rusqlite::{Connection, params};

use crate::config::{SqliteConfig, Synchronous};
use crate::connection::{Readers, Target, now_ms, open_writer};
use crate::error::{KIND, Place};
use crate::schema;
use crate::tags::{self, Row};
use crate::writer::{State, Tx, Writer, recount};
use crate::{batch, fill, locks, scan};

/// The database, its readers and its writer.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) readers: Readers,
    pub(crate) writer: Writer,
    pub(crate) place: Place,
    pub(crate) label: String,
    pub(crate) config: SqliteConfig,
    pub(crate) evictions: Arc<AtomicU64>,
}

impl Store {
    /// Open (or create) the database of `config`.
    pub(crate) fn open(config: SqliteConfig) -> Result<Self> {
        config.validate()?;
        let place = Place {
            name: Arc::from(crate::connection::display_name(&config.location)),
            busy_timeout: config.busy_timeout,
        };
        let target = Target::of(&config.location);
        let conn = open_writer(&config, &target, &place)?;
        let evictions = Arc::new(AtomicU64::new(0));
        let mut state = State {
            max_entries: config.max_entries,
            count: 0,
            evictions: evictions.clone(),
        };
        if config.max_entries.is_some() {
            recount(&conn, &mut state).map_err(|e| place.map(e))?;
        }
        let readers = Readers::open(&config, &target, &place, config.readers)?;
        let writer = Writer::start(conn, place.clone(), state, config.sweep_interval)?;
        Ok(Store {
            readers,
            writer,
            label: config.backend_label(),
            place,
            config,
            evictions,
        })
    }

    /// What this backend does.
    pub(crate) fn capabilities(&self) -> Capabilities {
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
        caps.shared = true;
        caps.persistent = true;
        caps.ttl_resolution = Duration::from_millis(1);
        caps.max_value_size = Some(self.config.max_value_size);
        caps
    }

    /// Refuse a value over `max_value_size`, before any I/O.
    pub(crate) fn check_size(&self, key: &str, value: &[u8]) -> Result<()> {
        if value.len() > self.config.max_value_size {
            return Err(Error::PayloadTooLarge {
                key: key.to_owned(),
                size: value.len(),
                limit: self.config.max_value_size,
            });
        }
        Ok(())
    }

    /// Check an optional TTL, before any I/O.
    pub(crate) fn check_ttl(ttl: Option<Duration>) -> Result<()> {
        if let Some(ttl) = ttl {
            Error::check_ttl(ttl)?;
        }
        Ok(())
    }

    fn read<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        self.readers.with(operation, f)
    }

    /// Every key the index of `tag` holds, live or not.
    pub(crate) fn raw_tag_index(&self, tag: &str) -> Result<Vec<String>> {
        self.read("tag_index", |c| tags::raw_index(c, tag, &self.place))
    }

    fn entry(&self, conn: &Connection, key: &str) -> Result<Option<Entry>> {
        let now = now_ms();
        let Some((value, at)) = tags::live_value(conn, key, now, &self.place)? else {
            return Ok(None);
        };
        let tags = tags::tags_of(conn, key, &self.place)?;
        let expiry = match at {
            None => Expiry::Never,
            Some(at) => Expiry::After(tags::remaining(at, now)),
        };
        Ok(Some(Entry::new(value, expiry, tags)))
    }

    fn probe(&self) -> Result<HealthReport> {
        let started = Instant::now();
        let (version, pages, page_size, journal): (i64, i64, i64, String) =
            self.read("health", |c| {
                let version = schema::version(c, &self.place)?;
                c.query_row(
                    "SELECT (SELECT page_count FROM pragma_page_count()),
                            (SELECT page_size FROM pragma_page_size()),
                            (SELECT journal_mode FROM pragma_journal_mode())",
                    [],
                    |r| Ok((version, r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(|e| self.place.map(e))
            })?;
        Ok(
            HealthReport::healthy(KIND, self.label.clone(), started.elapsed())
                .detail("database", &self.place.name)
                .detail("schema_version", version)
                .detail("journal_mode", journal)
                .detail(
                    "synchronous",
                    match self.config.synchronous {
                        Synchronous::Full => "full",
                        _ => "normal",
                    },
                )
                .detail("size_bytes", pages.saturating_mul(page_size))
                .detail("readers", self.config.readers),
        )
    }
}

/// Writer jobs, shared by the async and the blocking paths.
pub(crate) mod jobs {
    use super::*;

    /// A job for the writer.
    pub(crate) trait Job<T>: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static {}
    impl<T, F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static> Job<T> for F {}

    pub(crate) fn set(key: &str, value: Bytes, options: &WriteOptions) -> impl Job<bool> {
        let (key, options) = (key.to_owned(), options.clone());
        move |tx: &mut Tx<'_>| tags::set(tx, &key, &value, &options)
    }

    pub(crate) fn set_many(entries: &[(String, Bytes)], options: &WriteOptions) -> impl Job<u64> {
        let (entries, options) = (entries.to_vec(), options.clone());
        move |tx: &mut Tx<'_>| batch::set_many(tx, &entries, &options)
    }

    pub(crate) fn delete(keys: &[String]) -> impl Job<u64> {
        let keys = keys.to_vec();
        move |tx: &mut Tx<'_>| batch::delete(tx, &keys)
    }

    pub(crate) fn get_delete(key: &str) -> impl Job<Option<Bytes>> {
        let key = key.to_owned();
        move |tx: &mut Tx<'_>| {
            fill::stamp(tx, &[fill::Stamp::Key(&key)])?;
            let value = tags::live_value(tx.conn, &key, tx.now, tx.place)?;
            tags::remove(tx, &key)?;
            Ok(value.map(|(v, _)| v))
        }
    }

    pub(crate) fn get_and_touch(key: &str, ttl: Duration) -> impl Job<Option<Bytes>> {
        let key = key.to_owned();
        move |tx: &mut Tx<'_>| {
            let Some((value, _)) = tags::live_value(tx.conn, &key, tx.now, tx.place)? else {
                tags::remove(tx, &key)?;
                return Ok(None);
            };
            touch(tx, &key, ttl)?;
            Ok(Some(value))
        }
    }

    fn touch(tx: &mut Tx<'_>, key: &str, ttl: Duration) -> Result<()> {
        let at = tags::expires_at(tx.now, Some(ttl));
        tx.conn
            .prepare_cached("UPDATE entries SET expires_at = ?2 WHERE key = ?1")
            .and_then(|mut s| s.execute(params![key, at]))
            .map_err(|e| tx.map(e))?;
        Ok(())
    }

    pub(crate) fn expire(key: &str, ttl: Duration) -> impl Job<bool> {
        let key = key.to_owned();
        move |tx: &mut Tx<'_>| match tags::row(tx.conn, &key, tx.now, tx.place)? {
            Row::Live(_) => touch(tx, &key, ttl).map(|()| true),
            Row::Expired => tags::remove(tx, &key).map(|_| false),
            Row::Missing => Ok(false),
        }
    }

    pub(crate) fn incr(key: &str, delta: i64, ttl: Option<Duration>) -> impl Job<i64> {
        let key = key.to_owned();
        move |tx: &mut Tx<'_>| tags::incr(tx, &key, delta, ttl)
    }

    pub(crate) fn invalidate_tags(tags: &[String]) -> impl Job<Count> {
        let tags = tags.to_vec();
        move |tx: &mut Tx<'_>| tags::invalidate(tx, &tags)
    }

    pub(crate) fn delete_matching(pattern: &str) -> Result<impl Job<Count>> {
        let glob = Glob::new(pattern)?;
        let pattern = pattern.to_owned();
        Ok(move |tx: &mut Tx<'_>| scan::delete_matching(tx, &glob, &pattern))
    }

    pub(crate) fn clear(prefix: &str) -> impl Job<Count> {
        let prefix = prefix.to_owned();
        move |tx: &mut Tx<'_>| scan::clear(tx, &prefix)
    }

    pub(crate) fn lock(key: &str, token: &str, ttl: Duration) -> impl Job<bool> {
        let (key, token) = (key.to_owned(), token.to_owned());
        move |tx: &mut Tx<'_>| locks::lock(tx, &key, &token, ttl)
    }

    pub(crate) fn unlock(key: &str, token: &str) -> impl Job<bool> {
        let (key, token) = (key.to_owned(), token.to_owned());
        move |tx: &mut Tx<'_>| locks::unlock(tx, &key, &token)
    }

    pub(crate) fn set_filled(
        key: &str,
        value: Bytes,
        options: &WriteOptions,
        token: FillToken,
    ) -> impl Job<FillStore> {
        let (key, options) = (key.to_owned(), options.clone());
        move |tx: &mut Tx<'_>| fill::set_filled(tx, &key, &value, &options, token)
    }
}

impl BlockingBackend for Store {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn capabilities(&self) -> Capabilities {
        Store::capabilities(self)
    }

    fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.read("get", |c| {
            Ok(tags::live_value(c, key, now_ms(), &self.place)?.map(|(v, _)| v))
        })
    }

    fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        self.read("get_entry", |c| {
            c.execute_batch("BEGIN").map_err(|e| self.place.map(e))?;
            let entry = self.entry(c, key);
            let ended = c.execute_batch("COMMIT").map_err(|e| self.place.map(e));
            let entry = entry?;
            ended?;
            Ok(entry)
        })
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.read("get_many", |c| {
            batch::get_many(c, keys, now_ms(), &self.place)
        })
    }

    fn get_and_touch(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        Error::check_ttl(ttl)?;
        self.writer
            .call_blocking("get_and_touch", jobs::get_and_touch(key, ttl))
    }

    fn get_delete(&self, key: &str) -> Result<Option<Bytes>> {
        self.writer
            .call_blocking("get_delete", jobs::get_delete(key))
    }

    fn set(&self, key: &str, value: Bytes, options: &WriteOptions) -> Result<bool> {
        Self::check_ttl(options.ttl)?;
        self.check_size(key, &value)?;
        self.writer
            .call_blocking("set", jobs::set(key, value, options))
    }

    fn set_many(&self, entries: &[(String, Bytes)], options: &WriteOptions) -> Result<u64> {
        Self::check_ttl(options.ttl)?;
        for (key, value) in entries {
            self.check_size(key, value)?;
        }
        self.writer
            .call_blocking("set_many", jobs::set_many(entries, options))
    }

    fn delete(&self, keys: &[String]) -> Result<u64> {
        self.writer.call_blocking("delete", jobs::delete(keys))
    }

    fn exists(&self, key: &str) -> Result<bool> {
        self.read("exists", |c| {
            Ok(matches!(
                tags::row(c, key, now_ms(), &self.place)?,
                Row::Live(_)
            ))
        })
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        Error::check_ttl(ttl)?;
        self.writer.call_blocking("expire", jobs::expire(key, ttl))
    }

    fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.read("ttl", |c| {
            let now = now_ms();
            Ok(match tags::row(c, key, now, &self.place)? {
                Row::Missing | Row::Expired => KeyTtl::Missing,
                Row::Live(None) => KeyTtl::Persistent,
                Row::Live(Some(at)) => KeyTtl::Expires(tags::remaining(at, now)),
            })
        })
    }

    fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        Self::check_ttl(ttl)?;
        self.writer
            .call_blocking("incr", jobs::incr(key, delta, ttl))
    }

    fn invalidate_tags(&self, tags: &[String]) -> Result<Count> {
        self.writer
            .call_blocking("invalidate_tags", jobs::invalidate_tags(tags))
    }

    fn tag_members(&self, tag: &str, limit: usize) -> Result<Vec<String>> {
        self.read("tag_members", |c| {
            tags::members(c, tag, limit, now_ms(), &self.place)
        })
    }

    fn delete_matching(&self, pattern: &str) -> Result<Count> {
        let job = jobs::delete_matching(pattern)?;
        self.writer.call_blocking("delete_matching", job)
    }

    fn scan(&self, pattern: &str, limit: usize) -> Result<Vec<String>> {
        Glob::new(pattern)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.read("scan", |c| {
            scan::scan(c, pattern, limit, now_ms(), &self.place)
        })
    }

    fn clear(&self, prefix: &str) -> Result<Count> {
        self.writer.call_blocking("clear", jobs::clear(prefix))
    }

    fn lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        Error::check_ttl(ttl)?;
        self.writer
            .call_blocking("lock", jobs::lock(key, token, ttl))
    }

    fn unlock(&self, key: &str, token: &str) -> Result<bool> {
        self.writer
            .call_blocking("unlock", jobs::unlock(key, token))
    }

    fn begin_fill(&self, key: &str) -> Result<(Option<Bytes>, FillToken)> {
        self.read("begin_fill", |c| fill::begin(c, key, now_ms(), &self.place))
    }

    fn set_filled(
        &self,
        key: &str,
        value: Bytes,
        options: &WriteOptions,
        token: FillToken,
    ) -> Result<FillStore> {
        Self::check_ttl(options.ttl)?;
        self.check_size(key, &value)?;
        self.writer
            .call_blocking("set_filled", jobs::set_filled(key, value, options, token))
    }

    fn health(&self) -> Result<HealthReport> {
        self.probe()
    }

    fn evictions(&self) -> Option<u64> {
        Some(self.evictions.load(Ordering::Relaxed))
    }
}
