//! The write operations, each inside `PgStore::tx`: lock and load the rows a command names,
//! ask its planner (`portauthority_core::plan`) what to write, execute the plan. Nothing
//! here decides what a command does.
//!
//! Every write of a job's history first locks its job row (`SELECT ... FOR UPDATE`; a new
//! job: the INSERT that creates it), so the counters, the derived status, the task change
//! and the per-job sequence move together, and so that the transaction has its id before
//! its first history row is stamped (see migrations/postgres/0003_change_feed.sql). All
//! writers lock jobs before tasks, and batches lock jobs in id order, so transactions do not
//! deadlock.

use super::rows;
use super::{TxError, TxResult};
use crate::once::{self, Answer, Once, Ran};
use crate::{Created, NewNote, StoreError, TaskUpdate};
use portauthority_core::api::{HistoryEvent, Job, NewJob, Task};
use portauthority_core::plan::{self, JobHead, JobWrite, NewEvent, Plan, StoredJob};
use portauthority_core::{
    AddTasks, Command, Counters, JobId, Scope, SetJobStatus, Status, TaskId, Timestamp,
};
use sqlx::PgConnection;
use std::collections::HashMap;

fn ts(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    t.to_datetime()
}

/// The tasks stored under `ids`, in one statement.
async fn stored_tasks(
    c: &mut PgConnection,
    ids: impl Iterator<Item = TaskId>,
) -> TxResult<HashMap<TaskId, Task>> {
    let ids: Vec<uuid::Uuid> = ids.map(|id| *id.as_uuid()).collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(rows::tasks(c, &ids)
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect())
}

async fn lock_job(c: &mut PgConnection, id: JobId, now: Timestamp) -> TxResult<Option<StoredJob>> {
    Ok(rows::job(c, id, true, now).await?)
}

pub(crate) async fn create_job(
    c: &mut PgConnection,
    scope: &Scope,
    new: NewJob,
    now: Timestamp,
) -> TxResult<Created<Job>> {
    let existing = rows::job(c, new.id, false, now).await?;
    let stored = stored_tasks(c, new.tasks.iter().map(|t| t.id)).await?;
    // A concurrent create of the same job committed between the two reads: its tasks are
    // visible, the job was not yet. Reading again sees both.
    if existing.is_none() && stored.values().any(|t| t.job_id == new.id) {
        return Err(TxError::Race("a concurrent create of the same job"));
    }
    let (plan, created) = plan::create_job(scope, new, existing, &stored, now)?;
    execute(c, &plan).await?;
    Ok(created)
}

pub(crate) async fn add_tasks(
    c: &mut PgConnection,
    scope: &Scope,
    cmd: AddTasks,
    now: Timestamp,
) -> TxResult<Vec<Task>> {
    let job = lock_job(c, cmd.job_id, now).await?.map(|j| j.head());
    let stored = stored_tasks(c, cmd.tasks.iter().map(|t| t.id)).await?;
    let (plan, tasks) = plan::add_tasks(scope, cmd, job, &stored, now)?;
    execute(c, &plan).await?;
    Ok(tasks)
}

pub(crate) async fn set_job_status(
    c: &mut PgConnection,
    scope: &Scope,
    cmd: SetJobStatus,
    now: Timestamp,
) -> TxResult<Job> {
    let job = lock_job(c, cmd.job_id, now).await?;
    let open = match &job {
        Some(j) if plan::set_job_status_cancels(&j.head().state, cmd.to) => {
            rows::open_tasks(c, cmd.job_id).await?
        }
        _ => Vec::new(),
    };
    let (plan, job) = plan::set_job_status(scope, cmd, job, &open, now)?;
    execute(c, &plan).await?;
    Ok(job)
}

/// Applies a batch of task updates with the same few statements whatever its size: lock
/// the jobs and read the tasks (one statement each), plan, then write the changed tasks,
/// the changed jobs and the history events with their outbox rows (one statement each, over
/// arrays). A database error fails the whole transaction, which `PgStore::tx` retries.
pub(crate) async fn update_tasks(
    c: &mut PgConnection,
    scope: &Scope,
    updates: &[TaskUpdate],
    now: Timestamp,
) -> TxResult<Vec<Result<Task, StoreError>>> {
    let mut job_ids: Vec<uuid::Uuid> = updates.iter().map(|u| *u.job_id.as_uuid()).collect();
    job_ids.sort_unstable();
    job_ids.dedup();
    let jobs: HashMap<JobId, JobHead> = rows::jobs_locked(c, &job_ids, now)
        .await?
        .into_iter()
        .map(|r| (r.job.id, r.head()))
        .collect();
    let tasks = stored_tasks(c, updates.iter().map(|u| u.task_id)).await?;
    let (plan, results) = plan::update_tasks(scope, updates, &jobs, tasks, now);
    execute(c, &plan).await?;
    Ok(results
        .into_iter()
        .map(|r| r.map_err(StoreError::from))
        .collect())
}

pub(crate) async fn add_note(
    c: &mut PgConnection,
    scope: &Scope,
    note: NewNote,
    now: Timestamp,
) -> TxResult<HistoryEvent> {
    let job = lock_job(c, note.job_id, now).await?.map(|j| j.head());
    let task = match note.task_id {
        Some(id) => rows::task(c, id).await?,
        None => None,
    };
    let plan = plan::add_note(scope, note, job, task.as_ref(), now)?;
    let seqs = execute(c, &plan).await?;
    let (Some(event), Some(seq)) = (plan.events.into_iter().next(), seqs.first()) else {
        return Err(StoreError::Internal("a note wrote no event".into()).into());
    };
    Ok(event.into_history(*seq, now)?)
}

/// Runs any command; what [`run_once`] records.
pub(crate) async fn apply(
    c: &mut PgConnection,
    scope: &Scope,
    cmd: Command,
    now: Timestamp,
) -> TxResult<Answer> {
    Ok(match cmd {
        Command::CreateJob(new) => create_job(c, scope, new, now).await?.into(),
        Command::SetJobStatus(cmd) => Answer::Job {
            job: set_job_status(c, scope, cmd, now).await?,
            created: false,
        },
        Command::AddTasks(cmd) => Answer::Tasks(add_tasks(c, scope, cmd, now).await?),
        Command::UpdateTasks(updates) => {
            once::updates_answer(update_tasks(c, scope, &updates, now).await?)
        }
        Command::AddNote(note) => Answer::Note(add_note(c, scope, note, now).await?),
    })
}

/// Runs `cmd` unless `once.key` is recorded. The key is inserted first: a concurrent
/// transaction with the same key waits on it, and finds it once this one commits (or
/// takes it, if this one rolls back).
pub(crate) async fn run_once(
    c: &mut PgConnection,
    scope: &Scope,
    once: &Once,
    cmd: Command,
    now: Timestamp,
) -> TxResult<Ran> {
    let inserted = sqlx::query(
        "INSERT INTO once (key, fingerprint, job_id, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(&once.key)
    .bind(&once.fingerprint)
    .bind(cmd.job_id().map(|j| *j.as_uuid()))
    .bind(ts(now))
    .execute(&mut *c)
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        let (fingerprint, answer): (String, Option<String>) =
            sqlx::query_as("SELECT fingerprint, answer FROM once WHERE key = $1")
                .bind(&once.key)
                .fetch_one(&mut *c)
                .await?;
        return Ok(once::replay(once, &fingerprint, answer.as_deref())?);
    }
    let answer = apply(c, scope, cmd, now).await?;
    if let Some(recorded) = once::recorded(once, &answer)? {
        sqlx::query("UPDATE once SET answer = $2 WHERE key = $1")
            .bind(&once.key)
            .bind(recorded)
            .execute(&mut *c)
            .await?;
    }
    Ok(Ran::Applied(answer))
}

/// [`run_once`] for each command under its own savepoint, in order, in the caller's one
/// transaction; see `Store::run_once_batch`. A database error fails the whole transaction
/// (which `PgStore::tx` retries): nothing of it was committed.
pub(crate) async fn run_once_batch(
    c: &mut PgConnection,
    scope: &Scope,
    commands: &[(Once, Command)],
    now: Timestamp,
) -> TxResult<Vec<Result<Ran, StoreError>>> {
    let mut out = Vec::with_capacity(commands.len());
    let mut failed = false;
    for (once, cmd) in commands {
        if failed {
            out.push(Err(once::not_run()));
            continue;
        }
        sqlx::query("SAVEPOINT command").execute(&mut *c).await?;
        match run_once(c, scope, once, cmd.clone(), now).await {
            Ok(ran) => out.push(Ok(ran)),
            Err(TxError::Store(e)) => {
                sqlx::query("ROLLBACK TO SAVEPOINT command")
                    .execute(&mut *c)
                    .await?;
                let ran = Err(e);
                failed = once::ends_batch(&ran);
                out.push(ran);
            }
            Err(other) => return Err(other),
        }
        sqlx::query("RELEASE SAVEPOINT command")
            .execute(&mut *c)
            .await?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Executing a plan

/// Writes a plan; returns the `seq` of each of its events, in order.
async fn execute(c: &mut PgConnection, plan: &Plan) -> TxResult<Vec<i64>> {
    let now = plan.now;
    if let Some(new) = &plan.new_job {
        insert_job(c, new, now).await?;
    }
    insert_tasks(c, &plan.new_tasks).await?;
    write_tasks(c, &plan.tasks, now).await?;
    cancel_tasks(c, &plan.cancel, now).await?;
    write_jobs(c, &plan.jobs, now).await?;
    count_tasks(c, &plan.task_count_change()).await?;
    // The history rows come last, in a statement of their own: by then this transaction
    // holds its jobs' locks and has its id, which their horizon stamp relies on.
    insert_events(c, &plan.events, now).await
}

/// Appends a plan's change of the tasks by status to `task_count_deltas`
/// (migrations/postgres/0011_task_counts.sql): one scalar statement (its plan is cached),
/// a row per status that moves, none at all when nothing moves (a heartbeat, a note).
pub(crate) async fn count_tasks(
    c: &mut PgConnection,
    change: &Counters,
) -> Result<(), sqlx::Error> {
    if change.is_zero() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO task_count_deltas (status, n)
         SELECT s, n FROM (VALUES (0::int2, $1::int8), (1::int2, $2::int8), (2::int2, $3::int8),
                                  (3::int2, $4::int8), (4::int2, $5::int8)) AS v(s, n)
         WHERE n <> 0",
    )
    .bind(change.pending)
    .bind(change.in_progress)
    .bind(change.completed)
    .bind(change.failed)
    .bind(change.cancelled)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// One statement writes the job, its meta index rows (as SQLite's writer does) and the
/// deltas of the stored counts (migrations/postgres/0002_list_performance.sql).
async fn insert_job(c: &mut PgConnection, new: &plan::JobInsert, now: Timestamp) -> TxResult<()> {
    let j = &new.job;
    let (keys, values): (Vec<&str>, Vec<String>) = new.meta.index_entries().unzip();
    sqlx::query(
        "WITH j AS (
             INSERT INTO jobs (id, correlation_id, type, namespace, status, status_explicit,
                               auto_complete, start_time, tasks_total, tasks_pending, meta,
                               created_at, updated_at, last_seq, timeout_seconds, deadline)
             VALUES ($1, $2, $3, $4, $5, false, $6, $7, $8, $9, $10::json, $11, $11, $14, $15,
                     $16)
             RETURNING id, namespace, type, status, start_time
         ), m AS (
             INSERT INTO job_meta (key, value, start_time, job_id)
             SELECT u.key, u.value, j.start_time, j.id
             FROM j, unnest($12::text[], $13::text[]) AS u(key, value)
         ), mc AS (
             INSERT INTO job_meta_count_deltas (key, value, n)
             SELECT u.key, u.value, 1 FROM j, unnest($12::text[], $13::text[]) AS u(key, value)
         )
         INSERT INTO job_count_deltas (namespace, type, status, n)
         SELECT namespace, type, status, 1 FROM j",
    )
    .bind(j.id.as_uuid())
    .bind(j.correlation_id.as_deref())
    .bind(&j.job_type)
    .bind(&j.namespace)
    .bind(j.status.code())
    .bind(j.auto_complete)
    .bind(ts(j.start_time))
    .bind(j.tasks.total)
    .bind(j.tasks.pending)
    .bind(new.meta.as_json())
    .bind(ts(now))
    .bind(&keys)
    .bind(&values)
    .bind(new.last_seq)
    .bind(j.timeout_seconds)
    .bind(plan::job_deadline(j).map(ts))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Up to this many rows are written with one plain statement each; more with one statement
/// over arrays. PostgreSQL plans a statement over arrays anew at every run (its custom plan
/// stays cheaper than the generic one), about half a millisecond each: for the one or two
/// rows of a single update that costs more than the round trips it saves.
const SCALAR_ROWS: usize = 3;

async fn insert_tasks(c: &mut PgConnection, tasks: &[Task]) -> TxResult<()> {
    if tasks.len() <= SCALAR_ROWS {
        for t in tasks {
            sqlx::query(
                "INSERT INTO tasks (id, job_id, type, namespace, status, attempt, start_time, meta,
                                    timeout_seconds, heartbeat_at, created_at, updated_at,
                                    deadline)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8::json, $9, $10, $10, $10, $11)",
            )
            .bind(t.id.as_uuid())
            .bind(t.job_id.as_uuid())
            .bind(&t.task_type)
            .bind(&t.namespace)
            .bind(t.status.code())
            .bind(t.attempt)
            .bind(ts(t.start_time))
            .bind(t.meta.get())
            .bind(t.timeout_seconds)
            .bind(ts(t.created_at))
            .bind(plan::task_deadline(t).map(ts))
            .execute(&mut *c)
            .await?;
        }
        return Ok(());
    }
    let (mut id, mut job_id, mut kind, mut ns) = (vec![], vec![], vec![], vec![]);
    let (mut start, mut meta, mut timeout, mut created) = (vec![], vec![], vec![], vec![]);
    let mut deadline = Vec::with_capacity(tasks.len());
    for t in tasks {
        id.push(*t.id.as_uuid());
        job_id.push(*t.job_id.as_uuid());
        kind.push(t.task_type.as_str());
        ns.push(t.namespace.as_str());
        start.push(ts(t.start_time));
        meta.push(t.meta.get());
        timeout.push(t.timeout_seconds);
        created.push(ts(t.created_at));
        deadline.push(plan::task_deadline(t).map(ts));
    }
    sqlx::query(
        "INSERT INTO tasks (id, job_id, type, namespace, status, attempt, start_time, meta,
                            timeout_seconds, heartbeat_at, created_at, updated_at, deadline)
         SELECT id, job_id, type, namespace, $9, 1, start_time, meta::json, timeout_seconds,
                created_at, created_at, created_at, deadline
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[],
                     $6::text[], $7::int8[], $8::timestamptz[], $10::timestamptz[])
             WITH ORDINALITY AS v(id, job_id, type, namespace, start_time, meta, timeout_seconds,
                                  created_at, deadline, n)
         ORDER BY n",
    )
    .bind(id)
    .bind(job_id)
    .bind(kind)
    .bind(ns)
    .bind(start)
    .bind(meta)
    .bind(timeout)
    .bind(created)
    .bind(Status::Pending.code())
    .bind(deadline)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Writes tasks' changed state.
async fn write_tasks(
    c: &mut PgConnection,
    writes: &[plan::TaskWrite],
    now: Timestamp,
) -> TxResult<()> {
    if writes.len() <= SCALAR_ROWS {
        for w in writes {
            let t = &w.task;
            sqlx::query(
                "UPDATE tasks SET status = $2, attempt = $3, end_time = $4, progress_current = $5,
                 progress_total = $6, error = $7, heartbeat_at = $8, updated_at = $8,
                 deadline = $9 WHERE id = $1",
            )
            .bind(t.id.as_uuid())
            .bind(t.status.code())
            .bind(t.attempt)
            .bind(t.end_time.map(ts))
            .bind(t.progress.map(|p| p.current as i64))
            .bind(t.progress.and_then(|p| p.total).map(|t| t as i64))
            .bind(t.error.as_deref())
            .bind(ts(now))
            .bind(plan::task_deadline(t).map(ts))
            .execute(&mut *c)
            .await?;
        }
        return Ok(());
    }
    let (mut id, mut status, mut attempt, mut end_time) = (vec![], vec![], vec![], vec![]);
    let (mut current, mut total, mut error, mut deadline) = (vec![], vec![], vec![], vec![]);
    for w in writes {
        let t = &w.task;
        id.push(*t.id.as_uuid());
        status.push(t.status.code());
        attempt.push(t.attempt);
        end_time.push(t.end_time.map(ts));
        current.push(t.progress.map(|p| p.current as i64));
        total.push(t.progress.and_then(|p| p.total).map(|t| t as i64));
        error.push(t.error.clone());
        deadline.push(plan::task_deadline(t).map(ts));
    }
    sqlx::query(
        "UPDATE tasks t SET status = v.status, attempt = v.attempt, end_time = v.end_time,
             progress_current = v.progress_current, progress_total = v.progress_total,
             error = v.error, heartbeat_at = $8, updated_at = $8, deadline = v.deadline
         FROM unnest($1::uuid[], $2::int2[], $3::int8[], $4::timestamptz[], $5::int8[],
                     $6::int8[], $7::text[], $9::timestamptz[])
             AS v(id, status, attempt, end_time, progress_current, progress_total, error,
                  deadline)
         WHERE t.id = v.id",
    )
    .bind(id)
    .bind(status)
    .bind(attempt)
    .bind(end_time)
    .bind(current)
    .bind(total)
    .bind(error)
    .bind(ts(now))
    .bind(deadline)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// A cancelled task is terminal: it has no deadline any more.
async fn cancel_tasks(c: &mut PgConnection, ids: &[TaskId], now: Timestamp) -> TxResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
    sqlx::query(
        "UPDATE tasks SET status = $2, end_time = $3, updated_at = $3, deadline = NULL
         WHERE id = ANY($1)",
    )
    .bind(ids)
    .bind(Status::Cancelled.code())
    .bind(ts(now))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Writes jobs' changed heads. A job whose state is unchanged (a heartbeat, a note) gets
/// its new sequence only: no indexed column changes, so PostgreSQL can update it in place
/// (HOT), and its `updated_at` stays.
async fn write_jobs(c: &mut PgConnection, writes: &[JobWrite], now: Timestamp) -> TxResult<()> {
    if writes.len() <= SCALAR_ROWS {
        for w in writes {
            if !w.state_changed() {
                sqlx::query("UPDATE jobs SET last_seq = $2 WHERE id = $1")
                    .bind(w.id.as_uuid())
                    .bind(w.after.last_seq)
                    .execute(&mut *c)
                    .await?;
                continue;
            }
            let s = &w.after.state;
            sqlx::query(
                "UPDATE jobs SET status = $2, status_explicit = $3, end_time = $4, tasks_total = $5,
                 tasks_pending = $6, tasks_in_progress = $7, tasks_failed = $8, tasks_completed = $9,
                 tasks_cancelled = $10, updated_at = $11, last_seq = $12, deadline = $13,
                 rate_samples = $14, rate_weight = $15, rate_since = $16, rate_last = $17
                 WHERE id = $1",
            )
            .bind(w.id.as_uuid())
            .bind(s.status.code())
            .bind(s.explicit)
            .bind(s.end_time.map(ts))
            .bind(s.counters.total)
            .bind(s.counters.pending)
            .bind(s.counters.in_progress)
            .bind(s.counters.failed)
            .bind(s.counters.completed)
            .bind(s.counters.cancelled)
            .bind(ts(now))
            .bind(w.after.last_seq)
            .bind(w.after.deadline().map(ts))
            .bind(w.after.rate.samples)
            .bind(w.after.rate.weight)
            .bind(w.after.rate.since.map(ts))
            .bind(w.after.rate.last.map(ts))
            .execute(&mut *c)
            .await?;
        }
        return Ok(());
    }
    let (mut id, mut status, mut explicit, mut end_time) = (vec![], vec![], vec![], vec![]);
    let (mut touch, mut last_seq, mut deadline) = (vec![], vec![], vec![]);
    let (mut samples, mut weight, mut since, mut last) = (vec![], vec![], vec![], vec![]);
    let mut counts: [Vec<i64>; 6] = Default::default();
    for w in writes {
        let s = &w.after.state;
        id.push(*w.id.as_uuid());
        status.push(s.status.code());
        explicit.push(s.explicit);
        end_time.push(s.end_time.map(ts));
        touch.push(w.state_changed());
        last_seq.push(w.after.last_seq);
        deadline.push(w.after.deadline().map(ts));
        let r = &w.after.rate;
        samples.push(r.samples);
        weight.push(r.weight);
        since.push(r.since.map(ts));
        last.push(r.last.map(ts));
        let n = &s.counters;
        let values = [
            n.total,
            n.pending,
            n.in_progress,
            n.failed,
            n.completed,
            n.cancelled,
        ];
        for (col, v) in counts.iter_mut().zip(values) {
            col.push(v);
        }
    }
    let [total, pending, in_progress, failed, completed, cancelled] = counts;
    sqlx::query(
        "UPDATE jobs j SET status = v.status, status_explicit = v.explicit,
             end_time = v.end_time, tasks_total = v.total, tasks_pending = v.pending,
             tasks_in_progress = v.in_progress, tasks_failed = v.failed,
             tasks_completed = v.completed, tasks_cancelled = v.cancelled,
             updated_at = CASE WHEN v.touch THEN $11 ELSE j.updated_at END,
             last_seq = v.last_seq, deadline = v.deadline, rate_samples = v.samples,
             rate_weight = v.weight, rate_since = v.since, rate_last = v.last
         FROM unnest($1::uuid[], $2::int2[], $3::bool[], $4::timestamptz[], $5::int8[],
                     $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $12::bool[],
                     $13::int8[], $14::timestamptz[], $15::int8[], $16::float8[],
                     $17::timestamptz[], $18::timestamptz[])
             AS v(id, status, explicit, end_time, total, pending, in_progress, failed,
                  completed, cancelled, touch, last_seq, deadline, samples, weight, since, last)
         WHERE j.id = v.id",
    )
    .bind(id)
    .bind(status)
    .bind(explicit)
    .bind(end_time)
    .bind(total)
    .bind(pending)
    .bind(in_progress)
    .bind(failed)
    .bind(completed)
    .bind(cancelled)
    .bind(ts(now))
    .bind(touch)
    .bind(last_seq)
    .bind(deadline)
    .bind(samples)
    .bind(weight)
    .bind(since)
    .bind(last)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Appends history events in order, with the outbox rows of the published ones; returns
/// their `seq`s in order.
async fn insert_events(
    c: &mut PgConnection,
    events: &[NewEvent],
    now: Timestamp,
) -> TxResult<Vec<i64>> {
    if events.len() <= SCALAR_ROWS {
        let mut seqs = Vec::with_capacity(events.len());
        for e in events {
            seqs.push(append_event(c, e, now).await?);
        }
        return Ok(seqs);
    }
    let mut job_id = Vec::with_capacity(events.len());
    let (mut task_id, mut kind, mut from, mut to) = (vec![], vec![], vec![], vec![]);
    let (mut reason, mut message, mut current, mut total) = (vec![], vec![], vec![], vec![]);
    let (mut data, mut job_seq) = (vec![], vec![]);
    for e in events {
        let d = &e.draft;
        job_id.push(*e.job_id.as_uuid());
        task_id.push(e.task_id.map(|t| *t.as_uuid()));
        kind.push(d.kind.as_str());
        from.push(d.from.map(Status::code));
        to.push(d.to.map(Status::code));
        reason.push(d.reason.as_deref());
        message.push(d.message.as_deref());
        current.push(d.progress.map(|p| p.current as i64));
        total.push(d.progress.and_then(|p| p.total).map(|t| t as i64));
        data.push(e.data.as_deref());
        job_seq.push(e.job_seq);
    }
    let mut seqs: Vec<i64> = sqlx::query_scalar(
        "WITH h AS (
                 INSERT INTO history (job_id, task_id, kind, time, from_status, to_status,
                                      reason, message, progress_current, progress_total, data,
                                      job_seq)
                 SELECT job_id, task_id, kind, $10, from_status, to_status, reason, message,
                        progress_current, progress_total, data::json, job_seq
                 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int2[], $5::int2[],
                             $6::text[], $7::text[], $8::int8[], $9::int8[], $11::text[],
                             $12::int8[])
                     WITH ORDINALITY AS v(job_id, task_id, kind, from_status, to_status,
                                          reason, message, progress_current, progress_total,
                                          data, job_seq, n)
                 ORDER BY n
                 RETURNING seq, job_id, job_seq, kind
             ), o AS (
                 INSERT INTO outbox (seq, job_id, job_seq)
                 SELECT seq, job_id, job_seq FROM h WHERE kind = ANY($13)
             )
             SELECT seq FROM h",
    )
    .bind(job_id)
    .bind(task_id)
    .bind(kind)
    .bind(from)
    .bind(to)
    .bind(reason)
    .bind(message)
    .bind(current)
    .bind(total)
    .bind(ts(now))
    .bind(data)
    .bind(job_seq)
    .bind(published_kinds())
    .fetch_all(&mut *c)
    .await?;
    seqs.sort_unstable();
    Ok(seqs)
}

/// The kinds `plan::published` says go to the outbox, for a statement over arrays.
fn published_kinds() -> Vec<&'static str> {
    use portauthority_core::EventKind::*;
    [Created, TaskAdded, StatusChanged, Heartbeat, Note]
        .into_iter()
        .filter(|k| plan::published(*k))
        .map(|k| k.as_str())
        .collect()
}

/// One event: one round trip writes it and, when it is published, its outbox row.
async fn append_event(c: &mut PgConnection, e: &NewEvent, now: Timestamp) -> TxResult<i64> {
    let d = &e.draft;
    let seq: i64 = sqlx::query_scalar(
        "WITH h AS (
             INSERT INTO history (job_id, task_id, kind, time, from_status, to_status, reason,
                                  message, data, progress_current, progress_total, job_seq)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::json, $10, $11, $12)
             RETURNING seq
         ), o AS (
             INSERT INTO outbox (seq, job_id, job_seq) SELECT seq, $1, $12 FROM h WHERE $13
         )
         SELECT seq FROM h",
    )
    .bind(e.job_id.as_uuid())
    .bind(e.task_id.map(|t| *t.as_uuid()))
    .bind(d.kind.as_str())
    .bind(ts(now))
    .bind(d.from.map(Status::code))
    .bind(d.to.map(Status::code))
    .bind(d.reason.as_deref())
    .bind(d.message.as_deref())
    .bind(e.data.as_deref())
    .bind(d.progress.map(|p| p.current as i64))
    .bind(d.progress.and_then(|p| p.total).map(|t| t as i64))
    .bind(e.job_seq)
    .bind(e.published())
    .fetch_one(&mut *c)
    .await?;
    Ok(seq)
}

impl From<portauthority_core::Refusal> for TxError {
    fn from(r: portauthority_core::Refusal) -> Self {
        TxError::Store(r.into())
    }
}

/// See `Store::delete_expired_jobs`. Each job's tasks, history and meta rows go with it by
/// cascade (and the history's outbox rows with them), and the count triggers append their
/// deltas; its outbox lease has no foreign key and goes here. `SKIP LOCKED`: a job a writer
/// holds (or another process's retention) is left for a later step, so retention never
/// waits on a writer; the row lock re-checks that a job it takes is still expired.
pub(crate) async fn delete_expired_jobs(
    c: &mut PgConnection,
    cutoffs: &[(Status, Timestamp)],
    limit: u32,
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    for (status, cutoff) in cutoffs {
        let rest = i64::from(limit) - deleted as i64;
        if rest <= 0 {
            break;
        }
        deleted += sqlx::query(
            "WITH doomed AS (
                 SELECT id FROM jobs WHERE status = $1 AND end_time < $2
                 ORDER BY end_time LIMIT $3 FOR UPDATE SKIP LOCKED
             ), leases AS (
                 DELETE FROM outbox_leases WHERE job_id IN (SELECT id FROM doomed)
             ), keys AS (
                 DELETE FROM once WHERE job_id IN (SELECT id FROM doomed)
             )
             DELETE FROM jobs WHERE id IN (SELECT id FROM doomed)",
        )
        .bind(status.code())
        .bind(ts(*cutoff))
        .bind(rest)
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    Ok(deleted)
}
