//! The core of [larder](https://docs.rs/larder): the byte-level [`Backend`]
//! trait every store implements, the typed [`Cache`] handle, codecs and the
//! value envelope, keys and namespaces, single-flight, and configuration.
//!
//! Most users depend on the `larder` facade crate, which re-exports all of
//! this and adds the backends. Backend authors depend on this crate alone;
//! `docs/backends/writing-a-backend.md` is their guide.
//!
//! ```
//! # async fn demo(cache: larder_core::Cache) -> larder_core::Result<()> {
//! use std::time::Duration;
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct User { id: u64, name: String }
//!
//! cache.set("user:1", &User { id: 1, name: "Ada".into() })
//!     .ttl(Duration::from_secs(60))
//!     .tags(["users"])
//!     .await?;
//! let user: Option<User> = cache.get("user:1").await?;
//! cache.invalidate_tag("users").await?;
//! # let _ = user; Ok(()) }
//! ```

mod backend;
mod cache;
pub mod codec;
pub mod config;
mod core;
mod error;
mod flight;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
mod fuzzy;
pub mod glob;
mod global;
pub mod key;
mod lock;
pub mod migrate;
pub mod near;
mod options;
mod payload;
mod read;
pub mod recache;
pub mod request;
pub mod resilient;
pub mod resource;
mod router;
pub mod seal;
mod shared;
mod stats;
pub mod sync;
pub mod url;

use std::time::Duration;

pub use backend::{
    Backend, Blocking, BlockingBackend, BoxFuture, Capabilities, Count, Entry, Expiry, FillGuard,
    FillStore, FillToken, HealthReport, HealthStatus, Invalidation, InvalidationEvent,
    InvalidationStream, KeyTtl, RouteHealth, SetMode, WriteOptions,
};
pub use cache::{Cache, CacheBuilder, CacheEntry};
pub use codec::Codec;
pub use config::{CacheConfig, RouteConfig, TtlBucket};
pub use error::{Error, Result, RouteFailure};
pub use fuzzy::{FuzzyMatch, FuzzyOptions, fuzzy_score};
pub use global::{install, installed, warn_uninstalled};
pub use lock::Lock;
pub use migrate::migrate;
pub use near::{NearConfig, NearStats};
pub use options::{SetOptions, Ttl};
pub use read::{FillOptions, Outcome, Plain};
pub use request::{IncrRequest, ReadRequest, SetRequest};
pub use resilient::{CircuitState, Fallback, ResilienceConfig, Resilient};
pub use resource::Resource;
pub use router::{Router, RouterBuilder};
pub use seal::{KeyRing, SecretKey, SecurityConfig};
pub use stats::{OperationLatency, Stats, names as metric_names};

pub use config::MAX_TTL;

#[doc(hidden)]
pub use bytes as __bytes;

/// The longest a read-through load may run and still store its value: a
/// load that takes longer is returned to its caller but not stored, since
/// invalidations older than this are no longer remembered by the backend.
pub const MAX_FILL_AGE: Duration = Duration::from_secs(60);
