//! Per-prefix routing over three kinds of backend at once: memory (the
//! default route), Memcached and Redis, configured as a user would
//! (`[[route]]` in `larder.toml`).

#![cfg(all(feature = "redis", feature = "memcached"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::Duration;

use larder::{Cache, CacheConfig, HealthStatus};
use larder_testkit::memcached::MemcachedServer;
use larder_testkit::redis::RedisServer;

/// A cache straight over `url`, in the same namespace as the router's.
async fn direct(url: &str) -> Cache {
    let config = CacheConfig {
        url: Some(url.to_owned()),
        prefix: "svc".into(),
        ..CacheConfig::default()
    };
    larder::connect(&config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_backends_by_longest_prefix() {
    let redis = RedisServer::start();
    let mut memcached = MemcachedServer::start();
    let toml = format!(
        "url = \"mem://\"\nprefix = \"svc\"\n\
         [resilience]\ntimeout = \"300ms\"\n\
         [[route]]\nname = \"users\"\nprefix = \"user:\"\nurl = \"{}\"\n\
         [[route]]\nname = \"sessions\"\nprefix = \"user:session:\"\nurl = \"{}\"\n",
        memcached.url(),
        redis.url()
    );
    let mut config = CacheConfig::default();
    config.merge_toml(&toml, "larder.toml").unwrap();
    let cache = larder::connect(&config).await.unwrap();

    let tagged = |key: &'static str| {
        let cache = cache.clone();
        async move {
            cache
                .set(key, &key)
                .ttl(Duration::from_secs(60))
                .tags(["t"])
                .await
                .unwrap();
        }
    };
    tagged("user:1").await; // Memcached
    tagged("user:session:1").await; // Redis: the longer prefix wins
    tagged("other").await; // the default route, memory

    // Each key is where its route says, and only there.
    let in_redis = direct(&redis.url()).await;
    let in_memcached = direct(&memcached.url()).await;
    assert_eq!(
        in_redis.get::<String>("user:session:1").await.unwrap(),
        Some("user:session:1".into())
    );
    assert_eq!(in_redis.get::<String>("user:1").await.unwrap(), None);
    assert_eq!(
        in_memcached.get::<String>("user:1").await.unwrap(),
        Some("user:1".into())
    );
    assert_eq!(
        in_memcached.get::<String>("user:session:1").await.unwrap(),
        None
    );
    assert_eq!(in_redis.get::<String>("other").await.unwrap(), None);
    assert!(cache.exists("other").await.unwrap());

    // A tag reaches all three routes.
    cache.invalidate_tag("t").await.unwrap();
    for key in ["user:1", "user:session:1", "other"] {
        assert!(!cache.exists(key).await.unwrap(), "{key} survived its tag");
    }

    // Health names each route.
    let health = cache.health_report().await;
    assert_eq!(health.status, HealthStatus::Healthy, "{health:?}");
    assert_eq!(health.routes.len(), 3, "{health:?}");
    for route in ["route.default", "route.users", "route.sessions"] {
        assert!(
            health.details.iter().any(|(name, _)| name == route),
            "{route} missing from {health:?}"
        );
    }

    // Memcached goes away: its keys miss (and a read-through loads), the
    // other routes keep answering, and health says which route is down.
    tagged("user:2").await;
    tagged("user:session:2").await;
    tagged("other:2").await;
    memcached.stop();
    let loaded: String = cache
        .get_or_load("user:2", || async {
            Ok::<_, larder::Error>("loaded".into())
        })
        .await
        .unwrap();
    assert_eq!(loaded, "loaded");
    assert_eq!(
        cache.get::<String>("user:session:2").await.unwrap(),
        Some("user:session:2".into())
    );
    assert_eq!(
        cache.get::<String>("other:2").await.unwrap(),
        Some("other:2".into())
    );
    cache.invalidate_tag("t").await.unwrap();
    assert!(!cache.exists("user:session:2").await.unwrap());
    assert!(!cache.exists("other:2").await.unwrap());
    let health = cache.health_report().await;
    assert_eq!(
        health.status,
        HealthStatus::Degraded,
        "one route down, the default serving: {health:?}"
    );
    assert!(
        health.reasons.iter().any(|r| r.contains("\"user:\"")),
        "the reason names the route: {health:?}"
    );
    let users = health
        .details
        .iter()
        .find(|(name, _)| name == "route.users")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(users.starts_with("unhealthy"), "{users}");
    let sessions = health
        .details
        .iter()
        .find(|(name, _)| name == "route.sessions")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(sessions.starts_with("healthy"), "{sessions}");

    // Back (empty: memcached keeps nothing across a restart): the route
    // replays the invalidation it missed, then serves again.
    memcached.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cache.health().await {
        assert!(
            std::time::Instant::now() < deadline,
            "memcached never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    cache.set("user:3", &3).await.unwrap();
    assert_eq!(cache.get::<u32>("user:3").await.unwrap(), Some(3));
}
