//! The response cache layer on a memory cache: what is stored and what is
//! not, variants, tags, single-flight, and a write racing a miss. Requests
//! go through the router in process (`oneshot`); the example app's tests
//! (crates/larder/tests/axum_app.rs) drive the same layer over TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::BodyExt;
use larder_axum::{CacheTags, ResponseCacheLayer};
use larder_core::Cache;
use larder_memory::MemoryBackend;
use tower::ServiceExt;

fn memory_cache() -> Cache {
    Cache::builder()
        .backend(MemoryBackend::default())
        .build()
        .unwrap()
}

/// A router with `handler` on `/*path`, behind `layer`, counting runs.
fn routed<H, T>(layer: ResponseCacheLayer, handler: H) -> Router
where
    H: axum::handler::Handler<T, ()>,
    T: 'static,
{
    Router::new().route("/{*path}", get(handler)).layer(layer)
}

async fn send(
    app: &Router,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn x_cache(headers: &HeaderMap) -> &str {
    headers.get("x-cache").map_or("-", |v| v.to_str().unwrap())
}

/// A handler that counts its runs and answers `make(run)`.
fn counting<F>(
    make: F,
) -> (
    Arc<AtomicUsize>,
    impl Fn() -> std::future::Ready<Response> + Clone + Send + 'static,
)
where
    F: Fn(usize) -> Response + Clone + Send + Sync + 'static,
{
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let handler = move || {
        let run = counter.fetch_add(1, Ordering::SeqCst) + 1;
        std::future::ready(make(run))
    };
    (runs, handler)
}

#[tokio::test]
async fn query_order_does_not_matter_but_values_do() {
    let (runs, handler) = counting(|run| format!("run {run}").into_response());
    let app = routed(ResponseCacheLayer::new(memory_cache()), handler);
    let (_, _, a) = send(&app, "/search?q=rust&page=2", &[]).await;
    let (_, h, b) = send(&app, "/search?page=2&q=rust", &[]).await;
    assert_eq!(x_cache(&h), "HIT");
    assert_eq!(a, b);
    let (_, h, _) = send(&app, "/search?page=3&q=rust", &[]).await;
    assert_eq!(x_cache(&h), "MISS");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn vary_headers_key_variants_and_responses_varying_on_others_are_not_stored() {
    let (runs, handler) = counting(|run| format!("hello {run}").into_response());
    let app = routed(
        ResponseCacheLayer::new(memory_cache()).vary(["accept-language"]),
        handler,
    );
    let (_, _, en) = send(&app, "/greet", &[("accept-language", "en")]).await;
    let (_, _, fr) = send(&app, "/greet", &[("accept-language", "fr")]).await;
    assert_ne!(en, fr);
    let (_, h, en2) = send(&app, "/greet", &[("accept-language", "en")]).await;
    assert_eq!((x_cache(&h), en2), ("HIT", en));
    assert_eq!(h.get(header::VARY).unwrap(), "accept-language");
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    let (runs, handler) = counting(|_| ([(header::VARY, "cookie")], "per cookie").into_response());
    let app = routed(
        ResponseCacheLayer::new(memory_cache()).vary(["accept-language"]),
        handler,
    );
    send(&app, "/v", &[]).await;
    let (_, h, _) = send(&app, "/v", &[]).await;
    assert_eq!(x_cache(&h), "MISS", "varies on a header the key leaves out");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn private_no_store_errors_and_empty_bodies_are_not_stored_unless_told() {
    type Make = fn(usize) -> Response;
    let cases: [(&str, Make); 4] = [
        ("private", |_| {
            ([(header::CACHE_CONTROL, "private, max-age=30")], "mine").into_response()
        }),
        ("no-store", |_| {
            ([(header::CACHE_CONTROL, "no-store")], "secret").into_response()
        }),
        ("500", |_| {
            (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
        }),
        ("empty", |_| StatusCode::OK.into_response()),
    ];
    for (name, make) in cases {
        let (runs, handler) = counting(make);
        let app = routed(ResponseCacheLayer::new(memory_cache()), handler);
        send(&app, "/x", &[]).await;
        let (_, h, _) = send(&app, "/x", &[]).await;
        assert_eq!(x_cache(&h), "MISS", "{name}");
        assert_eq!(runs.load(Ordering::SeqCst), 2, "{name}");
    }
    // Told to: private responses are stored, their directive kept.
    let (runs, handler) =
        counting(|_| ([(header::CACHE_CONTROL, "private, max-age=30")], "mine").into_response());
    let app = routed(
        ResponseCacheLayer::new(memory_cache()).allow_private(true),
        handler,
    );
    send(&app, "/x", &[]).await;
    let (_, h, _) = send(&app, "/x", &[]).await;
    assert_eq!(x_cache(&h), "HIT");
    assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "private, max-age=60");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn set_cookie_is_stripped_from_the_stored_copy_when_told_and_kept_for_its_caller() {
    let (runs, handler) =
        counting(|run| ([(header::SET_COOKIE, format!("s={run}"))], "page").into_response());
    let app = routed(
        ResponseCacheLayer::new(memory_cache()).strip_set_cookie(true),
        handler,
    );
    let (_, first, _) = send(&app, "/page", &[]).await;
    assert_eq!(
        first.get(header::SET_COOKIE).unwrap(),
        "s=1",
        "the caller keeps its cookie"
    );
    let (_, second, body) = send(&app, "/page", &[]).await;
    assert_eq!(x_cache(&second), "HIT");
    assert!(
        second.get(header::SET_COOKIE).is_none(),
        "never handed to another caller"
    );
    assert_eq!(body, "page");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn large_and_streamed_bodies_pass_through() {
    let (runs, handler) = counting(|_| vec![b'x'; 2048].into_response());
    let app = routed(
        ResponseCacheLayer::new(memory_cache()).max_body_bytes(1024),
        handler,
    );
    send(&app, "/big", &[]).await;
    let (_, h, body) = send(&app, "/big", &[]).await;
    assert_eq!((x_cache(&h), body.len()), ("MISS", 2048));
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let streamed = move || {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Body::new(Chunks(vec!["b", "a"])).into_response())
    };
    let app = routed(ResponseCacheLayer::new(memory_cache()), streamed);
    send(&app, "/s", &[]).await;
    let (_, h, body) = send(&app, "/s", &[]).await;
    assert_eq!((x_cache(&h), &body[..]), ("MISS", &b"ab"[..]));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// A streamed body of unknown length (chunks popped from the end).
struct Chunks(Vec<&'static str>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(
            self.0
                .pop()
                .map(|c| Ok(http_body::Frame::data(Bytes::from(c)))),
        )
    }
}

#[tokio::test]
async fn binary_bodies_and_handler_etags() {
    let bytes: Vec<u8> = (0..=255u8).collect();
    let body = bytes.clone();
    let (_, handler) = counting(move |_| {
        (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            body.clone(),
        )
            .into_response()
    });
    let app = routed(ResponseCacheLayer::new(memory_cache()), handler);
    send(&app, "/bin", &[]).await;
    let (_, h, got) = send(&app, "/bin", &[]).await;
    assert_eq!(x_cache(&h), "HIT");
    assert_eq!(&got[..], &bytes[..], "non-UTF-8 bodies round-trip");
    assert_eq!(
        h.get(header::CONTENT_TYPE).unwrap(),
        "application/octet-stream"
    );

    // A strong ETag from the handler is kept; a weak one is replaced.
    let (_, handler) = counting(|_| ([(header::ETAG, "\"v7\"")], "seven").into_response());
    let app = routed(ResponseCacheLayer::new(memory_cache()), handler);
    let (_, h, _) = send(&app, "/e", &[]).await;
    assert_eq!(h.get(header::ETAG).unwrap(), "\"v7\"");
    let (status, _, _) = send(&app, "/e", &[("if-none-match", "\"v7\"")]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    let (_, handler) = counting(|_| ([(header::ETAG, "W/\"v7\"")], "seven").into_response());
    let app = routed(ResponseCacheLayer::new(memory_cache()), handler);
    let (_, h, _) = send(&app, "/e", &[]).await;
    let etag = h.get(header::ETAG).unwrap().to_str().unwrap();
    assert!(!etag.starts_with("W/") && etag.len() == 34, "{etag}");
}

#[tokio::test]
async fn tags_from_the_layer_the_request_and_the_handler_all_invalidate() {
    let cache = memory_cache();
    let (runs, handler) =
        counting(|_| (CacheTags::new(["from-handler"]), "tagged").into_response());
    let layer = ResponseCacheLayer::new(cache.clone())
        .tags(["from-layer"])
        .tags_from(|parts| vec![format!("path:{}", parts.uri.path())]);
    let app = routed(layer, handler);
    for tag in ["from-layer", "path:/t", "from-handler"] {
        send(&app, "/t", &[]).await;
        let (_, h, _) = send(&app, "/t", &[]).await;
        assert_eq!(x_cache(&h), "HIT", "{tag}");
        cache.invalidate_tag(tag).await.unwrap();
        let (_, h, _) = send(&app, "/t", &[]).await;
        assert_eq!(x_cache(&h), "MISS", "invalidating {tag} drops the response");
    }
    // One run to fill, one after each invalidation.
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    // Patterns too, by key prefix and path.
    send(&app, "/t", &[]).await;
    cache.invalidate_pattern("http:GET:/t*").await.unwrap();
    let (_, h, _) = send(&app, "/t", &[]).await;
    assert_eq!(x_cache(&h), "MISS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_share_one_handler_run() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let slow = move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            "slow"
        }
    };
    let app = routed(ResponseCacheLayer::new(memory_cache()), slow);
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app, "/slow", &[]).await })
        })
        .collect();
    for request in requests {
        let (status, _, body) = request.await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"slow"[..]));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_invalidated_while_its_handler_ran_is_not_stored() {
    let cache = memory_cache();
    let version = Arc::new(AtomicUsize::new(1));
    let (started, mut wait_started) = tokio::sync::mpsc::channel::<()>(1);
    let release = Arc::new(tokio::sync::Notify::new());
    let handler = {
        let (version, release) = (version.clone(), release.clone());
        move || {
            let (version, release, started) = (version.clone(), release.clone(), started.clone());
            async move {
                // Read the source, then stall before answering.
                let v = version.load(Ordering::SeqCst);
                let _ = started.send(()).await;
                release.notified().await;
                (CacheTags::new(["doc"]), format!("version {v}"))
            }
        }
    };
    let app = routed(ResponseCacheLayer::new(cache.clone()), handler);
    let slow = tokio::spawn({
        let app = app.clone();
        async move { send(&app, "/doc", &[]).await }
    });
    wait_started.recv().await.unwrap();
    // A writer replaces the source and invalidates while the load runs.
    version.store(2, Ordering::SeqCst);
    cache.invalidate_tag("doc").await.unwrap();
    release.notify_one();
    let (_, _, old) = slow.await.unwrap();
    assert_eq!(old, "version 1", "its own caller gets what it loaded");
    let next = tokio::spawn({
        let app = app.clone();
        async move { send(&app, "/doc", &[]).await }
    });
    wait_started.recv().await.unwrap();
    release.notify_one();
    let (_, h, body) = next.await.unwrap();
    assert_eq!(x_cache(&h), "MISS", "the stale response was not stored");
    assert_eq!(body, "version 2");
}

#[tokio::test]
async fn other_methods_and_head_misses_pass_through() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let app = Router::new()
        .route(
            "/r",
            get(|| async { "got" }).post(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { "posted" }
            }),
        )
        .layer(ResponseCacheLayer::new(memory_cache()));
    for _ in 0..2 {
        let response = app
            .clone()
            .oneshot(Request::post("/r").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(response.headers().get("x-cache").is_none());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let head = app
        .clone()
        .oneshot(Request::head("/r").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers().get("x-cache").unwrap(), "MISS");
}
