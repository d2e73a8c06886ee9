//! [`AuthorizationStore`] on the embedded SQLite file: codes and pushed requests.

use keybound_core::UnixTime;
use sqlx::Row as _;

use crate::authz::{AuthorizationCode, AuthorizationStore, CodeState, IssuedFromCode, Redemption};
use crate::sqlite::{db_time, from_db_time, insert_grant, insert_token, unavailable};
use crate::{GrantId, SqliteStore, StoreError};

#[async_trait::async_trait]
impl AuthorizationStore for SqliteStore {
    async fn put_code(&self, code: &AuthorizationCode) -> Result<(), StoreError> {
        const OP: &str = "storing an authorization code";
        sqlx::query(
            "INSERT INTO authorization_codes
               (code_hash, client_id, subject, scope, redirect_uri, code_challenge, dpop_jkt, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&code.code_hash[..])
        .bind(code.client_id.as_str())
        .bind(code.subject.as_str())
        .bind(code.scope.as_str())
        .bind(code.redirect_uri.as_str())
        .bind(code.code_challenge.as_str())
        .bind(code.dpop_jkt.as_deref())
        .bind(db_time(code.expires_at))
        .execute(&self.pool)
        .await
        .map_err(|err| unavailable(OP, &err))?;
        Ok(())
    }

    async fn code_state(
        &self,
        code_hash: &[u8; 32],
        now: UnixTime,
    ) -> Result<CodeState, StoreError> {
        const OP: &str = "reading an authorization code";
        let row = sqlx::query(
            "SELECT client_id, subject, scope, redirect_uri, code_challenge, dpop_jkt, expires_at, used_at
             FROM authorization_codes WHERE code_hash = ?",
        )
        .bind(&code_hash[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| unavailable(OP, &err))?;
        let Some(row) = row else {
            return Ok(CodeState::Unknown);
        };
        let decode = |err: sqlx::Error| unavailable(OP, &err);
        if row
            .try_get::<Option<i64>, _>("used_at")
            .map_err(decode)?
            .is_some()
        {
            return Ok(CodeState::Used);
        }
        let expires_at = from_db_time(row.try_get("expires_at").map_err(decode)?)?;
        if expires_at <= now {
            return Ok(CodeState::Unknown);
        }
        Ok(CodeState::Unused(AuthorizationCode {
            code_hash: *code_hash,
            client_id: row.try_get("client_id").map_err(decode)?,
            subject: row.try_get("subject").map_err(decode)?,
            scope: row.try_get("scope").map_err(decode)?,
            redirect_uri: row.try_get("redirect_uri").map_err(decode)?,
            code_challenge: row.try_get("code_challenge").map_err(decode)?,
            dpop_jkt: row.try_get("dpop_jkt").map_err(decode)?,
            expires_at,
        }))
    }

    async fn redeem_code(
        &self,
        code_hash: &[u8; 32],
        issued: &IssuedFromCode,
        now: UnixTime,
    ) -> Result<Redemption, StoreError> {
        const OP: &str = "redeeming an authorization code";
        let now = db_time(now);
        let grant = &issued.grant;
        let mut tx = self.begin_write(OP).await?;
        let consumed = sqlx::query(
            "UPDATE authorization_codes SET used_at = ?1, grant_id = ?2, access_jti = ?3, access_expires_at = ?4
             WHERE code_hash = ?5 AND used_at IS NULL AND expires_at > ?1",
        )
        .bind(now)
        .bind(grant.id.0.as_str())
        .bind(issued.access_token_jti.as_str())
        .bind(db_time(issued.access_token_expires_at))
        .bind(&code_hash[..])
        .execute(&mut *tx)
        .await
        .map_err(|err| unavailable(OP, &err))?
        .rows_affected();
        if consumed == 1 {
            insert_grant(&mut tx, grant, OP).await?;
            if let Some(refresh) = &issued.refresh {
                insert_token(&mut tx, refresh, OP).await?;
            }
            tx.commit().await.map_err(|err| unavailable(OP, &err))?;
            return Ok(Redemption::Redeemed);
        }
        let outcome = match revoke_issued(&mut tx, code_hash, now).await? {
            Some(grant) => Redemption::Replayed(grant),
            None => Redemption::Rejected,
        };
        tx.commit().await.map_err(|err| unavailable(OP, &err))?;
        Ok(outcome)
    }

    async fn revoke_code_issuance(
        &self,
        code_hash: &[u8; 32],
        now: UnixTime,
    ) -> Result<Option<GrantId>, StoreError> {
        const OP: &str = "revoking what a reused code issued";
        let mut tx = self.begin_write(OP).await?;
        let revoked = revoke_issued(&mut tx, code_hash, db_time(now))
            .await?
            .flatten();
        tx.commit().await.map_err(|err| unavailable(OP, &err))?;
        Ok(revoked)
    }

    async fn put_pushed_request(
        &self,
        uri_hash: &[u8; 32],
        client_id: &str,
        request: &str,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        const OP: &str = "storing a pushed authorization request";
        sqlx::query("INSERT INTO pushed_requests (uri_hash, client_id, request, expires_at) VALUES (?, ?, ?, ?)")
            .bind(&uri_hash[..])
            .bind(client_id)
            .bind(request)
            .bind(db_time(expires_at))
            .execute(&self.pool)
            .await
            .map_err(|err| unavailable(OP, &err))?;
        Ok(())
    }

    async fn take_pushed_request(
        &self,
        uri_hash: &[u8; 32],
        client_id: &str,
        now: UnixTime,
    ) -> Result<Option<String>, StoreError> {
        const OP: &str = "taking a pushed authorization request";
        // One statement: deleted and returned atomically, so a request_uri works once.
        let row = sqlx::query(
            "DELETE FROM pushed_requests WHERE uri_hash = ? AND client_id = ? AND expires_at > ? RETURNING request",
        )
        .bind(&uri_hash[..])
        .bind(client_id)
        .bind(db_time(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| unavailable(OP, &err))?;
        row.map(|r| r.try_get("request").map_err(|err| unavailable(OP, &err)))
            .transpose()
    }
}

/// If the code was used: revokes the grant and the access token of its first use, and returns
/// `Some(grant)`. `None` for an unknown or unused code.
async fn revoke_issued(
    tx: &mut sqlx::SqliteConnection,
    code_hash: &[u8; 32],
    now: i64,
) -> Result<Option<Option<GrantId>>, StoreError> {
    const OP: &str = "revoking what a code issued";
    let decode = |err: sqlx::Error| unavailable(OP, &err);
    let row = sqlx::query(
        "SELECT grant_id, access_jti, access_expires_at, used_at FROM authorization_codes WHERE code_hash = ?",
    )
    .bind(&code_hash[..])
    .fetch_optional(&mut *tx)
    .await
    .map_err(decode)?;
    let Some(row) = row else {
        return Ok(None);
    };
    if row
        .try_get::<Option<i64>, _>("used_at")
        .map_err(decode)?
        .is_none()
    {
        return Ok(None);
    }
    let grant_id: Option<String> = row.try_get("grant_id").map_err(decode)?;
    if let Some(id) = &grant_id {
        sqlx::query("UPDATE grants SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(decode)?;
    }
    let jti: Option<String> = row.try_get("access_jti").map_err(decode)?;
    let expires: Option<i64> = row.try_get("access_expires_at").map_err(decode)?;
    if let (Some(jti), Some(expires)) = (jti, expires) {
        sqlx::query("INSERT OR IGNORE INTO revoked_access_tokens (jti, expires_at) VALUES (?, ?)")
            .bind(jti)
            .bind(expires)
            .execute(&mut *tx)
            .await
            .map_err(decode)?;
    }
    Ok(Some(grant_id.map(GrantId)))
}
