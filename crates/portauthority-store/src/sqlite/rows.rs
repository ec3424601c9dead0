//! Rows: mapping between SQLite rows and domain types, and the reads by key (a job, a task,
//! an event, the feed). Lists and history pages are in `lists.rs`.

use super::internal;
use crate::StoreError;
use portauthority_core::api::{EventKind, HistoryEvent, Job, Progress, Task};
use portauthority_core::{Counters, JobId, JobState, Rate, Status, TaskId, Timestamp, machine};
use rusqlite::{Connection, OptionalExtension, Row};
use serde_json::value::RawValue;

pub(crate) const JOB_COLUMNS: &str = "id, correlation_id, type, namespace, status, status_explicit, \
    auto_complete, start_time, end_time, tasks_total, tasks_pending, tasks_in_progress, \
    tasks_failed, tasks_completed, tasks_cancelled, meta, created_at, updated_at, last_seq, \
    timeout_seconds, rate_samples, rate_weight, rate_since, rate_last";

pub(crate) const TASK_COLUMNS: &str = "id, job_id, type, namespace, status, attempt, start_time, \
    end_time, progress_current, progress_total, error, meta, timeout_seconds, created_at, updated_at";

pub(crate) const HISTORY_COLUMNS: &str = "seq, job_id, task_id, kind, time, from_status, to_status, \
    reason, message, data, progress_current, progress_total, job_seq";

use portauthority_core::plan::{JobHead, StoredJob};

fn bad_row(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.to_owned(), rusqlite::types::Type::Null)
}

fn uuid_col(row: &Row<'_>, i: usize) -> rusqlite::Result<uuid::Uuid> {
    let bytes: [u8; 16] = row.get(i)?;
    Ok(uuid::Uuid::from_bytes(bytes))
}

fn status_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Status> {
    Status::from_code(row.get(i)?).ok_or_else(|| bad_row("status"))
}

fn opt_status_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Status>> {
    match row.get::<_, Option<i64>>(i)? {
        Some(c) => Status::from_code(c)
            .map(Some)
            .ok_or_else(|| bad_row("status")),
        None => Ok(None),
    }
}

fn time_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Timestamp> {
    Ok(Timestamp::from_millis(row.get(i)?))
}

fn opt_time_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Timestamp>> {
    Ok(row.get::<_, Option<i64>>(i)?.map(Timestamp::from_millis))
}

fn raw_json(s: String) -> rusqlite::Result<Box<RawValue>> {
    RawValue::from_string(s).map_err(|_| bad_row("json"))
}

fn progress_cols(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Progress>> {
    let current: Option<i64> = row.get(i)?;
    let total: Option<i64> = row.get(i + 1)?;
    Ok(current.map(|c| Progress {
        current: c as u64,
        total: total.map(|t| t as u64),
    }))
}

/// The rate columns, from `i` on (samples, weight, since, last).
fn rate_cols(row: &Row<'_>, i: usize) -> rusqlite::Result<Rate> {
    Ok(Rate {
        samples: row.get(i)?,
        weight: row.get(i + 1)?,
        since: opt_time_col(row, i + 2)?,
        last: opt_time_col(row, i + 3)?,
    })
}

/// A job row; its progress as of `now`.
pub(crate) fn job_from_row(row: &Row<'_>, now: Timestamp) -> rusqlite::Result<StoredJob> {
    Ok(StoredJob::loaded(
        Job {
            id: JobId::from_uuid(uuid_col(row, 0)?),
            correlation_id: row.get(1)?,
            job_type: row.get(2)?,
            namespace: row.get(3)?,
            status: status_col(row, 4)?,
            auto_complete: row.get(6)?,
            start_time: time_col(row, 7)?,
            end_time: opt_time_col(row, 8)?,
            tasks: Counters {
                total: row.get(9)?,
                pending: row.get(10)?,
                in_progress: row.get(11)?,
                failed: row.get(12)?,
                completed: row.get(13)?,
                cancelled: row.get(14)?,
            },
            meta: raw_json(row.get(15)?)?,
            timeout_seconds: row.get(19)?,
            created_at: time_col(row, 16)?,
            updated_at: time_col(row, 17)?,
            progress: Default::default(),
        },
        row.get(5)?,
        row.get(18)?,
        rate_cols(row, 20)?,
        now,
    ))
}

pub(crate) fn task_from_row(row: &Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        id: TaskId::from_uuid(uuid_col(row, 0)?),
        job_id: JobId::from_uuid(uuid_col(row, 1)?),
        task_type: row.get(2)?,
        namespace: row.get(3)?,
        status: status_col(row, 4)?,
        attempt: row.get(5)?,
        start_time: time_col(row, 6)?,
        end_time: opt_time_col(row, 7)?,
        progress: progress_cols(row, 8)?,
        error: row.get(10)?,
        meta: raw_json(row.get(11)?)?,
        timeout_seconds: row.get(12)?,
        created_at: time_col(row, 13)?,
        updated_at: time_col(row, 14)?,
    })
}

pub(crate) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<HistoryEvent> {
    let task_id: Option<[u8; 16]> = row.get(2)?;
    let kind: String = row.get(3)?;
    Ok(HistoryEvent {
        seq: row.get(0)?,
        job_id: JobId::from_uuid(uuid_col(row, 1)?),
        task_id: task_id.map(|b| TaskId::from_uuid(uuid::Uuid::from_bytes(b))),
        kind: EventKind::parse(&kind).ok_or_else(|| bad_row("kind"))?,
        time: time_col(row, 4)?,
        from: opt_status_col(row, 5)?,
        to: opt_status_col(row, 6)?,
        reason: row.get(7)?,
        message: row.get(8)?,
        data: row.get::<_, Option<String>>(9)?.map(raw_json).transpose()?,
        progress: progress_cols(row, 10)?,
        job_seq: row.get(12)?,
    })
}

pub(crate) fn job(
    c: &Connection,
    id: JobId,
    now: Timestamp,
) -> Result<Option<StoredJob>, StoreError> {
    c.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))
        .map_err(internal)?
        .query_row([id.as_bytes()], |r| job_from_row(r, now))
        .optional()
        .map_err(internal)
}

/// Only what the rules need of a job: cheaper than the whole row on the hot path.
pub(crate) fn job_head(c: &Connection, id: JobId) -> Result<Option<JobHead>, StoreError> {
    c.prepare_cached(
        "SELECT status, status_explicit, auto_complete, end_time, tasks_total, tasks_pending, \
         tasks_in_progress, tasks_failed, tasks_completed, tasks_cancelled, last_seq, \
         start_time, timeout_seconds, rate_samples, rate_weight, rate_since, rate_last, \
         namespace FROM jobs WHERE id = ?1",
    )
    .map_err(internal)?
    .query_row([id.as_bytes()], |r| {
        let state = JobState {
            status: status_col(r, 0)?,
            explicit: r.get(1)?,
            auto_complete: r.get(2)?,
            end_time: opt_time_col(r, 3)?,
            counters: Counters {
                total: r.get(4)?,
                pending: r.get(5)?,
                in_progress: r.get(6)?,
                failed: r.get(7)?,
                completed: r.get(8)?,
                cancelled: r.get(9)?,
            },
        };
        Ok(JobHead {
            namespace: r.get(17)?,
            state,
            last_seq: r.get(10)?,
            times_out_at: machine::times_out_at(time_col(r, 11)?, r.get(12)?),
            rate: rate_cols(r, 13)?,
        })
    })
    .optional()
    .map_err(internal)
}

pub(crate) fn task(c: &Connection, id: TaskId) -> Result<Option<Task>, StoreError> {
    c.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))
        .map_err(internal)?
        .query_row([id.as_bytes()], task_from_row)
        .optional()
        .map_err(internal)
}

pub(crate) fn event(c: &Connection, seq: i64) -> Result<HistoryEvent, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {HISTORY_COLUMNS} FROM history WHERE seq = ?1"
    ))
    .map_err(internal)?
    .query_row([seq], event_from_row)
    .map_err(internal)
}

/// A job's pending and in-progress tasks, with their statuses.
pub(crate) fn open_tasks(c: &Connection, job: JobId) -> Result<Vec<(TaskId, Status)>, StoreError> {
    c.prepare_cached("SELECT id, status FROM tasks WHERE job_id = ?1 AND status IN (?2, ?3)")
        .map_err(internal)?
        .query_map(
            rusqlite::params![
                job.as_bytes(),
                Status::Pending.code(),
                Status::InProgress.code()
            ],
            |r| Ok((TaskId::from_uuid(uuid_col(r, 0)?), status_col(r, 1)?)),
        )
        .map_err(internal)?
        .collect::<rusqlite::Result<_>>()
        .map_err(internal)
}

/// The change feed: history in `seq` order, which the one writer makes commit order.
pub(crate) fn feed(
    c: &Connection,
    after: crate::Position,
    limit: u32,
) -> Result<Vec<crate::FeedEvent>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {HISTORY_COLUMNS} FROM history WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))
    .map_err(internal)?
    .query_map(rusqlite::params![after.seq, limit], event_from_row)
    .map_err(internal)?
    .map(|e| {
        e.map(|event| crate::FeedEvent {
            position: crate::Position {
                horizon: 0,
                seq: event.seq,
            },
            event,
        })
    })
    .collect::<rusqlite::Result<_>>()
    .map_err(internal)
}

/// The one writer commits in `seq` order: the largest committed `seq` is the end.
pub(crate) fn feed_head(c: &Connection) -> Result<crate::Position, StoreError> {
    c.query_row("SELECT coalesce(max(seq), 0) FROM history", [], |r| {
        r.get(0)
    })
    .map(|seq| crate::Position { horizon: 0, seq })
    .map_err(internal)
}

pub(crate) fn outbox_backlog(c: &Connection) -> Result<u64, StoreError> {
    c.query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(internal)
}

/// The counts and the outbox of `Store::stats` (the writer's queue is the caller's).
pub(crate) fn stats(c: &Connection) -> Result<crate::Stats, StoreError> {
    let by_status = |sql: &str| -> Result<portauthority_core::Counters, StoreError> {
        let mut stmt = c.prepare_cached(sql).map_err(internal)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .map_err(internal)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(internal)?;
        Ok(crate::stats::counters(rows))
    };
    let jobs = by_status("SELECT status, SUM(n) FROM job_counts GROUP BY status")?;
    let tasks = by_status("SELECT status, n FROM task_counts")?;
    let oldest: Option<i64> = c
        .prepare_cached(
            "SELECT h.time FROM outbox o JOIN history h ON h.seq = o.seq ORDER BY o.seq LIMIT 1",
        )
        .map_err(internal)?
        .query_row([], |r| r.get(0))
        .optional()
        .map_err(internal)?;
    Ok(crate::Stats {
        jobs,
        tasks,
        outbox_pending: outbox_backlog(c)?,
        outbox_oldest: oldest.map(Timestamp::from_millis),
        pool: None,
        writer_queue: None,
    })
}
