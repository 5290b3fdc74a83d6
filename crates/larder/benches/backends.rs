//! Every backend through the same `Cache` API, in one run, for the
//! comparison table in `docs/backends.md`:
//!
//!     cargo bench -p larder --all-features --bench backends
//!
//! Starts redis-server and memcached on free loopback ports, and opens a
//! SQLite file and a sled directory in a temporary directory. For each
//! backend: the mean latency of one `get` (hit) and one `set` from a
//! single task, then the throughput of 50 concurrent tasks doing the same,
//! with a ~100-byte value. Redis runs twice, with the resilience layer
//! (the default) and without it, to show what the layer costs. Prints a
//! markdown table. Under `cargo test` (no `--bench` argument) it runs a
//! short smoke pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a bench binary: failing loudly is right

use std::sync::Arc;
use std::time::{Duration, Instant};

use larder::{Cache, CacheConfig, ResilienceConfig};
use larder_testkit::memcached::MemcachedServer;
use larder_testkit::redis::RedisServer;

const TASKS: usize = 50;
const KEYS: usize = 1_000;

struct Figures {
    get_latency: Duration,
    set_latency: Duration,
    get_throughput: f64,
    set_throughput: f64,
}

/// Mean time of `n` sequential calls of `op`.
async fn latency<F, Fut>(n: usize, op: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    for i in 0..n {
        op(i).await;
    }
    started.elapsed() / u32::try_from(n).unwrap()
}

/// ops/s of `TASKS` tasks sharing `total` calls of `op`.
async fn throughput<F, Fut>(total: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let per_task = total / TASKS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    op(t * per_task + i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (per_task * TASKS) as f64 / started.elapsed().as_secs_f64()
}

async fn measure(cache: Cache, requests: usize) -> Figures {
    // ~100 bytes stored: 16-byte header + JSON string of 82 characters.
    let value: Arc<String> = Arc::new("x".repeat(82));
    let set = |cache: Cache, value: Arc<String>| {
        move |i: usize| {
            let (cache, value) = (cache.clone(), value.clone());
            async move {
                cache
                    .set(&format!("key:{}", i % KEYS), value.as_str())
                    .await
                    .unwrap();
            }
        }
    };
    let get = |cache: Cache| {
        move |i: usize| {
            let cache = cache.clone();
            async move {
                let got: Option<String> = cache.get(&format!("key:{}", i % KEYS)).await.unwrap();
                assert!(got.is_some(), "key:{} missing", i % KEYS);
            }
        }
    };
    // Fill every key first, so that every get is a hit.
    throughput(KEYS.max(TASKS), set(cache.clone(), value.clone())).await;
    let sequential = (requests / 20).max(50);
    let figures = Figures {
        set_latency: latency(sequential, set(cache.clone(), value.clone())).await,
        get_latency: latency(sequential, get(cache.clone())).await,
        set_throughput: throughput(requests, set(cache.clone(), value.clone())).await,
        get_throughput: throughput(requests, get(cache.clone())).await,
    };
    cache.clear().await.unwrap();
    cache.close().await.unwrap();
    figures
}

async fn open(url: &str, resilience: ResilienceConfig) -> Cache {
    let config = CacheConfig {
        url: Some(url.to_owned()),
        prefix: "bench".into(),
        default_ttl: Duration::from_secs(600),
        resilience,
        ..CacheConfig::default()
    };
    larder::connect(&config).await.unwrap()
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let requests = if bench { 100_000 } else { 1_000 };
    let redis = RedisServer::start();
    let memcached = MemcachedServer::start();
    let dir = tempfile::tempdir().unwrap();
    let backends = [
        ("memory", "mem://".to_owned(), ResilienceConfig::new()),
        (
            "redis",
            format!("{}?pool_size=8", redis.url()),
            ResilienceConfig::new(),
        ),
        (
            "redis, no resilience layer",
            format!("{}?pool_size=8", redis.url()),
            ResilienceConfig::disabled(),
        ),
        (
            "memcached",
            format!("{}?pool=8", memcached.url()),
            ResilienceConfig::new(),
        ),
        (
            "sqlite",
            format!("sqlite://{}/bench.db", dir.path().display()),
            ResilienceConfig::new(),
        ),
        (
            "sled",
            format!("sled://{}/sled", dir.path().display()),
            ResilienceConfig::new(),
        ),
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "requests per throughput figure: {requests}, concurrency: {TASKS}, keys: {KEYS}, \
         value: ~100 bytes, cores: {}",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "| backend | get (hit), 1 task | set, 1 task | get ops/s, {TASKS} tasks | set ops/s, {TASKS} tasks |"
    );
    println!("|---|---|---|---|---|");
    for (name, url, resilience) in backends {
        let figures = runtime.block_on(async {
            let cache = open(&url, resilience).await;
            measure(cache, requests).await
        });
        println!(
            "| {name} | {:.1} µs | {:.1} µs | {:.0} | {:.0} |",
            figures.get_latency.as_secs_f64() * 1e6,
            figures.set_latency.as_secs_f64() * 1e6,
            figures.get_throughput,
            figures.set_throughput,
        );
    }
}
