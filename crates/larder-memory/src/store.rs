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
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foldhash::fast::RandomState;
use larder_core::glob::Glob;
use larder_core::sync::{lock, read, write};
use larder_core::{
    Count, Entry as StoredEntry, Error, Expiry, FillStore, FillToken, KeyTtl, Result, SetMode,
    WriteOptions,
};

type Key = Arc<str>;
type Map<K, V> = HashMap<K, V, RandomState>;
type Set<K> = HashSet<K, RandomState>;
/// One shard of the tag index: tag to member keys.
type TagShard = Mutex<Map<Key, Set<Key>>>;

/// Per-entry bookkeeping beyond key and value, in bytes.
const ENTRY_OVERHEAD: usize = 96;
/// Reads counted per entry before the counter saturates.
const MAX_FREQ: u8 = 3;

/// Slots of the invalidation stamps: keys and tags hash into this many.
const STAMP_SLOTS: usize = 4096;

/// When keys, tags and the whole store were last invalidated, as numbers
/// of a sequence that every invalidation advances. A read-through fill
/// takes the current number when it starts; its store is refused when a
/// stamp it depends on is newer. Keys and tags hash into fixed slots: a
/// collision only refuses a store that could have been made (the loaded
/// value is still returned), never the other way round.
#[derive(Debug)]
struct Stamps {
    seq: AtomicU64,
    keys: Box<[AtomicU64]>,
    tags: Box<[AtomicU64]>,
    all: AtomicU64,
}

impl Stamps {
    fn new() -> Self {
        let slots = || (0..STAMP_SLOTS).map(|_| AtomicU64::new(0)).collect();
        Stamps {
            seq: AtomicU64::new(0),
            keys: slots(),
            tags: slots(),
            all: AtomicU64::new(0),
        }
    }

    fn token(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn slot<'a>(slots: &'a [AtomicU64], hasher: &RandomState, name: &str) -> &'a AtomicU64 {
        &slots[(hasher.hash_one(name) as usize) % slots.len()]
    }
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
    tags: Box<[TagShard]>,
    locks: Mutex<Map<String, (String, Instant)>>,
    stamps: Stamps,
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
            stamps: Stamps::new(),
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

    /// The entry under `key` with its remaining life and tags.
    pub(crate) fn get_entry(&self, key: &str) -> Option<StoredEntry> {
        let now = Instant::now();
        let shard = read(self.shard(key));
        let entry = shard.map.get(key).filter(|e| e.live(now))?;
        let expiry = match entry.expires_at {
            Some(at) => Expiry::After(at - now),
            None => Expiry::Never,
        };
        let tags = entry.tags.iter().map(|t| t.to_string()).collect();
        Some(StoredEntry::new(entry.value.clone(), expiry, tags))
    }

    /// The value under `key`, its TTL renewed to `ttl`.
    pub(crate) fn get_and_touch(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        let now = Instant::now();
        let at = deadline(now, Some(ttl))?;
        let mut shard = write(self.shard(key));
        self.purge_shard(&mut shard, now);
        let Some(entry) = shard.map.get_mut(key) else {
            return Ok(None);
        };
        let f = entry.freq.load(Ordering::Relaxed);
        entry.freq.store((f + 1).min(MAX_FREQ), Ordering::Relaxed);
        entry.expires_at = at;
        let (value, generation) = (entry.value.clone(), entry.generation);
        if let (Some(at), Some((k, _))) = (at, shard.map.get_key_value(key)) {
            let k = k.clone();
            Self::schedule(&mut shard, at, generation, &k);
        }
        Ok(Some(value))
    }

    /// The value under `key`, removed in the same step.
    pub(crate) fn get_delete(&self, key: &str) -> Option<Bytes> {
        let now = Instant::now();
        self.stamp_key(key);
        let mut shard = write(self.shard(key));
        let entry = self.remove(&mut shard, key).filter(|e| e.live(now));
        self.purge_shard(&mut shard, now);
        entry.map(|e| e.value)
    }

    pub(crate) fn set(&self, key: &str, value: Bytes, options: &WriteOptions) -> Result<bool> {
        self.write_if(key, value, options, |_| true)
            .map(|stored| stored == FillStore::Stored)
    }

    /// Store a loaded value unless `key`, one of its tags or the store was
    /// invalidated after `token` was taken: the check and the store happen
    /// under the key's shard lock, after which an invalidation finds the key
    /// in its tags' index.
    pub(crate) fn set_filled(
        &self,
        key: &str,
        value: Bytes,
        options: &WriteOptions,
        token: FillToken,
    ) -> Result<FillStore> {
        self.write_if(key, value, options, |store| {
            store.unchanged_since(key, &options.tags, token.reading())
        })
    }

    /// The current fill token.
    pub(crate) fn fill_token(&self) -> FillToken {
        FillToken::new(self.stamps.token())
    }

    fn unchanged_since(&self, key: &str, tags: &[String], token: u64) -> bool {
        let stamps = &self.stamps;
        let fresh = |slots: &[AtomicU64], name: &str| {
            Stamps::slot(slots, &self.hasher, name).load(Ordering::SeqCst) <= token
        };
        stamps.all.load(Ordering::SeqCst) <= token
            && fresh(&stamps.keys, key)
            && tags.iter().all(|t| fresh(&stamps.tags, t))
    }

    fn stamp_key(&self, key: &str) {
        let n = self.stamps.next();
        Stamps::slot(&self.stamps.keys, &self.hasher, key).fetch_max(n, Ordering::SeqCst);
    }

    fn stamp_tag(&self, tag: &str) {
        let n = self.stamps.next();
        Stamps::slot(&self.stamps.tags, &self.hasher, tag).fetch_max(n, Ordering::SeqCst);
    }

    fn stamp_all(&self) {
        let n = self.stamps.next();
        self.stamps.all.fetch_max(n, Ordering::SeqCst);
    }

    /// Write `key` when `allowed` (checked under the shard lock) and the mode
    /// permit it.
    fn write_if(
        &self,
        key: &str,
        value: Bytes,
        options: &WriteOptions,
        allowed: impl FnOnce(&Self) -> bool,
    ) -> Result<FillStore> {
        let now = Instant::now();
        let expires_at = deadline(now, options.ttl)?;
        let mut shard = write(self.shard(key));
        if !allowed(self) {
            return Ok(FillStore::Refused);
        }
        self.purge_shard(&mut shard, now);
        let present = shard.map.get(key).is_some_and(|e| e.live(now));
        let written = match options.mode {
            SetMode::IfAbsent => !present,
            SetMode::IfPresent => present,
            _ => true,
        };
        if !written {
            return Ok(FillStore::Declined);
        }
        let mut tags: Vec<Key> = options.tags.iter().map(|t| Key::from(t.as_str())).collect();
        tags.sort_unstable();
        tags.dedup();
        self.put(&mut shard, key, value, expires_at, tags.into_boxed_slice());
        Ok(FillStore::Stored)
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
            if entry.generation != generation || entry.in_main == from_small {
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
            self.stamp_key(key);
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

    pub(crate) fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let now = Instant::now();
        let Some(at) = deadline(now, Some(ttl))? else {
            return Ok(false);
        };
        let mut shard = write(self.shard(key));
        self.purge_shard(&mut shard, now);
        let Some(entry) = shard.map.get_mut(key) else {
            return Ok(false);
        };
        entry.expires_at = Some(at);
        let generation = entry.generation;
        let key: Key = match shard.map.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => return Ok(false),
        };
        Self::schedule(&mut shard, at, generation, &key);
        Ok(true)
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

    pub(crate) fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let now = Instant::now();
        let created_expiry = deadline(now, ttl)?;
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
            _ => (0, created_expiry, Box::default()),
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
            self.stamp_tag(tag);
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

    /// The keys the index holds for `tag`, unfiltered, sorted.
    pub(crate) fn tag_index(&self, tag: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .tag_shard(tag)
            .get(tag)
            .map(|m| m.iter().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        keys
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
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut keys = self.sweep(|k| glob.matches(k), limit, false);
        keys.sort_unstable();
        Ok(keys)
    }

    pub(crate) fn delete_matching(&self, pattern: &str) -> Result<Count> {
        let glob = Glob::new(pattern)?;
        self.stamp_all();
        let n = self.sweep(|k| glob.matches(k), usize::MAX, true).len();
        Ok(Count::Exact(n as u64))
    }

    pub(crate) fn clear(&self, prefix: &str) -> Count {
        self.stamp_all();
        lock(&self.locks).retain(|k, _| !k.starts_with(prefix));
        let n = self
            .sweep(|k| k.starts_with(prefix), usize::MAX, true)
            .len();
        Count::Exact(n as u64)
    }

    pub(crate) fn lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let now = Instant::now();
        let Some(until) = deadline(now, Some(ttl))? else {
            return Ok(false);
        };
        let mut locks = lock(&self.locks);
        locks.retain(|_, (_, until)| *until > now);
        if locks.contains_key(key) {
            return Ok(false);
        }
        locks.insert(key.to_owned(), (token.to_owned(), until));
        Ok(true)
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

/// The deadline of a TTL starting `now`; a TTL of zero or over larder's
/// limit is refused (and can never overflow the clock).
fn deadline(now: Instant, ttl: Option<Duration>) -> Result<Option<Instant>> {
    let Some(ttl) = ttl else {
        return Ok(None);
    };
    let ttl = Error::check_ttl(ttl)?;
    now.checked_add(ttl).map(Some).ok_or(Error::InvalidTtl {
        ttl,
        reason: "the clock cannot reach that far".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_entries: usize) -> Store {
        Store::new(Bounds {
            max_entries,
            max_bytes: None,
        })
    }

    fn opts(ttl: Option<Duration>, tags: &[&str]) -> WriteOptions {
        WriteOptions::new().ttl(ttl).tags(tags.iter().copied())
    }

    fn put(s: &Store, key: &str, tags: &[&str]) {
        s.set(key, Bytes::from_static(b"v"), &opts(None, tags))
            .unwrap();
    }

    impl Store {
        /// Internal consistency: counts, bytes, queues and the tag index
        /// agree with the entries.
        fn check_invariants(&self) {
            let mut tagged: Map<Key, Set<Key>> = Map::default();
            for shard in self.shards.iter() {
                let shard = read(shard);
                assert!(shard.map.len() <= shard.max_entries, "entry bound");
                let bytes: usize = shard.map.values().map(|e| e.weight).sum();
                assert_eq!(bytes, shard.bytes, "byte count");
                let main = shard.map.values().filter(|e| e.in_main).count();
                assert_eq!(main, shard.main.live, "main count");
                assert_eq!(shard.map.len() - main, shard.small.live, "small count");
                let small: HashSet<&(Key, u64)> = shard.small.items.iter().collect();
                let main_items: HashSet<&(Key, u64)> = shard.main.items.iter().collect();
                for (key, entry) in &shard.map {
                    let queue = if entry.in_main { &main_items } else { &small };
                    assert!(
                        queue.contains(&(key.clone(), entry.generation)),
                        "{key} is in its queue"
                    );
                    for tag in entry.tags.iter() {
                        tagged.entry(tag.clone()).or_default().insert(key.clone());
                    }
                }
            }
            let mut index: Map<Key, Set<Key>> = Map::default();
            for t in self.tags.iter() {
                for (tag, members) in lock(t).iter() {
                    assert!(!members.is_empty(), "empty tag set {tag} left behind");
                    index.insert(tag.clone(), members.clone());
                }
            }
            assert_eq!(index, tagged, "tag index matches entries");
        }
    }

    #[test]
    fn small_stores_have_one_shard_and_exact_bounds() {
        let s = store(10);
        assert_eq!(s.shards.len(), 1);
        for i in 0..100 {
            put(&s, &format!("k{i}"), &["t"]);
        }
        assert_eq!(s.len(), 10);
        assert_eq!(s.evictions(), 90);
        s.check_invariants();
    }

    #[test]
    fn entry_bound_holds_across_shards() {
        let s = store(100_000);
        assert!(s.shards.len() > 1);
        for i in 0..150_000 {
            put(&s, &format!("k{i}"), &[]);
        }
        assert_eq!(s.len(), 100_000);
        s.check_invariants();
    }

    #[test]
    fn byte_bound_holds() {
        let s = Store::new(Bounds {
            max_entries: 1_000_000,
            max_bytes: Some(64 * 1024),
        });
        for i in 0..1000 {
            s.set(
                &format!("k{i}"),
                Bytes::from(vec![7u8; 1024]),
                &opts(None, &[]),
            )
            .unwrap();
        }
        assert!(s.weighted_size() <= 64 * 1024, "{}", s.weighted_size());
        assert!(s.len() > 40, "{}", s.len());
        s.check_invariants();
    }

    #[test]
    fn scan_of_one_time_keys_leaves_the_hot_set() {
        // LRU would keep none of the hot keys after this scan.
        let s = store(100);
        for i in 0..50 {
            put(&s, &format!("hot{i}"), &[]);
        }
        for _ in 0..2 {
            for i in 0..50 {
                assert!(s.get(&format!("hot{i}")).is_some());
            }
        }
        for i in 0..1000 {
            put(&s, &format!("scan{i}"), &[]);
            if i % 20 == 0 {
                for h in 0..50 {
                    s.get(&format!("hot{h}"));
                }
            }
        }
        let kept = (0..50)
            .filter(|i| s.get(&format!("hot{i}")).is_some())
            .count();
        assert!(kept >= 45, "kept {kept} of 50 hot keys");
        s.check_invariants();
    }

    #[test]
    fn ghost_hit_goes_to_main() {
        let s = store(10);
        put(&s, "back", &[]);
        // Evicts `back` first, and five more: the ghost list remembers ten.
        for i in 0..15 {
            put(&s, &format!("k{i}"), &[]);
        }
        assert!(s.get("back").is_none(), "evicted from the small queue");
        put(&s, "back", &[]);
        let shard = read(&s.shards[0]);
        assert!(shard.map.get("back").is_some_and(|e| e.in_main));
    }

    #[test]
    fn expired_entries_are_never_returned() {
        let s = store(100);
        let ttl = Duration::from_millis(30);
        let before = Instant::now();
        s.set("k", Bytes::from_static(b"v"), &opts(Some(ttl), &["t"]))
            .unwrap();
        let after = Instant::now();
        loop {
            let asked = Instant::now();
            match s.get("k") {
                Some(_) => assert!(asked < after + ttl, "returned after its deadline"),
                None => {
                    assert!(Instant::now() >= before + ttl, "expired early");
                    break;
                }
            }
        }
        assert_eq!(s.tag_count(), 1, "not purged until a write or purge");
        s.purge_expired();
        assert_eq!(s.tag_count(), 0);
        assert_eq!(s.len(), 0);
        s.check_invariants();
    }

    #[test]
    fn writes_purge_expired_entries_of_their_shard() {
        let s = store(100);
        s.set(
            "old",
            Bytes::from_static(b"v"),
            &opts(Some(Duration::from_millis(5)), &["t"]),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        put(&s, "new", &[]);
        assert_eq!(s.tag_count(), 0);
        s.check_invariants();
    }

    #[test]
    fn churn_does_not_grow_queues_or_heap() {
        let s = store(1000);
        for round in 0..200 {
            for i in 0..50 {
                let key = format!("k{i}");
                s.set(
                    &key,
                    Bytes::from_static(b"v"),
                    &opts(Some(Duration::from_secs(60 + round)), &["t"]),
                )
                .unwrap();
                if i % 3 == 0 {
                    s.delete(&[key]);
                }
            }
        }
        let shard = read(&s.shards[0]);
        assert!(shard.small.items.len() + shard.main.items.len() <= 2 * 50 + 200);
        assert!(
            shard.expiries.len() <= 2 * 50 + 200,
            "{}",
            shard.expiries.len()
        );
        drop(shard);
        s.check_invariants();
    }

    #[test]
    fn concurrent_mixed_operations_keep_invariants() {
        let s = Arc::new(store(2_000));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for _ in 0..20_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = format!("k{}", x % 3_000);
                        let tag = format!("t{}", x % 17);
                        match x % 10 {
                            0 => {
                                s.delete(&[key]);
                            }
                            1 => {
                                s.invalidate_tags(&[tag]);
                            }
                            2 => {
                                let ttl = Duration::from_millis(x % 5 + 1);
                                s.set(&key, Bytes::from_static(b"v"), &opts(Some(ttl), &[&tag]))
                                    .unwrap();
                            }
                            3 => {
                                let _ = s.incr(&format!("n{}", x % 10), 1, None);
                            }
                            4..=6 => {
                                s.set(&key, Bytes::from_static(b"v"), &opts(None, &[&tag, "all"]))
                                    .unwrap();
                            }
                            _ => {
                                s.get(&key);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        s.check_invariants();
        s.invalidate_tags(&["all".to_string()]);
        s.purge_expired();
        s.check_invariants();
    }

    /// A textbook LRU, the baseline the eviction policy must match or beat.
    struct Lru {
        capacity: usize,
        tick: u64,
        by_key: std::collections::HashMap<u64, u64>,
        by_tick: std::collections::BTreeMap<u64, u64>,
    }

    impl Lru {
        fn access(&mut self, key: u64) -> bool {
            self.tick += 1;
            let hit = match self.by_key.insert(key, self.tick) {
                Some(old) => {
                    self.by_tick.remove(&old);
                    true
                }
                None => false,
            };
            self.by_tick.insert(self.tick, key);
            if self.by_key.len() > self.capacity
                && let Some((_, victim)) = self.by_tick.pop_first()
            {
                self.by_key.remove(&victim);
            }
            hit
        }
    }

    /// Hit ratios of this store and of LRU over the same trace, both used
    /// as a read-through cache.
    fn hit_ratios(capacity: usize, trace: &[u64]) -> (f64, f64) {
        let s = store(capacity);
        let mut lru = Lru {
            capacity,
            tick: 0,
            by_key: Default::default(),
            by_tick: Default::default(),
        };
        let (mut ours, mut theirs) = (0usize, 0usize);
        for k in trace {
            let key = format!("k{k}");
            if s.get(&key).is_some() {
                ours += 1;
            } else {
                put(&s, &key, &[]);
            }
            theirs += usize::from(lru.access(*k));
        }
        let n = trace.len() as f64;
        (ours as f64 / n, theirs as f64 / n)
    }

    /// Keys drawn from a Zipf(0.9) distribution over `universe` keys.
    fn zipf_trace(universe: usize, len: usize, seed: u64) -> Vec<u64> {
        let weights: Vec<f64> = (1..=universe).map(|r| 1.0 / (r as f64).powf(0.9)).collect();
        let total: f64 = weights.iter().sum();
        let mut cdf = Vec::with_capacity(universe);
        let mut acc = 0.0;
        for w in weights {
            acc += w / total;
            cdf.push(acc);
        }
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                cdf.partition_point(|c| *c < u) as u64
            })
            .collect()
    }

    #[test]
    fn hit_ratio_at_least_lru_on_zipf() {
        let trace = zipf_trace(10_000, 200_000, 42);
        let (ours, lru) = hit_ratios(1_000, &trace);
        eprintln!("zipf: S3-FIFO {ours:.3}, LRU {lru:.3}");
        assert!(ours >= lru - 0.005, "S3-FIFO {ours:.3} vs LRU {lru:.3}");
    }

    #[test]
    fn hit_ratio_beats_lru_when_scans_interleave() {
        let mut trace = zipf_trace(5_000, 100_000, 7);
        let mut scan_key = 1_000_000u64;
        let mut mixed = Vec::with_capacity(trace.len() * 2);
        for (i, k) in trace.drain(..).enumerate() {
            mixed.push(k);
            if (i / 5_000) % 2 == 1 {
                mixed.push(scan_key);
                scan_key += 1;
            }
        }
        let (ours, lru) = hit_ratios(1_000, &mixed);
        eprintln!("zipf+scans: S3-FIFO {ours:.3}, LRU {lru:.3}");
        assert!(ours > lru + 0.02, "S3-FIFO {ours:.3} vs LRU {lru:.3}");
    }
}
