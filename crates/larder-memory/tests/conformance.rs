//! The shared backend conformance suite, on the memory backend.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;

use larder_core::{Backend, BoxFuture};
use larder_memory::MemoryBackend;
use larder_testkit::Factory;

struct Memory;

impl Factory for Memory {
    fn backend(&self) -> BoxFuture<'_, Arc<dyn Backend>> {
        Box::pin(async { Arc::new(MemoryBackend::new()) as Arc<dyn Backend> })
    }

    fn bounded(&self, max_entries: usize) -> BoxFuture<'_, Arc<dyn Backend>> {
        Box::pin(async move {
            Arc::new(MemoryBackend::builder().max_entries(max_entries).build()) as Arc<dyn Backend>
        })
    }
}

larder_testkit::conformance_suite!(Memory);
