//! The in-process backend of larder.
//!
//! - Bounded by entry count and optionally by bytes.
//! - S3-FIFO eviction: scan-resistant, at least as good a hit rate as LRU,
//!   and reads take only a shared lock.
//! - Exact TTL: an expired entry is never returned.
//! - A tag index kept clean on delete, eviction and expiry.
//! - Glob pattern delete and scan; token-checked locks.
//! - No background thread: expired entries are removed by writes.
//!
//! ```
//! # async fn demo() -> larder_core::Result<()> {
//! use larder_core::Cache;
//! use larder_memory::MemoryBackend;
//!
//! let cache = Cache::builder()
//!     .backend(MemoryBackend::builder().max_entries(100_000).build())
//!     .prefix("svc")
//!     .build()?;
//! cache.set("user:1", &"Ada").await?;
//! # Ok(()) }
//! ```

mod backend;
mod config;
mod store;

pub use backend::{MemoryBackend, SyncMemory};
pub use config::MemoryConfig;
