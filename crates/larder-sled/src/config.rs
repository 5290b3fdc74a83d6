//! Settings of the sled backend, from code or from a `sled://` URL.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use larder_core::config::{parse_duration, parse_size};
use larder_core::url::BackendUrl;
use larder_core::{Error, Result};

use crate::SledBackend;

/// URL schemes this crate opens.
pub const SCHEMES: &[&str] = &["sled"];

/// When an acknowledged write reaches the disk.
///
/// sled keeps recent writes in memory buffers and writes them out (with an
/// `fsync`) at each flush. A write is durable once a flush that started after
/// it has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FlushPolicy {
    /// The default. sled flushes every [`SledConfig::flush_every`] (500 ms
    /// unless set) on its own thread. A write is acknowledged once it is in
    /// sled's log in memory: a clean `close` (or drop) keeps it, a crash of
    /// the process or the machine loses the writes of the last flush
    /// interval at most (plus the flush in progress). Fast: no `fsync` on
    /// the write path.
    #[default]
    Interval,
    /// Every write flushes before it is acknowledged: once `set` (or any
    /// other write) returns, the write survives a crash. One `fsync` per
    /// write (concurrent writers share them where sled can).
    Always,
}

impl FlushPolicy {
    /// The name used in URLs: `interval` or `always`.
    pub fn name(self) -> &'static str {
        match self {
            FlushPolicy::Interval => "interval",
            FlushPolicy::Always => "always",
        }
    }
}

impl fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Settings of a [`SledBackend`]; also its builder.
///
/// ```
/// use std::time::Duration;
/// use larder_sled::{FlushPolicy, SledConfig};
/// let config = SledConfig::new("/var/cache/app")
///     .flush(FlushPolicy::Always)
///     .max_entries(1_000_000)
///     .sweep_every(Duration::from_secs(10));
/// assert_eq!(config.path.to_str(), Some("/var/cache/app"));
/// ```
///
/// From a URL, with every option (each optional):
///
/// ```text
/// sled://relative/dir            a directory relative to the working directory
/// sled:///var/cache/app          an absolute directory
///   ?flush=interval|always       FlushPolicy (default interval)
///   &flush_every=500ms           sled's background flush period (default 500ms)
///   &sweep_every=5s              expired-entry sweeper period (default 5s)
///   &sweep_batch=128             entries removed per sweeper transaction (default 128)
///   &max_entries=1000000         evict beyond this many entries (default: unbounded)
///   &max_value_size=16MiB        largest stored entry (default 16MiB)
///   &cache_capacity=256MiB       sled's in-memory page cache (default 256MiB)
///   &max_concurrency=8           operations running at once (default 8)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct SledConfig {
    /// The database directory (created when missing).
    pub path: PathBuf,
    /// When acknowledged writes reach the disk.
    pub flush: FlushPolicy,
    /// How often sled flushes on its own (its `flush_every_ms`). Also the
    /// most a crash loses under [`FlushPolicy::Interval`].
    pub flush_every: Duration,
    /// How often the sweeper removes expired entries and their index rows.
    pub sweep_every: Duration,
    /// Entries removed per sweeper transaction (small transactions keep
    /// writers waiting briefly).
    pub sweep_batch: usize,
    /// Evict beyond this many entries, soonest-expiring first; `None`
    /// (the default) for no bound. A bound costs one scan of the entries
    /// when the directory is opened, to count them.
    pub max_entries: Option<usize>,
    /// The largest stored entry in bytes (value, tags and a 9-byte header).
    pub max_value_size: usize,
    /// sled's in-memory page cache, in bytes.
    pub cache_capacity: u64,
    /// Operations running at once on the blocking pool; others wait without
    /// holding a thread.
    pub max_concurrency: usize,
}

impl SledConfig {
    /// Default of [`SledConfig::flush_every`]: sled's own default.
    pub const DEFAULT_FLUSH_EVERY: Duration = Duration::from_millis(500);
    /// Default of [`SledConfig::sweep_every`].
    pub const DEFAULT_SWEEP_EVERY: Duration = Duration::from_secs(5);
    /// Default of [`SledConfig::sweep_batch`].
    pub const DEFAULT_SWEEP_BATCH: usize = 128;
    /// Default of [`SledConfig::max_value_size`]: 16 MiB.
    pub const DEFAULT_MAX_VALUE_SIZE: usize = 16 << 20;
    /// Default of [`SledConfig::cache_capacity`]: 256 MiB.
    pub const DEFAULT_CACHE_CAPACITY: u64 = 256 << 20;
    /// Default of [`SledConfig::max_concurrency`].
    pub const DEFAULT_MAX_CONCURRENCY: usize = 8;

    /// Defaults for the directory `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SledConfig {
            path: path.into(),
            flush: FlushPolicy::default(),
            flush_every: Self::DEFAULT_FLUSH_EVERY,
            sweep_every: Self::DEFAULT_SWEEP_EVERY,
            sweep_batch: Self::DEFAULT_SWEEP_BATCH,
            max_entries: None,
            max_value_size: Self::DEFAULT_MAX_VALUE_SIZE,
            cache_capacity: Self::DEFAULT_CACHE_CAPACITY,
            max_concurrency: Self::DEFAULT_MAX_CONCURRENCY,
        }
    }

    /// The flush policy.
    pub fn flush(mut self, policy: FlushPolicy) -> Self {
        self.flush = policy;
        self
    }

    /// sled's background flush period (at least 1 ms).
    pub fn flush_every(mut self, every: Duration) -> Self {
        self.flush_every = every.max(Duration::from_millis(1));
        self
    }

    /// The sweeper's period (at least 10 ms).
    pub fn sweep_every(mut self, every: Duration) -> Self {
        self.sweep_every = every.max(Duration::from_millis(10));
        self
    }

    /// Entries removed per sweeper transaction (at least 1).
    pub fn sweep_batch(mut self, n: usize) -> Self {
        self.sweep_batch = n.max(1);
        self
    }

    /// Evict beyond `n` entries (at least 1).
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = Some(n.max(1));
        self
    }

    /// The largest stored entry, in bytes.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// sled's page cache, in bytes.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// Operations running at once (at least 1).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// Open the directory (see [`SledBackend::with_config`]).
    pub fn open(&self) -> Result<SledBackend> {
        SledBackend::with_config(self.clone())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// Settings from a `sled://` URL (see the type docs for the options).
    ///
    /// `sled://cache/app` names the relative directory `cache/app`,
    /// `sled:///var/cache/app` the absolute `/var/cache/app`.
    pub fn from_url(url: &BackendUrl) -> Result<Self> {
        let source = format!("URL {}", url.masked());
        if !SCHEMES.contains(&url.scheme.as_str()) {
            return Err(Error::config("url", source, "a sled:// URL", url.masked()));
        }
        if url.username.is_some() || url.password.is_some() {
            return Err(Error::config(
                "url",
                source,
                "sled://path/to/dir with no user or password",
                url.masked(),
            ));
        }
        let path = match url.hosts.as_slice() {
            [] if url.path.is_empty() => String::new(),
            [] => format!("/{}", url.path),
            hosts if url.path.is_empty() => hosts.join(","),
            hosts => format!("{}/{}", hosts.join(","), url.path),
        };
        if path.is_empty() || path == "/" {
            return Err(Error::config(
                "url path",
                source,
                "a directory: sled://relative/dir or sled:///absolute/dir",
                url.masked(),
            ));
        }
        url.ensure_known_params(&[
            "flush",
            "flush_every",
            "sweep_every",
            "sweep_batch",
            "max_entries",
            "max_value_size",
            "cache_capacity",
            "max_concurrency",
        ])?;
        let mut config = SledConfig::new(path);
        let policy = |raw: &str| match raw {
            "interval" => Some(FlushPolicy::Interval),
            "always" => Some(FlushPolicy::Always),
            _ => None,
        };
        if let Some(p) = url.param_with("flush", "`interval` or `always`", policy)? {
            config.flush = p;
        }
        let duration = |raw: &str| parse_duration(raw).filter(|d| !d.is_zero());
        let expected_duration = "a positive duration such as 500ms, 5s or 1m";
        if let Some(d) = url.param_with("flush_every", expected_duration, duration)? {
            config = config.flush_every(d);
        }
        if let Some(d) = url.param_with("sweep_every", expected_duration, duration)? {
            config = config.sweep_every(d);
        }
        let positive = |raw: &str| raw.parse::<usize>().ok().filter(|n| *n > 0);
        let expected_count = "a positive whole number";
        if let Some(n) = url.param_with("sweep_batch", expected_count, positive)? {
            config = config.sweep_batch(n);
        }
        if let Some(n) = url.param_with("max_entries", expected_count, positive)? {
            config = config.max_entries(n);
        }
        if let Some(n) = url.param_with("max_concurrency", expected_count, positive)? {
            config = config.max_concurrency(n);
        }
        let size = |raw: &str| parse_size(raw).filter(|n| *n > 0);
        let expected_size = "a size such as 1048576, 512KiB or 64MiB";
        if let Some(b) = url.param_with("max_value_size", expected_size, |raw| {
            size(raw).and_then(|n| usize::try_from(n).ok())
        })? {
            config.max_value_size = b;
        }
        if let Some(b) = url.param_with("cache_capacity", expected_size, size)? {
            config.cache_capacity = b;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<SledConfig> {
        SledConfig::from_url(&BackendUrl::parse(url)?)
    }

    #[test]
    fn paths() {
        assert_eq!(parse("sled://cache").unwrap().path, PathBuf::from("cache"));
        assert_eq!(
            parse("sled://cache/app/v1").unwrap().path,
            PathBuf::from("cache/app/v1")
        );
        assert_eq!(
            parse("sled:///var/cache/app").unwrap().path,
            PathBuf::from("/var/cache/app")
        );
        assert_eq!(
            parse("sled://./data").unwrap().path,
            PathBuf::from("./data")
        );
    }

    #[test]
    fn options() {
        let c = parse(
            "sled:///d?flush=always&flush_every=100ms&sweep_every=2s&sweep_batch=10\
             &max_entries=5&max_value_size=1MiB&cache_capacity=64MiB&max_concurrency=3",
        )
        .unwrap();
        assert_eq!(c.flush, FlushPolicy::Always);
        assert_eq!(c.flush_every, Duration::from_millis(100));
        assert_eq!(c.sweep_every, Duration::from_secs(2));
        assert_eq!(c.sweep_batch, 10);
        assert_eq!(c.max_entries, Some(5));
        assert_eq!(c.max_value_size, 1 << 20);
        assert_eq!(c.cache_capacity, 64 << 20);
        assert_eq!(c.max_concurrency, 3);
        let d = parse("sled://d").unwrap();
        assert_eq!(d, SledConfig::new("d"));
        assert_eq!(d.flush, FlushPolicy::Interval);
        assert_eq!(d.flush_every, Duration::from_millis(500));
    }

    #[test]
    fn bad_urls() {
        for (url, needle) in [
            ("sled://", "a directory"),
            ("sled:///", "a directory"),
            ("sled://d?flush=sometimes", "`interval` or `always`"),
            ("sled://d?flush_every=0", "positive duration"),
            ("sled://d?sweep_every=soon", "soon"),
            ("sled://d?max_entries=0", "positive whole number"),
            ("sled://d?max_value_size=big", "64MiB"),
            ("sled://d?size=1", "flush, flush_every"),
            ("sled://u:p@d", "no user or password"),
            ("redis://d", "a sled:// URL"),
        ] {
            let err = parse(url).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }
}
