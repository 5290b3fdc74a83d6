//! `warm`: write the entries of a TOML file.
//!
//! ```toml
//! [[entry]]
//! key = "user:1"
//! value = { name = "Ada" }   # any TOML value, stored as JSON
//! ttl = "10m"                # optional: seconds or a duration
//! tags = ["users"]           # optional
//! ```

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::cli::WarmArgs;
use crate::exit::{CliError, CliResult};
use crate::target::Target;

/// The file: `[[entry]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WarmFile {
    #[serde(default)]
    entry: Vec<WarmEntry>,
}

/// One entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WarmEntry {
    key: String,
    value: toml::Value,
    #[serde(default, deserialize_with = "ttl")]
    ttl: Option<Duration>,
    #[serde(default)]
    tags: Vec<String>,
}

/// A TTL as seconds or a duration string, checked while parsing so that a
/// bad one is reported with its line.
fn ttl<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    let parsed = match Raw::deserialize(d)? {
        Raw::Secs(n) => Some(Duration::from_secs(n)),
        Raw::Text(t) => larder::config::parse_duration(&t),
    };
    match parsed {
        Some(d) if !d.is_zero() => Ok(Some(d)),
        _ => Err(serde::de::Error::custom(
            "invalid ttl: expected positive seconds or a duration such as \"5m\" or \"1h30m\"",
        )),
    }
}

/// A TOML value as JSON (datetimes as their text).
fn to_json(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, to_json(v))).collect())
        }
    }
}

/// Parse the file; an error names the file and line.
fn parse(path: &Path, text: &str) -> CliResult<Vec<WarmEntry>> {
    toml::from_str::<WarmFile>(text)
        .map(|f| f.entry)
        .map_err(|e| {
            let line = e.span().map_or(1, |span| {
                text[..span.start.min(text.len())].matches('\n').count() + 1
            });
            CliError::usage(format!(
                "{} line {line}: {}",
                path.display(),
                e.message().trim()
            ))
        })
}

/// `larder warm`: exit 1 when an entry could not be written.
pub(crate) async fn run(target: &Target, args: &WarmArgs) -> CliResult {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", args.file.display())))?;
    let entries = parse(&args.file, &text)?;
    let total = entries.len();
    let mut failed = Vec::new();
    for entry in entries {
        let value = to_json(entry.value);
        let mut request = target.cache.set(&entry.key, &value).tags(&entry.tags);
        if let Some(ttl) = entry.ttl {
            request = request.ttl(ttl);
        }
        if let Err(e) = request.await {
            failed.push((entry.key, e));
        }
    }
    println!("wrote {} of {total} entries", total - failed.len());
    if failed.is_empty() {
        return Ok(());
    }
    for (key, error) in &failed {
        eprintln!("failed: {key}: {error}");
    }
    if failed.len() == total && failed.iter().all(|(_, e)| e.is_transient()) {
        return Err(CliError::unreachable(&target.host, &failed[0].1));
    }
    Err(CliError::failed(format!(
        "{} of {total} entries failed",
        failed.len()
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn errors_name_the_line() {
        let text = "[[entry]]\nkey = \"a\"\nvalue = 1\n\n[[entry]]\nkey = \"b\"\nvalue = 2\nttl = \"soon\"\n";
        let err = parse(Path::new("warm.toml"), text).err().unwrap();
        assert!(
            err.message.starts_with("warm.toml line 8:"),
            "{}",
            err.message
        );
        let ok = parse(
            Path::new("w.toml"),
            "[[entry]]\nkey = \"a\"\nvalue = { x = 1 }\nttl = 60\n",
        )
        .unwrap();
        assert_eq!(ok[0].ttl, Some(Duration::from_secs(60)));
        assert_eq!(
            to_json(ok.into_iter().next().unwrap().value),
            serde_json::json!({"x": 1})
        );
    }
}
