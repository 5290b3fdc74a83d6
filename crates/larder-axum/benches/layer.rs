//! A cached GET through `ResponseCacheLayer` against the bare handler, in
//! one run, in process (the router called as a tower service, no socket):
//! what the layer costs on a hit, and what it saves over a handler that
//! does some work.
//!
//!     cargo bench -p larder-axum --bench layer

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::{Json, response::IntoResponse};
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use larder_axum::ResponseCacheLayer;
use larder_core::Cache;
use larder_memory::MemoryBackend;
use serde::Serialize;
use tower::ServiceExt;

#[derive(Serialize, Clone)]
struct User {
    id: u64,
    name: String,
    email: String,
    plan: String,
    active: bool,
}

fn user(id: u64) -> User {
    User {
        id,
        name: format!("User number {id}"),
        email: format!("user{id}@example.com"),
        plan: "pro".into(),
        active: id.is_multiple_of(2),
    }
}

/// One user as JSON: the cheapest handler there is.
async fn one() -> impl IntoResponse {
    Json(user(1))
}

/// Fifty users sorted and serialized (about 4 KiB): a handler doing a
/// little work, as a list endpoint over an in-memory table would.
async fn list() -> impl IntoResponse {
    let mut users: Vec<User> = (0..50).rev().map(user).collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    Json(users)
}

fn app(cached: bool) -> Router {
    let router = Router::new()
        .route("/one", get(one))
        .route("/list", get(list));
    if cached {
        let cache = Cache::builder()
            .backend(MemoryBackend::default())
            .build()
            .unwrap();
        router.layer(ResponseCacheLayer::new(cache))
    } else {
        router
    }
}

async fn fetch(app: &Router, path: &'static str) -> usize {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .len()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bare = app(false);
    let cached = app(true);
    for path in ["/one", "/list"] {
        // Fill the cache first: every measured request is a hit.
        runtime.block_on(fetch(&cached, path));
        let mut group = c.benchmark_group(format!("get {path}"));
        group.bench_function("bare handler", |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(fetch(&bare, path).await) })
        });
        group.bench_function("layer hit", |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(fetch(&cached, path).await) })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
