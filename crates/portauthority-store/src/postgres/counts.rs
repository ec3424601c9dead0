//! Folding the job count deltas, as a background loop.
//!
//! `total_items` of a filtered list reads `job_counts` plus the deltas writers append
//! (migrations/postgres/0002_list_performance.sql). Counts are exact either way (a count
//! sums both tables in one snapshot); folding keeps the delta tables small.

use crate::background::Loop;
use async_trait::async_trait;
use sqlx::PgPool;
use std::time::Duration;

/// The advisory lock key that lets one process at a time fold.
const FOLD_LOCK: i64 = 0x5041_4a43_4e54; // "PAJCNT"

/// Moves the committed deltas into `job_counts` and `job_meta_counts` (rows in key order:
/// concurrent folds queue, never deadlock).
pub(crate) const FOLD_COUNTS_SQL: [&str; 2] = [
    "WITH d AS (DELETE FROM job_count_deltas RETURNING namespace, type, status, n)
     INSERT INTO job_counts AS c (namespace, type, status, n)
     SELECT namespace, type, status, sum(n)::bigint FROM d
     GROUP BY namespace, type, status ORDER BY namespace, type, status
     ON CONFLICT (namespace, type, status) DO UPDATE SET n = c.n + EXCLUDED.n",
    "WITH d AS (DELETE FROM job_meta_count_deltas RETURNING key, value, n)
     INSERT INTO job_meta_counts AS c (key, value, n)
     SELECT key, value, sum(n)::bigint FROM d
     GROUP BY key, value ORDER BY key, value
     ON CONFLICT (key, value) DO UPDATE SET n = c.n + EXCLUDED.n",
];

/// Folds the job count deltas committed so far into `job_counts`, in one transaction, and
/// returns how many count rows changed. One process at a time (an advisory lock): the
/// others skip their turn. Writers only insert deltas, so this never waits on a writer.
pub async fn fold_counts(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(FOLD_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(0);
    }
    let mut folded = 0;
    for sql in FOLD_COUNTS_SQL {
        folded += sqlx::query(sql).execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(folded)
}

/// Vacuums the count tables after a fold. Every list with a count reads the delta tables
/// whole, and a fold leaves the rows it moved behind as dead tuples, which autovacuum would
/// reclaim only after its next nap (a minute by default): under steady writes a list then
/// scanned hundreds of dead pages (about 1 ms of its 2). `SKIP_LOCKED`: when another
/// server is vacuuming them, this one skips its turn. `TRUNCATE false`: giving the empty
/// tail pages back needs an exclusive lock that the writers' inserts keep it waiting for
/// (seconds, under load); the next inserts reuse those pages anyway.
async fn vacuum_counts(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "VACUUM (SKIP_LOCKED, TRUNCATE false) job_count_deltas, job_meta_count_deltas, \
         job_counts, job_meta_counts",
    )
    .execute(pool)
    .await
    .map(drop)
}

/// Folds every second in each process (one at a time across processes).
pub(crate) struct CountFolder {
    pub(crate) pool: PgPool,
}

#[async_trait]
impl Loop for CountFolder {
    fn name(&self) -> &'static str {
        "postgres-count-folding"
    }

    async fn step(&self) -> anyhow::Result<bool> {
        let folded = fold_counts(&self.pool).await?;
        if folded > 0 {
            vacuum_counts(&self.pool).await?;
        }
        Ok(folded > 0)
    }

    /// A fold takes whatever has accumulated: folding again at once would vacuum for a
    /// handful of rows.
    fn pace(&self) -> Duration {
        Duration::from_secs(1)
    }
}
