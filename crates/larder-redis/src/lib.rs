//! The Redis backend of larder, on [fred](https://docs.rs/fred).
//!
//! - Standalone (`redis://`, `rediss://`), Sentinel (`redis+sentinel://`)
//!   and Cluster (`redis+cluster://`); ACL users, database index, TLS with
//!   the system roots or a given CA.
//! - A connection pool with connect and command timeouts, reconnect with
//!   exponential backoff, TCP keepalive.
//! - Tags as sorted sets scored by member expiry: a set and its tags change
//!   in one atomic script, a tag set lives exactly as long as its
//!   longest-lived member, invalidation costs O(keys in the tag).
//! - Patterns and `clear` with `SCAN` and `UNLINK`: never `KEYS`, never
//!   `FLUSHDB`/`FLUSHALL`.
//! - Cluster-safe: no multi-key command spans slots.
//! - Near-cache coherence: every write and invalidation is published on the
//!   namespace's channel (`larder:inv:<prefix>:<version>:`), and
//!   [`Backend::invalidations`](larder_core::Backend::invalidations) follows
//!   them on a dedicated subscriber connection.
//!
//! See `docs/backends/redis.md` for URLs, ACL grants and server settings.

mod backend;
mod batch;
mod config;
mod connection;
mod error;
mod fill;
mod invalidation;
mod scan;
mod scripts;
mod tags;

pub use backend::{REQUIRED_COMMANDS, RedisBackend};
pub use config::{RedisConfig, SCHEMES, Topology};
#[doc(hidden)]
pub use scripts::tag_set_key;
