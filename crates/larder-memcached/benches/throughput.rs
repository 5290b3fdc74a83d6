//! `Cache` get/set throughput on memcached, next to the bare memcache
//! client, on one server, in one run:
//!
//!     cargo bench -p larder-memcached --bench throughput
//!
//! Starts a memcached on a free loopback port (or uses
//! `LARDER_BENCH_MEMCACHED_URL`), then 50 concurrent tasks doing
//! `Cache::set` and `Cache::get` of a ~100-byte value, and for reference 50
//! threads doing the same `set` / `get` with the bare `memcache` client
//! (binary protocol, the same number of connections). Prints a markdown
//! table row per operation. memtier_benchmark and memcslap are not used:
//! `cargo xtask setup` does not install them. Under `cargo test` (no
//! `--bench` argument) it runs a short smoke pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a bench binary: failing loudly is right

use std::sync::Arc;
use std::time::{Duration, Instant};

use larder_core::Cache;
use larder_memcached::MemcachedBackend;
use larder_testkit::memcached::MemcachedServer;

const TASKS: usize = 50;
/// Connections per server, for larder and for the bare client.
const POOL: u32 = 8;

/// ops/s of `TASKS` tasks sharing `total` operations.
async fn run<F, Fut>(total: usize, op: F) -> f64
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

/// ops/s of `TASKS` threads sharing `total` operations on the bare client.
fn run_bare(client: &memcache::Client, total: usize, op: fn(&memcache::Client, usize)) -> f64 {
    let per_thread = total / TASKS;
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..TASKS {
            s.spawn(move || {
                for i in 0..per_thread {
                    op(client, t * per_thread + i);
                }
            });
        }
    });
    (per_thread * TASKS) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let requests = if bench { 100_000 } else { 2_000 };
    let own_server;
    let url = match std::env::var("LARDER_BENCH_MEMCACHED_URL") {
        Ok(url) => url,
        Err(_) => {
            own_server = MemcachedServer::start();
            own_server.url()
        }
    };
    let address = url.trim_start_matches("memcached://").to_owned();

    let bare = memcache::Client::builder()
        .add_server(format!("memcache://{address}"))
        .unwrap()
        .with_max_pool_size(POOL)
        .build()
        .unwrap();
    let bare_set = run_bare(&bare, requests, |c, i| {
        c.set(
            &format!("bare:key:{}", i % 10_000),
            "x".repeat(100).as_str(),
            600,
        )
        .unwrap();
    });
    let bare_get = run_bare(&bare, requests, |c, i| {
        let got: Option<String> = c.get(&format!("bare:key:{}", i % 10_000)).unwrap();
        assert!(got.is_some());
    });

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (cache_set, cache_get) = runtime.block_on(async {
        let backend = MemcachedBackend::open(&format!("{url}?pool={POOL}"))
            .await
            .unwrap();
        let cache = Cache::builder()
            .backend(backend)
            .prefix("bench")
            .default_ttl(Duration::from_secs(600))
            .build()
            .unwrap();
        // ~100 bytes stored: 16-byte header + JSON string of 82 characters.
        let value: Arc<String> = Arc::new("x".repeat(82));
        let keys = 10_000;
        let c = cache.clone();
        let v = value.clone();
        let set = run(requests, move |i| {
            let (c, v) = (c.clone(), v.clone());
            async move {
                c.set(&format!("key:{}", i % keys), v.as_str())
                    .await
                    .unwrap();
            }
        })
        .await;
        let c = cache.clone();
        let get = run(requests, move |i| {
            let c = c.clone();
            async move {
                let got: Option<String> = c.get(&format!("key:{}", i % keys)).await.unwrap();
                assert!(got.is_some());
            }
        })
        .await;
        cache.clear().await.unwrap();
        (set, get)
    });
    println!(
        "requests per operation: {requests}, concurrency: {TASKS}, connections: {POOL}, value: ~100 bytes"
    );
    println!("| operation | bare memcache client ops/s | larder Cache ops/s | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| SET | {bare_set:.0} | {cache_set:.0} | {:.2}x |",
        cache_set / bare_set
    );
    println!(
        "| GET | {bare_get:.0} | {cache_get:.0} | {:.2}x |",
        cache_get / bare_get
    );
}
