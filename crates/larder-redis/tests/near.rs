//! The near cache over Redis, against real servers: two caches with their
//! own connections (and two OS processes), where A's L1 must never serve a
//! value B replaced or invalidated once 50 ms have passed; the subscriber
//! killed while B writes; Sentinel failover; Cluster; type safety; and the
//! invalidation lag over 1,000 writes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use larder_core::{Cache, NearConfig};
use larder_redis::RedisBackend;
use larder_testkit::bare_builder;
use larder_testkit::redis::{RedisCluster, RedisSentinel, RedisServer};
use serde::{Deserialize, Serialize};

/// The bound the acceptance criteria give: A's next read this long after B's
/// write returned never returns the replaced value.
const BOUND: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
    active: bool,
    score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    order_id: u64,
    total_cents: u64,
}

fn user(id: u64, name: &str) -> User {
    User {
        id,
        name: name.into(),
        email: format!("{name}@example.com"),
        active: true,
        score: 1.5,
    }
}

/// A cache with its own connections; `near`: with a near cache.
async fn cache(url: &str, near: bool) -> Cache {
    let backend = RedisBackend::open(url, 2).await.unwrap();
    let mut builder = bare_builder().backend(backend).prefix("svc");
    if near {
        builder = builder.near(NearConfig {
            max_entries: 1000,
            max_bytes: 1 << 20,
            ttl: Duration::from_secs(60),
        });
    }
    builder.build().unwrap()
}

/// Wait until A's near cache serves (its subscriber is connected).
async fn serving(a: &Cache) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !a.stats().near.unwrap().serving {
        assert!(
            Instant::now() < deadline,
            "the near cache never started serving"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn l1_hits(a: &Cache) -> u64 {
    a.stats().near.unwrap().l1_hits
}

/// A reads `k` until a read is an L1 hit. (A fill is refused when an
/// invalidation, such as the message of the write that stored `k`, arrives
/// while it reads the backend; the next read fills.)
///
/// Right after another cache's write, A may still serve the value before
/// it for a moment (the message is on its way): only past `BOUND` is that
/// a failure.
async fn fill(a: &Cache, k: &str, expect: &User) {
    let started = Instant::now();
    loop {
        let before = l1_hits(a);
        let found = a.get::<User>(k).await.unwrap();
        if found.as_ref() == Some(expect) && l1_hits(a) == before + 1 {
            return;
        }
        assert!(
            found.as_ref() == Some(expect) || started.elapsed() < BOUND,
            "A read {found:?}, not {expect:?}, {:?} after the write",
            started.elapsed()
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the L1 never served {k}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// After B's change returned and `BOUND` passed, A's read is `expect`.
async fn after_bound(a: &Cache, k: &str, expect: Option<&User>, what: &str) {
    tokio::time::sleep(BOUND).await;
    assert_eq!(
        a.get::<User>(k).await.unwrap().as_ref(),
        expect,
        "A's read {BOUND:?} after B's {what}"
    );
}

/// B changes `k` every way larder can; after each, A's next read within
/// the bound does not return the replaced value.
async fn every_change(a: &Cache, b: &Cache) {
    serving(a).await;
    let k = "user:1";
    let (v1, v2) = (user(1, "ada"), user(1, "grace"));
    b.set(k, &v1).tags(["users"]).await.unwrap();
    fill(a, k, &v1).await;

    b.set(k, &v2).tags(["users"]).await.unwrap();
    after_bound(a, k, Some(&v2), "set").await;
    fill(a, k, &v2).await;

    b.delete(k).await.unwrap();
    after_bound(a, k, None, "delete").await;

    b.set(k, &v1).tags(["users"]).await.unwrap();
    fill(a, k, &v1).await;
    b.invalidate_tag("users").await.unwrap();
    after_bound(a, k, None, "tag invalidation").await;

    b.set(k, &v1).tags(["users"]).await.unwrap();
    fill(a, k, &v1).await;
    b.invalidate_pattern("user:*").await.unwrap();
    after_bound(a, k, None, "pattern invalidation").await;

    b.set(k, &v1).await.unwrap();
    fill(a, k, &v1).await;
    b.clear().await.unwrap();
    after_bound(a, k, None, "clear").await;

    // A's own writes drop its L1 at once, without waiting for a message.
    b.set(k, &v1).await.unwrap();
    fill(a, k, &v1).await;
    a.set(k, &v2).await.unwrap();
    assert_eq!(a.get::<User>(k).await.unwrap(), Some(v2));
    let near = a.stats().near.unwrap();
    assert!(near.invalidations_received >= 5, "{near:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_two_caches_never_serve_a_replaced_value() {
    let server = RedisServer::start();
    let a = cache(&server.url(), true).await;
    let b = cache(&server.url(), false).await;
    every_change(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_two_caches_never_serve_a_replaced_value() {
    let cluster = RedisCluster::start();
    let a = cache(&cluster.url(), true).await;
    let b = cache(&cluster.url(), false).await;
    every_change(&a, &b).await;
    // Keys on every shard: PUBLISH reaches every node.
    serving(&a).await;
    for i in 0..30 {
        b.set(&format!("spread:{i}"), &user(i, "a")).await.unwrap();
        let _ = a.get::<User>(&format!("spread:{i}")).await.unwrap();
    }
    for i in 0..30 {
        b.set(&format!("spread:{i}"), &user(i, "b")).await.unwrap();
    }
    tokio::time::sleep(BOUND).await;
    for i in 0..30 {
        assert_eq!(
            a.get::<User>(&format!("spread:{i}")).await.unwrap(),
            Some(user(i, "b")),
            "spread:{i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_after_failover_never_serves_a_replaced_value() {
    let mut sentinel = RedisSentinel::start();
    let url = format!("{}?command_timeout=1s", sentinel.url());
    let a = cache(&url, true).await;
    let b = cache(&url, false).await;
    serving(&a).await;
    let k = "user:1";
    b.set(k, &user(1, "before")).no_expiry().await.unwrap();
    fill(&a, k, &user(1, "before")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sentinel.replica().cli(&["exists", "svc:v1:user:1"]) != "1" {
        assert!(Instant::now() < deadline, "replica never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sentinel.stop_master();
    sentinel.wait_for_failover(Duration::from_secs(30));
    // B writes on the new master as soon as it can.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = b.set(k, &user(1, "after")).no_expiry().await {
        assert!(Instant::now() < deadline, "no write after failover: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A never returns the value from before the failover: its subscriber
    // lost its connection, so its L1 was flushed and bypassed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match a.get::<User>(k).await {
            Ok(found) => {
                assert_ne!(found, Some(user(1, "before")), "a replaced value");
                if found == Some(user(1, "after")) {
                    break;
                }
            }
            Err(e) => assert!(Instant::now() < deadline, "A never read again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The subscriber follows the new master; the L1 serves again.
    serving(&a).await;
    every_change(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscriber_flushes_and_the_l1_comes_back() {
    let server = RedisServer::start();
    let a = cache(&server.url(), true).await;
    let b = cache(&server.url(), false).await;
    serving(&a).await;
    let k = "user:1";
    for round in 0..5u64 {
        let old = user(round, "old");
        let new = user(round, "new");
        b.set(k, &old).await.unwrap();
        fill(&a, k, &old).await;
        // Kill A's subscriber, and write while it is down.
        let killed = server.cli(&["client", "kill", "type", "pubsub"]);
        assert_ne!(killed.trim(), "0", "no subscriber connection to kill");
        b.set(k, &new).await.unwrap();
        after_bound(&a, k, Some(&new), "set while the subscriber was killed").await;
        // It reconnects, subscribes again, and the L1 serves again.
        serving(&a).await;
        fill(&a, k, &new).await;
    }
    let near = a.stats().near.unwrap();
    assert!(near.disconnect_flushes >= 5, "{near:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_stored_as_another_type_is_never_returned_as_it() {
    let server = RedisServer::start();
    let a = cache(&server.url(), true).await;
    serving(&a).await;
    a.set("k", &user(1, "ada")).await.unwrap();
    fill(&a, "k", &user(1, "ada")).await;
    // Through the L1: the User it holds is not an Order.
    match a.get::<Order>("k").await {
        Ok(None) | Err(_) => {}
        Ok(Some(order)) => panic!("a User came back as {order:?}"),
    }
    match a.get_shared::<Order>("k").await {
        Ok(None) | Err(_) => {}
        Ok(Some(order)) => panic!("a User came back as {order:?}"),
    }
    // And the User is still served from the L1.
    fill(&a, "k", &user(1, "ada")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_through_and_shared_reads_use_the_l1() {
    let server = RedisServer::start();
    let a = cache(&server.url(), true).await;
    let b = cache(&server.url(), false).await;
    serving(&a).await;
    let loaded: User = a
        .get_or_load("rt", || async { Ok::<_, larder_core::Error>(user(7, "x")) })
        .await
        .unwrap();
    assert_eq!(loaded, user(7, "x"));
    // The store's own message comes back on the channel and drops the
    // entry once more: let it arrive, then wait until the L1 serves it.
    tokio::time::sleep(BOUND).await;
    fill(&a, "rt", &user(7, "x")).await;
    let first = a.get_shared::<User>("rt").await.unwrap().unwrap();
    let second = a.get_shared::<User>("rt").await.unwrap().unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &second),
        "an L1 hit is the same value"
    );
    let before = l1_hits(&a);
    let again: User = a
        .get_or_load("rt", || async {
            Ok::<_, larder_core::Error>(user(0, "no"))
        })
        .await
        .unwrap();
    assert_eq!(again, user(7, "x"));
    assert_eq!(l1_hits(&a), before + 1, "get_or_load hit the L1");
    b.set("rt", &user(8, "y")).await.unwrap();
    tokio::time::sleep(BOUND).await;
    let after: User = a
        .get_or_load("rt", || async {
            Ok::<_, larder_core::Error>(user(0, "no"))
        })
        .await
        .unwrap();
    assert_eq!(after, user(8, "y"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_lag_over_1000_writes() {
    let server = RedisServer::start();
    let a = cache(&server.url(), true).await;
    let b = cache(&server.url(), false).await;
    serving(&a).await;
    let mut seen = Vec::with_capacity(1000);
    for i in 0..1000u64 {
        b.set("lag", &i).await.unwrap();
        // End to end: from B's write returning to A reading it.
        let started = Instant::now();
        loop {
            if a.get::<u64>("lag").await.unwrap() == Some(i) {
                break;
            }
            assert!(
                started.elapsed() < BOUND,
                "write {i} not seen within {BOUND:?}"
            );
            tokio::task::yield_now().await;
        }
        seen.push(started.elapsed());
    }
    seen.sort();
    let near = a.stats().near.unwrap();
    println!(
        "near invalidation lag over 1000 writes: sent-to-applied p50 {:?} p99 {:?}; \
         write-returned-to-A-reads-new p50 {:?} p99 {:?} max {:?}",
        near.lag_p50.unwrap(),
        near.lag_p99.unwrap(),
        seen[500],
        seen[990],
        seen[999]
    );
    assert!(near.invalidations_received >= 1000, "{near:?}");
}

/// The writer of the two-process test: runs only when the parent sets
/// `LARDER_NEAR_CHILD` (`<url> <op>`), in a process of its own.
#[tokio::test]
async fn near_child_writer() {
    let Ok(spec) = std::env::var("LARDER_NEAR_CHILD") else {
        return;
    };
    let (url, op) = spec.split_once(' ').unwrap();
    let b = cache(url, false).await;
    match op {
        "set" => {
            b.set("user:1", &user(1, "child")).await.unwrap();
        }
        "delete" => {
            b.delete("user:1").await.unwrap();
        }
        "tag" => {
            b.invalidate_tag("users").await.unwrap();
        }
        "clear" => {
            b.clear().await.unwrap();
        }
        other => panic!("unknown op {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_serve_a_replaced_value() {
    let server = RedisServer::start();
    let a = cache(&server.url(), true).await;
    let local = cache(&server.url(), false).await;
    serving(&a).await;
    let exe = std::env::current_exe().unwrap();
    let child = |op: &str| {
        let status = std::process::Command::new(&exe)
            .args(["--exact", "near_child_writer", "--test-threads=1"])
            .env("LARDER_NEAR_CHILD", format!("{} {op}", server.url()))
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "the writer process failed ({op})");
    };
    let k = "user:1";
    let v1 = user(1, "parent");
    for (op, expect) in [
        ("set", Some(user(1, "child"))),
        ("delete", None),
        ("tag", None),
        ("clear", None),
    ] {
        local.set(k, &v1).tags(["users"]).await.unwrap();
        fill(&a, k, &v1).await;
        child(op);
        after_bound(&a, k, expect.as_ref(), op).await;
    }
}
