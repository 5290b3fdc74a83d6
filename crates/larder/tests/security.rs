//! Values nobody can forge or read (issue 15), on the memory backend and on
//! a real Redis: copies to another key, retired keys, flipped bits,
//! tampered nonces and ciphertexts, no plaintext at rest, compression with
//! encryption, and limits checked before anything is sent.

#![cfg(all(feature = "memory", feature = "redis"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use larder::{
    Backend, BoxFuture, Cache, CacheBuilder, KeyRing, MemoryBackend, Result, SetOptions,
    WriteOptions,
};
use larder_testkit::redis::RedisServer;
use serde::{Deserialize, Serialize};

const OLD: &str = "old:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const NEW: &str = "new:hex:abababababababababababababababababababababababababababababababab";

fn ring(text: &str) -> KeyRing {
    KeyRing::parse(text, "keys", "test").unwrap()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    email: String,
    notes: String,
}

fn profile(notes_len: usize) -> Profile {
    Profile {
        id: 42,
        email: "ada@example.com".into(),
        notes: "lovelace ".repeat(notes_len / 9 + 1),
    }
}

/// A backend under test, with raw access to what it stores.
enum Store {
    Memory(Arc<dyn Backend>),
    Redis(Box<RedisServer>, Arc<dyn Backend>),
}

impl Store {
    fn memory() -> Store {
        Store::Memory(Arc::new(MemoryBackend::new()))
    }

    async fn redis() -> Store {
        let server = RedisServer::start();
        let backend = larder::open_backend(&server.url()).await.unwrap();
        Store::Redis(Box::new(server), backend)
    }

    fn backend(&self) -> Arc<dyn Backend> {
        match self {
            Store::Memory(b) | Store::Redis(_, b) => b.clone(),
        }
    }

    fn builder(&self) -> CacheBuilder {
        Cache::builder().backend_arc(self.backend()).prefix("sec")
    }

    async fn raw(&self, stored: &str) -> Bytes {
        self.backend().get(stored).await.unwrap().expect("stored")
    }

    async fn put_raw(&self, stored: &str, bytes: Bytes) {
        self.backend()
            .set(stored, bytes, &WriteOptions::new())
            .await
            .unwrap();
    }

    /// Copy a stored value to another key: `COPY` on Redis, a raw GET and
    /// SET on memory.
    async fn copy(&self, from: &str, to: &str) {
        match self {
            Store::Redis(server, _) => {
                assert_eq!(server.cli(&["COPY", from, to]), "1");
            }
            Store::Memory(_) => self.put_raw(to, self.raw(from).await).await,
        }
    }
}

async fn signed_copies_are_rejected(store: &Store) {
    let cache = store.builder().signing_keys(ring(NEW)).build().unwrap();
    cache.set("user:1", &profile(10)).await.unwrap();
    let (one, two) = (
        cache.stored_key("user:1").unwrap(),
        cache.stored_key("user:2").unwrap(),
    );
    store.copy(&one, &two).await;
    let before = cache.stats();
    assert_eq!(cache.get::<Profile>("user:2").await.unwrap(), None);
    let after = cache.stats();
    assert_eq!(after.integrity_errors, before.integrity_errors + 1);
    assert_eq!(after.misses, before.misses + 1);
    // A raw GET + SET of the same bytes: also rejected.
    store.put_raw(&two, store.raw(&one).await).await;
    assert_eq!(cache.get::<Profile>("user:2").await.unwrap(), None);
    assert_eq!(cache.stats().integrity_errors, before.integrity_errors + 2);
    // The original still reads.
    assert_eq!(cache.get("user:1").await.unwrap(), Some(profile(10)));
    // So does a whole entry, through get_entry.
    assert!(cache.get_entry("user:2").await.unwrap().is_none());
}

async fn retired_keys_verify_and_the_next_write_resigns(store: &Store) {
    let old = store.builder().signing_keys(ring(OLD)).build().unwrap();
    old.set("rot", &profile(5)).await.unwrap();
    let stored = old.stored_key("rot").unwrap();
    let key_id = |bytes: &Bytes| {
        let len = usize::from(bytes[16]);
        String::from_utf8(bytes[17..17 + len].to_vec()).unwrap()
    };
    assert_eq!(key_id(&store.raw(&stored).await), "old");
    let rotated = store
        .builder()
        .signing_keys(ring(&format!("{NEW},{OLD}")))
        .build()
        .unwrap();
    assert_eq!(rotated.get("rot").await.unwrap(), Some(profile(5)));
    assert_eq!(rotated.stats().integrity_errors, 0);
    rotated.set("rot", &profile(6)).await.unwrap();
    assert_eq!(key_id(&store.raw(&stored).await), "new", "re-signed");
    // Once the old key is dropped from the ring, its values are refused.
    old.set("rot2", &profile(5)).await.unwrap();
    let new_only = store.builder().signing_keys(ring(NEW)).build().unwrap();
    assert_eq!(new_only.get::<Profile>("rot2").await.unwrap(), None);
    assert_eq!(new_only.stats().integrity_errors, 1);
}

async fn flipped_bits_are_rejected(store: &Store) {
    for (name, builder) in [
        ("signed", store.builder().signing_keys(ring(NEW))),
        ("encrypted", store.builder().encryption_keys(ring(NEW))),
    ] {
        let cache = builder.build().unwrap();
        cache.set("flip", &profile(3000)).await.unwrap();
        let stored = cache.stored_key("flip").unwrap();
        let good = store.raw(&stored).await;
        // Header, key id, nonce, ciphertext or payload, tag: every region.
        let len = good.len();
        for at in [4, 8, 17, 20, 30, len / 2, len - 20, len - 1] {
            let mut bad = good.to_vec();
            bad[at] ^= 0x01;
            store.put_raw(&stored, Bytes::from(bad)).await;
            assert_eq!(
                cache.get::<Profile>("flip").await.unwrap(),
                None,
                "{name}: bit flipped at byte {at} of {len}"
            );
        }
        store.put_raw(&stored, good).await;
        assert_eq!(cache.get("flip").await.unwrap(), Some(profile(3000)));
        assert_eq!(
            cache.stats().integrity_errors + cache.stats().errors / 1000,
            8
        );
    }
}

async fn encrypted_values_are_unreadable_at_rest_and_round_trip(store: &Store) {
    let cache = store
        .builder()
        .encryption_keys(ring(NEW))
        .compress_min_size(Some(1024))
        .build()
        .unwrap();
    // Small: encrypted only. Large: compressed, then encrypted.
    for (key, value) in [("small", profile(10)), ("large", profile(64 * 1024))] {
        cache.set(key, &value).await.unwrap();
        let stored = cache.stored_key(key).unwrap();
        let raw = store.raw(&stored).await;
        for needle in [&b"ada@example.com"[..], b"lovelace", b"email"] {
            assert!(
                !raw.windows(needle.len()).any(|w| w == needle),
                "{key}: plaintext {:?} at rest",
                String::from_utf8_lossy(needle)
            );
        }
        let flags = raw[4];
        assert_eq!(flags & 2, 2, "encrypted");
        if key == "large" {
            assert_eq!(flags & 1, 1, "compressed");
            assert!(
                raw.len() < 64 * 1024 / 4,
                "compressed to {} bytes",
                raw.len()
            );
        }
        assert_eq!(cache.get(key).await.unwrap(), Some(value));
    }
    if let Store::Redis(server, _) = store {
        let stored = cache.stored_key("small").unwrap();
        let text = server.cli(&["GET", &stored]);
        assert!(!text.contains("ada@example.com"), "{text}");
    }
}

async fn tampered_nonce_or_ciphertext_is_rejected(store: &Store) {
    let cache = store.builder().encryption_keys(ring(NEW)).build().unwrap();
    cache.set("enc", &profile(100)).await.unwrap();
    let stored = cache.stored_key("enc").unwrap();
    let good = store.raw(&stored).await;
    let id_len = usize::from(good[16]);
    let nonce = 17 + id_len;
    let ciphertext = nonce + 12;
    for (what, at) in [
        ("nonce", nonce),
        ("nonce", nonce + 11),
        ("ciphertext", ciphertext + 5),
    ] {
        let mut bad = good.to_vec();
        bad[at] ^= 0x80;
        store.put_raw(&stored, Bytes::from(bad)).await;
        let before = cache.stats().integrity_errors;
        assert_eq!(cache.get::<Profile>("enc").await.unwrap(), None, "{what}");
        assert_eq!(cache.stats().integrity_errors, before + 1, "{what}");
    }
    // A nonce from another value, with this ciphertext: rejected too.
    cache.set("other", &profile(100)).await.unwrap();
    let other = store.raw(&cache.stored_key("other").unwrap()).await;
    let mut spliced = good.to_vec();
    spliced[nonce..ciphertext].copy_from_slice(&other[nonce..ciphertext]);
    store.put_raw(&stored, Bytes::from(spliced)).await;
    assert_eq!(cache.get::<Profile>("enc").await.unwrap(), None);
}

async fn unsigned_values_are_a_counted_miss(store: &Store) {
    let plain = store.builder().build().unwrap();
    plain.set("planted", &profile(1)).await.unwrap();
    let strict = store.builder().signing_keys(ring(NEW)).build().unwrap();
    assert_eq!(strict.get::<Profile>("planted").await.unwrap(), None);
    assert_eq!(strict.stats().integrity_errors, 1);
    // A read-through replaces it with a signed value from the loader.
    let loaded: Profile = strict
        .get_or_load("planted", || async { Ok::<_, larder::Error>(profile(2)) })
        .await
        .unwrap();
    assert_eq!(loaded, profile(2));
    assert_eq!(strict.get("planted").await.unwrap(), Some(profile(2)));
    // While rolling signing out, unsigned values are still read.
    plain.set("legacy", &profile(1)).await.unwrap();
    let lenient = store
        .builder()
        .signing_keys(ring(NEW))
        .allow_unsigned(true)
        .build()
        .unwrap();
    assert_eq!(lenient.get("legacy").await.unwrap(), Some(profile(1)));
}

async fn run_all(store: &Store) {
    signed_copies_are_rejected(store).await;
    retired_keys_verify_and_the_next_write_resigns(store).await;
    flipped_bits_are_rejected(store).await;
    encrypted_values_are_unreadable_at_rest_and_round_trip(store).await;
    tampered_nonce_or_ciphertext_is_rejected(store).await;
    unsigned_values_are_a_counted_miss(store).await;
}

#[tokio::test]
async fn memory_backend() {
    run_all(&Store::memory()).await;
}

#[tokio::test]
async fn redis_backend() {
    run_all(&Store::redis().await).await;
}

/// A memory backend that counts the writes that reach it (`set_many` and
/// the read-through's `set_filled` go through `set` here).
#[derive(Debug)]
struct Counting {
    inner: MemoryBackend,
    writes: Arc<AtomicU64>,
}

impl Backend for Counting {
    fn kind(&self) -> &'static str {
        "counting"
    }
    fn capabilities(&self) -> larder::Capabilities {
        self.inner.capabilities()
    }
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        self.inner.get(key)
    }
    fn get_entry<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<larder::Entry>>> {
        self.inner.get_entry(key)
    }
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<bool>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.set(key, value, options)
    }
    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(keys)
    }
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        self.inner.exists(key)
    }
    fn expire<'a>(&'a self, key: &'a str, ttl: std::time::Duration) -> BoxFuture<'a, Result<bool>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.expire(key, ttl)
    }
    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<larder::KeyTtl>> {
        self.inner.ttl(key)
    }
    fn incr<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        ttl: Option<std::time::Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.incr(key, delta, ttl)
    }
    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<larder::Count>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.invalidate_tags(tags)
    }
    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<larder::Count>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.clear(prefix)
    }
    fn health(&self) -> BoxFuture<'_, Result<larder::HealthReport>> {
        self.inner.health()
    }
}

async fn refused_before_io(cache: &Cache) {
    let big = "x".repeat(2 * 1024 * 1024);
    let err = cache.set("big", &big).await.unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), "payload_too_large", "{msg}");
    assert!(
        msg.contains("1048576") && msg.contains("max_value_size"),
        "{msg}"
    );
    let tags: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let err = cache.set("tagged", &1).tags(&tags).await.unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), "limit_exceeded", "{msg}");
    assert!(
        msg.contains("65") && msg.contains("64") && msg.contains("max_tags"),
        "{msg}"
    );
    let long_tag = "t".repeat(2000);
    let err = cache.set("tagged", &1).tags([&long_tag]).await.unwrap_err();
    assert!(err.to_string().contains("max_tag_length"), "{err}");
    let options = SetOptions::default().tags(&tags);
    let err = cache
        .set_many([("a", 1), ("b", 2)], &options)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "limit_exceeded");
    let err = cache
        .set_many([("a", big.clone())], &SetOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "payload_too_large");
}

/// The read-through neither stores an over-size value nor fails: the
/// loader's value comes back.
async fn read_through_over_the_limit(cache: &Cache) {
    let big = "x".repeat(2 * 1024 * 1024);
    let v: String = cache
        .get_or_load("loaded", || async { Ok::<_, larder::Error>(big.clone()) })
        .await
        .unwrap();
    assert_eq!(v.len(), big.len());
    assert!(!cache.exists("loaded").await.unwrap(), "not stored");
    assert!(cache.stats().errors > 0, "the refusal is counted");
}

#[tokio::test]
async fn limits_are_checked_before_anything_reaches_the_backend() {
    let calls = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: MemoryBackend::new(),
        writes: calls.clone(),
    };
    let cache = Cache::builder()
        .backend(counting)
        .max_value_size(1024 * 1024)
        .compress_min_size(None)
        .build()
        .unwrap();
    refused_before_io(&cache).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no write reached the backend"
    );
    cache.set("ok", &1).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the counter counts");
}

/// The `calls` figures of `INFO commandstats` for write commands.
fn write_commands(server: &RedisServer) -> Vec<String> {
    server
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter(|l| l.starts_with("cmdstat_"))
        .filter(|l| {
            ![
                "cmdstat_info",
                "cmdstat_ping",
                "cmdstat_get",
                "cmdstat_client",
                "cmdstat_hello",
                "cmdstat_select",
            ]
            .iter()
            .any(|c| l.starts_with(&format!("{c}:")))
        })
        .map(|l| l.split(",usec=").next().unwrap_or(l).to_owned())
        .collect()
}

#[tokio::test]
async fn redis_sees_no_command_for_refused_writes() {
    let server = RedisServer::start();
    let backend = larder::open_backend(&server.url()).await.unwrap();
    let cache = Cache::builder()
        .backend_arc(backend)
        .max_value_size(1024 * 1024)
        .signing_keys(ring(NEW))
        .build()
        .unwrap();
    cache.set("warm", &1).tags(["t"]).await.unwrap();
    let before = write_commands(&server);
    assert!(!before.is_empty(), "the warm-up write is counted");
    refused_before_io(&cache).await;
    assert_eq!(write_commands(&server), before, "nothing was sent");
    read_through_over_the_limit(&cache).await;
}
