//! A response as the cache stores it, how one is judged worth storing, and
//! how a stored one is sent back (200, HEAD or 304).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::layer::Settings;
use crate::request::IfNoneMatch;

/// The header that says how the layer answered: `HIT`, `MISS` or `BYPASS`.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Headers never stored: hop-by-hop ones, the ones the layer writes itself,
/// and the length (recomputed from the body).
const NOT_STORED: [HeaderName; 12] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::CONTENT_LENGTH,
    header::AGE,
    header::ETAG,
    X_CACHE,
];

/// A cached response: status, headers and body, with its strong ETag, when
/// it was stored and how long it is fresh. One value, so the body and its
/// ETag are invalidated together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredResponse {
    status: u16,
    headers: Vec<(String, String)>,
    /// The body when it is UTF-8 (JSON, HTML, text): readable in `larder get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    /// The body otherwise, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
    etag: String,
    stored_at_ms: u64,
    max_age: u64,
    /// `Set-Cookie` headers stripped from the stored copy
    /// ([`ResponseCacheLayer::strip_set_cookie`](crate::ResponseCacheLayer::strip_set_cookie)):
    /// sent to the caller whose request produced them, never stored.
    #[serde(skip)]
    private: Vec<HeaderValue>,
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Status,
    SetCookie,
    Private,
    NoStore,
    Vary,
    Size,
    Empty,
    Header,
}

impl Refusal {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Status => "status is not 200",
            Refusal::SetCookie => "it sets a cookie",
            Refusal::Private => "Cache-Control: private",
            Refusal::NoStore => "Cache-Control: no-store",
            Refusal::Vary => "it varies on a header the layer does not key on",
            Refusal::Size => "its body is streamed or larger than max_body_bytes",
            Refusal::Empty => "it has no body",
            Refusal::Header => "a header value is not visible ASCII",
        }
    }
}

/// Whether a response with these parts may be stored, before its body is
/// read. `body_upper` is the body's size hint's upper bound.
pub(crate) fn judge(
    status: StatusCode,
    headers: &HeaderMap,
    body_upper: Option<u64>,
    settings: &Settings,
) -> Result<(), Refusal> {
    if status != StatusCode::OK {
        return Err(Refusal::Status);
    }
    if headers.contains_key(header::SET_COOKIE) && !settings.strip_set_cookie {
        return Err(Refusal::SetCookie);
    }
    for directive in directives(headers) {
        if directive.eq_ignore_ascii_case("private") && !settings.allow_private {
            return Err(Refusal::Private);
        }
        if directive.eq_ignore_ascii_case("no-store") && !settings.allow_no_store {
            return Err(Refusal::NoStore);
        }
    }
    for value in headers.get_all(header::VARY) {
        let Ok(value) = value.to_str() else {
            return Err(Refusal::Vary);
        };
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !settings
                .vary
                .iter()
                .any(|v| v.as_str().eq_ignore_ascii_case(name))
            {
                return Err(Refusal::Vary);
            }
        }
    }
    match body_upper {
        Some(0) => Err(Refusal::Empty),
        Some(n) if n <= settings.max_body_bytes as u64 => Ok(()),
        _ => Err(Refusal::Size),
    }
}

/// The `Cache-Control` directives of `headers`, names and values as sent.
fn directives(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CACHE_CONTROL)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|d| !d.is_empty())
}

impl StoredResponse {
    /// The stored form of a judged response whose body is `body`.
    pub(crate) fn capture(
        status: StatusCode,
        headers: &HeaderMap,
        body: Bytes,
        settings: &Settings,
    ) -> Result<Self, Refusal> {
        if body.is_empty() {
            return Err(Refusal::Empty);
        }
        let mut stored = Vec::with_capacity(headers.len());
        let mut private = Vec::new();
        let mut etag = None;
        for (name, value) in headers {
            if name == header::SET_COOKIE {
                private.push(value.clone());
                continue;
            }
            if name == header::ETAG {
                // A strong tag from the handler is kept; a weak one is
                // replaced, since every cached response carries a strong one.
                etag = value
                    .to_str()
                    .ok()
                    .filter(|t| t.starts_with('"'))
                    .map(str::to_owned);
                continue;
            }
            if NOT_STORED.contains(name) {
                continue;
            }
            let value = value.to_str().map_err(|_| Refusal::Header)?;
            stored.push((name.as_str().to_owned(), value.to_owned()));
        }
        let etag = etag.unwrap_or_else(|| strong_etag(headers, &body));
        let (text, base64) = match String::from_utf8(body.into()) {
            Ok(text) => (Some(text), None),
            Err(e) => (None, Some(STANDARD.encode(e.as_bytes()))),
        };
        Ok(StoredResponse {
            status: status.as_u16(),
            headers: stored,
            text,
            base64,
            etag,
            stored_at_ms: now_ms(),
            max_age: settings.ttl.as_secs(),
            private,
        })
    }

    /// Send it back: a 304 when `if_none_match` matches its ETag, else the
    /// response (without its body for a HEAD request). `hit` says whether
    /// it came from the cache.
    pub(crate) fn respond(
        &self,
        head: bool,
        hit: bool,
        if_none_match: Option<&IfNoneMatch>,
        settings: &Settings,
    ) -> Response<Body> {
        let age = now_ms().saturating_sub(self.stored_at_ms) / 1000;
        let not_modified = if_none_match.is_some_and(|m| m.matches(&self.etag));
        let mut response = Response::new(Body::empty());
        let mut cache_control = String::new();
        if not_modified {
            *response.status_mut() = StatusCode::NOT_MODIFIED;
        } else {
            *response.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        }
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                continue;
            };
            if name == header::CACHE_CONTROL {
                for d in value.to_str().unwrap_or("").split(',').map(str::trim) {
                    let lower = d.to_ascii_lowercase();
                    if !d.is_empty()
                        && !lower.starts_with("max-age")
                        && !lower.starts_with("s-maxage")
                    {
                        let _ = write!(cache_control, "{d}, ");
                    }
                }
                continue;
            }
            // A 304 carries the validators and caching headers only.
            if not_modified
                && !matches!(
                    name,
                    header::VARY | header::EXPIRES | header::CONTENT_LOCATION
                )
            {
                continue;
            }
            headers.append(name, value);
        }
        let _ = write!(cache_control, "max-age={}", self.max_age);
        for cookie in &self.private {
            headers.append(header::SET_COOKIE, cookie.clone());
        }
        if let Ok(etag) = HeaderValue::from_str(&self.etag) {
            headers.insert(header::ETAG, etag);
        }
        headers.insert(header::AGE, HeaderValue::from(age));
        if let Ok(value) = HeaderValue::from_str(&cache_control) {
            headers.insert(header::CACHE_CONTROL, value);
        }
        if let Some(vary) = &settings.vary_header {
            headers.insert(header::VARY, vary.clone());
        }
        if settings.status_header {
            headers.insert(
                X_CACHE,
                HeaderValue::from_static(if hit { "HIT" } else { "MISS" }),
            );
        }
        if not_modified {
            return response;
        }
        let body = match (&self.text, &self.base64) {
            (Some(text), _) => Bytes::copy_from_slice(text.as_bytes()),
            (None, Some(encoded)) => STANDARD
                .decode(encoded)
                .map(Bytes::from)
                .unwrap_or_default(),
            (None, None) => Bytes::new(),
        };
        if head {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        } else {
            *response.body_mut() = Body::from(body);
        }
        response
    }
}

/// A strong ETag for a representation: the SHA-256 of its type, encoding
/// and bytes, 128 bits in hex, quoted.
fn strong_etag(headers: &HeaderMap, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for name in [header::CONTENT_TYPE, header::CONTENT_ENCODING] {
        if let Some(value) = headers.get(&name) {
            hasher.update(value.as_bytes());
        }
        hasher.update(b"\n");
    }
    hasher.update(body);
    let mut etag = String::with_capacity(34);
    etag.push('"');
    for byte in &hasher.finalize()[..16] {
        let _ = write!(etag, "{byte:02x}");
    }
    etag.push('"');
    etag
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
