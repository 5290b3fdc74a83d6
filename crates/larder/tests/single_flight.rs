//! Single-flight: one load per cold key, and cancellation never strands
//! the other callers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use larder::Error;
use tokio::sync::{Notify, oneshot};
use tokio::time::timeout;

async fn cache() -> larder::Cache {
    larder::open("mem://").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_cold_callers_one_load() {
    let cache = cache().await;
    let loads = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (cache, loads) = (cache.clone(), loads.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load("cold", || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, Error>(7u32)
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 7);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_waiter_does_not_cancel_the_others() {
    let cache = cache().await;
    let loads = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let started = Arc::new(Notify::new());

    let leader = {
        let (cache, loads, started) = (cache.clone(), loads.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .get_or_load("k", || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    started.notify_one();
                    release_rx.await.ok();
                    Ok::<_, Error>("loaded".to_string())
                })
                .await
        })
    };
    started.notified().await;
    let waiter = |cache: larder::Cache, loads: Arc<AtomicUsize>| {
        tokio::spawn(async move {
            cache
                .get_or_load("k", || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Error>("waiter loaded".to_string())
                })
                .await
        })
    };
    let doomed = waiter(cache.clone(), loads.clone());
    let survivor = waiter(cache.clone(), loads.clone());
    tokio::time::sleep(Duration::from_millis(50)).await;
    doomed.abort();
    assert!(doomed.await.unwrap_err().is_cancelled());
    release_tx.send(()).unwrap();

    let a = timeout(Duration::from_secs(5), leader)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let b = timeout(Duration::from_secs(5), survivor)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(a, "loaded");
    assert_eq!(b, "loaded");
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_leader_hands_over_to_a_waiter() {
    let cache = cache().await;
    let loads = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Notify::new());
    let leader = {
        let (cache, loads, started) = (cache.clone(), loads.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .get_or_load("k", || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    started.notify_one();
                    std::future::pending::<()>().await;
                    Ok::<_, Error>(0u32)
                })
                .await
        })
    };
    started.notified().await;
    let waiter = {
        let (cache, loads) = (cache.clone(), loads.clone());
        tokio::spawn(async move {
            cache
                .get_or_load("k", || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Error>(2u32)
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "the waiter waits for the leader");
    leader.abort();
    let value = timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(value, 2, "the waiter took over the load");
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(2));
}

#[tokio::test]
async fn loader_errors_are_returned_and_not_cached() {
    #[derive(Debug)]
    enum AppError {
        Db,
        Cache(Error),
    }
    impl From<Error> for AppError {
        fn from(e: Error) -> Self {
            AppError::Cache(e)
        }
    }
    let cache = cache().await;
    let r = cache
        .get_or_load("k", || async { Err::<u32, _>(AppError::Db) })
        .await;
    assert!(matches!(r, Err(AppError::Db)));
    assert!(!cache.exists("k").await.unwrap());
    let r = cache
        .get_or_load("k", || async { Ok::<u32, AppError>(5) })
        .await;
    assert_eq!(r.unwrap(), 5);
    let bad = cache
        .get_or_load("", || async { Ok::<u32, AppError>(5) })
        .await;
    assert!(matches!(
        bad,
        Err(AppError::Cache(Error::InvalidKey { .. }))
    ));
}

#[tokio::test]
async fn read_builder_stores_with_ttl_and_tags() {
    let cache = cache().await;
    let v: u32 = cache
        .read("user:1")
        .ttl(Duration::from_secs(60))
        .tags(["user:1"])
        .load(|| async { Ok::<_, Error>(11) })
        .await
        .unwrap();
    assert_eq!(v, 11);
    assert!(matches!(
        cache.ttl("user:1").await.unwrap(),
        larder::KeyTtl::Expires(_)
    ));
    assert_eq!(cache.invalidate_tag("user:1").await.unwrap(), 1);
}
