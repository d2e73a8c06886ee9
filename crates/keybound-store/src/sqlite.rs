//! The embedded SQLite backend of [`GrantStore`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keybound_core::UnixTime;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite, SqlitePool, Transaction};

use crate::{
    Grant, GrantId, GrantStore, RefreshTokenRecord, RefreshTokenState, Rotation, StoreError,
};

/// How long a statement waits for another connection's (or process's) write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per store: SQLite serialises writers anyway, a few serve concurrent readers.
const MAX_CONNECTIONS: u32 = 4;

/// The schema, as numbered steps. Step `n` (1-based) is applied once, in the same transaction
/// that records `n` in `schema_version`. Never edit a released step: append a new one.
const MIGRATIONS: &[&[&str]] = &[
    // 1: grants, refresh tokens, access-token revocations.
    &[
        "CREATE TABLE grants (
            id TEXT PRIMARY KEY NOT NULL,
            client_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            scope TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            dpop_jkt TEXT,
            cert_x5t TEXT,
            revoked_at INTEGER
        ) STRICT",
        "CREATE INDEX grants_expires_at ON grants (expires_at)",
        "CREATE TABLE refresh_tokens (
            token_hash BLOB PRIMARY KEY NOT NULL CHECK (length(token_hash) = 32),
            grant_id TEXT NOT NULL REFERENCES grants (id),
            expires_at INTEGER NOT NULL,
            used_at INTEGER
        ) STRICT",
        "CREATE INDEX refresh_tokens_grant_id ON refresh_tokens (grant_id)",
        "CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at)",
        "CREATE TABLE revoked_access_tokens (
            jti TEXT PRIMARY KEY NOT NULL,
            expires_at INTEGER NOT NULL
        ) STRICT",
        "CREATE INDEX revoked_access_tokens_expires_at ON revoked_access_tokens (expires_at)",
    ],
    // 2: authorization codes and pushed authorization requests.
    &[
        "CREATE TABLE authorization_codes (
            code_hash BLOB PRIMARY KEY NOT NULL CHECK (length(code_hash) = 32),
            client_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            scope TEXT NOT NULL,
            redirect_uri TEXT NOT NULL,
            code_challenge TEXT NOT NULL,
            dpop_jkt TEXT,
            expires_at INTEGER NOT NULL,
            used_at INTEGER,
            grant_id TEXT,
            access_jti TEXT,
            access_expires_at INTEGER
        ) STRICT",
        "CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at)",
        "CREATE TABLE pushed_requests (
            uri_hash BLOB PRIMARY KEY NOT NULL CHECK (length(uri_hash) = 32),
            client_id TEXT NOT NULL,
            request TEXT NOT NULL,
            expires_at INTEGER NOT NULL
        ) STRICT",
    ],
];

/// The embedded [`GrantStore`]: one SQLite file, opened in WAL mode.
///
/// - **Opening** creates the file if it is missing (mode 0600 on Unix: it names subjects and
///   clients), switches it to WAL, sets a 5-second busy timeout and applies the pending schema
///   steps (a `schema_version` table records which), all inside one write transaction, so two
///   processes opening one new file at once migrate it once. A file written by a newer keybound
///   (an unknown schema version) is refused rather than misread.
/// - **Atomicity.** Every read-then-write runs in a `BEGIN IMMEDIATE` transaction: it takes the
///   file's write lock before reading, so the decision and the write cannot interleave with any
///   other writer, in this process (other pooled connections, other `SqliteStore`s) or another
///   one on the same file. Writers queue on the lock for up to the busy timeout, then the call
///   fails with [`StoreError::Unavailable`]. Commits are `synchronous = FULL`: a rotation that
///   answered `Rotated` survives a power cut.
/// - **Times** are stored as SQLite integers (`i64`); a [`UnixTime`] beyond `i64::MAX` seconds
///   is stored as `i64::MAX`, which keeps every comparison right.
/// - **Expiry.** Something with `expires_at` is usable while `now < expires_at`.
/// - **Rotation and reuse.** Of any number of concurrent rotations of one refresh token, exactly
///   one returns [`Rotation::Rotated`]. The others run after it, see the token used and, per
///   RFC 9700 §4.14.2, treat it as reuse: the first of them revokes the grant and gets
///   [`Rotation::ReuseDetected`], the rest find the grant revoked and get [`Rotation::Rejected`].
///   So a client that sends one refresh twice at once loses its grant: it has to re-authorize.
///   A used token whose own expiry has passed is merely [`RefreshTokenState::Inactive`]
///   (rotation answers `Rejected`, the grant stays), matching [`GrantStore::refresh_token_state`].
/// - **Errors** become [`StoreError::Unavailable`] with the operation and SQLite's message;
///   SQLite never puts bound values (token hashes, `jti`s) in its messages.
/// - **Revocation time.** `revoked_at` records when a grant was revoked when the store knows
///   it (reuse detection, which is given `now`); [`GrantStore::revoke_grant`] is given no time
///   and the store never reads the clock, so it records 0 ("revoked, time not given").
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use keybound_store::{GrantStore, SqliteStore};
/// let dir = std::env::temp_dir().join(format!("keybound-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let store = SqliteStore::open(&dir.join("keybound.db")).await.unwrap();
/// store.ping().await.unwrap();
/// store.close().await;
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # })
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    path: PathBuf,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) the database file at `path` and applies pending migrations.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the file cannot be created or opened (a missing directory,
    /// no permission), is not an SQLite database, or holds a schema newer than this build.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        create_private_file(path).await?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|err| unavailable("opening the database", &err))?;
        let store = Self {
            pool,
            path: path.to_owned(),
        };
        if let Err(err) = store.migrate().await {
            store.pool.close().await;
            return Err(err);
        }
        Ok(store)
    }

    /// The file this store was opened on.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection (after waiting for those in use), checkpointing the WAL. Calls
    /// made afterwards, through this store or its clones, fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The schema version of the open file (the number of migration steps applied).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the database cannot be read.
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        let version: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                .fetch_one(&self.pool)
                .await
                .map_err(|err| unavailable("reading the schema version", &err))?;
        u32::try_from(version)
            .map_err(|_| StoreError::Unavailable("the schema version is out of range".to_owned()))
    }

    /// Applies the pending migration steps in one write transaction.
    async fn migrate(&self) -> Result<(), StoreError> {
        const OP: &str = "migrating the database";
        let mut tx = self.begin_write(OP).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(|err| unavailable(OP, &err))?;
        let current: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                .fetch_one(&mut *tx)
                .await
                .map_err(|err| unavailable(OP, &err))?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if current > known || current < 0 {
            return Err(StoreError::Unavailable(format!(
                "the database has schema version {current}, this build knows versions up to {known}"
            )));
        }
        for (version, steps) in (1i64..)
            .zip(MIGRATIONS)
            .skip_while(|(version, _)| *version <= current)
        {
            for step in *steps {
                sqlx::query(*step)
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| unavailable(OP, &err))?;
            }
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(|err| unavailable(OP, &err))?;
        }
        tx.commit().await.map_err(|err| unavailable(OP, &err))
    }

    /// Starts a transaction holding the write lock from its first statement (`BEGIN IMMEDIATE`).
    pub(crate) async fn begin_write(
        &self,
        op: &str,
    ) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|err| unavailable(op, &err))
    }
}

/// Creates `path` as an empty, owner-only file if it does not exist yet (SQLite gives its WAL
/// and shared-memory files the same permissions).
async fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    match options.open(path).await {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(StoreError::Unavailable(format!(
            "creating the database file: {err}"
        ))),
    }
}

/// The error callers see: the operation and SQLite's (or the pool's) message. Neither holds a
/// bound value: SQLite reports constraints by column name, never by value.
pub(crate) fn unavailable(op: &str, err: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("{op}: {err}"))
}

/// A time as stored: seconds, clamped to SQLite's signed 64-bit integers.
pub(crate) fn db_time(time: UnixTime) -> i64 {
    i64::try_from(time.as_secs()).unwrap_or(i64::MAX)
}

/// A stored time read back.
pub(crate) fn from_db_time(secs: i64) -> Result<UnixTime, StoreError> {
    u64::try_from(secs)
        .map(UnixTime::from_secs)
        .map_err(|_| StoreError::Unavailable("a negative time in the database".to_owned()))
}

fn grant_from_row(row: &SqliteRow) -> Result<Grant, StoreError> {
    let decode = |err: sqlx::Error| unavailable("reading a grant", &err);
    Ok(Grant {
        id: GrantId(row.try_get("id").map_err(decode)?),
        client_id: row.try_get("client_id").map_err(decode)?,
        subject: row.try_get("subject").map_err(decode)?,
        scope: row.try_get("scope").map_err(decode)?,
        created_at: from_db_time(row.try_get("created_at").map_err(decode)?)?,
        expires_at: from_db_time(row.try_get("expires_at").map_err(decode)?)?,
        dpop_jkt: row.try_get("dpop_jkt").map_err(decode)?,
        cert_x5t: row.try_get("cert_x5t").map_err(decode)?,
    })
}

/// A presented refresh token joined with its grant (every SQL backend reads this shape).
pub(crate) struct TokenRow {
    pub(crate) grant: Grant,
    pub(crate) token_expires_at: i64,
    pub(crate) used: bool,
    pub(crate) grant_revoked: bool,
}

impl TokenRow {
    /// The state [`GrantStore::refresh_token_state`] reports for it at `now`.
    pub(crate) fn state(self, now: i64) -> RefreshTokenState {
        if self.token_expires_at <= now
            || self.grant_revoked
            || db_time(self.grant.expires_at) <= now
        {
            RefreshTokenState::Inactive
        } else if self.used {
            RefreshTokenState::Used(self.grant)
        } else {
            RefreshTokenState::Active(self.grant)
        }
    }
}

/// Reads a refresh token and its grant.
async fn read_token(
    conn: &mut sqlx::SqliteConnection,
    token_hash: &[u8; 32],
    op: &str,
) -> Result<Option<TokenRow>, StoreError> {
    let Some(row) = sqlx::query(
        "SELECT g.id AS id, g.client_id AS client_id, g.subject AS subject, g.scope AS scope,
                g.created_at AS created_at, g.expires_at AS expires_at, g.dpop_jkt AS dpop_jkt,
                g.cert_x5t AS cert_x5t, g.revoked_at AS revoked_at,
                t.expires_at AS token_expires_at, t.used_at AS used_at
         FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id
         WHERE t.token_hash = ?",
    )
    .bind(&token_hash[..])
    .fetch_optional(conn)
    .await
    .map_err(|err| unavailable(op, &err))?
    else {
        return Ok(None);
    };
    let decode = |err: sqlx::Error| unavailable(op, &err);
    Ok(Some(TokenRow {
        grant: grant_from_row(&row)?,
        token_expires_at: row.try_get("token_expires_at").map_err(decode)?,
        used: row
            .try_get::<Option<i64>, _>("used_at")
            .map_err(decode)?
            .is_some(),
        grant_revoked: row
            .try_get::<Option<i64>, _>("revoked_at")
            .map_err(decode)?
            .is_some(),
    }))
}

/// Inserts a refresh token.
/// Inserts a new, unrevoked grant.
pub(crate) async fn insert_grant(
    conn: &mut sqlx::SqliteConnection,
    grant: &Grant,
    op: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO grants (id, client_id, subject, scope, created_at, expires_at, dpop_jkt, cert_x5t, revoked_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
    )
    .bind(grant.id.0.as_str())
    .bind(grant.client_id.as_str())
    .bind(grant.subject.as_str())
    .bind(grant.scope.as_str())
    .bind(db_time(grant.created_at))
    .bind(db_time(grant.expires_at))
    .bind(grant.dpop_jkt.as_deref())
    .bind(grant.cert_x5t.as_deref())
    .execute(conn)
    .await
    .map_err(|err| unavailable(op, &err))?;
    Ok(())
}

pub(crate) async fn insert_token(
    conn: &mut sqlx::SqliteConnection,
    token: &RefreshTokenRecord,
    op: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO refresh_tokens (token_hash, grant_id, expires_at, used_at) VALUES (?, ?, ?, NULL)")
        .bind(&token.token_hash[..])
        .bind(token.grant_id.0.as_str())
        .bind(db_time(token.expires_at))
        .execute(conn)
        .await
        .map_err(|err| unavailable(op, &err))?;
    Ok(())
}

#[async_trait::async_trait]
impl GrantStore for SqliteStore {
    async fn create_grant(
        &self,
        grant: &Grant,
        first: &RefreshTokenRecord,
    ) -> Result<(), StoreError> {
        const OP: &str = "creating a grant";
        if first.grant_id != grant.id {
            return Err(StoreError::Unavailable(format!(
                "{OP}: the refresh token belongs to another grant"
            )));
        }
        let mut tx = self.begin_write(OP).await?;
        insert_grant(&mut tx, grant, OP).await?;
        insert_token(&mut tx, first, OP).await?;
        tx.commit().await.map_err(|err| unavailable(OP, &err))
    }

    async fn refresh_token_state(
        &self,
        token_hash: &[u8; 32],
        now: UnixTime,
    ) -> Result<RefreshTokenState, StoreError> {
        const OP: &str = "reading a refresh token";
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|err| unavailable(OP, &err))?;
        Ok(match read_token(&mut conn, token_hash, OP).await? {
            None => RefreshTokenState::Unknown,
            Some(token) => token.state(db_time(now)),
        })
    }

    async fn rotate_refresh_token(
        &self,
        presented: &[u8; 32],
        next: &RefreshTokenRecord,
        now: UnixTime,
    ) -> Result<Rotation, StoreError> {
        const OP: &str = "rotating a refresh token";
        let now = db_time(now);
        // The write lock is held from here to the commit: no other rotation, in this process or
        // another, can read this token between our read and our write.
        let mut tx = self.begin_write(OP).await?;
        // Consume the token only if it is current, unexpired and its grant active.
        let consumed = sqlx::query(
            "UPDATE refresh_tokens SET used_at = ?1
             WHERE token_hash = ?2 AND used_at IS NULL AND expires_at > ?1
               AND EXISTS (SELECT 1 FROM grants g
                           WHERE g.id = refresh_tokens.grant_id AND g.revoked_at IS NULL AND g.expires_at > ?1)",
        )
        .bind(now)
        .bind(&presented[..])
        .execute(&mut *tx)
        .await
        .map_err(|err| unavailable(OP, &err))?
        .rows_affected();

        let outcome = match (consumed, read_token(&mut tx, presented, OP).await?) {
            (1, Some(token)) => {
                if next.grant_id != token.grant.id {
                    // Dropping `tx` rolls the consumption back.
                    return Err(StoreError::Unavailable(format!(
                        "{OP}: the next refresh token belongs to another grant"
                    )));
                }
                insert_token(&mut tx, next, OP).await?;
                Rotation::Rotated(token.grant)
            }
            (0, Some(token)) => match token.state(now) {
                RefreshTokenState::Used(grant) => {
                    sqlx::query(
                        "UPDATE grants SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    )
                    .bind(now)
                    .bind(grant.id.0.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| unavailable(OP, &err))?;
                    Rotation::ReuseDetected(grant.id)
                }
                _ => Rotation::Rejected,
            },
            (0, None) => Rotation::Rejected,
            _ => {
                return Err(StoreError::Unavailable(format!(
                    "{OP}: inconsistent refresh token rows"
                )));
            }
        };
        tx.commit().await.map_err(|err| unavailable(OP, &err))?;
        Ok(outcome)
    }

    async fn revoke_grant(&self, id: &GrantId) -> Result<(), StoreError> {
        const OP: &str = "revoking a grant";
        // No time is given and the store reads no clock: 0 means "revoked, time not given".
        sqlx::query("UPDATE grants SET revoked_at = 0 WHERE id = ? AND revoked_at IS NULL")
            .bind(id.0.as_str())
            .execute(&self.pool)
            .await
            .map_err(|err| unavailable(OP, &err))?;
        Ok(())
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> Result<(), StoreError> {
        const OP: &str = "revoking an access token";
        // Revoking again never shortens the entry.
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES (?, ?)
             ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
        )
        .bind(jti)
        .bind(db_time(expires_at))
        .execute(&self.pool)
        .await
        .map_err(|err| unavailable(OP, &err))?;
        Ok(())
    }

    async fn is_access_token_revoked(&self, jti: &str, now: UnixTime) -> Result<bool, StoreError> {
        const OP: &str = "reading the access-token revocations";
        let revoked: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM revoked_access_tokens WHERE jti = ? AND expires_at > ?",
        )
        .bind(jti)
        .bind(db_time(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| unavailable(OP, &err))?;
        Ok(revoked.is_some())
    }

    async fn purge_expired(&self, now: UnixTime) -> Result<u64, StoreError> {
        const OP: &str = "purging expired rows";
        let now = db_time(now);
        let mut tx = self.begin_write(OP).await?;
        let mut purged = 0;
        // Used tokens stay until they expire (a reuse of one revokes its grant); tokens of an
        // expired grant go with it.
        for statement in [
            "DELETE FROM refresh_tokens
             WHERE expires_at <= ?1 OR grant_id IN (SELECT id FROM grants WHERE expires_at <= ?1)",
            "DELETE FROM grants WHERE expires_at <= ?1",
            "DELETE FROM revoked_access_tokens WHERE expires_at <= ?1",
            // Used codes stay an hour past expiry, so a late second use still revokes.
            "DELETE FROM authorization_codes WHERE expires_at + 3600 <= ?1",
            "DELETE FROM pushed_requests WHERE expires_at <= ?1",
        ] {
            purged += sqlx::query(statement)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|err| unavailable(OP, &err))?
                .rows_affected();
        }
        tx.commit().await.map_err(|err| unavailable(OP, &err))?;
        Ok(purged)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|err| unavailable("pinging the database", &err))?;
        Ok(())
    }
}
