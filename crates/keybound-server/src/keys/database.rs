//! Signing keys in a [`SigningKeyStore`] shared by replicas, sealed under
//! [`KeyEncryptionKeys`].

use aws_lc_rs::rand::SystemRandom;
use keybound_core::{Algorithm, SigningKey, UnixTime};
use keybound_store::{KeyRingRotation, SigningKeyStore, StoredKeyRing, StoredSigningKey};

use super::{KeyEncryptionKeys, KeyError, KeyRing, assemble, named};

/// A new key of `alg`, sealed for the store.
fn generate(
    alg: Algorithm,
    kek: &KeyEncryptionKeys,
    now: UnixTime,
) -> Result<StoredSigningKey, KeyError> {
    let (key, pkcs8) =
        SigningKey::generate(alg, &SystemRandom::new()).map_err(|_| KeyError::Generation)?;
    let kid = key.public_jwk().thumbprint().as_str().to_owned();
    let sealed = kek.seal(alg, &kid, &pkcs8)?;
    Ok(StoredSigningKey {
        kid,
        alg: alg.name().to_owned(),
        sealed,
        created_at: now,
    })
}

/// Opens one stored key and checks that it is the key its `kid` names.
fn open_key(stored: &StoredSigningKey, kek: &KeyEncryptionKeys) -> Result<SigningKey, KeyError> {
    let sealed = || KeyError::Sealed {
        kid: stored.kid.clone(),
    };
    let alg = Algorithm::from_name(&stored.alg).ok_or_else(sealed)?;
    let pkcs8 = kek.open(alg, &stored.kid, &stored.sealed)?;
    let key = SigningKey::from_pkcs8(alg, &pkcs8).map_err(|_| sealed())?;
    if key.public_jwk().thumbprint().as_str() != stored.kid {
        return Err(sealed());
    }
    Ok(key)
}

fn open_ring(stored: &StoredKeyRing, kek: &KeyEncryptionKeys) -> Result<KeyRing, KeyError> {
    let mut signers = Vec::with_capacity(3);
    for key in [&stored.current, &stored.next, &stored.previous] {
        signers.push(named(open_key(key, kek)?));
    }
    Ok(assemble(signers, Some(stored.generation)))
}

/// Loads the ring from `store`, storing a new one (keys of `alg`) if there is none. Replicas
/// starting together on an empty store all end up with the same keys.
///
/// # Errors
/// [`KeyError::Store`] when the store cannot answer; [`KeyError::Sealed`] when a stored key does
/// not open with `kek`.
pub async fn load_or_create_in(
    store: &dyn SigningKeyStore,
    kek: &KeyEncryptionKeys,
    alg: Algorithm,
    now: UnixTime,
) -> Result<KeyRing, KeyError> {
    if let Some(stored) = store.key_ring().await? {
        return open_ring(&stored, kek);
    }
    let stored = store
        .initialize_key_ring(
            generate(alg, kek, now)?,
            generate(alg, kek, now)?,
            generate(alg, kek, now)?,
        )
        .await?;
    open_ring(&stored, kek)
}

/// The ring in `store` if its generation differs from `loaded` (another replica rotated);
/// `None` when nothing changed. What a replica polls to follow rotations.
///
/// # Errors
/// As [`load_or_create_in`]; a store with no ring yet is [`KeyError::Store`].
pub async fn reload_from(
    store: &dyn SigningKeyStore,
    kek: &KeyEncryptionKeys,
    loaded: Option<u64>,
) -> Result<Option<KeyRing>, KeyError> {
    let stored = store.key_ring().await?.ok_or_else(|| {
        KeyError::Store(keybound_store::StoreError::Unavailable(
            "no signing keys are stored".to_owned(),
        ))
    })?;
    if Some(stored.generation) == loaded {
        return Ok(None);
    }
    open_ring(&stored, kek).map(Some)
}

/// Rotates the ring in `store` (creating it first if needed): previous dropped, current becomes
/// previous, next becomes current, a new next key of `alg`. If another replica rotated from the
/// same generation first, this one does not rotate again. Returns the ring as it now is; every
/// replica picks it up at its next [`reload_from`].
///
/// # Errors
/// As [`load_or_create_in`].
pub async fn rotate_in(
    store: &dyn SigningKeyStore,
    kek: &KeyEncryptionKeys,
    alg: Algorithm,
    now: UnixTime,
) -> Result<KeyRing, KeyError> {
    let ring = load_or_create_in(store, kek, alg, now).await?;
    let generation = ring.generation().unwrap_or(1);
    let (KeyRingRotation::Rotated(stored) | KeyRingRotation::Stale(stored)) = store
        .rotate_key_ring(generation, generate(alg, kek, now)?, now)
        .await?
    else {
        return Err(KeyError::Generation);
    };
    open_ring(&stored, kek)
}
