//! Read-through cases: shared failures, panics, the fill guard, flights
//! that must not outlive an invalidation, and the fill lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use larder_core::{Cache, Error, FillGuard};
use tokio::sync::{Notify, oneshot};

use crate::Harness;

/// Concurrent callers of a failing load share its failure: the loader runs
/// once and everyone answers within about one load time.
pub async fn concurrent_failing_loaders_share_the_failure(h: &Harness) {
    let c = h.cache();
    let runs = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (c, runs) = (c.clone(), runs.clone());
        tasks.push(tokio::spawn(async move {
            c.get_or_load::<u32, Error, _, _>("failing", || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err(Error::Backend {
                    backend: "database",
                    message: "the database is down".into(),
                })
            })
            .await
        }));
    }
    let mut own = 0;
    for t in tasks {
        match t.await.unwrap() {
            Err(Error::Backend { .. }) => own += 1,
            Err(Error::SharedLoad { key, .. }) => assert_eq!(key, "failing"),
            other => panic!("expected the failure, got {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the failing loader ran once"
    );
    assert_eq!(own, 1, "the caller that ran it got its own error");
    assert!(
        elapsed < Duration::from_millis(1500),
        "20 callers of a failing 200 ms load took {elapsed:?}"
    );
    assert!(
        !c.exists("failing").await.unwrap(),
        "a failure is not stored"
    );
}

/// A loader that panics does not strand the callers waiting on it: one of
/// them loads instead.
pub async fn panicking_loader_does_not_strand_waiters(h: &Harness) {
    let c = h.cache();
    let started = Arc::new(Notify::new());
    let leader = {
        let (c, started) = (c.clone(), started.clone());
        tokio::spawn(async move {
            c.get_or_load::<u32, Error, _, _>("boom", || async move {
                started.notify_one();
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!("the loader panicked (on purpose)");
            })
            .await
        })
    };
    started.notified().await;
    let loads = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let (c, loads) = (c.clone(), loads.clone());
            tokio::spawn(async move {
                c.get_or_load("boom", || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Error>(7u32)
                })
                .await
            })
        })
        .collect();
    assert!(leader.await.unwrap_err().is_panic());
    for w in waiters {
        let answer = tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("a waiter was stranded")
            .unwrap();
        assert_eq!(answer.unwrap(), 7);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "one waiter took over");
}

/// The invalidations a load can race, each done through `by`.
#[derive(Debug, Clone, Copy)]
enum Invalidate {
    Key,
    Tag,
    Pattern,
    Clear,
}

/// A load that began before an invalidation of its key, of one of its
/// tags, of a pattern matching it, or of the namespace does not store its
/// (older) result: its caller gets it, the cache does not keep it. Through
/// the same cache and through a second one over the same backend (as a
/// second process would).
pub async fn loads_do_not_store_across_an_invalidation(h: &Harness) {
    let caps = h.caps();
    for kind in [
        Invalidate::Key,
        Invalidate::Tag,
        Invalidate::Pattern,
        Invalidate::Clear,
    ] {
        if matches!(kind, Invalidate::Tag) && !caps.tags
            || matches!(kind, Invalidate::Pattern) && !caps.scan
        {
            continue;
        }
        for second_cache in [false, true] {
            let reader = h.cache();
            let writer = if second_cache {
                h.cache()
            } else {
                reader.clone()
            };
            let key = format!("raced:{kind:?}:{second_cache}");
            let (release, released) = oneshot::channel::<()>();
            let started = Arc::new(Notify::new());
            let load = {
                let (reader, key, started) = (reader.clone(), key.clone(), started.clone());
                tokio::spawn(async move {
                    let tags: Vec<&str> = if caps.tags { vec!["raced"] } else { vec![] };
                    reader
                        .read(&key)
                        .ttl(Duration::from_secs(60))
                        .tags(tags)
                        .load(|| async move {
                            started.notify_one();
                            released.await.ok();
                            Ok::<_, Error>("old".to_owned())
                        })
                        .await
                })
            };
            started.notified().await;
            match kind {
                Invalidate::Key => drop(writer.delete(&key).await.unwrap()),
                Invalidate::Tag => drop(writer.invalidate_tag("raced").await.unwrap()),
                Invalidate::Pattern => drop(writer.invalidate_pattern("raced:*").await.unwrap()),
                Invalidate::Clear => drop(writer.clear().await.unwrap()),
            }
            release.send(()).unwrap();
            assert_eq!(
                load.await.unwrap().unwrap(),
                "old",
                "the caller gets its load"
            );
            let kept = reader.get::<String>(&key).await.unwrap();
            match caps.fill_guard {
                FillGuard::None => {
                    assert_eq!(kept.as_deref(), Some("old"), "an unguarded backend stores")
                }
                _ => assert_eq!(
                    kept, None,
                    "{kind:?} (second cache: {second_cache}) during the load, yet its older result was stored"
                ),
            }
        }
    }
}

/// A caller that starts after an invalidation never gets a value loaded
/// before it, even when it joins a load that was already running.
pub async fn no_flight_outlives_an_invalidation(h: &Harness) {
    let c = h.cache();
    let (release, released) = oneshot::channel::<()>();
    let started = Arc::new(Notify::new());
    let first = {
        let (c, started) = (c.clone(), started.clone());
        tokio::spawn(async move {
            c.get_or_load("k", || async move {
                started.notify_one();
                released.await.ok();
                Ok::<_, Error>(1u32)
            })
            .await
        })
    };
    started.notified().await;
    c.delete("k").await.unwrap();
    // Starts after the delete returned: joins the running load.
    let later = {
        let c = c.clone();
        tokio::spawn(async move { c.get_or_load("k", || async { Ok::<_, Error>(2u32) }).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.send(()).unwrap();
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert_eq!(
        later.await.unwrap().unwrap(),
        2,
        "a caller that started after the delete got the value loaded before it"
    );
    let kept = c.get::<u32>("k").await.unwrap();
    match h.caps().fill_guard {
        FillGuard::None => {}
        // Stores that start right after an invalidation may be refused as
        // well: never the old value.
        FillGuard::Windowed => assert_ne!(kept, Some(1)),
        _ => assert_eq!(kept, Some(2)),
    }
}

/// When the holder of a fill lock fails, a waiting process takes the lock
/// over at once instead of waiting out the whole bound.
pub async fn fill_lock_waiters_take_over_from_a_failed_holder(h: &Harness) {
    if h.lacks(
        h.caps().locks,
        h.cache().try_lock("probe", Duration::from_secs(1)),
    )
    .await
    {
        return;
    }
    // Two caches: no shared flight, only the lock on the backend.
    let (a, b): (Cache, Cache) = (h.cache(), h.cache());
    let holding = Arc::new(Notify::new());
    let holder = {
        let (a, holding) = (a.clone(), holding.clone());
        tokio::spawn(async move {
            a.read("locked")
                .lock(true)
                .lock_timeout(Duration::from_secs(10))
                .load(|| async move {
                    holding.notify_one();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Err::<u32, _>(Error::Backend {
                        backend: "database",
                        message: "failed".into(),
                    })
                })
                .await
        })
    };
    holding.notified().await;
    let started = Instant::now();
    let value: u32 = b
        .read("locked")
        .lock(true)
        .lock_timeout(Duration::from_secs(10))
        .load(|| async { Ok::<_, Error>(5) })
        .await
        .unwrap();
    assert_eq!(value, 5);
    assert!(holder.await.unwrap().is_err());
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "the waiter took {waited:?} to take over a released lock (bound: 10 s)"
    );
}
