//! Read-through: look up, else load once (single-flight, optionally under a
//! distributed lock) and store what is worth storing, unless an
//! invalidation happened while the load ran.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::backend::{FillStore, FillToken, SetMode};
use crate::codec;
use crate::core::Core;
use crate::error::Error;
use crate::flight::{Flights, Produced};
use crate::lock::{self, Lock};
use crate::options::Ttl;
use crate::recache;
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
    /// The value to hand to callers that shared the load, whether or not it
    /// is stored; `None` for a failure.
    fn value(&self) -> Option<&Self::Value>;
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
    fn value(&self) -> Option<&T> {
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
    fn value(&self) -> Option<&Option<T>> {
        Some(self)
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
    fn value(&self) -> Option<&T> {
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
///
/// ```
/// use std::time::Duration;
/// use larder_core::FillOptions;
/// let fill = FillOptions::new()
///     .ttl(Duration::from_secs(300))
///     .stale_ttl(Duration::from_secs(60))
///     .lock(true);
/// assert!(fill.lock);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FillOptions {
    /// How long a loaded value is fresh (and, without a stale window, how
    /// long it is kept).
    pub ttl: Ttl,
    /// Store `None` results too.
    pub cache_none: bool,
    /// Take a distributed lock around the load, so that one process loads.
    pub lock: bool,
    /// How long the lock is held at most, and how long others wait for the
    /// holder's value before loading themselves.
    pub lock_timeout: Duration,
    /// Renew the TTL on every hit (sliding expiry).
    pub refresh_on_hit: bool,
    /// Early refresh window: the value's fresh window ends this long after
    /// it is stored (at most the TTL). Recorded in the value's header
    /// (`fresh_until`).
    pub early_ttl: Option<Duration>,
    /// Stale window: the value is kept this long past its TTL, so that it can
    /// be served stale. The physical TTL is `ttl + stale_ttl`; the header's
    /// `fresh_until` marks where freshness ends.
    pub stale_ttl: Option<Duration>,
}

impl Default for FillOptions {
    fn default() -> Self {
        FillOptions {
            ttl: Ttl::Default,
            cache_none: false,
            lock: false,
            lock_timeout: Duration::from_secs(5),
            refresh_on_hit: false,
            early_ttl: None,
            stale_ttl: None,
        }
    }
}

impl FillOptions {
    /// The defaults: the cache's default TTL, no lock, no windows.
    pub fn new() -> Self {
        Self::default()
    }

    /// See [`FillOptions::ttl`](#structfield.ttl).
    #[must_use]
    pub fn ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.ttl = ttl.into();
        self
    }

    /// See [`FillOptions::cache_none`](#structfield.cache_none).
    #[must_use]
    pub fn cache_none(mut self, cache_none: bool) -> Self {
        self.cache_none = cache_none;
        self
    }

    /// See [`FillOptions::lock`](#structfield.lock).
    #[must_use]
    pub fn lock(mut self, lock: bool) -> Self {
        self.lock = lock;
        self
    }

    /// See [`FillOptions::lock_timeout`](#structfield.lock_timeout).
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// See [`FillOptions::refresh_on_hit`](#structfield.refresh_on_hit).
    #[must_use]
    pub fn refresh_on_hit(mut self, refresh: bool) -> Self {
        self.refresh_on_hit = refresh;
        self
    }

    /// See [`FillOptions::early_ttl`](#structfield.early_ttl).
    #[must_use]
    pub fn early_ttl(mut self, window: impl Into<Option<Duration>>) -> Self {
        self.early_ttl = window.into();
        self
    }

    /// See [`FillOptions::stale_ttl`](#structfield.stale_ttl).
    #[must_use]
    pub fn stale_ttl(mut self, window: impl Into<Option<Duration>>) -> Self {
        self.stale_ttl = window.into();
        self
    }
}

/// One read-through call, as the caller describes it.
pub(crate) struct FillPlan<'a, T, C, S> {
    /// The key as the caller gave it.
    pub(crate) key: &'a str,
    /// Its stored form.
    pub(crate) stored: &'a str,
    /// The tags, rendered only when a value is stored.
    pub(crate) tags: T,
    pub(crate) options: &'a FillOptions,
    /// Whether a loaded value is worth storing.
    pub(crate) condition: C,
    /// A copy of a failed outcome for a caller that shared the load.
    pub(crate) share: S,
}

/// The read-through machinery of a cache: its flights.
#[derive(Default)]
pub(crate) struct ReadThrough {
    flights: Flights,
}

/// How often a process that lost the fill lock looks for the holder's value
/// at first; the interval doubles up to [`LOCK_POLL_MAX`].
const LOCK_POLL_MIN: Duration = Duration::from_millis(5);
const LOCK_POLL_MAX: Duration = Duration::from_millis(100);

/// The TTLs of one store.
struct Lifetimes {
    /// Physical TTL (`None`: no expiry).
    ttl: Option<Duration>,
    /// End of the fresh window, when the read has one.
    fresh_until: Option<SystemTime>,
}

impl ReadThrough {
    /// The read-through behind `get_or_load`, `read(..).load(..)` and
    /// `#[cache_read]`. Never fails because of the cache: a backend error or
    /// a value that does not encode is logged and counted, and the loader's
    /// outcome is returned.
    pub(crate) async fn fill<O, L, Fut, T, C, S>(
        &self,
        core: &Core,
        plan: FillPlan<'_, T, C, S>,
        loader: L,
    ) -> O
    where
        O: Outcome + Send + 'static,
        L: FnOnce() -> Fut,
        Fut: Future<Output = O>,
        T: FnOnce() -> Vec<String>,
        C: FnOnce(&O::Subject) -> bool,
        S: Fn(&O) -> Option<O>,
    {
        let force = recache::take();
        // A hit needs the TTL only to renew it.
        let touch = match plan.options.refresh_on_hit {
            true => match self.lifetimes(core, plan.options) {
                Ok(l) => l.ttl,
                Err(e) => {
                    core.record_error("read_through", &e);
                    return loader().await;
                }
            },
            false => None,
        };
        // When this caller started, for the values of flights it joins. Taken
        // after the first miss rather than on entry: a later instant only
        // makes the check stricter, and a hit never pays for it.
        let mut started = None;
        loop {
            if !force
                && let Some(value) = self
                    .lookup::<O::Value>(core, plan.key, plan.stored, touch)
                    .await
            {
                return O::from_stored(value);
            }
            let started = *started.get_or_insert_with(Instant::now);
            let lifetimes = match self.lifetimes(core, plan.options) {
                Ok(l) => l,
                Err(e) => {
                    core.record_error("read_through", &e);
                    return loader().await;
                }
            };
            let ticket = self.flights.join(plan.stored);
            let mut slot = ticket.slot().await;
            match slot.as_ref() {
                None => {
                    let outcome = self
                        .lead(core, plan, &lifetimes, force, loader, &mut slot)
                        .await;
                    ticket.finish();
                    return outcome;
                }
                Some(Produced::Value(bytes, until)) => {
                    if started > *until {
                        // Produced before this caller started: look again.
                        continue;
                    }
                    if let Some(value) = decode::<O::Value>(bytes) {
                        return O::from_stored(value);
                    }
                }
                Some(Produced::Failure(outcome)) => {
                    if let Some(outcome) = outcome.downcast_ref::<O>().and_then(&plan.share) {
                        return outcome;
                    }
                }
                Some(Produced::Reload) => continue,
                Some(Produced::LoadYourself) => {}
            }
            // What the flight produced is not for this caller (another type
            // read the same key, or the outcome cannot be shared): load alone.
            drop(slot);
            drop(ticket);
            let mut own = None;
            return self
                .lead(core, plan, &lifetimes, force, loader, &mut own)
                .await;
        }
    }

    fn lifetimes(&self, core: &Core, options: &FillOptions) -> crate::Result<Lifetimes> {
        let fresh = core.resolve_ttl(options.ttl)?;
        let windows = options.early_ttl.is_some() || options.stale_ttl.is_some();
        let fresh_until = match fresh {
            Some(ttl) if windows => {
                let fresh_for = options.early_ttl.map_or(ttl, |early| early.min(ttl));
                Some(SystemTime::now() + fresh_for)
            }
            _ => None,
        };
        let ttl = match (fresh, options.stale_ttl) {
            (Some(ttl), Some(stale)) => Some(Error::check_ttl(ttl.saturating_add(stale))?),
            (ttl, _) => ttl,
        };
        Ok(Lifetimes { ttl, fresh_until })
    }

    /// The hit path: the stored value, or `None` on a miss or a backend
    /// failure (logged and counted: fail open).
    /// `touch`: the TTL to renew on a hit (sliding expiry), if any.
    async fn lookup<V: DeserializeOwned>(
        &self,
        core: &Core,
        key: &str,
        stored: &str,
        touch: Option<Duration>,
    ) -> Option<V> {
        let found = match touch {
            Some(ttl) if core.caps.touch => core.backend.get_and_touch(stored, ttl).await,
            _ => core.backend.get(stored).await,
        };
        match found {
            Ok(Some(bytes)) => {
                let value = core.decode_hit(key, &bytes)?;
                if let Some(ttl) = touch.filter(|_| !core.caps.touch)
                    && let Err(e) = core.backend.expire(stored, ttl).await
                {
                    core.record_error("expire", &e);
                }
                Some(value)
            }
            Ok(None) => {
                Counters::add(&core.counters.misses, 1);
                None
            }
            Err(e) => {
                Counters::add(&core.counters.misses, 1);
                core.record_error("get", &e);
                None
            }
        }
    }

    /// Run the load for this caller (and, with a slot, for those waiting on
    /// it), store what is worth storing, and leave in the slot what the
    /// waiters may use.
    async fn lead<O, L, Fut, T, C, S>(
        &self,
        core: &Core,
        plan: FillPlan<'_, T, C, S>,
        lifetimes: &Lifetimes,
        force: bool,
        loader: L,
        slot: &mut Option<Produced>,
    ) -> O
    where
        O: Outcome + Send + 'static,
        L: FnOnce() -> Fut,
        Fut: Future<Output = O>,
        T: FnOnce() -> Vec<String>,
        C: FnOnce(&O::Subject) -> bool,
        S: Fn(&O) -> Option<O>,
    {
        let FillPlan {
            key,
            stored,
            tags,
            options,
            condition,
            share,
        } = plan;
        let seen = core.invalidations();
        let load_started = Instant::now();
        // Another flight may have stored the value since our miss: look once
        // more, and take the fill token in the same round trip.
        let mut mode = if force {
            SetMode::Always
        } else {
            SetMode::IfAbsent
        };
        let token = match core.backend.begin_fill(stored).await {
            Ok((Some(bytes), token)) if !force => {
                if let Some(value) = decode::<O::Value>(&bytes) {
                    // Read at some point after `load_started`: callers that
                    // started before that can take it.
                    *slot = Some(Produced::Value(bytes, load_started));
                    return O::from_stored(value);
                }
                // Bytes that do not decode: replace them.
                mode = SetMode::Always;
                Some(token)
            }
            Ok((_, token)) => Some(token),
            Err(e) => {
                core.record_error("get", &e);
                None
            }
        };
        let lock = match options.lock {
            true => match self
                .fill_lock(core, key, stored, options.lock_timeout)
                .await
            {
                FillLock::Held(lock) => Some(lock),
                FillLock::Filled(bytes, read_from) => {
                    if let Some(value) = decode::<O::Value>(&bytes) {
                        *slot = Some(Produced::Value(bytes, read_from));
                        return O::from_stored(value);
                    }
                    None
                }
                FillLock::GaveUp => None,
            },
            false => None,
        };
        let outcome = loader().await;
        let target = Target {
            key: stored,
            options,
            mode,
        };
        // The store happens after this instant: callers that started before
        // it can take the stored value.
        let stored_from = Instant::now();
        let stored = self
            .store(core, &target, tags, condition, lifetimes, &outcome, token)
            .await;
        if let Some(lock) = lock
            && let Err(e) = lock.release().await
        {
            core.record_error("unlock", &e);
        }
        let trusted = core.invalidations() == seen;
        *slot = Some(match stored {
            Stored::Yes(bytes) => Produced::Value(bytes, stored_from),
            Stored::Refused => Produced::Reload,
            // Not stored, so not guarded: only for callers that were waiting
            // before the load began, and only if this cache invalidated
            // nothing meanwhile.
            Stored::Kept(Some(bytes)) if trusted => Produced::Value(bytes, load_started),
            Stored::Kept(_) if outcome.value().is_some() => Produced::Reload,
            Stored::Kept(_) => match share(&outcome) {
                Some(copy) => Produced::Failure(Box::new(copy)),
                None => Produced::LoadYourself,
            },
        });
        outcome
    }

    /// Store the outcome if it says to, guarded by `token`.
    #[allow(clippy::too_many_arguments)]
    async fn store<O, T, C>(
        &self,
        core: &Core,
        target: &Target<'_>,
        tags: T,
        condition: C,
        lifetimes: &Lifetimes,
        outcome: &O,
        token: Option<FillToken>,
    ) -> Stored
    where
        O: Outcome,
        T: FnOnce() -> Vec<String>,
        C: FnOnce(&O::Subject) -> bool,
    {
        let Some(value) = outcome.value() else {
            return Stored::Kept(None);
        };
        let encoded = match codec::encode(core.config.codec, value, lifetimes.fresh_until) {
            Ok(bytes) => bytes,
            Err(e) => {
                core.record_error("encode", &e);
                return Stored::Kept(None);
            }
        };
        let worth_storing = outcome.stored(target.options.cache_none).is_some()
            && outcome.subject().is_none_or(condition);
        let Some(token) = token.filter(|_| worth_storing) else {
            return Stored::Kept(Some(encoded));
        };
        let options = core.tags(&tags()).map(|tags| {
            crate::backend::WriteOptions::new()
                .ttl(lifetimes.ttl)
                .tags(tags)
                .mode(target.mode)
        });
        let prepared = options.and_then(|o| core.check_size(target.key, &encoded).map(|()| o));
        let options = match prepared {
            Ok(o) => o,
            Err(e) => {
                core.record_error("set", &e);
                return Stored::Kept(Some(encoded));
            }
        };
        match core
            .backend
            .set_filled(target.key, encoded.clone(), &options, token)
            .await
        {
            Ok(FillStore::Stored) => {
                Counters::add(&core.counters.sets, 1);
                Stored::Yes(encoded)
            }
            Ok(_) => Stored::Refused,
            Err(e) => {
                core.record_error("set", &e);
                Stored::Kept(Some(encoded))
            }
        }
    }

    /// Take the fill lock of `key`, or wait (bounded) for the holder's
    /// value. A waiter takes the lock over when the holder releases it or
    /// it expires without a value.
    async fn fill_lock(&self, core: &Core, key: &str, stored: &str, timeout: Duration) -> FillLock {
        let started = Instant::now();
        let mut pause = LOCK_POLL_MIN;
        loop {
            match lock::take(core, key, timeout).await {
                Ok(Some(lock)) => {
                    // The previous holder may have just stored the value.
                    let read_from = Instant::now();
                    return match fetch(core, stored).await {
                        Some(bytes) => {
                            if let Err(e) = lock.release().await {
                                core.record_error("unlock", &e);
                            }
                            FillLock::Filled(bytes, read_from)
                        }
                        None => FillLock::Held(lock),
                    };
                }
                Ok(None) => {}
                // The lock backend is down: fail open, load.
                Err(e) => {
                    core.record_error("lock", &e);
                    return FillLock::GaveUp;
                }
            }
            if started.elapsed() >= timeout {
                tracing::warn!(
                    key,
                    "larder: fill lock holder did not store a value in time; loading"
                );
                return FillLock::GaveUp;
            }
            tokio::time::sleep(pause.min(timeout.saturating_sub(started.elapsed()))).await;
            pause = (pause * 2).min(LOCK_POLL_MAX);
            let read_from = Instant::now();
            if let Some(bytes) = fetch(core, stored).await {
                return FillLock::Filled(bytes, read_from);
            }
        }
    }
}

/// Where and how a loaded value is stored.
struct Target<'a> {
    /// The stored key.
    key: &'a str,
    options: &'a FillOptions,
    mode: SetMode,
}

/// What became of a loaded value.
enum Stored {
    /// Stored: these bytes.
    Yes(Bytes),
    /// Refused or declined by the backend: someone invalidated or wrote the
    /// key while the load ran.
    Refused,
    /// Not stored (not worth it, or the backend failed), only returned;
    /// the encoded value when the outcome has one.
    Kept(Option<Bytes>),
}

enum FillLock {
    Held(Lock),
    /// The holder's value, read after the instant given.
    Filled(Bytes, Instant),
    GaveUp,
}

/// A read of stored bytes that reports backend trouble to the log and
/// counters instead of the caller.
async fn fetch(core: &Core, stored: &str) -> Option<Bytes> {
    match core.backend.get(stored).await {
        Ok(found) => found,
        Err(e) => {
            core.record_error("get", &e);
            None
        }
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    codec::decode::<T>(bytes).ok().map(|(v, _)| v)
}
