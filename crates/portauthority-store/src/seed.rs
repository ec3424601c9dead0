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
//! `pending`, and the job's own status changes, numbered 1, 2, 3, ... in that order
//! (`job_seq`, written in the same order so that `seq` agrees), the job row keeping the last
//! number (`last_seq`) as the command layer keeps it. Nothing goes to the outbox: seeded
//! jobs stand for activity that was published long ago.
//!
//! This module is the generator: pure, no clock and no random source of its own (the time
//! of the run and the id salt are handed in), no SQL. Each store has its loader beside its
//! other code: `sqlite/seed.rs` loads batches of prepared inserts in big transactions
//! (`synchronous = NORMAL` for the load only); `postgres/seed.rs` loads batches with
//! `INSERT ... SELECT FROM unnest($1, $2, ...)` (one statement per table per batch) and
//! ends with `VACUUM (ANALYZE)`.

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
/// applying migrations). Adds to what is there. The seeded year ends at the system clock's
/// now.
pub async fn seed(url: &str, jobs: u64, tasks_per_job: u32) -> Result<SeedReport, StoreError> {
    let started = Instant::now();
    crate::migrate(url).await?;
    let now = portauthority_core::Clock::now(&crate::system::SystemClock);
    // A fresh salt per run, so that a second run adds new jobs instead of colliding.
    let salt = uuid::Uuid::new_v4().as_u64_pair().0;
    let generator = Generator::new(jobs, tasks_per_job, now, salt);
    let (tasks, events) = if crate::sqlite::handles(url) {
        let opts = crate::sqlite::parse_url(url)?;
        tokio::task::spawn_blocking(move || crate::sqlite::seed::load(&opts, &generator))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))??
    } else if crate::postgres::handles(url) {
        crate::postgres::seed::load(url, &generator).await?
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
// The generator: every row is a pure function of the job's number, the run's time and (for
// ids and correlation ids) the run's salt.

pub(crate) struct Generator {
    pub(crate) total: u64,
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
    /// In the order they happened, `job_seq` 1, 2, 3, ...
    pub events: Vec<SeedEvent>,
    /// The `job_seq` of the last event: the number of events.
    pub last_seq: i64,
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
    /// The event's place in its job's history, from 1, without gaps.
    pub job_seq: i64,
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
    /// `total` jobs whose start times spread over the year before `now`; `salt` varies the
    /// ids (and correlation ids) from one run to the next.
    pub(crate) fn new(total: u64, tasks_per_job: u32, now: Timestamp, salt: u64) -> Generator {
        let now_ms = now.as_millis();
        let span_ms = 365 * 24 * 3600 * 1000;
        Generator {
            total: total.max(1),
            tasks_per_job,
            base_ms: now_ms - span_ms,
            span_ms,
            now_ms,
            salt,
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

    /// Job number `n` (from 0), with its tasks and history.
    pub(crate) fn job(&self, n: u64) -> SeedJob {
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
        // Numbered below, once all are pushed.
        let event = |task_id, kind, time, from, to, progress| SeedEvent {
            job_seq: 0,
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
        for (i, e) in events.iter_mut().enumerate() {
            e.job_seq = i as i64 + 1;
        }
        let last_seq = events.len() as i64;
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
            last_seq,
        }
    }

    /// Job numbers in batches of `BATCH`.
    pub(crate) fn batches(&self) -> impl Iterator<Item = std::ops::Range<u64>> + '_ {
        (0..self.total)
            .step_by(BATCH as usize)
            .map(|lo| lo..(lo + BATCH).min(self.total))
    }
}

pub(crate) fn progress_log(done: u64, total: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        "seeded {done}/{total} jobs ({:.0} jobs/s)",
        done as f64 / secs.max(1e-9)
    );
}
