//! The near cache of `mem://` caches, through the facade: on by default,
//! off with `?near=0`, coherent with the cache's own writes, never a value
//! of the wrong type.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    total: u64,
}

#[tokio::test]
async fn mem_caches_have_a_near_cache_unless_told_not_to() {
    let cache = larder::open("mem://").await.unwrap();
    assert!(cache.stats().near.is_some());
    let off = larder::open("mem://?near=0").await.unwrap();
    assert!(off.stats().near.is_none());
    let sized = larder::open("mem://?max_entries=100&near=50&near_ttl=5s")
        .await
        .unwrap();
    assert!(sized.stats().near.is_some());
    let err = larder::open("mem://?near=lots").await.unwrap_err();
    assert!(err.to_string().contains("near"), "{err}");
}

#[tokio::test]
async fn a_mem_hit_is_the_decoded_value_and_writes_drop_it() {
    let cache = larder::open("mem://").await.unwrap();
    let ada = User {
        id: 1,
        name: "Ada".into(),
    };
    cache.set("u", &ada).tags(["users"]).await.unwrap();
    let first = cache.get_shared::<User>("u").await.unwrap().unwrap();
    let second = cache.get_shared::<User>("u").await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&first, &second), "served decoded from the L1");
    assert_eq!(cache.get::<User>("u").await.unwrap(), Some(ada.clone()));
    let near = cache.stats().near.unwrap();
    assert_eq!((near.l1_hits, near.l2_hits), (2, 1));

    // Every change through the cache is seen at once.
    let grace = User {
        id: 1,
        name: "Grace".into(),
    };
    cache.set("u", &grace).tags(["users"]).await.unwrap();
    assert_eq!(cache.get::<User>("u").await.unwrap(), Some(grace.clone()));
    cache.invalidate_tag("users").await.unwrap();
    assert_eq!(cache.get::<User>("u").await.unwrap(), None);
    cache.set("u", &ada).await.unwrap();
    assert!(cache.get::<User>("u").await.unwrap().is_some());
    cache.invalidate_pattern("u*").await.unwrap();
    assert_eq!(cache.get::<User>("u").await.unwrap(), None);
    cache.set("u", &ada).await.unwrap();
    assert!(cache.get::<User>("u").await.unwrap().is_some());
    cache.clear().await.unwrap();
    assert_eq!(cache.get::<User>("u").await.unwrap(), None);
    cache.set("u", &ada).await.unwrap();
    assert!(cache.get::<User>("u").await.unwrap().is_some());
    cache.delete("u").await.unwrap();
    assert_eq!(cache.get::<User>("u").await.unwrap(), None);
    cache.incr("n", 1).await.unwrap();
    assert_eq!(cache.get::<i64>("n").await.unwrap(), Some(1));
    cache.incr("n", 1).await.unwrap();
    assert_eq!(cache.get::<i64>("n").await.unwrap(), Some(2));

    // Another type: never the User.
    cache.set("u", &ada).await.unwrap();
    assert!(cache.get::<User>("u").await.unwrap().is_some());
    assert_eq!(cache.get::<Order>("u").await.unwrap(), None);
    assert_eq!(cache.get_decoded::<Order>("u").await.unwrap(), None);
    assert_eq!(cache.get::<User>("u").await.unwrap(), Some(ada));
}

#[tokio::test]
async fn entries_never_outlive_the_backend_ttl() {
    let cache = larder::open("mem://").await.unwrap();
    cache
        .set("short", &5u32)
        .ttl(Duration::from_millis(80))
        .await
        .unwrap();
    assert_eq!(cache.get::<u32>("short").await.unwrap(), Some(5));
    assert_eq!(cache.get::<u32>("short").await.unwrap(), Some(5));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(cache.get::<u32>("short").await.unwrap(), None);
}
