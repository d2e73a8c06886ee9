//! The OAuth wire error codes, and the one place every core error is mapped to its code.

use std::fmt;

use crate::access_token::AccessTokenError;
use crate::binding::BindingError;
use crate::dpop::ProofError;

/// An OAuth error code as it appears on the wire (RFC 6749 §5.2, RFC 6750 §3.1, RFC 9449 §12.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request`
    InvalidRequest,
    /// `invalid_client`
    InvalidClient,
    /// `invalid_grant`
    InvalidGrant,
    /// `unauthorized_client`
    UnauthorizedClient,
    /// `unsupported_grant_type`
    UnsupportedGrantType,
    /// `invalid_scope`
    InvalidScope,
    /// `invalid_token`
    InvalidToken,
    /// `insufficient_scope`
    InsufficientScope,
    /// `invalid_dpop_proof`
    InvalidDpopProof,
    /// `use_dpop_nonce`
    UseDpopNonce,
    /// `server_error`
    ServerError,
    /// `temporarily_unavailable`
    TemporarilyUnavailable,
    /// `access_denied` (RFC 6749 §4.1.2.1: the user or the server refused).
    AccessDenied,
    /// `unsupported_response_type` (RFC 6749 §4.1.2.1).
    UnsupportedResponseType,
    /// Any other code a peer sent (kept for clients; never produced by keybound).
    Extension(String),
}

impl ErrorCode {
    /// The code as sent on the wire.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::Extension(code) => code,
        }
    }

    /// Reads a received code; unknown codes become [`ErrorCode::Extension`].
    ///
    /// ```
    /// use keybound_core::ErrorCode;
    /// assert_eq!(ErrorCode::parse("use_dpop_nonce"), ErrorCode::UseDpopNonce);
    /// assert_eq!(ErrorCode::parse("slow_down").as_str(), "slow_down");
    /// ```
    #[must_use]
    pub fn parse(code: &str) -> Self {
        [
            Self::InvalidRequest,
            Self::InvalidClient,
            Self::InvalidGrant,
            Self::UnauthorizedClient,
            Self::UnsupportedGrantType,
            Self::InvalidScope,
            Self::InvalidToken,
            Self::InsufficientScope,
            Self::InvalidDpopProof,
            Self::UseDpopNonce,
            Self::ServerError,
            Self::TemporarilyUnavailable,
            Self::AccessDenied,
            Self::UnsupportedResponseType,
        ]
        .into_iter()
        .find(|c| c.as_str() == code)
        .unwrap_or_else(|| Self::Extension(code.to_owned()))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&ProofError> for ErrorCode {
    /// Standards §1.2 and §1.3: nonce problems ask for a nonce, a missing proof where the
    /// `DPoP` scheme was used is a malformed request, everything else is an invalid proof.
    fn from(e: &ProofError) -> Self {
        match e {
            ProofError::NonceRequired | ProofError::NonceRejected => Self::UseDpopNonce,
            ProofError::Missing => Self::InvalidRequest,
            _ => Self::InvalidDpopProof,
        }
    }
}

impl From<&AccessTokenError> for ErrorCode {
    /// RFC 9068 §4 and RFC 6750 §3.1: every access-token failure is `invalid_token`.
    fn from(_: &AccessTokenError) -> Self {
        Self::InvalidToken
    }
}

impl From<&BindingError> for ErrorCode {
    /// RFC 9449 §7.1 and RFC 8705 §3: a binding that does not hold is `invalid_token`.
    fn from(_: &BindingError) -> Self {
        Self::InvalidToken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_errors_ask_for_a_nonce() {
        assert_eq!(
            ErrorCode::from(&ProofError::NonceRequired),
            ErrorCode::UseDpopNonce
        );
        assert_eq!(
            ErrorCode::from(&ProofError::NonceRejected),
            ErrorCode::UseDpopNonce
        );
        assert_eq!(
            ErrorCode::from(&ProofError::NonceMalformed),
            ErrorCode::InvalidDpopProof
        );
        assert_eq!(
            ErrorCode::from(&ProofError::Replayed),
            ErrorCode::InvalidDpopProof
        );
        assert_eq!(
            ErrorCode::from(&ProofError::Missing),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            ErrorCode::from(&BindingError::KeyMismatch),
            ErrorCode::InvalidToken
        );
    }
}
