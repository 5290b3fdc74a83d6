//! Configuration: defaults < `larder.toml` < environment < builder.
//!
//! ```toml
//! # larder.toml
//! url = "redis://localhost:6379/0"
//! prefix = "svc"
//! version = "v1"
//! default_ttl = "5m"      # 300, "5m", "1h30m", "500ms"
//! ttl_short = 30
//! ttl_long = "1h"
//! max_connections = 20
//! codec = "json"
//! ```
//!
//! Environment: `LARDER_URL` (falling back to `CACHE_URL`, then
//! `REDIS_URL`), `LARDER_PREFIX`, `LARDER_VERSION`, `LARDER_DEFAULT_TTL`,
//! `LARDER_TTL_SHORT`, `LARDER_TTL_LONG`, `LARDER_MAX_CONNECTIONS`,
//! `LARDER_CODEC`; `LARDER_CONFIG` names the file (default `./larder.toml`,
//! read when present). Every invalid value is an [`Error::Config`] that names
//! the field, where the value came from and what was expected.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::key::{DEFAULT_MAX_KEY_LENGTH, validate_namespace_part};

const DURATION_EXPECTED: &str =
    "a positive duration such as `300` (seconds), `5m`, `1h30m` or `500ms`";

/// Default value size limit: 32 MiB.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 32 * 1024 * 1024;

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
    /// Largest encoded value accepted, in bytes.
    pub max_value_size: usize,
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
            .finish()
    }
}

/// One TOML value with its position, as written in the file.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Text(String),
}

impl Scalar {
    fn shown(&self) -> String {
        match self {
            Scalar::Int(n) => n.to_string(),
            Scalar::Text(s) => s.clone(),
        }
    }
}

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
}

/// Apply one textual setting; shared by the file and the environment so
/// both accept exactly the same values.
fn apply(config: &mut CacheConfig, field: &str, raw: &str, source: &str) -> Result<()> {
    let bad = |expected: &str| Error::config(field, source, expected, raw);
    match field {
        "url" => {
            crate::url::BackendUrl::parse(raw).map_err(|_| {
                Error::config(
                    field,
                    source,
                    "a URL such as mem://, redis://host:6379/0 or sqlite://cache.db",
                    crate::url::mask(raw),
                )
            })?;
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
                .filter(|d| !d.is_zero())
                .ok_or_else(|| bad(DURATION_EXPECTED))?;
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
                .ok_or_else(|| bad("a whole number from 1 to 4294967295"))?;
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
                .ok_or_else(|| bad("a positive number of bytes"))?;
        }
        "max_value_size" => {
            config.max_value_size = parse_size(raw)
                .filter(|n| *n > 0)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| bad("a size such as 1048576, 512KiB or 32MiB"))?;
        }
        _ => return Err(bad("a known setting")),
    }
    Ok(())
}

/// Environment variables read by [`CacheConfig::merge_env`], with the field
/// each sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("LARDER_PREFIX", "prefix"),
    ("LARDER_VERSION", "version"),
    ("LARDER_DEFAULT_TTL", "default_ttl"),
    ("LARDER_TTL_SHORT", "ttl_short"),
    ("LARDER_TTL_LONG", "ttl_long"),
    ("LARDER_MAX_CONNECTIONS", "max_connections"),
    ("LARDER_CODEC", "codec"),
    ("LARDER_MAX_KEY_LENGTH", "max_key_length"),
    ("LARDER_MAX_VALUE_SIZE", "max_value_size"),
];

/// URL variables, first set wins.
pub const URL_VARS: &[&str] = &["LARDER_URL", "CACHE_URL", "REDIS_URL"];

impl CacheConfig {
    /// Defaults, then the file named by `LARDER_CONFIG` (or `./larder.toml`
    /// when it exists), then the process environment.
    pub fn load() -> Result<Self> {
        let env = |name: &str| std::env::var(name).ok();
        let file = env("LARDER_CONFIG");
        let path = match &file {
            Some(p) => Some(Path::new(p)),
            None => Some(Path::new("larder.toml")).filter(|p| p.exists()),
        };
        Self::from_sources(path, env)
    }

    /// Defaults, then `file` (if given), then the variables `env` returns.
    /// Tests pass their own `env` instead of touching the process.
    pub fn from_sources(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut config = CacheConfig::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::config(
                    "config file",
                    path.display().to_string(),
                    "a readable TOML file",
                    e.to_string(),
                )
            })?;
            config.merge_toml(&text, &path.display().to_string())?;
        }
        config.merge_env(env)?;
        Ok(config)
    }

    /// Apply the settings of a TOML document; `file_name` appears in errors.
    pub fn merge_toml(&mut self, text: &str, file_name: &str) -> Result<()> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map_or_else(|| file_name.to_owned(), |s| format!("{file_name} line {}", line_of(s.start)));
            Error::config(
                "config file",
                at,
                "valid larder settings (url, prefix, version, default_ttl, ttl_short, ttl_long, max_connections, codec, max_key_length, max_value_size)",
                e.message().to_owned(),
            )
        })?;
        let text_fields = [
            ("url", file.url),
            ("prefix", file.prefix),
            ("version", file.version),
        ];
        for (field, value) in text_fields {
            if let Some(v) = value {
                let source = format!("{file_name} line {}", line_of(v.span().start));
                apply(self, field, v.get_ref(), &source)?;
            }
        }
        let scalar_fields = [
            ("default_ttl", file.default_ttl),
            ("ttl_short", file.ttl_short),
            ("ttl_long", file.ttl_long),
            ("max_connections", file.max_connections),
            ("codec", file.codec),
            ("max_key_length", file.max_key_length),
            ("max_value_size", file.max_value_size),
        ];
        for (field, value) in scalar_fields {
            if let Some(v) = value {
                let source = format!("{file_name} line {}", line_of(v.span().start));
                apply(self, field, &v.get_ref().shown(), &source)?;
            }
        }
        Ok(())
    }

    /// Apply the `LARDER_*` variables (and the URL fallbacks) that `env`
    /// returns. Empty values count as unset.
    pub fn merge_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<()> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some((name, url)) = URL_VARS.iter().find_map(|n| get(n).map(|v| (*n, v))) {
            apply(self, "url", &url, &format!("environment variable {name}"))?;
        }
        for (name, field) in ENV_VARS {
            if let Some(value) = get(name) {
                apply(self, field, &value, &format!("environment variable {name}"))?;
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
mod duration_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_millis() == 0 {
            s.serialize_u64(d.as_secs())
        } else {
            s.serialize_str(&format!("{}ms", d.as_millis()))
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
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
}
