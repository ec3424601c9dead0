//! Storage for Port Authority: the [`Store`] trait and its implementations.
//!
//! The trait speaks the domain's language only: no SQL, no dialect, no connection types.
//! Each implementation loads the rows a command names, hands them to the command's planner
//! (`portauthority_core::plan`), and executes the plan it returns (state, counters, history,
//! outbox) in one transaction: a store maps rows and runs SQL, it never decides. Every
//! method that returns `Ok` for a write has committed it durably.

pub mod background;
mod error;
pub mod feed;
pub mod keys;
pub mod metrics;
pub mod once;
pub mod postgres;
mod query;
pub mod ratelimit;
pub mod relay;
pub mod retention;
pub mod seed;
pub mod sqlite;
pub mod stats;
pub mod sweeper;
pub mod system;
pub mod webhooks;

use async_trait::async_trait;
use portauthority_core::api::{HistoryEvent, Job, NewJob, NewTask, Task};
use portauthority_core::{
    AddTasks, Command, Env, JobId, Scope, SetJobStatus, Status, TaskId, Timestamp,
};
use std::sync::Arc;
use std::time::Duration;

pub use background::Loop;
pub use error::StoreError;
pub use feed::{FeedEvent, OutboxItem, Position};
pub use keys::StoredKey;
pub use once::{Answer, Once, Ran};
pub use portauthority_core::plan::Created;
pub use portauthority_core::{NewNote, TaskUpdate};
pub use query::{Cursor, HistoryScope, JobFilter, Page, Paging, SortValue, TaskFilter};
pub use stats::{PoolStats, Stats};
pub use webhooks::{
    AttemptEntry, AttemptRecord, Delivery, DeliveryState, NewDelivery, NewWebhook, Next, Webhook,
};

/// The persistence port of the service.
///
/// Scopes: the `*_in` methods (and [`JobFilter::scope`]) act as a caller whose key sees the
/// namespaces of a [`Scope`]: the command's planner treats a job outside it as missing
/// (404) and refuses to create in a namespace outside it (403), and list queries leave such
/// jobs out in SQL. Every other method acts with [`Scope::all`]: those are for trusted
/// callers (the bus consumer, which is trusted like the database; the background loops;
/// tests). The HTTP server uses only the scoped ones.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which kind of store this is, for logs (`sqlite`, `postgres`).
    fn kind(&self) -> &'static str;

    /// The clock and id source the store stamps its writes with. Background loops read the
    /// time from it too, so that a test's `ManualClock` moves them all.
    fn env(&self) -> &Env;

    /// Registers a job and its initial tasks atomically. Idempotent on the job id.
    async fn create_job(&self, job: NewJob) -> Result<Created<Job>, StoreError>;

    /// A job, if `scope` sees it.
    async fn get_job_in(&self, scope: &Scope, id: JobId) -> Result<Job, StoreError>;

    async fn get_job(&self, id: JobId) -> Result<Job, StoreError> {
        self.get_job_in(&Scope::all(), id).await
    }

    async fn list_jobs(&self, filter: JobFilter, paging: Paging) -> Result<Page<Job>, StoreError>;

    /// Sets a job's status explicitly (`completed`, `failed`, `cancelled`).
    async fn run_set_job_status(&self, cmd: SetJobStatus) -> Result<Job, StoreError>;

    /// [`Store::run_set_job_status`] from its parts.
    async fn set_job_status(
        &self,
        id: JobId,
        status: Status,
        reason: Option<String>,
    ) -> Result<Job, StoreError> {
        self.run_set_job_status(SetJobStatus {
            job_id: id,
            to: status,
            reason,
        })
        .await
    }

    /// Adds tasks to a job, all or none. Idempotent on each task id.
    async fn run_add_tasks(&self, cmd: AddTasks) -> Result<Vec<Task>, StoreError>;

    /// [`Store::run_add_tasks`] from its parts.
    async fn add_tasks(&self, job_id: JobId, tasks: Vec<NewTask>) -> Result<Vec<Task>, StoreError> {
        self.run_add_tasks(AddTasks { job_id, tasks }).await
    }

    /// A task, if `scope` sees its job.
    async fn get_task_in(
        &self,
        scope: &Scope,
        job_id: JobId,
        task_id: TaskId,
    ) -> Result<Task, StoreError>;

    async fn get_task(&self, job_id: JobId, task_id: TaskId) -> Result<Task, StoreError> {
        self.get_task_in(&Scope::all(), job_id, task_id).await
    }

    /// A job's tasks, if `scope` sees the job (visibility is the job's: its tasks go with it).
    async fn list_tasks_in(
        &self,
        scope: &Scope,
        job_id: JobId,
        filter: TaskFilter,
        paging: Paging,
    ) -> Result<Page<Task>, StoreError>;

    async fn list_tasks(
        &self,
        job_id: JobId,
        filter: TaskFilter,
        paging: Paging,
    ) -> Result<Page<Task>, StoreError> {
        self.list_tasks_in(&Scope::all(), job_id, filter, paging)
            .await
    }

    /// Applies task updates, each on its own: one failing leaves the others applied. The
    /// outer error is for a failure of the whole call (store unavailable).
    async fn update_tasks(
        &self,
        updates: Vec<TaskUpdate>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError>;

    /// Reads history in `seq` order after `after`, at most `size` events, if `scope` sees
    /// the job.
    async fn history_in(
        &self,
        scope: &Scope,
        of: HistoryScope,
        after: i64,
        size: u32,
    ) -> Result<Vec<HistoryEvent>, StoreError>;

    async fn history(
        &self,
        of: HistoryScope,
        after: i64,
        size: u32,
    ) -> Result<Vec<HistoryEvent>, StoreError> {
        self.history_in(&Scope::all(), of, after, size).await
    }

    async fn add_note(&self, note: NewNote) -> Result<HistoryEvent, StoreError>;

    /// Runs any command as a caller of `scope`.
    async fn run_in(&self, scope: &Scope, cmd: Command) -> Result<Answer, StoreError>;

    /// Runs any command, as its own method would.
    async fn run(&self, cmd: Command) -> Result<Answer, StoreError> {
        Ok(match cmd {
            Command::CreateJob(new) => self.create_job(new).await?.into(),
            Command::SetJobStatus(cmd) => Answer::Job {
                job: self.run_set_job_status(cmd).await?,
                created: false,
            },
            Command::AddTasks(cmd) => Answer::Tasks(self.run_add_tasks(cmd).await?),
            Command::UpdateTasks(updates) => {
                once::updates_answer(self.update_tasks(updates).await?)
            }
            Command::AddNote(note) => Answer::Note(self.add_note(note).await?),
        })
    }

    /// Runs `cmd` at most once under `once.key`: the key is recorded in the command's own
    /// transaction, so that a later call with it changes nothing and returns
    /// [`Ran::Replayed`] (with the first answer when `once.keep_answer`). A refused command
    /// records nothing; a key met with another fingerprint is refused as invalid.
    async fn run_once(&self, once: Once, cmd: Command) -> Result<Ran, StoreError> {
        self.run_once_in(&Scope::all(), once, cmd).await
    }

    /// [`Store::run_once`] as a caller of `scope`.
    async fn run_once_in(&self, scope: &Scope, once: Once, cmd: Command)
    -> Result<Ran, StoreError>;

    /// [`Store::run_once`] for several commands, in order, each on its own (a refused one
    /// leaves the others applied). After one fails for another reason (the database), the
    /// rest are not run and fail as unavailable, so that no later command of a job is
    /// applied before an earlier one. SQLite runs them all in one group commit.
    async fn run_once_batch(
        &self,
        commands: Vec<(Once, Command)>,
    ) -> Result<Vec<Result<Ran, StoreError>>, StoreError> {
        let mut out = Vec::with_capacity(commands.len());
        let mut failed = false;
        for (once, cmd) in commands {
            if failed {
                out.push(Err(once::not_run()));
                continue;
            }
            let ran = self.run_once(once, cmd).await;
            failed = once::ends_batch(&ran);
            out.push(ran);
        }
        Ok(out)
    }

    /// Change-feed events after `after`, in feed order, at most `limit`. A position never
    /// skips an event that commits late: an event becomes readable only once no event can
    /// still commit before it. Each job's events come in their `job_seq` order.
    async fn feed(&self, after: Position, limit: u32) -> Result<Vec<FeedEvent>, StoreError>;

    /// The end of the feed now: every event readable now is at or before it, every event
    /// after it becomes readable later. A reader that starts there sees what commits from
    /// now on, and nothing older.
    async fn feed_head(&self) -> Result<Position, StoreError>;

    /// Bumped after every commit that may have added feed events (in this process, and on
    /// PostgreSQL in every process sharing the database, while the store's background
    /// loops run), so that feed readers need not poll. Outbox claims and acks add none and
    /// never bump it: a relay that waits for it is not woken by its own claims.
    fn feed_signal(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Claims the outbox rows of up to `max_jobs` jobs for relay `relay`, for `lease`: whole
    /// jobs, so that two relays never hold the same job's rows at once. Returns them by job,
    /// each job's in `job_seq` order. Jobs this relay already holds are claimed again
    /// (with their rows that committed since).
    async fn claim_outbox(
        &self,
        relay: &str,
        max_jobs: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxItem>, StoreError>;

    /// Acknowledges delivered outbox rows (they are never claimed again) and releases the
    /// relay's leases of their jobs.
    async fn ack_outbox(&self, relay: &str, seqs: &[i64]) -> Result<(), StoreError>;

    /// How many outbox rows wait to be relayed.
    async fn outbox_backlog(&self) -> Result<u64, StoreError>;

    /// Jobs and tasks by status, the outbox backlog and the store's connections, for
    /// `/metrics`: from the maintained counts (`stats.rs`), never a scan of jobs or tasks.
    async fn stats(&self) -> Result<Stats, StoreError>;

    /// Tasks whose deadline has come at `now` (`plan::task_deadline`: open, with a timeout,
    /// and no heartbeat, progress or status change for that long), soonest first, at most
    /// `limit`: what the timeout sweeper fails. Read from an index of deadlines, never a
    /// scan of the tasks; the sweeper's update checks each again under its job's lock.
    async fn due_tasks(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(JobId, TaskId)>, StoreError>;

    /// Jobs whose deadline has come at `now` (`JobHead::deadline`: still open
    /// `timeout_seconds` after their `start_time`), soonest first, at most `limit`.
    async fn due_jobs(&self, now: Timestamp, limit: u32) -> Result<Vec<JobId>, StoreError>;

    /// Deletes up to `limit` expired jobs in one transaction: for each `(status, cutoff)`
    /// (`RetentionPolicy::cutoffs`), the jobs of that status whose `end_time` is before
    /// `cutoff`, oldest first, with their tasks, history, outbox rows and outbox leases.
    /// The stored job counts follow. Returns how many jobs it deleted.
    async fn delete_expired_jobs(
        &self,
        cutoffs: &[(Status, Timestamp)],
        limit: u32,
    ) -> Result<u64, StoreError>;
    /// Stores a new webhook, enabled.
    async fn create_webhook(&self, new: NewWebhook) -> Result<Webhook, StoreError>;

    /// Every webhook, enabled or not, oldest first.
    async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError>;

    async fn get_webhook(&self, id: uuid::Uuid) -> Result<Webhook, StoreError>;

    /// Deletes a webhook with its deliveries and their attempts.
    async fn delete_webhook(&self, id: uuid::Uuid) -> Result<(), StoreError>;

    /// Disables a webhook (`reason` says why) and fails its pending deliveries.
    async fn disable_webhook(&self, id: uuid::Uuid, reason: String) -> Result<(), StoreError>;

    /// Queues each event for every enabled webhook that wants it ([`Webhook::wants`]),
    /// due at once. Idempotent: an event a webhook already has a delivery of is left as it
    /// is. Returns how many deliveries were queued now.
    async fn enqueue_deliveries(&self, events: Vec<NewDelivery>) -> Result<u64, StoreError>;

    /// Claims up to `limit` pending deliveries due at `now` of enabled webhooks, for
    /// `lease`: no other claim takes them until it ends (PostgreSQL: `SKIP LOCKED`, so
    /// concurrent senders never take one delivery twice). Oldest due first.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Logs an attempt and moves its delivery on as `attempt.next` says (releasing the
    /// lease); a failure marks the webhook failing since then, a success clears it.
    async fn record_attempt(&self, attempt: AttemptRecord) -> Result<(), StoreError>;

    /// A webhook's delivery log, newest first, at most `limit` lines: every attempt, and
    /// each delivery not yet attempted.
    async fn list_deliveries(
        &self,
        webhook: uuid::Uuid,
        limit: u32,
    ) -> Result<Vec<AttemptEntry>, StoreError>;

    /// Makes a delivery of an enabled webhook due at `now` again, whatever its state
    /// (a replay). NotFound for another webhook's; Conflict when the webhook is disabled.
    async fn retry_delivery(
        &self,
        webhook: uuid::Uuid,
        delivery: uuid::Uuid,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Stores a new API key. Conflict when its id is taken.
    async fn create_key(&self, key: StoredKey) -> Result<(), StoreError>;

    /// Every key, revoked and expired ones included, oldest first.
    async fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError>;

    /// The key with this id, if any: how a token is looked up.
    async fn find_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError>;

    /// Whether any key was ever created (revoked ones count: a database that has had keys
    /// keeps requiring them).
    async fn has_keys(&self) -> Result<bool, StoreError>;

    /// Revokes a key from `at` on (a key revoked before keeps its first time). NotFound for
    /// an unknown id.
    async fn revoke_key(&self, id: &str, at: Timestamp) -> Result<StoredKey, StoreError>;

    /// Records that a key was used at `at` (never moving `last_used_at` back).
    async fn touch_key(&self, id: &str, at: Timestamp) -> Result<(), StoreError>;

    /// The store's own background loops (checkpoints, count folding, wake-ups), for the
    /// application's supervisor to run.
    fn background(&self) -> Vec<Arc<dyn Loop>>;

    /// Succeeds when the store can serve requests.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Finishes queued writes and releases the database.
    async fn close(&self);
}

/// Opens the store a database URL names and brings its schema up to date.
///
/// `sqlite://path/to/file.db` (created if missing) is the embedded default;
/// `postgres://user@host/db` is the scale-out store.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, system::env()).await
}

/// [`open`] with a clock and an id source of the caller's (tests move time forward).
pub async fn open_with(url: &str, env: Env) -> Result<Arc<dyn Store>, StoreError> {
    if sqlite::handles(url) {
        Ok(Arc::new(sqlite::SqliteStore::open_with(url, env).await?))
    } else if postgres::handles(url) {
        Ok(Arc::new(postgres::PgStore::open_with(url, env).await?))
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
