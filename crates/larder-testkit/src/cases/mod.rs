//! The conformance cases. Each is a behaviour every backend must show; a
//! backend that cannot do something must answer `Error::Unsupported`, and
//! then the case fails: the suite is the definition of a complete backend.

use std::collections::HashSet;
use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use larder_core::{Error, FuzzyOptions, KeyTtl, SetOptions, TtlBucket, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::Harness;

mod contract;
mod reads;
mod tags;

pub use contract::*;
pub use reads::*;
pub use tags::*;

/// Every case name, in order. Passes them to `$callback!($factory; names…)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_case {
    ($callback:path, $factory:expr) => {
        $callback!($factory;
            get_missing_is_none,
            set_then_get,
            set_overwrites_value,
            typed_struct_roundtrip,
            wrong_type_is_miss_and_counted_error,
            foreign_bytes_are_miss_and_counted_error,
            ttl_expiry_hides_value,
            value_lives_until_ttl,
            no_expiry_is_persistent,
            default_ttl_is_applied,
            ttl_bucket_is_applied,
            set_if_absent_on_missing_writes,
            set_if_absent_on_present_keeps_old,
            set_if_absent_after_expiry_writes,
            set_if_present_on_missing_skips,
            set_if_present_on_present_writes,
            get_many_keeps_order_and_gaps,
            get_many_of_nothing,
            set_many_then_get_many,
            delete_reports_presence,
            delete_many_counts_live_keys,
            exists_tracks_lifecycle,
            incr_creates_missing_key,
            incr_adds_to_existing,
            incr_negative_delta,
            incr_on_non_integer_is_error,
            incr_keeps_ttl,
            expire_missing_key_is_false,
            expire_gives_persistent_key_a_ttl,
            expire_shortens_ttl,
            ttl_of_missing_key,
            ttl_of_persistent_key,
            ttl_of_expiring_key,
            tag_invalidation_removes_members,
            multi_tag_key_goes_with_any_tag,
            partial_invalidation_leaves_other_tags,
            tag_members_with_different_ttls,
            reset_without_tag_leaves_tag,
            delete_cleans_tag_index,
            expiry_cleans_tag_index,
            eviction_cleans_tag_index,
            invalidate_unknown_tag_is_zero,
            tags_are_namespaced,
            pattern_invalidation_by_prefix,
            pattern_dot_is_literal,
            pattern_with_parentheses,
            pattern_with_escaped_brackets,
            pattern_with_escaped_star,
            pattern_with_unicode,
            scan_lists_matching_keys,
            clear_leaves_other_namespaces,
            version_bump_misses,
            large_value_1mib,
            empty_values,
            binary_values_roundtrip,
            unicode_keys,
            long_keys_are_hashed_and_work,
            concurrent_writers_one_key,
            lock_is_exclusive_and_token_checked,
            health_is_ok,
            fuzzy_search_finds_similar_keys,
            get_or_load_runs_loader_once,
            oversize_value_is_rejected,
            futures_are_lazy,
            get_entry_has_value_ttl_and_tags,
            get_delete_reads_once,
            get_and_touch_renews_ttl,
            refresh_on_hit_renews_ttl,
            incr_with_ttl_applies_on_create_only,
            set_many_honours_the_mode,
            huge_ttls_are_refused,
            scan_with_limit_zero_is_empty,
            namespaces_that_prefix_each_other_stay_apart,
            set_without_ttl_over_a_ttl_clears_it,
            lock_expires_and_can_be_stolen,
            raw_values_roundtrip,
            fresh_until_is_written_for_windows,
            unclaimed_operations_answer_unsupported,
            concurrent_failing_loaders_share_the_failure,
            panicking_loader_does_not_strand_waiters,
            loads_do_not_store_across_an_invalidation,
            no_flight_outlives_an_invalidation,
            fill_lock_waiters_take_over_from_a_failed_holder,
            declined_tagged_write_keeps_the_index,
            untagged_reset_leaves_the_index,
            tag_index_holds_only_live_members,
        );
    };
}

macro_rules! __names {
    ($unused:expr; $($case:ident),* $(,)?) => {
        /// Names of all cases.
        pub const CASES: &[&str] = &[$(stringify!($case)),*];
    };
}
__for_each_case!(__names, ());

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
    active: bool,
    roles: Vec<String>,
}

fn user(id: u64) -> User {
    User {
        id,
        name: format!("user {id}"),
        email: format!("u{id}@example.com"),
        active: id.is_multiple_of(2),
        roles: vec!["reader".into()],
    }
}

/// A missing key reads as `None`.
pub async fn get_missing_is_none(h: &Harness) {
    let c = h.cache();
    assert_eq!(c.get::<String>("nope").await.unwrap(), None);
    assert_eq!(c.stats().misses, 1);
}

/// A value reads back as written.
pub async fn set_then_get(h: &Harness) {
    let c = h.cache();
    assert!(c.set("k", "v").await.unwrap());
    assert_eq!(c.get::<String>("k").await.unwrap().as_deref(), Some("v"));
    assert_eq!(c.stats().hits, 1);
    assert_eq!(c.stats().sets, 1);
}

/// A second write replaces the first.
pub async fn set_overwrites_value(h: &Harness) {
    let c = h.cache();
    c.set("k", &1u32).await.unwrap();
    c.set("k", &2u32).await.unwrap();
    assert_eq!(c.get::<u32>("k").await.unwrap(), Some(2));
}

/// A struct round-trips through the codec.
pub async fn typed_struct_roundtrip(h: &Harness) {
    let c = h.cache();
    c.set("user:7", &user(7)).await.unwrap();
    assert_eq!(c.get::<User>("user:7").await.unwrap(), Some(user(7)));
}

/// Reading a value as the wrong type is a miss plus a counted error.
pub async fn wrong_type_is_miss_and_counted_error(h: &Harness) {
    let c = h.cache();
    c.set("k", "text").await.unwrap();
    assert_eq!(c.get::<User>("k").await.unwrap(), None);
    let stats = c.stats();
    assert_eq!(stats.errors, 1);
    assert_eq!(stats.misses, 1);
}

/// Bytes written by someone else under our key are a miss plus a counted
/// error, never a panic or a wrong value.
pub async fn foreign_bytes_are_miss_and_counted_error(h: &Harness) {
    let c = h.cache();
    let key = c.stored_key("foreign").unwrap();
    let raw = Bytes::from_static(b"\xff\x00 not an envelope");
    h.backend()
        .set(&key, raw, &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(c.get::<String>("foreign").await.unwrap(), None);
    let garbage = Bytes::from_static(b"hello world");
    h.backend()
        .set(&key, garbage, &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(c.get::<String>("foreign").await.unwrap(), None);
    assert_eq!(c.stats().errors, 2);
}

/// After its TTL a value is gone.
pub async fn ttl_expiry_hides_value(h: &Harness) {
    let c = h.cache();
    let ttl = h.short_ttl();
    c.set("k", "v").ttl(ttl).await.unwrap();
    h.sleep_past(ttl).await;
    assert_eq!(c.get::<String>("k").await.unwrap(), None);
    assert!(!c.exists("k").await.unwrap());
}

/// Before its TTL a value is there.
pub async fn value_lives_until_ttl(h: &Harness) {
    let c = h.cache();
    c.set("k", "v").ttl(Duration::from_secs(30)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(c.get::<String>("k").await.unwrap().as_deref(), Some("v"));
}

/// `no_expiry` stores without TTL.
pub async fn no_expiry_is_persistent(h: &Harness) {
    if h.lacks(h.caps().ttl_readable, h.cache().ttl("probe")).await {
        return;
    }
    let c = h.cache();
    c.set("k", "v").no_expiry().await.unwrap();
    assert_eq!(c.ttl("k").await.unwrap(), KeyTtl::Persistent);
}

/// A write without TTL gets the cache's default TTL.
pub async fn default_ttl_is_applied(h: &Harness) {
    if h.lacks(h.caps().ttl_readable, h.cache().ttl("probe")).await {
        return;
    }
    let c = h
        .builder()
        .default_ttl(Duration::from_secs(120))
        .build()
        .unwrap();
    c.set("k", "v").await.unwrap();
    match c.ttl("k").await.unwrap() {
        KeyTtl::Expires(left) => assert!(
            left > Duration::from_secs(100) && left <= Duration::from_secs(120),
            "{left:?}"
        ),
        other => panic!("expected a TTL, got {other:?}"),
    }
}

/// A TTL bucket resolves to the configured duration.
pub async fn ttl_bucket_is_applied(h: &Harness) {
    if h.lacks(h.caps().ttl_readable, h.cache().ttl("probe")).await {
        return;
    }
    let c = h
        .builder()
        .ttl_long(Duration::from_secs(7200))
        .build()
        .unwrap();
    c.set("k", "v").ttl(TtlBucket::Long).await.unwrap();
    match c.ttl("k").await.unwrap() {
        KeyTtl::Expires(left) => assert!(left > Duration::from_secs(7000), "{left:?}"),
        other => panic!("expected a TTL, got {other:?}"),
    }
}

/// if-absent writes a missing key.
pub async fn set_if_absent_on_missing_writes(h: &Harness) {
    let c = h.cache();
    assert!(c.set("k", "first").if_absent().await.unwrap());
    assert_eq!(
        c.get::<String>("k").await.unwrap().as_deref(),
        Some("first")
    );
}

/// if-absent leaves a present key alone.
pub async fn set_if_absent_on_present_keeps_old(h: &Harness) {
    let c = h.cache();
    c.set("k", "first").await.unwrap();
    assert!(!c.set("k", "second").if_absent().await.unwrap());
    assert_eq!(
        c.get::<String>("k").await.unwrap().as_deref(),
        Some("first")
    );
    assert_eq!(c.stats().sets, 1, "a declined write is not counted");
}

/// An expired key counts as absent.
pub async fn set_if_absent_after_expiry_writes(h: &Harness) {
    let c = h.cache();
    let ttl = h.short_ttl();
    c.set("k", "old").ttl(ttl).await.unwrap();
    h.sleep_past(ttl).await;
    assert!(c.set("k", "new").if_absent().await.unwrap());
    assert_eq!(c.get::<String>("k").await.unwrap().as_deref(), Some("new"));
}

/// if-present does not create a key.
pub async fn set_if_present_on_missing_skips(h: &Harness) {
    let c = h.cache();
    assert!(!c.set("k", "v").if_present().await.unwrap());
    assert!(!c.exists("k").await.unwrap());
}

/// if-present replaces a present key.
pub async fn set_if_present_on_present_writes(h: &Harness) {
    let c = h.cache();
    c.set("k", "old").await.unwrap();
    assert!(c.set("k", "new").if_present().await.unwrap());
    assert_eq!(c.get::<String>("k").await.unwrap().as_deref(), Some("new"));
}

/// get_many answers in the order asked, with gaps for missing keys.
pub async fn get_many_keeps_order_and_gaps(h: &Harness) {
    let c = h.cache();
    c.set("a", &1).await.unwrap();
    c.set("c", &3).await.unwrap();
    let got = c.get_many::<i32, _>(&["c", "b", "a", "a"]).await.unwrap();
    assert_eq!(got, vec![Some(3), None, Some(1), Some(1)]);
}

/// get_many of no keys is empty.
pub async fn get_many_of_nothing(h: &Harness) {
    let c = h.cache();
    let keys: [&str; 0] = [];
    assert!(c.get_many::<i32, _>(&keys).await.unwrap().is_empty());
}

/// set_many writes every entry with the options given.
pub async fn set_many_then_get_many(h: &Harness) {
    if h.lacks(
        h.caps().tags,
        h.cache().set("probe", &0).tags(["probe"]).into_future(),
    )
    .await
    {
        return;
    }
    let c = h.cache();
    let entries: Vec<(String, u64)> = (0..50).map(|i| (format!("item:{i}"), i)).collect();
    c.set_many(entries, &SetOptions::new().tag("items"))
        .await
        .unwrap();
    let keys: Vec<String> = (0..50).map(|i| format!("item:{i}")).collect();
    let got = c.get_many::<u64, _>(&keys).await.unwrap();
    assert_eq!(got, (0..50).map(Some).collect::<Vec<_>>());
    h.assert_count(c.invalidate_tag("items").await.unwrap(), 50);
}

/// delete reports whether the key held a value.
pub async fn delete_reports_presence(h: &Harness) {
    let c = h.cache();
    c.set("k", "v").await.unwrap();
    assert!(c.delete("k").await.unwrap());
    assert!(!c.delete("k").await.unwrap());
    assert_eq!(c.get::<String>("k").await.unwrap(), None);
}

/// delete_many counts only keys that held a value.
pub async fn delete_many_counts_live_keys(h: &Harness) {
    let c = h.cache();
    c.set("a", &1).await.unwrap();
    c.set("b", &2).await.unwrap();
    assert_eq!(c.delete_many(&["a", "b", "zz"]).await.unwrap(), 2);
}

/// exists follows set, delete and expiry.
pub async fn exists_tracks_lifecycle(h: &Harness) {
    let c = h.cache();
    assert!(!c.exists("k").await.unwrap());
    c.set("k", "v").await.unwrap();
    assert!(c.exists("k").await.unwrap());
    c.delete("k").await.unwrap();
    assert!(!c.exists("k").await.unwrap());
}

/// incr of a missing key starts from zero.
pub async fn incr_creates_missing_key(h: &Harness) {
    let c = h.cache();
    assert_eq!(c.incr("hits", 5).await.unwrap(), 5);
    assert_eq!(c.get::<i64>("hits").await.unwrap(), Some(5));
}

/// incr adds to an existing counter.
pub async fn incr_adds_to_existing(h: &Harness) {
    let c = h.cache();
    c.incr("n", 1).await.unwrap();
    c.incr("n", 1).await.unwrap();
    assert_eq!(c.incr("n", 40).await.unwrap(), 42);
}

/// incr takes negative deltas.
pub async fn incr_negative_delta(h: &Harness) {
    if h.lacks(
        h.caps().signed_counters,
        h.cache().incr("probe", -1).into_future(),
    )
    .await
    {
        return;
    }
    let c = h.cache();
    c.incr("n", 3).await.unwrap();
    assert_eq!(c.incr("n", -5).await.unwrap(), -2);
    assert_eq!(c.get::<i64>("n").await.unwrap(), Some(-2));
}

/// incr of a value that is not a counter is an error and leaves it alone.
pub async fn incr_on_non_integer_is_error(h: &Harness) {
    let c = h.cache();
    c.set("k", "text").await.unwrap();
    let err = c.incr("k", 1).await.unwrap_err();
    assert!(matches!(err, Error::NotAnInteger { .. }), "{err:?}");
    assert_eq!(c.get::<String>("k").await.unwrap().as_deref(), Some("text"));
}

/// incr keeps the key's TTL.
pub async fn incr_keeps_ttl(h: &Harness) {
    if h.lacks(h.caps().ttl_readable, h.cache().ttl("probe")).await {
        return;
    }
    let c = h.cache();
    c.incr("n", 1).await.unwrap();
    assert!(c.expire("n", Duration::from_secs(100)).await.unwrap());
    c.incr("n", 1).await.unwrap();
    assert!(matches!(c.ttl("n").await.unwrap(), KeyTtl::Expires(_)));
}

/// expire on a missing key answers false.
pub async fn expire_missing_key_is_false(h: &Harness) {
    let c = h.cache();
    assert!(!c.expire("nope", Duration::from_secs(10)).await.unwrap());
    assert!(!c.exists("nope").await.unwrap());
}

/// expire gives a persistent key a TTL.
pub async fn expire_gives_persistent_key_a_ttl(h: &Harness) {
    if h.lacks(h.caps().ttl_readable, h.cache().ttl("probe")).await {
        return;
    }
    let c = h.cache();
    c.set("k", "v").no_expiry().await.unwrap();
    assert!(c.expire("k", Duration::from_secs(50)).await.unwrap());
    match c.ttl("k").await.unwrap() {
        KeyTtl::Expires(left) => assert!(left <= Duration::from_secs(50), "{left:?}"),
        other => panic!("expected a TTL, got {other:?}"),
    }
}

/// expire can shorten a TTL, and the key then expires on the new one.
pub async fn expire_shortens_ttl(h: &Harness) {
    let c = h.cache();
    c.set("k", "v")
        .ttl(Duration::from_secs(3600))
        .await
        .unwrap();
    let ttl = h.short_ttl();
    assert!(c.expire("k", ttl).await.unwrap());
    h.sleep_past(ttl).await;
    assert!(!c.exists("k").await.unwrap());
}

/// ttl of a missing key is Missing.
pub async fn ttl_of_missing_key(h: &Harness) {
    if h.lacks(h.caps().ttl_readable, h.cache().ttl("probe")).await {
        return;
    }
    assert_eq!(h.cache().ttl("nope").await.unwrap(), KeyTtl::Missing);
}

/// ttl of a key without expiry is Persistent.
pub async fn ttl_of_persistent_key(h: &Harness) {
    if h.lacks(h.caps().ttl_readable, h.cache().ttl("probe")).await {
        return;
    }
    let c = h.cache();
    c.incr("counter", 1).await.unwrap();
    assert_eq!(c.ttl("counter").await.unwrap(), KeyTtl::Persistent);
}

/// ttl of an expiring key is within its TTL.
pub async fn ttl_of_expiring_key(h: &Harness) {
    if h.lacks(h.caps().ttl_readable, h.cache().ttl("probe")).await {
        return;
    }
    let c = h.cache();
    c.set("k", "v").ttl(Duration::from_secs(60)).await.unwrap();
    match c.ttl("k").await.unwrap() {
        KeyTtl::Expires(left) => assert!(
            left > Duration::from_secs(50) && left <= Duration::from_secs(60),
            "{left:?}"
        ),
        other => panic!("expected a TTL, got {other:?}"),
    }
}

/// Invalidating a tag deletes its members and nothing else.
pub async fn tag_invalidation_removes_members(h: &Harness) {
    if h.lacks(
        h.caps().tags,
        h.cache().set("probe", &0).tags(["probe"]).into_future(),
    )
    .await
    {
        return;
    }
    let c = h.cache();
    c.set("u:1", &1).tags(["users"]).await.unwrap();
    c.set("u:2", &2).tags(["users"]).await.unwrap();
    c.set("other", &3).await.unwrap();
    h.assert_count(c.invalidate_tag("users").await.unwrap(), 2);
    assert_eq!(c.get::<i32>("u:1").await.unwrap(), None);
    assert_eq!(c.get::<i32>("u:2").await.unwrap(), None);
    assert_eq!(c.get::<i32>("other").await.unwrap(), Some(3));
}

/// A key with several tags goes with any one of them.
pub async fn multi_tag_key_goes_with_any_tag(h: &Harness) {
    if h.lacks(
        h.caps().tags,
        h.cache().set("probe", &0).tags(["probe"]).into_future(),
    )
    .await
    {
        return;
    }
    let c = h.cache();
    c.set("k1", &1).tags(["a", "b"]).await.unwrap();
    c.set("k2", &2).tags(["a", "b"]).await.unwrap();
    h.assert_count(c.invalidate_tag("b").await.unwrap(), 2);
    assert!(!c.exists("k1").await.unwrap());
    // Their membership of `a` went with them.
    h.assert_count(c.invalidate_tag("a").await.unwrap(), 0);
}

/// Invalidating one tag leaves keys that only carry other tags.
pub async fn partial_invalidation_leaves_other_tags(h: &Harness) {
    if h.lacks(
        h.caps().tags,
        h.cache().set("probe", &0).tags(["probe"]).into_future(),
    )
    .await
    {
        return;
    }
    let c = h.cache();
    c.set("both", &1).tags(["a", "b"]).await.unwrap();
    c.set("only_b", &2).tags(["b"]).await.unwrap();
    c.set("only_c", &3).tags(["c"]).await.unwrap();
    h.assert_count(c.invalidate_tags(&["a"]).await.unwrap(), 1);
    assert!(c.exists("only_b").await.unwrap());
    assert!(c.exists("only_c").await.unwrap());
    if let Some(members) = h.members(&c, "b").await {
        assert_eq!(members, vec!["only_b"]);
    }
}

/// A tag whose members have different TTLs still reaches the longest-lived
/// one after the short-lived ones expire.
pub async fn tag_members_with_different_ttls(h: &Harness) {
    if h.lacks(
        h.caps().tags,
        h.cache().set("probe", &0).tags(["probe"]).into_future(),
    )
    .await
    {
        return;
    }
    let c = h.cache();
    let short = h.short_ttl();
    c.set("long", &1)
        .ttl(Duration::from_secs(3600))
        .tags(["t"])
        .await
        .unwrap();
    c.set("short", &2).ttl(short).tags(["t"]).await.unwrap();
    h.sleep_past(short).await;
    c.set("later", &3).ttl(short).tags(["t"]).await.unwrap();
    h.assert_count(c.invalidate_tag("t").await.unwrap(), 2);
    assert!(
        !c.exists("long").await.unwrap(),
        "the longest-lived member must go"
    );
    assert!(!c.exists("later").await.unwrap());
}

/// Re-setting a key without its old tag takes it out of that tag.
pub async fn reset_without_tag_leaves_tag(h: &Harness) {
    if h.lacks(
        h.caps().tags,
        h.cache().set("probe", &0).tags(["probe"]).into_future(),
    )
    .await
    {
        return;
    }
    let c = h.cache();
    c.set("k", &1).tags(["old"]).await.unwrap();
    c.set("k", &2).tags(["new"]).await.unwrap();
    h.assert_count(c.invalidate_tag("old").await.unwrap(), 0);
    assert_eq!(c.get::<i32>("k").await.unwrap(), Some(2));
    h.assert_count(c.invalidate_tag("new").await.unwrap(), 1);
}

/// A deleted key leaves its tags: re-creating it untagged keeps it safe from
/// the old tag.
pub async fn delete_cleans_tag_index(h: &Harness) {
    if h.lacks(
        h.caps().tags,
        h.cache().set("probe", &0).tags(["probe"]).into_future(),
    )
    .await
    {
        return;
    }
    let c = h.cache();
    c.set("k", &1).tags(["t"]).await.unwrap();
    c.delete("k").await.unwrap();
    assert!(h.members(&c, "t").await.is_none_or(|m| m.is_empty()));
    c.set("k", &2).await.unwrap();
    h.assert_count(c.invalidate_tag("t").await.unwrap(), 0);
    assert_eq!(c.get::<i32>("k").await.unwrap(), Some(2));
}

/// An expired key leaves its tags.
pub async fn expiry_cleans_tag_index(h: &Harness) {
    if h.lacks(
        h.caps().tags,
        h.cache().set("probe", &0).tags(["probe"]).into_future(),
    )
    .await
    {
        return;
    }
    let c = h.cache();
    let ttl = h.short_ttl();
    c.set("k", &1).ttl(ttl).tags(["t"]).await.unwrap();
    h.sleep_past(ttl).await;
    assert!(h.members(&c, "t").await.is_none_or(|m| m.is_empty()));
    c.set("k", &2).await.unwrap();
    h.assert_count(c.invalidate_tag("t").await.unwrap(), 0);
    assert_eq!(c.get::<i32>("k").await.unwrap(), Some(2));
}

/// An evicted key leaves its tags: the tag lists only live keys, and
/// invalidation counts only those.
pub async fn eviction_cleans_tag_index(h: &Harness) {
    if h.lacks(
        h.caps().tags,
        h.cache().set("probe", &0).tags(["probe"]).into_future(),
    )
    .await
    {
        return;
    }
    if h.lacks(h.caps().tag_listing, h.cache().tag_members("probe", 1))
        .await
    {
        return;
    }
    let c = h.bounded_cache(20).await;
    for i in 0..200 {
        c.set(&format!("k{i}"), &i).tags(["all"]).await.unwrap();
    }
    // A server may evict at any command, so only what was live when the
    // tag was listed is known: fewer than were written.
    let members = c.tag_members("all", 1000).await.unwrap();
    assert!(
        members.len() < 200,
        "tag lists {} of 200 keys on a backend bounded to about 20",
        members.len()
    );
    let removed = c.invalidate_tag("all").await.unwrap();
    if let Some(removed) = removed.exact() {
        assert!(
            removed <= members.len() as u64,
            "{removed} > {}",
            members.len()
        );
    }
    for i in 0..200 {
        assert!(
            !c.exists(&format!("k{i}")).await.unwrap(),
            "k{i} outlived its tag"
        );
    }
    assert!(h.members(&c, "all").await.is_none_or(|m| m.is_empty()));
}

/// Invalidating a tag nobody used deletes nothing.
pub async fn invalidate_unknown_tag_is_zero(h: &Harness) {
    if h.lacks(
        h.caps().tags,
        h.cache().set("probe", &0).tags(["probe"]).into_future(),
    )
    .await
    {
        return;
    }
    let c = h.cache();
    c.set("k", &1).await.unwrap();
    h.assert_count(c.invalidate_tag("ghost").await.unwrap(), 0);
    assert!(c.exists("k").await.unwrap());
}

/// A tag of one namespace does not reach another.
pub async fn tags_are_namespaced(h: &Harness) {
    if h.lacks(
        h.caps().tags,
        h.cache().set("probe", &0).tags(["probe"]).into_future(),
    )
    .await
    {
        return;
    }
    let a = h.cache_in("va");
    let b = h.cache_in("vb");
    a.set("k", &1).tags(["t"]).await.unwrap();
    b.set("k", &2).tags(["t"]).await.unwrap();
    h.assert_count(a.invalidate_tag("t").await.unwrap(), 1);
    assert_eq!(b.get::<i32>("k").await.unwrap(), Some(2));
}

/// `user:*` deletes the user keys only.
pub async fn pattern_invalidation_by_prefix(h: &Harness) {
    if h.lacks(h.caps().scan, h.cache().scan("*", 1)).await {
        return;
    }
    let c = h.cache();
    for k in ["user:1", "user:2", "user:1:profile", "users", "org:1"] {
        c.set(k, &1).await.unwrap();
    }
    h.assert_count(c.invalidate_pattern("user:*").await.unwrap(), 3);
    assert!(c.exists("users").await.unwrap());
    assert!(c.exists("org:1").await.unwrap());
}

/// `.` in a pattern is a literal dot, not "any character".
pub async fn pattern_dot_is_literal(h: &Harness) {
    if h.lacks(h.caps().scan, h.cache().scan("*", 1)).await {
        return;
    }
    let c = h.cache();
    c.set("a.b", &1).await.unwrap();
    c.set("axb", &2).await.unwrap();
    h.assert_count(c.invalidate_pattern("a.*").await.unwrap(), 1);
    assert!(c.exists("axb").await.unwrap());
}

/// Parentheses in keys and patterns are literal.
pub async fn pattern_with_parentheses(h: &Harness) {
    if h.lacks(h.caps().scan, h.cache().scan("*", 1)).await {
        return;
    }
    let c = h.cache();
    c.set("f(x)", &1).await.unwrap();
    c.set("f(y)", &1).await.unwrap();
    c.set("fx", &1).await.unwrap();
    h.assert_count(c.invalidate_pattern("f(x*").await.unwrap(), 1);
    assert_eq!(c.scan("f(*", 10).await.unwrap(), vec!["f(y)"]);
}

/// Brackets are a class unless escaped.
pub async fn pattern_with_escaped_brackets(h: &Harness) {
    if h.lacks(h.caps().scan, h.cache().scan("*", 1)).await {
        return;
    }
    let c = h.cache();
    c.set("arr[1]", &1).await.unwrap();
    c.set("arr1", &1).await.unwrap();
    let literal = format!("{}*", larder_core::glob::escape("arr["));
    h.assert_count(c.invalidate_pattern(&literal).await.unwrap(), 1);
    assert!(c.exists("arr1").await.unwrap());
    c.set("arr2", &1).await.unwrap();
    h.assert_count(c.invalidate_pattern("arr[12]").await.unwrap(), 2);
}

/// An escaped `*` matches only a literal star.
pub async fn pattern_with_escaped_star(h: &Harness) {
    if h.lacks(h.caps().scan, h.cache().scan("*", 1)).await {
        return;
    }
    let c = h.cache();
    c.set("a*b", &1).await.unwrap();
    c.set("axb", &1).await.unwrap();
    h.assert_count(c.invalidate_pattern("a\\*b").await.unwrap(), 1);
    assert!(c.exists("axb").await.unwrap());
}

/// Unicode keys match by character.
pub async fn pattern_with_unicode(h: &Harness) {
    if h.lacks(h.caps().scan, h.cache().scan("*", 1)).await {
        return;
    }
    let c = h.cache();
    c.set("café:1", &1).await.unwrap();
    c.set("cafe:1", &1).await.unwrap();
    c.set("日本:1", &1).await.unwrap();
    h.assert_count(c.invalidate_pattern("café:*").await.unwrap(), 1);
    h.assert_count(c.invalidate_pattern("日?:1").await.unwrap(), 1);
    assert!(c.exists("cafe:1").await.unwrap());
}

/// scan lists live matching keys of this namespace, up to the limit.
pub async fn scan_lists_matching_keys(h: &Harness) {
    if h.lacks(h.caps().scan, h.cache().scan("*", 1)).await {
        return;
    }
    let c = h.cache();
    for i in 0..5 {
        c.set(&format!("s:{i}"), &i).await.unwrap();
    }
    c.set("other", &0).await.unwrap();
    let mut keys = c.scan("s:*", 100).await.unwrap();
    keys.sort();
    assert_eq!(keys, vec!["s:0", "s:1", "s:2", "s:3", "s:4"]);
    assert_eq!(c.scan("s:*", 2).await.unwrap().len(), 2);
}

/// clear deletes this namespace and nothing else.
pub async fn clear_leaves_other_namespaces(h: &Harness) {
    if h.lacks(
        h.caps().tags,
        h.cache().set("probe", &0).tags(["probe"]).into_future(),
    )
    .await
    {
        return;
    }
    let mine = h.cache_in("v1");
    let other_version = h.cache_in("v2");
    mine.set("a", &1).tags(["t"]).await.unwrap();
    mine.set("b", &1).await.unwrap();
    other_version.set("a", &2).tags(["t"]).await.unwrap();
    h.assert_count(mine.clear().await.unwrap(), 2);
    assert!(!mine.exists("a").await.unwrap());
    assert_eq!(other_version.get::<i32>("a").await.unwrap(), Some(2));
    h.assert_count(other_version.invalidate_tag("t").await.unwrap(), 1);
}

/// A new version does not see the old one's values.
pub async fn version_bump_misses(h: &Harness) {
    h.cache_in("v1").set("k", &1).await.unwrap();
    assert_eq!(h.cache_in("v2").get::<i32>("k").await.unwrap(), None);
    assert_eq!(h.cache_in("v1").get::<i32>("k").await.unwrap(), Some(1));
}

/// A 1 MiB value round-trips intact.
pub async fn large_value_1mib(h: &Harness) {
    let c = h.cache();
    let value: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let text: String = value.iter().map(|b| char::from(b'a' + b % 26)).collect();
    c.set("big", &text).await.unwrap();
    assert_eq!(c.get::<String>("big").await.unwrap(), Some(text));
}

/// Empty strings and empty collections are values, not misses.
pub async fn empty_values(h: &Harness) {
    let c = h.cache();
    c.set("s", "").await.unwrap();
    c.set("v", &Vec::<u8>::new()).await.unwrap();
    c.set("unit", &()).await.unwrap();
    assert_eq!(c.get::<String>("s").await.unwrap().as_deref(), Some(""));
    assert_eq!(c.get::<Vec<u8>>("v").await.unwrap(), Some(vec![]));
    assert_eq!(c.get::<()>("unit").await.unwrap(), Some(()));
}

/// Every byte value survives.
pub async fn binary_values_roundtrip(h: &Harness) {
    let c = h.cache();
    let bytes: Vec<u8> = (0..=255).collect();
    c.set("bin", &bytes).await.unwrap();
    assert_eq!(c.get::<Vec<u8>>("bin").await.unwrap(), Some(bytes));
}

/// Unicode keys are stored and found.
pub async fn unicode_keys(h: &Harness) {
    let c = h.cache();
    for k in ["ключ", "鍵:1", "emoji:🦀", "spaced key"] {
        c.set(k, k).await.unwrap();
        assert_eq!(c.get::<String>(k).await.unwrap().as_deref(), Some(k));
    }
}

/// Keys over the stored-key limit work, distinctly.
pub async fn long_keys_are_hashed_and_work(h: &Harness) {
    if h.lacks(
        h.caps().tags,
        h.cache().set("probe", &0).tags(["probe"]).into_future(),
    )
    .await
    {
        return;
    }
    let c = h.cache();
    let a = format!("{}a", "x".repeat(600));
    let b = format!("{}b", "x".repeat(600));
    c.set(&a, &1).tags(["long"]).await.unwrap();
    c.set(&b, &2).await.unwrap();
    assert_eq!(c.get::<i32>(&a).await.unwrap(), Some(1));
    assert_eq!(c.get::<i32>(&b).await.unwrap(), Some(2));
    h.assert_count(c.invalidate_tag("long").await.unwrap(), 1);
    assert_eq!(c.get::<i32>(&b).await.unwrap(), Some(2));
}

/// Concurrent writers to one key leave one whole value.
pub async fn concurrent_writers_one_key(h: &Harness) {
    if h.lacks(
        h.caps().tags,
        h.cache().set("probe", &0).tags(["probe"]).into_future(),
    )
    .await
    {
        return;
    }
    if h.lacks(h.caps().tag_listing, h.cache().tag_members("probe", 1))
        .await
    {
        return;
    }
    let c = h.cache();
    let mut tasks = Vec::new();
    for w in 0..16u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let v = user(w * 1000 + i);
                c.set("hot", &v).tags([format!("w{w}")]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let last: User = c.get("hot").await.unwrap().expect("a value");
    assert_eq!(last, user(last.id), "value is one writer's, whole");
    let writer = last.id / 1000;
    // Only the last writer's tag still reaches the key.
    let mut reached = 0;
    for w in 0..16u64 {
        if !c
            .tag_members(&format!("w{w}"), 10)
            .await
            .unwrap()
            .is_empty()
        {
            reached += 1;
            assert_eq!(w, writer);
        }
    }
    assert_eq!(reached, 1);
}

/// A lock has one holder, and only its token releases it.
pub async fn lock_is_exclusive_and_token_checked(h: &Harness) {
    if h.lacks(
        h.caps().locks,
        h.cache().try_lock("probe", Duration::from_secs(1)),
    )
    .await
    {
        return;
    }
    let c = h.cache();
    let held = c
        .try_lock("job", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("free lock");
    assert!(
        c.try_lock("job", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none()
    );
    let key = c.stored_key("__lock:job").unwrap();
    assert!(!h.backend().unlock(&key, "not-the-token").await.unwrap());
    assert!(held.release().await.unwrap());
    let again = c.try_lock("job", Duration::from_secs(30)).await.unwrap();
    assert!(again.is_some());
}

/// The health probe answers.
pub async fn health_is_ok(h: &Harness) {
    let report = h.cache().health_report().await;
    assert!(report.is_healthy(), "{report:?}");
    assert_eq!(report.backend, h.backend().kind());
    assert_eq!(report.label, h.backend().label());
}

/// fuzzy_search finds similar keys, best first, with their values.
pub async fn fuzzy_search_finds_similar_keys(h: &Harness) {
    if h.lacks(h.caps().scan, h.cache().scan("*", 1)).await {
        return;
    }
    if h.lacks(h.caps().tag_listing, h.cache().tag_members("probe", 1))
        .await
    {
        return;
    }
    let c = h.cache();
    c.set("user:alice", &1).tags(["people"]).await.unwrap();
    c.set("user:alicia", &2).await.unwrap();
    c.set("user:bob", &3).tags(["people"]).await.unwrap();
    let found = c
        .fuzzy_search::<i32>("alice", &FuzzyOptions::default())
        .await
        .unwrap();
    let keys: Vec<&str> = found.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys.first(), Some(&"user:alice"));
    assert!(keys.contains(&"user:alicia"));
    assert!(!keys.contains(&"user:bob"));
    assert_eq!(found[0].value, 1);
    assert_eq!(found[0].score, 1.0);
    let tagged = c
        .fuzzy_search::<i32>(
            "alic",
            &FuzzyOptions {
                tag: Some("people".into()),
                ..FuzzyOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].key, "user:alice");
}

/// Concurrent misses of one key run the loader once.
pub async fn get_or_load_runs_loader_once(h: &Harness) {
    let c = h.cache();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let c = c.clone();
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            c.get_or_load("cold", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, Error>(user(1))
            })
            .await
            .unwrap()
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        seen.insert(t.await.unwrap().id);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(seen, HashSet::from([1]));
    assert_eq!(c.get::<User>("cold").await.unwrap(), Some(user(1)));
}

/// A value over the size limit is rejected with a clear error and nothing
/// is stored.
pub async fn oversize_value_is_rejected(h: &Harness) {
    let c = h.builder().max_value_size(1024).build().unwrap();
    c.set("k", "small").await.unwrap();
    let err = c.set("k", &"x".repeat(2000)).await.unwrap_err();
    assert!(
        matches!(err, Error::PayloadTooLarge { limit: 1024, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_value_size"), "{err}");
    assert_eq!(
        c.get::<String>("k").await.unwrap().as_deref(),
        Some("small")
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_suite_has_at_least_80_cases() {
        assert!(super::CASES.len() >= 80, "{}", super::CASES.len());
        let unique: std::collections::HashSet<_> = super::CASES.iter().collect();
        assert_eq!(unique.len(), super::CASES.len());
    }
}
