//! The closed table of JWS algorithms keybound understands (RFC 7518, RFC 8037, RFC 9864).

use std::fmt;

/// An asymmetric JWS signature algorithm. There is deliberately no `none` and no HMAC variant:
/// a name that is not in this table can never select a verifier (standards §1.2 rule 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// ECDSA with P-256 and SHA-256, signature as fixed-width `r‖s` (64 bytes).
    Es256,
    /// ECDSA with P-384 and SHA-384, signature as fixed-width `r‖s` (96 bytes).
    Es384,
    /// EdDSA with Ed25519 (`EdDSA`, and the fully-specified `Ed25519` of RFC 9864 when parsing).
    EdDsa,
    /// RSASSA-PSS with SHA-256 and MGF1-SHA-256, RSA keys of 2048 to 8192 bits.
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA keys of 2048 to 8192 bits (not FAPI 2.0).
    Rs256,
}

/// The family of key an algorithm needs, with its curve where there is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// `kty: EC`, `crv: P-256`.
    P256,
    /// `kty: EC`, `crv: P-384`.
    P384,
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519,
    /// `kty: RSA`.
    Rsa,
}

impl Algorithm {
    /// Every algorithm in this table, in the order used for `algs` and metadata.
    pub const ALL: [Self; 5] = [
        Self::Es256,
        Self::Es384,
        Self::EdDsa,
        Self::Ps256,
        Self::Rs256,
    ];

    /// The FAPI 2.0 §5.4 set: ES256, EdDSA and PS256. keybound's default allow-list.
    pub const FAPI2: [Self; 3] = [Self::Es256, Self::EdDsa, Self::Ps256];

    /// Looks up a JOSE `alg` name. Unknown, symmetric (`HS*`) and `none` names give `None`.
    ///
    /// ```
    /// use keybound_core::Algorithm;
    /// assert_eq!(Algorithm::from_name("ES256"), Some(Algorithm::Es256));
    /// assert_eq!(Algorithm::from_name("Ed25519"), Some(Algorithm::EdDsa));
    /// assert_eq!(Algorithm::from_name("HS256"), None);
    /// assert_eq!(Algorithm::from_name("none"), None);
    /// ```
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::Es256),
            "ES384" => Some(Self::Es384),
            "EdDSA" | "Ed25519" => Some(Self::EdDsa),
            "PS256" => Some(Self::Ps256),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
    }

    /// The name written into JWS headers and metadata.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
            Self::Ps256 => "PS256",
            Self::Rs256 => "RS256",
        }
    }

    /// The kind of key this algorithm signs and verifies with.
    #[must_use]
    pub const fn key_kind(self) -> KeyKind {
        match self {
            Self::Es256 => KeyKind::P256,
            Self::Es384 => KeyKind::P384,
            Self::EdDsa => KeyKind::Ed25519,
            Self::Ps256 | Self::Rs256 => KeyKind::Rsa,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
