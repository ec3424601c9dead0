//! The PostgreSQL loader of the bulk seed (`crate::seed`): the generator's rows, written
//! with one `INSERT ... SELECT FROM unnest(...)` per table per batch, the counts folded and
//! the tables vacuumed at the end.

use crate::StoreError;
use crate::postgres::{FOLD_COUNTS_SQL, connect_options, db_error};
use crate::seed::{Generator, progress_log};
use chrono::{DateTime, Utc};
use portauthority_core::{Counters, Status, Timestamp};
use sqlx::Connection;
use std::time::Instant;

fn ts(ms: i64) -> DateTime<Utc> {
    Timestamp::from_millis(ms).to_datetime()
}

#[derive(Default)]
struct Jobs {
    id: Vec<uuid::Uuid>,
    correlation_id: Vec<Option<String>>,
    job_type: Vec<&'static str>,
    namespace: Vec<&'static str>,
    status: Vec<i16>,
    explicit: Vec<bool>,
    auto_complete: Vec<bool>,
    start: Vec<DateTime<Utc>>,
    end: Vec<Option<DateTime<Utc>>>,
    counters: [Vec<i64>; 6],
    meta: Vec<String>,
    created: Vec<DateTime<Utc>>,
    updated: Vec<DateTime<Utc>>,
    last_seq: Vec<i64>,
}

#[derive(Default)]
struct Tasks {
    id: Vec<uuid::Uuid>,
    job_id: Vec<uuid::Uuid>,
    task_type: Vec<&'static str>,
    namespace: Vec<&'static str>,
    status: Vec<i16>,
    start: Vec<DateTime<Utc>>,
    end: Vec<Option<DateTime<Utc>>>,
    progress_current: Vec<Option<i64>>,
    progress_total: Vec<Option<i64>>,
    error: Vec<Option<&'static str>>,
    meta: Vec<String>,
    created: Vec<DateTime<Utc>>,
    updated: Vec<DateTime<Utc>>,
}

#[derive(Default)]
struct MetaRows {
    key: Vec<String>,
    value: Vec<String>,
    start: Vec<DateTime<Utc>>,
    job_id: Vec<uuid::Uuid>,
}

#[derive(Default)]
struct Events {
    job_id: Vec<uuid::Uuid>,
    task_id: Vec<Option<uuid::Uuid>>,
    kind: Vec<&'static str>,
    time: Vec<DateTime<Utc>>,
    from: Vec<Option<i16>>,
    to: Vec<Option<i16>>,
    reason: Vec<Option<&'static str>>,
    progress_current: Vec<Option<i64>>,
    progress_total: Vec<Option<i64>>,
    job_seq: Vec<i64>,
}

/// Writes every job of `g`; returns the numbers of tasks and events written.
pub(crate) async fn load(url: &str, g: &Generator) -> Result<(u64, u64), StoreError> {
    let mut conn = sqlx::PgConnection::connect_with(&connect_options(url)?)
        .await
        .map_err(db_error)?;
    // A bulk load of synthetic rows: a lost tail on a crash only means seeding again.
    sqlx::query("SET synchronous_commit = off")
        .execute(&mut conn)
        .await
        .map_err(db_error)?;
    let started = Instant::now();
    let (mut n_tasks, mut n_events) = (0u64, 0u64);
    for range in g.batches() {
        // The batch's tasks by status, as every write adds its own.
        let mut counted = Counters::default();
        let (mut jobs, mut tasks, mut events, mut meta) = (
            Jobs::default(),
            Tasks::default(),
            Events::default(),
            MetaRows::default(),
        );
        for n in range.clone() {
            let j = g.job(n);
            jobs.id.push(j.id);
            jobs.correlation_id.push(j.correlation_id);
            jobs.job_type.push(j.job_type);
            jobs.namespace.push(j.namespace);
            jobs.status.push(j.status.code());
            jobs.explicit.push(j.explicit);
            jobs.auto_complete.push(j.auto_complete);
            jobs.start.push(ts(j.start));
            jobs.end.push(j.end.map(ts));
            let c = j.counters;
            counted = counted.plus(&c);
            for (v, x) in jobs.counters.iter_mut().zip([
                c.total,
                c.pending,
                c.in_progress,
                c.failed,
                c.completed,
                c.cancelled,
            ]) {
                v.push(x);
            }
            jobs.meta.push(j.meta.as_json().to_owned());
            for (key, value) in j.meta.index_entries() {
                meta.key.push(key.to_owned());
                meta.value.push(value);
                meta.start.push(ts(j.start));
                meta.job_id.push(j.id);
            }
            jobs.created.push(ts(j.created));
            jobs.updated.push(ts(j.updated));
            jobs.last_seq.push(j.last_seq);
            for t in &j.tasks {
                tasks.id.push(t.id);
                tasks.job_id.push(j.id);
                tasks.task_type.push(t.task_type);
                tasks.namespace.push(j.namespace);
                tasks.status.push(t.status.code());
                tasks.start.push(ts(t.start));
                tasks.end.push(t.end.map(ts));
                tasks.progress_current.push(t.progress.map(|p| p.0));
                tasks.progress_total.push(t.progress.map(|p| p.1));
                tasks.error.push(t.error);
                tasks.meta.push(t.meta.clone());
                tasks.created.push(ts(j.created));
                tasks.updated.push(ts(t.updated));
            }
            for e in &j.events {
                events.job_id.push(j.id);
                events.task_id.push(e.task_id);
                events.kind.push(e.kind);
                events.time.push(ts(e.time));
                events.from.push(e.from.map(Status::code));
                events.to.push(e.to.map(Status::code));
                events.reason.push(e.reason);
                events.progress_current.push(e.progress.map(|p| p.0));
                events.progress_total.push(e.progress.map(|p| p.1));
                events.job_seq.push(e.job_seq);
            }
        }
        n_tasks += tasks.id.len() as u64;
        n_events += events.job_id.len() as u64;
        let mut tx = conn.begin().await.map_err(db_error)?;
        let [total, pending, in_progress, failed, completed, cancelled] = jobs.counters;
        sqlx::query(
            "INSERT INTO jobs (id, correlation_id, type, namespace, status, status_explicit,
                               auto_complete, start_time, end_time, tasks_total, tasks_pending,
                               tasks_in_progress, tasks_failed, tasks_completed,
                               tasks_cancelled, meta, created_at, updated_at, last_seq)
             SELECT id, correlation_id, type, namespace, status, status_explicit,
                    auto_complete, start_time, end_time, total, pending, in_progress,
                    failed, completed, cancelled, meta::json, created_at, updated_at, last_seq
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int2[],
                         $6::bool[], $7::bool[], $8::timestamptz[], $9::timestamptz[],
                         $10::int8[], $11::int8[], $12::int8[], $13::int8[], $14::int8[],
                         $15::int8[], $16::text[], $17::timestamptz[], $18::timestamptz[],
                         $19::int8[])
                  AS t(id, correlation_id, type, namespace, status, status_explicit,
                       auto_complete, start_time, end_time, total, pending, in_progress,
                       failed, completed, cancelled, meta, created_at, updated_at, last_seq)",
        )
        .bind(&jobs.id)
        .bind(&jobs.correlation_id)
        .bind(&jobs.job_type)
        .bind(&jobs.namespace)
        .bind(&jobs.status)
        .bind(&jobs.explicit)
        .bind(&jobs.auto_complete)
        .bind(&jobs.start)
        .bind(&jobs.end)
        .bind(&total)
        .bind(&pending)
        .bind(&in_progress)
        .bind(&failed)
        .bind(&completed)
        .bind(&cancelled)
        .bind(&jobs.meta)
        .bind(&jobs.created)
        .bind(&jobs.updated)
        .bind(&jobs.last_seq)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO tasks (id, job_id, type, namespace, status, attempt, start_time,
                                end_time, progress_current, progress_total, error, meta,
                                timeout_seconds, heartbeat_at, created_at, updated_at)
             SELECT id, job_id, type, namespace, status, 1, start_time, end_time,
                    progress_current, progress_total, error, meta::json, NULL, updated_at,
                    created_at, updated_at
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int2[],
                         $6::timestamptz[], $7::timestamptz[], $8::int8[], $9::int8[],
                         $10::text[], $11::text[], $12::timestamptz[], $13::timestamptz[])
                  AS t(id, job_id, type, namespace, status, start_time, end_time,
                       progress_current, progress_total, error, meta, created_at,
                       updated_at)",
        )
        .bind(&tasks.id)
        .bind(&tasks.job_id)
        .bind(&tasks.task_type)
        .bind(&tasks.namespace)
        .bind(&tasks.status)
        .bind(&tasks.start)
        .bind(&tasks.end)
        .bind(&tasks.progress_current)
        .bind(&tasks.progress_total)
        .bind(&tasks.error)
        .bind(&tasks.meta)
        .bind(&tasks.created)
        .bind(&tasks.updated)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        // The meta index rows and the count deltas, as the store writes them with a job.
        sqlx::query(
            "INSERT INTO job_meta (key, value, start_time, job_id)
             SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::uuid[])",
        )
        .bind(&meta.key)
        .bind(&meta.value)
        .bind(&meta.start)
        .bind(&meta.job_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO job_meta_count_deltas (key, value, n)
             SELECT key, value, count(*) FROM unnest($1::text[], $2::text[]) AS t(key, value)
             GROUP BY key, value",
        )
        .bind(&meta.key)
        .bind(&meta.value)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO job_count_deltas (namespace, type, status, n)
             SELECT namespace, type, status, count(*)
             FROM unnest($1::text[], $2::text[], $3::int2[]) AS t(namespace, type, status)
             GROUP BY namespace, type, status",
        )
        .bind(&jobs.namespace)
        .bind(&jobs.job_type)
        .bind(&jobs.status)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        // WITH ORDINALITY keeps each job's events in the order they happened, so that `seq`
        // follows `job_seq`. `horizon` keeps its default.
        sqlx::query(
            "INSERT INTO history (job_id, task_id, kind, time, from_status, to_status,
                                  reason, progress_current, progress_total, job_seq)
             SELECT job_id, task_id, kind, time, from_status, to_status, reason,
                    progress_current, progress_total, job_seq
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[],
                         $5::int2[], $6::int2[], $7::text[], $8::int8[], $9::int8[],
                         $10::int8[])
                  WITH ORDINALITY
                  AS t(job_id, task_id, kind, time, from_status, to_status, reason,
                       progress_current, progress_total, job_seq, ord)
             ORDER BY ord",
        )
        .bind(&events.job_id)
        .bind(&events.task_id)
        .bind(&events.kind)
        .bind(&events.time)
        .bind(&events.from)
        .bind(&events.to)
        .bind(&events.reason)
        .bind(&events.progress_current)
        .bind(&events.progress_total)
        .bind(&events.job_seq)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        super::write::count_tasks(&mut tx, &counted)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        progress_log(range.end, g.total, started);
    }
    // The count deltas written above, folded now rather than by a server.
    for sql in FOLD_COUNTS_SQL {
        sqlx::query(sql)
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
    }
    // Statistics for the planner, and the visibility map for index-only scans.
    sqlx::query(
        "VACUUM (ANALYZE) jobs, tasks, history, job_meta, job_counts, job_meta_counts, task_counts",
    )
    .execute(&mut conn)
    .await
    .map_err(db_error)?;
    let _ = conn.close().await;
    Ok((n_tasks, n_events))
}
