//! [`Core`]: what every operation of a cache needs (the backend, the
//! namespace, the settings, the counters, error reporting), shared by
//! [`Cache`](crate::Cache), its request builders and the read-through.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::backend::{Backend, Capabilities, WriteOptions};
use crate::codec;
use crate::config::CacheConfig;
use crate::error::{Error, Result};
use crate::key::Namespace;
use crate::near::{Near, NearConfig};
use crate::options::{SetOptions, Ttl};
use crate::payload::Payload;
use crate::resilient::Fallback;
use crate::seal::Sealer;
use crate::stats::{Counters, Op};
use crate::sync::lock;

/// A random number (a fresh hash of a counter and the clock: spread, not
/// secrecy).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one((COUNTER.fetch_add(1, Ordering::Relaxed), Instant::now()))
}

/// How long identical failures are summarised into one log line.
const LOG_WINDOW: Duration = Duration::from_secs(10);

pub(crate) struct Core {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) caps: Capabilities,
    pub(crate) namespace: Namespace,
    pub(crate) config: CacheConfig,
    pub(crate) counters: Counters,
    errors: ErrorLog,
    /// Bumped by every write, delete and invalidation through this cache,
    /// so a load can tell whether one happened while it ran.
    invalidations: AtomicU64,
    /// Whether the backend journals failed writes and invalidations (see
    /// [`Backend::journals_invalidations`]).
    journaled: bool,
    /// Signing, encryption and compression of values.
    pub(crate) sealer: Sealer,
    /// The near cache (L1) of decoded values, when on.
    pub(crate) near: Option<Arc<Near>>,
}

impl Core {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        namespace: Namespace,
        config: CacheConfig,
        sealer: Sealer,
        near: Option<NearConfig>,
    ) -> Self {
        let caps = backend.capabilities();
        let namespace = namespace.for_backend(caps.max_key_len, caps.forbidden_key_chars);
        let counters = Counters::new(backend.label(), namespace.head());
        let near = near.and_then(|n| crate::near::start(&n, namespace.head(), &*backend));
        Core {
            near,
            journaled: backend.journals_invalidations(),
            backend,
            caps,
            namespace,
            config,
            counters,
            errors: ErrorLog::default(),
            invalidations: AtomicU64::new(0),
            sealer,
        }
    }

    /// Note a write, delete or invalidation made through this cache.
    pub(crate) fn note_invalidation(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
    }

    /// Drop caller keys from the near cache (after a write or delete).
    pub(crate) fn near_drop<K: AsRef<str>>(&self, keys: &[K]) {
        if let Some(near) = &self.near {
            near.drop_keys(keys);
        }
    }

    /// How many writes, deletes and invalidations this cache has made.
    pub(crate) fn invalidations(&self) -> u64 {
        self.invalidations.load(Ordering::SeqCst)
    }

    /// The stored form of a caller's key.
    pub(crate) fn key(&self, key: &str) -> Result<String> {
        self.namespace.key(key)
    }

    /// Count and log a failure. Identical failures (same operation, same
    /// kind) are logged once per window with how many were not.
    pub(crate) fn record_error(&self, operation: &str, error: &Error) {
        self.counters.error(operation, error.kind());
        if matches!(error, Error::Integrity { .. }) {
            self.counters.integrity.add(1);
        }
        if let Some(repeated) = self.errors.admit(operation, error.kind(), Instant::now()) {
            let repeated = if repeated > 0 {
                format!(" ({repeated} more like it in the last {LOG_WINDOW:?} not logged)")
            } else {
                String::new()
            };
            tracing::warn!(
                backend = self.backend.label(),
                namespace = self.namespace.head(),
                operation,
                kind = error.kind(),
                "larder: {error}{repeated}"
            );
        }
    }

    /// Run `work`, timing it (when sampled) as `op`.
    pub(crate) async fn timed<T>(&self, op: Op, work: impl Future<Output = T>) -> T {
        let timing = self.counters.start();
        let out = work.await;
        self.counters.finish(op, timing);
        out
    }

    /// Run a read-through's loader, counting the run.
    pub(crate) async fn run_loader<F, Fut>(&self, loader: F) -> Fut::Output
    where
        F: FnOnce() -> Fut,
        Fut: Future,
    {
        self.counters.loads.add(1);
        loader().await
    }

    /// Count a lookup that found nothing (and report the backend's
    /// evictions, which are what turn hits into misses).
    pub(crate) fn miss(&self) {
        self.counters.misses.add(1);
        self.counters.evictions(self.backend.evictions());
    }

    /// Count and log a failed operation; pass results through.
    pub(crate) fn observe<T>(&self, operation: &str, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            self.record_error(operation, e);
        }
        result
    }

    /// Verify, decrypt and decompress bytes read under `stored` (see
    /// [`Sealer::open`]).
    pub(crate) fn open<'a>(&self, stored: &str, bytes: &'a [u8]) -> Result<Cow<'a, [u8]>> {
        Ok(match self.sealer.open(stored, bytes)? {
            Some(opened) => Cow::Owned(opened),
            None => Cow::Borrowed(bytes),
        })
    }

    /// [`Core::open`] for owned bytes.
    pub(crate) fn open_bytes(&self, stored: &str, bytes: Bytes) -> Result<Bytes> {
        Ok(match self.sealer.open(stored, &bytes)? {
            Some(opened) => Bytes::from(opened),
            None => bytes,
        })
    }

    /// Compress, encrypt or sign an encoded value for `stored`, refusing it
    /// (before any I/O) when it is over `max_value_size` before or after.
    pub(crate) fn seal(&self, stored: &str, plain: Bytes) -> Result<Bytes> {
        self.check_size(stored, &plain)?;
        let sealed = self.sealer.seal(stored, plain)?;
        self.check_size(stored, &sealed)?;
        Ok(sealed)
    }

    /// Decode stored bytes; undecodable bytes are a miss plus a counted
    /// error.
    pub(crate) fn decode_hit<T: DeserializeOwned>(
        &self,
        key: &str,
        stored: &str,
        bytes: &[u8],
    ) -> Option<T> {
        self.decode_hit_with_header(key, stored, bytes)
            .map(|(v, _)| v)
    }

    /// Decode bytes the near cache holds: a failure is a miss and a
    /// counted error; a success is counted by the near cache.
    pub(crate) fn decode_near<T: DeserializeOwned>(
        &self,
        key: &str,
        bytes: &[u8],
    ) -> Option<(T, Option<codec::Header>)> {
        match codec::decode::<T>(bytes) {
            Ok(decoded) => {
                if let Some(near) = &self.near {
                    near.hit();
                }
                Some(decoded)
            }
            Err(e) => {
                self.undecodable(key, &e);
                None
            }
        }
    }

    /// Open the bytes of a hit for the near cache, which holds them opened
    /// (verified, decrypted, decompressed) so that its own decodes need no
    /// key. A value that does not open is a miss and a counted error.
    pub(crate) fn open_hit(&self, key: &str, stored: &str, bytes: Bytes) -> Option<Bytes> {
        match self.open_bytes(stored, bytes) {
            Ok(plain) => Some(plain),
            Err(e) => {
                self.undecodable(key, &e);
                None
            }
        }
    }

    /// Decode opened bytes (see [`Core::open_hit`]) as a hit from the
    /// backend; a failure is a miss and a counted error.
    pub(crate) fn decode_opened<T: DeserializeOwned>(
        &self,
        key: &str,
        plain: &[u8],
    ) -> Option<(T, Option<codec::Header>)> {
        self.count_decode(key, codec::decode::<T>(plain))
    }

    /// [`Core::decode_hit`] with the value's header.
    pub(crate) fn decode_hit_with_header<T: DeserializeOwned>(
        &self,
        key: &str,
        stored: &str,
        bytes: &[u8],
    ) -> Option<(T, Option<codec::Header>)> {
        let decoded = self
            .open(stored, bytes)
            .and_then(|plain| codec::decode::<T>(&plain));
        self.count_decode(key, decoded)
    }

    /// Count a decoded hit, or a miss and an error.
    fn count_decode<T>(&self, key: &str, decoded: Result<T>) -> Option<T> {
        match decoded {
            Ok(decoded) => {
                self.counters.hits.add(1);
                Some(decoded)
            }
            Err(e) => {
                self.undecodable(key, &e);
                None
            }
        }
    }

    /// A stored value that does not open or decode: a miss and a counted
    /// error, never a failure of the read.
    fn undecodable(&self, key: &str, error: &Error) {
        self.miss();
        tracing::debug!(
            key,
            "larder: stored value does not decode; treated as a miss"
        );
        self.record_error("decode", error);
    }

    /// The TTL a write gets: `None` for no expiry. Zero and over-long TTLs
    /// are refused.
    pub(crate) fn resolve_ttl(&self, ttl: Ttl) -> Result<Option<Duration>> {
        let config = &self.config;
        let ttl = match ttl {
            Ttl::Default => config.default_ttl,
            Ttl::Bucket(b) => config.ttl(b),
            Ttl::Fixed(d) => d,
            Ttl::Never => return Ok(None),
        };
        Error::check_ttl(ttl).map(Some)
    }

    /// `ttl` spread by up to `ttl_jitter` either way (at least 1 ms, at
    /// most [`MAX_TTL`](crate::MAX_TTL)), so that keys written together do
    /// not expire together.
    pub(crate) fn jitter(&self, ttl: Option<Duration>) -> Option<Duration> {
        let fraction = self.config.ttl_jitter;
        let ttl = ttl?;
        if fraction <= 0.0 {
            return Some(ttl);
        }
        // A uniform draw in [-1, 1).
        let unit = (random_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0;
        let spread = ttl.as_secs_f64() * (1.0 + fraction * unit);
        let jittered = Duration::try_from_secs_f64(spread).unwrap_or(ttl);
        Some(jittered.clamp(Duration::from_millis(1), crate::MAX_TTL))
    }

    /// What a failed operation gives the caller under the fallback policy:
    /// with `Fallback::Open`, a transient failure (the backend unreachable,
    /// slow, or its circuit open) becomes `neutral` (a miss, a write not
    /// made), logged and counted; anything else is returned as it is.
    pub(crate) fn fail_open<T>(&self, operation: &str, result: Result<T>, neutral: T) -> Result<T> {
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                self.record_error(operation, &e);
                if e.is_transient() && self.config.resilience.fallback == Fallback::Open {
                    Ok(neutral)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// [`Core::fail_open`] for an operation that changes or removes values
    /// (a write, delete or invalidation): its failure may leave a value
    /// the caller meant to replace, so it passes only over a backend that
    /// journals it, to replay before anything is read again (the
    /// resilience layer). Over any other backend the error is returned.
    pub(crate) fn fail_open_write<T>(
        &self,
        operation: &str,
        result: Result<T>,
        neutral: T,
    ) -> Result<T> {
        if self.journaled {
            let failed = result.is_err();
            let result = self.fail_open(operation, result, neutral);
            if failed && result.is_ok() {
                self.counters.dropped_writes.add(1);
            }
            result
        } else {
            self.observe(operation, result)
        }
    }

    /// The namespaced form of the tags of a write to `stored`, refused
    /// (before any I/O) over `max_tags` or `max_tag_length`.
    pub(crate) fn write_tags<S: AsRef<str>>(
        &self,
        stored: &str,
        tags: &[S],
    ) -> Result<Vec<String>> {
        let limit = self.config.max_tags;
        if tags.len() > limit {
            return Err(Error::LimitExceeded {
                key: stored.to_owned(),
                what: "the number of tags".to_owned(),
                size: tags.len(),
                limit,
                fix: "write fewer tags, or raise `max_tags`",
            });
        }
        let limit = self.config.max_tag_length;
        if let Some(tag) = tags.iter().find(|t| t.as_ref().len() > limit) {
            return Err(Error::LimitExceeded {
                key: stored.to_owned(),
                what: format!(
                    "the length in bytes of tag {:?}",
                    crate::error::shorten(tag.as_ref(), 40)
                ),
                size: tag.as_ref().len(),
                limit,
                fix: "shorten the tag, or raise `max_tag_length`",
            });
        }
        self.tags(tags)
    }

    /// The namespaced form of tags.
    pub(crate) fn tags<S: AsRef<str>>(&self, tags: &[S]) -> Result<Vec<String>> {
        tags.iter()
            .map(|t| self.namespace.tag(t.as_ref()))
            .collect()
    }

    /// The backend-level form of `options`: TTL resolved and checked, tags
    /// namespaced.
    pub(crate) fn write_options(&self, stored: &str, options: &SetOptions) -> Result<WriteOptions> {
        let mut write = self.write_options_exact(stored, options)?;
        write.ttl = self.jitter(write.ttl);
        Ok(write)
    }

    /// [`Core::write_options`] without TTL jitter.
    pub(crate) fn write_options_exact(
        &self,
        stored: &str,
        options: &SetOptions,
    ) -> Result<WriteOptions> {
        Ok(WriteOptions::new()
            .ttl(self.resolve_ttl(options.ttl)?)
            .tags(self.write_tags(stored, &options.tags)?)
            .mode(options.mode))
    }

    /// Refuse encoded values over the size limit, before any I/O.
    pub(crate) fn check_size(&self, stored_key: &str, bytes: &Bytes) -> Result<()> {
        let limit = self.config.max_value_size;
        if bytes.len() > limit {
            return Err(Error::PayloadTooLarge {
                key: stored_key.to_owned(),
                size: bytes.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Encode a value for `stored_key`, checking its size.
    pub(crate) fn encode<P: Payload + ?Sized>(
        &self,
        stored_key: &str,
        value: &P,
        fresh_until: Option<SystemTime>,
    ) -> Result<Bytes> {
        let bytes = value.encode(self.config.codec, fresh_until)?;
        self.seal(stored_key, bytes)
    }

    /// `set` with resolved options; whether the value was written.
    pub(crate) async fn set<P: Payload + ?Sized>(
        &self,
        key: &str,
        value: &P,
        options: &SetOptions,
    ) -> Result<bool> {
        let timing = self.counters.start();
        let stored = self.key(key)?;
        let write = self.write_options(&stored, options)?;
        let bytes = self.encode(&stored, value, None)?;
        self.note_invalidation();
        let result = self.backend.set(&stored, bytes, &write).await;
        self.near_drop(&[key]);
        let written = self.fail_open_write("set", result, false)?;
        if written {
            self.counters.sets.add(1);
        }
        self.counters.finish(Op::Set, timing);
        Ok(written)
    }
}

/// Failures of one operation and kind: when one was last logged, and how
/// many were held back since.
type Seen = HashMap<(String, &'static str), (Instant, u64)>;

/// Which failures were logged lately, to summarise repeats.
#[derive(Default)]
struct ErrorLog {
    seen: Mutex<Seen>,
}

impl ErrorLog {
    /// `Some(n)` when a failure of this operation and kind should be logged
    /// now, `n` being how many were held back since the last line; `None`
    /// when it is held back.
    fn admit(&self, operation: &str, kind: &'static str, now: Instant) -> Option<u64> {
        let mut seen = lock(&self.seen);
        if seen.len() > 256 {
            seen.retain(|_, (at, _)| now.duration_since(*at) < LOG_WINDOW);
        }
        match seen.get_mut(&(operation.to_owned(), kind)) {
            Some((at, held)) if now.duration_since(*at) < LOG_WINDOW => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                let repeated = *held;
                *at = now;
                *held = 0;
                Some(repeated)
            }
            None => {
                seen.insert((operation.to_owned(), kind), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_are_summarised() {
        let log = ErrorLog::default();
        let t0 = Instant::now();
        assert_eq!(log.admit("get", "timeout", t0), Some(0));
        for i in 1..=50 {
            assert_eq!(
                log.admit("get", "timeout", t0 + Duration::from_millis(i)),
                None
            );
        }
        assert_eq!(log.admit("get", "unavailable", t0), Some(0), "another kind");
        assert_eq!(
            log.admit("set", "timeout", t0),
            Some(0),
            "another operation"
        );
        assert_eq!(
            log.admit("get", "timeout", t0 + LOG_WINDOW + Duration::from_millis(1)),
            Some(50),
            "the next line says how many were held back"
        );
    }
}
