//! The authorization code grant at `/token` (RFC 6749 §4.1.3, RFC 7636 §4.6, RFC 9449 §10).
//!
//! Every check reads; only the last step writes: the code is marked used and the grant created
//! in one store transaction, after PKCE, the redirect URI and the `dpop_jkt` binding passed. So
//! a thief's refused attempt does not burn the real client's code. A second use revokes what
//! the first issued.

use aws_lc_rs::digest;
use axum::response::Response;
use base64::Engine as _;
use keybound_core::{JwkThumbprint, UnixTime};
use keybound_store::{CodeState, Grant, GrantId, IssuedFromCode, Redemption};
use subtle::ConstantTimeEq as _;

use crate::clients::Client;
use crate::error::OAuthError;
use crate::form::Form;
use crate::state::AppState;
use crate::token::{
    TokenBinding, invalid_grant, mint, new_grant, respond, sha256, store_unavailable,
};

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
fn verifier_ok(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.6: `BASE64URL(SHA256(verifier)) == challenge`, compared in constant time.
fn pkce_holds(verifier: &str, challenge: &str) -> bool {
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    verifier_ok(verifier) && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

pub(crate) async fn redeem(
    state: &AppState,
    client: &Client,
    form: &Form,
    binding: &TokenBinding,
    now: UnixTime,
) -> Result<Response, OAuthError> {
    let Some(store) = state.authz.clone() else {
        return Err(invalid_grant("the authorization code flow is not enabled"));
    };
    let code = form.require("code")?;
    let redirect_uri = form.require("redirect_uri")?;
    let verifier = form.require("code_verifier")?;
    let code_hash = sha256(code);
    let record = match store
        .code_state(&code_hash, now)
        .await
        .map_err(|e| store_unavailable(&e))?
    {
        CodeState::Unused(record) => record,
        CodeState::Used => {
            // RFC 6749 §4.1.2: revoke what the first use issued.
            let grant = store
                .revoke_code_issuance(&code_hash, now)
                .await
                .map_err(|e| store_unavailable(&e))?;
            tracing::warn!(?grant, client = %client.config.client_id, "authorization code reused: its tokens are revoked");
            return Err(invalid_grant("the authorization code was already used"));
        }
        _ => {
            return Err(invalid_grant(
                "the authorization code is invalid or expired",
            ));
        }
    };
    if record.client_id != client.config.client_id {
        return Err(invalid_grant(
            "the authorization code was issued to another client",
        ));
    }
    if record.redirect_uri != redirect_uri {
        return Err(invalid_grant(
            "redirect_uri differs from the authorization request's",
        ));
    }
    if !pkce_holds(verifier, &record.code_challenge) {
        return Err(invalid_grant(
            "the code_verifier does not match the code_challenge",
        ));
    }
    // RFC 9449 §10: a code bound by dpop_jkt needs a proof by that key; none counts as a mismatch.
    if let Some(jkt) = &record.dpop_jkt {
        let bound = JwkThumbprint::parse(jkt);
        let proven = binding.proof().map(|p| p.thumbprint());
        if bound.is_none() || proven != bound.as_ref() {
            return Err(invalid_grant(if proven.is_none() {
                "this code is bound to a DPoP key (dpop_jkt): send a proof by that key"
            } else {
                "the DPoP proof key does not match dpop_jkt"
            }));
        }
    }
    let minted = mint(
        state,
        client,
        record.subject.clone(),
        &record.scope,
        binding,
        now,
    )?;
    let (grant, refresh, record_rt) =
        match new_grant(state, client, &record.subject, &record.scope, binding, now) {
            Some((grant, token, rt)) => (grant, Some(token), Some(rt)),
            None => (
                // Clients without refresh tokens still get a grant row, so a second use of the
                // code can revoke what was issued.
                Grant {
                    id: GrantId(state.random_token()),
                    client_id: client.config.client_id.clone(),
                    subject: record.subject.clone(),
                    scope: record.scope.clone(),
                    created_at: now,
                    expires_at: now
                        .saturating_add(state.settings.config.tokens.access_token_lifetime_secs),
                    dpop_jkt: None,
                    cert_x5t: None,
                },
                None,
                None,
            ),
        };
    let issued = IssuedFromCode {
        grant,
        refresh: record_rt,
        access_token_jti: minted.claims.jti.clone(),
        access_token_expires_at: UnixTime::from_secs(minted.claims.exp),
    };
    match store
        .redeem_code(&code_hash, &issued, now)
        .await
        .map_err(|e| store_unavailable(&e))?
    {
        Redemption::Redeemed => Ok(respond(
            state,
            &minted,
            &record.scope,
            binding,
            refresh,
            now,
        )),
        Redemption::Replayed(_) => Err(invalid_grant("the authorization code was already used")),
        _ => Err(invalid_grant(
            "the authorization code is invalid or expired",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc_7636_appendix_b_and_nothing_else() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_holds(verifier, challenge));
        assert!(!pkce_holds(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
            challenge
        ));
        // "plain" (the verifier as its own challenge) never passes.
        assert!(!pkce_holds(challenge, challenge));
        assert!(!verifier_ok("short"));
        assert!(!verifier_ok(&"a".repeat(129)));
        assert!(!verifier_ok(&format!("{}!", "a".repeat(43))));
    }
}
