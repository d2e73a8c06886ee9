//! Authorization codes and pushed authorization requests: single-use records of the
//! authorization-code flow (RFC 6749 §4.1, RFC 7636, RFC 9126).

use keybound_core::UnixTime;

use crate::{Grant, GrantId, RefreshTokenRecord, StoreError};

/// An issued authorization code, stored by the SHA-256 of its value.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationCode {
    /// SHA-256 of the code.
    pub code_hash: [u8; 32],
    /// The client it was issued to.
    pub client_id: String,
    /// The signed-in user.
    pub subject: String,
    /// The consented scope (space-separated).
    pub scope: String,
    /// The redirect URI of the request, which the token request must repeat exactly.
    pub redirect_uri: String,
    /// The PKCE S256 `code_challenge`.
    pub code_challenge: String,
    /// `dpop_jkt` of the request (or of its PAR proof): the key the token request must prove.
    pub dpop_jkt: Option<String>,
    /// When it stops being redeemable.
    pub expires_at: UnixTime,
}

impl std::fmt::Debug for AuthorizationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationCode")
            .field("client_id", &self.client_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What a presented code is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodeState {
    /// Issued, unexpired, not yet redeemed.
    Unused(AuthorizationCode),
    /// Already redeemed (a second use: the tokens from the first are revoked on redemption).
    Used,
    /// Unknown or expired.
    Unknown,
}

/// What redeeming a code creates, written in the same transaction that marks it used.
#[derive(Clone, Debug)]
pub struct IssuedFromCode {
    /// The new grant.
    pub grant: Grant,
    /// Its first refresh token, if the client gets one.
    pub refresh: Option<RefreshTokenRecord>,
    /// The `jti` of the access token issued from the code, revoked if the code is used again.
    pub access_token_jti: String,
    /// That access token's expiry.
    pub access_token_expires_at: UnixTime,
}

/// The outcome of [`AuthorizationStore::redeem_code`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Redemption {
    /// First use: the code is now used and the grant exists.
    Redeemed,
    /// Second use (RFC 6749 §4.1.2): the grant and the access token issued from the first use
    /// have just been revoked.
    Replayed(Option<GrantId>),
    /// Unknown or expired.
    Rejected,
}

/// Single-use records of the authorization-code flow.
#[async_trait::async_trait]
pub trait AuthorizationStore: Send + Sync + std::fmt::Debug {
    /// Stores a new code.
    async fn put_code(&self, code: &AuthorizationCode) -> Result<(), StoreError>;

    /// Reads a code without consuming it (the token endpoint checks everything first).
    async fn code_state(
        &self,
        code_hash: &[u8; 32],
        now: UnixTime,
    ) -> Result<CodeState, StoreError>;

    /// Marks the code used and writes what it issued, atomically; a second redemption revokes
    /// what the first issued.
    async fn redeem_code(
        &self,
        code_hash: &[u8; 32],
        issued: &IssuedFromCode,
        now: UnixTime,
    ) -> Result<Redemption, StoreError>;

    /// A used code was presented again: revokes the grant and the access token its first use
    /// issued (RFC 6749 §4.1.2) and returns that grant. `None` if the code was never used.
    async fn revoke_code_issuance(
        &self,
        code_hash: &[u8; 32],
        now: UnixTime,
    ) -> Result<Option<GrantId>, StoreError>;

    /// Stores a pushed authorization request (RFC 9126) under the SHA-256 of its `request_uri`.
    async fn put_pushed_request(
        &self,
        uri_hash: &[u8; 32],
        client_id: &str,
        request: &str,
        expires_at: UnixTime,
    ) -> Result<(), StoreError>;

    /// Takes (and deletes) a pushed request of `client_id`, if unexpired: single use.
    async fn take_pushed_request(
        &self,
        uri_hash: &[u8; 32],
        client_id: &str,
        now: UnixTime,
    ) -> Result<Option<String>, StoreError>;
}
