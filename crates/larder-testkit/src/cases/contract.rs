//! Cases for the rules of contract v2: lazy futures, bounded TTLs, entries,
//! the optional operations and what a backend that lacks them answers.

use std::future::IntoFuture;
use std::time::Duration;

use bytes::Bytes;
use larder_core::codec::Format;
use larder_core::{
    Error, Expiry, FillOptions, FillToken, KeyTtl, MAX_TTL, SetOptions, WriteOptions,
};

use crate::Harness;

/// Building an operation's future and dropping it unpolled changes
/// nothing: the work happens when the future is polled.
pub async fn futures_are_lazy(h: &Harness) {
    let c = h.cache();
    let b = h.backend();
    let caps = h.caps();
    let tagged = if caps.tags { vec!["t"] } else { vec![] };
    c.set("keep", &1)
        .ttl(Duration::from_secs(600))
        .tags(tagged.clone())
        .await
        .unwrap();
    c.set("other", &2).no_expiry().await.unwrap();
    c.incr("n", 5).await.unwrap();
    let held = if caps.locks {
        c.try_lock("held", Duration::from_secs(60)).await.unwrap()
    } else {
        None
    };
    let before = snapshot(h, &c).await;

    let key = |k: &str| c.stored_key(k).unwrap();
    let (keep, other, n, absent) = (key("keep"), key("other"), key("n"), key("absent"));
    let tags = vec![c.namespace().tag("t").unwrap()];
    let options = WriteOptions::new()
        .ttl(Duration::from_secs(1))
        .tags(tags.clone());
    let keys = vec![keep.clone(), other.clone(), n.clone()];
    let entries = vec![(absent.clone(), Bytes::from_static(b"x"))];
    let pattern = format!("{}*", c.namespace().head());
    let (lock_free, lock_held) = (key("__lock:free"), key("__lock:held"));
    let one = Duration::from_secs(1);
    let value = || Bytes::from_static(b"\xffLlazy");
    drop(b.set(&absent, value(), &options));
    drop(b.set(&keep, value(), &WriteOptions::new()));
    drop(b.set_many(&entries, &options));
    drop(b.delete(&keys));
    drop(b.expire(&keep, one));
    drop(b.incr(&n, 1, None));
    drop(b.invalidate_tags(&tags));
    drop(b.delete_matching(&pattern));
    drop(b.clear(c.namespace().head()));
    drop(b.get_delete(&keep));
    drop(b.get_and_touch(&keep, one));
    drop(b.lock(&lock_free, "other", one));
    drop(b.unlock(&lock_held, held.as_ref().map_or("", |l| l.token())));
    drop(b.begin_fill(&absent));
    drop(b.set_filled(&absent, value(), &options, FillToken::new(u64::MAX)));
    drop(b.close());
    // Anything an eager backend spawned would have run by now.
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_eq!(
        snapshot(h, &c).await,
        before,
        "a dropped future changed the store"
    );
    if let Some(held) = held {
        assert!(
            c.try_lock("held", one).await.unwrap().is_none(),
            "a dropped unlock released the lock"
        );
        assert!(
            c.try_lock("free", one).await.unwrap().is_some(),
            "a dropped lock took the lock"
        );
        assert!(held.release().await.unwrap());
    }
    assert!(h.health_ok().await, "a dropped close closed the backend");
}

/// What `futures_are_lazy` compares: each key's value, tags and rough life.
async fn snapshot(h: &Harness, c: &larder_core::Cache) -> Vec<String> {
    let mut out = Vec::new();
    for k in ["keep", "other", "n", "absent"] {
        let entry = c.get_entry(k).await.unwrap();
        out.push(match entry {
            None => format!("{k}: none"),
            Some(e) => {
                let life = match e.expiry {
                    Expiry::After(d) if d > Duration::from_secs(500) => "long".to_owned(),
                    other => format!("{other:?}"),
                };
                format!("{k}: {:?} {:?} {life}", e.payload, e.tags)
            }
        });
    }
    if let Some(members) = h.members(c, "t").await {
        out.push(format!("t: {members:?}"));
    }
    out
}

/// `get_entry` returns the value with its remaining life and its tags.
pub async fn get_entry_has_value_ttl_and_tags(h: &Harness) {
    let c = h.cache();
    let caps = h.caps();
    let tags: Vec<&str> = if caps.tags { vec!["b", "a"] } else { vec![] };
    c.set("k", &7)
        .ttl(Duration::from_secs(60))
        .tags(tags)
        .await
        .unwrap();
    let entry = c.get_entry("k").await.unwrap().expect("an entry");
    assert_eq!(entry.decode::<i32>().unwrap(), 7);
    assert!(
        matches!(entry.format, Format::Codec(_)),
        "{:?}",
        entry.format
    );
    let mut got = entry.tags.clone();
    got.sort();
    if caps.tags {
        assert_eq!(got, vec!["a", "b"]);
    }
    match entry.expiry {
        Expiry::After(left) if caps.ttl_readable => assert!(
            left > Duration::from_secs(50) && left <= Duration::from_secs(60),
            "{left:?}"
        ),
        Expiry::Unknown if !caps.ttl_readable => {}
        other => panic!("expiry {other:?} (ttl_readable: {})", caps.ttl_readable),
    }
    c.set("forever", &1).no_expiry().await.unwrap();
    let forever = c.get_entry("forever").await.unwrap().expect("an entry");
    if caps.ttl_readable {
        assert_eq!(forever.expiry, Expiry::Never);
    }
    assert!(forever.tags.is_empty());
    c.incr("counter", 3).await.unwrap();
    let counter = c.get_entry("counter").await.unwrap().expect("an entry");
    assert_eq!(counter.format, Format::Counter);
    assert_eq!(counter.decode::<i64>().unwrap(), 3);
    assert_eq!(c.get_entry("missing").await.unwrap(), None);
}

/// `get_delete` returns the value once and removes it (and its tag
/// membership) in the same step.
pub async fn get_delete_reads_once(h: &Harness) {
    let c = h.cache();
    if h.lacks(h.caps().get_delete, c.get_delete::<i32>("probe"))
        .await
    {
        return;
    }
    let tags: Vec<&str> = if h.caps().tags { vec!["t"] } else { vec![] };
    c.set("k", &5).tags(tags).await.unwrap();
    assert_eq!(c.get_delete::<i32>("k").await.unwrap(), Some(5));
    assert_eq!(c.get_delete::<i32>("k").await.unwrap(), None);
    assert!(!c.exists("k").await.unwrap());
    if let Some(index) = h.tag_index(&c, "t").await {
        let k = c.stored_key("k").unwrap();
        assert!(!index.members.contains(&k), "{index:?}");
    }
}

/// `get_and_touch` renews the TTL as it reads (sliding expiry), tag index
/// included.
pub async fn get_and_touch_renews_ttl(h: &Harness) {
    let c = h.cache();
    if h.lacks(
        h.caps().touch,
        c.backend()
            .get_and_touch(&c.stored_key("probe").unwrap(), Duration::from_secs(1)),
    )
    .await
    {
        return;
    }
    let short = h.short_ttl();
    let tags: Vec<&str> = if h.caps().tags { vec!["t"] } else { vec![] };
    c.set("k", &1).ttl(short).tags(tags).await.unwrap();
    let touched = c
        .get_and_touch::<i32>("k", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(touched, Some(1));
    h.sleep_past(short).await;
    assert_eq!(
        c.get::<i32>("k").await.unwrap(),
        Some(1),
        "the TTL was renewed"
    );
    if let Some(index) = h.tag_index(&c, "t").await
        && let Expiry::After(left) = index.expiry
    {
        assert!(
            left > Duration::from_secs(20),
            "the tag index was not stretched: {left:?}"
        );
    }
    assert_eq!(
        c.get_and_touch::<i32>("missing", Duration::from_secs(30))
            .await
            .unwrap(),
        None
    );
}

/// A read-through with `refresh_on_hit` keeps a value that is read more
/// often than its TTL.
pub async fn refresh_on_hit_renews_ttl(h: &Harness) {
    let c = h.cache();
    let short = h.short_ttl() * 2;
    let loads = std::sync::atomic::AtomicUsize::new(0);
    for _ in 0..5 {
        let v: u32 = c
            .read("slide")
            .ttl(short)
            .refresh_on_hit(true)
            .load(|| async {
                loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, Error>(9)
            })
            .await
            .unwrap();
        assert_eq!(v, 9);
        tokio::time::sleep(short / 2).await;
    }
    assert_eq!(
        loads.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "each hit renewed the TTL, so the value outlived it"
    );
}

/// `incr(..).ttl(..)` gives a new counter its TTL in the same step; an
/// existing counter keeps its own.
pub async fn incr_with_ttl_applies_on_create_only(h: &Harness) {
    let c = h.cache();
    let short = h.short_ttl();
    assert_eq!(c.incr("new", 1).ttl(short).await.unwrap(), 1);
    c.incr("old", 1).await.unwrap();
    assert_eq!(c.incr("old", 1).ttl(short).await.unwrap(), 2);
    if h.caps().ttl_readable {
        assert!(matches!(c.ttl("new").await.unwrap(), KeyTtl::Expires(_)));
        assert_eq!(c.ttl("old").await.unwrap(), KeyTtl::Persistent);
    }
    h.sleep_past(short).await;
    assert_eq!(
        c.get::<i64>("new").await.unwrap(),
        None,
        "created with the TTL"
    );
    assert_eq!(
        c.get::<i64>("old").await.unwrap(),
        Some(2),
        "kept its own life"
    );
}

/// set_many applies the write mode to each entry.
pub async fn set_many_honours_the_mode(h: &Harness) {
    let c = h.cache();
    c.set("a", &1).await.unwrap();
    let written = c
        .set_many([("a", 10), ("b", 20)], &SetOptions::new().if_absent())
        .await
        .unwrap();
    assert_eq!(written, 1);
    assert_eq!(c.get::<i32>("a").await.unwrap(), Some(1));
    assert_eq!(c.get::<i32>("b").await.unwrap(), Some(20));
    let written = c
        .set_many([("a", 100), ("c", 300)], &SetOptions::new().if_present())
        .await
        .unwrap();
    assert_eq!(written, 1);
    assert_eq!(c.get::<i32>("a").await.unwrap(), Some(100));
    assert_eq!(c.get::<i32>("c").await.unwrap(), None);
    assert_eq!(c.stats().sets, 3, "only written entries are counted");
}

/// TTLs of zero or over `MAX_TTL` (`Duration::MAX` included) are refused
/// with `InvalidTtl` on every path, and nothing is written; `MAX_TTL` itself
/// works.
pub async fn huge_ttls_are_refused(h: &Harness) {
    let c = h.cache();
    let b = h.backend();
    let invalid = |r: Result<_, Error>, what: &str| match r {
        Err(Error::InvalidTtl { .. }) => {}
        other => panic!("{what}: expected InvalidTtl, got {other:?}"),
    };
    c.set("there", &1).await.unwrap();
    let there = c.stored_key("there").unwrap();
    let absent = c.stored_key("absent").unwrap();
    for ttl in [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        MAX_TTL + Duration::from_secs(1),
        Duration::ZERO,
    ] {
        let err = c.set("absent", &1).ttl(ttl).await;
        if ttl > MAX_TTL {
            let message = err
                .as_ref()
                .map(|_| String::new())
                .unwrap_or_else(|e| e.to_string());
            assert!(message.contains("no_expiry"), "{message}");
        }
        invalid(err.map(drop), "Cache::set");
        invalid(c.expire("there", ttl).await.map(drop), "Cache::expire");
        invalid(c.incr("n", 1).ttl(ttl).await.map(drop), "Cache::incr");
        invalid(
            c.get_and_touch::<i32>("there", ttl).await.map(drop),
            "Cache::get_and_touch",
        );
        let loaded: i32 = c
            .read("absent")
            .ttl(ttl)
            .load(|| async { Ok::<_, Error>(3) })
            .await
            .unwrap();
        assert_eq!(loaded, 3, "the read-through still answers");
        let options = WriteOptions::new().ttl(ttl);
        invalid(
            b.set(&absent, Bytes::from_static(b"1"), &options)
                .await
                .map(drop),
            "Backend::set",
        );
        invalid(b.expire(&there, ttl).await.map(drop), "Backend::expire");
        invalid(
            b.incr(&absent, 1, Some(ttl)).await.map(drop),
            "Backend::incr",
        );
        if h.caps().locks {
            invalid(b.lock(&absent, "t", ttl).await.map(drop), "Backend::lock");
        }
        assert!(!c.exists("absent").await.unwrap(), "nothing was written");
        assert!(!c.exists("n").await.unwrap(), "no counter was created");
        assert_eq!(c.get::<i32>("there").await.unwrap(), Some(1));
    }
    c.set("year", &1).ttl(MAX_TTL).await.unwrap();
    if h.caps().ttl_readable {
        match c.ttl("year").await.unwrap() {
            KeyTtl::Expires(left) => assert!(left > MAX_TTL - Duration::from_secs(60)),
            other => panic!("{other:?}"),
        }
    }
}

/// A scan with limit 0 returns nothing and costs nothing.
pub async fn scan_with_limit_zero_is_empty(h: &Harness) {
    let c = h.cache();
    if h.lacks(h.caps().scan, c.scan("*", 1)).await {
        return;
    }
    for i in 0..3 {
        c.set(&format!("s{i}"), &i).await.unwrap();
    }
    let pattern = format!("{}*", c.namespace().head());
    assert!(h.backend().scan(&pattern, 0).await.unwrap().is_empty());
    assert!(c.scan("*", 0).await.unwrap().is_empty());
    let keys = h.backend().scan(&pattern, 2).await.unwrap();
    assert_eq!(keys.len(), 2);
    let all = h.backend().scan(&pattern, 100).await.unwrap();
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), unique.len(), "each key once: {all:?}");
    assert_eq!(all.len(), 3);
}

/// Namespaces whose names are string prefixes of each other (`v1` / `v10`,
/// `app` / `app2`) never touch each other's keys or tags.
pub async fn namespaces_that_prefix_each_other_stay_apart(h: &Harness) {
    let caps = h.caps();
    let pairs = [
        (h.cache_in("v1"), h.cache_in("v10")),
        (
            h.builder().prefix(h.prefix().to_owned()).build().unwrap(),
            h.builder()
                .prefix(format!("{}2", h.prefix()))
                .build()
                .unwrap(),
        ),
    ];
    for (short, long) in pairs {
        let tags: Vec<&str> = if caps.tags { vec!["t"] } else { vec![] };
        for cache in [&short, &long] {
            cache.set("k", &1).tags(tags.clone()).await.unwrap();
            cache.set("k2", &2).await.unwrap();
        }
        if caps.tags {
            h.assert_count(short.invalidate_tag("t").await.unwrap(), 1);
            assert!(long.exists("k").await.unwrap(), "a tag crossed namespaces");
            short.set("k", &1).tags(["t"]).await.unwrap();
        }
        if caps.scan {
            let mut keys = short.scan("*", 100).await.unwrap();
            keys.sort();
            assert_eq!(keys, vec!["k", "k2"], "scan crossed namespaces");
            h.assert_count(short.invalidate_pattern("k*").await.unwrap(), 2);
            assert!(
                long.exists("k2").await.unwrap(),
                "a pattern crossed namespaces"
            );
            short.set("k2", &2).await.unwrap();
        }
        short.clear().await.unwrap();
        assert!(long.exists("k").await.unwrap(), "clear crossed namespaces");
        assert!(long.exists("k2").await.unwrap(), "clear crossed namespaces");
        if caps.tags {
            h.assert_count(long.invalidate_tag("t").await.unwrap(), 1);
        }
        long.clear().await.unwrap();
    }
}

/// A write without TTL over a key that had one leaves it without expiry.
pub async fn set_without_ttl_over_a_ttl_clears_it(h: &Harness) {
    let c = h.cache();
    let short = h.short_ttl();
    c.set("k", &1).ttl(short).await.unwrap();
    c.set("k", &2).no_expiry().await.unwrap();
    if h.caps().ttl_readable {
        assert_eq!(c.ttl("k").await.unwrap(), KeyTtl::Persistent);
    }
    h.sleep_past(short).await;
    assert_eq!(c.get::<i32>("k").await.unwrap(), Some(2));
}

/// A lock that expires can be taken by another holder; the first holder's
/// release then fails and leaves the new holder's lock alone.
pub async fn lock_expires_and_can_be_stolen(h: &Harness) {
    let c = h.cache();
    if h.lacks(h.caps().locks, c.try_lock("probe", Duration::from_secs(1)))
        .await
    {
        return;
    }
    let short = h.short_ttl();
    let first = c.try_lock("job", short).await.unwrap().expect("free lock");
    assert!(
        c.try_lock("job", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none()
    );
    h.sleep_past(short).await;
    let second = c
        .try_lock("job", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("an expired lock can be taken");
    assert!(
        !first.release().await.unwrap(),
        "the expired holder no longer releases"
    );
    assert!(
        c.try_lock("job", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none()
    );
    assert!(second.release().await.unwrap());
}

/// Bytes stored raw come back unchanged, and are never decoded as a serde
/// value.
pub async fn raw_values_roundtrip(h: &Harness) {
    let c = h.cache();
    let bytes: Vec<u8> = (0..=255).collect();
    assert!(c.set_raw("r", bytes.clone()).await.unwrap());
    assert_eq!(c.get_raw("r").await.unwrap().as_deref(), Some(&bytes[..]));
    assert_eq!(
        c.get::<Vec<u8>>("r").await.unwrap(),
        None,
        "not a serde value"
    );
    assert_eq!(c.stats().errors, 1);
    let entry = c.get_entry("r").await.unwrap().expect("an entry");
    assert_eq!(entry.format, Format::Raw);
    c.set("typed", &"text").await.unwrap();
    let err = c.get_raw("typed").await.unwrap_err().to_string();
    assert!(err.contains("get::<T>"), "{err}");
    assert_eq!(c.get_raw("missing").await.unwrap(), None);
}

/// A read with a stale or early window writes `fresh_until` in the header,
/// and keeps the value for TTL plus the stale window.
pub async fn fresh_until_is_written_for_windows(h: &Harness) {
    let c = h.cache();
    let now = std::time::SystemTime::now();
    let load = |key: &'static str, fill: FillOptions| {
        let c = c.clone();
        async move {
            c.read(key)
                .fill(fill)
                .load(|| async { Ok::<_, Error>(1) })
                .await
                .unwrap();
            c.get_entry(key).await.unwrap().expect("stored")
        }
    };
    let minute = Duration::from_secs(60);
    let stale = load(
        "stale",
        FillOptions::new()
            .ttl(minute)
            .stale_ttl(Duration::from_secs(30)),
    )
    .await;
    let fresh_until = stale.fresh_until.expect("fresh_until");
    let fresh_for = fresh_until.duration_since(now).unwrap();
    assert!(
        fresh_for > Duration::from_secs(55) && fresh_for <= Duration::from_secs(62),
        "{fresh_for:?}"
    );
    if h.caps().ttl_readable {
        let left = stale.expiry.remaining().expect("a TTL");
        assert!(
            left > Duration::from_secs(85) && left <= Duration::from_secs(90),
            "{left:?}"
        );
    }
    let early = load(
        "early",
        FillOptions::new()
            .ttl(minute)
            .early_ttl(Duration::from_secs(10)),
    )
    .await;
    let fresh_for = early
        .fresh_until
        .expect("fresh_until")
        .duration_since(now)
        .unwrap();
    assert!(
        fresh_for > Duration::from_secs(5) && fresh_for <= Duration::from_secs(12),
        "{fresh_for:?}"
    );
    if h.caps().ttl_readable {
        let left = early.expiry.remaining().expect("a TTL");
        assert!(left > Duration::from_secs(55), "{left:?}");
    }
    let plain = load("plain", FillOptions::new().ttl(minute)).await;
    assert_eq!(plain.fresh_until, None);
}

/// Every optional operation the backend does not claim answers
/// `Unsupported`, never a silent no-op.
pub async fn unclaimed_operations_answer_unsupported(h: &Harness) {
    let c = h.cache();
    let b = h.backend();
    let caps = h.caps();
    let key = c.stored_key("k").unwrap();
    let tag = c.namespace().tag("t").unwrap();
    let pattern = format!("{}*", c.namespace().head());
    let one = Duration::from_secs(1);
    h.lacks(caps.tags, c.set("k", &1).tags(["t"]).into_future())
        .await;
    h.lacks(caps.tag_listing, b.tag_members(&tag, 1)).await;
    h.lacks(caps.scan, b.scan(&pattern, 1)).await;
    h.lacks(caps.scan, b.delete_matching(&pattern)).await;
    h.lacks(caps.locks, b.lock(&key, "t", one)).await;
    h.lacks(caps.touch, b.get_and_touch(&key, one)).await;
    h.lacks(caps.get_delete, b.get_delete(&key)).await;
    h.lacks(caps.signed_counters, c.incr("n", -1).into_future())
        .await;
    h.lacks(caps.ttl_readable, b.ttl(&key)).await;
    assert_eq!(
        b.invalidations().is_some(),
        caps.invalidation_stream,
        "invalidations() agrees with the capability"
    );
}
