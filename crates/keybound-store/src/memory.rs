//! The in-process replay cache: sharded, bounded, expiring, and never evicting a live record.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use keybound_core::UnixTime;

use crate::{ReplayCache, StoreError};

/// How many independently locked shards the cache is split into (a key's shard is the low four
/// bits of its first byte: replay keys are hashes, so they spread evenly).
const SHARDS: usize = 16;

/// Size of one stored entry as laid out in a hash-table bucket: the 32-byte key and the 8-byte
/// expiry, with no padding and no heap allocation of its own.
const SLOT_BYTES: usize = size_of::<([u8; 32], u64)>();

/// One shard: its records and a lower bound on their expiries.
#[derive(Default)]
struct Shard {
    /// Key to expiry (seconds since the epoch). A record with `expiry <= now` counts as absent.
    records: HashMap<[u8; 32], u64>,
    /// No record in `records` expires before this; `u64::MAX` when there are none. Lowered on
    /// every insert, recomputed by a sweep; lets a full shard refuse in O(1) when a sweep could
    /// free nothing.
    earliest_expiry: u64,
}

impl Shard {
    fn new() -> Self {
        Self {
            records: HashMap::new(),
            earliest_expiry: u64::MAX,
        }
    }

    /// Removes every record expired at `now` and recomputes `earliest_expiry`.
    fn sweep(&mut self, now: u64) {
        self.records.retain(|_, expiry| *expiry > now);
        self.earliest_expiry = self.records.values().copied().min().unwrap_or(u64::MAX);
    }
}

/// A bounded, expiring, in-process [`ReplayCache`] for a single node.
///
/// The records live in 16 shards, each a `Mutex<HashMap<[u8; 32], u64>>`, so concurrent
/// requests contend only when their keys share a shard, and [`ReplayCache::insert_once`] is
/// atomic per key (check and insert happen under the shard's lock).
///
/// **Bounded, fail closed.** `max_entries` is split between the shards (their shares add up to
/// exactly `max_entries`). When a new key arrives at a shard that holds its share, the shard's
/// expired records are swept first; if it is still full the insert fails with
/// [`StoreError::Full`] and the caller refuses the request. An unexpired record is never evicted
/// to make room: evicting one would let its proof be replayed.
///
/// **Memory.** An entry is 40 bytes (the 32-byte key and the 8-byte expiry, stored inline in the
/// hash table, with no per-entry heap allocation) plus one control byte, in a table kept between
/// 7/8 and 7/16 full: about 47 bytes per entry when a shard's table is at its fullest and about
/// 94 just after it doubled. Measured with [`MemoryReplayCache::approx_heap_bytes`] in the
/// tests: 53.7 bytes per entry for a full cache of 100 000 entries. A cache of one million
/// entries thus costs 47–94 MB at most, plus a few hundred bytes for the shards. Tables
/// grow as records arrive and keep their size after a sweep.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use keybound_core::UnixTime;
/// use keybound_store::{MemoryReplayCache, ReplayCache, StoreError};
/// let cache = MemoryReplayCache::new(0); // no room at all
/// let now = UnixTime::from_secs(1_700_000_000);
/// assert_eq!(cache.insert_once([1; 32], now.saturating_add(60), now).await, Err(StoreError::Full));
/// # })
/// ```
pub struct MemoryReplayCache {
    shards: [Mutex<Shard>; SHARDS],
    max_entries: usize,
}

impl MemoryReplayCache {
    /// A cache that holds at most `max_entries` unexpired records (0 refuses everything).
    #[must_use]
    pub fn new(max_entries: usize) -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Shard::new())),
            max_entries,
        }
    }

    /// The most records the cache holds.
    #[must_use]
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// How many records are stored, including expired ones not yet swept.
    #[must_use]
    pub fn len(&self) -> usize {
        (0..SHARDS)
            .map(|index| self.lock(index).records.len())
            .sum()
    }

    /// Whether no record is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every record expired at `now` (inserts also sweep a full shard on their own);
    /// returns how many went.
    pub fn sweep_expired(&self, now: UnixTime) -> usize {
        (0..SHARDS)
            .map(|index| {
                let mut shard = self.lock(index);
                let before = shard.records.len();
                shard.sweep(now.as_secs());
                before - shard.records.len()
            })
            .sum()
    }

    /// An estimate of the heap memory the records take, computed from the hash tables'
    /// capacities (40-byte slots plus one control byte per bucket, and a 16-byte group of
    /// trailing control bytes per table). An estimate: it follows the layout of the standard
    /// library's hash table, which may change.
    #[must_use]
    pub fn approx_heap_bytes(&self) -> usize {
        (0..SHARDS)
            .map(|index| {
                let capacity = self.lock(index).records.capacity();
                if capacity == 0 {
                    return 0;
                }
                // The table keeps at most 7/8 of its buckets full (all but one below 8 buckets).
                let buckets = if capacity < 8 {
                    capacity + 1
                } else {
                    capacity / 7 * 8
                };
                buckets * (SLOT_BYTES + 1) + 16
            })
            .sum()
    }

    /// The share of `max_entries` that shard `index` may hold: the shares add up to exactly
    /// `max_entries`.
    fn shard_capacity(&self, index: usize) -> usize {
        self.max_entries / SHARDS + usize::from(index < self.max_entries % SHARDS)
    }

    /// Locks shard `index`. A poisoned lock is taken over: every update of a shard completes
    /// before its lock is released (nothing in it can panic half-way), so its map is consistent.
    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn insert_once_sync(
        &self,
        key: [u8; 32],
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let (expires_at, now) = (expires_at.as_secs(), now.as_secs());
        let index = usize::from(key[0]) % SHARDS;
        let capacity = self.shard_capacity(index);
        let mut shard = self.lock(index);

        if let Some(expiry) = shard.records.get_mut(&key) {
            if *expiry > now {
                return Ok(false);
            }
            // Expired: it counts as absent; the new record takes its place (or, if already
            // expired itself, simply removes it).
            if expires_at > now {
                *expiry = expires_at;
                shard.earliest_expiry = shard.earliest_expiry.min(expires_at);
            } else {
                shard.records.remove(&key);
            }
            return Ok(true);
        }

        if expires_at <= now {
            // First time seen, but already past its lifetime: a record of it would count as
            // absent at once, so none is kept and no room is needed.
            return Ok(true);
        }

        if shard.records.len() >= capacity {
            if shard.earliest_expiry <= now {
                shard.sweep(now);
            }
            if shard.records.len() >= capacity {
                return Err(StoreError::Full);
            }
        }
        shard.records.insert(key, expires_at);
        shard.earliest_expiry = shard.earliest_expiry.min(expires_at);
        Ok(true)
    }
}

impl fmt::Debug for MemoryReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayCache")
            .field("max_entries", &self.max_entries)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl ReplayCache for MemoryReplayCache {
    async fn insert_once(
        &self,
        key: [u8; 32],
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        self.insert_once_sync(key, expires_at, now)
    }

    /// In this process: it can always answer.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const NOW: UnixTime = UnixTime::from_secs(1_700_000_000);

    /// A key that lands in shard `shard`, distinct for each `n`.
    fn key_in(shard: u8, n: u32) -> [u8; 32] {
        let mut key = [0u8; 32];
        key[0] = shard;
        key[1..5].copy_from_slice(&n.to_be_bytes());
        key
    }

    fn insert(
        cache: &MemoryReplayCache,
        key: [u8; 32],
        ttl: u64,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        cache.insert_once_sync(key, now.saturating_add(ttl), now)
    }

    #[test]
    fn first_insert_is_true_and_a_replay_is_false() {
        let cache = MemoryReplayCache::new(100);
        assert_eq!(insert(&cache, [1; 32], 60, NOW), Ok(true));
        assert_eq!(insert(&cache, [1; 32], 60, NOW), Ok(false));
        assert_eq!(
            insert(&cache, [1; 32], 600, NOW.saturating_add(59)),
            Ok(false),
            "still live at the last second"
        );
        assert_eq!(insert(&cache, [2; 32], 60, NOW), Ok(true), "another key");
        assert_eq!(cache.len(), 2);
        assert!(!cache.is_empty());
    }

    #[test]
    fn a_replay_does_not_extend_the_record() {
        let cache = MemoryReplayCache::new(100);
        assert_eq!(insert(&cache, [1; 32], 60, NOW), Ok(true));
        assert_eq!(insert(&cache, [1; 32], 6_000, NOW), Ok(false));
        assert_eq!(
            insert(&cache, [1; 32], 60, NOW.saturating_add(60)),
            Ok(true),
            "expired at the original time"
        );
    }

    #[test]
    fn an_expired_record_counts_as_absent() {
        let cache = MemoryReplayCache::new(100);
        assert_eq!(insert(&cache, [1; 32], 60, NOW), Ok(true));
        let later = NOW.saturating_add(60);
        assert_eq!(
            insert(&cache, [1; 32], 60, later),
            Ok(true),
            "expired at exactly its expiry"
        );
        assert_eq!(
            insert(&cache, [1; 32], 60, later),
            Ok(false),
            "and recorded again"
        );
        assert_eq!(cache.len(), 1, "overwritten in place");
    }

    #[test]
    fn an_already_expired_insert_is_first_seen_but_takes_no_room() {
        let cache = MemoryReplayCache::new(1);
        assert_eq!(cache.insert_once_sync([1; 32], NOW, NOW), Ok(true));
        assert!(cache.is_empty());
        // Overwriting an expired record with an already-expired one removes it.
        assert_eq!(insert(&cache, [0; 32], 10, NOW), Ok(true));
        assert_eq!(
            cache.insert_once_sync([0; 32], NOW, NOW.saturating_add(10)),
            Ok(true)
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn shard_shares_add_up_to_max_entries() {
        for max in [0, 1, 15, 16, 17, 100, 10_000, 10_007] {
            let cache = MemoryReplayCache::new(max);
            assert_eq!(
                (0..SHARDS).map(|i| cache.shard_capacity(i)).sum::<usize>(),
                max
            );
            assert_eq!(cache.max_entries(), max);
        }
    }

    #[test]
    fn a_full_cache_refuses_and_evicts_nothing() {
        // 32 entries: two per shard.
        let cache = MemoryReplayCache::new(32);
        for shard in 0..16u8 {
            for n in 0..2 {
                assert_eq!(insert(&cache, key_in(shard, n), 60, NOW), Ok(true));
            }
        }
        assert_eq!(cache.len(), 32);
        for shard in 0..16u8 {
            assert_eq!(
                insert(&cache, key_in(shard, 99), 60, NOW),
                Err(StoreError::Full)
            );
        }
        // Full is not a replay verdict: every record is still there and still a replay.
        assert_eq!(cache.len(), 32);
        for shard in 0..16u8 {
            for n in 0..2 {
                assert_eq!(
                    insert(&cache, key_in(shard, n), 60, NOW.saturating_add(59)),
                    Ok(false)
                );
            }
        }
        // Replays of known keys are answered even when full.
        assert_eq!(cache.len(), 32);
    }

    #[test]
    fn a_full_shard_sweeps_its_expired_records_to_make_room() {
        let cache = MemoryReplayCache::new(32);
        // Shard 3 holds its two: one short-lived, one long-lived.
        assert_eq!(insert(&cache, key_in(3, 0), 10, NOW), Ok(true));
        assert_eq!(insert(&cache, key_in(3, 1), 100, NOW), Ok(true));
        assert_eq!(
            insert(&cache, key_in(3, 2), 100, NOW.saturating_add(9)),
            Err(StoreError::Full)
        );
        // Once the short-lived one expired, its room is reused.
        assert_eq!(
            insert(&cache, key_in(3, 2), 100, NOW.saturating_add(10)),
            Ok(true)
        );
        assert_eq!(cache.len(), 2);
        assert_eq!(
            insert(&cache, key_in(3, 1), 100, NOW.saturating_add(10)),
            Ok(false),
            "the live one stayed"
        );
        assert_eq!(
            insert(&cache, key_in(3, 3), 100, NOW.saturating_add(10)),
            Err(StoreError::Full)
        );
    }

    #[test]
    fn sweep_expired_frees_only_expired_records() {
        let cache = MemoryReplayCache::new(1_000);
        for n in 0..100 {
            let ttl = if n % 2 == 0 { 10 } else { 1_000 };
            assert_eq!(
                insert(&cache, key_in((n % 16) as u8, n), ttl, NOW),
                Ok(true)
            );
        }
        assert_eq!(cache.sweep_expired(NOW.saturating_add(9)), 0);
        assert_eq!(cache.sweep_expired(NOW.saturating_add(10)), 50);
        assert_eq!(cache.len(), 50);
        for n in (1..100).step_by(2) {
            assert_eq!(
                insert(
                    &cache,
                    key_in((n % 16) as u8, n),
                    10,
                    NOW.saturating_add(10)
                ),
                Ok(false)
            );
        }
    }

    #[test]
    fn concurrent_inserts_of_one_key_give_exactly_one_true() {
        for round in 0..50u8 {
            let cache = Arc::new(MemoryReplayCache::new(1_000));
            let firsts = Arc::new(AtomicUsize::new(0));
            let barrier = Arc::new(std::sync::Barrier::new(16));
            let threads: Vec<_> = (0..16)
                .map(|_| {
                    let (cache, firsts, barrier) = (
                        Arc::clone(&cache),
                        Arc::clone(&firsts),
                        Arc::clone(&barrier),
                    );
                    std::thread::spawn(move || {
                        barrier.wait();
                        if insert(&cache, [round; 32], 60, NOW).unwrap() {
                            firsts.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(firsts.load(Ordering::SeqCst), 1);
        }
    }

    #[test]
    fn heap_bytes_per_entry_stay_small() {
        let entries = 100_000usize;
        let cache = MemoryReplayCache::new(entries);
        let mut inserted = 0usize;
        for n in 0..u32::MAX {
            let mut key = [0u8; 32];
            // Spread like hashes: a varying first byte, then the counter.
            key[0] = (n.wrapping_mul(2_654_435_761) >> 24) as u8;
            key[1..5].copy_from_slice(&n.to_be_bytes());
            match insert(&cache, key, 60, NOW) {
                Ok(true) => inserted += 1,
                Err(StoreError::Full) => {}
                other => panic!("unexpected {other:?}"),
            }
            if inserted == entries {
                break;
            }
        }
        assert_eq!(cache.len(), entries);
        let per_entry = cache.approx_heap_bytes() as f64 / entries as f64;
        println!("approx heap bytes per replay entry at {entries} entries: {per_entry:.1}");
        assert_eq!(SLOT_BYTES, 40);
        assert!((40.0..=100.0).contains(&per_entry), "{per_entry}");
    }
}
