//! Standards §5 rows 31, 32, 33, 35 and 40 over real HTTP: stolen refresh tokens and codes
//! (the authorization-code flow driven through `keybound serve`'s sign-in and consent pages),
//! PAR with a `dpop_jkt` that is not the proof's key, the `keybound` CLI facing a token
//! endpoint that answers `Bearer`, and tokens from another issuer or injected through another
//! AS. After every refusal the test checks that nothing was issued
//! (`keybound_tokens_issued_total`) and that what was attacked still works for its owner.
//! `docs/security.md` lists the rows and these tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use common::proofs::{jkt, jwt_payload, new_key, proof};
use common::server::{Reply, SECRET, Server, Setup, secret_clients};
use keybound_client::{ClientAuth, DpopClient};
use keybound_core::SigningKey;

const PASSWORD: &str = "correct horse battery";
const REDIRECT: &str = "https://app.example.com/cb";
/// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// An AS with alice, the public client `spa` (must use DPoP), `spa-optional` (may), and the
/// secret clients of the attack matrix.
fn start() -> Server {
    let hash = keybound_server::users::hash_password(PASSWORD).unwrap();
    let public = |id: &str, dpop: bool| {
        format!(
            "[[clients]]\nclient_id = \"{id}\"\nauth_method = \"none\"\n\
             grant_types = [\"authorization_code\", \"refresh_token\"]\n\
             redirect_uris = [\"{REDIRECT}\"]\nscopes = [\"read\"]\n\
             dpop_bound_access_tokens = {dpop}\n"
        )
    };
    Setup::new("flows").start(&format!(
        "[[users]]\nusername = \"alice\"\npassword_argon2 = '{hash}'\n{}{}{}",
        public("spa", true),
        public("spa-optional", false),
        secret_clients()
    ))
}

/// A browser: keeps the session cookie once alice has signed in.
#[derive(Default)]
struct Browser {
    session: Option<String>,
}

fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name}: {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

impl Browser {
    /// Opens `/authorize` with `params`, signs in as alice if needed, allows, and returns the
    /// code from the redirect (after checking `state` and `iss`).
    async fn code(&mut self, server: &Server, params: &[(&str, &str)]) -> String {
        let url = reqwest::Url::parse_with_params(&server.url("/authorize"), params).unwrap();
        let mut request = server.http.get(url);
        if let Some(session) = &self.session {
            request = request.header("cookie", session);
        }
        let mut page = request.send().await.unwrap();
        assert_eq!(page.status(), 200);
        if self.session.is_none() {
            let login = cookie(&page, "kb_login").unwrap();
            let html = page.text().await.unwrap();
            let form = [
                ("request", hidden(&html, "request")),
                ("csrf", hidden(&html, "csrf")),
                ("username", "alice".into()),
                ("password", PASSWORD.into()),
            ];
            page = server
                .http
                .post(server.url("/login"))
                .header("cookie", login)
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(page.status(), 200, "sign-in");
            self.session = cookie(&page, "kb_session");
        }
        let html = page.text().await.unwrap();
        assert!(html.contains("Allow"), "{html}");
        let form = [
            ("request", hidden(&html, "request")),
            ("csrf", hidden(&html, "csrf")),
            ("decision", "allow".into()),
        ];
        let done = server
            .http
            .post(server.url("/consent"))
            .header("cookie", self.session.as_deref().unwrap())
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 303);
        let location = done.headers()["location"].to_str().unwrap();
        let location = reqwest::Url::parse(location).unwrap();
        let get = |name: &str| {
            location
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        assert_eq!(get("state").as_deref(), Some("st-1"));
        assert_eq!(get("iss").as_deref(), Some(server.base.as_str()));
        get("code").unwrap_or_else(|| panic!("no code: {location}"))
    }
}

/// The front-channel parameters of `client_id`'s request, with `dpop_jkt` if given.
fn authorization<'a>(client_id: &'a str, dpop_jkt: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", "st-1"),
        ("scope", "read"),
    ];
    params.extend(dpop_jkt.map(|j| ("dpop_jkt", j)));
    params
}

/// Redeems `code` for `client_id` with the right PKCE verifier, and a proof by `key` if any.
async fn redeem(server: &Server, client_id: &str, code: &str, key: Option<&SigningKey>) -> Reply {
    let dpop = key.map(|k| proof(k, "POST", &server.url("/token"), &format!("redeem-{code}")));
    let proofs: Vec<&str> = dpop.iter().map(String::as_str).collect();
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    server.post("/token", None, &proofs, &form).await
}

/// A refresh of `spa`'s `refresh_token`, with a proof by `key` if any.
async fn refresh(server: &Server, token: &str, key: Option<&SigningKey>, jti: &str) -> Reply {
    let dpop = key.map(|k| proof(k, "POST", &server.url("/token"), jti));
    let proofs: Vec<&str> = dpop.iter().map(String::as_str).collect();
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "spa"),
        ("refresh_token", token),
    ];
    server.post("/token", None, &proofs, &form).await
}

/// Asserts a token response bound to `key`.
fn assert_bound_to(reply: &Reply, key: &SigningKey, what: &str) {
    assert_eq!(reply.status, 200, "{what}: {}", reply.body);
    assert_eq!(reply.body["token_type"], "DPoP", "{what}");
    let claims = jwt_payload(&reply.access_token());
    assert_eq!(claims["cnf"]["jkt"], jkt(key), "{what}: {claims}");
}

#[tokio::test]
async fn attack31_a_stolen_refresh_token_with_another_key_is_refused_and_still_works_for_its_holder()
 {
    let server = start();
    let (holder, thief) = (new_key(), new_key());
    let code = Browser::default()
        .code(&server, &authorization("spa", None))
        .await;
    let first = redeem(&server, "spa", &code, Some(&holder)).await;
    assert_bound_to(&first, &holder, "the code exchange");
    let stolen = first.body["refresh_token"].as_str().unwrap().to_owned();

    let issued = server.tokens_issued().await;
    refresh(&server, &stolen, Some(&thief), "r31")
        .await
        .assert_error(400, "invalid_grant", "#31 the thief's key");
    refresh(&server, &stolen, None, "r31").await.assert_error(
        400,
        "invalid_request",
        "#31 no proof (spa must use DPoP)",
    );
    assert_eq!(server.tokens_issued().await, issued, "#31: nothing issued");

    // Not consumed, not revoked: the holder refreshes, and the new tokens are bound to its key.
    let next = refresh(&server, &stolen, Some(&holder), "r31").await;
    assert_bound_to(&next, &holder, "#31: the holder's refresh");
    let rotated = next.body["refresh_token"].as_str().unwrap();
    // The thief replaying the now used token cannot get the grant revoked either.
    refresh(&server, &stolen, Some(&thief), "r31b")
        .await
        .assert_error(400, "invalid_grant", "#31 the used token, thief's key");
    refresh(&server, rotated, Some(&thief), "r31c")
        .await
        .assert_error(400, "invalid_grant", "#31 the rotated token, thief's key");
    let again = refresh(&server, rotated, Some(&holder), "r31d").await;
    assert_bound_to(&again, &holder, "#31: the holder's second refresh");
}

#[tokio::test]
async fn attack32_a_stolen_code_redeemed_with_another_key_or_no_proof_is_refused_and_stays_redeemable()
 {
    let server = start();
    let (client, thief) = (new_key(), new_key());
    let client_jkt = jkt(&client);
    let mut browser = Browser::default();

    // 1. dpop_jkt in the front-channel request. The thief has the code and the PKCE verifier.
    for (client_id, no_proof) in [
        ("spa", ("invalid_request", "spa must use DPoP")),
        (
            "spa-optional",
            ("invalid_grant", "a missing proof is a mismatch"),
        ),
    ] {
        let code = browser
            .code(&server, &authorization(client_id, Some(&client_jkt)))
            .await;
        let issued = server.tokens_issued().await;
        redeem(&server, client_id, &code, Some(&thief))
            .await
            .assert_error(
                400,
                "invalid_grant",
                &format!("#32 {client_id}, thief's key"),
            );
        redeem(&server, client_id, &code, None).await.assert_error(
            400,
            no_proof.0,
            &format!("#32 {client_id}, {}", no_proof.1),
        );
        assert_eq!(server.tokens_issued().await, issued, "#32: nothing issued");
        let ok = redeem(&server, client_id, &code, Some(&client)).await;
        assert_bound_to(
            &ok,
            &client,
            &format!("#32 {client_id}: the rightful client"),
        );
    }

    // 2. The code bound by the DPoP proof on the pushed request (PAR) instead.
    let par = proof(&client, "POST", &server.url("/par"), "par-32");
    let form = authorization("spa", None);
    let pushed = server.post("/par", None, &[&par], &form).await;
    assert_eq!(pushed.status, 201, "{}", pushed.body);
    let request_uri = pushed.body["request_uri"].as_str().unwrap();
    let code = browser
        .code(
            &server,
            &[("client_id", "spa"), ("request_uri", request_uri)],
        )
        .await;
    let issued = server.tokens_issued().await;
    redeem(&server, "spa", &code, Some(&thief))
        .await
        .assert_error(400, "invalid_grant", "#32 PAR-bound code, thief's key");
    assert_eq!(server.tokens_issued().await, issued);
    let ok = redeem(&server, "spa", &code, Some(&client)).await;
    assert_bound_to(&ok, &client, "#32 PAR-bound code: the rightful client");
}

#[tokio::test]
async fn attack33_par_with_a_dpop_jkt_other_than_its_proof_key_is_refused_and_consumes_nothing() {
    let server = start();
    let (client, other) = (new_key(), new_key());
    let par = proof(&client, "POST", &server.url("/par"), "par-33");
    let other_jkt = jkt(&other);
    let refused = server
        .post(
            "/par",
            None,
            &[&par],
            &authorization("spa", Some(&other_jkt)),
        )
        .await;
    refused.assert_error(400, "invalid_request", "#33 dpop_jkt of another key");
    assert!(refused.body.get("request_uri").is_none());

    // The refusal consumed nothing: the same key and jti push with the matching dpop_jkt, and
    // the resulting code is bound to the proof's key, not to the refused dpop_jkt.
    let par = proof(&client, "POST", &server.url("/par"), "par-33");
    let client_jkt = jkt(&client);
    let pushed = server
        .post(
            "/par",
            None,
            &[&par],
            &authorization("spa", Some(&client_jkt)),
        )
        .await;
    assert_eq!(
        pushed.status, 201,
        "#33: the jti is still free: {}",
        pushed.body
    );
    let request_uri = pushed.body["request_uri"].as_str().unwrap();
    let code = Browser::default()
        .code(
            &server,
            &[("client_id", "spa"), ("request_uri", request_uri)],
        )
        .await;
    redeem(&server, "spa", &code, Some(&other))
        .await
        .assert_error(
            400,
            "invalid_grant",
            "#33 the key named in the refused dpop_jkt",
        );
    let ok = redeem(&server, "spa", &code, Some(&client)).await;
    assert_bound_to(&ok, &client, "#33");
}

/// A token endpoint the attacker runs: metadata naming itself, and `/token` answering
/// `access_token` with `token_type`. Records every request: path, `DPoP` header, credentials.
struct RogueAs {
    issuer: String,
    seen: Arc<Mutex<Vec<RogueRequest>>>,
}

#[derive(Clone, Debug)]
struct RogueRequest {
    path: String,
    dpop: bool,
    authorization: Option<String>,
}

async fn rogue_as(access_token: &str, token_type: &str) -> RogueAs {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let metadata =
        serde_json::json!({ "issuer": issuer, "token_endpoint": format!("{issuer}/token") });
    let answer = serde_json::json!({
        "access_token": access_token, "token_type": token_type, "expires_in": 300
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (log, metadata, answer) = (log.clone(), metadata.clone(), answer.clone());
        async move {
            let headers = request.headers();
            log.lock().unwrap().push(RogueRequest {
                path: request.uri().path().to_owned(),
                dpop: headers.contains_key("dpop"),
                authorization: headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned()),
            });
            match request.uri().path() {
                "/token" => axum::Json(answer),
                _ => axum::Json(metadata),
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    RogueAs { issuer, seen }
}

#[tokio::test]
async fn attack35_the_cli_discards_a_bearer_token_answered_to_a_dpop_request_and_exits_1() {
    const ROGUE: &str = "rogue-bearer-token-0123456789";
    let rogue = rogue_as(ROGUE, "Bearer").await;
    let dir = std::env::temp_dir().join(format!("keybound-attack35-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("dpop.pem");
    keybound_client::generate_key_file(&key, keybound_core::Algorithm::Es256).unwrap();
    let api = format!("{}/api/data", rogue.issuer);
    let common = [
        "--issuer",
        &rogue.issuer,
        "--client-id",
        "app",
        "--key",
        key.to_str().unwrap(),
    ];
    let commands: [Vec<String>; 3] = [
        [&["token"][..], &common[..]].concat(),
        [&["--json", "token"][..], &common[..]].concat(),
        [&["call", &api][..], &common[..]].concat(),
    ]
    .map(|args| args.into_iter().map(str::to_owned).collect());
    for args in commands {
        let run = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_keybound"))
                .args(&args)
                .env_remove("KEYBOUND_JSON")
                .env("KEYBOUND_CLIENT_SECRET", "s3cret")
                .output()
                .unwrap()
        });
        let out = run.await.unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(1), "#35: {stdout}\n{stderr}");
        assert!(
            !stdout.contains(ROGUE) && !stderr.contains(ROGUE),
            "#35 printed the token"
        );
        let message = format!("{stdout}{stderr}");
        assert!(
            message.contains("token_type \\\"Bearer\\\"")
                || message.contains("token_type \"Bearer\""),
            "#35: {message}"
        );
        assert!(
            message.contains("not DPoP") && message.contains("discarded"),
            "{message}"
        );
    }
    // Every token request carried a proof; the token was never sent anywhere.
    let seen = rogue.seen.lock().unwrap().clone();
    let token_requests: Vec<_> = seen.iter().filter(|r| r.path == "/token").collect();
    assert_eq!(token_requests.len(), 3, "{seen:?}");
    assert!(token_requests.iter().all(|r| r.dpop), "{seen:?}");
    assert!(
        seen.iter()
            .all(|r| r.path != "/api/data"
                && !r.authorization.as_deref().unwrap_or("").contains(ROGUE)),
        "{seen:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn attack40_tokens_of_another_issuer_are_refused_and_injected_tokens_fail_with_per_as_keys() {
    let server = start();
    let other_as = Server::start();
    let key = new_key();
    let api = server.url("/api/whoami");
    // A DPoP token from another keybound (other keys, other issuer), with a valid proof.
    let foreign = other_as
        .token("app", &[&proof(&key, "POST", &other_as.url("/token"), "b")])
        .await;
    assert_eq!(foreign.status, 200, "{}", foreign.body);
    server
        .whoami_dpop(&key, &foreign.access_token(), "r40")
        .await
        .assert_challenge(401, "DPoP", "invalid_token", "#40 another issuer's token");
    // The same key with this issuer's token is fine, so the issuer is what was refused.
    let own = server
        .token("app", &[&proof(&key, "POST", &server.url("/token"), "a")])
        .await;
    let ok = server.whoami_dpop(&key, &own.access_token(), "r40").await;
    assert_eq!(
        ok.status, 200,
        "the refusal left the jti free: {:?}",
        ok.challenges
    );

    // Cuckoo's token: a token of this issuer, bound to the key the client uses here, is fed
    // to the client by an attacker's AS. keybound-client holds one key per DpopClient and does
    // not pick one per AS by itself; a client that keeps a separate DpopClient (key) per AS
    // uses the injected token with the wrong key, and the API refuses it.
    let auth = ClientAuth::Secret {
        client_id: "app".into(),
        client_secret: SECRET.into(),
    };
    let client = DpopClient::new(new_key()).unwrap();
    let honest = client.discover(&server.base).await.unwrap();
    let victim = client
        .client_credentials(&honest, &auth, None)
        .await
        .unwrap();
    let rogue = rogue_as(&victim.access_token, "DPoP").await;
    let per_as_key = DpopClient::new(new_key()).unwrap();
    let metadata = per_as_key.discover(&rogue.issuer).await.unwrap();
    let injected = per_as_key
        .client_credentials(&metadata, &auth, None)
        .await
        .unwrap();
    assert_eq!(injected.access_token, victim.access_token);
    let response = per_as_key
        .call(reqwest::Method::GET, &api, &injected.access_token, None)
        .await
        .unwrap();
    Reply::of(response).await.assert_challenge(
        401,
        "DPoP",
        "invalid_token",
        "#40 injected, per-AS key",
    );
    // The limit, shown rather than hidden: with one key for both ASes the injection works.
    let injected = client
        .client_credentials(&metadata, &auth, None)
        .await
        .unwrap();
    let response = client
        .call(reqwest::Method::GET, &api, &injected.access_token, None)
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "#40: one key for two ASes is not protected"
    );
}
