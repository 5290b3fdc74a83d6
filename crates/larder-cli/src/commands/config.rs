//! `export-config`: the effective configuration as TOML, secrets masked.

use larder::CacheConfig;
use larder::url::mask;

use crate::exit::{CliError, CliResult};

/// The configuration as a `larder.toml` document, passwords masked.
pub(crate) fn render(config: &CacheConfig) -> CliResult<String> {
    let mut shown = config.clone();
    shown.url = shown.url.as_deref().map(mask);
    for route in &mut shown.routes {
        route.url = mask(&route.url);
    }
    let mut table = toml::Table::try_from(&shown)
        .map_err(|e| CliError::failed(format!("cannot render the configuration: {e}")))?;
    // The file spells routes as `[[route]]` tables.
    match table.remove("routes") {
        Some(toml::Value::Array(routes)) if !routes.is_empty() => {
            table.insert("route".to_owned(), toml::Value::Array(routes));
        }
        _ => {}
    }
    toml::to_string(&table)
        .map_err(|e| CliError::failed(format!("cannot render the configuration: {e}")))
}

/// `larder export-config`.
pub(crate) fn export(config: &CacheConfig) -> CliResult {
    print!("{}", render(config)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn passwords_are_masked_and_routes_are_route_tables() {
        let mut config = CacheConfig {
            url: Some("redis://app:hunter2@db:6379/0".into()),
            ..CacheConfig::default()
        };
        config.routes.push(larder::RouteConfig::new(
            "session:",
            "redis://:s3cret@sessions:6379/1",
        ));
        let text = render(&config).unwrap();
        assert!(
            !text.contains("hunter2") && !text.contains("s3cret"),
            "{text}"
        );
        assert!(text.contains("[[route]]"), "{text}");
        let mut back = CacheConfig::default();
        back.merge_toml(&text, "exported.toml").unwrap();
        assert_eq!(back.prefix, config.prefix);
        assert_eq!(back.routes.len(), 1);
    }

    #[test]
    fn keys_are_never_exported() {
        let secret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let mut config = CacheConfig::default();
        config
            .merge_env(|name| match name {
                "LARDER_SIGNING_KEYS" => Some(format!("cur:{secret}")),
                "LARDER_ENCRYPTION_KEYS" => Some(format!("enc:hex:{}", "ab".repeat(32))),
                _ => None,
            })
            .unwrap();
        let text = render(&config).unwrap();
        assert!(!text.contains(secret) && !text.contains("abab"), "{text}");
        assert!(
            text.contains("[security]") && text.contains("cur:<redacted>"),
            "{text}"
        );
        assert!(!format!("{config:?}").contains(secret));
    }
}
