//! The proof verifier: every check of standards §1.2, for the AS and the RS alike.

use aws_lc_rs::digest;
use serde_json::{Map, Value};

use super::{MAX_HTM_LEN, MAX_JTI_LEN, MAX_PROOF_LEN, PROOF_TYP, ProofError};
use crate::UnixTime;
use crate::alg::Algorithm;
use crate::ath::AccessTokenHash;
use crate::htu::Htu;
use crate::jwk::{JwkError, JwkThumbprint, PublicJwk};
use crate::jws::{UntrustedJws, typ_matches};
use crate::nonce::{Nonce, NonceKeyRing};

/// How long a proof stays acceptable: `now − max_age ≤ iat ≤ now + future_leeway`,
/// both ends inclusive (standards §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IatWindow {
    max_age: u64,
    future_leeway: u64,
}

impl Default for IatWindow {
    /// 60 s back, 30 s ahead.
    fn default() -> Self {
        Self {
            max_age: 60,
            future_leeway: 30,
        }
    }
}

impl IatWindow {
    /// Largest accepted `max_age`, in seconds.
    pub const MAX_AGE_LIMIT: u64 = 300;
    /// Bounds on the future leeway, in seconds (FAPI 2.0 §5.3.2.1: accept 10 s, reject 60 s).
    pub const FUTURE_LEEWAY_RANGE: std::ops::RangeInclusive<u64> = 10..=59;

    /// A window of `max_age` seconds back (1 to 300) and `future_leeway` seconds ahead
    /// (10 to 59). `None` outside those bounds.
    ///
    /// ```
    /// use keybound_core::dpop::IatWindow;
    /// assert!(IatWindow::new(60, 30).is_some());
    /// assert!(IatWindow::new(301, 30).is_none());
    /// assert!(IatWindow::new(60, 60).is_none());
    /// ```
    #[must_use]
    pub fn new(max_age: u64, future_leeway: u64) -> Option<Self> {
        let ok = (1..=Self::MAX_AGE_LIMIT).contains(&max_age)
            && Self::FUTURE_LEEWAY_RANGE.contains(&future_leeway);
        ok.then_some(Self {
            max_age,
            future_leeway,
        })
    }

    /// Seconds a proof may be old.
    #[must_use]
    pub fn max_age(&self) -> u64 {
        self.max_age
    }

    /// Seconds a proof may be in the future.
    #[must_use]
    pub fn future_leeway(&self) -> u64 {
        self.future_leeway
    }
}

/// What the server expects of the `nonce` claim.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum NoncePolicy<'a> {
    /// This server issues no nonces; a well-formed `nonce` claim is ignored.
    NotUsed,
    /// A nonce is checked when present but not required (e.g. before one was ever issued).
    IfPresent(&'a NonceKeyRing),
    /// Every proof must carry a nonce this key ring accepts.
    Required(&'a NonceKeyRing),
    /// Every proof must carry exactly this nonce: for a tool or a test that knows the one value
    /// a server sent in `DPoP-Nonce` but not the server's key ring (`keybound inspect --nonce`).
    /// A server checks nonces with [`NoncePolicy::Required`] instead.
    Exactly(&'a str),
}

/// The request a proof is checked against.
#[derive(Clone, Copy, Debug)]
pub struct ProofRequest<'a> {
    /// The HTTP method, exactly as received (`htm` is compared case-sensitively).
    pub method: &'a str,
    /// The public URI the client called (from configuration, never from untrusted headers).
    pub htu: &'a Htu,
    /// The current time.
    pub now: UnixTime,
    /// At an RS, the access token presented with the proof (then `ath` is required).
    pub access_token: Option<&'a str>,
    /// Nonce requirement.
    pub nonce: NoncePolicy<'a>,
}

/// What the caller records in its replay cache: `SHA-256(jkt ‖ 0 ‖ htu ‖ 0 ‖ jti)` and the
/// moment the proof stops being acceptable (`iat + max_age`), after which the record may go.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayKey {
    digest: [u8; 32],
    expires_at: UnixTime,
}

impl std::fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ReplayKey({}, until {})",
            crate::b64::encode(&self.digest[..6]),
            self.expires_at
        )
    }
}

impl ReplayKey {
    /// The 32-byte key.
    #[must_use]
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// When the record can be dropped.
    #[must_use]
    pub fn expires_at(&self) -> UnixTime {
        self.expires_at
    }
}

/// A proof that passed every stateless check. The caller still records [`VerifiedProof::replay_key`]
/// atomically, and (at an RS) compares [`VerifiedProof::thumbprint`] with the token's `cnf.jkt`.
#[derive(Debug)]
pub struct VerifiedProof {
    jwk: PublicJwk,
    alg: Algorithm,
    jti: String,
    iat: UnixTime,
    nonce: Option<Nonce>,
    replay_key: ReplayKey,
}

impl VerifiedProof {
    /// The proof's public key.
    #[must_use]
    pub fn jwk(&self) -> &PublicJwk {
        &self.jwk
    }
    /// The key's RFC 7638 thumbprint (what `cnf.jkt` must equal).
    #[must_use]
    pub fn thumbprint(&self) -> &JwkThumbprint {
        self.jwk.thumbprint()
    }
    /// The algorithm the proof was signed with.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
    /// The proof's `jti`.
    #[must_use]
    pub fn jti(&self) -> &str {
        &self.jti
    }
    /// The proof's `iat`.
    #[must_use]
    pub fn issued_at(&self) -> UnixTime {
        self.iat
    }
    /// The nonce the proof carried, if any.
    #[must_use]
    pub fn nonce(&self) -> Option<&Nonce> {
        self.nonce.as_ref()
    }
    /// The replay-cache key to insert atomically.
    #[must_use]
    pub fn replay_key(&self) -> ReplayKey {
        self.replay_key
    }
}

/// Verifies DPoP proofs. Holds only configuration; it is cheap to share.
///
/// ```
/// use aws_lc_rs::rand::SystemRandom;
/// use keybound_core::{Algorithm, Htu, SigningKey, UnixTime};
/// use keybound_core::dpop::{NoncePolicy, ProofBuilder, ProofRequest, ProofVerifier};
///
/// let rng = SystemRandom::new();
/// let (key, _) = SigningKey::generate(Algorithm::EdDsa, &rng).unwrap();
/// let now = UnixTime::from_secs(1_700_000_000);
/// let proof = ProofBuilder::new("GET", "https://rs.example/api", now)
///     .access_token("token")
///     .sign(&key, &rng)
///     .unwrap();
/// let htu = Htu::parse("https://rs.example/api").unwrap();
/// let request = ProofRequest { method: "GET", htu: &htu, now, access_token: Some("token"), nonce: NoncePolicy::NotUsed };
/// let verified = ProofVerifier::default().verify(&proof, &request).unwrap();
/// assert_eq!(verified.thumbprint(), key.public_jwk().thumbprint());
/// ```
#[derive(Clone, Debug)]
pub struct ProofVerifier {
    algorithms: Vec<Algorithm>,
    window: IatWindow,
}

impl Default for ProofVerifier {
    /// The FAPI 2.0 algorithms (ES256, EdDSA, PS256) and the default [`IatWindow`].
    fn default() -> Self {
        Self::new(&Algorithm::FAPI2, IatWindow::default())
    }
}

pub(super) fn string<'m>(
    map: &'m Map<String, Value>,
    name: &'static str,
) -> Result<&'m str, ProofError> {
    match map.get(name) {
        None => Err(ProofError::MissingMember(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ProofError::WrongType(name)),
    }
}

/// A NumericDate: an integer, or a finite non-integer (truncated). Negative values count as 0.
pub(super) fn numeric_date(
    map: &Map<String, Value>,
    name: &'static str,
) -> Result<UnixTime, ProofError> {
    let value = map.get(name).ok_or(ProofError::MissingMember(name))?;
    let Value::Number(n) = value else {
        return Err(ProofError::WrongType(name));
    };
    if let Some(u) = n.as_u64() {
        return Ok(UnixTime::from_secs(u));
    }
    if n.as_i64().is_some() {
        return Ok(UnixTime::from_secs(0));
    }
    match n.as_f64() {
        Some(f) if (0.0..1.8e19).contains(&f) => {
            // A finite, non-negative value below 2^64: truncation is the NumericDate meaning.
            #[allow(
                clippy::as_conversions,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            Ok(UnixTime::from_secs(f as u64))
        }
        Some(_) => Ok(UnixTime::from_secs(0)),
        None => Err(ProofError::WrongType(name)),
    }
}

impl ProofVerifier {
    /// A verifier accepting `algorithms` (an allow-list; see [`Algorithm::FAPI2`]) within `window`.
    #[must_use]
    pub fn new(algorithms: &[Algorithm], window: IatWindow) -> Self {
        Self {
            algorithms: algorithms.to_vec(),
            window,
        }
    }

    /// The accepted algorithms, for `dpop_signing_alg_values_supported` and `algs`.
    #[must_use]
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The accepted `iat` window.
    #[must_use]
    pub fn window(&self) -> IatWindow {
        self.window
    }

    /// Checks `proof` (the value of the single `DPoP` header) against `request`.
    ///
    /// [`ProofVerifier::diagnose`] runs the same checks one by one for people debugging a
    /// rejection; both call the functions below, so the two cannot drift apart.
    ///
    /// # Errors
    /// The [`ProofError`] of the first check that fails.
    pub fn verify(
        &self,
        proof: &str,
        request: &ProofRequest<'_>,
    ) -> Result<VerifiedProof, ProofError> {
        let jws = parse_proof(proof)?;
        let header = jws.header();

        // Rules 3-5 and 7 on the header, before any signature work.
        check_typ(header)?;
        check_no_crit(header)?;
        let alg = self.check_alg(header)?;
        let jwk = header_jwk(header)?;
        check_alg_fits_key(&jwk, alg)?;

        // Rule 6: the key in `jwk`, and only that key (never kid/jku/x5u/x5c).
        check_signature(&jws, &jwk, alg)?;

        // Rule 3 on the claims, then rules 8, 9, 11, 12a, 10.
        let claims = jws.payload();
        let jti = string(claims, "jti")?;
        let htm = string(claims, "htm")?;
        let htu = string(claims, "htu")?;
        let iat = numeric_date(claims, "iat")?;
        check_jti(jti)?;
        check_htm(htm, request.method)?;
        check_htu(&parse_htu(htu)?, request.htu)?;
        self.window.check(iat, request.now)?;
        check_ath(claims, request.access_token)?;
        let nonce = check_nonce(claims, request.nonce, request.now)?;

        let replay_key = ReplayKey {
            digest: replay_digest(jwk.thumbprint(), request.htu, jti),
            expires_at: iat.saturating_add(self.window.max_age),
        };
        Ok(VerifiedProof {
            jti: jti.to_owned(),
            jwk,
            alg,
            iat,
            nonce,
            replay_key,
        })
    }

    /// Rule 5: `alg` names an algorithm in the allow-list.
    pub(super) fn check_alg(&self, header: &Map<String, Value>) -> Result<Algorithm, ProofError> {
        Algorithm::from_name(string(header, "alg")?)
            .filter(|a| self.algorithms.contains(a))
            .ok_or(ProofError::UnsupportedAlgorithm)
    }
}

// The checks, one function each, shared by `verify` and `diagnose`. Small enough to inline.

/// §5 #13 and rule 2: size, then the compact JWS shape.
pub(super) fn parse_proof(proof: &str) -> Result<UntrustedJws<'_>, ProofError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(ProofError::TooLarge);
    }
    UntrustedJws::parse(proof, MAX_PROOF_LEN).map_err(ProofError::Malformed)
}

/// Rule 4: `typ` is `dpop+jwt` (as a media type).
pub(super) fn check_typ(header: &Map<String, Value>) -> Result<(), ProofError> {
    if typ_matches(string(header, "typ")?, PROOF_TYP) {
        Ok(())
    } else {
        Err(ProofError::InvalidTyp)
    }
}

/// §5 #7: no `crit` header.
pub(super) fn check_no_crit(header: &Map<String, Value>) -> Result<(), ProofError> {
    if header.contains_key("crit") {
        Err(ProofError::CriticalHeader)
    } else {
        Ok(())
    }
}

/// Rules 3 and 7: `jwk` is present and a usable public key.
pub(super) fn header_jwk(header: &Map<String, Value>) -> Result<PublicJwk, ProofError> {
    match header.get("jwk") {
        None => Err(ProofError::MissingMember("jwk")),
        Some(Value::Object(map)) => PublicJwk::from_map(map).map_err(|e| match e {
            JwkError::PrivateMember(_) => ProofError::PrivateKey,
            other => ProofError::InvalidJwk(other),
        }),
        Some(_) => Err(ProofError::WrongType("jwk")),
    }
}

/// Rule 5: `alg` fits the key's type and curve.
pub(super) fn check_alg_fits_key(jwk: &PublicJwk, alg: Algorithm) -> Result<(), ProofError> {
    jwk.check_algorithm(alg)
        .map_err(|_| ProofError::AlgorithmKeyMismatch)
}

/// Rule 6: the signature verifies with the key in `jwk`.
pub(super) fn check_signature(
    jws: &UntrustedJws<'_>,
    jwk: &PublicJwk,
    alg: Algorithm,
) -> Result<(), ProofError> {
    if jws.verify_with(jwk, alg) {
        Ok(())
    } else {
        Err(ProofError::InvalidSignature)
    }
}

/// Rule 11: `jti` is 1 to [`MAX_JTI_LEN`] bytes.
pub(super) fn check_jti(jti: &str) -> Result<(), ProofError> {
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        Err(ProofError::InvalidJti)
    } else {
        Ok(())
    }
}

/// Rule 8: `htm` is the request method, case-sensitively.
pub(super) fn check_htm(htm: &str, method: &str) -> Result<(), ProofError> {
    if htm.len() > MAX_HTM_LEN || htm != method {
        Err(ProofError::HtmMismatch)
    } else {
        Ok(())
    }
}

/// Rule 9: the `htu` claim is an absolute http(s) URI; normalised.
pub(super) fn parse_htu(htu: &str) -> Result<Htu, ProofError> {
    Htu::parse(htu).map_err(|_| ProofError::InvalidHtu)
}

/// Rule 9: the normalised `htu` claim is the request's URI.
pub(super) fn check_htu(claimed: &Htu, expected: &Htu) -> Result<(), ProofError> {
    if claimed == expected {
        Ok(())
    } else {
        Err(ProofError::HtuMismatch)
    }
}

impl IatWindow {
    /// Rule 11: `now − max_age ≤ iat ≤ now + future_leeway`.
    pub(super) fn check(self, iat: UnixTime, now: UnixTime) -> Result<(), ProofError> {
        if iat < now.saturating_sub(self.max_age) {
            return Err(ProofError::IatTooOld);
        }
        if iat > now.saturating_add(self.future_leeway) {
            return Err(ProofError::IatInFuture);
        }
        Ok(())
    }
}

/// Rule 12a: with an access token, `ath` is present and is its hash.
pub(super) fn check_ath(
    claims: &Map<String, Value>,
    access_token: Option<&str>,
) -> Result<(), ProofError> {
    let Some(token) = access_token else {
        return Ok(());
    };
    let ath = match claims.get("ath") {
        None => return Err(ProofError::MissingAth),
        Some(Value::String(s)) => s,
        Some(_) => return Err(ProofError::WrongType("ath")),
    };
    if AccessTokenHash::of(token).matches(ath) {
        Ok(())
    } else {
        Err(ProofError::AthMismatch)
    }
}

/// §5 #24 and rule 10: a `nonce` claim is well-formed, and satisfies `policy`.
pub(super) fn check_nonce(
    claims: &Map<String, Value>,
    policy: NoncePolicy<'_>,
    now: UnixTime,
) -> Result<Option<Nonce>, ProofError> {
    let nonce = match claims.get("nonce") {
        None => None,
        Some(Value::String(s)) => Some(Nonce::parse(s).ok_or(ProofError::NonceMalformed)?),
        Some(_) => return Err(ProofError::NonceMalformed),
    };
    match (policy, &nonce) {
        (NoncePolicy::NotUsed, _) | (NoncePolicy::IfPresent(_), None) => {}
        (NoncePolicy::Required(_) | NoncePolicy::Exactly(_), None) => {
            return Err(ProofError::NonceRequired);
        }
        (NoncePolicy::IfPresent(ring) | NoncePolicy::Required(ring), Some(n)) => {
            ring.check(n.as_str(), now)
                .map_err(|_| ProofError::NonceRejected)?;
        }
        (NoncePolicy::Exactly(expected), Some(n)) => {
            if n.as_str() != expected {
                return Err(ProofError::NonceRejected);
            }
        }
    }
    Ok(nonce)
}

fn replay_digest(jkt: &JwkThumbprint, htu: &Htu, jti: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(jkt.as_str().as_bytes());
    ctx.update(&[0]);
    ctx.update(htu.as_str().as_bytes());
    ctx.update(&[0]);
    ctx.update(jti.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;

    use super::*;
    use crate::SigningKey;
    use crate::dpop::ProofBuilder;

    #[test]
    fn an_exact_nonce_policy_accepts_only_that_nonce() {
        let rng = SystemRandom::new();
        let (key, _) = SigningKey::generate(Algorithm::EdDsa, &rng).unwrap();
        let now = UnixTime::from_secs(1_700_000_000);
        let url = "https://as.example/token";
        let htu = Htu::parse(url).unwrap();
        let verify = |proof: &str, nonce| {
            let request = ProofRequest {
                method: "POST",
                htu: &htu,
                now,
                access_token: None,
                nonce,
            };
            ProofVerifier::default()
                .verify(proof, &request)
                .map(|p| p.nonce().cloned())
        };
        let with = ProofBuilder::new("POST", url, now)
            .nonce("n-1")
            .sign(&key, &rng)
            .unwrap();
        let without = ProofBuilder::new("POST", url, now)
            .sign(&key, &rng)
            .unwrap();
        assert_eq!(
            verify(&with, NoncePolicy::Exactly("n-1"))
                .unwrap()
                .unwrap()
                .as_str(),
            "n-1"
        );
        assert_eq!(
            verify(&with, NoncePolicy::Exactly("n-2")).unwrap_err(),
            ProofError::NonceRejected
        );
        assert_eq!(
            verify(&without, NoncePolicy::Exactly("n-1")).unwrap_err(),
            ProofError::NonceRequired
        );
    }
}
