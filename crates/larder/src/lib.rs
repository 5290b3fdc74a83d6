//! # larder
//!
//! An async cache for Rust services: one typed API over memory, Redis,
//! Memcached, SQLite and sled, with tags and pattern invalidation, key
//! namespacing and versioning, single-flight loads, and configuration from
//! a file and the environment.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> larder::Result<()> {
//! use std::time::Duration;
//!
//! let cache = larder::open("mem://?max_entries=10000").await?;
//! cache.set("user:1", &"Ada").ttl(Duration::from_secs(60)).tags(["users"]).await?;
//! assert_eq!(cache.get::<String>("user:1").await?.as_deref(), Some("Ada"));
//!
//! cache.invalidate_tag("users").await?;
//! assert_eq!(cache.get::<String>("user:1").await?, None);
//! # Ok(()) }
//! ```
//!
//! ## Cargo features
//!
//! | feature | what it adds |
//! |---|---|
//! | `memory` (default) | the in-process backend, `mem://` |
//! | `macros` (default) | `#[cache_read]` and `#[cache_write]` |
//! | `redis` | the Redis backend: `redis://`, `rediss://`, `redis+sentinel://`, `redis+cluster://` |
//! | `memcached` | the Memcached backend: `memcached://h1:11211,h2:11211*3` |
//! | `sqlite` | the SQLite backend (bundled): `sqlite://path/to/cache.db` |
//! | `sled` | the sled backend: `sled://path/to/dir` |
//! | `axum` | [`axum`]: a response cache layer with ETags, a health handler, serving with the cache's lifecycle |
//! | `prometheus`, `statsd` | `exporters`: metrics exporters |
//! | `msgpack` | the MessagePack codec |
//! | `postcard` | the postcard codec |
//! | `bincode` | the bincode 2.x codec (unmaintained upstream; prefer postcard) |
//!
//! Until a backend's feature is enabled, a URL of its scheme is an error
//! that names the feature.

#[doc(inline)]
pub use larder_core::{
    Backend, Blocking, BlockingBackend, BoxFuture, Cache, CacheBuilder, CacheConfig, CacheEntry,
    Capabilities, Codec, Count, Entry, Error, Expiry, FillGuard, FillStore, FillToken, FuzzyMatch,
    FuzzyOptions, HealthReport, HealthStatus, IncrRequest, Invalidation, InvalidationStream,
    KeyTtl, Lock, MAX_FILL_AGE, MAX_TTL, OperationLatency, ReadRequest, Result, RouteConfig,
    RouteFailure, RouteHealth, Router, RouterBuilder, SetMode, SetOptions, SetRequest, Stats, Ttl,
    TtlBucket, WriteOptions,
};
#[doc(inline)]
pub use larder_core::{CircuitState, Fallback, ResilienceConfig, Resilient};
#[doc(inline)]
pub use larder_core::{InvalidationEvent, NearConfig, NearStats, near};
#[doc(inline)]
pub use larder_core::{KeyRing, SecretKey, SecurityConfig, seal};
#[doc(inline)]
pub use larder_core::{
    codec, config, frame, glob, key, metric_names, migrate, request, resilient, sync, url,
};

#[cfg(feature = "memory")]
#[doc(inline)]
pub use larder_memory::{MemoryBackend, MemoryConfig, SyncMemory};

#[cfg(feature = "redis")]
#[doc(inline)]
pub use larder_redis::{RedisBackend, RedisConfig};

#[cfg(feature = "memcached")]
#[doc(inline)]
pub use larder_memcached::{MemcachedBackend, MemcachedConfig};

#[cfg(feature = "sqlite")]
#[doc(inline)]
pub use larder_sqlite::{SqliteBackend, SqliteConfig};

#[cfg(feature = "sled")]
#[doc(inline)]
pub use larder_sled::{SledBackend, SledConfig};

#[cfg(feature = "macros")]
#[doc(inline)]
pub use larder_macros::{cache_read, cache_write};

/// The axum integration (feature `axum`): [`axum::ResponseCacheLayer`],
/// [`axum::health`], [`axum::serve`]. See `docs/axum.md`.
#[cfg(feature = "axum")]
pub use larder_axum as axum;

#[doc(inline)]
pub use larder_core::{
    FillOptions, Outcome, Plain, Resource, install, installed, recache, resource,
};

#[doc(hidden)]
pub mod __private;
#[cfg(any(feature = "prometheus", feature = "statsd"))]
pub mod exporters;
mod open;

pub use open::{DEFAULT_URL, connect, from_env, open, open_backend};

/// The README and the guide pages, compiled and run as doc tests so they
/// stay true to the code.
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../../../README.md")]
    struct Readme;
    #[doc = include_str!("../../../docs/configuration.md")]
    struct Configuration;
    #[doc = include_str!("../../../docs/keys-and-tags.md")]
    struct KeysAndTags;
    #[doc = include_str!("../../../docs/caching.md")]
    struct Caching;
    #[doc = include_str!("../../../docs/backends/memory.md")]
    struct MemoryBackend;
    #[doc = include_str!("../../../docs/attributes.md")]
    struct Attributes;
    #[doc = include_str!("../../../docs/routing.md")]
    struct Routing;
    #[doc = include_str!("../../../docs/resilience.md")]
    struct Resilience;
    #[doc = include_str!("../../../docs/backends.md")]
    struct Backends;
    #[cfg(all(feature = "prometheus", feature = "statsd"))]
    #[doc = include_str!("../../../docs/observability.md")]
    struct Observability;
    #[cfg(all(feature = "axum", feature = "memory"))]
    #[doc = include_str!("../../../docs/axum.md")]
    struct Axum;
}
