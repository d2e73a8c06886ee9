//! Signing keys in `<data_dir>/keys/`: one PKCS#8 file per slot, named `<slot>-<alg>.p8`.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use keybound_core::{Algorithm, SigningKey};
use zeroize::Zeroizing;

use super::{KeyError, KeyRing, SLOTS, assemble, named};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

fn slot_file(dir: &Path, slot: &str) -> Result<Option<(PathBuf, Algorithm)>, KeyError> {
    for alg in Algorithm::ALL {
        let path = dir.join(format!("{slot}-{}.p8", alg.name()));
        if path.exists() {
            return Ok(Some((path, alg)));
        }
    }
    Ok(None)
}

/// Writes a new key for `slot` unless one appears first: processes starting together on one
/// data directory each write a private temporary file, and the first hard link to the slot's
/// name wins; the others keep the winner's key.
fn write_new_key(dir: &Path, slot: &str, alg: Algorithm) -> Result<(), KeyError> {
    let rng = SystemRandom::new();
    let (_, pkcs8) = SigningKey::generate(alg, &rng).map_err(|_| KeyError::Generation)?;
    let mut tag = [0u8; 8];
    rng.fill(&mut tag).map_err(|_| KeyError::Generation)?;
    let tmp = dir.join(format!(".{slot}-{}.tmp", u64::from_le_bytes(tag)));
    write_private(&tmp, &pkcs8)?;
    let path = dir.join(format!("{slot}-{}.p8", alg.name()));
    let linked = match fs::hard_link(&tmp, &path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io(&path)(e)),
        _ => Ok(()),
    };
    fs::remove_file(&tmp).map_err(io(&tmp))?;
    linked
}

/// Writes a new file readable by its owner only, flushed to disk.
fn write_private(path: &Path, bytes: &Zeroizing<Vec<u8>>) -> Result<(), KeyError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn read_private(path: &Path, alg: Algorithm) -> Result<SigningKey, KeyError> {
    let meta = fs::metadata(path).map_err(io(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KeyError::Permissions(path.to_owned()));
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(io(path))?);
    SigningKey::from_pkcs8(alg, &bytes).map_err(|_| KeyError::Invalid(path.to_owned()))
}

fn key_dir(data_dir: &Path) -> Result<PathBuf, KeyError> {
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
/// [`KeyError`] for unreadable, invalid or world-readable key files.
pub fn load_or_create(data_dir: &Path, alg: Algorithm) -> Result<KeyRing, KeyError> {
    let dir = key_dir(data_dir)?;
    let mut signers = Vec::new();
    for slot in SLOTS {
        let (path, slot_alg) = match slot_file(&dir, slot)? {
            Some(found) => found,
            None => {
                write_new_key(&dir, slot, alg)?;
                slot_file(&dir, slot)?.ok_or_else(|| KeyError::Invalid(dir.join(slot)))?
            }
        };
        signers.push(named(read_private(&path, slot_alg)?));
    }
    Ok(assemble(signers, None))
}

/// Rotates: previous is dropped, current becomes previous, next becomes current, and a new next
/// key (of `alg`) is generated. Running servers pick the change up at their next start.
/// Replicas sharing a database use [`rotate_in`](super::rotate_in) instead.
///
/// # Errors
/// [`KeyError`] if the files cannot be read or renamed.
pub fn rotate(data_dir: &Path, alg: Algorithm) -> Result<KeyRing, KeyError> {
    load_or_create(data_dir, alg)?;
    let dir = key_dir(data_dir)?;
    let found = |slot| slot_file(&dir, slot)?.ok_or_else(|| KeyError::Invalid(dir.join(slot)));
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
