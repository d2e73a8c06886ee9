//! The authorization-code helpers against a scripted AS on loopback (no node needed): what a
//! pushed authorization request carries (every parameter, client authentication, a DPoP proof
//! for `POST` on the PAR endpoint, checked with keybound-core's verifier and a required nonce),
//! exactly one nonce retry at PAR and never a loop, and a code exchange answered with a
//! `Bearer` token discarded like every other grant's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keybound_client::{
    AuthorizationCode, ClientAuth, ClientError, DpopClient, IssuerMetadata, Pkce,
};
use keybound_core::dpop::{NoncePolicy, ProofRequest, ProofVerifier};
use keybound_core::{Algorithm, ErrorCode, Htu, NonceKeyRing, NonceSecret, SigningKey, UnixTime};

/// One request the PAR endpoint received.
#[derive(Clone, Debug)]
struct Received {
    form: Vec<(String, String)>,
    basic_auth: bool,
    proof_ok: bool,
}

struct ScriptedAs {
    issuer: String,
    ring: NonceKeyRing,
    received: Mutex<Vec<Received>>,
}

fn now() -> UnixTime {
    UnixTime::from_secs(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

fn nonce_please(state: &ScriptedAs) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [("dpop-nonce", state.ring.issue(now()).as_str().to_owned())],
        axum::Json(serde_json::json!({ "error": "use_dpop_nonce" })),
    )
        .into_response()
}

/// A PAR endpoint that requires a DPoP proof with its nonce, as RFC 9449 §10.1 and §8 say.
async fn par(
    State(state): State<Arc<ScriptedAs>>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let htu = Htu::parse(&format!("{}/par", state.issuer)).unwrap();
    let request = ProofRequest {
        method: "POST",
        htu: &htu,
        now: now(),
        access_token: None,
        nonce: NoncePolicy::Required(&state.ring),
    };
    let proof = headers.get("dpop").and_then(|v| v.to_str().ok());
    let verified = proof.map(|p| ProofVerifier::default().verify(p, &request));
    state.received.lock().unwrap().push(Received {
        form,
        basic_auth: headers
            .get("authorization")
            .is_some_and(|v| v.as_bytes().starts_with(b"Basic ")),
        proof_ok: matches!(verified, Some(Ok(_))),
    });
    match verified {
        Some(Ok(_)) => (
            StatusCode::CREATED,
            axum::Json(serde_json::json!({
                "request_uri": "urn:ietf:params:oauth:request_uri:scripted",
                "expires_in": 90
            })),
        )
            .into_response(),
        Some(Err(e)) if ErrorCode::from(&e) == ErrorCode::UseDpopNonce => nonce_please(&state),
        _ => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": "invalid_dpop_proof" })),
        )
            .into_response(),
    }
}

/// Starts the scripted AS: `/par` as above, `/stubborn-par` that asks for a new nonce every
/// time, and a `/token` that answers with a Bearer token.
async fn start() -> Arc<ScriptedAs> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(ScriptedAs {
        ring: NonceKeyRing::new(&issuer, &NonceSecret::new(&[5; 32]).unwrap(), None),
        issuer,
        received: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .route("/par", axum::routing::post(par))
        .route(
            "/stubborn-par",
            axum::routing::post(|State(state): State<Arc<ScriptedAs>>| async move {
                state.received.lock().unwrap().push(Received {
                    form: Vec::new(),
                    basic_auth: false,
                    proof_ok: false,
                });
                nonce_please(&state)
            }),
        )
        .route(
            "/token",
            axum::routing::post(|| async {
                axum::Json(serde_json::json!({"access_token": "plain", "token_type": "Bearer"}))
            }),
        )
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    state
}

fn metadata(issuer: &str, par_path: &str) -> IssuerMetadata {
    serde_json::from_value(serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/token"),
        "authorization_endpoint": format!("{issuer}/authorize"),
        "pushed_authorization_request_endpoint": format!("{issuer}{par_path}"),
    }))
    .unwrap()
}

fn client() -> DpopClient {
    DpopClient::new(
        SigningKey::generate(Algorithm::Es256, &aws_lc_rs::rand::SystemRandom::new())
            .unwrap()
            .0,
    )
    .unwrap()
}

fn values<'a>(form: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    form.iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[tokio::test]
async fn par_sends_every_parameter_and_a_proof_for_the_par_endpoint_retrying_once_for_a_nonce() {
    let scripted = start().await;
    let issuer = metadata(&scripted.issuer, "/par");
    let client = client();
    let request = client
        .authorization_request("native", "http://127.0.0.1/callback")
        .unwrap()
        .scope("orders")
        .param("prompt", "login");
    let auth = ClientAuth::Public {
        client_id: "native".into(),
    };
    let pushed = client
        .push_authorization_request(&issuer, &auth, &request)
        .await
        .unwrap();
    assert_eq!(
        pushed.request_uri,
        "urn:ietf:params:oauth:request_uri:scripted"
    );
    assert_eq!(pushed.expires_in, 90);
    assert_eq!(
        pushed.authorization_url(&issuer).unwrap().as_str(),
        format!(
            "{}/authorize?client_id=native&request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Ascripted",
            scripted.issuer
        )
    );

    let received = scripted.received.lock().unwrap().clone();
    assert_eq!(
        received.len(),
        2,
        "one request, one nonce retry: {received:?}"
    );
    assert_eq!(client.nonce_retries(), 1);
    assert!(
        received[1].proof_ok,
        "the retry's proof is for POST on /par with the nonce"
    );
    let form = &received[1].form;
    for (name, value) in [
        ("response_type", "code"),
        ("client_id", "native"),
        ("redirect_uri", "http://127.0.0.1/callback"),
        ("scope", "orders"),
        ("state", request.state()),
        ("code_challenge", request.pkce().challenge()),
        ("code_challenge_method", "S256"),
        ("dpop_jkt", client.thumbprint().as_str()),
        ("prompt", "login"),
    ] {
        assert_eq!(values(form, name), [value], "{name} in {form:?}");
    }
    assert!(
        values(form, "code_verifier").is_empty(),
        "the verifier stays home"
    );
    assert!(!received[1].basic_auth);
}

#[tokio::test]
async fn par_with_a_secret_uses_basic_auth_and_can_leave_out_the_proof() {
    let scripted = start().await;
    let issuer = metadata(&scripted.issuer, "/par");
    let client = client();
    let request = client
        .authorization_request("web", "https://app.example/callback")
        .unwrap()
        .without_par_dpop_proof();
    let auth = ClientAuth::Secret {
        client_id: "web".into(),
        client_secret: "s3cret".into(),
    };
    // The scripted AS requires a proof, so without one it refuses (and is asked only once).
    let refused = client
        .push_authorization_request(&issuer, &auth, &request)
        .await;
    assert!(
        matches!(
            &refused,
            Err(ClientError::Refused {
                status: 400,
                error: ErrorCode::InvalidDpopProof,
                ..
            })
        ),
        "{refused:?}"
    );
    let received = scripted.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert!(received[0].basic_auth);
    assert_eq!(values(&received[0].form, "client_id"), ["web"]);
    assert_eq!(client.nonce_retries(), 0);
}

#[tokio::test]
async fn par_retries_a_nonce_demand_once_and_never_loops() {
    let scripted = start().await;
    let issuer = metadata(&scripted.issuer, "/stubborn-par");
    let client = client();
    let request = client
        .authorization_request("native", "http://127.0.0.1/callback")
        .unwrap();
    let auth = ClientAuth::Public {
        client_id: "native".into(),
    };
    let result = client
        .push_authorization_request(&issuer, &auth, &request)
        .await;
    assert!(
        matches!(
            &result,
            Err(ClientError::Refused {
                error: ErrorCode::UseDpopNonce,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(scripted.received.lock().unwrap().len(), 2);
    assert_eq!(client.nonce_retries(), 1);
}

#[tokio::test]
async fn a_bearer_answer_to_the_code_exchange_is_discarded() {
    let scripted = start().await;
    let issuer = metadata(&scripted.issuer, "/par");
    let client = client();
    let result = client
        .exchange_code(
            &issuer,
            &ClientAuth::Public {
                client_id: "native".into(),
            },
            &AuthorizationCode::new("c0de"),
            "http://127.0.0.1/callback",
            &Pkce::generate().unwrap(),
        )
        .await;
    assert!(
        matches!(&result, Err(ClientError::NotDpopBound(t)) if t == "Bearer"),
        "standards §5 #35: {result:?}"
    );
}
