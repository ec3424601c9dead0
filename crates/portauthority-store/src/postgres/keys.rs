//! API keys on PostgreSQL (migrations/postgres/0010_api_keys.sql).

use crate::keys::{StoredKey, parse_stored};
use chrono::{DateTime, Utc};
use portauthority_core::Timestamp;
use portauthority_core::auth::KeyRecord;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

const KEY_COLUMNS: &str =
    "id, name, role, scope, secret_hash, created_at, expires_at, revoked_at, last_used_at";

fn opt_time(r: &PgRow, i: usize) -> Result<Option<Timestamp>, sqlx::Error> {
    Ok(r.try_get::<Option<DateTime<Utc>>, _>(i)?
        .map(|t| Timestamp::from_datetime(&t)))
}

fn key_from_row(r: &PgRow) -> Result<StoredKey, sqlx::Error> {
    let (role, scope): (String, String) = (r.try_get(2)?, r.try_get(3)?);
    let (role, scope) = parse_stored(&role, &scope)
        .map_err(|e| sqlx::Error::Decode(format!("bad stored key: {e}").into()))?;
    Ok(StoredKey {
        record: KeyRecord {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            role,
            scope,
            created_at: Timestamp::from_datetime(&r.try_get::<DateTime<Utc>, _>(5)?),
            expires_at: opt_time(r, 6)?,
            revoked_at: opt_time(r, 7)?,
            last_used_at: opt_time(r, 8)?,
        },
        secret_hash: r.try_get(4)?,
    })
}

/// `false` when a key with this id exists already.
pub(crate) async fn create(c: &mut PgConnection, key: &StoredKey) -> Result<bool, sqlx::Error> {
    let r = &key.record;
    let done = sqlx::query(
        "INSERT INTO api_keys (id, name, role, scope, secret_hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&r.id)
    .bind(&r.name)
    .bind(r.role.as_str())
    .bind(r.scope.to_stored())
    .bind(&key.secret_hash)
    .bind(r.created_at.to_datetime())
    .bind(r.expires_at.map(|t| t.to_datetime()))
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn list(c: &mut PgConnection) -> Result<Vec<StoredKey>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
    )))
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(key_from_row)
    .collect()
}

pub(crate) async fn find(c: &mut PgConnection, id: &str) -> Result<Option<StoredKey>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *c)
    .await?
    .as_ref()
    .map(key_from_row)
    .transpose()
}

pub(crate) async fn any(c: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys)")
        .fetch_one(&mut *c)
        .await
}

pub(crate) async fn revoke(
    c: &mut PgConnection,
    id: &str,
    at: Timestamp,
) -> Result<Option<StoredKey>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1
         RETURNING {KEY_COLUMNS}"
    )))
    .bind(id)
    .bind(at.to_datetime())
    .fetch_optional(&mut *c)
    .await?
    .as_ref()
    .map(key_from_row)
    .transpose()
}

pub(crate) async fn touch(
    c: &mut PgConnection,
    id: &str,
    at: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api_keys SET last_used_at = $2 WHERE id = $1
         AND (last_used_at IS NULL OR last_used_at < $2)",
    )
    .bind(id)
    .bind(at.to_datetime())
    .execute(&mut *c)
    .await?;
    Ok(())
}
