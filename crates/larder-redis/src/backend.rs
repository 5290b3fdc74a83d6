//! [`RedisBackend`]: the [`Backend`] implementation on fred.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::clients::{Client, Pool};
use fred::interfaces::{ClientLike, ClusterInterface};
use fred::prelude::{Builder, ReconnectPolicy, ServerConfig};
use fred::types::config::{Config, TlsConfig, TlsConnector};
use fred::types::{ClusterHash, CustomCommand, Value};
use larder_core::glob::Glob;
use larder_core::url::BackendUrl;
use larder_core::{
    Backend, BoxFuture, Capabilities, Error, HealthReport, KeyTtl, Result, SetMode, WriteOptions,
};

use crate::config::{RedisConfig, Topology};
use crate::error::{connect_failed, map, on};
use crate::frame::{frame, has_tag, payload, unframe};
use crate::scripts::{Scripts, internal_key};

/// Keys handled per round trip by scans, invalidation and batch deletes.
const BATCH: usize = 500;

/// Commands the backend sends, for an ACL user:
/// `ACL SETUSER <user> on >password ~<prefix>:* resetchannels -@all +<each>`.
/// Scripts run their inner commands under the same user, so those are
/// listed too.
pub const REQUIRED_COMMANDS: &[&str] = &[
    "ping",
    "info",
    "select",
    "get",
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
    "zremrangebyscore",
    "evalsha",
    "script|load",
    "cluster|slots",
    "cluster|shards",
    "cluster|info",
];

/// The Redis backend. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    config: RedisConfig,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn cmd(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn as_bytes(value: Value) -> Option<Bytes> {
    match value {
        Value::Null => None,
        other => other.into_bytes(),
    }
}

/// The `mode` argument of the tagging script.
fn script_mode(mode: SetMode) -> &'static str {
    match mode {
        SetMode::Always => "always",
        SetMode::IfAbsent => "nx",
        SetMode::IfPresent => "xx",
    }
}

/// Escape glob metacharacters for Redis `MATCH`.
fn redis_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn tls_connector(config: &RedisConfig) -> Result<TlsConnector> {
    use fred::rustls::pki_types::CertificateDer;
    use fred::rustls::pki_types::pem::PemObject;
    use fred::rustls::{ClientConfig, RootCertStore};

    let tls_error = |what: String| {
        Error::config(
            "url query parameter `tls_ca`",
            "the redis URL",
            "a readable PEM file of CA certificates",
            what,
        )
    };
    let mut roots = RootCertStore::empty();
    match &config.tls_ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            for cert in fred::rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot parse is skipped, as browsers do.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(fred::rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Unavailable {
            backend: "redis",
            message: format!("TLS setup: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(client))
}

fn fred_config(config: &RedisConfig) -> Result<Config> {
    let server = match &config.topology {
        Topology::Standalone { host, port } => ServerConfig::new_centralized(host.clone(), *port),
        Topology::Cluster { nodes } => ServerConfig::new_clustered(nodes.clone()),
        Topology::Sentinel {
            sentinels,
            service,
            username,
            password,
        } => {
            let mut server = ServerConfig::new_sentinel(sentinels.clone(), service.clone());
            if let ServerConfig::Sentinel {
                username: u,
                password: p,
                ..
            } = &mut server
            {
                *u = username.clone();
                *p = password.clone();
            }
            server
        }
    };
    let tls = if config.tls {
        Some(TlsConfig::from(tls_connector(config)?))
    } else {
        None
    };
    Ok(Config {
        server,
        username: config.username.clone(),
        password: config.password.clone(),
        database: (config.database > 0).then_some(config.database),
        fail_fast: true,
        tls,
        ..Config::default()
    })
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
        let fred = fred_config(&config)?;
        let keepalive = config.keepalive;
        let (connect_timeout, command_timeout) = (config.connect_timeout, config.command_timeout);
        let delay = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        let mut builder = Builder::from_config(fred);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = connect_timeout;
                c.internal_command_timeout = connect_timeout;
                c.max_command_attempts = 2;
                c.tcp.nodelay = Some(true);
                c.tcp.keepalive =
                    keepalive.map(|d| fred::socket2::TcpKeepalive::new().with_time(d));
            })
            .with_performance_config(|p| {
                p.default_command_timeout = command_timeout;
            })
            .set_policy(ReconnectPolicy::new_exponential(
                config.reconnect_attempts,
                delay(config.reconnect_min_delay),
                delay(config.reconnect_max_delay),
                2,
            ));
        let pool = builder
            .build_pool(config.pool_size)
            .map_err(on("connect"))?;
        let connected =
            tokio::time::timeout(connect_timeout + Duration::from_secs(1), pool.init()).await;
        let failure = match connected {
            Ok(Ok(_task)) => None,
            Ok(Err(e)) => Some(connect_failed(&config.topology, &e)),
            Err(_) => Some(Error::Timeout {
                backend: "redis",
                operation: "connect",
                elapsed: connect_timeout,
            }),
        };
        if let Some(error) = failure {
            let _ = pool.quit().await;
            return Err(error);
        }
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                pool,
                config,
                scripts: Scripts::new(),
            }),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    fn cluster(&self) -> bool {
        self.inner.config.is_cluster()
    }

    fn client(&self) -> &Client {
        self.inner.pool.next()
    }

    async fn call<R: fred::types::FromValue>(
        &self,
        operation: &'static str,
        args: Vec<Value>,
    ) -> Result<R> {
        self.client()
            .custom(cmd(operation), args)
            .await
            .map_err(on(operation))
    }

    async fn script<R: fred::types::FromValue>(
        &self,
        operation: &'static str,
        script: &fred::types::scripts::Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<R> {
        script
            .evalsha_with_reload(self.client(), keys, args)
            .await
            .map_err(on(operation))
    }

    /// One command per key, pipelined (the cluster-safe form of a batch).
    async fn pipelined(
        &self,
        operation: &'static str,
        calls: Vec<Vec<Value>>,
    ) -> Result<Vec<Value>> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = self.client().pipeline();
        for args in calls {
            let _: () = pipeline
                .custom(cmd(operation), args)
                .await
                .map_err(on(operation))?;
        }
        pipeline.all().await.map_err(on(operation))
    }

    async fn get_all(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Value> = if self.cluster() {
            let calls = keys.iter().map(|k| vec![Value::from(k.as_str())]).collect();
            self.pipelined("GET", calls).await?
        } else {
            let args = keys.iter().map(|k| Value::from(k.as_str())).collect();
            self.call("MGET", args).await?
        };
        Ok(values.into_iter().map(as_bytes).collect())
    }

    async fn unlink_all(&self, keys: &[String]) -> Result<u64> {
        let mut n = 0;
        for chunk in keys.chunks(BATCH) {
            if self.cluster() {
                let calls = chunk
                    .iter()
                    .map(|k| vec![Value::from(k.as_str())])
                    .collect();
                for v in self.pipelined("UNLINK", calls).await? {
                    n += v.as_u64().unwrap_or(0);
                }
            } else {
                let args = chunk.iter().map(|k| Value::from(k.as_str())).collect();
                n += self.call::<u64>("UNLINK", args).await?;
            }
        }
        Ok(n)
    }

    /// Every key matching the Redis `MATCH` pattern, on every primary.
    async fn scan_match(
        &self,
        pattern: &str,
        mut keep: impl FnMut(&str) -> bool,
        limit: usize,
    ) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let nodes = if self.cluster() {
            let state = self
                .client()
                .cached_cluster_state()
                .ok_or_else(|| Error::Unavailable {
                    backend: "redis",
                    message: "the cluster layout is not known yet".into(),
                })?;
            state.unique_primary_nodes().into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        for node in nodes {
            let mut cursor = "0".to_owned();
            loop {
                let args = vec![
                    Value::from(cursor.as_str()),
                    Value::from("MATCH"),
                    Value::from(pattern),
                    Value::from("COUNT"),
                    Value::from(1000i64),
                ];
                let reply: Value = match &node {
                    Some(server) => self
                        .client()
                        .with_cluster_node(server.clone())
                        .custom(cmd("SCAN"), args)
                        .await
                        .map_err(on("SCAN"))?,
                    None => self.call("SCAN", args).await?,
                };
                let (next, keys) = parse_scan(reply)?;
                for key in keys {
                    if keep(&key) {
                        found.push(key);
                        if found.len() >= limit {
                            return Ok(found);
                        }
                    }
                }
                if next == "0" {
                    break;
                }
                cursor = next;
            }
        }
        Ok(found)
    }

    /// Keys matching a larder glob: Redis narrows by the literal prefix,
    /// the glob decides (so `?` matches a whole character, as everywhere).
    async fn matching(&self, pattern: &str, limit: usize) -> Result<Vec<String>> {
        let glob = Glob::new(pattern)?;
        let coarse = format!("{}*", redis_escape(&glob.literal_prefix()));
        self.scan_match(&coarse, |k| glob.matches(k), limit).await
    }

    async fn set_one(&self, key: &str, value: Bytes, options: &WriteOptions) -> Result<bool> {
        let ttl = options.ttl.map_or(0, ms);
        if options.tags.is_empty() {
            let mut args = vec![Value::from(key), Value::from(value)];
            if ttl > 0 {
                args.extend([Value::from("PX"), Value::from(ttl)]);
            }
            match options.mode {
                SetMode::Always => {}
                SetMode::IfAbsent => args.push(Value::from("NX")),
                SetMode::IfPresent => args.push(Value::from("XX")),
            }
            let reply: Value = self.call("SET", args).await?;
            return Ok(!reply.is_null());
        }
        let framed = frame(&options.tags, &value);
        let mode = script_mode(options.mode);
        let tag_keys: Vec<String> = options.tags.iter().map(|t| internal_key('t', t)).collect();
        if !self.cluster() {
            let mut keys = vec![key.to_owned()];
            keys.extend(tag_keys);
            let args = vec![Value::from(framed), Value::from(ttl), Value::from(mode)];
            let written: i64 = self
                .script("set", &self.inner.scripts.set_tagged, keys, args)
                .await?;
            return Ok(written == 1);
        }
        // Cluster: the tag sets live on other slots. Index first, then the
        // value: a failure leaves a tag member without a value (harmless:
        // invalidation checks the value's own tag list), never a tagged
        // value missing from its index.
        for tag_key in tag_keys {
            let _: i64 = self
                .script(
                    "set",
                    &self.inner.scripts.tag_add,
                    vec![tag_key],
                    vec![Value::from(key), Value::from(ttl)],
                )
                .await?;
        }
        let untagged = WriteOptions {
            tags: Vec::new(),
            ..options.clone()
        };
        Box::pin(self.set_one(key, framed, &untagged)).await
    }

    /// Tagged writes of many keys: the tagging script, pipelined.
    async fn set_many_tagged(
        &self,
        entries: &[(String, Bytes)],
        options: &WriteOptions,
    ) -> Result<()> {
        let Some(((first_key, first_value), rest)) = entries.split_first() else {
            return Ok(());
        };
        // The first write loads the script if the server lacks it.
        self.set_one(first_key, first_value.clone(), options)
            .await?;
        let ttl = options.ttl.map_or(0, ms);
        let mode = script_mode(options.mode);
        let tag_keys: Vec<String> = options.tags.iter().map(|t| internal_key('t', t)).collect();
        let sha = self.inner.scripts.set_tagged.sha1().clone();
        for chunk in rest.chunks(BATCH) {
            let pipeline = self.client().pipeline();
            for (key, value) in chunk {
                let mut args = vec![
                    Value::from(sha.clone()),
                    Value::from(1 + tag_keys.len() as i64),
                    Value::from(key.as_str()),
                ];
                args.extend(tag_keys.iter().map(|t| Value::from(t.as_str())));
                args.extend([
                    Value::from(frame(&options.tags, value)),
                    Value::from(ttl),
                    Value::from(mode),
                ]);
                let _: () = pipeline
                    .custom(
                        CustomCommand::new_static("EVALSHA", ClusterHash::Offset(2), false),
                        args,
                    )
                    .await
                    .map_err(on("set"))?;
            }
            let _: Vec<Value> = pipeline.all().await.map_err(on("set"))?;
        }
        Ok(())
    }

    /// The members of a tag set (ranks 0 to `stop`, -1 for all), and those
    /// of them whose stored value still carries the tag.
    async fn members(&self, tag: &str, stop: i64) -> Result<(Vec<String>, Vec<String>)> {
        let tag_key = internal_key('t', tag);
        let members: Vec<String> = self
            .call(
                "ZRANGE",
                vec![
                    Value::from(tag_key.as_str()),
                    Value::from(0i64),
                    Value::from(stop),
                ],
            )
            .await?;
        let values = self.get_all(&members).await?;
        let live = members
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.as_deref().is_some_and(|v| has_tag(v, tag)))
            .map(|(m, _)| m.clone())
            .collect();
        Ok((members, live))
    }

    async fn invalidate_tag(&self, tag: &str) -> Result<u64> {
        let tag_key = internal_key('t', tag);
        let mut deleted = 0;
        loop {
            if !self.cluster() {
                let (n, left): (u64, u64) = self
                    .script(
                        "invalidate_tags",
                        &self.inner.scripts.invalidate,
                        vec![tag_key.clone()],
                        vec![Value::from(tag), Value::from(BATCH as i64)],
                    )
                    .await?;
                deleted += n;
                if left == 0 {
                    return Ok(deleted);
                }
                continue;
            }
            let (members, doomed) = self.members(tag, BATCH as i64 - 1).await?;
            if members.is_empty() {
                return Ok(deleted);
            }
            deleted += self.unlink_all(&doomed).await?;
            let mut args = vec![Value::from(tag_key.as_str())];
            args.extend(members.iter().map(|m| Value::from(m.as_str())));
            let _: i64 = self.call("ZREM", args).await?;
        }
    }
}

fn parse_scan(reply: Value) -> Result<(String, Vec<String>)> {
    let bad = || Error::Backend {
        backend: "redis",
        message: "SCAN returned an unexpected reply".into(),
    };
    let Value::Array(mut parts) = reply else {
        return Err(bad());
    };
    if parts.len() != 2 {
        return Err(bad());
    }
    let keys = parts.pop().ok_or_else(bad)?;
    let cursor = parts.pop().and_then(Value::into_string).ok_or_else(bad)?;
    let keys = match keys {
        Value::Array(items) => items.into_iter().filter_map(Value::into_string).collect(),
        _ => return Err(bad()),
    };
    Ok((cursor, keys))
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::full();
        caps.shared = true;
        caps.persistent = true;
        caps.max_value_size = Some(512 * 1024 * 1024);
        caps
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move {
            let value: Option<Bytes> = self.call("GET", vec![Value::from(key)]).await?;
            Ok(value.map(payload))
        })
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        Box::pin(async move {
            Ok(self
                .get_all(keys)
                .await?
                .into_iter()
                .map(|v| v.map(payload))
                .collect())
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.set_one(key, value, options))
    }

    fn set_many<'a>(
        &'a self,
        entries: &'a [(String, Bytes)],
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if !options.tags.is_empty() && !self.cluster() {
                return self.set_many_tagged(entries, options).await;
            }
            if !options.tags.is_empty() || options.mode != SetMode::Always {
                for (key, value) in entries {
                    self.set_one(key, value.clone(), options).await?;
                }
                return Ok(());
            }
            let ttl = options.ttl.map_or(0, ms);
            for chunk in entries.chunks(BATCH) {
                let calls = chunk
                    .iter()
                    .map(|(k, v)| {
                        let mut args = vec![Value::from(k.as_str()), Value::from(v.clone())];
                        if ttl > 0 {
                            args.extend([Value::from("PX"), Value::from(ttl)]);
                        }
                        args
                    })
                    .collect();
                self.pipelined("SET", calls).await?;
            }
            Ok(())
        })
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(0);
            }
            if self.cluster() {
                // Tag sets are on other slots: they keep the member until it
                // is trimmed or invalidated; invalidation checks the value,
                // so a deleted key is never mistaken for a member.
                return self.unlink_all(keys).await;
            }
            let mut n = 0;
            for chunk in keys.chunks(BATCH) {
                n += self
                    .script::<u64>(
                        "delete",
                        &self.inner.scripts.delete,
                        chunk.to_vec(),
                        Vec::<Value>::new(),
                    )
                    .await?;
            }
            Ok(n)
        })
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.call::<i64>("EXISTS", vec![Value::from(key)]).await? > 0) })
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let ttl = ms(ttl);
            if !self.cluster() {
                let done: i64 = self
                    .script(
                        "expire",
                        &self.inner.scripts.expire,
                        vec![key.to_owned()],
                        vec![Value::from(ttl)],
                    )
                    .await?;
                return Ok(done == 1);
            }
            let value: Option<Bytes> = self.call("GET", vec![Value::from(key)]).await?;
            let done: i64 = self
                .call("PEXPIRE", vec![Value::from(key), Value::from(ttl)])
                .await?;
            if done == 0 {
                return Ok(false);
            }
            let (_, tags) = value.map(unframe).unwrap_or_default();
            for tag in tags {
                let _: i64 = self
                    .script(
                        "expire",
                        &self.inner.scripts.tag_add,
                        vec![internal_key('t', &tag)],
                        vec![Value::from(key), Value::from(ttl)],
                    )
                    .await?;
            }
            Ok(true)
        })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        Box::pin(async move {
            let ms: i64 = self.call("PTTL", vec![Value::from(key)]).await?;
            Ok(match ms {
                -2 => KeyTtl::Missing,
                -1 => KeyTtl::Persistent,
                n => KeyTtl::Expires(Duration::from_millis(u64::try_from(n).unwrap_or(0))),
            })
        })
    }

    fn incr<'a>(&'a self, key: &'a str, delta: i64) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            self.client()
                .custom(cmd("INCRBY"), vec![Value::from(key), Value::from(delta)])
                .await
                .map_err(|e| {
                    if e.details().contains("not an integer") {
                        Error::NotAnInteger {
                            key: key.to_owned(),
                        }
                    } else {
                        map("incr", &e)
                    }
                })
        })
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut n = 0;
            for tag in tags {
                n += self.invalidate_tag(tag).await?;
            }
            Ok(n)
        })
    }

    fn tag_members<'a>(&'a self, tag: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let (_, mut live) = self.members(tag, -1).await?;
            live.sort_unstable();
            live.truncate(limit);
            Ok(live)
        })
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let keys = self.matching(pattern, usize::MAX).await?;
            self.unlink_all(&keys).await
        })
    }

    fn scan<'a>(&'a self, pattern: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let mut keys = self.matching(pattern, limit).await?;
            keys.sort_unstable();
            Ok(keys)
        })
    }

    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let values = self
                .scan_match(&format!("{}*", redis_escape(prefix)), |_| true, usize::MAX)
                .await?;
            let n = self.unlink_all(&values).await?;
            let head = prefix.strip_suffix(':').unwrap_or(prefix);
            let internal = self
                .scan_match(&format!("{}#*", redis_escape(head)), |_| true, usize::MAX)
                .await?;
            self.unlink_all(&internal).await?;
            Ok(n)
        })
    }

    fn lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let lock_key = internal_key('l', key);
            let reply: Value = self
                .call(
                    "SET",
                    vec![
                        Value::from(lock_key.as_str()),
                        Value::from(token),
                        Value::from("NX"),
                        Value::from("PX"),
                        Value::from(ms(ttl)),
                    ],
                )
                .await?;
            Ok(!reply.is_null())
        })
    }

    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let released: i64 = self
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

    fn health(&self) -> BoxFuture<'_, Result<HealthReport>> {
        Box::pin(async move {
            let started = Instant::now();
            let _: String = self.call("PING", Vec::<Value>::new()).await?;
            let latency = started.elapsed();
            let pool = &self.inner.pool;
            let connected = pool.clients().iter().filter(|c| c.is_connected()).count();
            let config = &self.inner.config;
            let mode = match config.topology {
                Topology::Standalone { .. } => "standalone",
                Topology::Sentinel { .. } => "sentinel",
                Topology::Cluster { .. } => "cluster",
            };
            let mut details = vec![
                ("mode".to_owned(), mode.to_owned()),
                ("tls".to_owned(), config.tls.to_string()),
                ("pool_size".to_owned(), config.pool_size.to_string()),
                ("pool_connected".to_owned(), connected.to_string()),
                ("round_trip_us".to_owned(), latency.as_micros().to_string()),
            ];
            if let Some(version) = self.client().server_version() {
                details.push(("server_version".to_owned(), version.to_string()));
            }
            Ok(HealthReport {
                backend: "redis",
                healthy: true,
                latency,
                details,
            })
        })
    }
}
