//! A randomized history checker for the consistency promise: once a
//! `#[cache_write]` returns, no `#[cache_read]` that starts afterwards
//! returns the value it replaced.
//!
//! A source of truth holds a version per key and answers after small random
//! delays. Writers bump a key's version and invalidate its tag through
//! `#[cache_write]`; readers read through `#[cache_read]`. Every read is
//! checked against the history: it must return at least the newest version
//! whose write had returned when the read started. A control run reads the
//! source directly (the checker must find nothing there), and a sensitivity
//! run uses a naive read-through without fill guard (the checker must find
//! stale reads there, or it proves nothing).
//!
//! `LARDER_HISTORY_SEED=<n>` replays a run; the seed, the counts and the
//! result are printed (`cargo test -p larder --all-features --test history
//! -- --nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use larder::{Cache, cache_read, cache_write};

const KEYS: u64 = 5;
const READERS: usize = 8;
const WRITERS: usize = 2;
const READS_EACH: usize = 300;
const WRITES_EACH: usize = 120;

/// A tiny xorshift generator: no dependency, replayable from a seed.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A delay of 0 to `max_us` microseconds.
    async fn pause(&mut self, max_us: u64) {
        let us = self.below(max_us + 1);
        if us > 0 {
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
    }
}

/// The source of truth: a version per key.
#[derive(Default)]
struct Source {
    versions: Mutex<HashMap<u64, u64>>,
    /// Per key, the newest version whose write call has returned.
    returned: [AtomicU64; KEYS as usize],
}

impl Source {
    async fn read(&self, key: u64, rng: &mut Rng) -> u64 {
        rng.pause(1500).await;
        let v = *self.versions.lock().unwrap().get(&key).unwrap_or(&0);
        rng.pause(1500).await;
        v
    }

    async fn bump(&self, key: u64, rng: &mut Rng) -> u64 {
        rng.pause(1000).await;
        let mut versions = self.versions.lock().unwrap();
        let v = versions.entry(key).or_default();
        *v += 1;
        *v
    }
}

#[cache_read(key = "item:{key}", ttl = 300, tags = ["item:{key}"], cache = cache)]
async fn read_item(cache: &Cache, source: &Source, key: u64, rng: &mut Rng) -> Result<u64, String> {
    Ok(source.read(key, rng).await)
}

#[cache_write(tags = ["item:{key}"], cache = cache)]
async fn write_item(
    cache: &Cache,
    source: &Source,
    key: u64,
    rng: &mut Rng,
) -> Result<u64, String> {
    Ok(source.bump(key, rng).await)
}

/// How readers read.
#[derive(Clone, Copy, Debug)]
enum Reads {
    /// Through `#[cache_read]`.
    Cached,
    /// From the source, no cache: the control.
    Direct,
    /// get, else load and set, without a fill guard: must show stale reads.
    Naive,
}

async fn naive_read(cache: &Cache, source: &Source, key: u64, rng: &mut Rng) -> u64 {
    let k = format!("item:{key}");
    if let Some(v) = cache.get::<u64>(&k).await.unwrap() {
        return v;
    }
    let v = source.read(key, rng).await;
    cache
        .set(&k, &v)
        .ttl(Duration::from_secs(300))
        .tags([k.as_str()])
        .await
        .unwrap();
    v
}

struct Outcome {
    reads: usize,
    writes: usize,
    stale: usize,
}

/// Run the history on `caches` (readers and writers pick one each).
async fn run(name: &str, caches: &[Cache], reads: Reads, seed: u64) -> Outcome {
    let source = Arc::new(Source::default());
    let stale = Arc::new(AtomicUsize::new(0));
    let (read_count, write_count) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (cache, source, write_count) = (
            caches[w % caches.len()].clone(),
            source.clone(),
            write_count.clone(),
        );
        let mut rng = Rng(seed ^ (0x9E37_79B9 * (w as u64 + 1)) | 1);
        tasks.push(tokio::spawn(async move {
            for _ in 0..WRITES_EACH {
                let key = rng.below(KEYS);
                let v = write_item(&cache, &source, key, &mut rng).await.unwrap();
                source.returned[key as usize].fetch_max(v, Ordering::SeqCst);
                write_count.fetch_add(1, Ordering::SeqCst);
                rng.pause(3000).await;
            }
        }));
    }
    for r in 0..READERS {
        let (cache, source, stale, read_count) = (
            caches[(r + 1) % caches.len()].clone(),
            source.clone(),
            stale.clone(),
            read_count.clone(),
        );
        let mut rng = Rng(seed ^ (0x85EB_CA6B * (r as u64 + 7)) | 1);
        tasks.push(tokio::spawn(async move {
            for _ in 0..READS_EACH {
                let key = rng.below(KEYS);
                let floor = source.returned[key as usize].load(Ordering::SeqCst);
                let got = match reads {
                    Reads::Cached => read_item(&cache, &source, key, &mut rng).await.unwrap(),
                    Reads::Direct => source.read(key, &mut rng).await,
                    Reads::Naive => naive_read(&cache, &source, key, &mut rng).await,
                };
                if got < floor {
                    stale.fetch_add(1, Ordering::SeqCst);
                }
                read_count.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let outcome = Outcome {
        reads: read_count.load(Ordering::SeqCst),
        writes: write_count.load(Ordering::SeqCst),
        stale: stale.load(Ordering::SeqCst),
    };
    println!(
        "history [{name}, {reads:?}] seed={seed}: {} reads, {} writes, {} stale reads",
        outcome.reads, outcome.writes, outcome.stale
    );
    outcome
}

fn seed() -> u64 {
    std::env::var("LARDER_HISTORY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos());
            (nanos as u64) | 1
        })
}

async fn memory() -> Cache {
    larder::open("mem://").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_reads_on_memory() {
    let seed = seed();
    let outcome = run("memory", &[memory().await], Reads::Cached, seed).await;
    assert_eq!(outcome.reads, READERS * READS_EACH);
    assert_eq!(outcome.writes, WRITERS * WRITES_EACH);
    assert_eq!(
        outcome.stale, 0,
        "seed {seed}: stale reads through the cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_finds_nothing_without_a_cache_and_finds_a_naive_cache() {
    let seed = seed();
    let control = run("memory", &[memory().await], Reads::Direct, seed).await;
    assert_eq!(
        control.stale, 0,
        "seed {seed}: the checker flags the source itself"
    );
    let naive = run("memory", &[memory().await], Reads::Naive, seed).await;
    assert!(
        naive.stale > 0,
        "seed {seed}: the checker found no stale read in an unguarded read-through; it proves nothing"
    );
}

#[cfg(feature = "redis")]
mod redis {
    use larder_testkit::redis::{RedisCluster, RedisServer};

    use super::*;

    async fn connect(url: &str) -> Cache {
        let config = larder::CacheConfig {
            url: Some(url.to_owned()),
            prefix: "history".into(),
            ..larder::CacheConfig::default()
        };
        larder::connect(&config).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_stale_reads_on_redis_with_one_cache() {
        let server = RedisServer::start();
        let seed = seed();
        let outcome = run(
            "redis, one cache",
            &[connect(&server.url()).await],
            Reads::Cached,
            seed,
        )
        .await;
        assert_eq!(
            outcome.stale, 0,
            "seed {seed}: stale reads through the cache"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_stale_reads_on_redis_with_two_caches() {
        let server = RedisServer::start();
        let seed = seed();
        // Two caches with their own connection pools, as two processes.
        let caches = [connect(&server.url()).await, connect(&server.url()).await];
        let outcome = run("redis, two caches", &caches, Reads::Cached, seed).await;
        assert_eq!(
            outcome.stale, 0,
            "seed {seed}: stale reads through the cache"
        );
    }

    /// On a cluster the guard is windowed (stamps live on other slots): the
    /// test measures what is left of the window and prints it; the docs
    /// quote the figure. It fails only if the cluster does worse than the
    /// naive read-through did on memory.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stale_reads_on_a_cluster_are_measured() {
        let cluster = RedisCluster::start();
        let seed = seed();
        let caches = [connect(&cluster.url()).await, connect(&cluster.url()).await];
        let outcome = run("redis cluster, two caches", &caches, Reads::Cached, seed).await;
        assert!(
            outcome.stale * 100 < outcome.reads,
            "seed {seed}: {} of {} reads stale on the cluster",
            outcome.stale,
            outcome.reads
        );
    }
}
