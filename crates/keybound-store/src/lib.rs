//! # keybound-store
//!
//! The state keybound needs to make single-use things single-use, behind two traits:
//!
//! - [`ReplayCache`]: first-writer-wins records of DPoP proofs (and client-assertion `jti`s),
//!   kept until they could no longer be accepted anyway.
//! - [`GrantStore`]: grants and their refresh tokens (rotation with reuse detection in one atomic
//!   step), and the access-token revocation list. Authorization codes and PAR requests join it
//!   with the authorization-code flow.
//! - [`SigningKeyStore`]: the AS's signing keys (sealed by the caller) for replicas that must
//!   publish one JWKS, with rotation that exactly one replica performs.
//!
//! Backends: [`MemoryReplayCache`] (bounded, expiring; one process), [`SqliteStore`] (the
//! embedded default, one file in the data directory, migrations applied when opened) and, for
//! deployments with many replicas, `PostgresStore` (feature `postgres`: the same semantics
//! under row locks) with `RedisReplayCache` (feature `redis`: one `SET NX PX` per check).
//!
//! Every method returns [`StoreError`] when the backend cannot answer; callers refuse the request
//! (503) rather than accept anything unchecked. Nothing here evicts an unexpired replay record
//! to make room.
//!
//! ```
//! # tokio_test_main();
//! # fn tokio_test_main() { tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use keybound_core::UnixTime;
//! use keybound_store::{MemoryReplayCache, ReplayCache};
//! let cache = MemoryReplayCache::new(10_000);
//! let now = UnixTime::from_secs(1_700_000_000);
//! let key = [7u8; 32];
//! assert!(cache.insert_once(key, now.saturating_add(60), now).await.unwrap());
//! assert!(!cache.insert_once(key, now.saturating_add(60), now).await.unwrap(), "a replay");
//! # }) }
//! ```

mod authz;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod postgres_authz;
#[cfg(feature = "postgres")]
mod postgres_keys;
#[cfg(feature = "redis")]
mod redis;
mod signing_keys;
mod sqlite;
mod sqlite_authz;

use std::fmt;

use keybound_core::UnixTime;

pub use authz::{AuthorizationCode, AuthorizationStore, CodeState, IssuedFromCode, Redemption};
pub use memory::MemoryReplayCache;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
#[cfg(feature = "redis")]
pub use redis::{DEFAULT_KEY_PREFIX, RedisReplayCache, RedisReplayOptions};
pub use signing_keys::{KeyRingRotation, SigningKeyStore, StoredKeyRing, StoredSigningKey};
pub use sqlite::SqliteStore;

/// Why the store could not answer. Callers answer 503 and consume nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend is unreachable, timed out or failed.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The bounded in-memory cache is full of unexpired records.
    #[error("the replay cache is full")]
    Full,
}

/// Records single-use values (DPoP proofs by their `ReplayKey`, client-assertion `jti`s).
#[async_trait::async_trait]
pub trait ReplayCache: Send + Sync + fmt::Debug {
    /// Records `key` until `expires_at`, atomically. `Ok(true)`: first time seen, now recorded.
    /// `Ok(false)`: already recorded and unexpired (a replay). Expired records count as absent.
    async fn insert_once(
        &self,
        key: [u8; 32],
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError>;

    /// Whether the cache can answer now (readiness). Required of every backend, so that none
    /// reports ready by default while it cannot answer.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Identifies a grant: what one client obtained for one subject, across refresh rotations.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct GrantId(pub String);

impl fmt::Debug for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GrantId({})", self.0)
    }
}

/// A grant and the binding its refresh tokens carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The grant's id.
    pub id: GrantId,
    /// The client it was issued to.
    pub client_id: String,
    /// The resource owner (the client itself for client credentials).
    pub subject: String,
    /// Space-separated scopes granted.
    pub scope: String,
    /// When the grant was created.
    pub created_at: UnixTime,
    /// When the grant ends, whatever refreshes happen (absolute lifetime).
    pub expires_at: UnixTime,
    /// For public clients: the DPoP key (`jkt`) every refresh must prove (RFC 9449 §5).
    pub dpop_jkt: Option<String>,
    /// For public clients: the certificate (`x5t#S256`) every refresh must present (RFC 8705 §4).
    pub cert_x5t: Option<String>,
}

/// A refresh token as stored: only its SHA-256, never the token.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// SHA-256 of the refresh token string.
    pub token_hash: [u8; 32],
    /// The grant it belongs to.
    pub grant_id: GrantId,
    /// When it stops being usable.
    pub expires_at: UnixTime,
}

impl fmt::Debug for RefreshTokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenRecord")
            .field("grant_id", &self.grant_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The state of a presented refresh token, read without changing anything.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshTokenState {
    /// The grant's current refresh token, unexpired, grant active.
    Active(Grant),
    /// Already rotated away (a reuse if presented again), grant still active.
    Used(Grant),
    /// Expired, or its grant was revoked or has expired.
    Inactive,
    /// Not a refresh token this store knows.
    Unknown,
}

/// The outcome of [`GrantStore::rotate_refresh_token`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rotation {
    /// The presented token was current: it is now used, `next` is current. Carries the grant.
    Rotated(Grant),
    /// The presented token had already been used: the whole grant is now revoked.
    ReuseDetected(GrantId),
    /// Expired, revoked or unknown: nothing changed.
    Rejected,
}

/// Grants, refresh tokens and access-token revocations.
#[async_trait::async_trait]
pub trait GrantStore: Send + Sync + fmt::Debug {
    /// Stores a new grant with its first refresh token, atomically.
    async fn create_grant(
        &self,
        grant: &Grant,
        first: &RefreshTokenRecord,
    ) -> Result<(), StoreError>;

    /// Reads the state of a presented refresh token without changing anything, so the caller
    /// can check the client and the key binding before anything is consumed.
    async fn refresh_token_state(
        &self,
        token_hash: &[u8; 32],
        now: UnixTime,
    ) -> Result<RefreshTokenState, StoreError>;

    /// Atomically: if `presented` is the current refresh token of an active grant, marks it used
    /// and makes `next` current ([`Rotation::Rotated`]); if it was already used, revokes the grant
    /// ([`Rotation::ReuseDetected`]); otherwise changes nothing ([`Rotation::Rejected`]).
    /// Of two concurrent rotations of one token, exactly one succeeds.
    async fn rotate_refresh_token(
        &self,
        presented: &[u8; 32],
        next: &RefreshTokenRecord,
        now: UnixTime,
    ) -> Result<Rotation, StoreError>;

    /// Revokes a grant and all its refresh tokens. Revoking twice is not an error.
    async fn revoke_grant(&self, id: &GrantId) -> Result<(), StoreError>;

    /// Adds an access token (by `jti`) to the revocation list until its expiry.
    async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> Result<(), StoreError>;

    /// Whether an access token's `jti` is on the revocation list.
    async fn is_access_token_revoked(&self, jti: &str, now: UnixTime) -> Result<bool, StoreError>;

    /// Deletes expired refresh tokens, grants and revocations; returns how many rows went.
    async fn purge_expired(&self, now: UnixTime) -> Result<u64, StoreError>;

    /// Whether the backend answers (for readiness checks).
    async fn ping(&self) -> Result<(), StoreError>;
}
