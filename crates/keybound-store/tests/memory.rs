//! The in-memory replay cache through the [`ReplayCache`] trait, under concurrent tokio tasks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use keybound_core::UnixTime;
use keybound_store::{MemoryReplayCache, ReplayCache, StoreError};

const NOW: UnixTime = UnixTime::from_secs(1_700_000_000);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tasks_inserting_one_key_see_exactly_one_first() {
    let cache: Arc<dyn ReplayCache> = Arc::new(MemoryReplayCache::new(10_000));
    for round in 0..100u8 {
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (cache, barrier) = (Arc::clone(&cache), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    cache
                        .insert_once([round; 32], NOW.saturating_add(60), NOW)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut firsts = 0;
        for task in tasks {
            firsts += usize::from(task.await.unwrap());
        }
        assert_eq!(firsts, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_distinct_keys_fill_the_cache_exactly() {
    let cache = Arc::new(MemoryReplayCache::new(1_600));
    let tasks: Vec<_> = (0..8u8)
        .map(|task| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                let (mut accepted, mut full) = (0usize, 0usize);
                for n in 0..400u16 {
                    let mut key = [task; 32];
                    key[0] = (n % 16) as u8;
                    key[1..3].copy_from_slice(&n.to_be_bytes());
                    match cache.insert_once(key, NOW.saturating_add(60), NOW).await {
                        Ok(true) => accepted += 1,
                        Err(StoreError::Full) => full += 1,
                        other => panic!("unexpected {other:?}"),
                    }
                }
                (accepted, full)
            })
        })
        .collect();
    let (mut accepted, mut full) = (0, 0);
    for task in tasks {
        let (a, f) = task.await.unwrap();
        accepted += a;
        full += f;
    }
    // 3 200 distinct keys spread evenly over the shards, room for 1 600.
    assert_eq!((accepted, full), (1_600, 1_600));
    assert_eq!(cache.len(), 1_600);
}
