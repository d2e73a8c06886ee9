//! # keybound-resource
//!
//! What an API adds to its axum (or any tower) service so that only the holder of the key a
//! token is bound to can use it. [`ResourceLayer`] checks every request:
//!
//! 1. one `Authorization` header, scheme `DPoP` or `Bearer` in any case, never a token in the
//!    query; a `DPoP` proof header with the `DPoP` scheme and not with `Bearer`;
//! 2. the access token: an RFC 9068 JWT against the issuer's keys ([`KeySource`]: fixed, or JWKS
//!    discovered from metadata and refetched on an unknown `kid`, rate-limited), or an opaque
//!    token by RFC 7662 introspection ([`KeySource::Introspection`]), from a cache of verified
//!    tokens so a repeated token costs no signature check or round trip;
//! 3. the proof, by the same `keybound_core` verifier the Authorization Server uses, with `htu`
//!    from the configured public base URL plus the request path, `ath`, and the nonce policy;
//! 4. the binding (`cnf.jkt` against the proof key; a DPoP-bound token as `Bearer` is refused);
//! 5. the route's required scopes;
//! 6. the proof's `jti`, recorded atomically in the replay cache, only once all else passed.
//!
//! Rejections carry the status and `WWW-Authenticate` challenge of RFC 9449 §7 and RFC 6750 §3,
//! `DPoP-Nonce` when a nonce is needed, and CORS exposure of both headers. Handlers take the
//! [`VerifiedToken`] as an extractor.
//!
//! ```
//! use std::sync::Arc;
//! use keybound_resource::{KeySource, ResourceConfig, ResourceLayer, ResourceVerifier};
//! use keybound_store::MemoryReplayCache;
//!
//! let config = ResourceConfig::new("https://as.example", "https://api.example", "https://api.example");
//! let keys = KeySource::Static(Arc::new(keybound_core::KeySet::default()));
//! let verifier = ResourceVerifier::new(config, keys, Arc::new(MemoryReplayCache::new(100_000))).unwrap();
//! let layer = ResourceLayer::new(Arc::new(verifier)).require_scopes(&["read"]);
//! # let _ = layer;
//! ```

mod cache;
mod gateway;
mod introspection;
mod keys;
mod layer;
mod rejection;
mod verifier;

pub use gateway::{CLAIM_HEADER_PREFIX, GatewayConfig, gateway_router};
pub use introspection::{IntrospectionError, IntrospectionSource};
pub use keys::{CurrentKeys, JwksSource, KeyFetchError, KeySource, MAX_DOCUMENT};
pub use layer::{ResourceLayer, ResourceService};
pub use rejection::Rejection;
pub use verifier::{
    Clock, ResourceConfig, ResourceConfigError, ResourceMetrics, ResourceVerifier, VerifiedToken,
};
