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

use larder_core::{Backend, BoxFuture, Cache, Capabilities, Count, Error, Expiry};

pub mod cases;
/// Real Memcached servers for tests, one or several at once, that can be
/// stopped and restarted on the same port.
pub mod memcached;
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

    /// The backend's own index of `tag` (stored form), read around the
    /// backend's API: every member it holds, live or not, and the index's
    /// own remaining life. `None` when the backend keeps no index (tags by
    /// version numbers). The cases use it to check that indexes hold no
    /// garbage, which the filtered `tag_members` would hide.
    fn tag_index<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Option<TagIndex>>;

    /// Run the trimming the backend does on its own from time to time
    /// (removing expired entries and their index memberships), for the
    /// cases that check what is left after a trim. Backends that trim as
    /// part of their writes do nothing here.
    fn trim(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A backend's raw index of one tag (see [`Factory::tag_index`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagIndex {
    /// The stored keys the index holds, sorted.
    pub members: Vec<String>,
    /// When the index itself expires ([`Expiry::Never`] for an index that
    /// is removed with its last member).
    pub expiry: Expiry,
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

    /// What the backend under test claims.
    pub fn caps(&self) -> Capabilities {
        self.backend.capabilities()
    }

    /// Whether the backend lacks a capability (`has` is false). When it
    /// does, `probe` (an operation that needs the capability) must answer
    /// [`Error::Unsupported`]; the case then has nothing more to check.
    pub async fn lacks<T: std::fmt::Debug>(
        &self,
        has: bool,
        probe: impl Future<Output = larder_core::Result<T>>,
    ) -> bool {
        if has {
            return false;
        }
        match probe.await {
            Err(Error::Unsupported { .. }) => true,
            other => panic!(
                "{} claims not to support this, yet answered {other:?} instead of Error::Unsupported",
                self.backend.kind()
            ),
        }
    }

    /// Whether the backend answers its health probe.
    pub async fn health_ok(&self) -> bool {
        self.backend.health().await.is_ok_and(|r| r.is_healthy())
    }

    /// See [`Factory::trim`].
    pub async fn trim(&self) {
        self.factory.trim().await;
    }

    /// Check a count: `expected` where the backend counts exactly, else
    /// [`Count::Unknown`].
    pub fn assert_count(&self, got: Count, expected: u64) {
        if self.caps().exact_counts {
            assert_eq!(got, Count::Exact(expected), "count");
        } else {
            assert_eq!(
                got,
                Count::Unknown,
                "a backend without exact counts says so"
            );
        }
    }

    /// `cache.tag_members(tag, 1000)` where the backend can list tags;
    /// `None` (after checking that it says so) where it cannot.
    pub async fn members(&self, cache: &Cache, tag: &str) -> Option<Vec<String>> {
        if self
            .lacks(self.caps().tag_listing, cache.tag_members(tag, 1000))
            .await
        {
            return None;
        }
        Some(cache.tag_members(tag, 1000).await.unwrap())
    }

    /// The raw index of the caller's `tag` in `cache`'s namespace.
    pub async fn tag_index(&self, cache: &Cache, tag: &str) -> Option<TagIndex> {
        let stored = cache.namespace().tag(tag).unwrap();
        self.factory.tag_index(&stored).await
    }

    /// A cache over the backend in this test's own namespace.
    pub fn cache(&self) -> Cache {
        self.cache_in("v1")
    }

    /// A cache in this test's prefix with another version.
    pub fn cache_in(&self, version: &str) -> Cache {
        self.builder().version(version).build().unwrap()
    }

    /// A builder preset with the backend and this test's prefix, and no TTL
    /// jitter (the cases check TTLs; jitter has its own tests).
    pub fn builder(&self) -> larder_core::CacheBuilder {
        Cache::builder()
            .backend_arc(self.backend.clone())
            .prefix(self.prefix.clone())
            .ttl_jitter(0.0)
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
            .ttl_jitter(0.0)
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

/// A cache builder for tests of a backend's own behaviour: no resilience
/// layer, failures returned rather than turned into misses, and no TTL
/// jitter (such tests read TTLs and errors).
pub fn bare_builder() -> larder_core::CacheBuilder {
    let mut resilience = larder_core::ResilienceConfig::disabled();
    resilience.fallback = larder_core::Fallback::Closed;
    Cache::builder().ttl_jitter(0.0).resilience(resilience)
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
