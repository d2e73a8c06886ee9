//! `POST /introspect` (RFC 7662) and `POST /revoke` (RFC 7009), both client-authenticated.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use keybound_core::{AccessTokenClaims, ErrorCode, UnixTime};
use keybound_store::RefreshTokenState;
use keybound_tls::ClientCertificate;
use serde_json::{Value, json};

use crate::clients::Authenticated;
use crate::error::{OAuthError, no_store};
use crate::form::Form;
use crate::state::AppState;
use crate::token::{Caller, authenticate_client, sha256, store_unavailable};

async fn authenticated<'a>(
    state: &'a AppState,
    request: &Caller<'_>,
    form: &Form,
    path: &str,
    now: UnixTime,
) -> Result<Authenticated<'a>, OAuthError> {
    let auth = authenticate_client(state, request, form, path, now)?;
    auth.commit(state.replay.as_ref(), now)
        .await
        .map_err(|f| f.into_error(false))?;
    Ok(auth)
}

/// A verified, unrevoked access token of this AS.
async fn live_access_token(
    state: &AppState,
    token: &str,
    now: UnixTime,
) -> Result<Option<AccessTokenClaims>, OAuthError> {
    let Ok(claims) = state.published().own_tokens.verify(token, now) else {
        return Ok(None);
    };
    let revoked = state
        .grants
        .is_access_token_revoked(&claims.jti, now)
        .await
        .map_err(|e| store_unavailable(&e))?;
    Ok((!revoked).then_some(claims))
}

fn respond(body: Value) -> Response {
    let mut response = Json(body).into_response();
    no_store(&mut response);
    response
}

pub(crate) async fn introspect(
    State(state): State<Arc<AppState>>,
    certificate: Option<Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = Caller::new(&headers, certificate.as_deref());
    introspect_inner(&state, &caller, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn introspect_inner(
    state: &AppState,
    caller: &Caller<'_>,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let now = state.now();
    let form = Form::from_request(caller.headers, body)?;
    let auth = authenticated(state, caller, &form, "/introspect", now).await?;
    if auth.client.is_public() {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "public clients may not introspect",
        ));
    }
    let token = form.require("token")?;
    if let Some(claims) = live_access_token(state, token, now).await? {
        // RFC 9449 §6.2 and RFC 8705 §3.2: top-level cnf; token_type DPoP for DPoP-bound tokens.
        let dpop = claims.cnf.as_ref().is_some_and(|c| c.jkt.is_some());
        let mut body = json!({
            "active": true,
            "iss": claims.iss, "sub": claims.sub, "aud": claims.aud, "client_id": claims.client_id,
            "exp": claims.exp, "iat": claims.iat, "jti": claims.jti,
            "token_type": if dpop { "DPoP" } else { "Bearer" },
        });
        if let Some(scope) = claims.scope {
            body["scope"] = json!(scope);
        }
        if let Some(cnf) = claims.cnf {
            body["cnf"] = json!(cnf);
        }
        return Ok(respond(body));
    }
    let state_of = state
        .grants
        .refresh_token_state(&sha256(token), now)
        .await
        .map_err(|e| store_unavailable(&e))?;
    if let RefreshTokenState::Active(grant) = state_of
        && grant.client_id == auth.client.config.client_id
    {
        return Ok(respond(json!({
            "active": true, "token_type": "refresh_token", "client_id": grant.client_id,
            "sub": grant.subject, "scope": grant.scope, "exp": grant.expires_at.as_secs(),
        })));
    }
    Ok(respond(json!({ "active": false })))
}

pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    certificate: Option<Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = Caller::new(&headers, certificate.as_deref());
    revoke_inner(&state, &caller, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// RFC 7009 §2.2: 200 whether or not the token was valid; only the owning client revokes.
async fn revoke_inner(
    state: &AppState,
    caller: &Caller<'_>,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let now = state.now();
    let form = Form::from_request(caller.headers, body)?;
    let auth = authenticated(state, caller, &form, "/revoke", now).await?;
    let token = form.require("token")?;
    let client_id = &auth.client.config.client_id;
    match state
        .grants
        .refresh_token_state(&sha256(token), now)
        .await
        .map_err(|e| store_unavailable(&e))?
    {
        RefreshTokenState::Active(grant) | RefreshTokenState::Used(grant)
            if &grant.client_id == client_id =>
        {
            state
                .grants
                .revoke_grant(&grant.id)
                .await
                .map_err(|e| store_unavailable(&e))?;
        }
        _ => {
            if let Some(claims) = live_access_token(state, token, now).await?
                && &claims.client_id == client_id
            {
                let expires = UnixTime::from_secs(claims.exp);
                state
                    .grants
                    .revoke_access_token(&claims.jti, expires)
                    .await
                    .map_err(|e| store_unavailable(&e))?;
            }
        }
    }
    Ok(respond(json!({})))
}
