//! Storage for Port Authority: the [`Store`] trait and its implementations.
//!
//! The trait speaks the domain's language only: no SQL, no dialect, no connection types.
//! Each implementation loads rows, asks `portauthority_core::machine` what a command does,
//! and writes the result (state, counters, history, outbox) in one transaction. Every
//! method that returns `Ok` for a write has committed it durably.

mod error;
pub mod postgres;
mod query;
pub mod seed;
pub mod sqlite;
mod state;

use async_trait::async_trait;
use portauthority_core::api::{HistoryEvent, Job, NewJob, NewTask, Progress, Task};
use portauthority_core::{JobId, Status, TaskChange, TaskId};
use std::sync::Arc;

pub use error::StoreError;
pub use query::{Cursor, HistoryScope, JobFilter, Page, Paging, SortValue, TaskFilter};

/// A job as created, and whether this call created it (false: it already existed with the
/// same content, and this is the stored one).
#[derive(Clone, Debug)]
pub struct Created<T> {
    pub value: T,
    pub created: bool,
}

/// A status change or heartbeat for one task.
#[derive(Clone, Debug)]
pub struct TaskUpdate {
    pub job_id: JobId,
    pub task_id: TaskId,
    pub change: TaskChange,
}

/// A note a client appends to a job's (or task's) history.
#[derive(Clone, Debug)]
pub struct NewNote {
    pub job_id: JobId,
    pub task_id: Option<TaskId>,
    pub message: String,
    /// Compact JSON, already validated.
    pub data: Option<String>,
}

/// The persistence port of the service.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which kind of store this is, for logs (`sqlite`, `postgres`).
    fn kind(&self) -> &'static str;

    /// Registers a job and its initial tasks atomically. Idempotent on the job id.
    async fn create_job(&self, job: NewJob) -> Result<Created<Job>, StoreError>;

    async fn get_job(&self, id: JobId) -> Result<Job, StoreError>;

    async fn list_jobs(&self, filter: JobFilter, paging: Paging) -> Result<Page<Job>, StoreError>;

    /// Sets a job's status explicitly (`completed`, `failed`, `cancelled`).
    async fn set_job_status(
        &self,
        id: JobId,
        status: Status,
        reason: Option<String>,
    ) -> Result<Job, StoreError>;

    /// Adds tasks to a job, all or none. Idempotent on each task id.
    async fn add_tasks(&self, job_id: JobId, tasks: Vec<NewTask>) -> Result<Vec<Task>, StoreError>;

    async fn get_task(&self, job_id: JobId, task_id: TaskId) -> Result<Task, StoreError>;

    async fn list_tasks(
        &self,
        job_id: JobId,
        filter: TaskFilter,
        paging: Paging,
    ) -> Result<Page<Task>, StoreError>;

    /// Applies task updates, each on its own: one failing leaves the others applied. The
    /// outer error is for a failure of the whole call (store unavailable).
    async fn update_tasks(
        &self,
        updates: Vec<TaskUpdate>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError>;

    /// Reads history in `seq` order after `after`, at most `size` events.
    async fn history(
        &self,
        scope: HistoryScope,
        after: i64,
        size: u32,
    ) -> Result<Vec<HistoryEvent>, StoreError>;

    async fn add_note(&self, note: NewNote) -> Result<HistoryEvent, StoreError>;

    /// Succeeds when the store can serve requests.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Finishes queued writes and releases the database.
    async fn close(&self);
}

impl TaskUpdate {
    pub fn status(job_id: JobId, task_id: TaskId, to: Status) -> TaskUpdate {
        TaskUpdate {
            job_id,
            task_id,
            change: TaskChange::Status {
                to,
                reason: None,
                error: None,
                progress: None,
            },
        }
    }

    pub fn heartbeat(job_id: JobId, task_id: TaskId, progress: Option<Progress>) -> TaskUpdate {
        TaskUpdate {
            job_id,
            task_id,
            change: TaskChange::Heartbeat {
                progress,
                message: None,
            },
        }
    }
}

/// Opens the store a database URL names and brings its schema up to date.
///
/// `sqlite://path/to/file.db` (created if missing) is the embedded default;
/// `postgres://user@host/db` is the scale-out store.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if sqlite::handles(url) {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if postgres::handles(url) {
        Ok(Arc::new(postgres::PgStore::open(url).await?))
    } else {
        Err(unsupported(url))
    }
}

/// Applies pending migrations and returns the schema version.
pub async fn migrate(url: &str) -> Result<i64, StoreError> {
    if sqlite::handles(url) {
        sqlite::migrate(url).await
    } else if postgres::handles(url) {
        postgres::migrate(url).await
    } else {
        Err(unsupported(url))
    }
}

fn unsupported(url: &str) -> StoreError {
    StoreError::Config(format!(
        "unsupported database URL {url:?}: expected sqlite://PATH or postgres://USER@HOST/DATABASE"
    ))
}
