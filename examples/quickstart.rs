//! larder in one page, on the embedded memory backend (no server needed):
//!
//!     cargo run --example quickstart

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
    plan: String,
    active: bool,
}

async fn load_user_from_db(id: u64) -> Result<User, larder::Error> {
    // Stands in for a slow database query.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(User {
        id,
        name: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
        plan: "pro".into(),
        active: true,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `mem://` is the embedded backend; swap the URL for redis://… later
    // without touching the rest.
    let cache = larder::open("mem://?max_entries=10000").await?;

    // 1. Typed set / get.
    let ada = load_user_from_db(1).await?;
    cache
        .set("user:1", &ada)
        .ttl(Duration::from_secs(300))
        .tags(["user:1", "users"])
        .await?;
    let cached: Option<User> = cache.get("user:1").await?;
    assert_eq!(cached.as_ref(), Some(&ada));
    println!("1. get user:1        -> {:?}", cached.map(|u| u.name));

    // 2. Tag invalidation: everything tagged `users` goes at once.
    cache.set("user:2", &"Grace").tags(["users"]).await?;
    cache.set("settings", &"dark-mode").await?;
    let removed = cache.invalidate_tag("users").await?;
    println!("2. invalidate `users` -> {removed} keys removed");
    assert_eq!(removed, 2);
    assert!(cache.exists("settings").await?);

    // 3. Pattern invalidation with a glob.
    for page in 1..=3 {
        cache.set(&format!("report:2026:{page}"), &page).await?;
    }
    cache.set("report-index", &"kept").await?;
    let removed = cache.invalidate_pattern("report:2026:*").await?;
    println!("3. invalidate `report:2026:*` -> {removed} keys removed");
    assert_eq!(removed, 3);

    // 4. get_or_load: 100 concurrent callers on a cold key, one load.
    let loads = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for _ in 0..100 {
        let cache = cache.clone();
        let loads = loads.clone();
        callers.push(tokio::spawn(async move {
            cache
                .get_or_load("user:42", || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    load_user_from_db(42).await
                })
                .await
        }));
    }
    for caller in callers {
        let user = caller.await??;
        assert_eq!(user.id, 42);
    }
    println!(
        "4. 100 concurrent get_or_load -> {} load",
        loads.load(Ordering::SeqCst)
    );
    // Later callers are served from the cache: still one load.
    for _ in 0..100 {
        let user = cache
            .get_or_load("user:42", || load_user_from_db(42))
            .await?;
        assert_eq!(user.id, 42);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    // 5. What happened, in numbers.
    let stats = cache.stats();
    println!(
        "5. stats: hits={} misses={} hit_rate={:.2} sets={} deletes={} evictions={} errors={}",
        stats.hits,
        stats.misses,
        stats.hit_rate,
        stats.sets,
        stats.deletes,
        stats.evictions.unwrap_or(0),
        stats.errors
    );
    Ok(())
}
