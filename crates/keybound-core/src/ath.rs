//! `ath`: the access-token hash a proof carries at a resource server (RFC 9449 §4.2, §7).

use std::fmt;

use aws_lc_rs::digest;
use subtle::ConstantTimeEq;

use crate::b64;

/// `base64url(SHA-256(ASCII(access_token)))`, unpadded. Equality is constant-time.
///
/// ```
/// use keybound_core::AccessTokenHash;
/// let ath = AccessTokenHash::of("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU");
/// assert_eq!(ath.as_str(), "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
/// ```
#[derive(Clone, Eq)]
pub struct AccessTokenHash(String);

impl AccessTokenHash {
    /// Hashes the exact token string (the token68 after the `DPoP ` scheme).
    #[must_use]
    pub fn of(access_token: &str) -> Self {
        Self(b64::encode(
            digest::digest(&digest::SHA256, access_token.as_bytes()).as_ref(),
        ))
    }

    /// The base64url text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a received `ath` claim.
    #[must_use]
    pub fn matches(&self, claim: &str) -> bool {
        self.0.as_bytes().ct_eq(claim.as_bytes()).into()
    }
}

impl PartialEq for AccessTokenHash {
    fn eq(&self, other: &Self) -> bool {
        self.matches(&other.0)
    }
}

impl fmt::Debug for AccessTokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessTokenHash({})", self.0)
    }
}
