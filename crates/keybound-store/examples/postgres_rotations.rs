//! Refresh-token rotations per second on PostgreSQL: N tasks, each rotating its own grant's
//! token for a few seconds through one `PostgresStore`, with latency percentiles; then the
//! round trips one call costs, counted on a TCP relay in front of the server.
//!
//! Run: `cargo run --release -p keybound-store --example postgres_rotations -- [tasks] [seconds]`
//! against `KEYBOUND_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`; the URL
//! needs a host and port for the relay). It works in a schema of its own and drops it at the end.
//! The load generator shares the machine's cores with the server.

// The example is the caller: it reads the clock and the environment, and a failed unwrap ends it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keybound_core::UnixTime;
use keybound_store::{
    Grant, GrantId, GrantStore, PostgresOptions, PostgresStore, RefreshTokenRecord, Rotation,
};
use sqlx::Connection as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const NOW: UnixTime = UnixTime::from_secs(1_700_000_000);

/// The token hash of step `step` of chain `chain`.
fn hash(chain: u32, step: u64) -> [u8; 32] {
    let mut h = [0x5a; 32];
    h[..4].copy_from_slice(&chain.to_be_bytes());
    h[4..12].copy_from_slice(&step.to_be_bytes());
    h
}

fn grant(chain: u32) -> Grant {
    Grant {
        id: GrantId(format!("bench-{chain}")),
        client_id: "bench".into(),
        subject: "alice".into(),
        scope: "read".into(),
        created_at: NOW,
        expires_at: NOW.saturating_add(86_400),
        dpop_jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
        cert_x5t: None,
    }
}

fn record(chain: u32, step: u64) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: hash(chain, step),
        grant_id: GrantId(format!("bench-{chain}")),
        expires_at: NOW.saturating_add(86_400),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Relays one connection at a time to `upstream`, counting the bursts each side sends (a
/// request flight from the client, a response flight from the server).
async fn counting_relay(upstream: std::net::SocketAddr) -> (u16, Arc<[AtomicU64; 2]>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let shared = Arc::clone(&counts);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(upstream).await.unwrap();
            client.set_nodelay(true).unwrap();
            server.set_nodelay(true).unwrap();
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            for (mut from, mut to, side) in [
                (client_read, server_write, 0),
                (server_read, client_write, 1),
            ]
            .map(|(r, w, side)| {
                (
                    Box::new(r) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    Box::new(w) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    side,
                )
            }) {
                let counts = Arc::clone(&shared);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = from.read(&mut buf).await {
                        counts[side].fetch_add(1, Ordering::Relaxed);
                        if to.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        }
    });
    (port, counts)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let tasks: u32 = args.next().map_or(16, |a| a.parse().unwrap());
    let seconds: u64 = args.next().map_or(5, |a| a.parse().unwrap());
    let url = std::env::var("KEYBOUND_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = format!("kbbench_{}_{nanos}", std::process::id());
    let options = PostgresOptions::default()
        .with_schema(schema.clone())
        .with_max_connections(tasks.clamp(1, 64));
    let store = Arc::new(PostgresStore::connect(&url, &options).await.unwrap());
    for chain in 0..tasks {
        store
            .create_grant(&grant(chain), &record(chain, 0))
            .await
            .unwrap();
    }

    // Throughput: every task rotates its own chain, so no two rotations wait on one row.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|chain| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut step = 0;
                while Instant::now() < deadline {
                    let call = Instant::now();
                    let outcome = store
                        .rotate_refresh_token(&hash(chain, step), &record(chain, step + 1), NOW)
                        .await
                        .unwrap();
                    latencies.push(call.elapsed());
                    assert!(matches!(outcome, Rotation::Rotated(_)), "{outcome:?}");
                    step += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    // Printed at the end, after the schema is dropped, so a closed stdout cannot leave it behind.
    let mut report = Vec::new();
    report.push(format!(
        "rotations: {} in {:.2} s with {tasks} tasks: {:.0}/s; latency p50 {:?} p99 {:?} max {:?}",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    ));

    // Round trips: one connection through a counting relay, calls one after another.
    let connect = sqlx::postgres::PgConnectOptions::from_str(&url).unwrap();
    let upstream =
        std::net::ToSocketAddrs::to_socket_addrs(&(connect.get_host(), connect.get_port()))
            .unwrap()
            .next()
            .unwrap();
    let (port, counts) = counting_relay(upstream).await;
    let relayed_url = url.replacen(
        &format!("{}:{}", connect.get_host(), connect.get_port()),
        &format!("127.0.0.1:{port}"),
        1,
    );
    assert_ne!(relayed_url, url, "the URL needs an explicit host:port");
    let relayed = PostgresStore::connect(&relayed_url, &options.clone().with_max_connections(1))
        .await
        .unwrap();
    let chain = tasks + 1;
    relayed
        .create_grant(&grant(chain), &record(chain, 0))
        .await
        .unwrap();
    // Warm the statement cache, then count.
    for step in 0..10 {
        relayed
            .rotate_refresh_token(&hash(chain, step), &record(chain, step + 1), NOW)
            .await
            .unwrap();
    }
    let n = 500u64;
    let flights = |counts: &[AtomicU64; 2]| {
        (
            counts[0].load(Ordering::Relaxed),
            counts[1].load(Ordering::Relaxed),
        )
    };
    let measure = |label: &str, before: (u64, u64), after: (u64, u64), ops: u64| {
        format!(
            "{label}: {:.2} request flights and {:.2} response flights per call \
             (sqlx's pool adds one Sync round trip per call when the connection is released)",
            (after.0 - before.0) as f64 / ops as f64,
            (after.1 - before.1) as f64 / ops as f64,
        )
    };
    // Let the last release check finish before counting.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = flights(&counts);
    for step in 10..10 + n {
        relayed
            .rotate_refresh_token(&hash(chain, step), &record(chain, step + 1), NOW)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    report.push(measure("rotation (success)", before, flights(&counts), n));

    let before = flights(&counts);
    for _ in 0..n {
        relayed
            .refresh_token_state(&hash(chain, 10 + n), NOW)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    report.push(measure("refresh_token_state", before, flights(&counts), n));

    // Reuse detection (the slow path), one per fresh grant.
    let reuses = 50u32;
    for i in 0..reuses {
        let chain = tasks + 2 + i;
        relayed
            .create_grant(&grant(chain), &record(chain, 0))
            .await
            .unwrap();
        relayed
            .rotate_refresh_token(&hash(chain, 0), &record(chain, 1), NOW)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = flights(&counts);
    for i in 0..reuses {
        let chain = tasks + 2 + i;
        let outcome = relayed
            .rotate_refresh_token(&hash(chain, 0), &record(chain, 2), NOW)
            .await
            .unwrap();
        assert!(matches!(outcome, Rotation::ReuseDetected(_)));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    report.push(measure(
        "rotation (reuse detected)",
        before,
        flights(&counts),
        u64::from(reuses),
    ));

    relayed.close().await;
    store.close().await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    for line in report {
        println!("{line}");
    }
}
