//! The people who sign in at `/authorize`: a [`UserStore`] trait, and [`ConfigUsers`], the
//! users written in `keybound.toml` with Argon2id password hashes, so the default install needs
//! no identity provider.

use std::collections::HashMap;
use std::fmt;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};

/// Checks a username and password. A database or an upstream identity provider can implement
/// it; [`ConfigUsers`] is the built-in one.
pub trait UserStore: Send + Sync + fmt::Debug {
    /// The subject (`sub`) of the user if the password is right.
    fn authenticate(&self, username: &str, password: &str) -> Option<String>;
}

/// Users from `[[users]]`: username and Argon2id PHC hash.
pub struct ConfigUsers {
    by_name: HashMap<String, String>,
    /// Verified against for unknown names, so both answers take the same time.
    decoy: std::sync::OnceLock<String>,
}

impl fmt::Debug for ConfigUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigUsers")
            .field("users", &self.by_name.len())
            .finish_non_exhaustive()
    }
}

impl ConfigUsers {
    /// Users by name with their PHC hashes (already validated by the configuration).
    #[must_use]
    pub fn new(users: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            by_name: users.into_iter().collect(),
            decoy: std::sync::OnceLock::new(),
        }
    }
}

impl UserStore for ConfigUsers {
    fn authenticate(&self, username: &str, password: &str) -> Option<String> {
        let known = self.by_name.get(username);
        let hash = known.unwrap_or_else(|| {
            self.decoy
                .get_or_init(|| hash_password("keybound decoy password").unwrap_or_default())
        });
        let ok = PasswordHash::new(hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        (ok && known.is_some()).then(|| username.to_owned())
    }
}

/// An Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) for `password`, with a random
/// salt: what `[[users]] password_argon2` holds (`keybound hash-password` prints it).
///
/// # Errors
/// A description if hashing fails (no randomness).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| "no randomness for a salt".to_owned())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `text` is a PHC string Argon2 can verify against.
#[must_use]
pub(crate) fn is_password_hash(text: &str) -> bool {
    PasswordHash::new(text).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_hashed_password_verifies_and_nothing_else_does() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$") && is_password_hash(&hash));
        let users = ConfigUsers::new([("alice".to_owned(), hash)]);
        assert_eq!(
            users.authenticate("alice", "correct horse").as_deref(),
            Some("alice")
        );
        assert_eq!(users.authenticate("alice", "wrong"), None);
        assert_eq!(users.authenticate("bob", "correct horse"), None);
        assert_eq!(users.authenticate("bob", "keybound decoy password"), None);
        assert!(!is_password_hash("plaintext"));
    }
}
