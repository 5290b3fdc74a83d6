//! The memory hit path: what `Cache::get` adds over the bare store.
//!
//!     cargo bench -p larder-memory --bench hit_path
//!
//! `bare_lookup_decode` is the floor of a decoding read: a lookup of the
//! stored key in the store plus the JSON decode of the same bytes.
//! `cache_get_no_near` is the whole typed path without a near cache (as a
//! `mem://` cache was before it had one): key validation and namespacing,
//! the dyn `Backend` call, the envelope header, the decode and the hit
//! counter. `cache_get` is the same call on a default `mem://` cache, whose
//! near cache serves the decoded value (one clone), and `cache_get_shared`
//! returns the shared `Arc` (no allocation). Compare them as ratios from
//! one run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use larder_core::codec::HEADER_LEN;
use larder_core::{Cache, NearConfig};
use larder_memory::MemoryBackend;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
    active: bool,
    score: f64,
}

fn hit_path(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    let backend = MemoryBackend::new();
    let cache = match Cache::builder()
        .backend(backend.clone())
        .prefix("svc")
        .build()
    {
        Ok(cache) => cache,
        Err(e) => panic!("cache: {e}"),
    };
    let plain = match Cache::builder()
        .backend(backend.clone())
        .prefix("svc")
        .near(NearConfig::new(0))
        .build()
    {
        Ok(cache) => cache,
        Err(e) => panic!("cache: {e}"),
    };
    let user = User {
        id: 42,
        name: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
        active: true,
        score: 97.5,
    };
    rt.block_on(async {
        if let Err(e) = cache
            .set("user:42", &user)
            .ttl(Duration::from_secs(3600))
            .await
        {
            panic!("set: {e}");
        }
    });
    let stored = "svc:v1:user:42";
    assert!(backend.get_now(stored).is_some());

    let mut group = c.benchmark_group("memory_hit");
    group.bench_function("bare_lookup_decode", |b| {
        b.iter(|| {
            let bytes = backend.get_now(black_box(stored));
            let bytes = bytes.as_deref().unwrap_or_default();
            let user: Option<User> = serde_json::from_slice(&bytes[HEADER_LEN..]).ok();
            black_box(user)
        })
    });
    group.bench_function("cache_get_no_near", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let user = plain.get::<User>(black_box("user:42")).await.ok().flatten();
                    black_box(user);
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("cache_get_shared", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let user = cache
                        .get_shared::<User>(black_box("user:42"))
                        .await
                        .ok()
                        .flatten();
                    black_box(user);
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("cache_get", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let user = cache.get::<User>(black_box("user:42")).await.ok().flatten();
                    black_box(user);
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, hit_path);
criterion_main!(benches);
