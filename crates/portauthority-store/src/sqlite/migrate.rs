//! Embedded, versioned migrations for the SQLite store.

use super::{internal, open_connection, parse_url};
use crate::StoreError;
use rusqlite::Connection;

/// `(version, name, sql)`.
type Migration = (i64, &'static str, &'static str);

/// In version order. Never edit an applied migration; add a new one.
const MIGRATIONS: &[Migration] = &[
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
    (
        5,
        "timeouts_retention",
        include_str!("../../migrations/sqlite/0005_timeouts_retention.sql"),
    ),
    (
        6,
        "webhooks",
        include_str!("../../migrations/sqlite/0006_webhooks.sql"),
    ),
    (
        7,
        "readiness",
        include_str!("../../migrations/sqlite/0007_readiness.sql"),
    ),
    (
        8,
        "feed_horizon",
        include_str!("../../migrations/sqlite/0008_feed_horizon.sql"),
    ),
    (
        9,
        "job_rate",
        include_str!("../../migrations/sqlite/0009_job_rate.sql"),
    ),
    (
        10,
        "api_keys",
        include_str!("../../migrations/sqlite/0010_api_keys.sql"),
    ),
    (
        11,
        "task_counts",
        include_str!("../../migrations/sqlite/0011_task_counts.sql"),
    ),
];

/// Applies what is pending and returns the schema version. Runs in one immediate
/// transaction, so concurrent runs serialize and the second finds nothing to do.
///
/// Pending means not yet recorded, not above the highest recorded version (as sqlx's
/// migrator does on PostgreSQL): versions may have gaps, and a migration numbered below one
/// that a database already has (added on another branch, merged later) is still applied.
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
    let applied: Vec<i64> = tx
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(internal)?;
    let latest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    for (version, name, sql) in pending(&applied)? {
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
    Ok(latest)
}

/// The migrations a database that has `applied` still needs, in order. One it has that
/// this binary does not know is an error (as sqlx's migrator refuses a database with a
/// migration missing from its source): the schema is not one this binary was written for.
fn pending(applied: &[i64]) -> Result<Vec<&'static Migration>, StoreError> {
    if let Some(unknown) = applied
        .iter()
        .find(|v| !MIGRATIONS.iter().any(|m| m.0 == **v))
    {
        return Err(StoreError::Config(format!(
            "the database has schema migration {unknown}, which this binary does not know; \
             upgrade portauthority"
        )));
    }
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !applied.contains(&m.0))
        .collect())
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

    fn versions(ms: Vec<&Migration>) -> Vec<i64> {
        ms.into_iter().map(|m| m.0).collect()
    }

    fn all() -> Vec<i64> {
        MIGRATIONS.iter().map(|m| m.0).collect()
    }

    /// A database that has a later migration but lacks an earlier one (work merged after
    /// it was migrated) still gets it.
    #[test]
    fn pending_migrations_are_those_not_yet_recorded_whatever_the_newest() {
        let all = all();
        assert_eq!(versions(pending(&[]).unwrap()), all);
        assert_eq!(versions(pending(&all[..3]).unwrap()), all[3..]);
        let without_4: Vec<i64> = all.iter().copied().filter(|&v| v != 4).collect();
        assert_eq!(versions(pending(&without_4).unwrap()), [4]);
        assert!(pending(&all).unwrap().is_empty());
    }

    #[test]
    fn a_database_with_a_migration_this_binary_does_not_know_is_refused() {
        let mut recorded = all();
        let unknown = recorded.last().unwrap() + 1;
        recorded.push(unknown);
        let err = pending(&recorded).unwrap_err();
        assert!(
            err.to_string().contains(&format!("migration {unknown}")),
            "{err}"
        );
    }

    #[test]
    fn migrating_twice_applies_each_migration_once() {
        let newest = *all().last().unwrap();
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(apply(&mut conn).unwrap(), newest);
        assert_eq!(apply(&mut conn).unwrap(), newest);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
    }
}
