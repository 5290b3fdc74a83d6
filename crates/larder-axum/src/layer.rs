//! [`ResponseCacheLayer`]: the tower layer, and [`ResponseCache`], the
//! service it wraps around a route.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use larder_core::{Cache, FillOptions, Outcome, recache};
use tower::{Layer, Service};

use crate::request::{self, Directives, IfNoneMatch};
use crate::stored::{self, StoredResponse, X_CACHE};
use crate::tags::CacheTags;

type TagsFn = dyn Fn(&http::request::Parts) -> Vec<String> + Send + Sync;

/// Default freshness of a cached response.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// Default limit on the body of a stored response.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Caches the responses of the routes it wraps, in a larder [`Cache`].
///
/// GET responses are stored under a key made of the path, the query sorted
/// by parameter name, and the values of the [`vary`](Self::vary) headers; a
/// HEAD request is answered from the GET entry. Only `200` responses with a
/// body of known size are stored, and never one that sets a cookie, says
/// `Cache-Control: private` or `no-store`, or varies on a header the key
/// leaves out, unless told to. Every response the layer answers carries a
/// strong `ETag`, `Age`, `Cache-Control: max-age` (the freshness the TTL
/// gives; `max-age` minus `Age` is what remains), and `X-Cache: HIT` or
/// `MISS`.
///
/// A request with `Cache-Control: no-cache` skips the cached response and
/// stores the fresh one; `no-store` skips the cache entirely (`X-Cache:
/// BYPASS`), as does a request with `Authorization` unless that header is a
/// `vary` header or [`cache_authorized`](Self::cache_authorized) is set.
/// `If-None-Match` is answered with `304 Not Modified` when it matches.
///
/// Misses of one key share one run of the handler (single-flight), and a
/// response that a write invalidated while the handler ran is not stored,
/// so a `304` is never sent for a replaced response: invalidating a tag
/// drops the responses and their ETags together.
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use larder_axum::ResponseCacheLayer;
///
/// # async fn demo(cache: larder_core::Cache) {
/// let app: Router = Router::new()
///     .route("/products", get(|| async { "[]" }))
///     .layer(
///         ResponseCacheLayer::new(cache)
///             .ttl(Duration::from_secs(30))
///             .tags(["products"])
///             .vary(["accept-language"]),
///     );
/// # let _ = app; }
/// ```
#[derive(Clone)]
pub struct ResponseCacheLayer {
    settings: Arc<Settings>,
}

/// What a [`ResponseCacheLayer`] was configured with.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) cache: Cache,
    pub(crate) ttl: Duration,
    tags: Vec<String>,
    tags_from: Option<Arc<TagsFn>>,
    pub(crate) vary: Vec<HeaderName>,
    pub(crate) vary_header: Option<HeaderValue>,
    key_prefix: String,
    pub(crate) max_body_bytes: usize,
    pub(crate) allow_private: bool,
    pub(crate) allow_no_store: bool,
    pub(crate) strip_set_cookie: bool,
    cache_authorized: bool,
    pub(crate) status_header: bool,
}

impl fmt::Debug for ResponseCacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("ResponseCacheLayer")
            .field("cache", &s.cache)
            .field("ttl", &s.ttl)
            .field("tags", &s.tags)
            .field("tags_from", &s.tags_from.is_some())
            .field("vary", &s.vary)
            .field("key_prefix", &s.key_prefix)
            .field("max_body_bytes", &s.max_body_bytes)
            .field("allow_private", &s.allow_private)
            .field("allow_no_store", &s.allow_no_store)
            .field("strip_set_cookie", &s.strip_set_cookie)
            .field("cache_authorized", &s.cache_authorized)
            .field("status_header", &s.status_header)
            .finish()
    }
}

impl ResponseCacheLayer {
    /// A layer storing in `cache`, with a TTL of 60 s, no tags, no `vary`
    /// headers, keys under `http:`, and bodies up to 1 MiB.
    pub fn new(cache: Cache) -> Self {
        ResponseCacheLayer {
            settings: Arc::new(Settings {
                cache,
                ttl: DEFAULT_TTL,
                tags: Vec::new(),
                tags_from: None,
                vary: Vec::new(),
                vary_header: None,
                key_prefix: "http".to_owned(),
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                allow_private: false,
                allow_no_store: false,
                strip_set_cookie: false,
                cache_authorized: false,
                status_header: true,
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Arc::unwrap_or_clone(self.settings);
        change(&mut settings);
        self.settings = Arc::new(settings);
        self
    }

    /// How long a response is stored and fresh (default 60 s). It is also
    /// the `max-age` the responses carry. The cache's `ttl_jitter` spreads
    /// the stored life around it, not the header.
    #[must_use]
    pub fn ttl(self, ttl: Duration) -> Self {
        self.with(|s| s.ttl = ttl)
    }

    /// Tags every stored response of these routes carries: invalidate one
    /// (`cache.invalidate_tag`) to drop them all. Handlers add their own
    /// with [`CacheTags`].
    #[must_use]
    pub fn tags<I, S>(self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let tags: Vec<String> = tags.into_iter().map(|t| t.as_ref().to_owned()).collect();
        self.with(|s| s.tags.extend(tags))
    }

    /// Tags computed from the request (its path, a tenant header), added
    /// to the static ones.
    #[must_use]
    pub fn tags_from<F>(self, tags: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Vec<String> + Send + Sync + 'static,
    {
        self.with(|s| s.tags_from = Some(Arc::new(tags)))
    }

    /// Request headers whose values select a different response
    /// (`accept-language`, `accept-encoding`): part of the key, and listed
    /// in the `Vary` header of responses. A response whose own `Vary` names
    /// a header not listed here is not stored.
    ///
    /// # Panics
    ///
    /// When a name is not a valid header name: a programming error, found
    /// when the router is built.
    #[must_use]
    pub fn vary<I, S>(self, headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names: Vec<HeaderName> = headers
            .into_iter()
            .map(|h| {
                HeaderName::from_bytes(h.as_ref().trim().as_bytes()).unwrap_or_else(|_| {
                    panic!(
                        "ResponseCacheLayer::vary: {:?} is not a header name",
                        h.as_ref()
                    )
                })
            })
            .collect();
        self.with(|s| {
            for name in names {
                if !s.vary.contains(&name) {
                    s.vary.push(name);
                }
            }
            let list: Vec<&str> = s.vary.iter().map(HeaderName::as_str).collect();
            s.vary_header = HeaderValue::from_str(&list.join(", ")).ok();
        })
    }

    /// First part of the cache keys (default `http`): keys are
    /// `{prefix}:GET:/path?query` inside the cache's namespace, so
    /// `cache.invalidate_pattern("http:GET:/users*")` drops a path's
    /// responses.
    #[must_use]
    pub fn key_prefix(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.with(|s| s.key_prefix = prefix)
    }

    /// Largest body stored (default 1 MiB). Larger bodies, and streamed
    /// ones of unknown length, are passed through and not stored.
    #[must_use]
    pub fn max_body_bytes(self, bytes: usize) -> Self {
        self.with(|s| s.max_body_bytes = bytes)
    }

    /// Store responses marked `Cache-Control: private` (default: no). Only
    /// for a cache keyed by the user (a `vary` header that identifies them).
    #[must_use]
    pub fn allow_private(self, allow: bool) -> Self {
        self.with(|s| s.allow_private = allow)
    }

    /// Store responses marked `Cache-Control: no-store` (default: no).
    #[must_use]
    pub fn allow_no_store(self, allow: bool) -> Self {
        self.with(|s| s.allow_no_store = allow)
    }

    /// Store responses that set a cookie, without their `Set-Cookie`
    /// headers (default: such responses are not stored). The caller whose
    /// request produced the response still gets its cookies; later callers
    /// get none, so one user's session is never handed to another.
    #[must_use]
    pub fn strip_set_cookie(self, strip: bool) -> Self {
        self.with(|s| s.strip_set_cookie = strip)
    }

    /// Cache requests carrying `Authorization` (default: bypassed unless
    /// `authorization` is a [`vary`](Self::vary) header). Only when the
    /// response is the same for every user who may see it.
    #[must_use]
    pub fn cache_authorized(self, cache: bool) -> Self {
        self.with(|s| s.cache_authorized = cache)
    }

    /// Send `X-Cache: HIT | MISS | BYPASS` (default: yes).
    #[must_use]
    pub fn status_header(self, send: bool) -> Self {
        self.with(|s| s.status_header = send)
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseCache {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// The service a [`ResponseCacheLayer`] wraps around a route.
#[derive(Clone)]
pub struct ResponseCache<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> fmt::Debug for ResponseCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCache").finish_non_exhaustive()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseCache<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: HttpBody<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone that was driven to readiness serves this call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let settings = self.settings.clone();
        Box::pin(respond(settings, inner, request))
    }
}

/// What one run of the handler gave. The read-through holds outcomes
/// across awaits by reference, so they must be `Sync`: the parts that are
/// not (a streaming body, the service's error) sit behind a `Mutex` that
/// is only ever taken apart, never locked concurrently.
enum Fetched<E> {
    /// A response worth storing.
    Stored(StoredResponse),
    /// A response sent as it is, not stored.
    Passed(Mutex<Response<Body>>),
    /// The inner service failed.
    Failed(Mutex<E>),
}

impl<E> Fetched<E> {
    fn passed(response: Response<Body>) -> Self {
        Fetched::Passed(Mutex::new(response))
    }
}

impl<E> Outcome for Fetched<E> {
    type Value = StoredResponse;
    type Subject = StoredResponse;

    fn stored(&self, _cache_none: bool) -> Option<&StoredResponse> {
        self.value()
    }

    fn value(&self) -> Option<&StoredResponse> {
        match self {
            Fetched::Stored(stored) => Some(stored),
            _ => None,
        }
    }

    fn subject(&self) -> Option<&StoredResponse> {
        self.value()
    }

    fn from_stored(value: StoredResponse) -> Self {
        Fetched::Stored(value)
    }
}

async fn respond<S, ReqBody, ResBody>(
    settings: Arc<Settings>,
    mut inner: S,
    request: Request<ReqBody>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: HttpBody<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    let method = request.method().clone();
    if method != Method::GET && method != Method::HEAD {
        return inner.call(request).await.map(|r| r.map(Body::new));
    }
    let directives = Directives::of(request.headers());
    let authorized = request.headers().contains_key(header::AUTHORIZATION)
        && !settings.cache_authorized
        && !settings.vary.contains(&header::AUTHORIZATION);
    if directives.no_store || authorized {
        let response = inner.call(request).await?;
        return Ok(mark(response.map(Body::new), &settings, "BYPASS"));
    }
    let key = request::key(
        &settings.key_prefix,
        &method,
        request.uri(),
        request.headers(),
        &settings.vary,
    );
    let if_none_match = IfNoneMatch::of(request.headers());
    let cache = &settings.cache;
    let head = method == Method::HEAD;
    // A HEAD response has no body to store: answer it from the GET entry,
    // or pass it through. With a near cache, a GET hit there is the decoded
    // response itself, no decode (and a miss there costs a lookup more).
    if !directives.no_cache && (head || cache.has_near()) {
        match cache.get_shared::<StoredResponse>(&key).await {
            Ok(Some(stored)) => {
                return Ok(stored.respond(head, true, if_none_match.as_ref(), &settings));
            }
            Ok(None) => {}
            Err(e) => cache.record_error("http_get", &e),
        }
    }
    if head {
        let response = inner.call(request).await?;
        return Ok(mark(response.map(Body::new), &settings, "MISS"));
    }
    let (parts, body) = request.into_parts();
    let mut tags = settings.tags.clone();
    if let Some(from) = &settings.tags_from {
        tags.extend(from(&parts));
    }
    let request = Request::from_parts(parts, body);
    let tags = Mutex::new(tags);
    let ran = AtomicBool::new(false);
    let fill = FillOptions::new().ttl(settings.ttl);
    let load = || async {
        ran.store(true, Ordering::Relaxed);
        let response = match inner.call(request).await {
            Ok(response) => response,
            Err(e) => return Fetched::Failed(Mutex::new(e)),
        };
        if let Some(extra) = response.extensions().get::<CacheTags>() {
            tags.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(extra.iter().map(str::to_owned));
        }
        capture(response, &settings).await
    };
    let read = cache.read_through(
        &key,
        || std::mem::take(&mut *tags.lock().unwrap_or_else(PoisonError::into_inner)),
        &fill,
        |_: &StoredResponse| true,
        |_: &Fetched<S::Error>| None,
        load,
    );
    let fetched = if directives.no_cache {
        recache::refresh(read).await
    } else {
        read.await
    };
    let hit = !ran.load(Ordering::Relaxed);
    match fetched {
        Fetched::Stored(stored) => {
            Ok(stored.respond(false, hit, if_none_match.as_ref(), &settings))
        }
        Fetched::Passed(response) => Ok(mark(
            response
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
            &settings,
            "MISS",
        )),
        Fetched::Failed(e) => Err(e.into_inner().unwrap_or_else(PoisonError::into_inner)),
    }
}

/// Read the handler's response: stored when it is worth it, else passed on
/// as it came (its body rebuilt when it was read).
async fn capture<B, E>(response: Response<B>, settings: &Settings) -> Fetched<E>
where
    B: HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let upper = response.body().size_hint().upper();
    if let Err(refusal) = stored::judge(response.status(), response.headers(), upper, settings) {
        tracing::trace!(reason = refusal.reason(), "response not stored");
        return Fetched::passed(response.map(Body::new));
    }
    let (parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            // The body failed after the head was judged: pass the failure on
            // as the handler's own body would have.
            let e: axum::BoxError = e.into();
            tracing::warn!(error = %e, "response body failed; not stored");
            return Fetched::passed(Response::from_parts(parts, Body::new(FailedBody(Some(e)))));
        }
    };
    match StoredResponse::capture(parts.status, &parts.headers, bytes.clone(), settings) {
        Ok(stored) => Fetched::Stored(stored),
        Err(refusal) => {
            tracing::trace!(reason = refusal.reason(), "response not stored");
            Fetched::passed(Response::from_parts(parts, Body::from(bytes)))
        }
    }
}

/// A body that fails with the error the handler's body failed with.
struct FailedBody(Option<axum::BoxError>);

impl HttpBody for FailedBody {
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::BoxError>>> {
        Poll::Ready(self.0.take().map(Err))
    }
}

/// Add `X-Cache` to a response the layer did not build.
fn mark(mut response: Response<Body>, settings: &Settings, status: &'static str) -> Response<Body> {
    if settings.status_header {
        response
            .headers_mut()
            .insert(X_CACHE, HeaderValue::from_static(status));
    }
    response
}
