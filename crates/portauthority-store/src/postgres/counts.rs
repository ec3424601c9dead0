//! Folding the job and task count deltas, as a background loop.
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
pub(crate) const FOLD_COUNTS_SQL: [&str; 3] = [
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
    "WITH d AS (DELETE FROM task_count_deltas RETURNING status, n)
     INSERT INTO task_counts AS c (status, n)
     SELECT status, sum(n)::bigint FROM d GROUP BY status ORDER BY status
     ON CONFLICT (status) DO UPDATE SET n = c.n + EXCLUDED.n",
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
         task_count_deltas, job_counts, job_meta_counts, task_counts",
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

/// The counts and the outbox of `Store::stats`, in one statement (one snapshot): each count
/// is its folded row plus the deltas not folded yet, as a list's total is.
pub(crate) async fn stats(pool: &PgPool) -> Result<crate::Stats, sqlx::Error> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT 'j', status::int8, sum(n)::int8 FROM (
             SELECT status, n FROM job_counts UNION ALL SELECT status, n FROM job_count_deltas
         ) c GROUP BY status
         UNION ALL
         SELECT 't', status::int8, sum(n)::int8 FROM (
             SELECT status, n FROM task_counts UNION ALL SELECT status, n FROM task_count_deltas
         ) c GROUP BY status
         UNION ALL
         SELECT 'o', count(*), COALESCE((
             SELECT (extract(epoch FROM h.time) * 1000)::int8
             FROM outbox o JOIN history h ON h.seq = o.seq ORDER BY o.seq LIMIT 1), -1)
         FROM outbox",
    )
    .fetch_all(pool)
    .await?;
    let of = |kind: &str| {
        rows.iter()
            .filter(|r| r.0 == kind)
            .map(|r| (r.1, r.2))
            .collect::<Vec<_>>()
    };
    let (pending, oldest) = of("o").first().copied().unwrap_or((0, -1));
    Ok(crate::Stats {
        jobs: crate::stats::counters(of("j")),
        tasks: crate::stats::counters(of("t")),
        outbox_pending: pending.max(0) as u64,
        outbox_oldest: (oldest >= 0).then(|| portauthority_core::Timestamp::from_millis(oldest)),
        pool: None,
        writer_queue: None,
    })
}
