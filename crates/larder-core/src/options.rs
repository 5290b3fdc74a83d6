//! Write options and the request builders of [`Cache`](crate::Cache).

use std::future::{Future, IntoFuture};
use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

use crate::backend::{BoxFuture, SetMode};
use crate::cache::Cache;
use crate::config::TtlBucket;
use crate::error::{Error, Result};
use crate::read::FillOptions;

/// How long a written value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ttl {
    /// The cache's default TTL.
    #[default]
    Default,
    /// A TTL bucket from the configuration.
    Bucket(TtlBucket),
    /// Exactly this long.
    Fixed(Duration),
    /// No expiry: the value lives until deleted or evicted.
    Never,
}

impl From<Duration> for Ttl {
    fn from(d: Duration) -> Self {
        Ttl::Fixed(d)
    }
}

impl From<TtlBucket> for Ttl {
    fn from(b: TtlBucket) -> Self {
        Ttl::Bucket(b)
    }
}

/// Options of a write: TTL, tags and mode. Used by `set`, `set_many` and
/// `read(..).load(..)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetOptions {
    pub(crate) ttl: Ttl,
    pub(crate) tags: Vec<String>,
    pub(crate) mode: SetMode,
}

impl SetOptions {
    /// Default TTL, no tags, always write.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the TTL: a `Duration`, a [`TtlBucket`] or a [`Ttl`].
    pub fn ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.ttl = ttl.into();
        self
    }

    /// Store without expiry.
    pub fn no_expiry(self) -> Self {
        self.ttl(Ttl::Never)
    }

    /// Add tags. A re-set replaces the key's tags with the new set.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.tags
            .extend(tags.into_iter().map(|t| t.as_ref().to_owned()));
        self
    }

    /// Add one tag.
    pub fn tag(mut self, tag: impl AsRef<str>) -> Self {
        self.tags.push(tag.as_ref().to_owned());
        self
    }

    /// Write mode.
    pub fn mode(mut self, mode: SetMode) -> Self {
        self.mode = mode;
        self
    }

    /// Write only when the key is absent.
    pub fn if_absent(self) -> Self {
        self.mode(SetMode::IfAbsent)
    }

    /// Write only when the key is present.
    pub fn if_present(self) -> Self {
        self.mode(SetMode::IfPresent)
    }
}

/// A pending `cache.set(key, &value)`; configure, then `.await` it. Resolves
/// to whether the value was written.
///
/// ```
/// # async fn demo(cache: larder_core::Cache) -> larder_core::Result<()> {
/// use std::time::Duration;
/// cache.set("user:42", &"Ada").ttl(Duration::from_secs(60)).tags(["user:42"]).await?;
/// let written = cache.set("lock:job", &1).if_absent().await?;
/// # let _ = written; Ok(()) }
/// ```
#[must_use = "a set does nothing until awaited"]
pub struct SetRequest<'a, T: ?Sized> {
    pub(crate) cache: &'a Cache,
    pub(crate) key: &'a str,
    pub(crate) value: &'a T,
    pub(crate) options: SetOptions,
}

impl<T: ?Sized> SetRequest<'_, T> {
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

impl<'a, T: Serialize + Sync + ?Sized> IntoFuture for SetRequest<'a, T> {
    type Output = Result<bool>;
    type IntoFuture = BoxFuture<'a, Result<bool>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.cache
                .set_with(self.key, self.value, &self.options)
                .await
        })
    }
}

/// A read-through lookup: `cache.read(key).ttl(..).tags(..).load(loader)`.
///
/// On a hit the loader does not run. On a miss, concurrent callers of the
/// same key share one run of the loader (single-flight); the value is stored
/// with the options given. A cache failure never fails the read: it is
/// logged and counted, and the loader's value is returned.
#[must_use = "a read does nothing until `load` is awaited"]
pub struct ReadRequest<'a> {
    cache: &'a Cache,
    key: &'a str,
    options: SetOptions,
    fill: FillOptions,
}

impl<'a> ReadRequest<'a> {
    pub(crate) fn new(cache: &'a Cache, key: &'a str) -> Self {
        ReadRequest {
            cache,
            key,
            options: SetOptions::default(),
            fill: FillOptions::default(),
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

    /// Load under a distributed lock, so that one process loads a cold key
    /// while the others wait (at most `lock_timeout`) for its value. If the
    /// lock cannot be taken because the backend is down, the load runs
    /// anyway.
    pub fn lock(mut self, lock: bool) -> Self {
        self.fill.lock = lock;
        self
    }

    /// How long the fill lock is held at most, and how long the others wait
    /// (default 5 s).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.fill.lock_timeout = timeout;
        self
    }

    /// Replace the fill settings at once.
    pub fn fill(mut self, fill: FillOptions) -> Self {
        self.fill = fill;
        self
    }

    /// Return the cached value, or run `loader`, store its `Ok` value and
    /// return it. Only errors of the loader, and an invalid key, are
    /// returned.
    pub async fn load<T, E, F, Fut>(self, loader: F) -> std::result::Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send,
        E: From<Error>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let cache = self.cache;
        let stored = cache.namespace().key(self.key)?;
        let options = self.options;
        cache
            .fill(
                self.key,
                &stored,
                || cache.write_options(&options),
                &self.fill,
                |_| true,
                loader,
            )
            .await
    }
}
