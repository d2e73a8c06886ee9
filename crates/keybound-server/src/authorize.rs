//! `GET /authorize` (RFC 6749 §4.1, PKCE S256 required, `dpop_jkt`, RFC 9126 `request_uri`,
//! RFC 9207 `iss`), `POST /login` and `POST /consent`.
//!
//! Stateless between pages: the validated request travels in a signed hidden field, the
//! session is a signed cookie, and CSRF tokens are MACs bound to a cookie. Only codes and pushed
//! requests are stored, because they are single use.

use std::collections::HashMap;

use aws_lc_rs::hmac;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use keybound_core::{ErrorCode, JwkThumbprint, UnixTime};
use keybound_store::AuthorizationCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use zeroize::Zeroizing;

use crate::clients::Client;
use crate::form::Form;
use crate::pages;
use crate::state::AppState;
use crate::token::sha256;

const SESSION_COOKIE: &str = "kb_session";
const LOGIN_COOKIE: &str = "kb_login";
/// How long a person has to sign in and consent once the request is validated.
const REQUEST_LIFETIME: u64 = 600;
const MAX_STATE_LEN: usize = 1024;

/// A validated authorization request, carried between the pages in a signed field.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct AuthzRequest {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scope: String,
    pub(crate) state: Option<String>,
    pub(crate) code_challenge: String,
    pub(crate) dpop_jkt: Option<String>,
    exp: u64,
}

/// Why a request is refused, and how the refusal reaches the person.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Shown as a page: the redirect URI cannot be trusted (RFC 6749 §4.1.2.1).
    Page(String),
    /// Sent back to the client's redirect URI (or, at `/par`, as a JSON error).
    Client(ErrorCode, &'static str),
}

impl From<Refusal> for crate::error::OAuthError {
    /// Where there is no page to show (`/par`), every refusal is a JSON error.
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Page(why) => Self::new(ErrorCode::InvalidRequest, why),
            Refusal::Client(code, why) => Self::new(code, why),
        }
    }
}

fn mac(state: &AppState, purpose: &str, data: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(&state.session_key);
    ctx.update(purpose.as_bytes());
    ctx.update(&[0]);
    ctx.update(data);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
}

fn mac_ok(state: &AppState, purpose: &str, data: &[u8], tag: &str) -> bool {
    let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(tag) else {
        return false;
    };
    let mut message = purpose.as_bytes().to_vec();
    message.push(0);
    message.extend_from_slice(data);
    hmac::verify(&state.session_key, &message, &tag).is_ok()
}

/// `base64url(json).mac`: readable by anyone, forgeable by no one.
fn seal<T: Serialize>(state: &AppState, purpose: &str, value: &T) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&json);
    format!("{body}.{}", mac(state, purpose, body.as_bytes()))
}

fn unseal<T: for<'de> Deserialize<'de>>(
    state: &AppState,
    purpose: &str,
    sealed: &str,
) -> Option<T> {
    let (body, tag) = sealed.split_once('.')?;
    if !mac_ok(state, purpose, body.as_bytes(), tag) {
        return None;
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

#[derive(Serialize, Deserialize)]
struct Session {
    sub: String,
    exp: u64,
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn set_cookie(state: &AppState, response: &mut Response, name: &str, value: &str, max_age: u64) {
    let secure = if state.settings.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    if let Ok(value) = HeaderValue::from_str(&text) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The signed-in user, if the session cookie is valid and unexpired.
fn session(state: &AppState, headers: &HeaderMap, now: UnixTime) -> Option<(String, String)> {
    let raw = cookie(headers, SESSION_COOKIE)?;
    let session: Session = unseal(state, "session", raw)?;
    (session.exp > now.as_secs()).then(|| (session.sub, raw.to_owned()))
}

/// The client and redirect URI, which decide whether errors can go back to the client.
pub(crate) fn client_and_redirect<'s>(
    state: &'s AppState,
    params: &HashMap<String, String>,
) -> Result<(&'s Client, String), Refusal> {
    let client = params
        .get("client_id")
        .and_then(|id| state.clients.get(id))
        .ok_or_else(|| Refusal::Page("unknown client".into()))?;
    let redirect = params
        .get("redirect_uri")
        .ok_or_else(|| Refusal::Page("the request has no redirect_uri".into()))?;
    if !client.config.redirect_uris.iter().any(|r| r == redirect) {
        return Err(Refusal::Page(
            "the redirect_uri is not registered for this client".into(),
        ));
    }
    Ok((client, redirect.clone()))
}

/// Every check of an authorization request once the client and redirect URI are known.
pub(crate) fn validate(
    client: &Client,
    redirect_uri: String,
    params: &HashMap<String, String>,
    now: UnixTime,
) -> Result<AuthzRequest, Refusal> {
    let refuse = |code, why| Err(Refusal::Client(code, why));
    if !client.allows_grant("authorization_code") {
        return refuse(
            ErrorCode::UnauthorizedClient,
            "this client may not use the authorization code flow",
        );
    }
    if params.get("response_type").map(String::as_str) != Some("code") {
        return refuse(
            ErrorCode::UnsupportedResponseType,
            "response_type must be code",
        );
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return refuse(ErrorCode::InvalidRequest, "response_mode must be query");
    }
    // PKCE S256 for every client (RFC 9700 §2.1.1; "plain" is refused).
    let challenge = params
        .get("code_challenge")
        .filter(|c| c.len() == 43 && JwkThumbprint::parse(c).is_some());
    let Some(challenge) = challenge else {
        return refuse(
            ErrorCode::InvalidRequest,
            "code_challenge (S256) is required",
        );
    };
    if params.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return refuse(
            ErrorCode::InvalidRequest,
            "code_challenge_method must be S256",
        );
    }
    let dpop_jkt = match params.get("dpop_jkt") {
        Some(jkt) if JwkThumbprint::parse(jkt).is_none() => {
            return refuse(
                ErrorCode::InvalidRequest,
                "dpop_jkt is not a JWK thumbprint",
            );
        }
        other => other.cloned(),
    };
    let st = params.get("state").cloned();
    if st.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return refuse(ErrorCode::InvalidRequest, "state is too long");
    }
    let allowed: Vec<&str> = client.config.scopes.iter().map(String::as_str).collect();
    let scope = match params.get("scope") {
        None => allowed.join(" "),
        Some(requested) => {
            let mut out: Vec<&str> = Vec::new();
            for s in requested.split(' ').filter(|s| !s.is_empty()) {
                if !allowed.contains(&s) {
                    return refuse(ErrorCode::InvalidScope, "a requested scope is not allowed");
                }
                if !out.contains(&s) {
                    out.push(s);
                }
            }
            out.join(" ")
        }
    };
    Ok(AuthzRequest {
        client_id: client.config.client_id.clone(),
        redirect_uri,
        scope,
        state: st,
        code_challenge: challenge.clone(),
        dpop_jkt,
        exp: now.as_secs() + REQUEST_LIFETIME,
    })
}

/// `redirect_uri` with the response parameters and `iss` (RFC 9207) appended.
fn redirect_to(
    state: &AppState,
    redirect_uri: &str,
    pairs: Vec<(&str, &str)>,
    st: Option<&str>,
) -> Response {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.extend_pairs(pairs);
    if let Some(st) = st {
        query.append_pair("state", st);
    }
    let query = query.append_pair("iss", &state.settings.issuer).finish();
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{separator}{query}");
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn refuse_to_client(
    state: &AppState,
    request: &AuthzRequest,
    code: &ErrorCode,
    why: &str,
) -> Response {
    redirect_to(
        state,
        &request.redirect_uri,
        vec![("error", code.as_str()), ("error_description", why)],
        request.state.as_deref(),
    )
}

/// `GET /authorize`.
pub(crate) async fn authorize(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let now = state.now();
    let Ok(params) = Form::parse_query(query.as_deref().unwrap_or_default()) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "a parameter appears more than once",
        );
    };
    let Some(store) = state.authz.clone() else {
        return pages::error(
            StatusCode::NOT_FOUND,
            "the authorization endpoint is not enabled",
        );
    };
    // RFC 9126 §4: a pushed request replaces every other parameter.
    let pushed = params.contains_key("request_uri");
    let params = match params.get("request_uri") {
        Some(uri) => {
            let client_id = params.get("client_id").cloned().unwrap_or_default();
            match store
                .take_pushed_request(&sha256(uri), &client_id, now)
                .await
            {
                Ok(Some(json)) => match serde_json::from_str(&json) {
                    Ok(pushed) => pushed,
                    Err(_) => {
                        return pages::error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "a stored request is unreadable",
                        );
                    }
                },
                Ok(None) => {
                    return pages::error(
                        StatusCode::BAD_REQUEST,
                        "the request_uri is unknown, expired or already used",
                    );
                }
                Err(e) => {
                    tracing::error!(%e, "store unavailable at /authorize");
                    return pages::error(StatusCode::SERVICE_UNAVAILABLE, "try again in a moment");
                }
            }
        }
        None => params,
    };
    let (client, redirect_uri) = match client_and_redirect(&state, &params) {
        Ok(found) => found,
        Err(Refusal::Page(why)) => return pages::error(StatusCode::BAD_REQUEST, &why),
        Err(Refusal::Client(_, why)) => return pages::error(StatusCode::BAD_REQUEST, why),
    };
    let par_required = state
        .settings
        .config
        .authorize
        .require_pushed_authorization_requests
        || client.config.require_pushed_authorization_requests;
    let checked = if par_required && !pushed {
        Err(Refusal::Client(
            ErrorCode::InvalidRequest,
            "this client must use pushed authorization requests",
        ))
    } else {
        validate(client, redirect_uri.clone(), &params, now)
    };
    let request = match checked {
        Ok(request) => request,
        Err(Refusal::Client(code, why)) => {
            let st = params.get("state").map(String::as_str);
            return redirect_to(
                &state,
                &redirect_uri,
                vec![("error", code.as_str()), ("error_description", why)],
                st,
            );
        }
        Err(Refusal::Page(why)) => return pages::error(StatusCode::BAD_REQUEST, &why),
    };
    let sealed = seal(&state, "request", &request);
    match session(&state, &headers, now) {
        Some((subject, raw)) => consent_page(&state, &request, &subject, &sealed, &raw),
        None => login_page(&state, &request, &sealed, None),
    }
}

/// The user's subject if the password is right. The hash runs on a blocking thread, at most
/// one per core at a time ([`AppState::password_checks`]); a sign-in that cannot be checked
/// (the runtime is shutting down) fails.
async fn check_password(state: &Arc<AppState>, username: &str, password: &str) -> Option<String> {
    let _permit = state.password_checks.acquire().await.ok()?;
    let users = state.users.clone();
    let (username, password) = (username.to_owned(), Zeroizing::new(password.to_owned()));
    tokio::task::spawn_blocking(move || users.authenticate(&username, &password))
        .await
        .ok()
        .flatten()
}

fn login_page(
    state: &AppState,
    request: &AuthzRequest,
    sealed: &str,
    error: Option<&str>,
) -> Response {
    let nonce = state.random_token();
    let csrf = mac(state, "login-csrf", nonce.as_bytes());
    let mut response = pages::login(&request.client_id, sealed, &csrf, error);
    set_cookie(state, &mut response, LOGIN_COOKIE, &nonce, REQUEST_LIFETIME);
    response
}

fn consent_page(
    state: &AppState,
    request: &AuthzRequest,
    subject: &str,
    sealed: &str,
    session_raw: &str,
) -> Response {
    let csrf = mac(state, "consent-csrf", session_raw.as_bytes());
    let scopes: Vec<&str> = request.scope.split(' ').filter(|s| !s.is_empty()).collect();
    pages::consent(&request.client_id, subject, &scopes, sealed, &csrf)
}

/// The sealed request of a form, if it is authentic and unexpired.
fn form_request(
    state: &AppState,
    form: &Form,
    now: UnixTime,
) -> Result<AuthzRequest, Box<Response>> {
    let request: Option<AuthzRequest> = form
        .get("request")
        .and_then(|r| unseal(state, "request", r));
    match request {
        Some(r) if r.exp > now.as_secs() => Ok(r),
        _ => Err(Box::new(pages::error(
            StatusCode::BAD_REQUEST,
            "this sign-in form has expired or was altered",
        ))),
    }
}

fn form_of(headers: &HeaderMap, body: &[u8]) -> Result<Form, Box<Response>> {
    Form::from_request(headers, body).map_err(|_| {
        Box::new(pages::error(
            StatusCode::BAD_REQUEST,
            "the form is malformed",
        ))
    })
}

/// `POST /login`.
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.now();
    let form = match form_of(&headers, &body) {
        Ok(form) => form,
        Err(page) => return *page,
    };
    let csrf_ok = cookie(&headers, LOGIN_COOKIE).is_some_and(|nonce| {
        form.get("csrf")
            .is_some_and(|tag| mac_ok(&state, "login-csrf", nonce.as_bytes(), tag))
    });
    if !csrf_ok {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "the sign-in form is not from this server (CSRF check failed)",
        );
    }
    let request = match form_request(&state, &form, now) {
        Ok(request) => request,
        Err(page) => return *page,
    };
    let sealed = form.get("request").unwrap_or_default().to_owned();
    let (Some(username), Some(password)) = (form.get("username"), form.get("password")) else {
        return login_page(
            &state,
            &request,
            &sealed,
            Some("Enter a username and a password."),
        );
    };
    if let Some(wait) = state.failed_sign_ins.locked(username, now) {
        tracing::warn!(client = %request.client_id, "sign-in refused: too many failures for this username");
        let minutes = wait.div_ceil(60);
        let message =
            format!("Too many failed sign-ins for this username; try again in {minutes} min.");
        let mut page = login_page(&state, &request, &sealed, Some(&message));
        *page.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return page;
    }
    let Some(subject) = check_password(&state, username, password).await else {
        state.failed_sign_ins.failed(username, now);
        tracing::info!(client = %request.client_id, "sign-in failed");
        return login_page(
            &state,
            &request,
            &sealed,
            Some("The username or password is incorrect."),
        );
    };
    let lifetime = state.settings.config.authorize.session_lifetime_secs;
    let raw = seal(
        &state,
        "session",
        &Session {
            sub: subject.clone(),
            exp: now.as_secs() + lifetime,
        },
    );
    let mut response = consent_page(&state, &request, &subject, &sealed, &raw);
    set_cookie(&state, &mut response, SESSION_COOKIE, &raw, lifetime);
    set_cookie(&state, &mut response, LOGIN_COOKIE, "", 0);
    response
}

/// `POST /consent`.
pub(crate) async fn consent(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.now();
    let form = match form_of(&headers, &body) {
        Ok(form) => form,
        Err(page) => return *page,
    };
    // The session is read from the cookie set by /login (the form is not enough).
    let Some((subject, raw)) = session(&state, &headers, now) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "you are not signed in (or the session expired)",
        );
    };
    if !form
        .get("csrf")
        .is_some_and(|tag| mac_ok(&state, "consent-csrf", raw.as_bytes(), tag))
    {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "the consent form is not from this server (CSRF check failed)",
        );
    }
    let request = match form_request(&state, &form, now) {
        Ok(request) => request,
        Err(page) => return *page,
    };
    if form.get("decision") != Some("allow") {
        return refuse_to_client(
            &state,
            &request,
            &ErrorCode::AccessDenied,
            "the user denied the request",
        );
    }
    let Some(store) = state.authz.clone() else {
        return pages::error(
            StatusCode::NOT_FOUND,
            "the authorization endpoint is not enabled",
        );
    };
    let code = state.random_token();
    let record = AuthorizationCode {
        code_hash: sha256(&code),
        client_id: request.client_id.clone(),
        subject,
        scope: request.scope.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        dpop_jkt: request.dpop_jkt.clone(),
        expires_at: now.saturating_add(state.settings.config.authorize.code_lifetime_secs),
    };
    if let Err(e) = store.put_code(&record).await {
        tracing::error!(%e, "store unavailable: no code issued");
        return pages::error(StatusCode::SERVICE_UNAVAILABLE, "try again in a moment");
    }
    state.metrics.code_issued();
    redirect_to(
        &state,
        &request.redirect_uri,
        vec![("code", &code)],
        request.state.as_deref(),
    )
}
