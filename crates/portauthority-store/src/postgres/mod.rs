//! The scale-out store: PostgreSQL through a connection pool.
//!
//! Any number of processes share one database; nothing lives in a process that another
//! needs. Every write is one short transaction that first locks the job row
//! (`SELECT ... FOR UPDATE`), so the counters, the job's derived status and the task change
//! together. All writers lock jobs before tasks and batches lock jobs in id order, so
//! transactions do not deadlock; serialization failures, deadlocks and races on a unique
//! key are retried here and never reach a client.

mod rows;

use crate::query::{HistoryScope, JobFilter, Page, Paging, TaskFilter};
use crate::state::{JobRow, added_task, apply_task_updates, classify_task};
use crate::{Created, NewNote, Store, StoreError, TaskUpdate};
use async_trait::async_trait;
use portauthority_core::api::{EventKind, HistoryEvent, Job, NewJob, NewTask, Task};
use portauthority_core::machine::{self, EventDraft, JobState};
use portauthority_core::{JobId, Status, TaskId, Timestamp};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Whether `url` names a PostgreSQL database.
pub fn handles(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Most attempts of one transaction that keeps meeting retryable errors.
const MAX_ATTEMPTS: u32 = 10;

/// An error inside a transaction: a database error (maybe retryable) or a refusal.
pub(crate) enum TxError {
    Db(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for TxError {
    fn from(e: sqlx::Error) -> Self {
        TxError::Db(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

impl From<portauthority_core::Refusal> for TxError {
    fn from(r: portauthority_core::Refusal) -> Self {
        TxError::Store(r.into())
    }
}

type TxResult<T> = Result<T, TxError>;
type BoxFut<'c, T> = Pin<Box<dyn Future<Output = TxResult<T>> + Send + 'c>>;

/// Serialization failure, deadlock, or a unique key another transaction took first (the
/// retry then finds the row and answers as an idempotent repeat or a conflict).
fn retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("40001" | "40P01" | "23505"))
        }
        _ => false,
    }
}

pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(db)
            if db.code().is_some_and(|c| {
                // Class 08: connection exceptions; 57P0x: the server is shutting down or restarting.
                c.starts_with("08") || c.starts_with("57P") || c == "53300"
            }) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

/// The PostgreSQL implementation of [`Store`].
pub struct PgStore {
    pool: PgPool,
    /// Dropping the store stops its background folding of job counts.
    _alive: std::sync::Arc<()>,
}

/// How often each process folds `job_count_deltas` into `job_counts`.
const FOLD_EVERY: Duration = Duration::from_secs(1);
/// The advisory lock key that lets one process at a time fold.
const FOLD_LOCK: i64 = 0x5041_4a43_4e54; // "PAJCNT"

/// Folds job count deltas into `job_counts` every `FOLD_EVERY` while the store lives. Counts
/// are exact either way (a count sums both tables); folding keeps the delta table small.
fn spawn_count_folding(pool: PgPool, alive: std::sync::Weak<()>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FOLD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if alive.strong_count() == 0 || pool.is_closed() {
                return;
            }
            match fold_counts(&pool).await {
                Ok(0) => {}
                Ok(_) => vacuum_counts(&pool).await,
                Err(e) => {
                    tracing::debug!(error = %e, "folding job count deltas failed; retrying later")
                }
            }
        }
    });
}

/// Vacuums the count tables after a fold. Every list with a count reads the delta tables
/// whole, and a fold leaves the rows it moved behind as dead tuples, which autovacuum would
/// reclaim only after its next nap (a minute by default): under steady writes a list then
/// scanned hundreds of dead pages (about 1 ms of its 2). `SKIP_LOCKED`: when another
/// server is vacuuming them, this one skips its turn. `TRUNCATE false`: giving the empty
/// tail pages back needs an exclusive lock that the writers' inserts keep it waiting for
/// (seconds, under load); the next inserts reuse those pages anyway.
async fn vacuum_counts(pool: &PgPool) {
    if let Err(e) = sqlx::query(
        "VACUUM (SKIP_LOCKED, TRUNCATE false) job_count_deltas, job_meta_count_deltas, \
         job_counts, job_meta_counts",
    )
    .execute(pool)
    .await
    {
        tracing::debug!(error = %e, "vacuuming the job count tables failed");
    }
}

/// Moves the committed deltas into `job_counts` and `job_meta_counts` (rows in key order: concurrent folds queue,
/// never deadlock).
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

pub(crate) fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("bad PostgreSQL URL: {e}")))
}

impl PgStore {
    /// Connects, applies migrations, and returns the store.
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(pool_size())
            .min_connections(0)
            // While the database is down, requests fail fast with 503 instead of hanging.
            .acquire_timeout(Duration::from_secs(2))
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(connect_options(url)?);
        run_migrations(&pool).await?;
        let alive = std::sync::Arc::new(());
        spawn_count_folding(pool.clone(), std::sync::Arc::downgrade(&alive));
        Ok(PgStore {
            pool,
            _alive: alive,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `f` in a transaction, retrying it on retryable errors.
    async fn tx<T, F>(&self, mut f: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'c> FnMut(&'c mut PgConnection) -> BoxFut<'c, T> + Send,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = self.pool.begin().await.map_err(db_error)?;
            let err = match f(&mut tx).await {
                Ok(v) => match tx.commit().await {
                    Ok(()) => return Ok(v),
                    Err(e) => e,
                },
                Err(TxError::Store(e)) => {
                    let _ = tx.rollback().await;
                    return Err(e);
                }
                Err(TxError::Db(e)) => {
                    let _ = tx.rollback().await;
                    e
                }
            };
            if retryable(&err) && attempt < MAX_ATTEMPTS {
                let backoff = Duration::from_millis(2u64 << attempt.min(6));
                tracing::debug!(attempt, error = %err, "retrying transaction");
                tokio::time::sleep(backoff).await;
                continue;
            }
            return Err(db_error(err));
        }
    }
}

fn pool_size() -> u32 {
    std::env::var("PORTAUTHORITY_DATABASE_POOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

async fn run_migrations(pool: &PgPool) -> Result<i64, StoreError> {
    // The migrator holds an advisory lock while it runs: concurrent runs take turns.
    MIGRATOR.run(pool).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) => db_error(e),
        other => StoreError::Internal(format!("migration failed: {other}")),
    })?;
    let version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .map_err(db_error)?;
    Ok(version.unwrap_or(0))
}

/// Applies pending migrations to the database at `url` and returns the schema version.
pub async fn migrate(url: &str) -> Result<i64, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(connect_options(url)?)
        .await
        .map_err(db_error)?;
    let v = run_migrations(&pool).await;
    pool.close().await;
    v
}

#[async_trait]
impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn create_job(&self, job: NewJob) -> Result<Created<Job>, StoreError> {
        self.tx(|c| Box::pin(create_job(c, job.clone()))).await
    }

    async fn get_job(&self, id: JobId) -> Result<Job, StoreError> {
        let mut c = self.pool.acquire().await.map_err(db_error)?;
        rows::job(&mut c, id, false)
            .await
            .map_err(db_error)?
            .map(|r| r.job)
            .ok_or_else(|| StoreError::job_not_found(id))
    }

    async fn list_jobs(&self, filter: JobFilter, paging: Paging) -> Result<Page<Job>, StoreError> {
        let mut c = self.pool.acquire().await.map_err(db_error)?;
        rows::list_jobs(&mut c, &filter, &paging)
            .await
            .map_err(db_error)
    }

    async fn set_job_status(
        &self,
        id: JobId,
        status: Status,
        reason: Option<String>,
    ) -> Result<Job, StoreError> {
        self.tx(|c| Box::pin(set_job_status(c, id, status, reason.clone())))
            .await
    }

    async fn add_tasks(&self, job_id: JobId, tasks: Vec<NewTask>) -> Result<Vec<Task>, StoreError> {
        self.tx(|c| Box::pin(add_tasks(c, job_id, tasks.clone())))
            .await
    }

    async fn get_task(&self, job_id: JobId, task_id: TaskId) -> Result<Task, StoreError> {
        let mut c = self.pool.acquire().await.map_err(db_error)?;
        rows::task(&mut c, task_id)
            .await
            .map_err(db_error)?
            .filter(|t| t.job_id == job_id)
            .ok_or_else(|| StoreError::task_not_found(job_id, task_id))
    }

    async fn list_tasks(
        &self,
        job_id: JobId,
        filter: TaskFilter,
        paging: Paging,
    ) -> Result<Page<Task>, StoreError> {
        let mut c = self.pool.acquire().await.map_err(db_error)?;
        if rows::job(&mut c, job_id, false)
            .await
            .map_err(db_error)?
            .is_none()
        {
            return Err(StoreError::job_not_found(job_id));
        }
        rows::list_tasks(&mut c, job_id, &filter, &paging)
            .await
            .map_err(db_error)
    }

    async fn update_tasks(
        &self,
        updates: Vec<TaskUpdate>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
        self.tx(|c| {
            let updates = updates.clone();
            Box::pin(async move { update_tasks(c, &updates).await })
        })
        .await
    }

    async fn history(
        &self,
        scope: HistoryScope,
        after: i64,
        size: u32,
    ) -> Result<Vec<HistoryEvent>, StoreError> {
        let mut c = self.pool.acquire().await.map_err(db_error)?;
        match scope {
            HistoryScope::Job(job_id) => {
                if rows::job(&mut c, job_id, false)
                    .await
                    .map_err(db_error)?
                    .is_none()
                {
                    return Err(StoreError::job_not_found(job_id));
                }
            }
            HistoryScope::Task(job_id, task_id) => {
                let t = rows::task(&mut c, task_id).await.map_err(db_error)?;
                if t.is_none_or(|t| t.job_id != job_id) {
                    return Err(StoreError::task_not_found(job_id, task_id));
                }
            }
        }
        rows::history(&mut c, scope, after, size)
            .await
            .map_err(db_error)
    }

    async fn add_note(&self, note: NewNote) -> Result<HistoryEvent, StoreError> {
        self.tx(|c| Box::pin(add_note(c, note.clone()))).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

// ---------------------------------------------------------------------------------------
// Write operations, each inside `PgStore::tx`.

fn ts(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    t.to_datetime()
}

/// The event kinds that go to the outbox as well as the history.
const PUBLISHED: [EventKind; 3] = [
    EventKind::Created,
    EventKind::TaskAdded,
    EventKind::StatusChanged,
];

async fn append_event(
    c: &mut PgConnection,
    job_id: JobId,
    task_id: Option<TaskId>,
    e: &EventDraft,
    data: Option<&str>,
    now: Timestamp,
) -> TxResult<i64> {
    let published = PUBLISHED.contains(&e.kind);
    // One round trip writes the event and, for published kinds, its outbox row.
    let seq: i64 = sqlx::query_scalar(
        "WITH h AS (
             INSERT INTO history (job_id, task_id, kind, time, from_status, to_status, reason,
                                  message, data, progress_current, progress_total)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::json, $10, $11)
             RETURNING seq
         ), o AS (
             INSERT INTO outbox (seq) SELECT seq FROM h WHERE $12
         )
         SELECT seq FROM h",
    )
    .bind(job_id.as_uuid())
    .bind(task_id.map(|t| *t.as_uuid()))
    .bind(e.kind.as_str())
    .bind(ts(now))
    .bind(e.from.map(Status::code))
    .bind(e.to.map(Status::code))
    .bind(e.reason.as_deref())
    .bind(e.message.as_deref())
    .bind(data)
    .bind(e.progress.map(|p| p.current as i64))
    .bind(e.progress.and_then(|p| p.total).map(|t| t as i64))
    .bind(published)
    .fetch_one(&mut *c)
    .await?;
    Ok(seq)
}

async fn save_job_state(
    c: &mut PgConnection,
    id: JobId,
    s: &JobState,
    now: Timestamp,
) -> TxResult<()> {
    sqlx::query(
        "UPDATE jobs SET status = $2, status_explicit = $3, end_time = $4, tasks_total = $5,
         tasks_pending = $6, tasks_in_progress = $7, tasks_failed = $8, tasks_completed = $9,
         tasks_cancelled = $10, updated_at = $11 WHERE id = $1",
    )
    .bind(id.as_uuid())
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
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Loads and locks a job row: every writer of a job and its tasks goes through here first.
async fn lock_job(c: &mut PgConnection, id: JobId) -> TxResult<JobRow> {
    Ok(rows::job(c, id, true)
        .await?
        .ok_or_else(|| StoreError::job_not_found(id))?)
}

async fn insert_tasks(
    c: &mut PgConnection,
    job_id: JobId,
    tasks: &[NewTask],
    now: Timestamp,
) -> TxResult<Vec<Task>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        let start = t.start_time.unwrap_or(now);
        sqlx::query(
            "INSERT INTO tasks (id, job_id, type, namespace, status, attempt, start_time, meta,
                                timeout_seconds, heartbeat_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 1, $6, $7::json, $8, $9, $9, $9)",
        )
        .bind(t.id.as_uuid())
        .bind(job_id.as_uuid())
        .bind(t.task_type.as_str())
        .bind(t.namespace.as_str())
        .bind(Status::Pending.code())
        .bind(ts(start))
        .bind(t.meta.as_json())
        .bind(t.timeout_seconds)
        .bind(ts(now))
        .execute(&mut *c)
        .await?;
        append_event(
            c,
            job_id,
            Some(t.id),
            &EventDraft::simple(EventKind::TaskAdded),
            None,
            now,
        )
        .await?;
        out.push(added_task(job_id, t, now)?);
    }
    Ok(out)
}

/// Sorts tasks into stored repeats (returned as stored) and new ones; see the SQLite twin.
async fn partition_tasks(
    c: &mut PgConnection,
    job_id: JobId,
    tasks: Vec<NewTask>,
) -> TxResult<Vec<Result<Task, NewTask>>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        let stored = rows::task(c, t.id).await?;
        out.push(classify_task(job_id, t, stored)?);
    }
    Ok(out)
}

async fn create_job(c: &mut PgConnection, new: NewJob) -> TxResult<Created<Job>> {
    let now = Timestamp::now();
    if let Some(existing) = rows::job(c, new.id, false).await? {
        let mut same = new.matches(&existing.job);
        for t in &new.tasks {
            if !same {
                break;
            }
            same = t.id_supplied
                && rows::task(c, t.id)
                    .await?
                    .is_some_and(|stored| t.matches(new.id, &stored));
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
        ))
        .into());
    }
    let state = machine::new_job(new.auto_complete, new.tasks.len() as i64);
    let start = new.start_time.unwrap_or(now);
    // One statement writes the job, its meta index rows (as SQLite's writer does) and the
    // deltas of the stored counts (migrations/postgres/0002_list_performance.sql).
    let (keys, values): (Vec<&str>, Vec<String>) = new.meta.index_entries().unzip();
    sqlx::query(
        "WITH j AS (
             INSERT INTO jobs (id, correlation_id, type, namespace, status, status_explicit,
                               auto_complete, start_time, tasks_total, tasks_pending, meta,
                               created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, false, $6, $7, $8, $8, $9::json, $10, $10)
             RETURNING id, namespace, type, status, start_time
         ), m AS (
             INSERT INTO job_meta (key, value, start_time, job_id)
             SELECT u.key, u.value, j.start_time, j.id
             FROM j, unnest($11::text[], $12::text[]) AS u(key, value)
         ), mc AS (
             INSERT INTO job_meta_count_deltas (key, value, n)
             SELECT u.key, u.value, 1 FROM j, unnest($11::text[], $12::text[]) AS u(key, value)
         )
         INSERT INTO job_count_deltas (namespace, type, status, n)
         SELECT namespace, type, status, 1 FROM j",
    )
    .bind(new.id.as_uuid())
    .bind(new.correlation_id.as_deref())
    .bind(new.job_type.as_str())
    .bind(new.namespace.as_str())
    .bind(state.status.code())
    .bind(new.auto_complete)
    .bind(ts(start))
    .bind(state.counters.total)
    .bind(new.meta.as_json())
    .bind(ts(now))
    .bind(&keys)
    .bind(&values)
    .execute(&mut *c)
    .await?;
    append_event(
        c,
        new.id,
        None,
        &EventDraft::simple(EventKind::Created),
        None,
        now,
    )
    .await?;
    let mut fresh = Vec::with_capacity(new.tasks.len());
    for p in partition_tasks(c, new.id, new.tasks.clone()).await? {
        match p {
            Err(t) => fresh.push(t),
            Ok(existing) => {
                return Err(StoreError::Conflict(format!(
                    "task id {} is already used by job {}",
                    existing.id, existing.job_id
                ))
                .into());
            }
        }
    }
    insert_tasks(c, new.id, &fresh, now).await?;
    let job = rows::job(c, new.id, false)
        .await?
        .ok_or_else(|| StoreError::Internal("created job vanished".into()))?
        .job;
    Ok(Created {
        value: job,
        created: true,
    })
}

async fn add_tasks(
    c: &mut PgConnection,
    job_id: JobId,
    tasks: Vec<NewTask>,
) -> TxResult<Vec<Task>> {
    let now = Timestamp::now();
    let row = lock_job(c, job_id).await?;
    let parts = partition_tasks(c, job_id, tasks).await?;
    let fresh: Vec<NewTask> = parts
        .iter()
        .filter_map(|p| p.as_ref().err().cloned())
        .collect();
    if fresh.is_empty() {
        return Ok(parts.into_iter().filter_map(Result::ok).collect());
    }
    let (state, job_event) = machine::add_tasks(&row.state(), fresh.len() as i64, now)?;
    let mut inserted = insert_tasks(c, job_id, &fresh, now).await?.into_iter();
    let out = parts
        .into_iter()
        .map(|p| match p {
            Ok(existing) => existing,
            Err(_) => inserted.next().expect("one inserted task per new task"),
        })
        .collect();
    save_job_state(c, job_id, &state, now).await?;
    if let Some(e) = job_event {
        append_event(c, job_id, None, &e, None, now).await?;
    }
    Ok(out)
}

/// Applies a batch of task updates with the same five statements whatever its size: lock
/// the jobs and read the tasks (one statement each), run the rules here, then write the
/// changed tasks, the history events with their outbox rows, and the changed jobs (one
/// statement each, over arrays). Items apply in request order, each seeing the changes of
/// the items before it. A refused item (not found, a rule) writes nothing and gets its own
/// error; a database error fails the whole transaction, which `PgStore::tx` retries.
async fn update_tasks(
    c: &mut PgConnection,
    updates: &[TaskUpdate],
) -> TxResult<Vec<Result<Task, StoreError>>> {
    let now = Timestamp::now();
    let mut job_ids: Vec<uuid::Uuid> = updates.iter().map(|u| *u.job_id.as_uuid()).collect();
    job_ids.sort_unstable();
    job_ids.dedup();
    // job id → (state as stored, state after the changes so far)
    let mut jobs: HashMap<JobId, (JobState, JobState)> = rows::jobs_locked(c, &job_ids)
        .await?
        .into_iter()
        .map(|r| (r.job.id, (r.state(), r.state())))
        .collect();
    let task_ids: Vec<uuid::Uuid> = updates.iter().map(|u| *u.task_id.as_uuid()).collect();
    let mut tasks: HashMap<TaskId, Task> = rows::tasks(c, &task_ids)
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    let applied = apply_task_updates(&mut jobs, &mut tasks, updates, now);
    write_tasks(c, applied.changed.iter().map(|id| &tasks[id]), now).await?;
    insert_events(c, applied.events, now).await?;
    write_jobs(
        c,
        jobs.iter()
            .filter(|(_, (stored, current))| stored != current)
            .map(|(id, (_, current))| (*id, current)),
        now,
    )
    .await?;
    Ok(applied.results)
}

/// Up to this many rows are written with one plain statement each; more with one statement
/// over arrays. PostgreSQL plans a statement over arrays anew at every run (its custom plan
/// stays cheaper than the generic one), about half a millisecond each: for the one or two
/// rows of a single update that costs more than the round trips it saves.
const SCALAR_ROWS: usize = 3;

/// Writes tasks' changed state.
async fn write_tasks<'a>(
    c: &mut PgConnection,
    tasks: impl Iterator<Item = &'a Task>,
    now: Timestamp,
) -> TxResult<()> {
    let tasks: Vec<&Task> = tasks.collect();
    // Also the empty case: nothing to write.
    if tasks.len() <= SCALAR_ROWS {
        for t in tasks {
            sqlx::query(
                "UPDATE tasks SET status = $2, attempt = $3, end_time = $4, progress_current = $5,
                 progress_total = $6, error = $7, heartbeat_at = $8, updated_at = $8 WHERE id = $1",
            )
            .bind(t.id.as_uuid())
            .bind(t.status.code())
            .bind(t.attempt)
            .bind(t.end_time.map(ts))
            .bind(t.progress.map(|p| p.current as i64))
            .bind(t.progress.and_then(|p| p.total).map(|t| t as i64))
            .bind(t.error.as_deref())
            .bind(ts(now))
            .execute(&mut *c)
            .await?;
        }
        return Ok(());
    }
    let (mut id, mut status, mut attempt, mut end_time) = (vec![], vec![], vec![], vec![]);
    let (mut current, mut total, mut error) = (vec![], vec![], vec![]);
    for t in tasks {
        id.push(*t.id.as_uuid());
        status.push(t.status.code());
        attempt.push(t.attempt);
        end_time.push(t.end_time.map(ts));
        current.push(t.progress.map(|p| p.current as i64));
        total.push(t.progress.and_then(|p| p.total).map(|t| t as i64));
        error.push(t.error.clone());
    }
    sqlx::query(
        "UPDATE tasks t SET status = v.status, attempt = v.attempt, end_time = v.end_time,
             progress_current = v.progress_current, progress_total = v.progress_total,
             error = v.error, heartbeat_at = $8, updated_at = $8
         FROM unnest($1::uuid[], $2::int2[], $3::int8[], $4::timestamptz[], $5::int8[],
                     $6::int8[], $7::text[])
             AS v(id, status, attempt, end_time, progress_current, progress_total, error)
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
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Writes jobs' changed state.
async fn write_jobs<'a>(
    c: &mut PgConnection,
    jobs: impl Iterator<Item = (JobId, &'a JobState)>,
    now: Timestamp,
) -> TxResult<()> {
    let jobs: Vec<(JobId, &JobState)> = jobs.collect();
    if jobs.len() <= SCALAR_ROWS {
        for (id, s) in jobs {
            save_job_state(c, id, s, now).await?;
        }
        return Ok(());
    }
    let (mut id, mut status, mut explicit, mut end_time) = (vec![], vec![], vec![], vec![]);
    let mut counts: [Vec<i64>; 6] = Default::default();
    for (job_id, s) in jobs {
        id.push(*job_id.as_uuid());
        status.push(s.status.code());
        explicit.push(s.explicit);
        end_time.push(s.end_time.map(ts));
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
             tasks_completed = v.completed, tasks_cancelled = v.cancelled, updated_at = $11
         FROM unnest($1::uuid[], $2::int2[], $3::bool[], $4::timestamptz[], $5::int8[],
                     $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[])
             AS v(id, status, explicit, end_time, total, pending, in_progress, failed,
                  completed, cancelled)
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
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Appends history events in order, with the outbox rows of the published kinds.
async fn insert_events(
    c: &mut PgConnection,
    events: Vec<(JobId, Option<TaskId>, EventDraft)>,
    now: Timestamp,
) -> TxResult<()> {
    if events.len() <= SCALAR_ROWS {
        for (job_id, task_id, e) in &events {
            append_event(c, *job_id, *task_id, e, None, now).await?;
        }
        return Ok(());
    }
    let mut job_id = Vec::with_capacity(events.len());
    let (mut task_id, mut kind, mut from, mut to) = (vec![], vec![], vec![], vec![]);
    let (mut reason, mut message, mut current, mut total) = (vec![], vec![], vec![], vec![]);
    for (j, t, e) in events {
        job_id.push(*j.as_uuid());
        task_id.push(t.map(|t| *t.as_uuid()));
        kind.push(e.kind.as_str());
        from.push(e.from.map(Status::code));
        to.push(e.to.map(Status::code));
        reason.push(e.reason);
        message.push(e.message);
        current.push(e.progress.map(|p| p.current as i64));
        total.push(e.progress.and_then(|p| p.total).map(|t| t as i64));
    }
    sqlx::query(
        "WITH h AS (
                 INSERT INTO history (job_id, task_id, kind, time, from_status, to_status,
                                      reason, message, progress_current, progress_total)
                 SELECT job_id, task_id, kind, $10, from_status, to_status, reason, message,
                        progress_current, progress_total
                 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int2[], $5::int2[],
                             $6::text[], $7::text[], $8::int8[], $9::int8[])
                     WITH ORDINALITY AS v(job_id, task_id, kind, from_status, to_status,
                                          reason, message, progress_current, progress_total, n)
                 ORDER BY n
                 RETURNING seq, kind
             )
             INSERT INTO outbox (seq) SELECT seq FROM h WHERE kind = ANY($11)",
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
    .bind(PUBLISHED.map(EventKind::as_str).to_vec())
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn set_job_status(
    c: &mut PgConnection,
    id: JobId,
    to: Status,
    reason: Option<String>,
) -> TxResult<Job> {
    let now = Timestamp::now();
    let mut row = lock_job(c, id).await?;
    let out = machine::set_job_status(&row.state(), to, reason.clone(), now)?;
    let Some(job_event) = out.job_event else {
        return Ok(row.job);
    };
    if out.cancel_open_tasks {
        // Old statuses come from a self-join: RETURNING only sees the new row.
        let cancelled: Vec<(uuid::Uuid, i16)> = sqlx::query_as(
            "UPDATE tasks t SET status = $2, end_time = $3, updated_at = $3
             FROM tasks old
             WHERE t.id = old.id AND t.job_id = $1 AND t.status IN ($4, $5)
             RETURNING t.id, old.status",
        )
        .bind(id.as_uuid())
        .bind(Status::Cancelled.code())
        .bind(ts(now))
        .bind(Status::Pending.code())
        .bind(Status::InProgress.code())
        .fetch_all(&mut *c)
        .await?;
        for (task_id, from) in cancelled {
            let from = Status::from_code(from.into()).unwrap_or(Status::Pending);
            let e = EventDraft::status(from, Status::Cancelled, reason.clone());
            append_event(c, id, Some(TaskId::from_uuid(task_id)), &e, None, now).await?;
        }
    }
    save_job_state(c, id, &out.job, now).await?;
    append_event(c, id, None, &job_event, None, now).await?;
    row.apply(&out.job, now);
    Ok(row.job)
}

async fn add_note(c: &mut PgConnection, note: NewNote) -> TxResult<HistoryEvent> {
    let now = Timestamp::now();
    if rows::job(c, note.job_id, false).await?.is_none() {
        return Err(StoreError::job_not_found(note.job_id).into());
    }
    if let Some(task_id) = note.task_id
        && rows::task(c, task_id)
            .await?
            .is_none_or(|t| t.job_id != note.job_id)
    {
        return Err(StoreError::task_not_found(note.job_id, task_id).into());
    }
    let draft = EventDraft {
        message: Some(note.message.clone()),
        ..EventDraft::simple(EventKind::Note)
    };
    let seq = append_event(
        c,
        note.job_id,
        note.task_id,
        &draft,
        note.data.as_deref(),
        now,
    )
    .await?;
    Ok(rows::event(c, seq).await?)
}

/// Creates a new, empty database on the server `admin_url` points at and returns its URL.
/// For tests and benchmarks that each want a database of their own.
pub async fn scratch_database(admin_url: &str, prefix: &str) -> Result<String, StoreError> {
    use sqlx::Connection;
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect_with(&connect_options(admin_url)?)
        .await
        .map_err(db_error)?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .map_err(db_error)?;
    let _ = conn.close().await;
    let mut url = url_without_database(admin_url);
    url.push('/');
    url.push_str(&name);
    Ok(url)
}

/// `postgres://user@host:port/db?x=y` → `postgres://user@host:port` (query dropped).
fn url_without_database(url: &str) -> String {
    let no_query = url.split('?').next().unwrap_or(url);
    let scheme_end = no_query.find("://").map(|i| i + 3).unwrap_or(0);
    match no_query[scheme_end..].find('/') {
        Some(slash) => no_query[..scheme_end + slash].to_owned(),
        None => no_query.to_owned(),
    }
}

/// Drops a database made by [`scratch_database`] (connections to it are closed first).
pub async fn drop_scratch_database(admin_url: &str, url: &str) -> Result<(), StoreError> {
    use sqlx::Connection;
    let name = url
        .split('?')
        .next()
        .unwrap_or(url)
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let mut conn = sqlx::PgConnection::connect_with(&connect_options(admin_url)?)
        .await
        .map_err(db_error)?;
    let dropped = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
        name.replace('"', "\"\"")
    )))
    .execute(&mut conn)
    .await
    .map_err(db_error);
    let _ = conn.close().await;
    dropped.map(drop)
}
