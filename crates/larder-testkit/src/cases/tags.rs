//! Tag cases that look at the backend's own index (through
//! [`Factory::tag_index`](crate::Factory::tag_index)), not only at the
//! filtered `tag_members`: an index must hold no garbage and must never
//! expire before a member.

use std::future::IntoFuture;
use std::time::Duration;

use larder_core::Expiry;

use crate::Harness;

async fn no_tags(h: &Harness) -> bool {
    h.lacks(
        h.caps().tags,
        h.cache().set("probe", &0).tags(["probe"]).into_future(),
    )
    .await
}

/// A tagged `if_absent` write that declines (the key exists) leaves the
/// existing entry's tag index as it was: the index does not start expiring
/// with the declined write's shorter TTL, and invalidating the tag still
/// reaches the key after that TTL has passed.
pub async fn declined_tagged_write_keeps_the_index(h: &Harness) {
    if no_tags(h).await {
        return;
    }
    let c = h.cache();
    let short = h.short_ttl();
    c.set("k", &1)
        .ttl(Duration::from_secs(3600))
        .tags(["t"])
        .await
        .unwrap();
    let written = c
        .set("k", &2)
        .if_absent()
        .ttl(short)
        .tags(["t"])
        .await
        .unwrap();
    assert!(!written);
    if let Some(index) = h.tag_index(&c, "t").await {
        let k = c.stored_key("k").unwrap();
        assert_eq!(index.members, vec![k]);
        if let Expiry::After(left) = index.expiry {
            assert!(
                left > Duration::from_secs(3000),
                "a declined write shortened the tag index to {left:?}"
            );
        }
    }
    h.sleep_past(short).await;
    h.assert_count(c.invalidate_tag("t").await.unwrap(), 1);
    assert!(
        !c.exists("k").await.unwrap(),
        "the tag no longer reached the key"
    );
}

/// Re-setting a key without its tags takes it out of their index at once.
pub async fn untagged_reset_leaves_the_index(h: &Harness) {
    if no_tags(h).await {
        return;
    }
    let c = h.cache();
    c.set("k", &1).tags(["t"]).await.unwrap();
    c.set("k", &2).await.unwrap();
    if let Some(index) = h.tag_index(&c, "t").await {
        assert!(index.members.is_empty(), "{index:?}");
    }
    h.assert_count(c.invalidate_tag("t").await.unwrap(), 0);
    assert_eq!(c.get::<i32>("k").await.unwrap(), Some(2));
}

/// After any sequence of writes, deletes and expiries, a tag's index holds
/// only live members (once the backend has trimmed: at the next write to
/// the tag, or its periodic trim) and lives exactly as long as its
/// longest-lived member: a persistent member that leaves no longer keeps
/// the index alive forever.
pub async fn tag_index_holds_only_live_members(h: &Harness) {
    if no_tags(h).await {
        return;
    }
    let c = h.cache();
    let key = |k: &str| c.stored_key(k).unwrap();
    let hour = Duration::from_secs(3600);
    c.set("a", &1).ttl(hour).tags(["t"]).await.unwrap();
    c.set("b", &1).ttl(hour).tags(["t"]).await.unwrap();
    c.set("p", &1).no_expiry().tags(["t"]).await.unwrap();
    c.set("q", &1)
        .ttl(Duration::from_secs(60))
        .tags(["t"])
        .await
        .unwrap();
    let Some(index) = h.tag_index(&c, "t").await else {
        return;
    };
    assert_eq!(
        index.members,
        sorted([key("a"), key("b"), key("p"), key("q")])
    );
    assert_eq!(index.expiry, Expiry::Never, "a persistent member keeps it");

    c.delete("a").await.unwrap();
    c.set("b", &2).ttl(hour).tags(["other"]).await.unwrap();
    c.delete("p").await.unwrap();
    let index = h.tag_index(&c, "t").await.expect("an index");
    assert_eq!(
        index.members,
        vec![key("q")],
        "deleted and re-tagged keys left"
    );
    match index.expiry {
        Expiry::After(left) => assert!(
            left <= Duration::from_secs(60) && left > Duration::from_secs(50),
            "the index should now expire with q: {left:?}"
        ),
        // An index removed with its last member has no expiry of its own.
        Expiry::Never if h.caps().ttl_readable => {}
        other => panic!("{other:?}"),
    }

    // Expiry: a member that expires leaves at the next trim.
    let short = h.short_ttl();
    c.set("r", &1).ttl(short).tags(["t2"]).await.unwrap();
    c.set("s", &1).ttl(hour).tags(["t2"]).await.unwrap();
    h.sleep_past(short).await;
    c.set("w", &1).ttl(hour).tags(["t2"]).await.unwrap();
    h.trim().await;
    let index = h.tag_index(&c, "t2").await.expect("an index");
    assert_eq!(
        index.members,
        sorted([key("s"), key("w")]),
        "expired r is gone"
    );

    // The last member leaving leaves no empty index behind.
    c.delete_many(&["q", "s", "w"]).await.unwrap();
    let gone = h.tag_index(&c, "t").await.expect("an index");
    assert!(gone.members.is_empty(), "{gone:?}");
}

fn sorted<const N: usize>(keys: [String; N]) -> Vec<String> {
    let mut keys = keys.to_vec();
    keys.sort();
    keys
}
