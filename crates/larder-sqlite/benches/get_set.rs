//! The SQLite backend on a database file (WAL, `synchronous=NORMAL`):
//! a hit, a miss and a set through the `Backend` trait, each awaited alone;
//! then the throughput of concurrent sets (which the writer batches into
//! shared transactions) and concurrent hits, and one summary line for the
//! docs.
//!
//!     cargo bench -p larder-sqlite --bench get_set
//!
//! The database lives in the system's temporary directory (on this
//! machine, the same disk as the rest).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)] // a bench: panics are failures

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use larder_core::{Backend, WriteOptions};
use larder_sqlite::{SqliteBackend, SqliteConfig};

/// A value of the size of a small JSON record.
const VALUE: &[u8] = &[b'x'; 200];
const KEYS: u64 = 10_000;

struct Fixture {
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
    backend: Arc<SqliteBackend>,
}

impl Fixture {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("larder-sqlite-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let backend =
            Arc::new(SqliteBackend::with_config(SqliteConfig::file(dir.join("bench.db"))).unwrap());
        let options = WriteOptions::new().ttl(Duration::from_secs(3600));
        rt.block_on(async {
            let entries: Vec<(String, Bytes)> = (0..KEYS)
                .map(|i| (format!("svc:v1:k{i}"), Bytes::from_static(VALUE)))
                .collect();
            backend.set_many(&entries, &options).await.unwrap();
        });
        Fixture { dir, rt, backend }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let backend = self.backend.clone();
        let _ = self.rt.block_on(async move { backend.close().await });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn latency(c: &mut Criterion, f: &Fixture) {
    let backend = &f.backend;
    let options = WriteOptions::new().ttl(Duration::from_secs(3600));
    let mut group = c.benchmark_group("sqlite_file");
    let mut i = 0u64;
    group.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let key = format!("svc:v1:k{i}");
            black_box(f.rt.block_on(backend.get(&key)).unwrap())
        })
    });
    group.bench_function("get_miss", |b| {
        b.iter(|| black_box(f.rt.block_on(backend.get("svc:v1:absent")).unwrap()))
    });
    let mut n = 0u64;
    group.bench_function("set", |b| {
        b.iter(|| {
            n += 1;
            let key = format!("svc:v1:s{}", n % KEYS);
            black_box(
                f.rt.block_on(backend.set(&key, Bytes::from_static(VALUE), &options))
                    .unwrap(),
            )
        })
    });
    group.finish();
}

/// Mean time of `op` over `runs` sequential calls.
fn mean(runs: u32, mut op: impl FnMut(u32)) -> Duration {
    let started = Instant::now();
    for i in 0..runs {
        op(i);
    }
    started.elapsed() / runs
}

/// Operations per second of `tasks` concurrent tasks for `duration`.
fn throughput(f: &Fixture, tasks: u64, duration: Duration, write: bool) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    f.rt.block_on(async {
        let mut handles = Vec::new();
        for t in 0..tasks {
            let (backend, done) = (f.backend.clone(), done.clone());
            handles.push(tokio::spawn(async move {
                let options = WriteOptions::new().ttl(Duration::from_secs(3600));
                let mut i = t;
                while started.elapsed() < duration {
                    let key = format!("svc:v1:k{}", i % KEYS);
                    if write {
                        backend
                            .set(&key, Bytes::from_static(VALUE), &options)
                            .await
                            .unwrap();
                    } else {
                        black_box(backend.get(&key).await.unwrap());
                    }
                    i += tasks;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// One line with the figures, for `docs/backends/sqlite.md`.
fn summary(f: &Fixture) {
    let backend = &f.backend;
    let options = WriteOptions::new().ttl(Duration::from_secs(3600));
    let hit = mean(20_000, |i| {
        let key = format!("svc:v1:k{}", u64::from(i) % KEYS);
        black_box(f.rt.block_on(backend.get(&key)).unwrap());
    });
    let miss = mean(20_000, |_| {
        black_box(f.rt.block_on(backend.get("svc:v1:absent")).unwrap());
    });
    let set = mean(5_000, |i| {
        let key = format!("svc:v1:s{i}");
        black_box(
            f.rt.block_on(backend.set(&key, Bytes::from_static(VALUE), &options))
                .unwrap(),
        );
    });
    let sets = throughput(f, 64, Duration::from_secs(3), true);
    let gets = throughput(f, 64, Duration::from_secs(3), false);
    println!(
        "sqlite file (WAL, synchronous=NORMAL, 200-byte values, {KEYS} keys): \
         get hit {:.1} µs, get miss {:.1} µs, set {:.1} µs (one at a time); \
         64 tasks: {:.0} sets/s, {:.0} hits/s",
        hit.as_secs_f64() * 1e6,
        miss.as_secs_f64() * 1e6,
        set.as_secs_f64() * 1e6,
        sets,
        gets
    );
}

fn main() {
    let fixture = Fixture::new();
    let mut criterion = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    latency(&mut criterion, &fixture);
    criterion.final_summary();
    summary(&fixture);
}
