//! DPoP key files: PKCS#8, written as PEM with permissions 0600, read as PEM or DER.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use base64::Engine as _;
use keybound_core::{Algorithm, SigningKey};
use zeroize::Zeroizing;

use crate::ClientError;

/// Generates a key for `alg` and writes it to `path` as a PKCS#8 PEM file readable only by its
/// owner. An existing file is never overwritten.
///
/// # Errors
/// [`ClientError::Key`] if the file exists or cannot be written.
pub fn generate_key_file(path: &Path, alg: Algorithm) -> Result<SigningKey, ClientError> {
    let (key, pkcs8) = SigningKey::generate(alg, &SystemRandom::new())
        .map_err(|e| ClientError::Key(e.to_string()))?;
    let body = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_slice());
    let mut pem = Zeroizing::new(String::from("-----BEGIN PRIVATE KEY-----\n"));
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ClientError::Key(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(pem.as_bytes())
        .map_err(|e| ClientError::Key(format!("cannot write {}: {e}", path.display())))?;
    Ok(key)
}

/// Reads a PKCS#8 key file (PEM `BEGIN PRIVATE KEY`, or DER). The algorithm is `alg` if given,
/// else the first of ES256, EdDSA, ES384, PS256 the key fits.
///
/// # Errors
/// [`ClientError::Key`] if the file cannot be read or holds no usable key.
pub fn load_key_file(path: &Path, alg: Option<Algorithm>) -> Result<SigningKey, ClientError> {
    let raw = Zeroizing::new(
        std::fs::read(path)
            .map_err(|e| ClientError::Key(format!("cannot read {}: {e}", path.display())))?,
    );
    let der = if raw.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(&raw)
            .map_err(|_| ClientError::Key(format!("{} is not PEM", path.display())))?;
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(body.trim())
                .map_err(|_| ClientError::Key(format!("{} is not valid PEM", path.display())))?,
        )
    } else {
        raw
    };
    let candidates = match alg {
        Some(alg) => vec![alg],
        None => vec![
            Algorithm::Es256,
            Algorithm::EdDsa,
            Algorithm::Es384,
            Algorithm::Ps256,
        ],
    };
    candidates
        .into_iter()
        .find_map(|alg| SigningKey::from_pkcs8(alg, &der).ok())
        .ok_or_else(|| {
            ClientError::Key(format!(
                "{} is not a PKCS#8 key keybound can sign with",
                path.display()
            ))
        })
}
