//! What every SQL grant store must do, written once and run against each backend: the test
//! files implement [`Backend`] and expand [`store_suite!`], which turns every function of
//! [`grants`] and [`codes`] into a `#[tokio::test]` for that backend.

pub(crate) mod codes;
pub(crate) mod grants;

use keybound_core::UnixTime;
use keybound_store::{
    AuthorizationCode, AuthorizationStore, Grant, GrantId, GrantStore, IssuedFromCode,
    RefreshTokenRecord, StoreError,
};

pub(crate) const NOW: UnixTime = UnixTime::from_secs(1_700_000_000);
pub(crate) const DAY: u64 = 86_400;

/// A backend under test: a fresh, empty place to store (a temporary file, a new schema), and
/// stores opened on it. Dropping it removes the place.
pub(crate) trait Backend: Sized + Send + Sync + 'static {
    /// The store type.
    type Store: GrantStore + AuthorizationStore + 'static;

    /// A fresh place; `None` skips the test (after printing why).
    async fn create() -> Option<Self>;

    /// Opens a store on the place: another replica, or the same one after a restart.
    async fn try_open(&self) -> Result<Self::Store, StoreError>;

    /// Opens a store on the place, which must work.
    async fn open(&self) -> Self::Store {
        self.try_open().await.unwrap()
    }

    /// The schema version a store of this build migrates to.
    const LATEST_VERSION: u32;

    /// The schema version the store reports.
    async fn schema_version(store: &Self::Store) -> u32;

    /// Closes a store's connections.
    async fn close(store: &Self::Store);

    /// Records `version` as applied, behind the stores' backs (a later keybound's database).
    async fn record_schema_version(&self, version: i64);
}

/// A fresh backend and a store on it, or `None` when the backend is not available here.
pub(crate) async fn fresh<B: Backend>() -> Option<(B, B::Store)> {
    let backend = B::create().await?;
    let store = backend.open().await;
    Some((backend, store))
}

pub(crate) fn grant(id: &str, lifetime: u64) -> Grant {
    Grant {
        id: GrantId(id.to_owned()),
        client_id: "client-1".to_owned(),
        subject: "alice".to_owned(),
        scope: "read write".to_owned(),
        created_at: NOW,
        expires_at: NOW.saturating_add(lifetime),
        dpop_jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".to_owned()),
        cert_x5t: None,
    }
}

pub(crate) fn token(byte: u8, grant: &Grant, lifetime: u64) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: [byte; 32],
        grant_id: grant.id.clone(),
        expires_at: NOW.saturating_add(lifetime),
    }
}

pub(crate) fn code(hash: u8) -> AuthorizationCode {
    AuthorizationCode {
        code_hash: [hash; 32],
        client_id: "spa".into(),
        subject: "alice".into(),
        scope: "profile".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        dpop_jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
        expires_at: NOW.saturating_add(60),
    }
}

pub(crate) fn issued(grant: &str, refresh: u8) -> IssuedFromCode {
    let grant = Grant {
        id: GrantId(grant.into()),
        client_id: "spa".into(),
        subject: "alice".into(),
        scope: "profile".into(),
        created_at: NOW,
        expires_at: NOW.saturating_add(86_400),
        dpop_jkt: None,
        cert_x5t: None,
    };
    IssuedFromCode {
        refresh: Some(RefreshTokenRecord {
            token_hash: [refresh; 32],
            grant_id: grant.id.clone(),
            expires_at: grant.expires_at,
        }),
        grant,
        access_token_jti: format!("at-{refresh}"),
        access_token_expires_at: NOW.saturating_add(300),
    }
}

/// Expands to one `#[tokio::test]` per shared test, for the backend `$backend`.
macro_rules! store_suite {
    ($backend:ty) => {
        $crate::common::store_suite!(@tests $backend;
            grants::a_new_grant_has_an_active_first_token,
            grants::all_grant_fields_round_trip,
            grants::rotation_uses_the_old_token_and_activates_the_next,
            grants::reuse_of_a_rotated_token_revokes_the_grant,
            grants::an_expired_token_is_rejected_and_inactive,
            grants::an_expired_grant_makes_its_tokens_inactive,
            grants::an_unknown_token_is_unknown_and_rejected,
            grants::revoking_a_grant_deactivates_all_its_tokens,
            grants::mismatched_or_duplicate_records_fail_without_leaking_hashes_or_changing_anything,
            grants::data_survives_a_restart,
            grants::a_newer_schema_is_refused,
            grants::access_token_revocations_last_until_expiry,
            grants::purge_removes_expired_rows_only,
            grants::purge_keeps_used_tokens_until_they_expire,
            codes::a_code_is_read_without_being_consumed_then_redeemed_once,
            codes::a_second_use_revokes_the_grant_and_the_access_token_of_the_first,
            codes::revoke_code_issuance_revokes_only_what_a_used_code_issued,
            codes::an_expired_or_unknown_code_is_rejected,
            codes::a_pushed_request_is_taken_once_by_its_client_before_it_expires,
            codes::purge_keeps_used_codes_an_hour_and_pushed_requests_until_expiry,
        );
        $crate::common::store_suite!(@concurrent $backend;
            grants::concurrent_rotations_of_one_token_rotate_exactly_once,
            grants::concurrent_rotations_through_two_stores_rotate_exactly_once,
            grants::two_stores_opening_a_new_place_at_once_both_work,
            grants::a_reuse_racing_a_rotation_always_revokes_the_grant,
            codes::of_concurrent_redemptions_exactly_one_wins,
            codes::of_concurrent_takes_of_a_pushed_request_exactly_one_gets_it,
        );
    };
    (@tests $backend:ty; $($module:ident :: $name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::common::$module::$name::<$backend>().await;
            }
        )+
    };
    (@concurrent $backend:ty; $($module:ident :: $name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $crate::common::$module::$name::<$backend>().await;
            }
        )+
    };
}
pub(crate) use store_suite;
