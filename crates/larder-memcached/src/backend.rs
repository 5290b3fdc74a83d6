//! [`MemcachedBackend`]: the synchronous memcache client run through core's
//! blocking adapter. Each operation delegates to the module of its concern:
//! `connection.rs` (servers, pools, failures), `tags.rs` (reads, writes,
//! versions), `batch.rs`, `counter.rs`, `lock.rs`, `scan.rs` (`clear`, and
//! why patterns are unsupported) and `fill.rs` (the fill guard).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use larder_core::url::BackendUrl;
use larder_core::{
    Backend, Blocking, BlockingBackend, BoxFuture, Capabilities, Count, Entry, Error, Expiry,
    FillGuard, FillStore, FillToken, HealthReport, KeyTtl, Result, WriteOptions,
};

use crate::config::MemcachedConfig;
use crate::connection::Cluster;
use crate::error::BACKEND;
use crate::fill::Fills;
use crate::tags::Live;
use crate::{batch, counter, fill, lock, scan, tags};

/// Bytes of each item kept free of the caller's value: memcached's item
/// header, the longest key and the version header larder adds.
const VALUE_RESERVE: usize = 512;

/// The blocking implementation behind [`MemcachedBackend`].
pub(crate) struct Memcached {
    cluster: Cluster,
    fills: Fills,
    label: String,
}

impl std::fmt::Debug for Memcached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memcached")
            .field("label", &self.label)
            .field("config", &self.cluster.config)
            .finish_non_exhaustive()
    }
}

/// `memcached@h1:11211,h2:11211`, or `memcached@<label>`.
fn label(config: &MemcachedConfig) -> String {
    match &config.label {
        Some(label) => format!("{BACKEND}@{label}"),
        None => format!("{BACKEND}@{}", config.addresses()),
    }
}

impl Memcached {
    /// The live entry under `key`.
    fn read(&self, key: &str, operation: &'static str) -> Result<Option<Live>> {
        let mut conn = self.cluster.server_of(key).conn(operation)?;
        Ok(tags::read_one(&mut conn, key)?.live)
    }

    /// The live entry under `key`, its expiry renewed to `exptime`.
    fn read_and_touch(
        &self,
        key: &str,
        exptime: u32,
        operation: &'static str,
    ) -> Result<Option<(Live, bool)>> {
        let mut conn = self.cluster.server_of(key).conn(operation)?;
        let Some(live) = tags::read_one(&mut conn, key)?.live else {
            return Ok(None);
        };
        let touched = conn.touch(key, exptime)?;
        Ok(Some((live, touched)))
    }
}

impl BlockingBackend for Memcached {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::none();
        caps.tags = true;
        caps.locks = true;
        caps.touch = true;
        caps.fill_guard = FillGuard::Atomic;
        caps.shared = true;
        caps.ttl_resolution = Duration::from_secs(1);
        caps.max_key_len = Some(crate::item::MAX_KEY_LEN);
        caps.forbidden_key_chars = " ";
        caps.max_value_size = Some(self.cluster.item_size_max().saturating_sub(VALUE_RESERVE));
        caps
    }

    fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.read(key, "get")?.map(|live| live.bytes()))
    }

    fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        Ok(self.read(key, "get_entry")?.map(|live| match live {
            Live::Value { payload, tags } => Entry::new(payload, Expiry::Unknown, tags),
            Live::Counter(digits) => Entry::new(digits, Expiry::Unknown, Vec::new()),
        }))
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        batch::get_many(&self.cluster, keys)
    }

    fn get_and_touch(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        let exptime = tags::exptime(Some(ttl))?;
        Ok(self
            .read_and_touch(key, exptime, "get_and_touch")?
            .map(|(live, _)| live.bytes()))
    }

    fn set(&self, key: &str, value: Bytes, options: &WriteOptions) -> Result<bool> {
        tags::set(&self.cluster, key, value, options)
    }

    fn set_many(&self, entries: &[(String, Bytes)], options: &WriteOptions) -> Result<u64> {
        batch::set_many(&self.cluster, entries, options)
    }

    fn delete(&self, keys: &[String]) -> Result<u64> {
        batch::delete(&self.cluster, keys)
    }

    fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.read(key, "exists")?.is_some())
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let exptime = tags::exptime(Some(ttl))?;
        Ok(self
            .read_and_touch(key, exptime, "expire")?
            .is_some_and(|(_, touched)| touched))
    }

    /// Memcached cannot tell how long an item has left.
    fn ttl(&self, _key: &str) -> Result<KeyTtl> {
        Err(self.unsupported("ttl"))
    }

    fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        counter::incr(&self.cluster, key, delta, ttl)
    }

    fn invalidate_tags(&self, tags: &[String]) -> Result<Count> {
        tags::invalidate_tags(&self.cluster, tags)
    }

    fn delete_matching(&self, _pattern: &str) -> Result<Count> {
        Err(scan::unsupported("delete_matching"))
    }

    fn scan(&self, _pattern: &str, _limit: usize) -> Result<Vec<String>> {
        Err(scan::unsupported("scan"))
    }

    fn clear(&self, prefix: &str) -> Result<Count> {
        scan::clear(&self.cluster, prefix)
    }

    fn lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        lock::lock(&self.cluster, key, token, ttl)
    }

    fn unlock(&self, key: &str, token: &str) -> Result<bool> {
        lock::unlock(&self.cluster, key, token)
    }

    fn begin_fill(&self, key: &str) -> Result<(Option<Bytes>, FillToken)> {
        fill::begin_fill(&self.cluster, &self.fills, key)
    }

    fn set_filled(
        &self,
        key: &str,
        value: Bytes,
        options: &WriteOptions,
        token: FillToken,
    ) -> Result<FillStore> {
        fill::set_filled(&self.cluster, &self.fills, key, value, options, token)
    }

    fn health(&self) -> Result<HealthReport> {
        let started = Instant::now();
        /// Server counters summed over the servers, for `larder stats` and
        /// `larder monitor`.
        const FIGURES: &[&str] = &[
            "get_hits",
            "get_misses",
            "cmd_get",
            "cmd_set",
            "curr_items",
            "bytes",
            "evictions",
            "curr_connections",
        ];
        /// `stats` over the text protocol on a short-lived connection (the
        /// pooled client speaks the binary protocol); `None` when the
        /// server does not answer it.
        fn counters(address: &str, timeout: Duration) -> Option<Vec<(usize, u64)>> {
            use std::io::{Read, Write};
            use std::net::ToSocketAddrs;
            let addr = address.to_socket_addrs().ok()?.next()?;
            let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
            stream.set_read_timeout(Some(timeout)).ok()?;
            stream.set_write_timeout(Some(timeout)).ok()?;
            stream.write_all(b"stats\r\nquit\r\n").ok()?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply).ok()?;
            let found = reply
                .lines()
                .filter_map(|line| {
                    let mut parts = line.strip_prefix("STAT ")?.split_whitespace();
                    let name = parts.next()?;
                    let index = FIGURES.iter().position(|f| *f == name)?;
                    Some((index, parts.next()?.parse().ok()?))
                })
                .collect();
            Some(found)
        }
        let mut details = Vec::new();
        let mut failures = Vec::new();
        let mut sums: [Option<u64>; FIGURES.len()] = [None; FIGURES.len()];
        for server in &self.cluster.servers {
            let probe = Instant::now();
            let answer = server.conn("health").and_then(|mut conn| conn.version());
            match answer {
                Ok(version) => {
                    details.push((
                        server.address.clone(),
                        format!(
                            "up, memcached {version}, {} us",
                            probe.elapsed().as_micros()
                        ),
                    ));
                    let timeout = self.cluster.config.timeout;
                    for (index, value) in counters(&server.address, timeout).unwrap_or_default() {
                        let sum = &mut sums[index];
                        *sum = Some(sum.unwrap_or(0) + value);
                    }
                }
                Err(e) => {
                    details.push((server.address.clone(), format!("down: {e}")));
                    failures.push(server.address.clone());
                }
            }
        }
        let latency = started.elapsed();
        let servers = self.cluster.servers.len();
        let mut report = HealthReport::healthy(BACKEND, self.label.clone(), latency);
        if !failures.is_empty() {
            let why = format!(
                "{} of {servers} servers unreachable ({}): their keys read as misses",
                failures.len(),
                failures.join(", ")
            );
            // Keys on the other servers are still served.
            report = if failures.len() < servers {
                report.degrade(why)
            } else {
                report.fail(why)
            };
        }
        report = report
            .detail("servers", servers)
            .detail("item_size_max", self.cluster.item_size_max())
            .detail("pool", self.cluster.config.pool);
        for (name, state) in details {
            report = report.detail(name, state);
        }
        for (name, sum) in FIGURES.iter().zip(sums) {
            if let Some(sum) = sum {
                report = report.detail(*name, sum);
            }
        }
        Ok(report)
    }

    fn close(&self) -> Result<()> {
        self.cluster.close();
        Ok(())
    }
}

/// The Memcached backend: several servers on a consistent-hash ring, tags
/// by versions, the synchronous memcache client (binary protocol) run on
/// tokio's blocking pool. Cheap to clone; clones share the connections,
/// which [`Backend::close`] releases once the last clone closes.
///
/// ```no_run
/// # async fn demo() -> larder_core::Result<()> {
/// use larder_memcached::MemcachedBackend;
/// let backend = MemcachedBackend::open("memcached://10.0.0.1:11211*3,10.0.0.2:11211?timeout=500ms").await?;
/// let cache = larder_core::Cache::builder().backend(backend).prefix("svc").build()?;
/// # let _ = cache; Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemcachedBackend {
    inner: Arc<Blocking<Memcached>>,
}

impl std::fmt::Debug for MemcachedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcachedBackend")
            .field("label", &self.inner.inner().label)
            .field("config", &self.inner.inner().cluster.config)
            .finish_non_exhaustive()
    }
}

impl MemcachedBackend {
    /// Connect to the servers a `memcached://` URL names (see
    /// [`MemcachedConfig`] for the form and options).
    pub async fn open(url: &str) -> Result<Self> {
        let parsed = BackendUrl::parse(url)?;
        Self::connect(MemcachedConfig::from_url(&parsed)?).await
    }

    /// Connect with `config`, on tokio's blocking pool when called inside a
    /// runtime. Fails when the settings are invalid or no server answers;
    /// servers that do not answer yet are tried again later (see
    /// [`MemcachedConfig::retry_delay`]).
    pub async fn connect(config: MemcachedConfig) -> Result<Self> {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime
                .spawn_blocking(move || Self::connect_blocking(config))
                .await
                .map_err(|_| Error::Unavailable {
                    backend: BACKEND,
                    message: "connect was cancelled: the runtime is shutting down".into(),
                })?,
            Err(_) => Self::connect_blocking(config),
        }
    }

    /// [`MemcachedBackend::connect`], blocking the calling thread (for
    /// callers outside an async runtime).
    pub fn connect_blocking(config: MemcachedConfig) -> Result<Self> {
        let label = label(&config);
        let max_concurrency = config.pool.saturating_mul(config.servers.len()).max(1);
        let cluster = Cluster::open(config)?;
        let backend = Memcached {
            cluster,
            fills: Fills::default(),
            label,
        };
        Ok(MemcachedBackend {
            inner: Arc::new(Blocking::new(backend).max_concurrency(max_concurrency)),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &MemcachedConfig {
        &self.inner.inner().cluster.config
    }

    /// The server (`host:port`) a stored key lives on: where the ring
    /// places it. For diagnostics and tests.
    pub fn server_of(&self, stored_key: &str) -> &str {
        &self.inner.inner().cluster.server_of(stored_key).address
    }
}

impl Backend for MemcachedBackend {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    /// Release the connections, once no other clone of this backend is
    /// left (clones share them, and a `Cache` closes its backend when it is
    /// dropped): until then, nothing. Memcached has nothing to flush.
    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if Arc::strong_count(&self.inner) > 1 {
                return Ok(());
            }
            self.inner.close().await
        })
    }

    /// Each server keeps what it missed while unreachable (tag and
    /// namespace invalidations, deletes, replacing writes) and has it
    /// replayed before anything else reaches it again; a server found down
    /// is left alone (failing at once) for `retry_delay`. That is the
    /// resilience layer's job done per server, so that one server's outage
    /// never stops the others: a `Cache` does not wrap this backend again.
    fn journals_invalidations(&self) -> bool {
        true
    }

    larder_core::forward_backend!(inner);
}
