//! The scale-out store: PostgreSQL through a connection pool.
//!
//! Any number of processes share one database; nothing lives in a process that another
//! needs. Every write is one short transaction (`write.rs`) that first locks the job row,
//! so the counters, the job's derived status and the task change together. Serialization
//! failures, deadlocks and races on a unique key are retried here and never reach a
//! client. Reads map rows in `rows.rs`; the feed and the outbox live in `feed.rs`, the
//! folding of job counts in `counts.rs`, the bulk seed loader in `seed.rs`.
//!
//! No statement runs unbounded: each is cut off by the statement timeout ([`PgOptions`]),
//! and a call abandoned mid-statement closes its connection ([`Held`]) rather than leave the
//! statement running on a connection the pool still counts.

mod counts;
mod feed;
mod keys;
mod lists;
mod liveness;
mod rows;
pub(crate) mod seed;
mod webhooks;
mod write;

use crate::background::Loop;
use crate::feed::{FeedEvent, OutboxItem, Position};
use crate::once::{Answer, Once, Ran};
use crate::query::{HistoryScope, JobFilter, Page, Paging, TaskFilter};
use crate::webhooks::{AttemptEntry, AttemptRecord, Delivery, NewDelivery, NewWebhook, Webhook};
use crate::{Created, NewNote, Store, StoreError, TaskUpdate};
use async_trait::async_trait;
use portauthority_core::api::{HistoryEvent, Job, NewJob, Task};
use portauthority_core::plan;
use portauthority_core::{
    AddTasks, Command, Env, JobId, Scope, SetJobStatus, Status, TaskId, Timestamp,
};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres};
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
    let code = match &e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    match (&e, code.as_deref()) {
        (
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_),
            _,
        ) => StoreError::Unavailable(e.to_string()),
        // A statement that ran past `statement_timeout` (or that an operator cancelled), a
        // lock wait past a `lock_timeout` set on the role or database. Unavailable, not
        // retried (see `retryable`): the same statement would most likely wait as long again.
        (_, Some(c @ ("57014" | "55P03"))) => {
            tracing::warn!(
                error = %e,
                "the database cancelled a statement (the statement timeout is \
                 {STATEMENT_TIMEOUT_VAR})"
            );
            StoreError::Unavailable(if c == "57014" {
                "the database cancelled the statement: it ran past the statement timeout, \
                 or an operator cancelled it; retry later"
                    .into()
            } else {
                "the database gave up waiting for a lock (lock_timeout); retry later".into()
            })
        }
        // Class 08: connection exceptions; 57P0x: the server is shutting down or restarting;
        // 53300: too many connections; 53100: disk full; 25006: a read-only transaction (a
        // standby, or the database set read-only).
        (_, Some(c))
            if c.starts_with("08")
                || c.starts_with("57P")
                || matches!(c, "53300" | "53100" | "25006") =>
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
    /// Whether the database answers at all; see `liveness.rs`.
    liveness: liveness::Liveness,
    /// The liveness loop's own connection.
    watchdog: PgPool,
}

pub(crate) use counts::FOLD_COUNTS_SQL;
pub use counts::fold_counts;

/// Connection options from the URL alone: no timeouts (migrations, the bulk seed loader).
pub(crate) fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("bad PostgreSQL URL: {e}")))
}

/// The environment variable bounding every statement of a store (see [`PgOptions`]).
pub const STATEMENT_TIMEOUT_VAR: &str = "PORTAUTHORITY_DATABASE_STATEMENT_TIMEOUT";

/// How a [`PgStore`] uses its database, beyond the URL.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Connections of the request pool (`PORTAUTHORITY_DATABASE_POOL`, default 16).
    pub pool_size: u32,
    /// Longest any statement of the store's pools may run, waits for row locks included,
    /// before PostgreSQL cancels it and the call answers `Unavailable`
    /// ([`STATEMENT_TIMEOUT_VAR`], default 30 s; zero: no limit). What a client can make
    /// the database do is bounded by it whatever the query, and so is how long a connection
    /// stays busy for a request whose client has gone. Migrations and the bulk seed loader
    /// run without it: their statements are as long as the data is large.
    pub statement_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 16,
            statement_timeout: Duration::from_secs(30),
        }
    }
}

impl PgOptions {
    /// The defaults, with what the environment sets. A statement timeout that does not
    /// parse is a configuration error rather than a silent default.
    pub fn from_env() -> Result<PgOptions, StoreError> {
        let mut options = PgOptions::default();
        if let Some(n) = std::env::var("PORTAUTHORITY_DATABASE_POOL")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            options.pool_size = n;
        }
        if let Ok(v) = std::env::var(STATEMENT_TIMEOUT_VAR) {
            options.statement_timeout = parse_timeout(&v).ok_or_else(|| {
                StoreError::Config(format!(
                    "{STATEMENT_TIMEOUT_VAR}={v:?}: expected milliseconds (30000) or a \
                     duration such as 500ms, 30s, 2min or 1h (0: no limit)"
                ))
            })?;
        }
        Ok(options)
    }

    /// The options of the store's own connections: the URL's, and the statement timeout.
    fn connect_options(&self, url: &str) -> Result<PgConnectOptions, StoreError> {
        Ok(connect_options(url)?.options([(
            "statement_timeout",
            self.statement_timeout.as_millis().to_string(),
        )]))
    }
}

/// `30000` (milliseconds), `500ms`, `30s`, `2min`, `1h`; at most what PostgreSQL takes
/// (2^31 - 1 ms, about 24 days).
fn parse_timeout(v: &str) -> Option<Duration> {
    let v = v.trim();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let ms = match unit.trim() {
        "" | "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }?;
    (ms <= i32::MAX as u64).then(|| Duration::from_millis(ms))
}

/// How often a backend running one of the store's statements checks that the store is
/// still connected (PostgreSQL 14 and later; `client_connection_check_interval`). A
/// statement whose connection the store closed (see [`Held`]) then stops within about this
/// long instead of running to its end or to the statement timeout.
const CLIENT_CHECK_INTERVAL_MS: u32 = 1000;

/// Pool options shared by the store's pools: on each new connection, the client check.
fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .min_connections(0)
        .idle_timeout(Duration::from_secs(300))
        .after_connect(|c, _| {
            Box::pin(async move {
                // An unknown setting in the startup packet would refuse the connection on
                // older servers: set it here, only where it exists.
                if c.server_version_num().is_some_and(|v| v >= 140_000) {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SET client_connection_check_interval = {CLIENT_CHECK_INTERVAL_MS}"
                    )))
                    .execute(&mut *c)
                    .await?;
                }
                Ok(())
            })
        })
}

/// A connection of the request pool held for one store call, which goes back to the pool
/// only if the call finished ([`Held::finish`]).
///
/// A request whose client disconnects has its handler future dropped (axum does that), and
/// with it any sqlx query in flight. sqlx 0.9 does not cancel that query: dropping a
/// `PoolConnection` spawns a task that "pings" it before putting it back, and the ping
/// first reads every reply still due from the dropped query, so the statement runs on to
/// its end, holding a pool slot all along (17 such requests with slow filters took a pool
/// of 16 and every other request got 503). Dropped unfinished, this guard closes the
/// connection instead: the pool slot frees at once, and the backend, which notices the
/// closed socket at its next client check (`CLIENT_CHECK_INTERVAL_MS`), stops the
/// statement. On a server without that check (before PostgreSQL 14) the statement runs on
/// until `statement_timeout`; that bound holds either way.
struct Held {
    conn: PoolConnection<Postgres>,
    finished: bool,
}

impl Held {
    /// Hands `result` back and lets the connection return to the pool.
    fn finish<T>(mut self, result: T) -> T {
        self.finished = true;
        result
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.close_on_drop();
        }
    }
}

impl std::ops::Deref for Held {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl PgStore {
    /// Connects, applies migrations, and returns the store.
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        PgStore::open_with(url, crate::system::env()).await
    }

    /// [`PgStore::open`] with the caller's clock and ids.
    pub async fn open_with(url: &str, env: Env) -> Result<PgStore, StoreError> {
        PgStore::open_with_options(url, env, PgOptions::from_env()?).await
    }

    /// [`PgStore::open_with`] with the given options instead of the environment's.
    pub async fn open_with_options(
        url: &str,
        env: Env,
        options: PgOptions,
    ) -> Result<PgStore, StoreError> {
        let pool = pool_options()
            .max_connections(options.pool_size)
            // While the database is down, requests fail fast with 503 instead of hanging.
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(options.connect_options(url)?);
        // The background loops (count folding, the feed's notifier and listener) have
        // connections of their own: the listener holds one for good, and none of them may
        // take a connection a request is waiting for.
        let background = pool_options()
            .max_connections(3)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options.connect_options(url)?);
        // Migrations on a connection of their own, without the statement timeout.
        let migrations = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(connect_options(url)?);
        let watchdog = pool_options()
            .max_connections(1)
            .acquire_timeout(liveness::TIMEOUT)
            .connect_lazy_with(options.connect_options(url)?);
        let migrated = run_migrations(&migrations).await;
        migrations.close().await;
        migrated?;
        Ok(PgStore {
            pool,
            background,
            env,
            local: watch::channel(0).0,
            signal: watch::channel(0).0,
            liveness: liveness::Liveness::new(),
            watchdog,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection of the request pool for one call; see [`Held`]. Refused at once while
    /// the database is silent (`liveness.rs`).
    async fn conn(&self) -> Result<Held, StoreError> {
        self.liveness.check()?;
        Ok(Held {
            conn: self.pool.acquire().await.map_err(db_error)?,
            finished: false,
        })
    }

    /// Runs `f` in a transaction, retrying it on retryable errors, and after its commit
    /// wakes the feed's readers (here, and through the notifier in other processes).
    async fn tx<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'c> FnMut(&'c mut PgConnection) -> BoxFut<'c, T> + Send,
    {
        self.run_tx(f, true).await
    }

    /// [`PgStore::tx`] for a transaction that adds no feed events (outbox claims and
    /// acks, webhook bookkeeping, retention's deletes): it wakes nobody. A relay waits for the feed signal between claims, so a claim
    /// that bumped it would wake its own relay at once, for ever.
    async fn tx_without_events<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'c> FnMut(&'c mut PgConnection) -> BoxFut<'c, T> + Send,
    {
        self.run_tx(f, false).await
    }

    /// Every attempt is bounded by the database answering (`liveness.rs`): an attempt cut
    /// off there closes its connection, which rolls its transaction back.
    async fn run_tx<T, F>(&self, f: F, events: bool) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'c> FnMut(&'c mut PgConnection) -> BoxFut<'c, T> + Send,
    {
        self.liveness.bound(self.run_tx_attempts(f, events)).await
    }

    async fn run_tx_attempts<T, F>(&self, mut f: F, events: bool) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'c> FnMut(&'c mut PgConnection) -> BoxFut<'c, T> + Send,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.conn().await?;
            let outcome = Self::attempt(&mut conn, &mut f).await;
            let err = match conn.finish(outcome) {
                Attempt::Committed(v) => {
                    if events {
                        self.local.send_modify(|n| *n += 1);
                        self.signal.send_modify(|n| *n += 1);
                    }
                    return Ok(v);
                }
                Attempt::Refused(e) => return Err(e),
                Attempt::Failed(e) => e,
                Attempt::Raced(what) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(attempt, what, "retrying transaction after a race");
                    metrics::counter!(crate::metrics::POSTGRES_RETRIES, "reason" => "race")
                        .increment(1);
                    tokio::task::yield_now().await;
                    continue;
                }
                Attempt::Raced(what) => {
                    return Err(StoreError::Unavailable(format!("{what}: too many retries")));
                }
            };
            if retryable(&err) && attempt < MAX_ATTEMPTS {
                let backoff = Duration::from_millis(2u64 << attempt.min(6));
                tracing::debug!(attempt, error = %err, "retrying transaction");
                metrics::counter!(crate::metrics::POSTGRES_RETRIES, "reason" => "error")
                    .increment(1);
                tokio::time::sleep(backoff).await;
                continue;
            }
            return Err(db_error(err));
        }
    }

    /// One attempt of a transaction on `conn`, rolled back unless it committed.
    async fn attempt<T, F>(conn: &mut PgConnection, f: &mut F) -> Attempt<T>
    where
        T: Send,
        F: for<'c> FnMut(&'c mut PgConnection) -> BoxFut<'c, T> + Send,
    {
        let mut tx = match sqlx::Connection::begin(conn).await {
            Ok(tx) => tx,
            Err(e) => return Attempt::Failed(e),
        };
        match f(&mut tx).await {
            Ok(v) => match tx.commit().await {
                Ok(()) => Attempt::Committed(v),
                Err(e) => Attempt::Failed(e),
            },
            Err(e) => {
                let _ = tx.rollback().await;
                match e {
                    TxError::Store(e) => Attempt::Refused(e),
                    TxError::Db(e) => Attempt::Failed(e),
                    TxError::Race(what) => Attempt::Raced(what),
                }
            }
        }
    }
}

/// How one attempt of a transaction ended.
enum Attempt<T> {
    Committed(T),
    /// The command was refused: rolled back, answered as is.
    Refused(StoreError),
    /// A database error, retryable or not.
    Failed(sqlx::Error),
    /// See [`TxError::Race`].
    Raced(&'static str),
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

/// Whether job `id` exists and `scope` sees it.
async fn visible_job(
    c: &mut PgConnection,
    scope: &Scope,
    id: JobId,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let row = rows::job(c, id, false, now).await.map_err(db_error)?;
    Ok(plan::visible(scope, row, |r| &r.job.namespace).is_some())
}

#[async_trait]
impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn env(&self) -> &Env {
        &self.env
    }

    async fn create_job(&self, job: NewJob) -> Result<Created<Job>, StoreError> {
        let now = self.env.now();
        self.tx(|c| Box::pin(write::create_job(c, Scope::all_ref(), job.clone(), now)))
            .await
    }

    async fn get_job_in(&self, scope: &Scope, id: JobId) -> Result<Job, StoreError> {
        let now = self.env.now();
        self.liveness
            .bound(async {
                let mut c = self.conn().await?;
                let row = rows::job(&mut c, id, false, now).await;
                plan::visible(scope, c.finish(row).map_err(db_error)?, |r| {
                    &r.job.namespace
                })
                .map(|r| r.job)
                .ok_or_else(|| StoreError::job_not_found(id))
            })
            .await
    }

    async fn list_jobs(&self, filter: JobFilter, paging: Paging) -> Result<Page<Job>, StoreError> {
        let now = self.env.now();
        self.liveness
            .bound(async {
                let mut c = self.conn().await?;
                let page = lists::list_jobs(&mut c, &filter, &paging, now).await;
                c.finish(page).map_err(db_error)
            })
            .await
    }

    async fn run_set_job_status(&self, cmd: SetJobStatus) -> Result<Job, StoreError> {
        let now = self.env.now();
        self.tx(|c| Box::pin(write::set_job_status(c, Scope::all_ref(), cmd.clone(), now)))
            .await
    }

    async fn run_add_tasks(&self, cmd: AddTasks) -> Result<Vec<Task>, StoreError> {
        let now = self.env.now();
        self.tx(|c| Box::pin(write::add_tasks(c, Scope::all_ref(), cmd.clone(), now)))
            .await
    }

    async fn get_task_in(
        &self,
        scope: &Scope,
        job_id: JobId,
        task_id: TaskId,
    ) -> Result<Task, StoreError> {
        self.liveness
            .bound(async {
                let mut c = self.conn().await?;
                let task = async {
                    if !visible_job(&mut c, scope, job_id, self.env.now()).await? {
                        return Ok(None);
                    }
                    rows::task(&mut c, task_id).await.map_err(db_error)
                }
                .await;
                c.finish(task)?
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
        self.liveness
            .bound(async {
                let mut c = self.conn().await?;
                let page = async {
                    if !visible_job(&mut c, scope, job_id, self.env.now()).await? {
                        return Err(StoreError::job_not_found(job_id));
                    }
                    lists::list_tasks(&mut c, job_id, &filter, &paging)
                        .await
                        .map_err(db_error)
                }
                .await;
                c.finish(page)
            })
            .await
    }

    async fn update_tasks(
        &self,
        updates: Vec<TaskUpdate>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
        let now = self.env.now();
        self.tx(|c| {
            let updates = updates.clone();
            Box::pin(async move { write::update_tasks(c, &Scope::all(), &updates, now).await })
        })
        .await
    }

    async fn history_in(
        &self,
        scope: &Scope,
        of: HistoryScope,
        after: i64,
        size: u32,
    ) -> Result<Vec<HistoryEvent>, StoreError> {
        self.liveness
            .bound(async {
                let mut c = self.conn().await?;
                let events = async {
                    match of {
                        HistoryScope::Job(job_id) => {
                            if !visible_job(&mut c, scope, job_id, self.env.now()).await? {
                                return Err(StoreError::job_not_found(job_id));
                            }
                        }
                        HistoryScope::Task(job_id, task_id) => {
                            let t = if visible_job(&mut c, scope, job_id, self.env.now()).await? {
                                rows::task(&mut c, task_id).await.map_err(db_error)?
                            } else {
                                None
                            };
                            if t.is_none_or(|t| t.job_id != job_id) {
                                return Err(StoreError::task_not_found(job_id, task_id));
                            }
                        }
                    }
                    lists::history(&mut c, of, after, size)
                        .await
                        .map_err(db_error)
                }
                .await;
                c.finish(events)
            })
            .await
    }

    async fn add_note(&self, note: NewNote) -> Result<HistoryEvent, StoreError> {
        let now = self.env.now();
        self.tx(|c| Box::pin(write::add_note(c, Scope::all_ref(), note.clone(), now)))
            .await
    }

    async fn run_in(&self, scope: &Scope, cmd: Command) -> Result<Answer, StoreError> {
        let now = self.env.now();
        self.tx(|c| {
            let (scope, cmd) = (scope.clone(), cmd.clone());
            Box::pin(async move { write::apply(c, &scope, cmd, now).await })
        })
        .await
    }

    async fn run_once_in(
        &self,
        scope: &Scope,
        once: Once,
        cmd: Command,
    ) -> Result<Ran, StoreError> {
        let now = self.env.now();
        self.tx(|c| {
            let (scope, once, cmd) = (scope.clone(), once.clone(), cmd.clone());
            Box::pin(async move { write::run_once(c, &scope, &once, cmd, now).await })
        })
        .await
    }

    async fn run_once_batch(
        &self,
        commands: Vec<(Once, Command)>,
    ) -> Result<Vec<Result<Ran, StoreError>>, StoreError> {
        let now = self.env.now();
        let commands = Arc::new(commands);
        self.tx(|c| {
            let commands = commands.clone();
            Box::pin(async move { write::run_once_batch(c, &Scope::all(), &commands, now).await })
        })
        .await
    }

    async fn feed(&self, after: Position, limit: u32) -> Result<Vec<FeedEvent>, StoreError> {
        self.liveness
            .bound(async {
                let mut c = self.conn().await?;
                let events = feed::read(&mut c, after, limit).await;
                c.finish(events).map_err(db_error)
            })
            .await
    }

    async fn feed_head(&self) -> Result<Position, StoreError> {
        let mut c = self.conn().await?;
        let head = feed::head(&mut c).await;
        c.finish(head).map_err(db_error)
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
        self.tx_without_events(|c| {
            let relay = relay.to_owned();
            Box::pin(async move { Ok(feed::claim(c, &relay, max_jobs, lease, now).await?) })
        })
        .await
    }

    async fn ack_outbox(&self, relay: &str, seqs: &[i64]) -> Result<(), StoreError> {
        self.tx_without_events(|c| {
            let (relay, seqs) = (relay.to_owned(), seqs.to_vec());
            Box::pin(async move { Ok(feed::ack(c, &relay, &seqs).await?) })
        })
        .await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.liveness
            .bound(async { feed::backlog(&self.pool).await.map_err(db_error) })
            .await
    }

    async fn stats(&self) -> Result<crate::Stats, StoreError> {
        let mut stats = counts::stats(&self.background).await.map_err(db_error)?;
        stats.pool = Some(crate::PoolStats {
            open: self.pool.size(),
            idle: self.pool.num_idle() as u32,
            max: self.pool.options().get_max_connections(),
        });
        Ok(stats)
    }

    async fn due_tasks(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(JobId, TaskId)>, StoreError> {
        self.liveness
            .bound(async {
                let mut c = self.conn().await?;
                let due = lists::due_tasks(&mut c, now, limit).await;
                c.finish(due).map_err(db_error)
            })
            .await
    }

    async fn due_jobs(&self, now: Timestamp, limit: u32) -> Result<Vec<JobId>, StoreError> {
        self.liveness
            .bound(async {
                let mut c = self.conn().await?;
                let due = lists::due_jobs(&mut c, now, limit).await;
                c.finish(due).map_err(db_error)
            })
            .await
    }

    async fn delete_expired_jobs(
        &self,
        cutoffs: &[(Status, Timestamp)],
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.tx_without_events(|c| {
            let cutoffs = cutoffs.to_vec();
            Box::pin(async move { Ok(write::delete_expired_jobs(c, &cutoffs, limit).await?) })
        })
        .await
    }

    async fn create_key(&self, key: crate::StoredKey) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let done = keys::create(&mut c, &key).await;
        if c.finish(done).map_err(db_error)? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "key {} already exists",
                key.record.id
            )))
        }
    }

    async fn list_keys(&self) -> Result<Vec<crate::StoredKey>, StoreError> {
        let mut c = self.conn().await?;
        let list = keys::list(&mut c).await;
        c.finish(list).map_err(db_error)
    }

    async fn find_key(&self, id: &str) -> Result<Option<crate::StoredKey>, StoreError> {
        let mut c = self.conn().await?;
        let found = keys::find(&mut c, id).await;
        c.finish(found).map_err(db_error)
    }

    async fn has_keys(&self) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let any = keys::any(&mut c).await;
        c.finish(any).map_err(db_error)
    }

    async fn revoke_key(&self, id: &str, at: Timestamp) -> Result<crate::StoredKey, StoreError> {
        let mut c = self.conn().await?;
        let done = keys::revoke(&mut c, id, at).await;
        c.finish(done)
            .map_err(db_error)?
            .ok_or_else(|| crate::keys::key_not_found(id))
    }

    async fn touch_key(&self, id: &str, at: Timestamp) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let done = keys::touch(&mut c, id, at).await;
        c.finish(done).map_err(db_error)
    }

    async fn create_webhook(&self, new: NewWebhook) -> Result<Webhook, StoreError> {
        self.tx_without_events(|c| Box::pin(webhooks::create(c, new.clone())))
            .await
    }

    async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        self.liveness
            .bound(async {
                let mut c = self.conn().await?;
                let list = webhooks::list(&mut c).await;
                c.finish(list).map_err(db_error)
            })
            .await
    }

    async fn get_webhook(&self, id: uuid::Uuid) -> Result<Webhook, StoreError> {
        self.liveness
            .bound(async {
                let mut c = self.conn().await?;
                let found = webhooks::find(&mut c, id).await;
                c.finish(found)
                    .map_err(db_error)?
                    .ok_or_else(|| crate::webhooks::webhook_not_found(id))
            })
            .await
    }

    async fn delete_webhook(&self, id: uuid::Uuid) -> Result<(), StoreError> {
        self.tx_without_events(|c| Box::pin(webhooks::delete(c, id)))
            .await
    }

    async fn disable_webhook(&self, id: uuid::Uuid, reason: String) -> Result<(), StoreError> {
        self.tx_without_events(|c| {
            let reason = reason.clone();
            Box::pin(async move { webhooks::disable(c, id, &reason).await })
        })
        .await
    }

    async fn enqueue_deliveries(&self, events: Vec<NewDelivery>) -> Result<u64, StoreError> {
        let now = self.env.now();
        let ids = self.env.ids.clone();
        self.tx_without_events(|c| {
            let (events, ids) = (events.clone(), ids.clone());
            Box::pin(async move { webhooks::enqueue(c, &events, ids.as_ref(), now).await })
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.tx_without_events(|c| Box::pin(webhooks::claim(c, now, limit, lease)))
            .await
    }

    async fn record_attempt(&self, attempt: AttemptRecord) -> Result<(), StoreError> {
        self.tx_without_events(|c| {
            let attempt = attempt.clone();
            Box::pin(async move { webhooks::record(c, &attempt).await })
        })
        .await
    }

    async fn list_deliveries(
        &self,
        webhook: uuid::Uuid,
        limit: u32,
    ) -> Result<Vec<AttemptEntry>, StoreError> {
        self.tx_without_events(|c| Box::pin(webhooks::deliveries(c, webhook, limit)))
            .await
    }

    async fn retry_delivery(
        &self,
        webhook: uuid::Uuid,
        delivery: uuid::Uuid,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.tx_without_events(|c| Box::pin(webhooks::retry(c, webhook, delivery, now)))
            .await
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
            Arc::new(liveness::Watchdog {
                pool: self.watchdog.clone(),
                liveness: self.liveness.clone(),
            }),
        ]
    }

    /// A real write: a read-only server (a standby, `default_transaction_read_only`) is
    /// not ready, nor is a silent one.
    async fn ping(&self) -> Result<(), StoreError> {
        self.liveness
            .bound(async {
                let mut c = self.conn().await?;
                let written = sqlx::query(
                    "INSERT INTO readiness (id, at) VALUES (1, now())
                     ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                )
                .execute(&mut *c)
                .await;
                c.finish(written).map(drop).map_err(db_error)
            })
            .await
    }

    async fn close(&self) {
        self.watchdog.close().await;
        self.background.close().await;
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::parse_timeout;
    use std::time::Duration;

    #[test]
    fn a_statement_timeout_is_milliseconds_or_a_duration_with_its_unit() {
        for (text, ms) in [
            ("30000", 30_000),
            ("0", 0),
            ("500ms", 500),
            ("30s", 30_000),
            (" 2min ", 120_000),
            ("1h", 3_600_000),
            ("2147483647", 2_147_483_647),
        ] {
            assert_eq!(
                parse_timeout(text),
                Some(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for text in [
            "",
            "s",
            "30 sec",
            "1.5s",
            "-1",
            "2m",
            "2147483648",
            "99999999999h",
        ] {
            assert_eq!(parse_timeout(text), None, "{text:?}");
        }
    }
}
