//! The near cache: an in-process L1 of **decoded** values in front of the
//! backend (L2), so that a hit costs neither a round trip nor a decode.
//!
//! Turn it on with [`CacheBuilder::near`](crate::CacheBuilder::near),
//! `[near]` in `larder.toml`, `LARDER_NEAR_MAX_ENTRIES` or `?near=10000` on
//! the URL. A `mem://` cache (an in-process backend the cache owns) has one
//! by default; `?near=0` turns it off.
//!
//! What it guarantees:
//!
//! - a value is decoded once per fill: [`Cache::get_shared`](crate::Cache::get_shared)
//!   returns the same `Arc<T>` without allocating, `get::<T>` one clone of
//!   it; a read as another type decodes the bytes again (a codec error or
//!   a miss, never a value of the wrong type);
//! - an entry never outlives the backend entry's remaining TTL, its fresh
//!   window (early refresh, stale serving) nor the near TTL;
//! - writes, deletes, tag and pattern invalidations and `clear` through the
//!   cache drop the entries they touch at once (the L1 keeps each key's
//!   tags);
//! - over a backend with an invalidation stream
//!   ([`Backend::invalidations`](crate::Backend::invalidations): Redis), what
//!   other processes change is dropped when their message arrives; while
//!   the stream is down or lagging the L1 is flushed and bypassed;
//!   elsewhere the near TTL bounds how stale a value can be;
//! - a fill that raced an invalidation is not kept: the invalidation
//!   sequence is read before the backend read, and the entry is inserted
//!   only if it has not moved.
//!
//! `docs/near-cache.md` has the staleness bound per backend and sizing.

pub(crate) mod clock;
mod store;
pub mod wire;

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::backend::{Expiry, Invalidation, InvalidationEvent, InvalidationStream};
use crate::error::{Error, Result};
use crate::glob::Glob;
use crate::stats::latency::Histogram;
use crate::stats::{Tally, names};
pub(crate) use store::Decoded;
use store::{Fill, Store};

/// Near cache settings.
///
/// ```
/// use std::time::Duration;
/// use larder_core::NearConfig;
/// let near = NearConfig { max_entries: 10_000, max_bytes: 64 << 20, ttl: Duration::from_secs(30) };
/// assert!(near.enabled());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NearConfig {
    /// Most entries held; 0 turns the near cache off.
    pub max_entries: usize,
    /// Most bytes held, estimated from the encoded size (counted twice:
    /// the bytes and the decoded value).
    pub max_bytes: usize,
    /// Longest an entry is kept: the staleness bound over backends without
    /// an invalidation stream (Memcached, SQLite shared between processes).
    #[serde(with = "crate::config::duration_serde")]
    pub ttl: Duration,
}

/// Default `max_bytes`: 64 MiB.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;
/// Default near TTL: 30 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// Entries of the near cache a `mem://` cache gets unless told otherwise.
pub const DEFAULT_IN_PROCESS_ENTRIES: usize = 10_000;

impl Default for NearConfig {
    /// Off (`max_entries` 0), with the default bytes and TTL ready for
    /// when `max_entries` is set.
    fn default() -> Self {
        NearConfig {
            max_entries: 0,
            max_bytes: DEFAULT_MAX_BYTES,
            ttl: DEFAULT_TTL,
        }
    }
}

impl NearConfig {
    /// A near cache of `max_entries` with the default bytes and TTL.
    pub fn new(max_entries: usize) -> Self {
        NearConfig {
            max_entries,
            ..NearConfig::default()
        }
    }

    /// Whether it is on (`max_entries` > 0).
    pub fn enabled(&self) -> bool {
        self.max_entries > 0
    }

    /// Refuse settings that cannot work.
    pub(crate) fn validate(&self) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        if self.max_bytes == 0 {
            return Err(Error::config(
                "near.max_bytes",
                "the configuration",
                "a positive size such as 64MiB",
                "0",
            ));
        }
        if self.ttl.is_zero() || self.ttl > crate::MAX_TTL {
            return Err(Error::config(
                "near.ttl",
                "the configuration",
                "a positive duration of at most 365d such as `30s`",
                format!("{:?}", self.ttl),
            ));
        }
        Ok(())
    }
}

/// The environment variables of the near cache, with the setting each
/// sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("near.max_entries", "LARDER_NEAR_MAX_ENTRIES"),
    ("near.max_bytes", "LARDER_NEAR_MAX_BYTES"),
    ("near.ttl", "LARDER_NEAR_TTL"),
];

/// The URL query parameters of the near cache (taken off the URL before
/// the backend sees it): `near` (entries), `near_bytes`, `near_ttl`.
pub const URL_PARAMS: &[&str] = &["near", "near_bytes", "near_ttl"];

/// Apply one `near.<name>` setting (file, environment, URL) to `near`.
pub fn apply_setting(near: &mut NearConfig, field: &str, raw: &str, source: &str) -> Result<()> {
    let bad = |expected: &str| Error::config(field, source, expected, raw);
    match field.trim_start_matches("near.") {
        "max_entries" | "near" => {
            near.max_entries = raw
                .trim()
                .parse()
                .map_err(|_| bad("a whole number of entries (0 turns the near cache off)"))?;
        }
        "max_bytes" | "near_bytes" => {
            near.max_bytes = crate::config::parse_size(raw)
                .filter(|n| *n > 0)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| bad("a size such as 16777216, 512KiB or 64MiB"))?;
        }
        "ttl" | "near_ttl" => {
            near.ttl = crate::config::parse_duration(raw)
                .filter(|d| !d.is_zero() && *d <= crate::MAX_TTL)
                .ok_or_else(|| bad("a positive duration such as `30s`, `5m` or `500ms`"))?;
        }
        _ => return Err(bad("a near setting: max_entries, max_bytes, ttl")),
    }
    Ok(())
}

/// Split the near cache's query parameters off `url`: the URL without them
/// (for the backend) and the settings they give over `base`, when any.
/// `?near=10000&near_ttl=5s`.
pub fn from_url(url: &str, base: Option<NearConfig>) -> Result<(String, Option<NearConfig>)> {
    let parsed = crate::url::BackendUrl::parse(url)?;
    if !parsed
        .query
        .iter()
        .any(|(k, _)| URL_PARAMS.contains(&k.as_str()))
    {
        return Ok((url.to_owned(), base));
    }
    let mut near = base.unwrap_or_default();
    let source = format!("URL {}", parsed.masked());
    for (k, v) in &parsed.query {
        if URL_PARAMS.contains(&k.as_str()) {
            apply_setting(&mut near, k, v, &source)?;
        }
    }
    // Rebuild the query without the near parameters, keeping the rest as
    // written (they are the backend's).
    let (before, query) = url.split_once('?').unwrap_or((url, ""));
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !pair.is_empty() && !URL_PARAMS.contains(&name)
        })
        .collect();
    let mut out = before.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    Ok((out, Some(near)))
}

/// A snapshot of the near cache's counters ([`Stats::near`](crate::Stats::near)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct NearStats {
    /// Reads served by the near cache (L1).
    pub l1_hits: u64,
    /// Reads the near cache missed that the backend (L2) answered.
    pub l2_hits: u64,
    /// Reads neither had.
    pub misses: u64,
    /// Entries held now.
    pub entries: u64,
    /// Estimated bytes held now.
    pub bytes: u64,
    /// Entries evicted to respect the bounds.
    pub evictions: u64,
    /// Invalidation messages received from the backend's stream.
    pub invalidations_received: u64,
    /// Flushes because the stream disconnected, lagged or sent something
    /// unreadable.
    pub disconnect_flushes: u64,
    /// Whether the near cache serves now (`false` while the stream is
    /// down: reads go to the backend).
    pub serving: bool,
    /// Invalidation lag (from the writer's clock to this process
    /// applying it), median, over the messages received; `None` before
    /// the first.
    pub lag_p50: Option<Duration>,
    /// Invalidation lag, 99th percentile.
    pub lag_p99: Option<Duration>,
}

/// What a fill took before its backend read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    seq: u64,
    start: u64,
}

/// What a typed near lookup found.
pub(crate) enum NearHit<T> {
    /// The decoded value, of the type asked for (or what was made of it).
    Value(T),
    /// The entry's bytes: not decoded yet, or decoded as another type.
    Bytes(Bytes),
}

/// The near cache of one [`Cache`](crate::Cache) (shared by its clones).
pub(crate) struct Near {
    store: Store,
    ttl: Duration,
    /// Bumped by every invalidation applied; a fill inserts only if it has
    /// not moved since before its backend read.
    seq: AtomicU64,
    /// Whether the L1 serves and takes fills (off while the invalidation
    /// stream is down).
    live: AtomicBool,
    head: Box<str>,
    l1_hits: AtomicU64,
    /// `larder_hits_total` and `larder_near_hits_total` of this cache.
    hit_metrics: [metrics::Counter; 2],
    received: Tally,
    flushes: Tally,
    lag: Histogram,
    lag_metric: metrics::Histogram,
}

impl std::fmt::Debug for Near {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Near")
            .field("ttl", &self.ttl)
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Near {
    /// A near cache for the namespace `head`; `live` when it may serve at
    /// once (no stream to wait for).
    pub(crate) fn new(config: &NearConfig, head: &str, live: bool, backend: &str) -> Self {
        let (b, ns) = (backend.to_owned(), head.to_owned());
        let tally = |name: &'static str| {
            Tally::new(metrics::counter!(name, "backend" => b.clone(), "namespace" => ns.clone()))
        };
        Near {
            store: Store::new(config.max_entries, config.max_bytes),
            ttl: config.ttl,
            seq: AtomicU64::new(0),
            live: AtomicBool::new(live),
            head: head.into(),
            l1_hits: AtomicU64::new(0),
            hit_metrics: [
                metrics::counter!(names::HITS, "backend" => b.clone(), "namespace" => ns.clone()),
                metrics::counter!(names::NEAR_HITS, "backend" => b.clone(), "namespace" => ns.clone()),
            ],
            received: tally(names::NEAR_INVALIDATIONS_RECEIVED),
            flushes: tally(names::NEAR_DISCONNECT_FLUSHES),
            lag: Histogram::default(),
            lag_metric: metrics::histogram!(
                names::NEAR_INVALIDATION_LAG,
                "backend" => b.clone(),
                "namespace" => ns.clone()
            ),
        }
    }

    /// Whether the L1 serves now.
    #[inline]
    pub(crate) fn live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Count a read the near cache served (in `hits` too).
    #[inline]
    pub(crate) fn hit(&self) {
        self.l1_hits.fetch_add(1, Ordering::Relaxed);
        for m in &self.hit_metrics {
            m.increment(1);
        }
    }

    /// Reads the near cache served.
    pub(crate) fn hits(&self) -> u64 {
        self.l1_hits.load(Ordering::Relaxed)
    }

    /// The typed entry under `key` (the caller's key), if live: `take` of
    /// the decoded value when it is a `T`, else the bytes.
    #[inline]
    pub(crate) fn get<T: Any + Send + Sync, R>(
        &self,
        key: &str,
        take: impl FnOnce(&Decoded, &T) -> R,
    ) -> Option<NearHit<R>> {
        if !self.live() {
            return None;
        }
        self.store.with(key, clock::now(), |slot| {
            if let Some(decoded) = slot.decoded.get()
                && let Some(value) = decoded.downcast_ref::<T>()
            {
                return NearHit::Value(take(decoded, value));
            }
            NearHit::Bytes(slot.bytes.clone())
        })
    }

    /// The bytes under `key`, if live (for reads that decode anyway).
    pub(crate) fn get_bytes(&self, key: &str) -> Option<Bytes> {
        if !self.live() {
            return None;
        }
        self.store
            .with(key, clock::now(), |slot| slot.bytes.clone())
    }

    /// Keep `decoded` beside the bytes of `key`, if the entry still holds
    /// these bytes and nothing was decoded yet.
    pub(crate) fn remember_decoded(&self, key: &str, bytes: &Bytes, decoded: Decoded) {
        self.store.with(key, clock::now(), |slot| {
            if slot.bytes.as_ptr() == bytes.as_ptr() && slot.bytes.len() == bytes.len() {
                let _ = slot.decoded.set(decoded);
            }
        });
    }

    /// Take before the backend read of a fill, and pass to
    /// [`Near::fill`]: the invalidation sequence and the clock.
    #[inline]
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket {
            seq: self.seq.load(Ordering::SeqCst),
            start: clock::now(),
        }
    }

    fn seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Whether `key` may be held: its stored form is the namespace head
    /// followed by the key (not hashed), so that invalidations by stored
    /// key find it.
    pub(crate) fn holds(&self, key: &str, stored: &str) -> bool {
        stored.len() == self.head.len() + key.len()
            && stored.starts_with(&*self.head)
            && stored.ends_with(key)
    }

    /// Insert what a backend read found, unless an invalidation happened
    /// since `seq` was read. The entry lives at most the near TTL, the
    /// backend's remaining TTL and the value's fresh window.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fill(
        &self,
        key: &str,
        ticket: Ticket,
        bytes: Bytes,
        decoded: Option<Decoded>,
        expiry: Expiry,
        fresh_until: Option<SystemTime>,
        tags: &[String],
    ) {
        if !self.live() {
            return;
        }
        let mut life = self.ttl;
        if let Expiry::After(left) = expiry {
            life = life.min(left);
        }
        if let Some(until) = fresh_until {
            match until.duration_since(SystemTime::now()) {
                Ok(left) => life = life.min(left),
                Err(_) => return,
            }
        }
        let Some(expires_at) = clock::deadline(ticket.start, life) else {
            return;
        };
        let fill = Fill {
            bytes,
            decoded,
            expires_at,
            tags: tags.iter().map(|t| t.as_str().into()).collect(),
        };
        self.store
            .insert(key, fill, || self.live() && self.seq() == ticket.seq);
    }

    fn bump(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
    }

    /// Drop caller keys.
    pub(crate) fn drop_keys<K: AsRef<str>>(&self, keys: &[K]) {
        self.bump();
        for key in keys {
            self.store.remove(key.as_ref());
        }
    }

    /// Drop the entries carrying any of these stored tags.
    pub(crate) fn drop_tags(&self, tags: &[String]) {
        self.bump();
        self.store
            .remove_where(|_, slot| slot.tags.iter().any(|t| tags.iter().any(|x| **t == **x)));
    }

    /// Drop the entries whose stored key matches the stored glob `pattern`.
    pub(crate) fn drop_pattern(&self, pattern: &str) {
        self.bump();
        match Glob::new(pattern) {
            Ok(glob) => {
                let mut stored = String::new();
                self.store.remove_where(|key, _| {
                    stored.clear();
                    stored.push_str(&self.head);
                    stored.push_str(key);
                    glob.matches(&stored)
                });
            }
            Err(_) => self.flush(),
        }
    }

    /// Drop everything.
    pub(crate) fn flush(&self) {
        self.bump();
        self.store.clear();
    }

    /// Stop serving and drop everything (the stream is down).
    fn suspend(&self) {
        if self.live.swap(false, Ordering::AcqRel) {
            self.flushes.add(1);
        }
        self.flush();
    }

    /// Serve again, from empty (the stream is back).
    fn resume(&self) {
        self.flush();
        self.live.store(true, Ordering::Release);
        // Whatever was filled between the flush and now was read while
        // suspended: drop it too.
        self.flush();
    }

    /// Apply one event of the backend's stream.
    pub(crate) fn apply(&self, event: InvalidationEvent) {
        if let Some(sent) = event.sent_at {
            let lag = SystemTime::now()
                .duration_since(sent)
                .unwrap_or(Duration::ZERO);
            self.lag.record(lag);
            self.lag_metric.record(lag.as_secs_f64());
        }
        match event.invalidation {
            Invalidation::Keys(keys) => {
                self.received.add(1);
                let mine: Vec<&str> = keys
                    .iter()
                    .filter_map(|k| k.strip_prefix(&*self.head))
                    .collect();
                if !mine.is_empty() {
                    self.drop_keys(&mine);
                }
            }
            Invalidation::Tags(tags) => {
                self.received.add(1);
                if tags.iter().any(|t| t.starts_with(&*self.head)) {
                    self.drop_tags(&tags);
                }
            }
            Invalidation::Pattern(pattern) => {
                self.received.add(1);
                if pattern.starts_with(&*self.head) {
                    self.drop_pattern(&pattern);
                } else if !pattern.starts_with(|c: char| c.is_alphanumeric()) {
                    // A pattern that could reach into this namespace.
                    self.flush();
                }
            }
            Invalidation::Flush { prefix } => {
                self.received.add(1);
                if self.head.starts_with(&prefix) || prefix.starts_with(&*self.head) {
                    self.flush();
                }
            }
            Invalidation::Disconnected => self.suspend(),
            Invalidation::Connected => self.resume(),
            // Reset, and anything this version does not know.
            _ => {
                self.flushes.add(1);
                self.flush();
            }
        }
    }

    /// Its counters; `l2_hits` and `misses` are filled in by the caller.
    pub(crate) fn stats(&self) -> NearStats {
        let (lag_p50, lag_p99) = match self.lag.summary() {
            Some((_, [p50, _, p99, _])) => (Some(p50), Some(p99)),
            None => (None, None),
        };
        NearStats {
            l1_hits: self.hits(),
            l2_hits: 0,
            misses: 0,
            entries: self.store.len() as u64,
            bytes: self.store.weight() as u64,
            evictions: self.store.evictions(),
            invalidations_received: self.received.get(),
            disconnect_flushes: self.flushes.get(),
            serving: self.live(),
            lag_p50,
            lag_p99,
        }
    }
}

/// Apply the backend's stream to `near` until the cache or the backend is
/// gone. When the stream ends the near cache stops serving.
pub(crate) async fn listen(near: Weak<Near>, mut stream: InvalidationStream) {
    while let Some(event) = stream.recv().await {
        let Some(near) = near.upgrade() else {
            return;
        };
        near.apply(event);
    }
    if let Some(near) = near.upgrade() {
        near.suspend();
    }
}

/// Start the near cache of a cache over `backend`: serving at once when the
/// backend has no stream, else from the stream's first `Connected`.
pub(crate) fn start(
    config: &NearConfig,
    head: &str,
    backend: &dyn crate::Backend,
) -> Option<Arc<Near>> {
    let stream = backend.invalidations();
    let near = Arc::new(Near::new(config, head, stream.is_none(), backend.label()));
    if let Some(stream) = stream {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(listen(Arc::downgrade(&near), stream));
            }
            Err(_) => {
                tracing::warn!(
                    backend = backend.label(),
                    "larder: the near cache needs a tokio runtime to follow the backend's \
                     invalidations; it stays off (build the cache inside the runtime)"
                );
            }
        }
    }
    Some(near)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(live: bool) -> Near {
        Near::new(&NearConfig::new(100), "svc:v1:", live, "test")
    }

    fn put(n: &Near, key: &str, tags: &[&str]) {
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        n.fill(
            key,
            n.ticket(),
            Bytes::from_static(b"x"),
            Some(Arc::new(7u32)),
            Expiry::Never,
            None,
            &tags,
        );
    }

    fn has(n: &Near, key: &str) -> bool {
        matches!(n.get::<u32, u32>(key, |_, v| *v), Some(NearHit::Value(7)))
    }

    #[test]
    fn a_fill_after_an_invalidation_is_refused() {
        let n = near(true);
        let ticket = n.ticket();
        n.drop_keys(&["k"]);
        n.fill(
            "k",
            ticket,
            Bytes::from_static(b"x"),
            None,
            Expiry::Never,
            None,
            &[],
        );
        assert!(n.get_bytes("k").is_none());
    }

    #[test]
    fn another_type_gets_the_bytes_not_the_value() {
        let n = near(true);
        put(&n, "k", &[]);
        assert!(matches!(
            n.get::<String, ()>("k", |_, _| ()),
            Some(NearHit::Bytes(_))
        ));
        assert!(has(&n, "k"));
    }

    #[test]
    fn stream_events_drop_what_they_name() {
        let n = near(true);
        for k in ["a", "b", "c", "d"] {
            put(&n, k, &["svc:v1:t"]);
        }
        put(&n, "e", &[]);
        let event = |i| InvalidationEvent::new(i);
        n.apply(event(Invalidation::Keys(vec!["svc:v1:a".into()])));
        assert!(!has(&n, "a") && has(&n, "b"));
        n.apply(event(Invalidation::Keys(vec!["other:v1:b".into()])));
        assert!(has(&n, "b"), "another namespace");
        n.apply(event(Invalidation::Pattern("svc:v1:[bc]".into())));
        assert!(!has(&n, "b") && !has(&n, "c") && has(&n, "d"));
        n.apply(event(Invalidation::Tags(vec!["svc:v1:t".into()])));
        assert!(!has(&n, "d") && has(&n, "e"));
        n.apply(event(Invalidation::Flush {
            prefix: "svc:v1:".into(),
        }));
        assert!(!has(&n, "e"));
        assert_eq!(n.stats().invalidations_received, 5);
    }

    #[test]
    fn disconnected_bypasses_until_connected() {
        let n = near(true);
        put(&n, "k", &[]);
        n.apply(InvalidationEvent::new(Invalidation::Disconnected));
        assert!(!has(&n, "k"));
        put(&n, "k", &[]);
        assert!(!has(&n, "k"), "no fills while down");
        n.apply(InvalidationEvent::new(Invalidation::Connected));
        put(&n, "k", &[]);
        assert!(has(&n, "k"));
        assert_eq!(n.stats().disconnect_flushes, 1);
    }

    #[test]
    fn entries_live_at_most_the_backend_ttl_and_fresh_window() {
        let n = near(true);
        n.fill(
            "k",
            n.ticket(),
            Bytes::from_static(b"x"),
            None,
            Expiry::After(Duration::from_millis(30)),
            None,
            &[],
        );
        std::thread::sleep(Duration::from_millis(40));
        assert!(n.get_bytes("k").is_none());
        n.fill(
            "f",
            n.ticket(),
            Bytes::from_static(b"x"),
            None,
            Expiry::Never,
            Some(SystemTime::now() - Duration::from_secs(1)),
            &[],
        );
        assert!(n.get_bytes("f").is_none(), "past its fresh window");
    }

    #[test]
    fn url_parameters_are_split_off() {
        let (url, near) =
            from_url("redis://h:6379/0?pool_size=3&near=500&near_ttl=5s", None).expect("parses");
        assert_eq!(url, "redis://h:6379/0?pool_size=3");
        let near = near.expect("near settings");
        assert_eq!(near.max_entries, 500);
        assert_eq!(near.ttl, Duration::from_secs(5));
        let (url, near) = from_url("mem://", None).expect("parses");
        assert_eq!((url.as_str(), near), ("mem://", None));
        let err = from_url("mem://?near=lots", None).expect_err("bad value");
        assert!(err.to_string().contains("near"), "{err}");
    }

    #[test]
    fn settings_from_the_file_and_the_environment() {
        let mut config = crate::CacheConfig::default();
        config
            .merge_toml(
                "[near]\nmax_entries = 500\nmax_bytes = \"1MiB\"\nttl = \"5s\"\n",
                "larder.toml",
            )
            .expect("parses");
        assert_eq!(
            config.near,
            Some(NearConfig {
                max_entries: 500,
                max_bytes: 1 << 20,
                ttl: Duration::from_secs(5),
            })
        );
        let env = |name: &str| (name == "LARDER_NEAR_MAX_ENTRIES").then(|| "42".to_owned());
        let config = crate::CacheConfig::from_sources(None, env).expect("loads");
        assert_eq!(config.near.map(|n| n.max_entries), Some(42));
        let env = |name: &str| (name == "LARDER_NEAR_TTL").then(|| "soon".to_owned());
        let err = crate::CacheConfig::from_sources(None, env).expect_err("bad ttl");
        assert!(err.to_string().contains("LARDER_NEAR_TTL"), "{err}");
        let mut config = crate::CacheConfig::default();
        let err = config
            .merge_toml("[near]\nmax_entries = -1\n", "larder.toml")
            .expect_err("negative");
        assert!(err.to_string().contains("near.max_entries"), "{err}");
    }

    #[test]
    fn holds_only_unhashed_keys() {
        let n = near(true);
        assert!(n.holds("user:1", "svc:v1:user:1"));
        assert!(!n.holds("a b", "svc:v1:a_b#1234"));
    }
}
