//! Embedded, versioned migrations for the SQLite store.

use super::{internal, open_connection, parse_url};
use crate::StoreError;
use rusqlite::Connection;

/// `(version, name, sql)`, in order. Never edit an applied migration; add a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "list_performance",
        include_str!("../../migrations/sqlite/0002_list_performance.sql"),
    ),
    (
        3,
        "change_feed",
        include_str!("../../migrations/sqlite/0003_change_feed.sql"),
    ),
    (
        4,
        "once",
        include_str!("../../migrations/sqlite/0004_once.sql"),
    ),
    // 5 is another change's number.
    (
        6,
        "webhooks",
        include_str!("../../migrations/sqlite/0006_webhooks.sql"),
    ),
];

/// Applies what is pending and returns the schema version. Runs in one immediate
/// transaction, so concurrent runs serialize and the second finds nothing to do.
pub(crate) fn apply(conn: &mut Connection) -> Result<i64, StoreError> {
    apply_these(conn, MIGRATIONS)
}

/// Applies each of `migrations` that is not recorded yet, in order, whatever the versions
/// recorded around it: numbers need not be consecutive, and one written in another branch
/// that lands with a lower number than a version already applied is applied when it comes.
fn apply_these(conn: &mut Connection, migrations: &[(i64, &str, &str)]) -> Result<i64, StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(internal)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT    NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )
    .map_err(internal)?;
    let applied: Vec<i64> = tx
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(internal)?;
    if let Some(unknown) = applied
        .iter()
        .find(|v| !migrations.iter().any(|m| m.0 == **v))
    {
        return Err(StoreError::Config(format!(
            "the database has schema migration {unknown}, which this binary does not know; \
             upgrade portauthority"
        )));
    }
    for (version, name, sql) in migrations.iter().filter(|m| !applied.contains(&m.0)) {
        tx.execute_batch(sql).map_err(|e| {
            StoreError::Internal(format!("migration {version} ({name}) failed: {e}"))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![
                version,
                name,
                portauthority_core::Clock::now(&crate::system::SystemClock).as_millis()
            ],
        )
        .map_err(internal)?;
        tracing::info!(version, name, "applied migration");
    }
    tx.commit().map_err(internal)?;
    Ok(migrations.iter().map(|m| m.0).max().unwrap_or(0))
}

/// Opens the database at `url`, applies pending migrations, returns the schema version.
pub async fn migrate(url: &str) -> Result<i64, StoreError> {
    let opts = parse_url(url)?;
    tokio::task::spawn_blocking(move || {
        let mut conn = open_connection(&opts, false)?;
        apply(&mut conn)
    })
    .await
    .map_err(|e| StoreError::Internal(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(conn: &Connection) -> Vec<i64> {
        conn.prepare("SELECT version FROM schema_migrations ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_gap_is_tolerated_and_a_migration_landing_in_it_later_is_applied() {
        let mut conn = Connection::open_in_memory().unwrap();
        let first: &[(i64, &str, &str)] = &[
            (1, "a", "CREATE TABLE a (x INTEGER)"),
            (3, "c", "CREATE TABLE c (x INTEGER)"),
        ];
        assert_eq!(apply_these(&mut conn, first).unwrap(), 3);
        let later: &[(i64, &str, &str)] = &[
            (1, "a", "CREATE TABLE a (x INTEGER)"),
            (2, "b", "CREATE TABLE b (x INTEGER)"),
            (3, "c", "CREATE TABLE c (x INTEGER)"),
        ];
        assert_eq!(apply_these(&mut conn, later).unwrap(), 3);
        assert_eq!(versions(&conn), [1, 2, 3]);
        conn.execute_batch("SELECT x FROM b").unwrap();
        // Run again: nothing to do.
        apply_these(&mut conn, later).unwrap();
        // A binary that does not know an applied migration refuses the database.
        let err = apply_these(&mut conn, first).unwrap_err();
        assert!(matches!(err, StoreError::Config(_)), "{err:?}");
    }
}
