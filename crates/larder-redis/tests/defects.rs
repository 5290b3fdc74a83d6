//! Regression tests for defects found by review, each checked against Redis
//! itself (`ZCARD`, `PTTL`, `INFO commandstats`, raw `GET`), not only
//! through larder's own filtered view.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use larder_core::{Cache, Error};
use larder_redis::RedisBackend;
use larder_testkit::bare_builder;
use larder_testkit::proxy::FaultProxy;
use larder_testkit::redis::{RedisCluster, RedisServer};

/// A cache straight over the backend: these are its own defects, errors
/// and TTLs included.
async fn cache(url: &str) -> Cache {
    let backend = RedisBackend::open(url, 4).await.unwrap();
    bare_builder()
        .backend(backend)
        .prefix("svc")
        .build()
        .unwrap()
}

fn int(reply: String) -> i64 {
    reply
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not an integer: {reply:?}"))
}

/// How many times a command ran since the last `CONFIG RESETSTAT`
/// (commands run by scripts included).
fn calls(server: &RedisServer, command: &str) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// Defect 1: on a cluster, a tagged `if_absent` write that declines used to
/// reset the tag entry and the set's expiry to its own, shorter TTL; after
/// that TTL the tag no longer reached the key.
#[tokio::test]
async fn cluster_declined_tagged_write_does_not_shorten_the_tag_set() {
    let cluster = RedisCluster::start();
    let c = cache(&cluster.url()).await;
    c.set("k", &1)
        .ttl(Duration::from_secs(3600))
        .tags(["t"])
        .await
        .unwrap();
    let declined = c
        .set("k", &2)
        .if_absent()
        .ttl(Duration::from_secs(1))
        .tags(["t"])
        .await
        .unwrap();
    assert!(!declined);
    let pttl = int(cluster.cli(&["PTTL", "svc:v1#t:t"]));
    assert!(pttl > 3_000_000, "the tag set now expires in {pttl} ms");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(int(cluster.cli(&["ZCARD", "svc:v1#t:t"])), 1);
    assert_eq!(c.invalidate_tag("t").await.unwrap(), 1);
    assert!(!c.exists("k").await.unwrap());
}

/// Defect 3: tag sets leaked. Deletes and overwrites left members behind,
/// kept the set's expiry, and a set that once held a persistent member
/// stayed persistent forever; with per-entity tags the garbage grew with
/// the number of entities.
#[tokio::test]
async fn tag_sets_hold_only_live_members_and_expire_with_the_longest() {
    let server = RedisServer::start();
    let c = cache(&server.url()).await;
    let zcard = |tag: &str| int(server.cli(&["ZCARD", &format!("svc:v1#t:{tag}")]));
    let pttl = |tag: &str| int(server.cli(&["PTTL", &format!("svc:v1#t:{tag}")]));

    // A persistent member, then only a one-minute member.
    c.set("p", &1).no_expiry().tags(["t"]).await.unwrap();
    c.set("q", &1)
        .ttl(Duration::from_secs(60))
        .tags(["t"])
        .await
        .unwrap();
    assert_eq!(pttl("t"), -1);
    c.delete("p").await.unwrap();
    assert_eq!(zcard("t"), 1);
    let left = pttl("t");
    assert!(
        left > 0 && left <= 60_000,
        "still persistent after the persistent member left: {left}"
    );

    // An untagged overwrite leaves the tag.
    c.set("q", &2).await.unwrap();
    assert_eq!(
        server.cli(&["EXISTS", "svc:v1#t:t"]),
        "0",
        "an empty tag set was left"
    );

    // A tagged overwrite with other tags leaves the old ones.
    c.set("r", &1).tags(["a"]).await.unwrap();
    c.set("r", &1).tags(["b"]).await.unwrap();
    assert_eq!(server.cli(&["EXISTS", "svc:v1#t:a"]), "0");
    assert_eq!(zcard("b"), 1);

    // Per-entity tags: a thousand entities written and deleted leave nothing.
    for id in 0..1000 {
        c.set(&format!("user:{id}"), &id)
            .no_expiry()
            .tags([format!("user:{id}:tag")])
            .await
            .unwrap();
    }
    let keys: Vec<String> = (0..1000).map(|id| format!("user:{id}")).collect();
    assert_eq!(c.delete_many(&keys).await.unwrap(), 1000);
    let leftover = server.cli(&["--scan", "--pattern", "svc:v1#t:user:*"]);
    assert!(
        leftover.trim().is_empty(),
        "tag sets left behind: {leftover}"
    );
}

/// Defect 3, cluster: a delete removes the key from its tag sets, which
/// live on other slots.
#[tokio::test]
async fn cluster_delete_leaves_no_tag_garbage() {
    let cluster = RedisCluster::start();
    let c = cache(&cluster.url()).await;
    for i in 0..20 {
        c.set(&format!("k{i}"), &i)
            .no_expiry()
            .tags(["t", &format!("own{i}")])
            .await
            .unwrap();
    }
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    c.delete_many(&keys).await.unwrap();
    assert_eq!(cluster.cli(&["EXISTS", "svc:v1#t:t"]), "0");
    assert_eq!(cluster.cli(&["EXISTS", "svc:v1#t:own7"]), "0");
}

/// Defect 5: fred resent a command that was in flight when its connection
/// dropped (`max_command_attempts = 2`): an `INCRBY` counted twice, a lock
/// answered "not taken" while we held it, an `if_absent` write answered
/// `false` after writing. Each command is now sent once, and the caller
/// learns that the outcome is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_sent_once_even_when_the_reply_is_lost() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", server.port()).parse().unwrap());
    let c = cache(&format!(
        "redis://127.0.0.1:{}/0?pool_size=1&reconnect_min_delay=10ms",
        proxy.port()
    ))
    .await;

    proxy.drop_reply_after(b"counter-once");
    let err = c.incr("counter-once", 1).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(
        server.cli(&["GET", "svc:v1:counter-once"]),
        "1",
        "counted twice"
    );

    proxy.drop_reply_after(b"lock-once");
    let taken = c.try_lock("lock-once", Duration::from_secs(60)).await;
    assert!(taken.is_err(), "answered {taken:?} while holding the lock");
    assert_eq!(server.cli(&["EXISTS", "svc:v1#l:__lock:lock-once"]), "1");

    proxy.drop_reply_after(b"absent-once");
    let written = c.set("absent-once", &1).if_absent().await;
    assert!(written.is_err(), "answered {written:?} after writing");
    assert_eq!(server.cli(&["EXISTS", "svc:v1:absent-once"]), "1");

    // The connection recovers for the next command.
    assert_eq!(c.incr("counter-once", 1).await.unwrap(), 2);
}

/// A command timeout reports how long it waited and the limit, not
/// `timed out after 0ns`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_reports_the_real_wait_and_the_limit() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", server.port()).parse().unwrap());
    let c = cache(&format!(
        "redis://127.0.0.1:{}/0?pool_size=1&command_timeout=300ms",
        proxy.port()
    ))
    .await;
    proxy.blackhole(true);
    let started = Instant::now();
    let err = c.get::<u32>("k").await.unwrap_err();
    let waited = started.elapsed();
    proxy.blackhole(false);
    match &err {
        Error::Timeout { elapsed, limit, .. } => {
            assert_eq!(*limit, Duration::from_millis(300));
            assert!(
                *elapsed >= Duration::from_millis(250) && *elapsed <= waited,
                "{elapsed:?}"
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("300ms") && !message.contains("0ns"),
        "{message}"
    );
}

/// Defect 6: `scan(p, 0)` returned a key, and `SCAN`'s duplicates counted
/// towards the limit. Checked at the backend, under heavy writes that make
/// Redis rehash while the scan runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_limit_zero_and_duplicates() {
    let server = RedisServer::start();
    let c = cache(&server.url()).await;
    let entries: Vec<(String, u32)> = (0..5000).map(|i| (format!("s:{i}"), i)).collect();
    c.set_many(entries, &larder_core::SetOptions::new())
        .await
        .unwrap();
    let backend = c.backend().clone();
    assert!(backend.scan("svc:v1:s:*", 0).await.unwrap().is_empty());
    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            for round in 0..4 {
                let entries: Vec<(String, u32)> = (0..20_000)
                    .map(|i| (format!("churn:{round}:{i}"), i))
                    .collect();
                c.set_many(entries, &larder_core::SetOptions::new())
                    .await
                    .unwrap();
                c.invalidate_pattern(&format!("churn:{round}:*"))
                    .await
                    .unwrap();
            }
        })
    };
    for _ in 0..20 {
        let keys = backend.scan("svc:v1:s:*", 5000).await.unwrap();
        let unique: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "duplicates returned");
        assert_eq!(keys.len(), 5000, "a key was missed or a duplicate counted");
    }
    writer.await.unwrap();
}

/// Invalidating a tag of large values, and listing a tag's members, read the
/// values' headers only: no whole value crosses into Lua or the network.
#[tokio::test]
async fn tag_operations_read_headers_only() {
    let server = RedisServer::start();
    let c = cache(&server.url()).await;
    let big = "x".repeat(1 << 20);
    for i in 0..20 {
        c.set(&format!("big:{i}"), &big).tags(["t"]).await.unwrap();
    }
    server.cli(&["CONFIG", "RESETSTAT"]);
    assert_eq!(c.tag_members("t", 5).await.unwrap().len(), 5);
    assert_eq!(c.invalidate_tag("t").await.unwrap(), 20);
    assert_eq!(calls(&server, "get"), 0, "a whole value was read");
    assert_eq!(calls(&server, "mget"), 0, "whole values were read");
    assert!(calls(&server, "getrange") > 0, "headers were not read");
}
