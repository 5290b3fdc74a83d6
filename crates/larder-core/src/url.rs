//! Backend URLs: `scheme://[user[:password]@]host[:port][,host…][/path][?k=v&…]`.
//!
//! Only what larder's schemes need: several hosts for Sentinel, Cluster and
//! Memcached; percent-decoded credentials and query values; the password
//! never shown by `Debug` or [`BackendUrl::masked`].

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A parsed backend URL.
#[derive(Clone, PartialEq, Eq)]
pub struct BackendUrl {
    /// Scheme, lowercased (`redis`, `mem`, `redis+sentinel`).
    pub scheme: String,
    /// User name, percent-decoded.
    pub username: Option<String>,
    /// Password, percent-decoded. Never printed.
    pub password: Option<String>,
    /// `host[:port]` entries, in order.
    pub hosts: Vec<String>,
    /// Path after the hosts, without the leading `/`.
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    masked: String,
}

impl fmt::Debug for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BackendUrl").field(&self.masked).finish()
    }
}

impl fmt::Display for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn mask(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{hosts}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn percent_decode(field: &str, text: &str, url: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => {
                    return Err(Error::config(
                        field,
                        format!("URL {}", mask(url)),
                        "`%` followed by two hex digits",
                        text,
                    ));
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| {
        Error::config(
            field,
            format!("URL {}", mask(url)),
            "UTF-8 after percent-decoding",
            text,
        )
    })
}

impl BackendUrl {
    /// Parse `url`. Errors name the URL (password masked) and what is wrong.
    pub fn parse(url: &str) -> Result<Self> {
        let masked = mask(url);
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(Error::config(
                "url",
                "the cache URL",
                "`scheme://…`, such as mem://, redis://host:6379/0 or sqlite://cache.db",
                masked,
            ));
        };
        let scheme = scheme.to_ascii_lowercase();
        let valid_scheme = !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !valid_scheme {
            return Err(Error::config(
                "url",
                "the cache URL",
                "a scheme of letters, digits, `+`, `-` or `.`",
                masked,
            ));
        }
        let (before_query, query_text) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.split_once('/') {
            Some((a, p)) => (a, p),
            None => (before_query, ""),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, pass) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                let user = percent_decode("url username", user, url)?;
                let pass = pass
                    .map(|p| percent_decode("url password", p, url))
                    .transpose()?;
                ((!user.is_empty()).then_some(user), pass)
            }
        };
        let hosts = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        let mut query = Vec::new();
        for pair in query_text
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            query.push((
                percent_decode("url query", k, url)?,
                percent_decode("url query", v, url)?,
            ));
        }
        Ok(BackendUrl {
            scheme,
            username,
            password,
            hosts,
            path: path.to_owned(),
            query,
            masked,
        })
    }

    /// The URL with its password masked.
    pub fn masked(&self) -> &str {
        &self.masked
    }

    /// Reject query parameters outside `known`, so a typo is an error rather
    /// than a silently ignored option.
    pub fn ensure_known_params(&self, known: &[&str]) -> Result<()> {
        for (k, v) in &self.query {
            if !known.contains(&k.as_str()) {
                return Err(Error::config(
                    format!("url query parameter `{k}`"),
                    format!("URL {}", self.masked),
                    if known.is_empty() {
                        "no query parameters".to_owned()
                    } else {
                        format!("one of: {}", known.join(", "))
                    },
                    format!("{k}={v}"),
                ));
            }
        }
        Ok(())
    }

    /// The raw value of query parameter `name`, the last one if repeated.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Query parameter `name` parsed with `parse`; `expected` describes a
    /// valid value for the error message.
    pub fn param_with<T>(
        &self,
        name: &str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.param(name) {
            None => Ok(None),
            Some(raw) => parse(raw).map(Some).ok_or_else(|| {
                Error::config(
                    format!("url query parameter `{name}`"),
                    format!("URL {}", self.masked),
                    expected,
                    raw,
                )
            }),
        }
    }

    /// Query parameter `name` parsed with `FromStr`.
    pub fn param_parsed<T: FromStr>(&self, name: &str, expected: &str) -> Result<Option<T>> {
        self.param_with(name, expected, |raw| raw.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_schemes_larder_uses() {
        let u = BackendUrl::parse("redis://user:p%40ss@localhost:6379/2?timeout=5s").unwrap();
        assert_eq!(u.scheme, "redis");
        assert_eq!(u.username.as_deref(), Some("user"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.hosts, vec!["localhost:6379"]);
        assert_eq!(u.path, "2");
        assert_eq!(u.param("timeout"), Some("5s"));

        let s = BackendUrl::parse("redis+sentinel://h1:26379,h2:26379/mymaster/0").unwrap();
        assert_eq!(s.hosts, vec!["h1:26379", "h2:26379"]);
        assert_eq!(s.path, "mymaster/0");

        let m = BackendUrl::parse("mem://?max_entries=10").unwrap();
        assert!(m.hosts.is_empty());
        assert_eq!(m.param_parsed::<u64>("max_entries", "n").unwrap(), Some(10));

        let q = BackendUrl::parse("sqlite:///var/cache/a.db").unwrap();
        assert_eq!(q.path, "var/cache/a.db");
        let p = BackendUrl::parse("redis://:secret@h").unwrap();
        assert_eq!(p.username, None);
        assert_eq!(p.password.as_deref(), Some("secret"));
    }

    #[test]
    fn passwords_never_print() {
        let u = BackendUrl::parse("redis://user:hunter2@localhost:6379/0").unwrap();
        assert!(!format!("{u:?}").contains("hunter2"));
        assert!(!u.to_string().contains("hunter2"));
        assert_eq!(u.masked(), "redis://user:***@localhost:6379/0");
        let err = BackendUrl::parse("redis://u:hunter2@h/?x=%zz").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn bad_urls_say_what_is_expected() {
        let err = BackendUrl::parse("localhost:6379").unwrap_err().to_string();
        assert!(err.contains("scheme://"), "{err}");
        let u = BackendUrl::parse("mem://?max_entires=10").unwrap();
        let err = u
            .ensure_known_params(&["max_entries"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_entires") && err.contains("max_entries"),
            "{err}"
        );
        let err = u
            .param_parsed::<u64>("max_entires", "a whole number")
            .map(|_| ());
        assert!(err.is_ok());
        let bad = BackendUrl::parse("mem://?max_entries=lots").unwrap();
        let err = bad
            .param_parsed::<u64>("max_entries", "a whole number")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a whole number") && err.contains("lots"),
            "{err}"
        );
    }
}
