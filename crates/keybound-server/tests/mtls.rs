//! RFC 8705 at the AS: `tls_client_auth` and `self_signed_tls_client_auth` (standards §3.1),
//! certificate-bound access tokens (§3.2), refresh tokens of public clients bound to the
//! certificate (§3.4), `mtls_endpoint_aliases`, and the mTLS attacks of §5 (#43, #44, #45).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::{Harness, SECRET, key, temp_dir};
use keybound_core::{Algorithm, UnixTime};
use keybound_store::{Grant, GrantId, GrantStore as _, RefreshTokenRecord, RefreshTokenState};
use keybound_tls::test_pki::{ClientSpec, TestCa, TestIdentity, self_signed};
use rcgen::DnType;

struct Pki {
    ca: TestCa,
    partner: TestCa,
    registered_self_signed: TestIdentity,
}

fn jwks_for(identity: &TestIdentity) -> String {
    identity.jwks_with_x5c().replace('"', "\\\"")
}

async fn harness() -> (Harness, Pki) {
    let dir = temp_dir("mtls");
    let pki = Pki {
        ca: TestCa::new("Keybound Test CA"),
        partner: TestCa::new("Partner CA"),
        registered_self_signed: self_signed(&ClientSpec::common_name("self-signed-app")),
    };
    std::fs::write(dir.join("ca.pem"), &pki.ca.pem).unwrap();
    std::fs::write(dir.join("partner.pem"), format!("{}\n", pki.partner.pem)).unwrap();
    let extra = format!(
        r#"
[mtls]
base_url = "https://mtls.as.example.com"
client_ca_files = ["{dir}/ca.pem", "{dir}/partner.pem"]

[[clients]]
client_id = "pki-dn"
auth_method = "tls_client_auth"
tls_client_auth_subject_dn = "cn=pki-app, o=Example   Org"
tls_client_auth_ca_file = "{dir}/ca.pem"
tls_client_certificate_bound_access_tokens = true
scopes = ["read"]

[[clients]]
client_id = "pki-ip"
auth_method = "tls_client_auth"
tls_client_auth_san_ip = "0:0:0:0:0:0:0:1"

[[clients]]
client_id = "self-signed"
auth_method = "self_signed_tls_client_auth"
jwks = "{jwks}"
tls_client_certificate_bound_access_tokens = true

[[clients]]
client_id = "secret-cert-bound"
auth_method = "client_secret_basic"
client_secret_sha256 = "{hash}"
tls_client_certificate_bound_access_tokens = true

[[clients]]
client_id = "public-cert-bound"
auth_method = "none"
grant_types = ["refresh_token"]
tls_client_certificate_bound_access_tokens = true
"#,
        dir = dir.display(),
        jwks = jwks_for(&pki.registered_self_signed),
        hash = keybound_server::hash_secret(SECRET),
    );
    (Harness::in_dir(dir, &extra).await, pki)
}

fn pki_app(ca: &TestCa) -> TestIdentity {
    ca.client(&ClientSpec {
        subject: vec![
            (DnType::OrganizationName, "Example Org".into()),
            (DnType::CommonName, "pki-app".into()),
        ],
        ..ClientSpec::default()
    })
}

const CC: [(&str, &str); 1] = [("grant_type", "client_credentials")];

async fn cc(h: &Harness, client_id: &str, cert: Option<&TestIdentity>) -> common::Reply {
    let cert = cert.map(TestIdentity::client_certificate);
    h.post_with_cert(
        "/token",
        cert.as_ref(),
        None,
        &[],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
        ],
    )
    .await
}

async fn claims(h: &Harness, token: &str) -> keybound_core::AccessTokenClaims {
    let verifier = keybound_core::AccessTokenVerifier::new(
        h.key_set().await,
        common::ISSUER,
        h.state.audience(),
    );
    verifier.verify(token, h.now()).unwrap()
}

#[tokio::test]
async fn tls_client_auth_with_the_registered_subject_gets_a_certificate_bound_token() {
    let (h, pki) = harness().await;
    let me = pki_app(&pki.ca);
    let reply = cc(&h, "pki-dn", Some(&me)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // RFC 8705 §3: the token type stays Bearer; the binding is cnf.x5t#S256.
    assert_eq!(reply.body["token_type"], "Bearer");
    let token = reply.body["access_token"].as_str().unwrap();
    let cnf = claims(&h, token).await.cnf.unwrap();
    assert_eq!(
        cnf.x5t_s256.as_ref(),
        Some(me.client_certificate().thumbprint())
    );
    assert!(cnf.jkt.is_none(), "§5 #45: never both bindings");

    // Introspection (by the same client, same certificate): top-level cnf, token_type Bearer.
    let cert = me.client_certificate();
    let intro = h
        .post_with_cert(
            "/introspect",
            Some(&cert),
            None,
            &[],
            &[("token", token), ("client_id", "pki-dn")],
        )
        .await;
    assert_eq!(intro.body["active"], true, "{:?}", intro.body);
    assert_eq!(intro.body["token_type"], "Bearer");
    assert_eq!(
        intro.body["cnf"]["x5t#S256"],
        me.client_certificate().thumbprint().as_str()
    );
}

#[tokio::test]
async fn tls_client_auth_refuses_a_missing_or_foreign_certificate() {
    let (h, pki) = harness().await;
    cc(&h, "pki-dn", None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    // Another subject from the right CA.
    let other = pki.ca.client(&ClientSpec::common_name("someone-else"));
    cc(&h, "pki-dn", Some(&other))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    // A self-signed certificate with the registered subject.
    let forged = self_signed(&ClientSpec {
        subject: vec![
            (DnType::OrganizationName, "Example Org".into()),
            (DnType::CommonName, "pki-app".into()),
        ],
        ..ClientSpec::default()
    });
    cc(&h, "pki-dn", Some(&forged))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(h.state.metrics().render().contains("certificate_rejected"));
}

#[tokio::test]
async fn attack43_same_subject_from_another_trusted_ca_or_expired_is_refused() {
    let (h, pki) = harness().await;
    // The partner CA is a server-wide anchor, but pki-dn is pinned to its own CA.
    let impostor = pki_app(&pki.partner);
    cc(&h, "pki-dn", Some(&impostor))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let expired = pki.ca.client(&ClientSpec {
        subject: vec![
            (DnType::OrganizationName, "Example Org".into()),
            (DnType::CommonName, "pki-app".into()),
        ],
        expired: true,
        ..ClientSpec::default()
    });
    cc(&h, "pki-dn", Some(&expired))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn attack44_ip_san_is_compared_in_binary_and_dn_by_the_matching_rule() {
    let (h, pki) = harness().await;
    let ip = pki.partner.client(&ClientSpec {
        ips: vec!["::1".parse().unwrap()],
        ..ClientSpec::common_name("ip-client")
    });
    let reply = cc(&h, "pki-ip", Some(&ip)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // Not certificate-bound by registration: a plain bearer token.
    assert!(
        claims(&h, reply.body["access_token"].as_str().unwrap())
            .await
            .cnf
            .is_none()
    );
    let other_ip = pki.ca.client(&ClientSpec {
        ips: vec!["::2".parse().unwrap()],
        ..ClientSpec::common_name("ip-client")
    });
    cc(&h, "pki-ip", Some(&other_ip))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    // The DN was registered as "cn=pki-app, o=Example   Org": it still matches.
    assert_eq!(
        cc(&h, "pki-dn", Some(&pki_app(&pki.ca))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn self_signed_tls_client_auth_accepts_only_the_registered_certificate() {
    let (h, pki) = harness().await;
    let reply = cc(&h, "self-signed", Some(&pki.registered_self_signed)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let cnf = claims(&h, reply.body["access_token"].as_str().unwrap())
        .await
        .cnf
        .unwrap();
    assert_eq!(
        cnf.x5t_s256.as_ref(),
        Some(pki.registered_self_signed.client_certificate().thumbprint())
    );
    let stranger = self_signed(&ClientSpec::common_name("self-signed-app"));
    cc(&h, "self-signed", Some(&stranger))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    cc(&h, "self-signed", None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn certificate_binding_applies_whatever_the_authentication_method() {
    let (h, pki) = harness().await;
    let cert = self_signed(&ClientSpec::common_name("any")).client_certificate();
    let basic = Some(("secret-cert-bound", SECRET));
    // §3.4 [choice]: the client opted in, so no certificate is an error, not a bearer token.
    h.post_with_cert("/token", None, basic, &[], &CC)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    // §5 #45: a DPoP proof would be a second binding.
    let proof = h.proof(&key(Algorithm::Es256));
    h.post_with_cert("/token", Some(&cert), basic, &[&proof], &CC)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    let reply = h
        .post_with_cert("/token", Some(&cert), basic, &[], &CC)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let cnf = claims(&h, reply.body["access_token"].as_str().unwrap())
        .await
        .cnf
        .unwrap();
    assert_eq!(cnf.x5t_s256.as_ref(), Some(cert.thumbprint()));
    drop(pki);
}

#[tokio::test]
async fn a_certificate_authenticated_client_can_still_get_dpop_bound_tokens_at_the_alias() {
    let (h, pki) = harness().await;
    let ip = pki.ca.client(&ClientSpec {
        ips: vec!["::1".parse().unwrap()],
        ..ClientSpec::common_name("ip-client")
    });
    let cert = ip.client_certificate();
    let dpop_key = key(Algorithm::EdDsa);
    for url in [
        "https://mtls.as.example.com/token",
        "https://as.example.com/token",
    ] {
        let proof = keybound_core::dpop::ProofBuilder::new("POST", url, h.now())
            .sign(&dpop_key, &aws_lc_rs::rand::SystemRandom::new())
            .unwrap();
        let reply = h
            .post_with_cert(
                "/token",
                Some(&cert),
                None,
                &[&proof],
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", "pki-ip"),
                ],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{url}: {:?}", reply.body);
        assert_eq!(reply.body["token_type"], "DPoP");
        let cnf = claims(&h, reply.body["access_token"].as_str().unwrap())
            .await
            .cnf
            .unwrap();
        assert_eq!(cnf.jkt.as_ref(), Some(dpop_key.public_jwk().thumbprint()));
        assert!(cnf.x5t_s256.is_none());
    }
    // A proof for any other URL still fails.
    let proof =
        keybound_core::dpop::ProofBuilder::new("POST", "https://evil.example/token", h.now())
            .sign(&dpop_key, &aws_lc_rs::rand::SystemRandom::new())
            .unwrap();
    h.post_with_cert(
        "/token",
        Some(&cert),
        None,
        &[&proof],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "pki-ip"),
        ],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
}

#[tokio::test]
async fn metadata_publishes_mtls_support_and_the_aliases() {
    let (h, _pki) = harness().await;
    let meta = h.get("/.well-known/oauth-authorization-server").await.body;
    assert_eq!(meta["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(
        meta["mtls_endpoint_aliases"]["token_endpoint"],
        "https://mtls.as.example.com/token"
    );
    assert_eq!(
        meta["mtls_endpoint_aliases"]["introspection_endpoint"],
        "https://mtls.as.example.com/introspect"
    );
    let methods = meta["token_endpoint_auth_methods_supported"].to_string();
    assert!(
        methods.contains("\"tls_client_auth\"") && methods.contains("self_signed_tls_client_auth")
    );
}

/// A public client's grant bound to a certificate, as the authorization-code grant creates it.
async fn public_grant(h: &Harness, cert: &TestIdentity) -> String {
    let now = h.now();
    let grant = Grant {
        id: GrantId("g-public-cert".into()),
        client_id: "public-cert-bound".into(),
        subject: "alice".into(),
        scope: String::new(),
        created_at: now,
        expires_at: UnixTime::from_secs(now.as_secs() + 3600),
        dpop_jkt: None,
        cert_x5t: Some(cert.client_certificate().thumbprint().as_str().to_owned()),
    };
    let token = "public-refresh-token-value-0123456789abcdef";
    let record = RefreshTokenRecord {
        token_hash: sha256(token),
        grant_id: grant.id.clone(),
        expires_at: grant.expires_at,
    };
    h.store.create_grant(&grant, &record).await.unwrap();
    token.to_owned()
}

fn sha256(text: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref().try_into().unwrap()
}

#[tokio::test]
async fn a_public_clients_refresh_token_is_bound_to_its_certificate() {
    let (h, _pki) = harness().await;
    let mine = self_signed(&ClientSpec::common_name("public-app"));
    let thief = self_signed(&ClientSpec::common_name("public-app"));
    let refresh = public_grant(&h, &mine).await;
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "public-cert-bound"),
        ("refresh_token", refresh.as_str()),
    ];
    // §3.4: another certificate, or none, is invalid_grant (none is refused earlier, since
    // the client's tokens are certificate-bound), and consumes nothing.
    let theirs = thief.client_certificate();
    h.post_with_cert("/token", Some(&theirs), None, &[], &form)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    h.post_with_cert("/token", None, None, &[], &form)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(matches!(
        h.store
            .refresh_token_state(&sha256(&refresh), h.now())
            .await
            .unwrap(),
        RefreshTokenState::Active(_)
    ));
    let cert = mine.client_certificate();
    let reply = h
        .post_with_cert("/token", Some(&cert), None, &[], &form)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let cnf = claims(&h, reply.body["access_token"].as_str().unwrap())
        .await
        .cnf
        .unwrap();
    assert_eq!(cnf.x5t_s256.as_ref(), Some(cert.thumbprint()));
    assert!(reply.body["refresh_token"].is_string());
}

#[test]
fn mtls_configuration_errors_name_the_key() {
    let base = |client: &str, mtls: &str| {
        format!(
            "issuer = \"https://as.example.com\"\n{mtls}\n[[clients]]\nclient_id = \"c\"\n{client}\n"
        )
    };
    let cases = [
        (
            base(
                "auth_method = \"tls_client_auth\"",
                "[mtls]\nbase_url = \"https://m.example\"",
            ),
            "clients[0].tls_client_auth_subject_dn",
        ),
        (
            base(
                "auth_method = \"tls_client_auth\"\ntls_client_auth_san_dns = \"a\"\ntls_client_auth_san_uri = \"b\"",
                "[mtls]\nbase_url = \"https://m.example\"",
            ),
            "clients[0].tls_client_auth_subject_dn",
        ),
        (
            base(
                "auth_method = \"tls_client_auth\"\ntls_client_auth_san_dns = \"a\"",
                "[mtls]\nbase_url = \"https://m.example\"",
            ),
            "clients[0].tls_client_auth_ca_file",
        ),
        (
            base(
                "auth_method = \"tls_client_auth\"\ntls_client_auth_san_dns = \"a\"\ntls_client_auth_ca_file = \"/nonexistent/ca.pem\"",
                "[mtls]\nbase_url = \"https://m.example\"",
            ),
            "clients[0].tls_client_auth_ca_file",
        ),
        (
            base("auth_method = \"self_signed_tls_client_auth\"", ""),
            "clients[0].jwks",
        ),
        (
            base(
                "auth_method = \"none\"\ngrant_types = [\"refresh_token\"]\ntls_client_auth_san_dns = \"a\"",
                "",
            ),
            "clients[0].tls_client_auth_san_dns",
        ),
        (
            base(
                "auth_method = \"none\"\ngrant_types = [\"refresh_token\"]\ndpop_bound_access_tokens = true\ntls_client_certificate_bound_access_tokens = true",
                "",
            ),
            "clients[0].tls_client_certificate_bound_access_tokens",
        ),
        (
            base(
                "auth_method = \"none\"\ngrant_types = [\"refresh_token\"]",
                "[mtls]\ntrusted_proxies = [\"10.0.0.0/99\"]",
            ),
            "mtls.trusted_proxies[0]",
        ),
        (
            base(
                "auth_method = \"none\"\ngrant_types = [\"refresh_token\"]",
                "[mtls]\nlisten = \"127.0.0.1:8444\"",
            ),
            "mtls.listen",
        ),
    ];
    for (text, key) in cases {
        let error = keybound_server::Config::from_toml(&text)
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(error.key, key, "{text}\n{error}");
    }
}
