//! The request builders of [`Cache`](crate::Cache): `set`, `set_raw`, `incr`
//! and `read`. Each is configured by chained calls and runs when awaited (or
//! when `load` is called).

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

use crate::backend::{BoxFuture, SetMode};
use crate::core::Core;
use crate::error::{Error, Result};
use crate::options::{SetOptions, Ttl};
pub use crate::payload::{Payload, Raw, Typed};
use crate::read::{FillOptions, FillPlan, Looked};
use crate::shared::Shared;
use crate::stats::Op;

/// A pending `cache.set(key, &value)` (or `set_raw`); configure, then
/// `.await` it. Resolves to whether the value was written.
///
/// ```
/// # async fn demo(cache: larder_core::Cache) -> larder_core::Result<()> {
/// use std::time::Duration;
/// cache.set("user:42", &"Ada").ttl(Duration::from_secs(60)).tags(["user:42"]).await?;
/// let written = cache.set("lock:job", &1).if_absent().await?;
/// # let _ = written; Ok(()) }
/// ```
#[must_use = "a set does nothing until awaited"]
pub struct SetRequest<'a, P> {
    core: &'a Core,
    key: &'a str,
    value: P,
    options: SetOptions,
}

impl<'a, P> SetRequest<'a, P> {
    pub(crate) fn new(core: &'a Core, key: &'a str, value: P) -> Self {
        SetRequest {
            core,
            key,
            value,
            options: SetOptions::default(),
        }
    }

    /// See [`SetOptions::ttl`].
    pub fn ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.options = self.options.ttl(ttl);
        self
    }

    /// See [`SetOptions::no_expiry`].
    pub fn no_expiry(mut self) -> Self {
        self.options = self.options.no_expiry();
        self
    }

    /// See [`SetOptions::tags`].
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.options = self.options.tags(tags);
        self
    }

    /// See [`SetOptions::mode`].
    pub fn mode(mut self, mode: SetMode) -> Self {
        self.options = self.options.mode(mode);
        self
    }

    /// See [`SetOptions::if_absent`].
    pub fn if_absent(self) -> Self {
        self.mode(SetMode::IfAbsent)
    }

    /// See [`SetOptions::if_present`].
    pub fn if_present(self) -> Self {
        self.mode(SetMode::IfPresent)
    }

    /// Replace all options at once.
    pub fn options(mut self, options: SetOptions) -> Self {
        self.options = options;
        self
    }
}

impl<'a, P: Payload + Send + 'a> IntoFuture for SetRequest<'a, P> {
    type Output = Result<bool>;
    type IntoFuture = BoxFuture<'a, Result<bool>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.core.set(self.key, &self.value, &self.options).await })
    }
}

/// A pending `cache.incr(key, delta)`; optionally `.ttl(..)`, then `.await`
/// it. Resolves to the new value.
///
/// ```
/// # async fn demo(cache: larder_core::Cache) -> larder_core::Result<()> {
/// use std::time::Duration;
/// // A rate-limit counter: created with a one-minute life, in one step.
/// let n = cache.incr("rate:10.0.0.1", 1).ttl(Duration::from_secs(60)).await?;
/// # let _ = n; Ok(()) }
/// ```
#[must_use = "an incr does nothing until awaited"]
pub struct IncrRequest<'a> {
    core: &'a Core,
    key: &'a str,
    delta: i64,
    ttl: Ttl,
}

impl<'a> IncrRequest<'a> {
    pub(crate) fn new(core: &'a Core, key: &'a str, delta: i64) -> Self {
        IncrRequest {
            core,
            key,
            delta,
            ttl: Ttl::Never,
        }
    }

    /// The TTL a missing counter is created with, in the same atomic step as
    /// the increment (default: no expiry). An existing counter keeps its TTL.
    pub fn ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.ttl = ttl.into();
        self
    }
}

impl<'a> IntoFuture for IncrRequest<'a> {
    type Output = Result<i64>;
    type IntoFuture = BoxFuture<'a, Result<i64>>;

    fn into_future(self) -> Self::IntoFuture {
        let core = self.core;
        Box::pin(core.timed(Op::Incr, async move {
            let stored = core.key(self.key)?;
            let ttl = core.resolve_ttl(self.ttl)?;
            if self.delta < 0 && !core.caps.signed_counters {
                return Err(core.backend.unsupported("incr with a negative delta"));
            }
            let result = core.backend.incr(&stored, self.delta, ttl).await;
            core.near_drop(&[self.key]);
            core.observe("incr", result)
        }))
    }
}

/// A read-through lookup: `cache.read(key).ttl(..).tags(..).load(loader)`.
///
/// On a hit the loader does not run. On a miss, concurrent callers of the
/// same key on this cache (and its clones) share one run of the loader
/// (single-flight); the value is stored with the options given, unless the
/// key or one of its tags was invalidated while the loader ran. A cache
/// failure never fails the read: it is logged and counted, and the loader's
/// value is returned.
#[must_use = "a read does nothing until `load` is awaited"]
pub struct ReadRequest<'a> {
    shared: &'a Arc<Shared>,
    key: &'a str,
    tags: Vec<String>,
    fill: FillOptions,
}

impl<'a> ReadRequest<'a> {
    pub(crate) fn new(shared: &'a Arc<Shared>, key: &'a str) -> Self {
        ReadRequest {
            shared,
            key,
            tags: Vec::new(),
            fill: FillOptions::default(),
        }
    }

    /// See [`SetOptions::ttl`].
    pub fn ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.fill = self.fill.ttl(ttl);
        self
    }

    /// See [`SetOptions::no_expiry`].
    pub fn no_expiry(self) -> Self {
        self.ttl(Ttl::Never)
    }

    /// See [`SetOptions::tags`].
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.tags
            .extend(tags.into_iter().map(|t| t.as_ref().to_owned()));
        self
    }

    /// Load under a distributed lock, so that one process loads a cold key
    /// while the others wait (at most `lock_timeout`) for its value. If the
    /// lock cannot be taken because the backend is down, the load runs
    /// anyway.
    pub fn lock(mut self, lock: bool) -> Self {
        self.fill = self.fill.lock(lock);
        self
    }

    /// How long the fill lock is held at most, and how long the others wait
    /// (default 5 s).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.fill = self.fill.lock_timeout(timeout);
        self
    }

    /// Renew the TTL on every hit (sliding expiry), in the same step as the
    /// read where the backend can (see [`FillOptions::refresh_on_hit`]).
    pub fn refresh_on_hit(mut self, refresh: bool) -> Self {
        self.fill = self.fill.refresh_on_hit(refresh);
        self
    }

    /// Replace the fill settings at once (the TTL included).
    pub fn fill(mut self, fill: FillOptions) -> Self {
        self.fill = fill;
        self
    }

    /// Return the cached value, or run `loader`, store its `Ok` value and
    /// return it. Only errors of the loader, and an invalid key, are
    /// returned. Callers that shared a failed load get
    /// [`Error::SharedLoad`] converted into `E`; the caller that ran it gets
    /// the loader's own error.
    pub async fn load<T, E, F, Fut>(self, loader: F) -> std::result::Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let shared = self.shared;
        shared
            .core
            .timed(Op::Load, async move {
                let stored = self.shared.core.key(self.key)?;
                self.read_through(&stored, None, loader).await
            })
            .await
    }

    /// The read-through with this request's settings, after the lookup
    /// `first` when the caller made one.
    async fn read_through<T, E, F, Fut>(
        self,
        stored: &str,
        first: Option<Looked<T>>,
        loader: F,
    ) -> std::result::Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let key = self.key;
        // Callers that shared a failed load get an error of the loader's
        // type saying so; the caller that ran it gets the error itself.
        let share = |_: &std::result::Result<T, E>| {
            Some(Err(E::from(Error::SharedLoad {
                key: key.to_owned(),
                message: format!(
                    "the loader returned an error of type {}; the caller that ran it has it",
                    std::any::type_name::<E>()
                ),
            })))
        };
        let tags = self.tags;
        let plan = FillPlan {
            key,
            stored,
            tags: || tags,
            options: &self.fill,
            condition: |_: &T| true,
            share,
        };
        let shared = self.shared;
        shared
            .reads
            .fill_after(&shared.core, plan, first, loader)
            .await
    }

    /// [`ReadRequest::load`] with an owned loader: when a value's fresh
    /// window has passed (`early_ttl`, `stale_ttl`, `xfetch`), every caller
    /// gets the current value at once and one refresh runs on a spawned
    /// task (`load` refreshes inline instead, in the caller that claims the
    /// refresh, since a borrowed loader cannot move to another task).
    /// Outside a tokio runtime it behaves as `load`.
    pub async fn load_owned<T, E, F, Fut>(self, loader: F) -> std::result::Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        E: From<Error> + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
    {
        let shared = self.shared;
        shared
            .core
            .timed(Op::Load, self.load_owned_untimed(loader))
            .await
    }

    async fn load_owned_untimed<T, E, F, Fut>(self, loader: F) -> std::result::Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        E: From<Error> + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
    {
        let shared = self.shared;
        let core = &shared.core;
        let stored = core.key(self.key)?;
        let touch = match shared.reads.touch_ttl(core, &self.fill) {
            Ok(t) => t,
            Err(e) => {
                core.record_error("read_through", &e);
                return core.run_loader(loader).await;
            }
        };
        let looked = shared
            .reads
            .lookup::<T>(core, self.key, &stored, touch, &self.fill)
            .await;
        let looked = match looked {
            Looked::Hit { value, due: true } => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    if let Some(claim) = shared
                        .reads
                        .claim(core, self.key, &stored, &self.fill)
                        .await
                    {
                        let background = shared.clone();
                        let (key, tags, fill) = (self.key.to_owned(), self.tags, self.fill);
                        runtime.spawn(async move {
                            let core = &background.core;
                            let plan = FillPlan {
                                key: &key,
                                stored: &stored,
                                tags: || tags,
                                options: &fill,
                                condition: |_: &T| true,
                                share: |_: &std::result::Result<T, E>| None,
                            };
                            let _ = background.reads.refresh(core, plan, loader).await;
                            claim.release(core).await;
                        });
                    }
                    return Ok(value);
                }
                Err(_) => Looked::Hit { value, due: true },
            },
            other => other,
        };
        self.read_through(&stored, Some(looked), loader).await
    }

    /// Refresh a value once its fresh window passes, this long after it is
    /// stored (at most the TTL); see [`FillOptions::early_ttl`].
    pub fn early_ttl(mut self, window: Duration) -> Self {
        self.fill = self.fill.early_ttl(window);
        self
    }

    /// Keep values this long past their TTL, to serve them stale while a
    /// refresh runs or fails; see [`FillOptions::stale_ttl`].
    pub fn stale_ttl(mut self, window: Duration) -> Self {
        self.fill = self.fill.stale_ttl(window);
        self
    }

    /// Probabilistic early expiration; see [`FillOptions::xfetch`].
    pub fn xfetch(mut self, beta: f64) -> Self {
        self.fill = self.fill.xfetch(beta);
        self
    }
}
