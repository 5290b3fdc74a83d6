//! What signing, encryption and compression cost on the memory backend:
//! `Cache::get` and `Cache::set` of a 1 KiB and a 64 KiB JSON value, plain,
//! signed (HMAC-SHA256), encrypted (AES-256-GCM) and compressed (LZ4).
//!
//!     cargo bench -p larder-memory --bench security
//!
//! `plain` has compression off, so each mode differs from it by one thing.
//! Compare the modes as ratios of one run.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use larder_core::{Cache, KeyRing};
use larder_memory::MemoryBackend;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    sku: String,
    qty: u32,
    price_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    uuid: String,
    name: String,
    email: String,
    city: String,
    status: String,
    score: f64,
    created_at: String,
    tags: Vec<String>,
    orders: Vec<Order>,
}

/// A page of users as an API would return it, about `bytes` of JSON.
fn page(bytes: usize) -> Vec<User> {
    let cities = ["Paris", "Berlin", "Lisbon", "Oslo", "Madrid", "Rome"];
    let mut users = Vec::new();
    let mut size = 2;
    let mut i = 0u64;
    while size < bytes {
        let seed = i
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let user = User {
            id: 100_000 + i,
            uuid: format!("{seed:016x}-{:08x}", seed >> 13),
            name: format!("User {}", seed % 9973),
            email: format!("user{}@example.com", seed % 100_003),
            city: cities[(seed % 6) as usize].to_owned(),
            status: ["active", "pending", "suspended"][(seed % 3) as usize].to_owned(),
            score: (seed % 10_000) as f64 / 100.0,
            created_at: format!("2026-{:02}-{:02}T10:00:00Z", 1 + seed % 12, 1 + seed % 28),
            tags: vec![format!("t{}", seed % 17), format!("t{}", seed % 23)],
            orders: (0..seed % 3)
                .map(|k| Order {
                    sku: format!("SKU-{}", (seed >> k) % 5000),
                    qty: 1 + ((seed >> (k + 3)) % 5) as u32,
                    price_cents: (seed >> (k + 5)) % 20_000,
                })
                .collect(),
        };
        size += serde_json::to_vec(&user).map_or(0, |v| v.len()) + 1;
        users.push(user);
        i += 1;
    }
    users
}

fn ring(text: &str) -> KeyRing {
    match KeyRing::parse(text, "keys", "bench") {
        Ok(ring) => ring,
        Err(e) => panic!("keys: {e}"),
    }
}

fn cache(mode: &str) -> Cache {
    let builder = Cache::builder()
        .backend(MemoryBackend::new())
        .prefix("bench");
    let builder = match mode {
        "plain" => builder.compress_min_size(None),
        "signed" => builder
            .compress_min_size(None)
            .signing_keys(ring("s1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")),
        "encrypted" => builder.compress_min_size(None).encryption_keys(ring(
            "e1:hex:abababababababababababababababababababababababababababababababab",
        )),
        "compressed" => builder.compress_min_size(Some(1024)),
        other => panic!("unknown mode {other}"),
    };
    match builder.build() {
        Ok(cache) => cache,
        Err(e) => panic!("cache: {e}"),
    }
}

fn security(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    for (label, bytes) in [("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let value = page(bytes);
        let json_len = serde_json::to_vec(&value).map_or(0, |v| v.len());
        let mut group = c.benchmark_group(format!("security/{label}"));
        group.throughput(Throughput::Bytes(json_len as u64));
        for mode in ["plain", "signed", "encrypted", "compressed"] {
            let cache = cache(mode);
            rt.block_on(async {
                if let Err(e) = cache.set("page", &value).await {
                    panic!("set: {e}");
                }
                let back: Option<Vec<User>> = cache.get("page").await.ok().flatten();
                assert_eq!(back.as_ref(), Some(&value), "{mode} round trip");
            });
            group.bench_function(BenchmarkId::new("get", mode), |b| {
                b.iter(|| {
                    rt.block_on(async {
                        let v: Option<Vec<User>> =
                            cache.get(black_box("page")).await.ok().flatten();
                        black_box(v)
                    })
                });
            });
            group.bench_function(BenchmarkId::new("set", mode), |b| {
                b.iter(|| {
                    rt.block_on(async {
                        black_box(cache.set(black_box("page"), &value).await.is_ok())
                    })
                });
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(30);
    targets = security
}
criterion_main!(benches);
