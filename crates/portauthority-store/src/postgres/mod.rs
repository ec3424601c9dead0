//! The scale-out store: PostgreSQL through a connection pool.
//!
//! Any number of processes share one database; nothing lives in a process that another
//! needs. Every write is one short transaction (`write.rs`) that first locks the job row,
//! so the counters, the job's derived status and the task change together. Serialization
//! failures, deadlocks and races on a unique key are retried here and never reach a
//! client. Reads map rows in `rows.rs`; the feed and the outbox live in `feed.rs`, the
//! folding of job counts in `counts.rs`, the bulk seed loader in `seed.rs`.

mod counts;
mod feed;
mod lists;
mod rows;
pub(crate) mod seed;
mod write;

use crate::background::Loop;
use crate::feed::{FeedEvent, OutboxItem, Position};
use crate::query::{HistoryScope, JobFilter, Page, Paging, TaskFilter};
use crate::{Created, NewNote, Store, StoreError, TaskUpdate};
use async_trait::async_trait;
use portauthority_core::api::{HistoryEvent, Job, NewJob, Task};
use portauthority_core::{AddTasks, Env, JobId, SetJobStatus, TaskId};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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
    /// The transaction read rows from two moments of a concurrent commit (each statement
    /// has its own snapshot): run it again.
    Race(&'static str),
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
    background: PgPool,
    env: Env,
    /// Bumped after each commit of this process (the notifier tells the others).
    local: watch::Sender<u64>,
    /// Bumped after each commit of this process and each notification of another.
    signal: watch::Sender<u64>,
}

pub(crate) use counts::FOLD_COUNTS_SQL;
pub use counts::fold_counts;

pub(crate) fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("bad PostgreSQL URL: {e}")))
}

impl PgStore {
    /// Connects, applies migrations, and returns the store.
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        PgStore::open_with(url, crate::system::env()).await
    }

    /// [`PgStore::open`] with the caller's clock and ids.
    pub async fn open_with(url: &str, env: Env) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(pool_size())
            .min_connections(0)
            // While the database is down, requests fail fast with 503 instead of hanging.
            .acquire_timeout(Duration::from_secs(2))
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(connect_options(url)?);
        // The background loops (count folding, the feed's notifier and listener) have
        // connections of their own: the listener holds one for good, and none of them may
        // take a connection a request is waiting for.
        let background = PgPoolOptions::new()
            .max_connections(3)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(connect_options(url)?);
        run_migrations(&pool).await?;
        Ok(PgStore {
            pool,
            background,
            env,
            local: watch::channel(0).0,
            signal: watch::channel(0).0,
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
                    Ok(()) => {
                        self.local.send_modify(|n| *n += 1);
                        self.signal.send_modify(|n| *n += 1);
                        return Ok(v);
                    }
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
                Err(TxError::Race(what)) if attempt < MAX_ATTEMPTS => {
                    let _ = tx.rollback().await;
                    tracing::debug!(attempt, what, "retrying transaction after a race");
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(TxError::Race(what)) => {
                    let _ = tx.rollback().await;
                    return Err(StoreError::Unavailable(format!("{what}: too many retries")));
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
        let now = self.env.now();
        self.tx(|c| Box::pin(write::create_job(c, job.clone(), now)))
            .await
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
        lists::list_jobs(&mut c, &filter, &paging)
            .await
            .map_err(db_error)
    }

    async fn run_set_job_status(&self, cmd: SetJobStatus) -> Result<Job, StoreError> {
        let now = self.env.now();
        self.tx(|c| Box::pin(write::set_job_status(c, cmd.clone(), now)))
            .await
    }

    async fn run_add_tasks(&self, cmd: AddTasks) -> Result<Vec<Task>, StoreError> {
        let now = self.env.now();
        self.tx(|c| Box::pin(write::add_tasks(c, cmd.clone(), now)))
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
        lists::list_tasks(&mut c, job_id, &filter, &paging)
            .await
            .map_err(db_error)
    }

    async fn update_tasks(
        &self,
        updates: Vec<TaskUpdate>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
        let now = self.env.now();
        self.tx(|c| {
            let updates = updates.clone();
            Box::pin(async move { write::update_tasks(c, &updates, now).await })
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
        lists::history(&mut c, scope, after, size)
            .await
            .map_err(db_error)
    }

    async fn add_note(&self, note: NewNote) -> Result<HistoryEvent, StoreError> {
        let now = self.env.now();
        self.tx(|c| Box::pin(write::add_note(c, note.clone(), now)))
            .await
    }

    async fn feed(&self, after: Position, limit: u32) -> Result<Vec<FeedEvent>, StoreError> {
        let mut c = self.pool.acquire().await.map_err(db_error)?;
        feed::read(&mut c, after, limit).await.map_err(db_error)
    }

    fn feed_signal(&self) -> watch::Receiver<u64> {
        self.signal.subscribe()
    }

    async fn claim_outbox(
        &self,
        relay: &str,
        max_jobs: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let now = self.env.now();
        self.tx(|c| {
            let relay = relay.to_owned();
            Box::pin(async move { Ok(feed::claim(c, &relay, max_jobs, lease, now).await?) })
        })
        .await
    }

    async fn ack_outbox(&self, relay: &str, seqs: &[i64]) -> Result<(), StoreError> {
        self.tx(|c| {
            let (relay, seqs) = (relay.to_owned(), seqs.to_vec());
            Box::pin(async move { Ok(feed::ack(c, &relay, &seqs).await?) })
        })
        .await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        feed::backlog(&self.pool).await.map_err(db_error)
    }

    fn background(&self) -> Vec<Arc<dyn Loop>> {
        vec![
            Arc::new(counts::CountFolder {
                pool: self.background.clone(),
            }),
            Arc::new(feed::Notifier {
                pool: self.background.clone(),
                local: tokio::sync::Mutex::new(self.local.subscribe()),
                pending: Default::default(),
            }),
            Arc::new(feed::Listener {
                pool: self.background.clone(),
                signal: self.signal.clone(),
                listener: tokio::sync::Mutex::new(None),
            }),
        ]
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn close(&self) {
        self.background.close().await;
        self.pool.close().await;
    }
}
