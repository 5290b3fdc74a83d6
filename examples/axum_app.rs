//! A small user service on axum, cached by larder at two levels: the data
//! (`#[cache_read]` / `#[cache_write]`) and the HTTP responses
//! (`ResponseCacheLayer`, with ETags and 304s).
//!
//!     cargo run --example axum_app --features axum             # serves on 127.0.0.1:3000
//!     APP_ADDR=0.0.0.0:8080 cargo run --example axum_app --features axum
//!     LARDER_URL=redis://127.0.0.1:6379 cargo run --example axum_app --features axum
//!     cargo run --example axum_app --features axum -- --demo   # talks to itself, then exits
//!
//! Routes:
//!
//! | route | what |
//! |---|---|
//! | `GET /users`, `GET /users/{id}` | cached reads (tags `users`, `user:{id}`) |
//! | `POST /users`, `PUT /users/{id}`, `DELETE /users/{id}` | writes that invalidate those tags |
//! | `GET /me` | sets a cookie: never cached |
//! | `GET /health` | `200` while the cache serves, `503` when it does not |
//! | `GET /stats` | handler runs, database queries, cache hits and misses |
//!
//! Try it with curl:
//!
//!     curl -i localhost:3000/users/1          # X-Cache: MISS, then HIT
//!     curl -i localhost:3000/users/1 -H 'If-None-Match: "<etag>"'   # 304
//!     curl -i -X PUT localhost:3000/users/1 -H 'content-type: application/json' -d '{"name":"Ada L."}'

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRef, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use larder::axum::{CacheTags, ResponseCacheLayer};
use larder::{Cache, cache_read, cache_write};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// A user, as stored and as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Its id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Contact address.
    pub email: String,
}

/// The body of `POST /users`.
#[derive(Debug, Deserialize)]
pub struct NewUser {
    /// Display name.
    pub name: String,
    /// Contact address.
    pub email: String,
}

/// The body of `PUT /users/{id}`.
#[derive(Debug, Deserialize)]
pub struct UserChange {
    /// The new display name.
    pub name: String,
}

/// The table could not be read (a poisoned lock stands in for a database
/// outage).
#[derive(Debug)]
pub struct DbError;

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the user table is unavailable")
    }
}

impl std::error::Error for DbError {}

impl IntoResponse for DbError {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// The data layer: a table behind cached reads and invalidating writes.
pub struct Users {
    cache: Cache,
    table: Mutex<BTreeMap<u64, User>>,
    next_id: AtomicU64,
    queries: AtomicUsize,
}

impl Users {
    /// Two users, reads and writes cached in `cache`.
    pub fn new(cache: Cache) -> Self {
        let table = [(1, "Ada Lovelace"), (2, "Grace Hopper")]
            .into_iter()
            .map(|(id, name)| {
                let email = format!(
                    "{}@example.com",
                    name.split(' ').next().unwrap_or("x").to_lowercase()
                );
                (
                    id,
                    User {
                        id,
                        name: name.into(),
                        email,
                    },
                )
            })
            .collect();
        Users {
            cache,
            table: Mutex::new(table),
            next_id: AtomicU64::new(3),
            queries: AtomicUsize::new(0),
        }
    }

    fn table(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<u64, User>>, DbError> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        self.table.lock().map_err(|_| DbError)
    }

    #[cache_read(key = "user:{id}", ttl = "5m", tags = ["user:{id}"], cache = self.cache)]
    async fn find(&self, id: u64) -> Result<Option<User>, DbError> {
        Ok(self.table()?.get(&id).cloned())
    }

    #[cache_read(key = "users:all", ttl = "5m", tags = ["users"], cache = self.cache)]
    async fn all(&self) -> Result<Vec<User>, DbError> {
        Ok(self.table()?.values().cloned().collect())
    }

    #[cache_write(tags = ["users"], cache = self.cache)]
    async fn create(&self, new: NewUser) -> Result<User, DbError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let user = User {
            id,
            name: new.name,
            email: new.email,
        };
        self.table()?.insert(id, user.clone());
        Ok(user)
    }

    #[cache_write(tags = ["users", "user:{id}"], cache = self.cache)]
    async fn rename(&self, id: u64, name: String) -> Result<Option<User>, DbError> {
        let mut table = self.table()?;
        Ok(table.get_mut(&id).map(|user| {
            user.name = name;
            user.clone()
        }))
    }

    #[cache_write(tags = ["users", "user:{id}"], cache = self.cache)]
    async fn remove(&self, id: u64) -> Result<bool, DbError> {
        Ok(self.table()?.remove(&id).is_some())
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The cache of both levels (data and responses).
    pub cache: Cache,
    /// The data layer.
    pub users: Arc<Users>,
    /// How many times a data handler ran (a cached response runs none).
    pub handler_runs: Arc<AtomicUsize>,
}

impl FromRef<AppState> for Cache {
    fn from_ref(state: &AppState) -> Cache {
        state.cache.clone()
    }
}

impl AppState {
    /// The state of a fresh service over `cache`.
    pub fn new(cache: Cache) -> Self {
        AppState {
            users: Arc::new(Users::new(cache.clone())),
            cache,
            handler_runs: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn ran(&self) {
        self.handler_runs.fetch_add(1, Ordering::SeqCst);
    }
}

async fn list_users(
    State(state): State<AppState>,
) -> Result<(CacheTags, Json<Vec<User>>), DbError> {
    state.ran();
    Ok((CacheTags::new(["users"]), Json(state.users.all().await?)))
}

async fn show_user(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Response, DbError> {
    state.ran();
    Ok(match state.users.find(id).await? {
        // The response is cached with the tag the writes invalidate.
        Some(user) => (CacheTags::new([format!("user:{id}")]), Json(user)).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no user {id}")).into_response(),
    })
}

async fn create_user(
    State(state): State<AppState>,
    Json(new): Json<NewUser>,
) -> Result<Response, DbError> {
    state.ran();
    let user = state.users.create(new).await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

async fn rename_user(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    Json(change): Json<UserChange>,
) -> Result<Response, DbError> {
    state.ran();
    Ok(match state.users.rename(id, change.name).await? {
        Some(user) => Json(user).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no user {id}")).into_response(),
    })
}

async fn delete_user(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<StatusCode, DbError> {
    state.ran();
    Ok(if state.users.remove(id).await? {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    })
}

/// Per-visitor: it sets a cookie, so the layer never stores it.
async fn me(State(state): State<AppState>) -> impl IntoResponse {
    state.ran();
    let visit = state.handler_runs.load(Ordering::SeqCst);
    (
        [(
            header::SET_COOKIE,
            format!("visit={visit}; HttpOnly; Path=/"),
        )],
        Json(serde_json::json!({ "visit": visit })),
    )
}

async fn stats(State(state): State<AppState>) -> Json<serde_json::Value> {
    let cache = state.cache.stats();
    Json(serde_json::json!({
        "handler_runs": state.handler_runs.load(Ordering::SeqCst),
        "db_queries": state.users.queries.load(Ordering::SeqCst),
        "cache_hits": cache.hits,
        "cache_misses": cache.misses,
    }))
}

/// The service: the data routes behind the response cache, then health and
/// stats (not cached).
pub fn app(state: AppState) -> Router {
    let responses = ResponseCacheLayer::new(state.cache.clone())
        .ttl(Duration::from_secs(60))
        .vary(["accept"]);
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route(
            "/users/{id}",
            get(show_user).put(rename_user).delete(delete_user),
        )
        .route("/me", get(me))
        .layer(responses)
        .route("/health", get(larder::axum::health))
        .route("/stats", get(stats))
        .with_state(state)
}

/// Serve the app on `listener` until `shutdown`, then close the cache.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), larder::axum::ServeError> {
    let cache = state.cache.clone();
    larder::axum::serve(listener, app(state), cache)
        .with_graceful_shutdown(shutdown)
        .await
}

/// One HTTP/1.1 exchange with `addr`, through hyper's client: status,
/// headers and body.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(StatusCode, axum::http::HeaderMap, String), Box<dyn std::error::Error + Send + Sync>> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if !body.is_empty() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body.to_owned())))?)
        .await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

fn shown(headers: &axum::http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

/// `--demo`: serve on a free loopback port, make the requests a user would
/// make with curl, print what came back, and stop.
async fn demo(cache: Cache) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = AppState::new(cache);
    let runs = state.handler_runs.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(listener, state, async {
        let _ = stopped.await;
    }));

    let (status, headers, body) = call(addr, "GET", "/users/1", &[], "").await?;
    println!(
        "GET /users/1          -> {status} X-Cache {} ETag {} {body}",
        shown(&headers, "x-cache"),
        shown(&headers, "etag")
    );
    let etag = shown(&headers, "etag");
    let (status, headers, _) = call(addr, "GET", "/users/1", &[], "").await?;
    println!(
        "GET /users/1 again    -> {status} X-Cache {} Age {} ({} handler run)",
        shown(&headers, "x-cache"),
        shown(&headers, "age"),
        runs.load(Ordering::SeqCst)
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the second GET is served from the cache"
    );
    let (status, _, body) = call(addr, "GET", "/users/1", &[("if-none-match", &etag)], "").await?;
    println!(
        "GET with If-None-Match -> {status} (body {} bytes)",
        body.len()
    );
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    let (status, _, _) = call(addr, "PUT", "/users/1", &[], r#"{"name":"Ada King"}"#).await?;
    println!("PUT /users/1          -> {status}: tags users and user:1 invalidated");
    let (status, headers, body) =
        call(addr, "GET", "/users/1", &[("if-none-match", &etag)], "").await?;
    println!(
        "GET with the old ETag -> {status} X-Cache {} ETag {} {body}",
        shown(&headers, "x-cache"),
        shown(&headers, "etag")
    );
    assert_eq!(status, StatusCode::OK, "a replaced response is never a 304");
    assert!(body.contains("Ada King"));
    let (status, _, body) = call(addr, "GET", "/health", &[], "").await?;
    println!("GET /health           -> {status} {body}");

    let _ = stop.send(());
    server.await??;
    println!("server stopped, cache closed");
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = serve().await {
        eprintln!("axum_app: {e}");
        std::process::exit(1);
    }
}

async fn serve() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // `LARDER_URL` (or larder.toml) picks the backend; `mem://` otherwise.
    let cache = larder::from_env().await?;
    if std::env::args().any(|a| a == "--demo") {
        return demo(cache).await;
    }
    let addr = std::env::var("APP_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr:?} (APP_ADDR, host:port): {e}"))?;
    println!(
        "users service on http://{addr} (cache: {}); Ctrl-C stops it",
        cache.backend().label()
    );
    run(
        listener,
        AppState::new(cache),
        larder::axum::shutdown_signal(),
    )
    .await?;
    Ok(())
}
