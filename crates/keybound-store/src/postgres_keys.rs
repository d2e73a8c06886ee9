//! [`SigningKeyStore`] on PostgreSQL: one ring row counting generations, three key rows by slot.

use keybound_core::UnixTime;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row as _};

use crate::signing_keys::{KeyRingRotation, SigningKeyStore, StoredKeyRing, StoredSigningKey};
use crate::sqlite::{db_time, from_db_time, unavailable};
use crate::{PostgresStore, StoreError};

const READ_RING: &str = "SELECT r.generation, k.slot, k.kid, k.alg, k.sealed, k.created_at
     FROM signing_key_ring r CROSS JOIN signing_keys k WHERE r.id = 1";

fn key_from_row(row: &PgRow) -> Result<(String, StoredSigningKey), StoreError> {
    let decode = |err: sqlx::Error| unavailable("reading a signing key", &err);
    let key = StoredSigningKey {
        kid: row.try_get("kid").map_err(decode)?,
        alg: row.try_get("alg").map_err(decode)?,
        sealed: row.try_get("sealed").map_err(decode)?,
        created_at: from_db_time(row.try_get("created_at").map_err(decode)?)?,
    };
    Ok((row.try_get("slot").map_err(decode)?, key))
}

/// Reads the ring in one statement (one snapshot), through `executor`.
async fn read_ring<'e, E>(executor: E) -> Result<Option<StoredKeyRing>, StoreError>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    const OP: &str = "reading the signing keys";
    let rows = sqlx::query(READ_RING)
        .fetch_all(executor)
        .await
        .map_err(|err| unavailable(OP, &err))?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let generation: i64 = first
        .try_get("generation")
        .map_err(|err| unavailable(OP, &err))?;
    let (mut current, mut next, mut previous) = (None, None, None);
    for row in &rows {
        let (slot, key) = key_from_row(row)?;
        match slot.as_str() {
            "current" => current = Some(key),
            "next" => next = Some(key),
            _ => previous = Some(key),
        }
    }
    let incomplete = || StoreError::Unavailable("the signing key ring is incomplete".to_owned());
    Ok(Some(StoredKeyRing {
        generation: u64::try_from(generation).map_err(|_| incomplete())?,
        current: current.ok_or_else(incomplete)?,
        next: next.ok_or_else(incomplete)?,
        previous: previous.ok_or_else(incomplete)?,
    }))
}

async fn insert_key(
    tx: &mut sqlx::PgConnection,
    slot: &str,
    key: &StoredSigningKey,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO signing_keys (slot, kid, alg, sealed, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(slot)
    .bind(key.kid.as_str())
    .bind(key.alg.as_str())
    .bind(key.sealed.as_slice())
    .bind(db_time(key.created_at))
    .execute(tx)
    .await
    .map_err(|err| unavailable("storing a signing key", &err))?;
    Ok(())
}

#[async_trait::async_trait]
impl SigningKeyStore for PostgresStore {
    async fn key_ring(&self) -> Result<Option<StoredKeyRing>, StoreError> {
        read_ring(&self.pool).await
    }

    async fn initialize_key_ring(
        &self,
        current: StoredSigningKey,
        next: StoredSigningKey,
        previous: StoredSigningKey,
    ) -> Result<StoredKeyRing, StoreError> {
        const OP: &str = "storing the first signing keys";
        let err = |err: sqlx::Error| unavailable(OP, &err);
        let mut tx = self.begin(OP).await?;
        // A replica starting at the same moment blocks here on the uncommitted ring row until
        // the first commits, then inserts nothing and reads the winner's keys.
        let inserted = sqlx::query(
            "INSERT INTO signing_key_ring (id, generation, changed_at) VALUES (1, 1, $1)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(db_time(current.created_at))
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        if inserted == 1 {
            for (slot, key) in [
                ("current", &current),
                ("next", &next),
                ("previous", &previous),
            ] {
                insert_key(&mut tx, slot, key).await?;
            }
        }
        let ring = read_ring(&mut *tx).await?;
        tx.commit().await.map_err(err)?;
        ring.ok_or_else(|| StoreError::Unavailable("the signing key ring is missing".to_owned()))
    }

    async fn rotate_key_ring(
        &self,
        expected: u64,
        new_next: StoredSigningKey,
        now: UnixTime,
    ) -> Result<KeyRingRotation, StoreError> {
        const OP: &str = "rotating the signing keys";
        let err = |err: sqlx::Error| unavailable(OP, &err);
        let mut tx = self.begin(OP).await?;
        // The row lock on the ring serialises rotations; the generation check makes a second
        // rotation from the same generation a no-op instead of a double rotation.
        let won = sqlx::query(
            "UPDATE signing_key_ring SET generation = generation + 1, changed_at = $2
             WHERE id = 1 AND generation = $1",
        )
        .bind(i64::try_from(expected).unwrap_or(i64::MAX))
        .bind(db_time(now))
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected()
            == 1;
        if won {
            for step in [
                "DELETE FROM signing_keys WHERE slot = 'previous'",
                "UPDATE signing_keys SET slot = 'previous' WHERE slot = 'current'",
                "UPDATE signing_keys SET slot = 'current' WHERE slot = 'next'",
            ] {
                sqlx::query(step).execute(&mut *tx).await.map_err(err)?;
            }
            insert_key(&mut tx, "next", &new_next).await?;
        }
        let ring = read_ring(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::Unavailable("no signing key ring to rotate".to_owned()))?;
        tx.commit().await.map_err(err)?;
        Ok(if won {
            KeyRingRotation::Rotated(ring)
        } else {
            KeyRingRotation::Stale(ring)
        })
    }
}
