//! The shared conformance suite on real sled directories: one fresh
//! directory (in a temporary directory) per test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use larder_core::{Backend, BoxFuture, Expiry};
use larder_sled::{SledBackend, SledConfig};
use larder_testkit::{Factory, TagIndex};
use tempfile::TempDir;

/// Makes one backend per test, in its own directory, and keeps a handle on
/// it to read its index and run its sweeper.
#[derive(Default)]
struct Sled {
    made: OnceLock<(SledBackend, TempDir)>,
    bounded: std::sync::Mutex<Vec<(SledBackend, TempDir)>>,
}

fn open(config: impl FnOnce(SledConfig) -> SledConfig) -> (SledBackend, TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // A long sweep period: the cases call `trim` when they want a sweep.
    let base = SledConfig::new(dir.path().join("db"))
        .sweep_every(Duration::from_secs(3600))
        .cache_capacity(8 << 20);
    let backend = config(base).open().expect("open sled");
    (backend, dir)
}

impl Factory for Sled {
    fn backend(&self) -> BoxFuture<'_, Arc<dyn Backend>> {
        Box::pin(async {
            let (backend, _) = self.made.get_or_init(|| open(|c| c));
            Arc::new(backend.clone()) as Arc<dyn Backend>
        })
    }

    fn bounded(&self, max_entries: usize) -> BoxFuture<'_, Arc<dyn Backend>> {
        Box::pin(async move {
            let (backend, dir) = open(|c| c.max_entries(max_entries));
            let shared: Arc<dyn Backend> = Arc::new(backend.clone());
            self.bounded.lock().unwrap().push((backend, dir));
            shared
        })
    }

    fn tag_index<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Option<TagIndex>> {
        Box::pin(async move {
            let (backend, _) = self.made.get()?;
            let mut members = backend.sync().tag_index(tag).unwrap();
            members.sort();
            Some(TagIndex {
                members,
                expiry: Expiry::Never,
            })
        })
    }

    fn trim(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            if let Some((backend, _)) = self.made.get() {
                backend.purge_expired().await.unwrap();
            }
        })
    }
}

larder_testkit::conformance_suite!(Sled::default());
