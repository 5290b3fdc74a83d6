//! Behaviour specific to the sled backend, on real directories: restarts
//! and crashes across processes, the directory lock, damaged directories,
//! large values, the sweeper, the bound and the fill guard.
//!
//! Tests that need a second process re-run this test binary with
//! `--exact <child test>` and `LARDER_SLED_CHILD` naming the child's role;
//! without that variable the child tests return at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests: a panic is the failure report

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use larder_core::{
    Backend, Cache, Count, Error, Expiry, FillStore, FillToken, KeyTtl, WriteOptions,
};
use larder_sled::{FlushPolicy, SledBackend, SledConfig};

const CHILD: &str = "LARDER_SLED_CHILD";
const DIR: &str = "LARDER_SLED_DIR";
const CHECKPOINT: &str = "LARDER_SLED_CHECKPOINT";
const FLUSH: &str = "LARDER_SLED_FLUSH";
const PREFIX: &str = "LARDER_SLED_PREFIX";

/// Entries the restart test writes.
const RESTART_ENTRIES: u64 = 10_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .try_into()
        .unwrap()
}

/// The role this process plays, when it is a child.
fn child_role() -> Option<String> {
    std::env::var(CHILD).ok()
}

/// This test binary, running only the test `name` as a child with `envs`.
fn child(name: &str, envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Run a child to completion; its stdout, or a panic with everything it
/// said when it failed.
fn run_child(name: &str, envs: &[(&str, &str)]) -> String {
    let out = child(name, envs).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child {name} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "child {name} did not run its test:\n{stdout}"
    );
    stdout
}

fn config(dir: &Path) -> SledConfig {
    SledConfig::new(dir).cache_capacity(16 << 20)
}

/// A cache straight over the backend, without TTL jitter (the tests compare
/// TTLs across a restart) and with its errors returned.
fn cache(backend: &SledBackend) -> Cache {
    larder_testkit::bare_builder()
        .backend(backend.clone())
        .prefix("svc")
        .build()
        .unwrap()
}

fn restart_ttl(i: u64) -> Option<Duration> {
    (!i.is_multiple_of(100)).then(|| Duration::from_secs(600 + i % 600))
}

// ---------------------------------------------------------------- restart

/// 10,000 entries with TTLs and tags, closed, reopened by another process:
/// every value is there, every TTL within a second of what is left of it,
/// and the tags still invalidate.
#[test]
fn restart_in_a_new_process_keeps_values_ttls_and_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let written = tmp.path().join("written-at");
    let rt = runtime();
    let started = Instant::now();
    rt.block_on(async {
        let backend = config(&dir).open().unwrap();
        let c = cache(&backend);
        let mut log = std::fs::File::create(&written).unwrap();
        for i in 0..RESTART_ENTRIES {
            let at = now_ms();
            let tags = [format!("group:{}", i % 10), "all".to_owned()];
            let key = format!("item:{i}");
            let set = c.set(&key, &i).tags(tags);
            match restart_ttl(i) {
                Some(ttl) => set.ttl(ttl).await.unwrap(),
                None => set.no_expiry().await.unwrap(),
            };
            writeln!(log, "{i} {at}").unwrap();
        }
        log.sync_all().unwrap();
        c.close().await.unwrap();
    });
    let wrote = started.elapsed();
    let started = Instant::now();
    let out = run_child(
        "child_reads_after_restart",
        &[
            (DIR, dir.to_str().unwrap()),
            (CHECKPOINT, written.to_str().unwrap()),
        ],
    );
    println!(
        "restart: wrote {RESTART_ENTRIES} entries in {wrote:?}; the child reopened and checked \
         them in {:?}",
        started.elapsed()
    );
    assert!(out.contains("restart child: 10000 entries"), "{out}");
    for line in out
        .lines()
        .filter(|l| l.contains("reopened in") || l.contains("worst TTL"))
    {
        println!("restart child: {line}");
    }
}

/// The second half of the restart test, in its own process.
#[test]
fn child_reads_after_restart() {
    if child_role().as_deref() != Some("child_reads_after_restart") {
        return;
    }
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    let written: Vec<(u64, u64)> = std::fs::read_to_string(std::env::var(CHECKPOINT).unwrap())
        .unwrap()
        .lines()
        .map(|l| {
            let (i, at) = l.split_once(' ').unwrap();
            (i.parse().unwrap(), at.parse().unwrap())
        })
        .collect();
    assert_eq!(written.len() as u64, RESTART_ENTRIES);
    let rt = runtime();
    rt.block_on(async {
        let opened = Instant::now();
        let backend = config(&dir).open().unwrap();
        println!("reopened in {:?}", opened.elapsed());
        let c = cache(&backend);
        let mut worst = Duration::ZERO;
        for &(i, at) in &written {
            let entry = c
                .get_entry(&format!("item:{i}"))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("item:{i} is missing after the restart"));
            assert_eq!(entry.decode::<u64>().unwrap(), i);
            let mut tags = entry.tags.clone();
            tags.sort();
            let mut expected = vec!["all".to_owned(), format!("group:{}", i % 10)];
            expected.sort();
            assert_eq!(tags, expected, "tags of item:{i}");
            match (restart_ttl(i), entry.expiry) {
                (None, Expiry::Never) => {}
                (Some(ttl), Expiry::After(left)) => {
                    let elapsed = Duration::from_millis(now_ms().saturating_sub(at));
                    let expected = ttl.saturating_sub(elapsed);
                    let off = left.abs_diff(expected);
                    assert!(
                        off < Duration::from_secs(1),
                        "item:{i}: {left:?} left, expected {expected:?}"
                    );
                    worst = worst.max(off);
                }
                (ttl, expiry) => panic!("item:{i}: ttl {ttl:?}, read back {expiry:?}"),
            }
        }
        println!("worst TTL difference: {worst:?}");
        // Tags still reach their members.
        assert_eq!(
            c.invalidate_tag("group:3").await.unwrap(),
            Count::Exact(1000)
        );
        for i in (3..RESTART_ENTRIES).step_by(10) {
            assert!(!c.exists(&format!("item:{i}")).await.unwrap(), "item:{i}");
        }
        assert!(c.exists("item:4").await.unwrap());
        assert_eq!(c.invalidate_tag("all").await.unwrap(), Count::Exact(9000));
        assert!(!c.exists("item:4").await.unwrap());
        let raw = backend
            .sync()
            .tag_index(&c.namespace().tag("all").unwrap())
            .unwrap();
        assert!(raw.is_empty(), "{} rows left in the index", raw.len());
        c.close().await.unwrap();
    });
    println!("restart child: {RESTART_ENTRIES} entries");
}

// ---------------------------------------------------------------- crash

/// Write `checkpoint` durably: to a temporary file, fsync'd, renamed over
/// the checkpoint (a rename is atomic, so a kill never leaves half a
/// number).
fn write_checkpoint(path: &Path, n: u64) {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(n.to_string().as_bytes()).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn read_checkpoint(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

fn crash_key(prefix: &str, i: u64) -> String {
    format!("crash:v1:{prefix}:{i}")
}

fn crash_value(i: u64) -> Bytes {
    Bytes::from(format!("value {i} {}", "x".repeat(200)))
}

/// The writer a crash test kills: writes without end (60 s at most) and
/// records how many writes are safe. `always` (`flush=always`): each write
/// is flushed before `set` returns, so the checkpoint follows every write.
/// `interval` (`flush=interval`): every 50 writes it calls `flush()`, then
/// checkpoints the writes acknowledged before it. `interval-timed`
/// (`flush=interval`, `flush_every=100ms`, no explicit flush): it appends
/// each acknowledged write with the time it was acknowledged to a log, for
/// the parent to check that every write older than the flush period (with
/// a wide margin) survived.
#[test]
fn child_writes_until_killed() {
    if child_role().as_deref() != Some("child_writes_until_killed") {
        return;
    }
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    let checkpoint = PathBuf::from(std::env::var(CHECKPOINT).unwrap());
    let prefix = std::env::var(PREFIX).unwrap();
    let mode = std::env::var(FLUSH).unwrap();
    let config = match mode.as_str() {
        "always" => config(&dir).flush(FlushPolicy::Always),
        "interval" => config(&dir).flush(FlushPolicy::Interval),
        _ => config(&dir)
            .flush(FlushPolicy::Interval)
            .flush_every(Duration::from_millis(100)),
    };
    let rt = runtime();
    rt.block_on(async {
        let backend = config.open().unwrap();
        let options = WriteOptions::new()
            .ttl(Duration::from_secs(3600))
            .tags(["crash:v1:tag"]);
        let mut log = std::fs::File::create(checkpoint.with_extension("log")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut i = 0;
        while Instant::now() < deadline {
            backend
                .set(&crash_key(&prefix, i), crash_value(i), &options)
                .await
                .unwrap();
            i += 1;
            match mode.as_str() {
                "always" => write_checkpoint(&checkpoint, i),
                "interval" if i % 50 == 0 => {
                    backend.flush().await.unwrap();
                    write_checkpoint(&checkpoint, i);
                }
                "interval" => {}
                _ => {
                    writeln!(log, "{i} {}", now_ms()).unwrap();
                    log.sync_data().unwrap();
                    if i % 100 == 0 {
                        write_checkpoint(&checkpoint, i);
                    }
                }
            }
        }
    });
}

/// How many writes of an `interval-timed` writer were acknowledged at least
/// `age` before `killed_at` (ms): the last complete line of its log that
/// old.
fn acknowledged_before(log: &Path, killed_at: u64, age: Duration) -> u64 {
    let limit = killed_at.saturating_sub(u64::try_from(age.as_millis()).unwrap());
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (i, at) = l.split_once(' ')?;
            Some((i.parse::<u64>().ok()?, at.parse::<u64>().ok()?))
        })
        .filter(|&(_, at)| at <= limit)
        .map(|(i, _)| i)
        .max()
        .unwrap_or(0)
}

/// Kill a writer with SIGKILL three times over one directory; each time
/// the directory reopens and holds every write the checkpoint vouches for
/// (for `interval-timed`: every write acknowledged 3 s or more before the
/// kill, thirty flush periods: a wide margin for a loaded machine).
fn crash(flush: &str, target: u64, min_run: Duration) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let rt = runtime();
    for round in 0..3 {
        let checkpoint = tmp.path().join(format!("checkpoint-{round}"));
        let stderr = tmp.path().join(format!("stderr-{round}"));
        let prefix = format!("r{round}");
        let mut writer = child(
            "child_writes_until_killed",
            &[
                (DIR, dir.to_str().unwrap()),
                (CHECKPOINT, checkpoint.to_str().unwrap()),
                (FLUSH, flush),
                (PREFIX, &prefix),
            ],
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
        let spawned = Instant::now();
        let deadline = spawned + Duration::from_secs(60);
        while read_checkpoint(&checkpoint) < target || spawned.elapsed() < min_run {
            assert!(Instant::now() < deadline, "the writer made no progress");
            if writer.try_wait().unwrap().is_some() {
                panic!(
                    "the writer stopped on its own:\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Land somewhere inside a write.
        std::thread::sleep(Duration::from_millis(13 * (round + 1)));
        writer.kill().unwrap(); // SIGKILL
        let killed_at = now_ms();
        writer.wait().unwrap();
        let vouched = if flush == "interval-timed" {
            acknowledged_before(
                &checkpoint.with_extension("log"),
                killed_at,
                Duration::from_secs(3),
            )
        } else {
            read_checkpoint(&checkpoint)
        };
        std::fs::write(
            tmp.path().join(format!("vouched-{round}")),
            vouched.to_string(),
        )
        .unwrap();
        rt.block_on(async {
            let reopened = Instant::now();
            let backend = config(&dir).open().unwrap();
            let took = reopened.elapsed();
            for r in 0..=round {
                let prefix = format!("r{r}");
                let vouched = read_checkpoint(&tmp.path().join(format!("vouched-{r}")));
                for i in 0..vouched {
                    let got = backend.get(&crash_key(&prefix, i)).await.unwrap();
                    assert_eq!(
                        got.as_deref(),
                        Some(&crash_value(i)[..]),
                        "round {r}: write {i} of {vouched} vouched for is missing"
                    );
                }
            }
            let mut extra = 0;
            while backend
                .get(&crash_key(&prefix, vouched + extra))
                .await
                .unwrap()
                .is_some()
            {
                extra += 1;
            }
            println!(
                "crash flush={flush} round {round}: {vouched} writes vouched for, all present, \
                 {extra} more survived; reopened in {took:?}"
            );
            backend.close().await.unwrap();
        });
    }
}

/// `flush=always`: every acknowledged write survives SIGKILL.
#[test]
fn crash_with_flush_always_keeps_every_acknowledged_write() {
    crash("always", 200, Duration::ZERO);
}

/// `flush=interval`: every write acknowledged before a finished `flush()`
/// survives SIGKILL.
#[test]
fn crash_with_flush_interval_keeps_every_flushed_write() {
    crash("interval", 1000, Duration::ZERO);
}

/// `flush=interval` without explicit flushes: sled's background flush
/// (every 100 ms here) makes every write durable within a period; writes
/// acknowledged 3 s before a SIGKILL all survive.
#[test]
fn crash_with_flush_interval_loses_at_most_the_last_period() {
    crash("interval-timed", 500, Duration::from_secs(6));
}

// ---------------------------------------------------------------- the lock

/// Tries to open a directory another process holds.
#[test]
fn child_opens_a_directory_in_use() {
    if child_role().as_deref() != Some("child_opens_a_directory_in_use") {
        return;
    }
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    match SledBackend::open(&format!("sled://{}", dir.display())) {
        Ok(_) => panic!("opened a directory another process holds"),
        Err(e @ Error::Unavailable { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&dir.display().to_string()), "{text}");
            assert!(text.contains("in use"), "{text}");
            println!("in-use error: {text}");
        }
        Err(other) => panic!("wrong error: {other:?}"),
    }
}

/// Opens a directory and reads what the parent wrote.
#[test]
fn child_opens_a_released_directory() {
    if child_role().as_deref() != Some("child_opens_a_released_directory") {
        return;
    }
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    let rt = runtime();
    rt.block_on(async {
        let backend = config(&dir).open().unwrap();
        let got = backend.get("svc:v1:k").await.unwrap();
        assert_eq!(got.as_deref(), Some(&b"v"[..]));
        backend.close().await.unwrap();
    });
}

/// A second process gets a clear error naming the directory while the first
/// has it open, and opens it once the first has closed it.
#[test]
fn a_directory_in_use_is_a_clear_error_in_another_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let rt = runtime();
    let backend = config(&dir).open().unwrap();
    rt.block_on(async {
        backend
            .set("svc:v1:k", Bytes::from_static(b"v"), &WriteOptions::new())
            .await
            .unwrap();
    });
    let out = run_child(
        "child_opens_a_directory_in_use",
        &[(DIR, dir.to_str().unwrap())],
    );
    assert!(out.contains("in-use error"), "{out}");
    // In this process too: a second open of the same directory.
    let err = config(&dir).open().unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    rt.block_on(backend.close()).unwrap();
    run_child(
        "child_opens_a_released_directory",
        &[(DIR, dir.to_str().unwrap())],
    );
}

// ---------------------------------------------------------------- damage

/// Files that are not a sled database, a damaged log, a path that is a
/// file: each is an error naming the directory, never a panic.
#[test]
fn damaged_directories_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    let rt = runtime();
    rt.block_on(async {
        let backend = config(&good).open().unwrap();
        let options = WriteOptions::new();
        for i in 0..500 {
            backend
                .set(
                    &format!("svc:v1:{i}"),
                    Bytes::from(vec![b'x'; 500]),
                    &options,
                )
                .await
                .unwrap();
        }
        backend.close().await.unwrap();
    });
    let copy = |name: &str| {
        let to = tmp.path().join(name);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&good).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
        to
    };
    let flipped = copy("flipped");
    let mut log = std::fs::read(flipped.join("db")).unwrap();
    for b in log.iter_mut().skip(16) {
        *b ^= 0x5a;
    }
    std::fs::write(flipped.join("db"), log).unwrap();
    let zeroed = copy("zeroed");
    let len = std::fs::metadata(zeroed.join("db")).unwrap().len();
    std::fs::write(zeroed.join("db"), vec![0u8; usize::try_from(len).unwrap()]).unwrap();
    let bad_conf = copy("bad-conf");
    std::fs::write(bad_conf.join("conf"), b"not a sled config\n").unwrap();
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("db"), b"SQLite format 3\0 and then some").unwrap();
    std::fs::write(foreign.join("conf"), b"segment_size: 1\n").unwrap();
    for dir in [&flipped, &zeroed, &bad_conf, &foreign] {
        let err = config(dir).open().unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Backend { .. }), "{err:?}");
        assert!(text.contains(&dir.display().to_string()), "{text}");
        assert!(text.contains("corrupted"), "{text}");
    }
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let text = config(&file).open().unwrap_err().to_string();
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains("not a directory"), "{text}");
    // The good one still opens.
    config(&good).open().unwrap();
}

// ---------------------------------------------------------------- values

/// A 1 MiB value is stored, read back whole, and survives a reopen; a value
/// over `max_value_size` is refused and stores nothing.
#[test]
fn one_mib_values_and_the_size_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let big: Bytes = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let options = WriteOptions::new()
        .ttl(Duration::from_secs(600))
        .tags(["svc:v1:big"]);
    let rt = runtime();
    rt.block_on(async {
        let backend = config(&dir).max_value_size(2 << 20).open().unwrap();
        assert!(
            backend
                .set("svc:v1:big", big.clone(), &options)
                .await
                .unwrap()
        );
        assert_eq!(backend.get("svc:v1:big").await.unwrap(), Some(big.clone()));
        let too_big = Bytes::from(vec![0u8; 3 << 20]);
        let err = backend
            .set("svc:v1:huge", too_big, &options)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::PayloadTooLarge { limit, .. } if limit == 2 << 20),
            "{err:?}"
        );
        assert!(!backend.exists("svc:v1:huge").await.unwrap());
        backend.close().await.unwrap();
        let backend = config(&dir).open().unwrap();
        let entry = backend.get_entry("svc:v1:big").await.unwrap().unwrap();
        assert_eq!(entry.value, big);
        assert_eq!(entry.tags, vec!["svc:v1:big".to_owned()]);
        backend.close().await.unwrap();
    });
}

// ---------------------------------------------------------------- sweeper

/// The sweeper removes expired entries with their tag and expiry rows on
/// its own; `close` stops it and later operations say the backend is
/// closed; the directory then opens again in this process.
#[test]
fn the_sweeper_removes_expired_entries_and_close_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let rt = runtime();
    rt.block_on(async {
        let backend = config(&dir)
            .sweep_every(Duration::from_millis(100))
            .sweep_batch(7)
            .max_entries(10_000)
            .open()
            .unwrap();
        let short = WriteOptions::new()
            .ttl(Duration::from_millis(300))
            .tags(["svc:v1:t"]);
        let long = WriteOptions::new()
            .ttl(Duration::from_secs(600))
            .tags(["svc:v1:t"]);
        for i in 0..50 {
            backend
                .set(
                    &format!("svc:v1:short:{i}"),
                    Bytes::from_static(b"1"),
                    &short,
                )
                .await
                .unwrap();
        }
        backend
            .set("svc:v1:long", Bytes::from_static(b"1"), &long)
            .await
            .unwrap();
        backend
            .lock("svc:v1:l", "me", Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!(backend.sync().entry_count(), Some(51));
        let deadline = Instant::now() + Duration::from_secs(20);
        while backend.sync().entry_count() != Some(1) {
            assert!(
                Instant::now() < deadline,
                "{:?}",
                backend.sync().entry_count()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let index = backend.sync().tag_index("svc:v1:t").unwrap();
        assert_eq!(index, vec!["svc:v1:long".to_owned()]);
        assert_eq!(backend.purge_expired().await.unwrap(), 0);
        // The expired lock is free (and was swept).
        assert!(
            backend
                .lock("svc:v1:l", "you", Duration::from_secs(5))
                .await
                .unwrap()
        );

        backend.close().await.unwrap();
        let err = backend.get("svc:v1:long").await.unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
        backend.close().await.unwrap();
        drop(backend);
        let again = config(&dir).open().unwrap();
        assert!(again.exists("svc:v1:long").await.unwrap());
        again.close().await.unwrap();
    });
}

// ---------------------------------------------------------------- bound

/// Beyond `max_entries` the soonest-expiring entries go, with their index
/// rows.
#[test]
fn the_bound_evicts_soonest_expiring_first() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let backend = config(&tmp.path().join("cache"))
            .max_entries(50)
            .open()
            .unwrap();
        for i in 0..500u64 {
            // Later keys expire sooner: the bound keeps the late-expiring
            // early keys.
            let options = WriteOptions::new()
                .ttl(Duration::from_secs(10_000 - i))
                .tags(["svc:v1:all"]);
            backend
                .set(
                    &format!("svc:v1:{i:03}"),
                    Bytes::from_static(b"1"),
                    &options,
                )
                .await
                .unwrap();
        }
        let count = backend.sync().entry_count().unwrap();
        assert!(count <= 51, "{count} entries over a bound of 50");
        assert!(backend.evictions().unwrap() >= 449);
        let index: HashSet<String> = backend
            .sync()
            .tag_index("svc:v1:all")
            .unwrap()
            .into_iter()
            .collect();
        let live: HashSet<String> = backend
            .scan("svc:v1:*", 1000)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(index, live, "the index holds exactly the live keys");
        assert!(live.contains("svc:v1:000"), "the longest-lived stays");
        assert!(!live.contains("svc:v1:498"), "a soon-expiring one goes");
        backend.close().await.unwrap();
    });
}

// ---------------------------------------------------------------- fill guard

/// A fill is refused after a delete, a tag invalidation, a pattern delete
/// or a clear of its namespace; stored after an invalidation elsewhere;
/// refused when its token is older than `MAX_FILL_AGE`.
#[test]
fn the_fill_guard_refuses_stores_across_invalidations() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let b = config(&tmp.path().join("cache")).open().unwrap();
        let options = WriteOptions::new()
            .ttl(Duration::from_secs(60))
            .tags(["svc:v1:t"]);
        let v = || Bytes::from_static(b"loaded");
        let k = "svc:v1:k";

        let (_, token) = b.begin_fill(k).await.unwrap();
        b.delete(&[k.to_owned()]).await.unwrap();
        assert_eq!(
            b.set_filled(k, v(), &options, token).await.unwrap(),
            FillStore::Refused
        );

        let (_, token) = b.begin_fill(k).await.unwrap();
        b.invalidate_tags(&["svc:v1:t".to_owned()]).await.unwrap();
        assert_eq!(
            b.set_filled(k, v(), &options, token).await.unwrap(),
            FillStore::Refused
        );

        let (_, token) = b.begin_fill(k).await.unwrap();
        b.delete_matching("svc:v1:*").await.unwrap();
        assert_eq!(
            b.set_filled(k, v(), &options, token).await.unwrap(),
            FillStore::Refused
        );

        let (_, token) = b.begin_fill(k).await.unwrap();
        b.clear("svc:v1:").await.unwrap();
        assert_eq!(
            b.set_filled(k, v(), &options, token).await.unwrap(),
            FillStore::Refused
        );

        let (_, token) = b.begin_fill(k).await.unwrap();
        b.clear("svc:v10:").await.unwrap();
        b.delete(&["svc:v1:other".to_owned()]).await.unwrap();
        assert_eq!(
            b.set_filled(k, v(), &options, token).await.unwrap(),
            FillStore::Stored
        );
        assert_eq!(b.get(k).await.unwrap(), Some(v()));

        let (_, token) = b.begin_fill("svc:v1:fresh").await.unwrap();
        assert_eq!(
            b.set_filled("svc:v1:fresh", v(), &options, token)
                .await
                .unwrap(),
            FillStore::Stored
        );
        let old = FillToken::new(1);
        assert_eq!(
            b.set_filled("svc:v1:stale", v(), &options, old)
                .await
                .unwrap(),
            FillStore::Refused
        );
        b.close().await.unwrap();
    });
}

// ---------------------------------------------------------------- identity

/// The URL form opens, names the directory in the label, and reports its
/// policy in the health details.
#[test]
fn url_label_and_health() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let rt = runtime();
    rt.block_on(async {
        let backend = SledBackend::open(&format!("sled://{}?flush=always", dir.display())).unwrap();
        assert_eq!(backend.kind(), "sled");
        assert_eq!(backend.label(), format!("sled@{}", dir.display()));
        assert_eq!(backend.config().flush, FlushPolicy::Always);
        let caps = backend.capabilities();
        assert!(caps.persistent && !caps.shared && caps.exact_counts);
        let health = backend.health().await.unwrap();
        assert!(health.is_healthy(), "{health:?}");
        assert!(
            health
                .details
                .iter()
                .any(|(k, v)| k == "flush" && v == "always"),
            "{health:?}"
        );
        backend
            .set("svc:v1:n", Bytes::from_static(b"1"), &WriteOptions::new())
            .await
            .unwrap();
        assert_eq!(backend.ttl("svc:v1:n").await.unwrap(), KeyTtl::Persistent);
        backend.close().await.unwrap();
        let health = backend.health().await.unwrap();
        assert!(!health.is_healthy());
    });
}
