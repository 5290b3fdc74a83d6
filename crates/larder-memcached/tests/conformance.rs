//! The shared conformance suite against real memcached servers: one server,
//! and three servers on the ring. The servers are shared by the tests of
//! this binary (each test has its own namespace); each test opens its own
//! connections. Memcached keeps no tag index (tags are versions), so
//! `tag_index` is `None`; every capability it lacks is asserted by the
//! suite itself, from the capabilities the backend states.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::{Arc, Mutex, OnceLock};

use larder_core::{Backend, BoxFuture};
use larder_memcached::MemcachedBackend;
use larder_testkit::memcached::{MemcachedServer, url_of};
use larder_testkit::{Factory, TagIndex};

/// Items of 2 MiB, so that the suite's 1 MiB value fits with its envelope.
const ITEM_SIZE: &[&str] = &["-I", "2m"];

async fn connect(url: &str) -> Arc<dyn Backend> {
    Arc::new(
        MemcachedBackend::open(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}")),
    )
}

/// A fresh server with 2 MiB of memory (memcached's smallest useful size),
/// which evicts once it holds a few thousand small entries.
async fn bounded() -> Arc<dyn Backend> {
    static SERVERS: Mutex<Vec<MemcachedServer>> = Mutex::new(Vec::new());
    let server = MemcachedServer::start_with(&["-m", "2", "-I", "512k"]);
    let backend = connect(&server.url()).await;
    SERVERS.lock().unwrap().push(server);
    backend
}

macro_rules! topology {
    ($module:ident, $servers:expr) => {
        mod $module {
            use super::*;

            fn url() -> &'static str {
                static URL: OnceLock<(Vec<MemcachedServer>, String)> = OnceLock::new();
                &URL.get_or_init(|| {
                    let servers = MemcachedServer::start_many($servers, ITEM_SIZE);
                    let url = format!("{}?pool=4", url_of(&servers));
                    (servers, url)
                })
                .1
            }

            struct Topology;

            impl Factory for Topology {
                fn backend(&self) -> BoxFuture<'_, Arc<dyn Backend>> {
                    Box::pin(async { connect(url()).await })
                }

                fn bounded(&self, _max_entries: usize) -> BoxFuture<'_, Arc<dyn Backend>> {
                    Box::pin(bounded())
                }

                fn tag_index<'a>(&'a self, _tag: &'a str) -> BoxFuture<'a, Option<TagIndex>> {
                    Box::pin(async { None })
                }
            }

            larder_testkit::conformance_suite!(Topology);
        }
    };
}

topology!(one_server, 1);
topology!(three_servers, 3);
