//! Behaviour specific to the SQLite backend, on real files: restart in a
//! new process, SIGKILL during writes, 200 concurrent tasks, the sweeper,
//! close and drop, and every failure mode's error.
//!
//! The restart and crash tests re-run this test binary as a child process
//! (`child_process`, selected by the `LARDER_SQLITE_CHILD` variable); run
//! alone, that test does nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
#![allow(clippy::print_stderr)] // figures for the docs, with --nocapture

mod common;

use std::collections::HashSet;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use larder_core::{Backend, Count, Error, Expiry, WriteOptions};
use larder_sqlite::{SqliteBackend, SqliteConfig};

use common::{TempDir, open};

const CHILD: &str = "LARDER_SQLITE_CHILD";
const DB: &str = "LARDER_SQLITE_DB";
const CHECKPOINT: &str = "LARDER_SQLITE_CHECKPOINT";
const START: &str = "LARDER_SQLITE_START";
const WRITE_FROM: &str = "LARDER_SQLITE_WRITE_FROM";
const WRITE_TO: &str = "LARDER_SQLITE_WRITE_TO";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// This test binary again, running only `child_process` with `vars`.
fn spawn_child(mode: &str, vars: &[(&str, String)]) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        command.env(k, v);
    }
    command.spawn().expect("spawn the child process")
}

/// Wait for `child` (at most `limit`) and fail with its output unless it
/// succeeded.
fn expect_success(child: Child, limit: Duration) {
    let id = child.id();
    let started = Instant::now();
    let mut child = child;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("child {id} ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

/// The entry point of the child processes; does nothing in a normal run.
#[test]
fn child_process() {
    match std::env::var(CHILD).as_deref() {
        Ok("restart") => restart_child(),
        Ok("crash") => crash_child(),
        _ => {}
    }
}

// ---------------------------------------------------------------- restart

const RESTART_ENTRIES: u64 = 10_000;

fn restart_ttl(i: u64) -> Duration {
    Duration::from_secs(3600 + i % 100)
}

fn restart_key(i: u64) -> String {
    format!("r:v1:k{i}")
}

fn restart_tag(i: u64) -> String {
    format!("r:v1:t{}", i % 10)
}

/// 10,000 entries with TTLs and tags, `close`, then a new process finds
/// them all, with TTLs within a second, and their tags invalidate.
#[test]
fn restart_in_a_new_process_keeps_values_ttls_and_tags() {
    let dir = TempDir::new("restart");
    let path = dir.file("cache.db");
    let rt = runtime();
    let (from, to) = rt.block_on(async {
        let backend = Arc::new(open(&path));
        let from = now_ms();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..100u64 {
            let backend = backend.clone();
            tasks.push(tokio::spawn(async move {
                for i in (t * 100)..(t * 100 + 100) {
                    let options = WriteOptions::new()
                        .ttl(restart_ttl(i))
                        .tags([restart_tag(i)]);
                    let value = Bytes::from(format!("v{i}"));
                    assert!(backend.set(&restart_key(i), value, &options).await.unwrap());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let to = now_ms();
        eprintln!(
            "restart: wrote {RESTART_ENTRIES} tagged entries from 100 tasks in {:?}",
            started.elapsed()
        );
        backend.close().await.unwrap();
        (from, to)
    });
    let wal = dir.file("cache.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "close left a WAL of {:?} bytes",
        std::fs::metadata(&wal).map(|m| m.len())
    );
    let started = Instant::now();
    expect_success(
        spawn_child(
            "restart",
            &[
                (DB, path.display().to_string()),
                (WRITE_FROM, from.to_string()),
                (WRITE_TO, to.to_string()),
            ],
        ),
        Duration::from_secs(120),
    );
    eprintln!(
        "restart: the child checked everything in {:?}",
        started.elapsed()
    );
    // And this process sees what the child did.
    rt.block_on(async {
        let backend = open(&path);
        let left = backend.scan("r:v1:k*", 100_000).await.unwrap();
        assert_eq!(left.len() as u64, RESTART_ENTRIES - RESTART_ENTRIES / 10);
        backend.close().await.unwrap();
    });
}

fn restart_child() {
    let path = PathBuf::from(env(DB));
    let from: i64 = env(WRITE_FROM).parse().unwrap();
    let to: i64 = env(WRITE_TO).parse().unwrap();
    runtime().block_on(async {
        let backend = open(&path);
        for i in 0..RESTART_ENTRIES {
            let key = restart_key(i);
            let entry = backend
                .get_entry(&key)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{key} is missing after the restart"));
            let now = now_ms();
            assert_eq!(&entry.value[..], format!("v{i}").as_bytes(), "{key}");
            assert_eq!(entry.tags, vec![restart_tag(i)], "{key}");
            let ttl = restart_ttl(i).as_millis() as i64;
            // Written between `from` and `to`: the remaining life is within
            // these bounds, give or take a second.
            let lowest = from + ttl - now - 1000;
            let highest = to + ttl - now + 1000;
            match entry.expiry {
                Expiry::After(left) => {
                    let left = left.as_millis() as i64;
                    assert!(
                        (lowest..=highest).contains(&left),
                        "{key}: {left} ms left, expected {lowest}..={highest}"
                    );
                }
                other => panic!("{key}: expiry {other:?}"),
            }
        }
        let members = backend.tag_members("r:v1:t4", 100_000).await.unwrap();
        assert_eq!(members.len() as u64, RESTART_ENTRIES / 10);
        let removed = backend
            .invalidate_tags(&["r:v1:t3".to_owned()])
            .await
            .unwrap();
        assert_eq!(removed, Count::Exact(RESTART_ENTRIES / 10));
        for i in 0..RESTART_ENTRIES {
            let there = backend.exists(&restart_key(i)).await.unwrap();
            assert_eq!(there, i % 10 != 3, "k{i} after invalidating t3");
        }
        backend.close().await.unwrap();
    });
}

// ------------------------------------------------------------------ crash

/// Record `n` as the last acknowledged write: one fixed-width `pwrite` (a
/// process killed mid-way leaves the old or the new number, whole) then
/// `fsync`.
fn record(file: &std::fs::File, n: u64) {
    file.write_all_at(format!("{n:020}").as_bytes(), 0).unwrap();
    file.sync_data().unwrap();
}

fn recorded(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse().ok()
}

fn crash_key(n: u64) -> String {
    format!("c:v1:k{n}")
}

/// A child writing continuously is killed with SIGKILL, three times in a
/// row; each time the database opens again and holds every write the child
/// acknowledged before its last recorded checkpoint.
#[test]
fn sigkill_during_writes_loses_no_acknowledged_write() {
    let dir = TempDir::new("crash");
    let path = dir.file("cache.db");
    let mut start = 0u64;
    let rt = runtime();
    for round in 0..3 {
        let checkpoint = dir.file(&format!("checkpoint-{round}"));
        let mut child = spawn_child(
            "crash",
            &[
                (DB, path.display().to_string()),
                (CHECKPOINT, checkpoint.display().to_string()),
                (START, start.to_string()),
            ],
        );
        // Let it write a while, then kill it mid-stream.
        let started = Instant::now();
        loop {
            if recorded(&checkpoint).is_some_and(|n| n >= start + 300) {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                let output = child.wait_with_output().unwrap();
                panic!(
                    "the writer exited early ({status}): {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the writer made no progress"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100 + 70 * round));
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child was killed: {status}");
        let last = recorded(&checkpoint).expect("a checkpoint");
        rt.block_on(async {
            let backend = open(&path);
            let keys: Vec<String> = (0..=last).map(crash_key).collect();
            let values = backend.get_many(&keys).await.unwrap();
            for (n, value) in values.iter().enumerate() {
                assert_eq!(
                    value.as_deref(),
                    Some(n.to_string().as_bytes()),
                    "round {round}: write {n} was acknowledged (checkpoint {last}) but is missing"
                );
            }
            let members = backend.tag_members("c:v1:t0", 1_000_000).await.unwrap();
            assert!(members.len() as u64 >= last / 7, "round {round}: tag rows");
            backend.close().await.unwrap();
        });
        let conn = rusqlite::Connection::open(&path).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        eprintln!(
            "crash round {round}: killed after checkpoint {last} ({} writes this round); \
             reopened with all of them, integrity ok",
            last + 1 - start
        );
        start = last + 1;
    }
}

fn crash_child() {
    let path = PathBuf::from(env(DB));
    let checkpoint = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(env(CHECKPOINT))
        .unwrap();
    let start: u64 = env(START).parse().unwrap();
    runtime().block_on(async {
        let backend = open(&path);
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut n = start;
        // Rewrite everything from 0 now and then, so the killed write may
        // be an overwrite as well as an insert.
        while Instant::now() < deadline {
            let options = WriteOptions::new()
                .ttl(Duration::from_secs(3600))
                .tags([format!("c:v1:t{}", n % 7)]);
            let value = Bytes::from(n.to_string());
            backend.set(&crash_key(n), value, &options).await.unwrap();
            record(&checkpoint, n);
            n += 1;
        }
    });
}

// --------------------------------------------------------- 200 tasks

/// 200 tasks on one file (two backends, as two processes would) for 5
/// seconds: no `database is locked`, no lost write.
#[test]
fn two_hundred_concurrent_tasks_lose_nothing() {
    let dir = TempDir::new("concurrent");
    let path = dir.file("cache.db");
    let rt = runtime();
    rt.block_on(async {
        let backends = [Arc::new(open(&path)), Arc::new(open(&path))];
        let sets = Arc::new(AtomicU64::new(0));
        let incrs = Arc::new(AtomicU64::new(0));
        let reads = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let run_for = Duration::from_secs(5);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for task in 0..200u64 {
            let backend = backends[(task % 2) as usize].clone();
            let (sets, incrs, reads, errors) =
                (sets.clone(), incrs.clone(), reads.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                let options = WriteOptions::new()
                    .ttl(Duration::from_secs(600))
                    .tags([format!("w:v1:task{task}")]);
                let mut n = 0u64;
                while started.elapsed() < run_for {
                    let key = format!("w:v1:{task}:{n}");
                    match backend
                        .set(&key, Bytes::from(n.to_string()), &options)
                        .await
                    {
                        Ok(true) => {
                            sets.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => errors.lock().unwrap().push(format!("{key} declined")),
                        Err(e) => errors.lock().unwrap().push(e.to_string()),
                    }
                    match backend.incr("w:v1:total", 1, None).await {
                        Ok(_) => {
                            incrs.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => errors.lock().unwrap().push(e.to_string()),
                    }
                    match backend.get(&key).await {
                        Ok(Some(v)) if v == n.to_string().as_bytes() => {
                            reads.fetch_add(1, Ordering::Relaxed);
                        }
                        other => errors
                            .lock()
                            .unwrap()
                            .push(format!("read {key} after its write: {other:?}")),
                    }
                    n += 1;
                }
                n
            }));
        }
        let mut written = 0;
        for t in tasks {
            written += t.await.unwrap();
        }
        let elapsed = started.elapsed();
        let errors = errors.lock().unwrap().clone();
        assert!(
            errors.is_empty(),
            "{} errors, first: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        let sets = sets.load(Ordering::Relaxed);
        let incrs = incrs.load(Ordering::Relaxed);
        assert_eq!(sets, written);
        // No lost write: the counter holds every acknowledged increment,
        // and every acknowledged set is there, from either backend.
        for backend in &backends {
            let total = backend.get("w:v1:total").await.unwrap().unwrap();
            assert_eq!(total, incrs.to_string().as_bytes());
            let keys = backend.scan("w:v1:*:*", usize::MAX).await.unwrap();
            assert_eq!(keys.len() as u64, sets);
        }
        let per_task = backends[0]
            .tag_members("w:v1:task7", 1_000_000)
            .await
            .unwrap();
        assert!(!per_task.is_empty());
        eprintln!(
            "200 tasks, 5 s, one file, two backends: {sets} sets + {incrs} incrs + {} reads \
             in {elapsed:?} ({:.0} writes/s), 0 errors, counter and keys complete",
            reads.load(Ordering::Relaxed),
            (sets + incrs) as f64 / elapsed.as_secs_f64()
        );
        for backend in backends {
            backend.close().await.unwrap();
        }
    });
}

// ---------------------------------------------------- sweeper, close, drop

fn raw_count(path: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// The periodic sweep removes expired rows and their tag rows on its own.
#[test]
fn the_sweeper_removes_expired_rows_and_their_tags() {
    let dir = TempDir::new("sweep");
    let path = dir.file("cache.db");
    let rt = runtime();
    rt.block_on(async {
        let mut config = SqliteConfig::file(&path);
        config.sweep_interval = Duration::from_millis(200);
        let backend = SqliteBackend::with_config(config).unwrap();
        let short = WriteOptions::new()
            .ttl(Duration::from_millis(300))
            .tags(["s:v1:t"]);
        let entries: Vec<(String, Bytes)> = (0..1200)
            .map(|i| (format!("s:v1:{i}"), Bytes::from_static(b"x")))
            .collect();
        assert_eq!(backend.set_many(&entries, &short).await.unwrap(), 1200);
        let long = WriteOptions::new()
            .ttl(Duration::from_secs(600))
            .tags(["s:v1:t"]);
        backend
            .set("s:v1:keep", Bytes::from_static(b"y"), &long)
            .await
            .unwrap();
        assert_eq!(raw_count(&path, "entries"), 1201);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(raw_count(&path, "entries"), 1, "expired rows were swept");
        assert_eq!(raw_count(&path, "tags"), 1, "with their tag rows");
        assert_eq!(backend.tag_index("s:v1:t").unwrap(), vec!["s:v1:keep"]);
        backend.close().await.unwrap();
    });
}

/// The file is in WAL mode; after `close` every operation fails clearly,
/// the WAL is folded into the file, and a reopen sees everything.
#[test]
fn close_checkpoints_and_later_calls_fail() {
    let dir = TempDir::new("close");
    let path = dir.file("cache.db");
    let rt = runtime();
    rt.block_on(async {
        let backend = open(&path);
        let mode: String = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let options = WriteOptions::new();
        backend
            .set("a", Bytes::from_static(b"1"), &options)
            .await
            .unwrap();
        backend.close().await.unwrap();
        backend.close().await.unwrap(); // again: nothing to do
        let err = backend
            .set("b", Bytes::from_static(b"2"), &options)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains("closed"), "{err}");
        let err = backend.get("a").await.unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
        assert!(!dir.file("cache.db-wal").exists(), "the WAL was folded in");
        let again = open(&path);
        assert_eq!(again.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
        again.close().await.unwrap();
    });
}

/// Dropping the backend without `close` loses no acknowledged write.
#[test]
fn drop_without_close_keeps_acknowledged_writes() {
    let dir = TempDir::new("drop");
    let path = dir.file("cache.db");
    let rt = runtime();
    rt.block_on(async {
        let backend = open(&path);
        let entries: Vec<(String, Bytes)> = (0..500)
            .map(|i| (format!("d{i}"), Bytes::from(format!("{i}"))))
            .collect();
        backend
            .set_many(&entries, &WriteOptions::new())
            .await
            .unwrap();
        drop(backend);
        let again = open(&path);
        let keys: Vec<String> = entries.iter().map(|(k, _)| k.clone()).collect();
        let values = again.get_many(&keys).await.unwrap();
        assert!(values.iter().all(Option::is_some));
        again.close().await.unwrap();
    });
}

/// An absolute path in a URL (`sqlite:///…`) and options in its query.
#[test]
fn absolute_urls_open_the_file() {
    let dir = TempDir::new("url");
    let path = dir.file("url.db");
    let absolute = path.canonicalize().unwrap_or(path.clone());
    assert!(absolute.is_absolute() || path.is_absolute());
    let url = format!("sqlite://{}?readers=2&busy_timeout=1s", path.display());
    assert!(url.starts_with("sqlite:///"), "{url}");
    let rt = runtime();
    rt.block_on(async {
        let backend = SqliteBackend::open(&url).unwrap();
        assert_eq!(backend.config().readers, 2);
        backend
            .set("k", Bytes::from_static(b"v"), &WriteOptions::new())
            .await
            .unwrap();
        backend.close().await.unwrap();
    });
    assert!(path.exists());
    rt.block_on(async {
        let url = larder_core::url::BackendUrl::parse(&url).unwrap();
        let config = SqliteConfig::from_url(&url).unwrap();
        let backend = SqliteBackend::connect(config).await.unwrap();
        assert_eq!(
            backend.get("k").await.unwrap().as_deref(),
            Some(&b"v"[..]),
            "the facade's path: BackendUrl, from_url, connect"
        );
        backend.close().await.unwrap();
    });
    let memory = SqliteBackend::open("sqlite::memory:").unwrap();
    let other = SqliteBackend::open("sqlite://:memory:").unwrap();
    rt.block_on(async {
        memory
            .set("k", Bytes::from_static(b"v"), &WriteOptions::new())
            .await
            .unwrap();
        assert_eq!(
            other.get("k").await.unwrap(),
            None,
            "each in-memory database is its own"
        );
    });
}

// ------------------------------------------------------------------ errors

fn open_err(config: SqliteConfig) -> Error {
    SqliteBackend::with_config(config).expect_err("open should fail")
}

/// A file that is not SQLite: a clear error naming it, and the file is
/// left as it was.
#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = TempDir::new("notadb");
    let path = dir.file("notes.db");
    let text = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let err = open_err(SqliteConfig::file(&path)).to_string();
    eprintln!("not a database: {err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("file is not a database"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "untouched");
}

/// A database whose pages were overwritten: operations fail with an error
/// naming the file and saying it is corrupted.
#[test]
fn a_corrupted_database_is_reported() {
    let dir = TempDir::new("corrupt");
    let path = dir.file("cache.db");
    let rt = runtime();
    rt.block_on(async {
        let backend = open(&path);
        let value = Bytes::from(vec![7u8; 1000]);
        let entries: Vec<(String, Bytes)> = (0..2000)
            .map(|i| (format!("k{i:05}"), value.clone()))
            .collect();
        backend
            .set_many(&entries, &WriteOptions::new().tags(["t"]))
            .await
            .unwrap();
        backend.close().await.unwrap();
    });
    // Overwrite everything after the first page (the header and schema).
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let garbage = vec![0xA5u8; (len - 4096) as usize];
    file.write_all_at(&garbage, 4096).unwrap();
    drop(file);
    let err = rt.block_on(async {
        match SqliteBackend::with_config(SqliteConfig::file(&path)) {
            Err(e) => e,
            Ok(backend) => {
                let keys: Vec<String> = (0..2000).map(|i| format!("k{i:05}")).collect();
                let err = backend.get_many(&keys).await.unwrap_err();
                let _ = backend.close().await;
                err
            }
        }
    });
    let text = err.to_string();
    eprintln!("corrupted: {text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        text.contains("corrupted") || text.contains("not a database"),
        "{text}"
    );
}

/// A directory that is missing, is a file, or cannot take new files: a
/// clear error naming the file and saying what is wrong with the directory.
#[test]
fn an_unusable_directory_is_explained() {
    let dir = TempDir::new("dirs");
    let missing = dir.file("no/such/dir/cache.db");
    let err = open_err(SqliteConfig::file(&missing)).to_string();
    eprintln!("missing directory: {err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(err.contains("create it first"), "{err}");

    std::fs::write(dir.file("plain"), b"x").unwrap();
    let under_file = dir.file("plain/cache.db");
    let err = open_err(SqliteConfig::file(&under_file)).to_string();
    assert!(err.contains(&under_file.display().to_string()), "{err}");
    assert!(
        err.contains("not a directory") || err.contains("cannot be used"),
        "{err}"
    );

    let locked = dir.file("readonly");
    std::fs::create_dir(&locked).unwrap();
    let _guard = ReadOnlyDir::new(&locked);
    let path = locked.join("cache.db");
    let err = open_err(SqliteConfig::file(&path)).to_string();
    eprintln!("read-only directory: {err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("not writable"), "{err}");
}

/// Makes a directory refuse new files, for root too (`chattr +i` where
/// permission bits are ignored); undoes it on drop.
struct ReadOnlyDir(PathBuf, bool);

impl ReadOnlyDir {
    fn new(path: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o555)).unwrap();
        let probe = path.join("probe");
        if std::fs::write(&probe, b"x").is_err() {
            return ReadOnlyDir(path.to_path_buf(), false);
        }
        // Running as root: permission bits do not stop us.
        std::fs::remove_file(&probe).unwrap();
        let status = Command::new("chattr").arg("+i").arg(path).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "running as root and `chattr +i` failed: cannot make a read-only directory"
        );
        assert!(
            std::fs::write(&probe, b"x").is_err(),
            "chattr +i did not stick"
        );
        ReadOnlyDir(path.to_path_buf(), true)
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.1 {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        }
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

/// A database written by a newer larder: refused, naming the file and both
/// versions.
#[test]
fn a_newer_schema_version_is_refused() {
    let dir = TempDir::new("newer");
    let path = dir.file("cache.db");
    let rt = runtime();
    rt.block_on(async { open(&path).close().await.unwrap() });
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = open_err(SqliteConfig::file(&path)).to_string();
    eprintln!("newer schema: {err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("99"), "{err}");
    assert!(
        err.contains(&format!("version {}", larder_sqlite::SCHEMA_VERSION)),
        "{err}"
    );
}

/// Another program holding the write lock past the busy timeout: writes
/// fail with an error naming the file (reads go on, thanks to WAL), and
/// work again once the lock is released. Opening a file another program
/// holds exclusively fails the same way.
#[test]
fn a_file_locked_by_another_program_is_reported() {
    let dir = TempDir::new("locked");
    let path = dir.file("cache.db");
    let rt = runtime();
    rt.block_on(async {
        let mut config = SqliteConfig::file(&path);
        config.busy_timeout = Duration::from_millis(300);
        let backend = SqliteBackend::with_config(config.clone()).unwrap();
        let options = WriteOptions::new();
        backend
            .set("k", Bytes::from_static(b"1"), &options)
            .await
            .unwrap();

        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO meta VALUES ('held', 1);")
            .unwrap();
        let started = Instant::now();
        let err = backend
            .set("k", Bytes::from_static(b"2"), &options)
            .await
            .unwrap_err();
        let waited = started.elapsed();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        let text = err.to_string();
        eprintln!("locked (write): {text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("locked"), "{text}");
        assert!(text.contains("busy timeout"), "{text}");
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        assert_eq!(
            backend.get("k").await.unwrap().as_deref(),
            Some(&b"1"[..]),
            "reads go on while another program writes"
        );
        other.execute_batch("ROLLBACK").unwrap();
        backend
            .set("k", Bytes::from_static(b"3"), &options)
            .await
            .unwrap();
        backend.close().await.unwrap();
        drop(other);

        // A program holding the whole file exclusively, at open.
        let fresh = dir.file("exclusive.db");
        let holder = rusqlite::Connection::open(&fresh).unwrap();
        holder
            .execute_batch(
                "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; CREATE TABLE x (y INTEGER);",
            )
            .unwrap();
        let mut config = SqliteConfig::file(&fresh);
        config.busy_timeout = Duration::from_millis(300);
        let err = open_err(config).to_string();
        eprintln!("locked (open): {err}");
        assert!(err.contains(&fresh.display().to_string()), "{err}");
        assert!(err.contains("locked"), "{err}");
        drop(holder);
    });
}

/// `max_entries` bounds the table: the soonest to expire go first, and
/// evicted keys leave their tags.
#[test]
fn max_entries_evicts_the_soonest_to_expire() {
    let dir = TempDir::new("bounded");
    let path = dir.file("cache.db");
    let rt = runtime();
    rt.block_on(async {
        let mut config = SqliteConfig::file(&path);
        config.max_entries = Some(100);
        let backend = SqliteBackend::with_config(config).unwrap();
        let forever = WriteOptions::new().tags(["b:t"]);
        for i in 0..50 {
            backend
                .set(&format!("p{i}"), Bytes::from_static(b"x"), &forever)
                .await
                .unwrap();
        }
        for i in 0..200u64 {
            let options = WriteOptions::new()
                .ttl(Duration::from_secs(1000 + i))
                .tags(["b:t"]);
            backend
                .set(&format!("e{i}"), Bytes::from_static(b"x"), &options)
                .await
                .unwrap();
        }
        assert_eq!(raw_count(&path, "entries"), 100);
        assert_eq!(raw_count(&path, "tags"), 100);
        // The 50 persistent ones stay; of the others, the 50 latest to
        // expire.
        let kept: HashSet<String> = backend.scan("*", 1000).await.unwrap().into_iter().collect();
        assert!((0..50).all(|i| kept.contains(&format!("p{i}"))));
        assert!((150..200).all(|i| kept.contains(&format!("e{i}"))));
        assert_eq!(backend.evictions(), Some(150));
        backend.close().await.unwrap();
    });
}

/// The fill guard holds across processes: a load that began on one backend
/// is refused when another backend on the same file (as another process
/// would) invalidated its key, tag, namespace or a pattern meanwhile.
#[test]
fn the_fill_guard_holds_across_backends_on_one_file() {
    use larder_core::FillStore;
    let dir = TempDir::new("fill");
    let path = dir.file("cache.db");
    let rt = runtime();
    rt.block_on(async {
        let (loader, other) = (open(&path), open(&path));
        let options = WriteOptions::new().tags(["f:v1:tag"]);
        let value = || Bytes::from_static(b"loaded");
        let key = vec!["f:v1:k".to_owned()];
        let tag = vec!["f:v1:tag".to_owned()];
        for what in ["key", "tag", "clear", "pattern"] {
            let (_, token) = loader.begin_fill("f:v1:k").await.unwrap();
            match what {
                "key" => drop(other.delete(&key).await.unwrap()),
                "tag" => drop(other.invalidate_tags(&tag).await.unwrap()),
                "clear" => drop(other.clear("f:v1:").await.unwrap()),
                _ => drop(other.delete_matching("f:v1:*").await.unwrap()),
            }
            let stored = loader
                .set_filled("f:v1:k", value(), &options, token)
                .await
                .unwrap();
            assert_eq!(stored, FillStore::Refused, "{what}");
            assert_eq!(loader.get("f:v1:k").await.unwrap(), None, "{what}");
            // A load that begins after the invalidation stores.
            let (_, token) = loader.begin_fill("f:v1:k").await.unwrap();
            let stored = loader
                .set_filled("f:v1:k", value(), &options, token)
                .await
                .unwrap();
            assert_eq!(stored, FillStore::Stored, "{what}");
            assert!(other.exists("f:v1:k").await.unwrap(), "{what}");
            other.delete(&key).await.unwrap();
        }
        loader.close().await.unwrap();
        other.close().await.unwrap();
    });
}
