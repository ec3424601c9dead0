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
];

/// Applies what is pending and returns the schema version. Runs in one immediate
/// transaction, so concurrent runs serialize and the second finds nothing to do.
pub(crate) fn apply(conn: &mut Connection) -> Result<i64, StoreError> {
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
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(internal)?;
    let latest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if current > latest {
        return Err(StoreError::Config(format!(
            "database schema version {current} is newer than this binary knows ({latest}); upgrade portauthority"
        )));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
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
    Ok(latest.max(current))
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
