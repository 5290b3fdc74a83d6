//! The process-wide cache used by attributes that do not name one.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::Cache;

static INSTALLED: OnceLock<Cache> = OnceLock::new();
static WARNED: AtomicBool = AtomicBool::new(false);

/// Install `cache` as the process-wide cache for `#[cache_read]` and
/// `#[cache_write]` without a `cache = ...` argument. Only the first call
/// installs; a later one gets its cache back as `Err`.
pub fn install(cache: Cache) -> Result<(), Cache> {
    INSTALLED.set(cache)
}

/// The installed cache, if any.
pub fn installed() -> Option<&'static Cache> {
    INSTALLED.get()
}

/// Log, once per process, that a cached function ran uncached.
#[doc(hidden)]
pub fn warn_uninstalled(function: &str) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            function,
            "larder: no cache installed and no `cache = ...` given; cached functions run uncached \
             (call larder::install(cache) at startup)"
        );
    }
}
