//! The Prometheus exporter, scraped over HTTP after known operations on a
//! memory cache and on a Redis cache whose server goes away: every metric
//! of `docs/observability.md` is there, with the values the operations
//! imply. One test: the recorder is global to the process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use larder::{Cache, CacheConfig, metric_names};
use larder_testkit::redis::{RedisServer, free_port};

/// `GET /metrics` on `port`, the body.
fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap()
}

/// The sum of the samples of `name` whose labels include every pair of
/// `labels`; `None` when there is none.
fn value(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, sample)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = series.split_once('{').unwrap_or((series, ""));
        if metric != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            *found.get_or_insert(0.0) += sample.parse::<f64>().unwrap();
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_every_metric_with_its_value() {
    let port = free_port();
    let handle =
        larder::exporters::prometheus::listen(format!("127.0.0.1:{port}").parse().unwrap())
            .unwrap();

    // A memory cache, known operations.
    let cache = Cache::builder()
        .backend(larder::MemoryBackend::new())
        .prefix("prom")
        .build()
        .unwrap();
    let ns = [("namespace", "prom:v1:")];
    for i in 0..3 {
        cache
            .set(&format!("user:{i}"), &i)
            .tags(["users"])
            .await
            .unwrap();
    }
    for _ in 0..40 {
        assert!(cache.get::<i32>("user:1").await.unwrap().is_some());
    }
    for _ in 0..7 {
        assert!(cache.get::<i32>("absent").await.unwrap().is_none());
    }
    assert!(cache.delete("user:0").await.unwrap());
    cache.invalidate_tag("users").await.unwrap();
    cache.invalidate_pattern("user:*").await.unwrap();
    cache.clear().await.unwrap();
    // Five callers of one key: one loader run, four joins.
    let runs = Arc::new(AtomicUsize::new(0));
    let callers = (0..5).map(|_| {
        let (cache, runs) = (cache.clone(), runs.clone());
        tokio::spawn(async move {
            cache
                .get_or_load("slow", || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, larder::Error>(7)
                })
                .await
                .unwrap()
        })
    });
    for caller in callers.collect::<Vec<_>>() {
        assert_eq!(caller.await.unwrap(), 7);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // A value that does not decode: a miss and a codec error.
    cache.set("text", "not a number").await.unwrap();
    assert!(cache.get::<u64>("text").await.unwrap().is_none());

    // A Redis cache whose server goes away: errors, a dropped (journaled)
    // delete, and the circuit opens.
    let mut redis = RedisServer::start();
    let mut config = CacheConfig {
        url: Some(format!(
            "{}?command_timeout=1s&reconnect_max_delay=100ms",
            redis.url()
        )),
        prefix: "promr".into(),
        ..CacheConfig::default()
    };
    config.resilience.timeout = Duration::from_millis(300);
    config.resilience.breaker_threshold = 3;
    config.resilience.breaker_open_for = Duration::from_secs(30);
    // With a near cache, which hears its own write's invalidation.
    config.near = Some(larder::NearConfig::new(100));
    let remote = larder::connect(&config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !remote.stats().near.unwrap().serving {
        assert!(Instant::now() < deadline, "the near cache never served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    remote.set("k", &1).await.unwrap();
    while remote.stats().near.unwrap().invalidations_received == 0 {
        assert!(Instant::now() < deadline, "no invalidation came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let label = remote.backend().label().to_owned();
    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while remote.health_report().await.detail_of("circuit") != Some("open") {
        assert!(Instant::now() < deadline, "the circuit never opened");
        let _ = remote.get::<i32>("k").await;
    }
    assert!(!remote.delete("k").await.unwrap(), "fail-open delete");

    let body = scrape(port);
    // Every metric larder documents is there.
    for (name, kind, _) in metric_names::ALL {
        let series = if *kind == "histogram" {
            format!("{name}_bucket")
        } else {
            (*name).to_owned()
        };
        assert!(
            value(&body, &series, &[]).is_some(),
            "{series} missing from the scrape:\n{body}"
        );
    }
    let get = |name: &str, extra: &[(&str, &str)]| {
        let labels: Vec<_> = ns.iter().chain(extra).copied().collect();
        value(&body, name, &labels).unwrap_or(0.0)
    };
    let stats = cache.stats();
    assert_eq!(get(metric_names::HITS, &[]), 40.0);
    assert_eq!(get(metric_names::HITS, &[]), stats.hits as f64);
    assert_eq!(get(metric_names::MISSES, &[]), stats.misses as f64);
    assert!(get(metric_names::MISSES, &[]) >= 8.0, "{body}");
    assert_eq!(get(metric_names::SETS, &[]), 5.0);
    assert_eq!(get(metric_names::LOADER_RUNS, &[]), 1.0);
    assert_eq!(get(metric_names::SINGLE_FLIGHT_JOINS, &[]), 4.0);
    assert_eq!(stats.single_flight_joins, 4);
    for kind in ["tag", "pattern", "clear"] {
        assert_eq!(
            get(metric_names::INVALIDATIONS, &[("kind", kind)]),
            1.0,
            "{kind}"
        );
    }
    assert_eq!(
        get(metric_names::DELETES, &[]),
        stats.deletes as f64,
        "{body}"
    );
    assert_eq!(get(metric_names::ERRORS, &[("kind", "codec")]), 1.0);
    // Latency: the gets were sampled (one in 16 per thread).
    let timed = get(
        &format!("{}_count", metric_names::OPERATION_DURATION),
        &[("operation", "get")],
    );
    assert!((1.0..=47.0).contains(&timed), "{timed}");
    assert!(stats.latency_of("get").is_some(), "{stats:?}");

    let backend = [("backend", label.as_str())];
    assert_eq!(
        value(&body, metric_names::CIRCUIT_STATE, &backend),
        Some(2.0),
        "{body}"
    );
    assert!(value(&body, metric_names::CIRCUIT_OPENED, &backend).unwrap() >= 1.0);
    assert!(value(&body, metric_names::PENDING_INVALIDATIONS, &backend).unwrap() >= 1.0);
    let remote_ns = [("namespace", "promr:v1:")];
    assert_eq!(
        value(&body, metric_names::DROPPED_WRITES, &remote_ns),
        Some(1.0),
        "{body}"
    );
    assert!(value(&body, metric_names::ERRORS, &remote_ns).unwrap() >= 1.0);
    // The handle renders the same registry.
    assert!(handle.render().contains(metric_names::HITS));
}

/// `docs/observability.md` lists every metric larder emits.
#[test]
fn the_docs_list_every_metric() {
    let docs = include_str!("../../../docs/observability.md");
    for (name, _, _) in metric_names::ALL {
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/observability.md does not list {name}"
        );
    }
}
