//! Everything a request handler needs, built once at start.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use keybound_core::dpop::{NoncePolicy, ProofVerifier};
use keybound_core::{AccessTokenVerifier, NonceKeyRing, UnixTime};
use keybound_store::{AuthorizationStore, GrantStore, ReplayCache};

use crate::auth_limit::FailedAuthentications;
use crate::clients::{Client, Clients};
use crate::config::{NonceRequirement, Validated};
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::users::{ConfigUsers, UserStore};

/// The source of "now". Tests substitute a fixed or stepping clock.
pub type Clock = Arc<dyn Fn() -> UnixTime + Send + Sync>;

/// The system clock.
#[must_use]
pub fn system_clock() -> Clock {
    Arc::new(|| {
        UnixTime::from_secs(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    })
}

/// The key ring in use and the verifier of the AS's own tokens made from it, swapped together.
pub(crate) struct Published {
    /// Signs tokens; publishes the JWKS.
    pub(crate) ring: KeyRing,
    /// Verifies this AS's own access tokens (introspection, revocation).
    pub(crate) own_tokens: AccessTokenVerifier,
}

impl Published {
    fn new(ring: KeyRing, settings: &Validated) -> Self {
        let own_tokens = AccessTokenVerifier::new(
            (**ring.key_set()).clone(),
            settings.issuer.clone(),
            settings.audience.clone(),
        );
        Self { ring, own_tokens }
    }
}

/// The Authorization Server's shared state.
pub struct AppState {
    pub(crate) settings: Validated,
    keys: RwLock<Arc<Published>>,
    pub(crate) clients: Clients,
    pub(crate) proofs: ProofVerifier,
    pub(crate) nonces: NonceKeyRing,
    pub(crate) replay: Arc<dyn ReplayCache>,
    pub(crate) grants: Arc<dyn GrantStore>,
    pub(crate) metrics: Metrics,
    pub(crate) failed_authentications: FailedAuthentications,
    /// Failed sign-ins at `/login`, per username.
    pub(crate) failed_sign_ins: FailedAuthentications,
    /// Password hashes checked at once (Argon2 takes tens of milliseconds and 19 MiB each): at
    /// most one per core, on blocking threads, so sign-ins never stall the token endpoint.
    pub(crate) password_checks: tokio::sync::Semaphore,
    pub(crate) clock: Clock,
    pub(crate) rng: SystemRandom,
    pub(crate) authz: Option<Arc<dyn AuthorizationStore>>,
    pub(crate) users: Arc<dyn UserStore>,
    pub(crate) session_key: hmac::Key,
    /// Whether `session_key` is a real secret (random or configured); without one the
    /// authorization endpoint stays off rather than sign with a guessable key.
    session_ready: bool,
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Builds the state from a validated configuration, a key ring and the stores.
    #[must_use]
    pub fn new(
        settings: Validated,
        keys: KeyRing,
        replay: Arc<dyn ReplayCache>,
        grants: Arc<dyn GrantStore>,
        clock: Clock,
    ) -> Self {
        let rng = SystemRandom::new();
        let nonces = NonceKeyRing::new(
            "as",
            &settings.nonce_current,
            settings.nonce_previous.as_ref(),
        );
        let proofs = ProofVerifier::new(&settings.dpop_algorithms, settings.iat_window);
        let keys = RwLock::new(Arc::new(Published::new(keys, &settings)));
        let failed_authentications = FailedAuthentications::new(
            settings.config.client_authentication.max_failures,
            settings.config.client_authentication.window_secs,
        );
        let failed_sign_ins = FailedAuthentications::new(
            settings.config.authorize.sign_in_max_failures,
            settings.config.authorize.sign_in_window_secs,
        );
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let clients = Clients::from_config(&settings);
        let users = Arc::new(ConfigUsers::new(
            settings
                .config
                .users
                .iter()
                .map(|u| (u.username.clone(), u.password_argon2.clone())),
        ));
        let mut secret = [0u8; 32];
        let session_ready = rng.fill(&mut secret).is_ok();
        Self {
            session_ready,
            authz: None,
            users,
            session_key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            settings,
            keys,
            clients,
            proofs,
            nonces,
            replay,
            grants,
            metrics: Metrics::default(),
            failed_authentications,
            failed_sign_ins,
            password_checks: tokio::sync::Semaphore::new(cores),
            clock,
            rng,
        }
    }

    /// Enables the authorization-code flow (`/authorize`, `/par`, the code grant) with this
    /// store for codes and pushed requests.
    #[must_use]
    pub fn with_authorization_store(mut self, store: Arc<dyn AuthorizationStore>) -> Self {
        if self.session_ready {
            self.authz = Some(store);
        } else {
            tracing::error!(
                "no randomness for the session key: the authorization endpoint stays off"
            );
        }
        self
    }

    /// Replaces the users of `[[users]]` (a database, an upstream identity provider).
    #[must_use]
    pub fn with_user_store(mut self, users: Arc<dyn UserStore>) -> Self {
        self.users = users;
        self
    }

    /// Signs sessions and forms with this secret instead of a random per-process one, so that
    /// sessions survive restarts and are shared by replicas.
    #[must_use]
    pub fn with_session_secret(mut self, secret: &[u8; 32]) -> Self {
        self.session_key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        self.session_ready = true;
        self
    }

    /// The server's counters.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The issuer.
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// The audience of the access tokens this AS issues.
    #[must_use]
    pub fn audience(&self) -> &str {
        &self.settings.audience
    }

    /// The public URL of the mTLS endpoints (`[mtls] base_url`), if configured.
    #[must_use]
    pub fn mtls_base_url(&self) -> Option<&str> {
        self.settings.mtls_base.as_deref()
    }

    /// The proxies trusted to forward client certificates (`[mtls] trusted_proxies`), for a
    /// resource server in the same process to trust the same ones.
    #[must_use]
    pub fn forwarded_certificates(&self) -> Option<&keybound_tls::ForwardedCertificates> {
        self.settings.forwarded.as_ref()
    }

    /// The AS's published keys as they are now (for a resource server in the same process:
    /// read them per request to follow rotations).
    #[must_use]
    pub fn key_set(&self) -> Arc<keybound_core::KeySet> {
        self.published().ring.key_set().clone()
    }

    /// The generation of the key ring in use (see [`KeyRing::generation`]).
    #[must_use]
    pub fn key_generation(&self) -> Option<u64> {
        self.published().ring.generation()
    }

    /// Switches to a rotated key ring: new tokens are signed with its current key, and the JWKS
    /// and introspection use its keys from the next request on.
    pub fn replace_keys(&self, ring: KeyRing) {
        let published = Arc::new(Published::new(ring, &self.settings));
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = published;
    }

    /// The keys in use: held for the whole of one request, so a rotation mid-request cannot
    /// mix two rings.
    pub(crate) fn published(&self) -> Arc<Published> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn now(&self) -> UnixTime {
        (self.clock)()
    }

    pub(crate) fn nonce_policy(&self, client: &Client) -> NoncePolicy<'_> {
        let required = match client.config.dpop_nonce {
            NonceRequirement::Required => true,
            NonceRequirement::Optional => false,
            NonceRequirement::Inherit => self.settings.config.dpop.require_nonce,
        };
        if required {
            NoncePolicy::Required(&self.nonces)
        } else {
            NoncePolicy::IfPresent(&self.nonces)
        }
    }

    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.settings.issuer)
    }

    /// 32 random bytes, base64url: refresh tokens and token ids.
    pub(crate) fn random_token(&self) -> String {
        let mut bytes = [0u8; 32];
        let _ = self.rng.fill(&mut bytes);
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
    }
}
