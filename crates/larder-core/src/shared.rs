//! [`Shared`]: what every clone of a [`Cache`](crate::Cache) shares, and what
//! a background refresh holds on to while it runs.

use crate::core::Core;
use crate::read::ReadThrough;

pub(crate) struct Shared {
    pub(crate) core: Core,
    pub(crate) reads: ReadThrough,
    /// Whether the cache was given the only handle on its backend, and so
    /// closes it when dropped.
    pub(crate) owns_backend: bool,
}

impl Drop for Shared {
    /// Close the backend when the cache was given the only handle on it
    /// (`CacheBuilder::backend`, or an `Arc` no one else held; what
    /// `larder::open` and `larder::connect` build) and a runtime is at hand
    /// to run the close on. Otherwise the backend's own drop releases it;
    /// call [`Cache::close`](crate::Cache::close) to be sure writes are
    /// flushed.
    fn drop(&mut self) {
        if !self.owns_backend {
            return;
        }
        let backend = self.core.backend.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = backend.close().await {
                    tracing::warn!(backend = backend.label(), "larder: closing failed: {e}");
                }
            });
        }
    }
}
