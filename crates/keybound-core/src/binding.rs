//! Sender-constraint checks at the resource server: does the presented proof key or client
//! certificate match the token's `cnf` (RFC 9449 §4.3 rule 12b, §7.2; RFC 8705 §3)?

use crate::cert::CertThumbprint;
use crate::challenge::Scheme;
use crate::jwk::JwkThumbprint;

/// What an access token is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Binding {
    /// No `cnf`: a plain bearer token.
    Unbound,
    /// `cnf.jkt`: bound to a DPoP key.
    Dpop(JwkThumbprint),
    /// `cnf["x5t#S256"]`: bound to a TLS client certificate.
    Certificate(CertThumbprint),
}

/// Why the presented credentials do not satisfy the token's binding. All are `invalid_token`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// Rule 12b / §5 #25: the proof key's thumbprint is not the token's `cnf.jkt`.
    #[error("the DPoP key does not match the token's binding")]
    KeyMismatch,
    /// §5 #27: a DPoP-bound token was presented with the `Bearer` scheme.
    #[error("a DPoP-bound token was presented as a bearer token")]
    DpopTokenAsBearer,
    /// §5 #30: the `DPoP` scheme was used with a token that is not DPoP-bound.
    #[error("the token is not DPoP-bound")]
    NotDpopBound,
    /// §5 #41: a certificate-bound token arrived without a client certificate.
    #[error("the token is certificate-bound and no client certificate was presented")]
    CertificateMissing,
    /// §5 #41: the connection's certificate is not the one the token is bound to.
    #[error("the client certificate does not match the token's binding")]
    CertificateMismatch,
    /// An unbound token where this resource accepts only sender-constrained tokens.
    #[error("bearer tokens are not accepted here")]
    UnboundNotAccepted,
}

impl BindingError {
    /// A stable snake_case name for the failure, for metrics labels, logs and diagnostics.
    ///
    /// ```
    /// use keybound_core::binding::BindingError;
    /// assert_eq!(BindingError::DpopTokenAsBearer.reason(), "dpop_token_as_bearer");
    /// ```
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::KeyMismatch => "key_mismatch",
            Self::DpopTokenAsBearer => "dpop_token_as_bearer",
            Self::NotDpopBound => "not_dpop_bound",
            Self::CertificateMissing => "certificate_missing",
            Self::CertificateMismatch => "certificate_mismatch",
            Self::UnboundNotAccepted => "unbound_not_accepted",
        }
    }
}

/// What the client presented alongside the token.
#[derive(Clone, Copy, Debug)]
pub struct Presented<'a> {
    /// The `Authorization` scheme used.
    pub scheme: Scheme,
    /// The thumbprint of a proof that already passed the verifier, if the scheme is `DPoP`.
    pub proof_key: Option<&'a JwkThumbprint>,
    /// The thumbprint of the connection's (or trusted proxy's) client certificate, if any.
    pub certificate: Option<&'a CertThumbprint>,
    /// Whether this resource accepts unbound bearer tokens at all.
    pub accept_unbound: bool,
}

impl Binding {
    /// Checks the binding against what was presented.
    ///
    /// ```
    /// use keybound_core::binding::{Binding, BindingError, Presented};
    /// use keybound_core::challenge::Scheme;
    /// use keybound_core::JwkThumbprint;
    /// let jkt = JwkThumbprint::parse("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I").unwrap();
    /// let bearer = Presented { scheme: Scheme::Bearer, proof_key: None, certificate: None, accept_unbound: true };
    /// assert_eq!(Binding::Dpop(jkt).check(&bearer), Err(BindingError::DpopTokenAsBearer));
    /// ```
    ///
    /// # Errors
    /// The [`BindingError`] describing the mismatch.
    pub fn check(&self, presented: &Presented<'_>) -> Result<(), BindingError> {
        match (self, presented.scheme) {
            (Self::Dpop(jkt), Scheme::DPoP) => match presented.proof_key {
                Some(key) if key == jkt => Ok(()),
                _ => Err(BindingError::KeyMismatch),
            },
            (Self::Dpop(_), Scheme::Bearer) => Err(BindingError::DpopTokenAsBearer),
            (Self::Unbound | Self::Certificate(_), Scheme::DPoP) => Err(BindingError::NotDpopBound),
            (Self::Certificate(x5t), Scheme::Bearer) => match presented.certificate {
                None => Err(BindingError::CertificateMissing),
                Some(cert) if cert == x5t => Ok(()),
                Some(_) => Err(BindingError::CertificateMismatch),
            },
            (Self::Unbound, Scheme::Bearer) if presented.accept_unbound => Ok(()),
            (Self::Unbound, Scheme::Bearer) => Err(BindingError::UnboundNotAccepted),
        }
    }
}
