//! # keybound-core
//!
//! The sans-IO protocol core of keybound: everything that decides whether a DPoP proof, a
//! sender-constrained access token or a forwarded client certificate is acceptable, with no
//! clock, network, disk, environment or async runtime. Time is passed in as [`UnixTime`];
//! randomness as an `aws_lc_rs::rand::SecureRandom`. The Authorization Server and the Resource
//! Server both call [`dpop::ProofVerifier::verify`], so a rule lives in exactly one place.
//!
//! What it does:
//! - [`PublicJwk`]: EC P-256/P-384, OKP Ed25519 and RSA (2048 bits or more) public keys, parsed
//!   strictly, with RFC 7638 [`JwkThumbprint`]s hashed from the members as received.
//! - [`jws`]: compact JWS parsing without trusting the header; [`SigningKey`] for signing.
//! - [`dpop`]: a proof builder, and a verifier with one [`dpop::ProofError`] per check.
//! - [`Htu`] normalisation, [`AccessTokenHash`] (`ath`), stateless [`NonceKeyRing`] nonces.
//! - [`CertThumbprint`] (`x5t#S256`) and the RFC 9440 header codec in [`cert`].
//! - [`access_token`]: RFC 9068 claims, signing and verification by `kid` against a [`KeySet`].
//! - [`binding`]: `cnf` against the presented proof key or certificate.
//! - [`challenge`]: `WWW-Authenticate` build and parse.
//! - [`metadata`]: where an issuer's RFC 8414 metadata lives.
//! - [`diagnose`]: the verifiers' checks one by one, for tools explaining a rejection.
//! - [`ErrorCode`]: the wire codes, with the single mapping from every error above.
//!
//! What it does not do: record `jti`s (it returns a [`dpop::ReplayKey`] for the caller's
//! replay cache), read HTTP messages, fetch keys, or read the clock.
//!
//! ```
//! use aws_lc_rs::rand::SystemRandom;
//! use keybound_core::dpop::{NoncePolicy, ProofBuilder, ProofError, ProofRequest, ProofVerifier};
//! use keybound_core::{Algorithm, ErrorCode, Htu, SigningKey, UnixTime};
//!
//! let rng = SystemRandom::new();
//! let (client_key, _pkcs8) = SigningKey::generate(Algorithm::Es256, &rng)?;
//! let now = UnixTime::from_secs(1_700_000_000);
//!
//! // Client: a proof for POST https://as.example/token.
//! let proof = ProofBuilder::new("POST", "https://as.example/token", now).sign(&client_key, &rng)?;
//!
//! // Server: the expected URI comes from configuration, never from the Host header.
//! let htu = Htu::parse("https://as.example/token")?;
//! let request = ProofRequest { method: "POST", htu: &htu, now, access_token: None, nonce: NoncePolicy::NotUsed };
//! let verifier = ProofVerifier::default();
//! let verified = verifier.verify(&proof, &request)?;
//! assert_eq!(verified.thumbprint(), client_key.public_jwk().thumbprint());
//!
//! // The same proof for another method fails with a typed error and a wire code.
//! let wrong = ProofRequest { method: "GET", ..request };
//! let err = verifier.verify(&proof, &wrong).unwrap_err();
//! assert_eq!(err, ProofError::HtmMismatch);
//! assert_eq!(ErrorCode::from(&err), ErrorCode::InvalidDpopProof);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod alg;
mod ath;
mod b64;
mod htu;
mod json;
mod jwk;
mod keys;
mod nonce;
mod time;

pub mod access_token;
pub mod binding;
pub mod cert;
pub mod challenge;
pub mod diagnose;
pub mod dpop;
pub mod error;
pub mod jws;
pub mod metadata;

pub use access_token::{AccessTokenClaims, AccessTokenSigner, AccessTokenVerifier, KeySet};
pub use alg::{Algorithm, KeyKind};
pub use ath::AccessTokenHash;
pub use cert::CertThumbprint;
pub use error::ErrorCode;
pub use htu::{Htu, HtuError, MAX_HTU_LEN};
pub use jwk::{
    JwkError, JwkThumbprint, MAX_JWK_MEMBER_LEN, MAX_JWK_MEMBERS, MAX_RSA_BITS, MIN_RSA_BITS,
    PublicJwk,
};
pub use keys::{KeyError, SigningKey};
pub use nonce::{MAX_NONCE_LEN, MIN_SECRET_LEN, Nonce, NonceError, NonceKeyRing, NonceSecret};
pub use time::UnixTime;
