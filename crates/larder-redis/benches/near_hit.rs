//! A near-cache (L1) hit against the reads it saves, on a 5-field struct,
//! in one run:
//!
//!     cargo bench -p larder-redis --bench near_hit
//!
//! - `l1_get_shared`: `Cache::get_shared` served by the near cache of a
//!   Redis cache (the decoded `Arc<User>`, no allocation);
//! - `l1_get`: `Cache::get` served by it (one clone of the `User`);
//! - `memory_get`: `Cache::get` on a memory backend without a near cache
//!   (a lookup and a JSON decode);
//! - `redis_get`: `Cache::get` on Redis without a near cache (a round trip
//!   to a loopback redis-server and a decode).
//!
//! And what publishing invalidations costs a write: `redis_set` (the
//! default: the write, then a `PUBLISH` on the namespace's channel) against
//! `redis_set_unpublished` (`?invalidation_channel=off`).
//!
//! Starts a redis-server on a free loopback port. Compare as ratios.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench binary: failing loudly is right

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use larder_core::{Cache, NearConfig};
use larder_memory::MemoryBackend;
use larder_redis::RedisBackend;
use larder_testkit::redis::RedisServer;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
    active: bool,
    score: f64,
}

fn bench<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, read: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    rt.block_on(async {
        let started = Instant::now();
        for _ in 0..iters {
            read().await;
        }
        started.elapsed()
    })
}

fn near_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    let user = User {
        id: 42,
        name: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
        active: true,
        score: 97.5,
    };
    let (near, redis, memory, quiet) = rt.block_on(async {
        let open = || async { RedisBackend::open(&server.url(), 2).await.unwrap() };
        let near = Cache::builder()
            .backend(open().await)
            .prefix("svc")
            .near(NearConfig::new(10_000))
            .build()
            .unwrap();
        let redis = Cache::builder()
            .backend(open().await)
            .prefix("svc")
            .build()
            .unwrap();
        let quiet = Cache::builder()
            .backend(
                RedisBackend::open(&format!("{}?invalidation_channel=off", server.url()), 2)
                    .await
                    .unwrap(),
            )
            .prefix("svc")
            .build()
            .unwrap();
        let memory = Cache::builder()
            .backend(MemoryBackend::new())
            .prefix("svc")
            .near(NearConfig::new(0))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !near.stats().near.unwrap().serving {
            assert!(Instant::now() < deadline, "the near cache never served");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for cache in [&redis, &memory] {
            cache
                .set("user:42", &user)
                .ttl(Duration::from_secs(3600))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Fill the L1 (a fill racing the write's own message is refused:
        // read until one sticks).
        for _ in 0..100 {
            let before = near.stats().near.unwrap().l1_hits;
            near.get::<User>("user:42").await.unwrap().unwrap();
            if near.stats().near.unwrap().l1_hits > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (near, redis, memory, quiet)
    });

    let mut group = c.benchmark_group("near_hit");
    group.bench_function("l1_get_shared", |b| {
        b.iter_custom(|iters| {
            bench(&rt, iters, || async {
                black_box(near.get_shared::<User>(black_box("user:42")).await.ok());
            })
        })
    });
    group.bench_function("l1_get", |b| {
        b.iter_custom(|iters| {
            bench(&rt, iters, || async {
                black_box(near.get::<User>(black_box("user:42")).await.ok());
            })
        })
    });
    group.bench_function("memory_get", |b| {
        b.iter_custom(|iters| {
            bench(&rt, iters, || async {
                black_box(memory.get::<User>(black_box("user:42")).await.ok());
            })
        })
    });
    group.bench_function("redis_get", |b| {
        b.iter_custom(|iters| {
            bench(&rt, iters, || async {
                black_box(redis.get::<User>(black_box("user:42")).await.ok());
            })
        })
    });
    group.bench_function("redis_set", |b| {
        b.iter_custom(|iters| {
            bench(&rt, iters, || async {
                black_box(redis.set("w", &user).await.ok());
            })
        })
    });
    group.bench_function("redis_set_unpublished", |b| {
        b.iter_custom(|iters| {
            bench(&rt, iters, || async {
                black_box(quiet.set("w", &user).await.ok());
            })
        })
    });
    group.finish();
    let stats = near.stats();
    let n = stats.near.clone().unwrap();
    // At least once per L1 read (`cargo test` runs each bench once).
    assert!(n.l1_hits >= 2, "the L1 did not serve: {n:?}");
    assert_eq!(stats.misses, 0, "{stats:?}");
}

criterion_group!(benches, near_hit);
criterion_main!(benches);
