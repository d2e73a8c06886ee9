//! Standards §5 rows 41 to 45 over real HTTP: `keybound serve` with its `[mtls]` listener
//! (rustls, client certificates requested) for certificate-bound tokens and certificate client
//! authentication, and with `trusted_proxies` (RFC 9440 `Client-Cert` from a TLS-terminating
//! proxy) next to `keybound gateway --trusted-proxy`. Certificates are made at test time
//! (`keybound_tls::test_pki`). After every refusal the test checks that nothing was issued
//! (`keybound_tokens_issued_total`) and that the rightful client still succeeds.
//! `docs/security.md` lists the rows and these tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::free_port;
use common::proofs::{jkt, jwt_payload, new_key, proof, resource_proof};
use common::server::{
    Gateway, Reply, SECRET, Server, Setup, Upstream, client_from, https_client, secret_clients,
    send,
};
use keybound_core::cert::encode_client_cert;
use keybound_core::{AccessTokenClaims, Algorithm};
use keybound_tls::test_pki::{ClientSpec, TestCa, TestIdentity, self_signed};
use rcgen::DnType;

/// `keybound serve` with its mTLS listener, and the PKI around it.
struct Mtls {
    server: Server,
    /// The mTLS listener's base URL (also `mtls_endpoint_aliases`).
    base: String,
    /// Issued the listener's certificate and `pki-dn`'s; pinned for `pki-dn`.
    ca: TestCa,
    /// Another server-wide trust anchor.
    partner: TestCa,
    /// The certificate registered for `self-signed`.
    registered: TestIdentity,
}

fn pki_app(ca: &TestCa, organization: &str, expired: bool) -> TestIdentity {
    ca.client(&ClientSpec {
        subject: vec![
            (DnType::OrganizationName, organization.into()),
            (DnType::CommonName, "pki-app".into()),
        ],
        expired,
        ..ClientSpec::default()
    })
}

fn start() -> Mtls {
    let (ca, partner) = (TestCa::new("Keybound Test CA"), TestCa::new("Partner CA"));
    let registered = self_signed(&ClientSpec::common_name("self-signed-app"));
    let listener = ca.server();
    let mtls_port = free_port();
    let setup = Setup::new("mtls").also_listening_on(mtls_port);
    let base = format!("https://127.0.0.1:{mtls_port}");
    let config = format!(
        r#"
[mtls]
base_url = "{base}"
listen = "127.0.0.1:{mtls_port}"
server_cert_file = "{cert}"
server_key_file = "{key}"
client_ca_files = ["{ca}", "{partner}"]

[[clients]]
client_id = "pki-dn"
auth_method = "tls_client_auth"
tls_client_auth_subject_dn = "cn=pki-app, o=Example   Org"
tls_client_auth_ca_file = "{ca}"
tls_client_certificate_bound_access_tokens = true

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
"#,
        cert = setup.file("server.pem", &listener.cert_pem),
        key = setup.file("server-key.pem", &listener.key_pem),
        ca = setup.file("ca.pem", &ca.pem),
        partner = setup.file("partner.pem", &partner.pem),
        jwks = registered.jwks_with_x5c().replace('"', "\\\""),
        hash = keybound_server::hash_secret(SECRET),
    );
    Mtls {
        server: setup.start(&config),
        base,
        ca,
        partner,
        registered,
    }
}

impl Mtls {
    /// An HTTPS client trusting the test CA, presenting `identity` if given.
    fn client(&self, identity: Option<&TestIdentity>) -> reqwest::Client {
        https_client(&self.ca, identity)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Client credentials for `client_id` at the mTLS alias, over a connection presenting
    /// `identity`, with these extra headers.
    async fn token(
        &self,
        client_id: &str,
        identity: Option<&TestIdentity>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client(identity).post(self.url("/token")).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
        ]);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::of(request.send().await.unwrap()).await
    }

    /// `GET /api/whoami` over the mTLS listener, presenting `identity`.
    async fn whoami(&self, identity: Option<&TestIdentity>, headers: &[(&str, &str)]) -> Reply {
        let client = self.client(identity);
        send(&client, "GET", &self.url("/api/whoami"), headers, None).await
    }
}

/// Runs refused token requests, then checks nothing was issued.
async fn refused_token_requests(mtls: &Mtls, cases: Vec<(&str, Reply, u16, &str)>, before: u64) {
    for (what, reply, status, error) in cases {
        reply.assert_error(status, error, what);
    }
    assert_eq!(mtls.server.tokens_issued().await, before, "nothing issued");
}

#[tokio::test]
async fn attack41_a_certificate_bound_token_with_another_or_no_certificate_is_invalid_token() {
    let mtls = start();
    let mine = &mtls.registered;
    let reply = mtls.token("self-signed", Some(mine), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["token_type"], "Bearer", "RFC 8705 §3");
    let token = reply.access_token();
    assert_eq!(
        jwt_payload(&token)["cnf"]["x5t#S256"],
        mine.client_certificate().thumbprint().as_str()
    );
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let thief = self_signed(&ClientSpec::common_name("self-signed-app"));
    mtls.whoami(Some(&thief), &auth).await.assert_challenge(
        401,
        "Bearer",
        "invalid_token",
        "#41 another certificate",
    );
    mtls.whoami(None, &auth).await.assert_challenge(
        401,
        "Bearer",
        "invalid_token",
        "#41 no certificate",
    );
    mtls.server
        .api("/api/whoami", &auth)
        .await
        .assert_challenge(401, "Bearer", "invalid_token", "#41 the plain listener");
    // The same request with the bound certificate.
    let ok = mtls.whoami(Some(mine), &auth).await;
    assert_eq!(ok.status, 200, "{:?}", ok.challenges);
    assert_eq!(ok.body["client_id"], "self-signed");
}

#[tokio::test]
async fn attack42_a_client_cert_header_counts_only_from_the_trusted_proxy() {
    let victim = self_signed(&ClientSpec::common_name("app"));
    let server = Setup::new("proxy").start(&format!(
        "[mtls]\ntrusted_proxies = [\"127.0.0.1\"]\n{}\n[[clients]]\nclient_id = \"self-signed\"\n\
         auth_method = \"self_signed_tls_client_auth\"\njwks = \"{}\"\n\
         tls_client_certificate_bound_access_tokens = true\n",
        secret_clients(),
        victim.jwks_with_x5c().replace('"', "\\\"")
    ));
    // The victim's certificate is public; its private key is not. The attacker, not behind
    // the proxy (127.0.0.2), sends the certificate in the header the proxy would set.
    let forwarded = encode_client_cert(victim.der.as_ref());
    let attacker = client_from("127.0.0.2");
    let form = "grant_type=client_credentials&client_id=self-signed";
    let headers = [
        ("client-cert", forwarded.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let issued = server.tokens_issued().await;
    send(
        &attacker,
        "POST",
        &server.url("/token"),
        &headers,
        Some(form),
    )
    .await
    .assert_error(
        401,
        "invalid_client",
        "#42 header from an untrusted peer, AS",
    );
    assert_eq!(server.tokens_issued().await, issued, "#42: nothing issued");
    // The proxy (127.0.0.1) forwarding the certificate of a connection it verified.
    let proxy = client_from("127.0.0.1");
    let reply = send(&proxy, "POST", &server.url("/token"), &headers, Some(form)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let token = reply.access_token();
    assert_eq!(
        jwt_payload(&token)["cnf"]["x5t#S256"],
        victim.client_certificate().thumbprint().as_str()
    );

    // The stolen token with the victim's certificate in the header, at keybound serve's own demo
    // API and at a gateway, both trusting the same proxy as the token endpoint.
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&server, &upstream, &["--trusted-proxy", "127.0.0.1"], &[]);
    let bearer = format!("Bearer {token}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("client-cert", forwarded.as_str()),
    ];
    for (api, what) in [
        (server.url("/api/whoami"), "serve's API"),
        (gateway.url("/api/hello"), "gateway"),
    ] {
        send(&attacker, "GET", &api, &headers, None)
            .await
            .assert_challenge(
                401,
                "Bearer",
                "invalid_token",
                &format!("#42 header from an untrusted peer, {what}"),
            );
        assert!(upstream.requests().is_empty());
        let ok = send(&proxy, "GET", &api, &headers, None).await;
        assert_eq!(ok.status, 200, "{what}: {:?}", ok.challenges);
    }
    // Whoever sent it, the header does not reach the API.
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert!(
        !seen[0].headers.contains_key("client-cert"),
        "{:?}",
        seen[0].headers
    );
}

#[tokio::test]
async fn attack43_the_registered_subject_from_another_trusted_ca_or_expired_is_invalid_client() {
    let mtls = start();
    let before = mtls.server.tokens_issued().await;
    let impostor = pki_app(&mtls.partner, "Example Org", false);
    let expired = pki_app(&mtls.ca, "Example Org", true);
    let cases = vec![
        (
            "#43 same subject, another trusted CA",
            mtls.token("pki-dn", Some(&impostor), &[]).await,
            401,
            "invalid_client",
        ),
        (
            "#43 expired",
            mtls.token("pki-dn", Some(&expired), &[]).await,
            401,
            "invalid_client",
        ),
    ];
    refused_token_requests(&mtls, cases, before).await;
    let ok = mtls
        .token(
            "pki-dn",
            Some(&pki_app(&mtls.ca, "Example Org", false)),
            &[],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[tokio::test]
async fn attack44_the_subject_dn_and_ip_san_are_compared_by_value_not_as_text() {
    let mtls = start();
    // Registered as "cn=pki-app, o=Example   Org": other case, spacing and spelling.
    let ok = mtls
        .token(
            "pki-dn",
            Some(&pki_app(&mtls.ca, "Example Org", false)),
            &[],
        )
        .await;
    assert_eq!(ok.status, 200, "#44 DN matching rule: {}", ok.body);
    // Registered as "0:0:0:0:0:0:0:1"; the certificate says ::1.
    let ip = |addr: &str| {
        mtls.partner.client(&ClientSpec {
            ips: vec![addr.parse().unwrap()],
            ..ClientSpec::common_name("ip-client")
        })
    };
    let ok = mtls.token("pki-ip", Some(&ip("::1")), &[]).await;
    assert_eq!(ok.status, 200, "#44 IP SAN in binary: {}", ok.body);
    let before = mtls.server.tokens_issued().await;
    let cases = vec![
        (
            "#44 another IP",
            mtls.token("pki-ip", Some(&ip("::2")), &[]).await,
            401,
            "invalid_client",
        ),
        (
            "#44 another organization",
            mtls.token(
                "pki-dn",
                Some(&pki_app(&mtls.ca, "Example Orgs", false)),
                &[],
            )
            .await,
            401,
            "invalid_client",
        ),
    ];
    refused_token_requests(&mtls, cases, before).await;
}

#[tokio::test]
async fn attack45_no_token_carries_both_bindings_and_a_forged_one_is_refused() {
    let mtls = start();
    let mine = &mtls.registered;
    let key = new_key();
    let token_url = mtls.url("/token");
    // A client whose tokens are bound to its certificate, sending a DPoP proof as well.
    let before = mtls.server.tokens_issued().await;
    let dpop = proof(&key, "POST", &token_url, "t45");
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("secret-cert-bound:{SECRET}")
        )
    );
    let cases = vec![
        (
            "#45 self_signed_tls_client_auth + proof",
            mtls.token("self-signed", Some(mine), &[("dpop", &dpop)])
                .await,
            400,
            "invalid_request",
        ),
        (
            "#45 client_secret_basic over mTLS + proof",
            mtls.token(
                "secret-cert-bound",
                Some(mine),
                &[("dpop", &dpop), ("authorization", &basic)],
            )
            .await,
            400,
            "invalid_request",
        ),
    ];
    refused_token_requests(&mtls, cases, before).await;
    // A certificate-authenticated client without certificate-bound tokens, with a proof:
    // bound to the DPoP key only.
    let ip = mtls.ca.client(&ClientSpec {
        ips: vec!["::1".parse().unwrap()],
        ..ClientSpec::common_name("ip-client")
    });
    let reply = mtls.token("pki-ip", Some(&ip), &[("dpop", &dpop)]).await;
    assert_eq!(
        reply.status, 200,
        "the refusals left the jti free: {}",
        reply.body
    );
    let cnf = &jwt_payload(&reply.access_token())["cnf"];
    assert_eq!(cnf, &serde_json::json!({ "jkt": jkt(&key) }), "#45");
    // That DPoP token at serve's demo API over the mTLS listener, with a proof naming the
    // listener's own URL ([mtls] base_url): accepted.
    let dpop_token = reply.access_token();
    let at_mtls = resource_proof(&key, "GET", &mtls.url("/api/whoami"), &dpop_token, "m45");
    let auth = format!("DPoP {dpop_token}");
    let headers = [("authorization", auth.as_str()), ("dpop", at_mtls.as_str())];
    let ok = mtls.whoami(Some(&ip), &headers).await;
    assert_eq!(ok.status, 200, "{:?}", ok.challenges);
    assert_eq!(ok.body["jkt"], jkt(&key));
    // Without the proof, the certificate-bound client: the certificate only.
    let reply = mtls.token("self-signed", Some(mine), &[]).await;
    let token = reply.access_token();
    let x5t = mine.client_certificate().thumbprint().as_str().to_owned();
    assert_eq!(
        jwt_payload(&token)["cnf"],
        serde_json::json!({ "x5t#S256": x5t })
    );

    // Forged with the AS's own signing key (read from its data directory): both bindings, and
    // each presented in full, the DPoP key with a proof and the certificate on the connection.
    // Refused either way, by the one-binding rule (its error_description says so).
    let ring =
        keybound_server::keys::load_or_create(&mtls.server.data_dir(), Algorithm::Es256).unwrap();
    let mut claims: AccessTokenClaims = serde_json::from_value(jwt_payload(&token)).unwrap();
    claims.jti = "forged-45".into();
    let sign = |cnf: serde_json::Value| {
        let mut claims = claims.clone();
        claims.cnf = Some(serde_json::from_value(cnf).unwrap());
        ring.signer().sign(&claims).unwrap()
    };
    let both = sign(serde_json::json!({ "jkt": jkt(&key), "x5t#S256": x5t }));
    let as_bearer = format!("Bearer {both}");
    let refusals = [
        (
            "#45 forged, DPoP scheme with the proof",
            mtls.server.whoami_dpop(&key, &both, "r45").await,
            "DPoP",
        ),
        (
            "#45 forged, Bearer scheme with the certificate",
            mtls.whoami(Some(mine), &[("authorization", &as_bearer)])
                .await,
            "Bearer",
        ),
    ];
    for (what, reply, scheme) in refusals {
        reply.assert_challenge(401, scheme, "invalid_token", what);
        assert!(
            reply.challenge.contains("exactly one binding"),
            "{what}: {:?}",
            reply.challenges
        );
    }
    // The same forging with one binding is accepted: the second binding is what is refused.
    let one = sign(serde_json::json!({ "x5t#S256": x5t }));
    let ok = mtls
        .whoami(Some(mine), &[("authorization", &format!("Bearer {one}"))])
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.challenges);
    let one = sign(serde_json::json!({ "jkt": jkt(&key) }));
    let ok = mtls.server.whoami_dpop(&key, &one, "r45").await;
    assert_eq!(
        ok.status, 200,
        "the refusal left the jti free: {:?}",
        ok.challenges
    );
}
