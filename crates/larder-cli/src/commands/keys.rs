//! Commands on single keys and listings: `list`, `get`, `set`, `delete`,
//! `search`.

use larder::codec::Format as Stored;
use larder::{CacheEntry, FuzzyOptions};
use serde_json::{Value, json};

use crate::cli::{GetArgs, ListArgs, ListFormat, SearchArgs, SetArgs};
use crate::exit::{CliError, CliResult};
use crate::output;
use crate::target::Target;

/// A TTL given on the command line.
pub(crate) fn parse_ttl(option: &str, text: &str) -> CliResult<std::time::Duration> {
    larder::config::parse_duration(text).ok_or_else(|| {
        CliError::usage(format!(
            "invalid {option} {text:?}: expected seconds or a duration such as 300, 5m, 1h30m"
        ))
    })
}

/// `larder list`.
pub(crate) async fn list(target: &Target, args: &ListArgs) -> CliResult {
    let keys = target
        .cache
        .scan(&args.pattern, args.limit)
        .await
        .map_err(|e| target.error("list", e))?;
    match args.format {
        ListFormat::Json => println!("{}", json!(keys)),
        ListFormat::Human => {
            for key in &keys {
                println!("{key}");
            }
            eprintln!("{} keys", keys.len());
        }
    }
    Ok(())
}

/// The value of an entry as JSON: decoded serde values and counters, raw
/// bytes as a string (lossy UTF-8).
fn value_of(entry: &CacheEntry) -> Value {
    match entry.format {
        Stored::Raw => Value::String(String::from_utf8_lossy(&entry.payload).into_owned()),
        _ => entry
            .decode::<Value>()
            .unwrap_or_else(|e| Value::String(format!("<undecodable: {e}>"))),
    }
}

/// `larder get`: exit 1 when the key holds nothing.
pub(crate) async fn get(target: &Target, args: &GetArgs) -> CliResult {
    let entry = target
        .cache
        .get_entry(&args.key)
        .await
        .map_err(|e| target.error("get", e))?
        .ok_or_else(|| CliError::failed(format!("key {:?} not found", args.key)))?;
    let value = value_of(&entry);
    match args.format {
        ListFormat::Json => println!(
            "{}",
            json!({
                "key": args.key,
                "value": value,
                "format": entry.format.name(),
                "ttl_s": output::expiry_json(entry.expiry),
                "tags": entry.tags,
            })
        ),
        ListFormat::Human => {
            let shown = match &value {
                Value::String(s) => s.clone(),
                other => serde_json::to_string_pretty(other).unwrap_or_default(),
            };
            let rows = vec![
                vec!["value".to_owned(), shown],
                vec!["ttl".to_owned(), output::expiry(entry.expiry)],
                vec!["tags".to_owned(), entry.tags.join(", ")],
                vec!["format".to_owned(), entry.format.name().to_owned()],
            ];
            print!("{}", output::table(&rows));
        }
    }
    Ok(())
}

/// `larder set`.
pub(crate) async fn set(target: &Target, args: &SetArgs) -> CliResult {
    let value = if args.json {
        serde_json::from_str::<Value>(&args.value)
            .map_err(|e| CliError::usage(format!("VALUE is not valid JSON: {e}")))?
    } else {
        Value::String(args.value.clone())
    };
    let tags: Vec<&str> = args
        .tags
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .collect();
    let mut request = target.cache.set(&args.key, &value).tags(tags);
    if let Some(ttl) = &args.ttl {
        request = request.ttl(parse_ttl("--ttl", ttl)?);
    }
    request.await.map_err(|e| target.error("set", e))?;
    println!("OK");
    Ok(())
}

/// `larder delete`.
pub(crate) async fn delete(target: &Target, keys: &[String]) -> CliResult {
    let n = target
        .cache
        .delete_many(keys)
        .await
        .map_err(|e| target.error("delete", e))?;
    println!("deleted {n} of {} keys", keys.len());
    Ok(())
}

/// `larder search`.
pub(crate) async fn search(target: &Target, args: &SearchArgs) -> CliResult {
    if !(0.0..=1.0).contains(&args.threshold) {
        return Err(CliError::usage(format!(
            "--threshold {} is out of range: expected 0 to 1",
            args.threshold
        )));
    }
    let options = FuzzyOptions {
        threshold: args.threshold,
        limit: args.limit,
        ..FuzzyOptions::default()
    };
    let found = target
        .cache
        .fuzzy_search::<Value>(&args.query, &options)
        .await
        .map_err(|e| target.error("search", e))?;
    match args.format {
        ListFormat::Json => {
            let matches: Vec<Value> = found
                .iter()
                .map(|m| json!({"key": m.key, "score": m.score, "value": m.value}))
                .collect();
            println!("{}", Value::Array(matches));
        }
        ListFormat::Human => {
            let rows: Vec<Vec<String>> = found
                .iter()
                .map(|m| {
                    vec![
                        format!("{:.2}", m.score),
                        m.key.clone(),
                        m.value.to_string(),
                    ]
                })
                .collect();
            print!("{}", output::table(&rows));
            eprintln!("{} matches", found.len());
        }
    }
    Ok(())
}
