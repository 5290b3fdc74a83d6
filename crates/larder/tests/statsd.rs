//! The StatsD exporter, read off a UDP socket on loopback after known
//! operations. One test: the recorder is global to the process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use larder::{Cache, metric_names};

#[tokio::test]
async fn operations_reach_a_statsd_server_with_their_tags() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = server.local_addr().unwrap().port();
    larder::exporters::statsd::install("127.0.0.1", port, Some("svc")).unwrap();
    assert!(
        larder::exporters::statsd::install("127.0.0.1", port, None).is_err(),
        "a second recorder is refused"
    );

    let cache = Cache::builder()
        .backend(larder::MemoryBackend::new())
        .prefix("sd")
        .build()
        .unwrap();
    cache.set("k", &1).await.unwrap();
    for _ in 0..100 {
        cache.get::<i32>("k").await.unwrap();
        cache.get::<i32>("absent").await.unwrap();
    }

    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 65_536];
    while Instant::now() < deadline {
        if let Ok(n) = server.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            lines.extend(text.lines().map(str::to_owned));
        }
        let seen = |name: &str| lines.iter().any(|l| l.starts_with(&format!("svc.{name}:")));
        if seen(metric_names::HITS) && seen(metric_names::MISSES) && seen(metric_names::SETS) {
            break;
        }
    }
    let hits: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with(&format!("svc.{}:", metric_names::HITS)))
        .collect();
    assert!(!hits.is_empty(), "no hits among {lines:?}");
    for line in &hits {
        assert!(line.contains("|c"), "a counter: {line}");
        assert!(line.contains("namespace:sd:v1:"), "tagged: {line}");
        assert!(line.contains("backend:memory"), "tagged: {line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("svc.{}:", metric_names::MISSES))),
        "{lines:?}"
    );
}
