//! RFC 9068 JWT access tokens: claims, signing by the AS, verification by the RS against the
//! AS's key set selected by `kid` (never a key carried in the token).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::UnixTime;
use crate::alg::Algorithm;
use crate::binding::Binding;
use crate::cert::CertThumbprint;
use crate::jwk::{JwkError, JwkThumbprint, PublicJwk};
use crate::jws::{UntrustedJws, sign_compact, typ_matches};
use crate::keys::{KeyError, SigningKey};

/// Largest access token accepted, in bytes.
pub const MAX_ACCESS_TOKEN_LEN: usize = 16 * 1024;
/// Most keys kept from one JWKS document.
pub const MAX_KEYS: usize = 64;
/// The `typ` of RFC 9068 access tokens.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// `aud`: one audience or several.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience string.
    One(String),
    /// An array of audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `audience` is one of the token's audiences.
    #[must_use]
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(a) => a == audience,
            Self::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

/// `cnf` (RFC 7800): the key or certificate the token is bound to. keybound issues at most one
/// member and refuses tokens with both, or with members it cannot verify (standards §2.8, §2.10).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// `jkt`: the DPoP key's thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<JwkThumbprint>,
    /// `x5t#S256`: the client certificate's thumbprint.
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<CertThumbprint>,
}

/// The claims of an RFC 9068 access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// `iss`: the issuer.
    pub iss: String,
    /// `sub`: the resource owner, or the client for client credentials.
    pub sub: String,
    /// `aud`: the resource(s) the token is for.
    pub aud: Audience,
    /// `exp`: expiry (NumericDate).
    pub exp: u64,
    /// `iat`: issue time (NumericDate).
    pub iat: u64,
    /// `nbf`: not before (NumericDate), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// `jti`: unique token id.
    pub jti: String,
    /// `client_id`: the client the token was issued to.
    pub client_id: String,
    /// `scope`: space-separated scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `cnf`: the sender constraint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

impl AccessTokenClaims {
    /// What the token is bound to.
    #[must_use]
    pub fn binding(&self) -> Binding {
        match &self.cnf {
            Some(Confirmation {
                jkt: Some(jkt),
                x5t_s256: None,
            }) => Binding::Dpop(jkt.clone()),
            Some(Confirmation {
                jkt: None,
                x5t_s256: Some(x5t),
            }) => Binding::Certificate(x5t.clone()),
            _ => Binding::Unbound,
        }
    }

    /// The scopes, split on spaces.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
    }
}

/// Why an access token was rejected. Every variant is `invalid_token` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessTokenError {
    /// Longer than [`MAX_ACCESS_TOKEN_LEN`].
    #[error("the access token is too large")]
    TooLarge,
    /// Not a compact JWS.
    #[error("the access token is not a JWT: {0}")]
    Malformed(crate::jws::JwsError),
    /// `typ` is not `at+jwt` (RFC 9068 §4).
    #[error("the access token's typ is not at+jwt")]
    InvalidTyp,
    /// A `crit` header is present.
    #[error("the access token has a crit header")]
    CriticalHeader,
    /// `alg` is not accepted.
    #[error("the access token's algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// No `kid` in the header.
    #[error("the access token has no kid")]
    MissingKid,
    /// No key with this `kid` in the key set (the caller may refresh its JWKS once).
    #[error("no key with kid {0:?}")]
    UnknownKey(String),
    /// The key found for `kid` cannot verify under `alg`.
    #[error("the access token's algorithm does not match its key")]
    AlgorithmKeyMismatch,
    /// The signature does not verify.
    #[error("the access token's signature is invalid")]
    InvalidSignature,
    /// A required claim is missing or has the wrong type, or `cnf` has an unknown member.
    #[error("the access token's claims are invalid")]
    InvalidClaims,
    /// `iss` is not the configured issuer.
    #[error("the access token is from another issuer")]
    WrongIssuer,
    /// `aud` does not include this resource.
    #[error("the access token is for another audience")]
    WrongAudience,
    /// `exp` has passed.
    #[error("the access token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future.
    #[error("the access token is not valid yet")]
    NotYetValid,
    /// `cnf` holds both `jkt` and `x5t#S256`, or neither (standards §5 #45).
    #[error("the access token's cnf must hold exactly one binding")]
    AmbiguousConfirmation,
}

impl AccessTokenError {
    /// A stable snake_case name for the failed check, for metrics labels, logs and diagnostics.
    ///
    /// ```
    /// use keybound_core::access_token::AccessTokenError;
    /// assert_eq!(AccessTokenError::Expired.reason(), "expired");
    /// ```
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed(_) => "malformed",
            Self::InvalidTyp => "invalid_typ",
            Self::CriticalHeader => "critical_header",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::MissingKid => "missing_kid",
            Self::UnknownKey(_) => "unknown_key",
            Self::AlgorithmKeyMismatch => "algorithm_key_mismatch",
            Self::InvalidSignature => "invalid_signature",
            Self::InvalidClaims => "invalid_claims",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::AmbiguousConfirmation => "ambiguous_confirmation",
        }
    }
}

/// The AS's public keys, looked up by `kid`.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<PublicJwk>,
}

impl KeySet {
    /// A key set from keys that each carry a `kid`.
    #[must_use]
    pub fn new(keys: Vec<PublicJwk>) -> Self {
        Self { keys }
    }

    /// Parses a JWKS document (`{"keys":[...]}`). Keys of unsupported types and keys without
    /// `kid` are skipped; a document exposing private key material is refused outright.
    ///
    /// # Errors
    /// [`JwkError::NotAnObject`] for a malformed document, [`JwkError::PrivateMember`] if any
    /// key has private members, [`JwkError::TooLarge`] past [`MAX_KEYS`].
    pub fn from_jwks_json(json: &[u8]) -> Result<Self, JwkError> {
        let doc = crate::json::parse_object(json).map_err(|_| JwkError::NotAnObject)?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(JwkError::NotAnObject);
        };
        if entries.len() > MAX_KEYS {
            return Err(JwkError::TooLarge);
        }
        let mut keys = Vec::new();
        for entry in entries {
            let Value::Object(map) = entry else { continue };
            match PublicJwk::from_map(map) {
                Ok(jwk) if jwk.kid().is_some() => keys.push(jwk),
                Err(e @ JwkError::PrivateMember(_)) => return Err(e),
                _ => {}
            }
        }
        Ok(Self { keys })
    }

    /// The key with this `kid`.
    #[must_use]
    pub fn get(&self, kid: &str) -> Option<&PublicJwk> {
        self.keys.iter().find(|k| k.kid() == Some(kid))
    }

    /// Number of usable keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no usable keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Signs access tokens with the AS's current key.
#[derive(Debug)]
pub struct AccessTokenSigner {
    key: SigningKey,
    kid: String,
}

impl AccessTokenSigner {
    /// Signs with `key`, naming it `kid` in every token header.
    #[must_use]
    pub fn new(key: SigningKey, kid: impl Into<String>) -> Self {
        Self {
            key,
            kid: kid.into(),
        }
    }

    /// The `kid` named in every token header.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signing key's public JWK with its `kid` and `alg`, as published in the JWKS.
    #[must_use]
    pub fn jwks_entry(&self) -> Value {
        let mut entry: Value =
            serde_json::from_str(&self.key.public_jwk().to_json()).unwrap_or_default();
        if let Value::Object(map) = &mut entry {
            map.insert("kid".into(), self.kid.clone().into());
            map.insert("alg".into(), self.key.algorithm().name().into());
            map.insert("use".into(), "sig".into());
        }
        entry
    }

    /// Signs `claims` into a compact JWT with `typ: at+jwt`.
    ///
    /// # Errors
    /// [`KeyError::Crypto`] if signing fails.
    pub fn sign(&self, claims: &AccessTokenClaims) -> Result<String, KeyError> {
        let header = serde_json::json!({
            "typ": ACCESS_TOKEN_TYP,
            "alg": self.key.algorithm().name(),
            "kid": self.kid,
        });
        let payload = serde_json::to_string(claims).map_err(|_| KeyError::Crypto)?;
        sign_compact(&header.to_string(), &payload, &self.key)
    }
}

/// Verifies access tokens for one resource (issuer + audience).
#[derive(Clone, Debug)]
pub struct AccessTokenVerifier {
    keys: KeySet,
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    leeway: u64,
}

impl AccessTokenVerifier {
    /// Default clock leeway for `exp`, `nbf` and `iat`: 5 s.
    pub const DEFAULT_LEEWAY_SECS: u64 = 5;

    /// A verifier for tokens from `issuer` for `audience`, signed by a key in `keys` under one
    /// of the FAPI 2.0 algorithms.
    #[must_use]
    pub fn new(keys: KeySet, issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            keys,
            issuer: issuer.into(),
            audience: audience.into(),
            algorithms: Algorithm::FAPI2.to_vec(),
            leeway: Self::DEFAULT_LEEWAY_SECS,
        }
    }

    /// Replaces the accepted algorithms.
    #[must_use]
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }

    /// Replaces the clock leeway, in seconds.
    #[must_use]
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.leeway = secs;
        self
    }

    /// Replaces the key set (after a JWKS refresh).
    pub fn set_keys(&mut self, keys: KeySet) {
        self.keys = keys;
    }

    /// Verifies `token` at `now` and returns its claims.
    ///
    /// [`crate::diagnose::access_token`] runs the same checks one by one; both call the
    /// functions below.
    ///
    /// # Errors
    /// The [`AccessTokenError`] of the first failed check.
    pub fn verify(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<AccessTokenClaims, AccessTokenError> {
        let jws = parse_token(token)?;
        let header = jws.header();
        check_typ(header)?;
        check_no_crit(header)?;
        let alg = check_alg(header, &self.algorithms)?;
        let kid = header_kid(header)?;
        check_signature(&jws, &self.keys, kid, alg)?;
        let claims = claims_of(Value::Object(jws.into_payload()))
            .map_err(|_| AccessTokenError::InvalidClaims)?;
        check_issuer(&claims, &self.issuer)?;
        check_audience(&claims, &self.audience)?;
        check_expiry(&claims, now, self.leeway)?;
        check_not_before(&claims, now, self.leeway)?;
        check_confirmation(&claims)?;
        Ok(claims)
    }
}

// The checks, one function each, shared by `AccessTokenVerifier::verify` and
// `crate::diagnose::access_token`.

/// Size, then the compact JWS shape.
pub(crate) fn parse_token(token: &str) -> Result<UntrustedJws<'_>, AccessTokenError> {
    if token.len() > MAX_ACCESS_TOKEN_LEN {
        return Err(AccessTokenError::TooLarge);
    }
    UntrustedJws::parse(token, MAX_ACCESS_TOKEN_LEN).map_err(AccessTokenError::Malformed)
}

/// RFC 9068 §4: `typ` is `at+jwt` (as a media type).
pub(crate) fn check_typ(header: &Map<String, Value>) -> Result<(), AccessTokenError> {
    let typ = header
        .get("typ")
        .and_then(Value::as_str)
        .ok_or(AccessTokenError::InvalidTyp)?;
    if typ_matches(typ, ACCESS_TOKEN_TYP) {
        Ok(())
    } else {
        Err(AccessTokenError::InvalidTyp)
    }
}

/// No `crit` header.
pub(crate) fn check_no_crit(header: &Map<String, Value>) -> Result<(), AccessTokenError> {
    if header.contains_key("crit") {
        Err(AccessTokenError::CriticalHeader)
    } else {
        Ok(())
    }
}

/// `alg` is one of `algorithms`.
pub(crate) fn check_alg(
    header: &Map<String, Value>,
    algorithms: &[Algorithm],
) -> Result<Algorithm, AccessTokenError> {
    header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Algorithm::from_name)
        .filter(|a| algorithms.contains(a))
        .ok_or(AccessTokenError::UnsupportedAlgorithm)
}

/// The header's `kid`.
pub(crate) fn header_kid(header: &Map<String, Value>) -> Result<&str, AccessTokenError> {
    header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(AccessTokenError::MissingKid)
}

/// The key named by `kid` exists, fits `alg`, and verifies the signature.
pub(crate) fn check_signature(
    jws: &UntrustedJws<'_>,
    keys: &KeySet,
    kid: &str,
    alg: Algorithm,
) -> Result<(), AccessTokenError> {
    let key = keys
        .get(kid)
        .ok_or_else(|| AccessTokenError::UnknownKey(kid.to_owned()))?;
    key.check_algorithm(alg)
        .map_err(|_| AccessTokenError::AlgorithmKeyMismatch)?;
    if jws.verify_with(key, alg) {
        Ok(())
    } else {
        Err(AccessTokenError::InvalidSignature)
    }
}

/// The RFC 9068 claims, with their types, and no unknown `cnf` member. A failure is
/// [`AccessTokenError::InvalidClaims`]; the serde error says which claim, for diagnostics.
pub(crate) fn claims_of(payload: Value) -> Result<AccessTokenClaims, serde_json::Error> {
    serde_json::from_value(payload)
}

/// `iss` is exactly the configured issuer.
pub(crate) fn check_issuer(
    claims: &AccessTokenClaims,
    issuer: &str,
) -> Result<(), AccessTokenError> {
    if claims.iss == issuer {
        Ok(())
    } else {
        Err(AccessTokenError::WrongIssuer)
    }
}

/// `aud` includes this resource.
pub(crate) fn check_audience(
    claims: &AccessTokenClaims,
    audience: &str,
) -> Result<(), AccessTokenError> {
    if claims.aud.contains(audience) {
        Ok(())
    } else {
        Err(AccessTokenError::WrongAudience)
    }
}

/// `exp` (plus `leeway`) has not passed.
pub(crate) fn check_expiry(
    claims: &AccessTokenClaims,
    now: UnixTime,
    leeway: u64,
) -> Result<(), AccessTokenError> {
    if claims.exp.saturating_add(leeway) <= now.as_secs() {
        Err(AccessTokenError::Expired)
    } else {
        Ok(())
    }
}

/// Neither `iat` nor `nbf` is later than `now` plus `leeway`.
pub(crate) fn check_not_before(
    claims: &AccessTokenClaims,
    now: UnixTime,
    leeway: u64,
) -> Result<(), AccessTokenError> {
    let latest_start = now.as_secs().saturating_add(leeway);
    if claims.iat > latest_start || claims.nbf.is_some_and(|nbf| nbf > latest_start) {
        Err(AccessTokenError::NotYetValid)
    } else {
        Ok(())
    }
}

/// Standards §5 #45: a `cnf` holds exactly one binding.
pub(crate) fn check_confirmation(claims: &AccessTokenClaims) -> Result<(), AccessTokenError> {
    match &claims.cnf {
        Some(cnf) if cnf.jkt.is_some() == cnf.x5t_s256.is_some() => {
            Err(AccessTokenError::AmbiguousConfirmation)
        }
        _ => Ok(()),
    }
}
