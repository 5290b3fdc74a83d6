//! Stampedes, early refresh, stale serving and outages, against a real
//! redis-server: paused (`SIGSTOP`), stopped and restarted with its old
//! data. Every test checks that it leaves no task running.

#![cfg(all(feature = "redis", feature = "macros"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use larder::{Cache, CacheConfig, Error, Fallback, KeyTtl, cache_read, cache_write};
use larder_testkit::redis::RedisServer;

/// Run `test` and check that every task it started has ended (caches
/// closed, refreshes and replays done) within a few seconds.
async fn no_leaked_tasks<F: Future<Output = ()>>(test: F) {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    test.await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while metrics.num_alive_tasks() > before {
        assert!(
            Instant::now() < deadline,
            "{} task(s) still alive after the test ({before} before)",
            metrics.num_alive_tasks()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Settings for a cache over `url`: prefix `svc`, no TTL jitter unless a
/// test wants it, and the resilience knobs the outage tests tune.
fn config(url: &str) -> CacheConfig {
    let mut config = CacheConfig {
        url: Some(format!(
            "{url}?command_timeout=2s&reconnect_max_delay=100ms"
        )),
        prefix: "svc".into(),
        ttl_jitter: 0.0,
        ..CacheConfig::default()
    };
    config.resilience.timeout = Duration::from_millis(400);
    config
}

fn detail(report: &larder::HealthReport, name: &str) -> Option<String> {
    report
        .details
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_caches_two_hundred_callers_one_load() {
    let server = RedisServer::start();
    no_leaked_tasks(async {
        let mut caches = Vec::new();
        for _ in 0..4 {
            caches.push(larder::connect(&config(&server.url())).await.unwrap());
        }
        let loads = Arc::new(AtomicUsize::new(0));
        let mut callers = Vec::new();
        for i in 0..200 {
            let cache = caches[i % 4].clone();
            let loads = loads.clone();
            callers.push(tokio::spawn(async move {
                cache
                    .read("hot")
                    .ttl(Duration::from_secs(60))
                    .lock(true)
                    .load(|| async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok::<_, Error>("value".to_owned())
                    })
                    .await
                    .unwrap()
            }));
        }
        for caller in callers {
            assert_eq!(caller.await.unwrap(), "value");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1, "the loader ran once");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_refresh_serves_the_old_value_to_everyone_and_refreshes_once() {
    let server = RedisServer::start();
    no_leaked_tasks(async {
        let cache = larder::connect(&config(&server.url())).await.unwrap();
        let loads = Arc::new(AtomicUsize::new(0));
        let read = |cache: Cache, loads: Arc<AtomicUsize>| async move {
            cache
                .read("report")
                .ttl(Duration::from_secs(60))
                .early_ttl(Duration::from_millis(300))
                .load_owned(move || async move {
                    let n = loads.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, Error>(format!("v{n}"))
                })
                .await
                .unwrap()
        };
        assert_eq!(read(cache.clone(), loads.clone()).await, "v1");
        tokio::time::sleep(Duration::from_millis(400)).await;

        // Past the fresh window: everyone gets v1 at once, without waiting
        // for the 200 ms refresh.
        let started = Instant::now();
        let mut callers = Vec::new();
        for _ in 0..50 {
            callers.push(tokio::spawn(read(cache.clone(), loads.clone())));
        }
        for caller in callers {
            assert_eq!(caller.await.unwrap(), "v1");
        }
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "callers waited for the refresh: {:?}",
            started.elapsed()
        );

        // One refresh, and then the new value.
        let deadline = Instant::now() + Duration::from_secs(3);
        while cache.get::<String>("report").await.unwrap().as_deref() != Some("v2") {
            assert!(Instant::now() < deadline, "the refresh never stored v2");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(read(cache.clone(), loads.clone()).await, "v2");
        assert_eq!(loads.load(Ordering::SeqCst), 2, "one refresh");
        assert_eq!(cache.stats().refreshes, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_inside_the_window_and_the_error_outside_it() {
    let server = RedisServer::start();
    no_leaked_tasks(async {
        let cache = larder::connect(&config(&server.url())).await.unwrap();
        let read = |fail: bool| {
            cache
                .read("price")
                .ttl(Duration::from_millis(400))
                .stale_ttl(Duration::from_secs(2))
                .load(move || async move {
                    if fail {
                        Err(Error::Backend {
                            backend: "pricing",
                            message: "the pricing service is down".into(),
                        })
                    } else {
                        Ok(42u32)
                    }
                })
        };
        assert_eq!(read(false).await.unwrap(), 42);
        // Past the TTL, inside the stale window: the loader fails, the stale
        // value is served.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(read(true).await.unwrap(), 42);
        assert_eq!(cache.stats().stale_served, 1);
        // Past the stale window (400 ms + 2 s): the error surfaces.
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let err = read(true).await.unwrap_err();
        assert!(err.to_string().contains("pricing service is down"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_fails_within_the_timeout_opens_the_breaker_and_one_probe_closes_it() {
    let server = RedisServer::start();
    no_leaked_tasks(async {
        let mut config = config(&server.url());
        config.resilience.fallback = Fallback::Closed;
        config.resilience.breaker_threshold = 3;
        config.resilience.breaker_open_for = Duration::from_millis(500);
        let timeout = config.resilience.timeout;
        let cache = larder::connect(&config).await.unwrap();
        cache.set("k", &1u32).await.unwrap();

        server.pause();
        for _ in 0..3 {
            let started = Instant::now();
            let err = cache.get::<u32>("k").await.unwrap_err();
            let took = started.elapsed();
            assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
            assert!(
                took >= timeout && took < timeout + Duration::from_millis(200),
                "{took:?} for a {timeout:?} timeout"
            );
        }
        // Open: rejected at once.
        let started = Instant::now();
        let err = cache.get::<u32>("k").await.unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(20), "{err}");
        assert!(err.to_string().contains("circuit is open"), "{err}");
        assert_eq!(
            detail(&cache.health_report().await, "circuit").as_deref(),
            Some("open")
        );

        // Half-open, still paused: one probe goes out (and times out), the
        // others are turned away meanwhile.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let probes: Vec<_> = (0..10)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let result = cache.get::<u32>("k").await;
                    (result, started.elapsed())
                })
            })
            .collect();
        let mut waited = 0;
        for probe in probes {
            let (result, took) = probe.await.unwrap();
            assert!(result.is_err());
            if took >= timeout {
                waited += 1;
            }
        }
        assert_eq!(waited, 1, "one probe at a time reaches the server");

        // Resumed: after the open period, one probe succeeds and closes it.
        server.resume();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(1));
        assert_eq!(
            detail(&cache.health_report().await, "circuit").as_deref(),
            Some("closed")
        );
        assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(1));
    })
    .await;
}

/// The "database" behind the attribute functions below.
static USERS: Mutex<Option<HashMap<u64, String>>> = Mutex::new(None);
/// How long each id's last load took.
static LOADER_TIME: Mutex<Option<HashMap<u64, Duration>>> = Mutex::new(None);

fn loader_time(id: u64) -> Duration {
    LOADER_TIME
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .get(&id)
        .copied()
        .unwrap_or_else(|| panic!("user {id} was not loaded"))
}

fn user(id: u64) -> Option<String> {
    USERS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .get(&id)
        .cloned()
}

#[cache_read(key = "user:{id}", ttl = 300, tags = ["user:{id}"], cache = cache)]
async fn get_user(cache: &Cache, id: u64) -> Option<String> {
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let found = user(id);
    LOADER_TIME
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(id, started.elapsed());
    found
}

#[cache_write(tags = ["user:{id}"], cache = cache)]
async fn rename(cache: &Cache, id: u64, name: &str) -> Result<(), String> {
    USERS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(id, name.to_owned());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_missed_during_an_outage_is_replayed_before_the_next_read() {
    let mut server = RedisServer::start();
    no_leaked_tasks(async {
        let mut config = config(&server.url());
        config.resilience.breaker_open_for = Duration::from_millis(300);
        let cache = larder::connect(&config).await.unwrap();
        rename(&cache, 1, "alice").await.unwrap();
        // A fill right after an invalidation may be refused (the fill guard
        // allows for clock skew): let it pass.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(get_user(&cache, 1).await.as_deref(), Some("alice"));
        assert_eq!(server.cli(&["EXISTS", "svc:v1:user:1"]), "1");
        // A snapshot with alice in it, then the server goes away.
        server.cli(&["SAVE"]);
        server.stop();

        // The write succeeds; its invalidation cannot reach the cache and is
        // journaled.
        rename(&cache, 1, "bob").await.unwrap();
        assert_eq!(cache.stats().dropped_writes, 1);
        let health = cache.health_report().await;
        assert_eq!(
            detail(&health, "pending_invalidations").as_deref(),
            Some("1")
        );

        // Back, with alice still in it.
        server.restart();
        assert_eq!(server.cli(&["EXISTS", "svc:v1:user:1"]), "1");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cache.health().await {
            assert!(Instant::now() < deadline, "the client did not reconnect");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(400)).await; // the breaker's open period

        // The first read replays the invalidation before it looks.
        assert_eq!(get_user(&cache, 1).await.as_deref(), Some("bob"));
        let health = cache.health_report().await;
        assert_eq!(
            detail(&health, "pending_invalidations").as_deref(),
            Some("0")
        );
        assert_eq!(get_user(&cache, 1).await.as_deref(), Some("bob"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_costs_one_timeout_then_nothing_once_the_breaker_opens() {
    let server = RedisServer::start();
    no_leaked_tasks(async {
        let mut config = config(&server.url());
        config.resilience.breaker_threshold = 3;
        config.resilience.breaker_open_for = Duration::from_secs(60);
        let timeout = config.resilience.timeout;
        let cache = larder::connect(&config).await.unwrap();
        assert_eq!(get_user(&cache, 7).await, None);

        server.pause();
        for id in 100..103 {
            let started = Instant::now();
            assert_eq!(get_user(&cache, id).await, None);
            let overhead = started.elapsed() - loader_time(id);
            assert!(
                overhead <= timeout + Duration::from_millis(100),
                "a call cost {overhead:?} besides its loader (timeout {timeout:?})"
            );
        }
        for id in 200..220 {
            let started = Instant::now();
            assert_eq!(get_user(&cache, id).await, None);
            let overhead = started.elapsed() - loader_time(id);
            assert!(
                overhead <= Duration::from_millis(5),
                "with the breaker open, a call cost {overhead:?} besides its loader"
            );
        }
        server.resume();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_jitter_spreads_expiries_within_ten_percent() {
    let server = RedisServer::start();
    no_leaked_tasks(async {
        let mut config = config(&server.url());
        config.ttl_jitter = 0.1;
        let cache = larder::connect(&config).await.unwrap();
        let ttl = Duration::from_secs(300);
        let writes: Vec<_> = (0..1000)
            .map(|i| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    cache.set(&format!("one:{i}"), &i).ttl(ttl).await.unwrap();
                })
            })
            .collect();
        for write in writes {
            write.await.unwrap();
        }
        let batch: Vec<(String, u32)> = (0..1000).map(|i| (format!("batch:{i}"), i)).collect();
        cache
            .set_many(batch, &larder::SetOptions::new().ttl(ttl))
            .await
            .unwrap();

        for group in ["one", "batch"] {
            let mut seconds = BTreeSet::new();
            for i in 0..1000 {
                let KeyTtl::Expires(left) = cache.ttl(&format!("{group}:{i}")).await.unwrap()
                else {
                    panic!("{group}:{i} has no TTL");
                };
                assert!(
                    left > Duration::from_secs(269) && left <= Duration::from_secs(330),
                    "{group}:{i} expires in {left:?}"
                );
                seconds.insert(left.as_secs());
            }
            let (low, high) = (*seconds.first().unwrap(), *seconds.last().unwrap());
            // One TTL per write; `set_many` draws one per group of the batch
            // (16 groups).
            let spread = if group == "one" {
                seconds.len() >= 40 && low < 275 && high > 325
            } else {
                seconds.len() >= 8 && high - low >= 20
            };
            assert!(
                spread,
                "{group}: expiries not spread: {} distinct seconds in {low}..={high}",
                seconds.len()
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_fallback_serves_while_the_circuit_is_open_and_is_dropped_after() {
    let server = RedisServer::start();
    no_leaked_tasks(async {
        let mut config = config(&server.url());
        config.resilience.breaker_threshold = 1;
        config.resilience.breaker_open_for = Duration::from_millis(500);
        config.resilience.local_fallback_entries = 100;
        let cache = larder::connect(&config).await.unwrap();
        cache.set("k", &"shared").await.unwrap();

        server.pause();
        // The first failure opens the circuit; the local cache answers it
        // and everything after.
        assert_eq!(cache.get::<String>("k").await.unwrap(), None);
        assert!(cache.set("k", &"local").await.unwrap(), "written locally");
        let started = Instant::now();
        assert_eq!(
            cache.get::<String>("k").await.unwrap().as_deref(),
            Some("local")
        );
        assert!(started.elapsed() < Duration::from_millis(20));

        // Back: the write made during the outage is replayed as a delete of
        // the value it replaced, and the local copy is dropped.
        server.resume();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(cache.get::<String>("k").await.unwrap(), None);
        cache.set("k", &"shared again").await.unwrap();
        assert_eq!(
            server.cli(&["EXISTS", "svc:v1:k"]),
            "1",
            "writes reach Redis again"
        );
        assert_eq!(
            cache.get::<String>("k").await.unwrap().as_deref(),
            Some("shared again")
        );
    })
    .await;
}
