//! Redis-specific behaviour against real servers: tag-set lifetimes and
//! scale, failure modes, ACL limits, Sentinel failover, cluster spread.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use larder_core::{Cache, Error, KeyTtl};
use larder_redis::{REQUIRED_COMMANDS, RedisBackend};
use larder_testkit::bare_builder;
use larder_testkit::redis::{RedisCluster, RedisSentinel, RedisServer, free_port};

/// A cache straight over the backend: these tests are about its own
/// behaviour, errors and TTLs included.
async fn cache(url: &str, prefix: &str) -> Cache {
    let backend = RedisBackend::open(url, 4).await.unwrap();
    bare_builder()
        .backend(backend)
        .prefix(prefix)
        .build()
        .unwrap()
}

fn pttl(server: &RedisServer, key: &str) -> i64 {
    server.cli(&["pttl", key]).trim().parse().unwrap()
}

#[tokio::test]
async fn tag_set_lives_as_long_as_its_longest_member_and_trims_expired_ones() {
    let server = RedisServer::start();
    let c = cache(&server.url(), "svc").await;
    c.set("short", &1)
        .ttl(Duration::from_secs(1))
        .tags(["t"])
        .await
        .unwrap();
    c.set("long", &2)
        .ttl(Duration::from_secs(600))
        .tags(["t"])
        .await
        .unwrap();
    c.set("mid", &3)
        .ttl(Duration::from_secs(60))
        .tags(["t"])
        .await
        .unwrap();
    let tag_ttl = pttl(&server, "svc:v1#t:t");
    assert!(
        tag_ttl > 590_000,
        "tag set TTL {tag_ttl} ms shorter than its longest member"
    );
    assert!(pttl(&server, "svc:v1:long") <= tag_ttl);

    // A persistent member makes the tag set persistent.
    c.set("forever", &4).no_expiry().tags(["t"]).await.unwrap();
    assert_eq!(pttl(&server, "svc:v1#t:t"), -1);

    // Expired members are trimmed on the next write to the tag.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.set("new", &5)
        .ttl(Duration::from_secs(60))
        .tags(["t"])
        .await
        .unwrap();
    assert_eq!(
        server.cli(&["zcard", "svc:v1#t:t"]),
        "4",
        "the expired member is trimmed"
    );
    assert_eq!(c.invalidate_tag("t").await.unwrap(), 4);
    assert_eq!(
        server.cli(&["exists", "svc:v1#t:t"]),
        "0",
        "no empty tag set is left"
    );
}

#[tokio::test]
async fn expire_stretches_the_tag_set() {
    let server = RedisServer::start();
    let c = cache(&server.url(), "svc").await;
    c.set("k", &1)
        .ttl(Duration::from_secs(10))
        .tags(["t"])
        .await
        .unwrap();
    assert!(c.expire("k", Duration::from_secs(900)).await.unwrap());
    assert!(pttl(&server, "svc:v1#t:t") > 890_000);
}

#[tokio::test]
async fn values_are_readable_in_redis_cli_and_tags_do_not_leak_into_patterns() {
    let server = RedisServer::start();
    let c = cache(&server.url(), "svc").await;
    c.set("plain", &serde_json_value()).await.unwrap();
    let raw = server.cli(&["get", "svc:v1:plain"]);
    assert!(raw.ends_with(r#"{"name":"Ada"}"#), "{raw:?}");
    c.set("tagged", &1).tags(["t"]).await.unwrap();
    assert_eq!(c.scan("*", 100).await.unwrap(), vec!["plain", "tagged"]);
    assert_eq!(c.invalidate_pattern("*").await.unwrap(), 2);
    assert_eq!(c.invalidate_tag("t").await.unwrap(), 0);
}

fn serde_json_value() -> std::collections::BTreeMap<String, String> {
    [("name".to_owned(), "Ada".to_owned())]
        .into_iter()
        .collect()
}

/// Invalidation reads the tag's members only: 100,000 unrelated keys do not
/// slow it down. Two servers, one empty and one holding the unrelated keys,
/// are measured in turns so that machine noise hits both alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_cost_does_not_depend_on_unrelated_keys() {
    async fn tag_and_time(c: &Cache, tag: &str) -> Duration {
        let entries: Vec<(String, u32)> = (0..10_000).map(|i| (format!("{tag}:{i}"), i)).collect();
        c.set_many(entries, &larder_core::SetOptions::new().tag(tag))
            .await
            .unwrap();
        let started = Instant::now();
        assert_eq!(c.invalidate_tag(tag).await.unwrap(), 10_000);
        started.elapsed()
    }
    let (empty, crowded) = (RedisServer::start(), RedisServer::start());
    let (a, b) = (
        cache(&empty.url(), "svc").await,
        cache(&crowded.url(), "svc").await,
    );
    let unrelated: Vec<(String, u32)> = (0..100_000).map(|i| (format!("noise:{i}"), i)).collect();
    b.set_many(unrelated, &larder_core::SetOptions::new())
        .await
        .unwrap();
    assert_eq!(crowded.cli(&["dbsize"]), "100000");
    // Let the server finish growing its hash table.
    tokio::time::sleep(Duration::from_secs(1)).await;
    tag_and_time(&a, "warm").await;
    tag_and_time(&b, "warm").await;
    let (mut alone, mut with_noise) = (Vec::new(), Vec::new());
    for round in 0..7 {
        alone.push(tag_and_time(&a, &format!("t{round}")).await);
        with_noise.push(tag_and_time(&b, &format!("t{round}")).await);
    }
    alone.sort();
    with_noise.sort();
    let (alone, with_noise) = (alone[3], with_noise[3]);
    let ratio = with_noise.as_secs_f64() / alone.as_secs_f64();
    eprintln!(
        "invalidate a 10,000-key tag (median of 7): alone {alone:?}, beside 100,000 unrelated keys {with_noise:?}, ratio {ratio:.2}"
    );
    assert!(
        ratio < 1.5,
        "ratio {ratio:.2}: invalidation scanned the keyspace?"
    );
}

#[tokio::test]
async fn server_down_at_start_is_a_clear_transient_error() {
    let port = free_port();
    let started = Instant::now();
    let err = RedisBackend::open(&format!("redis://127.0.0.1:{port}/0?connect_timeout=1s"), 2)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.is_transient(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("unavailable") && msg.contains(&port.to_string()),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("connection refused"),
        "{msg}"
    );
    assert!(
        !msg.contains("Os {") && !msg.contains("Standalone {"),
        "{msg}"
    );
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_that_is_not_retried() {
    let server = RedisServer::start_acl("app", "right-pass", "svc:*", REQUIRED_COMMANDS);
    let url = format!("redis://app:wrong-pass@127.0.0.1:{}/0", server.port());
    let err = RedisBackend::open(&url, 2).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(
        !err.to_string().contains("wrong-pass"),
        "password in message: {err}"
    );
}

#[tokio::test]
async fn foreign_values_under_our_keys() {
    let server = RedisServer::start();
    let c = cache(&server.url(), "svc").await;
    // Another program's string: a miss plus a counted error.
    server.cli(&["set", "svc:v1:user:1", "not json at all"]);
    assert_eq!(c.get::<String>("user:1").await.unwrap(), None);
    assert_eq!(c.stats().errors, 1);
    // Another program's list: the server refuses GET; a clear error.
    server.cli(&["rpush", "svc:v1:user:2", "a"]);
    let err = c.get::<String>("user:2").await.unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    assert_eq!(c.stats().errors, 2);
    // And a tag invalidation walks past both without harm.
    c.set("ok", &1).tags(["t"]).await.unwrap();
    assert_eq!(c.invalidate_tag("t").await.unwrap(), 1);
}

#[tokio::test]
async fn acl_user_limited_to_its_prefix_can_do_everything() {
    let server = RedisServer::start_acl("cache", "s3cret", "svc:*", REQUIRED_COMMANDS);
    let c = cache(&server.url(), "svc").await;
    c.set("a", &1)
        .ttl(Duration::from_secs(60))
        .tags(["t"])
        .await
        .unwrap();
    c.set("b", &2).await.unwrap();
    assert_eq!(
        c.get_many::<i32, _>(&["a", "b"]).await.unwrap(),
        vec![Some(1), Some(2)]
    );
    assert_eq!(c.incr("n", 2).await.unwrap(), 2);
    assert!(c.expire("a", Duration::from_secs(30)).await.unwrap());
    assert!(matches!(c.ttl("a").await.unwrap(), KeyTtl::Expires(_)));
    let lock = c
        .try_lock("job", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert!(lock.release().await.unwrap());
    assert_eq!(c.scan("*", 10).await.unwrap().len(), 3);
    assert_eq!(c.invalidate_tag("t").await.unwrap(), 1);
    assert_eq!(c.invalidate_pattern("b*").await.unwrap(), 1);
    assert!(c.delete("n").await.unwrap());
    c.set("z", &1).tags(["t2"]).await.unwrap();
    assert_eq!(c.clear().await.unwrap(), 1);
    assert!(c.health().await);
    // Outside its prefix the user is refused: an auth error, not retried.
    let other = cache(&server.url(), "other").await;
    let err = other.set("k", &1).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
}

#[tokio::test]
async fn health_reports_pool_and_round_trip() {
    let server = RedisServer::start();
    let c = cache(&format!("{}?pool_size=3", server.url()), "svc").await;
    let report = c.health_report().await;
    assert!(report.is_healthy());
    let detail = |name: &str| {
        report
            .details
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(detail("pool_size"), "3");
    assert_eq!(detail("pool_connected"), "3");
    assert!(detail("round_trip_us").parse::<u64>().is_ok());
    assert!(detail("server_version").starts_with('7'), "{report:?}");
}

#[tokio::test]
async fn a_server_that_goes_away_mid_operation_fails_fast_and_comes_back() {
    let mut server = RedisServer::start();
    let url = format!(
        "{}?command_timeout=500ms&reconnect_max_delay=200ms",
        server.url()
    );
    let c = cache(&url, "svc").await;
    c.set("k", &1).await.unwrap();
    server.stop();
    let started = Instant::now();
    let err = c.get::<i32>("k").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(!c.health().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_keeps_the_cache_working() {
    let mut sentinel = RedisSentinel::start();
    let c = cache(&format!("{}?command_timeout=1s", sentinel.url()), "svc").await;
    c.set("before", &1).no_expiry().tags(["t"]).await.unwrap();
    // Let the replica catch up before the master goes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sentinel.replica().cli(&["exists", "svc:v1:before"]) != "1" {
        assert!(Instant::now() < deadline, "replica never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sentinel.stop_master();
    let promoted = sentinel.wait_for_failover(Duration::from_secs(30));
    assert_eq!(promoted, sentinel.replica_port());
    // The client finds the new master through the sentinels.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.set("after", &2).await {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "no write after failover: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert_eq!(c.get::<i32>("before").await.unwrap(), Some(1));
    assert_eq!(c.get::<i32>("after").await.unwrap(), Some(2));
    assert_eq!(c.invalidate_tag("t").await.unwrap(), 1);
}

#[tokio::test]
async fn cluster_spreads_keys_and_tags_across_slots() {
    let cluster = RedisCluster::start();
    let c = cache(&cluster.url(), "svc").await;
    for i in 0..60 {
        c.set(&format!("user:{i}"), &i)
            .tags([format!("group:{}", i % 3), "all".into()])
            .await
            .unwrap();
    }
    // Keys live on every node.
    let mut nodes_with_keys = 0;
    for node in cluster.nodes() {
        if node.cli(&["dbsize"]).parse::<u64>().unwrap() > 0 {
            nodes_with_keys += 1;
        }
    }
    assert_eq!(nodes_with_keys, 3);
    let keys: Vec<String> = (0..60).map(|i| format!("user:{i}")).collect();
    assert_eq!(
        c.get_many::<i32, _>(&keys)
            .await
            .unwrap()
            .iter()
            .flatten()
            .count(),
        60
    );
    assert_eq!(c.invalidate_tag("group:1").await.unwrap(), 20);
    // user:1 and user:10..19, less the five of them in group 1.
    assert_eq!(c.invalidate_pattern("user:1*").await.unwrap(), 6);
    assert_eq!(c.delete_many(&keys).await.unwrap(), 34);
    assert_eq!(c.invalidate_tag("all").await.unwrap(), 0);
}
