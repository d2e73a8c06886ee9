//! The Redis replay cache against a real Redis: verdicts, key layout and expiry, concurrency, replicas sharing state, one round trip per insert, and failing closed while Redis is down or misbehaves.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "redis")]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keybound_core::UnixTime;
use keybound_store::{
    DEFAULT_KEY_PREFIX, RedisReplayCache, RedisReplayOptions, ReplayCache, StoreError,
};
use redis::AsyncCommands as _;

const NOW: UnixTime = UnixTime::from_secs(1_700_000_000);

/// The shared Redis under test, from `KEYBOUND_REDIS_URL`. Unset: the test is skipped with a
/// printed reason, unless `CI=true`, where it fails.
fn redis_url(test: &str) -> Option<String> {
    match std::env::var("KEYBOUND_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test}: KEYBOUND_REDIS_URL must be set under CI (e.g. redis://127.0.0.1:6379)"
            );
            eprintln!("skipping {test}: KEYBOUND_REDIS_URL is not set");
            None
        }
    }
}

/// The `redis-server` binary for tests that start and kill their own. Missing: skipped with a
/// printed reason, unless `CI=true`, where it fails.
fn redis_server_binary(test: &str) -> Option<PathBuf> {
    let path = PathBuf::from(
        std::env::var("KEYBOUND_REDIS_SERVER").unwrap_or_else(|_| "/usr/bin/redis-server".into()),
    );
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {} is needed under CI",
        path.display()
    );
    eprintln!("skipping {test}: {} does not exist", path.display());
    None
}

/// A key prefix no other run or test shares, so parallel runs on one Redis never collide.
fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("keybound:test:{}:{nanos}:{test}:", std::process::id())
}

fn options(test: &str) -> RedisReplayOptions {
    RedisReplayOptions::default().with_key_prefix(unique_prefix(test))
}

/// A distinct replay key for each `n` (shaped like a hash: every byte varies).
fn key(n: u32) -> [u8; 32] {
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = (n.wrapping_mul(2_654_435_761).rotate_left(i as u32) >> 3) as u8 ^ i as u8;
    }
    key[..4].copy_from_slice(&n.to_be_bytes());
    key
}

async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn assert_unavailable(result: Result<bool, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{what}: expected Err(Unavailable), got {result:?}"
    );
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of the test's own, on loopback, keeping nothing on disk; killed on drop.
struct OwnRedis {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn new(binary: PathBuf) -> Self {
        Self {
            binary,
            port: free_port(),
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and waits until it answers PING.
    async fn start(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut connection) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills it (SIGKILL) and waits until it is gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn first_use_is_true_a_replay_is_false_and_keys_are_independent() {
    let Some(url) = redis_url("first_use") else {
        return;
    };
    let cache = RedisReplayCache::connect(&url, options("first_use"))
        .await
        .unwrap();
    cache.ping().await.unwrap();
    let expires = NOW.saturating_add(60);
    assert_eq!(cache.insert_once(key(1), expires, NOW).await, Ok(true));
    assert_eq!(cache.insert_once(key(1), expires, NOW).await, Ok(false));
    assert_eq!(
        cache
            .insert_once(key(1), NOW.saturating_add(600), NOW.saturating_add(30))
            .await,
        Ok(false),
        "still a replay later, with another lifetime"
    );
    assert_eq!(cache.insert_once(key(2), expires, NOW).await, Ok(true));
    assert_eq!(cache.insert_once(key(2), expires, NOW).await, Ok(false));
    let mut flipped = key(1);
    flipped[31] ^= 1;
    assert_eq!(
        cache.insert_once(flipped, expires, NOW).await,
        Ok(true),
        "one bit apart is another key"
    );
}

#[tokio::test]
async fn records_are_stored_under_the_prefix_in_base64url_with_the_ttl() {
    let Some(url) = redis_url("key_layout") else {
        return;
    };
    let prefix = unique_prefix("key_layout");
    let cache =
        RedisReplayCache::connect(&url, RedisReplayOptions::default().with_key_prefix(&prefix))
            .await
            .unwrap();
    let mut raw = raw_connection(&url).await;

    let key = key(7);
    let name = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(key));
    assert_eq!(cache.redis_key(&key), name.as_bytes());
    assert_eq!(
        cache.insert_once(key, NOW.saturating_add(2), NOW).await,
        Ok(true)
    );
    let value: Option<String> = raw.get(&name).await.unwrap();
    assert_eq!(value.as_deref(), Some("1"));
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&name)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        (1..=2_000).contains(&pttl),
        "expires_at - now = 2 s, so the TTL is at most 2000 ms: {pttl}"
    );

    // A replay neither extends nor replaces the record.
    assert_eq!(
        cache.insert_once(key, NOW.saturating_add(600), NOW).await,
        Ok(false)
    );
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&name)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!((-2..=2_000).contains(&pttl), "not extended: {pttl}");
}

#[tokio::test]
async fn an_expired_record_counts_as_absent() {
    let Some(url) = redis_url("expiry") else {
        return;
    };
    let cache = RedisReplayCache::connect(&url, options("expiry"))
        .await
        .unwrap();
    let mut raw = raw_connection(&url).await;
    let key = key(3);
    let name = cache.redis_key(&key);

    // Already past its lifetime: first use, recorded for the minimum of 1 ms.
    assert_eq!(
        cache
            .insert_once(key, NOW.saturating_sub(5), NOW.saturating_add(5))
            .await,
        Ok(true)
    );
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&name)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        pttl == -2 || (0..=1).contains(&pttl),
        "a 1 ms TTL (or already gone): {pttl}"
    );

    // Once Redis dropped it, the same key is a first use again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cache.insert_once(key, NOW.saturating_add(60), NOW).await {
            Ok(true) => break,
            Ok(false) => {
                assert!(Instant::now() < deadline, "the 1 ms record never expired");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(error) => panic!("{error}"),
        }
    }
    assert_eq!(
        cache.insert_once(key, NOW.saturating_add(60), NOW).await,
        Ok(false),
        "and recorded again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_inserts_of_one_key_give_exactly_one_true() {
    let Some(url) = redis_url("concurrent") else {
        return;
    };
    let options = options("concurrent");
    // Two replicas' worth of connections, so the race is also across connections.
    let caches = [
        Arc::new(
            RedisReplayCache::connect(&url, options.clone())
                .await
                .unwrap(),
        ),
        Arc::new(RedisReplayCache::connect(&url, options).await.unwrap()),
    ];
    for round in 0..20u32 {
        let barrier = Arc::new(tokio::sync::Barrier::new(50));
        let tasks: Vec<_> = (0..50usize)
            .map(|task| {
                let (cache, barrier) = (Arc::clone(&caches[task % 2]), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    cache
                        .insert_once(key(1_000 + round), NOW.saturating_add(60), NOW)
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

#[tokio::test]
async fn two_instances_share_the_records_like_two_replicas() {
    let Some(url) = redis_url("replicas") else {
        return;
    };
    let shared = options("replicas");
    let a = RedisReplayCache::connect(&url, shared.clone())
        .await
        .unwrap();
    let b = RedisReplayCache::connect(&url, shared).await.unwrap();
    let expires = NOW.saturating_add(60);
    assert_eq!(a.insert_once(key(1), expires, NOW).await, Ok(true));
    assert_eq!(
        b.insert_once(key(1), expires, NOW).await,
        Ok(false),
        "a replay on the other replica"
    );
    assert_eq!(b.insert_once(key(2), expires, NOW).await, Ok(true));
    assert_eq!(a.insert_once(key(2), expires, NOW).await, Ok(false));

    // Another prefix is another deployment: it does not see these records.
    let other = RedisReplayCache::connect(&url, options("replicas-other"))
        .await
        .unwrap();
    assert_eq!(other.insert_once(key(1), expires, NOW).await, Ok(true));
}

#[tokio::test]
async fn an_error_reply_is_unavailable() {
    let Some(url) = redis_url("error_reply") else {
        return;
    };
    let cache = RedisReplayCache::connect(&url, options("error_reply"))
        .await
        .unwrap();
    // A lifetime too long for PX: Redis answers with an error, which is no verdict.
    assert_unavailable(
        cache
            .insert_once(key(1), UnixTime::from_secs(u64::MAX), NOW)
            .await,
        "PX out of range",
    );
    assert_eq!(
        cache.insert_once(key(1), NOW.saturating_add(60), NOW).await,
        Ok(true),
        "and nothing was recorded"
    );
}

#[tokio::test]
async fn each_insert_is_one_command() {
    let Some(binary) = redis_server_binary("one_command") else {
        return;
    };
    let mut server = OwnRedis::new(binary);
    server.start().await;
    let cache = RedisReplayCache::connect(&server.url(), options("one_command"))
        .await
        .unwrap();
    let mut raw = raw_connection(&server.url()).await;
    let processed = |info: &str| -> u64 {
        info.lines()
            .find_map(|line| line.strip_prefix("total_commands_processed:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let mut info = redis::cmd("INFO");
    info.arg("stats");
    let before = processed(&info.query_async::<String>(&mut raw).await.unwrap());
    for n in 0..10 {
        assert_eq!(
            cache
                .insert_once(key(n % 5), NOW.saturating_add(60), NOW)
                .await,
            Ok(n < 5)
        );
    }
    let after = processed(&info.query_async::<String>(&mut raw).await.unwrap());
    // The ten inserts (five first uses, five replays) and the first INFO itself.
    assert_eq!(after - before, 11);
}

#[tokio::test]
async fn fails_closed_while_redis_is_down_and_recovers_without_a_new_cache() {
    let Some(binary) = redis_server_binary("down_and_up") else {
        return;
    };
    let mut server = OwnRedis::new(binary);
    server.start().await;
    let cache = RedisReplayCache::connect(&server.url(), options("down_and_up"))
        .await
        .unwrap();
    let expires = NOW.saturating_add(60);
    assert_eq!(cache.insert_once(key(1), expires, NOW).await, Ok(true));
    assert_eq!(cache.insert_once(key(1), expires, NOW).await, Ok(false));

    server.kill();
    for n in 0..5 {
        assert_unavailable(
            cache.insert_once(key(100 + n), expires, NOW).await,
            "a new key while Redis is down",
        );
        assert_unavailable(
            cache.insert_once(key(1), expires, NOW).await,
            "a known key while Redis is down",
        );
    }
    assert!(matches!(
        cache.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    // Readiness as `/readyz` asks for it, through the trait.
    let as_replay_cache: &dyn ReplayCache = &cache;
    assert!(matches!(
        as_replay_cache.ping().await,
        Err(StoreError::Unavailable(_))
    ));

    server.start().await;
    // The reconnection runs in the background; until it is through, calls still fail closed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 200;
    let recovered = loop {
        n += 1;
        match cache.insert_once(key(n), expires, NOW).await {
            Ok(true) => break key(n),
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("after the restart: {other:?}"),
        }
    };
    assert_eq!(cache.insert_once(recovered, expires, NOW).await, Ok(false));
    cache.ping().await.unwrap();
}

#[tokio::test]
async fn connect_fails_while_redis_is_down_but_a_lazy_cache_works_once_it_is_up() {
    let Some(binary) = redis_server_binary("lazy") else {
        return;
    };
    let mut server = OwnRedis::new(binary);
    let fast = options("lazy").with_connect_timeout(Duration::from_millis(300));
    assert!(matches!(
        RedisReplayCache::connect(&server.url(), fast.clone()).await,
        Err(StoreError::Unavailable(_))
    ));
    let cache = RedisReplayCache::connect_lazy(&server.url(), fast).unwrap();
    assert_unavailable(
        cache.insert_once(key(1), NOW.saturating_add(60), NOW).await,
        "before Redis started",
    );

    server.start().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 10;
    loop {
        n += 1;
        match cache.insert_once(key(n), NOW.saturating_add(60), NOW).await {
            Ok(true) => break,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("once Redis is up: {other:?}"),
        }
    }
    cache.ping().await.unwrap();
}

/// What the fake server answers to `SET`.
#[derive(Clone, Copy)]
enum SetReply {
    Raw(&'static [u8]),
    Silence,
}

/// A TCP server speaking just enough RESP to pass the connection handshake (`+OK` to
/// `CLIENT ...`, `+PONG` to `PING`) and answer `SET` as told. Returns its URL.
fn fake_redis(reply: SetReply) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || serve_fake(stream, reply));
        }
    });
    url
}

fn serve_fake(stream: TcpStream, reply: SetReply) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // One command: `*<n>` then n bulk strings `$<len>` `<bytes>`.
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let Some(count) = line.trim_end().strip_prefix('*') else {
            return;
        };
        let mut args = Vec::new();
        for _ in 0..count.parse::<usize>().unwrap() {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let len: usize = line.trim_end()[1..].parse().unwrap();
            let mut arg = vec![0; len + 2];
            std::io::Read::read_exact(&mut reader, &mut arg).unwrap();
            arg.truncate(len);
            args.push(String::from_utf8_lossy(&arg).to_uppercase());
        }
        let answer: &[u8] = match (args[0].as_str(), reply) {
            ("PING", _) => b"+PONG\r\n",
            ("SET", SetReply::Raw(raw)) => raw,
            ("SET", SetReply::Silence) => continue,
            _ => b"+OK\r\n",
        };
        if writer.write_all(answer).is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn unexpected_replies_are_unavailable_never_a_verdict() {
    for (reply, what) in [
        (&b":1\r\n"[..], "an integer"),
        (b"$1\r\n1\r\n", "a bulk string"),
        (b"+QUEUED\r\n", "another status"),
        (b"*0\r\n", "an empty array"),
        (b"-ERR nope\r\n", "an error"),
        (
            b"-OOM command not allowed when used memory > 'maxmemory'\r\n",
            "out of memory",
        ),
    ] {
        let url = fake_redis(SetReply::Raw(reply));
        let cache = RedisReplayCache::connect(&url, options("unexpected"))
            .await
            .unwrap();
        assert_unavailable(
            cache.insert_once(key(1), NOW.saturating_add(60), NOW).await,
            what,
        );
    }
    // The fake's plain answers are understood, so the checks above are about the reply.
    let url = fake_redis(SetReply::Raw(b"+OK\r\n"));
    let cache = RedisReplayCache::connect(&url, options("unexpected"))
        .await
        .unwrap();
    assert_eq!(
        cache.insert_once(key(1), NOW.saturating_add(60), NOW).await,
        Ok(true)
    );
    let url = fake_redis(SetReply::Raw(b"$-1\r\n"));
    let cache = RedisReplayCache::connect(&url, options("unexpected"))
        .await
        .unwrap();
    assert_eq!(
        cache.insert_once(key(1), NOW.saturating_add(60), NOW).await,
        Ok(false)
    );
}

#[tokio::test]
async fn a_redis_that_does_not_answer_is_unavailable_after_the_command_timeout() {
    let url = fake_redis(SetReply::Silence);
    let cache = RedisReplayCache::connect(
        &url,
        options("silence").with_command_timeout(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    cache.ping().await.unwrap();
    // The outer bound only keeps a broken timeout from hanging the run.
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        cache.insert_once(key(1), NOW.saturating_add(60), NOW),
    )
    .await
    .expect("insert_once never returned: the command timeout did not fire");
    assert_unavailable(result, "no answer");
}

#[tokio::test]
async fn debug_and_errors_never_show_the_password() {
    let cache = RedisReplayCache::connect_lazy(
        "redis://alice:s3cr3t-pw@127.0.0.1:6379/2",
        RedisReplayOptions::default(),
    )
    .unwrap();
    let debug = format!("{cache:?}");
    assert!(!debug.contains("s3cr3t-pw"), "{debug}");
    assert!(debug.contains("127.0.0.1:6379/2"), "{debug}");
    assert!(debug.contains("alice"), "{debug}");
    assert!(debug.contains("password set"), "{debug}");
    assert!(debug.contains(DEFAULT_KEY_PREFIX), "{debug}");

    for bad in [
        "redis://alice:s3cr3t-pw@[::1",
        "http://alice:s3cr3t-pw@127.0.0.1:6379",
        "rediss://alice:s3cr3t-pw@127.0.0.1:6379",
    ] {
        let error = RedisReplayCache::connect_lazy(bad, RedisReplayOptions::default()).unwrap_err();
        assert!(matches!(error, StoreError::Unavailable(_)), "{bad}");
        assert!(!error.to_string().contains("s3cr3t-pw"), "{error}");
    }
}

#[test]
fn options_default_and_setters() {
    let defaults = RedisReplayOptions::default();
    assert_eq!(defaults.key_prefix(), "keybound:replay:");
    assert_eq!(defaults.command_timeout(), Duration::from_millis(500));
    let custom = defaults
        .with_key_prefix("x:")
        .with_command_timeout(Duration::from_millis(7))
        .with_connect_timeout(Duration::from_millis(8));
    assert_eq!(
        (
            custom.key_prefix(),
            custom.command_timeout(),
            custom.connect_timeout(),
        ),
        ("x:", Duration::from_millis(7), Duration::from_millis(8))
    );
}

#[tokio::test]
async fn a_wrong_password_is_unavailable() {
    let Some(binary) = redis_server_binary("password") else {
        return;
    };
    let mut server = OwnRedis::new(binary);
    server.start().await;
    let mut raw = raw_connection(&server.url()).await;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("right-pw")
        .exec_async(&mut raw)
        .await
        .unwrap();
    let port = server.port;
    let wrong = format!("redis://:wrong-pw@127.0.0.1:{port}");
    let error = RedisReplayCache::connect(&wrong, options("password"))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)));
    assert!(!error.to_string().contains("wrong-pw"), "{error}");
    let lazy = RedisReplayCache::connect_lazy(&wrong, options("password")).unwrap();
    assert_unavailable(
        lazy.insert_once(key(1), NOW.saturating_add(60), NOW).await,
        "with a wrong password",
    );

    let right = format!("redis://:right-pw@127.0.0.1:{port}");
    let cache = RedisReplayCache::connect(&right, options("password"))
        .await
        .unwrap();
    assert_eq!(
        cache.insert_once(key(1), NOW.saturating_add(60), NOW).await,
        Ok(true)
    );
}
