//! Settings of the Redis backend, from a URL.
//!
//! ```text
//! redis://[user[:password]@]host[:port][/db][?options]
//! rediss://...                                          TLS
//! redis+sentinel://[user:password@]h1:26379,h2:26379/<service>[/db][?options]
//! redis+cluster://[user:password@]n1:7000,n2:7001[?options]
//! rediss+sentinel://..., rediss+cluster://...           TLS
//! ```
//!
//! Options: `pool_size` (connections, default: the cache's
//! `max_connections`, 10), `connect_timeout` (5s), `command_timeout` (2s),
//! `keepalive` (30s; `0` turns it off), `reconnect_attempts` (0 = forever),
//! `reconnect_min_delay` (100ms), `reconnect_max_delay` (5s), `tls_ca` (path
//! of a PEM CA bundle to trust instead of the system roots), `tls_cert` and
//! `tls_key` (paths of a PEM client certificate chain and its private key,
//! for servers that require client certificates: `tls-auth-clients yes`),
//! `sentinel_username` / `sentinel_password` (credentials of the sentinels
//! when they differ from the server's), `invalidation_channel` (prefix of
//! the near-cache invalidation channels, default `larder:inv:`; `off` stops
//! publishing and subscribing).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use larder_core::config::parse_duration;
use larder_core::url::BackendUrl;
use larder_core::{Error, Result};

/// Where the servers are. `Display` gives the addresses for messages
/// (`127.0.0.1:6380`, `sentinel h1:26379,h2:26379 (service mymaster)`,
/// `cluster n1:7000,n2:7001`); neither it nor `Debug` shows a password.
#[derive(Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (or a primary behind a load balancer).
    Standalone {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A primary found through Sentinel.
    Sentinel {
        /// Sentinel addresses.
        sentinels: Vec<(String, u16)>,
        /// The monitored service (master) name.
        service: String,
        /// Sentinel user, when it differs from the server's.
        username: Option<String>,
        /// Sentinel password, when it differs from the server's.
        password: Option<String>,
    },
    /// A Redis Cluster; any subset of nodes works as seeds.
    Cluster {
        /// Seed nodes.
        nodes: Vec<(String, u16)>,
    },
}

/// `host:port`, with an IPv6 host in brackets.
fn write_address(f: &mut fmt::Formatter<'_>, host: &str, port: u16) -> fmt::Result {
    if host.contains(':') {
        write!(f, "[{host}]:{port}")
    } else {
        write!(f, "{host}:{port}")
    }
}

/// `h1:p1,h2:p2`.
fn write_addresses(f: &mut fmt::Formatter<'_>, addresses: &[(String, u16)]) -> fmt::Result {
    for (i, (host, port)) in addresses.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write_address(f, host, *port)?;
    }
    Ok(())
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Standalone { host, port } => write_address(f, host, *port),
            Topology::Sentinel {
                sentinels, service, ..
            } => {
                f.write_str("sentinel ")?;
                write_addresses(f, sentinels)?;
                write!(f, " (service {service})")
            }
            Topology::Cluster { nodes } => {
                f.write_str("cluster ")?;
                write_addresses(f, nodes)
            }
        }
    }
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Standalone { host, port } => f
                .debug_struct("Standalone")
                .field("host", host)
                .field("port", port)
                .finish(),
            Topology::Sentinel {
                sentinels,
                service,
                username,
                password,
            } => f
                .debug_struct("Sentinel")
                .field("sentinels", sentinels)
                .field("service", service)
                .field("username", username)
                .field("password", &password.as_ref().map(|_| "***"))
                .finish(),
            Topology::Cluster { nodes } => f.debug_struct("Cluster").field("nodes", nodes).finish(),
        }
    }
}

/// Settings of a [`RedisBackend`](crate::RedisBackend).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Servers.
    pub topology: Topology,
    /// Use TLS.
    pub tls: bool,
    /// PEM CA bundle to trust (default: the system roots).
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate chain presented to the server (mutual TLS);
    /// set with [`RedisConfig::tls_key`].
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`. The file is read when connecting; its
    /// contents are never shown.
    pub tls_key: Option<PathBuf>,
    /// ACL user.
    pub username: Option<String>,
    /// Password. Never printed.
    pub password: Option<String>,
    /// Database index (standalone and Sentinel only).
    pub database: u8,
    /// Connections in the pool.
    pub pool_size: usize,
    /// Time allowed to connect (TCP and TLS handshake).
    pub connect_timeout: Duration,
    /// Time allowed for one command.
    pub command_timeout: Duration,
    /// TCP keepalive interval; `None` turns keepalive off.
    pub keepalive: Option<Duration>,
    /// Reconnect attempts before giving up; 0 retries forever.
    pub reconnect_attempts: u32,
    /// First reconnect delay; doubles up to `reconnect_max_delay`.
    pub reconnect_min_delay: Duration,
    /// Longest reconnect delay.
    pub reconnect_max_delay: Duration,
    /// A name for this backend in health reports and metrics
    /// (`redis@<label>`); by default the server address.
    pub label: Option<String>,
    /// Prefix of the channels near-cache invalidations are published on
    /// (`larder:inv:` + namespace); `None` publishes nothing and offers no
    /// invalidation stream (near caches then rely on their TTL).
    pub invalidation_channel: Option<String>,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("topology", &self.topology)
            .field("tls", &self.tls)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("database", &self.database)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("keepalive", &self.keepalive)
            .field("reconnect_attempts", &self.reconnect_attempts)
            .field("label", &self.label)
            .field("invalidation_channel", &self.invalidation_channel)
            .finish_non_exhaustive()
    }
}

/// Query parameters the URL may carry.
const PARAMS: &[&str] = &[
    "pool_size",
    "connect_timeout",
    "command_timeout",
    "keepalive",
    "reconnect_attempts",
    "reconnect_min_delay",
    "reconnect_max_delay",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "sentinel_username",
    "sentinel_password",
    "label",
    "invalidation_channel",
];

/// Schemes this backend serves.
pub const SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
];

fn bad(url: &BackendUrl, field: &str, expected: &str, got: impl Into<String>) -> Error {
    Error::config(field, format!("URL {}", url.masked()), expected, got)
}

fn host_port(url: &BackendUrl, entry: &str, default_port: u16) -> Result<(String, u16)> {
    let (host, port) = match entry.rsplit_once(':') {
        // `[::1]:6379`
        Some((h, p)) if !h.ends_with(':') => (h, Some(p)),
        _ => (entry, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad(url, "url host", "host[:port]", entry));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(url, "url port", "a port number from 1 to 65535", p))?,
    };
    Ok((host.to_owned(), port))
}

fn database(url: &BackendUrl, text: &str) -> Result<u8> {
    if text.is_empty() {
        return Ok(0);
    }
    text.parse::<u8>()
        .ok()
        .filter(|db| *db < 16)
        .ok_or_else(|| bad(url, "url database", "a database index from 0 to 15", text))
}

fn duration(url: &BackendUrl, name: &str, default: Duration) -> Result<Duration> {
    Ok(url
        .param_with(name, "a duration such as 500ms, 2s or 1m", parse_duration)?
        .unwrap_or(default))
}

impl RedisConfig {
    /// Settings from a URL; `default_pool_size` applies when the URL has no
    /// `pool_size`.
    pub fn from_url(url: &BackendUrl, default_pool_size: usize) -> Result<Self> {
        if !SCHEMES.contains(&url.scheme.as_str()) {
            return Err(bad(
                url,
                "url",
                "a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL",
                url.masked(),
            ));
        }
        url.ensure_known_params(PARAMS)?;
        let tls = url.scheme.starts_with("rediss");
        if url.hosts.is_empty() {
            return Err(bad(
                url,
                "url host",
                "at least one host[:port]",
                url.masked(),
            ));
        }
        let (topology, db) = if url.scheme.ends_with("+sentinel") {
            let sentinels = url
                .hosts
                .iter()
                .map(|h| host_port(url, h, 26379))
                .collect::<Result<Vec<_>>>()?;
            let mut path = url.path.splitn(2, '/');
            let service = path.next().unwrap_or_default();
            if service.is_empty() {
                return Err(bad(
                    url,
                    "url service name",
                    "the monitored master's name as the path: redis+sentinel://h1:26379,h2:26379/mymaster/0",
                    url.masked(),
                ));
            }
            let db = database(url, path.next().unwrap_or_default())?;
            let topology = Topology::Sentinel {
                sentinels,
                service: service.to_owned(),
                username: url.param("sentinel_username").map(str::to_owned),
                password: url.param("sentinel_password").map(str::to_owned),
            };
            (topology, db)
        } else if url.scheme.ends_with("+cluster") {
            let nodes = url
                .hosts
                .iter()
                .map(|h| host_port(url, h, 6379))
                .collect::<Result<Vec<_>>>()?;
            if !url.path.is_empty() && url.path != "0" {
                return Err(bad(
                    url,
                    "url database",
                    "no database in a cluster URL (Redis Cluster only has database 0)",
                    url.path.clone(),
                ));
            }
            (Topology::Cluster { nodes }, 0)
        } else {
            if url.hosts.len() > 1 {
                return Err(bad(
                    url,
                    "url host",
                    "one host; list several only with redis+sentinel:// or redis+cluster://",
                    url.hosts.join(","),
                ));
            }
            let (host, port) = host_port(url, &url.hosts[0], 6379)?;
            (
                Topology::Standalone { host, port },
                database(url, &url.path)?,
            )
        };
        let positive = |raw: &str| raw.parse::<usize>().ok().filter(|n| *n > 0);
        let pool_size = url
            .param_with("pool_size", "a positive whole number", positive)?
            .unwrap_or(default_pool_size.max(1));
        let keepalive = duration(url, "keepalive", Duration::from_secs(30))?;
        let reconnect_attempts = url
            .param_parsed::<u32>("reconnect_attempts", "a whole number (0 = forever)")?
            .unwrap_or(0);
        let tls_ca = url.param("tls_ca").map(PathBuf::from);
        let tls_cert = url.param("tls_cert").map(PathBuf::from);
        let tls_key = url.param("tls_key").map(PathBuf::from);
        for (name, set) in [
            ("tls_ca", tls_ca.is_some()),
            ("tls_cert", tls_cert.is_some()),
            ("tls_key", tls_key.is_some()),
        ] {
            if set && !tls {
                return Err(bad(
                    url,
                    &format!("url query parameter `{name}`"),
                    &format!("a rediss:// URL ({name} only applies to TLS)"),
                    url.masked(),
                ));
            }
        }
        if tls_cert.is_some() != tls_key.is_some() {
            return Err(bad(
                url,
                "url query parameters `tls_cert` and `tls_key`",
                "both or neither: a client certificate and its private key",
                url.masked(),
            ));
        }
        Ok(RedisConfig {
            topology,
            tls,
            tls_ca,
            tls_cert,
            tls_key,
            username: url.username.clone(),
            password: url.password.clone(),
            database: db,
            pool_size,
            connect_timeout: duration(url, "connect_timeout", Duration::from_secs(5))?,
            command_timeout: duration(url, "command_timeout", Duration::from_secs(2))?,
            keepalive: (!keepalive.is_zero()).then_some(keepalive),
            reconnect_attempts,
            reconnect_min_delay: duration(url, "reconnect_min_delay", Duration::from_millis(100))?,
            reconnect_max_delay: duration(url, "reconnect_max_delay", Duration::from_secs(5))?,
            label: url.param("label").map(str::to_owned),
            invalidation_channel: match url.param("invalidation_channel") {
                None => Some(larder_core::near::wire::CHANNEL_PREFIX.to_owned()),
                Some("off") => None,
                Some(prefix) => Some(prefix.to_owned()),
            },
        })
    }

    /// Whether the servers form a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.topology, Topology::Cluster { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<RedisConfig> {
        RedisConfig::from_url(&BackendUrl::parse(url).unwrap(), 10)
    }

    #[test]
    fn standalone() {
        let c = parse("redis://app:s3cret@cache.internal:6380/2?pool_size=4&command_timeout=500ms")
            .unwrap();
        assert_eq!(
            c.topology,
            Topology::Standalone {
                host: "cache.internal".into(),
                port: 6380
            }
        );
        assert_eq!(c.username.as_deref(), Some("app"));
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!(c.database, 2);
        assert_eq!(c.pool_size, 4);
        assert_eq!(c.command_timeout, Duration::from_millis(500));
        assert!(!c.tls);
        assert!(!format!("{c:?}").contains("s3cret"));
        let d = parse("rediss://localhost").unwrap();
        assert!(d.tls);
        assert_eq!(d.pool_size, 10);
        assert_eq!(
            d.topology,
            Topology::Standalone {
                host: "localhost".into(),
                port: 6379
            }
        );
    }

    #[test]
    fn sentinel_and_cluster() {
        let s = parse("redis+sentinel://h1:26379,h2/mymaster/3").unwrap();
        match s.topology {
            Topology::Sentinel {
                sentinels, service, ..
            } => {
                assert_eq!(sentinels, vec![("h1".into(), 26379), ("h2".into(), 26379)]);
                assert_eq!(service, "mymaster");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.database, 3);
        let c = parse("redis+cluster://n1:7000,n2:7001").unwrap();
        assert!(c.is_cluster());
    }

    #[test]
    fn topology_display_names_the_addresses_and_no_password() {
        let shown = |url: &str| parse(url).unwrap().topology.to_string();
        assert_eq!(shown("redis://app:pw@127.0.0.1:6380/0"), "127.0.0.1:6380");
        assert_eq!(shown("redis://cache"), "cache:6379");
        assert_eq!(shown("redis://[::1]:6390"), "[::1]:6390");
        assert_eq!(
            shown("redis+sentinel://h1,h2:26380/mymaster/1"),
            "sentinel h1:26379,h2:26380 (service mymaster)"
        );
        assert_eq!(
            shown("rediss+cluster://n1:7000,n2:7001"),
            "cluster n1:7000,n2:7001"
        );
        let c = parse(
            "redis+sentinel://app:Mn7/xq@h1:26379/mymaster?sentinel_username=s&sentinel_password=Kw4%40zr",
        )
        .unwrap();
        assert_eq!(c.password.as_deref(), Some("Mn7/xq"));
        let Topology::Sentinel { password, .. } = &c.topology else {
            panic!("{:?}", c.topology)
        };
        assert_eq!(password.as_deref(), Some("Kw4@zr"));
        for shown in [
            c.topology.to_string(),
            format!("{:?}", c.topology),
            format!("{c:?}"),
        ] {
            for secret in ["Mn7/xq", "Kw4@zr", "Kw4%40zr"] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
    }

    #[test]
    fn bad_urls_are_explained() {
        for (url, needle) in [
            ("redis://h:99999", "port number"),
            ("redis://h/77", "database index"),
            ("redis://h1,h2", "redis+cluster"),
            ("redis+sentinel://h1:26379", "master's name"),
            ("redis+cluster://n1:7000/3", "database 0"),
            ("redis://h?poolsize=3", "pool_size"),
            ("redis://h?command_timeout=fast", "500ms"),
            ("redis://h?tls_ca=/ca.pem", "rediss://"),
        ] {
            let err = parse(url).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }
}
