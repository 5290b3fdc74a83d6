//! Latency of `get` (hit, miss) and `set` on a sled directory in a
//! temporary directory, through the `Backend` trait (the blocking adapter
//! included) and directly on the synchronous `SyncSled`:
//!
//!     CARGO_TARGET_DIR=/work/target-sled cargo bench -p larder-sled --bench get_set
//!
//! Values are 100 bytes with one tag and a one-hour TTL. After the
//! criterion groups it prints one summary line per flush policy for the
//! docs: mean latency of each operation awaited one at a time, and the
//! throughput of 8 concurrent tasks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a bench binary: failing loudly is right

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use larder_core::{Backend, BlockingBackend, WriteOptions};
use larder_sled::{FlushPolicy, SledBackend, SledConfig};

const KEYS: usize = 10_000;
const TASKS: usize = 8;

fn options() -> WriteOptions {
    WriteOptions::new()
        .ttl(Duration::from_secs(3600))
        .tags(["bench:v1:tag"])
}

fn value() -> Bytes {
    Bytes::from(vec![b'x'; 100])
}

fn key(i: usize) -> String {
    format!("bench:v1:key:{i}")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A backend over a fresh directory holding `KEYS` entries.
fn filled(rt: &tokio::runtime::Runtime, flush: FlushPolicy) -> (SledBackend, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let backend = SledConfig::new(dir.path().join("db"))
        .flush(FlushPolicy::Interval)
        .open()
        .unwrap();
    let options = options();
    rt.block_on(async {
        for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
            let entries: Vec<(String, Bytes)> = chunk.iter().map(|&i| (key(i), value())).collect();
            backend.set_many(&entries, &options).await.unwrap();
        }
        backend.flush().await.unwrap();
    });
    drop(backend);
    let backend = SledConfig::new(dir.path().join("db"))
        .flush(flush)
        .open()
        .unwrap();
    (backend, dir)
}

#[derive(Clone, Copy)]
enum Op {
    Hit,
    Miss,
    Set,
}

/// A criterion `iter_custom` routine: `iters` operations awaited one at a
/// time, keys striding through the filled set.
fn timed<'a>(
    rt: &'a tokio::runtime::Runtime,
    backend: &SledBackend,
    op: Op,
) -> impl FnMut(u64) -> Duration + 'a {
    let backend = backend.clone();
    let options = options();
    move |iters| {
        rt.block_on(async {
            let started = Instant::now();
            for i in 0..iters {
                let k = key(usize::try_from(i).unwrap() * 7919 % KEYS);
                match op {
                    Op::Hit => black_box(backend.get(&k).await.unwrap().is_some()),
                    Op::Miss => black_box(backend.get("bench:v1:absent").await.unwrap().is_some()),
                    Op::Set => black_box(backend.set(&k, value(), &options).await.unwrap()),
                };
            }
            started.elapsed()
        })
    }
}

fn get_set(c: &mut Criterion) {
    let rt = runtime();
    let (backend, _dir) = filled(&rt, FlushPolicy::Interval);
    let options = options();
    let mut group = c.benchmark_group("sled");
    group.bench_function("get_hit", |b| b.iter_custom(timed(&rt, &backend, Op::Hit)));
    group.bench_function("get_miss", |b| {
        b.iter_custom(timed(&rt, &backend, Op::Miss))
    });
    group.bench_function("set", |b| b.iter_custom(timed(&rt, &backend, Op::Set)));
    let sync = backend.sync().clone();
    let mut n = 0usize;
    group.bench_function("sync_get_hit", |b| {
        b.iter(|| {
            n = (n + 7919) % KEYS;
            black_box(BlockingBackend::get(&*sync, &key(n)).unwrap())
        })
    });
    group.bench_function("sync_set", |b| {
        b.iter(|| {
            n = (n + 7919) % KEYS;
            black_box(BlockingBackend::set(&*sync, &key(n), value(), &options).unwrap())
        })
    });
    drop(sync);
    let (always, _always_dir) = filled(&rt, FlushPolicy::Always);
    group.bench_function("set_flush_always", |b| {
        b.iter_custom(timed(&rt, &always, Op::Set))
    });
    group.finish();
}

/// Mean latency of `op` awaited `rounds` times, in microseconds.
async fn latency<F, Fut>(rounds: usize, mut op: F) -> f64
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    for i in 0..rounds {
        op(i).await;
    }
    started.elapsed().as_secs_f64() * 1e6 / rounds as f64
}

/// Operations per second of `TASKS` tasks sharing `total` operations.
async fn throughput(backend: &SledBackend, total: usize, write: bool) -> f64 {
    let per_task = total / TASKS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let backend = backend.clone();
            tokio::spawn(async move {
                let options = options();
                for i in 0..per_task {
                    let k = key((t * per_task + i) * 7919 % KEYS);
                    if write {
                        backend.set(&k, value(), &options).await.unwrap();
                    } else {
                        black_box(backend.get(&k).await.unwrap());
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (per_task * TASKS) as f64 / started.elapsed().as_secs_f64()
}

/// One line per flush policy for docs/backends/sled.md.
fn summary(_: &mut Criterion) {
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 50 } else { 20_000 };
    let rt = runtime();
    for flush in [FlushPolicy::Interval, FlushPolicy::Always] {
        let (backend, _dir) = filled(&rt, flush);
        let set_rounds = if flush == FlushPolicy::Always {
            rounds / 20
        } else {
            rounds
        };
        let line = rt.block_on(async {
            let options = options();
            let hit = latency(rounds, |i| {
                let (backend, k) = (&backend, key(i * 7919 % KEYS));
                async move {
                    assert!(backend.get(&k).await.unwrap().is_some());
                }
            })
            .await;
            let miss = latency(rounds, |_| async {
                assert!(backend.get("bench:v1:absent").await.unwrap().is_none());
            })
            .await;
            let set = latency(set_rounds, |i| {
                let (backend, options, k) = (&backend, &options, key(i * 7919 % KEYS));
                async move {
                    backend.set(&k, value(), options).await.unwrap();
                }
            })
            .await;
            let gets = throughput(&backend, rounds, false).await;
            let sets = throughput(&backend, set_rounds, true).await;
            format!(
                "sled flush={flush}: get hit {hit:.1} µs, get miss {miss:.1} µs, set {set:.1} µs \
                 (one at a time); {gets:.0} gets/s, {sets:.0} sets/s ({TASKS} tasks); \
                 100-byte values, 1 tag, {KEYS} keys"
            )
        });
        println!("{line}");
    }
    println!("{}", space(&rt));
}

/// Bytes in the files under `dir`.
fn du(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// sled's space growth: the directory's size filled, after overwriting
/// every entry ten times, and after deleting them all.
fn space(rt: &tokio::runtime::Runtime) -> String {
    let (backend, dir) = filled(rt, FlushPolicy::Interval);
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let filled = du(dir.path());
    let options = options();
    rt.block_on(async {
        for _ in 0..10 {
            for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
                let entries: Vec<(String, Bytes)> =
                    chunk.iter().map(|&i| (key(i), value())).collect();
                backend.set_many(&entries, &options).await.unwrap();
            }
        }
        backend.flush().await.unwrap();
    });
    let overwritten = du(dir.path());
    rt.block_on(async {
        let keys: Vec<String> = (0..KEYS).map(key).collect();
        backend.delete(&keys).await.unwrap();
        backend.flush().await.unwrap();
    });
    let deleted = du(dir.path());
    format!(
        "sled disk: {KEYS} entries of 100 bytes: {:.1} MiB; after overwriting each 10 times: \
         {:.1} MiB; after deleting them all: {:.1} MiB",
        mib(filled),
        mib(overwritten),
        mib(deleted)
    )
}

criterion_group!(benches, get_set, summary);
criterion_main!(benches);
