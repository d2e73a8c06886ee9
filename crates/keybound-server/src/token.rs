//! `POST /token` (RFC 6749 §3.2): client authentication, the DPoP proof, then the grant.
//!
//! Order matters for "a failed request consumes nothing": every stateless check (client
//! credentials, the proof and its nonce) runs first; then the single-use records are written
//! (the client assertion's `jti`, the proof's `jti`); only then is a refresh token rotated.

use std::sync::Arc;

use aws_lc_rs::digest;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use keybound_core::access_token::{Audience, Confirmation};
use keybound_core::dpop::{ProofError, ProofRequest, VerifiedProof, single_dpop_header};
use keybound_core::{AccessTokenClaims, CertThumbprint, ErrorCode, Htu, JwkThumbprint, UnixTime};
use keybound_store::{Grant, GrantId, RefreshTokenRecord, RefreshTokenState, Rotation, StoreError};
use keybound_tls::ClientCertificate;
use serde_json::json;

use crate::clients::{AuthContext, AuthFailure, Authenticated, Client, Credentials};
use crate::error::{OAuthError, attach_nonce, no_store};
use crate::form::Form;
use crate::state::AppState;

/// What identifies the caller of an endpoint besides the form: its headers and its client
/// certificate (from the connection or a trusted proxy).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caller<'a> {
    pub(crate) headers: &'a HeaderMap,
    pub(crate) certificate: Option<&'a ClientCertificate>,
}

impl<'a> Caller<'a> {
    pub(crate) fn new(headers: &'a HeaderMap, certificate: Option<&'a ClientCertificate>) -> Self {
        Self {
            headers,
            certificate,
        }
    }
}

pub(crate) async fn token(
    State(state): State<Arc<AppState>>,
    certificate: Option<Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = Caller::new(&headers, certificate.as_deref());
    match handle(&state, &caller, &body).await {
        Ok(response) => response,
        Err(error) => {
            state.metrics.token_error(error.code().as_str());
            error.into_response()
        }
    }
}

/// Authenticates the client calling the endpoint at `path` (its URL is an accepted assertion
/// audience), counting and logging failures. Nothing is recorded yet: see `Authenticated::commit`.
pub(crate) fn authenticate_client<'a>(
    state: &'a AppState,
    caller: &Caller<'_>,
    form: &Form,
    path: &str,
    now: UnixTime,
) -> Result<Authenticated<'a>, OAuthError> {
    let credentials = Credentials::read(caller.headers, form)
        .map_err(|(failure, basic)| auth_failed(state, failure, basic, path))?;
    // Only registered ids are counted: memory stays bounded whatever ids are sent.
    let claimed = credentials
        .claimed_client_id()
        .filter(|id| state.clients.get(id).is_some());
    if let Some(wait) = claimed.and_then(|id| state.failed_authentications.locked(id, now)) {
        state.metrics.client_auth_failed("rate_limited");
        tracing::warn!(client = ?claimed, path, "client authentication refused: too many failures");
        return Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "too many failed authentications for this client; try again later",
        )
        .with_retry_after(wait));
    }
    let endpoint = state.endpoint(path);
    let ctx = AuthContext {
        now,
        issuer: &state.settings.issuer,
        endpoint_url: &endpoint,
        certificate: caller.certificate,
    };
    state
        .clients
        .authenticate(&credentials, form, &ctx)
        .map_err(|(failure, basic)| {
            if let Some(id) = claimed.filter(|_| failure.is_wrong_credential()) {
                state.failed_authentications.failed(id, now);
            }
            auth_failed(state, failure, basic, path)
        })
}

fn auth_failed(state: &AppState, failure: AuthFailure, basic: bool, path: &str) -> OAuthError {
    state.metrics.client_auth_failed(failure.reason());
    tracing::info!(
        reason = failure.reason(),
        path,
        "client authentication failed"
    );
    failure.into_error(basic)
}

pub(crate) fn store_unavailable(error: &StoreError) -> OAuthError {
    tracing::error!(%error, "store unavailable; refusing the request");
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the token store is unavailable; try again later",
    )
}

pub(crate) fn sha256(text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, text.as_bytes()).as_ref());
    out
}

async fn handle(
    state: &AppState,
    caller: &Caller<'_>,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let now = state.now();
    let headers = caller.headers;
    let form = Form::from_request(headers, body)?;
    let grant_type = form.require("grant_type")?;
    let auth = authenticate_client(state, caller, &form, "/token", now)?;
    let client = auth.client;
    if !matches!(
        grant_type,
        "client_credentials" | "refresh_token" | "authorization_code"
    ) {
        return Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            "supported: authorization_code, client_credentials, refresh_token",
        ));
    }
    if !client.allows_grant(grant_type) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use this grant type",
        ));
    }
    let binding = TokenBinding::decide(state, caller, client, now)?;

    // Every stateless check passed: record the single-use values.
    auth.commit(state.replay.as_ref(), now)
        .await
        .map_err(|failure| {
            state.metrics.client_auth_failed(failure.reason());
            failure.into_error(false)
        })?;
    if let TokenBinding::Dpop(proof) = &binding {
        record_proof(state, proof, now).await?;
    }

    match grant_type {
        "client_credentials" => client_credentials(state, client, &form, &binding, now).await,
        "authorization_code" => {
            crate::code_grant::redeem(state, client, &form, &binding, now).await
        }
        _ => refresh(state, client, &form, &binding, now).await,
    }
}

/// What an issued access token will be bound to: the DPoP proof's key, the client
/// certificate, or nothing. One token, one binding (standards §2.10).
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value per request, on the stack, never moved around"
)]
pub(crate) enum TokenBinding {
    Unbound,
    Dpop(VerifiedProof),
    Certificate(CertThumbprint),
}

impl TokenBinding {
    /// Stateless: checks the proof (if any) and the certificate binding rules; records nothing.
    fn decide(
        state: &AppState,
        caller: &Caller<'_>,
        client: &Client,
        now: UnixTime,
    ) -> Result<Self, OAuthError> {
        if !client.config.tls_client_certificate_bound_access_tokens {
            return Ok(
                verify_proof(state, caller.headers, client, now)?.map_or(Self::Unbound, Self::Dpop)
            );
        }
        // RFC 8705 §3: certificate-bound. A DPoP proof would make a second binding.
        if caller.headers.contains_key("dpop") {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "this client's tokens are bound to its TLS client certificate; do not send a DPoP proof",
            ));
        }
        // §3.4: the client opted in deliberately, so no certificate is an error, not a bearer token.
        caller
            .certificate
            .map(|c| Self::Certificate(c.thumbprint().clone()))
            .ok_or_else(|| {
                OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "this client's tokens are certificate-bound: connect with its TLS client certificate",
                )
            })
    }

    pub(crate) fn proof(&self) -> Option<&VerifiedProof> {
        match self {
            Self::Dpop(proof) => Some(proof),
            _ => None,
        }
    }

    fn confirmation(&self) -> Option<Confirmation> {
        match self {
            Self::Unbound => None,
            Self::Dpop(proof) => Some(Confirmation {
                jkt: Some(proof.thumbprint().clone()),
                x5t_s256: None,
            }),
            Self::Certificate(x5t) => Some(Confirmation {
                jkt: None,
                x5t_s256: Some(x5t.clone()),
            }),
        }
    }
}

/// RFC 9449 §5: the proof, if any, checked against this endpoint's public URL and the nonce policy.
fn verify_proof(
    state: &AppState,
    headers: &HeaderMap,
    client: &Client,
    now: UnixTime,
) -> Result<Option<VerifiedProof>, OAuthError> {
    if !headers.contains_key("dpop") && client.config.dpop_bound_access_tokens {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "this client must send a DPoP proof",
        ));
    }
    let urls = [
        Some(&state.settings.token_htu),
        state.settings.mtls_token_htu.as_ref(),
    ];
    verify_proof_at(state, headers, client, now, urls)
}

/// The `DPoP` proof of a POST to an AS endpoint, if one was sent: checked by the one verifier
/// against the endpoint's public URL, or its mTLS alias (RFC 8705 §5: two public URLs), and the
/// client's nonce policy. Records nothing.
pub(crate) fn verify_proof_at(
    state: &AppState,
    headers: &HeaderMap,
    client: &Client,
    now: UnixTime,
    urls: [Option<&Htu>; 2],
) -> Result<Option<VerifiedProof>, OAuthError> {
    let values: Vec<&[u8]> = headers
        .get_all("dpop")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if values.is_empty() {
        return Ok(None);
    }
    let request = |htu| ProofRequest {
        method: "POST",
        htu,
        now,
        access_token: None,
        nonce: state.nonce_policy(client),
    };
    let proof = single_dpop_header(values).map_err(|e| rejected_proof(state, &e, now))?;
    let [main, alias] = urls;
    let main = main.map_or(Err(ProofError::HtuMismatch), |htu| {
        state.proofs.verify(proof, &request(htu))
    });
    let result = match (main, alias) {
        (Err(ProofError::HtuMismatch), Some(alias)) => state.proofs.verify(proof, &request(alias)),
        (result, _) => result,
    };
    result.map(Some).map_err(|e| rejected_proof(state, &e, now))
}

/// Records a verified proof's `jti` (rule 11), once every stateless check has passed: a replay
/// is `invalid_dpop_proof`, an unavailable cache 503.
pub(crate) async fn record_proof(
    state: &AppState,
    proof: &VerifiedProof,
    now: UnixTime,
) -> Result<(), OAuthError> {
    let key = proof.replay_key();
    match state
        .replay
        .insert_once(*key.digest(), key.expires_at(), now)
        .await
    {
        Ok(true) => {
            state.metrics.proof_accepted();
            Ok(())
        }
        Ok(false) => Err(rejected_proof(state, &ProofError::Replayed, now)),
        Err(e) => Err(store_unavailable(&e)),
    }
}

fn rejected_proof(state: &AppState, error: &ProofError, now: UnixTime) -> OAuthError {
    state.metrics.proof_rejected(error.reason());
    tracing::info!(
        reason = error.reason(),
        "DPoP proof rejected at the token endpoint"
    );
    let code = ErrorCode::from(error);
    let nonce = (code == ErrorCode::UseDpopNonce).then(|| state.nonces.issue(now));
    let out = OAuthError::new(code, error.to_string());
    match nonce {
        Some(n) => out.with_nonce(n),
        None => out,
    }
}

/// The requested scopes if all are allowed; all allowed scopes if none were requested.
fn granted_scope(requested: Option<&str>, allowed: &[&str]) -> Result<String, OAuthError> {
    let Some(requested) = requested else {
        return Ok(allowed.join(" "));
    };
    let mut out: Vec<&str> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        if !allowed.contains(&scope) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "a requested scope is not allowed for this client",
            ));
        }
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    Ok(out.join(" "))
}

/// A new grant and its first refresh token, for clients registered with the `refresh_token`
/// grant (`None` for the others).
pub(crate) fn new_grant(
    state: &AppState,
    client: &Client,
    subject: &str,
    scope: &str,
    binding: &TokenBinding,
    now: UnixTime,
) -> Option<(Grant, String, RefreshTokenRecord)> {
    if !client.allows_grant("refresh_token") {
        return None;
    }
    let lifetimes = &state.settings.config.tokens;
    let grant = Grant {
        id: GrantId(state.random_token()),
        client_id: client.config.client_id.clone(),
        subject: subject.to_owned(),
        scope: scope.to_owned(),
        created_at: now,
        expires_at: now.saturating_add(lifetimes.grant_lifetime_secs),
        // Public clients' refresh tokens are bound like their access tokens (RFC 9449 §5,
        // RFC 8705 §4); confidential clients' are bound by client authentication.
        dpop_jkt: match binding {
            TokenBinding::Dpop(proof) if client.is_public() => {
                Some(proof.thumbprint().as_str().to_owned())
            }
            _ => None,
        },
        cert_x5t: match binding {
            TokenBinding::Certificate(x5t) if client.is_public() => Some(x5t.as_str().to_owned()),
            _ => None,
        },
    };
    let token = state.random_token();
    let record = RefreshTokenRecord {
        token_hash: sha256(&token),
        grant_id: grant.id.clone(),
        expires_at: now
            .saturating_add(lifetimes.refresh_token_lifetime_secs)
            .min(grant.expires_at),
    };
    Some((grant, token, record))
}

async fn client_credentials(
    state: &AppState,
    client: &Client,
    form: &Form,
    binding: &TokenBinding,
    now: UnixTime,
) -> Result<Response, OAuthError> {
    let allowed: Vec<&str> = client.config.scopes.iter().map(String::as_str).collect();
    let scope = granted_scope(form.get("scope"), &allowed)?;
    let subject = client.config.client_id.clone();
    let refresh = match new_grant(state, client, &subject, &scope, binding, now) {
        Some((grant, token, record)) => {
            state
                .grants
                .create_grant(&grant, &record)
                .await
                .map_err(|e| store_unavailable(&e))?;
            Some(token)
        }
        None => None,
    };
    issue(state, client, subject, &scope, binding, refresh, now)
}

pub(crate) fn invalid_grant(why: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, why)
}

/// Whether the request satisfies the grant's binding (public clients: RFC 9449 §5 for the
/// DPoP key, RFC 8705 §4 for the certificate).
pub(crate) fn binding_holds(grant: &Grant, binding: &TokenBinding) -> bool {
    if let Some(jkt) = &grant.dpop_jkt {
        let bound = JwkThumbprint::parse(jkt);
        return binding
            .proof()
            .is_some_and(|p| bound.as_ref() == Some(p.thumbprint()));
    }
    if let Some(x5t) = &grant.cert_x5t {
        let bound = CertThumbprint::parse(x5t);
        return matches!(binding, TokenBinding::Certificate(c) if bound.as_ref() == Some(c));
    }
    true
}

async fn refresh(
    state: &AppState,
    client: &Client,
    form: &Form,
    binding: &TokenBinding,
    now: UnixTime,
) -> Result<Response, OAuthError> {
    let presented = sha256(form.require("refresh_token")?);
    let grant = match state
        .grants
        .refresh_token_state(&presented, now)
        .await
        .map_err(|e| store_unavailable(&e))?
    {
        RefreshTokenState::Active(grant) => grant,
        RefreshTokenState::Used(grant) => {
            // RFC 9700 §4.14.2: reuse of a rotated token revokes the grant, when presented by
            // the client it belongs to with its binding (a thief without the key cannot revoke).
            if grant.client_id == client.config.client_id && binding_holds(&grant, binding) {
                let next = RefreshTokenRecord {
                    token_hash: sha256(&state.random_token()),
                    grant_id: grant.id.clone(),
                    expires_at: now,
                };
                state
                    .grants
                    .rotate_refresh_token(&presented, &next, now)
                    .await
                    .map_err(|e| store_unavailable(&e))?;
                tracing::warn!(grant = ?grant.id, client = %grant.client_id, "refresh token reuse: grant revoked");
            }
            return Err(invalid_grant("the refresh token was already used"));
        }
        _ => {
            return Err(invalid_grant(
                "the refresh token is invalid, expired or revoked",
            ));
        }
    };
    if grant.client_id != client.config.client_id {
        return Err(invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if !binding_holds(&grant, binding) {
        return Err(invalid_grant(if grant.cert_x5t.is_some() {
            "the client certificate does not match the refresh token's binding"
        } else {
            "the DPoP proof key does not match the refresh token's binding"
        }));
    }
    let granted: Vec<&str> = grant.scope.split(' ').filter(|s| !s.is_empty()).collect();
    let scope = granted_scope(form.get("scope"), &granted)?;
    let token = state.random_token();
    let next = RefreshTokenRecord {
        token_hash: sha256(&token),
        grant_id: grant.id.clone(),
        expires_at: now
            .saturating_add(state.settings.config.tokens.refresh_token_lifetime_secs)
            .min(grant.expires_at),
    };
    match state
        .grants
        .rotate_refresh_token(&presented, &next, now)
        .await
        .map_err(|e| store_unavailable(&e))?
    {
        Rotation::Rotated(grant) => issue(
            state,
            client,
            grant.subject,
            &scope,
            binding,
            Some(token),
            now,
        ),
        Rotation::ReuseDetected(_) => Err(invalid_grant("the refresh token was already used")),
        _ => Err(invalid_grant(
            "the refresh token is invalid, expired or revoked",
        )),
    }
}

fn issue(
    state: &AppState,
    client: &Client,
    subject: String,
    scope: &str,
    binding: &TokenBinding,
    refresh: Option<String>,
    now: UnixTime,
) -> Result<Response, OAuthError> {
    let minted = mint(state, client, subject, scope, binding, now)?;
    Ok(respond(state, &minted, scope, binding, refresh, now))
}

/// A signed access token, not yet sent.
pub(crate) struct Minted {
    pub(crate) token: String,
    pub(crate) claims: AccessTokenClaims,
}

/// Signs an access token for `subject`, bound as `binding` says.
pub(crate) fn mint(
    state: &AppState,
    client: &Client,
    subject: String,
    scope: &str,
    binding: &TokenBinding,
    now: UnixTime,
) -> Result<Minted, OAuthError> {
    let lifetime = state.settings.config.tokens.access_token_lifetime_secs;
    let claims = AccessTokenClaims {
        iss: state.settings.issuer.clone(),
        sub: subject,
        aud: Audience::One(state.settings.audience.clone()),
        exp: now.as_secs() + lifetime,
        iat: now.as_secs(),
        nbf: None,
        jti: state.random_token(),
        client_id: client.config.client_id.clone(),
        scope: (!scope.is_empty()).then(|| scope.to_owned()),
        cnf: binding.confirmation(),
    };
    let token = state.published().ring.signer().sign(&claims).map_err(|e| {
        tracing::error!(%e, "signing an access token failed");
        OAuthError::new(ErrorCode::ServerError, "could not sign the access token")
    })?;
    Ok(Minted { token, claims })
}

/// The token response (RFC 6749 §5.1; `token_type` DPoP for a DPoP-bound token).
pub(crate) fn respond(
    state: &AppState,
    minted: &Minted,
    scope: &str,
    binding: &TokenBinding,
    refresh: Option<String>,
    now: UnixTime,
) -> Response {
    let proof = binding.proof();
    state.metrics.token_issued(proof.is_some());
    let mut body = json!({
        "access_token": minted.token,
        "token_type": if proof.is_some() { "DPoP" } else { "Bearer" },
        "expires_in": minted.claims.exp.saturating_sub(minted.claims.iat),
    });
    if !scope.is_empty() {
        body["scope"] = json!(scope);
    }
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    let mut response = Json(body).into_response();
    no_store(&mut response);
    // A client that uses nonces (it must, or chose to) gets the next one with its token
    // (RFC 9449 §8.2), so its next request needs no challenge. Others are not given one:
    // they would put it in their proofs and the server would check it for nothing.
    if proof.is_some_and(|p| p.nonce().is_some()) {
        attach_nonce(&mut response, Some(&state.nonces.issue(now)));
    }
    response
}
