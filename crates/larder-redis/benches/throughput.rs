//! `Cache` get/set throughput against redis-benchmark, on one server, in
//! one run:
//!
//!     cargo bench -p larder-redis --bench throughput
//!
//! Starts a redis-server on a free loopback port (or uses
//! `LARDER_BENCH_REDIS_URL`), runs `redis-benchmark -c 50 -d 100 -t get,set`
//! against it, then 50 concurrent tasks doing `Cache::set` and `Cache::get`
//! of a ~100-byte value, and prints both with the ratio. Under `cargo test`
//! (no `--bench` argument) it runs a short smoke pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a bench binary: failing loudly is right

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use larder_core::Cache;
use larder_redis::RedisBackend;
use larder_testkit::redis::{RedisServer, require};

const TASKS: usize = 50;

/// ops/s for SET and GET from redis-benchmark's `-q` output.
fn redis_benchmark(port: u16, requests: usize) -> (f64, f64) {
    let out = Command::new(require("redis-benchmark"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", "50", "-d", "100", "-t", "set,get", "-q"])
        .args(["-n", &requests.to_string()])
        .output()
        .expect("redis-benchmark runs");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let rate = |name: &str| {
        text.lines()
            .rev()
            .find(|l| l.starts_with(name) && l.contains("requests per second"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} rate in redis-benchmark output:\n{text}"))
    };
    (rate("SET:"), rate("GET:"))
}

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

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let requests = if bench { 200_000 } else { 5_000 };
    let own_server;
    let url = match std::env::var("LARDER_BENCH_REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            own_server = RedisServer::start();
            own_server.url()
        }
    };
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port in the URL");

    let (bench_set, bench_get) = redis_benchmark(port, requests);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (cache_set, cache_get) = runtime.block_on(async {
        let backend = RedisBackend::open(&format!("{url}?pool_size=4"), 4)
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
    println!("requests per operation: {requests}, concurrency: {TASKS}, value: ~100 bytes");
    println!("| operation | redis-benchmark ops/s | larder Cache ops/s | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| SET | {bench_set:.0} | {cache_set:.0} | {:.2}x |",
        cache_set / bench_set
    );
    println!(
        "| GET | {bench_get:.0} | {cache_get:.0} | {:.2}x |",
        cache_get / bench_get
    );
}
