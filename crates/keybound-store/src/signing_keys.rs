//! The AS's signing keys, kept where every replica reads them so that all publish one JWKS and
//! sign with one current key. The store holds each private key sealed by the caller (the server
//! encrypts it before it gets here) and never sees it in the clear.

use keybound_core::UnixTime;

use crate::StoreError;

/// One stored signing key: its public identity in the clear, its private key sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    /// The `kid` it is published under (its RFC 7638 thumbprint).
    pub kid: String,
    /// The JWS algorithm name (`ES256`, `EdDSA`, ...).
    pub alg: String,
    /// The private key, encrypted by the caller. Opaque to the store.
    pub sealed: Vec<u8>,
    /// When it was generated.
    pub created_at: UnixTime,
}

impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// The stored ring: the key that signs, the one that will sign next (already published, so
/// resource servers know it before it is used) and the one that signed before (still published,
/// so its tokens verify until they expire).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKeyRing {
    /// Counts rotations: 1 for a new ring, one more after each rotation. Replicas compare it to
    /// know whether to reload.
    pub generation: u64,
    /// Signs new access tokens.
    pub current: StoredSigningKey,
    /// Becomes current at the next rotation.
    pub next: StoredSigningKey,
    /// Was current before the last rotation.
    pub previous: StoredSigningKey,
}

/// The outcome of [`SigningKeyStore::rotate_key_ring`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRingRotation {
    /// This call rotated; the ring as it now is.
    Rotated(StoredKeyRing),
    /// The ring was no longer at the expected generation (another replica rotated first);
    /// nothing changed here. The ring as it is.
    Stale(StoredKeyRing),
}

/// Signing keys shared by replicas. Of concurrent initialisations one wins and all read the
/// winner's keys; of concurrent rotations from the same generation exactly one rotates.
#[async_trait::async_trait]
pub trait SigningKeyStore: Send + Sync + std::fmt::Debug {
    /// The stored ring, or `None` if none was stored yet.
    async fn key_ring(&self) -> Result<Option<StoredKeyRing>, StoreError>;

    /// Stores a first ring (generation 1) made of `current`, `next` and `previous`, unless one
    /// exists. Returns the ring stored afterwards: these keys, or those of whoever came first.
    async fn initialize_key_ring(
        &self,
        current: StoredSigningKey,
        next: StoredSigningKey,
        previous: StoredSigningKey,
    ) -> Result<StoredKeyRing, StoreError>;

    /// If the ring is at generation `expected`: drops previous, makes current previous and next
    /// current, stores `new_next` as next, and counts one more generation, atomically.
    async fn rotate_key_ring(
        &self,
        expected: u64,
        new_next: StoredSigningKey,
        now: UnixTime,
    ) -> Result<KeyRingRotation, StoreError>;
}
