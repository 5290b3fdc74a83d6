//! Settings of the SQLite backend, from a URL.
//!
//! ```text
//! sqlite://cache.db                 relative to the working directory
//! sqlite://data/cache.db            relative
//! sqlite:///var/cache/larder.db     absolute (three slashes)
//! sqlite://:memory:                 in memory, private to this backend
//! sqlite::memory:                   the same, accepted by SqliteBackend::open
//!                                   and SqliteConfig::parse (not by
//!                                   BackendUrl, which needs `://`)
//! ```
//!
//! Options (query parameters): `busy_timeout` (how long to wait for a lock
//! another connection or process holds, default 5s), `readers` (read-only
//! connections, default 4), `max_entries` (evict beyond this many entries;
//! default: no bound), `max_value_size` (largest value stored, default
//! 32MiB, at most 1000000000 bytes: SQLite's own limit), `sweep_interval`
//! (how often expired rows are swept, default 5s), `synchronous` (`normal`,
//! the default, or `full`: see the crate docs on durability), `label` (the
//! instance's name in health reports and metrics).
//!
//! The path is taken as written: no percent-decoding and no `~`. A path
//! holding `@`, `?` or `#` cannot be written as a URL; build a
//! [`SqliteConfig`] with [`SqliteConfig::file`] instead.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use larder_core::config::parse_duration;
use larder_core::url::BackendUrl;
use larder_core::{Error, Result};

/// Schemes this backend serves.
pub const SCHEMES: &[&str] = &["sqlite"];

/// The in-memory spelling that [`BackendUrl`] cannot parse.
const MEMORY_SHORT: &str = "sqlite::memory:";

/// SQLite's own limit on a BLOB (`SQLITE_MAX_LENGTH`).
pub(crate) const SQLITE_MAX_LENGTH: usize = 1_000_000_000;

/// Query parameters the URL may carry.
const PARAMS: &[&str] = &[
    "busy_timeout",
    "readers",
    "max_entries",
    "max_value_size",
    "sweep_interval",
    "synchronous",
    "label",
];

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A database file (created if missing; its directory must exist).
    File(PathBuf),
    /// A database in memory, shared by this backend's connections and
    /// gone when the backend closes.
    Memory,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Memory => f.write_str(":memory:"),
        }
    }
}

/// How hard a commit pushes data to the disk (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// `NORMAL`: a commit survives a crash of the process; a crash of the
    /// operating system or a power cut may lose the last commits (never the
    /// file's integrity). The default, and what WAL is designed for.
    #[default]
    Normal,
    /// `FULL`: every commit is synced to the disk before it is
    /// acknowledged, so it also survives a power cut. Slower writes.
    Full,
}

impl Synchronous {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Settings of a [`SqliteBackend`](crate::SqliteBackend).
///
/// ```
/// use larder_sqlite::SqliteConfig;
/// let config = SqliteConfig::parse("sqlite:///var/cache/app.db?max_entries=100000")?;
/// assert_eq!(config.max_entries, Some(100_000));
/// let memory = SqliteConfig::parse("sqlite::memory:")?;
/// assert_eq!(memory.location, larder_sqlite::Location::Memory);
/// # Ok::<(), larder_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteConfig {
    /// The database file, or memory.
    pub location: Location,
    /// How long an operation waits for a lock held by another connection
    /// or process before it fails (`PRAGMA busy_timeout`).
    pub busy_timeout: Duration,
    /// Read-only connections (reads run on up to this many at once).
    pub readers: usize,
    /// Evict beyond this many entries (expired first, then the soonest to
    /// expire, then the oldest without expiry); `None`: no bound.
    pub max_entries: Option<u64>,
    /// The largest value stored, in bytes.
    pub max_value_size: usize,
    /// How often the writer sweeps expired rows.
    pub sweep_interval: Duration,
    /// Durability of a commit.
    pub synchronous: Synchronous,
    /// A name for this backend in health reports and metrics
    /// (`sqlite@<label>`); by default the file's path.
    pub label: Option<String>,
}

impl SqliteConfig {
    /// Default busy timeout.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default number of read-only connections.
    pub const DEFAULT_READERS: usize = 4;
    /// Default largest value: 32 MiB, the cache's own default limit.
    pub const DEFAULT_MAX_VALUE_SIZE: usize = 32 * 1024 * 1024;
    /// Default interval of the expiry sweep.
    pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

    /// Defaults for a database file at `path`.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::at(Location::File(path.into()))
    }

    /// Defaults for an in-memory database.
    pub fn memory() -> Self {
        Self::at(Location::Memory)
    }

    fn at(location: Location) -> Self {
        SqliteConfig {
            location,
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
            readers: Self::DEFAULT_READERS,
            max_entries: None,
            max_value_size: Self::DEFAULT_MAX_VALUE_SIZE,
            sweep_interval: Self::DEFAULT_SWEEP_INTERVAL,
            synchronous: Synchronous::Normal,
            label: None,
        }
    }

    /// Settings from a URL string: every form of [`BackendUrl`] with the
    /// `sqlite` scheme, and `sqlite::memory:`.
    pub fn parse(url: &str) -> Result<Self> {
        if url == MEMORY_SHORT {
            return Ok(Self::memory());
        }
        if let Some(query) = url
            .strip_prefix(MEMORY_SHORT)
            .and_then(|r| r.strip_prefix('?'))
        {
            return Self::from_url(&BackendUrl::parse(&format!("sqlite://:memory:?{query}"))?);
        }
        Self::from_url(&BackendUrl::parse(url)?)
    }

    /// Settings from a parsed URL (`sqlite://…`).
    pub fn from_url(url: &BackendUrl) -> Result<Self> {
        if !SCHEMES.contains(&url.scheme.as_str()) {
            return Err(bad(url, "url", "a sqlite:// URL", url.masked()));
        }
        url.ensure_known_params(PARAMS)?;
        if url.username.is_some() || url.password.is_some() {
            return Err(bad(
                url,
                "url path",
                "a file path without `@` (sqlite:// URLs take no user or password; build a \
                 SqliteConfig::file for such a path)",
                url.masked(),
            ));
        }
        let mut config = Self::at(location(url)?);
        config.busy_timeout = duration(url, "busy_timeout", Self::DEFAULT_BUSY_TIMEOUT)?;
        let positive = |raw: &str| raw.parse::<usize>().ok().filter(|n| *n > 0);
        config.readers = url
            .param_with("readers", "a positive whole number", positive)?
            .unwrap_or(Self::DEFAULT_READERS);
        config.max_entries = url.param_with("max_entries", "a positive whole number", |raw| {
            raw.parse::<u64>().ok().filter(|n| *n > 0)
        })?;
        config.max_value_size = url
            .param_with(
                "max_value_size",
                "a size from 1 byte to 1000000000 bytes, such as 1048576, 512KiB or 32MiB",
                |raw| parse_size(raw).filter(|n| (1..=SQLITE_MAX_LENGTH).contains(n)),
            )?
            .unwrap_or(Self::DEFAULT_MAX_VALUE_SIZE);
        config.sweep_interval = url
            .param_with(
                "sweep_interval",
                "a positive duration such as 500ms, 5s or 1m",
                |raw| parse_duration(raw).filter(|d| !d.is_zero()),
            )?
            .unwrap_or(Self::DEFAULT_SWEEP_INTERVAL);
        config.synchronous = url
            .param_with("synchronous", "normal or full", |raw| {
                match raw.to_ascii_lowercase().as_str() {
                    "normal" => Some(Synchronous::Normal),
                    "full" => Some(Synchronous::Full),
                    _ => None,
                }
            })?
            .unwrap_or_default();
        config.label = url.param("label").map(str::to_owned);
        Ok(config)
    }

    /// Check the settings (the URL parser already has).
    pub(crate) fn validate(&self) -> Result<()> {
        let source = format!("SqliteConfig for {}", self.location);
        if self.readers == 0 {
            return Err(Error::config(
                "readers",
                source,
                "a positive whole number",
                "0",
            ));
        }
        if !(1..=SQLITE_MAX_LENGTH).contains(&self.max_value_size) {
            return Err(Error::config(
                "max_value_size",
                source,
                "a size from 1 byte to 1000000000 bytes (SQLite's limit)",
                self.max_value_size.to_string(),
            ));
        }
        if self.max_entries == Some(0) {
            return Err(Error::config(
                "max_entries",
                source,
                "a positive whole number, or None",
                "0",
            ));
        }
        if self.sweep_interval.is_zero() {
            return Err(Error::config(
                "sweep_interval",
                source,
                "a positive duration",
                "0",
            ));
        }
        if let Location::File(path) = &self.location
            && path.as_os_str().is_empty()
        {
            return Err(Error::config(
                "location",
                source,
                "a file path",
                "an empty path",
            ));
        }
        Ok(())
    }

    /// The label of the backend: `sqlite@<label or path>`.
    pub(crate) fn backend_label(&self) -> String {
        match &self.label {
            Some(label) => format!("sqlite@{label}"),
            None => format!("sqlite@{}", self.location),
        }
    }
}

fn bad(url: &BackendUrl, field: &str, expected: &str, got: impl Into<String>) -> Error {
    Error::config(field, format!("URL {}", url.masked()), expected, got)
}

fn duration(url: &BackendUrl, name: &str, default: Duration) -> Result<Duration> {
    Ok(url
        .param_with(name, "a duration such as 500ms, 2s or 1m", parse_duration)?
        .unwrap_or(default))
}

/// `sqlite://a/b.db` holds hosts `["a"]` and path `b.db`; `sqlite:///a/b.db`
/// holds no host and path `a/b.db`.
fn location(url: &BackendUrl) -> Result<Location> {
    let hosts = url.hosts.join(",");
    let text = match (hosts.is_empty(), url.path.is_empty()) {
        (true, true) => {
            return Err(bad(
                url,
                "url path",
                "a database file: sqlite://cache.db (relative), sqlite:///var/cache/a.db \
                 (absolute) or sqlite://:memory:",
                url.masked(),
            ));
        }
        (true, false) => format!("/{}", url.path),
        (false, true) => hosts,
        (false, false) => format!("{hosts}/{}", url.path),
    };
    if text == ":memory:" {
        return Ok(Location::Memory);
    }
    let written = url.masked().split('?').next().unwrap_or_default();
    if text.ends_with('/') || written.ends_with('/') {
        return Err(bad(
            url,
            "url path",
            "a database file, not a directory",
            text,
        ));
    }
    Ok(Location::File(Path::new(&text).to_path_buf()))
}

/// `1048576`, `512KiB`, `32MiB`, `1GiB`, `64KB`, `10MB`.
fn parse_size(raw: &str) -> Option<usize> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let n: usize = digits.parse().ok()?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let file = |url: &str| match SqliteConfig::parse(url).unwrap().location {
            Location::File(p) => p,
            Location::Memory => panic!("{url} is not memory"),
        };
        assert_eq!(file("sqlite://cache.db"), PathBuf::from("cache.db"));
        assert_eq!(
            file("sqlite://data/cache.db"),
            PathBuf::from("data/cache.db")
        );
        assert_eq!(file("sqlite://./cache.db"), PathBuf::from("./cache.db"));
        assert_eq!(
            file("sqlite:///var/cache/a.db"),
            PathBuf::from("/var/cache/a.db")
        );
        assert_eq!(
            file("SQLITE:///tmp/x.db?readers=2"),
            PathBuf::from("/tmp/x.db")
        );
        for memory in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite::memory:?readers=2",
        ] {
            assert_eq!(
                SqliteConfig::parse(memory).unwrap().location,
                Location::Memory,
                "{memory}"
            );
        }
    }

    #[test]
    fn options() {
        let c = SqliteConfig::parse(
            "sqlite://c.db?busy_timeout=250ms&readers=2&max_entries=10&max_value_size=1MiB\
             &sweep_interval=1s&synchronous=full&label=sessions",
        )
        .unwrap();
        assert_eq!(c.busy_timeout, Duration::from_millis(250));
        assert_eq!(c.readers, 2);
        assert_eq!(c.max_entries, Some(10));
        assert_eq!(c.max_value_size, 1 << 20);
        assert_eq!(c.sweep_interval, Duration::from_secs(1));
        assert_eq!(c.synchronous, Synchronous::Full);
        assert_eq!(c.backend_label(), "sqlite@sessions");
        let d = SqliteConfig::parse("sqlite://c.db").unwrap();
        assert_eq!(d.max_value_size, 32 << 20);
        assert_eq!(d.backend_label(), "sqlite@c.db");
    }

    #[test]
    fn bad_urls_say_what_is_expected() {
        for (url, needle) in [
            ("sqlite://", "a database file"),
            ("sqlite://c.db?readers=0", "readers"),
            ("sqlite://c.db?max_value_size=2GB", "max_value_size"),
            ("sqlite://c.db?synchronous=off", "normal or full"),
            ("sqlite://c.db?bogus=1", "bogus"),
            ("sqlite://dir/", "not a directory"),
            ("sqlite://user@c.db", "without `@`"),
            ("redis://c.db", "sqlite://"),
        ] {
            let err = SqliteConfig::parse(url).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("512KiB"), Some(512 * 1024));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("5 parsecs"), None);
    }
}
