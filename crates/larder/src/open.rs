//! From a URL or a configuration to a [`Cache`].

use std::sync::Arc;

use larder_core::url::BackendUrl;
use larder_core::{Backend, Cache, CacheConfig, Error, Result, Router};

/// Every scheme larder knows, with the cargo feature that provides it.
const SCHEMES: &[(&str, &str)] = &[
    ("mem", "memory"),
    ("memory", "memory"),
    ("redis", "redis"),
    ("rediss", "redis"),
    ("redis+sentinel", "redis"),
    ("redis+cluster", "redis"),
    ("rediss+sentinel", "redis"),
    ("rediss+cluster", "redis"),
    ("memcached", "memcached"),
    ("sqlite", "sqlite"),
    ("sled", "sled"),
];

/// The URL used when none is configured.
pub const DEFAULT_URL: &str = "mem://";

/// Open the backend `url` names.
///
/// An unknown scheme is an error listing the known ones; a known scheme
/// whose backend is not compiled in is an error naming the cargo feature to
/// enable.
pub async fn open_backend(url: &str) -> Result<Arc<dyn Backend>> {
    open_backend_with(url, &CacheConfig::default()).await
}

/// [`open_backend`], with pool sizes and similar defaults from `config`.
async fn open_backend_with(url: &str, config: &CacheConfig) -> Result<Arc<dyn Backend>> {
    // Only the Redis backend reads `config` (its pool size) so far.
    #[cfg(not(feature = "redis"))]
    let _ = config;
    // The near cache's parameters are the cache's, not the backend's.
    let (url, _) = larder_core::near::from_url(url, None)?;
    let url = url.as_str();
    let parsed = BackendUrl::parse(url)?;
    let Some((_, feature)) = SCHEMES.iter().find(|(s, _)| *s == parsed.scheme) else {
        let known: Vec<String> = SCHEMES.iter().map(|(s, _)| format!("{s}://")).collect();
        return Err(Error::config(
            "url",
            format!("URL {}", parsed.masked()),
            format!("a URL scheme larder knows: {}", known.join(", ")),
            format!("{}://", parsed.scheme),
        ));
    };
    match *feature {
        #[cfg(feature = "memory")]
        "memory" => {
            let memory = larder_memory::MemoryConfig::from_url(&parsed)?;
            Ok(Arc::new(memory.build()))
        }
        #[cfg(feature = "redis")]
        "redis" => {
            let pool = usize::try_from(config.max_connections).unwrap_or(10);
            let redis = larder_redis::RedisConfig::from_url(&parsed, pool)?;
            Ok(Arc::new(larder_redis::RedisBackend::connect(redis).await?))
        }
        #[cfg(feature = "memcached")]
        "memcached" => {
            let memcached = larder_memcached::MemcachedConfig::from_url(&parsed)?;
            Ok(Arc::new(
                larder_memcached::MemcachedBackend::connect(memcached).await?,
            ))
        }
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let sqlite = larder_sqlite::SqliteConfig::from_url(&parsed)?;
            Ok(Arc::new(
                larder_sqlite::SqliteBackend::connect(sqlite).await?,
            ))
        }
        #[cfg(feature = "sled")]
        "sled" => {
            let sled = larder_sled::SledConfig::from_url(&parsed)?;
            // Opening reads the directory: off the async workers.
            let backend = tokio::task::spawn_blocking(move || sled.open())
                .await
                .map_err(|e| Error::Backend {
                    backend: "sled",
                    message: format!("opening the directory panicked: {e}"),
                })??;
            Ok(Arc::new(backend))
        }
        feature => Err(Error::config(
            "url",
            format!("URL {}", parsed.masked()),
            format!(
                "a backend compiled into this build: enable the cargo feature `{feature}` of larder \
                 (larder = {{ version = \"…\", features = [\"{feature}\"] }})"
            ),
            format!("{}://", parsed.scheme),
        )),
    }
}

/// A cache over the backend `url` names, with default settings (prefix
/// `larder`, version `v1`, default TTL 300 s).
pub async fn open(url: &str) -> Result<Cache> {
    let config = CacheConfig {
        url: Some(url.to_owned()),
        ..CacheConfig::default()
    };
    connect(&config).await
}

/// A cache built from `config`: its URL (or `mem://` when it has none),
/// namespace, TTLs and codec. With routes (`[[route]]`, `LARDER_ROUTES`),
/// each route's backend is opened too and keys are sent by prefix through a
/// [`Router`], the URL being the default route (named `default`).
pub async fn connect(config: &CacheConfig) -> Result<Cache> {
    config.validate()?;
    let url = config.url.as_deref().unwrap_or(DEFAULT_URL);
    // `?near=10000`: the near cache's settings ride on the URL.
    let (url, near) = larder_core::near::from_url(url, config.near)?;
    let url = url.as_str();
    let builder = Cache::builder().config(CacheConfig {
        near,
        ..config.clone()
    });
    if config.routes.is_empty() {
        let backend = open_backend_with(url, config).await?;
        let builder = match local_fallback(config)? {
            Some(local) => builder.local_fallback(local),
            None => builder,
        };
        return builder.backend_arc(backend).build();
    }
    // Each route gets its own resilience layer, so that one route's outage
    // opens only its circuit.
    let wrap = |backend| -> Result<Arc<dyn Backend>> {
        Ok(larder_core::resilient::wrap(
            backend,
            &config.resilience,
            local_fallback(config)?,
        ))
    };
    let mut router =
        Router::builder().default_route("default", wrap(open_backend_with(url, config).await?)?);
    for route in &config.routes {
        let backend = open_backend_with(&route.url, config)
            .await
            .map_err(|e| route_error(&route.name, e))?;
        router = router.route(route.name.clone(), route.prefix.clone(), wrap(backend)?);
    }
    builder.backend_arc(Arc::new(router.build()?)).build()
}

/// The in-process cache a shared backend falls back on while it is out, when
/// `resilience.local_fallback_entries` asks for one.
fn local_fallback(config: &CacheConfig) -> Result<Option<Arc<dyn Backend>>> {
    let entries = config.resilience.local_fallback_entries;
    if entries == 0 {
        return Ok(None);
    }
    #[cfg(feature = "memory")]
    {
        let memory = larder_memory::MemoryConfig::default().max_entries(entries);
        Ok(Some(Arc::new(memory.build())))
    }
    #[cfg(not(feature = "memory"))]
    Err(Error::config(
        "resilience.local_fallback_entries",
        "the configuration",
        "0, or a build with the cargo feature `memory` of larder (the local fallback is a \
         memory cache)",
        entries.to_string(),
    ))
}

/// An error opening a route's backend, saying which route.
fn route_error(route: &str, error: Error) -> Error {
    Error::Routes {
        operation: "open",
        failures: vec![larder_core::RouteFailure::new(route, error)],
        done: None,
    }
}

/// A cache configured by `larder.toml` and the `LARDER_*` environment (see
/// [`CacheConfig::load`]).
pub async fn from_env() -> Result<Cache> {
    connect(&CacheConfig::load()?).await
}
