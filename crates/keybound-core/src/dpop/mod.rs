//! DPoP proofs (RFC 9449): the header rule, a builder for clients, and the verifier that both
//! the Authorization Server and the Resource Server call for every proof.

mod builder;
mod diagnose;
mod error;
mod header;
mod verify;

pub use builder::ProofBuilder;
pub use diagnose::ProofDiagnosis;
pub use error::ProofError;
pub use header::single_dpop_header;
pub use verify::{IatWindow, NoncePolicy, ProofRequest, ProofVerifier, ReplayKey, VerifiedProof};

/// Largest proof accepted, in bytes (standards §5 #13).
pub const MAX_PROOF_LEN: usize = 8 * 1024;
/// Longest `jti` accepted, in bytes (standards §2.3).
pub const MAX_JTI_LEN: usize = 256;
/// Longest `htm` accepted, in bytes.
pub const MAX_HTM_LEN: usize = 32;
/// The `typ` every proof carries (RFC 9449 §4.2).
pub const PROOF_TYP: &str = "dpop+jwt";
