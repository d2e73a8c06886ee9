//! Measures the Redis replay cache: inserts/s with one caller and with many concurrent callers
//! on one multiplexed connection, the commands Redis processed per insert, and Redis memory per
//! record (`INFO memory` `used_memory` before and after inserting the records).
//!
//! Run: `cargo run --release -p keybound-store --example redis_replay_load -- [records] [concurrency]`
//! with `KEYBOUND_REDIS_URL` (default `redis://127.0.0.1:6379`). The records go under a prefix
//! of their own with a 10-minute TTL and are deleted at the end. Memory figures are only clean
//! on a Redis nothing else writes to; the client shares the machine's cores with Redis.

// The example is the caller: a failed unwrap ends it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use keybound_core::UnixTime;
use keybound_store::{RedisReplayCache, RedisReplayOptions, ReplayCache};

/// A distinct, hash-like 32-byte key for `n` (splitmix64 over the counter).
fn key(run: u64, n: u64) -> [u8; 32] {
    let mut state = run ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut key = [0u8; 32];
    for chunk in key.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    key
}

async fn info_field(
    connection: &mut redis::aio::MultiplexedConnection,
    section: &str,
    field: &str,
) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(connection)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let records: u64 = args.next().map_or(100_000, |a| a.parse().unwrap());
    let concurrency: u64 = args.next().map_or(64, |a| a.parse().unwrap());
    let url =
        std::env::var("KEYBOUND_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // As long as the default prefix (16 bytes), so the memory figure is the one to expect.
    let prefix = format!("kbbench:{:07x}:", run & 0xFFF_FFFF);
    let cache = Arc::new(
        RedisReplayCache::connect(&url, RedisReplayOptions::default().with_key_prefix(&prefix))
            .await
            .unwrap(),
    );
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let now = UnixTime::from_secs(run / 1_000_000_000);
    let expires = now.saturating_add(600);

    let memory_before = info_field(&mut raw, "memory", "used_memory").await;

    // One caller: every insert waits for its answer.
    let sequential = records.min(20_000);
    let commands_before = info_field(&mut raw, "stats", "total_commands_processed").await;
    let start = Instant::now();
    for n in 0..sequential {
        assert!(cache.insert_once(key(run, n), expires, now).await.unwrap());
    }
    let elapsed = start.elapsed();
    let commands =
        info_field(&mut raw, "stats", "total_commands_processed").await - commands_before;
    println!(
        "1 caller:       {sequential} inserts in {:.2} s = {:.0} inserts/s ({:.1} us each); \
         Redis processed {commands} commands (≈ {:.2} per insert, INFO included, other clients too)",
        elapsed.as_secs_f64(),
        sequential as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / sequential as f64,
        commands as f64 / sequential as f64,
    );

    // Replays of the same keys: the other verdict, same cost.
    let start = Instant::now();
    for n in 0..sequential {
        assert!(!cache.insert_once(key(run, n), expires, now).await.unwrap());
    }
    let elapsed = start.elapsed();
    println!(
        "1 caller:       {sequential} replays in {:.2} s = {:.0} replays/s",
        elapsed.as_secs_f64(),
        sequential as f64 / elapsed.as_secs_f64(),
    );

    // Many callers on the one multiplexed connection, filling up to `records` keys.
    let remaining = records.saturating_sub(sequential);
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                let mut n = sequential + task;
                while n < sequential + remaining {
                    assert!(cache.insert_once(key(run, n), expires, now).await.unwrap());
                    n += concurrency;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "{concurrency} callers:     {remaining} inserts in {:.2} s = {:.0} inserts/s",
        elapsed.as_secs_f64(),
        remaining as f64 / elapsed.as_secs_f64(),
    );
    let memory_after = info_field(&mut raw, "memory", "used_memory").await;
    let dbsize_keys = records;
    println!(
        "Redis memory:   used_memory {memory_before} -> {memory_after} bytes for {records} records \
         = {:.1} bytes per record (key {} bytes: prefix {} + 43)",
        (memory_after as f64 - memory_before as f64) / records as f64,
        prefix.len() + 43,
        prefix.len(),
    );

    // Clean up: delete every record this run made.
    let mut deleted = 0u64;
    for start in (0..dbsize_keys).step_by(1_000) {
        let mut unlink = redis::cmd("UNLINK");
        for n in start..(start + 1_000).min(dbsize_keys) {
            unlink.arg(cache.redis_key(&key(run, n)));
        }
        deleted += unlink.query_async::<u64>(&mut raw).await.unwrap();
    }
    println!("deleted {deleted} records");
}
