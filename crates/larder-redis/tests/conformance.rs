//! The shared conformance suite against real servers: plain, TLS, an ACL
//! user, Sentinel and Cluster. Each topology runs every case; servers are
//! shared by the tests of this binary (each test has its own namespace)
//! and each test opens its own connection pool.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::{Arc, OnceLock};

use larder_core::{Backend, BoxFuture, Expiry};
use larder_redis::{REQUIRED_COMMANDS, RedisBackend, tag_set_key};
use larder_testkit::redis::{RedisCluster, RedisSentinel, RedisServer};
use larder_testkit::{Factory, TagIndex};

async fn connect(url: &str) -> Arc<dyn Backend> {
    Arc::new(
        RedisBackend::open(url, 4)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}")),
    )
}

/// A fresh server that evicts (allkeys-lfu) once it holds some 32 KiB more
/// than it did empty: room for the test's tag set and a few dozen small
/// entries, whatever `max_entries` asks.
async fn bounded(max_entries: usize) -> Arc<dyn Backend> {
    static SERVERS: std::sync::Mutex<Vec<RedisServer>> = std::sync::Mutex::new(Vec::new());
    let server = RedisServer::start_with(&["maxmemory-policy allkeys-lfu"]);
    let backend = connect(&server.url()).await;
    // Load every script first: script memory counts towards maxmemory.
    warm_up(&backend).await;
    let info = server.cli(&["info", "memory"]);
    let used: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory");
    let _ = max_entries;
    let limit = used + 32 * 1024;
    server.cli(&["config", "set", "maxmemory", &limit.to_string()]);
    // Keep the server alive for the rest of the test binary.
    SERVERS.lock().unwrap().push(server);
    backend
}

/// A tag's sorted set and its life, read with `redis-cli` (`cli` runs one
/// command on the right server).
fn tag_index(cli: impl Fn(&[&str]) -> String, tag: &str) -> TagIndex {
    let key = tag_set_key(tag);
    let mut members: Vec<String> = cli(&["ZRANGE", &key, "0", "-1"])
        .lines()
        .map(str::to_owned)
        .filter(|m| !m.is_empty())
        .collect();
    members.sort();
    let pttl: i64 = cli(&["PTTL", &key]).trim().parse().expect("PTTL");
    let expiry = match u64::try_from(pttl) {
        Ok(ms) => Expiry::After(std::time::Duration::from_millis(ms)),
        Err(_) => Expiry::Never,
    };
    TagIndex { members, expiry }
}

async fn warm_up(backend: &Arc<dyn Backend>) {
    use std::time::Duration;

    use larder_core::WriteOptions;
    let tagged = WriteOptions::new()
        .ttl(Duration::from_secs(60))
        .tags(["warm:v1:tag"]);
    let key = "warm:v1:key".to_owned();
    backend.set(&key, "1".into(), &tagged).await.unwrap();
    backend.expire(&key, Duration::from_secs(30)).await.unwrap();
    backend.delete(std::slice::from_ref(&key)).await.unwrap();
    backend.invalidate_tags(&tagged.tags).await.unwrap();
    backend
        .lock("warm:v1:l", "t", Duration::from_secs(1))
        .await
        .unwrap();
    backend.unlock("warm:v1:l", "t").await.unwrap();
}

macro_rules! topology {
    ($module:ident, $server:ty, $start:expr, $url:expr, $cli:expr) => {
        mod $module {
            use super::*;

            fn server() -> &'static $server {
                static SERVER: OnceLock<$server> = OnceLock::new();
                SERVER.get_or_init(|| $start)
            }

            struct Topology;

            impl Factory for Topology {
                fn backend(&self) -> BoxFuture<'_, Arc<dyn Backend>> {
                    Box::pin(async { connect(&$url(server())).await })
                }

                fn bounded(&self, max_entries: usize) -> BoxFuture<'_, Arc<dyn Backend>> {
                    Box::pin(bounded(max_entries))
                }

                fn tag_index<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Option<TagIndex>> {
                    Box::pin(
                        async move { Some(tag_index(|args: &[&str]| $cli(server(), args), tag)) },
                    )
                }
            }

            larder_testkit::conformance_suite!(Topology);
        }
    };
}

fn tls_url(server: &RedisServer) -> String {
    let ca = server.ca_cert_path().expect("a TLS server has a CA");
    format!("{}?tls_ca={}", server.url(), ca.display())
}

fn acl_server() -> RedisServer {
    RedisServer::start_acl("larder", "s3cret-pass", "t*", REQUIRED_COMMANDS)
}

fn server_cli(s: &RedisServer, args: &[&str]) -> String {
    s.cli(args)
}

topology!(
    plain,
    RedisServer,
    RedisServer::start(),
    |s: &RedisServer| s.url(),
    server_cli
);
topology!(
    tls,
    RedisServer,
    RedisServer::start_tls(),
    tls_url,
    server_cli
);
topology!(
    acl,
    RedisServer,
    acl_server(),
    |s: &RedisServer| s.url(),
    server_cli
);
topology!(
    sentinel,
    RedisSentinel,
    RedisSentinel::start(),
    |s: &RedisSentinel| s.url(),
    |s: &RedisSentinel, args: &[&str]| s.master().cli(args)
);
topology!(
    cluster,
    RedisCluster,
    RedisCluster::start(),
    |s: &RedisCluster| s.url(),
    |s: &RedisCluster, args: &[&str]| s.cli(args)
);
