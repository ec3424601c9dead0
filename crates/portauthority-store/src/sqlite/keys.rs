//! API keys on SQLite (migrations/sqlite/0010_api_keys.sql). Writes run in the writer.

use super::internal;
use crate::StoreError;
use crate::keys::{StoredKey, key_not_found, parse_stored};
use portauthority_core::Timestamp;
use portauthority_core::auth::KeyRecord;
use rusqlite::{Connection, OptionalExtension, Row, params};

const KEY_COLUMNS: &str =
    "id, name, role, scope, secret_hash, created_at, expires_at, revoked_at, last_used_at";

fn opt_time(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Timestamp>> {
    Ok(row.get::<_, Option<i64>>(i)?.map(Timestamp::from_millis))
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<StoredKey> {
    let (role, scope): (String, String) = (row.get(2)?, row.get(3)?);
    let (role, scope) = parse_stored(&role, &scope).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(StoredKey {
        record: KeyRecord {
            id: row.get(0)?,
            name: row.get(1)?,
            role,
            scope,
            created_at: Timestamp::from_millis(row.get(5)?),
            expires_at: opt_time(row, 6)?,
            revoked_at: opt_time(row, 7)?,
            last_used_at: opt_time(row, 8)?,
        },
        secret_hash: row.get(4)?,
    })
}

pub(crate) fn create(c: &Connection, key: &StoredKey) -> Result<(), StoreError> {
    let r = &key.record;
    c.prepare_cached(
        "INSERT INTO api_keys (id, name, role, scope, secret_hash, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .map_err(internal)?
    .execute(params![
        r.id,
        r.name,
        r.role.as_str(),
        r.scope.to_stored(),
        key.secret_hash,
        r.created_at.as_millis(),
        r.expires_at.map(Timestamp::as_millis),
    ])
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(format!("key {} already exists", r.id))
        }
        other => internal(other),
    })?;
    Ok(())
}

pub(crate) fn list(c: &Connection) -> Result<Vec<StoredKey>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
    ))
    .map_err(internal)?
    .query_map([], key_from_row)
    .map_err(internal)?
    .collect::<rusqlite::Result<_>>()
    .map_err(internal)
}

pub(crate) fn find(c: &Connection, id: &str) -> Result<Option<StoredKey>, StoreError> {
    c.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"))
        .map_err(internal)?
        .query_row([id], key_from_row)
        .optional()
        .map_err(internal)
}

pub(crate) fn any(c: &Connection) -> Result<bool, StoreError> {
    c.prepare_cached("SELECT EXISTS (SELECT 1 FROM api_keys)")
        .map_err(internal)?
        .query_row([], |r| r.get(0))
        .map_err(internal)
}

pub(crate) fn revoke(c: &Connection, id: &str, at: Timestamp) -> Result<StoredKey, StoreError> {
    c.prepare_cached("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1")
        .map_err(internal)?
        .execute(params![id, at.as_millis()])
        .map_err(internal)?;
    find(c, id)?.ok_or_else(|| key_not_found(id))
}

pub(crate) fn touch(c: &Connection, id: &str, at: Timestamp) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1 \
         AND (last_used_at IS NULL OR last_used_at < ?2)",
    )
    .map_err(internal)?
    .execute(params![id, at.as_millis()])
    .map_err(internal)?;
    Ok(())
}
