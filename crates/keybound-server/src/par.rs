//! `POST /par` (RFC 9126): a client pushes its authorization request, authenticated, and gets
//! a short-lived, single-use `request_uri`. A `DPoP` proof on the push binds the future code to
//! its key (RFC 9449 §10.1).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use keybound_core::{ErrorCode, Htu};
use keybound_tls::ClientCertificate;
use serde_json::json;

use crate::authorize::{client_and_redirect, validate};
use crate::error::{OAuthError, no_store};
use crate::form::Form;
use crate::state::AppState;
use crate::token::{
    Caller, authenticate_client, record_proof, sha256, store_unavailable, verify_proof_at,
};

/// Parameters that authenticate the client, not part of the authorization request.
const AUTH_PARAMS: [&str; 3] = ["client_secret", "client_assertion", "client_assertion_type"];

pub(crate) async fn par(
    State(state): State<Arc<AppState>>,
    certificate: Option<Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = Caller::new(&headers, certificate.as_deref());
    push(&state, &caller, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn push(state: &AppState, caller: &Caller<'_>, body: &[u8]) -> Result<Response, OAuthError> {
    let now = state.now();
    let Some(store) = state.authz.clone() else {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "pushed authorization requests are not enabled",
        ));
    };
    let form = Form::from_request(caller.headers, body)?;
    let auth = authenticate_client(state, caller, &form, "/par", now)?;
    let client = auth.client;
    let mut params: HashMap<String, String> = form
        .pairs()
        .filter(|(name, _)| !AUTH_PARAMS.contains(name))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if params.contains_key("request_uri") {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "request_uri cannot be pushed",
        ));
    }
    params.insert("client_id".into(), client.config.client_id.clone());
    let (_, redirect_uri) = client_and_redirect(state, &params).map_err(OAuthError::from)?;
    validate(client, redirect_uri, &params, now).map_err(OAuthError::from)?;
    // RFC 9449 §10.1: the proof's key is the dpop_jkt; both present and different is refused.
    let par_url = Htu::parse(&state.endpoint("/par")).ok();
    let alias = state
        .settings
        .mtls_base
        .as_ref()
        .and_then(|base| Htu::parse(&format!("{base}/par")).ok());
    let proof = verify_proof_at(
        state,
        caller.headers,
        client,
        now,
        [par_url.as_ref(), alias.as_ref()],
    )?;
    if let Some(proof) = &proof {
        let jkt = proof.thumbprint().as_str();
        if params.get("dpop_jkt").is_some_and(|given| given != jkt) {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "dpop_jkt differs from the DPoP proof's key",
            ));
        }
        params.insert("dpop_jkt".into(), jkt.to_owned());
    }
    auth.commit(state.replay.as_ref(), now)
        .await
        .map_err(|f| f.into_error(false))?;
    if let Some(proof) = &proof {
        record_proof(state, proof, now).await?;
    }
    let request_uri = format!("urn:ietf:params:oauth:request_uri:{}", state.random_token());
    let lifetime = state.settings.config.authorize.par_lifetime_secs;
    let stored = serde_json::to_string(&params).unwrap_or_default();
    store
        .put_pushed_request(
            &sha256(&request_uri),
            &client.config.client_id,
            &stored,
            now.saturating_add(lifetime),
        )
        .await
        .map_err(|e| store_unavailable(&e))?;
    let mut response = (
        StatusCode::CREATED,
        Json(json!({ "request_uri": request_uri, "expires_in": lifetime })),
    )
        .into_response();
    no_store(&mut response);
    Ok(response)
}
