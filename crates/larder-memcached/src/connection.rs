//! Connections: one small pool per server, sending commands, measuring
//! them, and what happens when a server goes away.
//!
//! Each connection is a `memcache::Client` over an r2d2 pool of exactly one
//! connection. A connection that fails mid-command (a timeout, a reset, a
//! reply it could not parse) is closed, never reused: bytes still in
//! flight could otherwise be read as the next command's reply. (The
//! memcache crate's own pool hands such connections out again.)
//!
//! Before opening a connection the server is probed with a plain TCP
//! connect, bounded by `connect_timeout`, and asked for `stats settings`
//! (ASCII) to learn its item size. When the probe fails the server is left
//! alone for `retry_delay` (doubling with each failure, up to
//! `retry_max_delay`): calls for its keys fail at once with
//! [`Error::Unavailable`] instead of each waiting out a connect timeout.
//! The next call after that delay tries again, so a server that comes back
//! rejoins by itself.
//!
//! Tag and namespace invalidations that could not reach a server are kept
//! and replayed on it, before anything else, once it answers again (see
//! [`Missed`]).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use larder_core::sync::lock;
use larder_core::{Error, Result};
use memcache::{Client, CommandError, ConnectionManager, MemcacheError, ToMemcacheValue};
use scheduled_thread_pool::ScheduledThreadPool;

use crate::config::MemcachedConfig;
use crate::error::{self, BACKEND};
use crate::item;
use crate::ring::Ring;

/// An item as read: its bytes, flags and CAS id.
pub(crate) type Raw = (Vec<u8>, u32, Option<u64>);

/// The item size memcached uses unless started with `-I`.
pub(crate) const DEFAULT_ITEM_SIZE_MAX: usize = 1024 * 1024;

/// Bytes of an item memcached spends on its header (measured on 1.6: 70
/// with the CAS id), with a margin.
pub(crate) const ITEM_OVERHEAD: usize = 96;

/// Most invalidations kept per server while it cannot be reached.
const MAX_MISSED: usize = 100_000;

/// Bytes written to memcached with the given flags.
struct Flagged<'a> {
    bytes: &'a [u8],
    flags: u32,
}

impl ToMemcacheValue<memcache::Stream> for Flagged<'_> {
    fn get_flags(&self) -> u32 {
        self.flags
    }

    fn get_length(&self) -> usize {
        self.bytes.len()
    }

    fn write_to(&self, stream: &mut memcache::Stream) -> std::io::Result<()> {
        stream.write_all(self.bytes)
    }
}

/// Invalidations a server missed while it could not be reached: on its
/// return, each epoch is renewed, each version key deleted (a missing
/// version makes every entry that recorded it stale) and each key replaced
/// by a tombstone, which is what the missed invalidations (and writes that
/// would have replaced those keys) would have done, or more. Past
/// `MAX_MISSED`, the server is flushed instead: more is lost, nothing stale
/// is served.
#[derive(Debug, Default)]
pub(crate) struct Missed {
    /// Namespaces whose fill epoch to renew.
    pub(crate) epochs: HashSet<String>,
    /// Version keys to delete.
    pub(crate) versions: HashSet<String>,
    /// Stored keys whose delete, or replacing write, failed.
    pub(crate) keys: HashSet<String>,
    /// Too much was missed to keep: flush the whole server.
    pub(crate) flush: bool,
}

impl Missed {
    fn is_empty(&self) -> bool {
        !self.flush && self.epochs.is_empty() && self.versions.is_empty() && self.keys.is_empty()
    }

    fn len(&self) -> usize {
        self.epochs.len() + self.versions.len() + self.keys.len()
    }

    /// The deletion of `keys`.
    pub(crate) fn keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Missed {
        Missed {
            keys: keys.into_iter().map(str::to_owned).collect(),
            ..Missed::default()
        }
    }
}

/// The connections of one server.
#[derive(Default)]
struct Slots {
    idle: Vec<Client>,
    open: usize,
    closed: bool,
}

/// Whether a server can be reached, as far as we know.
#[derive(Default)]
struct Health {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

/// One memcached server.
pub(crate) struct Server {
    /// `host:port`.
    pub(crate) address: String,
    host: String,
    port: u16,
    url: memcache::Url,
    timeout: Duration,
    connect_timeout: Duration,
    pool: usize,
    retry_delay: Duration,
    retry_max_delay: Duration,
    threads: Arc<ScheduledThreadPool>,
    slots: Mutex<Slots>,
    freed: Condvar,
    health: Mutex<Health>,
    /// From `stats settings` at the last connect; 0 until known.
    item_size_max: AtomicUsize,
    missed: Mutex<Missed>,
    has_missed: AtomicBool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Server {
    fn new(
        host: &str,
        port: u16,
        config: &MemcachedConfig,
        threads: Arc<ScheduledThreadPool>,
    ) -> Result<Server> {
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let url_text = format!(
            "memcache://{address}?timeout={}",
            config.timeout.as_secs_f64()
        );
        let url = memcache::Url::parse(&url_text).map_err(|e| {
            Error::config(
                "url host",
                "the memcached URL",
                "a host name or address",
                format!("{address} ({e})"),
            )
        })?;
        Ok(Server {
            address,
            host: host.to_owned(),
            port,
            url,
            timeout: config.timeout,
            connect_timeout: config.connect_timeout,
            pool: config.pool,
            retry_delay: config.retry_delay,
            retry_max_delay: config.retry_max_delay,
            threads,
            slots: Mutex::new(Slots::default()),
            freed: Condvar::new(),
            health: Mutex::new(Health::default()),
            item_size_max: AtomicUsize::new(0),
            missed: Mutex::new(Missed::default()),
            has_missed: AtomicBool::new(false),
        })
    }

    /// The server's item size, when known.
    pub(crate) fn item_size_max(&self) -> Option<usize> {
        match self.item_size_max.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    /// A connection for `operation`: an idle one, a new one, or one freed
    /// within the command timeout.
    pub(crate) fn conn(&self, operation: &'static str) -> Result<Conn<'_>> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut slots = lock(&self.slots);
        loop {
            if slots.closed {
                return Err(error::closed(operation));
            }
            if let Some(client) = slots.idle.pop() {
                drop(slots);
                return self.ready(client, operation);
            }
            if slots.open < self.pool {
                slots.open += 1;
                drop(slots);
                return match self.open_client() {
                    Ok(client) => self.ready(client, operation),
                    Err(e) => {
                        lock(&self.slots).open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(error::no_free_connection(
                    operation,
                    now - started,
                    self.timeout,
                ));
            }
            slots = self
                .freed
                .wait_timeout(slots, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Wrap `client`, replaying missed invalidations first.
    fn ready(&self, client: Client, operation: &'static str) -> Result<Conn<'_>> {
        let mut conn = Conn {
            server: self,
            client: Some(client),
            broken: false,
            operation,
        };
        if self.has_missed.load(Ordering::Acquire) {
            self.replay(&mut conn)?;
        }
        Ok(conn)
    }

    /// Apply the invalidations this server missed.
    fn replay(&self, conn: &mut Conn<'_>) -> Result<()> {
        let missed = std::mem::take(&mut *lock(&self.missed));
        self.has_missed.store(false, Ordering::Release);
        let result = (|| {
            if missed.flush {
                conn.flush()?;
                return Ok(());
            }
            for ns in &missed.epochs {
                conn.set(
                    &item::epoch_key(ns),
                    item::fresh_version().to_string().as_bytes(),
                    0,
                    0,
                )?;
            }
            for key in &missed.versions {
                conn.delete(key)?;
            }
            let keys: Vec<&str> = missed.keys.iter().map(String::as_str).collect();
            crate::tags::delete_on(conn, &keys)?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                tracing::info!(
                    server = %self.address,
                    flushed = missed.flush,
                    epochs = missed.epochs.len(),
                    versions = missed.versions.len(),
                    keys = missed.keys.len(),
                    "larder: memcached server is back; replayed the invalidations it missed"
                );
                Ok(())
            }
            Err(e) => {
                self.record_missed(missed);
                Err(e)
            }
        }
    }

    /// Keep invalidations this server missed, to replay them when it
    /// answers again.
    pub(crate) fn record_missed(&self, more: Missed) {
        let mut missed = lock(&self.missed);
        if !missed.flush && missed.len() + more.len() > MAX_MISSED {
            tracing::warn!(
                server = %self.address,
                "larder: too many invalidations missed by an unreachable memcached server to \
                 keep them all; it will be flushed when it answers again"
            );
            *missed = Missed {
                flush: true,
                ..Missed::default()
            };
        }
        if missed.flush {
            // A flush covers everything.
        } else {
            missed.epochs.extend(more.epochs);
            missed.versions.extend(more.versions);
            missed.keys.extend(more.keys);
        }
        if !missed.is_empty() || more.flush {
            missed.flush |= more.flush;
            self.has_missed.store(true, Ordering::Release);
        }
    }

    /// A new connection, unless the server is being left alone after a
    /// failure.
    fn open_client(&self) -> Result<Client> {
        {
            let health = lock(&self.health);
            if let Some(at) = health.retry_at {
                let now = Instant::now();
                if now < at {
                    return Err(error::left_alone(
                        &self.address,
                        &health.last_error,
                        at - now,
                    ));
                }
            }
        }
        match self.try_open() {
            Ok(client) => {
                let mut health = lock(&self.health);
                if health.failures > 0 {
                    tracing::info!(server = %self.address, "larder: memcached server answers again");
                }
                *health = Health::default();
                Ok(client)
            }
            Err(reason) => {
                let mut health = lock(&self.health);
                health.failures = health.failures.saturating_add(1);
                let doubling = 2u32.saturating_pow(health.failures.saturating_sub(1).min(16));
                let delay = self
                    .retry_delay
                    .saturating_mul(doubling)
                    .min(self.retry_max_delay);
                health.retry_at = Some(Instant::now() + delay);
                health.last_error.clone_from(&reason);
                tracing::warn!(
                    server = %self.address,
                    error = %reason,
                    retry_in_ms = delay.as_millis() as u64,
                    "larder: cannot reach memcached server"
                );
                Err(error::cannot_reach(&self.address, &reason))
            }
        }
    }

    /// Probe the server, learn its item size and open a connection; the
    /// reason in plain words when it cannot be done.
    fn try_open(&self) -> std::result::Result<Client, String> {
        let address: SocketAddr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|_| "cannot resolve host".to_owned())?
            .next()
            .ok_or_else(|| "cannot resolve host".to_owned())?;
        let mut probe = TcpStream::connect_timeout(&address, self.connect_timeout)
            .map_err(|e| error::describe_io(&e))?;
        if let Some(size) = item_size_max(&mut probe, self.timeout)? {
            self.item_size_max.store(size, Ordering::Relaxed);
        }
        drop(probe);
        let pool = memcache::Pool::builder()
            .max_size(1)
            .min_idle(Some(1))
            .test_on_check_out(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .connection_timeout(self.connect_timeout)
            .thread_pool(self.threads.clone())
            .build(ConnectionManager::new(self.url.clone()))
            .map_err(|e| format!("cannot open a connection ({e})"))?;
        Client::with_pool(pool).map_err(|e| e.to_string())
    }

    /// Close idle connections and refuse new ones.
    fn close(&self) {
        let idle = {
            let mut slots = lock(&self.slots);
            slots.closed = true;
            let idle = std::mem::take(&mut slots.idle);
            slots.open -= idle.len();
            idle
        };
        drop(idle);
        self.freed.notify_all();
    }
}

/// `item_size_max` from `stats settings` on a fresh connection; `None`
/// when the server does not say (a binary-only server), an error when it
/// does not answer in time.
fn item_size_max(
    stream: &mut TcpStream,
    timeout: Duration,
) -> std::result::Result<Option<usize>, String> {
    let io = |e: std::io::Error| error::describe_io(&e);
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream.write_all(b"stats settings\r\n").map_err(io)?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !reply.ends_with(b"END\r\n") && !reply.ends_with(b"ERROR\r\n") && reply.len() < 65_536 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) => return Err(io(e)),
        }
    }
    Ok(String::from_utf8_lossy(&reply).lines().find_map(|line| {
        line.strip_prefix("STAT item_size_max ")
            .and_then(|n| n.trim().parse().ok())
    }))
}

/// A connection checked out of a server's pool; back in the pool on drop,
/// or closed if a command broke it.
pub(crate) struct Conn<'a> {
    server: &'a Server,
    client: Option<Client>,
    broken: bool,
    operation: &'static str,
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let mut slots = lock(&self.server.slots);
        if self.broken || slots.closed {
            slots.open -= 1;
            drop(slots);
            drop(client);
        } else {
            slots.idle.push(client);
        }
        self.server.freed.notify_one();
    }
}

impl Conn<'_> {
    /// The server this connection goes to.
    pub(crate) fn server(&self) -> &Server {
        self.server
    }

    /// Run one command; map its failure, and close the connection when the
    /// failure leaves it unusable.
    fn call<T>(
        &mut self,
        multi_key: bool,
        command: impl FnOnce(&Client) -> std::result::Result<T, MemcacheError>,
    ) -> std::result::Result<T, Box<(MemcacheError, Error)>> {
        let started = Instant::now();
        let Some(client) = self.client.as_ref() else {
            let message = format!(
                "{}: the connection to {} was closed",
                self.operation, self.server.address
            );
            return Err(Box::new((
                MemcacheError::BadURL(message.clone()),
                Error::Unavailable {
                    backend: BACKEND,
                    message,
                },
            )));
        };
        command(client).map_err(|e| {
            if error::breaks_connection(&e, multi_key) {
                self.broken = true;
                if let Some(client) = self.client.take() {
                    drop(client);
                    lock(&self.server.slots).open -= 1;
                    self.server.freed.notify_one();
                }
            }
            let mapped = error::map(
                self.operation,
                &self.server.address,
                &e,
                started.elapsed(),
                self.server.timeout,
            );
            Box::new((e, mapped))
        })
    }

    /// Items of `keys` that exist, in one round trip.
    pub(crate) fn get_many(&mut self, keys: &[&str]) -> Result<HashMap<String, Raw>> {
        let mut unique: Vec<&str> = Vec::with_capacity(keys.len());
        for key in keys {
            if !unique.contains(key) {
                unique.push(key);
            }
        }
        match unique.as_slice() {
            [] => Ok(HashMap::new()),
            [one] => {
                let one = *one;
                let found = self.call(false, |c| c.get::<Raw>(one)).map_err(|e| e.1)?;
                Ok(found.map(|raw| (one.to_owned(), raw)).into_iter().collect())
            }
            many => self.call(true, |c| c.gets::<Raw>(many)).map_err(|e| e.1),
        }
    }

    /// Store unconditionally.
    pub(crate) fn set(&mut self, key: &str, bytes: &[u8], flags: u32, exptime: u32) -> Result<()> {
        let value = Flagged { bytes, flags };
        self.call(false, |c| c.set(key, value, exptime))
            .map_err(|e| self.too_large(key, bytes.len(), *e))
    }

    /// Store if the key holds nothing; whether it was stored.
    pub(crate) fn add(
        &mut self,
        key: &str,
        bytes: &[u8],
        flags: u32,
        exptime: u32,
    ) -> Result<bool> {
        let value = Flagged { bytes, flags };
        match self.call(false, |c| c.add(key, value, exptime)) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.0, MemcacheError::CommandError(CommandError::KeyExists)) => {
                Ok(false)
            }
            Err(e) => Err(self.too_large(key, bytes.len(), *e)),
        }
    }

    /// Store if the item is still the one read with `cas`; whether it was
    /// stored.
    pub(crate) fn cas(
        &mut self,
        key: &str,
        bytes: &[u8],
        flags: u32,
        exptime: u32,
        cas: u64,
    ) -> Result<bool> {
        let value = Flagged { bytes, flags };
        self.call(false, |c| c.cas(key, value, exptime, cas))
            .map_err(|e| self.too_large(key, bytes.len(), *e))
    }

    /// Drop every item on the server.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.call(false, Client::flush).map_err(|e| e.1)
    }

    /// Delete; whether the key held an item.
    pub(crate) fn delete(&mut self, key: &str) -> Result<bool> {
        self.call(false, |c| c.delete(key)).map_err(|e| e.1)
    }

    /// Give an item a new expiry; whether it existed.
    pub(crate) fn touch(&mut self, key: &str, exptime: u32) -> Result<bool> {
        self.call(false, |c| c.touch(key, exptime)).map_err(|e| e.1)
    }

    /// Add `delta` to a counter: `Ok(None)` when the item is not a number.
    pub(crate) fn increment(&mut self, key: &str, delta: u64) -> Result<Option<u64>> {
        match self.call(false, |c| c.increment(key, delta)) {
            Ok(n) => Ok(Some(n)),
            Err(e) if error::is_non_numeric(&e.0) => Ok(None),
            Err(e) => Err(e.1),
        }
    }

    /// The server's version string.
    pub(crate) fn version(&mut self) -> Result<String> {
        let versions = self.call(false, Client::version).map_err(|e| e.1)?;
        Ok(versions.into_iter().next().map(|v| v.1).unwrap_or_default())
    }

    /// The error for a store the server refused as too large, or `e`.
    fn too_large(&self, key: &str, size: usize, e: (MemcacheError, Error)) -> Error {
        match e.0 {
            MemcacheError::CommandError(CommandError::ValueTooLarge) => Error::PayloadTooLarge {
                key: key.to_owned(),
                size,
                limit: self
                    .server
                    .item_size_max()
                    .unwrap_or(DEFAULT_ITEM_SIZE_MAX)
                    .saturating_sub(ITEM_OVERHEAD + key.len()),
            },
            _ => e.1,
        }
    }
}

/// Every server, the ring that places keys on them, and the settings.
pub(crate) struct Cluster {
    pub(crate) servers: Vec<Server>,
    ring: Ring,
    pub(crate) config: MemcachedConfig,
}

impl Cluster {
    /// Set up the servers and reach each once. Fails only when none
    /// answers: a server that is down starts out left alone and joins when
    /// it answers.
    pub(crate) fn open(config: MemcachedConfig) -> Result<Cluster> {
        config.validate()?;
        let threads = Arc::new(
            ScheduledThreadPool::builder()
                .num_threads(2)
                .thread_name_pattern("larder-memcached-connect-{}")
                .build(),
        );
        let servers = config
            .servers
            .iter()
            .map(|s| Server::new(&s.host, s.port, &config, threads.clone()))
            .collect::<Result<Vec<_>>>()?;
        let names: Vec<String> = servers.iter().map(|s| s.address.clone()).collect();
        let ring = Ring::new(
            names
                .iter()
                .map(String::as_str)
                .zip(config.servers.iter().map(|s| s.weight)),
        );
        let cluster = Cluster {
            servers,
            ring,
            config,
        };
        let mut first_error = None;
        let mut reached = 0;
        for server in &cluster.servers {
            match server.conn("connect") {
                Ok(_) => reached += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if reached == 0 => Err(e),
            _ => Ok(cluster),
        }
    }

    /// The server `key` lives on.
    pub(crate) fn server_of(&self, key: &str) -> &Server {
        &self.servers[self.ring.server(key)]
    }

    /// The index of the server `key` lives on.
    pub(crate) fn index_of(&self, key: &str) -> usize {
        self.ring.server(key)
    }

    /// The largest item every known server takes.
    pub(crate) fn item_size_max(&self) -> usize {
        self.servers
            .iter()
            .filter_map(Server::item_size_max)
            .min()
            .unwrap_or(DEFAULT_ITEM_SIZE_MAX)
    }

    /// Close every idle connection and refuse new ones.
    pub(crate) fn close(&self) {
        for server in &self.servers {
            server.close();
        }
    }
}
