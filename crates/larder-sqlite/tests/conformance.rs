//! The shared backend conformance suite on SQLite: on a database file (one
//! per test, in a temporary directory) and on an in-memory database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::sync::{Arc, OnceLock};

use larder_core::{Backend, BoxFuture, Expiry};
use larder_sqlite::{SqliteBackend, SqliteConfig};
use larder_testkit::{Factory, TagIndex};

use common::TempDir;

/// One database per test; keeps a handle to read the raw tag index.
struct Sqlite {
    memory: bool,
    dir: TempDir,
    made: OnceLock<SqliteBackend>,
}

impl Sqlite {
    fn new(memory: bool) -> Self {
        Sqlite {
            memory,
            dir: TempDir::new("conformance"),
            made: OnceLock::new(),
        }
    }

    fn config(&self, name: &str) -> SqliteConfig {
        if self.memory {
            SqliteConfig::memory()
        } else {
            SqliteConfig::file(self.dir.file(name))
        }
    }
}

impl Factory for Sqlite {
    fn backend(&self) -> BoxFuture<'_, Arc<dyn Backend>> {
        Box::pin(async {
            let backend = self
                .made
                .get_or_init(|| SqliteBackend::with_config(self.config("cache.db")).unwrap())
                .clone();
            Arc::new(backend) as Arc<dyn Backend>
        })
    }

    fn bounded(&self, max_entries: usize) -> BoxFuture<'_, Arc<dyn Backend>> {
        Box::pin(async move {
            let mut config = self.config("bounded.db");
            config.max_entries = Some(max_entries as u64);
            Arc::new(SqliteBackend::with_config(config).unwrap()) as Arc<dyn Backend>
        })
    }

    fn tag_index<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Option<TagIndex>> {
        Box::pin(async move {
            let backend = self.made.get()?;
            Some(TagIndex {
                members: backend.tag_index(tag).unwrap(),
                // Tag rows have no life of their own: they go with their key.
                expiry: Expiry::Never,
            })
        })
    }

    fn trim(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            if let Some(backend) = self.made.get() {
                backend.purge_expired().await.unwrap();
            }
        })
    }
}

mod file {
    use super::*;
    larder_testkit::conformance_suite!(Sqlite::new(false));
}

mod memory {
    use super::*;
    larder_testkit::conformance_suite!(Sqlite::new(true));
}
