//! Test support for larder backends: the conformance suite every backend
//! passes, and (for networked backends) real servers started on free
//! loopback ports and stopped on drop, with a fault-injecting proxy
//! ([`proxy::FaultProxy`]) to put between a client and such a server.
//!
//! A backend crate runs the whole suite with one line in a test file:
//!
//! ```text
//! larder_testkit::conformance_suite!(my_backend::TestFactory::default());
//! ```
//!
//! Each case becomes its own `#[test]`, named after the case, so a failure
//! names the behaviour that broke. The factory expression is evaluated once
//! per test.

// Test support: a failed expectation here is a test failure, so panicking
// on it is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use larder_core::{Backend, BoxFuture, Cache};

pub mod cases;
pub mod proxy;
/// Real Redis servers for tests: plain, with TLS, with ACL users, a
/// Sentinel set and a Cluster.
pub mod redis;

/// What a backend crate supplies to run the conformance suite.
pub trait Factory: Send + Sync + 'static {
    /// A backend for one test. It may share a server with other tests: each
    /// test works in its own namespace.
    fn backend(&self) -> BoxFuture<'_, Arc<dyn Backend>>;

    /// A backend that holds at most about `max_entries` entries and evicts
    /// beyond that, for the eviction cases. It must not be shared with other
    /// tests.
    fn bounded(&self, max_entries: usize) -> BoxFuture<'_, Arc<dyn Backend>>;
}

/// One test's view of the backend under test.
pub struct Harness {
    factory: Box<dyn Factory>,
    backend: Arc<dyn Backend>,
    prefix: String,
}

impl Harness {
    /// Set up a test over `factory`'s backend.
    pub async fn new(factory: impl Factory) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let backend = factory.backend().await;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Harness {
            factory: Box::new(factory),
            backend,
            prefix: format!("t{}-{n}-{nanos:x}", std::process::id()),
        }
    }

    /// The backend under test.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// A cache over the backend in this test's own namespace.
    pub fn cache(&self) -> Cache {
        self.cache_in("v1")
    }

    /// A cache in this test's prefix with another version.
    pub fn cache_in(&self, version: &str) -> Cache {
        self.builder().version(version).build().unwrap()
    }

    /// A builder preset with the backend and this test's prefix.
    pub fn builder(&self) -> larder_core::CacheBuilder {
        Cache::builder()
            .backend_arc(self.backend.clone())
            .prefix(self.prefix.clone())
    }

    /// This test's key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A cache over a fresh bounded backend (see [`Factory::bounded`]).
    pub async fn bounded_cache(&self, max_entries: usize) -> Cache {
        let backend = self.factory.bounded(max_entries).await;
        Cache::builder()
            .backend_arc(backend)
            .prefix(self.prefix.clone())
            .build()
            .unwrap()
    }

    /// The shortest TTL the expiry cases use: one second, or the backend's
    /// TTL resolution if coarser.
    pub fn short_ttl(&self) -> Duration {
        self.backend
            .capabilities()
            .ttl_resolution
            .max(Duration::from_secs(1))
    }

    /// Sleep until a value written with `ttl` is surely gone: `ttl` plus a
    /// margin of a second or the backend's TTL resolution, whichever is
    /// larger.
    pub async fn sleep_past(&self, ttl: Duration) {
        let margin = self
            .backend
            .capabilities()
            .ttl_resolution
            .max(Duration::from_secs(1));
        tokio::time::sleep(ttl + margin).await;
    }
}

/// Run one case on a fresh multi-threaded runtime. Used by
/// [`conformance_suite!`].
pub fn run<F, C, Fut>(factory: F, case: C)
where
    F: Factory,
    C: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let harness = Harness::new(factory).await;
        case(harness).await;
    });
}

/// Instantiate the conformance suite: one `#[test]` per case.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::__for_each_case!($crate::__conformance_tests, $factory);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::run($factory, |h| async move { $crate::cases::$case(&h).await });
            }
        )*
    };
}
