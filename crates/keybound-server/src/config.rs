//! `keybound.toml`: the server's configuration, validated at start with errors naming the key.

use std::collections::BTreeSet;
use std::path::PathBuf;

use keybound_core::dpop::IatWindow;
use keybound_core::{Algorithm, Htu, KeySet, NonceSecret};
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
    /// For `private_key_jwt`: the client's public keys as a JWKS JSON text.
    #[serde(default)]
    pub jwks: Option<String>,
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
    /// Registered clients.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
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
                (Some(_), _) => return Err(bad(key("jwks"), "only for private_key_jwt")),
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
            client_keys.push(keys);
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
            issuer,
            config: self,
        })
    }
}
