//! Bulk loading of realistic jobs, for list-performance work and benchmarks.
//!
//! `seed(url, jobs, tasks_per_job)` writes jobs, their tasks, their history, their job_meta
//! index rows and the stored counts straight into the database, bypassing HTTP and the
//! one-request-at-a-time write path, but with rows exactly as the service writes them:
//! UUIDv7 ids whose timestamp is the row's `created_at`, the same column encodings (BLOB ids
//! and epoch milliseconds on SQLite, `uuid`/`timestamptz` on PostgreSQL), status codes,
//! compact meta JSON, and counters, statuses and end times that follow the rules of
//! `portauthority_core::machine`.
//!
//! One generator makes the rows for both stores, so both hold the same distribution:
//! - 20 namespaces and 10 types, Zipf-weighted (the largest namespace holds ~28 %, the
//!   smallest ~1.4 %);
//! - statuses: 70 % completed, 8 % failed, 4 % cancelled (by a client), 10 % in_progress,
//!   8 % pending (with `--tasks-per-job 0` the in_progress share is pending: a job without
//!   tasks cannot be in progress);
//! - `start_time` spread evenly over the year before the run, in id order, as a service
//!   that has run for a year would have them;
//! - a `correlation_id` shared by 3 consecutive jobs (`req-…`), absent on 10 %;
//! - meta `{"release_id": n / 100, "team": one of 10}`: a release holds ~100 jobs, a team
//!   ~10 %.
//!
//! History: `created`, `task_added` per task, a `status_changed` per task that left
//! `pending`, and the job's own status changes. Nothing goes to the outbox: seeded jobs
//! stand for activity that was published long ago.
//!
//! PostgreSQL loads batches with `INSERT ... SELECT FROM unnest($1, $2, ...)` (one statement
//! per table per batch, rows generated in Rust so both stores get the same data) and ends
//! with `VACUUM (ANALYZE)`; SQLite loads batches of prepared inserts in big transactions
//! (`synchronous = NORMAL` for the load only).

use crate::StoreError;
use portauthority_core::{Counters, Limits, Status, Timestamp, validate::Meta};
use std::time::Instant;

/// Namespaces of seeded jobs, most used first.
pub const NAMESPACES: [&str; 20] = [
    "com.shipyard.billing",
    "com.shipyard.orders",
    "com.shipyard.inventory",
    "com.shipyard.shipping",
    "com.shipyard.payments",
    "com.shipyard.catalog",
    "com.shipyard.search",
    "com.shipyard.reports",
    "com.shipyard.customers",
    "com.shipyard.returns",
    "com.shipyard.pricing",
    "com.shipyard.notifications",
    "com.shipyard.analytics",
    "com.shipyard.fulfillment",
    "com.shipyard.warehouse",
    "com.shipyard.accounts",
    "com.shipyard.audit",
    "com.shipyard.tax",
    "com.shipyard.loyalty",
    "com.shipyard.support",
];

/// Types of seeded jobs, most used first.
pub const JOB_TYPES: [&str; 10] = [
    "import.batch",
    "export.csv",
    "report.generate",
    "invoice.render",
    "index.rebuild",
    "email.campaign",
    "sync.partner",
    "backup.snapshot",
    "reconcile.ledger",
    "thumbnail.render",
];

/// Teams named in seeded jobs' meta (`meta.team`), evenly used.
pub const TEAMS: [&str; 10] = [
    "atlas", "borealis", "cobalt", "delta", "ember", "fjord", "granite", "harbor", "iris",
    "juniper",
];

const TASK_TYPES: [&str; 5] = [
    "step.extract",
    "step.transform",
    "step.load",
    "step.validate",
    "step.notify",
];

/// How many jobs share one `release_id`.
pub const JOBS_PER_RELEASE: u64 = 100;
/// How many consecutive jobs share one correlation id.
pub const JOBS_PER_CORRELATION: u64 = 3;

/// What a seeding run wrote.
#[derive(Clone, Debug)]
pub struct SeedReport {
    pub jobs: u64,
    pub tasks: u64,
    pub events: u64,
    pub seconds: f64,
}

/// Loads `jobs` jobs with `tasks_per_job` tasks each into the database `url` names (after
/// applying migrations). Adds to what is there.
pub async fn seed(url: &str, jobs: u64, tasks_per_job: u32) -> Result<SeedReport, StoreError> {
    let started = Instant::now();
    crate::migrate(url).await?;
    let generator = Generator::new(jobs, tasks_per_job);
    let (tasks, events) = if crate::sqlite::handles(url) {
        let opts = crate::sqlite::parse_url(url)?;
        tokio::task::spawn_blocking(move || sqlite::load(&opts, &generator))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))??
    } else if crate::postgres::handles(url) {
        postgres::load(url, &generator).await?
    } else {
        return Err(crate::unsupported(url));
    };
    Ok(SeedReport {
        jobs,
        tasks,
        events,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Jobs per transaction.
const BATCH: u64 = 10_000;

// ---------------------------------------------------------------------------------------
// The generator: every row is a pure function of the job's number (and, for ids only, of a
// random salt, so that a second run adds new jobs).

struct Generator {
    total: u64,
    tasks_per_job: u32,
    /// `start_time` of job 0; the last job starts about `now`.
    base_ms: i64,
    span_ms: i64,
    now_ms: i64,
    salt: u64,
}

pub(crate) struct SeedJob {
    pub id: uuid::Uuid,
    pub correlation_id: Option<String>,
    pub job_type: &'static str,
    pub namespace: &'static str,
    pub status: Status,
    pub explicit: bool,
    pub auto_complete: bool,
    pub start: i64,
    pub end: Option<i64>,
    pub counters: Counters,
    pub meta: Meta,
    pub created: i64,
    pub updated: i64,
    pub tasks: Vec<SeedTask>,
    pub events: Vec<SeedEvent>,
}

pub(crate) struct SeedTask {
    pub id: uuid::Uuid,
    pub task_type: &'static str,
    pub status: Status,
    pub start: i64,
    pub end: Option<i64>,
    pub progress: Option<(i64, i64)>,
    pub error: Option<&'static str>,
    pub meta: String,
    pub updated: i64,
}

pub(crate) struct SeedEvent {
    pub task_id: Option<uuid::Uuid>,
    pub kind: &'static str,
    pub time: i64,
    pub from: Option<Status>,
    pub to: Option<Status>,
    pub reason: Option<&'static str>,
    pub progress: Option<(i64, i64)>,
}

/// splitmix64: a fast, well-mixed hash of a 64-bit value.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Picks an index with Zipf weights 1, 1/2, 1/3, ... from a uniform `r`.
fn zipf(r: u64, n: usize) -> usize {
    let total: f64 = (1..=n).map(|i| 1.0 / i as f64).sum();
    let mut x = (r % 1_000_000) as f64 / 1_000_000.0 * total;
    for i in 0..n {
        x -= 1.0 / (i + 1) as f64;
        if x < 0.0 {
            return i;
        }
    }
    n - 1
}

impl Generator {
    fn new(total: u64, tasks_per_job: u32) -> Generator {
        let now_ms = Timestamp::now().as_millis();
        let span_ms = 365 * 24 * 3600 * 1000;
        Generator {
            total: total.max(1),
            tasks_per_job,
            base_ms: now_ms - span_ms,
            span_ms,
            now_ms,
            salt: uuid::Uuid::new_v4().as_u64_pair().0,
        }
    }

    /// A hash of job `n` for one purpose (`stream`): independent draws per field.
    fn draw(&self, n: u64, stream: u64) -> u64 {
        mix(n.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ mix(stream))
    }

    /// A UUIDv7 made at `ms`, random bits drawn from the salt, `n` and `k`.
    fn uuid(&self, ms: i64, n: u64, k: u64) -> uuid::Uuid {
        let a = mix(self.salt ^ mix(n) ^ k.wrapping_mul(0x9E37_79B9));
        let b = mix(a ^ 0x5151);
        let mut bytes = [0u8; 10];
        bytes[..8].copy_from_slice(&a.to_le_bytes());
        bytes[8..].copy_from_slice(&b.to_le_bytes()[..2]);
        uuid::Builder::from_unix_timestamp_millis(ms.max(0) as u64, &bytes).into_uuid()
    }

    fn job(&self, n: u64) -> SeedJob {
        let d = |s| self.draw(n, s);
        let k = self.tasks_per_job as usize;
        let start = (self.base_ms
            + (i128::from(n) * i128::from(self.span_ms) / i128::from(self.total)) as i64
            + (d(1) % 30_000) as i64)
            .min(self.now_ms);
        let created = (start + (d(2) % 250) as i64).min(self.now_ms);
        let id = self.uuid(created, n, 0);
        let namespace = NAMESPACES[zipf(d(3), NAMESPACES.len())];
        let job_type = JOB_TYPES[zipf(d(4), JOB_TYPES.len())];
        let correlation_id = (d(5) % 10 != 0).then(|| {
            format!(
                "req-{:016x}",
                mix(self.salt ^ (n / JOBS_PER_CORRELATION + 1))
            )
        });
        let meta = Meta::parse(
            Some(serde_json::json!({
                "release_id": n / JOBS_PER_RELEASE,
                "team": TEAMS[(d(6) % TEAMS.len() as u64) as usize],
            })),
            &Limits::default(),
        )
        .expect("seed meta is valid");
        let auto_complete = d(7) % 20 != 0;
        let mut status = match d(8) % 100 {
            0..8 => Status::Pending,
            8..18 => Status::InProgress,
            18..88 => Status::Completed,
            88..96 => Status::Failed,
            _ => Status::Cancelled,
        };
        if k == 0 && status == Status::InProgress {
            status = Status::Pending;
        }
        // Terminal jobs ran for 1 s .. 2 h; open ones have reported progress since.
        let duration = 1_000 + (d(9) % 7_200_000) as i64;
        let finished = (created + duration).min(self.now_ms);

        let task_statuses: Vec<Status> = (0..k)
            .map(|i| {
                let r = self.draw(n, 100 + i as u64) % 100;
                match status {
                    Status::Pending => Status::Pending,
                    Status::InProgress if i == 0 => Status::InProgress,
                    Status::InProgress => match r {
                        0..40 => Status::Pending,
                        40..70 => Status::InProgress,
                        _ => Status::Completed,
                    },
                    Status::Completed if k >= 2 && i == k - 1 && r < 10 => Status::Cancelled,
                    Status::Completed => Status::Completed,
                    Status::Failed if i == 0 => Status::Failed,
                    Status::Failed if r < 30 => Status::Failed,
                    Status::Failed => Status::Completed,
                    // A client cancelled the job: what was still open became cancelled.
                    Status::Cancelled if i == k - 1 || r < 50 => Status::Cancelled,
                    Status::Cancelled => Status::Completed,
                }
            })
            .collect();
        let counters = Counters::recount(task_statuses.iter().copied());
        // A status the counters do not give was set by a client.
        let explicit = status.is_terminal() && counters.derived_status(auto_complete) != status;
        let end = status.is_terminal().then_some(finished);
        let updated = match status {
            Status::Pending => created,
            _ => finished,
        };

        let mut tasks = Vec::with_capacity(k);
        let mut events = Vec::with_capacity(2 * k + 3);
        let event = |task_id, kind, time, from, to, progress| SeedEvent {
            task_id,
            kind,
            time,
            from,
            to,
            reason: None,
            progress,
        };
        events.push(event(None, "created", created, None, None, None));
        for (i, &ts) in task_statuses.iter().enumerate() {
            let task_id = self.uuid(created, n, 1 + i as u64);
            // Tasks finish one after the other; the last one when the job does.
            let done = created + (finished - created) * (i as i64 + 1) / k as i64;
            let (end, updated, progress, error) = match ts {
                Status::Pending => (None, created, None, None),
                Status::InProgress => {
                    let p = (self.draw(n, 200 + i as u64) % 100) as i64;
                    (None, done, Some((p, 100)), None)
                }
                Status::Completed => (Some(done), done, Some((100, 100)), None),
                Status::Failed => (Some(done), done, None, Some("exit status 1")),
                Status::Cancelled => (Some(finished), finished, None, None),
            };
            events.push(event(
                Some(task_id),
                "task_added",
                created,
                None,
                None,
                None,
            ));
            tasks.push(SeedTask {
                id: task_id,
                task_type: TASK_TYPES[i % TASK_TYPES.len()],
                status: ts,
                start: created,
                end,
                progress,
                error,
                meta: format!("{{\"step\":{i}}}"),
                updated,
            });
        }
        for t in &tasks {
            if t.status != Status::Pending {
                let mut e = event(
                    Some(t.id),
                    "status_changed",
                    t.updated,
                    Some(Status::Pending),
                    Some(t.status),
                    t.progress,
                );
                if t.status == Status::Cancelled && explicit {
                    e.reason = Some("cancelled by operator");
                }
                events.push(e);
            }
        }
        if status != Status::Pending {
            let started = tasks.iter().any(|t| {
                matches!(
                    t.status,
                    Status::InProgress | Status::Completed | Status::Failed
                )
            });
            let mut from = Status::Pending;
            if started {
                let first = tasks
                    .iter()
                    .filter(|t| t.status != Status::Pending)
                    .map(|t| t.updated)
                    .min()
                    .unwrap_or(updated);
                events.push(event(
                    None,
                    "status_changed",
                    first,
                    Some(Status::Pending),
                    Some(Status::InProgress),
                    None,
                ));
                from = Status::InProgress;
            }
            if status.is_terminal() {
                let mut e = event(
                    None,
                    "status_changed",
                    finished,
                    Some(from),
                    Some(status),
                    None,
                );
                if explicit {
                    e.reason = Some("set by operator");
                }
                events.push(e);
            }
        }
        SeedJob {
            id,
            correlation_id,
            job_type,
            namespace,
            status,
            explicit,
            auto_complete,
            start,
            end,
            counters,
            meta,
            created,
            updated,
            tasks,
            events,
        }
    }

    /// Job numbers in batches of `BATCH`.
    fn batches(&self) -> impl Iterator<Item = std::ops::Range<u64>> + '_ {
        (0..self.total)
            .step_by(BATCH as usize)
            .map(|lo| lo..(lo + BATCH).min(self.total))
    }
}

fn progress_log(done: u64, total: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        "seeded {done}/{total} jobs ({:.0} jobs/s)",
        done as f64 / secs.max(1e-9)
    );
}

// ---------------------------------------------------------------------------------------

mod sqlite {
    use super::{Generator, progress_log};
    use crate::StoreError;
    use crate::sqlite::{Options, internal, open_connection};
    use portauthority_core::Status;
    use rusqlite::params;
    use std::time::Instant;

    pub(super) fn load(opts: &Options, g: &Generator) -> Result<(u64, u64), StoreError> {
        let mut conn = open_connection(opts, false)?;
        // A bulk load of synthetic rows: fsync at checkpoints only, and a big page cache.
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -262144;")
            .map_err(internal)?;
        let started = Instant::now();
        let (mut tasks, mut events) = (0u64, 0u64);
        for range in g.batches() {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(internal)?;
            {
                let mut job_stmt = tx
                    .prepare(
                        "INSERT INTO jobs (id, correlation_id, type, namespace, status, \
                         status_explicit, auto_complete, start_time, end_time, tasks_total, \
                         tasks_pending, tasks_in_progress, tasks_failed, tasks_completed, \
                         tasks_cancelled, meta, created_at, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                         ?15, ?16, ?17, ?18)",
                    )
                    .map_err(internal)?;
                let mut meta_stmt = tx
                    .prepare(
                        "INSERT OR IGNORE INTO job_meta (key, value, start_time, job_id) \
                         VALUES (?1, ?2, ?3, ?4)",
                    )
                    .map_err(internal)?;
                let mut task_stmt = tx
                    .prepare(
                        "INSERT INTO tasks (id, job_id, type, namespace, status, attempt, \
                         start_time, end_time, progress_current, progress_total, error, meta, \
                         timeout_seconds, heartbeat_at, created_at, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?9, ?10, ?11, NULL, ?12, \
                         ?13, ?12)",
                    )
                    .map_err(internal)?;
                let mut event_stmt = tx
                    .prepare(
                        "INSERT INTO history (job_id, task_id, kind, time, from_status, \
                         to_status, reason, message, data, progress_current, progress_total) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL, ?8, ?9)",
                    )
                    .map_err(internal)?;
                for n in range.clone() {
                    let j = g.job(n);
                    let id = j.id.as_bytes();
                    job_stmt
                        .execute(params![
                            id,
                            j.correlation_id,
                            j.job_type,
                            j.namespace,
                            j.status.code(),
                            j.explicit,
                            j.auto_complete,
                            j.start,
                            j.end,
                            j.counters.total,
                            j.counters.pending,
                            j.counters.in_progress,
                            j.counters.failed,
                            j.counters.completed,
                            j.counters.cancelled,
                            j.meta.as_json(),
                            j.created,
                            j.updated,
                        ])
                        .map_err(internal)?;
                    for (key, value) in j.meta.index_entries() {
                        meta_stmt
                            .execute(params![key, value, j.start, id])
                            .map_err(internal)?;
                    }
                    for t in &j.tasks {
                        task_stmt
                            .execute(params![
                                t.id.as_bytes(),
                                id,
                                t.task_type,
                                j.namespace,
                                t.status.code(),
                                t.start,
                                t.end,
                                t.progress.map(|p| p.0),
                                t.progress.map(|p| p.1),
                                t.error,
                                t.meta,
                                t.updated,
                                j.created,
                            ])
                            .map_err(internal)?;
                    }
                    for e in &j.events {
                        event_stmt
                            .execute(params![
                                id,
                                e.task_id.as_ref().map(|t| t.as_bytes()),
                                e.kind,
                                e.time,
                                e.from.map(Status::code),
                                e.to.map(Status::code),
                                e.reason,
                                e.progress.map(|p| p.0),
                                e.progress.map(|p| p.1),
                            ])
                            .map_err(internal)?;
                    }
                    tasks += j.tasks.len() as u64;
                    events += j.events.len() as u64;
                }
            }
            tx.commit().map_err(internal)?;
            progress_log(range.end, g.total, started);
        }
        // No ANALYZE: the service never runs it, and the list queries are shaped to get the
        // same plans without statistics (docs/list-performance.md).
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(internal)?;
        Ok((tasks, events))
    }
}

// ---------------------------------------------------------------------------------------

mod postgres {
    use super::{Generator, progress_log};
    use crate::StoreError;
    use crate::postgres::{connect_options, db_error};
    use chrono::{DateTime, Utc};
    use portauthority_core::{Status, Timestamp};
    use sqlx::Connection;
    use std::time::Instant;

    fn ts(ms: i64) -> DateTime<Utc> {
        Timestamp::from_millis(ms).to_datetime()
    }

    #[derive(Default)]
    struct Jobs {
        id: Vec<uuid::Uuid>,
        correlation_id: Vec<Option<String>>,
        job_type: Vec<&'static str>,
        namespace: Vec<&'static str>,
        status: Vec<i16>,
        explicit: Vec<bool>,
        auto_complete: Vec<bool>,
        start: Vec<DateTime<Utc>>,
        end: Vec<Option<DateTime<Utc>>>,
        counters: [Vec<i64>; 6],
        meta: Vec<String>,
        created: Vec<DateTime<Utc>>,
        updated: Vec<DateTime<Utc>>,
    }

    #[derive(Default)]
    struct Tasks {
        id: Vec<uuid::Uuid>,
        job_id: Vec<uuid::Uuid>,
        task_type: Vec<&'static str>,
        namespace: Vec<&'static str>,
        status: Vec<i16>,
        start: Vec<DateTime<Utc>>,
        end: Vec<Option<DateTime<Utc>>>,
        progress_current: Vec<Option<i64>>,
        progress_total: Vec<Option<i64>>,
        error: Vec<Option<&'static str>>,
        meta: Vec<String>,
        created: Vec<DateTime<Utc>>,
        updated: Vec<DateTime<Utc>>,
    }

    #[derive(Default)]
    struct MetaRows {
        key: Vec<String>,
        value: Vec<String>,
        start: Vec<DateTime<Utc>>,
        job_id: Vec<uuid::Uuid>,
    }

    #[derive(Default)]
    struct Events {
        job_id: Vec<uuid::Uuid>,
        task_id: Vec<Option<uuid::Uuid>>,
        kind: Vec<&'static str>,
        time: Vec<DateTime<Utc>>,
        from: Vec<Option<i16>>,
        to: Vec<Option<i16>>,
        reason: Vec<Option<&'static str>>,
        progress_current: Vec<Option<i64>>,
        progress_total: Vec<Option<i64>>,
    }

    pub(super) async fn load(url: &str, g: &Generator) -> Result<(u64, u64), StoreError> {
        let mut conn = sqlx::PgConnection::connect_with(&connect_options(url)?)
            .await
            .map_err(db_error)?;
        // A bulk load of synthetic rows: a lost tail on a crash only means seeding again.
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        let started = Instant::now();
        let (mut n_tasks, mut n_events) = (0u64, 0u64);
        for range in g.batches() {
            let (mut jobs, mut tasks, mut events, mut meta) = (
                Jobs::default(),
                Tasks::default(),
                Events::default(),
                MetaRows::default(),
            );
            for n in range.clone() {
                let j = g.job(n);
                jobs.id.push(j.id);
                jobs.correlation_id.push(j.correlation_id);
                jobs.job_type.push(j.job_type);
                jobs.namespace.push(j.namespace);
                jobs.status.push(j.status.code());
                jobs.explicit.push(j.explicit);
                jobs.auto_complete.push(j.auto_complete);
                jobs.start.push(ts(j.start));
                jobs.end.push(j.end.map(ts));
                let c = j.counters;
                for (v, x) in jobs.counters.iter_mut().zip([
                    c.total,
                    c.pending,
                    c.in_progress,
                    c.failed,
                    c.completed,
                    c.cancelled,
                ]) {
                    v.push(x);
                }
                jobs.meta.push(j.meta.as_json().to_owned());
                for (key, value) in j.meta.index_entries() {
                    meta.key.push(key.to_owned());
                    meta.value.push(value);
                    meta.start.push(ts(j.start));
                    meta.job_id.push(j.id);
                }
                jobs.created.push(ts(j.created));
                jobs.updated.push(ts(j.updated));
                for t in &j.tasks {
                    tasks.id.push(t.id);
                    tasks.job_id.push(j.id);
                    tasks.task_type.push(t.task_type);
                    tasks.namespace.push(j.namespace);
                    tasks.status.push(t.status.code());
                    tasks.start.push(ts(t.start));
                    tasks.end.push(t.end.map(ts));
                    tasks.progress_current.push(t.progress.map(|p| p.0));
                    tasks.progress_total.push(t.progress.map(|p| p.1));
                    tasks.error.push(t.error);
                    tasks.meta.push(t.meta.clone());
                    tasks.created.push(ts(j.created));
                    tasks.updated.push(ts(t.updated));
                }
                for e in &j.events {
                    events.job_id.push(j.id);
                    events.task_id.push(e.task_id);
                    events.kind.push(e.kind);
                    events.time.push(ts(e.time));
                    events.from.push(e.from.map(Status::code));
                    events.to.push(e.to.map(Status::code));
                    events.reason.push(e.reason);
                    events.progress_current.push(e.progress.map(|p| p.0));
                    events.progress_total.push(e.progress.map(|p| p.1));
                }
            }
            n_tasks += tasks.id.len() as u64;
            n_events += events.job_id.len() as u64;
            let mut tx = conn.begin().await.map_err(db_error)?;
            let [total, pending, in_progress, failed, completed, cancelled] = jobs.counters;
            sqlx::query(
                "INSERT INTO jobs (id, correlation_id, type, namespace, status, status_explicit,
                                   auto_complete, start_time, end_time, tasks_total, tasks_pending,
                                   tasks_in_progress, tasks_failed, tasks_completed,
                                   tasks_cancelled, meta, created_at, updated_at)
                 SELECT id, correlation_id, type, namespace, status, status_explicit,
                        auto_complete, start_time, end_time, total, pending, in_progress,
                        failed, completed, cancelled, meta::json, created_at, updated_at
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int2[],
                             $6::bool[], $7::bool[], $8::timestamptz[], $9::timestamptz[],
                             $10::int8[], $11::int8[], $12::int8[], $13::int8[], $14::int8[],
                             $15::int8[], $16::text[], $17::timestamptz[], $18::timestamptz[])
                      AS t(id, correlation_id, type, namespace, status, status_explicit,
                           auto_complete, start_time, end_time, total, pending, in_progress,
                           failed, completed, cancelled, meta, created_at, updated_at)",
            )
            .bind(&jobs.id)
            .bind(&jobs.correlation_id)
            .bind(&jobs.job_type)
            .bind(&jobs.namespace)
            .bind(&jobs.status)
            .bind(&jobs.explicit)
            .bind(&jobs.auto_complete)
            .bind(&jobs.start)
            .bind(&jobs.end)
            .bind(&total)
            .bind(&pending)
            .bind(&in_progress)
            .bind(&failed)
            .bind(&completed)
            .bind(&cancelled)
            .bind(&jobs.meta)
            .bind(&jobs.created)
            .bind(&jobs.updated)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            sqlx::query(
                "INSERT INTO tasks (id, job_id, type, namespace, status, attempt, start_time,
                                    end_time, progress_current, progress_total, error, meta,
                                    timeout_seconds, heartbeat_at, created_at, updated_at)
                 SELECT id, job_id, type, namespace, status, 1, start_time, end_time,
                        progress_current, progress_total, error, meta::json, NULL, updated_at,
                        created_at, updated_at
                 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int2[],
                             $6::timestamptz[], $7::timestamptz[], $8::int8[], $9::int8[],
                             $10::text[], $11::text[], $12::timestamptz[], $13::timestamptz[])
                      AS t(id, job_id, type, namespace, status, start_time, end_time,
                           progress_current, progress_total, error, meta, created_at,
                           updated_at)",
            )
            .bind(&tasks.id)
            .bind(&tasks.job_id)
            .bind(&tasks.task_type)
            .bind(&tasks.namespace)
            .bind(&tasks.status)
            .bind(&tasks.start)
            .bind(&tasks.end)
            .bind(&tasks.progress_current)
            .bind(&tasks.progress_total)
            .bind(&tasks.error)
            .bind(&tasks.meta)
            .bind(&tasks.created)
            .bind(&tasks.updated)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            // The meta index rows and the count deltas, as the store writes them with a job.
            sqlx::query(
                "INSERT INTO job_meta (key, value, start_time, job_id)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::uuid[])",
            )
            .bind(&meta.key)
            .bind(&meta.value)
            .bind(&meta.start)
            .bind(&meta.job_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            sqlx::query(
                "INSERT INTO job_meta_count_deltas (key, value, n)
                 SELECT key, value, count(*) FROM unnest($1::text[], $2::text[]) AS t(key, value)
                 GROUP BY key, value",
            )
            .bind(&meta.key)
            .bind(&meta.value)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            sqlx::query(
                "INSERT INTO job_count_deltas (namespace, type, status, n)
                 SELECT namespace, type, status, count(*)
                 FROM unnest($1::text[], $2::text[], $3::int2[]) AS t(namespace, type, status)
                 GROUP BY namespace, type, status",
            )
            .bind(&jobs.namespace)
            .bind(&jobs.job_type)
            .bind(&jobs.status)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            // WITH ORDINALITY keeps each job's events in the order they happened.
            sqlx::query(
                "INSERT INTO history (job_id, task_id, kind, time, from_status, to_status,
                                      reason, progress_current, progress_total)
                 SELECT job_id, task_id, kind, time, from_status, to_status, reason,
                        progress_current, progress_total
                 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[],
                             $5::int2[], $6::int2[], $7::text[], $8::int8[], $9::int8[])
                      WITH ORDINALITY
                      AS t(job_id, task_id, kind, time, from_status, to_status, reason,
                           progress_current, progress_total, ord)
                 ORDER BY ord",
            )
            .bind(&events.job_id)
            .bind(&events.task_id)
            .bind(&events.kind)
            .bind(&events.time)
            .bind(&events.from)
            .bind(&events.to)
            .bind(&events.reason)
            .bind(&events.progress_current)
            .bind(&events.progress_total)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            progress_log(range.end, g.total, started);
        }
        // The count deltas written above, folded now rather than by a server.
        for sql in crate::postgres::FOLD_COUNTS_SQL {
            sqlx::query(sql)
                .execute(&mut conn)
                .await
                .map_err(db_error)?;
        }
        // Statistics for the planner, and the visibility map for index-only scans.
        sqlx::query("VACUUM (ANALYZE) jobs, tasks, history, job_meta, job_counts, job_meta_counts")
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        let _ = conn.close().await;
        Ok((n_tasks, n_events))
    }
}
