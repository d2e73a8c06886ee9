//! One typed error per failed proof check. The wire code for each lives in `crate::error`.

use crate::jwk::JwkError;
use crate::jws::JwsError;

/// Why a DPoP proof was rejected. Each variant names the rule of standards §1.2 it enforces.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// No `DPoP` header where one was needed.
    #[error("no DPoP proof")]
    Missing,
    /// Rule 1: more than one `DPoP` header field line.
    #[error("more than one DPoP header")]
    MultipleProofs,
    /// Rule 1: the header value is not one token68 (e.g. comma-joined proofs).
    #[error("the DPoP header is not a single token68")]
    HeaderSyntax,
    /// §5 #13: the proof is longer than the limit.
    #[error("the proof is too large")]
    TooLarge,
    /// Rule 2: not a well-formed compact JWS with JSON object header and payload.
    #[error("the proof is not a well-formed JWS: {0}")]
    Malformed(JwsError),
    /// Rule 3: a required header member or claim is absent.
    #[error("the proof lacks `{0}`")]
    MissingMember(&'static str),
    /// Rule 3: a header member or claim has the wrong JSON type.
    #[error("the proof's `{0}` has the wrong type")]
    WrongType(&'static str),
    /// Rule 4: `typ` is not `dpop+jwt`.
    #[error("the proof's typ is not dpop+jwt")]
    InvalidTyp,
    /// Rule 5: `alg` is `none`, symmetric, unknown, or not in the allow-list.
    #[error("the proof's algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// Rule 5: `alg` does not fit the `jwk` (kty/crv).
    #[error("the proof's algorithm does not match its key")]
    AlgorithmKeyMismatch,
    /// §5 #7: a `crit` header parameter is present.
    #[error("the proof has a crit header")]
    CriticalHeader,
    /// Rule 6: the signature does not verify with the key in `jwk`.
    #[error("the proof's signature is invalid")]
    InvalidSignature,
    /// Rule 7: `jwk` contains a private or symmetric key member.
    #[error("the proof's jwk contains private key material")]
    PrivateKey,
    /// The `jwk` is not a usable public key (unknown kty/crv, weak, non-canonical).
    #[error("the proof's jwk is invalid: {0}")]
    InvalidJwk(JwkError),
    /// Rule 8: `htm` differs from the request method.
    #[error("htm does not match the request method")]
    HtmMismatch,
    /// Rule 9: `htu` is not an absolute http(s) URI.
    #[error("htu is not a valid URI")]
    InvalidHtu,
    /// Rule 9: `htu` differs from the request URI after normalisation.
    #[error("htu does not match the request URI")]
    HtuMismatch,
    /// Rule 10: the server requires a nonce and the proof has none.
    #[error("a DPoP nonce is required")]
    NonceRequired,
    /// Rule 10: the nonce is not one this server currently accepts.
    #[error("the DPoP nonce is invalid or expired")]
    NonceRejected,
    /// §5 #24: the `nonce` claim is not a string of NQCHAR.
    #[error("the nonce claim is malformed")]
    NonceMalformed,
    /// Rule 11: `iat` is older than the allowed age.
    #[error("the proof is too old")]
    IatTooOld,
    /// Rule 11: `iat` is further in the future than the allowed leeway.
    #[error("the proof is issued in the future")]
    IatInFuture,
    /// Rule 11: `jti` is empty or longer than 256 bytes.
    #[error("the proof's jti is empty or too long")]
    InvalidJti,
    /// Rule 11: the `jti` was already used (reported by the caller's replay cache).
    #[error("the proof was already used")]
    Replayed,
    /// Rule 12a: `ath` is missing although an access token accompanies the proof.
    #[error("the proof lacks ath")]
    MissingAth,
    /// Rule 12a: `ath` is not the hash of the presented access token.
    #[error("ath does not match the access token")]
    AthMismatch,
}

impl ProofError {
    /// A stable snake_case name for the failed check, for metrics labels and logs.
    ///
    /// ```
    /// use keybound_core::dpop::ProofError;
    /// assert_eq!(ProofError::HtuMismatch.reason(), "htu_mismatch");
    /// ```
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::MultipleProofs => "multiple_proofs",
            Self::HeaderSyntax => "header_syntax",
            Self::TooLarge => "too_large",
            Self::Malformed(_) => "malformed",
            Self::MissingMember(_) => "missing_member",
            Self::WrongType(_) => "wrong_type",
            Self::InvalidTyp => "invalid_typ",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::AlgorithmKeyMismatch => "algorithm_key_mismatch",
            Self::CriticalHeader => "critical_header",
            Self::InvalidSignature => "invalid_signature",
            Self::PrivateKey => "private_key",
            Self::InvalidJwk(_) => "invalid_jwk",
            Self::HtmMismatch => "htm_mismatch",
            Self::InvalidHtu => "invalid_htu",
            Self::HtuMismatch => "htu_mismatch",
            Self::NonceRequired => "nonce_required",
            Self::NonceRejected => "nonce_rejected",
            Self::NonceMalformed => "nonce_malformed",
            Self::IatTooOld => "iat_too_old",
            Self::IatInFuture => "iat_in_future",
            Self::InvalidJti => "invalid_jti",
            Self::Replayed => "replayed",
            Self::MissingAth => "missing_ath",
            Self::AthMismatch => "ath_mismatch",
        }
    }
}
