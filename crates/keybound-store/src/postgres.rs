//! The PostgreSQL backend of [`GrantStore`], shared by many replicas.

use std::fmt;
use std::str::FromStr as _;
use std::time::Duration;

use keybound_core::UnixTime;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection as _, PgPool, Postgres, Row as _, Transaction};

use crate::sqlite::{TokenRow, db_time, from_db_time, unavailable};
use crate::{
    Grant, GrantId, GrantStore, RefreshTokenRecord, RefreshTokenState, Rotation, StoreError,
};

/// The first key of the advisory lock that serialises migrations (the second is a hash of the
/// schema name, so stores on different schemas migrate independently). "kbnd" in ASCII.
const MIGRATION_LOCK: i32 = 0x6b62_6e64;
/// A pooled connection idle at least this long is pinged before use; busier ones are not (the
/// pool already pings each connection when it comes back).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(5);

/// The schema, as numbered steps; steps 1 and 2 are the SQLite store's. Step `n` (1-based) is
/// applied once, in the same transaction that records `n` in `schema_version`. Never edit a
/// released step: append a new one.
const MIGRATIONS: &[&[&str]] = &[
    // 1: grants, refresh tokens, access-token revocations.
    &[
        "CREATE TABLE grants (
            id TEXT PRIMARY KEY,
            client_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            scope TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            dpop_jkt TEXT,
            cert_x5t TEXT,
            revoked_at BIGINT
        )",
        "CREATE INDEX grants_expires_at ON grants (expires_at)",
        "CREATE TABLE refresh_tokens (
            token_hash BYTEA PRIMARY KEY CHECK (octet_length(token_hash) = 32),
            grant_id TEXT NOT NULL REFERENCES grants (id),
            expires_at BIGINT NOT NULL,
            used_at BIGINT
        )",
        "CREATE INDEX refresh_tokens_grant_id ON refresh_tokens (grant_id)",
        "CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at)",
        "CREATE TABLE revoked_access_tokens (
            jti TEXT PRIMARY KEY,
            expires_at BIGINT NOT NULL
        )",
        "CREATE INDEX revoked_access_tokens_expires_at ON revoked_access_tokens (expires_at)",
    ],
    // 2: authorization codes and pushed authorization requests.
    &[
        "CREATE TABLE authorization_codes (
            code_hash BYTEA PRIMARY KEY CHECK (octet_length(code_hash) = 32),
            client_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            scope TEXT NOT NULL,
            redirect_uri TEXT NOT NULL,
            code_challenge TEXT NOT NULL,
            dpop_jkt TEXT,
            expires_at BIGINT NOT NULL,
            used_at BIGINT,
            grant_id TEXT,
            access_jti TEXT,
            access_expires_at BIGINT
        )",
        "CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at)",
        "CREATE TABLE pushed_requests (
            uri_hash BYTEA PRIMARY KEY CHECK (octet_length(uri_hash) = 32),
            client_id TEXT NOT NULL,
            request TEXT NOT NULL,
            expires_at BIGINT NOT NULL
        )",
        "CREATE INDEX pushed_requests_expires_at ON pushed_requests (expires_at)",
    ],
    // 3: the signing key ring shared by replicas (PostgreSQL only: one machine keeps its keys
    // in files).
    &[
        "CREATE TABLE signing_key_ring (
            id SMALLINT PRIMARY KEY CHECK (id = 1),
            generation BIGINT NOT NULL CHECK (generation > 0),
            changed_at BIGINT NOT NULL
        )",
        "CREATE TABLE signing_keys (
            slot TEXT PRIMARY KEY CHECK (slot IN ('current', 'next', 'previous')),
            kid TEXT NOT NULL,
            alg TEXT NOT NULL,
            sealed BYTEA NOT NULL,
            created_at BIGINT NOT NULL
        )",
    ],
];

/// How [`PostgresStore::connect`] sets up its pool. Start from [`PostgresOptions::default`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// The most connections this store opens (default 10). Every replica has its own pool:
    /// replicas × this must stay under the server's `max_connections`.
    pub max_connections: u32,
    /// How long a call waits for a connection, opening one included (default 2 s). Past it the
    /// call fails with [`StoreError::Unavailable`]: an unreachable database costs a request
    /// this long at most, never an answer that was not checked.
    pub acquire_timeout: Duration,
    /// The server-side limit on each statement, waits for row locks included (default 5 s),
    /// sent as `statement_timeout` when connecting.
    pub statement_timeout: Duration,
    /// The schema that holds keybound's tables, created when missing (which needs the `CREATE`
    /// privilege on the database) and set as the connections' `search_path`. Lowercase ASCII
    /// letters, digits and `_`, not starting with a digit, at most 63 bytes. `None` (the
    /// default): the server's `search_path`, usually `public`.
    pub schema: Option<String>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            schema: None,
        }
    }
}

impl PostgresOptions {
    /// These options with `schema` as the schema (see [`PostgresOptions::schema`]).
    #[must_use]
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// These options with at most `max` connections.
    #[must_use]
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// These options with `timeout` as the acquire timeout.
    #[must_use]
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// These options with `timeout` as the statement timeout.
    #[must_use]
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }
}

/// The shared [`GrantStore`] (and [`AuthorizationStore`](crate::AuthorizationStore)) for many
/// replicas: PostgreSQL, with the same semantics as [`SqliteStore`](crate::SqliteStore).
///
/// - **Connecting** opens a pool (see [`PostgresOptions`]) and applies the pending schema steps
///   (a `schema_version` table records which) in one transaction that first takes a
///   transaction-scoped advisory lock (`pg_advisory_xact_lock`): replicas starting together
///   migrate once, the others wait and find nothing to do. A schema written by a newer keybound
///   (an unknown version) is refused rather than misread.
/// - **Atomicity.** Every decision and its writes happen in one transaction, under row locks,
///   at PostgreSQL's default `READ COMMITTED` isolation:
///   - *rotation* is one statement: `UPDATE refresh_tokens SET used_at = now ... WHERE used_at
///     IS NULL` (and unexpired, grant active) joined with the `INSERT` of the next token. Of
///     concurrent rotations of one token, the first to lock its row wins; the others wait for
///     its commit, re-check `used_at IS NULL` on the committed row and match nothing;
///   - when that matched nothing (a reuse, an expired or unknown token: the uncommon case), a
///     transaction reads the token and its grant `FOR NO KEY UPDATE` and decides as the SQLite
///     store does: a used token revokes its grant ([`Rotation::ReuseDetected`]) for the first
///     caller, the next ones wait for that commit, see the grant revoked and get
///     [`Rotation::Rejected`]. The outcomes of any number of concurrent rotations of one token,
///     through one store or many, are those of the SQLite store: one `Rotated`, one
///     `ReuseDetected`, the rest `Rejected`;
///   - code redemption marks the code used and creates the grant and its refresh token in one
///     transaction; a pushed request is taken with one `DELETE ... RETURNING`.
/// - **Round trips.** A rotation that succeeds is one statement, so one round trip on the
///   caller's path (the pool then checks the connection with a `Sync` before reusing it).
///   Refresh-token state, revocation checks and pushed requests are one statement each.
/// - **Errors** (unreachable, timed out, a constraint, a closed store) become
///   [`StoreError::Unavailable`] with the operation and PostgreSQL's message, which names
///   constraints, never values; nothing is half-applied.
/// - **Times** are stored as `BIGINT` seconds, clamped like the SQLite store's. `revoked_at` is
///   0 when the revoking call was given no time.
/// - **Debug** output names the user, host, port, database and schema, never the password.
///
/// ```no_run
/// # async fn demo() -> Result<(), keybound_store::StoreError> {
/// use keybound_store::{GrantStore, PostgresOptions, PostgresStore};
/// let store = PostgresStore::connect(
///     "postgres://keybound@db.internal:5432/keybound?sslmode=verify-full",
///     &PostgresOptions::default().with_schema("keybound"),
/// )
/// .await?;
/// store.ping().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
    /// `postgres://user@host:port/database`, without the password.
    target: String,
    schema: Option<String>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`, with
    /// libpq-style parameters such as `sslmode`), creates the schema if asked and missing, and
    /// applies pending migrations.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the URL or the schema name is invalid, the database cannot
    /// be reached within the acquire timeout or refuses the login, or its schema is newer than
    /// this build. The message never holds the password.
    pub async fn connect(url: &str, options: &PostgresOptions) -> Result<Self, StoreError> {
        if let Some(schema) = &options.schema {
            check_schema_name(schema)?;
        }
        let mut connect = PgConnectOptions::from_str(url)
            .map_err(|err| unavailable("reading the PostgreSQL URL", &err))?
            .application_name("keybound")
            .options([(
                "statement_timeout",
                options.statement_timeout.as_millis().max(1).to_string(),
            )]);
        if let Some(schema) = &options.schema {
            connect = connect.options([("search_path", format!("\"{schema}\""))]);
        }
        let target = describe(&connect);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            // The pool pings every connection as it is released; ping again only after a while
            // idle, instead of spending a round trip on every call.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(connect)
            .await
            .map_err(|err| unavailable("connecting to PostgreSQL", &err))?;
        let store = Self {
            pool,
            target,
            schema: options.schema.clone(),
        };
        if let Err(err) = store.migrate().await {
            store.pool.close().await;
            return Err(err);
        }
        Ok(store)
    }

    /// The schema this store was asked to use, if any.
    #[must_use]
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Closes every connection (after waiting for those in use). Calls made afterwards,
    /// through this store or its clones, fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The schema version of the database (the number of migration steps applied).
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

    /// Applies the pending migration steps in one transaction, under the advisory lock.
    async fn migrate(&self) -> Result<(), StoreError> {
        const OP: &str = "migrating the database";
        let err = |err: sqlx::Error| unavailable(OP, &err);
        let mut tx = self.begin(OP).await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(MIGRATION_LOCK)
            .bind(self.schema.as_deref().unwrap_or(""))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        if let Some(schema) = &self.schema {
            // Only when missing: `CREATE SCHEMA IF NOT EXISTS` needs the privilege even when
            // the schema exists, and a least-privileged role may not have it.
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                    .bind(schema)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(err)?;
            if !exists {
                // The name was checked: lowercase letters, digits and `_` only.
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
        }
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY)")
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let current: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                .fetch_one(&mut *tx)
                .await
                .map_err(err)?;
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
                sqlx::query(*step).execute(&mut *tx).await.map_err(err)?;
            }
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    /// Starts a transaction.
    pub(crate) async fn begin(
        &self,
        op: &str,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(|err| unavailable(op, &err))
    }
}

/// Refuses schema names that would need quoting rules to be safe.
fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && !schema.starts_with("pg_")
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Unavailable(format!(
            "the schema name {schema:?} is not lowercase ASCII letters, digits and _ \
             (at most 63, not starting with a digit or pg_)"
        )))
    }
}

/// Where the store connects, for `Debug` and logs: everything but the password.
fn describe(options: &PgConnectOptions) -> String {
    let host = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => options.get_host().to_owned(),
    };
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        host,
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

/// A grant from the columns `id, client_id, subject, scope, created_at, expires_at, dpop_jkt,
/// cert_x5t`.
pub(crate) fn grant_from_row(row: &PgRow) -> Result<Grant, StoreError> {
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

/// The columns [`grant_from_row`] reads, from `grants g`.
const GRANT_COLUMNS: &str = "g.id, g.client_id, g.subject, g.scope, g.created_at, g.expires_at, \
                             g.dpop_jkt, g.cert_x5t";

/// Reads a refresh token and its grant; with `lock`, locks both rows (`FOR NO KEY UPDATE`, which
/// does not conflict with the key-share lock a concurrent insert of a token of the grant takes)
/// and reads their latest committed versions.
async fn read_token(
    conn: &mut sqlx::PgConnection,
    token_hash: &[u8; 32],
    lock: bool,
    op: &str,
) -> Result<Option<TokenRow>, StoreError> {
    let sql = format!(
        "SELECT {GRANT_COLUMNS}, g.revoked_at, t.expires_at AS token_expires_at, t.used_at
         FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id
         WHERE t.token_hash = $1{}",
        if lock { " FOR NO KEY UPDATE" } else { "" }
    );
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
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
pub(crate) async fn insert_token(
    conn: &mut sqlx::PgConnection,
    token: &RefreshTokenRecord,
    op: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, grant_id, expires_at, used_at) VALUES ($1, $2, $3, NULL)",
    )
    .bind(&token.token_hash[..])
    .bind(token.grant_id.0.as_str())
    .bind(db_time(token.expires_at))
    .execute(conn)
    .await
    .map_err(|err| unavailable(op, &err))?;
    Ok(())
}

/// Inserts a grant and, if given, a refresh token in one statement (so atomically, without a
/// transaction's extra round trips).
pub(crate) async fn insert_grant(
    conn: &mut sqlx::PgConnection,
    grant: &Grant,
    first: Option<&RefreshTokenRecord>,
    op: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "WITH g AS (
            INSERT INTO grants (id, client_id, subject, scope, created_at, expires_at, dpop_jkt, cert_x5t, revoked_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)
            RETURNING id
         )
         INSERT INTO refresh_tokens (token_hash, grant_id, expires_at, used_at)
         SELECT $9, $10, $11, NULL FROM g WHERE $9::bytea IS NOT NULL",
    )
    .bind(grant.id.0.as_str())
    .bind(grant.client_id.as_str())
    .bind(grant.subject.as_str())
    .bind(grant.scope.as_str())
    .bind(db_time(grant.created_at))
    .bind(db_time(grant.expires_at))
    .bind(grant.dpop_jkt.as_deref())
    .bind(grant.cert_x5t.as_deref())
    .bind(first.map(|t| &t.token_hash[..]))
    .bind(first.map(|t| t.grant_id.0.as_str()))
    .bind(first.map(|t| db_time(t.expires_at)))
    .execute(conn)
    .await
    .map_err(|err| unavailable(op, &err))?;
    Ok(())
}

/// Revokes a grant (if active) at `now`; whether this call revoked it.
pub(crate) async fn revoke_grant_at(
    conn: &mut sqlx::PgConnection,
    id: &str,
    now: i64,
    op: &str,
) -> Result<bool, StoreError> {
    Ok(
        sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(conn)
            .await
            .map_err(|err| unavailable(op, &err))?
            .rows_affected()
            == 1,
    )
}

#[async_trait::async_trait]
impl GrantStore for PostgresStore {
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
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|err| unavailable(OP, &err))?;
        insert_grant(&mut conn, grant, Some(first), OP).await
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
        Ok(match read_token(&mut conn, token_hash, false, OP).await? {
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
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|err| unavailable(OP, &err))?;

        // The common case in one statement, so one transaction and one round trip: consume the
        // token if it is current, unexpired, of an active grant and of `next`'s grant, and
        // insert `next`. A concurrent rotation of the same token blocks on the row lock until
        // this commits, then re-checks `used_at IS NULL` on the committed row and matches
        // nothing. If the insert fails (a duplicate hash), nothing was consumed.
        let rotated = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH consumed AS (
                UPDATE refresh_tokens t SET used_at = $1
                FROM grants g
                WHERE t.token_hash = $2 AND t.used_at IS NULL AND t.expires_at > $1
                  AND t.grant_id = $3
                  AND g.id = t.grant_id AND g.revoked_at IS NULL AND g.expires_at > $1
                RETURNING {GRANT_COLUMNS}
             ), inserted AS (
                INSERT INTO refresh_tokens (token_hash, grant_id, expires_at, used_at)
                SELECT $4, id, $5, NULL FROM consumed
             )
             SELECT * FROM consumed"
        )))
        .bind(now)
        .bind(&presented[..])
        .bind(next.grant_id.0.as_str())
        .bind(&next.token_hash[..])
        .bind(db_time(next.expires_at))
        .fetch_optional(&mut *conn)
        .await
        .map_err(|err| unavailable(OP, &err))?;
        if let Some(row) = rotated {
            return Ok(Rotation::Rotated(grant_from_row(&row)?));
        }

        // Not current (used, expired, revoked, unknown) or `next` is of another grant. Decide
        // under row locks, in one transaction, exactly as the SQLite store does. The locks are
        // taken after any rotation that made this token used has committed (the statement above
        // waited for it), so this reads the token as used.
        let mut tx = conn.begin().await.map_err(|err| unavailable(OP, &err))?;
        let outcome = match read_token(&mut tx, presented, true, OP).await? {
            None => Rotation::Rejected,
            Some(token) => match token.state(now) {
                RefreshTokenState::Active(grant) => {
                    if next.grant_id != grant.id {
                        // Dropping `tx` rolls back; nothing was written anyway.
                        return Err(StoreError::Unavailable(format!(
                            "{OP}: the next refresh token belongs to another grant"
                        )));
                    }
                    // Current after all: it was stored between the two statements.
                    sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2")
                        .bind(now)
                        .bind(&presented[..])
                        .execute(&mut *tx)
                        .await
                        .map_err(|err| unavailable(OP, &err))?;
                    insert_token(&mut tx, next, OP).await?;
                    Rotation::Rotated(grant)
                }
                RefreshTokenState::Used(grant) => {
                    // Reuse (RFC 9700 §4.14.2): the grant goes, for every token of it. The row
                    // is locked, so this revokes it; a concurrent reuse waits and sees it revoked.
                    revoke_grant_at(&mut tx, &grant.id.0, now, OP).await?;
                    Rotation::ReuseDetected(grant.id)
                }
                _ => Rotation::Rejected,
            },
        };
        tx.commit().await.map_err(|err| unavailable(OP, &err))?;
        Ok(outcome)
    }

    async fn revoke_grant(&self, id: &GrantId) -> Result<(), StoreError> {
        const OP: &str = "revoking a grant";
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|err| unavailable(OP, &err))?;
        // No time is given and the store reads no clock: 0 means "revoked, time not given".
        revoke_grant_at(&mut conn, &id.0, 0, OP).await?;
        Ok(())
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> Result<(), StoreError> {
        const OP: &str = "revoking an access token";
        // Revoking again never shortens the entry.
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2)
             ON CONFLICT (jti) DO UPDATE
             SET expires_at = GREATEST(revoked_access_tokens.expires_at, excluded.expires_at)",
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
        let revoked: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $1 AND expires_at > $2)",
        )
        .bind(jti)
        .bind(db_time(now))
        .fetch_one(&self.pool)
        .await
        .map_err(|err| unavailable(OP, &err))?;
        Ok(revoked)
    }

    async fn purge_expired(&self, now: UnixTime) -> Result<u64, StoreError> {
        const OP: &str = "purging expired rows";
        let now = db_time(now);
        let mut tx = self.begin(OP).await?;
        let mut purged = 0;
        // Used tokens stay until they expire (a reuse of one revokes its grant); tokens of an
        // expired grant go with it.
        for statement in [
            "DELETE FROM refresh_tokens
             WHERE expires_at <= $1 OR grant_id IN (SELECT id FROM grants WHERE expires_at <= $1)",
            "DELETE FROM grants WHERE expires_at <= $1",
            "DELETE FROM revoked_access_tokens WHERE expires_at <= $1",
            // Used codes stay an hour past expiry, so a late second use still revokes. (Written
            // so that a far-future expiry cannot overflow.)
            "DELETE FROM authorization_codes WHERE expires_at <= $1 - 3600",
            "DELETE FROM pushed_requests WHERE expires_at <= $1",
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
