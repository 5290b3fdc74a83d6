//! The attributes over a real Redis that goes away: the function still
//! answers, its body runs once per call, and the failures are counted.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::atomic::{AtomicUsize, Ordering};

use larder::{Cache, cache_read, cache_write};
use larder_testkit::redis::RedisServer;

static BODY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache_read(key = "user:{id}", ttl = 60, tags = ["user:{id}"], cache = cache)]
async fn get_user(cache: &Cache, id: u64) -> Result<String, String> {
    BODY_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(format!("user {id}"))
}

#[cache_write(tags = ["user:{id}"], recache = [get_user(cache, id)], cache = cache)]
async fn rename(cache: &Cache, id: u64) -> Result<(), String> {
    Ok(())
}

#[tokio::test]
async fn a_backend_outage_never_fails_the_call_and_runs_the_body_once() {
    let mut server = RedisServer::start();
    let url = format!(
        "{}?command_timeout=300ms&reconnect_max_delay=100ms",
        server.url()
    );
    let cache = larder::open(&url).await.unwrap();

    assert_eq!(get_user(&cache, 1).await.unwrap(), "user 1");
    assert_eq!(get_user(&cache, 1).await.unwrap(), "user 1");
    assert_eq!(BODY_RUNS.load(Ordering::SeqCst), 1, "a hit in Redis");

    server.stop();
    let errors_before = cache.stats().errors;
    assert_eq!(get_user(&cache, 2).await.unwrap(), "user 2");
    assert_eq!(
        BODY_RUNS.load(Ordering::SeqCst),
        2,
        "the body ran exactly once"
    );
    assert!(
        cache.stats().errors > errors_before,
        "the outage is counted"
    );

    // A write during the outage succeeds; its failed invalidation and
    // recache are logged and counted, not returned.
    let errors_before = cache.stats().errors;
    assert_eq!(rename(&cache, 1).await, Ok(()));
    assert!(cache.stats().errors > errors_before);
}
