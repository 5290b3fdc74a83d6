//! The attributes without `cache = ...` use the installed cache; before one
//! is installed they run uncached.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::atomic::{AtomicUsize, Ordering};

use larder::{cache_read, cache_write};

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cache_read(key = "greeting:{name}")]
async fn greet(name: &str) -> String {
    CALLS.fetch_add(1, Ordering::SeqCst);
    format!("hello {name}")
}

#[cache_write(tags = ["greetings"])]
async fn reset() {}

#[tokio::test]
async fn uncached_until_installed_then_cached() {
    assert_eq!(greet("ada").await, "hello ada");
    assert_eq!(greet("ada").await, "hello ada");
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        2,
        "no cache installed: runs every time"
    );
    reset().await;

    let cache = larder::open("mem://").await.unwrap();
    larder::install(cache.clone()).unwrap();
    assert!(larder::install(cache.clone()).is_err(), "installs once");

    assert_eq!(greet("ada").await, "hello ada");
    assert_eq!(greet("ada").await, "hello ada");
    assert_eq!(CALLS.load(Ordering::SeqCst), 3, "cached once installed");
    assert!(cache.exists("greeting:ada").await.unwrap());
}
