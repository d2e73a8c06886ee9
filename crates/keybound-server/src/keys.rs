//! The AS's signing keys: generated on first start into `<data_dir>/keys/` (files 0600, folder
//! 0700), loaded on later starts, rotated with [`rotate`]. The JWKS publishes the current key,
//! the next one (so resource servers already know it when it becomes current) and the previous
//! one (so tokens it signed stay verifiable until they expire).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use keybound_core::{AccessTokenSigner, Algorithm, KeySet, SigningKey};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// Why the key files could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading or writing the key directory failed.
    #[error("key directory {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file exists but is not a key of the algorithm in its name.
    #[error("key file {0} is not a valid key")]
    Invalid(PathBuf),
    /// A key file is readable by others than its owner.
    #[error("key file {0} must have permissions 0600 (chmod 600)")]
    Permissions(PathBuf),
}

const SLOTS: [&str; 3] = ["current", "next", "previous"];

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The loaded key ring.
#[derive(Debug)]
pub struct KeyRing {
    signer: AccessTokenSigner,
    jwks: Value,
    keys: KeySet,
}

impl KeyRing {
    /// Signs access tokens with the current key.
    #[must_use]
    pub fn signer(&self) -> &AccessTokenSigner {
        &self.signer
    }

    /// The JWKS document (current, next, previous).
    #[must_use]
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// The published keys, for verifying this AS's own tokens (introspection, revocation).
    #[must_use]
    pub fn key_set(&self) -> &KeySet {
        &self.keys
    }

    /// A ring of fresh keys held only in memory (tests and throwaway servers).
    ///
    /// # Errors
    /// [`KeyFileError::Invalid`] if key generation fails.
    pub fn ephemeral(alg: Algorithm) -> Result<Self, KeyFileError> {
        let rng = SystemRandom::new();
        let mut signers = Vec::new();
        for _ in SLOTS {
            let (key, _) = SigningKey::generate(alg, &rng)
                .map_err(|_| KeyFileError::Invalid(PathBuf::new()))?;
            signers.push(named(key));
        }
        Ok(assemble(signers))
    }
}

fn named(key: SigningKey) -> AccessTokenSigner {
    let kid = key.public_jwk().thumbprint().as_str().to_owned();
    AccessTokenSigner::new(key, kid)
}

fn assemble(mut signers: Vec<AccessTokenSigner>) -> KeyRing {
    let entries: Vec<Value> = signers.iter().map(AccessTokenSigner::jwks_entry).collect();
    let jwks = json!({ "keys": entries });
    let keys = KeySet::from_jwks_json(jwks.to_string().as_bytes()).unwrap_or_default();
    let signer = signers.remove(0);
    KeyRing { signer, jwks, keys }
}

fn slot_file(dir: &Path, slot: &str) -> Result<Option<(PathBuf, Algorithm)>, KeyFileError> {
    for alg in Algorithm::ALL {
        let path = dir.join(format!("{slot}-{}.p8", alg.name()));
        if path.exists() {
            return Ok(Some((path, alg)));
        }
    }
    Ok(None)
}

fn write_new_key(dir: &Path, slot: &str, alg: Algorithm) -> Result<(), KeyFileError> {
    let (_, pkcs8) = SigningKey::generate(alg, &SystemRandom::new())
        .map_err(|_| KeyFileError::Invalid(dir.to_owned()))?;
    write_private(&dir.join(format!("{slot}-{}.p8", alg.name())), &pkcs8)
}

fn write_private(path: &Path, bytes: &Zeroizing<Vec<u8>>) -> Result<(), KeyFileError> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn read_private(path: &Path, alg: Algorithm) -> Result<SigningKey, KeyFileError> {
    let meta = fs::metadata(path).map_err(io(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KeyFileError::Permissions(path.to_owned()));
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(io(path))?);
    SigningKey::from_pkcs8(alg, &bytes).map_err(|_| KeyFileError::Invalid(path.to_owned()))
}

fn key_dir(data_dir: &Path) -> Result<PathBuf, KeyFileError> {
    let dir = data_dir.join("keys");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io(&dir))?;
    Ok(dir)
}

/// Loads the key ring from `<data_dir>/keys`, generating any missing slot with `alg`.
///
/// # Errors
/// [`KeyFileError`] for unreadable, invalid or world-readable key files.
pub fn load_or_create(data_dir: &Path, alg: Algorithm) -> Result<KeyRing, KeyFileError> {
    let dir = key_dir(data_dir)?;
    let mut signers = Vec::new();
    for slot in SLOTS {
        let (path, slot_alg) = match slot_file(&dir, slot)? {
            Some(found) => found,
            None => {
                write_new_key(&dir, slot, alg)?;
                slot_file(&dir, slot)?.ok_or_else(|| KeyFileError::Invalid(dir.join(slot)))?
            }
        };
        signers.push(named(read_private(&path, slot_alg)?));
    }
    Ok(assemble(signers))
}

/// Rotates: previous is dropped, current becomes previous, next becomes current, and a new next
/// key (of `alg`) is generated. Running servers pick the change up at their next start.
///
/// # Errors
/// [`KeyFileError`] if the files cannot be read or renamed.
pub fn rotate(data_dir: &Path, alg: Algorithm) -> Result<KeyRing, KeyFileError> {
    load_or_create(data_dir, alg)?;
    let dir = key_dir(data_dir)?;
    let found = |slot| slot_file(&dir, slot)?.ok_or_else(|| KeyFileError::Invalid(dir.join(slot)));
    let (previous, _) = found("previous")?;
    let (current, current_alg) = found("current")?;
    let (next, next_alg) = found("next")?;
    fs::remove_file(&previous).map_err(io(&previous))?;
    let to = dir.join(format!("previous-{}.p8", current_alg.name()));
    fs::rename(&current, &to).map_err(io(&current))?;
    let to = dir.join(format!("current-{}.p8", next_alg.name()));
    fs::rename(&next, &to).map_err(io(&next))?;
    write_new_key(&dir, "next", alg)?;
    load_or_create(data_dir, alg)
}
