//! `#[cache_read]` / `#[cache_write]` on the memory backend.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use larder::{Cache, Resource, cache_read, cache_write};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

static USER: Resource = Resource::new("user");

/// A small user service: a "database" and counters of how often it is hit.
struct Users {
    cache: Cache,
    db: Mutex<HashMap<u64, User>>,
    reads: AtomicUsize,
    profile_reads: AtomicUsize,
}

impl Users {
    async fn new() -> Self {
        let db = (1..=20)
            .map(|id| {
                (
                    id,
                    User {
                        id,
                        name: format!("user {id}"),
                    },
                )
            })
            .collect();
        Users {
            cache: larder::open("mem://").await.unwrap(),
            db: Mutex::new(db),
            reads: AtomicUsize::new(0),
            profile_reads: AtomicUsize::new(0),
        }
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// Cached by id; `None` (unknown user) is not stored.
    #[cache_read(key = "user:{id}", ttl = 300, tags = ["user:{id}"], cache = self.cache)]
    async fn get(&self, id: u64) -> Option<User> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.db.lock().unwrap().get(&id).cloned()
    }

    #[cache_read(resource = USER, id = id, suffix = "profile", ttl = "5m", cache = self.cache)]
    async fn profile(&self, id: u64) -> Result<String, String> {
        self.profile_reads.fetch_add(1, Ordering::SeqCst);
        match self.db.lock().unwrap().get(&id) {
            Some(u) => Ok(format!("profile of {}", u.name)),
            None => Err(format!("no user {id}")),
        }
    }

    /// A custom key, still tied to the resource.
    #[cache_read(resource = USER, id = id, key = "legacy:{id}", cache = self.cache)]
    async fn legacy(&self, id: u64) -> String {
        self.reads.fetch_add(1, Ordering::SeqCst);
        format!("legacy {id}")
    }

    #[cache_write(tags = ["user:{id}"], recache = [self.get(id)], cache = self.cache)]
    async fn rename(&self, id: u64, name: &str) -> Result<(), String> {
        if name.is_empty() {
            return Err("empty name".into());
        }
        let mut db = self.db.lock().unwrap();
        let user = db.get_mut(&id).ok_or("no such user")?;
        user.name = name.to_owned();
        Ok(())
    }

    #[cache_write(resource = USER, id = id, recache = [self.profile(id)], cache = self.cache)]
    async fn touch(&self, id: u64, name: &str) {
        if let Some(u) = self.db.lock().unwrap().get_mut(&id) {
            u.name = name.to_owned();
        }
    }
}

#[tokio::test]
async fn second_call_is_a_hit_and_other_arguments_miss() {
    let users = Users::new().await;
    assert_eq!(users.get(1).await.unwrap().name, "user 1");
    assert_eq!(users.get(1).await.unwrap().name, "user 1");
    assert_eq!(users.reads(), 1, "the second call is served from the cache");
    users.get(2).await.unwrap();
    assert_eq!(users.reads(), 2, "another id misses");
    assert!(users.cache.exists("user:1").await.unwrap());
}

#[tokio::test]
async fn none_and_err_are_not_stored() {
    let users = Users::new().await;
    assert_eq!(users.get(999).await, None);
    assert_eq!(users.get(999).await, None);
    assert_eq!(users.reads(), 2, "None is not cached");

    assert!(users.profile(999).await.is_err());
    assert!(users.profile(999).await.is_err());
    assert_eq!(
        users.profile_reads.load(Ordering::SeqCst),
        2,
        "Err is not cached"
    );
    assert!(!users.cache.exists("user:profile:999").await.unwrap());
}

#[tokio::test]
async fn write_invalidates_and_recache_stores_the_fresh_value() {
    let users = Users::new().await;
    users.get(1).await.unwrap();
    users.rename(1, "Ada").await.unwrap();
    // The recache re-ran `get(1)` and stored the new name: no read needed.
    let reads = users.reads();
    assert_eq!(reads, 2, "one read, one recache");
    let cached: User = users.cache.get("user:1").await.unwrap().unwrap();
    assert_eq!(cached.name, "Ada");
    assert_eq!(users.get(1).await.unwrap().name, "Ada");
    assert_eq!(users.reads(), reads, "served from the recached value");
}

#[tokio::test]
async fn a_failing_write_invalidates_nothing() {
    let users = Users::new().await;
    users.get(1).await.unwrap();
    assert_eq!(users.rename(1, "").await, Err("empty name".into()));
    assert!(users.cache.exists("user:1").await.unwrap(), "still cached");
    assert_eq!(users.reads(), 1, "no recache either");
}

#[tokio::test]
async fn resource_write_touches_only_its_entity() {
    let users = Users::new().await;
    users.profile(1).await.unwrap();
    users.profile(10).await.unwrap();
    users.legacy(1).await;
    assert_eq!(users.profile_reads.load(Ordering::SeqCst), 2);
    assert_eq!(USER.key("profile", &1), "user:profile:1");

    users.touch(1, "Grace").await;
    assert!(
        users.cache.exists("user:profile:10").await.unwrap(),
        "user 10 untouched"
    );
    assert!(
        !users.cache.exists("legacy:1").await.unwrap(),
        "a custom key is still invalidated by the resource write"
    );
    // Recache refreshed user 1's profile with the new name.
    let p: String = users.cache.get("user:profile:1").await.unwrap().unwrap();
    assert_eq!(p, "profile of Grace");
    assert_eq!(users.profile_reads.load(Ordering::SeqCst), 3);
    assert_eq!(
        users.cache.invalidate_resource(&USER, &10).await.unwrap(),
        1
    );
}

/// Body runs of `slow`, by id (tests run in parallel, each with its own id).
static SLOW_CALLS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn slow_calls(id: u32) -> usize {
    SLOW_CALLS
        .lock()
        .unwrap()
        .iter()
        .filter(|i| **i == id)
        .count()
}

#[cache_read(key = "slow:{id}", cache = cache)]
async fn slow(cache: &Cache, id: u32) -> u32 {
    SLOW_CALLS.lock().unwrap().push(id);
    tokio::time::sleep(Duration::from_millis(200)).await;
    id * 2
}

/// Start `n` concurrent callers of `slow(id)`; the first one is running the
/// body when this returns.
async fn callers(cache: &Cache, id: u32, n: usize) -> Vec<tokio::task::JoinHandle<u32>> {
    let mut tasks = Vec::new();
    let first = cache.clone();
    tasks.push(tokio::spawn(async move { slow(&first, id).await }));
    while slow_calls(id) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for _ in 1..n {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move { slow(&cache, id).await }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_cold_calls_run_the_body_once() {
    let cache = larder::open("mem://").await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move { slow(&cache, 1).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 2);
    }
    assert_eq!(slow_calls(1), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_waiter_leaves_the_others_answered() {
    let cache = larder::open("mem://").await.unwrap();
    let mut tasks = callers(&cache, 10, 200).await;
    tasks.remove(100).abort();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 20);
    }
    assert_eq!(slow_calls(10), 1, "one load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_leader_hands_the_load_over() {
    let cache = larder::open("mem://").await.unwrap();
    let mut tasks = callers(&cache, 20, 200).await;
    tasks.remove(0).abort();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 40);
    }
    assert_eq!(slow_calls(20), 2, "the leader's load, then one waiter's");
    assert_eq!(cache.get::<u32>("slow:20").await.unwrap(), Some(40));
}

fn long_enough(name: &str) -> bool {
    name.len() > 3
}

#[tokio::test]
async fn condition_decides_what_is_stored() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cache_read(key = "name:{name}", condition = long_enough, cache = cache)]
    async fn echo(cache: &Cache, name: &str) -> String {
        CALLS.fetch_add(1, Ordering::SeqCst);
        name.to_owned()
    }
    let cache = larder::open("mem://").await.unwrap();
    echo(&cache, "abc").await;
    echo(&cache, "abc").await;
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        2,
        "short names are not stored"
    );
    echo(&cache, "abcdef").await;
    echo(&cache, "abcdef").await;
    assert_eq!(CALLS.load(Ordering::SeqCst), 3, "long names are");
}

#[tokio::test]
async fn cache_none_stores_none() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cache_read(key = "maybe:{id}", cache_none = true, cache = cache)]
    async fn maybe(cache: &Cache, id: u64) -> Option<u64> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        (id > 100).then_some(id)
    }
    let cache = larder::open("mem://").await.unwrap();
    assert_eq!(maybe(&cache, 1).await, None);
    assert_eq!(maybe(&cache, 1).await, None);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn generic_functions_and_templates_with_fields_and_filters() {
    #[derive(Debug)]
    struct Query {
        text: String,
        page: u32,
    }
    #[cache_read(key = "search:{q.text|lower}:{q.page}", ttl = "short", cache = cache)]
    async fn search<T: Display + Send + Sync>(cache: &Cache, q: &Query, extra: T) -> Vec<String> {
        vec![format!("{} p{} {extra}", q.text, q.page)]
    }
    let cache = larder::open("mem://").await.unwrap();
    let q = Query {
        text: "Rust:Cache".into(),
        page: 2,
    };
    let first = search(&cache, &q, 1u8).await;
    let again = search(&cache, &q, "ignored").await;
    assert_eq!(first, again, "the key does not include `extra`");
    assert!(cache.exists("search:rust%3Acache:2").await.unwrap());
    assert!(matches!(
        cache.ttl("search:rust%3Acache:2").await.unwrap(),
        // ttl = 30, give or take the default 10% jitter.
        larder::KeyTtl::Expires(d) if d <= Duration::from_secs(33)
    ));
}

#[tokio::test]
async fn values_holding_a_separator_never_share_a_key() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cache_read(key = "pair:{a}-{b}", cache = cache)]
    async fn pair(cache: &Cache, a: &str, b: &str) -> String {
        CALLS.fetch_add(1, Ordering::SeqCst);
        format!("{a}|{b}")
    }
    let cache = larder::open("mem://").await.unwrap();
    assert_eq!(pair(&cache, "x-y", "z").await, "x-y|z");
    assert_eq!(pair(&cache, "x", "y-z").await, "x|y-z");
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        2,
        "(\"x\", \"y-z\") has its own key: the body runs"
    );
    assert_eq!(pair(&cache, "x-y", "z").await, "x-y|z");
    assert_eq!(pair(&cache, "x", "y-z").await, "x|y-z");
    assert_eq!(CALLS.load(Ordering::SeqCst), 2, "both are hits now");
    // Every value escapes the template's separator.
    let first: Option<String> = cache.get("pair:x%2Dy-z").await.unwrap();
    let second: Option<String> = cache.get("pair:x-y%2Dz").await.unwrap();
    assert_eq!(first.as_deref(), Some("x-y|z"));
    assert_eq!(second.as_deref(), Some("x|y-z"));
}

#[tokio::test]
async fn dots_and_slashes_separate_values_too() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cache_read(key = "file:{dir}/{name}.{ext}", cache = cache)]
    async fn file(cache: &Cache, dir: &str, name: &str, ext: &str) -> String {
        CALLS.fetch_add(1, Ordering::SeqCst);
        format!("{dir}|{name}|{ext}")
    }
    let cache = larder::open("mem://").await.unwrap();
    // Unescaped, the first two would both be `file:a/b/c.d` and the last
    // two `file:a/b.c.d`.
    let calls = [
        ("a/b", "c", "d", "file:a%2Fb/c.d"),
        ("a", "b/c", "d", "file:a/b%2Fc.d"),
        ("a", "b.c", "d", "file:a/b%2Ec.d"),
        ("a", "b", "c.d", "file:a/b.c%2Ed"),
    ];
    for (dir, name, ext, _) in calls {
        assert_eq!(
            file(&cache, dir, name, ext).await,
            format!("{dir}|{name}|{ext}")
        );
    }
    assert_eq!(CALLS.load(Ordering::SeqCst), 4, "four keys, four misses");
    for (dir, name, ext, key) in calls {
        assert_eq!(
            file(&cache, dir, name, ext).await,
            format!("{dir}|{name}|{ext}")
        );
        let stored: Option<String> = cache.get(key).await.unwrap();
        assert_eq!(stored, Some(format!("{dir}|{name}|{ext}")), "{key}");
    }
    assert_eq!(CALLS.load(Ordering::SeqCst), 4, "then four hits");
}

#[tokio::test]
async fn question_mark_and_early_return_in_bodies() {
    #[cache_read(key = "parse:{text}", cache = cache)]
    async fn parse(cache: &Cache, text: &str) -> Result<u32, std::num::ParseIntError> {
        if text == "zero" {
            return Ok(0);
        }
        let n: u32 = text.parse()?;
        Ok(n)
    }
    let cache = larder::open("mem://").await.unwrap();
    assert_eq!(parse(&cache, "12").await, Ok(12));
    assert_eq!(parse(&cache, "zero").await, Ok(0));
    assert!(parse(&cache, "x").await.is_err());
    assert_eq!(cache.get::<u32>("parse:zero").await.unwrap(), Some(0));
    assert!(!cache.exists("parse:x").await.unwrap());
}

#[tokio::test]
async fn recache_errors_are_counted_not_returned() {
    #[cache_read(key = "flaky:{id}", cache = cache)]
    async fn flaky(cache: &Cache, id: u64) -> Result<u64, String> {
        Err(format!("db down for {id}"))
    }
    #[cache_write(tags = ["flaky:{id}"], recache = [flaky(cache, id)], cache = cache)]
    async fn write(cache: &Cache, id: u64) -> Result<(), String> {
        Ok(())
    }
    let cache = larder::open("mem://").await.unwrap();
    assert_eq!(write(&cache, 3).await, Ok(()));
    assert_eq!(cache.stats().errors, 1, "the failed recache is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_recache_does_not_delay_the_writer() {
    #[cache_read(key = "bg:{id}", cache = cache)]
    async fn slow_read(cache: &Cache, id: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        id + 1
    }
    #[cache_write(tags = ["bg:{id}"], recache = [slow_read(&cache, id)], background = true, cache = cache)]
    async fn write(cache: Cache, id: u64) -> Result<(), String> {
        Ok(())
    }
    let cache = larder::open("mem://").await.unwrap();
    let started = std::time::Instant::now();
    write(cache.clone(), 7).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "writer waited"
    );
    // The recache lands in the background, within a generous bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cache.get::<u64>("bg:7").await.unwrap() != Some(8) {
        assert!(
            std::time::Instant::now() < deadline,
            "the background recache never landed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn lock_true_loads_under_the_fill_lock() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cache_read(key = "locked:{id}", lock = true, early_ttl = "1m", stale_ttl = 600, cache = cache)]
    async fn locked(cache: &Cache, id: u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        id
    }
    let cache = larder::open("mem://").await.unwrap();
    assert_eq!(locked(&cache, 5).await, 5);
    assert_eq!(locked(&cache, 5).await, 5);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    // The lock was released: another holder can take it.
    assert!(
        cache
            .try_lock("locked:5", Duration::from_secs(1))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_cache_failure_never_fails_the_call() {
    #[cache_read(key = "{text}", cache = cache)]
    async fn anything(cache: &Cache, text: &str) -> String {
        text.to_uppercase()
    }
    let cache = larder::open("mem://").await.unwrap();
    // An empty key is invalid: the body runs uncached, once.
    assert_eq!(anything(&cache, "").await, "");
    assert_eq!(cache.stats().errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_ttl_refreshes_once_and_serves_the_current_value_meanwhile() {
    static LOADS: AtomicUsize = AtomicUsize::new(0);
    #[cache_read(key = "quote:{id}", ttl = 60, early_ttl = "200ms", cache = cache)]
    async fn quote(cache: &Cache, id: u64) -> String {
        let n = LOADS.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
        format!("{id}:v{n}")
    }
    let cache = larder::open("mem://").await.unwrap();
    assert_eq!(quote(&cache, 1).await, "1:v1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Past the fresh window: the caller that claims the refresh runs it
    // (the body borrows its arguments, so it cannot move to a background
    // task) and gets the new value; everyone else gets the current one.
    let results: Vec<String> = {
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { quote(&cache, 1).await })
            })
            .collect();
        let mut out = Vec::new();
        for call in calls {
            out.push(call.await.unwrap());
        }
        out
    };
    assert_eq!(
        results.iter().filter(|r| *r == "1:v2").count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|r| *r == "1:v1").count(),
        19,
        "{results:?}"
    );
    assert_eq!(LOADS.load(Ordering::SeqCst), 2, "one refresh");
    assert_eq!(quote(&cache, 1).await, "1:v2");
}

#[tokio::test]
async fn stale_ttl_serves_the_old_value_when_the_body_fails() {
    static FAIL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    #[cache_read(key = "rate:{id}", ttl = "200ms", stale_ttl = 5, cache = cache)]
    async fn rate(cache: &Cache, id: u64) -> Result<u64, String> {
        if FAIL.load(Ordering::SeqCst) {
            Err("the rates service is down".into())
        } else {
            Ok(id * 10)
        }
    }
    let cache = larder::open("mem://").await.unwrap();
    assert_eq!(rate(&cache, 3).await, Ok(30));
    tokio::time::sleep(Duration::from_millis(400)).await;
    FAIL.store(true, Ordering::SeqCst);
    assert_eq!(rate(&cache, 3).await, Ok(30), "stale served");
    assert_eq!(cache.stats().stale_served, 1);
    assert_eq!(
        rate(&cache, 4).await,
        Err("the rates service is down".into()),
        "nothing stale to serve"
    );
}
