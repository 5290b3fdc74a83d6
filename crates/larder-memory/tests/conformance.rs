//! The shared backend conformance suite on the memory backend: directly,
//! through core's blocking adapter (`Blocking<SyncMemory>`: the same store,
//! each operation on the blocking pool), and through core's `Router` over two
//! memory backends (keys starting with `k` on one, the rest on the other).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::{Arc, OnceLock};

use larder_core::{Backend, Blocking, BoxFuture, Expiry, Router};
use larder_memory::MemoryBackend;
use larder_testkit::{Factory, TagIndex};

/// Makes one backend per test and keeps a handle on it to read its index.
#[derive(Default)]
struct Memory {
    blocking: bool,
    made: OnceLock<MemoryBackend>,
}

impl Memory {
    fn wrap(&self, backend: MemoryBackend) -> Arc<dyn Backend> {
        if self.blocking {
            Arc::new(Blocking::new(backend.blocking()).max_concurrency(8))
        } else {
            Arc::new(backend)
        }
    }
}

impl Factory for Memory {
    fn backend(&self) -> BoxFuture<'_, Arc<dyn Backend>> {
        Box::pin(async {
            let backend = self.made.get_or_init(MemoryBackend::new).clone();
            self.wrap(backend)
        })
    }

    fn bounded(&self, max_entries: usize) -> BoxFuture<'_, Arc<dyn Backend>> {
        Box::pin(
            async move { self.wrap(MemoryBackend::builder().max_entries(max_entries).build()) },
        )
    }

    fn tag_index<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Option<TagIndex>> {
        Box::pin(async move {
            let backend = self.made.get()?;
            Some(TagIndex {
                members: backend.tag_index(tag),
                expiry: Expiry::Never,
            })
        })
    }

    fn trim(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            if let Some(backend) = self.made.get() {
                backend.purge_expired();
            }
        })
    }
}

mod direct {
    use super::*;
    larder_testkit::conformance_suite!(Memory::default());
}

mod blocking {
    use super::*;
    larder_testkit::conformance_suite!(Memory {
        blocking: true,
        ..Memory::default()
    });
}

/// A router over two memory backends: the suite's keys starting with `k`
/// (`k`, `k1`, `keep`, ...) go to one, the rest to the other, so most cases
/// touch both routes.
#[derive(Default)]
struct Routed {
    made: OnceLock<(MemoryBackend, MemoryBackend)>,
}

fn router(k: &MemoryBackend, rest: &MemoryBackend) -> Arc<dyn Backend> {
    let router = Router::builder()
        .route("k", "k", Arc::new(k.clone()))
        .default_route("rest", Arc::new(rest.clone()))
        .build()
        .unwrap();
    Arc::new(router)
}

impl Factory for Routed {
    fn backend(&self) -> BoxFuture<'_, Arc<dyn Backend>> {
        Box::pin(async {
            let (k, rest) = self
                .made
                .get_or_init(|| (MemoryBackend::new(), MemoryBackend::new()));
            router(k, rest)
        })
    }

    fn bounded(&self, max_entries: usize) -> BoxFuture<'_, Arc<dyn Backend>> {
        Box::pin(async move {
            let bounded = || MemoryBackend::builder().max_entries(max_entries).build();
            router(&bounded(), &bounded())
        })
    }

    fn tag_index<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Option<TagIndex>> {
        Box::pin(async move {
            let (k, rest) = self.made.get()?;
            let mut members = k.tag_index(tag);
            members.extend(rest.tag_index(tag));
            members.sort();
            Some(TagIndex {
                members,
                expiry: Expiry::Never,
            })
        })
    }

    fn trim(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            if let Some((k, rest)) = self.made.get() {
                k.purge_expired();
                rest.purge_expired();
            }
        })
    }
}

mod routed {
    use super::*;
    larder_testkit::conformance_suite!(Routed::default());
}
