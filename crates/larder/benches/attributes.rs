//! What `#[cache_read]` adds over a hand-written `get_or_load`, on a hit.
//!
//!     cargo bench -p larder --bench attributes
//!
//! Both read the same 5-field struct under a key rendered from the same
//! argument, on the memory backend.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use larder::{Cache, cache_read};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
    active: bool,
    score: f64,
}

fn load(id: u64) -> User {
    User {
        id,
        name: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
        active: true,
        score: 97.5,
    }
}

#[cache_read(key = "user:{id}", ttl = 3600, cache = cache)]
async fn get_user(cache: &Cache, id: u64) -> Result<User, larder::Error> {
    Ok(load(id))
}

async fn get_user_by_hand(cache: &Cache, id: u64) -> Result<User, larder::Error> {
    cache
        .read(&format!("user:{id}"))
        .ttl(std::time::Duration::from_secs(3600))
        .load(|| async move { Ok(load(id)) })
        .await
}

fn attributes(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    let cache = match rt.block_on(larder::open("mem://")) {
        Ok(cache) => cache,
        Err(e) => panic!("cache: {e}"),
    };
    // Warm both paths: every measured call is a hit.
    rt.block_on(async {
        assert!(get_user(&cache, 42).await.is_ok());
        assert!(get_user_by_hand(&cache, 42).await.is_ok());
    });
    let mut group = c.benchmark_group("attribute_hit");
    group.bench_function("get_or_load_by_hand", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    black_box(get_user_by_hand(&cache, black_box(42)).await.ok());
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("cache_read_attribute", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    black_box(get_user(&cache, black_box(42)).await.ok());
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, attributes);
criterion_main!(benches);
