//! Settings of the Memcached backend, from a URL.
//!
//! ```text
//! memcached://host[:port][*weight][,host[:port][*weight]…][?options]
//! ```
//!
//! Servers are listed in the host part, the port defaulting to 11211. A
//! server's weight (a whole number from 1 to 1000, default 1) follows its
//! address after a `*`: `memcached://h1:11211*3,h2:11211` gives `h1` three
//! times the share of keys `h2` gets. IPv6 addresses go in brackets:
//! `memcached://[::1]:11211*2`.
//!
//! Options: `timeout` (one command, default 1s), `connect_timeout` (1s),
//! `pool` (connections per server, default 8), `retry_delay` (how long a
//! server that could not be reached is left alone before the next attempt,
//! default 100ms, doubling on each failure up to `retry_max_delay`, default
//! 5s) and `label` (the name in health reports and metrics:
//! `memcached@<label>`). Durations are written `500ms`, `2s`, `1m`. An
//! unknown option is an error, so a typo is never silently ignored.
//!
//! Memcached has no password larder could send over the binary protocol
//! without SASL, which larder does not support: a URL with a user or a
//! password is refused.

use std::fmt;
use std::time::Duration;

use larder_core::config::parse_duration;
use larder_core::url::BackendUrl;
use larder_core::{Error, Result};

/// Schemes this backend serves.
pub const SCHEMES: &[&str] = &["memcached"];

/// The port a server listens on when the URL names none.
pub const DEFAULT_PORT: u16 = 11211;

/// The largest weight a server may have.
pub const MAX_WEIGHT: u32 = 1000;

/// Query parameters the URL may carry.
const PARAMS: &[&str] = &[
    "timeout",
    "connect_timeout",
    "pool",
    "retry_delay",
    "retry_max_delay",
    "label",
];

/// One Memcached server and its share of the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Host name or address (an IPv6 address without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Relative share of the keys (1 to [`MAX_WEIGHT`]): a server of weight
    /// 3 gets about three times the keys of a server of weight 1.
    pub weight: u32,
}

impl ServerConfig {
    /// A server of weight 1.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        ServerConfig {
            host: host.into(),
            port,
            weight: 1,
        }
    }

    /// The same server with another weight.
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// `host:port`, with an IPv6 host in brackets: the server's name in
    /// messages, labels and on the hash ring.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address())?;
        if self.weight != 1 {
            write!(f, "*{}", self.weight)?;
        }
        Ok(())
    }
}

/// Settings of a [`MemcachedBackend`](crate::MemcachedBackend). Holds no
/// secret: `Debug` shows everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcachedConfig {
    /// The servers, in the order given. Each key lives on one of them,
    /// chosen by a consistent-hash ring.
    pub servers: Vec<ServerConfig>,
    /// Time allowed for one command (the socket read and write timeout).
    pub timeout: Duration,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Connections per server, at most.
    pub pool: usize,
    /// How long a server that could not be reached is left alone before the
    /// next attempt; doubles with each failure in a row.
    pub retry_delay: Duration,
    /// The longest wait between two attempts to reach a server.
    pub retry_max_delay: Duration,
    /// A name for this backend in health reports and metrics
    /// (`memcached@<label>`); by default the server addresses.
    pub label: Option<String>,
}

impl MemcachedConfig {
    /// Default time allowed for one command.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Default time allowed to open a connection.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Default connections per server.
    pub const DEFAULT_POOL: usize = 8;
    /// Default first wait before reaching for a server that failed.
    pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(100);
    /// Default longest wait between attempts to reach a server.
    pub const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(5);

    /// Settings for `servers` with every default.
    pub fn new(servers: Vec<ServerConfig>) -> Self {
        MemcachedConfig {
            servers,
            timeout: Self::DEFAULT_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            pool: Self::DEFAULT_POOL,
            retry_delay: Self::DEFAULT_RETRY_DELAY,
            retry_max_delay: Self::DEFAULT_RETRY_MAX_DELAY,
            label: None,
        }
    }

    /// Settings from a `memcached://` URL (see the module docs for the
    /// form). Every bad value is an [`Error::Config`] naming the field, the
    /// URL and what is expected.
    pub fn from_url(url: &BackendUrl) -> Result<Self> {
        if !SCHEMES.contains(&url.scheme.as_str()) {
            return Err(bad(url, "url", "a memcached:// URL", url.masked()));
        }
        url.ensure_known_params(PARAMS)?;
        if url.username.is_some() || url.password.is_some() {
            return Err(bad(
                url,
                "url user information",
                "no user or password: larder speaks the binary protocol without SASL \
                 (keep memcached on a private network instead)",
                "(not shown)",
            ));
        }
        if !url.path.is_empty() {
            return Err(bad(
                url,
                "url path",
                "nothing after the hosts but `?options` (memcached has no databases)",
                url.path.clone(),
            ));
        }
        if url.hosts.is_empty() {
            return Err(bad(
                url,
                "url host",
                "at least one host[:port][*weight]",
                url.masked(),
            ));
        }
        let servers = url
            .hosts
            .iter()
            .map(|entry| server(url, entry))
            .collect::<Result<Vec<_>>>()?;
        for (i, s) in servers.iter().enumerate() {
            if servers[..i].iter().any(|t| t.address() == s.address()) {
                return Err(bad(
                    url,
                    "url host",
                    "each server once (give a server more keys with a weight: host:port*3)",
                    s.address(),
                ));
            }
        }
        let pool = url
            .param_with("pool", "a whole number from 1 to 1024", |raw| {
                raw.parse::<usize>().ok().filter(|n| (1..=1024).contains(n))
            })?
            .unwrap_or(Self::DEFAULT_POOL);
        let config = MemcachedConfig {
            servers,
            timeout: duration(url, "timeout", Self::DEFAULT_TIMEOUT)?,
            connect_timeout: duration(url, "connect_timeout", Self::DEFAULT_CONNECT_TIMEOUT)?,
            pool,
            retry_delay: duration(url, "retry_delay", Self::DEFAULT_RETRY_DELAY)?,
            retry_max_delay: duration(url, "retry_max_delay", Self::DEFAULT_RETRY_MAX_DELAY)?,
            label: url.param("label").map(str::to_owned),
        };
        if config.retry_max_delay < config.retry_delay {
            return Err(bad(
                url,
                "url query parameter `retry_max_delay`",
                "a duration no shorter than retry_delay",
                url.param("retry_max_delay").unwrap_or_default(),
            ));
        }
        Ok(config)
    }

    /// Check settings built in code: at least one server, each once, weights
    /// and the pool in range, timeouts positive.
    pub fn validate(&self) -> Result<()> {
        let source = "MemcachedConfig";
        if self.servers.is_empty() {
            return Err(Error::config(
                "servers",
                source,
                "at least one server",
                "none",
            ));
        }
        for (i, s) in self.servers.iter().enumerate() {
            if s.host.is_empty() || s.port == 0 {
                return Err(Error::config(
                    "servers",
                    source,
                    "a host and a port from 1 to 65535",
                    s.address(),
                ));
            }
            if !(1..=MAX_WEIGHT).contains(&s.weight) {
                return Err(Error::config(
                    "servers weight",
                    source,
                    format!("a weight from 1 to {MAX_WEIGHT}"),
                    s.weight.to_string(),
                ));
            }
            if self.servers[..i].iter().any(|t| t.address() == s.address()) {
                return Err(Error::config(
                    "servers",
                    source,
                    "each server once",
                    s.address(),
                ));
            }
        }
        if self.pool == 0 {
            return Err(Error::config("pool", source, "at least 1", "0"));
        }
        for (field, value) in [
            ("timeout", self.timeout),
            ("connect_timeout", self.connect_timeout),
            ("retry_delay", self.retry_delay),
        ] {
            if value.is_zero() {
                return Err(Error::config(field, source, "a positive duration", "0"));
            }
        }
        Ok(())
    }

    /// `h1:11211,h2:11211`: the servers, for labels and messages.
    pub fn addresses(&self) -> String {
        self.servers
            .iter()
            .map(ServerConfig::address)
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn bad(url: &BackendUrl, field: &str, expected: &str, got: impl Into<String>) -> Error {
    Error::config(field, format!("URL {}", url.masked()), expected, got)
}

fn duration(url: &BackendUrl, name: &str, default: Duration) -> Result<Duration> {
    Ok(url
        .param_with(name, "a positive duration such as 500ms, 2s or 1m", |raw| {
            parse_duration(raw).filter(|d| !d.is_zero())
        })?
        .unwrap_or(default))
}

/// One `host[:port][*weight]` entry.
fn server(url: &BackendUrl, entry: &str) -> Result<ServerConfig> {
    let (address, weight) = match entry.rsplit_once('*') {
        Some((address, weight)) => {
            let weight = weight
                .parse::<u32>()
                .ok()
                .filter(|w| (1..=MAX_WEIGHT).contains(w))
                .ok_or_else(|| {
                    bad(
                        url,
                        "url server weight",
                        &format!("a whole number from 1 to {MAX_WEIGHT} after `*` (host:port*3)"),
                        weight,
                    )
                })?;
            (address, weight)
        }
        None => (entry, 1),
    };
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        // `[::1]:11211` or `[::1]`
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| bad(url, "url host", "[ipv6]:port", address))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(bad(url, "url host", "[ipv6]:port", address)),
        }
    } else {
        match address.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        }
    };
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        return Err(bad(url, "url host", "host[:port][*weight]", entry));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(url, "url port", "a port number from 1 to 65535", p))?,
    };
    Ok(ServerConfig {
        host: host.to_owned(),
        port,
        weight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<MemcachedConfig> {
        MemcachedConfig::from_url(&BackendUrl::parse(url)?)
    }

    #[test]
    fn servers_weights_and_options() {
        let c =
            parse("memcached://h1:11211*3,h2,[::1]:11300*2?timeout=500ms&pool=4&label=x").unwrap();
        assert_eq!(
            c.servers,
            vec![
                ServerConfig::new("h1", 11211).weight(3),
                ServerConfig::new("h2", 11211),
                ServerConfig::new("::1", 11300).weight(2),
            ]
        );
        assert_eq!(c.addresses(), "h1:11211,h2:11211,[::1]:11300");
        assert_eq!(c.timeout, Duration::from_millis(500));
        assert_eq!(c.pool, 4);
        assert_eq!(c.label.as_deref(), Some("x"));
        assert_eq!(c.connect_timeout, MemcachedConfig::DEFAULT_CONNECT_TIMEOUT);
        c.validate().unwrap();
        assert_eq!(format!("{:?}", c.servers[0]), "h1:11211*3");
        let d = parse("memcached://cache").unwrap();
        assert_eq!(d.servers, vec![ServerConfig::new("cache", DEFAULT_PORT)]);
        assert_eq!(d.pool, MemcachedConfig::DEFAULT_POOL);
    }

    #[test]
    fn bad_urls_are_explained() {
        for (url, needle) in [
            ("memcached://h:99999", "port number"),
            ("memcached://h*0", "from 1 to 1000"),
            ("memcached://h*x", "after `*`"),
            ("memcached://h*1001", "from 1 to 1000"),
            ("memcached://h?timeuot=1s", "timeout"),
            ("memcached://h?timeout=fast", "500ms"),
            ("memcached://h?timeout=0", "positive"),
            ("memcached://h?pool=0", "from 1 to 1024"),
            ("memcached://h/0", "no databases"),
            ("memcached://", "at least one host"),
            ("memcached://h1,h1:11211", "each server once"),
            ("memcached://[::1", "[ipv6]:port"),
            (
                "memcached://h?retry_delay=2s&retry_max_delay=1s",
                "no shorter",
            ),
            ("redis://h", "memcached://"),
        ] {
            let err = parse(url).unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{url}: {err:?}");
            assert!(err.to_string().contains(needle), "{url}: {err}");
        }
    }

    #[test]
    fn credentials_are_refused_and_never_shown() {
        let err = parse("memcached://app:hunter2@h:11211")
            .unwrap_err()
            .to_string();
        assert!(err.contains("SASL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn code_built_settings_are_checked() {
        let mut c = MemcachedConfig::new(vec![ServerConfig::new("h", 1)]);
        c.validate().unwrap();
        c.servers[0].weight = 0;
        assert!(c.validate().is_err());
        c.servers[0].weight = 1;
        c.pool = 0;
        assert!(c.validate().is_err());
        assert!(MemcachedConfig::new(Vec::new()).validate().is_err());
    }
}
