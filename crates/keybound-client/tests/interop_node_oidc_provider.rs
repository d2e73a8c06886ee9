//! Interoperability: keybound's client obtains a DPoP-bound token from node-oidc-provider (a
//! certified OpenID Provider, installed by `scripts/test` at a pinned version) with a server
//! nonce required, and the provider's own introspection confirms the binding to our key.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use keybound_client::{ClientAuth, DpopClient};
use keybound_core::{Algorithm, SigningKey};

#[tokio::test]
async fn dpop_bound_token_from_node_oidc_provider() {
    let Some(provider) = common::start_provider(&[]) else {
        return;
    };
    let issuer = provider.issuer.clone();
    let key = SigningKey::generate(Algorithm::Es256, &aws_lc_rs::rand::SystemRandom::new())
        .unwrap()
        .0;
    let client = DpopClient::new(key).unwrap();
    let metadata = client.discover(&issuer).await.unwrap();
    assert!(
        metadata
            .dpop_signing_alg_values_supported
            .iter()
            .any(|a| a == "ES256"),
        "{metadata:?}"
    );
    let secret = "s3cret-s3cret-s3cret-s3cret";
    let auth = ClientAuth::Secret {
        client_id: "app".into(),
        client_secret: secret.into(),
    };
    let token = client
        .client_credentials(&metadata, &auth, None)
        .await
        .unwrap();
    assert_eq!(token.token_type, "DPoP");
    assert_eq!(
        client.nonce_retries(),
        1,
        "the provider requires a nonce: exactly one retry"
    );

    let info: serde_json::Value = reqwest::Client::new()
        .post(format!("{issuer}/token/introspection"))
        .basic_auth("app", Some(secret))
        .form(&[("token", token.access_token.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["token_type"], "DPoP");
    assert_eq!(
        info["cnf"]["jkt"],
        client.thumbprint().as_str(),
        "bound to our key"
    );
}
