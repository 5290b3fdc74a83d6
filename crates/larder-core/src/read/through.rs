//! The read-through proper: lookup, single-flight, the load and the
//! guarded store.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::{FillOptions, Outcome};
use crate::backend::{FillStore, FillToken, SetMode};
use crate::codec;
use crate::core::Core;
use crate::error::Error;
use crate::flight::{Flights, Produced};
use crate::lock::{self, Lock};
use crate::recache;

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

/// The read-through machinery of a cache: its flights, and the keys being
/// refreshed.
#[derive(Default)]
pub(crate) struct ReadThrough {
    flights: Flights,
    pub(super) refreshing: Arc<Mutex<HashSet<String>>>,
}

/// What a lookup found.
pub(crate) enum Looked<V> {
    /// A value; `due` when its fresh window has passed (or probabilistic
    /// early expiration fired) and a refresh should run.
    Hit { value: V, due: bool },
    /// Nothing.
    Miss,
    /// The backend failed: it was logged and counted, and nothing more is
    /// asked of it during this call (an outage costs one timeout).
    Failed,
}

/// How often a process that lost the fill lock looks for the holder's value
/// at first; the interval doubles up to [`LOCK_POLL_MAX`].
const LOCK_POLL_MIN: Duration = Duration::from_millis(5);
const LOCK_POLL_MAX: Duration = Duration::from_millis(100);

/// The TTLs of one store.
pub(super) struct Lifetimes {
    /// Physical TTL (`None`: no expiry), before jitter.
    ttl: Option<Duration>,
    /// How long the value is fresh, when the read has a fresh window.
    fresh_for: Option<Duration>,
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
        self.fill_after(core, plan, None, loader).await
    }

    /// [`ReadThrough::fill`] after a lookup the caller already made
    /// (`first`), so that it is not made twice.
    pub(crate) async fn fill_after<O, L, Fut, T, C, S>(
        &self,
        core: &Core,
        plan: FillPlan<'_, T, C, S>,
        first: Option<Looked<O::Value>>,
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
        let touch = match self.touch_ttl(core, plan.options) {
            Ok(t) => t,
            Err(e) => {
                core.record_error("read_through", &e);
                return core.run_loader(loader).await;
            }
        };
        let mut first = first;
        // When this caller started, for the values of flights it joins. Taken
        // after the first miss rather than on entry: a later instant only
        // makes the check stricter, and a hit never pays for it.
        let mut started = None;
        loop {
            if !force {
                let looked = match first.take() {
                    Some(looked) => looked,
                    None => {
                        self.lookup::<O::Value>(core, plan.key, plan.stored, touch, plan.options)
                            .await
                    }
                };
                match looked {
                    Looked::Hit { value, due: false } => return O::from_stored(value),
                    Looked::Hit { value, due: true } => {
                        return self.refresh_inline(core, plan, value, loader).await;
                    }
                    // The backend is failing: load, and ask nothing more of
                    // it, so that an outage costs one timeout.
                    Looked::Failed => return core.run_loader(loader).await,
                    Looked::Miss => {}
                }
            }
            let started = *started.get_or_insert_with(Instant::now);
            let lifetimes = match self.lifetimes(core, plan.options) {
                Ok(l) => l,
                Err(e) => {
                    core.record_error("read_through", &e);
                    return core.run_loader(loader).await;
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
                    if let Some(value) = decode::<O::Value>(core, plan.stored, bytes) {
                        core.counters.joins.add(1);
                        return O::from_stored(value);
                    }
                }
                Some(Produced::Failure(outcome)) => {
                    if let Some(outcome) = outcome.downcast_ref::<O>().and_then(&plan.share) {
                        core.counters.joins.add(1);
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

    /// The TTL a hit renews (sliding expiry), if the read asks for it.
    pub(crate) fn touch_ttl(
        &self,
        core: &Core,
        options: &FillOptions,
    ) -> crate::Result<Option<Duration>> {
        if options.refresh_on_hit {
            Ok(self.lifetimes(core, options)?.ttl)
        } else {
            Ok(None)
        }
    }

    pub(super) fn lifetimes(&self, core: &Core, options: &FillOptions) -> crate::Result<Lifetimes> {
        let fresh = core.resolve_ttl(options.ttl)?;
        let fresh_for = match fresh {
            Some(ttl) if options.refreshes() => {
                Some(options.early_ttl.map_or(ttl, |early| early.min(ttl)))
            }
            _ => None,
        };
        let ttl = match (fresh, options.stale_ttl) {
            (Some(ttl), Some(stale)) => Some(Error::check_ttl(ttl.saturating_add(stale))?),
            (ttl, _) => ttl,
        };
        Ok(Lifetimes { ttl, fresh_for })
    }

    /// The hit path. `touch`: the TTL to renew on a hit (sliding expiry).
    pub(crate) async fn lookup<V: DeserializeOwned>(
        &self,
        core: &Core,
        key: &str,
        stored: &str,
        touch: Option<Duration>,
        options: &FillOptions,
    ) -> Looked<V> {
        // The near cache holds the bytes (and maybe a decoded value of
        // another read's type): a hit there skips the round trip. Sliding
        // expiry needs the backend, so it skips the near cache.
        if let Some(near) = core.near.as_ref().filter(|_| touch.is_none())
            && near.holds(key, stored)
        {
            if let Some(bytes) = near.get_bytes(key) {
                let Some((value, header)) = core.decode_near(key, &bytes) else {
                    return Looked::Miss;
                };
                let due = options.refreshes() && due(header.as_ref(), options);
                return Looked::Hit { value, due };
            }
            if near.live() {
                let ticket = near.ticket();
                return match core.backend.get_entry(stored).await {
                    Ok(Some(entry)) => {
                        let Some(plain) = core.open_hit(key, stored, entry.value) else {
                            return Looked::Miss;
                        };
                        let Some((value, header)) = core.decode_opened(key, &plain) else {
                            return Looked::Miss;
                        };
                        let fresh_until = header.as_ref().and_then(|h| h.fresh_until);
                        near.fill(
                            key,
                            ticket,
                            plain,
                            None,
                            entry.expiry,
                            fresh_until,
                            &entry.tags,
                        );
                        let due = options.refreshes() && due(header.as_ref(), options);
                        Looked::Hit { value, due }
                    }
                    Ok(None) => missed(core, None),
                    Err(e) => missed(core, Some(e)),
                };
            }
        }
        let found = match touch {
            Some(ttl) if core.caps.touch => core.backend.get_and_touch(stored, ttl).await,
            _ => core.backend.get(stored).await,
        };
        match found {
            Ok(Some(bytes)) => {
                let Some((value, header)) = core.decode_hit_with_header(key, stored, &bytes) else {
                    return Looked::Miss;
                };
                if let Some(ttl) = touch.filter(|_| !core.caps.touch)
                    && let Err(e) = core.backend.expire(stored, ttl).await
                {
                    core.record_error("expire", &e);
                }
                let due = options.refreshes() && due(header.as_ref(), options);
                Looked::Hit { value, due }
            }
            Ok(None) => missed(core, None),
            Err(e) => missed(core, Some(e)),
        }
    }

    /// Run the load for this caller (and, with a slot, for those waiting on
    /// it), store what is worth storing, and leave in the slot what the
    /// waiters may use. `force`: overwrite whatever is there (a recache or a
    /// refresh).
    pub(super) async fn lead<O, L, Fut, T, C, S>(
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
                if let Some(value) = decode::<O::Value>(core, stored, &bytes) {
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
            // The backend is failing: load, and ask nothing more of it (no
            // lock, no store), so that an outage costs one timeout.
            Err(e) => {
                core.record_error("get", &e);
                None
            }
        };
        // A forced load (recache, refresh) overwrites what is there: the fill
        // lock would only find that value and skip the load. A refresh is
        // coordinated by its own claim.
        let lock = match options.lock && !force && token.is_some() {
            true => match self
                .fill_lock(core, key, stored, options.lock_timeout)
                .await
            {
                FillLock::Held(lock) => Some(lock),
                FillLock::Filled(bytes, read_from) => {
                    if let Some(value) = decode::<O::Value>(core, stored, &bytes) {
                        *slot = Some(Produced::Value(bytes, read_from));
                        return O::from_stored(value);
                    }
                    None
                }
                FillLock::GaveUp => None,
            },
            false => None,
        };
        let outcome = core.run_loader(loader).await;
        let load_time = load_started.elapsed();
        let target = Target {
            key: stored,
            options,
            mode,
        };
        // The store happens after this instant: callers that started before
        // it can take the stored value.
        let stored_from = Instant::now();
        let stored = self
            .store(
                core,
                &target,
                tags,
                condition,
                (lifetimes, load_time),
                &outcome,
                token,
            )
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
        (lifetimes, load_time): (&Lifetimes, Duration),
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
        let fresh_until = lifetimes.fresh_for.map(|d| SystemTime::now() + d);
        let plain = match codec::encode_timed(core.config.codec, value, fresh_until, load_time) {
            Ok(bytes) => bytes,
            Err(e) => {
                core.record_error("encode", &e);
                return Stored::Kept(None);
            }
        };
        // Over the size limit: not stored, but still given to the waiters.
        let encoded = match core.seal(target.key, plain.clone()) {
            Ok(bytes) => bytes,
            Err(e) => {
                core.record_error("set", &e);
                return Stored::Kept(Some(plain));
            }
        };
        let worth_storing = outcome.stored(target.options.cache_none).is_some()
            && outcome.subject().is_none_or(condition);
        let Some(token) = token.filter(|_| worth_storing) else {
            return Stored::Kept(Some(encoded));
        };
        let options = core.write_tags(target.key, &tags()).map(|tags| {
            crate::backend::WriteOptions::new()
                .ttl(core.jitter(lifetimes.ttl))
                .tags(tags)
                .mode(target.mode)
        });
        let options = match options {
            Ok(o) => o,
            Err(e) => {
                core.record_error("set", &e);
                return Stored::Kept(Some(encoded));
            }
        };
        let result = core
            .backend
            .set_filled(target.key, encoded.clone(), &options, token)
            .await;
        if let Some(near) = &core.near
            && let Some(key) = core.namespace.strip(target.key)
        {
            near.drop_keys(&[key]);
        }
        match result {
            Ok(FillStore::Stored) => {
                core.counters.sets.add(1);
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

/// Stored bytes of `stored` opened and decoded, or `None` (counted where
/// they were first read, by the lookup).
fn decode<T: DeserializeOwned>(core: &Core, stored: &str, bytes: &[u8]) -> Option<T> {
    let plain = core.open(stored, bytes).ok()?;
    codec::decode::<T>(&plain).ok().map(|(v, _)| v)
}

/// Whether a value with this header should be refreshed now: its fresh
/// window has passed, or probabilistic early expiration (XFetch) fires: with
/// `delta` the time the value took to load, refresh when
/// `now + delta * beta * -ln(rand) >= fresh_until`.
fn due(header: Option<&codec::Header>, options: &FillOptions) -> bool {
    let Some(fresh_until) = header.and_then(|h| h.fresh_until) else {
        return false;
    };
    let now = SystemTime::now();
    if now >= fresh_until {
        return true;
    }
    match (options.xfetch, header.and_then(|h| h.load_time)) {
        (Some(beta), Some(delta)) if beta > 0.0 => {
            // A uniform draw in (0, 1].
            let rand = ((crate::core::random_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            let ahead = delta.as_secs_f64() * beta * -rand.ln();
            Duration::try_from_secs_f64(ahead).is_ok_and(|ahead| now + ahead >= fresh_until)
        }
        _ => false,
    }
}

/// A lookup that found nothing (`None`) or failed (`Some`): a miss, and the
/// failure counted.
fn missed<V>(core: &Core, failure: Option<crate::Error>) -> Looked<V> {
    core.miss();
    match failure {
        None => Looked::Miss,
        Some(e) => {
            core.record_error("get", &e);
            Looked::Failed
        }
    }
}
