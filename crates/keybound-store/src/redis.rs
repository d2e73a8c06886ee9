//! The shared replay cache for many replicas: one Redis `SET NX PX` per insert, fail closed.

use std::fmt;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ConnectionAddr, IntoConnectionInfo, Value};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keybound_core::UnixTime;

use crate::{ReplayCache, StoreError};

/// The key prefix used unless [`RedisReplayOptions::with_key_prefix`] sets another.
pub const DEFAULT_KEY_PREFIX: &str = "keybound:replay:";

/// Length of a replay key once base64url-encoded (32 bytes, no padding).
const ENCODED_KEY_LEN: usize = 43;

/// How a [`RedisReplayCache`] names its keys and how long it waits for Redis.
///
/// ```
/// use std::time::Duration;
/// use keybound_store::RedisReplayOptions;
/// let options = RedisReplayOptions::default()
///     .with_key_prefix("rs-eu:replay:")
///     .with_command_timeout(Duration::from_millis(250));
/// assert_eq!(options.key_prefix(), "rs-eu:replay:");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisReplayOptions {
    key_prefix: String,
    command_timeout: Duration,
    connect_timeout: Duration,
}

impl Default for RedisReplayOptions {
    /// Prefix [`DEFAULT_KEY_PREFIX`], command timeout 500 ms, connect timeout 2 s.
    fn default() -> Self {
        Self {
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            command_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

impl RedisReplayOptions {
    /// Prepended to every key (default [`DEFAULT_KEY_PREFIX`]). Replicas that must see each
    /// other's records use the same prefix; deployments sharing one Redis use different ones.
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How long one command (an insert, a ping) may take, from the call to the answer,
    /// including waiting for a reconnection; past it the call fails with
    /// [`StoreError::Unavailable`]. Default 500 ms.
    #[must_use]
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How long [`RedisReplayCache::connect`] waits for the first connection, and how long each
    /// connection attempt may take. Default 2 s.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The key prefix.
    #[must_use]
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The per-command timeout.
    #[must_use]
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// The connect timeout.
    #[must_use]
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
}

/// A [`ReplayCache`] in Redis, shared by every replica that points at the same Redis with the
/// same key prefix.
///
/// [`ReplayCache::insert_once`] is one round trip, `SET <prefix><key> 1 NX PX <ttl>`, where the
/// key is the 32-byte replay key in base64url without padding (43 characters) and `ttl` is
/// `expires_at - now` in milliseconds, at least 1. Redis answers `OK` when it stored the record
/// (first use: `Ok(true)`) and nil when the key already exists (a replay: `Ok(false)`); `SET NX`
/// is atomic, so of two replicas inserting the same key at once exactly one gets `Ok(true)`.
/// A replay neither extends nor shortens the existing record. Redis deletes a record when its
/// TTL runs out.
///
/// **Fail closed.** A connection error, a command that takes longer than the command timeout
/// (default 500 ms) and any reply other than `OK` or nil are [`StoreError::Unavailable`], never
/// a verdict. Behind the cache is a multiplexed [`ConnectionManager`]: one connection shared by
/// every task, re-established after a connection error, so the cache works again as soon as
/// Redis is back without being rebuilt. While Redis refuses connections, each call fails at once
/// (the next call starts one new connection attempt); while it is unreachable without refusing
/// (a dropped route, a stopped process), each call fails after the command timeout.
///
/// **Records are only as durable as Redis.** A Redis restarted without persistence, a failover
/// to a replica that had not received the latest writes, or an eviction policy other than
/// `noeviction` forgets live records, and proofs recorded just before can then be replayed
/// until their `iat` window closes. Run Redis with `maxmemory-policy noeviction` (the default),
/// so that a full Redis refuses writes (which this cache reports as unavailable) instead of
/// evicting records.
///
/// **Transport.** Plain TCP (`redis://`) or a Unix socket (`redis+unix://`): this build has no
/// TLS, so a `rediss://` URL is refused at construction. Keep Redis on a private network or
/// loopback. A password in the URL is sent with `AUTH` and never shown by `Debug`.
pub struct RedisReplayCache {
    manager: ConnectionManager,
    key_prefix: Box<str>,
    command_timeout: Duration,
    /// What `Debug` shows of the target: address and database, never the password.
    target: String,
}

impl RedisReplayCache {
    /// Connects to the Redis at `url` (`redis://[user:password@]host[:port][/db]`) and waits for
    /// the first connection, at most the connect timeout.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the URL is invalid or uses TLS, or when Redis cannot be
    /// reached within the connect timeout. A caller that must start while Redis is briefly
    /// down uses [`RedisReplayCache::connect_lazy`] instead and reports readiness with
    /// [`RedisReplayCache::ping`].
    pub async fn connect(url: &str, options: RedisReplayOptions) -> Result<Self, StoreError> {
        let connect_timeout = options.connect_timeout;
        let cache = Self::connect_lazy(url, options)?;
        cache.ping_within(connect_timeout).await?;
        Ok(cache)
    }

    /// Like [`RedisReplayCache::connect`] but without touching the network: only the URL is
    /// checked. The first command connects; until Redis answers, every call fails with
    /// [`StoreError::Unavailable`], and the cache works as soon as Redis does.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the URL is invalid or uses TLS. Must be called inside a
    /// tokio runtime.
    ///
    /// Only failures to reach Redis (I/O errors, timeouts) start a new connection attempt: if
    /// Redis refuses the handshake itself (a wrong password), every call keeps failing with
    /// [`StoreError::Unavailable`] until the cache is rebuilt with the right URL.
    pub fn connect_lazy(url: &str, options: RedisReplayOptions) -> Result<Self, StoreError> {
        let info = url
            .into_connection_info()
            .map_err(|error| invalid_url(&error))?;
        let target = describe_target(&info)?;
        let client = Client::open(info).map_err(|error| invalid_url(&error))?;
        // One connection attempt per reconnection, no back-off loop: while Redis is down, a call
        // fails as soon as the attempt does (connection refused: at once) instead of waiting out
        // the command timeout behind a retry schedule, and the next call starts a new attempt
        // (one at a time, shared by all concurrent calls).
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.command_timeout))
            .set_number_of_retries(0);
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|error| StoreError::Unavailable(format!("redis: {error}")))?;
        Ok(Self {
            manager,
            key_prefix: options.key_prefix.into_boxed_str(),
            command_timeout: options.command_timeout,
            target,
        })
    }

    /// Whether Redis answers `PING` within the command timeout (for readiness checks).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.ping_within(self.command_timeout).await
    }

    /// The Redis key under which `key` is recorded: the prefix, then `key` in base64url
    /// without padding.
    #[must_use]
    pub fn redis_key(&self, key: &[u8; 32]) -> Vec<u8> {
        let mut out = String::with_capacity(self.key_prefix.len() + ENCODED_KEY_LEN);
        out.push_str(&self.key_prefix);
        URL_SAFE_NO_PAD.encode_string(key, &mut out);
        out.into_bytes()
    }

    async fn ping_within(&self, timeout: Duration) -> Result<(), StoreError> {
        match self.query(&::redis::cmd("PING"), timeout).await? {
            Value::SimpleString(pong) if pong == "PONG" => Ok(()),
            other => Err(unexpected("PING", &other)),
        }
    }

    /// Sends one command and waits for its answer at most `timeout`.
    async fn query(&self, cmd: &::redis::Cmd, timeout: Duration) -> Result<Value, StoreError> {
        let mut connection = self.manager.clone();
        match tokio::time::timeout(timeout, cmd.query_async::<Value>(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StoreError::Unavailable(format!("redis: {error}"))),
            Err(_elapsed) => Err(StoreError::Unavailable(format!(
                "redis did not answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }
}

fn invalid_url(error: &::redis::RedisError) -> StoreError {
    // The error names what is wrong, never the URL itself (which may hold a password).
    StoreError::Unavailable(format!("invalid redis URL: {error}"))
}

fn unexpected(command: &str, value: &Value) -> StoreError {
    StoreError::Unavailable(format!(
        "unexpected reply from redis to {command}: {value:?}"
    ))
}

/// `host:port/db` (or the socket path) and the user name, for `Debug`; refuses TLS addresses.
fn describe_target(info: &::redis::ConnectionInfo) -> Result<String, StoreError> {
    let address = match info.addr() {
        ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}"),
        ConnectionAddr::Unix(path) => format!("redis+unix://{}", path.display()),
        ConnectionAddr::TcpTls { .. } => {
            return Err(StoreError::Unavailable(
                "invalid redis URL: rediss:// (TLS) is not supported by this build".to_owned(),
            ));
        }
        _ => {
            return Err(StoreError::Unavailable(
                "invalid redis URL: unsupported kind of address".to_owned(),
            ));
        }
    };
    let settings = info.redis_settings();
    let user = settings.username().unwrap_or("");
    let password = if settings.password().is_some() {
        " (password set)"
    } else {
        ""
    };
    let user = if user.is_empty() {
        String::new()
    } else {
        format!(" user {user}")
    };
    Ok(format!("{address}/{}{user}{password}", settings.db()))
}

impl fmt::Debug for RedisReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayCache")
            .field("target", &self.target)
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl ReplayCache for RedisReplayCache {
    async fn insert_once(
        &self,
        key: [u8; 32],
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        // A record already past its lifetime still gets 1 ms: it is first-seen (or a replay of a
        // live record) like any other, in the same single round trip.
        let ttl_ms = expires_at
            .as_secs()
            .saturating_sub(now.as_secs())
            .saturating_mul(1_000)
            .max(1);
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.redis_key(&key))
            .arg(b"1")
            .arg(b"NX")
            .arg(b"PX")
            .arg(ttl_ms);
        match self.query(&cmd, self.command_timeout).await? {
            Value::Okay => Ok(true),
            Value::Nil => Ok(false),
            other => Err(unexpected("SET NX", &other)),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Self::ping(self).await
    }
}
