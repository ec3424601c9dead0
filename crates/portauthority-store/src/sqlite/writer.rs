//! The single writer: group commit, and the write operations it runs.

use super::internal;
use super::rows::{self, JobRow};
use crate::state::{added_task, apply_task_updates, classify_task};
use crate::{Created, NewNote, StoreError, TaskUpdate};
use portauthority_core::api::{EventKind, HistoryEvent, Job, NewJob, NewTask, Task};
use portauthority_core::machine::{self, EventDraft, JobState};
use portauthority_core::{JobId, Status, TaskId, Timestamp};
use rusqlite::{Connection, params};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::panic::{AssertUnwindSafe, catch_unwind};
use tokio::sync::{mpsc, oneshot};

/// Most requests committed in one transaction. Bounds the latency a request can add to
/// the others of its group.
const MAX_GROUP: usize = 256;

/// Called once the group's commit has succeeded (`Ok`) or failed.
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write: runs inside the group's transaction (or is refused, given an error instead of
/// a connection), and returns how to answer after the commit.
type WriteFn = Box<dyn FnOnce(Result<&Connection, StoreError>) -> Reply + Send>;

enum Message {
    Write(WriteFn),
    Close(oneshot::Sender<()>),
}

pub(crate) struct Writer {
    queue: mpsc::Sender<Message>,
}

impl Writer {
    pub(crate) fn start(conn: Connection) -> Writer {
        let (queue, rx) = mpsc::channel(4096);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx))
            .expect("spawn the SQLite writer thread");
        Writer { queue }
    }

    /// Runs `f` in the writer's next group and waits until its commit is durable.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let write: WriteFn = Box::new(move |conn| {
            let result = conn.and_then(|conn| in_savepoint(conn, f));
            Box::new(move |commit: Result<(), StoreError>| {
                let _ = tx.send(commit.and(result));
            })
        });
        self.queue
            .send(Message::Write(write))
            .await
            .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        rx.await
            .map_err(|_| StoreError::Internal("the write was abandoned".into()))?
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        self.run(|c| c.execute_batch("SELECT 1").map_err(internal))
            .await
    }

    /// Commits what is queued and stops the writer. Later writes fail as unavailable.
    pub(crate) async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.queue.send(Message::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Runs `f` in a savepoint: its writes are kept if it succeeds and undone if it fails, so
/// one failing request never leaves a partial write in the group's transaction.
pub(crate) fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Cached statements: a savepoint per request (and per batch item) is on the hot path.
    let exec = |sql: &str| -> Result<(), StoreError> {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map(drop)
            .map_err(internal)
    };
    exec("SAVEPOINT op")?;
    let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(StoreError::Internal("a write panicked".into())));
    if result.is_err() {
        exec("ROLLBACK TO op")?;
    }
    exec("RELEASE op")?;
    result
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Message>) {
    let mut group: Vec<WriteFn> = Vec::with_capacity(MAX_GROUP);
    let mut closing = None;
    while closing.is_none() {
        match rx.blocking_recv() {
            Some(Message::Write(w)) => group.push(w),
            Some(Message::Close(done)) => closing = Some(done),
            None => break,
        }
        while group.len() < MAX_GROUP && closing.is_none() {
            match rx.try_recv() {
                Ok(Message::Write(w)) => group.push(w),
                Ok(Message::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        commit_group(&conn, &mut group);
    }
    // Closing: whatever is still queued is refused, not silently dropped.
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        if let Message::Write(w) = msg {
            let closing = StoreError::Unavailable("store is closing".into());
            w(Err(closing.clone()))(Err(closing));
        }
    }
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    drop(conn);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

fn commit_group(conn: &Connection, group: &mut Vec<WriteFn>) {
    if group.is_empty() {
        return;
    }
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = internal(e);
        tracing::error!(error = %err, "cannot begin a write transaction");
        for w in group.drain(..) {
            w(Err(err.clone()))(Err(err.clone()));
        }
        return;
    }
    let replies: Vec<Reply> = group.drain(..).map(|w| w(Ok(conn))).collect();
    let outcome = conn.execute_batch("COMMIT").map_err(|e| {
        let err = internal(e);
        tracing::error!(error = %err, "group commit failed");
        let _ = conn.execute_batch("ROLLBACK");
        err
    });
    for reply in replies {
        reply(outcome.clone());
    }
}

// ---------------------------------------------------------------------------------------
// Write operations. Each runs inside `in_savepoint`.

fn opt_bytes(id: Option<TaskId>) -> Option<[u8; 16]> {
    id.map(|t| *t.as_bytes())
}

/// Appends a history event; events that are published (created, task added, status
/// changed) also go to the outbox, in the same transaction.
fn append_event(
    c: &Connection,
    job_id: JobId,
    task_id: Option<TaskId>,
    e: &EventDraft,
    data: Option<&str>,
    now: Timestamp,
) -> Result<i64, StoreError> {
    c.prepare_cached(
        "INSERT INTO history (job_id, task_id, kind, time, from_status, to_status, reason, \
         message, data, progress_current, progress_total) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .map_err(internal)?
    .execute(params![
        job_id.as_bytes(),
        opt_bytes(task_id),
        e.kind.as_str(),
        now.as_millis(),
        e.from.map(Status::code),
        e.to.map(Status::code),
        e.reason,
        e.message,
        data,
        e.progress.map(|p| p.current as i64),
        e.progress.and_then(|p| p.total).map(|t| t as i64),
    ])
    .map_err(internal)?;
    let seq = c.last_insert_rowid();
    if matches!(
        e.kind,
        EventKind::Created | EventKind::TaskAdded | EventKind::StatusChanged
    ) {
        c.prepare_cached("INSERT INTO outbox (seq) VALUES (?1)")
            .map_err(internal)?
            .execute([seq])
            .map_err(internal)?;
    }
    Ok(seq)
}

/// Writes a job's state as it is `after` a change to the state stored `before` it.
///
/// SQLite rewrites the index entries of every column an UPDATE sets, whether or not its
/// value changed, so status and end time (four indexes between them, and the count
/// trigger) are set only when they changed. Most task changes move only the counters.
fn save_job_state(
    c: &Connection,
    id: JobId,
    before: &JobState,
    after: &JobState,
    now: Timestamp,
) -> Result<(), StoreError> {
    let counters = &after.counters;
    let unchanged_status = before.status == after.status
        && before.explicit == after.explicit
        && before.end_time == after.end_time;
    let mut stmt = c
        .prepare_cached(if unchanged_status {
            "UPDATE jobs SET tasks_total = ?2, tasks_pending = ?3, tasks_in_progress = ?4, \
             tasks_failed = ?5, tasks_completed = ?6, tasks_cancelled = ?7, updated_at = ?8 \
             WHERE id = ?1"
        } else {
            "UPDATE jobs SET tasks_total = ?2, tasks_pending = ?3, tasks_in_progress = ?4, \
             tasks_failed = ?5, tasks_completed = ?6, tasks_cancelled = ?7, updated_at = ?8, \
             status = ?9, status_explicit = ?10, end_time = ?11 WHERE id = ?1"
        })
        .map_err(internal)?;
    let shared = params![
        id.as_bytes(),
        counters.total,
        counters.pending,
        counters.in_progress,
        counters.failed,
        counters.completed,
        counters.cancelled,
        now.as_millis(),
    ];
    let result = if unchanged_status {
        stmt.execute(shared)
    } else {
        let status = [
            &after.status.code() as &dyn rusqlite::ToSql,
            &after.explicit,
            &after.end_time.map(Timestamp::as_millis),
        ];
        stmt.execute(&*[shared, &status[..]].concat())
    };
    result.map(drop).map_err(internal)
}

fn load_job(c: &Connection, id: JobId) -> Result<JobRow, StoreError> {
    rows::job(c, id)?.ok_or_else(|| StoreError::job_not_found(id))
}

/// Only what the rules need of a job: cheaper than the whole row on the hot path.
fn load_job_state(c: &Connection, id: JobId) -> Result<JobState, StoreError> {
    rows::job_state(c, id)?.ok_or_else(|| StoreError::job_not_found(id))
}

fn insert_task(
    c: &Connection,
    job_id: JobId,
    t: &NewTask,
    now: Timestamp,
) -> Result<Task, StoreError> {
    let start = t.start_time.unwrap_or(now);
    c.prepare_cached(
        "INSERT INTO tasks (id, job_id, type, namespace, status, attempt, start_time, meta, \
         timeout_seconds, heartbeat_at, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?9, ?9, ?9)",
    )
    .map_err(internal)?
    .execute(params![
        t.id.as_bytes(),
        job_id.as_bytes(),
        t.task_type.as_str(),
        t.namespace.as_str(),
        Status::Pending.code(),
        start.as_millis(),
        t.meta.as_json(),
        t.timeout_seconds,
        now.as_millis(),
    ])
    .map_err(internal)?;
    append_event(
        c,
        job_id,
        Some(t.id),
        &EventDraft::simple(EventKind::TaskAdded),
        None,
        now,
    )?;
    added_task(job_id, t, now)
}

/// Sorts tasks into those already stored (an idempotent repeat, returned as stored) and
/// those to insert. A task id used with other content, or under another job, conflicts.
fn partition_tasks(
    c: &Connection,
    job_id: JobId,
    tasks: Vec<NewTask>,
) -> Result<Vec<Result<Task, NewTask>>, StoreError> {
    tasks
        .into_iter()
        .map(|t| {
            let stored = rows::task(c, t.id)?;
            classify_task(job_id, t, stored)
        })
        .collect()
}

pub(crate) fn create_job(c: &Connection, new: NewJob) -> Result<Created<Job>, StoreError> {
    let now = Timestamp::now();
    if let Some(existing) = rows::job(c, new.id)? {
        // A read error must surface as itself, not as "different content" (409).
        let mut same = new.matches(&existing.job);
        for t in &new.tasks {
            if !same {
                break;
            }
            same = t.id_supplied
                && rows::task(c, t.id)?.is_some_and(|stored| t.matches(new.id, &stored));
        }
        if same {
            return Ok(Created {
                value: existing.job,
                created: false,
            });
        }
        return Err(StoreError::Conflict(format!(
            "job {} already exists with different content",
            new.id
        )));
    }
    let state = machine::new_job(new.auto_complete, new.tasks.len() as i64);
    let start = new.start_time.unwrap_or(now);
    c.prepare_cached(
        "INSERT INTO jobs (id, correlation_id, type, namespace, status, status_explicit, \
         auto_complete, start_time, tasks_total, tasks_pending, meta, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, ?8, ?9, ?10, ?10)",
    )
    .map_err(internal)?
    .execute(params![
        new.id.as_bytes(),
        new.correlation_id,
        new.job_type.as_str(),
        new.namespace.as_str(),
        state.status.code(),
        new.auto_complete,
        start.as_millis(),
        state.counters.total,
        new.meta.as_json(),
        now.as_millis(),
    ])
    .map_err(internal)?;
    for (key, value) in new.meta.index_entries() {
        c.prepare_cached(
            "INSERT OR IGNORE INTO job_meta (key, value, start_time, job_id) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(internal)?
        .execute(params![key, value, start.as_millis(), new.id.as_bytes()])
        .map_err(internal)?;
    }
    append_event(
        c,
        new.id,
        None,
        &EventDraft::simple(EventKind::Created),
        None,
        now,
    )?;
    for t in partition_tasks(c, new.id, new.tasks.clone())? {
        match t {
            Err(t) => {
                insert_task(c, new.id, &t, now)?;
            }
            Ok(existing) => {
                return Err(StoreError::Conflict(format!(
                    "task id {} is already used by job {}",
                    existing.id, existing.job_id
                )));
            }
        }
    }
    let job = load_job(c, new.id)?.job;
    Ok(Created {
        value: job,
        created: true,
    })
}

pub(crate) fn add_tasks(
    c: &Connection,
    job_id: JobId,
    tasks: Vec<NewTask>,
) -> Result<Vec<Task>, StoreError> {
    let now = Timestamp::now();
    let state = load_job_state(c, job_id)?;
    let parts = partition_tasks(c, job_id, tasks)?;
    let fresh = parts.iter().filter(|p| p.is_err()).count() as i64;
    if fresh == 0 {
        return Ok(parts.into_iter().filter_map(Result::ok).collect());
    }
    let (after, job_event) = machine::add_tasks(&state, fresh, now)?;
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        out.push(match p {
            Ok(existing) => existing,
            Err(t) => insert_task(c, job_id, &t, now)?,
        });
    }
    save_job_state(c, job_id, &state, &after, now)?;
    if let Some(e) = job_event {
        append_event(c, job_id, None, &e, None, now)?;
    }
    Ok(out)
}

/// Applies a batch of task updates: reads the jobs and tasks it names, applies the rules
/// (`state::apply_task_updates`, shared with PostgreSQL), then writes the changed tasks, the
/// events and each changed job once. A refused item (not found, a rule) writes nothing and
/// gets its own error; a database error fails the whole batch, which the caller's savepoint
/// undoes.
pub(crate) fn update_tasks(
    c: &Connection,
    updates: Vec<TaskUpdate>,
) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
    let now = Timestamp::now();
    let mut jobs: HashMap<JobId, (JobState, JobState)> = HashMap::new();
    let mut tasks: HashMap<TaskId, Task> = HashMap::new();
    for u in &updates {
        if let Entry::Vacant(e) = jobs.entry(u.job_id)
            && let Some(state) = rows::job_state(c, u.job_id)?
        {
            e.insert((state.clone(), state));
        }
        if let Entry::Vacant(e) = tasks.entry(u.task_id)
            && let Some(task) = rows::task(c, u.task_id)?
        {
            e.insert(task);
        }
    }
    let stored_status: HashMap<TaskId, Status> =
        tasks.iter().map(|(id, t)| (*id, t.status)).collect();
    let applied = apply_task_updates(&mut jobs, &mut tasks, &updates, now);
    for id in &applied.changed {
        write_task(c, &tasks[id], stored_status[id], now)?;
    }
    for (job_id, task_id, e) in &applied.events {
        append_event(c, *job_id, *task_id, e, None, now)?;
    }
    for (id, (stored, current)) in &jobs {
        if stored != current {
            save_job_state(c, *id, stored, current, now)?;
        }
    }
    Ok(applied.results)
}

/// Writes a task's changed state over its row, which has status `stored`.
fn write_task(c: &Connection, t: &Task, stored: Status, now: Timestamp) -> Result<(), StoreError> {
    // As for jobs (save_job_state): setting `status` rewrites the task's entry in the
    // (job, status) index, so a change that keeps the status (progress, a heartbeat) does
    // not set it; `?2` then only restates the status the row already has (read in this
    // transaction). Exactly one row must change either way.
    let changed = c
        .prepare_cached(if t.status == stored {
            "UPDATE tasks SET attempt = ?3, end_time = ?4, progress_current = ?5, \
             progress_total = ?6, error = ?7, heartbeat_at = ?8, updated_at = ?8 \
             WHERE id = ?1 AND status = ?2"
        } else {
            "UPDATE tasks SET status = ?2, attempt = ?3, end_time = ?4, progress_current = ?5, \
             progress_total = ?6, error = ?7, heartbeat_at = ?8, updated_at = ?8 WHERE id = ?1"
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

pub(crate) fn set_job_status(
    c: &Connection,
    id: JobId,
    to: Status,
    reason: Option<String>,
) -> Result<Job, StoreError> {
    let now = Timestamp::now();
    let mut row = load_job(c, id)?;
    let before = row.state();
    let out = machine::set_job_status(&before, to, reason.clone(), now)?;
    let Some(job_event) = out.job_event else {
        return Ok(row.job);
    };
    if out.cancel_open_tasks {
        let open: Vec<(TaskId, Status)> = c
            .prepare_cached("SELECT id, status FROM tasks WHERE job_id = ?1 AND status IN (?2, ?3)")
            .map_err(internal)?
            .query_map(
                params![
                    id.as_bytes(),
                    Status::Pending.code(),
                    Status::InProgress.code()
                ],
                |r| {
                    let status = Status::from_code(r.get(1)?).unwrap_or(Status::Pending);
                    Ok((TaskId::from_uuid(uuid::Uuid::from_bytes(r.get(0)?)), status))
                },
            )
            .map_err(internal)?
            .collect::<rusqlite::Result<_>>()
            .map_err(internal)?;
        c.prepare_cached(
            "UPDATE tasks SET status = ?2, end_time = ?3, updated_at = ?3 \
             WHERE job_id = ?1 AND status IN (?4, ?5)",
        )
        .map_err(internal)?
        .execute(params![
            id.as_bytes(),
            Status::Cancelled.code(),
            now.as_millis(),
            Status::Pending.code(),
            Status::InProgress.code()
        ])
        .map_err(internal)?;
        for (task_id, from) in open {
            let e = EventDraft::status(from, Status::Cancelled, reason.clone());
            append_event(c, id, Some(task_id), &e, None, now)?;
        }
    }
    save_job_state(c, id, &before, &out.job, now)?;
    append_event(c, id, None, &job_event, None, now)?;
    row.apply(&out.job, now);
    Ok(row.job)
}

pub(crate) fn add_note(c: &Connection, note: NewNote) -> Result<HistoryEvent, StoreError> {
    let now = Timestamp::now();
    load_job_state(c, note.job_id)?;
    if let Some(task_id) = note.task_id
        && rows::task(c, task_id)?.is_none_or(|t| t.job_id != note.job_id)
    {
        return Err(StoreError::task_not_found(note.job_id, task_id));
    }
    let draft = EventDraft {
        message: Some(note.message),
        ..EventDraft::simple(EventKind::Note)
    };
    let seq = append_event(
        c,
        note.job_id,
        note.task_id,
        &draft,
        note.data.as_deref(),
        now,
    )?;
    rows::event(c, seq)
}
