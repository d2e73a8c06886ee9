//! [`ProofVerifier::diagnose`]: every check of [`ProofVerifier::verify`], one by one, for a
//! person debugging an `invalid_dpop_proof` (`keybound inspect`). Servers call `verify`.

use serde_json::{Map, Value};

use super::verify::{
    check_alg_fits_key, check_ath, check_htm, check_htu, check_jti, check_no_crit, check_nonce,
    check_signature, check_typ, header_jwk, numeric_date, parse_htu, parse_proof, string,
};
use super::{MAX_JTI_LEN, NoncePolicy, ProofError, ProofRequest, ProofVerifier, VerifiedProof};
use crate::alg::KeyKind;
use crate::diagnose::{Check, alg_names, checked, relative, show};
use crate::htu::Htu;
use crate::jwk::PublicJwk;

/// Every check of a proof, run independently, next to [`ProofVerifier::verify`]'s verdict.
#[derive(Debug)]
pub struct ProofDiagnosis {
    /// The decoded JOSE header, if the proof is a compact JWS.
    pub header: Option<Map<String, Value>>,
    /// The decoded claims, if the proof is a compact JWS.
    pub claims: Option<Map<String, Value>>,
    /// The proof's `jwk`, if it is a usable public key (even when other checks fail), e.g. to
    /// compare its thumbprint with a token's `cnf.jkt`.
    pub jwk: Option<PublicJwk>,
    /// The checks in the verifier's order; the last one, `proof.verified`, is the verdict.
    pub checks: Vec<Check>,
    /// What [`ProofVerifier::verify`] says. The overall answer: the checks only explain it.
    pub verdict: Result<VerifiedProof, ProofError>,
}

const PROOF_CHECKS: [&str; 14] = [
    "proof.typ",
    "proof.crit",
    "proof.alg",
    "proof.jwk",
    "proof.alg_key",
    "proof.signature",
    "proof.jti",
    "proof.htm",
    "proof.htu",
    "proof.iat",
    "proof.ath",
    "proof.nonce",
    "proof.replay",
    "proof.verified",
];

impl ProofVerifier {
    /// Runs every check of [`ProofVerifier::verify`] on `proof` independently (a failed check
    /// does not hide the later ones), with the same check functions, and returns them with
    /// `verify`'s own verdict. Costs several times a `verify`: meant for tools, not servers.
    ///
    /// ```
    /// use aws_lc_rs::rand::SystemRandom;
    /// use keybound_core::dpop::{NoncePolicy, ProofBuilder, ProofRequest, ProofVerifier};
    /// use keybound_core::diagnose::Status;
    /// use keybound_core::{Algorithm, Htu, SigningKey, UnixTime};
    ///
    /// let rng = SystemRandom::new();
    /// let (key, _) = SigningKey::generate(Algorithm::Es256, &rng).unwrap();
    /// let now = UnixTime::from_secs(1_700_000_000);
    /// let proof = ProofBuilder::new("GET", "https://rs.example/a", now).sign(&key, &rng).unwrap();
    /// let htu = Htu::parse("https://rs.example/b").unwrap();
    /// let request = ProofRequest { method: "GET", htu: &htu, now, access_token: None, nonce: NoncePolicy::NotUsed };
    /// let diagnosis = ProofVerifier::default().diagnose(&proof, &request);
    /// let htu_check = diagnosis.checks.iter().find(|c| c.name == "proof.htu").unwrap();
    /// assert_eq!(htu_check.status, Status::Fail);
    /// assert_eq!(htu_check.reason, Some("htu_mismatch"));
    /// assert!(diagnosis.verdict.is_err());
    /// ```
    #[must_use]
    pub fn diagnose(&self, proof: &str, request: &ProofRequest<'_>) -> ProofDiagnosis {
        let verdict = self.verify(proof, request);
        let mut checks = Vec::with_capacity(PROOF_CHECKS.len() + 1);
        let jws = match parse_proof(proof) {
            Ok(jws) => {
                checks.push(Check::pass(
                    "proof.format",
                    format!("a compact JWS of {} bytes", proof.len()),
                ));
                jws
            }
            Err(error) => {
                checks.push(checked(
                    "proof.format",
                    Err::<(), _>(error),
                    |()| String::new(),
                    String::new,
                ));
                checks.extend(
                    PROOF_CHECKS[..PROOF_CHECKS.len() - 1]
                        .iter()
                        .map(|name| Check::skipped(name, "not a JWS")),
                );
                checks.push(verdict_check(&verdict));
                return ProofDiagnosis {
                    header: None,
                    claims: None,
                    jwk: None,
                    checks,
                    verdict,
                };
            }
        };

        let header = jws.header();
        checks.push(checked(
            "proof.typ",
            check_typ(header),
            |()| format!("typ {}", show(header.get("typ"))),
            || format!("typ is {}", show(header.get("typ"))),
        ));
        checks.push(checked(
            "proof.crit",
            check_no_crit(header),
            |()| "no crit header".to_owned(),
            String::new,
        ));
        let accepted = alg_names(self.algorithms());
        let alg = self.check_alg(header);
        checks.push(checked(
            "proof.alg",
            alg.clone(),
            |alg| format!("{alg} (accepted: {accepted})"),
            || format!("alg is {}; accepted: {accepted}", show(header.get("alg"))),
        ));
        let jwk = header_jwk(header);
        checks.push(checked(
            "proof.jwk",
            jwk.as_ref().map_err(Clone::clone),
            |jwk| {
                format!(
                    "a public {:?} key, thumbprint (jkt) {}",
                    jwk.kind(),
                    jwk.thumbprint()
                )
            },
            String::new,
        ));
        let fits = match (&alg, &jwk) {
            (Ok(alg), Ok(jwk)) => Some(check_alg_fits_key(jwk, *alg).map(|()| *alg)),
            _ => None,
        };
        checks.push(match &fits {
            None => Check::skipped("proof.alg_key", "not checked: needs a usable alg and jwk"),
            Some(result) => checked(
                "proof.alg_key",
                result.clone(),
                |alg| format!("{alg} fits the key"),
                || {
                    format!(
                        "{} with a {:?} key",
                        show(header.get("alg")),
                        jwk_kind(&jwk)
                    )
                },
            ),
        });
        checks.push(match (&fits, &jwk) {
            (Some(Ok(alg)), Ok(jwk)) => checked(
                "proof.signature",
                check_signature(&jws, jwk, *alg),
                |()| "verifies with the key in jwk".to_owned(),
                String::new,
            ),
            _ => Check::skipped(
                "proof.signature",
                "not checked: needs a usable alg and jwk that fit",
            ),
        });

        let claims = jws.payload();
        let jti = string(claims, "jti").and_then(|jti| check_jti(jti).map(|()| jti));
        checks.push(checked(
            "proof.jti",
            jti,
            |jti| format!("{} bytes", jti.len()),
            || format!("jti must be 1 to {MAX_JTI_LEN} bytes"),
        ));
        let htm = string(claims, "htm");
        checks.push(checked(
            "proof.htm",
            htm.and_then(|htm| check_htm(htm, request.method)),
            |()| format!("{:?}", request.method),
            || {
                format!(
                    "htm is {}, the request method is {:?}",
                    show(claims.get("htm")),
                    request.method
                )
            },
        ));
        let htu = string(claims, "htu");
        checks.push(checked(
            "proof.htu",
            htu.clone()
                .and_then(parse_htu)
                .and_then(|claimed| check_htu(&claimed, request.htu)),
            |()| {
                format!(
                    "{} (claim and request normalise to the same URI)",
                    request.htu
                )
            },
            || htu_context(htu.ok(), request.htu),
        ));
        let now = request.now;
        let window = self.window();
        let accepted_window = format!(
            "accepted: up to {} s old and {} s ahead",
            window.max_age(),
            window.future_leeway()
        );
        let iat = numeric_date(claims, "iat");
        checks.push(checked(
            "proof.iat",
            iat.clone()
                .and_then(|iat| window.check(iat, now).map(|()| iat)),
            |iat| {
                format!(
                    "iat {iat}: created {} ({accepted_window})",
                    relative(iat.as_secs(), now)
                )
            },
            || match iat {
                Ok(iat) => format!(
                    "iat {iat} is {} ({accepted_window})",
                    relative(iat.as_secs(), now)
                ),
                Err(_) => String::new(),
            },
        ));
        checks.push(match request.access_token {
            None => Check::skipped(
                "proof.ath",
                format!(
                    "not checked: no access token given (ath is {})",
                    show(claims.get("ath"))
                ),
            ),
            Some(token) => checked(
                "proof.ath",
                check_ath(claims, Some(token)),
                |()| "the hash of the access token given".to_owned(),
                || {
                    format!(
                        "ath is {}, the access token given hashes to {:?}",
                        show(claims.get("ath")),
                        crate::AccessTokenHash::of(token).as_str()
                    )
                },
            ),
        });
        checks.push(nonce_check(
            check_nonce(claims, request.nonce, now),
            request.nonce,
            claims.get("nonce"),
        ));
        checks.push(Check::skipped(
            "proof.replay",
            "not checked: a server records each jti in its replay cache; reuse a proof and it is refused",
        ));
        checks.push(verdict_check(&verdict));
        ProofDiagnosis {
            header: Some(header.clone()),
            claims: Some(claims.clone()),
            jwk: jwk.ok(),
            checks,
            verdict,
        }
    }
}

fn kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::P256 => "EC P-256",
        KeyKind::P384 => "EC P-384",
        KeyKind::Ed25519 => "OKP Ed25519",
        _ => "RSA",
    }
}

fn jwk_kind(jwk: &Result<PublicJwk, ProofError>) -> &'static str {
    jwk.as_ref().map_or("unusable", |k| kind_name(k.kind()))
}

fn htu_context(claim: Option<&str>, expected: &Htu) -> String {
    match claim.map(|raw| (raw, Htu::parse(raw))) {
        Some((raw, Ok(normalised))) => {
            format!("the claim {raw:?} normalises to {normalised}, the request URI to {expected}")
        }
        Some((raw, Err(_))) => format!("the claim {raw:?}; the request URI is {expected}"),
        None => String::new(),
    }
}

fn nonce_check(
    result: Result<Option<crate::Nonce>, ProofError>,
    policy: NoncePolicy<'_>,
    claim: Option<&Value>,
) -> Check {
    let context = || match policy {
        NoncePolicy::Exactly(expected) => {
            format!("nonce is {}, the server gave {expected:?}", show(claim))
        }
        _ => format!("nonce is {}", show(claim)),
    };
    match (&result, policy) {
        (Ok(None), NoncePolicy::NotUsed) => Check::skipped(
            "proof.nonce",
            "not checked: no nonce given and none in the proof",
        ),
        (Ok(Some(_)), NoncePolicy::NotUsed) => Check::pass(
            "proof.nonce",
            format!("{} is well-formed (no nonce given to compare)", show(claim)),
        ),
        _ => checked(
            "proof.nonce",
            result,
            |nonce| match nonce {
                Some(nonce) => format!("{:?}", nonce.as_str()),
                None => "no nonce, none required".to_owned(),
            },
            context,
        ),
    }
}

fn verdict_check(verdict: &Result<VerifiedProof, ProofError>) -> Check {
    match verdict {
        Ok(_) => Check::pass("proof.verified", "ProofVerifier accepts the proof"),
        Err(error) => checked(
            "proof.verified",
            Err::<(), _>(error.clone()),
            |()| String::new(),
            || {
                format!(
                    "ProofVerifier answers {} ({})",
                    crate::ErrorCode::from(error),
                    error.reason()
                )
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use serde_json::json;

    use super::*;
    use crate::diagnose::Status;
    use crate::jws::sign_compact;
    use crate::{Algorithm, NonceKeyRing, NonceSecret, SigningKey, UnixTime};

    const NOW: u64 = 1_700_000_000;
    const URL: &str = "https://rs.example.com/api/res";
    const TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";

    fn key() -> SigningKey {
        SigningKey::generate(Algorithm::Es256, &SystemRandom::new())
            .unwrap()
            .0
    }

    fn jwk(key: &SigningKey) -> Value {
        serde_json::from_str(&key.public_jwk().to_json()).unwrap()
    }

    fn forge(header: &Value, claims: &Value, key: &SigningKey) -> String {
        sign_compact(&header.to_string(), &claims.to_string(), key).unwrap()
    }

    fn valid_parts(key: &SigningKey) -> (Value, Value) {
        (
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk(key)}),
            json!({
                "jti": "e1j3V_bKic8-LAEB", "htm": "GET", "htu": URL, "iat": NOW,
                "ath": crate::AccessTokenHash::of(TOKEN).as_str(),
            }),
        )
    }

    fn diagnose_with(proof: &str, nonce: NoncePolicy<'_>) -> ProofDiagnosis {
        let htu = Htu::parse(URL).unwrap();
        let request = ProofRequest {
            method: "GET",
            htu: &htu,
            now: UnixTime::from_secs(NOW),
            access_token: Some(TOKEN),
            nonce,
        };
        ProofVerifier::default().diagnose(proof, &request)
    }

    fn diagnose(proof: &str) -> ProofDiagnosis {
        diagnose_with(proof, NoncePolicy::NotUsed)
    }

    fn status(d: &ProofDiagnosis, name: &str) -> Status {
        d.checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}"))
            .status
    }

    /// The verdict and the itemized checks agree: the verifier's error is the reason of a
    /// failed check, and a proof with no failed check is accepted.
    fn assert_consistent(d: &ProofDiagnosis) {
        let failed: Vec<&Check> = d.checks.iter().filter(|c| c.failed()).collect();
        match &d.verdict {
            Ok(_) => assert!(failed.is_empty(), "accepted, yet {failed:?}"),
            Err(error) => {
                let explained = failed
                    .iter()
                    .any(|c| c.name != "proof.verified" && c.reason == Some(error.reason()));
                assert!(explained, "{error:?} not explained by {failed:#?}");
            }
        }
    }

    #[test]
    fn a_valid_proof_passes_every_check_it_can_run() {
        let key = key();
        let (h, c) = valid_parts(&key);
        let d = diagnose(&forge(&h, &c, &key));
        assert!(d.verdict.is_ok());
        assert_consistent(&d);
        for check in &d.checks {
            let expected = if matches!(check.name, "proof.nonce" | "proof.replay") {
                Status::Skipped
            } else {
                Status::Pass
            };
            assert_eq!(check.status, expected, "{check:?}");
        }
        assert_eq!(
            d.jwk.unwrap().thumbprint(),
            key.public_jwk().thumbprint(),
            "the key is exposed for the binding check"
        );
    }

    #[test]
    fn every_failure_is_itemized_and_later_checks_still_run() {
        let key = key();
        let (h, c) = valid_parts(&key);
        let cases: Vec<(&str, Value, Value)> = vec![
            ("proof.typ", json!({"typ": "JWT"}), json!({})),
            ("proof.typ", json!({"typ": null}), json!({})),
            ("proof.crit", json!({"crit": ["b64"]}), json!({})),
            ("proof.alg", json!({"alg": "RS256"}), json!({})),
            (
                "proof.jwk",
                json!({"jwk": {"kty": "oct", "k": "c2VjcmV0"}}),
                json!({}),
            ),
            ("proof.alg_key", json!({"alg": "EdDSA"}), json!({})),
            ("proof.jti", json!({}), json!({"jti": ""})),
            ("proof.htm", json!({}), json!({"htm": "POST"})),
            (
                "proof.htu",
                json!({}),
                json!({"htu": "https://rs.example.com/other"}),
            ),
            ("proof.htu", json!({}), json!({"htu": "/relative"})),
            ("proof.iat", json!({}), json!({"iat": NOW - 3600})),
            ("proof.iat", json!({}), json!({"iat": NOW + 3600})),
            ("proof.ath", json!({}), json!({"ath": "x"})),
            ("proof.ath", json!({}), json!({"ath": null})),
            ("proof.nonce", json!({}), json!({"nonce": "has\"quote"})),
        ];
        for (name, header_patch, claims_patch) in cases {
            let (mut header, mut claims) = (h.clone(), c.clone());
            for (target, patch) in [(&mut header, header_patch), (&mut claims, claims_patch)] {
                for (k, v) in patch.as_object().unwrap() {
                    if v.is_null() {
                        target.as_object_mut().unwrap().remove(k);
                    } else {
                        target[k] = v.clone();
                    }
                }
            }
            let d = diagnose(&forge(&header, &claims, &key));
            assert_eq!(status(&d, name), Status::Fail, "{name}: {:#?}", d.checks);
            assert_eq!(status(&d, "proof.verified"), Status::Fail, "{name}");
            assert_consistent(&d);
            // A failure does not hide the checks after it: the forged proof is signed
            // correctly, so the signature check runs and passes whenever alg and jwk allow.
            let signature = if matches!(name, "proof.alg" | "proof.jwk" | "proof.alg_key") {
                Status::Skipped
            } else {
                Status::Pass
            };
            assert_eq!(status(&d, "proof.signature"), signature, "{name}");
            assert_eq!(status(&d, "proof.htm") == Status::Pass, name != "proof.htm");
        }
    }

    #[test]
    fn several_failures_are_all_reported() {
        let key = key();
        let (h, mut c) = valid_parts(&key);
        c["htu"] = json!("https://rs.example.com/other");
        c["iat"] = json!(NOW - 3600);
        c["htm"] = json!("POST");
        let d = diagnose(&forge(&h, &c, &key));
        for name in ["proof.htm", "proof.htu", "proof.iat", "proof.verified"] {
            assert_eq!(status(&d, name), Status::Fail, "{name}");
        }
        assert_eq!(status(&d, "proof.signature"), Status::Pass);
        assert_eq!(d.verdict.unwrap_err(), ProofError::HtmMismatch);
        let htu = d.checks.iter().find(|c| c.name == "proof.htu").unwrap();
        assert!(
            htu.detail.contains("https://rs.example.com/other")
                && htu.detail.contains("https://rs.example.com/api/res"),
            "both normalised forms: {}",
            htu.detail
        );
        let iat = d.checks.iter().find(|c| c.name == "proof.iat").unwrap();
        assert!(iat.detail.contains("3600 s ago"), "{}", iat.detail);
    }

    #[test]
    fn a_bad_signature_and_a_bad_shape() {
        let key = key();
        let (h, c) = valid_parts(&key);
        let proof = forge(&h, &c, &key);
        let (input, _) = proof.rsplit_once('.').unwrap();
        let other = forge(&h, &c, &self::key());
        let (_, foreign_signature) = other.rsplit_once('.').unwrap();
        let d = diagnose(&format!("{input}.{foreign_signature}"));
        assert_eq!(status(&d, "proof.signature"), Status::Fail);
        assert_eq!(
            status(&d, "proof.htu"),
            Status::Pass,
            "claims still checked"
        );
        assert_consistent(&d);

        let d = diagnose("not.a-jws");
        assert_eq!(status(&d, "proof.format"), Status::Fail);
        assert_eq!(status(&d, "proof.htu"), Status::Skipped);
        assert_eq!(status(&d, "proof.verified"), Status::Fail);
        assert!(d.header.is_none() && d.jwk.is_none());
        assert_consistent(&d);
    }

    #[test]
    fn nonce_policies() {
        let key = key();
        let (h, mut c) = valid_parts(&key);
        let without = forge(&h, &c, &key);
        c["nonce"] = json!("n-1");
        let with = forge(&h, &c, &key);

        let d = diagnose_with(&with, NoncePolicy::Exactly("n-1"));
        assert_eq!(status(&d, "proof.nonce"), Status::Pass);
        assert!(d.verdict.is_ok());
        let d = diagnose_with(&with, NoncePolicy::Exactly("n-2"));
        assert_eq!(status(&d, "proof.nonce"), Status::Fail);
        assert_eq!(d.verdict.unwrap_err(), ProofError::NonceRejected);
        let d = diagnose_with(&without, NoncePolicy::Exactly("n-1"));
        assert_eq!(status(&d, "proof.nonce"), Status::Fail);
        assert_eq!(d.verdict.unwrap_err(), ProofError::NonceRequired);
        let d = diagnose_with(&with, NoncePolicy::NotUsed);
        assert_eq!(status(&d, "proof.nonce"), Status::Pass);

        let secret = NonceSecret::new(&[7; 32]).unwrap();
        let ring = NonceKeyRing::new("rs", &secret, None);
        let d = diagnose_with(&with, NoncePolicy::Required(&ring));
        assert_eq!(status(&d, "proof.nonce"), Status::Fail);
        assert_consistent(&d);
    }
}
