//! From the global options to a configuration and an open cache.

use std::time::Duration;

use larder::url::BackendUrl;
use larder::{Cache, CacheConfig, Fallback};

use crate::cli::TargetArgs;
use crate::exit::{CliError, CliResult};

/// How long opening a backend may take before it counts as unreachable.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// An open cache and the host it talks to (for messages).
pub(crate) struct Target {
    /// The cache.
    pub(crate) cache: Cache,
    /// `redis at 127.0.0.1:6379`, `sqlite at cache.db`: what error messages name.
    pub(crate) host: String,
}

impl Target {
    /// A library error from this target, as a command error.
    pub(crate) fn error(&self, context: &str, error: larder::Error) -> CliError {
        CliError::from_larder(&self.host, context, error)
    }
}

/// The effective configuration: the file (`--config`, `LARDER_CONFIG` or
/// `./larder.toml`), then the environment, then the command line.
pub(crate) fn config(args: &TargetArgs) -> CliResult<CacheConfig> {
    let loaded = match &args.config {
        Some(file) => CacheConfig::from_sources(Some(file), |name| std::env::var(name).ok()),
        None => CacheConfig::load(),
    };
    let mut config = loaded.map_err(|e| CliError::usage(e.to_string()))?;
    if let Some(url) = &args.url {
        config.url = Some(url.clone());
    }
    if let Some(prefix) = &args.prefix {
        config.prefix.clone_from(prefix);
    }
    if let Some(namespace) = &args.namespace {
        match namespace.split_once(':') {
            Some((prefix, version)) => {
                config.prefix = prefix.to_owned();
                config.version = version.to_owned();
            }
            None => config.prefix.clone_from(namespace),
        }
    }
    config
        .validate()
        .map_err(|e| CliError::usage(e.to_string()))?;
    Ok(config)
}

/// The cache the global options name.
pub(crate) async fn open(args: &TargetArgs) -> CliResult<Target> {
    open_config(&config(args)?).await
}

/// The cache `config` describes.
pub(crate) async fn open_config(config: &CacheConfig) -> CliResult<Target> {
    // A tool reports failures; it never hides them behind a fallback.
    let mut config = config.clone();
    config.resilience.fallback = Fallback::Closed;
    let config = &config;
    let url = config.url.as_deref().unwrap_or(larder::DEFAULT_URL);
    let host = host_of(url);
    match tokio::time::timeout(OPEN_TIMEOUT, larder::connect(config)).await {
        Ok(Ok(cache)) => Ok(Target { cache, host }),
        Ok(Err(e)) => Err(CliError::from_larder(&host, "opening the cache", e)),
        Err(_) => Err(CliError::unreachable(
            &host,
            format!("no connection after {OPEN_TIMEOUT:?}"),
        )),
    }
}

/// The cache at `url` with the namespace and settings of `config`.
pub(crate) async fn open_url(config: &CacheConfig, url: &str) -> CliResult<Target> {
    let config = CacheConfig {
        url: Some(url.to_owned()),
        routes: Vec::new(),
        ..config.clone()
    };
    open_config(&config).await
}

/// What messages call the backend at `url`: its kind and hosts (or file),
/// never its password.
pub(crate) fn host_of(url: &str) -> String {
    match BackendUrl::parse(url) {
        Ok(parsed) if !parsed.hosts.is_empty() => {
            format!("{} at {}", parsed.scheme, parsed.hosts.join(","))
        }
        Ok(parsed) if !parsed.path.is_empty() => format!("{} at {}", parsed.scheme, parsed.path),
        Ok(parsed) => format!("the {} backend", parsed.scheme),
        Err(_) => larder::url::mask(url),
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn hosts_are_named_without_passwords() {
        assert_eq!(
            host_of("redis://u:secret@127.0.0.1:6390/0"),
            "redis at 127.0.0.1:6390"
        );
        assert_eq!(host_of("sqlite://cache.db"), "sqlite at cache.db");
        assert_eq!(host_of("mem://"), "the mem backend");
    }
}
