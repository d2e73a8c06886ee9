//! The authorization code flow at the AS, over its real routes: `/authorize` with PKCE S256,
//! `dpop_jkt`, state and `iss` (RFC 9207); the sign-in and consent pages with CSRF checks and a
//! session; PAR (RFC 9126) with a DPoP proof; the code grant with single-use codes and the
//! binding checked before the code is spent (standards §2.6, §5 #32, #33).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_lc_rs::rand::SystemRandom;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use common::{Harness, Reply, key, temp_dir};
use keybound_core::dpop::ProofBuilder;
use keybound_core::{Algorithm, SigningKey};

const REDIRECT: &str = "https://app.example.com/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const PASSWORD: &str = "correct horse battery";

async fn harness() -> Harness {
    harness_with("").await
}

async fn harness_with(authorize: &str) -> Harness {
    let hash = keybound_server::users::hash_password(PASSWORD).unwrap();
    let extra = format!(
        r#"
[authorize]
{authorize}

[[users]]
username = "alice"
password_argon2 = "{hash}"

[[clients]]
client_id = "spa"
auth_method = "none"
grant_types = ["authorization_code", "refresh_token"]
redirect_uris = ["{REDIRECT}"]
scopes = ["read", "profile"]
dpop_bound_access_tokens = true

[[clients]]
client_id = "par-only"
auth_method = "none"
grant_types = ["authorization_code"]
redirect_uris = ["{REDIRECT}"]
require_pushed_authorization_requests = true
"#
    );
    Harness::in_dir(temp_dir("code"), &extra).await
}

fn authorize_query(client_id: &str, jkt: Option<&str>, extra: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", "st-123"),
        ("scope", "read"),
    ]);
    if let Some(jkt) = jkt {
        q.append_pair("dpop_jkt", jkt);
    }
    q.extend_pairs(extra);
    format!("/authorize?{}", q.finish())
}

fn html(reply: &Reply) -> &str {
    reply.body.as_str().unwrap_or_default()
}

fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

fn set_cookie(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

async fn get(h: &Harness, path: &str, cookie: Option<&str>) -> Reply {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    h.send(request.body(Body::empty()).unwrap()).await
}

async fn post_form(h: &Harness, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Reply {
    let mut request =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    h.send(request.body(Body::from(body)).unwrap()).await
}

fn location_params(reply: &Reply) -> std::collections::HashMap<String, String> {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{:?}", reply.body);
    let location = reply.headers[header::LOCATION].to_str().unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    let query = location.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// Signs in as alice on the page `/authorize` answered, consents, and returns the redirect's
/// parameters and the session cookie.
async fn sign_in_and_allow(
    h: &Harness,
    authorize: &str,
) -> (std::collections::HashMap<String, String>, String) {
    let login = get(h, authorize, None).await;
    assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
    assert!(html(&login).contains("Sign in"));
    let login_cookie = set_cookie(&login, "kb_login").unwrap();
    let consent = post_form(
        h,
        "/login",
        Some(&login_cookie),
        &[
            ("request", &hidden(html(&login), "request")),
            ("csrf", &hidden(html(&login), "csrf")),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(consent.status, StatusCode::OK, "{:?}", consent.body);
    assert!(html(&consent).contains("Allow"));
    let session = set_cookie(&consent, "kb_session").unwrap();
    let done = post_form(
        h,
        "/consent",
        Some(&session),
        &[
            ("request", &hidden(html(&consent), "request")),
            ("csrf", &hidden(html(&consent), "csrf")),
            ("decision", "allow"),
        ],
    )
    .await;
    (location_params(&done), session)
}

fn proof(h: &Harness, key: &SigningKey) -> String {
    h.proof(key)
}

async fn exchange(h: &Harness, code: &str, key: Option<&SigningKey>, verifier: &str) -> Reply {
    let proof = key.map(|k| proof(h, k));
    let dpop: Vec<&str> = proof.iter().map(String::as_str).collect();
    h.post(
        "/token",
        None,
        &dpop,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

#[tokio::test]
async fn sign_in_consent_and_a_dpop_bound_exchange() {
    let h = harness().await;
    let key = key(Algorithm::Es256);
    let jkt = key.public_jwk().thumbprint().as_str().to_owned();
    let (params, _) = sign_in_and_allow(&h, &authorize_query("spa", Some(&jkt), &[])).await;
    assert_eq!(params["state"], "st-123");
    assert_eq!(params["iss"], common::ISSUER, "RFC 9207");
    let reply = exchange(&h, &params["code"], Some(&key), VERIFIER).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["token_type"], "DPoP");
    assert_eq!(reply.body["scope"], "read");
    assert!(reply.body["refresh_token"].is_string());
    let claims = keybound_core::AccessTokenVerifier::new(
        h.key_set().await,
        common::ISSUER,
        h.state.audience(),
    )
    .verify(reply.body["access_token"].as_str().unwrap(), h.now())
    .unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.cnf.unwrap().jkt.unwrap().as_str(), jkt);
}

#[tokio::test]
async fn attack32_a_stolen_code_fails_without_the_key_and_is_not_spent_by_the_attempt() {
    let h = harness().await;
    let key = key(Algorithm::Es256);
    let jkt = key.public_jwk().thumbprint().as_str().to_owned();
    let (params, _) = sign_in_and_allow(&h, &authorize_query("spa", Some(&jkt), &[])).await;
    let code = &params["code"];
    let thief = common::key(Algorithm::Es256);
    exchange(&h, code, Some(&thief), VERIFIER)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // No proof at all also counts as a mismatch (§2.6); the client requires DPoP anyway.
    exchange(&h, code, None, VERIFIER)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    exchange(
        &h,
        code,
        Some(&key),
        "wrong-verifier-wrong-verifier-wrong-verifier",
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // The real client still redeems it.
    let reply = exchange(&h, code, Some(&key), VERIFIER).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

#[tokio::test]
async fn a_second_use_of_a_code_revokes_what_the_first_issued() {
    let h = harness().await;
    let key = key(Algorithm::EdDsa);
    let (params, _) = sign_in_and_allow(&h, &authorize_query("spa", None, &[])).await;
    let first = exchange(&h, &params["code"], Some(&key), VERIFIER).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    exchange(&h, &params["code"], Some(&key), VERIFIER)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let refreshed = h
        .post(
            "/token",
            None,
            &[&proof(&h, &key)],
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "spa"),
                (
                    "refresh_token",
                    first.body["refresh_token"].as_str().unwrap(),
                ),
            ],
        )
        .await;
    refreshed.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let claims = keybound_core::AccessTokenVerifier::new(
        h.key_set().await,
        common::ISSUER,
        h.state.audience(),
    )
    .verify(first.body["access_token"].as_str().unwrap(), h.now())
    .unwrap();
    use keybound_store::GrantStore as _;
    assert!(
        h.store
            .is_access_token_revoked(&claims.jti, h.now())
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn without_dpop_jkt_the_code_binds_to_the_key_of_the_exchange() {
    let h = harness().await;
    let key = key(Algorithm::Es256);
    let (params, _) = sign_in_and_allow(&h, &authorize_query("spa", None, &[])).await;
    let reply = exchange(&h, &params["code"], Some(&key), VERIFIER).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // The public client's refresh token is bound to that key (RFC 9449 §5).
    let other = common::key(Algorithm::Es256);
    h.post(
        "/token",
        None,
        &[&proof(&h, &other)],
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "spa"),
            (
                "refresh_token",
                reply.body["refresh_token"].as_str().unwrap(),
            ),
        ],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn bad_requests_go_back_to_the_client_only_when_its_redirect_uri_is_trusted() {
    let h = harness().await;
    // PKCE missing or "plain": an error at the redirect URI, with state and iss.
    let no_pkce = authorize_query("spa", None, &[])
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let params = location_params(&get(&h, &no_pkce, None).await);
    assert_eq!(
        (params["error"].as_str(), params["state"].as_str()),
        ("invalid_request", "st-123")
    );
    assert_eq!(params["iss"], common::ISSUER);
    let scope = authorize_query("spa", None, &[]).replace("scope=read", "scope=admin");
    assert_eq!(
        location_params(&get(&h, &scope, None).await)["error"],
        "invalid_scope"
    );
    let bad_jkt = authorize_query("spa", Some("not-a-thumbprint"), &[]);
    assert_eq!(
        location_params(&get(&h, &bad_jkt, None).await)["error"],
        "invalid_request"
    );
    // Unknown client or unregistered redirect URI: a page, never a redirect.
    for path in [
        authorize_query("nobody", None, &[]),
        authorize_query("spa", None, &[]).replace("app.example.com", "evil.example"),
        format!("{}&state=again", authorize_query("spa", None, &[])),
    ] {
        let reply = get(&h, &path, None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(reply.headers.get(header::LOCATION).is_none());
    }
}

#[tokio::test]
async fn repeated_wrong_passwords_lock_the_username_out_until_the_window_ends() {
    let h = harness_with("sign_in_max_failures = 3\nsign_in_window_secs = 300").await;
    let path = authorize_query("spa", None, &[]);
    let login = get(&h, &path, None).await;
    let cookie = set_cookie(&login, "kb_login").unwrap();
    let attempt = |username: &'static str, password: &'static str| {
        let (h, cookie) = (&h, &cookie);
        let (request, csrf) = (
            hidden(html(&login), "request"),
            hidden(html(&login), "csrf"),
        );
        async move {
            post_form(
                h,
                "/login",
                Some(cookie),
                &[
                    ("request", &request),
                    ("csrf", &csrf),
                    ("username", username),
                    ("password", password),
                ],
            )
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(
            attempt("alice", "guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Locked: even the right password is not checked, and no session is set.
    let locked = attempt("alice", PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(html(&locked).contains("Too many failed sign-ins"));
    assert!(set_cookie(&locked, "kb_session").is_none());
    // Another username is not affected (here unknown, so simply wrong).
    assert_eq!(
        attempt("bob", "guess").await.status,
        StatusCode::UNAUTHORIZED
    );
    // After the window, alice signs in.
    h.advance(300);
    let consent = attempt("alice", PASSWORD).await;
    assert_eq!(consent.status, StatusCode::OK, "{:?}", consent.body);
    assert!(set_cookie(&consent, "kb_session").is_some());
}

#[tokio::test]
async fn pages_refuse_forged_forms_and_wrong_passwords_and_remember_the_session() {
    let h = harness().await;
    let path = authorize_query("spa", None, &[]);
    let login = get(&h, &path, None).await;
    assert_eq!(login.headers[header::X_FRAME_OPTIONS], "DENY");
    let cookie = set_cookie(&login, "kb_login").unwrap();
    let request = hidden(html(&login), "request");
    let csrf = hidden(html(&login), "csrf");
    // No login cookie (a cross-site form): refused.
    let forged = post_form(
        &h,
        "/login",
        None,
        &[
            ("request", &request),
            ("csrf", &csrf),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    // An altered request: refused.
    let mut altered = request.clone();
    altered.insert(3, 'x');
    let tampered = post_form(
        &h,
        "/login",
        Some(&cookie),
        &[
            ("request", &altered),
            ("csrf", &csrf),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(tampered.status, StatusCode::BAD_REQUEST);
    let wrong = post_form(
        &h,
        "/login",
        Some(&cookie),
        &[
            ("request", &request),
            ("csrf", &csrf),
            ("username", "alice"),
            ("password", "nope"),
        ],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(html(&wrong).contains("incorrect") && set_cookie(&wrong, "kb_session").is_none());
    // Signed in once: the next request goes straight to consent.
    let (_, session) = sign_in_and_allow(&h, &path).await;
    let again = get(&h, &path, Some(&session)).await;
    assert!(html(&again).contains("Allow") && !html(&again).contains("password"));
    // Deny sends access_denied back.
    let denied = post_form(
        &h,
        "/consent",
        Some(&session),
        &[
            ("request", &hidden(html(&again), "request")),
            ("csrf", &hidden(html(&again), "csrf")),
            ("decision", "deny"),
        ],
    )
    .await;
    assert_eq!(location_params(&denied)["error"], "access_denied");
    // Consent without the session's CSRF token: refused.
    let no_csrf = post_form(
        &h,
        "/consent",
        Some(&session),
        &[
            ("request", &hidden(html(&again), "request")),
            ("csrf", &csrf),
            ("decision", "allow"),
        ],
    )
    .await;
    assert_eq!(no_csrf.status, StatusCode::BAD_REQUEST);
}

async fn push(
    h: &Harness,
    client_id: &str,
    key: Option<&SigningKey>,
    extra: &[(&str, &str)],
) -> Reply {
    let proof = key.map(|k| {
        ProofBuilder::new("POST", &format!("{}/par", common::ISSUER), h.now())
            .sign(k, &SystemRandom::new())
            .unwrap()
    });
    let dpop: Vec<&str> = proof.iter().map(String::as_str).collect();
    let mut form = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", "st-123"),
    ];
    form.extend_from_slice(extra);
    h.post("/par", None, &dpop, &form).await
}

#[tokio::test]
async fn par_with_a_dpop_proof_binds_the_code_and_request_uris_work_once() {
    let h = harness().await;
    let key = key(Algorithm::Es256);
    let pushed = push(&h, "par-only", Some(&key), &[]).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{:?}", pushed.body);
    let uri = pushed.body["request_uri"].as_str().unwrap();
    assert!(uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    let path = format!(
        "/authorize?{}",
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("client_id", "par-only"), ("request_uri", uri)])
            .finish()
    );
    let (params, _) = sign_in_and_allow(&h, &path).await;
    // Used once: the same request_uri again is refused.
    assert_eq!(get(&h, &path, None).await.status, StatusCode::BAD_REQUEST);
    // The code is bound to the PAR proof's key.
    let code = params["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", "par-only"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let thief = common::key(Algorithm::Es256);
    h.post("/token", None, &[&h.proof(&thief)], &form)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let ok = h.post("/token", None, &[&h.proof(&key)], &form).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    // A PAR-only client cannot skip PAR.
    let direct = get(&h, &authorize_query("par-only", None, &[]), None).await;
    assert_eq!(location_params(&direct)["error"], "invalid_request");
}

#[tokio::test]
async fn attack33_par_with_a_dpop_jkt_other_than_its_proof_key_is_refused() {
    let h = harness().await;
    let key = key(Algorithm::Es256);
    let other = common::key(Algorithm::Es256);
    let other_jkt = other.public_jwk().thumbprint().as_str().to_owned();
    push(&h, "spa", Some(&key), &[("dpop_jkt", &other_jkt)])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    // Same key in both: accepted.
    let jkt = key.public_jwk().thumbprint().as_str().to_owned();
    assert_eq!(
        push(&h, "spa", Some(&key), &[("dpop_jkt", &jkt)])
            .await
            .status,
        StatusCode::CREATED
    );
    // A pushed request_uri cannot itself be pushed, and bad requests fail at /par.
    push(&h, "spa", None, &[("request_uri", "urn:x")])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    let unknown = push(&h, "nobody", None, &[]).await;
    assert_eq!(unknown.status.as_u16() / 100, 4);
}

#[tokio::test]
async fn metadata_publishes_the_code_flow() {
    let h = harness().await;
    let meta = h.get("/.well-known/oauth-authorization-server").await.body;
    assert_eq!(
        meta["authorization_endpoint"],
        format!("{}/authorize", common::ISSUER)
    );
    assert_eq!(
        meta["pushed_authorization_request_endpoint"],
        format!("{}/par", common::ISSUER)
    );
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let _ = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0u8]);
}
