//! mTLS for keybound (RFC 8705): the parts that touch TLS.
//!
//! - [`TlsListener`]: a rustls listener for `axum::serve` that requests (never requires) a
//!   client certificate and hands each connection's certificate to the application as
//!   [`Peer`] connection info.
//! - [`ClientCertLayer`]: puts the request's [`ClientCertificate`] into its extensions, from the
//!   connection or, only for configured trusted proxies, from an RFC 9440 `Client-Cert` header
//!   or nginx's escaped PEM header; strips those headers from every request.
//! - [`identity`]: what the AS needs for `tls_client_auth` (chain validation against
//!   [`TrustAnchors`], subject DN and SAN matching) and `self_signed_tls_client_auth`
//!   ([`RegisteredCertificates`]).
//! - [`serve`]: serves a router on a TCP or TLS listener with a header read deadline
//!   (slow-loris clients are cut off) and a cap on open connections ([`ServeLimits`]).
//!
//! The `x5t#S256` thumbprint itself and the RFC 9440 header codec live in `keybound-core`, so
//! the AS and the RS bind and check certificates with the same code.
//!
//! ```
//! use keybound_tls::{ClientCertificate, ExpectedSubject};
//! # let der = keybound_tls::test_pki::self_signed(&keybound_tls::test_pki::ClientSpec {
//! #     dns: vec!["client.example".into()], ..Default::default() }).der;
//! let certificate = ClientCertificate::new(der, Vec::new());
//! assert!(ExpectedSubject::SanDns("CLIENT.example".into()).matches(&certificate));
//! assert_eq!(certificate.thumbprint().as_str().len(), 43);
//! ```

use std::sync::Arc;

pub mod identity;
mod intake;
mod listener;
mod serve;
#[cfg(feature = "test-pki")]
pub mod test_pki;

pub use identity::{ClientCertificate, ExpectedSubject, RegisteredCertificates, TrustAnchors};
pub use intake::{
    CLIENT_CERT, CLIENT_CERT_CHAIN, ClientCertLayer, ClientCertService, ForwardedCertificates,
    ForwardedFormat, ProxyNet,
};
pub use listener::{
    ClientCertMode, HANDSHAKE_TIMEOUT, MAX_PEM_FILE, Peer, ServerTls, TlsListener,
    certificates_from_pem, read_pem_file,
};
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
pub use serve::{ServeLimits, serve};

/// Why a TLS or certificate operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {0}")]
    Io(String),
    /// PEM text without the expected items.
    #[error("bad PEM: {0}")]
    Pem(String),
    /// A certificate or key that cannot be used.
    #[error("unusable certificate: {0}")]
    Certificate(String),
    /// A certificate chain that does not lead to a trust anchor, or is not valid now.
    #[error("untrusted certificate: {0}")]
    Untrusted(String),
    /// A malformed forwarded-certificate header from a trusted proxy.
    #[error("{0}")]
    Forwarded(&'static str),
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
}

/// The one crypto provider of the workspace (aws-lc-rs).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
