//! From URLs and configuration to a cache, and the errors on the way.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::time::Duration;

use larder::{CacheConfig, Error};

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[tokio::test]
async fn mem_url_opens_a_bounded_memory_cache() {
    let cache = larder::open("mem://?max_entries=5").await.unwrap();
    assert_eq!(cache.backend().kind(), "memory");
    for i in 0..50 {
        cache.set(&format!("k{i}"), &i).await.unwrap();
    }
    assert_eq!(cache.scan("*", 100).await.unwrap().len(), 5);
    assert!(cache.stats().evictions.unwrap() >= 45);
}

#[tokio::test]
async fn unknown_scheme_lists_the_known_ones() {
    let err = larder::open("mongodb://localhost").await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("mongodb://"), "{msg}");
    assert!(msg.contains("redis://") && msg.contains("mem://"), "{msg}");
}

/// Run by `cargo xtask test` with the memory feature alone too, where every
/// other scheme is compiled out.
#[tokio::test]
async fn scheme_without_its_feature_names_the_feature() {
    #[allow(unused_mut)] // nothing is compiled out under --all-features
    let mut compiled_out: Vec<(&str, &str)> = Vec::new();
    #[cfg(not(feature = "redis"))]
    compiled_out.push(("redis://user:hunter2@localhost:6379/0", "redis"));
    #[cfg(not(feature = "memcached"))]
    compiled_out.push(("memcached://user:hunter2@localhost:11211", "memcached"));
    #[cfg(not(feature = "sqlite"))]
    compiled_out.push(("sqlite://cache.db", "sqlite"));
    #[cfg(not(feature = "sled"))]
    compiled_out.push(("sled://cache-dir", "sled"));
    for (url, feature) in compiled_out {
        let err = larder::open(url).await.unwrap_err().to_string();
        assert!(
            err.contains(&format!("feature `{feature}`")),
            "{url}: {err}"
        );
        assert!(!err.contains("hunter2"), "password leaked: {err}");
    }
}

#[tokio::test]
async fn not_a_url_says_what_a_url_looks_like() {
    let err = larder::open("localhost:6379")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a URL such as mem://") && err.contains("localhost:6379"),
        "{err}"
    );
    let err = larder::open("mem://?max_entries=many")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_entries") && err.contains("many"), "{err}");
}

#[tokio::test]
async fn bad_default_ttl_in_the_environment_is_a_clear_error() {
    let err =
        CacheConfig::from_sources(None, env(&[("LARDER_DEFAULT_TTL", "ten minutes")])).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("default_ttl"), "{msg}");
    assert!(msg.contains("LARDER_DEFAULT_TTL"), "{msg}");
    assert!(msg.contains("ten minutes"), "{msg}");
    assert!(msg.contains("5m") && msg.contains("1h30m"), "{msg}");
}

#[tokio::test]
async fn config_from_file_and_env_reaches_the_cache() {
    let dir = std::env::temp_dir().join(format!("larder-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("larder.toml");
    std::fs::write(
        &file,
        "url = \"mem://?max_entries=100\"\nprefix = \"svc\"\ndefault_ttl = \"5m\"\n",
    )
    .unwrap();
    let config = CacheConfig::from_sources(
        Some(&file),
        env(&[("LARDER_VERSION", "v7"), ("LARDER_TTL_SHORT", "15")]),
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let cache = larder::connect(&config).await.unwrap();
    assert_eq!(cache.stored_key("user:1").unwrap(), "svc:v7:user:1");
    assert_eq!(cache.config().default_ttl, Duration::from_secs(300));
    assert_eq!(cache.config().ttl_short, Duration::from_secs(15));
}

#[tokio::test]
async fn over_long_key_is_a_clear_error_and_stores_nothing() {
    let cache = larder::open("mem://").await.unwrap();
    let key = "k".repeat(10_000);
    let err = cache.set(&key, &1).await.unwrap_err();
    assert!(matches!(err, Error::InvalidKey { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("10000 bytes") && msg.contains("8192"), "{msg}");
    assert!(msg.contains("max_key_length"), "{msg}");
    assert!(msg.len() < 400, "the key itself is shortened: {msg}");
    assert!(cache.scan("*", 10).await.unwrap().is_empty());
    assert!(matches!(
        cache.get::<i32>(&key).await,
        Err(Error::InvalidKey { .. })
    ));
}

#[tokio::test]
async fn control_characters_in_keys_are_rejected() {
    let cache = larder::open("mem://").await.unwrap();
    let err = cache.set("user:\n1", &1).await.unwrap_err().to_string();
    assert!(
        err.contains("control character") && err.contains("KeyBuilder"),
        "{err}"
    );
}
