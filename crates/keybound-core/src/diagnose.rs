//! Itemized diagnostics for a person debugging a rejection (`keybound inspect`): every check of
//! the proof and access-token verifiers, run one by one, each with pass, fail or skipped and a
//! detail, next to the verifiers' own verdict.
//!
//! The verdicts come from [`ProofVerifier::verify`](crate::dpop::ProofVerifier::verify) and
//! [`AccessTokenVerifier::verify`]; the itemized checks call the same check functions those
//! verifiers call, so the list and the verdict cannot disagree about a rule. A server has no use
//! for this module: it needs the verdict only, and stops at the first failure.
//!
//! Proofs are diagnosed by [`ProofVerifier::diagnose`](crate::dpop::ProofVerifier::diagnose);
//! access tokens by [`access_token`]; the token's binding by [`binding`].

use std::fmt;

use serde_json::{Map, Value};

use crate::UnixTime;
use crate::access_token::{
    self as at, AccessTokenClaims, AccessTokenError, AccessTokenVerifier, Audience, KeySet,
};
use crate::alg::Algorithm;
use crate::binding::{Binding, BindingError, Presented};
use crate::dpop::ProofError;

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The check ran and the input satisfies it.
    Pass,
    /// The check ran and the input breaks it.
    Fail,
    /// The check could not run: an input it needs is missing or an earlier check failed.
    Skipped,
}

impl Status {
    /// `pass`, `fail` or `skipped`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Skipped => "skipped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One itemized check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// A stable name: `proof.htu`, `token.exp`, `binding`, ...
    pub name: &'static str,
    /// Its outcome.
    pub status: Status,
    /// What was compared, in words a person can act on.
    pub detail: String,
    /// For a failure, the verifier error's stable reason (`htu_mismatch`, `expired`, ...),
    /// the label the servers use in their logs and metrics.
    pub reason: Option<&'static str>,
}

impl Check {
    pub(crate) fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Pass,
            detail: detail.into(),
            reason: None,
        }
    }

    pub(crate) fn skipped(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Skipped,
            detail: detail.into(),
            reason: None,
        }
    }

    /// Whether the check ran and failed.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.status == Status::Fail
    }
}

/// A verifier error with a stable reason label.
pub(crate) trait Explain: fmt::Display {
    fn reason(&self) -> &'static str;
}

impl Explain for ProofError {
    fn reason(&self) -> &'static str {
        Self::reason(self)
    }
}

impl Explain for AccessTokenError {
    fn reason(&self) -> &'static str {
        Self::reason(self)
    }
}

impl Explain for BindingError {
    fn reason(&self) -> &'static str {
        Self::reason(self)
    }
}

/// A check from a verifier function's result: `pass` describes success; a failure shows the
/// error and then `context` (what was compared), if any.
pub(crate) fn checked<T, E: Explain>(
    name: &'static str,
    result: Result<T, E>,
    pass: impl FnOnce(T) -> String,
    context: impl FnOnce() -> String,
) -> Check {
    match result {
        Ok(value) => Check::pass(name, pass(value)),
        Err(error) => {
            let context = context();
            let detail = if context.is_empty() {
                error.to_string()
            } else {
                format!("{error}: {context}")
            };
            Check {
                name,
                status: Status::Fail,
                detail,
                reason: Some(error.reason()),
            }
        }
    }
}

/// A JSON member for a detail line: its JSON text, or `absent`.
pub(crate) fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "absent".to_owned(), Value::to_string)
}

/// `t` relative to `now`, in words: `12 s ago`, `now`, `30 s in the future`.
pub(crate) fn relative(t: u64, now: UnixTime) -> String {
    let now = now.as_secs();
    match t.cmp(&now) {
        std::cmp::Ordering::Less => format!("{} s ago", now - t),
        std::cmp::Ordering::Equal => "now".to_owned(),
        std::cmp::Ordering::Greater => format!("{} s in the future", t - now),
    }
}

pub(crate) fn alg_names(algorithms: &[Algorithm]) -> String {
    algorithms
        .iter()
        .map(|a| a.name())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What an access token is checked against. A missing expectation skips the checks that need it.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokenExpectations<'a> {
    /// The AS's keys (its JWKS). Without them the signature is not checked and there is no verdict.
    pub keys: Option<&'a KeySet>,
    /// The issuer the resource accepts (`iss` must equal it exactly).
    pub issuer: Option<&'a str>,
    /// The resource's audience (`aud` must include it).
    pub audience: Option<&'a str>,
}

/// Every check of an access token, and [`AccessTokenVerifier::verify`]'s verdict.
#[derive(Debug)]
pub struct TokenDiagnosis {
    /// The decoded JOSE header, if the token is a compact JWS.
    pub header: Option<Map<String, Value>>,
    /// The decoded claims, if the token is a compact JWS.
    pub claims: Option<Map<String, Value>>,
    /// The claims read as RFC 9068 claims, if they have that shape. Not verified: read
    /// [`TokenDiagnosis::verdict`] for that.
    pub parsed: Option<AccessTokenClaims>,
    /// The checks, in the verifier's order; the last one, `token.verified`, is the verdict.
    pub checks: Vec<Check>,
    /// What [`AccessTokenVerifier::verify`] says, when keys were given. A missing issuer or
    /// audience is taken from the token itself for this (and its check reported as skipped).
    pub verdict: Option<Result<AccessTokenClaims, AccessTokenError>>,
}

const TOKEN_CHECKS: [&str; 12] = [
    "token.typ",
    "token.crit",
    "token.alg",
    "token.kid",
    "token.signature",
    "token.claims",
    "token.iss",
    "token.aud",
    "token.exp",
    "token.iat",
    "token.cnf",
    "token.verified",
];

/// Checks an RFC 9068 access token one rule at a time with [`AccessTokenVerifier`]'s own check
/// functions (FAPI 2.0 algorithms, default leeway), and gets its verdict when `expect` has keys.
///
/// ```
/// use keybound_core::diagnose::{access_token, Status, TokenExpectations};
/// use keybound_core::UnixTime;
/// let diagnosis = access_token("not-a-jwt", &TokenExpectations::default(), UnixTime::from_secs(0));
/// assert_eq!(diagnosis.checks[0].name, "token.format");
/// assert_eq!(diagnosis.checks[0].status, Status::Fail);
/// assert!(diagnosis.verdict.is_none());
/// ```
#[must_use]
pub fn access_token(token: &str, expect: &TokenExpectations<'_>, now: UnixTime) -> TokenDiagnosis {
    let leeway = AccessTokenVerifier::DEFAULT_LEEWAY_SECS;
    let algorithms = Algorithm::FAPI2;
    let mut checks = Vec::new();
    let jws = match at::parse_token(token) {
        Ok(jws) => {
            checks.push(Check::pass(
                "token.format",
                format!("a compact JWS of {} bytes", token.len()),
            ));
            jws
        }
        Err(error) => {
            let opaque = matches!(error, AccessTokenError::Malformed(_));
            checks.push(checked(
                "token.format",
                Err::<(), _>(error),
                |()| String::new(),
                || {
                    if opaque {
                        "opaque tokens can only be checked by introspection".to_owned()
                    } else {
                        String::new()
                    }
                },
            ));
            checks.extend(
                TOKEN_CHECKS[..11]
                    .iter()
                    .map(|name| Check::skipped(name, "not a JWT")),
            );
            let verdict = verdict(token, expect, None, now);
            checks.push(verdict_check(verdict.as_ref(), expect));
            return TokenDiagnosis {
                header: None,
                claims: None,
                parsed: None,
                checks,
                verdict,
            };
        }
    };
    let header = jws.header();
    checks.push(checked(
        "token.typ",
        at::check_typ(header),
        |()| format!("typ {}", show(header.get("typ"))),
        || format!("typ is {}", show(header.get("typ"))),
    ));
    checks.push(checked(
        "token.crit",
        at::check_no_crit(header),
        |()| "no crit header".to_owned(),
        String::new,
    ));
    let alg = at::check_alg(header, &algorithms);
    checks.push(checked(
        "token.alg",
        alg.clone(),
        |alg| format!("{alg} (accepted: {})", alg_names(&algorithms)),
        || {
            format!(
                "alg is {}; accepted: {}",
                show(header.get("alg")),
                alg_names(&algorithms)
            )
        },
    ));
    let kid = at::header_kid(header);
    checks.push(checked(
        "token.kid",
        kid.clone(),
        |kid| format!("kid {kid:?}"),
        String::new,
    ));
    checks.push(match (expect.keys, &alg, &kid) {
        (None, _, _) => Check::skipped("token.signature", "not checked: no keys"),
        (Some(keys), Ok(alg), Ok(kid)) => checked(
            "token.signature",
            at::check_signature(&jws, keys, kid, *alg),
            |()| format!("verifies with the key {kid:?} of the {} given", keys.len()),
            || format!("{} usable keys given", keys.len()),
        ),
        (Some(_), _, _) => Check::skipped(
            "token.signature",
            "not checked: the token has no usable alg and kid",
        ),
    });

    let claims = jws.payload();
    let parsed = at::claims_of(Value::Object(claims.clone()));
    checks.push(match &parsed {
        Ok(_) => Check::pass(
            "token.claims",
            "iss, sub, aud, exp, iat, jti and client_id present with their types",
        ),
        Err(error) => checked(
            "token.claims",
            Err::<(), _>(AccessTokenError::InvalidClaims),
            |()| String::new(),
            || error.to_string(),
        ),
    });
    let parsed = parsed.ok();
    match &parsed {
        Some(parsed) => claim_checks(&mut checks, parsed, expect, now, leeway),
        None => {
            for name in &TOKEN_CHECKS[6..11] {
                checks.push(Check::skipped(name, "not checked: the claims are invalid"));
            }
        }
    }

    let verdict = verdict(token, expect, parsed.as_ref(), now);
    checks.push(verdict_check(verdict.as_ref(), expect));
    TokenDiagnosis {
        header: Some(header.clone()),
        claims: Some(claims.clone()),
        parsed,
        checks,
        verdict,
    }
}

/// [`AccessTokenVerifier::verify`] with the expectations given, a missing issuer or audience
/// taken from the token's own claims (the check of that claim is reported as skipped).
fn verdict(
    token: &str,
    expect: &TokenExpectations<'_>,
    parsed: Option<&AccessTokenClaims>,
    now: UnixTime,
) -> Option<Result<AccessTokenClaims, AccessTokenError>> {
    let keys = expect.keys?;
    let own_audience = parsed.and_then(|c| match &c.aud {
        Audience::One(a) => Some(a.as_str()),
        Audience::Many(all) => all.first().map(String::as_str),
    });
    let issuer = expect
        .issuer
        .or(parsed.map(|c| c.iss.as_str()))
        .unwrap_or_default();
    let audience = expect.audience.or(own_audience).unwrap_or_default();
    Some(
        AccessTokenVerifier::new(keys.clone(), issuer, audience)
            .with_algorithms(&Algorithm::FAPI2)
            .with_leeway(AccessTokenVerifier::DEFAULT_LEEWAY_SECS)
            .verify(token, now),
    )
}

fn verdict_check(
    verdict: Option<&Result<AccessTokenClaims, AccessTokenError>>,
    expect: &TokenExpectations<'_>,
) -> Check {
    match verdict {
        None => Check::skipped("token.verified", "not verified: no keys"),
        Some(Ok(_)) => {
            let mut unchecked = Vec::new();
            if expect.issuer.is_none() {
                unchecked.push("iss");
            }
            if expect.audience.is_none() {
                unchecked.push("aud");
            }
            let note = if unchecked.is_empty() {
                String::new()
            } else {
                format!(" ({} not compared: not given)", unchecked.join(", "))
            };
            Check::pass(
                "token.verified",
                format!("AccessTokenVerifier accepts the token{note}"),
            )
        }
        Some(Err(error)) => checked(
            "token.verified",
            Err::<(), _>(error.clone()),
            |()| String::new(),
            || {
                format!(
                    "AccessTokenVerifier answers invalid_token ({})",
                    error.reason()
                )
            },
        ),
    }
}

fn claim_checks(
    checks: &mut Vec<Check>,
    claims: &AccessTokenClaims,
    expect: &TokenExpectations<'_>,
    now: UnixTime,
    leeway: u64,
) {
    checks.push(match expect.issuer {
        None => Check::skipped(
            "token.iss",
            format!("not checked: no issuer given (iss is {:?})", claims.iss),
        ),
        Some(issuer) => checked(
            "token.iss",
            at::check_issuer(claims, issuer),
            |()| format!("{issuer:?}"),
            || format!("iss is {:?}, expected {issuer:?}", claims.iss),
        ),
    });
    let aud = serde_json::to_string(&claims.aud).unwrap_or_default();
    checks.push(match expect.audience {
        None => Check::skipped(
            "token.aud",
            format!("not checked: no audience given (aud is {aud})"),
        ),
        Some(audience) => checked(
            "token.aud",
            at::check_audience(claims, audience),
            |()| format!("{aud} includes {audience:?}"),
            || format!("aud is {aud}, expected {audience:?}"),
        ),
    });
    checks.push(checked(
        "token.exp",
        at::check_expiry(claims, now, leeway),
        |()| format!("exp {}: expires {}", claims.exp, relative(claims.exp, now)),
        || {
            format!(
                "exp {} was {} (leeway {leeway} s)",
                claims.exp,
                relative(claims.exp, now)
            )
        },
    ));
    checks.push(checked(
        "token.iat",
        at::check_not_before(claims, now, leeway),
        |()| format!("iat {}: issued {}", claims.iat, relative(claims.iat, now)),
        || {
            let nbf = claims
                .nbf
                .map(|nbf| format!(", nbf {nbf} is {}", relative(nbf, now)))
                .unwrap_or_default();
            format!(
                "iat {} is {}{nbf} (leeway {leeway} s)",
                claims.iat,
                relative(claims.iat, now)
            )
        },
    ));
    checks.push(checked(
        "token.cnf",
        at::check_confirmation(claims),
        |()| match claims.binding() {
            Binding::Dpop(jkt) => format!("bound to a DPoP key: cnf.jkt {jkt}"),
            Binding::Certificate(x5t) => {
                format!("bound to a certificate: cnf.x5t#S256 {}", x5t.as_str())
            }
            _ => "no cnf: a bearer token, not sender-constrained".to_owned(),
        },
        || match &claims.cnf {
            Some(cnf) if cnf.jkt.is_some() => "cnf holds both jkt and x5t#S256".to_owned(),
            _ => "cnf holds neither jkt nor x5t#S256".to_owned(),
        },
    ));
}

/// Rule 12b and standards §2.8 as a check: the token's `cnf` against what was presented, by
/// [`Binding::check`].
///
/// ```
/// use keybound_core::access_token::{AccessTokenClaims, Audience, Confirmation};
/// use keybound_core::binding::Presented;
/// use keybound_core::challenge::Scheme;
/// use keybound_core::diagnose::{binding, Status};
/// use keybound_core::JwkThumbprint;
/// let jkt = JwkThumbprint::parse("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I").unwrap();
/// let other = JwkThumbprint::parse("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k").unwrap();
/// let claims = AccessTokenClaims {
///     iss: "https://as.example".into(), sub: "s".into(), aud: Audience::One("a".into()),
///     exp: 2, iat: 1, nbf: None, jti: "j".into(), client_id: "c".into(), scope: None,
///     cnf: Some(Confirmation { jkt: Some(jkt), x5t_s256: None }),
/// };
/// let presented = Presented { scheme: Scheme::DPoP, proof_key: Some(&other), certificate: None, accept_unbound: false };
/// let check = binding(&claims, &presented);
/// assert_eq!((check.status, check.reason), (Status::Fail, Some("key_mismatch")));
/// ```
#[must_use]
pub fn binding(claims: &AccessTokenClaims, presented: &Presented<'_>) -> Check {
    let bound = claims.binding();
    let context = || match (&bound, presented.proof_key, presented.certificate) {
        (Binding::Dpop(jkt), Some(key), _) => {
            format!("the token's cnf.jkt is {jkt}, the proof's key is {key}")
        }
        (Binding::Dpop(jkt), None, _) => format!(
            "the token is bound to jkt {jkt} and was presented with the {} scheme",
            presented.scheme.name()
        ),
        (Binding::Certificate(x5t), _, Some(cert)) => format!(
            "the token's cnf.x5t#S256 is {}, the certificate's is {}",
            x5t.as_str(),
            cert.as_str()
        ),
        _ => String::new(),
    };
    checked(
        "binding",
        bound.check(presented),
        |()| match &bound {
            Binding::Dpop(jkt) => format!("the proof's key is the token's cnf.jkt {jkt}"),
            Binding::Certificate(x5t) => {
                format!(
                    "the certificate is the token's cnf.x5t#S256 {}",
                    x5t.as_str()
                )
            }
            _ => "an unbound bearer token, accepted as such".to_owned(),
        },
        context,
    )
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use serde_json::json;

    use super::*;
    use crate::access_token::{AccessTokenSigner, Confirmation};
    use crate::jws::sign_compact;
    use crate::{JwkThumbprint, SigningKey};

    const NOW: u64 = 1_700_000_000;
    const ISS: &str = "https://as.example";
    const AUD: &str = "https://as.example/api";
    const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

    struct Fixture {
        signer: AccessTokenSigner,
        keys: KeySet,
    }

    fn fixture() -> Fixture {
        let (key, _) = SigningKey::generate(Algorithm::Es256, &SystemRandom::new()).unwrap();
        let signer = AccessTokenSigner::new(key, "k1");
        let jwks = json!({ "keys": [signer.jwks_entry()] }).to_string();
        let keys = KeySet::from_jwks_json(jwks.as_bytes()).unwrap();
        Fixture { signer, keys }
    }

    fn claims() -> AccessTokenClaims {
        AccessTokenClaims {
            iss: ISS.into(),
            sub: "alice".into(),
            aud: Audience::One(AUD.into()),
            exp: NOW + 300,
            iat: NOW,
            nbf: None,
            jti: "t-1".into(),
            client_id: "app".into(),
            scope: None,
            cnf: Some(Confirmation {
                jkt: JwkThumbprint::parse(JKT),
                x5t_s256: None,
            }),
        }
    }

    fn run(f: &Fixture, token: &str, keys: bool) -> TokenDiagnosis {
        let expect = TokenExpectations {
            keys: keys.then_some(&f.keys),
            issuer: Some(ISS),
            audience: Some(AUD),
        };
        access_token(token, &expect, UnixTime::from_secs(NOW))
    }

    fn status(d: &TokenDiagnosis, name: &str) -> Status {
        d.checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}"))
            .status
    }

    /// The verifier's error is the reason of some failed itemized check; no failure, no error.
    fn assert_consistent(d: &TokenDiagnosis) {
        let failed: Vec<&Check> = d
            .checks
            .iter()
            .filter(|c| c.failed() && c.name != "token.verified")
            .collect();
        match &d.verdict {
            None => {}
            Some(Ok(_)) => assert!(failed.is_empty(), "accepted, yet {failed:?}"),
            Some(Err(e)) => assert!(
                failed.iter().any(|c| c.reason == Some(e.reason())),
                "{e:?} not explained by {failed:#?}"
            ),
        }
    }

    #[test]
    fn a_valid_token_passes_and_without_keys_is_not_verified() {
        let f = fixture();
        let token = f.signer.sign(&claims()).unwrap();
        let d = run(&f, &token, true);
        assert!(matches!(d.verdict, Some(Ok(_))));
        assert!(
            d.checks.iter().all(|c| c.status == Status::Pass),
            "{:#?}",
            d.checks
        );
        assert_eq!(d.checks.len(), 13);
        assert_consistent(&d);

        let d = run(&f, &token, false);
        assert!(d.verdict.is_none());
        assert_eq!(status(&d, "token.signature"), Status::Skipped);
        assert_eq!(status(&d, "token.verified"), Status::Skipped);
        assert_eq!(status(&d, "token.exp"), Status::Pass);
        assert!(d.parsed.is_some());
    }

    #[test]
    fn each_claim_failure_is_itemized() {
        let f = fixture();
        let mut expired = claims();
        expired.exp = NOW - 60;
        let mut future = claims();
        future.iat = NOW + 600;
        let mut other_issuer = claims();
        other_issuer.iss = "https://evil.example".into();
        let mut other_audience = claims();
        other_audience.aud = Audience::Many(vec!["https://other.example".into()]);
        let mut both = claims();
        both.cnf = Some(Confirmation {
            jkt: JwkThumbprint::parse(JKT),
            x5t_s256: crate::CertThumbprint::parse(JKT),
        });
        for (name, claims) in [
            ("token.exp", expired),
            ("token.iat", future),
            ("token.iss", other_issuer),
            ("token.aud", other_audience),
            ("token.cnf", both),
        ] {
            let token = f.signer.sign(&claims).unwrap();
            let d = run(&f, &token, true);
            assert_eq!(status(&d, name), Status::Fail, "{name}: {:#?}", d.checks);
            assert_eq!(status(&d, "token.signature"), Status::Pass, "{name}");
            assert_eq!(status(&d, "token.verified"), Status::Fail, "{name}");
            assert_consistent(&d);
        }
        let mut expired = claims();
        expired.exp = NOW - 60;
        let d = run(&f, &f.signer.sign(&expired).unwrap(), false);
        let exp = d.checks.iter().find(|c| c.name == "token.exp").unwrap();
        assert!(exp.detail.contains("60 s ago"), "{}", exp.detail);
    }

    #[test]
    fn header_and_shape_failures() {
        let f = fixture();
        let (key, _) = SigningKey::generate(Algorithm::Es256, &SystemRandom::new()).unwrap();
        let payload = serde_json::to_string(&claims()).unwrap();
        let forged = |header: Value| sign_compact(&header.to_string(), &payload, &key).unwrap();
        let d = run(
            &f,
            &forged(json!({"typ": "JWT", "alg": "ES256", "kid": "k1"})),
            true,
        );
        assert_eq!(status(&d, "token.typ"), Status::Fail);
        assert_eq!(
            status(&d, "token.signature"),
            Status::Fail,
            "k1 did not sign it"
        );
        assert_consistent(&d);
        let d = run(
            &f,
            &forged(json!({"typ": "at+jwt", "alg": "ES256", "kid": "nope"})),
            true,
        );
        assert_eq!(
            d.checks
                .iter()
                .find(|c| c.name == "token.signature")
                .unwrap()
                .reason,
            Some("unknown_key")
        );
        assert_consistent(&d);
        let d = run(&f, &forged(json!({"typ": "at+jwt", "alg": "HS256"})), true);
        assert_eq!(status(&d, "token.alg"), Status::Fail);
        assert_eq!(status(&d, "token.kid"), Status::Fail);
        assert_eq!(status(&d, "token.signature"), Status::Skipped);
        assert_consistent(&d);

        let unknown_cnf = json!({"iss": ISS, "sub": "a", "aud": AUD, "exp": NOW + 9, "iat": NOW,
            "jti": "j", "client_id": "c", "cnf": {"jwk": {}}});
        let token = sign_compact(
            &json!({"typ": "at+jwt", "alg": "ES256", "kid": "k1"}).to_string(),
            &unknown_cnf.to_string(),
            &key,
        )
        .unwrap();
        let d = run(&f, &token, false);
        let check = d.checks.iter().find(|c| c.name == "token.claims").unwrap();
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("unknown field"), "{}", check.detail);
        assert_eq!(status(&d, "token.exp"), Status::Skipped);

        let d = run(&f, "opaque-token", true);
        assert_eq!(status(&d, "token.format"), Status::Fail);
        assert_eq!(status(&d, "token.exp"), Status::Skipped);
        assert!(matches!(
            d.verdict,
            Some(Err(AccessTokenError::Malformed(_)))
        ));
        assert_consistent(&d);
    }

    #[test]
    fn missing_issuer_and_audience_are_skipped_not_guessed() {
        let f = fixture();
        let token = f.signer.sign(&claims()).unwrap();
        let expect = TokenExpectations {
            keys: Some(&f.keys),
            issuer: None,
            audience: None,
        };
        let d = access_token(&token, &expect, UnixTime::from_secs(NOW));
        assert_eq!(status(&d, "token.iss"), Status::Skipped);
        assert_eq!(status(&d, "token.aud"), Status::Skipped);
        assert!(matches!(d.verdict, Some(Ok(_))));
        let verified = d.checks.last().unwrap();
        assert!(
            verified.detail.contains("iss, aud not compared"),
            "{}",
            verified.detail
        );
    }

    #[test]
    fn binding_check_uses_binding_rules() {
        let jkt = JwkThumbprint::parse(JKT).unwrap();
        let presented = |key| Presented {
            scheme: crate::challenge::Scheme::DPoP,
            proof_key: key,
            certificate: None,
            accept_unbound: false,
        };
        let ok = binding(&claims(), &presented(Some(&jkt)));
        assert_eq!(ok.status, Status::Pass);
        let mut unbound = claims();
        unbound.cnf = None;
        let check = binding(&unbound, &presented(Some(&jkt)));
        assert_eq!(check.reason, Some("not_dpop_bound"));
        let bearer = Presented {
            scheme: crate::challenge::Scheme::Bearer,
            ..presented(None)
        };
        assert_eq!(
            binding(&claims(), &bearer).reason,
            Some("dpop_token_as_bearer")
        );
    }
}
