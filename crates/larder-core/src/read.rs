//! Read-through: look up, else load once (single-flight, optionally under
//! a distributed lock) and store what is worth storing.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::backend::WriteOptions;
use crate::cache::Cache;
use crate::codec;
use crate::error::Result;
use crate::recache as refresh;
use crate::stats::Counters;

/// What a cached function returns, and which part of it is stored.
///
/// Implemented for `Result<T, E>` (only `Ok` is stored), `Option<T>` (only
/// `Some`, unless `cache_none`), and [`Plain<T>`] (always stored).
pub trait Outcome: Sized {
    /// The stored form.
    type Value: Serialize + DeserializeOwned;
    /// What a `condition` predicate sees.
    type Subject;
    /// The part to store, if any.
    fn stored(&self, cache_none: bool) -> Option<&Self::Value>;
    /// What the predicate judges, when there is a value.
    fn subject(&self) -> Option<&Self::Subject>;
    /// Rebuild the outcome from a stored value.
    fn from_stored(value: Self::Value) -> Self;
}

impl<T: Serialize + DeserializeOwned, E> Outcome for std::result::Result<T, E> {
    type Value = T;
    type Subject = T;
    fn stored(&self, _cache_none: bool) -> Option<&T> {
        self.as_ref().ok()
    }
    fn subject(&self) -> Option<&T> {
        self.as_ref().ok()
    }
    fn from_stored(value: T) -> Self {
        Ok(value)
    }
}

impl<T: Serialize + DeserializeOwned> Outcome for Option<T> {
    type Value = Option<T>;
    type Subject = T;
    fn stored(&self, cache_none: bool) -> Option<&Option<T>> {
        (self.is_some() || cache_none).then_some(self)
    }
    fn subject(&self) -> Option<&T> {
        self.as_ref()
    }
    fn from_stored(value: Option<T>) -> Self {
        value
    }
}

/// A return value that is always stored (neither `Result` nor `Option`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plain<T>(pub T);

impl<T: Serialize + DeserializeOwned> Outcome for Plain<T> {
    type Value = T;
    type Subject = T;
    fn stored(&self, _cache_none: bool) -> Option<&T> {
        Some(&self.0)
    }
    fn subject(&self) -> Option<&T> {
        Some(&self.0)
    }
    fn from_stored(value: T) -> Self {
        Plain(value)
    }
}

/// Fill-time settings of a read-through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillOptions {
    /// Store `None` results too.
    pub cache_none: bool,
    /// Take a distributed lock around the load, so that one process loads.
    pub lock: bool,
    /// How long the lock is held at most, and how long others wait for the
    /// holder's value before loading themselves.
    pub lock_timeout: Duration,
    /// Early refresh window (accepted; acted on with the resilience layer).
    pub early_ttl: Option<Duration>,
    /// Stale-while-revalidate window (accepted; acted on with the resilience
    /// layer).
    pub stale_ttl: Option<Duration>,
}

impl Default for FillOptions {
    fn default() -> Self {
        FillOptions {
            cache_none: false,
            lock: false,
            lock_timeout: Duration::from_secs(5),
            early_ttl: None,
            stale_ttl: None,
        }
    }
}

/// How often a process that lost the fill lock looks for the winner's value.
const LOCK_POLL: Duration = Duration::from_millis(25);

impl Cache {
    /// The read-through behind `get_or_load`, `read(..).load(..)` and
    /// `#[cache_read]`.
    ///
    /// Never fails because of the cache: an invalid key, a backend error or
    /// a value that does not encode is logged and counted, and the loader's
    /// outcome is returned. `write` builds the write options (tags) and is
    /// only called when something is stored. Inside
    /// [`refresh`](crate::recache::refresh) the lookup is skipped and the
    /// loader's value overwrites the entry.
    pub async fn read_through<O, L, Fut, W, C>(
        &self,
        key: &str,
        write: W,
        fill: &FillOptions,
        condition: C,
        loader: L,
    ) -> O
    where
        O: Outcome,
        L: FnOnce() -> Fut,
        Fut: Future<Output = O>,
        W: FnOnce() -> Result<WriteOptions>,
        C: FnOnce(&O::Subject) -> bool,
    {
        match self.inner.namespace.key(key) {
            Ok(stored) => {
                self.fill(key, &stored, write, fill, condition, loader)
                    .await
            }
            Err(e) => {
                self.record_error("read_through", &e);
                loader().await
            }
        }
    }

    /// [`Cache::read_through`] once the key is validated and namespaced.
    pub(crate) async fn fill<O, L, Fut, W, C>(
        &self,
        key: &str,
        stored: &str,
        write: W,
        fill: &FillOptions,
        condition: C,
        loader: L,
    ) -> O
    where
        O: Outcome,
        L: FnOnce() -> Fut,
        Fut: Future<Output = O>,
        W: FnOnce() -> Result<WriteOptions>,
        C: FnOnce(&O::Subject) -> bool,
    {
        let force = refresh::take();
        if force {
            let outcome = loader().await;
            self.store_outcome(stored, &outcome, write, fill, condition)
                .await;
            return outcome;
        }
        if let Some(value) = self.lookup_quietly::<O::Value>(key, stored).await {
            return O::from_stored(value);
        }
        let ticket = self.inner.flights.join(stored);
        let mut slot = ticket.flight().slot.lock().await;
        if let Some(value) = slot.as_ref().and_then(|b| decode::<O::Value>(b)) {
            return O::from_stored(value);
        }
        // Lead the load. Another flight may have stored the value between our
        // miss and joining this one: look once more.
        if let Some(bytes) = self.fetch_quietly(stored).await
            && let Some(value) = decode::<O::Value>(&bytes)
        {
            *slot = Some(bytes);
            return O::from_stored(value);
        }
        let lock = if fill.lock {
            match self.fill_lock(key, stored, fill.lock_timeout).await {
                FillLock::Held(lock) => Some(lock),
                FillLock::Filled(bytes) => {
                    if let Some(value) = decode::<O::Value>(&bytes) {
                        *slot = Some(bytes);
                        return O::from_stored(value);
                    }
                    None
                }
                FillLock::GaveUp => None,
            }
        } else {
            None
        };
        let outcome = loader().await;
        *slot = self
            .store_outcome(stored, &outcome, write, fill, condition)
            .await;
        if let Some(lock) = lock
            && let Err(e) = lock.release().await
        {
            self.record_error("unlock", &e);
        }
        outcome
    }

    /// Store what `outcome` says to store; returns the bytes stored.
    async fn store_outcome<O, W, C>(
        &self,
        stored: &str,
        outcome: &O,
        write: W,
        fill: &FillOptions,
        condition: C,
    ) -> Option<Bytes>
    where
        O: Outcome,
        W: FnOnce() -> Result<WriteOptions>,
        C: FnOnce(&O::Subject) -> bool,
    {
        let value = outcome.stored(fill.cache_none)?;
        if !outcome.subject().is_none_or(condition) {
            return None;
        }
        let prepared = write().and_then(|w| Ok((w, self.encode(stored, value)?)));
        let (options, bytes) = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.record_error("set", &e);
                return None;
            }
        };
        match self
            .inner
            .backend
            .set(stored, bytes.clone(), &options)
            .await
        {
            Ok(written) => {
                if written {
                    Counters::add(&self.inner.counters.sets, 1);
                }
                Some(bytes)
            }
            Err(e) => {
                self.record_error("set", &e);
                Some(bytes)
            }
        }
    }

    /// Take the fill lock of `key`, or wait (bounded) for the holder's value.
    async fn fill_lock(&self, key: &str, stored: &str, timeout: Duration) -> FillLock {
        match self.try_lock(key, timeout).await {
            Ok(Some(lock)) => {
                // The previous holder may have just stored the value.
                match self.fetch_quietly(stored).await {
                    Some(bytes) => {
                        if let Err(e) = lock.release().await {
                            self.record_error("unlock", &e);
                        }
                        FillLock::Filled(bytes)
                    }
                    None => FillLock::Held(lock),
                }
            }
            // Someone else loads: wait for their value, within the bound.
            Ok(None) => {
                let started = Instant::now();
                while started.elapsed() < timeout {
                    tokio::time::sleep(LOCK_POLL).await;
                    if let Some(bytes) = self.fetch_quietly(stored).await {
                        return FillLock::Filled(bytes);
                    }
                }
                tracing::warn!(
                    key,
                    "larder: fill lock holder did not store a value in time; loading"
                );
                FillLock::GaveUp
            }
            // The lock backend is down: fail open, load.
            Err(_) => FillLock::GaveUp,
        }
    }

    /// A lookup that reports backend trouble to the log and counters instead
    /// of the caller (fail open).
    pub(crate) async fn lookup_quietly<T: DeserializeOwned>(
        &self,
        key: &str,
        stored: &str,
    ) -> Option<T> {
        match self.inner.backend.get(stored).await {
            Ok(Some(bytes)) => self.decode_hit(key, &bytes),
            Ok(None) => {
                Counters::add(&self.inner.counters.misses, 1);
                None
            }
            Err(e) => {
                Counters::add(&self.inner.counters.misses, 1);
                self.record_error("get", &e);
                None
            }
        }
    }

    async fn fetch_quietly(&self, stored: &str) -> Option<Bytes> {
        match self.inner.backend.get(stored).await {
            Ok(found) => found,
            Err(e) => {
                self.record_error("get", &e);
                None
            }
        }
    }
}

enum FillLock {
    Held(crate::Lock),
    Filled(Bytes),
    GaveUp,
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    codec::decode::<T>(bytes).ok().map(|(v, _)| v)
}
