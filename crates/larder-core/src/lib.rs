//! The core of [larder](https://docs.rs/larder): the byte-level [`Backend`]
//! trait every store implements, the typed [`Cache`] handle, codecs and the
//! value envelope, keys and namespaces, single-flight, and configuration.
//!
//! Most users depend on the `larder` facade crate, which re-exports all of
//! this and adds the backends. Backend authors depend on this crate alone.
//!
//! ```
//! # async fn demo(cache: larder_core::Cache) -> larder_core::Result<()> {
//! use std::time::Duration;
//! #[derive(serde::Serialize, serde::Deserialize)]
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
mod error;
mod flight;
pub mod glob;
mod global;
pub mod key;
mod options;
mod read;
pub mod recache;
pub mod resource;
mod stats;
pub mod url;

pub use backend::{Backend, BoxFuture, Capabilities, HealthReport, KeyTtl, SetMode, WriteOptions};
pub use cache::{Cache, CacheBuilder, FuzzyMatch, FuzzyOptions, Lock, fuzzy_score};
pub use codec::Codec;
pub use config::{CacheConfig, TtlBucket};
pub use error::{Error, Result};
pub use global::{install, installed, warn_uninstalled};
pub use options::{ReadRequest, SetOptions, SetRequest, Ttl};
pub use read::{FillOptions, Outcome, Plain};
pub use resource::Resource;
pub use stats::Stats;
