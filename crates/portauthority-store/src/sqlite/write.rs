//! The write operations, each run by the writer inside its own savepoint: load the rows a
//! command names, ask its planner (`portauthority_core::plan`) what to write, execute the
//! plan. Nothing here decides what a command does.

use super::internal;
use super::rows;
use crate::feed::{CLAIM_ROWS_PER_JOB, OutboxItem, claimed_items, jobs_to_claim};
use crate::once::{self, Answer, Once, Ran};
use crate::{Created, NewNote, StoreError, TaskUpdate};
use portauthority_core::api::{HistoryEvent, Job, NewJob, Task};
use portauthority_core::plan::{self, JobHead, JobWrite, NewEvent, Plan, TaskWrite};
use portauthority_core::{
    AddTasks, Command, Counters, JobId, Scope, SetJobStatus, Status, TaskId, Timestamp,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::time::Duration;

/// The tasks stored under `ids`.
fn stored_tasks(
    c: &Connection,
    ids: impl Iterator<Item = TaskId>,
) -> Result<HashMap<TaskId, Task>, StoreError> {
    let mut out = HashMap::new();
    for id in ids {
        if let Some(t) = rows::task(c, id)? {
            out.insert(id, t);
        }
    }
    Ok(out)
}

pub(crate) fn create_job(
    c: &Connection,
    scope: &Scope,
    new: NewJob,
    now: Timestamp,
) -> Result<Created<Job>, StoreError> {
    let existing = rows::job(c, new.id, now)?;
    let stored = stored_tasks(c, new.tasks.iter().map(|t| t.id))?;
    let (plan, created) = plan::create_job(scope, new, existing, &stored, now)?;
    execute(c, &plan)?;
    Ok(created)
}

pub(crate) fn add_tasks(
    c: &Connection,
    scope: &Scope,
    cmd: AddTasks,
    now: Timestamp,
) -> Result<Vec<Task>, StoreError> {
    let job = rows::job_head(c, cmd.job_id)?;
    let stored = stored_tasks(c, cmd.tasks.iter().map(|t| t.id))?;
    let (plan, tasks) = plan::add_tasks(scope, cmd, job, &stored, now)?;
    execute(c, &plan)?;
    Ok(tasks)
}

pub(crate) fn set_job_status(
    c: &Connection,
    scope: &Scope,
    cmd: SetJobStatus,
    now: Timestamp,
) -> Result<Job, StoreError> {
    let job = rows::job(c, cmd.job_id, now)?;
    let open = match &job {
        Some(j) if plan::set_job_status_cancels(&j.head().state, cmd.to) => {
            rows::open_tasks(c, cmd.job_id)?
        }
        _ => Vec::new(),
    };
    let (plan, job) = plan::set_job_status(scope, cmd, job, &open, now)?;
    execute(c, &plan)?;
    Ok(job)
}

/// Applies a batch of task updates: reads the jobs and tasks it names, plans, writes. A
/// refused item writes nothing and gets its own error; a database error fails the whole
/// batch, which the caller's savepoint undoes.
pub(crate) fn update_tasks(
    c: &Connection,
    scope: &Scope,
    updates: Vec<TaskUpdate>,
    now: Timestamp,
) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
    let mut jobs: HashMap<JobId, JobHead> = HashMap::new();
    let mut tasks: HashMap<TaskId, Task> = HashMap::new();
    for u in &updates {
        if !jobs.contains_key(&u.job_id)
            && let Some(head) = rows::job_head(c, u.job_id)?
        {
            jobs.insert(u.job_id, head);
        }
        if !tasks.contains_key(&u.task_id)
            && let Some(task) = rows::task(c, u.task_id)?
        {
            tasks.insert(u.task_id, task);
        }
    }
    let (plan, results) = plan::update_tasks(scope, &updates, &jobs, tasks, now);
    execute(c, &plan)?;
    Ok(results
        .into_iter()
        .map(|r| r.map_err(StoreError::from))
        .collect())
}

pub(crate) fn add_note(
    c: &Connection,
    scope: &Scope,
    note: NewNote,
    now: Timestamp,
) -> Result<HistoryEvent, StoreError> {
    let job = rows::job_head(c, note.job_id)?;
    let task = match note.task_id {
        Some(id) => rows::task(c, id)?,
        None => None,
    };
    let plan = plan::add_note(scope, note, job, task.as_ref(), now)?;
    let seqs = execute(c, &plan)?;
    let (Some(event), Some(seq)) = (plan.events.into_iter().next(), seqs.first()) else {
        return Err(StoreError::Internal("a note wrote no event".into()));
    };
    Ok(event.into_history(*seq, now)?)
}

/// Runs any command; what [`run_once`] records.
pub(crate) fn apply(
    c: &Connection,
    scope: &Scope,
    cmd: Command,
    now: Timestamp,
) -> Result<Answer, StoreError> {
    Ok(match cmd {
        Command::CreateJob(new) => create_job(c, scope, new, now)?.into(),
        Command::SetJobStatus(cmd) => Answer::Job {
            job: set_job_status(c, scope, cmd, now)?,
            created: false,
        },
        Command::AddTasks(cmd) => Answer::Tasks(add_tasks(c, scope, cmd, now)?),
        Command::UpdateTasks(updates) => {
            once::updates_answer(update_tasks(c, scope, updates, now)?)
        }
        Command::AddNote(note) => Answer::Note(add_note(c, scope, note, now)?),
    })
}

/// Runs `cmd` unless `once.key` is recorded, and records the key with it (the writer is
/// the only one: nothing can come between the check and the insert).
pub(crate) fn run_once(
    c: &Connection,
    scope: &Scope,
    once: &Once,
    cmd: Command,
    now: Timestamp,
) -> Result<Ran, StoreError> {
    let seen: Option<(String, Option<String>)> = c
        .prepare_cached("SELECT fingerprint, answer FROM once WHERE key = ?1")
        .map_err(internal)?
        .query_row([&once.key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(internal)?;
    if let Some((fingerprint, answer)) = seen {
        return once::replay(once, &fingerprint, answer.as_deref());
    }
    let job = cmd.job_id().map(|j| *j.as_uuid().as_bytes());
    let answer = apply(c, scope, cmd, now)?;
    c.prepare_cached(
        "INSERT INTO once (key, fingerprint, job_id, answer, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .map_err(internal)?
    .execute(params![
        once.key,
        once.fingerprint,
        job,
        once::recorded(once, &answer)?,
        now.as_millis()
    ])
    .map_err(internal)?;
    Ok(Ran::Applied(answer))
}

/// [`run_once`] for each command in its own savepoint, in order; see
/// `Store::run_once_batch`.
pub(crate) fn run_once_batch(
    c: &Connection,
    scope: &Scope,
    commands: Vec<(Once, Command)>,
    now: Timestamp,
) -> Vec<Result<Ran, StoreError>> {
    let mut failed = false;
    commands
        .into_iter()
        .map(|(once, cmd)| {
            if failed {
                return Err(once::not_run());
            }
            let ran = super::writer::in_savepoint(c, |c| run_once(c, scope, &once, cmd, now));
            failed = once::ends_batch(&ran);
            ran
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Executing a plan

/// Writes a plan; returns the `seq` of each of its events, in order.
fn execute(c: &Connection, plan: &Plan) -> Result<Vec<i64>, StoreError> {
    let now = plan.now;
    if let Some(new) = &plan.new_job {
        insert_job(c, new, now)?;
    }
    for t in &plan.new_tasks {
        insert_task(c, t)?;
    }
    for w in &plan.tasks {
        write_task(c, w, now)?;
    }
    for id in &plan.cancel {
        cancel_task(c, *id, now)?;
    }
    for w in &plan.jobs {
        write_job(c, w, now)?;
    }
    count_tasks(c, &plan.task_count_change())?;
    plan.events
        .iter()
        .map(|e| append_event(c, e, now))
        .collect()
}

/// Adds a plan's change of the tasks by status to `task_counts`
/// (migrations/sqlite/0011_task_counts.sql): one statement over its five rows (one page),
/// none when nothing moves (a heartbeat, a note, progress).
pub(crate) fn count_tasks(c: &Connection, change: &Counters) -> Result<(), StoreError> {
    if change.is_zero() {
        return Ok(());
    }
    c.prepare_cached(
        "UPDATE task_counts SET n = n + CASE status WHEN 0 THEN ?1 WHEN 1 THEN ?2 \
         WHEN 2 THEN ?3 WHEN 3 THEN ?4 ELSE ?5 END",
    )
    .map_err(internal)?
    .execute(params![
        change.pending,
        change.in_progress,
        change.completed,
        change.failed,
        change.cancelled
    ])
    .map(drop)
    .map_err(internal)
}

fn opt_bytes(id: Option<TaskId>) -> Option<[u8; 16]> {
    id.map(|t| *t.as_bytes())
}

fn millis(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::as_millis)
}

fn insert_job(c: &Connection, new: &plan::JobInsert, now: Timestamp) -> Result<(), StoreError> {
    let j = &new.job;
    c.prepare_cached(
        "INSERT INTO jobs (id, correlation_id, type, namespace, status, status_explicit, \
         auto_complete, start_time, tasks_total, tasks_pending, meta, created_at, updated_at, \
         last_seq, timeout_seconds, deadline) \
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?14)",
    )
    .map_err(internal)?
    .execute(params![
        j.id.as_bytes(),
        j.correlation_id,
        j.job_type,
        j.namespace,
        j.status.code(),
        j.auto_complete,
        j.start_time.as_millis(),
        j.tasks.total,
        j.tasks.pending,
        new.meta.as_json(),
        now.as_millis(),
        new.last_seq,
        j.timeout_seconds,
        millis(plan::job_deadline(j)),
    ])
    .map_err(internal)?;
    for (key, value) in new.meta.index_entries() {
        c.prepare_cached(
            "INSERT OR IGNORE INTO job_meta (key, value, start_time, job_id) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(internal)?
        .execute(params![key, value, j.start_time.as_millis(), j.id.as_bytes()])
        .map_err(internal)?;
    }
    Ok(())
}

fn insert_task(c: &Connection, t: &Task) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO tasks (id, job_id, type, namespace, status, attempt, start_time, meta, \
         timeout_seconds, heartbeat_at, created_at, updated_at, deadline) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?10, ?11)",
    )
    .map_err(internal)?
    .execute(params![
        t.id.as_bytes(),
        t.job_id.as_bytes(),
        t.task_type,
        t.namespace,
        t.status.code(),
        t.attempt,
        t.start_time.as_millis(),
        t.meta.get(),
        t.timeout_seconds,
        t.created_at.as_millis(),
        millis(plan::task_deadline(t)),
    ])
    .map_err(internal)?;
    Ok(())
}

/// Writes a task's changed state over its row.
fn write_task(c: &Connection, w: &TaskWrite, now: Timestamp) -> Result<(), StoreError> {
    let t = &w.task;
    // SQLite rewrites the index entries of every column an UPDATE sets, whether or not its
    // value changed: setting `status` rewrites the task's entry in the (job, status) index,
    // so a change that keeps the status (progress, a heartbeat) does not set it; `?2` then
    // only restates the status the row already has (read in this transaction). Exactly one
    // row must change either way. `deadline` is set every time, and costs a task without a
    // timeout nothing: its index is partial, and NULL before and after is in it neither time.
    let changed = c
        .prepare_cached(if t.status == w.stored {
            "UPDATE tasks SET attempt = ?3, end_time = ?4, progress_current = ?5, \
             progress_total = ?6, error = ?7, heartbeat_at = ?8, updated_at = ?8, deadline = ?9 \
             WHERE id = ?1 AND status = ?2"
        } else {
            "UPDATE tasks SET status = ?2, attempt = ?3, end_time = ?4, progress_current = ?5, \
             progress_total = ?6, error = ?7, heartbeat_at = ?8, updated_at = ?8, deadline = ?9 \
             WHERE id = ?1"
        })
        .map_err(internal)?
        .execute(params![
            t.id.as_bytes(),
            t.status.code(),
            t.attempt,
            t.end_time.map(Timestamp::as_millis),
            t.progress.map(|p| p.current as i64),
            t.progress.and_then(|p| p.total).map(|t| t as i64),
            t.error,
            now.as_millis(),
            millis(plan::task_deadline(t)),
        ])
        .map_err(internal)?;
    if changed != 1 {
        return Err(StoreError::Internal(format!(
            "updating task {} changed {changed} rows",
            t.id
        )));
    }
    Ok(())
}

/// A cancelled task is terminal: it has no deadline any more.
fn cancel_task(c: &Connection, id: TaskId, now: Timestamp) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE tasks SET status = ?2, end_time = ?3, updated_at = ?3, deadline = NULL \
         WHERE id = ?1",
    )
    .map_err(internal)?
    .execute(params![
        id.as_bytes(),
        Status::Cancelled.code(),
        now.as_millis()
    ])
    .map_err(internal)?;
    Ok(())
}

/// Writes a job's changed head.
///
/// As for tasks, an UPDATE rewrites the index entries of every column it sets, so it sets
/// only what changed: the sequence alone (a heartbeat, a note), or the counters too (most
/// task changes), or status, end time and deadline too (six indexes between them, and the
/// count trigger). The deadline only changes when the job ends or reopens.
fn write_job(c: &Connection, w: &JobWrite, now: Timestamp) -> Result<(), StoreError> {
    let after = &w.after.state;
    let n = &after.counters;
    // The rate moves only with the counters (`plan::Jobs::finish`): the branches that set
    // counters set it too.
    let rate = &w.after.rate;
    let id = w.id.as_bytes();
    let result = if !w.state_changed() {
        c.prepare_cached("UPDATE jobs SET last_seq = ?2 WHERE id = ?1")
            .map_err(internal)?
            .execute(params![id, w.after.last_seq])
    } else if !w.status_changed() {
        c.prepare_cached(
            "UPDATE jobs SET tasks_total = ?2, tasks_pending = ?3, tasks_in_progress = ?4, \
             tasks_failed = ?5, tasks_completed = ?6, tasks_cancelled = ?7, updated_at = ?8, \
             last_seq = ?9, rate_samples = ?10, rate_weight = ?11, rate_since = ?12, \
             rate_last = ?13 WHERE id = ?1",
        )
        .map_err(internal)?
        .execute(params![
            id,
            n.total,
            n.pending,
            n.in_progress,
            n.failed,
            n.completed,
            n.cancelled,
            now.as_millis(),
            w.after.last_seq,
            rate.samples,
            rate.weight,
            millis(rate.since),
            millis(rate.last),
        ])
    } else {
        c.prepare_cached(
            "UPDATE jobs SET tasks_total = ?2, tasks_pending = ?3, tasks_in_progress = ?4, \
             tasks_failed = ?5, tasks_completed = ?6, tasks_cancelled = ?7, updated_at = ?8, \
             last_seq = ?9, status = ?10, status_explicit = ?11, end_time = ?12, \
             deadline = ?13, rate_samples = ?14, rate_weight = ?15, rate_since = ?16, \
             rate_last = ?17 WHERE id = ?1",
        )
        .map_err(internal)?
        .execute(params![
            id,
            n.total,
            n.pending,
            n.in_progress,
            n.failed,
            n.completed,
            n.cancelled,
            now.as_millis(),
            w.after.last_seq,
            after.status.code(),
            after.explicit,
            after.end_time.map(Timestamp::as_millis),
            millis(w.after.deadline()),
            rate.samples,
            rate.weight,
            millis(rate.since),
            millis(rate.last),
        ])
    };
    result.map(drop).map_err(internal)
}

/// Appends a history event, and its outbox row when it is published; returns its `seq`.
fn append_event(c: &Connection, e: &NewEvent, now: Timestamp) -> Result<i64, StoreError> {
    let d = &e.draft;
    c.prepare_cached(
        "INSERT INTO history (job_id, task_id, kind, time, from_status, to_status, reason, \
         message, data, progress_current, progress_total, job_seq) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .map_err(internal)?
    .execute(params![
        e.job_id.as_bytes(),
        opt_bytes(e.task_id),
        d.kind.as_str(),
        now.as_millis(),
        d.from.map(Status::code),
        d.to.map(Status::code),
        d.reason,
        d.message,
        e.data,
        d.progress.map(|p| p.current as i64),
        d.progress.and_then(|p| p.total).map(|t| t as i64),
        e.job_seq,
    ])
    .map_err(internal)?;
    let seq = c.last_insert_rowid();
    if e.published() {
        c.prepare_cached("INSERT INTO outbox (seq, job_id, job_seq) VALUES (?1, ?2, ?3)")
            .map_err(internal)?
            .execute(params![seq, e.job_id.as_bytes(), e.job_seq])
            .map_err(internal)?;
    }
    Ok(seq)
}

// ---------------------------------------------------------------------------------------
// The outbox

/// See `Store::claim_outbox`. Runs in the writer, so claims never race on SQLite; the lease
/// table still keeps other relays off a job until the lease ends. Reads a window of the
/// outbox in `seq` order (its primary key), leaving out the jobs other relays hold.
pub(crate) fn claim_outbox(
    c: &Connection,
    relay: &str,
    max_jobs: u32,
    lease: Duration,
    now: Timestamp,
) -> Result<Vec<OutboxItem>, StoreError> {
    let until = now.as_millis() + lease.as_millis() as i64;
    let window: Vec<(i64, [u8; 16])> = c
        .prepare_cached(
            "SELECT o.seq, o.job_id FROM outbox o \
             WHERE NOT EXISTS (SELECT 1 FROM outbox_leases l WHERE l.job_id = o.job_id \
                               AND l.until >= ?1 AND l.relay <> ?2) \
             ORDER BY o.seq LIMIT ?3",
        )
        .map_err(internal)?
        .query_map(
            params![
                now.as_millis(),
                relay,
                max_jobs.saturating_mul(CLAIM_ROWS_PER_JOB)
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(internal)?
        .collect::<rusqlite::Result<_>>()
        .map_err(internal)?;
    let jobs = jobs_to_claim(&window, max_jobs);
    let mut items = Vec::new();
    let mut held_since = HashMap::new();
    for job in &jobs {
        // A lease in place keeps the time it was first taken.
        let since: i64 = c
            .prepare_cached(
                "INSERT INTO outbox_leases (job_id, relay, until, since) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (job_id) DO UPDATE SET relay = excluded.relay, until = excluded.until \
                 RETURNING since",
            )
            .map_err(internal)?
            .query_row(params![job, relay, until, now.as_millis()], |r| r.get(0))
            .map_err(internal)?;
        held_since.insert(
            *job,
            (since < now.as_millis()).then(|| Timestamp::from_millis(since)),
        );
    }
    for (seq, job) in &window {
        if let Some(held_since) = held_since.get(job) {
            let event = rows::event(c, *seq)?;
            items.push(OutboxItem {
                seq: *seq,
                event,
                held_since: *held_since,
            });
        }
    }
    let claimed: Vec<uuid::Uuid> = jobs.iter().map(|j| uuid::Uuid::from_bytes(*j)).collect();
    Ok(claimed_items(&claimed, items))
}

pub(crate) fn ack_outbox(c: &Connection, relay: &str, seqs: &[i64]) -> Result<(), StoreError> {
    for seq in seqs {
        let job: Option<[u8; 16]> = c
            .prepare_cached("DELETE FROM outbox WHERE seq = ?1 RETURNING job_id")
            .map_err(internal)?
            .query_row([seq], |r| r.get(0))
            .optional()
            .map_err(internal)?;
        if let Some(job) = job {
            c.prepare_cached("DELETE FROM outbox_leases WHERE job_id = ?1 AND relay = ?2")
                .map_err(internal)?
                .execute(params![job, relay])
                .map_err(internal)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Retention

/// See `Store::delete_expired_jobs`. Each job's tasks, history and meta rows go with it by
/// cascade (and the history's outbox rows with them), and the triggers keep the counts;
/// its outbox lease has no foreign key and goes here. One writer call: the writes queued
/// behind it wait for at most `limit` jobs' worth of deletes.
pub(crate) fn delete_expired_jobs(
    c: &Connection,
    cutoffs: &[(Status, Timestamp)],
    limit: u32,
) -> Result<u64, StoreError> {
    let mut doomed: Vec<[u8; 16]> = Vec::new();
    for (status, cutoff) in cutoffs {
        let rest = i64::from(limit) - doomed.len() as i64;
        if rest <= 0 {
            break;
        }
        let ids = c
            .prepare_cached(
                "SELECT id FROM jobs WHERE status = ?1 AND end_time < ?2 \
                 ORDER BY end_time LIMIT ?3",
            )
            .map_err(internal)?
            .query_map(params![status.code(), cutoff.as_millis(), rest], |r| {
                r.get(0)
            })
            .map_err(internal)?
            .collect::<rusqlite::Result<Vec<[u8; 16]>>>()
            .map_err(internal)?;
        doomed.extend(ids);
    }
    for id in &doomed {
        // What has no foreign key to the job: its outbox lease and its run-once keys.
        for sql in [
            "DELETE FROM outbox_leases WHERE job_id = ?1",
            "DELETE FROM once WHERE job_id = ?1",
        ] {
            c.prepare_cached(sql)
                .map_err(internal)?
                .execute([id])
                .map_err(internal)?;
        }
        c.prepare_cached("DELETE FROM jobs WHERE id = ?1")
            .map_err(internal)?
            .execute([id])
            .map_err(internal)?;
    }
    Ok(doomed.len() as u64)
}
