//! Rows: mapping PostgreSQL rows to domain types, and the reads by key (jobs, tasks, a
//! job's open tasks). Lists and history pages are in `lists.rs`, the feed in `feed.rs`.

use chrono::{DateTime, Utc};
use portauthority_core::api::{EventKind, HistoryEvent, Job, Progress, Task};
use portauthority_core::plan::StoredJob;
use portauthority_core::{Counters, JobId, Rate, Status, TaskId, Timestamp};
use serde_json::value::RawValue;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

pub(crate) const JOB_COLUMNS: &str = "id, correlation_id, type, namespace, status, status_explicit, auto_complete, \
    start_time, end_time, tasks_total, tasks_pending, tasks_in_progress, tasks_failed, tasks_completed, \
    tasks_cancelled, meta::text, created_at, updated_at, last_seq, timeout_seconds, rate_samples, \
    rate_weight, rate_since, rate_last";

pub(crate) const TASK_COLUMNS: &str = "id, job_id, type, namespace, status, attempt, start_time, end_time, \
    progress_current, progress_total, error, meta::text, timeout_seconds, created_at, updated_at";

pub(crate) const HISTORY_COLUMNS: &str = "seq, job_id, task_id, kind, time, from_status, to_status, \
    reason, message, data::text, progress_current, progress_total, job_seq";

fn decode_err(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("bad {what} in a stored row").into())
}

fn status(code: i16) -> Result<Status, sqlx::Error> {
    Status::from_code(code.into()).ok_or_else(|| decode_err("status"))
}

fn time(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_datetime(&t)
}

fn raw(s: String) -> Result<Box<RawValue>, sqlx::Error> {
    RawValue::from_string(s).map_err(|_| decode_err("json"))
}

fn progress(current: Option<i64>, total: Option<i64>) -> Option<Progress> {
    current.map(|c| Progress {
        current: c as u64,
        total: total.map(|t| t as u64),
    })
}

/// A job row; its progress as of `now`.
pub(crate) fn job_from_row(r: &PgRow, now: Timestamp) -> Result<StoredJob, sqlx::Error> {
    let opt_time = |i: usize| -> Result<Option<Timestamp>, sqlx::Error> {
        Ok(r.try_get::<Option<DateTime<Utc>>, _>(i)?.map(time))
    };
    let rate = Rate {
        samples: r.try_get(20)?,
        weight: r.try_get(21)?,
        since: opt_time(22)?,
        last: opt_time(23)?,
    };
    Ok(StoredJob::loaded(
        Job {
            id: JobId::from_uuid(r.try_get(0)?),
            correlation_id: r.try_get(1)?,
            job_type: r.try_get(2)?,
            namespace: r.try_get(3)?,
            status: status(r.try_get(4)?)?,
            auto_complete: r.try_get(6)?,
            start_time: time(r.try_get(7)?),
            end_time: opt_time(8)?,
            tasks: Counters {
                total: r.try_get(9)?,
                pending: r.try_get(10)?,
                in_progress: r.try_get(11)?,
                failed: r.try_get(12)?,
                completed: r.try_get(13)?,
                cancelled: r.try_get(14)?,
            },
            meta: raw(r.try_get(15)?)?,
            timeout_seconds: r.try_get(19)?,
            created_at: time(r.try_get(16)?),
            updated_at: time(r.try_get(17)?),
            progress: Default::default(),
        },
        r.try_get(5)?,
        r.try_get(18)?,
        rate,
        now,
    ))
}

pub(crate) fn task_from_row(r: &PgRow) -> Result<Task, sqlx::Error> {
    Ok(Task {
        id: TaskId::from_uuid(r.try_get(0)?),
        job_id: JobId::from_uuid(r.try_get(1)?),
        task_type: r.try_get(2)?,
        namespace: r.try_get(3)?,
        status: status(r.try_get(4)?)?,
        attempt: r.try_get(5)?,
        start_time: time(r.try_get(6)?),
        end_time: r.try_get::<Option<DateTime<Utc>>, _>(7)?.map(time),
        progress: progress(r.try_get(8)?, r.try_get(9)?),
        error: r.try_get(10)?,
        meta: raw(r.try_get(11)?)?,
        timeout_seconds: r.try_get(12)?,
        created_at: time(r.try_get(13)?),
        updated_at: time(r.try_get(14)?),
    })
}

pub(crate) fn event_from_row(r: &PgRow) -> Result<HistoryEvent, sqlx::Error> {
    let kind: String = r.try_get(3)?;
    let opt_status = |i: usize| -> Result<Option<Status>, sqlx::Error> {
        r.try_get::<Option<i16>, _>(i)?.map(status).transpose()
    };
    Ok(HistoryEvent {
        seq: r.try_get(0)?,
        job_id: JobId::from_uuid(r.try_get(1)?),
        task_id: r
            .try_get::<Option<uuid::Uuid>, _>(2)?
            .map(TaskId::from_uuid),
        kind: EventKind::parse(&kind).ok_or_else(|| decode_err("event kind"))?,
        time: time(r.try_get(4)?),
        from: opt_status(5)?,
        to: opt_status(6)?,
        reason: r.try_get(7)?,
        message: r.try_get(8)?,
        data: r.try_get::<Option<String>, _>(9)?.map(raw).transpose()?,
        progress: progress(r.try_get(10)?, r.try_get(11)?),
        job_seq: r.try_get(12)?,
    })
}

/// Loads a job, its progress as of `now`; `lock` takes its row lock for the rest of the
/// transaction.
pub(crate) async fn job(
    c: &mut PgConnection,
    id: JobId,
    lock: bool,
    now: Timestamp,
) -> Result<Option<StoredJob>, sqlx::Error> {
    let sql = if lock {
        format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE")
    } else {
        format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1")
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.as_uuid())
        .fetch_optional(c)
        .await?
        .map(|r| job_from_row(&r, now))
        .transpose()
}

/// Loads and locks several jobs in one statement, in id order (the order every writer
/// takes job locks in, so two batches never wait on each other in a cycle).
pub(crate) async fn jobs_locked(
    c: &mut PgConnection,
    ids: &[uuid::Uuid],
    now: Timestamp,
) -> Result<Vec<StoredJob>, sqlx::Error> {
    // One row: the plain statement, planned once (see postgres::SCALAR_ROWS).
    if let [id] = ids {
        return Ok(job(c, JobId::from_uuid(*id), true, now)
            .await?
            .into_iter()
            .collect());
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE"
    )))
    .bind(ids)
    .fetch_all(c)
    .await?
    .iter()
    .map(|r| job_from_row(r, now))
    .collect()
}

/// Loads several tasks in one statement.
pub(crate) async fn tasks(
    c: &mut PgConnection,
    ids: &[uuid::Uuid],
) -> Result<Vec<Task>, sqlx::Error> {
    if let [id] = ids {
        return Ok(task(c, TaskId::from_uuid(*id)).await?.into_iter().collect());
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = ANY($1)"
    )))
    .bind(ids)
    .fetch_all(c)
    .await?
    .iter()
    .map(task_from_row)
    .collect()
}

pub(crate) async fn task(c: &mut PgConnection, id: TaskId) -> Result<Option<Task>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"
    )))
    .bind(id.as_uuid())
    .fetch_optional(c)
    .await?
    .map(|r| task_from_row(&r))
    .transpose()
}

/// A job's pending and in-progress tasks, with their statuses.
pub(crate) async fn open_tasks(
    c: &mut PgConnection,
    job: JobId,
) -> Result<Vec<(TaskId, Status)>, sqlx::Error> {
    let rows: Vec<(uuid::Uuid, i16)> =
        sqlx::query_as("SELECT id, status FROM tasks WHERE job_id = $1 AND status IN ($2, $3)")
            .bind(job.as_uuid())
            .bind(Status::Pending.code())
            .bind(Status::InProgress.code())
            .fetch_all(c)
            .await?;
    rows.into_iter()
        .map(|(id, s)| Ok((TaskId::from_uuid(id), status(s)?)))
        .collect()
}
