//! The byte-level storage contract every backend implements.
//!
//! A backend knows bytes, keys, TTLs and tags: nothing about serde,
//! templates or functions. Keys and tags arrive fully namespaced
//! (`svc:v1:user:42`). The trait is object-safe so a
//! [`Cache`](crate::Cache) can hold an `Arc<dyn Backend>` chosen at run time
//! from a URL.
//!
//! # The rules (contract v2)
//!
//! - **Futures are lazy.** An operation does its work when the returned
//!   future is polled, never when it is built: a timeout or circuit breaker
//!   that builds a future and drops it unpolled has changed nothing. The
//!   conformance suite builds and drops every operation's future and checks
//!   that the store is unchanged. (Once polled, an operation may complete
//!   even if its future is then dropped.)
//! - **TTLs are bounded.** A TTL is at most [`MAX_TTL`](crate::MAX_TTL); a
//!   backend answers a longer one (or zero) with
//!   [`Error::InvalidTtl`] and writes nothing. The cache checks first, so
//!   this only matters to direct callers.
//! - **Counts may be unknown.** `invalidate_tags`, `delete_matching` and
//!   `clear` return [`Count::Unknown`] where the backend cannot count,
//!   never a made-up 0.
//! - **Capabilities tell the truth.** [`Capabilities::none`] is the
//!   starting point; what a backend does not claim answers
//!   [`Error::Unsupported`] (see [`Backend::unsupported`]).
//! - **Tags ride with the value** where the backend has no native index: the
//!   shared frame format is [`crate::frame`].
//! - **Read-through stores are guarded**: [`Backend::begin_fill`] and
//!   [`Backend::set_filled`] let a store be refused when an invalidation
//!   happened while the load ran (see [`FillGuard`]).
//! - **`close` flushes** what was acknowledged and releases connections and
//!   files.
//! - **Synchronous clients** implement [`BlockingBackend`] and run behind
//!   [`Blocking`], off the async workers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};

mod blocking;
mod capabilities;
mod forward;
mod invalidation;
mod types;

pub use blocking::{Blocking, BlockingBackend};
pub use capabilities::{Capabilities, FillGuard};
pub use invalidation::{Invalidation, InvalidationEvent, InvalidationStream};
pub use types::{
    Count, Entry, Expiry, FillStore, FillToken, HealthReport, HealthStatus, KeyTtl, RouteHealth,
    SetMode, WriteOptions,
};

/// A boxed, `Send` future: the return type of every [`Backend`] operation.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The storage contract. See the module docs for the rules every
/// implementation follows.
///
/// Required operations are the ones every cache needs; the rest have default
/// implementations: batches fall back to one call per key, optional features
/// answer [`Error::Unsupported`], and the fill guard falls back to an
/// unguarded store. Override a default when the backend can do better (a
/// pipelined batch, an atomic guard).
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// The backend kind, for errors and metric labels (`memory`, `redis`).
    fn kind(&self) -> &'static str;

    /// This instance's label for routes, metrics and health reports
    /// (`redis@sessions:6380`). Defaults to the kind. Never holds a secret.
    fn label(&self) -> &str {
        self.kind()
    }

    /// What this backend does.
    fn capabilities(&self) -> Capabilities;

    /// The live value under `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>>;

    /// The live entry under `key`: its value (as `get` returns it), its
    /// remaining life and its tags.
    fn get_entry<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>>>;

    /// Live values of `keys`, in the same order, `None` for missing ones.
    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(self.get(key).await?);
            }
            Ok(out)
        })
    }

    /// The live value under `key`, whose TTL is renewed to `ttl` in the same
    /// step (sliding expiry). Needs [`Capabilities::touch`].
    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Bytes>>> {
        let _ = (key, ttl);
        Box::pin(async move { Err(self.unsupported("get_and_touch")) })
    }

    /// The live value under `key`, deleted in the same step (Redis
    /// `GETDEL`). Needs [`Capabilities::get_delete`].
    fn get_delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        let _ = key;
        Box::pin(async move { Err(self.unsupported("get_delete")) })
    }

    /// Store `value` under `key`. Returns whether it was written (a set in
    /// `IfAbsent` / `IfPresent` mode may decline).
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Store several values with the same options, each honouring the mode;
    /// returns how many were written.
    fn set_many<'a>(
        &'a self,
        entries: &'a [(String, Bytes)],
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut written = 0;
            for (key, value) in entries {
                written += u64::from(self.set(key, value.clone(), options).await?);
            }
            Ok(written)
        })
    }

    /// Delete `keys`; returns how many held a live value.
    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>>;

    /// Whether `key` holds a live value.
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>>;

    /// Give a live key a new TTL. Returns `false` when the key is missing.
    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>>;

    /// Remaining life of `key`. A backend that cannot read TTLs back
    /// answers [`Error::Unsupported`].
    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>>;

    /// Add `delta` to the decimal integer under `key` and return the new
    /// value, in one atomic step. A missing key counts as 0 and is created
    /// with `ttl` (no expiry when `None`); an existing key keeps its TTL. A
    /// value that is not a decimal integer is [`Error::NotAnInteger`]. A
    /// negative `delta` needs [`Capabilities::signed_counters`].
    fn incr<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>>;

    /// Delete every key carrying any of `tags`; returns how many live keys
    /// were deleted, when the backend can tell. Costs O(keys in the tags).
    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<Count>>;

    /// Up to `limit` live keys carrying `tag`. Needs
    /// [`Capabilities::tag_listing`].
    fn tag_members<'a>(&'a self, tag: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        let _ = (tag, limit);
        Box::pin(async move { Err(self.unsupported("tag_members")) })
    }

    /// Delete live keys matching the glob `pattern` (see [`crate::glob`]);
    /// returns how many. Needs [`Capabilities::scan`].
    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<Count>> {
        let _ = pattern;
        Box::pin(async move { Err(self.unsupported("delete_matching")) })
    }

    /// Up to `limit` live keys matching the glob `pattern`, each once.
    /// Needs [`Capabilities::scan`].
    fn scan<'a>(&'a self, pattern: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        let _ = (pattern, limit);
        Box::pin(async move { Err(self.unsupported("scan")) })
    }

    /// Delete every key and tag whose name starts with `prefix` (a cache's
    /// own namespace, `svc:v1:`); returns how many keys.
    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Count>>;

    /// Take the lock `key` for `ttl` if it is free (never taken, released,
    /// or expired), recording `token` as the holder. Returns whether it was
    /// taken. Needs [`Capabilities::locks`].
    fn lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        let _ = (key, token, ttl);
        Box::pin(async move { Err(self.unsupported("lock")) })
    }

    /// Release the lock `key` if `token` still holds it. Returns whether it
    /// was released.
    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<bool>> {
        let _ = (key, token);
        Box::pin(async move { Err(self.unsupported("unlock")) })
    }

    /// Start a read-through fill of `key`: the live value if there is one,
    /// and a token to store the loaded value with
    /// ([`Backend::set_filled`]). The default reads the key and hands out a
    /// token that guards nothing.
    fn begin_fill<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(Option<Bytes>, FillToken)>> {
        Box::pin(async move { Ok((self.get(key).await?, FillToken::new(0))) })
    }

    /// Store a loaded value, unless the key, one of `options.tags` or the
    /// key's namespace was invalidated after `token` was taken (then
    /// [`FillStore::Refused`]), or `options.mode` declines. With
    /// [`FillGuard::Atomic`] the check and the store are one step. The
    /// default stores unguarded.
    fn set_filled<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
        token: FillToken,
    ) -> BoxFuture<'a, Result<FillStore>> {
        let _ = token;
        Box::pin(async move {
            Ok(if self.set(key, value, options).await? {
                FillStore::Stored
            } else {
                FillStore::Declined
            })
        })
    }

    /// Probe the backend.
    fn health(&self) -> BoxFuture<'_, Result<HealthReport>>;

    /// Flush what was acknowledged and release connections and files. Later
    /// operations may fail. The default does nothing.
    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Entries evicted to respect the backend's bounds, when the backend
    /// counts them locally.
    fn evictions(&self) -> Option<u64> {
        None
    }

    /// Whether this backend already bounds what an outage costs and keeps
    /// the invalidations it could not make, to replay them (the
    /// [`Resilient`](crate::Resilient) layer, or a router whose shared routes
    /// are each wrapped in it). A cache does not wrap such a backend again,
    /// and lets a failed invalidation pass (fail-open) only over one. The
    /// default is `false`.
    fn journals_invalidations(&self) -> bool {
        false
    }

    /// A subscription to what changes in the backend, for near caches.
    /// `None` when the backend offers none (see
    /// [`Capabilities::invalidation_stream`]).
    fn invalidations(&self) -> Option<InvalidationStream> {
        None
    }

    /// The [`Error::Unsupported`] error for `operation` on this backend.
    fn unsupported(&self, operation: &'static str) -> Error {
        Error::Unsupported {
            backend: self.kind(),
            operation,
        }
    }
}
