//! What the layer reads from a request: its cache key, its `Cache-Control`
//! directives, and its `If-None-Match` list.

use std::fmt::Write as _;

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Uri};
use sha2::{Digest, Sha256};

/// The request's own cache directives (`Cache-Control`, and `Pragma:
/// no-cache` from HTTP/1.0 clients when there is no `Cache-Control`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    /// Skip the cached response, but store the fresh one.
    pub(crate) no_cache: bool,
    /// Skip the cache entirely: neither read nor store.
    pub(crate) no_store: bool,
}

impl Directives {
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut directives = Directives::default();
        let mut seen = false;
        for value in headers.get_all(header::CACHE_CONTROL) {
            seen = true;
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',') {
                let name = directive.split('=').next().unwrap_or("").trim();
                if name.eq_ignore_ascii_case("no-cache") {
                    directives.no_cache = true;
                } else if name.eq_ignore_ascii_case("no-store") {
                    directives.no_store = true;
                }
            }
        }
        if !seen {
            directives.no_cache = headers.get_all(header::PRAGMA).iter().any(|v| {
                v.to_str().is_ok_and(|v| {
                    v.split(',')
                        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
                })
            });
        }
        directives
    }
}

/// The key a response to this request is cached under:
/// `{prefix}:GET:{path}`, then `?` and the query parameters sorted by name
/// (repeated names keep their order, since `a=1&a=2` may mean a list), then
/// `#` and a hash of the `Vary` headers' values when there are any. A HEAD
/// request has the key of the GET it stands for.
pub(crate) fn key(
    prefix: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    vary: &[HeaderName],
) -> String {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let path = uri.path();
    let mut key = String::with_capacity(prefix.len() + path.len() + 8);
    let _ = write!(key, "{prefix}:{method}:{path}");
    if let Some(query) = uri.query() {
        let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
        // A stable sort by name: repeated names keep their relative order.
        pairs.sort_by_key(|p| p.split('=').next().unwrap_or(p));
        if !pairs.is_empty() {
            key.push('?');
            key.push_str(&pairs.join("&"));
        }
    }
    if !vary.is_empty() {
        let mut hasher = Sha256::new();
        for name in vary {
            hasher.update(name.as_str().as_bytes());
            let values: Vec<&[u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
            // An absent header and an empty one are different variants.
            hasher.update(if values.is_empty() { b"\x00" } else { b"\x01" });
            for value in values {
                hasher.update(value);
                hasher.update(b"\n");
            }
            hasher.update(b"\x1e");
        }
        key.push('#');
        for byte in &hasher.finalize()[..8] {
            let _ = write!(key, "{byte:02x}");
        }
    }
    key
}

/// An `If-None-Match` header: `*`, or entity tags compared weakly (the
/// `W/` prefix ignored on both sides, as RFC 9110 asks for this header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IfNoneMatch {
    /// `*`: any current representation matches.
    Any,
    /// The opaque tags, quotes included, `W/` removed.
    Tags(Vec<String>),
}

impl IfNoneMatch {
    /// The request's `If-None-Match`, if it has a well-formed one. A header
    /// that does not parse is ignored (the full response is sent), never
    /// taken as a match.
    pub(crate) fn of(headers: &HeaderMap) -> Option<Self> {
        let mut tags = Vec::new();
        let mut any_header = false;
        for value in headers.get_all(header::IF_NONE_MATCH) {
            any_header = true;
            let value = value.to_str().ok()?;
            if value.trim() == "*" {
                return Some(IfNoneMatch::Any);
            }
            parse_list(value, &mut tags)?;
        }
        any_header.then_some(IfNoneMatch::Tags(tags))
    }

    /// Whether a response with the strong tag `etag` (quoted) matches.
    pub(crate) fn matches(&self, etag: &str) -> bool {
        let etag = etag.strip_prefix("W/").unwrap_or(etag);
        match self {
            IfNoneMatch::Any => true,
            IfNoneMatch::Tags(tags) => tags.iter().any(|t| t == etag),
        }
    }
}

/// Parse `W/"a", "b"` into `["\"a\"", "\"b\""]`; `None` when malformed.
fn parse_list(value: &str, out: &mut Vec<String>) -> Option<()> {
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Some(());
        }
        rest = rest.strip_prefix("W/").unwrap_or(rest);
        let inner = rest.strip_prefix('"')?;
        let end = inner.find('"')?;
        out.push(format!("\"{}\"", &inner[..end]));
        rest = &inner[end + 1..];
        if !(rest.is_empty() || rest.starts_with([' ', '\t', ','])) {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn key_of(uri: &str, pairs: &[(&str, &str)], vary: &[&'static str]) -> String {
        let vary: Vec<HeaderName> = vary.iter().map(|v| HeaderName::from_static(v)).collect();
        key(
            "http",
            &Method::GET,
            &uri.parse().unwrap(),
            &headers(pairs),
            &vary,
        )
    }

    #[test]
    fn query_is_sorted_by_name_keeping_repeated_names_in_order() {
        assert_eq!(
            key_of("/users?b=2&a=1", &[], &[]),
            "http:GET:/users?a=1&b=2"
        );
        assert_eq!(
            key_of("/users?a=1&b=2", &[], &[]),
            "http:GET:/users?a=1&b=2"
        );
        assert_eq!(
            key_of("/x?t=2&s=0&t=1", &[], &[]),
            "http:GET:/x?s=0&t=2&t=1"
        );
        assert_ne!(
            key_of("/x?t=2&t=1", &[], &[]),
            key_of("/x?t=1&t=2", &[], &[])
        );
        assert_eq!(key_of("/x?", &[], &[]), "http:GET:/x");
        assert_eq!(key_of("/x?&&a", &[], &[]), "http:GET:/x?a");
    }

    #[test]
    fn head_shares_the_key_of_get() {
        let uri: Uri = "/u/1".parse().unwrap();
        let h = HeaderMap::new();
        assert_eq!(
            key("http", &Method::HEAD, &uri, &h, &[]),
            key("http", &Method::GET, &uri, &h, &[])
        );
    }

    #[test]
    fn vary_headers_split_variants() {
        let vary = ["accept-language"];
        let en = key_of("/p", &[("accept-language", "en")], &vary);
        let fr = key_of("/p", &[("accept-language", "fr")], &vary);
        let none = key_of("/p", &[], &vary);
        let empty = key_of("/p", &[("accept-language", "")], &vary);
        assert!(en.starts_with("http:GET:/p#"), "{en}");
        assert_ne!(en, fr);
        assert_ne!(none, empty);
        assert_eq!(
            en,
            key_of("/p", &[("accept-language", "en"), ("x-other", "1")], &vary)
        );
    }

    #[test]
    fn request_directives() {
        let d = Directives::of(&headers(&[("cache-control", "max-age=0, No-Cache")]));
        assert!(d.no_cache && !d.no_store);
        let d = Directives::of(&headers(&[("cache-control", "no-store")]));
        assert!(d.no_store);
        let d = Directives::of(&headers(&[("pragma", "no-cache")]));
        assert!(d.no_cache);
        // Cache-Control wins over Pragma.
        let d = Directives::of(&headers(&[
            ("pragma", "no-cache"),
            ("cache-control", "max-age=5"),
        ]));
        assert!(!d.no_cache);
        assert_eq!(Directives::of(&HeaderMap::new()), Directives::default());
    }

    #[test]
    fn if_none_match_lists_weak_tags_and_star() {
        let m = IfNoneMatch::of(&headers(&[("if-none-match", r#"W/"a", "b""#)])).unwrap();
        assert!(m.matches("\"a\""));
        assert!(m.matches("\"b\""));
        assert!(m.matches("W/\"b\""));
        assert!(!m.matches("\"c\""));
        let m = IfNoneMatch::of(&headers(&[("if-none-match", "*")])).unwrap();
        assert!(m.matches("\"anything\""));
        let m = IfNoneMatch::of(&headers(&[
            ("if-none-match", "\"x\""),
            ("if-none-match", "\"y\""),
        ]))
        .unwrap();
        assert!(m.matches("\"y\""));
        assert_eq!(IfNoneMatch::of(&HeaderMap::new()), None);
    }

    #[test]
    fn malformed_if_none_match_never_matches() {
        for bad in ["abc", "\"open", "\"a\"\"b\"", "W/x"] {
            assert_eq!(
                IfNoneMatch::of(&headers(&[("if-none-match", bad)])),
                None,
                "{bad}"
            );
        }
    }
}
