//! The sharded in-process store: S3-FIFO eviction, exact TTL, tag index.
//!
//! Each shard holds a map of entries and three S3-FIFO queues: a small FIFO
//! (10% of the shard) where new keys start, a main FIFO for keys read again
//! while in the small one, and a ghost list of keys recently evicted from the
//! small FIFO (a key that comes back while remembered goes straight to main).
//! A read only bumps an atomic counter, so reads share the shard lock.
//!
//! Queues hold `(key, generation)` and are cleaned lazily: an item whose
//! entry was removed or replaced is skipped when popped, and a queue with too
//! many such items is compacted.
//!
//! Expiry is exact: a read compares the deadline with the clock, so an
//! expired entry is never returned. Expired entries are removed (and leave
//! their tags) by the next write to their shard, by tag, pattern and scan
//! operations, and by [`Store::purge_expired`]; no background thread runs.
//!
//! Lock order: a key shard, then tag shards one at a time. Never a key shard
//! while holding a tag shard.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foldhash::fast::RandomState;
use larder_core::glob::Glob;
use larder_core::{Error, KeyTtl, Result, SetMode, WriteOptions};

type Key = Arc<str>;
type Map<K, V> = HashMap<K, V, RandomState>;
type Set<K> = HashSet<K, RandomState>;

/// Per-entry bookkeeping beyond key and value, in bytes.
const ENTRY_OVERHEAD: usize = 96;
/// Reads counted per entry before the counter saturates.
const MAX_FREQ: u8 = 3;

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    expires_at: Option<Instant>,
    tags: Box<[Key]>,
    freq: AtomicU8,
    generation: u64,
    in_main: bool,
    weight: usize,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|t| now < t)
    }
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<(Key, u64)>,
    live: usize,
}

#[derive(Debug)]
struct Shard {
    map: Map<Key, Entry>,
    small: Queue,
    main: Queue,
    ghost: VecDeque<u64>,
    ghost_set: Set<u64>,
    expiries: BinaryHeap<Reverse<(Instant, u64)>>,
    expiry_keys: Map<u64, Key>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    next_generation: u64,
}

/// Bounds of a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) max_entries: usize,
    pub(crate) max_bytes: Option<usize>,
}

/// The store behind `MemoryBackend`.
#[derive(Debug)]
pub(crate) struct Store {
    shards: Box<[RwLock<Shard>]>,
    tags: Box<[Mutex<Map<Key, Set<Key>>>]>,
    locks: Mutex<Map<String, (String, Instant)>>,
    hasher: RandomState,
    evictions: AtomicU64,
    bounds: Bounds,
}

/// How many shards for `max_entries`: one per 512 entries, a power of two,
/// at most four per core and never more than 64. Small caches get one shard
/// so their bound and eviction order are exact.
fn shard_count(max_entries: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    let by_size = (max_entries / 512).max(1).next_power_of_two();
    by_size.min((cores * 4).next_power_of_two()).min(64)
}

/// `total` split into `n` parts that add up to `total` exactly.
fn split(total: usize, n: usize, i: usize) -> usize {
    total / n + usize::from(i < total % n)
}

impl Store {
    pub(crate) fn new(bounds: Bounds) -> Self {
        let n = shard_count(bounds.max_entries);
        let shards = (0..n)
            .map(|i| {
                RwLock::new(Shard {
                    map: Map::default(),
                    small: Queue::default(),
                    main: Queue::default(),
                    ghost: VecDeque::new(),
                    ghost_set: Set::default(),
                    expiries: BinaryHeap::new(),
                    expiry_keys: Map::default(),
                    bytes: 0,
                    max_entries: split(bounds.max_entries, n, i).max(1),
                    max_bytes: bounds
                        .max_bytes
                        .map_or(usize::MAX, |b| split(b, n, i).max(1)),
                    next_generation: 0,
                })
            })
            .collect();
        let tags = (0..n).map(|_| Mutex::new(Map::default())).collect();
        Store {
            shards,
            tags,
            locks: Mutex::new(Map::default()),
            hasher: RandomState::default(),
            evictions: AtomicU64::new(0),
            bounds,
        }
    }

    pub(crate) fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// The largest value one entry may hold under the byte bound.
    pub(crate) fn max_value_size(&self) -> Option<usize> {
        self.bounds
            .max_bytes
            .map(|b| (b / self.shards.len()).saturating_sub(ENTRY_OVERHEAD + 256))
    }

    fn index(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) & (self.shards.len() - 1)
    }

    fn shard(&self, key: &str) -> &RwLock<Shard> {
        &self.shards[self.index(key)]
    }

    fn tag_shard(&self, tag: &str) -> MutexGuard<'_, Map<Key, Set<Key>>> {
        lock(&self.tags[self.index(tag)])
    }

    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Live entries (expired ones not yet purged are not counted).
    pub(crate) fn len(&self) -> usize {
        let now = Instant::now();
        self.shards
            .iter()
            .map(|s| read(s).map.values().filter(|e| e.live(now)).count())
            .sum()
    }

    /// Bytes held, keys, values and bookkeeping included.
    pub(crate) fn weighted_size(&self) -> usize {
        self.shards.iter().map(|s| read(s).bytes).sum()
    }

    /// Number of tags with at least one member.
    pub(crate) fn tag_count(&self) -> usize {
        self.tags.iter().map(|t| lock(t).len()).sum()
    }

    pub(crate) fn get(&self, key: &str) -> Option<Bytes> {
        let shard = read(self.shard(key));
        let entry = shard.map.get(key)?;
        if let Some(deadline) = entry.expires_at
            && Instant::now() >= deadline
        {
            return None;
        }
        let f = entry.freq.load(Ordering::Relaxed);
        if f < MAX_FREQ {
            entry.freq.store(f + 1, Ordering::Relaxed);
        }
        Some(entry.value.clone())
    }

    pub(crate) fn set(&self, key: &str, value: Bytes, options: &WriteOptions) -> bool {
        let now = Instant::now();
        let mut shard = write(self.shard(key));
        self.purge_shard(&mut shard, now);
        let present = shard.map.get(key).is_some_and(|e| e.live(now));
        let allowed = match options.mode {
            SetMode::Always => true,
            SetMode::IfAbsent => !present,
            SetMode::IfPresent => present,
        };
        if !allowed {
            return false;
        }
        let expires_at = options.ttl.map(|ttl| now + ttl);
        let mut tags: Vec<Key> = options.tags.iter().map(|t| Key::from(t.as_str())).collect();
        tags.sort_unstable();
        tags.dedup();
        self.put(&mut shard, key, value, expires_at, tags.into_boxed_slice());
        true
    }

    /// Insert or replace `key` in `shard`, keeping the tag index in step.
    fn put(
        &self,
        shard: &mut Shard,
        key: &str,
        value: Bytes,
        expires_at: Option<Instant>,
        tags: Box<[Key]>,
    ) {
        let weight = key.len() + value.len() + ENTRY_OVERHEAD;
        let key: Key = match shard.map.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Key::from(key),
        };
        if let Some(entry) = shard.map.get_mut(&key) {
            // Replace in place: the key keeps its queue position.
            let old_tags = std::mem::replace(&mut entry.tags, tags);
            for tag in old_tags.iter().filter(|t| !entry.tags.contains(t)) {
                self.untag(tag, &key);
            }
            for tag in entry.tags.iter().filter(|t| !old_tags.contains(t)) {
                self.tag(tag, &key);
            }
            shard.bytes = shard.bytes - entry.weight + weight;
            entry.value = value;
            entry.weight = weight;
            entry.expires_at = expires_at;
            let generation = entry.generation;
            if let Some(t) = expires_at {
                Self::schedule(shard, t, generation, &key);
            }
        } else {
            for tag in tags.iter() {
                self.tag(tag, &key);
            }
            let generation = shard.next_generation;
            shard.next_generation += 1;
            let hash = self.hasher.hash_one(&*key);
            let in_main = shard.ghost_set.remove(&hash);
            let queue = if in_main {
                &mut shard.main
            } else {
                &mut shard.small
            };
            queue.items.push_back((key.clone(), generation));
            queue.live += 1;
            shard.bytes += weight;
            if let Some(t) = expires_at {
                Self::schedule(shard, t, generation, &key);
            }
            shard.map.insert(
                key,
                Entry {
                    value,
                    expires_at,
                    tags,
                    freq: AtomicU8::new(0),
                    generation,
                    in_main,
                    weight,
                },
            );
        }
        self.enforce_bounds(shard);
    }

    fn schedule(shard: &mut Shard, at: Instant, generation: u64, key: &Key) {
        shard.expiries.push(Reverse((at, generation)));
        shard.expiry_keys.insert(generation, key.clone());
        // Re-set keys leave stale deadlines behind; rebuild when they pile up.
        if shard.expiries.len() > 2 * shard.map.len() + 64 {
            let live: Vec<_> = shard
                .map
                .values()
                .filter_map(|e| e.expires_at.map(|t| Reverse((t, e.generation))))
                .collect();
            shard.expiries = BinaryHeap::from(live);
            let wanted: Set<u64> = shard.expiries.iter().map(|Reverse((_, g))| *g).collect();
            shard.expiry_keys.retain(|g, _| wanted.contains(g));
        }
    }

    fn tag(&self, tag: &Key, key: &Key) {
        self.tag_shard(tag)
            .entry(tag.clone())
            .or_default()
            .insert(key.clone());
    }

    fn untag(&self, tag: &Key, key: &Key) {
        let mut tags = self.tag_shard(tag);
        if let Some(members) = tags.get_mut(tag) {
            members.remove(key);
            if members.is_empty() {
                tags.remove(tag);
            }
        }
    }

    /// Remove `key` from `shard` and from its tags.
    fn remove(&self, shard: &mut Shard, key: &str) -> Option<Entry> {
        let (key, entry) = shard.map.remove_entry(key)?;
        shard.bytes -= entry.weight;
        if entry.in_main {
            shard.main.live -= 1;
        } else {
            shard.small.live -= 1;
        }
        for tag in entry.tags.iter() {
            self.untag(tag, &key);
        }
        shard.expiry_keys.remove(&entry.generation);
        Some(entry)
    }

    /// Remove entries whose deadline has passed.
    fn purge_shard(&self, shard: &mut Shard, now: Instant) {
        while let Some(Reverse((at, generation))) = shard.expiries.peek().copied() {
            if at > now {
                break;
            }
            shard.expiries.pop();
            let Some(key) = shard.expiry_keys.get(&generation).cloned() else {
                continue;
            };
            let current = shard
                .map
                .get(&key)
                .is_some_and(|e| e.generation == generation && e.expires_at == Some(at));
            if current {
                self.remove(shard, &key);
            }
        }
    }

    /// Remove every expired entry now (it happens on writes anyway).
    pub(crate) fn purge_expired(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            self.purge_shard(&mut write(shard), now);
        }
    }

    fn enforce_bounds(&self, shard: &mut Shard) {
        while shard.map.len() > shard.max_entries || shard.bytes > shard.max_bytes {
            if !self.evict_one(shard) {
                break;
            }
        }
        Self::compact(&mut shard.small, &shard.map, false);
        Self::compact(&mut shard.main, &shard.map, true);
    }

    /// Drop stale queue items when they outnumber live ones.
    fn compact(queue: &mut Queue, map: &Map<Key, Entry>, main: bool) {
        if queue.items.len() > 2 * queue.live + 64 {
            queue.items.retain(|(k, g)| {
                map.get(k)
                    .is_some_and(|e| e.generation == *g && e.in_main == main)
            });
        }
    }

    /// Evict one entry by S3-FIFO. Returns false when the shard is empty.
    fn evict_one(&self, shard: &mut Shard) -> bool {
        loop {
            let small_target = (shard.max_entries / 10).max(1);
            let from_small = shard.small.live >= small_target || shard.main.live == 0;
            let queue = if from_small {
                &mut shard.small
            } else {
                &mut shard.main
            };
            let Some((key, generation)) = queue.items.pop_front() else {
                if shard.small.live == 0 && shard.main.live == 0 {
                    return false;
                }
                // Counts and queue disagree only if items were compacted
                // away; fall through to the other queue.
                if from_small {
                    shard.small.live = 0;
                } else {
                    shard.main.live = 0;
                }
                continue;
            };
            let Some(entry) = shard.map.get_mut(&key) else {
                continue;
            };
            if entry.generation != generation || entry.in_main != !from_small {
                continue;
            }
            let freq = entry.freq.load(Ordering::Relaxed);
            if from_small {
                if freq > 0 {
                    // Read again while in the small FIFO: promote.
                    entry.in_main = true;
                    entry.freq.store(0, Ordering::Relaxed);
                    shard.small.live -= 1;
                    shard.main.live += 1;
                    shard.main.items.push_back((key, generation));
                    continue;
                }
                let hash = self.hasher.hash_one(&*key);
                self.remember_ghost(shard, hash);
            } else if freq > 0 {
                entry.freq.store(freq - 1, Ordering::Relaxed);
                shard.main.items.push_back((key, generation));
                continue;
            }
            self.remove(shard, &key);
            self.evictions.fetch_add(1, Ordering::Relaxed);
            return true;
        }
    }

    fn remember_ghost(&self, shard: &mut Shard, hash: u64) {
        if shard.ghost_set.insert(hash) {
            shard.ghost.push_back(hash);
        }
        while shard.ghost.len() > shard.max_entries {
            if let Some(old) = shard.ghost.pop_front() {
                shard.ghost_set.remove(&old);
            }
        }
    }

    pub(crate) fn delete(&self, keys: &[String]) -> u64 {
        let now = Instant::now();
        let mut n = 0;
        for key in keys {
            let mut shard = write(self.shard(key));
            if let Some(entry) = self.remove(&mut shard, key)
                && entry.live(now)
            {
                n += 1;
            }
            self.purge_shard(&mut shard, now);
        }
        n
    }

    pub(crate) fn exists(&self, key: &str) -> bool {
        let now = Instant::now();
        read(self.shard(key))
            .map
            .get(key)
            .is_some_and(|e| e.live(now))
    }

    pub(crate) fn expire(&self, key: &str, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut shard = write(self.shard(key));
        self.purge_shard(&mut shard, now);
        let Some(entry) = shard.map.get_mut(key) else {
            return false;
        };
        let at = now + ttl;
        entry.expires_at = Some(at);
        let generation = entry.generation;
        let key: Key = match shard.map.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => return false,
        };
        Self::schedule(&mut shard, at, generation, &key);
        true
    }

    pub(crate) fn ttl(&self, key: &str) -> KeyTtl {
        let now = Instant::now();
        match read(self.shard(key)).map.get(key) {
            Some(e) if e.live(now) => match e.expires_at {
                Some(t) => KeyTtl::Expires(t - now),
                None => KeyTtl::Persistent,
            },
            _ => KeyTtl::Missing,
        }
    }

    pub(crate) fn incr(&self, key: &str, delta: i64) -> Result<i64> {
        let now = Instant::now();
        let mut shard = write(self.shard(key));
        self.purge_shard(&mut shard, now);
        let (current, expires_at, tags) = match shard.map.get(key) {
            Some(e) if e.live(now) => {
                let text = std::str::from_utf8(&e.value).ok();
                let n = text
                    .filter(|_| larder_core::codec::is_counter(&e.value))
                    .and_then(|t| t.parse::<i64>().ok())
                    .ok_or_else(|| Error::NotAnInteger {
                        key: key.to_owned(),
                    })?;
                (n, e.expires_at, e.tags.clone())
            }
            _ => (0, None, Box::default()),
        };
        let next = current.checked_add(delta).ok_or_else(|| Error::Backend {
            backend: "memory",
            message: format!("incr of {key:?} by {delta} overflows a 64-bit integer"),
        })?;
        self.put(
            &mut shard,
            key,
            Bytes::from(next.to_string()),
            expires_at,
            tags,
        );
        Ok(next)
    }

    pub(crate) fn invalidate_tags(&self, tags: &[String]) -> u64 {
        let now = Instant::now();
        let mut n = 0;
        for tag in tags {
            let Some(members) = self.tag_shard(tag).remove(tag.as_str()) else {
                continue;
            };
            for key in members {
                let mut shard = write(self.shard(&key));
                let tagged = shard
                    .map
                    .get(&key)
                    .is_some_and(|e| e.tags.iter().any(|t| **t == **tag));
                if tagged
                    && let Some(entry) = self.remove(&mut shard, &key)
                    && entry.live(now)
                {
                    n += 1;
                }
            }
        }
        n
    }

    pub(crate) fn tag_members(&self, tag: &str, limit: usize) -> Vec<String> {
        let members: Vec<Key> = self
            .tag_shard(tag)
            .get(tag)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default();
        let mut out: Vec<String> = members
            .into_iter()
            .filter(|k| self.exists(k))
            .map(|k| k.to_string())
            .collect();
        out.sort_unstable();
        out.truncate(limit);
        out
    }

    /// Live keys for which `select` holds, shard by shard; with `remove`
    /// they are deleted as they are found.
    fn sweep(&self, select: impl Fn(&str) -> bool, limit: usize, remove: bool) -> Vec<String> {
        let now = Instant::now();
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = write(shard);
            self.purge_shard(&mut shard, now);
            let found: Vec<Key> = shard
                .map
                .iter()
                .filter(|(k, e)| e.live(now) && select(k))
                .map(|(k, _)| k.clone())
                .take(limit - out.len())
                .collect();
            for key in found {
                if remove {
                    self.remove(&mut shard, &key);
                }
                out.push(key.to_string());
            }
            if out.len() >= limit {
                break;
            }
        }
        out
    }

    pub(crate) fn scan(&self, pattern: &str, limit: usize) -> Result<Vec<String>> {
        let glob = Glob::new(pattern)?;
        let mut keys = self.sweep(|k| glob.matches(k), limit, false);
        keys.sort_unstable();
        Ok(keys)
    }

    pub(crate) fn delete_matching(&self, pattern: &str) -> Result<u64> {
        let glob = Glob::new(pattern)?;
        Ok(self.sweep(|k| glob.matches(k), usize::MAX, true).len() as u64)
    }

    pub(crate) fn clear(&self, prefix: &str) -> u64 {
        lock(&self.locks).retain(|k, _| !k.starts_with(prefix));
        self.sweep(|k| k.starts_with(prefix), usize::MAX, true)
            .len() as u64
    }

    pub(crate) fn lock(&self, key: &str, token: &str, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut locks = lock(&self.locks);
        locks.retain(|_, (_, until)| *until > now);
        if locks.contains_key(key) {
            return false;
        }
        locks.insert(key.to_owned(), (token.to_owned(), now + ttl));
        true
    }

    pub(crate) fn unlock(&self, key: &str, token: &str) -> bool {
        let now = Instant::now();
        let mut locks = lock(&self.locks);
        match locks.get(key) {
            Some((holder, until)) if holder == token && *until > now => {
                locks.remove(key);
                true
            }
            _ => false,
        }
    }
}
