//! Backend URLs: `scheme://[user[:password]@]host[:port][,host…][/path][?k=v&…]`.
//!
//! Only what larder's schemes need: several hosts for Sentinel, Cluster and
//! Memcached; percent-decoded credentials and query values; the password
//! never shown by `Debug`, `Display`, [`BackendUrl::masked`], [`mask`] or a
//! parse error.
//!
//! # How a URL is cut
//!
//! [`mask`] and [`BackendUrl::parse`] cut a URL with the same function, so
//! what the parser takes as the password is exactly what `mask` hides:
//!
//! 1. The **scheme** is the text before the first `://`, when that text is
//!    made of letters, digits, `+`, `-` and `.` only. Otherwise the URL has
//!    no scheme (parsing fails) and the rules below apply from its first
//!    character.
//! 2. The **user information** runs from there to the **last** `@` of the
//!    URL, whatever it holds: a password may contain `/`, `?`, `#`, `@`,
//!    `:`, `=` and `,` unencoded. The price: an `@` after the hosts, in the
//!    path or in a query value, must be written `%40`; otherwise everything
//!    before it is taken as user information and hidden.
//! 3. The **user name** is the user information up to its first `:`, and the
//!    **password** everything after that `:`. A user name holding `/`, `?` or
//!    `#` means the last `@` was in the path or query, not user information:
//!    the whole of it is then hidden (`redis://***@…`) and parsing fails.
//! 4. After the user information come the hosts (up to the first `/` or
//!    `?`), the path (up to the first `?`) and the query, `k=v` pairs split
//!    on `&`. A query value whose key contains `password` is hidden too
//!    (`?sentinel_password=***`); write an `&` inside it as `%26`.
//!
//! The user name, password and query are percent-decoded (`%2F` is `/`).
//! When a URL is ambiguous these rules hide too much, never too little.
//! Masking keeps the user name and replaces the password with `***`:
//! `redis://app:***@host:6379/0`, `redis://:***@host`; a URL with a user and
//! no password (`redis://app@host`) is shown unchanged.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// What parse errors show instead of a secret.
const HIDDEN: &str = "(not shown)";

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

/// The user information of a URL (rule 3 of the module docs).
#[derive(Clone, Copy)]
enum Userinfo<'a> {
    /// No `@`.
    Absent,
    /// `user@`.
    User(&'a str),
    /// `user:password@`; the user may be empty.
    UserPassword(&'a str, &'a str),
    /// Text before the last `@` whose "user name" holds `/`, `?` or `#`: the
    /// `@` belonged to the path or query. Hidden entirely.
    Unusable,
}

/// A URL cut by the rules of the module docs.
struct Parts<'a> {
    /// The scheme as written, when valid (rule 1).
    scheme: Option<&'a str>,
    /// Everything before the last `@` (rules 2 and 3).
    userinfo: Userinfo<'a>,
    /// Hosts, path and query (rule 4).
    rest: &'a str,
}

/// Whether `text` is a valid scheme (rule 1).
fn is_scheme(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The one place a URL is cut into scheme, user information and the rest;
/// both [`mask`] and [`BackendUrl::parse`] go through it.
fn split(url: &str) -> Parts<'_> {
    let (scheme, after) = match url.split_once("://") {
        Some((scheme, after)) if is_scheme(scheme) => (Some(scheme), after),
        _ => (None, url),
    };
    let (userinfo, rest) = match after.rsplit_once('@') {
        None => (Userinfo::Absent, after),
        Some((info, rest)) => {
            let not_a_user = |user: &str| user.contains(['/', '?', '#']);
            let userinfo = match info.split_once(':') {
                Some((user, _)) if not_a_user(user) => Userinfo::Unusable,
                None if not_a_user(info) => Userinfo::Unusable,
                Some((user, password)) => Userinfo::UserPassword(user, password),
                None => Userinfo::User(info),
            };
            (userinfo, rest)
        }
    };
    Parts {
        scheme,
        userinfo,
        rest,
    }
}

/// Whether the value of query parameter `raw_key` (as written) is a secret.
fn is_secret_key(raw_key: &str) -> bool {
    let key = decode_bytes(raw_key)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|| raw_key.to_owned());
    key.to_ascii_lowercase().contains("password")
}

/// `parts` written back with every secret replaced by `***`.
fn render_masked(parts: &Parts<'_>) -> String {
    let mut out = String::new();
    if let Some(scheme) = parts.scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    match parts.userinfo {
        Userinfo::Absent => {}
        Userinfo::User(user) => {
            out.push_str(user);
            out.push('@');
        }
        Userinfo::UserPassword(user, _) => {
            out.push_str(user);
            out.push_str(":***@");
        }
        Userinfo::Unusable => out.push_str("***@"),
    }
    match parts.rest.split_once('?') {
        None => out.push_str(parts.rest),
        Some((before, query)) => {
            out.push_str(before);
            out.push('?');
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((key, _)) if is_secret_key(key) => {
                        out.push_str(key);
                        out.push_str("=***");
                    }
                    _ => out.push_str(pair),
                }
            }
        }
    }
    out
}

/// `url` with its password (and any `…password=` query value) replaced by
/// `***`, for messages and logs. See the module docs for the rule; it is
/// the one [`BackendUrl::parse`] uses.
pub fn mask(url: &str) -> String {
    render_masked(&split(url))
}

/// `text` percent-decoded, or `None` when a `%` is not followed by two hex
/// digits.
fn decode_bytes(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Percent-decode `text`, the `field` of the URL shown as `masked`. A
/// `secret` text never appears in the error.
fn percent_decode(field: &str, text: &str, secret: bool, masked: &str) -> Result<String> {
    let error = |expected: &str| {
        Error::config(
            field,
            format!("URL {masked}"),
            expected,
            if secret { HIDDEN } else { text },
        )
    };
    let bytes = decode_bytes(text)
        .ok_or_else(|| error("`%` followed by two hex digits (write a literal `%` as `%25`)"))?;
    String::from_utf8(bytes).map_err(|_| error("UTF-8 after percent-decoding"))
}

impl BackendUrl {
    /// Parse `url` by the rules of the module docs. Errors name the URL
    /// (password masked) and what is wrong; they never show the password.
    pub fn parse(url: &str) -> Result<Self> {
        let parts = split(url);
        let masked = render_masked(&parts);
        let Some(scheme) = parts.scheme else {
            let expected = if url.contains("://") {
                "a scheme of letters, digits, `+`, `-` or `.`"
            } else {
                "`scheme://…`, such as mem://, redis://host:6379/0 or sqlite://cache.db"
            };
            return Err(Error::config("url", "the cache URL", expected, masked));
        };
        let scheme = scheme.to_ascii_lowercase();
        let (username, password) = match parts.userinfo {
            Userinfo::Absent => (None, None),
            Userinfo::User(user) => (
                Some(percent_decode("url username", user, false, &masked)?),
                None,
            ),
            Userinfo::UserPassword(user, password) => (
                Some(percent_decode("url username", user, false, &masked)?),
                Some(percent_decode("url password", password, true, &masked)?),
            ),
            Userinfo::Unusable => {
                return Err(Error::config(
                    "url user information",
                    format!("URL {masked}"),
                    "`user:password@` before the hosts, with no `/`, `?` or `#` in the user name; \
                     write an `@` in the path or a query value as `%40`",
                    HIDDEN,
                ));
            }
        };
        let username = username.filter(|u| !u.is_empty());
        let (before_query, query_text) = match parts.rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (parts.rest, None),
        };
        let (hosts, path) = match before_query.split_once('/') {
            Some((h, p)) => (h, p),
            None => (before_query, ""),
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
                percent_decode("url query", k, false, &masked)?,
                percent_decode("url query", v, is_secret_key(k), &masked)?,
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
    /// than a silently ignored option. The error names the parameter, not
    /// its value (which may be a misspelt password).
    pub fn ensure_known_params(&self, known: &[&str]) -> Result<()> {
        for (k, _) in &self.query {
            if !known.contains(&k.as_str()) {
                return Err(Error::config(
                    format!("url query parameter `{k}`"),
                    format!("URL {}", self.masked),
                    if known.is_empty() {
                        "no query parameters".to_owned()
                    } else {
                        format!("one of: {}", known.join(", "))
                    },
                    k.clone(),
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
    /// valid value for the error message, which shows the value unless the
    /// name contains `password`.
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
                    if is_secret_key(name) { HIDDEN } else { raw },
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

    /// Whether `shown` reveals `secret`: all of it, or for secrets of four
    /// characters or more, any four consecutive characters of it.
    fn reveals(shown: &str, secret: &str) -> bool {
        let chars: Vec<char> = secret.chars().collect();
        shown.contains(secret)
            || (chars.len() >= 4
                && chars
                    .windows(4)
                    .any(|w| shown.contains(&w.iter().collect::<String>())))
    }

    fn assert_hidden(url: &str, shown: &str, secrets: &[&str]) {
        for secret in secrets {
            assert!(
                !reveals(shown, secret),
                "{url}: {shown:?} reveals {secret:?}"
            );
        }
    }

    struct Case {
        url: &'static str,
        masked: &'static str,
        username: Option<&'static str>,
        password: Option<&'static str>,
        hosts: &'static [&'static str],
        path: &'static str,
        query: &'static [(&'static str, &'static str)],
        /// As written and as decoded: none may show anywhere.
        secrets: &'static [&'static str],
    }

    const TRICKY: &[Case] = &[
        Case {
            url: "redis://app:ab/cd@cache:6379/0",
            masked: "redis://app:***@cache:6379/0",
            username: Some("app"),
            password: Some("ab/cd"),
            hosts: &["cache:6379"],
            path: "0",
            query: &[],
            secrets: &["ab/cd"],
        },
        Case {
            url: "redis://app:p?ss=w0rd@cache/1?pool_size=3",
            masked: "redis://app:***@cache/1?pool_size=3",
            username: Some("app"),
            password: Some("p?ss=w0rd"),
            hosts: &["cache"],
            path: "1",
            query: &[("pool_size", "3")],
            secrets: &["p?ss=w0rd"],
        },
        Case {
            url: "redis://app:p@ss@w0rd@cache:6379",
            masked: "redis://app:***@cache:6379",
            username: Some("app"),
            password: Some("p@ss@w0rd"),
            hosts: &["cache:6379"],
            path: "",
            query: &[],
            secrets: &["p@ss@w0rd"],
        },
        Case {
            url: "redis://app:hash#tag!@cache",
            masked: "redis://app:***@cache",
            username: Some("app"),
            password: Some("hash#tag!"),
            hosts: &["cache"],
            path: "",
            query: &[],
            secrets: &["hash#tag!"],
        },
        Case {
            url: "rediss://app:co:lo:ns@cache:6380/2",
            masked: "rediss://app:***@cache:6380/2",
            username: Some("app"),
            password: Some("co:lo:ns"),
            hosts: &["cache:6380"],
            path: "2",
            query: &[],
            secrets: &["co:lo:ns"],
        },
        Case {
            url: "redis://app:sl%2Fash%2Fed@cache",
            masked: "redis://app:***@cache",
            username: Some("app"),
            password: Some("sl/ash/ed"),
            hosts: &["cache"],
            path: "",
            query: &[],
            secrets: &["sl%2Fash%2Fed", "sl/ash/ed"],
        },
        Case {
            url: "redis://app:Qz%40%3A%2F%3F%23Wv@cache",
            masked: "redis://app:***@cache",
            username: Some("app"),
            password: Some("Qz@:/?#Wv"),
            hosts: &["cache"],
            path: "",
            query: &[],
            secrets: &["Qz%40%3A%2F%3F%23Wv", "Qz@:/?#Wv"],
        },
        Case {
            url: "redis://app:a/b?c#d@e:f%40g@cache:6379/0?command_timeout=1s",
            masked: "redis://app:***@cache:6379/0?command_timeout=1s",
            username: Some("app"),
            password: Some("a/b?c#d@e:f@g"),
            hosts: &["cache:6379"],
            path: "0",
            query: &[("command_timeout", "1s")],
            secrets: &["a/b?c#d@e:f%40g", "a/b?c#d@e:f@g"],
        },
        Case {
            url: "redis://app:ht://tp9@cache",
            masked: "redis://app:***@cache",
            username: Some("app"),
            password: Some("ht://tp9"),
            hosts: &["cache"],
            path: "",
            query: &[],
            secrets: &["ht://tp9"],
        },
        Case {
            url: "redis+sentinel://app:s/nt?l@h1:26379,h2:26379,[::1]:26380/mymaster/0\
                  ?sentinel_password=Zq9%40vX7k&pool_size=4",
            masked: "redis+sentinel://app:***@h1:26379,h2:26379,[::1]:26380/mymaster/0\
                     ?sentinel_password=***&pool_size=4",
            username: Some("app"),
            password: Some("s/nt?l"),
            hosts: &["h1:26379", "h2:26379", "[::1]:26380"],
            path: "mymaster/0",
            query: &[("sentinel_password", "Zq9@vX7k"), ("pool_size", "4")],
            secrets: &["s/nt?l", "Zq9%40vX7k", "Zq9@vX7k"],
        },
        Case {
            url: "redis+cluster://app:kl%25mn/op@n1:7000,n2:7001?pool_size=2",
            masked: "redis+cluster://app:***@n1:7000,n2:7001?pool_size=2",
            username: Some("app"),
            password: Some("kl%mn/op"),
            hosts: &["n1:7000", "n2:7001"],
            path: "",
            query: &[("pool_size", "2")],
            secrets: &["kl%25mn/op", "kl%mn/op"],
        },
        Case {
            url: "redis+cluster://app:x,y,z9@n1,n2",
            masked: "redis+cluster://app:***@n1,n2",
            username: Some("app"),
            password: Some("x,y,z9"),
            hosts: &["n1", "n2"],
            path: "",
            query: &[],
            secrets: &["x,y,z9"],
        },
        Case {
            url: "redis://:b64+/pw==@[::1]:6379/0",
            masked: "redis://:***@[::1]:6379/0",
            username: None,
            password: Some("b64+/pw=="),
            hosts: &["[::1]:6379"],
            path: "0",
            query: &[],
            secrets: &["b64+/pw=="],
        },
        Case {
            url: "redis://:secret@host",
            masked: "redis://:***@host",
            username: None,
            password: Some("secret"),
            hosts: &["host"],
            path: "",
            query: &[],
            secrets: &["secret"],
        },
        Case {
            url: "REDIS://j%40ne:hunter2@[::1]",
            masked: "REDIS://j%40ne:***@[::1]",
            username: Some("j@ne"),
            password: Some("hunter2"),
            hosts: &["[::1]"],
            path: "",
            query: &[],
            secrets: &["hunter2"],
        },
        Case {
            url: "redis://app@cache:6379",
            masked: "redis://app@cache:6379",
            username: Some("app"),
            password: None,
            hosts: &["cache:6379"],
            path: "",
            query: &[],
            secrets: &[],
        },
        Case {
            url: "redis://cache:6379/0?keepalive=0",
            masked: "redis://cache:6379/0?keepalive=0",
            username: None,
            password: None,
            hosts: &["cache:6379"],
            path: "0",
            query: &[("keepalive", "0")],
            secrets: &[],
        },
    ];

    #[test]
    fn tricky_urls_parse_and_never_show_the_password() {
        for case in TRICKY {
            let url = case.url.replace(' ', "");
            let masked = case.masked.replace(' ', "");
            let u = BackendUrl::parse(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(u.username.as_deref(), case.username, "{url}");
            assert_eq!(u.password.as_deref(), case.password, "{url}");
            assert_eq!(u.hosts, case.hosts, "{url}");
            assert_eq!(u.path, case.path, "{url}");
            let query: Vec<(&str, &str)> = u
                .query
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(query, case.query, "{url}");
            assert_eq!(mask(&url), masked, "{url}");
            assert_eq!(u.masked(), masked, "{url}");
            for shown in [mask(&url), format!("{u:?}"), u.to_string()] {
                assert_hidden(&url, &shown, case.secrets);
            }
            // Errors raised later about a parsed URL do not show it either.
            for err in [
                u.ensure_known_params(&[]).err(),
                u.param_parsed::<u8>("sentinel_password", "a number").err(),
            ]
            .into_iter()
            .flatten()
            {
                assert_hidden(&url, &err.to_string(), case.secrets);
                assert_hidden(&url, &format!("{err:?}"), case.secrets);
            }
        }
    }

    #[test]
    fn bad_urls_never_show_the_password() {
        for (url, masked, secrets) in [
            (
                "redis://app:bad%zzQ7x9@cache",
                "redis://app:***@cache",
                &["bad%zzQ7x9"][..],
            ),
            (
                "redis://app:caf%C3pw1x@cache",
                "redis://app:***@cache",
                &["caf%C3pw1x"],
            ),
            ("redis://app:pw%2@cache", "redis://app:***@cache", &["pw%2"]),
            (
                "redis://app:hunter22@cache/?x=%zz",
                "redis://app:***@cache/?x=%zz",
                &["hunter22"],
            ),
            (
                "redis://us%zzer:pw1234@cache",
                "redis://us%zzer:***@cache",
                &["pw1234"],
            ),
            (
                "cache:secretpw@host:6379",
                "cache:***@host:6379",
                &["secretpw"],
            ),
            (
                "re dis://app:s3cretpw@cache",
                "re dis:***@cache",
                &["s3cretpw"],
            ),
            ("u:pa://ss99@cache", "u:***@cache", &["pa://ss99"]),
            // An unencoded `@` in a query value: everything before it is
            // hidden, and the URL is refused.
            (
                "redis://cache/0?sentinel_password=hunter22@x",
                "redis://***@x",
                &["hunter22"],
            ),
            (
                "mem://?password=pw%zzsecret",
                "mem://?password=***",
                &["pw%zzsecret"],
            ),
        ] {
            assert_eq!(mask(url), masked, "{url}");
            let err = BackendUrl::parse(url).unwrap_err();
            for shown in [mask(url), err.to_string(), format!("{err:?}")] {
                assert_hidden(url, &shown, secrets);
            }
        }
    }

    #[test]
    fn a_bad_escape_in_the_password_names_the_field_not_the_text() {
        let err = BackendUrl::parse("redis://app:s%zzcr3t@cache:6379/0").unwrap_err();
        let Error::Config {
            field,
            source_name,
            got,
            ..
        } = &err
        else {
            panic!("wrong kind: {err:?}")
        };
        assert_eq!(field, "url password");
        assert_eq!(source_name, "URL redis://app:***@cache:6379/0");
        assert_eq!(got, HIDDEN);
        let msg = err.to_string();
        assert!(msg.contains("url password") && msg.contains("%25"), "{msg}");
        assert!(!msg.contains("s%zz") && !msg.contains("cr3t"), "{msg}");
        // The user name may be shown.
        let err = BackendUrl::parse("redis://b%d:pw@cache").unwrap_err();
        assert!(
            matches!(&err, Error::Config { field, got, .. } if field == "url username" && got == "b%d"),
            "{err:?}"
        );
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
