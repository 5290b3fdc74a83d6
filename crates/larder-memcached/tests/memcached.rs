//! Behaviour specific to the Memcached backend, against real servers: how
//! the ring spreads and moves keys, a server that goes away and comes back,
//! long TTLs, item sizes, tag versions across servers, keys memcached
//! cannot take as they are, and invalidations a server missed.
//!
//! Measured figures are printed: run with `-- --nocapture` to see them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use larder_core::{Backend, Cache, Count, Error, WriteOptions};
use larder_memcached::MemcachedBackend;
use larder_testkit::memcached::{MemcachedServer, url_of};
use larder_testkit::proxy::FaultProxy;

/// Retry quickly, so that the tests see a server rejoin within a second.
const FAST_RETRY: &str = "retry_delay=50ms&retry_max_delay=200ms";

async fn backend(url: &str) -> MemcachedBackend {
    MemcachedBackend::open(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

/// A cache straight over the backend, its errors returned: these tests are
/// about the backend's own behaviour.
fn cache(backend: &MemcachedBackend, prefix: &str) -> Cache {
    larder_testkit::bare_builder()
        .backend(backend.clone())
        .prefix(prefix)
        .default_ttl(Duration::from_secs(600))
        .build()
        .unwrap()
}

/// Write `n` keys on fresh servers and return how many landed on each.
async fn spread(servers: &[MemcachedServer], url: &str, n: usize) -> Vec<u64> {
    let b = backend(url).await;
    let c = cache(&b, "spread");
    for i in 0..n {
        c.set(&format!("key:{i}"), &i).await.unwrap();
    }
    // Each server also holds the namespace's version key.
    servers.iter().map(|s| s.stat("curr_items") - 1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_spread_keys_within_15_percent() {
    let servers = MemcachedServer::start_many(3, &[]);
    let counts = spread(&servers, &url_of(&servers), 10_000).await;
    println!("10,000 keys on 3 servers: {counts:?}");
    assert_eq!(counts.iter().sum::<u64>(), 10_000);
    for count in &counts {
        let off = (*count as f64 - 10_000.0 / 3.0).abs() / (10_000.0 / 3.0);
        assert!(off <= 0.15, "{counts:?}: {off:.3} from even");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_three_to_one_give_about_three_to_one() {
    let servers = MemcachedServer::start_many(2, &[]);
    let url = format!(
        "memcached://{}*3,{}",
        servers[0].address(),
        servers[1].address()
    );
    let counts = spread(&servers, &url, 10_000).await;
    let ratio = counts[0] as f64 / counts[1] as f64;
    println!("10,000 keys on weights 3:1: {counts:?} ({ratio:.2}:1)");
    assert!((2.5..3.5).contains(&ratio), "{counts:?}: {ratio:.2}");
}

/// The share of `n` keys written through `before` that read as misses
/// through `after` (one more server): the keys the new server took over.
async fn remapped(before: &str, after: &str, n: usize, prefix: &str) -> f64 {
    let (b, a) = (backend(before).await, backend(after).await);
    let (writer, reader) = (cache(&b, prefix), cache(&a, prefix));
    for i in 0..n {
        writer.set(&format!("key:{i}"), &i).await.unwrap();
    }
    let keys: Vec<String> = (0..n).map(|i| format!("key:{i}")).collect();
    let mut missed = 0;
    for chunk in keys.chunks(500) {
        let got = reader.get_many::<usize, _>(chunk).await.unwrap();
        missed += got.iter().filter(|v| v.is_none()).count();
    }
    missed as f64 / n as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_server_remaps_only_its_share() {
    let servers = MemcachedServer::start_many(5, &[]);
    let url = |n: usize| url_of(&servers[..n]);
    let fourth = remapped(&url(3), &url(4), 10_000, "three").await;
    let fifth = remapped(&url(4), &url(5), 10_000, "four").await;
    println!(
        "remapped when a server is added: 3 -> 4: {:.1}% (ideal 25%), 4 -> 5: {:.1}% (ideal 20%)",
        fourth * 100.0,
        fifth * 100.0
    );
    assert!(fourth <= 0.30, "3 -> 4 remapped {fourth}");
    assert!(
        fourth >= 0.18,
        "3 -> 4 remapped only {fourth}: is the new server used?"
    );
    assert!((0.15..=0.25).contains(&fifth), "4 -> 5 remapped {fifth}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_misses_through_get_or_load_and_rejoins() {
    let mut servers = MemcachedServer::start_many(3, &[]);
    let url = format!("{}?{FAST_RETRY}", url_of(&servers));
    let b = backend(&url).await;
    let c = cache(&b, "down");
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        c.set(k, &i).await.unwrap();
    }
    let victim = servers[1].address();
    let on_victim = |k: &String| b.server_of(&c.stored_key(k).unwrap()) == victim;
    let lost: Vec<&String> = keys.iter().filter(|k| on_victim(k)).collect();
    assert!(lost.len() > 50, "{} keys on the victim", lost.len());
    servers[1].stop();

    let loads = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    for (i, k) in keys.iter().enumerate() {
        let loads = loads.clone();
        let v: usize = c
            .get_or_load(k, || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(i)
            })
            .await
            .expect("no error surfaces: the loader answers for the lost keys");
        assert_eq!(v, i);
    }
    let took = started.elapsed();
    println!(
        "one of 3 servers down: {} of 300 keys loaded again, in {took:?}",
        loads.load(Ordering::SeqCst)
    );
    assert_eq!(
        loads.load(Ordering::SeqCst),
        lost.len(),
        "exactly the keys of the stopped server were loaded; the others hit"
    );
    assert!(
        took < Duration::from_secs(10),
        "a dead server must not cost a connect timeout per call: {took:?}"
    );
    // A batch across servers keeps the live servers' hits.
    let got = c.get_many::<usize, _>(&keys).await.unwrap();
    for (i, (k, v)) in keys.iter().zip(&got).enumerate() {
        assert_eq!(v.is_none(), on_victim(k), "{k}");
        if let Some(v) = v {
            assert_eq!(*v, i);
        }
    }
    let report = c.health_report().await;
    assert_eq!(
        report.status,
        larder_core::HealthStatus::Degraded,
        "one server of three down: {report:?}"
    );
    assert!(
        report
            .details
            .iter()
            .any(|(name, state)| *name == victim && state.starts_with("down")),
        "{report:?}"
    );

    servers[1].restart();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let k = lost[0];
    // The first call may meet a connection from before the restart.
    let _ = c.get::<usize>(k).await;
    c.set(k, &7usize).await.unwrap();
    assert_eq!(
        c.get::<usize>(k).await.unwrap(),
        Some(7),
        "the server serves again"
    );
    assert!(c.health().await);
    let loads = Arc::new(AtomicUsize::new(0));
    for k in &lost[1..] {
        let loads = loads.clone();
        let _: usize = c
            .get_or_load(k, || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(1)
            })
            .await
            .unwrap();
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        lost.len() - 1,
        "emptied by the restart"
    );
    assert!(
        servers[1].stat("curr_items") >= lost.len() as u64,
        "and filled again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_at_connect_joins_when_it_starts() {
    let mut servers = MemcachedServer::start_many(2, &[]);
    servers[1].stop();
    let url = format!("{}?{FAST_RETRY}", url_of(&servers));
    let b = backend(&url).await;
    let c = cache(&b, "late");
    let on = |server: &MemcachedServer| {
        (0..)
            .map(|i| format!("k{i}"))
            .find(|k| b.server_of(&c.stored_key(k).unwrap()) == server.address())
            .unwrap()
    };
    let (up, down) = (on(&servers[0]), on(&servers[1]));
    c.set(&up, &1).await.unwrap();
    assert_eq!(c.get::<i32>(&up).await.unwrap(), Some(1));
    assert!(
        c.set(&down, &2).await.is_err(),
        "its server is not there yet"
    );
    servers[1].restart();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.set(&down, &2).await.unwrap();
    assert_eq!(c.get::<i32>(&down).await.unwrap(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forty_day_ttl_is_sent_as_a_unix_time() {
    let server = MemcachedServer::start();
    let b = backend(&server.url()).await;
    let c = cache(&b, "ttl");
    let forty_days = Duration::from_secs(40 * 24 * 3600);
    c.set("long", "kept").ttl(forty_days).await.unwrap();
    c.set("month", "kept")
        .ttl(Duration::from_secs(30 * 24 * 3600))
        .await
        .unwrap();
    c.set("year", "kept")
        .ttl(larder_core::MAX_TTL)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // A 40-day TTL sent as a relative number of seconds would be read by
    // memcached as a unix time in 1970: gone at once.
    for k in ["long", "month", "year"] {
        assert_eq!(
            c.get::<String>(k).await.unwrap().as_deref(),
            Some("kept"),
            "{k}"
        );
    }
    let err = c
        .set("too_long", "x")
        .ttl(larder_core::MAX_TTL + Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidTtl { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_value_is_refused_before_it_is_sent() {
    let server = MemcachedServer::start();
    let b = backend(&server.url()).await;
    let limit = b.capabilities().max_value_size.expect("a limit");
    assert!(
        (1024 * 1024 - 1024..1024 * 1024).contains(&limit),
        "item_size_max 1 MiB gives a value limit just under it: {limit}"
    );
    let key = "size:v1:big".to_owned();
    // Near the limit: stored.
    let fits = Bytes::from(vec![b'x'; limit]);
    assert!(
        b.set(&key, fits.clone(), &WriteOptions::new())
            .await
            .unwrap()
    );
    assert_eq!(b.get(&key).await.unwrap(), Some(fits));
    let sets = server.stat("cmd_set");
    let too_big = Bytes::from(vec![b'x'; 1024 * 1024 + 1]);
    let err = b
        .set(&key, too_big, &WriteOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err:?}");
    assert_eq!(server.stat("cmd_set"), sets, "nothing was sent");
    // Through a Cache, whose limit follows the backend's.
    let c = cache(&b, "size");
    let err = c
        .set("big", &"y".repeat(2 * 1024 * 1024))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err:?}");
    assert_eq!(server.stat("cmd_set"), sets, "nothing was sent");
    // A larger item size is read from the server.
    let big_items = MemcachedServer::start_with(&["-I", "4m"]);
    let b4 = backend(&big_items.url()).await;
    assert!(b4.capabilities().max_value_size.unwrap() > 4 * 1024 * 1024 - 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_invalidation_reaches_every_server() {
    let servers = MemcachedServer::start_many(3, &[]);
    let b = backend(&url_of(&servers)).await;
    let c = cache(&b, "tags");
    let mut per_server: HashMap<String, usize> = HashMap::new();
    for i in 0..300 {
        let k = format!("tagged:{i}");
        c.set(&k, &i)
            .tags(["t", &format!("own:{i}")])
            .await
            .unwrap();
        c.set(&format!("other:{i}"), &i).tags(["u"]).await.unwrap();
        *per_server
            .entry(b.server_of(&c.stored_key(&k).unwrap()).to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_server.len(), 3, "{per_server:?}");
    assert_eq!(c.invalidate_tag("t").await.unwrap(), Count::Unknown);
    for i in 0..300 {
        assert_eq!(
            c.get::<i32>(&format!("tagged:{i}")).await.unwrap(),
            None,
            "{i}"
        );
        assert_eq!(
            c.get::<i32>(&format!("other:{i}")).await.unwrap(),
            Some(i),
            "{i}"
        );
    }
    // Invalidation costs one command per tag per server, not per entry.
    let sets: Vec<u64> = servers.iter().map(|s| s.stat("cmd_set")).collect();
    c.invalidate_tag("u").await.unwrap();
    for (s, before) in servers.iter().zip(sets) {
        assert!(
            s.stat("cmd_set") - before <= 2,
            "an invalidation wrote per entry"
        );
    }
    assert_eq!(c.get::<i32>("other:1").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_spaces_and_300_bytes_work() {
    let server = MemcachedServer::start();
    let b = backend(&server.url()).await;
    let c = cache(&b, "keys");
    let long = "k".repeat(300);
    let cases = [
        "a key with spaces",
        "a_key_with_spaces",
        long.as_str(),
        "tab\u{a0}nbsp",
    ];
    for (i, k) in cases.iter().enumerate() {
        c.set(k, &i).tags([*k]).await.unwrap();
    }
    for (i, k) in cases.iter().enumerate() {
        assert_eq!(c.get::<usize>(k).await.unwrap(), Some(i), "{k}");
    }
    c.invalidate_tag("a key with spaces").await.unwrap();
    assert_eq!(c.get::<usize>("a key with spaces").await.unwrap(), None);
    assert_eq!(c.get::<usize>("a_key_with_spaces").await.unwrap(), Some(1));
    let stored = c.stored_key("a key with spaces").unwrap();
    assert!(!stored.contains(' ') && stored.len() <= 250, "{stored}");
    assert!(c.stored_key(&long).unwrap().len() <= 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_unsigned_take_a_ttl_on_create_and_go_with_clear() {
    let servers = MemcachedServer::start_many(2, &[]);
    let b = backend(&url_of(&servers)).await;
    let c = cache(&b, "count");
    let key = c.stored_key("hits").unwrap();
    let err = b.incr(&key, -1, None).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert_eq!(
        b.incr(&key, 5, Some(Duration::from_secs(1))).await.unwrap(),
        5
    );
    assert_eq!(
        b.incr(&key, 2, Some(Duration::from_secs(3600)))
            .await
            .unwrap(),
        7
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        b.get(&key).await.unwrap(),
        None,
        "expired with its creation TTL"
    );
    assert_eq!(c.incr("n", 3).await.unwrap(), 3);
    c.set("text", "not a number").await.unwrap();
    assert!(matches!(
        c.incr("text", 1).await.unwrap_err(),
        Error::NotAnInteger { .. }
    ));
    assert_eq!(c.clear().await.unwrap(), Count::Unknown);
    assert_eq!(
        c.get::<i64>("n").await.unwrap(),
        None,
        "clear reaches counters"
    );
    assert_eq!(
        c.incr("n", 4).await.unwrap(),
        4,
        "and a new one starts from 0"
    );
    assert_eq!(c.get::<String>("text").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_a_server_missed_are_replayed_when_it_returns() {
    let server = MemcachedServer::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], server.port()).into());
    let via_proxy = backend(&format!("memcached://{}", proxy.addr())).await;
    let direct = backend(&server.url()).await;
    let (c, d) = (cache(&via_proxy, "missed"), cache(&direct, "missed"));
    c.set("k", &1).tags(["t"]).await.unwrap();
    c.set("other", &2).await.unwrap();
    c.set("gone", &3).await.unwrap();
    c.set("replaced", &4).await.unwrap();
    proxy.refuse(true);
    proxy.cut_all();
    let err = c.invalidate_tag("t").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("0 of 1 servers"), "{err}");
    // A delete and a replacing write missed too.
    assert!(c.delete("gone").await.unwrap_err().is_transient());
    assert!(c.set("replaced", &5).await.unwrap_err().is_transient());
    // Until it is replayed, a client that can reach the server still reads
    // the entries: the errors said so.
    assert_eq!(d.get::<i32>("k").await.unwrap(), Some(1));
    assert_eq!(d.get::<i32>("gone").await.unwrap(), Some(3));
    proxy.refuse(false);
    // The next command to the server replays the invalidations first.
    assert_eq!(c.get::<i32>("other").await.unwrap(), Some(2));
    assert_eq!(d.get::<i32>("k").await.unwrap(), None, "replayed");
    assert_eq!(c.get::<i32>("k").await.unwrap(), None);
    assert_eq!(d.get::<i32>("gone").await.unwrap(), None, "delete replayed");
    assert_eq!(
        d.get::<i32>("replaced").await.unwrap(),
        None,
        "the value a failed write meant to replace is gone"
    );
}

/// Through a cache as `larder::open` builds it (fail-open): a write made
/// while its server is unreachable succeeds for the caller, and the value
/// it replaced is never read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_while_a_server_is_away_never_leaves_the_old_value() {
    let server = MemcachedServer::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], server.port()).into());
    let b = backend(&format!("memcached://{}?{FAST_RETRY}", proxy.addr())).await;
    let c = Cache::builder().backend(b).prefix("open").build().unwrap();
    c.set("user:1", &"alice").tags(["user:1"]).await.unwrap();
    proxy.refuse(true);
    proxy.cut_all();
    assert!(
        !c.set("user:1", &"bob").await.unwrap(),
        "dropped, not failed"
    );
    assert_eq!(c.invalidate_tag("user:1").await.unwrap(), Count::Unknown);
    assert_eq!(c.stats().dropped_writes, 2);
    proxy.refuse(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.get::<String>("user:1").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_failed_mid_command_is_never_reused() {
    let server = MemcachedServer::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], server.port()).into());
    let b = backend(&format!(
        "memcached://{}?timeout=300ms&pool=1",
        proxy.addr()
    ))
    .await;
    let c = cache(&b, "stale");
    c.set("a", &"value of a").await.unwrap();
    c.set("b", &"value of b").await.unwrap();
    // Stall the connection so that the reply to a `get` of `a` arrives
    // after the client gave up on it.
    proxy.blackhole(true);
    let err = b.get(&c.stored_key("a").unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    proxy.blackhole(false);
    // The late reply must not be read as the answer for `b`.
    for _ in 0..5 {
        let got = c.get::<String>("b").await.unwrap();
        assert_ne!(got.as_deref(), Some("value of a"));
        if got.is_some() {
            assert_eq!(got.as_deref(), Some("value of b"));
        }
    }
    assert_eq!(
        c.get::<String>("b").await.unwrap().as_deref(),
        Some("value of b")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_name_the_backend_and_refuse_unknown_options() {
    let servers = MemcachedServer::start_many(2, &[]);
    let b = backend(&url_of(&servers)).await;
    assert_eq!(
        b.label(),
        format!(
            "memcached@{},{}",
            servers[0].address(),
            servers[1].address()
        )
    );
    let named = backend(&format!("{}?label=sessions", servers[0].url())).await;
    assert_eq!(named.label(), "memcached@sessions");
    let err = MemcachedBackend::open(&format!("{}?timout=1s", servers[0].url()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("timout"), "{err}");
    let err = MemcachedBackend::open("memcached://127.0.0.1:1")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        err.to_string().contains("cannot reach 127.0.0.1:1"),
        "{err}"
    );
    // A clone's close (a dropped Cache closes its backend) leaves the
    // connections to the other clones; the last one releases them.
    let clone = b.clone();
    clone.close().await.unwrap();
    assert!(b.get("x:y:z").await.is_ok(), "another clone is still open");
    drop(clone);
    b.close().await.unwrap();
    assert!(b.get("x:y:z").await.is_err(), "closed");
}
