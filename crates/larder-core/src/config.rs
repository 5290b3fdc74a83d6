//! Configuration: defaults < `larder.toml` < environment < builder.
//!
//! ```toml
//! # larder.toml
//! url = "redis://localhost:6379/0"
//! prefix = "svc"
//! version = "v1"
//! default_ttl = "5m"      # 300, "5m", "1h30m", "500ms"; at most 365d
//! ttl_short = 30
//! ttl_long = "1h"
//! max_connections = 20
//! codec = "json"
//!
//! # Optional profiles: chosen by LARDER_PROFILE or CacheConfig::load_profile,
//! # applied over the settings above.
//! [profile.development]
//! url = "mem://"
//!
//! [profile.production]
//! url = "redis://cache:6379/0"
//! default_ttl = "10m"
//!
//! # Optional: signing, encryption, compression (see docs/security.md).
//! # Prefer LARDER_SIGNING_KEYS / LARDER_ENCRYPTION_KEYS for the keys.
//! [security]
//! compress_min_size = "1KiB"   # or "off"
//! allow_unsigned = false
//! ```
//!
//! Environment: `LARDER_URL` (falling back to `CACHE_URL`, then
//! `REDIS_URL`), `LARDER_PREFIX`, `LARDER_VERSION`, `LARDER_DEFAULT_TTL`,
//! `LARDER_TTL_SHORT`, `LARDER_TTL_LONG` (falling back to the svc-infra
//! names `CACHE_PREFIX`, `CACHE_VERSION`, `CACHE_TTL_DEFAULT`,
//! `CACHE_TTL_SHORT`, `CACHE_TTL_LONG`), `LARDER_MAX_CONNECTIONS`,
//! `LARDER_CODEC`, `LARDER_MAX_KEY_LENGTH`, `LARDER_MAX_VALUE_SIZE`,
//! `LARDER_MAX_TAGS`, `LARDER_MAX_TAG_LENGTH`, `LARDER_SIGNING_KEYS`,
//! `LARDER_ENCRYPTION_KEYS`, `LARDER_ALLOW_UNSIGNED`,
//! `LARDER_COMPRESS_MIN_SIZE`, `LARDER_NEAR_MAX_ENTRIES`,
//! `LARDER_NEAR_MAX_BYTES`, `LARDER_NEAR_TTL`; see [`ENV_VARS`].
//! `LARDER_CONFIG` names the file (default `./larder.toml`,
//! read when present) and `LARDER_PROFILE` selects one of its profiles.
//! Every invalid value is an [`Error::Config`] that names the field, where
//! the value came from and what was expected.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::key::{DEFAULT_MAX_KEY_LENGTH, validate_namespace_part};
use crate::resilient::{Fallback, ResilienceConfig};
use crate::seal::{KeyRing, SecurityConfig};

const DURATION_EXPECTED: &str =
    "a positive duration such as `300` (seconds), `5m`, `1h30m` or `500ms`";

/// What a TTL setting accepts; every TTL error says it.
const TTL_EXPECTED: &str = "a positive duration of at most 365d (larder's MAX_TTL) such as \
     `300` (seconds), `5m`, `1h30m` or `500ms`; for values that should live until deleted, \
     write them with no expiry (Ttl::Never)";

const URL_EXPECTED: &str = "a URL such as mem://, redis://host:6379/0 or sqlite://cache.db";
const MAX_CONNECTIONS_EXPECTED: &str = "a whole number from 1 to 4294967295";
const MAX_KEY_LENGTH_EXPECTED: &str = "a positive number of bytes";
const MAX_VALUE_SIZE_EXPECTED: &str = "a size such as 1048576, 512KiB or 32MiB";

/// The source named in errors about a profile the program chose.
const CALLER: &str = "the caller";
/// The source named in errors about a profile chosen by [`PROFILE_VAR`].
const PROFILE_VAR_SOURCE: &str = "environment variable LARDER_PROFILE";

/// The longest TTL larder accepts on any backend: 365 days.
///
/// Longer TTLs are refused with a clear error (an [`Error::Config`] naming
/// the setting and where it came from); use no expiry
/// ([`Ttl::Never`](crate::Ttl::Never)) for values that should live until
/// deleted.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The environment variable naming the config file (default
/// `./larder.toml`, read when present).
pub const CONFIG_VAR: &str = "LARDER_CONFIG";

/// The environment variable selecting a `[profile.<name>]` table of the
/// config file (see [`CacheConfig::load`]).
pub const PROFILE_VAR: &str = "LARDER_PROFILE";

/// The file [`CacheConfig::load`] reads when [`CONFIG_VAR`] is unset.
const DEFAULT_FILE: &str = "larder.toml";

/// A usable TTL: positive and at most [`MAX_TTL`].
fn ttl_in_range(ttl: Duration) -> bool {
    !ttl.is_zero() && ttl <= MAX_TTL
}

/// Default value size limit: 8 MiB.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 8 * 1024 * 1024;

/// Default limit of tags per write: 64.
pub const DEFAULT_MAX_TAGS: usize = 64;

/// Default limit of a tag's length: 1 KiB.
pub const DEFAULT_MAX_TAG_LENGTH: usize = 1024;

/// The grammar of every TTL in the configuration, and of `ttl = "..."` in
/// `#[cache_read]`; it lives in `larder-grammar` so the two cannot drift.
///
/// ```
/// use std::time::Duration;
/// use larder_core::config::parse_duration;
/// assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
/// assert_eq!(parse_duration("300"), Some(Duration::from_secs(300)));
/// assert_eq!(parse_duration("5 minutes"), None);
/// ```
pub use larder_grammar::parse_duration;

/// The grammar of `max_value_size` in the configuration.
///
/// ```
/// use larder_core::config::parse_size;
/// assert_eq!(parse_size("64KiB"), Some(65536));
/// ```
pub use larder_grammar::parse_size;

/// The three TTL buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TtlBucket {
    /// Short-lived data (default 30 s).
    Short,
    /// Most data (default 300 s).
    Default,
    /// Long-lived data (default 3600 s).
    Long,
}

/// Cache settings. Build with [`CacheConfig::load`] (file and environment),
/// [`CacheConfig::default`], or set fields directly.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    /// Backend URL; `None` means the embedded default (`mem://`).
    pub url: Option<String>,
    /// Key prefix, the first part of every stored key.
    pub prefix: String,
    /// Key version, the second part; bump it to orphan every old entry.
    pub version: String,
    /// TTL of writes that do not give one (bucket `default`).
    #[serde(with = "duration_serde")]
    pub default_ttl: Duration,
    /// TTL of bucket `short`.
    #[serde(with = "duration_serde")]
    pub ttl_short: Duration,
    /// TTL of bucket `long`.
    #[serde(with = "duration_serde")]
    pub ttl_long: Duration,
    /// Connection pool size for networked backends.
    pub max_connections: u32,
    /// Codec of new writes.
    pub codec: Codec,
    /// Longest key accepted from callers, in bytes.
    pub max_key_length: usize,
    /// Largest serialized value accepted, in bytes (before compression);
    /// also the most a compressed value may decompress to.
    pub max_value_size: usize,
    /// Most tags one write may carry (default 64).
    pub max_tags: usize,
    /// Longest tag accepted, in bytes (default 1 KiB).
    pub max_tag_length: usize,
    /// The `[profile.<name>]` table of the config file that was applied, if
    /// any (see [`CacheConfig::load_profile`]).
    pub profile: Option<String>,
    /// Per-prefix routes to other backends (`[[route]]`, `LARDER_ROUTES`);
    /// keys no route takes go to `url`. See [`RouteConfig`].
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Spread the TTL of each write by up to this fraction either way (0.1:
    /// a 300 s TTL becomes 270 to 330 s), so that keys written together do
    /// not expire together. Default 0.1; 0 turns it off.
    pub ttl_jitter: f64,
    /// The resilience layer around shared backends (`[resilience]`).
    pub resilience: ResilienceConfig,
    /// Signing, encryption and compression of values (`[security]`).
    pub security: SecurityConfig,
    /// The near cache (`[near]`, `LARDER_NEAR_*`, `?near=` on the URL):
    /// `None` for the default (on for an in-process backend the cache owns,
    /// off otherwise). See [`crate::near`].
    #[serde(default)]
    pub near: Option<crate::near::NearConfig>,
}

/// One route: keys starting with `prefix` (after the namespace) go to the
/// backend at `url`.
///
/// ```toml
/// [[route]]
/// name = "sessions"          # optional: defaults to the prefix without its last `:`
/// prefix = "session:"
/// url = "redis://sessions.internal:6379/0"
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteConfig {
    /// The route's name, in health reports, metrics and errors.
    pub name: String,
    /// The key prefix it takes; the longest matching prefix wins.
    pub prefix: String,
    /// Its backend.
    pub url: String,
}

impl fmt::Debug for RouteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteConfig")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("url", &crate::url::mask(&self.url))
            .finish()
    }
}

impl RouteConfig {
    /// A route named after its prefix (`session:` -> `session`).
    pub fn new(prefix: impl Into<String>, url: impl Into<String>) -> Self {
        let prefix = prefix.into();
        RouteConfig {
            name: default_route_name(&prefix),
            prefix,
            url: url.into(),
        }
    }
}

fn default_route_name(prefix: &str) -> String {
    let name = prefix.trim_end_matches(':');
    if name.is_empty() {
        prefix.to_owned()
    } else {
        name.to_owned()
    }
}

/// Check routes: each with a non-empty prefix and a parseable URL, names
/// and prefixes used once.
fn validate_routes(routes: &[RouteConfig], source: &str) -> Result<()> {
    for (i, route) in routes.iter().enumerate() {
        if route.prefix.is_empty() {
            return Err(Error::config(
                "route prefix",
                source,
                "a non-empty key prefix such as `session:` (keys no route takes go to `url`)",
                format!("route {:?} with an empty prefix", route.name),
            ));
        }
        crate::url::BackendUrl::parse(&route.url).map_err(|_| {
            Error::config(
                format!("route {:?} url", route.name),
                source,
                URL_EXPECTED,
                crate::url::mask(&route.url),
            )
        })?;
        for other in &routes[..i] {
            if other.name == route.name {
                return Err(Error::config(
                    "route name",
                    source,
                    "each name used once",
                    &route.name,
                ));
            }
            if other.prefix == route.prefix {
                return Err(Error::config(
                    "route prefix",
                    source,
                    "each prefix routed once",
                    &route.prefix,
                ));
            }
        }
    }
    Ok(())
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            url: None,
            prefix: "larder".to_owned(),
            version: "v1".to_owned(),
            default_ttl: Duration::from_secs(300),
            ttl_short: Duration::from_secs(30),
            ttl_long: Duration::from_secs(3600),
            max_connections: 10,
            codec: Codec::Json,
            max_key_length: DEFAULT_MAX_KEY_LENGTH,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            max_tags: DEFAULT_MAX_TAGS,
            max_tag_length: DEFAULT_MAX_TAG_LENGTH,
            profile: None,
            routes: Vec::new(),
            ttl_jitter: 0.1,
            resilience: ResilienceConfig::default(),
            security: SecurityConfig::default(),
            near: None,
        }
    }
}

impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("url", &self.url.as_deref().map(crate::url::mask))
            .field("prefix", &self.prefix)
            .field("version", &self.version)
            .field("default_ttl", &self.default_ttl)
            .field("ttl_short", &self.ttl_short)
            .field("ttl_long", &self.ttl_long)
            .field("max_connections", &self.max_connections)
            .field("codec", &self.codec)
            .field("max_key_length", &self.max_key_length)
            .field("max_value_size", &self.max_value_size)
            .field("max_tags", &self.max_tags)
            .field("max_tag_length", &self.max_tag_length)
            .field("profile", &self.profile)
            .field("routes", &self.routes)
            .field("ttl_jitter", &self.ttl_jitter)
            .field("resilience", &self.resilience)
            .field("security", &self.security)
            .field("near", &self.near)
            .finish()
    }
}

/// One TOML value with its position, as written in the file.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl Scalar {
    fn shown(&self) -> String {
        match self {
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(x) => x.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Text(s) => s.clone(),
        }
    }
}

/// The settings of a TOML document, or of one `[profile.<name>]` table of
/// it, with their positions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    url: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
    default_ttl: Option<Spanned<Scalar>>,
    ttl_short: Option<Spanned<Scalar>>,
    ttl_long: Option<Spanned<Scalar>>,
    max_connections: Option<Spanned<Scalar>>,
    codec: Option<Spanned<Scalar>>,
    max_key_length: Option<Spanned<Scalar>>,
    max_value_size: Option<Spanned<Scalar>>,
    max_tags: Option<Spanned<Scalar>>,
    max_tag_length: Option<Spanned<Scalar>>,
    /// `[profile.<name>]` tables; only allowed at the top level.
    profile: Option<Spanned<BTreeMap<String, FileConfig>>>,
    /// `[[route]]` tables; in a profile they replace the base ones.
    route: Option<Spanned<Vec<FileRoute>>>,
    ttl_jitter: Option<Spanned<Scalar>>,
    /// `[resilience]`: its settings, each optional.
    resilience: Option<BTreeMap<String, Spanned<Scalar>>>,
    /// `[security]`: its settings, each optional.
    security: Option<BTreeMap<String, Spanned<Scalar>>>,
    /// `[near]`: the near cache's settings, each optional.
    near: Option<BTreeMap<String, Spanned<Scalar>>>,
}

/// One `[[route]]` of the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    name: Option<String>,
    prefix: String,
    url: String,
}

impl FileConfig {
    /// Apply the settings (not the profiles); `source` turns a byte offset
    /// into the source named in errors.
    fn apply_to(self, config: &mut CacheConfig, source: impl Fn(usize) -> String) -> Result<()> {
        let text_fields = [
            ("url", self.url),
            ("prefix", self.prefix),
            ("version", self.version),
        ];
        for (field, value) in text_fields {
            if let Some(v) = value {
                apply(config, field, v.get_ref(), &source(v.span().start))?;
            }
        }
        let scalar_fields = [
            ("default_ttl", self.default_ttl),
            ("ttl_short", self.ttl_short),
            ("ttl_long", self.ttl_long),
            ("max_connections", self.max_connections),
            ("codec", self.codec),
            ("max_key_length", self.max_key_length),
            ("max_value_size", self.max_value_size),
            ("max_tags", self.max_tags),
            ("max_tag_length", self.max_tag_length),
            ("ttl_jitter", self.ttl_jitter),
        ];
        for (field, value) in scalar_fields {
            if let Some(v) = value {
                apply(config, field, &v.get_ref().shown(), &source(v.span().start))?;
            }
        }
        // The sections' settings, as `section.name`.
        let sections = [
            ("resilience", self.resilience.unwrap_or_default()),
            ("security", self.security.unwrap_or_default()),
            ("near", self.near.unwrap_or_default()),
        ];
        for (section, settings) in sections {
            for (name, v) in settings {
                let field = format!("{section}.{name}");
                apply(
                    config,
                    &field,
                    &v.get_ref().shown(),
                    &source(v.span().start),
                )?;
            }
        }
        if let Some(routes) = self.route {
            let at = source(routes.span().start);
            let routes: Vec<RouteConfig> = routes
                .into_inner()
                .into_iter()
                .map(|r| RouteConfig {
                    name: r.name.unwrap_or_else(|| default_route_name(&r.prefix)),
                    prefix: r.prefix,
                    url: r.url,
                })
                .collect();
            validate_routes(&routes, &at)?;
            config.routes = routes;
        }
        Ok(())
    }
}

/// A profile to apply, with where the choice came from (named in errors).
#[derive(Clone, Copy)]
struct ProfileChoice<'a> {
    name: &'a str,
    source: &'a str,
}

/// Apply one textual setting; shared by the file and the environment so
/// both accept exactly the same values.
fn apply(config: &mut CacheConfig, field: &str, raw: &str, source: &str) -> Result<()> {
    let bad = |expected: &str| Error::config(field, source, expected, raw);
    match field {
        "url" => {
            crate::url::BackendUrl::parse(raw)
                .map_err(|_| Error::config(field, source, URL_EXPECTED, crate::url::mask(raw)))?;
            config.url = Some(raw.to_owned());
        }
        "prefix" | "version" => {
            validate_namespace_part(field, raw, source)?;
            if field == "prefix" {
                config.prefix = raw.to_owned();
            } else {
                config.version = raw.to_owned();
            }
        }
        "default_ttl" | "ttl_short" | "ttl_long" => {
            let ttl = parse_duration(raw)
                .filter(|d| ttl_in_range(*d))
                .ok_or_else(|| bad(TTL_EXPECTED))?;
            match field {
                "default_ttl" => config.default_ttl = ttl,
                "ttl_short" => config.ttl_short = ttl,
                _ => config.ttl_long = ttl,
            }
        }
        "max_connections" => {
            config.max_connections = raw
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(MAX_CONNECTIONS_EXPECTED))?;
        }
        "codec" => {
            config.codec = match raw.trim().to_ascii_lowercase().as_str() {
                "json" => Codec::Json,
                #[cfg(feature = "msgpack")]
                "msgpack" | "messagepack" => Codec::Msgpack,
                #[cfg(feature = "postcard")]
                "postcard" => Codec::Postcard,
                #[cfg(feature = "bincode")]
                "bincode" => Codec::Bincode,
                _ => {
                    return Err(bad(
                        "json, or msgpack / postcard / bincode with the cargo feature of that name",
                    ));
                }
            }
        }
        "max_key_length" => {
            config.max_key_length = raw
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(MAX_KEY_LENGTH_EXPECTED))?;
        }
        "max_value_size" => {
            config.max_value_size = parse_size(raw)
                .filter(|n| *n > 0)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| bad(MAX_VALUE_SIZE_EXPECTED))?;
        }
        "max_tags" | "max_tag_length" => {
            let n = raw
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("a positive whole number"))?;
            if field == "max_tags" {
                config.max_tags = n;
            } else {
                config.max_tag_length = n;
            }
        }
        field if field.starts_with("security.") => apply_security(config, field, raw, source)?,
        "ttl_jitter" => {
            config.ttl_jitter = parse_fraction(raw)
                .ok_or_else(|| bad("a fraction from 0 to 0.5, such as 0.1 or 10%"))?;
        }
        field if field.starts_with("resilience.") => apply_resilience(config, field, raw, source)?,
        field if field.starts_with("near.") => {
            let near = config.near.get_or_insert_with(Default::default);
            crate::near::apply_setting(near, field, raw, source)?;
        }
        _ => return Err(bad("a known setting")),
    }
    Ok(())
}

/// `0.1`, `10%`: a fraction from 0 to 0.5.
fn parse_fraction(raw: &str) -> Option<f64> {
    let raw = raw.trim();
    let value = match raw.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().ok()? / 100.0,
        None => raw.parse::<f64>().ok()?,
    };
    (0.0..=0.5).contains(&value).then_some(value)
}

fn parse_switch(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// One `security.<name>` setting. Key errors never show the secrets.
fn apply_security(config: &mut CacheConfig, field: &str, raw: &str, source: &str) -> Result<()> {
    let s = &mut config.security;
    match field.trim_start_matches("security.") {
        "signing_keys" => s.signing_keys = KeyRing::parse(raw, field, source)?,
        "encryption_keys" => {
            let ring = KeyRing::parse(raw, field, source)?;
            let check = SecurityConfig {
                encryption_keys: ring,
                ..SecurityConfig::default()
            };
            check.validate(source)?;
            s.encryption_keys = check.encryption_keys;
        }
        "allow_unsigned" => {
            s.allow_unsigned =
                parse_switch(raw).ok_or_else(|| Error::config(field, source, "on or off", raw))?;
        }
        "compress_min_size" => {
            s.compress_min_size = match parse_switch(raw) {
                Some(false) => None,
                _ => Some(
                    parse_size(raw)
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| {
                            Error::config(
                                field,
                                source,
                                "a size such as 1KiB or 4096, or `off` to turn compression off",
                                raw,
                            )
                        })?,
                ),
            };
        }
        _ => {
            return Err(Error::config(
                field,
                source,
                "a security setting: signing_keys, encryption_keys, allow_unsigned, \
                 compress_min_size",
                "(not shown: it may hold a secret)",
            ));
        }
    }
    Ok(())
}

/// One `resilience.<name>` setting.
fn apply_resilience(config: &mut CacheConfig, field: &str, raw: &str, source: &str) -> Result<()> {
    let bad = |expected: &str| Error::config(field, source, expected, raw);
    let positive_duration = || {
        parse_duration(raw)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| bad("a positive duration such as `500ms`, `2s` or `1m`"))
    };
    let r = &mut config.resilience;
    match field.trim_start_matches("resilience.") {
        "enabled" => r.enabled = parse_switch(raw).ok_or_else(|| bad("on or off"))?,
        "timeout" => r.timeout = positive_duration()?,
        "bulk_timeout" => r.bulk_timeout = positive_duration()?,
        "retries" => {
            r.retries = raw
                .trim()
                .parse()
                .ok()
                .filter(|n| *n <= 10)
                .ok_or_else(|| bad("a whole number from 0 to 10"))?;
        }
        "retry_backoff" => r.retry_backoff = positive_duration()?,
        "breaker_threshold" => {
            r.breaker_threshold = raw
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("a positive whole number of failures"))?;
        }
        "breaker_failure_rate" => {
            r.breaker_failure_rate = raw
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| (0.0..=1.0).contains(x))
                .ok_or_else(|| bad("a share from 0 (off) to 1, such as 0.5"))?;
        }
        "breaker_open_for" => r.breaker_open_for = positive_duration()?,
        "max_concurrency" | "queue_limit" | "local_fallback_entries" => {
            let n = raw
                .trim()
                .parse::<usize>()
                .ok()
                .ok_or_else(|| bad("a whole number"))?;
            match field.trim_start_matches("resilience.") {
                "max_concurrency" if n == 0 => return Err(bad("a positive whole number")),
                "max_concurrency" => r.max_concurrency = n,
                "queue_limit" => r.queue_limit = n,
                _ => r.local_fallback_entries = n,
            }
        }
        "fallback" => {
            r.fallback = match raw.trim().to_ascii_lowercase().as_str() {
                "open" => Fallback::Open,
                "closed" => Fallback::Closed,
                _ => return Err(bad("open (a cache outage never fails a call) or closed")),
            };
        }
        _ => {
            return Err(bad(
                "a resilience setting: enabled, timeout, bulk_timeout, retries, retry_backoff, \
                 breaker_threshold, breaker_failure_rate, breaker_open_for, max_concurrency, \
                 queue_limit, fallback, local_fallback_entries",
            ));
        }
    }
    Ok(())
}

/// The routes variable: `prefix=url` pairs separated by spaces or `;`, each
/// route named after its prefix:
/// `LARDER_ROUTES="session:=redis://sessions:6379/0 hot:=mem://"`.
/// It replaces the routes of the file.
pub const ROUTES_VAR: &str = "LARDER_ROUTES";

fn parse_routes(text: &str) -> Result<Vec<RouteConfig>> {
    let source = format!("environment variable {ROUTES_VAR}");
    let mut routes = Vec::new();
    for entry in text.split([' ', ';', '\n', '\t']).filter(|e| !e.is_empty()) {
        let Some((prefix, url)) = entry.split_once('=') else {
            return Err(Error::config(
                "routes",
                &source,
                "`prefix=url` pairs separated by spaces: session:=redis://host:6379/0 hot:=mem://",
                crate::url::mask(entry),
            ));
        };
        routes.push(RouteConfig::new(prefix, url));
    }
    validate_routes(&routes, &source)?;
    Ok(routes)
}

/// URL variables, first set wins: larder's own, then the svc-infra name,
/// then the Redis convention.
pub const URL_VARS: &[&str] = &["LARDER_URL", "CACHE_URL", "REDIS_URL"];

/// Environment variables read by [`CacheConfig::merge_env`]: each field with
/// the variables that set it, in order of precedence. The first one that is
/// set (and not empty) wins, so a `LARDER_*` name beats its svc-infra
/// `CACHE_*` fallback, and errors name the variable actually used.
pub const ENV_VARS: &[(&str, &[&str])] = &[
    ("url", URL_VARS),
    ("prefix", &["LARDER_PREFIX", "CACHE_PREFIX"]),
    ("version", &["LARDER_VERSION", "CACHE_VERSION"]),
    ("default_ttl", &["LARDER_DEFAULT_TTL", "CACHE_TTL_DEFAULT"]),
    ("ttl_short", &["LARDER_TTL_SHORT", "CACHE_TTL_SHORT"]),
    ("ttl_long", &["LARDER_TTL_LONG", "CACHE_TTL_LONG"]),
    ("max_connections", &["LARDER_MAX_CONNECTIONS"]),
    ("codec", &["LARDER_CODEC"]),
    ("max_key_length", &["LARDER_MAX_KEY_LENGTH"]),
    ("max_value_size", &["LARDER_MAX_VALUE_SIZE"]),
    ("ttl_jitter", &["LARDER_TTL_JITTER"]),
    ("max_tags", &["LARDER_MAX_TAGS"]),
    ("max_tag_length", &["LARDER_MAX_TAG_LENGTH"]),
    ("security.signing_keys", &["LARDER_SIGNING_KEYS"]),
    ("security.encryption_keys", &["LARDER_ENCRYPTION_KEYS"]),
    ("security.allow_unsigned", &["LARDER_ALLOW_UNSIGNED"]),
    ("security.compress_min_size", &["LARDER_COMPRESS_MIN_SIZE"]),
    ("resilience.enabled", &["LARDER_RESILIENCE"]),
    ("resilience.timeout", &["LARDER_TIMEOUT"]),
    ("resilience.retries", &["LARDER_RETRIES"]),
    (
        "resilience.breaker_threshold",
        &["LARDER_BREAKER_THRESHOLD"],
    ),
    ("resilience.breaker_open_for", &["LARDER_BREAKER_OPEN_FOR"]),
    ("resilience.fallback", &["LARDER_FALLBACK"]),
    (
        "resilience.local_fallback_entries",
        &["LARDER_LOCAL_FALLBACK_ENTRIES"],
    ),
    ("near.max_entries", &["LARDER_NEAR_MAX_ENTRIES"]),
    ("near.max_bytes", &["LARDER_NEAR_MAX_BYTES"]),
    ("near.ttl", &["LARDER_NEAR_TTL"]),
];

impl CacheConfig {
    /// Defaults, then the file named by `LARDER_CONFIG` (or `./larder.toml`
    /// when it exists) with the profile `LARDER_PROFILE` names, if any, then
    /// the process environment.
    pub fn load() -> Result<Self> {
        Self::load_with(None)
    }

    /// Like [`CacheConfig::load`], with the `[profile.<name>]` table
    /// `profile` of the file applied over its base settings, whatever
    /// `LARDER_PROFILE` says. An unknown profile, or no config file at all,
    /// is an error.
    pub fn load_profile(profile: &str) -> Result<Self> {
        Self::load_with(Some(profile))
    }

    fn load_with(profile: Option<&str>) -> Result<Self> {
        let env = |name: &str| std::env::var(name).ok();
        if let Some(file) = env(CONFIG_VAR) {
            return Self::assemble(Some(Path::new(&file)), "", profile, env);
        }
        let default = Path::new(DEFAULT_FILE);
        if default.exists() {
            return Self::assemble(Some(default), "", profile, env);
        }
        let dir = std::env::current_dir().map_or_else(
            |_| "the current directory".to_owned(),
            |d| d.display().to_string(),
        );
        let looked = format!("looked for {DEFAULT_FILE} in {dir}; {CONFIG_VAR} is unset");
        Self::assemble(None, &looked, profile, env)
    }

    /// Defaults, then `file` (if given) with the profile `LARDER_PROFILE`
    /// names (as `env` returns it), then the variables `env` returns. Tests
    /// pass their own `env` instead of touching the process.
    pub fn from_sources(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        Self::assemble(
            file,
            "no file was passed to CacheConfig::from_sources",
            None,
            env,
        )
    }

    /// Defaults, then `file` (if given) with a profile applied over its base
    /// settings, then the variables `env` returns. `Some(profile)` chooses
    /// the profile and overrides `LARDER_PROFILE`; `None` leaves the choice
    /// to `LARDER_PROFILE` as `env` returns it (no profile when unset).
    pub fn from_sources_with_profile(
        file: Option<&Path>,
        profile: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        Self::assemble(
            file,
            "no file was passed to CacheConfig::from_sources_with_profile",
            profile,
            env,
        )
    }

    /// The common part of the constructors; `looked` says where a file was
    /// searched for when `file` is `None`.
    fn assemble(
        file: Option<&Path>,
        looked: &str,
        profile: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let from_env = env(PROFILE_VAR).filter(|v| !v.trim().is_empty());
        let choice = match profile {
            Some(name) => Some(ProfileChoice {
                name,
                source: CALLER,
            }),
            None => from_env.as_deref().map(|name| ProfileChoice {
                name,
                source: PROFILE_VAR_SOURCE,
            }),
        };
        let mut config = CacheConfig::default();
        match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::config(
                        "config file",
                        path.display().to_string(),
                        "a readable TOML file",
                        e.to_string(),
                    )
                })?;
                config.merge_file(&text, &path.display().to_string(), choice)?;
            }
            None => {
                if let Some(choice) = choice {
                    return Err(Error::config(
                        "profile",
                        choice.source,
                        format!(
                            "the name of a [profile.<name>] table in a config file, but no \
                             config file was found ({looked})"
                        ),
                        choice.name,
                    ));
                }
            }
        }
        config.merge_env(env)?;
        Ok(config)
    }

    /// Apply the settings of a TOML document; `file_name` appears in errors.
    /// Its `[profile.<name>]` tables are checked but not applied.
    pub fn merge_toml(&mut self, text: &str, file_name: &str) -> Result<()> {
        self.merge_file(text, file_name, None)
    }

    /// Apply the settings of a TOML document, then, when `profile` is
    /// given, its `[profile.<name>]` table of that name (an error when the
    /// document has none; the error names the caller as the source).
    /// `file_name` appears in errors; [`CacheConfig::profile`] records the
    /// profile applied.
    pub fn merge_toml_profile(
        &mut self,
        text: &str,
        file_name: &str,
        profile: Option<&str>,
    ) -> Result<()> {
        let choice = profile.map(|name| ProfileChoice {
            name,
            source: CALLER,
        });
        self.merge_file(text, file_name, choice)
    }

    fn merge_file(
        &mut self,
        text: &str,
        file_name: &str,
        choice: Option<ProfileChoice<'_>>,
    ) -> Result<()> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let mut file: FileConfig = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or_else(
                || file_name.to_owned(),
                |s| format!("{file_name} line {}", line_of(s.start)),
            );
            Error::config(
                "config file",
                at,
                "valid larder settings (url, prefix, version, default_ttl, ttl_short, ttl_long, \
                 max_connections, codec, max_key_length, max_value_size, max_tags, \
                 max_tag_length), [[route]] tables (name, prefix, url), [resilience] and \
                 [security] tables, and [profile.<name>] tables of the same settings",
                e.message().to_owned(),
            )
        })?;
        let mut profiles = file
            .profile
            .take()
            .map(Spanned::into_inner)
            .unwrap_or_default();
        for (name, table) in &profiles {
            if let Some(nested) = &table.profile {
                return Err(Error::config(
                    "profile",
                    format!(
                        "{file_name} line {} (profile {name})",
                        line_of(nested.span().start)
                    ),
                    "settings only: profiles cannot be nested",
                    format!("[profile.{name}.profile]"),
                ));
            }
        }
        let selected = match choice {
            None => None,
            Some(choice) => match profiles.remove(choice.name) {
                Some(table) => Some((choice.name, table)),
                None => {
                    let expected = if profiles.is_empty() {
                        format!(
                            "the name of a [profile.<name>] table, but {file_name} defines no \
                             profiles"
                        )
                    } else {
                        let names: Vec<&str> = profiles.keys().map(String::as_str).collect();
                        format!(
                            "one of: {} (the [profile.<name>] tables of {file_name})",
                            names.join(", ")
                        )
                    };
                    return Err(Error::config(
                        "profile",
                        choice.source,
                        expected,
                        choice.name,
                    ));
                }
            },
        };
        file.apply_to(self, |offset| {
            format!("{file_name} line {}", line_of(offset))
        })?;
        if let Some((name, table)) = selected {
            table.apply_to(self, |offset| {
                format!("{file_name} line {} (profile {name})", line_of(offset))
            })?;
            self.profile = Some(name.to_owned());
        }
        Ok(())
    }

    /// Apply the variables of [`ENV_VARS`] that `env` returns, for each
    /// field the first one set. Empty values count as unset.
    pub fn merge_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<()> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        for (field, names) in ENV_VARS {
            if let Some((name, value)) = names.iter().find_map(|n| get(n).map(|v| (*n, v))) {
                apply(self, field, &value, &format!("environment variable {name}"))?;
            }
        }
        if let Some(routes) = get(ROUTES_VAR) {
            self.routes = parse_routes(&routes)?;
        }
        Ok(())
    }

    /// Check every setting, as the file and environment loaders do: a
    /// parseable URL, prefix and version of 1 to 64 characters out of
    /// `A-Z a-z 0-9 - _ .`, TTLs above zero and at most [`MAX_TTL`], and a
    /// positive pool size, key length and value size. Errors name the field
    /// with the source `the configuration`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use larder_core::config::{CacheConfig, MAX_TTL};
    /// assert!(CacheConfig::default().validate().is_ok());
    /// let config = CacheConfig {
    ///     ttl_long: MAX_TTL + Duration::from_secs(1),
    ///     ..CacheConfig::default()
    /// };
    /// assert!(config.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        const SOURCE: &str = "the configuration";
        if let Some(url) = &self.url {
            crate::url::BackendUrl::parse(url)
                .map_err(|_| Error::config("url", SOURCE, URL_EXPECTED, crate::url::mask(url)))?;
        }
        validate_namespace_part("prefix", &self.prefix, SOURCE)?;
        validate_namespace_part("version", &self.version, SOURCE)?;
        validate_routes(&self.routes, SOURCE)?;
        for (field, ttl) in [
            ("default_ttl", self.default_ttl),
            ("ttl_short", self.ttl_short),
            ("ttl_long", self.ttl_long),
        ] {
            if !ttl_in_range(ttl) {
                return Err(Error::config(
                    field,
                    SOURCE,
                    TTL_EXPECTED,
                    format!("{ttl:?}"),
                ));
            }
        }
        if self.max_connections == 0 {
            return Err(Error::config(
                "max_connections",
                SOURCE,
                MAX_CONNECTIONS_EXPECTED,
                "0",
            ));
        }
        if self.max_key_length == 0 {
            return Err(Error::config(
                "max_key_length",
                SOURCE,
                MAX_KEY_LENGTH_EXPECTED,
                "0",
            ));
        }
        if self.max_value_size == 0 {
            return Err(Error::config(
                "max_value_size",
                SOURCE,
                MAX_VALUE_SIZE_EXPECTED,
                "0",
            ));
        }
        for (field, n) in [
            ("max_tags", self.max_tags),
            ("max_tag_length", self.max_tag_length),
        ] {
            if n == 0 {
                return Err(Error::config(field, SOURCE, "a positive whole number", "0"));
            }
        }
        self.security.validate(SOURCE)?;
        if !(0.0..=0.5).contains(&self.ttl_jitter) {
            return Err(Error::config(
                "ttl_jitter",
                SOURCE,
                "a fraction from 0 to 0.5, such as 0.1 or 10%",
                self.ttl_jitter.to_string(),
            ));
        }
        if let Some(near) = &self.near {
            near.validate()?;
        }
        let r = &self.resilience;
        let checks = [
            (
                "resilience.timeout",
                !r.timeout.is_zero(),
                "a positive duration",
            ),
            (
                "resilience.bulk_timeout",
                r.bulk_timeout >= r.timeout,
                "a duration at least `resilience.timeout`",
            ),
            (
                "resilience.breaker_threshold",
                r.breaker_threshold > 0,
                "a positive whole number of failures",
            ),
            (
                "resilience.breaker_failure_rate",
                (0.0..=1.0).contains(&r.breaker_failure_rate),
                "a share from 0 (off) to 1",
            ),
            (
                "resilience.breaker_open_for",
                !r.breaker_open_for.is_zero(),
                "a positive duration",
            ),
            (
                "resilience.max_concurrency",
                r.max_concurrency > 0,
                "a positive whole number",
            ),
            (
                "resilience.retries",
                r.retries <= 10,
                "a whole number from 0 to 10",
            ),
        ];
        for (field, ok, expected) in checks {
            if !ok {
                return Err(Error::config(field, SOURCE, expected, format!("{r:?}")));
            }
        }
        Ok(())
    }

    /// The TTL of a bucket.
    pub fn ttl(&self, bucket: TtlBucket) -> Duration {
        match bucket {
            TtlBucket::Short => self.ttl_short,
            TtlBucket::Default => self.default_ttl,
            TtlBucket::Long => self.ttl_long,
        }
    }
}

/// Serde for durations: seconds as an integer, or a string in the
/// [`parse_duration`] grammar.
pub(crate) mod duration_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_millis() == 0 {
            s.serialize_u64(d.as_secs())
        } else {
            s.serialize_str(&format!("{}ms", d.as_millis()))
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Ok(Duration::from_secs(n)),
            Raw::Text(t) => super::parse_duration(&t).ok_or_else(|| {
                D::Error::custom(format!("{}, got {t:?}", super::DURATION_EXPECTED))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn env_overrides_defaults() {
        let c = CacheConfig::from_sources(
            None,
            env(&[
                ("LARDER_PREFIX", "svc"),
                ("LARDER_DEFAULT_TTL", "1h30m"),
                ("LARDER_TTL_SHORT", "10"),
                ("REDIS_URL", "redis://localhost:6379/0"),
                ("CACHE_URL", "mem://"),
            ]),
        )
        .unwrap();
        assert_eq!(c.prefix, "svc");
        assert_eq!(c.default_ttl, Duration::from_secs(5400));
        assert_eq!(c.ttl(TtlBucket::Short), Duration::from_secs(10));
        assert_eq!(c.ttl(TtlBucket::Long), Duration::from_secs(3600));
        assert_eq!(
            c.url.as_deref(),
            Some("mem://"),
            "CACHE_URL wins over REDIS_URL"
        );
    }

    #[test]
    fn bad_env_ttl_names_the_variable_and_the_format() {
        let err = CacheConfig::from_sources(None, env(&[("LARDER_DEFAULT_TTL", "5 minutes")]))
            .unwrap_err();
        let Error::Config {
            field,
            source_name,
            got,
            ..
        } = &err
        else {
            panic!("wrong kind: {err:?}")
        };
        assert_eq!(field, "default_ttl");
        assert_eq!(source_name, "environment variable LARDER_DEFAULT_TTL");
        assert_eq!(got, "5 minutes");
        let msg = err.to_string();
        assert!(msg.contains("1h30m") && msg.contains("5m"), "{msg}");
        let zero = CacheConfig::from_sources(None, env(&[("LARDER_TTL_LONG", "0")]));
        assert!(zero.is_err(), "a zero TTL is rejected");
    }

    #[test]
    fn file_then_env() {
        let mut c = CacheConfig::default();
        c.merge_toml(
            "prefix = \"svc\"\ndefault_ttl = \"5m\"\nttl_long = 7200\n",
            "larder.toml",
        )
        .unwrap();
        assert_eq!(c.default_ttl, Duration::from_secs(300));
        assert_eq!(c.ttl_long, Duration::from_secs(7200));
        c.merge_env(env(&[("LARDER_PREFIX", "other")])).unwrap();
        assert_eq!(c.prefix, "other");
    }

    #[test]
    fn bad_file_value_names_file_and_line() {
        let mut c = CacheConfig::default();
        let err = c
            .merge_toml(
                "prefix = \"svc\"\n\ndefault_ttl = \"soon\"\n",
                "conf/larder.toml",
            )
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("default_ttl"), "{msg}");
        assert!(msg.contains("conf/larder.toml line 3"), "{msg}");
        let err = c
            .merge_toml("defualt_ttl = 5\n", "larder.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("larder.toml line 1") && err.contains("defualt_ttl"),
            "{err}"
        );
        let err = c
            .merge_toml("prefix = \"a:b\"\n", "larder.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prefix") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn debug_masks_the_password() {
        let c = CacheConfig {
            url: Some("redis://app:hunter2@db:6379/0".into()),
            ..CacheConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("app:***@db"), "{shown}");
    }

    #[test]
    fn serde_roundtrip() {
        let c = CacheConfig {
            default_ttl: Duration::from_millis(1500),
            ..CacheConfig::default()
        };
        let text = serde_json::to_string(&c).unwrap();
        let back: CacheConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
    }
    /// The parts of an [`Error::Config`], or a panic naming the other kind.
    fn config_error(err: &Error) -> (&str, &str, &str, &str) {
        let Error::Config {
            field,
            source_name,
            expected,
            got,
        } = err
        else {
            panic!("not a config error: {err:?}")
        };
        (field, source_name, expected, got)
    }

    const PROFILES: &str = "prefix = \"svc\"\n\
        default_ttl = \"5m\"\n\
        \n\
        [profile.development]\n\
        url = \"mem://\"\n\
        \n\
        [profile.production]\n\
        url = \"redis://cache:6379/0\"\n\
        default_ttl = \"10m\"\n";

    /// A config file in the temporary directory, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("larder-config-{}-{name}.toml", std::process::id()));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn max_ttl_is_365_days() {
        assert_eq!(MAX_TTL, Duration::from_secs(31_536_000));
        assert_eq!(parse_duration("365d"), Some(MAX_TTL));
    }

    #[test]
    fn env_ttl_past_the_limit_is_a_config_error() {
        for (var, want) in [
            ("LARDER_DEFAULT_TTL", "default_ttl"),
            ("LARDER_TTL_SHORT", "ttl_short"),
            ("LARDER_TTL_LONG", "ttl_long"),
        ] {
            for raw in ["18446744073709551615", "366d", "365d1s", "8761h"] {
                let err = CacheConfig::from_sources(None, env(&[(var, raw)])).unwrap_err();
                let (field, source, expected, got) = config_error(&err);
                assert_eq!(field, want);
                assert_eq!(source, format!("environment variable {var}"));
                assert!(expected.contains("at most 365d"), "{expected}");
                assert!(expected.contains("no expiry"), "{expected}");
                assert_eq!(got, raw);
            }
        }
        // Too many digits for a u64 is the same error, not a panic.
        let err = CacheConfig::from_sources(
            None,
            env(&[("LARDER_DEFAULT_TTL", "99999999999999999999999")]),
        )
        .unwrap_err();
        assert!(config_error(&err).2.contains("365d"));
    }

    #[test]
    fn ttl_of_exactly_the_limit_is_accepted() {
        let c = CacheConfig::from_sources(
            None,
            env(&[
                ("LARDER_DEFAULT_TTL", "365d"),
                ("LARDER_TTL_SHORT", "31536000"),
                ("LARDER_TTL_LONG", "8760h"),
            ]),
        )
        .unwrap();
        assert_eq!(c.default_ttl, MAX_TTL);
        assert_eq!(c.ttl_short, MAX_TTL);
        assert_eq!(c.ttl_long, MAX_TTL);
        c.validate().unwrap();
    }

    #[test]
    fn file_ttl_past_the_limit_names_the_line() {
        let mut c = CacheConfig::default();
        let err = c
            .merge_toml("prefix = \"svc\"\nttl_long = \"400d\"\n", "larder.toml")
            .unwrap_err();
        let (field, source, expected, got) = config_error(&err);
        assert_eq!(field, "ttl_long");
        assert_eq!(source, "larder.toml line 2");
        assert!(expected.contains("at most 365d"), "{expected}");
        assert_eq!(got, "400d");
        let err = c
            .merge_toml("default_ttl = 31536001\n", "larder.toml")
            .unwrap_err();
        assert_eq!(config_error(&err).0, "default_ttl");
        assert_eq!(config_error(&err).1, "larder.toml line 1");
    }

    #[test]
    fn validate_accepts_the_defaults() {
        CacheConfig::default().validate().unwrap();
        CacheConfig {
            url: Some("redis://app:secret@db:6379/0".into()),
            default_ttl: MAX_TTL,
            ..CacheConfig::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn validate_checks_every_field() {
        let too_long = MAX_TTL + Duration::from_millis(1);
        let cases: Vec<(&str, CacheConfig)> = vec![
            (
                "url",
                CacheConfig {
                    url: Some("nope".into()),
                    ..CacheConfig::default()
                },
            ),
            (
                "prefix",
                CacheConfig {
                    prefix: "a:b".into(),
                    ..CacheConfig::default()
                },
            ),
            (
                "prefix",
                CacheConfig {
                    prefix: String::new(),
                    ..CacheConfig::default()
                },
            ),
            (
                "version",
                CacheConfig {
                    version: "v 1".into(),
                    ..CacheConfig::default()
                },
            ),
            (
                "default_ttl",
                CacheConfig {
                    default_ttl: Duration::ZERO,
                    ..CacheConfig::default()
                },
            ),
            (
                "default_ttl",
                CacheConfig {
                    default_ttl: too_long,
                    ..CacheConfig::default()
                },
            ),
            (
                "ttl_short",
                CacheConfig {
                    ttl_short: Duration::ZERO,
                    ..CacheConfig::default()
                },
            ),
            (
                "ttl_short",
                CacheConfig {
                    ttl_short: Duration::MAX,
                    ..CacheConfig::default()
                },
            ),
            (
                "ttl_long",
                CacheConfig {
                    ttl_long: Duration::ZERO,
                    ..CacheConfig::default()
                },
            ),
            (
                "ttl_long",
                CacheConfig {
                    ttl_long: too_long,
                    ..CacheConfig::default()
                },
            ),
            (
                "max_connections",
                CacheConfig {
                    max_connections: 0,
                    ..CacheConfig::default()
                },
            ),
            (
                "max_key_length",
                CacheConfig {
                    max_key_length: 0,
                    ..CacheConfig::default()
                },
            ),
            (
                "max_value_size",
                CacheConfig {
                    max_value_size: 0,
                    ..CacheConfig::default()
                },
            ),
        ];
        for (want, config) in cases {
            let err = config.validate().unwrap_err();
            let (field, source, expected, _) = config_error(&err);
            assert_eq!(field, want, "{err}");
            assert_eq!(source, "the configuration", "{err}");
            assert!(!expected.is_empty());
            if want.contains("ttl") {
                assert!(expected.contains("at most 365d"), "{expected}");
            }
        }
    }

    #[test]
    fn validate_masks_the_password_of_a_bad_url() {
        let c = CacheConfig {
            url: Some("re dis://app:hunter2@db:6379/0".into()),
            ..CacheConfig::default()
        };
        let err = c.validate().unwrap_err();
        assert_eq!(config_error(&err).0, "url");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn without_a_profile_the_profile_tables_are_not_applied() {
        let mut c = CacheConfig::default();
        c.merge_toml(PROFILES, "larder.toml").unwrap();
        assert_eq!(c.prefix, "svc");
        assert_eq!(c.default_ttl, Duration::from_secs(300));
        assert_eq!(c.url, None);
        assert_eq!(c.profile, None);
        let mut same = CacheConfig::default();
        same.merge_toml_profile(PROFILES, "larder.toml", None)
            .unwrap();
        assert_eq!(same, c);
    }

    #[test]
    fn a_profile_overrides_the_base_settings() {
        let mut c = CacheConfig::default();
        c.merge_toml_profile(PROFILES, "larder.toml", Some("production"))
            .unwrap();
        assert_eq!(c.prefix, "svc", "base settings stay");
        assert_eq!(c.url.as_deref(), Some("redis://cache:6379/0"));
        assert_eq!(c.default_ttl, Duration::from_secs(600));
        assert_eq!(c.profile.as_deref(), Some("production"));
        assert!(format!("{c:?}").contains("profile: Some(\"production\")"));

        let mut d = CacheConfig::default();
        d.merge_toml_profile(PROFILES, "larder.toml", Some("development"))
            .unwrap();
        assert_eq!(d.url.as_deref(), Some("mem://"));
        assert_eq!(d.default_ttl, Duration::from_secs(300), "base TTL kept");
        assert_eq!(d.profile.as_deref(), Some("development"));
    }

    #[test]
    fn a_bad_profile_value_names_the_line_and_the_profile() {
        let text = "prefix = \"svc\"\n\
            \n\
            [profile.development]\n\
            url = \"mem://\"\n\
            \n\
            [profile.production]\n\
            default_ttl = \"soon\"\n";
        let mut c = CacheConfig::default();
        let err = c
            .merge_toml_profile(text, "larder.toml", Some("production"))
            .unwrap_err();
        let (field, source, _, got) = config_error(&err);
        assert_eq!(field, "default_ttl");
        assert_eq!(source, "larder.toml line 7 (profile production)");
        assert_eq!(got, "soon");
        // Not selected: the value is not applied, so not an error.
        CacheConfig::default()
            .merge_toml_profile(text, "larder.toml", Some("development"))
            .unwrap();
        let err = CacheConfig::default()
            .merge_toml_profile(
                "[profile.production]\nttl_long = \"400d\"\n",
                "larder.toml",
                Some("production"),
            )
            .unwrap_err();
        assert_eq!(config_error(&err).0, "ttl_long");
        assert_eq!(
            config_error(&err).1,
            "larder.toml line 2 (profile production)"
        );
    }

    #[test]
    fn an_unknown_key_in_a_profile_is_an_error() {
        let text = "prefix = \"svc\"\n[profile.production]\ndefualt_ttl = \"5m\"\n";
        for profile in [None, Some("production")] {
            let err = CacheConfig::default()
                .merge_toml_profile(text, "larder.toml", profile)
                .unwrap_err();
            let (field, source, _, got) = config_error(&err);
            assert_eq!(field, "config file");
            assert_eq!(source, "larder.toml line 3");
            assert!(got.contains("defualt_ttl"), "{got}");
        }
    }

    #[test]
    fn profiles_cannot_be_nested() {
        let text = "[profile.production]\nurl = \"mem://\"\n[profile.production.profile.x]\nprefix = \"a\"\n";
        let err = CacheConfig::default()
            .merge_toml(text, "larder.toml")
            .unwrap_err();
        let (field, source, expected, _) = config_error(&err);
        assert_eq!(field, "profile");
        assert!(source.contains("(profile production)"), "{source}");
        assert!(expected.contains("cannot be nested"), "{expected}");
    }

    #[test]
    fn an_unknown_profile_lists_the_defined_ones() {
        let err = CacheConfig::default()
            .merge_toml_profile(PROFILES, "larder.toml", Some("staging"))
            .unwrap_err();
        let (field, source, expected, got) = config_error(&err);
        assert_eq!(field, "profile");
        assert_eq!(source, "the caller");
        assert!(
            expected.starts_with("one of: development, production"),
            "{expected}"
        );
        assert_eq!(got, "staging");

        let err = CacheConfig::default()
            .merge_toml_profile("prefix = \"svc\"\n", "larder.toml", Some("production"))
            .unwrap_err();
        let (field, _, expected, _) = config_error(&err);
        assert_eq!(field, "profile");
        assert!(expected.contains("defines no profiles"), "{expected}");
    }

    #[test]
    fn larder_profile_selects_the_profile() {
        let file = TempFile::new("env-profile", PROFILES);
        let c = CacheConfig::from_sources(Some(&file.0), env(&[("LARDER_PROFILE", "production")]))
            .unwrap();
        assert_eq!(c.url.as_deref(), Some("redis://cache:6379/0"));
        assert_eq!(c.default_ttl, Duration::from_secs(600));
        assert_eq!(c.profile.as_deref(), Some("production"));

        let none =
            CacheConfig::from_sources(Some(&file.0), env(&[("LARDER_PROFILE", "")])).unwrap();
        assert_eq!(none.profile, None, "an empty LARDER_PROFILE is unset");
        assert_eq!(none.url, None);

        let err = CacheConfig::from_sources(Some(&file.0), env(&[("LARDER_PROFILE", "prod")]))
            .unwrap_err();
        let (field, source, expected, got) = config_error(&err);
        assert_eq!(field, "profile");
        assert_eq!(source, "environment variable LARDER_PROFILE");
        assert!(
            expected.starts_with("one of: development, production"),
            "{expected}"
        );
        assert_eq!(got, "prod");
    }

    #[test]
    fn the_environment_overrides_the_profile_and_the_caller_overrides_larder_profile() {
        let file = TempFile::new("precedence", PROFILES);
        let c = CacheConfig::from_sources_with_profile(
            Some(&file.0),
            Some("development"),
            env(&[
                ("LARDER_PROFILE", "production"),
                ("LARDER_DEFAULT_TTL", "1m"),
            ]),
        )
        .unwrap();
        assert_eq!(c.profile.as_deref(), Some("development"));
        assert_eq!(c.url.as_deref(), Some("mem://"));
        assert_eq!(
            c.default_ttl,
            Duration::from_secs(60),
            "env beats the profile"
        );

        let c = CacheConfig::from_sources_with_profile(
            Some(&file.0),
            None,
            env(&[("LARDER_PROFILE", "production")]),
        )
        .unwrap();
        assert_eq!(
            c.profile.as_deref(),
            Some("production"),
            "None defers to LARDER_PROFILE"
        );

        let err = CacheConfig::from_sources_with_profile(Some(&file.0), Some("qa"), env(&[]))
            .unwrap_err();
        assert_eq!(config_error(&err).1, "the caller");
    }

    #[test]
    fn a_profile_without_a_config_file_is_an_error() {
        let err =
            CacheConfig::from_sources(None, env(&[("LARDER_PROFILE", "production")])).unwrap_err();
        let (field, source, expected, got) = config_error(&err);
        assert_eq!(field, "profile");
        assert_eq!(source, "environment variable LARDER_PROFILE");
        assert!(expected.contains("no config file was found"), "{expected}");
        assert!(expected.contains("from_sources"), "{expected}");
        assert_eq!(got, "production");

        let err =
            CacheConfig::from_sources_with_profile(None, Some("production"), env(&[])).unwrap_err();
        assert_eq!(config_error(&err).1, "the caller");
        assert!(config_error(&err).2.contains("no config file was found"));
        // No profile, no file: just the defaults.
        assert_eq!(
            CacheConfig::from_sources_with_profile(None, None, env(&[])).unwrap(),
            CacheConfig::default()
        );
    }

    #[test]
    fn svc_infra_names_are_fallbacks() {
        let c = CacheConfig::from_sources(
            None,
            env(&[
                ("CACHE_PREFIX", "infra"),
                ("CACHE_VERSION", "v9"),
                ("CACHE_TTL_DEFAULT", "2m"),
                ("CACHE_TTL_SHORT", "5"),
                ("CACHE_TTL_LONG", "2h"),
            ]),
        )
        .unwrap();
        assert_eq!(c.prefix, "infra");
        assert_eq!(c.version, "v9");
        assert_eq!(c.default_ttl, Duration::from_secs(120));
        assert_eq!(c.ttl_short, Duration::from_secs(5));
        assert_eq!(c.ttl_long, Duration::from_secs(7200));
    }

    #[test]
    fn larder_names_beat_svc_infra_names() {
        let c = CacheConfig::from_sources(
            None,
            env(&[
                ("LARDER_PREFIX", "mine"),
                ("CACHE_PREFIX", "infra"),
                ("LARDER_VERSION", "v2"),
                ("CACHE_VERSION", "v9"),
                ("LARDER_DEFAULT_TTL", "1m"),
                ("CACHE_TTL_DEFAULT", "2m"),
                ("LARDER_TTL_SHORT", "3"),
                ("CACHE_TTL_SHORT", "5"),
                ("LARDER_TTL_LONG", "3h"),
                ("CACHE_TTL_LONG", "2h"),
            ]),
        )
        .unwrap();
        assert_eq!(c.prefix, "mine");
        assert_eq!(c.version, "v2");
        assert_eq!(c.default_ttl, Duration::from_secs(60));
        assert_eq!(c.ttl_short, Duration::from_secs(3));
        assert_eq!(c.ttl_long, Duration::from_secs(10_800));
        // An empty LARDER_ name counts as unset.
        let c = CacheConfig::from_sources(
            None,
            env(&[("LARDER_PREFIX", " "), ("CACHE_PREFIX", "infra")]),
        )
        .unwrap();
        assert_eq!(c.prefix, "infra");
    }

    #[test]
    fn errors_name_the_variable_used() {
        let err =
            CacheConfig::from_sources(None, env(&[("CACHE_TTL_DEFAULT", "soon")])).unwrap_err();
        assert_eq!(config_error(&err).0, "default_ttl");
        assert_eq!(
            config_error(&err).1,
            "environment variable CACHE_TTL_DEFAULT"
        );
        let err = CacheConfig::from_sources(
            None,
            env(&[("LARDER_TTL_LONG", "400d"), ("CACHE_TTL_LONG", "1h")]),
        )
        .unwrap_err();
        assert_eq!(config_error(&err).1, "environment variable LARDER_TTL_LONG");
        let err = CacheConfig::from_sources(None, env(&[("CACHE_PREFIX", "a:b")])).unwrap_err();
        assert_eq!(config_error(&err).0, "prefix");
        assert_eq!(config_error(&err).1, "environment variable CACHE_PREFIX");
    }

    #[test]
    fn env_vars_lists_every_setting_once() {
        let fields: Vec<&str> = ENV_VARS.iter().map(|(field, _)| *field).collect();
        assert_eq!(
            fields,
            [
                "url",
                "prefix",
                "version",
                "default_ttl",
                "ttl_short",
                "ttl_long",
                "max_connections",
                "codec",
                "max_key_length",
                "max_value_size",
                "ttl_jitter",
                "max_tags",
                "max_tag_length",
                "security.signing_keys",
                "security.encryption_keys",
                "security.allow_unsigned",
                "security.compress_min_size",
                "resilience.enabled",
                "resilience.timeout",
                "resilience.retries",
                "resilience.breaker_threshold",
                "resilience.breaker_open_for",
                "resilience.fallback",
                "resilience.local_fallback_entries",
                "near.max_entries",
                "near.max_bytes",
                "near.ttl",
            ]
        );
        for (field, names) in ENV_VARS {
            assert!(names[0].starts_with("LARDER_"), "{field}: {names:?}");
            // Every listed variable really sets its field.
            for name in *names {
                let mut c = CacheConfig::default();
                let value = match *field {
                    "url" => "redis://elsewhere:6379/0",
                    "prefix" | "version" => "zz",
                    "codec" => "json",
                    "ttl_jitter" => "0.3",
                    "resilience.enabled" => "off",
                    "resilience.fallback" => "closed",
                    "security.signing_keys" | "security.encryption_keys" => {
                        "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
                    }
                    "security.allow_unsigned" => "on",
                    _ => "7",
                };
                c.merge_env(env(&[(name, value)])).unwrap();
                if *field != "codec" {
                    assert_ne!(c, CacheConfig::default(), "{name} sets nothing");
                }
            }
        }
        let ttl_default = ENV_VARS.iter().find(|(f, _)| *f == "default_ttl").unwrap();
        assert_eq!(ttl_default.1, ["LARDER_DEFAULT_TTL", "CACHE_TTL_DEFAULT"]);
    }

    #[test]
    fn routes_from_the_file_and_the_environment() {
        let mut c = CacheConfig::default();
        c.merge_toml(
            "url = \"redis://main:6379/0\"\n\n[[route]]\nprefix = \"session:\"\nurl = \"redis://:pw@sessions:6379/1\"\n\n[[route]]\nname = \"fast\"\nprefix = \"hot:\"\nurl = \"mem://\"\n",
            "larder.toml",
        )
        .unwrap();
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[0].name, "session");
        assert_eq!(c.routes[0].prefix, "session:");
        assert_eq!(c.routes[1].name, "fast");
        assert!(!format!("{c:?}").contains(":pw@"), "{c:?}");
        c.merge_env(env(&[(
            "LARDER_ROUTES",
            "a:=mem:// b:=mem://?max_entries=5",
        )]))
        .unwrap();
        let names: Vec<&str> = c.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["a", "b"],
            "the variable replaces the file's routes"
        );
        assert!(c.validate().is_ok());
    }

    #[test]
    fn bad_routes_are_explained() {
        let mut c = CacheConfig::default();
        for (toml, needle) in [
            (
                "[[route]]\nprefix = \"\"\nurl = \"mem://\"\n",
                "non-empty key prefix",
            ),
            (
                "[[route]]\nprefix = \"a:\"\nurl = \"nowhere\"\n",
                "route \"a\" url",
            ),
            (
                "[[route]]\nprefix = \"a:\"\nurl = \"mem://\"\n[[route]]\nprefix = \"a:\"\nurl = \"mem://\"\n",
                "each name used once",
            ),
            (
                "[[route]]\nprefix = \"a:\"\nurl = \"mem://\"\nweight = 3\n",
                "weight",
            ),
        ] {
            let err = c.merge_toml(toml, "larder.toml").unwrap_err().to_string();
            assert!(err.contains(needle), "{toml}: {err}");
            assert!(err.contains("larder.toml line"), "{err}");
        }
        let err = c
            .merge_env(env(&[("LARDER_ROUTES", "session:redis://h")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("LARDER_ROUTES") && err.contains("prefix=url"),
            "{err}"
        );
    }

    #[test]
    fn a_profile_replaces_the_routes() {
        let mut c = CacheConfig::default();
        c.merge_toml_profile(
            "[[route]]\nprefix = \"a:\"\nurl = \"mem://\"\n[profile.production]\n[[profile.production.route]]\nprefix = \"b:\"\nurl = \"mem://\"\n",
            "larder.toml",
            Some("production"),
        )
        .unwrap();
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.routes[0].prefix, "b:");
    }

    #[test]
    fn resilience_and_jitter_from_the_file_and_the_environment() {
        let mut c = CacheConfig::default();
        assert!((c.ttl_jitter - 0.1).abs() < 1e-9, "jitter is on by default");
        c.merge_toml(
            "ttl_jitter = 0.2\n[resilience]\ntimeout = \"250ms\"\nretries = 1\nfallback = \"closed\"\nbreaker_open_for = 3\n",
            "larder.toml",
        )
        .unwrap();
        assert!((c.ttl_jitter - 0.2).abs() < 1e-9);
        assert_eq!(c.resilience.timeout, Duration::from_millis(250));
        assert_eq!(c.resilience.retries, 1);
        assert_eq!(c.resilience.fallback, Fallback::Closed);
        assert_eq!(c.resilience.breaker_open_for, Duration::from_secs(3));
        c.merge_env(env(&[
            ("LARDER_TTL_JITTER", "5%"),
            ("LARDER_TIMEOUT", "2s"),
            ("LARDER_FALLBACK", "open"),
            ("LARDER_RESILIENCE", "off"),
        ]))
        .unwrap();
        assert!((c.ttl_jitter - 0.05).abs() < 1e-9);
        assert_eq!(c.resilience.timeout, Duration::from_secs(2));
        assert_eq!(c.resilience.fallback, Fallback::Open);
        assert!(!c.resilience.enabled);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn bad_resilience_values_name_the_setting() {
        let mut c = CacheConfig::default();
        let err = c
            .merge_toml("[resilience]\ntimeout = \"soon\"\n", "larder.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("resilience.timeout") && err.contains("line 2"),
            "{err}"
        );
        let err = c
            .merge_toml("[resilience]\nretrys = 3\n", "larder.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("retries"), "{err}");
        let err = c
            .merge_env(env(&[("LARDER_FALLBACK", "maybe")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("LARDER_FALLBACK") && err.contains("closed"),
            "{err}"
        );
        let err = c
            .merge_env(env(&[("LARDER_TTL_JITTER", "80%")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("0.5"), "{err}");
    }

    const SECRET_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn security_from_the_file_and_the_environment_never_shows_secrets() {
        let mut c = CacheConfig::default();
        c.merge_toml(
            &format!(
                "max_tags = 8\nmax_tag_length = 100\n\n[security]\nsigning_keys = \"new:{SECRET_B64},old:hex:{}\"\ncompress_min_size = \"off\"\nallow_unsigned = true\n",
                "cd".repeat(32)
            ),
            "larder.toml",
        )
        .unwrap();
        assert_eq!(c.max_tags, 8);
        assert_eq!(c.max_tag_length, 100);
        assert_eq!(c.security.signing_keys.current().unwrap().id(), "new");
        assert_eq!(c.security.signing_keys.keys().len(), 2);
        assert_eq!(c.security.compress_min_size, None);
        assert!(c.security.allow_unsigned);
        c.merge_env(env(&[
            ("LARDER_ENCRYPTION_KEYS", &format!("e1:{SECRET_B64}")),
            ("LARDER_COMPRESS_MIN_SIZE", "4KiB"),
        ]))
        .unwrap();
        assert_eq!(c.security.encryption_keys.current().unwrap().id(), "e1");
        assert_eq!(c.security.compress_min_size, Some(4096));
        let debug = format!("{c:?}");
        assert!(
            debug.contains("new:<redacted>") && debug.contains("e1:<redacted>"),
            "{debug}"
        );
        for secret in [SECRET_B64, "cdcdcd", "0123456789abcdef"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        let json = serde_json::to_string(&c).unwrap();
        assert!(
            !json.contains(SECRET_B64) && json.contains("new:<redacted>"),
            "{json}"
        );
        // Exported config cannot be read back as if it held the keys.
        let err = CacheConfig::default()
            .merge_toml(
                "[security]\nsigning_keys = \"new:<redacted>\"\n",
                "exported.toml",
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("LARDER_SIGNING_KEYS"), "{err}");
    }

    #[test]
    fn short_keys_are_refused_naming_the_variable_not_the_secret() {
        let err =
            CacheConfig::from_sources(None, env(&[("LARDER_SIGNING_KEYS", "k1:c2hvcnQtc2VjcmV0")]))
                .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("LARDER_SIGNING_KEYS") && msg.contains("at least 32 bytes"),
            "{msg}"
        );
        assert!(!msg.contains("c2hvcnQtc2VjcmV0"), "{msg}");
        let long = format!("k1:hex:{}", "ab".repeat(48));
        let err = CacheConfig::from_sources(None, env(&[("LARDER_ENCRYPTION_KEYS", &long)]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exactly 32 bytes") && !err.contains("abab"),
            "{err}"
        );
        let err = CacheConfig::from_sources(None, env(&[("LARDER_MAX_TAGS", "0")])).unwrap_err();
        assert_eq!(config_error(&err).0, "max_tags");
    }
}
