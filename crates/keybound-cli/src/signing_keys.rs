//! Where `keybound serve` keeps its signing keys: files in the data directory on one machine;
//! with a PostgreSQL store, the database (sealed under `KEYBOUND_KEY_ENCRYPTION_KEY`), which
//! every replica reads and follows as it rotates.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keybound_core::{Algorithm, KeySet};
use keybound_resource::CurrentKeys;
use keybound_server::keys::{self, KeyEncryptionKeys, KeyRing};
use keybound_server::{AppState, system_clock};
use keybound_store::SigningKeyStore;

use crate::Failure;

/// The environment variable holding the key-encryption keys, `current[,older]`.
pub(crate) const ENCRYPTION_KEY_VAR: &str = "KEYBOUND_KEY_ENCRYPTION_KEY";
/// How often a replica checks the database for a rotation made elsewhere, unless configured.
const RELOAD_EVERY: Duration = Duration::from_secs(10);

/// Where the keys live.
pub(crate) enum KeyHome {
    /// `<data_dir>/keys/`.
    Files(PathBuf),
    /// A shared store, keys sealed under the key-encryption keys.
    Store(Arc<dyn SigningKeyStore>, Arc<KeyEncryptionKeys>),
}

impl KeyHome {
    /// The shared store's home, with the key-encryption keys read from the environment.
    pub(crate) fn shared(store: Arc<dyn SigningKeyStore>) -> Result<Self, Failure> {
        let text = std::env::var(ENCRYPTION_KEY_VAR).map_err(|_| {
            Failure(format!(
                "with a PostgreSQL store the signing keys are kept in the database, encrypted: \
                 set {ENCRYPTION_KEY_VAR} to 32 random bytes in base64url, the same on every \
                 replica (`keybound secret` prints one)"
            ))
        })?;
        let kek =
            KeyEncryptionKeys::from_base64url_list(&text).map_err(|e| Failure(e.to_string()))?;
        Ok(Self::Store(store, Arc::new(kek)))
    }

    /// Loads the ring, creating it on first use.
    pub(crate) async fn load(&self, alg: Algorithm) -> Result<KeyRing, Failure> {
        match self {
            Self::Files(dir) => keys::load_or_create(dir, alg),
            Self::Store(store, kek) => {
                keys::load_or_create_in(store.as_ref(), kek, alg, system_clock()()).await
            }
        }
        .map_err(|e| Failure(e.to_string()))
    }

    /// Rotates the ring; returns it as it now is.
    pub(crate) async fn rotate(&self, alg: Algorithm) -> Result<KeyRing, Failure> {
        match self {
            Self::Files(dir) => keys::rotate(dir, alg),
            Self::Store(store, kek) => {
                keys::rotate_in(store.as_ref(), kek, alg, system_clock()()).await
            }
        }
        .map_err(|e| Failure(e.to_string()))
    }

    /// For a shared store: a task that checks for rotations made by any replica (or `keybound
    /// keys rotate`) and switches `state` to the rotated ring. A failed check keeps the keys in
    /// use and is retried at the next tick.
    pub(crate) fn follow_rotations(&self, state: Arc<AppState>, every: Option<u64>) {
        let Self::Store(store, kek) = self else {
            return;
        };
        let (store, kek) = (store.clone(), kek.clone());
        tokio::spawn(async move {
            let every = every.map_or(RELOAD_EVERY, Duration::from_secs);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match keys::reload_from(store.as_ref(), &kek, state.key_generation()).await {
                    Ok(Some(ring)) => {
                        tracing::info!(
                            generation = ring.generation(),
                            kid = %kid(&ring),
                            "signing keys rotated; now signing with the new current key"
                        );
                        state.replace_keys(ring);
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "checking for rotated signing keys"),
                }
            }
        });
    }
}

/// The `kid` of the ring's current key.
pub(crate) fn kid(ring: &KeyRing) -> String {
    ring.signer().kid().to_owned()
}

/// The AS's keys as they are at each request, for the in-process protected API.
#[derive(Debug)]
pub(crate) struct AsKeys(pub(crate) Arc<AppState>);

impl CurrentKeys for AsKeys {
    fn current_keys(&self) -> Arc<KeySet> {
        self.0.key_set()
    }
}
