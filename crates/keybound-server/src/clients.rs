//! The client registry and client authentication at the token, introspection and revocation
//! endpoints: `client_secret_basic`, `client_secret_post`, `private_key_jwt` (RFC 7523, with
//! `jti` replay protection), `tls_client_auth` and `self_signed_tls_client_auth` (RFC 8705 §2)
//! and `none` for public clients.

use std::borrow::Cow;
use std::collections::HashMap;

use aws_lc_rs::digest;
use axum::http::HeaderMap;
use base64::Engine as _;
use keybound_core::jws::UntrustedJws;
use keybound_core::{Algorithm, ErrorCode, KeySet, UnixTime};
use keybound_store::ReplayCache;
use serde_json::Value;
use subtle::ConstantTimeEq as _;

use keybound_tls::ClientCertificate;

use crate::config::{AuthMethod, ClientConfig, ClientTls, Validated};
use crate::error::OAuthError;
use crate::form::Form;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const MAX_ASSERTION_LEN: usize = 8 * 1024;
/// Longest lifetime accepted for a client assertion (`exp` − now), seconds.
const MAX_ASSERTION_LIFETIME: u64 = 600;

/// A registered client.
#[derive(Debug)]
pub(crate) struct Client {
    /// Its configuration.
    pub(crate) config: ClientConfig,
    secret_hash: Option<[u8; 32]>,
    keys: Option<KeySet>,
    tls: Option<ClientTls>,
}

impl Client {
    /// Whether it is a public client (no authentication).
    #[must_use]
    pub(crate) fn is_public(&self) -> bool {
        self.config.auth_method == AuthMethod::None
    }

    /// Whether it may use `grant_type`.
    #[must_use]
    pub(crate) fn allows_grant(&self, grant_type: &str) -> bool {
        self.config.grant_types.iter().any(|g| g == grant_type)
    }
}

/// Why client authentication failed; every variant is `invalid_client` (or `invalid_request`
/// for malformed attempts) on the wire, and the reason goes to logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthFailure {
    /// No client identification at all.
    Missing,
    /// More than one authentication method in one request.
    MultipleMethods,
    /// Malformed `Authorization: Basic` header or assertion parameters.
    Malformed,
    /// No such client.
    UnknownClient,
    /// The client is registered with another method.
    WrongMethod,
    /// The secret does not match.
    BadSecret,
    /// The assertion failed a check.
    BadAssertion,
    /// The assertion's `jti` was already used.
    AssertionReplayed,
    /// The replay cache could not answer.
    StoreUnavailable,
    /// A certificate-authenticated client connected without a client certificate.
    CertificateMissing,
    /// The client certificate is not this client's: untrusted chain, expired, other subject,
    /// or not registered.
    CertificateRejected,
}

impl AuthFailure {
    /// Whether the credentials of a registered client were wrong (what the failed-authentication
    /// limit counts), as opposed to a malformed or misdirected request.
    pub(crate) const fn is_wrong_credential(self) -> bool {
        matches!(
            self,
            Self::BadSecret | Self::BadAssertion | Self::CertificateRejected
        )
    }

    /// A stable label for metrics.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::MultipleMethods => "multiple_methods",
            Self::Malformed => "malformed",
            Self::UnknownClient => "unknown_client",
            Self::WrongMethod => "wrong_method",
            Self::BadSecret => "bad_secret",
            Self::BadAssertion => "bad_assertion",
            Self::AssertionReplayed => "assertion_replayed",
            Self::StoreUnavailable => "store_unavailable",
            Self::CertificateMissing => "certificate_missing",
            Self::CertificateRejected => "certificate_rejected",
        }
    }

    /// The response for this failure. Details stay in logs: the client learns only the code.
    #[must_use]
    pub fn into_error(self, used_basic: bool) -> OAuthError {
        let error = match self {
            Self::Missing | Self::MultipleMethods | Self::Malformed => {
                return OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "client authentication is missing or malformed",
                );
            }
            Self::StoreUnavailable => {
                return OAuthError::new(ErrorCode::TemporarilyUnavailable, "try again later");
            }
            _ => OAuthError::new(ErrorCode::InvalidClient, "client authentication failed"),
        };
        if used_basic {
            error.with_basic_challenge()
        } else {
            error
        }
    }
}

/// A client whose credentials checked out. A `private_key_jwt` assertion's `jti` is recorded
/// only by [`Authenticated::commit`], after every other check of the request has passed, so a
/// request that fails later consumes nothing.
#[derive(Debug)]
pub(crate) struct Authenticated<'a> {
    /// The client.
    pub(crate) client: &'a Client,
    assertion: Option<([u8; 32], UnixTime)>,
}

impl Authenticated<'_> {
    /// Records the assertion's `jti` (if any).
    ///
    /// # Errors
    /// [`AuthFailure::AssertionReplayed`] or [`AuthFailure::StoreUnavailable`].
    pub(crate) async fn commit(
        &self,
        replay: &dyn ReplayCache,
        now: UnixTime,
    ) -> Result<(), AuthFailure> {
        let Some((key, expires_at)) = self.assertion else {
            return Ok(());
        };
        match replay.insert_once(key, expires_at, now).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(AuthFailure::AssertionReplayed),
            Err(_) => Err(AuthFailure::StoreUnavailable),
        }
    }
}

/// What the endpoints need to authenticate a client.
#[derive(Debug)]
pub(crate) struct AuthContext<'a> {
    /// Current time.
    pub(crate) now: UnixTime,
    /// The issuer (an accepted assertion audience).
    pub(crate) issuer: &'a str,
    /// The endpoint's public URL (also an accepted assertion audience).
    pub(crate) endpoint_url: &'a str,
    /// The request's client certificate, from the connection or a trusted proxy.
    pub(crate) certificate: Option<&'a ClientCertificate>,
}

/// The registered clients.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    by_id: HashMap<String, Client>,
}

/// `base64url(SHA-256(secret))`, the form secrets are registered in.
#[must_use]
pub fn hash_secret(secret: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(digest::digest(&digest::SHA256, secret.as_bytes()))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The credentials a request presents, read once from its `Authorization` header and form:
/// which client it claims to be, before anything is checked, and how it means to prove it.
pub(crate) enum Credentials<'f> {
    /// `client_secret_basic` (the Basic header) or `client_secret_post` (the form).
    Secret {
        id: Cow<'f, str>,
        secret: Cow<'f, str>,
        method: AuthMethod,
    },
    /// `private_key_jwt`: the client is the assertion's subject; `client_id` is optional.
    Assertion {
        id: Option<&'f str>,
        assertion: &'f str,
    },
    /// `client_id` alone: a public client, or one that authenticates with its certificate.
    IdOnly(&'f str),
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let method = match self {
            Self::Secret { .. } => "secret (redacted)",
            Self::Assertion { .. } => "assertion",
            Self::IdOnly(_) => "client_id only",
        };
        f.debug_struct("Credentials")
            .field("claimed", &self.claimed_client_id())
            .field("method", &method)
            .finish()
    }
}

impl<'f> Credentials<'f> {
    /// Reads the credentials: at most one method (RFC 6749 §2.3), and a Basic user name that
    /// agrees with any `client_id` parameter.
    ///
    /// # Errors
    /// The [`AuthFailure`] and whether HTTP Basic was attempted.
    pub(crate) fn read(headers: &HeaderMap, form: &'f Form) -> Result<Self, (AuthFailure, bool)> {
        let basic = basic_credentials(headers).map_err(|f| (f, true))?;
        let used_basic = basic.is_some();
        let fail = |f| (f, used_basic);
        let post_secret = form.get("client_secret");
        let assertion = form.get("client_assertion");
        let methods = usize::from(used_basic)
            + usize::from(post_secret.is_some())
            + usize::from(assertion.is_some());
        if methods > 1 {
            return Err(fail(AuthFailure::MultipleMethods));
        }
        let form_id = form.get("client_id");
        if let Some((id, secret)) = basic {
            if form_id.is_some_and(|f| f != id) {
                return Err(fail(AuthFailure::MultipleMethods));
            }
            return Ok(Self::Secret {
                id: Cow::Owned(id),
                secret: Cow::Owned(secret),
                method: AuthMethod::ClientSecretBasic,
            });
        }
        if let Some(assertion) = assertion {
            return Ok(Self::Assertion {
                id: form_id,
                assertion,
            });
        }
        let id = form_id.ok_or(fail(AuthFailure::Missing))?;
        Ok(match post_secret {
            Some(secret) => Self::Secret {
                id: Cow::Borrowed(id),
                secret: Cow::Borrowed(secret),
                method: AuthMethod::ClientSecretPost,
            },
            None => Self::IdOnly(id),
        })
    }

    /// The client the request claims to be (the Basic user name, else the `client_id`
    /// parameter), before anything is checked.
    #[must_use]
    pub(crate) fn claimed_client_id(&self) -> Option<&str> {
        match self {
            Self::Secret { id, .. } => Some(id),
            Self::Assertion { id, .. } => *id,
            Self::IdOnly(id) => Some(id),
        }
    }

    fn used_basic(&self) -> bool {
        matches!(
            self,
            Self::Secret {
                method: AuthMethod::ClientSecretBasic,
                ..
            }
        )
    }
}

/// Reads `Authorization: Basic` as RFC 6749 §2.3.1 defines it (each part form-urlencoded).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, AuthFailure> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthFailure::MultipleMethods);
    }
    let text = value.to_str().map_err(|_| AuthFailure::Malformed)?;
    let Some((scheme, encoded)) = text.split_once(' ') else {
        return Err(AuthFailure::Malformed);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthFailure::Malformed);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| AuthFailure::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| AuthFailure::Malformed)?;
    let (id, secret) = decoded.split_once(':').ok_or(AuthFailure::Malformed)?;
    Ok(Some((
        percent_decode(id).ok_or(AuthFailure::Malformed)?,
        percent_decode(secret).ok_or(AuthFailure::Malformed)?,
    )))
}

impl Clients {
    /// The clients of a validated configuration.
    #[must_use]
    pub(crate) fn from_config(validated: &Validated) -> Self {
        let mut by_id = HashMap::new();
        let registrations = validated
            .config
            .clients
            .iter()
            .zip(&validated.client_keys)
            .zip(&validated.client_tls);
        for ((config, keys), tls) in registrations {
            let secret_hash = config.client_secret_sha256.as_deref().and_then(|h| {
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .ok()?;
                <[u8; 32]>::try_from(bytes.as_slice()).ok()
            });
            by_id.insert(
                config.client_id.clone(),
                Client {
                    config: config.clone(),
                    secret_hash,
                    keys: keys.clone(),
                    tls: tls.clone(),
                },
            );
        }
        Self { by_id }
    }

    /// A client by id.
    #[must_use]
    pub(crate) fn get(&self, client_id: &str) -> Option<&Client> {
        self.by_id.get(client_id)
    }

    /// Authenticates the client that presented `credentials` (read from this request's `form`).
    ///
    /// # Errors
    /// The [`AuthFailure`] and whether HTTP Basic was attempted.
    pub(crate) fn authenticate(
        &self,
        credentials: &Credentials<'_>,
        form: &Form,
        ctx: &AuthContext<'_>,
    ) -> Result<Authenticated<'_>, (AuthFailure, bool)> {
        let plain = |client| Authenticated {
            client,
            assertion: None,
        };
        let fail = |f| (f, credentials.used_basic());
        match credentials {
            Credentials::Secret { id, secret, method } => self
                .check_secret(id, secret, *method)
                .map(plain)
                .map_err(fail),
            Credentials::Assertion { assertion, .. } => {
                self.check_assertion(form, assertion, ctx).map_err(fail)
            }
            Credentials::IdOnly(id) => {
                let client = self.get(id).ok_or(fail(AuthFailure::UnknownClient))?;
                match client.config.auth_method {
                    AuthMethod::None => Ok(plain(client)),
                    AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth => {
                        check_certificate(client, ctx).map(plain).map_err(fail)
                    }
                    _ => Err(fail(AuthFailure::WrongMethod)),
                }
            }
        }
    }

    fn check_secret(
        &self,
        id: &str,
        secret: &str,
        method: AuthMethod,
    ) -> Result<&Client, AuthFailure> {
        let client = self.get(id).ok_or(AuthFailure::UnknownClient)?;
        if client.config.auth_method != method {
            return Err(AuthFailure::WrongMethod);
        }
        let expected = client.secret_hash.ok_or(AuthFailure::WrongMethod)?;
        let presented = digest::digest(&digest::SHA256, secret.as_bytes());
        if bool::from(presented.as_ref().ct_eq(&expected)) {
            Ok(client)
        } else {
            Err(AuthFailure::BadSecret)
        }
    }

    fn check_assertion(
        &self,
        form: &Form,
        assertion: &str,
        ctx: &AuthContext<'_>,
    ) -> Result<Authenticated<'_>, AuthFailure> {
        if form.get("client_assertion_type") != Some(ASSERTION_TYPE) {
            return Err(AuthFailure::Malformed);
        }
        let jws = UntrustedJws::parse(assertion, MAX_ASSERTION_LEN)
            .map_err(|_| AuthFailure::Malformed)?;
        let claims = jws.payload();
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let id = text("sub").ok_or(AuthFailure::BadAssertion)?;
        if text("iss") != Some(id) || form.get("client_id").is_some_and(|f| f != id) {
            return Err(AuthFailure::BadAssertion);
        }
        let client = self.get(id).ok_or(AuthFailure::UnknownClient)?;
        if client.config.auth_method != AuthMethod::PrivateKeyJwt {
            return Err(AuthFailure::WrongMethod);
        }
        let keys = client.keys.as_ref().ok_or(AuthFailure::WrongMethod)?;
        let header = jws.header();
        if header.contains_key("crit") {
            return Err(AuthFailure::BadAssertion);
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(Algorithm::from_name)
            .filter(|a| Algorithm::FAPI2.contains(a))
            .ok_or(AuthFailure::BadAssertion)?;
        let key = header
            .get("kid")
            .and_then(Value::as_str)
            .and_then(|kid| keys.get(kid))
            .ok_or(AuthFailure::BadAssertion)?;
        if !jws.verify_with(key, alg) {
            return Err(AuthFailure::BadAssertion);
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == ctx.issuer || a == ctx.endpoint_url,
            Some(Value::Array(all)) => all.iter().any(|a| {
                a.as_str()
                    .is_some_and(|a| a == ctx.issuer || a == ctx.endpoint_url)
            }),
            _ => false,
        };
        let now = ctx.now.as_secs();
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(AuthFailure::BadAssertion)?;
        let jti = text("jti")
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or(AuthFailure::BadAssertion)?;
        if !audience_ok || exp <= now || exp > now + MAX_ASSERTION_LIFETIME {
            return Err(AuthFailure::BadAssertion);
        }
        let mut ctx_hash = digest::Context::new(&digest::SHA256);
        for part in [
            b"keybound/client-assertion".as_slice(),
            id.as_bytes(),
            jti.as_bytes(),
        ] {
            ctx_hash.update(part);
            ctx_hash.update(&[0]);
        }
        let mut key_bytes = [0u8; 32];
        key_bytes.copy_from_slice(ctx_hash.finish().as_ref());
        Ok(Authenticated {
            client,
            assertion: Some((key_bytes, UnixTime::from_secs(exp))),
        })
    }
}

/// RFC 8705 §2: the connection's certificate must be this client's.
fn check_certificate<'c>(
    client: &'c Client,
    ctx: &AuthContext<'_>,
) -> Result<&'c Client, AuthFailure> {
    let certificate = ctx.certificate.ok_or(AuthFailure::CertificateMissing)?;
    let accepted = match &client.tls {
        Some(ClientTls::Pki { anchors, subject }) => {
            let now = keybound_tls::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                ctx.now.as_secs(),
            ));
            match anchors.verify(certificate, now) {
                Ok(()) => subject.matches(certificate),
                Err(error) => {
                    tracing::info!(%error, client = %client.config.client_id, "client certificate chain refused");
                    false
                }
            }
        }
        Some(ClientTls::SelfSigned(registered)) => registered.matches(certificate),
        _ => false,
    };
    if accepted {
        Ok(client)
    } else {
        Err(AuthFailure::CertificateRejected)
    }
}
