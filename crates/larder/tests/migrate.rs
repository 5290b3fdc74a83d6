//! `larder::migrate`: moving a cache between backends keeps values, TTLs
//! (within a second) and tags.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use larder::migrate::{MigrateOptions, migrate};
use larder::{Backend, Cache, KeyTtl};

/// No TTL jitter: the tests compare TTLs before and after.
fn cache(backend: Arc<dyn Backend>) -> Cache {
    Cache::builder()
        .backend_arc(backend)
        .prefix("svc")
        .ttl_jitter(0.0)
        .build()
        .unwrap()
}

/// Write a known set of entries through `source`.
async fn fill(source: &Cache) {
    for i in 0..300u32 {
        source
            .set(&format!("user:{i}"), &i)
            .ttl(Duration::from_secs(600 + u64::from(i)))
            .tags([format!("user:{i}"), "users".to_owned()])
            .await
            .unwrap();
    }
    source.set("config", &"on").no_expiry().await.unwrap();
    source.set_raw("page:/", b"<html>".to_vec()).await.unwrap();
    source
        .set("short", &1)
        .ttl(Duration::from_millis(300))
        .await
        .unwrap();
}

/// Check that `target` holds what `fill` wrote (less the expired entry),
/// each TTL within a second of what the source has left.
async fn check(target: &Cache, source: &Cache) {
    for i in [0u32, 150, 299] {
        let key = format!("user:{i}");
        assert_eq!(target.get::<u32>(&key).await.unwrap(), Some(i));
        let (KeyTtl::Expires(left), KeyTtl::Expires(there)) = (
            target.ttl(&key).await.unwrap(),
            source.ttl(&key).await.unwrap(),
        ) else {
            panic!("{key}: no TTL on one side");
        };
        let apart = left.abs_diff(there);
        assert!(
            apart <= Duration::from_secs(1),
            "{key}: {left:?} left on the target, {there:?} on the source"
        );
    }
    assert_eq!(target.ttl("config").await.unwrap(), KeyTtl::Persistent);
    assert_eq!(
        target.get_raw("page:/").await.unwrap().as_deref(),
        Some(&b"<html>"[..])
    );
    assert!(!target.exists("short").await.unwrap());
    assert_eq!(target.invalidate_tag("user:7").await.unwrap(), 1);
    assert_eq!(target.invalidate_tag("users").await.unwrap(), 299);
}

async fn migrate_and_check(from: Arc<dyn Backend>, to: Arc<dyn Backend>) {
    let source = cache(from.clone());
    fill(&source).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut calls = 0;
    let summary = migrate(
        &*from,
        &*to,
        &MigrateOptions::namespace("svc", "v1").batch(100),
        |_| calls += 1,
    )
    .await
    .unwrap();
    let p = summary.progress;
    assert_eq!(p.copied, 302, "{summary}");
    assert_eq!(p.failed, 0, "{summary}");
    assert!(p.total >= 302 && p.skipped_expired <= 1, "{summary}");
    assert!(calls >= 3, "progress after each batch: {calls}");
    check(&cache(to.clone()), &source).await;

    // Idempotent: running it again copies again, and loses nothing.
    let again = migrate(
        &*from,
        &*to,
        &MigrateOptions::namespace("svc", "v1"),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(again.progress.copied, 302);
    assert_eq!(
        cache(to).get::<u32>("user:299").await.unwrap(),
        Some(299),
        "invalidated on the target above, then copied again"
    );
}

#[tokio::test]
async fn memory_to_memory() {
    let from: Arc<dyn Backend> = larder::open_backend("mem://").await.unwrap();
    let to: Arc<dyn Backend> = larder::open_backend("mem://").await.unwrap();
    migrate_and_check(from, to).await;
}

#[tokio::test]
async fn a_pattern_copies_part_of_a_namespace() {
    let from = larder::open_backend("mem://").await.unwrap();
    let to = larder::open_backend("mem://").await.unwrap();
    let source = cache(from.clone());
    fill(&source).await;
    let summary = migrate(
        &*from,
        &*to,
        &MigrateOptions::pattern("svc:v1:user:1*"),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        summary.progress.copied, 111,
        "user:1, user:10-19, user:100-199"
    );
    let target = cache(to);
    assert!(target.exists("user:150").await.unwrap());
    assert!(!target.exists("user:2").await.unwrap());
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn memory_to_redis_and_back() {
    let server = larder_testkit::redis::RedisServer::start();
    let redis = larder::open_backend(&server.url()).await.unwrap();
    migrate_and_check(larder::open_backend("mem://").await.unwrap(), redis.clone()).await;
    let back = larder::open_backend("mem://").await.unwrap();
    let summary = migrate(
        &*redis,
        &*back,
        &MigrateOptions::namespace("svc", "v1"),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(summary.progress.failed, 0, "{summary}");
    assert!(cache(back).exists("config").await.unwrap());
}

/// A file database in a fresh temporary directory (kept alive by the
/// returned guard).
#[cfg(feature = "sqlite")]
async fn sqlite() -> (Arc<dyn Backend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/cache.db", dir.path().display());
    (larder::open_backend(&url).await.unwrap(), dir)
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_to_sqlite() {
    let (to, _dir) = sqlite().await;
    migrate_and_check(larder::open_backend("mem://").await.unwrap(), to).await;
}

#[cfg(all(feature = "sqlite", feature = "redis"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_redis() {
    let server = larder_testkit::redis::RedisServer::start();
    let (from, _dir) = sqlite().await;
    let to = larder::open_backend(&server.url()).await.unwrap();
    migrate_and_check(from, to).await;
}

#[cfg(all(feature = "sled", feature = "sqlite"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_to_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sled://{}/sled", dir.path().display());
    let from = larder::open_backend(&url).await.unwrap();
    let (to, _db) = sqlite().await;
    migrate_and_check(from, to).await;
}
