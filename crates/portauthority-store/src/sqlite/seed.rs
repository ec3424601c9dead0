//! The SQLite loader of the bulk seed (`crate::seed`): the generator's rows, written in
//! big transactions of prepared inserts, as the writer would write them.

use super::{Options, internal, open_connection};
use crate::StoreError;
use crate::seed::{Generator, progress_log};
use portauthority_core::{Counters, Status};
use rusqlite::params;
use std::time::Instant;

/// Writes every job of `g`; returns the numbers of tasks and events written.
pub(crate) fn load(opts: &Options, g: &Generator) -> Result<(u64, u64), StoreError> {
    let mut conn = open_connection(opts, false)?;
    // A bulk load of synthetic rows: fsync at checkpoints only, and a big page cache.
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -262144;")
        .map_err(internal)?;
    let started = Instant::now();
    let (mut tasks, mut events) = (0u64, 0u64);
    for range in g.batches() {
        let mut counted = Counters::default();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(internal)?;
        {
            let mut job_stmt = tx
                .prepare(
                    "INSERT INTO jobs (id, correlation_id, type, namespace, status, \
                     status_explicit, auto_complete, start_time, end_time, tasks_total, \
                     tasks_pending, tasks_in_progress, tasks_failed, tasks_completed, \
                     tasks_cancelled, meta, created_at, updated_at, last_seq) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                     ?15, ?16, ?17, ?18, ?19)",
                )
                .map_err(internal)?;
            let mut meta_stmt = tx
                .prepare(
                    "INSERT OR IGNORE INTO job_meta (key, value, start_time, job_id) \
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(internal)?;
            let mut task_stmt = tx
                .prepare(
                    "INSERT INTO tasks (id, job_id, type, namespace, status, attempt, \
                     start_time, end_time, progress_current, progress_total, error, meta, \
                     timeout_seconds, heartbeat_at, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?9, ?10, ?11, NULL, ?12, \
                     ?13, ?12)",
                )
                .map_err(internal)?;
            let mut event_stmt = tx
                .prepare(
                    "INSERT INTO history (job_id, task_id, kind, time, from_status, \
                     to_status, reason, message, data, progress_current, progress_total, \
                     job_seq) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL, ?8, ?9, ?10)",
                )
                .map_err(internal)?;
            for n in range.clone() {
                let j = g.job(n);
                counted = counted.plus(&j.counters);
                let id = j.id.as_bytes();
                job_stmt
                    .execute(params![
                        id,
                        j.correlation_id,
                        j.job_type,
                        j.namespace,
                        j.status.code(),
                        j.explicit,
                        j.auto_complete,
                        j.start,
                        j.end,
                        j.counters.total,
                        j.counters.pending,
                        j.counters.in_progress,
                        j.counters.failed,
                        j.counters.completed,
                        j.counters.cancelled,
                        j.meta.as_json(),
                        j.created,
                        j.updated,
                        j.last_seq,
                    ])
                    .map_err(internal)?;
                for (key, value) in j.meta.index_entries() {
                    meta_stmt
                        .execute(params![key, value, j.start, id])
                        .map_err(internal)?;
                }
                for t in &j.tasks {
                    task_stmt
                        .execute(params![
                            t.id.as_bytes(),
                            id,
                            t.task_type,
                            j.namespace,
                            t.status.code(),
                            t.start,
                            t.end,
                            t.progress.map(|p| p.0),
                            t.progress.map(|p| p.1),
                            t.error,
                            t.meta,
                            t.updated,
                            j.created,
                        ])
                        .map_err(internal)?;
                }
                for e in &j.events {
                    event_stmt
                        .execute(params![
                            id,
                            e.task_id.as_ref().map(|t| t.as_bytes()),
                            e.kind,
                            e.time,
                            e.from.map(Status::code),
                            e.to.map(Status::code),
                            e.reason,
                            e.progress.map(|p| p.0),
                            e.progress.map(|p| p.1),
                            e.job_seq,
                        ])
                        .map_err(internal)?;
                }
                tasks += j.tasks.len() as u64;
                events += j.events.len() as u64;
            }
        }
        // The batch's tasks by status, as every write adds its own.
        super::write::count_tasks(&tx, &counted)?;
        tx.commit().map_err(internal)?;
        progress_log(range.end, g.total, started);
    }
    // No ANALYZE: the service never runs it, and the list queries are shaped to get the
    // same plans without statistics (docs/list-performance.md).
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(internal)?;
    Ok((tasks, events))
}
