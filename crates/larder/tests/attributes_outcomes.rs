//! What the attributes store and share is decided by the return type as the
//! type system sees it (aliases and full paths included), and a failing
//! body is run once for all the callers waiting on it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use larder::{Cache, cache_read, cache_write};

#[derive(Debug, Clone, PartialEq)]
struct ApiError(String);

type ApiResult<T> = Result<T, ApiError>;
type Maybe<T> = Option<T>;

static ALIAS_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Fails the first time it runs, succeeds after.
#[cache_read(key = "alias:{id}", cache = cache)]
async fn through_alias(cache: &Cache, id: u64) -> ApiResult<u64> {
    match ALIAS_RUNS.fetch_add(1, Ordering::SeqCst) {
        0 => Err(ApiError("the database is down".into())),
        _ => Ok(id * 10),
    }
}

static PATH_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache_read(key = "path:{id}", cache = cache)]
async fn through_full_path(cache: &Cache, id: u64) -> ::std::result::Result<u64, String> {
    match PATH_RUNS.fetch_add(1, Ordering::SeqCst) {
        0 => Err("down".into()),
        _ => Ok(id),
    }
}

static MAYBE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache_read(key = "maybe:{id}", cache = cache)]
async fn maybe(cache: &Cache, id: u64) -> Maybe<u64> {
    MAYBE_RUNS.fetch_add(1, Ordering::SeqCst);
    (id > 100).then_some(id)
}

#[cache_read(key = "maybe_none:{id}", cache_none, cache = cache)]
async fn maybe_none(cache: &Cache, id: u64) -> core::option::Option<u64> {
    MAYBE_RUNS.fetch_add(1, Ordering::SeqCst);
    (id > 100).then_some(id)
}

#[tokio::test]
async fn an_error_behind_a_type_alias_is_not_stored() {
    let cache = larder::open("mem://").await.unwrap();
    assert!(through_alias(&cache, 1).await.is_err());
    assert!(
        !cache.exists("alias:1").await.unwrap(),
        "the error was stored"
    );
    assert_eq!(through_alias(&cache, 1).await, Ok(10));
    assert_eq!(through_alias(&cache, 1).await, Ok(10));
    assert_eq!(ALIAS_RUNS.load(Ordering::SeqCst), 2);

    assert!(through_full_path(&cache, 2).await.is_err());
    assert_eq!(through_full_path(&cache, 2).await, Ok(2));
    assert_eq!(cache.get::<u64>("path:2").await.unwrap(), Some(2));
}

#[tokio::test]
async fn an_option_behind_an_alias_or_a_full_path_is_an_option() {
    let cache = larder::open("mem://").await.unwrap();
    assert_eq!(maybe(&cache, 1).await, None);
    assert!(!cache.exists("maybe:1").await.unwrap(), "None was stored");
    assert_eq!(maybe(&cache, 500).await, Some(500));
    assert_eq!(
        cache.get::<Option<u64>>("maybe:500").await.unwrap(),
        Some(Some(500))
    );
    assert_eq!(maybe_none(&cache, 1).await, None);
    assert_eq!(
        cache.get::<Option<u64>>("maybe_none:1").await.unwrap(),
        Some(None),
        "cache_none stores None through a full path"
    );
}

type WriteResult = Result<(), ApiError>;

#[cache_write(tags = ["alias:{id}"], cache = cache)]
async fn write_through_alias(cache: &Cache, id: u64, fail: bool) -> WriteResult {
    if fail {
        Err(ApiError("refused".into()))
    } else {
        Ok(())
    }
}

#[tokio::test]
async fn a_write_behind_an_alias_invalidates_only_on_ok() {
    let cache = larder::open("mem://").await.unwrap();
    cache.set("k", &1).tags(["alias:7"]).await.unwrap();
    assert!(write_through_alias(&cache, 7, true).await.is_err());
    assert!(
        cache.exists("k").await.unwrap(),
        "a failed write invalidated"
    );
    write_through_alias(&cache, 7, false).await.unwrap();
    assert!(
        !cache.exists("k").await.unwrap(),
        "a successful write did not invalidate"
    );
}

static FAILING_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache_read(key = "failing:{id}", cache = cache)]
async fn failing(cache: &Cache, id: u64) -> ApiResult<u64> {
    FAILING_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    Err(ApiError(format!("no item {id}")))
}

/// An error type that cannot be cloned.
#[derive(Debug)]
struct Opaque;

static OPAQUE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache_read(key = "opaque:{id}", cache = cache)]
async fn failing_opaque(cache: &Cache, id: u64) -> Result<u64, Opaque> {
    let _ = id;
    OPAQUE_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    Err(Opaque)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_of_a_failing_body_share_its_failure() {
    let cache = larder::open("mem://").await.unwrap();
    let started = Instant::now();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { failing(&cache, 1).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), Err(ApiError("no item 1".into())));
    }
    let elapsed = started.elapsed();
    assert_eq!(FAILING_RUNS.load(Ordering::SeqCst), 1, "the body ran once");
    assert!(elapsed < Duration::from_millis(1000), "took {elapsed:?}");

    // An error that cannot be copied: each caller runs the body, but at
    // once, not one after another.
    let started = Instant::now();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { failing_opaque(&cache, 1).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().is_err());
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(1000),
        "20 callers of a failing 100 ms body took {elapsed:?}"
    );
}
