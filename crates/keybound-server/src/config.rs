//! `keybound.toml`: the server's configuration, validated at start with errors naming the key.

use std::collections::BTreeSet;
use std::path::PathBuf;

use keybound_core::dpop::IatWindow;
use keybound_core::{Algorithm, Htu, KeySet, NonceSecret};
use keybound_tls::{
    ExpectedSubject, ForwardedCertificates, ForwardedFormat, ProxyNet, RegisteredCertificates,
    TrustAnchors,
};
use serde::Deserialize;

/// A configuration error, naming the key at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("configuration key `{key}`: {message}")]
pub struct ConfigError {
    /// The dotted key, e.g. `clients[1].client_secret_sha256`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

fn bad(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// How a client authenticates at the token, introspection and revocation endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthMethod {
    /// HTTP Basic with `client_id:client_secret` (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A JWT signed by a key in the client's JWKS (RFC 7523, OIDC Core §9).
    PrivateKeyJwt,
    /// A public client: `client_id` only.
    None,
    /// A CA-issued TLS client certificate with the registered subject (RFC 8705 §2.1).
    TlsClientAuth,
    /// A self-signed TLS client certificate registered in the client's JWKS (RFC 8705 §2.2).
    SelfSignedTlsClientAuth,
}

impl AuthMethod {
    /// The registered name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::None => "none",
            Self::TlsClientAuth => "tls_client_auth",
            Self::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
        }
    }
}

/// The token endpoint's nonce policy for a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NonceRequirement {
    /// Follow the server-wide `dpop.require_nonce`.
    #[default]
    Inherit,
    /// Always require a server nonce.
    Required,
    /// Never require one (a nonce that is sent is still checked).
    Optional,
}

/// One registered client, as written in `[[clients]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The `client_id`.
    pub client_id: String,
    /// How it authenticates.
    pub auth_method: AuthMethod,
    /// For the secret methods: base64url SHA-256 of the secret (`keybound` never stores secrets).
    #[serde(default)]
    pub client_secret_sha256: Option<String>,
    /// For `private_key_jwt`: the client's public keys as a JWKS JSON text. For
    /// `self_signed_tls_client_auth`: its certificates (`x5c`) or bare public keys.
    #[serde(default)]
    pub jwks: Option<String>,
    /// `tls_client_auth`: the certificate's subject DN (RFC 4514), compared by the DN matching
    /// rule. Exactly one of this and the `tls_client_auth_san_*` values.
    #[serde(default)]
    pub tls_client_auth_subject_dn: Option<String>,
    /// `tls_client_auth`: a dNSName SAN.
    #[serde(default)]
    pub tls_client_auth_san_dns: Option<String>,
    /// `tls_client_auth`: a URI SAN.
    #[serde(default)]
    pub tls_client_auth_san_uri: Option<String>,
    /// `tls_client_auth`: an IP address SAN, compared in binary.
    #[serde(default)]
    pub tls_client_auth_san_ip: Option<String>,
    /// `tls_client_auth`: an email (rfc822Name) SAN.
    #[serde(default)]
    pub tls_client_auth_san_email: Option<String>,
    /// `tls_client_auth`: the CA (PEM) this client's certificates must chain to, instead of
    /// `mtls.client_ca_files`. Pinning a client to its own CA stops a certificate with the same
    /// subject from another trusted CA (RFC 8705 §7.4).
    #[serde(default)]
    pub tls_client_auth_ca_file: Option<PathBuf>,
    /// RFC 8705 §3: bind this client's access tokens to its TLS client certificate
    /// (`cnf["x5t#S256"]`), whatever its authentication method. Such a client must connect with
    /// its certificate, and must not send a DPoP proof (one token, one binding).
    #[serde(default)]
    pub tls_client_certificate_bound_access_tokens: bool,
    /// Grant types it may use. Defaults to `["client_credentials"]`.
    #[serde(default = "default_grants")]
    pub grant_types: Vec<String>,
    /// Scopes it may request. Defaults to none.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// RFC 9449 §5.2: refuse token requests without a DPoP proof. Defaults to false.
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    /// Nonce policy at the token endpoint. Defaults to the server-wide setting.
    #[serde(default)]
    pub dpop_nonce: NonceRequirement,
    /// For `authorization_code`: the redirect URIs, matched exactly (no wildcards, no
    /// loopback port relaxation).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// RFC 9126 §6: this client must push its authorization requests (`/par`).
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
}

fn default_grants() -> Vec<String> {
    vec!["client_credentials".into()]
}

/// Token lifetimes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Access-token lifetime in seconds. Defaults to 300.
    pub access_token_lifetime_secs: u64,
    /// Refresh-token lifetime in seconds (each rotation starts a new one). Defaults to 86 400.
    pub refresh_token_lifetime_secs: u64,
    /// A grant's absolute lifetime in seconds, whatever refreshes happen. Defaults to 30 days.
    pub grant_lifetime_secs: u64,
    /// `aud` of issued access tokens. Defaults to the issuer followed by `/api`.
    pub audience: Option<String>,
    /// Access-token signing algorithm: `ES256` (default), `EdDSA` or `PS256`.
    pub signing_alg: String,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            access_token_lifetime_secs: 300,
            refresh_token_lifetime_secs: 86_400,
            grant_lifetime_secs: 30 * 86_400,
            audience: None,
            signing_alg: "ES256".into(),
        }
    }
}

/// DPoP settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopConfig {
    /// Accepted proof algorithms. Defaults to `["ES256", "EdDSA", "PS256"]`.
    pub algorithms: Vec<String>,
    /// Oldest accepted proof, seconds. Defaults to 60 (at most 300).
    pub max_age_secs: u64,
    /// Furthest-future accepted proof, seconds. Defaults to 30 (10 to 59).
    pub future_leeway_secs: u64,
    /// Require a server nonce from every client (unless a client says otherwise). Defaults to false.
    pub require_nonce: bool,
    /// Nonce secrets, base64url, at least 32 bytes each: the first issues, the second (if any)
    /// is still accepted during a rotation. Every replica must have the same list. Defaults to
    /// one random secret per process (fine for a single replica).
    pub nonce_secrets: Vec<String>,
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self {
            algorithms: Algorithm::FAPI2
                .iter()
                .map(|a| a.name().to_owned())
                .collect(),
            max_age_secs: 60,
            future_leeway_secs: 30,
            require_nonce: false,
            nonce_secrets: Vec::new(),
        }
    }
}

/// The whole `keybound.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The issuer identifier and public base URL, e.g. `https://as.example.com`. Endpoint URLs
    /// (and every expected `htu`) are derived from it, never from request headers.
    pub issuer: String,
    /// Data directory for keys and the embedded database. Defaults to `keybound-data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Token settings.
    #[serde(default)]
    pub tokens: TokenConfig,
    /// DPoP settings.
    #[serde(default)]
    pub dpop: DpopConfig,
    /// mTLS settings.
    #[serde(default)]
    pub mtls: MtlsConfig,
    /// Where state lives: one machine (the default) or shared by replicas.
    #[serde(default)]
    pub store: StoreConfig,
    /// The authorization-code flow.
    #[serde(default)]
    pub authorize: AuthorizeConfig,
    /// `[client_authentication]`: limits on failed client authentications.
    #[serde(default)]
    pub client_authentication: ClientAuthenticationConfig,
    /// People who sign in at `/authorize`.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Registered clients.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
}

/// `[store]`: the shared state of a deployment. The defaults suit one machine: grants in the
/// embedded SQLite file, the replay cache in memory. Replicas need both shared.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Grants, refresh tokens, codes and pushed requests: `postgres://user@host/db`.
    /// Default: `keybound.db` in the data directory. Also `KEYBOUND_STORE_URL`.
    pub url: Option<String>,
    /// With `url`: the PostgreSQL schema to use (created if missing). Default: the database's
    /// search path (usually `public`).
    pub schema: Option<String>,
    /// The DPoP and client-assertion replay cache: `redis://host:6379`. Default: in memory,
    /// which is correct for one replica only. Also `KEYBOUND_REPLAY_URL`.
    pub replay_url: Option<String>,
    /// With `url`: how often each replica checks the database for a signing-key rotation made
    /// elsewhere, in seconds (1 to 3600; default 10).
    pub key_reload_secs: Option<u64>,
}

/// `[[users]]`: a person who can sign in.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The username, also the `sub` of their tokens.
    pub username: String,
    /// Argon2id PHC string: `printf %s "$PASSWORD" | keybound hash-password`.
    pub password_argon2: String,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// `[authorize]`: the authorization endpoint, its pages and PAR.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizeConfig {
    /// RFC 9126 §5: every client must use PAR. Defaults to false (per client otherwise).
    pub require_pushed_authorization_requests: bool,
    /// Authorization-code lifetime, seconds. Defaults to 60.
    pub code_lifetime_secs: u64,
    /// Pushed-request lifetime, seconds. Defaults to 60.
    pub par_lifetime_secs: u64,
    /// How long a signed-in user stays signed in, seconds. Defaults to 3600.
    pub session_lifetime_secs: u64,
    /// Failed sign-ins per username within `sign_in_window_secs` before that username is
    /// refused (429) until the window ends; 0 turns the limit off. Defaults to 10.
    pub sign_in_max_failures: u32,
    /// The window of `sign_in_max_failures`, seconds (1 to 86 400). Defaults to 900.
    pub sign_in_window_secs: u64,
}

impl Default for AuthorizeConfig {
    fn default() -> Self {
        Self {
            require_pushed_authorization_requests: false,
            code_lifetime_secs: 60,
            par_lifetime_secs: 60,
            session_lifetime_secs: 3600,
            sign_in_max_failures: 10,
            sign_in_window_secs: 900,
        }
    }
}

/// `[client_authentication]`: failed authentications of one registered client (wrong secret,
/// assertion or certificate) are counted; past `max_failures` within `window_secs`, that
/// client's attempts get `429` with `Retry-After` until the window ends, so a secret cannot be
/// guessed at the server's speed. Counted per replica.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientAuthenticationConfig {
    /// Failures allowed per client and window. Defaults to 20; 0 turns the limit off.
    pub max_failures: u32,
    /// The window, seconds (1 to 86400). Defaults to 300.
    pub window_secs: u64,
}

impl Default for ClientAuthenticationConfig {
    fn default() -> Self {
        Self {
            max_failures: 20,
            window_secs: 300,
        }
    }
}

/// How a trusted TLS-terminating proxy forwards the client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ForwardedCertFormat {
    /// RFC 9440 `Client-Cert` and `Client-Cert-Chain`.
    #[default]
    Rfc9440,
    /// A URL-encoded PEM certificate in `forwarded_cert_header` (nginx's
    /// `$ssl_client_escaped_cert`).
    EscapedPem,
}

/// `[mtls]`: certificate-based client authentication and certificate-bound tokens (RFC 8705).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MtlsConfig {
    /// Public base URL of the endpoints that request client certificates, e.g.
    /// `https://mtls.as.example.com`. Published as `mtls_endpoint_aliases`; without it clients
    /// use the ordinary endpoints (mTLS as transport everywhere, or a proxy in front).
    pub base_url: Option<String>,
    /// `keybound serve`: address of the mTLS listener (TLS terminated by keybound, client
    /// certificates requested). Needs `server_cert_file` and `server_key_file`.
    pub listen: Option<String>,
    /// The mTLS listener's certificate chain (PEM).
    pub server_cert_file: Option<PathBuf>,
    /// The mTLS listener's private key (PEM).
    pub server_key_file: Option<PathBuf>,
    /// Trust anchors (PEM files) for `tls_client_auth` clients without their own CA file.
    pub client_ca_files: Vec<PathBuf>,
    /// Proxies trusted to forward client certificates: addresses or CIDR blocks. Empty (the
    /// default): forwarded certificates are ignored.
    pub trusted_proxies: Vec<String>,
    /// How the trusted proxies forward certificates.
    pub forwarded_cert_format: ForwardedCertFormat,
    /// The header for `escaped-pem`. Defaults to `x-ssl-client-cert`.
    pub forwarded_cert_header: String,
}

impl Default for MtlsConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            listen: None,
            server_cert_file: None,
            server_key_file: None,
            client_ca_files: Vec::new(),
            trusted_proxies: Vec::new(),
            forwarded_cert_format: ForwardedCertFormat::Rfc9440,
            forwarded_cert_header: "x-ssl-client-cert".into(),
        }
    }
}

/// How a client's certificate is checked, from its registration.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ClientTls {
    /// `tls_client_auth`: the chain must lead to these anchors and carry this subject.
    Pki {
        /// The client's trust anchors.
        anchors: TrustAnchors,
        /// The registered subject value.
        subject: ExpectedSubject,
    },
    /// `self_signed_tls_client_auth`: the certificate must be registered.
    SelfSigned(RegisteredCertificates),
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("keybound-data")
}

/// A configuration that passed validation, in the forms the server uses.
#[derive(Debug)]
pub struct Validated {
    /// The source configuration.
    pub config: Config,
    /// Issuer without a trailing slash.
    pub issuer: String,
    /// The token endpoint's public URL as an `htu`.
    pub token_htu: Htu,
    /// Access-token audience.
    pub audience: String,
    /// Access-token signing algorithm.
    pub signing_alg: Algorithm,
    /// Proof algorithms.
    pub dpop_algorithms: Vec<Algorithm>,
    /// Proof `iat` window.
    pub iat_window: IatWindow,
    /// The nonce secret that issues (random per process when none is configured).
    pub nonce_current: NonceSecret,
    /// The previous nonce secret, still accepted during a rotation.
    pub nonce_previous: Option<NonceSecret>,
    /// Client JWKS, parsed (same order as `config.clients`; `None` for secret and public clients).
    pub client_keys: Vec<Option<KeySet>>,
    /// Certificate checks per client (same order as `config.clients`; `None` unless the client
    /// authenticates with a certificate).
    pub client_tls: Vec<Option<ClientTls>>,
    /// The mTLS alias base URL, without a trailing slash.
    pub mtls_base: Option<String>,
    /// The mTLS alias of the token endpoint as an `htu`.
    pub mtls_token_htu: Option<Htu>,
    /// Who may forward certificates, and how.
    pub forwarded: Option<ForwardedCertificates>,
}

impl Config {
    /// Parses TOML text.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key that does not parse.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|s| text.get(s).unwrap_or_default().to_owned())
                .unwrap_or_default();
            bad(key, e.message().to_owned())
        })
    }

    /// Checks every value and derives what the server needs.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(self) -> Result<Validated, ConfigError> {
        let issuer = self.issuer.trim_end_matches('/').to_owned();
        let base = Htu::parse(&issuer)
            .map_err(|e| bad("issuer", format!("not an absolute http(s) URL: {e}")))?;
        if issuer.contains(['?', '#']) {
            return Err(bad("issuer", "must not have a query or fragment"));
        }
        let token_htu = Htu::parse(&format!("{}/token", base.as_str().trim_end_matches('/')))
            .map_err(|e| bad("issuer", e.to_string()))?;
        if !(1..=86_400).contains(&self.client_authentication.window_secs) {
            return Err(bad(
                "client_authentication.window_secs",
                "must be 1 to 86400",
            ));
        }
        if self
            .store
            .key_reload_secs
            .is_some_and(|secs| !(1..=3600).contains(&secs))
        {
            return Err(bad("store.key_reload_secs", "must be 1 to 3600"));
        }
        let t = &self.tokens;
        if !(1..=86_400).contains(&t.access_token_lifetime_secs) {
            return Err(bad(
                "tokens.access_token_lifetime_secs",
                "must be 1 to 86400",
            ));
        }
        if t.refresh_token_lifetime_secs == 0
            || t.grant_lifetime_secs < t.refresh_token_lifetime_secs
        {
            return Err(bad(
                "tokens.grant_lifetime_secs",
                "must be at least tokens.refresh_token_lifetime_secs, which must be positive",
            ));
        }
        if t.grant_lifetime_secs > MAX_GRANT_LIFETIME_SECS {
            return Err(bad(
                "tokens.grant_lifetime_secs",
                format!("must be at most {MAX_GRANT_LIFETIME_SECS} (one year)"),
            ));
        }
        let signing_alg = Algorithm::from_name(&t.signing_alg)
            .filter(|a| Algorithm::FAPI2.contains(a))
            .ok_or_else(|| bad("tokens.signing_alg", "must be ES256, EdDSA or PS256"))?;
        let audience = t
            .audience
            .clone()
            .unwrap_or_else(|| format!("{issuer}/api"));
        let d = &self.dpop;
        let mut dpop_algorithms = Vec::new();
        for (i, name) in d.algorithms.iter().enumerate() {
            let alg = Algorithm::from_name(name).ok_or_else(|| {
                bad(
                    format!("dpop.algorithms[{i}]"),
                    format!("`{name}` is not a supported asymmetric algorithm"),
                )
            })?;
            dpop_algorithms.push(alg);
        }
        if dpop_algorithms.is_empty() {
            return Err(bad("dpop.algorithms", "must name at least one algorithm"));
        }
        let iat_window = IatWindow::new(d.max_age_secs, d.future_leeway_secs).ok_or_else(|| {
            bad(
                "dpop.max_age_secs",
                "max_age_secs must be 1 to 300 and future_leeway_secs 10 to 59",
            )
        })?;
        let mut nonce_secrets = Vec::new();
        for (i, text) in d.nonce_secrets.iter().enumerate() {
            let key = format!("dpop.nonce_secrets[{i}]");
            let bytes =
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, text)
                    .map_err(|_| bad(&key, "not base64url"))?;
            nonce_secrets.push(
                NonceSecret::new(&bytes).ok_or_else(|| bad(&key, "must be at least 32 bytes"))?,
            );
        }
        if nonce_secrets.len() > 2 {
            return Err(bad(
                "dpop.nonce_secrets",
                "at most two: the current secret and the previous one",
            ));
        }
        let mut secrets = nonce_secrets.into_iter();
        let nonce_previous;
        let nonce_current = match (secrets.next(), secrets.next()) {
            (Some(current), previous) => {
                nonce_previous = previous;
                current
            }
            (None, _) => {
                nonce_previous = None;
                let mut bytes = [0u8; 32];
                aws_lc_rs::rand::SecureRandom::fill(
                    &aws_lc_rs::rand::SystemRandom::new(),
                    &mut bytes,
                )
                .map_err(|_| {
                    bad(
                        "dpop.nonce_secrets",
                        "no secret configured and no randomness to make one",
                    )
                })?;
                NonceSecret::new(&bytes)
                    .ok_or_else(|| bad("dpop.nonce_secrets", "random secret rejected"))?
            }
        };
        let (mtls_base, mtls_token_htu, forwarded, global_anchors) = self.mtls.validate()?;
        let mtls_unreachable =
            self.mtls.listen.is_none() && mtls_base.is_none() && forwarded.is_none();
        let mut client_tls_all = Vec::new();
        let mut ids = BTreeSet::new();
        let mut client_keys = Vec::new();
        for (i, c) in self.clients.iter().enumerate() {
            let key = |k: &str| format!("clients[{i}].{k}");
            if c.client_id.is_empty() || c.client_id.len() > 255 || !ids.insert(c.client_id.clone())
            {
                return Err(bad(
                    key("client_id"),
                    "must be 1 to 255 characters and unique",
                ));
            }
            let secret = matches!(
                c.auth_method,
                AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
            );
            match (&c.client_secret_sha256, secret) {
                (Some(h), true) if keybound_core::JwkThumbprint::parse(h).is_some() => {}
                (_, true) => {
                    return Err(bad(
                        key("client_secret_sha256"),
                        "required for secret methods: base64url SHA-256 of the secret (43 characters)",
                    ));
                }
                (Some(_), false) => {
                    return Err(bad(
                        key("client_secret_sha256"),
                        "only for client_secret_basic and client_secret_post",
                    ));
                }
                (None, false) => {}
            }
            let tls = client_tls(c, &global_anchors, &key)?;
            if c.dpop_bound_access_tokens && c.tls_client_certificate_bound_access_tokens {
                return Err(bad(
                    key("tls_client_certificate_bound_access_tokens"),
                    "a client's tokens are DPoP-bound or certificate-bound, not both (RFC 7800 §3.1)",
                ));
            }
            if c.auth_method == AuthMethod::TlsClientAuth && mtls_unreachable {
                return Err(bad(
                    key("auth_method"),
                    "tls_client_auth needs [mtls] listen, base_url or trusted_proxies",
                ));
            }
            let keys = match (&c.jwks, c.auth_method) {
                (Some(jwks), AuthMethod::PrivateKeyJwt) => {
                    let set = KeySet::from_jwks_json(jwks.as_bytes())
                        .map_err(|e| bad(key("jwks"), e.to_string()))?;
                    if set.is_empty() {
                        return Err(bad(key("jwks"), "no usable signing key with a kid"));
                    }
                    Some(set)
                }
                (None, AuthMethod::PrivateKeyJwt) => {
                    return Err(bad(key("jwks"), "required for private_key_jwt"));
                }
                (Some(_), AuthMethod::SelfSignedTlsClientAuth) => None,
                (None, AuthMethod::SelfSignedTlsClientAuth) => {
                    return Err(bad(key("jwks"), "required for self_signed_tls_client_auth"));
                }
                (Some(_), _) => {
                    return Err(bad(
                        key("jwks"),
                        "only for private_key_jwt and self_signed_tls_client_auth",
                    ));
                }
                (None, _) => None,
            };
            for (j, g) in c.grant_types.iter().enumerate() {
                match g.as_str() {
                    "client_credentials" if c.auth_method == AuthMethod::None => {
                        return Err(bad(
                            format!("clients[{i}].grant_types[{j}]"),
                            "public clients cannot use client_credentials",
                        ));
                    }
                    "client_credentials" | "refresh_token" | "authorization_code" => {}
                    other => {
                        return Err(bad(
                            format!("clients[{i}].grant_types[{j}]"),
                            format!("unsupported grant type `{other}`"),
                        ));
                    }
                }
            }
            for (j, scope) in c.scopes.iter().enumerate() {
                if !is_scope_token(scope) {
                    return Err(bad(
                        format!("clients[{i}].scopes[{j}]"),
                        "must be 1 to 128 printable ASCII characters without space, `\"` or `\\` (RFC 6749 §3.3)",
                    ));
                }
            }
            client_keys.push(keys);
            client_tls_all.push(tls);
            check_redirect_uris(c, &key)?;
        }
        let mut names = BTreeSet::new();
        for (i, user) in self.users.iter().enumerate() {
            if user.username.is_empty()
                || user.username.len() > 255
                || !names.insert(&user.username)
            {
                return Err(bad(
                    format!("users[{i}].username"),
                    "must be 1 to 255 characters and unique",
                ));
            }
            if !crate::users::is_password_hash(&user.password_argon2) {
                return Err(bad(
                    format!("users[{i}].password_argon2"),
                    "must be an Argon2 PHC string: printf %s \"$PASSWORD\" | keybound hash-password",
                ));
            }
        }
        let scheme = |url: &str| url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if let Some(url) = &self.store.url
            && !matches!(scheme(url).as_deref(), Some("postgres" | "postgresql"))
        {
            return Err(bad(
                "store.url",
                "must be a postgres:// URL (or absent: SQLite in the data directory)",
            ));
        }
        if let Some(url) = &self.store.replay_url
            && !matches!(scheme(url).as_deref(), Some("redis" | "rediss"))
        {
            return Err(bad(
                "store.replay_url",
                "must be a redis:// or rediss:// URL (or absent: in memory)",
            ));
        }
        let a = &self.authorize;
        for (name, value, max) in [
            ("code_lifetime_secs", a.code_lifetime_secs, 600),
            ("par_lifetime_secs", a.par_lifetime_secs, 600),
            (
                "session_lifetime_secs",
                a.session_lifetime_secs,
                86_400 * 30,
            ),
            ("sign_in_window_secs", a.sign_in_window_secs, 86_400),
        ] {
            if !(1..=max).contains(&value) {
                return Err(bad(
                    format!("authorize.{name}"),
                    format!("must be 1 to {max}"),
                ));
            }
        }
        Ok(Validated {
            token_htu,
            audience,
            signing_alg,
            dpop_algorithms,
            iat_window,
            nonce_current,
            nonce_previous,
            client_keys,
            client_tls: client_tls_all,
            mtls_base,
            mtls_token_htu,
            forwarded,
            issuer,
            config: self,
        })
    }
}

/// The longest a grant (and so a refresh token) may live: one year.
const MAX_GRANT_LIFETIME_SECS: u64 = 366 * 86_400;

/// RFC 6749 §3.3 `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`, here at most 128 bytes.
fn is_scope_token(scope: &str) -> bool {
    (1..=128).contains(&scope.len())
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

fn read_anchors(key: &str, path: &std::path::Path) -> Result<TrustAnchors, ConfigError> {
    let pem = keybound_tls::read_pem_file(path).map_err(|e| bad(key, e.to_string()))?;
    TrustAnchors::from_pem(&pem).map_err(|e| bad(key, e.to_string()))
}

impl MtlsConfig {
    #[allow(clippy::type_complexity, reason = "one private call site")]
    fn validate(
        &self,
    ) -> Result<
        (
            Option<String>,
            Option<Htu>,
            Option<ForwardedCertificates>,
            Option<TrustAnchors>,
        ),
        ConfigError,
    > {
        let (base, token_htu) = match &self.base_url {
            Some(url) => {
                let url = url.trim_end_matches('/').to_owned();
                let htu = Htu::parse(&format!("{url}/token"))
                    .map_err(|e| bad("mtls.base_url", format!("not an absolute URL: {e}")))?;
                if url.contains(['?', '#']) {
                    return Err(bad("mtls.base_url", "must not have a query or fragment"));
                }
                (Some(url), Some(htu))
            }
            None => (None, None),
        };
        if self.listen.is_some()
            && (self.server_cert_file.is_none() || self.server_key_file.is_none())
        {
            return Err(bad(
                "mtls.listen",
                "needs mtls.server_cert_file and mtls.server_key_file",
            ));
        }
        let mut trusted = Vec::new();
        for (i, text) in self.trusted_proxies.iter().enumerate() {
            trusted.push(
                ProxyNet::parse(text)
                    .map_err(|e| bad(format!("mtls.trusted_proxies[{i}]"), e.to_string()))?,
            );
        }
        let forwarded = if trusted.is_empty() {
            None
        } else {
            let format = match self.forwarded_cert_format {
                ForwardedCertFormat::Rfc9440 => ForwardedFormat::Rfc9440,
                ForwardedCertFormat::EscapedPem => ForwardedFormat::EscapedPem(
                    http::HeaderName::try_from(self.forwarded_cert_header.as_str()).map_err(
                        |_| bad("mtls.forwarded_cert_header", "not a valid header name"),
                    )?,
                ),
            };
            Some(ForwardedCertificates::new(trusted, format))
        };
        let anchors = if self.client_ca_files.is_empty() {
            None
        } else {
            let mut pem = Vec::new();
            for (i, path) in self.client_ca_files.iter().enumerate() {
                let key = format!("mtls.client_ca_files[{i}]");
                let bytes =
                    keybound_tls::read_pem_file(path).map_err(|e| bad(&key, e.to_string()))?;
                TrustAnchors::from_pem(&bytes).map_err(|e| bad(&key, e.to_string()))?;
                pem.extend_from_slice(&bytes);
                pem.push(b'\n');
            }
            Some(
                TrustAnchors::from_pem(&pem)
                    .map_err(|e| bad("mtls.client_ca_files", e.to_string()))?,
            )
        };
        Ok((base, token_htu, forwarded, anchors))
    }
}

/// A client's certificate checks, from its registration.
fn client_tls(
    c: &ClientConfig,
    global_anchors: &Option<TrustAnchors>,
    key: &dyn Fn(&str) -> String,
) -> Result<Option<ClientTls>, ConfigError> {
    let subjects = [
        ("tls_client_auth_subject_dn", &c.tls_client_auth_subject_dn),
        ("tls_client_auth_san_dns", &c.tls_client_auth_san_dns),
        ("tls_client_auth_san_uri", &c.tls_client_auth_san_uri),
        ("tls_client_auth_san_ip", &c.tls_client_auth_san_ip),
        ("tls_client_auth_san_email", &c.tls_client_auth_san_email),
    ];
    let given: Vec<(&str, &String)> = subjects
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| (*name, v)))
        .collect();
    match c.auth_method {
        AuthMethod::TlsClientAuth => {
            let [(name, value)] = given.as_slice() else {
                return Err(bad(
                    key("tls_client_auth_subject_dn"),
                    "tls_client_auth needs exactly one of tls_client_auth_subject_dn, _san_dns, _san_uri, _san_ip, _san_email",
                ));
            };
            let subject = match *name {
                "tls_client_auth_subject_dn" => ExpectedSubject::subject_dn(value),
                "tls_client_auth_san_ip" => ExpectedSubject::san_ip(value),
                "tls_client_auth_san_dns" => Ok(ExpectedSubject::SanDns((*value).clone())),
                "tls_client_auth_san_uri" => Ok(ExpectedSubject::SanUri((*value).clone())),
                _ => Ok(ExpectedSubject::SanEmail((*value).clone())),
            }
            .map_err(|e| bad(key(name), e.to_string()))?;
            let anchors = match &c.tls_client_auth_ca_file {
                Some(path) => read_anchors(&key("tls_client_auth_ca_file"), path)?,
                None => global_anchors.clone().ok_or_else(|| {
                    bad(
                        key("tls_client_auth_ca_file"),
                        "tls_client_auth needs a CA: this key or mtls.client_ca_files",
                    )
                })?,
            };
            Ok(Some(ClientTls::Pki { anchors, subject }))
        }
        other => {
            if let Some((name, _)) = given.first() {
                return Err(bad(key(name), "only for tls_client_auth"));
            }
            if c.tls_client_auth_ca_file.is_some() {
                return Err(bad(
                    key("tls_client_auth_ca_file"),
                    "only for tls_client_auth",
                ));
            }
            if other != AuthMethod::SelfSignedTlsClientAuth {
                return Ok(None);
            }
            let jwks = c
                .jwks
                .as_deref()
                .ok_or_else(|| bad(key("jwks"), "required for self_signed_tls_client_auth"))?;
            RegisteredCertificates::from_jwks_json(jwks.as_bytes())
                .map(|r| Some(ClientTls::SelfSigned(r)))
                .map_err(|e| bad(key("jwks"), e.to_string()))
        }
    }
}

/// Redirect URIs: required for `authorization_code`, absolute, no fragment, https (or http on
/// a loopback host, or a private-use scheme for native apps, RFC 8252).
fn check_redirect_uris(c: &ClientConfig, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    let code = c.grant_types.iter().any(|g| g == "authorization_code");
    if code && c.redirect_uris.is_empty() {
        return Err(bad(key("redirect_uris"), "required for authorization_code"));
    }
    if !code && !c.redirect_uris.is_empty() {
        return Err(bad(key("redirect_uris"), "only for authorization_code"));
    }
    for (j, uri) in c.redirect_uris.iter().enumerate() {
        let bad_uri = |why: &str| bad(format!("{}[{j}]", key("redirect_uris")), why.to_owned());
        let Some((scheme, rest)) = uri.split_once(':') else {
            return Err(bad_uri("not an absolute URI"));
        };
        if uri.contains('#')
            || uri.len() > 2048
            || uri.chars().any(|ch| ch.is_whitespace() || ch.is_control())
        {
            return Err(bad_uri(
                "no fragment, spaces or control characters; at most 2048 characters",
            ));
        }
        let host = rest.strip_prefix("//").map(|r| {
            let authority = r.split(['/', '?']).next().unwrap_or_default();
            authority
                .rsplit_once(':')
                .map_or(authority, |(h, _)| h)
                .to_ascii_lowercase()
        });
        match (scheme.to_ascii_lowercase().as_str(), host.as_deref()) {
            ("https", Some(h)) if !h.is_empty() => {}
            ("http", Some("127.0.0.1" | "[::1]" | "localhost")) => {}
            ("http", _) => return Err(bad_uri("http only on a loopback host (RFC 8252 §7.3)")),
            ("https", _) => return Err(bad_uri("no host")),
            (s, _) if s.contains('.') => {} // a private-use scheme (RFC 8252 §7.1)
            _ => {
                return Err(bad_uri(
                    "https, loopback http, or a reverse-domain private-use scheme",
                ));
            }
        }
    }
    Ok(())
}
