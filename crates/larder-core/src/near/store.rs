//! The near cache's store: sharded maps of decoded values under S3-FIFO
//! eviction (the memory backend's policy), bounded by entries and bytes.
//!
//! Each shard holds a map and three S3-FIFO queues: a small FIFO (10% of
//! the shard) where new keys start, a main FIFO for keys read again while
//! in the small one, and a ghost list of key hashes recently evicted from
//! the small one (a key that comes back while remembered goes straight to
//! main). A hit takes the shard's read lock and bumps an atomic counter.
//! Queues hold `(key, generation)` and are cleaned lazily: an item whose
//! entry was removed or replaced is skipped when popped, and a queue with
//! too many such items is compacted.

use std::any::Any;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use foldhash::fast::RandomState;

use crate::sync::{read, write};

type Key = Arc<str>;
type Map<K, V> = HashMap<K, V, RandomState>;

/// A decoded value, behind a type check.
pub(crate) type Decoded = Arc<dyn Any + Send + Sync>;

/// Per-entry bookkeeping beyond key and value, in bytes.
const ENTRY_OVERHEAD: usize = 128;
/// Reads counted per entry before the counter saturates.
const MAX_FREQ: u8 = 3;

/// One cached value: the envelope bytes as the backend returned them, the
/// value decoded once by a typed read, its deadline and its tags (stored
/// form).
pub(crate) struct Slot {
    pub(crate) bytes: Bytes,
    pub(crate) decoded: OnceLock<Decoded>,
    /// Deadline on [`super::clock`].
    pub(crate) expires_at: u64,
    pub(crate) tags: Box<[Box<str>]>,
    freq: AtomicU8,
    generation: u64,
    in_main: bool,
    weight: usize,
}

impl Slot {
    fn hit(&self) {
        let f = self.freq.load(Ordering::Relaxed);
        if f < MAX_FREQ {
            self.freq.store(f + 1, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct Queue {
    items: VecDeque<(Key, u64)>,
    live: usize,
}

#[derive(Default)]
struct Shard {
    map: Map<Key, Slot>,
    small: Queue,
    main: Queue,
    ghost: VecDeque<u64>,
    ghost_set: HashSet<u64, RandomState>,
    bytes: usize,
    next_generation: u64,
}

/// What goes into the store.
pub(crate) struct Fill {
    pub(crate) bytes: Bytes,
    pub(crate) decoded: Option<Decoded>,
    pub(crate) expires_at: u64,
    pub(crate) tags: Box<[Box<str>]>,
}

pub(crate) struct Store {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    max_entries: usize,
    max_bytes: usize,
    evictions: AtomicU64,
}

/// How many shards a store of `max_entries` gets: one for small stores, so
/// that their bounds and eviction order are exact.
fn shard_count(max_entries: usize) -> usize {
    if max_entries < 4096 { 1 } else { 16 }
}

impl Store {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        let n = shard_count(max_entries);
        Store {
            shards: (0..n).map(|_| RwLock::new(Shard::default())).collect(),
            hasher: RandomState::default(),
            max_entries: max_entries.div_ceil(n).max(1),
            max_bytes: max_bytes.div_ceil(n).max(1),
            evictions: AtomicU64::new(0),
        }
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[(hash as usize) % self.shards.len()]
    }

    /// Run `f` on the live slot of `key`, if there is one.
    pub(crate) fn with<R>(&self, key: &str, now: u64, f: impl FnOnce(&Slot) -> R) -> Option<R> {
        let hash = self.hasher.hash_one(key);
        let shard = read(self.shard(hash));
        let slot = shard.map.get(key)?;
        if slot.expires_at <= now {
            return None;
        }
        slot.hit();
        Some(f(slot))
    }

    /// Insert (or replace) `key` if `admit` still holds under the shard's
    /// lock (the fill race: no invalidation since the fill began).
    pub(crate) fn insert(&self, key: &str, fill: Fill, admit: impl FnOnce() -> bool) -> bool {
        let weight = key.len() + 2 * fill.bytes.len() + ENTRY_OVERHEAD;
        if weight > self.max_bytes {
            return false;
        }
        let hash = self.hasher.hash_one(key);
        let mut guard = write(self.shard(hash));
        if !admit() {
            return false;
        }
        let shard = &mut *guard;
        let key: Key = match shard.map.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Arc::from(key),
        };
        remove_slot(shard, &key);
        let to_main = shard.ghost_set.remove(&hash);
        shard.next_generation += 1;
        let generation = shard.next_generation;
        let decoded = OnceLock::new();
        if let Some(d) = fill.decoded {
            let _ = decoded.set(d);
        }
        shard.map.insert(
            key.clone(),
            Slot {
                bytes: fill.bytes,
                decoded,
                expires_at: fill.expires_at,
                tags: fill.tags,
                freq: AtomicU8::new(0),
                generation,
                in_main: to_main,
                weight,
            },
        );
        shard.bytes += weight;
        let queue = if to_main {
            &mut shard.main
        } else {
            &mut shard.small
        };
        queue.items.push_back((key, generation));
        queue.live += 1;
        while shard.map.len() > self.max_entries || shard.bytes > self.max_bytes {
            if !self.evict_one(shard) {
                break;
            }
        }
        true
    }

    /// Drop `key`; whether it was there.
    pub(crate) fn remove(&self, key: &str) -> bool {
        let hash = self.hasher.hash_one(key);
        let mut shard = write(self.shard(hash));
        let removed = remove_slot(&mut shard, key);
        compact_if_sparse(&mut shard);
        removed
    }

    /// Drop every entry `select` picks (by key and slot); how many.
    pub(crate) fn remove_where(&self, mut select: impl FnMut(&str, &Slot) -> bool) -> usize {
        let mut n = 0;
        for shard in self.shards.iter() {
            let mut shard = write(shard);
            let doomed: Vec<Key> = shard
                .map
                .iter()
                .filter(|(k, s)| select(k, s))
                .map(|(k, _)| k.clone())
                .collect();
            for key in &doomed {
                remove_slot(&mut shard, key);
            }
            n += doomed.len();
            compact_if_sparse(&mut shard);
        }
        n
    }

    /// Drop everything.
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = write(shard);
            let ghost = (
                std::mem::take(&mut shard.ghost),
                std::mem::take(&mut shard.ghost_set),
            );
            *shard = Shard {
                ghost: ghost.0,
                ghost_set: ghost.1,
                next_generation: shard.next_generation,
                ..Shard::default()
            };
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).map.len()).sum()
    }

    /// Estimated bytes held.
    pub(crate) fn weight(&self) -> usize {
        self.shards.iter().map(|s| read(s).bytes).sum()
    }

    /// Entries evicted to respect the bounds.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Evict one entry (S3-FIFO); `false` when the shard is empty.
    fn evict_one(&self, shard: &mut Shard) -> bool {
        let capacity = self.max_entries;
        let small_target = (capacity / 10).max(1);
        loop {
            let from_small = shard.small.live > small_target || shard.main.live == 0;
            let queue = if from_small {
                &mut shard.small
            } else {
                &mut shard.main
            };
            let Some((key, generation)) = queue.items.pop_front() else {
                return false;
            };
            let Some(slot) = shard.map.get_mut(&key) else {
                continue;
            };
            if slot.generation != generation || slot.in_main == from_small {
                continue;
            }
            let freq = slot.freq.load(Ordering::Relaxed);
            if from_small {
                shard.small.live -= 1;
                if freq > 0 {
                    // Read again while new: promote.
                    slot.in_main = true;
                    slot.freq.store(0, Ordering::Relaxed);
                    shard.main.items.push_back((key, generation));
                    shard.main.live += 1;
                    continue;
                }
                let hash = self.hasher.hash_one(&*key);
                remember_ghost(shard, hash, capacity);
            } else if freq > 0 {
                slot.freq.store(freq - 1, Ordering::Relaxed);
                shard.main.items.push_back((key, generation));
                continue;
            } else {
                shard.main.live -= 1;
            }
            if let Some(slot) = shard.map.remove(&key) {
                shard.bytes -= slot.weight;
            }
            self.evictions.fetch_add(1, Ordering::Relaxed);
            return true;
        }
    }
}

fn remember_ghost(shard: &mut Shard, hash: u64, capacity: usize) {
    if shard.ghost_set.insert(hash) {
        shard.ghost.push_back(hash);
    }
    while shard.ghost.len() > capacity {
        if let Some(old) = shard.ghost.pop_front() {
            shard.ghost_set.remove(&old);
        }
    }
}

/// Remove `key`'s slot, keeping the byte and queue counts right.
fn remove_slot(shard: &mut Shard, key: &str) -> bool {
    match shard.map.remove(key) {
        Some(slot) => {
            shard.bytes -= slot.weight;
            if slot.in_main {
                shard.main.live -= 1;
            } else {
                shard.small.live -= 1;
            }
            true
        }
        None => false,
    }
}

/// Drop the queue items of removed entries once they outnumber the live
/// ones, so that churn does not grow the queues.
fn compact_if_sparse(shard: &mut Shard) {
    let Shard {
        map, small, main, ..
    } = shard;
    for (queue, in_main) in [(small, false), (main, true)] {
        if queue.items.len() > 2 * queue.live + 64 {
            queue.items.retain(|(k, g)| {
                map.get(k)
                    .is_some_and(|s| s.generation == *g && s.in_main == in_main)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::near::clock;

    fn fill() -> Fill {
        Fill {
            bytes: Bytes::from_static(b"0123456789"),
            decoded: None,
            expires_at: clock::now() + 60_000_000_000,
            tags: Box::new([]),
        }
    }

    fn get(s: &Store, key: &str) -> bool {
        s.with(key, clock::now(), |_| ()).is_some()
    }

    #[test]
    fn entry_bound_holds_and_hot_keys_survive_a_scan() {
        let s = Store::new(100, usize::MAX / 2);
        for i in 0..100 {
            s.insert(&format!("hot{i}"), fill(), || true);
        }
        for _ in 0..2 {
            for i in 0..100 {
                get(&s, &format!("hot{i}"));
            }
        }
        for i in 0..1000 {
            s.insert(&format!("scan{i}"), fill(), || true);
        }
        assert!(s.len() <= 100);
        let kept = (0..100).filter(|i| get(&s, &format!("hot{i}"))).count();
        assert!(
            kept >= 80,
            "a one-time scan evicted the hot set: {kept} kept"
        );
        assert!(s.evictions() >= 1000);
    }

    #[test]
    fn byte_bound_holds() {
        let s = Store::new(1_000, 2_000);
        for i in 0..100 {
            s.insert(&format!("k{i}"), fill(), || true);
        }
        assert!(s.weight() <= 2_000, "{} bytes", s.weight());
        assert!(s.len() > 0);
    }

    #[test]
    fn expired_entries_are_never_returned() {
        let s = Store::new(10, 1 << 20);
        let mut f = fill();
        f.expires_at = clock::now();
        s.insert("k", f, || true);
        assert!(!get(&s, "k"));
    }

    #[test]
    fn a_refused_admission_inserts_nothing() {
        let s = Store::new(10, 1 << 20);
        assert!(!s.insert("k", fill(), || false));
        assert!(!get(&s, "k"));
    }

    #[test]
    fn churn_does_not_grow_queues() {
        let s = Store::new(50, 1 << 20);
        for round in 0..200 {
            for i in 0..50 {
                s.insert(&format!("k{i}"), fill(), || true);
                if round % 2 == 0 {
                    s.remove(&format!("k{i}"));
                }
            }
        }
        let shard = read(&s.shards[0]);
        assert!(shard.small.items.len() + shard.main.items.len() <= 4 * 50 + 200);
        assert_eq!(shard.small.live + shard.main.live, shard.map.len());
    }

    #[test]
    fn remove_where_and_clear() {
        let s = Store::new(10, 1 << 20);
        s.insert("a", fill(), || true);
        s.insert("b", fill(), || true);
        assert_eq!(s.remove_where(|k, _| k == "a"), 1);
        assert!(!get(&s, "a") && get(&s, "b"));
        s.clear();
        assert_eq!(s.len(), 0);
        assert_eq!(s.weight(), 0);
    }
}
