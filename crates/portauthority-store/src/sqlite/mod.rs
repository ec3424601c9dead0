//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go through a single writer thread that owns the only writing connection. It
//! takes every request queued at the moment, runs each in its own savepoint inside one
//! transaction, commits once (one fsync for the whole group), and only then answers each
//! request. So concurrent writers never meet `database is locked`, and a response is never
//! sent before its write is durable. Reads run on a small pool of read-only connections,
//! which WAL lets proceed while the writer writes.

mod checkpoint;
mod keys;
mod lists;
mod migrate;
mod pool;
mod rows;
pub(crate) mod seed;
mod webhooks;
mod write;
mod writer;

use crate::background::Loop;
use crate::feed::{FeedEvent, OutboxItem, Position};
use crate::once::Answer;
use crate::once::{Once, Ran};
use crate::query::{HistoryScope, JobFilter, Page, Paging, TaskFilter};
use crate::webhooks::{AttemptEntry, AttemptRecord, Delivery, NewDelivery, NewWebhook, Webhook};
use crate::{Created, NewNote, Store, StoreError, TaskUpdate};
use async_trait::async_trait;
use portauthority_core::api::{HistoryEvent, Job, NewJob, Task};
use portauthority_core::plan;
use portauthority_core::{
    AddTasks, Command, Env, JobId, Scope, SetJobStatus, Status, TaskId, Timestamp,
};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use migrate::migrate;

/// Options read from the URL's query string.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    path: PathBuf,
    /// `FULL` (default) fsyncs every commit; `NORMAL` is opt-in (`?synchronous=normal`):
    /// faster, but the last commits can be lost on power failure (not on a crash).
    synchronous: &'static str,
}

/// WAL pages after which the writer checkpoints and the WAL starts over: 64 MiB of WAL at
/// 4 KiB pages. Measured at 16 concurrent writers: SQLite's default (1000 pages) means a
/// checkpoint stall every ~20 ms, and costs about a fifth of the status-update rate. (Small
/// in unit tests, so that a test can write many times the WAL's bound.)
const WAL_RESTART_PAGES: u32 = if cfg!(test) { 256 } else { 16_384 };

/// Whether `url` names a SQLite database.
pub fn handles(url: &str) -> bool {
    url.starts_with("sqlite:")
}

pub(crate) fn parse_url(url: &str) -> Result<Options, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Config(format!("not a sqlite URL: {url:?}")))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Config(
            "a SQLite store needs a file path, e.g. sqlite://portauthority.db".into(),
        ));
    }
    let mut opts = Options {
        path: PathBuf::from(path),
        synchronous: "FULL",
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("synchronous", v)) if v.eq_ignore_ascii_case("full") => opts.synchronous = "FULL",
            Some(("synchronous", v)) if v.eq_ignore_ascii_case("normal") => {
                opts.synchronous = "NORMAL"
            }
            _ => {
                return Err(StoreError::Config(format!(
                    "unknown SQLite URL option {pair:?} (supported: synchronous=full|normal)"
                )));
            }
        }
    }
    Ok(opts)
}

pub(crate) fn open_connection(opts: &Options, read_only: bool) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(&opts.path, flags)
        .map_err(|e| StoreError::Config(format!("cannot open {}: {e}", opts.path.display())))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(internal)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {};
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16000;",
        opts.synchronous
    ))
    .map_err(|e| StoreError::Config(format!("cannot set up {}: {e}", opts.path.display())))?;
    if read_only {
        conn.execute_batch("PRAGMA query_only = ON;")
            .map_err(internal)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

pub(crate) fn internal(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::SystemIoFailure
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Internal(other.to_string()),
    }
}

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    writer: writer::Writer,
    checkpointer: Arc<checkpoint::Checkpointer>,
    readers: pool::ReadPool,
    path: PathBuf,
    env: Env,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url`, applies migrations, and starts
    /// the writer thread.
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(url, crate::system::env()).await
    }

    /// [`SqliteStore::open`] with the caller's clock and ids.
    pub async fn open_with(url: &str, env: Env) -> Result<SqliteStore, StoreError> {
        let opts = parse_url(url)?;
        if let Some(dir) = opts.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Config(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let o = opts.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            let mut conn = open_connection(&o, false)?;
            migrate::apply(&mut conn)?;
            // The background loop (checkpoint.rs) copies WAL pages as they come; the
            // writer's own automatic checkpoint only finishes the job (the last pages, the
            // syncs) so that the WAL can start over. It stalls every write queued behind
            // it, so it runs once per WAL_RESTART_PAGES rather than SQLite's 1000.
            conn.execute_batch(&format!(
                "PRAGMA cache_size = -32000; PRAGMA wal_autocheckpoint = {WAL_RESTART_PAGES};"
            ))
            .map_err(internal)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))??;
        let readers = pool::ReadPool::new(opts.clone(), reader_count())?;
        let writer = writer::Writer::start(conn)?;
        // A database that opens but cannot be written (a read-only file or mount) fails
        // here, at start, rather than answering every write with an error.
        writer.ping().await.map_err(|e| {
            StoreError::Config(format!(
                "cannot write to the database at {}: {e}",
                opts.path.display()
            ))
        })?;
        let checkpointer = Arc::new(checkpoint::Checkpointer::new(&opts)?);
        Ok(SqliteStore {
            writer,
            checkpointer,
            readers,
            path: opts.path,
            env,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn reader_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .clamp(4, 16)
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn env(&self) -> &Env {
        &self.env
    }

    async fn create_job(&self, job: NewJob) -> Result<Created<Job>, StoreError> {
        let now = self.env.now();
        self.writer
            .run(move |tx| write::create_job(tx, &Scope::all(), job, now))
            .await
    }

    async fn get_job_in(&self, scope: &Scope, id: JobId) -> Result<Job, StoreError> {
        let scope = scope.clone();
        let now = self.env.now();
        self.readers
            .run(move |c| {
                plan::visible(&scope, rows::job(c, id, now)?, |r| &r.job.namespace)
                    .map(|r| r.job)
                    .ok_or_else(|| StoreError::job_not_found(id))
            })
            .await
    }

    async fn list_jobs(&self, filter: JobFilter, paging: Paging) -> Result<Page<Job>, StoreError> {
        let now = self.env.now();
        self.readers
            .run(move |c| lists::list_jobs(c, &filter, &paging, now))
            .await
    }

    async fn run_set_job_status(&self, cmd: SetJobStatus) -> Result<Job, StoreError> {
        let now = self.env.now();
        self.writer
            .run(move |tx| write::set_job_status(tx, &Scope::all(), cmd, now))
            .await
    }

    async fn run_add_tasks(&self, cmd: AddTasks) -> Result<Vec<Task>, StoreError> {
        let now = self.env.now();
        self.writer
            .run(move |tx| write::add_tasks(tx, &Scope::all(), cmd, now))
            .await
    }

    async fn get_task_in(
        &self,
        scope: &Scope,
        job_id: JobId,
        task_id: TaskId,
    ) -> Result<Task, StoreError> {
        let scope = scope.clone();
        self.readers
            .run(move |c| {
                plan::visible(&scope, rows::job_head(c, job_id)?, |h| &h.namespace)
                    .and(rows::task(c, task_id)?)
                    .filter(|t| t.job_id == job_id)
                    .ok_or_else(|| StoreError::task_not_found(job_id, task_id))
            })
            .await
    }

    async fn list_tasks_in(
        &self,
        scope: &Scope,
        job_id: JobId,
        filter: TaskFilter,
        paging: Paging,
    ) -> Result<Page<Task>, StoreError> {
        let scope = scope.clone();
        self.readers
            .run(move |c| lists::list_tasks(c, &scope, job_id, &filter, &paging))
            .await
    }

    async fn update_tasks(
        &self,
        updates: Vec<TaskUpdate>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
        let now = self.env.now();
        self.writer
            .run(move |tx| write::update_tasks(tx, &Scope::all(), updates, now))
            .await
    }

    async fn history_in(
        &self,
        scope: &Scope,
        of: HistoryScope,
        after: i64,
        size: u32,
    ) -> Result<Vec<HistoryEvent>, StoreError> {
        let scope = scope.clone();
        self.readers
            .run(move |c| lists::history(c, &scope, of, after, size))
            .await
    }

    async fn add_note(&self, note: NewNote) -> Result<HistoryEvent, StoreError> {
        let now = self.env.now();
        self.writer
            .run(move |tx| write::add_note(tx, &Scope::all(), note, now))
            .await
    }

    async fn run_in(&self, scope: &Scope, cmd: Command) -> Result<Answer, StoreError> {
        let (scope, now) = (scope.clone(), self.env.now());
        self.writer
            .run(move |tx| write::apply(tx, &scope, cmd, now))
            .await
    }

    async fn run_once_in(
        &self,
        scope: &Scope,
        once: Once,
        cmd: Command,
    ) -> Result<Ran, StoreError> {
        let (scope, now) = (scope.clone(), self.env.now());
        self.writer
            .run(move |tx| write::run_once(tx, &scope, &once, cmd, now))
            .await
    }

    async fn run_once_batch(
        &self,
        commands: Vec<(Once, Command)>,
    ) -> Result<Vec<Result<Ran, StoreError>>, StoreError> {
        let now = self.env.now();
        self.writer
            .run(move |tx| Ok(write::run_once_batch(tx, &Scope::all(), commands, now)))
            .await
    }

    async fn feed(&self, after: Position, limit: u32) -> Result<Vec<FeedEvent>, StoreError> {
        self.readers.run(move |c| rows::feed(c, after, limit)).await
    }

    async fn feed_head(&self) -> Result<Position, StoreError> {
        self.readers.run(rows::feed_head).await
    }

    fn feed_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.writer.committed()
    }

    async fn claim_outbox(
        &self,
        relay: &str,
        max_jobs: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let relay = relay.to_owned();
        let now = self.env.now();
        self.writer
            .run_without_events(move |tx| write::claim_outbox(tx, &relay, max_jobs, lease, now))
            .await
    }

    async fn ack_outbox(&self, relay: &str, seqs: &[i64]) -> Result<(), StoreError> {
        let (relay, seqs) = (relay.to_owned(), seqs.to_vec());
        self.writer
            .run_without_events(move |tx| write::ack_outbox(tx, &relay, &seqs))
            .await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.readers.run(rows::outbox_backlog).await
    }

    async fn stats(&self) -> Result<crate::Stats, StoreError> {
        let mut stats = self.readers.run(rows::stats).await?;
        stats.writer_queue = Some(self.writer.queued());
        Ok(stats)
    }

    async fn due_tasks(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(JobId, TaskId)>, StoreError> {
        self.readers
            .run(move |c| lists::due_tasks(c, now, limit))
            .await
    }

    async fn due_jobs(&self, now: Timestamp, limit: u32) -> Result<Vec<JobId>, StoreError> {
        self.readers
            .run(move |c| lists::due_jobs(c, now, limit))
            .await
    }

    async fn delete_expired_jobs(
        &self,
        cutoffs: &[(Status, Timestamp)],
        limit: u32,
    ) -> Result<u64, StoreError> {
        let cutoffs = cutoffs.to_vec();
        self.writer
            .run_without_events(move |tx| write::delete_expired_jobs(tx, &cutoffs, limit))
            .await
    }

    async fn create_key(&self, key: crate::StoredKey) -> Result<(), StoreError> {
        self.writer
            .run_without_events(move |tx| keys::create(tx, &key))
            .await
    }

    async fn list_keys(&self) -> Result<Vec<crate::StoredKey>, StoreError> {
        self.readers.run(keys::list).await
    }

    async fn find_key(&self, id: &str) -> Result<Option<crate::StoredKey>, StoreError> {
        let id = id.to_owned();
        self.readers.run(move |c| keys::find(c, &id)).await
    }

    async fn has_keys(&self) -> Result<bool, StoreError> {
        self.readers.run(keys::any).await
    }

    async fn revoke_key(&self, id: &str, at: Timestamp) -> Result<crate::StoredKey, StoreError> {
        let id = id.to_owned();
        self.writer
            .run_without_events(move |tx| keys::revoke(tx, &id, at))
            .await
    }

    async fn touch_key(&self, id: &str, at: Timestamp) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.writer
            .run_without_events(move |tx| keys::touch(tx, &id, at))
            .await
    }

    async fn create_webhook(&self, new: NewWebhook) -> Result<Webhook, StoreError> {
        self.writer
            .run_without_events(move |tx| webhooks::create(tx, new))
            .await
    }

    async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        self.readers.run(webhooks::list).await
    }

    async fn get_webhook(&self, id: uuid::Uuid) -> Result<Webhook, StoreError> {
        self.readers.run(move |c| webhooks::get(c, id)).await
    }

    async fn delete_webhook(&self, id: uuid::Uuid) -> Result<(), StoreError> {
        self.writer
            .run_without_events(move |tx| webhooks::delete(tx, id))
            .await
    }

    async fn disable_webhook(&self, id: uuid::Uuid, reason: String) -> Result<(), StoreError> {
        self.writer
            .run_without_events(move |tx| webhooks::disable(tx, id, &reason))
            .await
    }

    async fn enqueue_deliveries(&self, events: Vec<NewDelivery>) -> Result<u64, StoreError> {
        let env = self.env.clone();
        self.writer
            .run_without_events(move |tx| {
                webhooks::enqueue(tx, &events, env.ids.as_ref(), env.now())
            })
            .await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.writer
            .run_without_events(move |tx| webhooks::claim(tx, now, limit, lease))
            .await
    }

    async fn record_attempt(&self, attempt: AttemptRecord) -> Result<(), StoreError> {
        self.writer
            .run_without_events(move |tx| webhooks::record(tx, &attempt))
            .await
    }

    async fn list_deliveries(
        &self,
        webhook: uuid::Uuid,
        limit: u32,
    ) -> Result<Vec<AttemptEntry>, StoreError> {
        self.readers
            .run(move |c| webhooks::deliveries(c, webhook, limit))
            .await
    }

    async fn retry_delivery(
        &self,
        webhook: uuid::Uuid,
        delivery: uuid::Uuid,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run_without_events(move |tx| webhooks::retry(tx, webhook, delivery, now))
            .await
    }

    fn background(&self) -> Vec<Arc<dyn Loop>> {
        vec![self.checkpointer.clone()]
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.readers
            .run(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(internal))
            .await?;
        self.writer.ping().await
    }

    async fn close(&self) {
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portauthority_core::api::{CreateJobRequest, CreateTaskRequest};
    use portauthority_core::validate::Limits;

    /// The background checkpoints and the writer's rare one keep the WAL bounded: under a
    /// steady stream of writes it starts over instead of growing with the data.
    #[tokio::test]
    async fn the_wal_stays_bounded_while_the_database_grows() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("wal.db");
        let wal = dir.path().join("wal.db-wal");
        let store = SqliteStore::open(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let limits = Limits::default();
        let job = CreateJobRequest {
            job_type: Some("wal.test".into()),
            namespace: Some("com.example.wal".into()),
            ..Default::default()
        };
        let job = store
            .create_job(job.validate(&limits, &crate::system::SystemIds).unwrap())
            .await
            .unwrap()
            .value;
        // One frame is a page plus a 24-byte header. The WAL may run past the threshold by a
        // few commits (a batch here is well under 200 pages): the writer's checkpoint is
        // retried after every commit, and one that meets the background thread's does
        // nothing that time.
        let frame = 4096 + 24;
        let bound = 32 + (WAL_RESTART_PAGES as u64 + 600) * frame;
        let mut largest = 0;
        for _ in 0..120 {
            let tasks = (0..200)
                .map(|_| {
                    let t = CreateTaskRequest {
                        task_type: Some("wal.step".into()),
                        namespace: Some("com.example.wal.tasks".into()),
                        meta: Some(serde_json::json!({"note": "x".repeat(64)})),
                        ..Default::default()
                    };
                    t.validate(&limits, &crate::system::SystemIds).unwrap()
                })
                .collect();
            store.add_tasks(job.id, tasks).await.unwrap();
            largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        }
        let data = std::fs::metadata(&db).unwrap().len();
        assert!(
            data > 3 * bound,
            "the test must write several times the WAL's bound ({data} bytes of data)"
        );
        assert!(
            largest <= bound,
            "the WAL grew to {largest} bytes, over its bound of {bound}"
        );
        store.close().await;
    }
}
