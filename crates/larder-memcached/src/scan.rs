//! Patterns, scans and `clear`.
//!
//! Memcached has no command that lists its keys (`stats cachedump` shows
//! a sample per slab class, for debugging), so `scan`, `delete_matching` and
//! `tag_members` answer [`Error::Unsupported`], as the capabilities say
//! (`scan: false`, `tag_listing: false`).
//!
//! `clear` bumps the namespace's version on every server instead of
//! deleting anything: every entry written under the old version reads as
//! a miss from then on and is evicted by memcached in time. It cannot tell
//! how many entries that was: [`Count::Unknown`]. Only whole namespaces
//! (`prefix:version:`, what a `Cache` clears) can be cleared this way.

use larder_core::{Count, Error, Result};

use crate::connection::Cluster;
use crate::error::BACKEND;
use crate::item;
use crate::tags::Invalidation;

/// The answer to `scan` and `delete_matching`.
pub(crate) fn unsupported(operation: &'static str) -> Error {
    Error::Unsupported {
        backend: BACKEND,
        operation,
    }
}

/// Make every entry of the namespace `prefix` stale, on every server.
pub(crate) fn clear(cluster: &Cluster, prefix: &str) -> Result<Count> {
    if !item::is_namespace(prefix) {
        return Err(Error::invalid_key(
            prefix,
            "memcached clears whole namespaces only, `prefix:version:` (what a Cache clears): \
             it cannot list keys to delete anything narrower",
        ));
    }
    Invalidation {
        epochs: vec![prefix.to_owned()],
        tag_versions: Vec::new(),
        ns_versions: vec![item::ns_version_key(prefix)],
    }
    .run(cluster, "clear")
}
