//! The authorization-code flow for browser and native apps: PKCE (S256 only, RFC 7636), an
//! authorization request whose code is bound to the client's DPoP key with `dpop_jkt`
//! (RFC 9449 §10), pushed authorization requests (PAR, RFC 9126) with an optional `DPoP` proof
//! header (RFC 9449 §10.1), callback checks (`state` in constant time, `iss` per RFC 9207, the
//! AS's `error`), and the code exchange with a DPoP proof.
//!
//! ```no_run
//! # async fn run(client: keybound_client::DpopClient) -> Result<(), keybound_client::ClientError> {
//! use keybound_client::ClientAuth;
//! let issuer = client.discover("https://as.example.com").await?;
//! let auth = ClientAuth::Public { client_id: "mobile".into() };
//! // State, PKCE and dpop_jkt (the client key's thumbprint) are set; keep `request` (or its
//! // state, redirect URI and PKCE verifier) until the callback arrives.
//! let request = client
//!     .authorization_request("mobile", "com.example.app:/callback")?
//!     .scope("orders:read");
//! // Push it (client authentication and a DPoP proof, one nonce retry) and send the user's
//! // browser to a URL that carries only client_id and request_uri.
//! let pushed = client.push_authorization_request(&issuer, &auth, &request).await?;
//! let browser_url = pushed.authorization_url(&issuer)?;
//! // Without PAR: `request.authorization_url(&issuer)?` carries every parameter.
//! # let callback = String::new();
//! // The browser comes back to the redirect URI: check it, then redeem the code.
//! let code = request.parse_callback(&issuer, &callback)?;
//! let token = client
//!     .exchange_code(&issuer, &auth, &code, request.redirect_uri(), request.pkce())
//!     .await?;
//! assert_eq!(token.token_type, "DPoP");
//! # let _ = browser_url; Ok(()) }
//! ```

use std::fmt;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keybound_core::ErrorCode;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::{ClientAuth, ClientError, DpopClient, IssuerMetadata, TokenResponse};

/// Parameters the request builder sets itself; [`AuthorizationRequest::param`] cannot
/// override them.
const RESERVED: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "dpop_jkt",
    "request",
    "request_uri",
];

fn random_b64(bytes: usize) -> Result<String, ClientError> {
    let mut buf = Zeroizing::new(vec![0u8; bytes]);
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| ClientError::Key("no randomness".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(&*buf))
}

/// A PKCE pair (RFC 7636), S256 only: the secret `code_verifier` kept by the client and the
/// `code_challenge` sent in the authorization request. `Debug` never shows the verifier.
#[derive(Clone)]
pub struct Pkce {
    verifier: Zeroizing<String>,
    challenge: String,
}

impl Pkce {
    /// The only method keybound sends (`plain` would put the verifier in the front channel).
    pub const METHOD: &'static str = "S256";

    /// A fresh pair: the verifier is 32 random bytes, base64url (43 characters).
    ///
    /// # Errors
    /// [`ClientError::Key`] if the system has no randomness.
    pub fn generate() -> Result<Self, ClientError> {
        let mut octets = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(&mut *octets)
            .map_err(|_| ClientError::Key("no randomness".into()))?;
        Ok(Self::from_octets(&octets))
    }

    fn from_octets(octets: &[u8; 32]) -> Self {
        let verifier = Zeroizing::new(URL_SAFE_NO_PAD.encode(octets));
        let challenge = Self::challenge_of(&verifier);
        Self {
            verifier,
            challenge,
        }
    }

    /// The pair for a verifier kept elsewhere (e.g. in the session of a web app between the
    /// redirect and the callback).
    ///
    /// # Errors
    /// [`ClientError::InvalidParameter`] unless the verifier is 43 to 128 characters from
    /// `A-Z a-z 0-9 - . _ ~` (RFC 7636 §4.1).
    pub fn from_verifier(verifier: impl Into<String>) -> Result<Self, ClientError> {
        let verifier = Zeroizing::new(verifier.into());
        let valid = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !valid {
            return Err(ClientError::InvalidParameter(
                "a PKCE code_verifier is 43 to 128 characters of A-Z a-z 0-9 - . _ ~".into(),
            ));
        }
        let challenge = Self::challenge_of(&verifier);
        Ok(Self {
            verifier,
            challenge,
        })
    }

    fn challenge_of(verifier: &str) -> String {
        URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()))
    }

    /// The `code_verifier`, sent only in the code exchange. Keep it secret.
    #[must_use]
    pub fn verifier(&self) -> &str {
        &self.verifier
    }

    /// The `code_challenge`: base64url(SHA-256(verifier)).
    #[must_use]
    pub fn challenge(&self) -> &str {
        &self.challenge
    }
}

impl fmt::Debug for Pkce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkce")
            .field("method", &Self::METHOD)
            .field("challenge", &self.challenge)
            .field("verifier", &"[redacted]")
            .finish()
    }
}

/// An authorization request (RFC 6749 §4.1.1) with a random `state`, PKCE S256 and, unless
/// turned off, `dpop_jkt` = the client key's thumbprint. Made by
/// [`DpopClient::authorization_request`]; send it with [`AuthorizationRequest::authorization_url`]
/// or [`DpopClient::push_authorization_request`], then check the answer with
/// [`AuthorizationRequest::parse_callback`]. `Debug` shows neither the state nor the verifier.
#[derive(Clone)]
pub struct AuthorizationRequest {
    client_id: String,
    redirect_uri: String,
    scope: Option<String>,
    state: String,
    pkce: Pkce,
    dpop_jkt: Option<String>,
    par_dpop_proof: bool,
    extra: Vec<(String, String)>,
}

impl fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("scope", &self.scope)
            .field("state", &"[redacted]")
            .field("pkce", &self.pkce)
            .field("dpop_jkt", &self.dpop_jkt)
            .field("par_dpop_proof", &self.par_dpop_proof)
            .field(
                "extra",
                &self.extra.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl AuthorizationRequest {
    /// Asks for `scope` (space-separated).
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Adds another parameter (`prompt`, `login_hint`, `resource`, ...). A parameter the
    /// builder sets itself (`state`, `code_challenge`, `dpop_jkt`, ...) is refused when the
    /// request is sent, with [`ClientError::InvalidParameter`].
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// Leaves out `dpop_jkt`: the code is then not bound to the key by this parameter
    /// (a `DPoP` header on the PAR request still binds it, RFC 9449 §10.1).
    #[must_use]
    pub fn without_dpop_jkt(mut self) -> Self {
        self.dpop_jkt = None;
        self
    }

    /// Sends no `DPoP` proof header with the pushed request (by default one is sent, proving
    /// possession of the key the code is bound to).
    #[must_use]
    pub fn without_par_dpop_proof(mut self) -> Self {
        self.par_dpop_proof = false;
        self
    }

    /// The `client_id`.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The `redirect_uri`, needed again for the code exchange.
    #[must_use]
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The `state` the callback must carry. Keep it where only this user's session finds it.
    #[must_use]
    pub fn state(&self) -> &str {
        &self.state
    }

    /// The PKCE pair; its verifier is needed for the code exchange.
    #[must_use]
    pub fn pkce(&self) -> &Pkce {
        &self.pkce
    }

    /// The `dpop_jkt` sent, if any.
    #[must_use]
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.dpop_jkt.as_deref()
    }

    /// Every parameter, in a fixed order.
    fn parameters(&self) -> Result<Vec<(&str, &str)>, ClientError> {
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
        ];
        if let Some(scope) = &self.scope {
            params.push(("scope", scope));
        }
        params.push(("state", &self.state));
        params.push(("code_challenge", self.pkce.challenge()));
        params.push(("code_challenge_method", Pkce::METHOD));
        if let Some(jkt) = &self.dpop_jkt {
            params.push(("dpop_jkt", jkt));
        }
        for (name, value) in &self.extra {
            if RESERVED.contains(&name.as_str()) {
                return Err(ClientError::InvalidParameter(format!(
                    "{name} is set by the request builder and cannot be added"
                )));
            }
            if params.iter().any(|(n, _)| n == name) {
                return Err(ClientError::InvalidParameter(format!(
                    "{name} was added twice"
                )));
            }
            params.push((name, value));
        }
        Ok(params)
    }

    /// The front-channel URL carrying the whole request: the issuer's
    /// `authorization_endpoint` (its own query kept) plus every parameter.
    ///
    /// # Errors
    /// [`ClientError::ParRequired`] if the issuer requires pushed requests (use
    /// [`DpopClient::push_authorization_request`]); [`ClientError::MissingEndpoint`];
    /// [`ClientError::InvalidParameter`] for a reserved extra parameter.
    pub fn authorization_url(&self, issuer: &IssuerMetadata) -> Result<Url, ClientError> {
        if issuer.require_pushed_authorization_requests {
            return Err(ClientError::ParRequired);
        }
        let mut url = authorization_endpoint(issuer)?;
        url.query_pairs_mut().extend_pairs(self.parameters()?);
        Ok(url)
    }

    /// Checks the redirect that came back for this request and returns its code; see
    /// [`parse_callback`].
    ///
    /// # Errors
    /// As [`parse_callback`].
    pub fn parse_callback(
        &self,
        issuer: &IssuerMetadata,
        callback_url: &str,
    ) -> Result<AuthorizationCode, ClientError> {
        parse_callback(callback_url, &self.state, issuer)
    }
}

fn authorization_endpoint(issuer: &IssuerMetadata) -> Result<Url, ClientError> {
    let endpoint = issuer
        .authorization_endpoint
        .as_deref()
        .ok_or(ClientError::MissingEndpoint("authorization_endpoint"))?;
    Url::parse(endpoint).map_err(|e| ClientError::Discovery(format!("{endpoint}: {e}")))
}

/// The AS's answer to a pushed authorization request (RFC 9126 §2.2).
#[derive(Clone, Debug)]
pub struct PushedAuthorization {
    client_id: String,
    /// The `request_uri` that stands for the pushed request (single use).
    pub request_uri: String,
    /// Seconds until `request_uri` expires.
    pub expires_in: u64,
}

impl PushedAuthorization {
    /// The front-channel URL: the `authorization_endpoint` with only `client_id` and
    /// `request_uri` (RFC 9126 §4).
    ///
    /// # Errors
    /// [`ClientError::MissingEndpoint`] if the issuer publishes no `authorization_endpoint`.
    pub fn authorization_url(&self, issuer: &IssuerMetadata) -> Result<Url, ClientError> {
        let mut url = authorization_endpoint(issuer)?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("request_uri", &self.request_uri);
        Ok(url)
    }
}

#[derive(Deserialize)]
struct ParResponse {
    request_uri: String,
    expires_in: u64,
}

/// An authorization code from a checked callback. `Debug` does not show it.
#[derive(Clone)]
pub struct AuthorizationCode(Zeroizing<String>);

impl AuthorizationCode {
    /// A code obtained some other way (prefer [`parse_callback`], which checks `state` and `iss`).
    #[must_use]
    pub fn new(code: impl Into<String>) -> Self {
        Self(Zeroizing::new(code.into()))
    }

    /// The code.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthorizationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthorizationCode([redacted])")
    }
}

/// Checks an authorization response that arrived at the redirect URI (query form,
/// RFC 6749 §4.1.2) and returns its code. In order:
/// 1. no response parameter appears twice;
/// 2. `iss` (RFC 9207 §2.4): if present it must equal `issuer.issuer` exactly; if absent while
///    the issuer says `authorization_response_iss_parameter_supported`, the response is
///    refused (it may come from another AS: a mix-up attack);
/// 3. `state` must equal `expected_state`, compared in constant time (a missing `state` fails);
/// 4. an `error` becomes [`ClientError::AuthorizationFailed`];
/// 5. otherwise the `code`.
///
/// # Errors
/// [`ClientError::Callback`] (unreadable, duplicated parameters, no code),
/// [`ClientError::IssuerMismatch`], [`ClientError::MissingIssuer`],
/// [`ClientError::StateMismatch`], [`ClientError::AuthorizationFailed`].
pub fn parse_callback(
    callback_url: &str,
    expected_state: &str,
    issuer: &IssuerMetadata,
) -> Result<AuthorizationCode, ClientError> {
    let url =
        Url::parse(callback_url).map_err(|e| ClientError::Callback(format!("not a URL: {e}")))?;
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let one = |name: &str| -> Result<Option<&str>, ClientError> {
        let mut found = pairs.iter().filter(|(n, _)| n == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(ClientError::Callback(format!(
                "{name} appears more than once"
            )));
        }
        Ok(first.map(|(_, v)| v.as_str()))
    };
    match one("iss")? {
        Some(iss) if iss != issuer.issuer => {
            return Err(ClientError::IssuerMismatch {
                expected: issuer.issuer.clone(),
                received: iss.to_owned(),
            });
        }
        None if issuer.authorization_response_iss_parameter_supported => {
            return Err(ClientError::MissingIssuer);
        }
        _ => {}
    }
    let state_matches = one("state")?
        .is_some_and(|state| bool::from(state.as_bytes().ct_eq(expected_state.as_bytes())));
    if !state_matches {
        return Err(ClientError::StateMismatch);
    }
    if let Some(error) = one("error")? {
        return Err(ClientError::AuthorizationFailed {
            error: ErrorCode::parse(error),
            description: one("error_description")?.map(str::to_owned),
        });
    }
    match one("code")? {
        Some(code) if !code.is_empty() => Ok(AuthorizationCode::new(code)),
        _ => Err(ClientError::Callback(
            "the response has neither a code nor an error".into(),
        )),
    }
}

impl DpopClient {
    /// A new authorization request for `client_id` coming back to `redirect_uri`: fresh
    /// `state` (32 random bytes), fresh PKCE S256, and `dpop_jkt` = this client's key
    /// thumbprint, so the code is only redeemable with this key (RFC 9449 §10).
    ///
    /// # Errors
    /// [`ClientError::InvalidParameter`] if `redirect_uri` is not an absolute URI without a
    /// fragment (RFC 6749 §3.1.2); [`ClientError::Key`] if the system has no randomness.
    pub fn authorization_request(
        &self,
        client_id: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> Result<AuthorizationRequest, ClientError> {
        let redirect_uri = redirect_uri.into();
        let parsed = Url::parse(&redirect_uri).map_err(|e| {
            ClientError::InvalidParameter(format!("redirect_uri {redirect_uri}: {e}"))
        })?;
        if parsed.fragment().is_some() {
            return Err(ClientError::InvalidParameter(
                "a redirect_uri has no fragment".into(),
            ));
        }
        Ok(AuthorizationRequest {
            client_id: client_id.into(),
            redirect_uri,
            scope: None,
            state: random_b64(32)?,
            pkce: Pkce::generate()?,
            dpop_jkt: Some(self.thumbprint().as_str().to_owned()),
            par_dpop_proof: true,
            extra: Vec::new(),
        })
    }

    /// Pushes `request` to the issuer's `pushed_authorization_request_endpoint` (RFC 9126):
    /// client authentication as at the token endpoint, and (unless
    /// [`AuthorizationRequest::without_par_dpop_proof`]) a `DPoP` proof for `POST` on that
    /// endpoint, which binds the code to this client's key even without `dpop_jkt`
    /// (RFC 9449 §10.1). A `use_dpop_nonce` answer is retried exactly once.
    ///
    /// # Errors
    /// [`ClientError::MissingEndpoint`] if the issuer has no PAR endpoint;
    /// [`ClientError::InvalidParameter`] if `auth` is for another client than the request or
    /// an extra parameter is reserved; [`ClientError::Refused`] with the AS's error.
    pub async fn push_authorization_request(
        &self,
        issuer: &IssuerMetadata,
        auth: &ClientAuth,
        request: &AuthorizationRequest,
    ) -> Result<PushedAuthorization, ClientError> {
        let endpoint = self
            .mtls_alias(issuer, |a| {
                a.pushed_authorization_request_endpoint.as_deref()
            })
            .or(issuer.pushed_authorization_request_endpoint.as_deref())
            .ok_or(ClientError::MissingEndpoint(
                "pushed_authorization_request_endpoint",
            ))?;
        if auth.client_id() != request.client_id {
            return Err(ClientError::InvalidParameter(format!(
                "the request is for client {} but the authentication is for {}",
                request.client_id,
                auth.client_id()
            )));
        }
        let params = request.parameters()?;
        let body = self
            .post_to_as(
                issuer,
                endpoint,
                auth,
                &params,
                request.par_dpop_proof,
                StatusCode::CREATED,
            )
            .await?;
        let response: ParResponse = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Http(format!("PAR response: {e}")))?;
        Ok(PushedAuthorization {
            client_id: request.client_id.clone(),
            request_uri: response.request_uri,
            expires_in: response.expires_in,
        })
    }

    /// Redeems an authorization code (`grant_type=authorization_code`) with `redirect_uri`
    /// and the PKCE verifier, a DPoP proof by this client's key, client authentication, and
    /// one nonce retry. As for every grant, a response whose `token_type` is not `DPoP` is
    /// discarded.
    ///
    /// # Errors
    /// [`ClientError::Refused`] with the server's error (`invalid_grant` when the code is
    /// bound to another key, RFC 9449 §10), or [`ClientError::NotDpopBound`].
    pub async fn exchange_code(
        &self,
        issuer: &IssuerMetadata,
        auth: &ClientAuth,
        code: &AuthorizationCode,
        redirect_uri: &str,
        pkce: &Pkce,
    ) -> Result<TokenResponse, ClientError> {
        self.token_request(
            issuer,
            auth,
            &[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect_uri),
                ("code_verifier", pkce.verifier()),
            ],
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

    use super::*;

    const ISSUER: &str = "https://as.example.com";

    fn metadata(extra: serde_json::Value) -> IssuerMetadata {
        let mut base = serde_json::json!({
            "issuer": ISSUER,
            "token_endpoint": "https://as.example.com/token",
            "authorization_endpoint": "https://as.example.com/authorize?tenant=a",
            "pushed_authorization_request_endpoint": "https://as.example.com/par",
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    fn client() -> DpopClient {
        let rng = SystemRandom::new();
        DpopClient::new(
            keybound_core::SigningKey::generate(keybound_core::Algorithm::Es256, &rng)
                .unwrap()
                .0,
        )
        .unwrap()
    }

    fn query(url: &Url) -> Vec<(String, String)> {
        url.query_pairs().into_owned().collect()
    }

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        let vector: serde_json::Value =
            serde_json::from_str(include_str!("../testdata/rfc7636-appendix-b.json")).unwrap();
        let verifier = vector["code_verifier"].as_str().unwrap();
        let challenge = vector["code_challenge"].as_str().unwrap();
        assert_eq!(vector["code_challenge_method"], Pkce::METHOD);

        let pkce = Pkce::from_verifier(verifier).unwrap();
        assert_eq!(pkce.challenge(), challenge);
        assert_eq!(pkce.verifier(), verifier);

        // The same 32 octets through the path `generate` uses give the same pair.
        let octets: Vec<u8> = vector["random_octets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| u8::try_from(o.as_u64().unwrap()).unwrap())
            .collect();
        let from_octets = Pkce::from_octets(&octets.try_into().unwrap());
        assert_eq!(from_octets.verifier(), verifier);
        assert_eq!(from_octets.challenge(), challenge);
    }

    #[test]
    fn generated_pkce_is_43_chars_fresh_and_hidden_from_debug() {
        let a = Pkce::generate().unwrap();
        let b = Pkce::generate().unwrap();
        assert_eq!(a.verifier().len(), 43);
        assert_ne!(a.verifier(), b.verifier());
        assert_eq!(
            Pkce::from_verifier(a.verifier()).unwrap().challenge(),
            a.challenge()
        );
        let shown = format!("{a:?}");
        assert!(!shown.contains(a.verifier()), "{shown}");
        assert!(shown.contains(a.challenge()), "{shown}");
    }

    #[test]
    fn a_malformed_verifier_is_refused() {
        for bad in ["short", &"a".repeat(129), &format!("{}+", "a".repeat(43))] {
            assert!(
                matches!(
                    Pkce::from_verifier(bad),
                    Err(ClientError::InvalidParameter(_))
                ),
                "{bad}"
            );
        }
        assert!(Pkce::from_verifier("a".repeat(128)).is_ok());
    }

    #[test]
    fn authorization_url_carries_state_pkce_and_dpop_jkt() {
        let client = client();
        let request = client
            .authorization_request("web", "https://app.example/cb")
            .unwrap()
            .scope("openid orders")
            .param("prompt", "consent");
        let url = request
            .authorization_url(&metadata(serde_json::json!({})))
            .unwrap();
        assert_eq!(url.path(), "/authorize");
        let q = query(&url);
        let get = |n: &str| q.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("tenant"), Some("a"), "the endpoint's own query is kept");
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("client_id"), Some("web"));
        assert_eq!(get("redirect_uri"), Some("https://app.example/cb"));
        assert_eq!(get("scope"), Some("openid orders"));
        assert_eq!(get("state"), Some(request.state()));
        assert_eq!(get("code_challenge"), Some(request.pkce().challenge()));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("dpop_jkt"), Some(client.thumbprint().as_str()));
        assert_eq!(get("prompt"), Some("consent"));
        assert!(
            !url.as_str().contains(request.pkce().verifier()),
            "never the verifier"
        );
        assert_eq!(request.state().len(), 43);
        let shown = format!("{request:?}");
        assert!(!shown.contains(request.state()), "{shown}");
        assert!(!shown.contains(request.pkce().verifier()), "{shown}");

        let again = client
            .authorization_request("web", "https://app.example/cb")
            .unwrap();
        assert_ne!(again.state(), request.state(), "state is fresh per request");

        let unbound = again.without_dpop_jkt();
        let url = unbound
            .authorization_url(&metadata(serde_json::json!({})))
            .unwrap();
        assert!(query(&url).iter().all(|(k, _)| k != "dpop_jkt"));
    }

    #[test]
    fn reserved_params_a_required_par_and_a_missing_endpoint_are_refused() {
        let client = client();
        let issuer = metadata(serde_json::json!({}));
        let overriding = client
            .authorization_request("web", "https://app.example/cb")
            .unwrap()
            .param("state", "chosen");
        assert!(matches!(
            overriding.authorization_url(&issuer),
            Err(ClientError::InvalidParameter(_))
        ));
        let request = client
            .authorization_request("web", "https://app.example/cb")
            .unwrap();
        let par_only =
            metadata(serde_json::json!({ "require_pushed_authorization_requests": true }));
        assert!(matches!(
            request.authorization_url(&par_only),
            Err(ClientError::ParRequired)
        ));
        let no_endpoint = metadata(serde_json::json!({ "authorization_endpoint": null }));
        assert!(matches!(
            request.authorization_url(&no_endpoint),
            Err(ClientError::MissingEndpoint("authorization_endpoint"))
        ));
        assert!(matches!(
            client.authorization_request("web", "/relative"),
            Err(ClientError::InvalidParameter(_))
        ));
        assert!(matches!(
            client.authorization_request("web", "https://app.example/cb#frag"),
            Err(ClientError::InvalidParameter(_))
        ));
    }

    #[test]
    fn pushed_request_url_carries_only_client_id_and_request_uri() {
        let pushed = PushedAuthorization {
            client_id: "web".into(),
            request_uri: "urn:ietf:params:oauth:request_uri:abc".into(),
            expires_in: 60,
        };
        // Even when the issuer requires PAR, the pushed form is what it asks for.
        let issuer = metadata(serde_json::json!({ "require_pushed_authorization_requests": true }));
        let url = pushed.authorization_url(&issuer).unwrap();
        assert_eq!(
            query(&url),
            [
                ("tenant".to_owned(), "a".to_owned()),
                ("client_id".to_owned(), "web".to_owned()),
                (
                    "request_uri".to_owned(),
                    "urn:ietf:params:oauth:request_uri:abc".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn callback_returns_the_code_when_state_and_iss_match() {
        let issuer =
            metadata(serde_json::json!({ "authorization_response_iss_parameter_supported": true }));
        let code = parse_callback(
            "https://app.example/cb?code=c0de&state=s1&iss=https%3A%2F%2Fas.example.com",
            "s1",
            &issuer,
        )
        .unwrap();
        assert_eq!(code.as_str(), "c0de");
        assert!(!format!("{code:?}").contains("c0de"));
        // Without the metadata flag a missing iss is accepted.
        let lenient = metadata(serde_json::json!({}));
        assert_eq!(
            parse_callback("com.example.app:/cb?state=s1&code=c0de", "s1", &lenient)
                .unwrap()
                .as_str(),
            "c0de"
        );
    }

    #[test]
    fn callback_with_another_state_is_refused() {
        let issuer = metadata(serde_json::json!({}));
        for callback in [
            "https://app.example/cb?code=c0de&state=s2",
            "https://app.example/cb?code=c0de&state=s",
            "https://app.example/cb?code=c0de&state=s1x",
            "https://app.example/cb?code=c0de&state=",
            "https://app.example/cb?code=c0de",
        ] {
            assert!(
                matches!(
                    parse_callback(callback, "s1", &issuer),
                    Err(ClientError::StateMismatch)
                ),
                "{callback}"
            );
        }
    }

    #[test]
    fn callback_from_another_issuer_or_without_iss_is_refused() {
        let issuer =
            metadata(serde_json::json!({ "authorization_response_iss_parameter_supported": true }));
        let err = parse_callback(
            "https://app.example/cb?code=c0de&state=s1&iss=https%3A%2F%2Fevil.example",
            "s1",
            &issuer,
        )
        .unwrap_err();
        assert!(
            matches!(&err, ClientError::IssuerMismatch { expected, received }
                if expected == ISSUER && received == "https://evil.example"),
            "{err:?}"
        );
        // A trailing slash is another issuer: RFC 9207 compares strings exactly.
        assert!(matches!(
            parse_callback(
                "https://app.example/cb?code=c0de&state=s1&iss=https%3A%2F%2Fas.example.com%2F",
                "s1",
                &issuer
            ),
            Err(ClientError::IssuerMismatch { .. })
        ));
        assert!(matches!(
            parse_callback("https://app.example/cb?code=c0de&state=s1", "s1", &issuer),
            Err(ClientError::MissingIssuer)
        ));
        // A wrong iss is refused even when the metadata does not announce the parameter.
        let lenient = metadata(serde_json::json!({}));
        assert!(matches!(
            parse_callback(
                "https://app.example/cb?code=c0de&state=s1&iss=https%3A%2F%2Fevil.example",
                "s1",
                &lenient
            ),
            Err(ClientError::IssuerMismatch { .. })
        ));
        // The error of another issuer is not surfaced as this issuer's.
        assert!(matches!(
            parse_callback(
                "https://app.example/cb?error=access_denied&state=s1&iss=https%3A%2F%2Fevil.example",
                "s1",
                &issuer
            ),
            Err(ClientError::IssuerMismatch { .. })
        ));
    }

    #[test]
    fn callback_error_response_is_typed() {
        let issuer = metadata(serde_json::json!({}));
        let err = parse_callback(
            "https://app.example/cb?error=access_denied&error_description=End-User+aborted+interaction&state=s1&iss=https%3A%2F%2Fas.example.com",
            "s1",
            &issuer,
        )
        .unwrap_err();
        match &err {
            ClientError::AuthorizationFailed { error, description } => {
                assert_eq!(error.as_str(), "access_denied");
                assert_eq!(description.as_deref(), Some("End-User aborted interaction"));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("access_denied"), "{err}");
        let err = parse_callback(
            "https://app.example/cb?error=invalid_request&state=s1",
            "s1",
            &issuer,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ClientError::AuthorizationFailed {
                error: ErrorCode::InvalidRequest,
                description: None
            }
        ));
        // An error with a forged state is a state mismatch, not the AS's error.
        assert!(matches!(
            parse_callback(
                "https://app.example/cb?error=access_denied&state=x",
                "s1",
                &issuer
            ),
            Err(ClientError::StateMismatch)
        ));
    }

    #[test]
    fn callback_with_repeated_parameters_or_no_code_is_refused() {
        let issuer = metadata(serde_json::json!({}));
        for callback in [
            "https://app.example/cb?code=a&code=b&state=s1",
            "https://app.example/cb?code=a&state=s1&state=s1",
            "https://app.example/cb?code=a&state=s1&iss=https%3A%2F%2Fas.example.com&iss=https%3A%2F%2Fas.example.com",
            "https://app.example/cb?state=s1",
            "https://app.example/cb?state=s1&code=",
            "not a url",
        ] {
            assert!(
                matches!(
                    parse_callback(callback, "s1", &issuer),
                    Err(ClientError::Callback(_))
                ),
                "{callback}"
            );
        }
    }

    #[test]
    fn par_needs_an_endpoint_and_the_same_client() {
        let client = client();
        let request = client
            .authorization_request("web", "https://app.example/cb")
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let no_par = metadata(serde_json::json!({ "pushed_authorization_request_endpoint": null }));
        let auth = ClientAuth::Public {
            client_id: "web".into(),
        };
        assert!(matches!(
            runtime.block_on(client.push_authorization_request(&no_par, &auth, &request)),
            Err(ClientError::MissingEndpoint(
                "pushed_authorization_request_endpoint"
            ))
        ));
        let other = ClientAuth::Public {
            client_id: "other".into(),
        };
        assert!(matches!(
            runtime.block_on(client.push_authorization_request(
                &metadata(serde_json::json!({})),
                &other,
                &request
            )),
            Err(ClientError::InvalidParameter(_))
        ));
    }
}
