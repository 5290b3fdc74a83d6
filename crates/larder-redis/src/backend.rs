//! [`RedisBackend`]: the [`Backend`] implementation on fred. Each operation
//! delegates to the module of its concern: `connection.rs` (pool, commands,
//! errors), `tags.rs` (writes, deletes, the tag index), `batch.rs`,
//! `scan.rs` (patterns, `clear`) and `fill.rs` (the fill guard).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::interfaces::ClientLike;
use fred::types::Value;
use larder_core::url::BackendUrl;
use larder_core::{
    Backend, BoxFuture, Capabilities, Count, Entry, Error, Expiry, FillGuard, FillStore, FillToken,
    HealthReport, Invalidation, InvalidationStream, KeyTtl, Result, WriteOptions, frame,
};

use crate::config::{RedisConfig, Topology};
use crate::connection::{Connection, ms};
use crate::scripts::internal_key;
use crate::tags::ttl_ms;

const KIND: &str = "redis";

/// Commands the backend sends, for an ACL user:
/// `ACL SETUSER <user> on >password ~<prefix>:* resetchannels -@all +<each>`.
/// Scripts run their inner commands under the same user, so those are
/// listed too.
pub const REQUIRED_COMMANDS: &[&str] = &[
    "ping",
    "info",
    "select",
    "get",
    "getrange",
    "set",
    "mget",
    "del",
    "unlink",
    "exists",
    "pexpire",
    "pexpireat",
    "persist",
    "pttl",
    "incrby",
    "scan",
    "time",
    "zadd",
    "zrem",
    "zrange",
    "zcard",
    "zscore",
    "zremrangebyscore",
    "evalsha",
    "script|load",
    "publish",
    "psubscribe",
    "punsubscribe",
    "cluster|slots",
    "cluster|shards",
    "cluster|info",
];

/// The Redis backend. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Connection>,
    label: Arc<str>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("label", &self.label)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// `redis@host:port`, `redis+sentinel@service`, `redis+cluster@first-node`,
/// or `redis@<label>` when the URL names one.
fn label(config: &RedisConfig) -> String {
    if let Some(label) = &config.label {
        return format!("{KIND}@{label}");
    }
    match &config.topology {
        Topology::Standalone { host, port } => format!("{KIND}@{host}:{port}"),
        Topology::Sentinel { service, .. } => format!("{KIND}+sentinel@{service}"),
        Topology::Cluster { nodes } => match nodes.first() {
            Some((host, port)) => format!("{KIND}+cluster@{host}:{port}"),
            None => format!("{KIND}+cluster"),
        },
    }
}

impl RedisBackend {
    /// Connect to the servers a URL names (see [`RedisConfig`] for the
    /// forms); `default_pool_size` applies when the URL has no `pool_size`.
    pub async fn open(url: &str, default_pool_size: usize) -> Result<Self> {
        let parsed = BackendUrl::parse(url)?;
        Self::connect(RedisConfig::from_url(&parsed, default_pool_size)?).await
    }

    /// Connect with `config`. Fails when no server answers within the
    /// connect timeout, or when the server refuses the credentials.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let label = label(&config).into();
        let connection = Connection::open(config).await?;
        Ok(RedisBackend {
            inner: Arc::new(connection),
            label,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }
}

impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn capabilities(&self) -> Capabilities {
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
        caps.fill_guard = if self.inner.cluster() {
            FillGuard::Windowed
        } else {
            FillGuard::Atomic
        };
        caps.shared = true;
        caps.persistent = true;
        caps.invalidation_stream = self.inner.invalidations.enabled();
        caps.ttl_resolution = Duration::from_millis(1);
        caps.max_value_size = Some(512 * 1024 * 1024);
        caps
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move {
            let value: Option<Bytes> = self.inner.call("GET", vec![Value::from(key)]).await?;
            Ok(value.map(frame::payload))
        })
    }

    fn get_entry<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>>> {
        Box::pin(async move {
            let (value, pttl): (Option<Bytes>, i64) = self
                .inner
                .script(
                    "get_entry",
                    &self.inner.scripts.get_entry,
                    vec![key.to_owned()],
                    Vec::new(),
                )
                .await?;
            let Some(value) = value else {
                return Ok(None);
            };
            let (payload, tags) = frame::decode(value);
            let expiry = match u64::try_from(pttl) {
                Ok(left) => Expiry::After(Duration::from_millis(left)),
                Err(_) => Expiry::Never,
            };
            Ok(Some(Entry::new(payload, expiry, tags)))
        })
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        Box::pin(async move {
            Ok(self
                .inner
                .get_all(keys)
                .await?
                .into_iter()
                .map(|v| v.map(frame::payload))
                .collect())
        })
    }

    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(self.inner.get_touch(key, ttl))
    }

    fn get_delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move {
            let found = self.inner.get_delete(key).await;
            self.inner.publish_keys(&[key]).await;
            found
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let written = self.inner.write(key, value, options, None).await;
            self.inner.publish_keys(&[key]).await;
            Ok(written? == crate::tags::Written::Stored)
        })
    }

    fn set_many<'a>(
        &'a self,
        entries: &'a [(String, Bytes)],
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let written = self.inner.write_many(entries, options).await;
            let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
            self.inner.publish_keys(&keys).await;
            written
        })
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let n = self.inner.delete_keys(keys).await;
            let stored: Vec<&str> = keys.iter().map(String::as_str).collect();
            self.inner.publish_keys(&stored).await;
            n
        })
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            Ok(self
                .inner
                .call::<i64>("EXISTS", vec![Value::from(key)])
                .await?
                > 0)
        })
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let done = self.inner.expire_key(key, ttl).await;
            self.inner.publish_keys(&[key]).await;
            done
        })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        Box::pin(async move {
            let ms: i64 = self.inner.call("PTTL", vec![Value::from(key)]).await?;
            Ok(match ms {
                -2 => KeyTtl::Missing,
                -1 => KeyTtl::Persistent,
                n => KeyTtl::Expires(Duration::from_millis(u64::try_from(n).unwrap_or(0))),
            })
        })
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            let ttl = ttl_ms(ttl)?;
            let counted = self
                .inner
                .script(
                    "incr",
                    &self.inner.scripts.incr,
                    vec![key.to_owned()],
                    vec![Value::from(delta), Value::from(ttl)],
                )
                .await
                .map_err(|e| match e {
                    Error::Backend { message, .. } if message.contains("not an integer") => {
                        Error::NotAnInteger {
                            key: key.to_owned(),
                        }
                    }
                    Error::Backend { message, .. } if message.contains("overflow") => {
                        Error::Backend {
                            backend: KIND,
                            message: format!(
                                "incr of {key:?} by {delta} overflows a 64-bit integer"
                            ),
                        }
                    }
                    other => other,
                });
            self.inner.publish_keys(&[key]).await;
            counted
        })
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<Count>> {
        Box::pin(async move {
            let mut n = 0;
            let mut failed = None;
            for tag in tags {
                match self.inner.invalidate_tag(tag).await {
                    Ok(k) => n += k,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if self.inner.invalidations.enabled() {
                self.inner.publish(Invalidation::Tags(tags.to_vec())).await;
            }
            match failed {
                Some(e) => Err(e),
                None => Ok(Count::Exact(n)),
            }
        })
    }

    fn tag_members<'a>(&'a self, tag: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let mut live = self.inner.tag_members(tag, limit).await?;
            live.sort_unstable();
            Ok(live)
        })
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<Count>> {
        Box::pin(async move {
            let n = self.inner.delete_matching(pattern).await;
            if self.inner.invalidations.enabled() {
                self.inner
                    .publish(Invalidation::Pattern(pattern.to_owned()))
                    .await;
            }
            n
        })
    }

    fn scan<'a>(&'a self, pattern: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let mut keys = self.inner.matching(pattern, limit).await?;
            keys.sort_unstable();
            Ok(keys)
        })
    }

    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Count>> {
        Box::pin(async move {
            let n = self.inner.clear(prefix).await;
            if self.inner.invalidations.enabled() {
                self.inner
                    .publish(Invalidation::Flush {
                        prefix: prefix.to_owned(),
                    })
                    .await;
            }
            n
        })
    }

    fn lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let ttl = ms(Error::check_ttl(ttl)?);
            let lock_key = internal_key('l', key);
            let reply: Value = self
                .inner
                .call(
                    "SET",
                    vec![
                        Value::from(lock_key.as_str()),
                        Value::from(token),
                        Value::from("NX"),
                        Value::from("PX"),
                        Value::from(ttl),
                    ],
                )
                .await?;
            Ok(!reply.is_null())
        })
    }

    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let released: i64 = self
                .inner
                .script(
                    "unlock",
                    &self.inner.scripts.unlock,
                    vec![internal_key('l', key)],
                    vec![Value::from(token)],
                )
                .await?;
            Ok(released == 1)
        })
    }

    fn begin_fill<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(Option<Bytes>, FillToken)>> {
        Box::pin(self.inner.begin_fill(key))
    }

    fn set_filled<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
        token: FillToken,
    ) -> BoxFuture<'a, Result<FillStore>> {
        Box::pin(async move {
            let stored = self.inner.set_filled(key, value, options, token).await;
            if matches!(stored, Ok(FillStore::Stored)) {
                self.inner.publish_keys(&[key]).await;
            }
            stored
        })
    }

    fn invalidations(&self) -> Option<InvalidationStream> {
        crate::invalidation::stream(&self.inner)
    }

    fn health(&self) -> BoxFuture<'_, Result<HealthReport>> {
        Box::pin(async move {
            let started = Instant::now();
            let _: String = self.inner.call("PING", Vec::new()).await?;
            let latency = started.elapsed();
            let pool = &self.inner.pool;
            let connected = pool.clients().iter().filter(|c| c.is_connected()).count();
            let config = &self.inner.config;
            let mode = match config.topology {
                Topology::Standalone { .. } => "standalone",
                Topology::Sentinel { .. } => "sentinel",
                Topology::Cluster { .. } => "cluster",
            };
            let mut report = HealthReport::healthy(KIND, self.label.to_string(), latency)
                .detail("mode", mode)
                .detail("servers", &config.topology)
                .detail("tls", config.tls)
                .detail("pool_size", config.pool_size)
                .detail("pool_connected", connected)
                .detail("round_trip_us", latency.as_micros());
            if let Some(version) = self.inner.client().server_version() {
                report = report.detail("server_version", version);
            }
            // Server counters for `larder stats` and `larder monitor`. On a
            // cluster INFO speaks for one node, so it is left out there; a
            // user whose ACL forbids INFO gets the report without them.
            if !matches!(config.topology, Topology::Cluster { .. })
                && let Ok(info) = self.inner.call::<String>("INFO", Vec::new()).await
            {
                const FIGURES: &[&str] = &[
                    "keyspace_hits",
                    "keyspace_misses",
                    "total_commands_processed",
                    "instantaneous_ops_per_sec",
                    "used_memory",
                    "connected_clients",
                    "evicted_keys",
                    "expired_keys",
                ];
                let mut keys: u64 = 0;
                for line in info.lines() {
                    let Some((name, value)) = line.trim_end().split_once(':') else {
                        continue;
                    };
                    if FIGURES.contains(&name) {
                        report = report.detail(name, value);
                    } else if name.starts_with("db") {
                        // `db0:keys=5,expires=2,avg_ttl=0`
                        keys += value
                            .split(',')
                            .find_map(|kv| kv.strip_prefix("keys="))
                            .and_then(|n| n.parse::<u64>().ok())
                            .unwrap_or(0);
                    }
                }
                report = report.detail("keys", keys);
            }
            Ok(report)
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.inner
                .pool
                .quit()
                .await
                .map_err(|e| crate::error::map("close", &e))
        })
    }
}
