//! Interoperability of the authorization-code helpers with node-oidc-provider 9.13.3 (pinned,
//! installed by `scripts/test`), driven over HTTP like a browser: PAR with a DPoP proof (one
//! nonce retry), the provider's login and consent pages, the callback checked, the code
//! redeemed with DPoP, and the token confirmed bound to our key by introspection and by the
//! userinfo endpoint. A code bound to our key (by the PAR proof, or by `dpop_jkt` in the
//! front channel) is refused to a client holding another key (standards §5 #32).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use keybound_client::{
    AuthorizationCode, AuthorizationRequest, ClientAuth, ClientError, DpopClient, IssuerMetadata,
};
use keybound_core::{Algorithm, ErrorCode, SigningKey};
use reqwest::{Method, StatusCode, Url};

const NATIVE_REDIRECT: &str = "http://127.0.0.1/callback";
const WEB_REDIRECT: &str = "https://app.example/callback";
const USER: &str = "alice";

fn dpop_client() -> DpopClient {
    DpopClient::new(
        SigningKey::generate(Algorithm::Es256, &aws_lc_rs::rand::SystemRandom::new())
            .unwrap()
            .0,
    )
    .unwrap()
}

fn native_auth() -> ClientAuth {
    ClientAuth::Public {
        client_id: "native-app".into(),
    }
}

/// A browser: a cookie store (the provider's interaction session lives in cookies) and no
/// automatic redirects, so the code is read from the `Location` that points at the redirect
/// URI instead of being fetched.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of `name="…"`'s attribute `attr` in the first tag of `html` that has it, with the
/// provider's HTML escaping undone.
fn attribute(html: &str, marker: &str, attr: &str) -> Option<String> {
    let marker_at = html.find(marker)?;
    let tag_start = html[..marker_at + marker.len()].rfind('<')?;
    let tag = &html[tag_start..];
    let tag = &tag[..tag.find('>')?];
    let value_start = tag.find(&format!("{attr}=\""))? + attr.len() + 2;
    let value = &tag[value_start..];
    let value = &value[..value.find('"')?];
    Some(
        value
            .replace("&#x2F;", "/")
            .replace("&#39;", "'")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// Follows `start` through the provider's devInteractions pages as user `USER` (the login
/// form: hidden `prompt=login`, `login`, `password`; the consent form: hidden
/// `prompt=consent`), and returns the URL the provider finally redirects to under
/// `redirect_uri`, unfetched.
async fn sign_in_and_consent(browser: &reqwest::Client, start: Url, redirect_uri: &str) -> String {
    let mut request = browser.get(start);
    let (mut saw_login, mut saw_consent) = (false, false);
    for _ in 0..12 {
        let response = request.send().await.unwrap();
        let here = response.url().clone();
        let status = response.status();
        if status.is_redirection() {
            let location = response.headers()["location"].to_str().unwrap();
            let target = here.join(location).unwrap();
            if target.as_str().starts_with(redirect_uri) {
                assert!(saw_login && saw_consent, "redirected before both pages");
                return target.into();
            }
            request = browser.get(target);
            continue;
        }
        let html = response.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{here}: {html}");
        let action = here
            .join(&attribute(&html, "<form", "action").expect("a form"))
            .unwrap();
        let prompt = attribute(&html, "name=\"prompt\"", "value").expect("a prompt field");
        let form: Vec<(&str, &str)> = match prompt.as_str() {
            "login" => {
                assert!(html.contains("name=\"login\"") && html.contains("name=\"password\""));
                saw_login = true;
                vec![("prompt", "login"), ("login", USER), ("password", "any")]
            }
            "consent" => {
                saw_consent = true;
                vec![("prompt", "consent")]
            }
            other => panic!("unexpected interaction {other}: {html}"),
        };
        request = browser.post(action).form(&form);
    }
    panic!("the provider never redirected to {redirect_uri}");
}

/// One authorization: the request pushed (PAR, DPoP proof unless turned off by the caller) or
/// sent whole in the front channel, the user signed in, the callback checked.
async fn authorize(
    client: &DpopClient,
    issuer: &IssuerMetadata,
    auth: &ClientAuth,
    request: &AuthorizationRequest,
    pushed: bool,
) -> AuthorizationCode {
    let url = if pushed {
        let pushed = client
            .push_authorization_request(issuer, auth, request)
            .await
            .unwrap();
        assert!(
            pushed
                .request_uri
                .starts_with("urn:ietf:params:oauth:request_uri:"),
            "{pushed:?}"
        );
        assert!(pushed.expires_in > 0);
        let url = pushed.authorization_url(issuer).unwrap();
        let names: Vec<String> = url.query_pairs().map(|(n, _)| n.into_owned()).collect();
        assert_eq!(
            names,
            ["client_id", "request_uri"],
            "PAR keeps the rest off the URL"
        );
        url
    } else {
        request.authorization_url(issuer).unwrap()
    };
    let callback = sign_in_and_consent(&browser(), url, request.redirect_uri()).await;
    assert!(
        callback.contains("iss="),
        "the provider sends iss (RFC 9207): {callback}"
    );
    request.parse_callback(issuer, &callback).unwrap()
}

/// Introspects `token` at the provider as the confidential client `app`.
async fn introspect(issuer: &str, token: &str) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{issuer}/token/introspection"))
        .basic_auth("app", Some("s3cret-s3cret-s3cret-s3cret"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn public_client_par_with_dpop_proof_then_login_consent_and_bound_code_exchange() {
    let Some(provider) = common::start_provider(&[]) else {
        return;
    };
    let client = dpop_client();
    let issuer = client.discover(&provider.issuer).await.unwrap();
    assert!(
        issuer.pushed_authorization_request_endpoint.is_some(),
        "{issuer:?}"
    );
    assert!(issuer.authorization_response_iss_parameter_supported);

    let request = client
        .authorization_request("native-app", NATIVE_REDIRECT)
        .unwrap()
        .scope("openid");
    let code = authorize(&client, &issuer, &native_auth(), &request, true).await;
    assert_eq!(
        client.nonce_retries(),
        1,
        "the PAR endpoint asked for a nonce once; the proof was retried exactly once"
    );

    let token = client
        .exchange_code(
            &issuer,
            &native_auth(),
            &code,
            request.redirect_uri(),
            request.pkce(),
        )
        .await
        .unwrap();
    assert_eq!(token.token_type, "DPoP");
    assert_eq!(
        client.nonce_retries(),
        1,
        "the AS's nonce from PAR served the token endpoint"
    );

    let info = introspect(&provider.issuer, &token.access_token).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], "native-app", "{info}");
    assert_eq!(info["sub"], USER, "{info}");
    assert_eq!(info["token_type"], "DPoP", "{info}");
    assert_eq!(
        info["cnf"]["jkt"],
        client.thumbprint().as_str(),
        "bound to our key: {info}"
    );

    // The provider's own resource (userinfo) accepts the token with our proofs...
    let userinfo = format!("{}/me", provider.issuer);
    let response = client
        .call(Method::GET, &userinfo, &token.access_token, None)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let claims: serde_json::Value = response.json().await.unwrap();
    assert_eq!(claims["sub"], USER);
    // ...and refuses it as a bearer token.
    let bearer = reqwest::Client::new()
        .get(&userinfo)
        .bearer_auth(&token.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::UNAUTHORIZED);

    // The code is single use.
    let again = client
        .exchange_code(
            &issuer,
            &native_auth(),
            &code,
            request.redirect_uri(),
            request.pkce(),
        )
        .await;
    assert!(
        matches!(
            again,
            Err(ClientError::Refused {
                error: ErrorCode::InvalidGrant,
                ..
            })
        ),
        "{again:?}"
    );
}

/// Authorizes twice with `client`'s key; the first code, redeemed with another key (and the
/// stolen PKCE verifier), is refused with `invalid_grant`; the second, redeemed by `client`,
/// succeeds, so the refusal is the binding and nothing else.
async fn another_key_is_refused(
    pushed: bool,
    bind: fn(AuthorizationRequest) -> AuthorizationRequest,
) {
    let Some(provider) = common::start_provider(&[]) else {
        return;
    };
    let client = dpop_client();
    let attacker = dpop_client();
    let issuer = client.discover(&provider.issuer).await.unwrap();

    let stolen_request = bind(
        client
            .authorization_request("native-app", NATIVE_REDIRECT)
            .unwrap()
            .scope("openid"),
    );
    let stolen = authorize(&client, &issuer, &native_auth(), &stolen_request, pushed).await;
    let refused = attacker
        .exchange_code(
            &issuer,
            &native_auth(),
            &stolen,
            stolen_request.redirect_uri(),
            stolen_request.pkce(),
        )
        .await;
    assert!(
        matches!(
            &refused,
            Err(ClientError::Refused {
                status: 400,
                error: ErrorCode::InvalidGrant,
                ..
            })
        ),
        "{refused:?}"
    );

    let request = bind(
        client
            .authorization_request("native-app", NATIVE_REDIRECT)
            .unwrap()
            .scope("openid"),
    );
    let code = authorize(&client, &issuer, &native_auth(), &request, pushed).await;
    let token = client
        .exchange_code(
            &issuer,
            &native_auth(),
            &code,
            request.redirect_uri(),
            request.pkce(),
        )
        .await
        .unwrap();
    let info = introspect(&provider.issuer, &token.access_token).await;
    assert_eq!(info["cnf"]["jkt"], client.thumbprint().as_str(), "{info}");
}

#[tokio::test]
async fn code_bound_by_the_par_dpop_proof_alone_is_refused_to_another_key() {
    // No dpop_jkt parameter: the binding comes only from the proof on the PAR request
    // (RFC 9449 §10.1).
    another_key_is_refused(true, AuthorizationRequest::without_dpop_jkt).await;
}

#[tokio::test]
async fn code_bound_by_dpop_jkt_in_the_front_channel_is_refused_to_another_key() {
    // No PAR: the binding comes only from dpop_jkt in the authorization URL (RFC 9449 §10).
    another_key_is_refused(false, |request| request).await;
}

#[tokio::test]
async fn confidential_client_with_private_key_jwt_at_par_and_token_endpoint() {
    let assertion_key = Arc::new(
        SigningKey::generate(Algorithm::Es256, &aws_lc_rs::rand::SystemRandom::new())
            .unwrap()
            .0,
    );
    let mut jwk: serde_json::Value =
        serde_json::from_str(&assertion_key.public_jwk().to_json()).unwrap();
    jwk["kid"] = "a1".into();
    let Some(provider) = common::start_provider(&[&jwk.to_string()]) else {
        return;
    };
    let client = dpop_client();
    let issuer = client.discover(&provider.issuer).await.unwrap();
    let auth = ClientAuth::PrivateKeyJwt {
        client_id: "web-app".into(),
        key: assertion_key,
        kid: "a1".into(),
    };
    let request = client
        .authorization_request("web-app", WEB_REDIRECT)
        .unwrap()
        .scope("openid");
    // The nonce retry at PAR carries a fresh assertion: the provider refuses a replayed jti.
    let code = authorize(&client, &issuer, &auth, &request, true).await;
    assert_eq!(client.nonce_retries(), 1);
    let token = client
        .exchange_code(
            &issuer,
            &auth,
            &code,
            request.redirect_uri(),
            request.pkce(),
        )
        .await
        .unwrap();
    assert_eq!(token.token_type, "DPoP");
    let info = introspect(&provider.issuer, &token.access_token).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], "web-app", "{info}");
    assert_eq!(info["cnf"]["jkt"], client.thumbprint().as_str(), "{info}");

    // Authentication as another client than the request's is caught before sending.
    let other = client
        .authorization_request("native-app", NATIVE_REDIRECT)
        .unwrap();
    assert!(matches!(
        client
            .push_authorization_request(&issuer, &auth, &other)
            .await,
        Err(ClientError::InvalidParameter(_))
    ));
}
