//! The axum example app (`examples/axum_app.rs`), served on a loopback port
//! and driven over HTTP with hyper's client: misses and hits, ETags and
//! 304s, invalidation by writes, request `no-cache` / `no-store`,
//! `Set-Cookie`, and the health route with Redis going away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use larder::Cache;
use larder_testkit::redis::RedisServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../../examples/axum_app.rs"]
mod app;

use app::{AppState, User};

/// The example app, serving on a free loopback port until dropped.
struct Running {
    addr: SocketAddr,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), larder::axum::ServeError>>>,
}

impl Running {
    async fn start(cache: Cache) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState::new(cache);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app::run(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        Running {
            addr,
            state,
            stop: Some(stop),
            server: Some(server),
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        self.call("GET", path, headers, "").await
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, String) {
        app::call(self.addr, method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn runs(&self) -> usize {
        self.state.handler_runs.load(Ordering::SeqCst)
    }

    /// Stop accepting, finish in-flight requests, close the cache.
    async fn shutdown(mut self) -> Result<(), larder::axum::ServeError> {
        let _ = self.stop.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap()
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_get_is_a_hit_etags_give_304_and_a_write_gives_a_new_body_and_etag() {
    let app = Running::start(larder::open("mem://").await.unwrap()).await;

    let (status, headers, first) = app.get("/users/1", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "x-cache"), "MISS");
    assert_eq!(header(&headers, "age"), "0");
    assert_eq!(header(&headers, "cache-control"), "max-age=60");
    let etag = header(&headers, "etag").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34,
        "{etag}"
    );
    let user: User = serde_json::from_str(&first).unwrap();
    assert_eq!(user.name, "Ada Lovelace");
    assert_eq!(app.runs(), 1);

    let (status, headers, second) = app.get("/users/1", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "x-cache"), "HIT");
    assert_eq!(header(&headers, "etag"), etag);
    assert_eq!(header(&headers, "content-type"), "application/json");
    assert_eq!(header(&headers, "vary"), "accept");
    assert_eq!(second, first);
    assert_eq!(app.runs(), 1, "the handler did not run for the hit");

    // Conditional requests: the tag itself, weak, in a list, and `*`.
    let weak = format!("W/{etag}");
    let listed = format!("\"nope\", {etag}");
    for condition in [etag.as_str(), &weak, &listed, "*"] {
        let (status, headers, body) = app.get("/users/1", &[("if-none-match", condition)]).await;
        assert_eq!(
            status,
            StatusCode::NOT_MODIFIED,
            "If-None-Match: {condition}"
        );
        assert!(body.is_empty(), "a 304 has no body");
        assert_eq!(header(&headers, "etag"), etag);
        assert!(header(&headers, "cache-control").contains("max-age=60"));
        header(&headers, "age");
    }
    let (status, _, _) = app.get("/users/1", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(status, StatusCode::OK);

    // HEAD is answered from the GET entry, with the length and no body.
    let (status, headers, body) = app.call("HEAD", "/users/1", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "x-cache"), "HIT");
    assert_eq!(header(&headers, "content-length"), first.len().to_string());
    assert!(body.is_empty());
    assert_eq!(app.runs(), 1);

    // Age grows while the entry is kept.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, headers, _) = app.get("/users/1", &[]).await;
    let age: u64 = header(&headers, "age").parse().unwrap();
    assert!((2..=4).contains(&age), "Age {age}");

    // A write through #[cache_write] invalidates `user:1`: the data and
    // the response, with its ETag.
    let (status, _, _) = app
        .call("PUT", "/users/1", &[], r#"{"name":"Ada King"}"#)
        .await;
    assert_eq!(status, StatusCode::OK);
    let runs = app.runs();
    let (status, headers, body) = app.get("/users/1", &[("if-none-match", &etag)]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "never a 304 for a replaced response"
    );
    assert_eq!(header(&headers, "x-cache"), "MISS");
    let new_etag = header(&headers, "etag").to_owned();
    assert_ne!(new_etag, etag);
    assert_eq!(
        serde_json::from_str::<User>(&body).unwrap().name,
        "Ada King"
    );
    assert_eq!(app.runs(), runs + 1);
    let (status, headers, _) = app.get("/users/1", &[("if-none-match", &new_etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(header(&headers, "x-cache"), "HIT");

    // The list is tagged `users`: a create drops it.
    let (_, _, list) = app.get("/users", &[]).await;
    assert_eq!(serde_json::from_str::<Vec<User>>(&list).unwrap().len(), 2);
    let (_, headers, _) = app.get("/users", &[]).await;
    assert_eq!(header(&headers, "x-cache"), "HIT");
    let (status, _, _) = app
        .call(
            "POST",
            "/users",
            &[],
            r#"{"name":"Edsger","email":"ed@example.com"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, headers, list) = app.get("/users", &[]).await;
    assert_eq!(header(&headers, "x-cache"), "MISS");
    assert_eq!(serde_json::from_str::<Vec<User>>(&list).unwrap().len(), 3);

    // A 404 is not stored.
    let runs = app.runs();
    for _ in 0..2 {
        let (status, headers, _) = app.get("/users/99", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(header(&headers, "x-cache"), "MISS");
    }
    assert_eq!(app.runs(), runs + 2);

    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_no_cache_stores_the_fresh_response_and_no_store_skips_the_cache() {
    let app = Running::start(larder::open("mem://").await.unwrap()).await;
    let cache = app.state.cache.clone();

    let (_, headers, first) = app.get("/users/2", &[]).await;
    assert_eq!(header(&headers, "x-cache"), "MISS");
    // Change what the handler would answer, without invalidating the
    // cached response (the data-level entry the handler reads).
    let changed = User {
        id: 2,
        name: "Grace B. M. Hopper".into(),
        email: "grace@example.com".into(),
    };
    cache.set("user:2", &Some(changed.clone())).await.unwrap();
    let (_, headers, body) = app.get("/users/2", &[]).await;
    assert_eq!(header(&headers, "x-cache"), "HIT");
    assert_eq!(body, first, "still the cached response");

    // no-cache: the handler runs, and its response replaces the cached one.
    let runs = app.runs();
    let (status, headers, fresh) = app.get("/users/2", &[("cache-control", "no-cache")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "x-cache"), "MISS");
    assert_eq!(serde_json::from_str::<User>(&fresh).unwrap(), changed);
    assert_eq!(app.runs(), runs + 1);
    let fresh_etag = header(&headers, "etag").to_owned();
    let (_, headers, body) = app.get("/users/2", &[]).await;
    assert_eq!(header(&headers, "x-cache"), "HIT");
    assert_eq!(header(&headers, "etag"), fresh_etag);
    assert_eq!(body, fresh);
    // Pragma: no-cache (HTTP/1.0) too.
    let (_, headers, _) = app.get("/users/2", &[("pragma", "no-cache")]).await;
    assert_eq!(header(&headers, "x-cache"), "MISS");

    // no-store: neither read nor stored.
    let runs = app.runs();
    for _ in 0..2 {
        let (status, headers, _) = app.get("/users", &[("cache-control", "no-store")]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "x-cache"), "BYPASS");
    }
    assert_eq!(app.runs(), runs + 2);
    let (_, headers, _) = app.get("/users", &[]).await;
    assert_eq!(
        header(&headers, "x-cache"),
        "MISS",
        "no-store stored nothing"
    );
    let (_, headers, _) = app.get("/users", &[("cache-control", "no-store")]).await;
    assert_eq!(
        header(&headers, "x-cache"),
        "BYPASS",
        "nor read what is stored"
    );

    // Authorization: per user, so bypassed.
    let (_, headers, _) = app.get("/users", &[("authorization", "Bearer t")]).await;
    assert_eq!(header(&headers, "x-cache"), "BYPASS");

    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_setting_cookies_are_never_cached() {
    let app = Running::start(larder::open("mem://").await.unwrap()).await;
    let (_, first, _) = app.get("/me", &[]).await;
    let (_, second, _) = app.get("/me", &[]).await;
    assert_eq!(header(&first, "x-cache"), "MISS");
    assert_eq!(header(&second, "x-cache"), "MISS");
    assert_ne!(
        header(&first, "set-cookie"),
        header(&second, "set-cookie"),
        "each visitor gets their own cookie"
    );
    assert_eq!(app.runs(), 2);
    let stored = app.state.cache.scan("http:*", 100).await.unwrap();
    assert!(stored.iter().all(|k| !k.contains("/me")), "{stored:?}");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_while_redis_is_down_and_reads_still_answer() {
    let mut redis = RedisServer::start();
    let cache = larder::open(&redis.url()).await.unwrap();
    let app = Running::start(cache).await;

    let (status, headers, body) = app.get("/health", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&headers, "cache-control"), "no-store");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "healthy");
    assert_eq!(report["backend"], "redis");

    let (_, headers, _) = app.get("/users/1", &[]).await;
    assert_eq!(header(&headers, "x-cache"), "MISS");
    let (_, headers, _) = app.get("/users/1", &[]).await;
    assert_eq!(header(&headers, "x-cache"), "HIT");

    redis.stop();
    let (status, _, body) = app.get("/health", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "unhealthy");
    assert!(
        !report["reasons"].as_array().unwrap().is_empty(),
        "{report}"
    );
    // The cache is out, the service is not: reads run the handler.
    let (status, headers, body) = app.get("/users/1", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "x-cache"), "MISS");
    assert!(body.contains("Ada"));

    redis.restart();
    let mut healthy = false;
    for _ in 0..50 {
        if app.get("/health", &[]).await.0 == StatusCode::OK {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(healthy, "health recovers once Redis is back");
    // Closing a cache whose server came back succeeds.
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_stores_in_redis_and_a_second_app_instance_shares_it() {
    let redis = RedisServer::start();
    let one = Running::start(larder::open(&redis.url()).await.unwrap()).await;
    let two = Running::start(larder::open(&redis.url()).await.unwrap()).await;
    let (_, headers, body) = one.get("/users/2", &[]).await;
    assert_eq!(header(&headers, "x-cache"), "MISS");
    let etag = header(&headers, "etag").to_owned();
    let (status, headers, _) = two.get("/users/2", &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(header(&headers, "x-cache"), "HIT");
    assert_eq!(two.runs(), 0, "the second instance answered from Redis");
    let (_, _, shared) = two.get("/users/2", &[]).await;
    assert_eq!(shared, body);
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_near_caches_a_write_on_one_instance_reaches_the_others_responses() {
    let redis = RedisServer::start();
    let url = format!("{}?near=1000", redis.url());
    let one = Running::start(larder::open(&url).await.unwrap()).await;
    let two = Running::start(larder::open(&url).await.unwrap()).await;
    assert!(two.state.cache.has_near());
    // Both instances hold the response in their L1.
    let (_, _, before) = one.get("/users/2", &[]).await;
    let (_, headers, _) = two.get("/users/2", &[]).await;
    assert_eq!(header(&headers, "x-cache"), "HIT", "stored by instance one");
    for _ in 0..3 {
        let (_, headers, body) = two.get("/users/2", &[]).await;
        assert_eq!(header(&headers, "x-cache"), "HIT");
        assert_eq!(body, before);
    }
    let (status, _, _) = one
        .call(
            "PUT",
            "/users/2",
            &[],
            r#"{"name":"Grace Brewster Hopper"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The tag reached instance two's L1 within 50 ms: its cached response
    // is gone, and its handler runs again. (Each instance has its own
    // table, so instance two reloads its own copy of the user.)
    let runs = two.runs();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, headers, _) = two.get("/users/2", &[]).await;
    assert_eq!(
        header(&headers, "x-cache"),
        "MISS",
        "a replaced response was served"
    );
    assert_eq!(two.runs(), runs + 1);
    let (_, headers, _) = two.get("/users/2", &[]).await;
    assert_eq!(header(&headers, "x-cache"), "HIT");
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}
