//! The shared backend conformance suite on the memory backend, directly and
//! through core's blocking adapter (`Blocking<SyncMemory>`: the same store,
//! each operation on the blocking pool).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::{Arc, OnceLock};

use larder_core::{Backend, Blocking, BoxFuture, Expiry};
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
