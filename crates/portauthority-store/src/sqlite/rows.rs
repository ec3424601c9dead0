//! Reading rows: mapping between SQLite rows and domain types, and the read queries.

use super::internal;
use crate::StoreError;
use crate::query::{
    Bind, HistoryScope, JobFilter, JobSource, Page, Paging, TaskFilter, job_sort_key,
    keyset_condition, keyset_condition_on, sort_column,
};
use portauthority_core::api::{EventKind, HistoryEvent, Job, Progress, SortField, SortOrder, Task};
use portauthority_core::{Counters, JobId, JobState, Status, TaskId, Timestamp};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};
use serde_json::value::RawValue;

pub(crate) const JOB_COLUMNS: &str = "id, correlation_id, type, namespace, status, status_explicit, \
    auto_complete, start_time, end_time, tasks_total, tasks_pending, tasks_in_progress, \
    tasks_failed, tasks_completed, tasks_cancelled, meta, created_at, updated_at, last_seq";

pub(crate) const TASK_COLUMNS: &str = "id, job_id, type, namespace, status, attempt, start_time, \
    end_time, progress_current, progress_total, error, meta, timeout_seconds, created_at, updated_at";

pub(crate) const HISTORY_COLUMNS: &str = "seq, job_id, task_id, kind, time, from_status, to_status, \
    reason, message, data, progress_current, progress_total, job_seq";

use portauthority_core::plan::{JobHead, StoredJob};

fn bad_row(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.to_owned(), rusqlite::types::Type::Null)
}

fn uuid_col(row: &Row<'_>, i: usize) -> rusqlite::Result<uuid::Uuid> {
    let bytes: [u8; 16] = row.get(i)?;
    Ok(uuid::Uuid::from_bytes(bytes))
}

fn status_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Status> {
    Status::from_code(row.get(i)?).ok_or_else(|| bad_row("status"))
}

fn opt_status_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Status>> {
    match row.get::<_, Option<i64>>(i)? {
        Some(c) => Status::from_code(c)
            .map(Some)
            .ok_or_else(|| bad_row("status")),
        None => Ok(None),
    }
}

fn time_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Timestamp> {
    Ok(Timestamp::from_millis(row.get(i)?))
}

fn opt_time_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Timestamp>> {
    Ok(row.get::<_, Option<i64>>(i)?.map(Timestamp::from_millis))
}

fn raw_json(s: String) -> rusqlite::Result<Box<RawValue>> {
    RawValue::from_string(s).map_err(|_| bad_row("json"))
}

fn progress_cols(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Progress>> {
    let current: Option<i64> = row.get(i)?;
    let total: Option<i64> = row.get(i + 1)?;
    Ok(current.map(|c| Progress {
        current: c as u64,
        total: total.map(|t| t as u64),
    }))
}

pub(crate) fn job_from_row(row: &Row<'_>) -> rusqlite::Result<StoredJob> {
    Ok(StoredJob {
        job: Job {
            id: JobId::from_uuid(uuid_col(row, 0)?),
            correlation_id: row.get(1)?,
            job_type: row.get(2)?,
            namespace: row.get(3)?,
            status: status_col(row, 4)?,
            auto_complete: row.get(6)?,
            start_time: time_col(row, 7)?,
            end_time: opt_time_col(row, 8)?,
            tasks: Counters {
                total: row.get(9)?,
                pending: row.get(10)?,
                in_progress: row.get(11)?,
                failed: row.get(12)?,
                completed: row.get(13)?,
                cancelled: row.get(14)?,
            },
            meta: raw_json(row.get(15)?)?,
            created_at: time_col(row, 16)?,
            updated_at: time_col(row, 17)?,
        },
        explicit: row.get(5)?,
        last_seq: row.get(18)?,
    })
}

pub(crate) fn task_from_row(row: &Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        id: TaskId::from_uuid(uuid_col(row, 0)?),
        job_id: JobId::from_uuid(uuid_col(row, 1)?),
        task_type: row.get(2)?,
        namespace: row.get(3)?,
        status: status_col(row, 4)?,
        attempt: row.get(5)?,
        start_time: time_col(row, 6)?,
        end_time: opt_time_col(row, 7)?,
        progress: progress_cols(row, 8)?,
        error: row.get(10)?,
        meta: raw_json(row.get(11)?)?,
        timeout_seconds: row.get(12)?,
        created_at: time_col(row, 13)?,
        updated_at: time_col(row, 14)?,
    })
}

pub(crate) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<HistoryEvent> {
    let task_id: Option<[u8; 16]> = row.get(2)?;
    let kind: String = row.get(3)?;
    Ok(HistoryEvent {
        seq: row.get(0)?,
        job_id: JobId::from_uuid(uuid_col(row, 1)?),
        task_id: task_id.map(|b| TaskId::from_uuid(uuid::Uuid::from_bytes(b))),
        kind: EventKind::parse(&kind).ok_or_else(|| bad_row("kind"))?,
        time: time_col(row, 4)?,
        from: opt_status_col(row, 5)?,
        to: opt_status_col(row, 6)?,
        reason: row.get(7)?,
        message: row.get(8)?,
        data: row.get::<_, Option<String>>(9)?.map(raw_json).transpose()?,
        progress: progress_cols(row, 10)?,
        job_seq: row.get(12)?,
    })
}

pub(crate) fn job(c: &Connection, id: JobId) -> Result<Option<StoredJob>, StoreError> {
    c.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))
        .map_err(internal)?
        .query_row([id.as_bytes()], job_from_row)
        .optional()
        .map_err(internal)
}

/// Only what the rules need of a job: cheaper than the whole row on the hot path.
pub(crate) fn job_head(c: &Connection, id: JobId) -> Result<Option<JobHead>, StoreError> {
    c.prepare_cached(
        "SELECT status, status_explicit, auto_complete, end_time, tasks_total, tasks_pending, \
         tasks_in_progress, tasks_failed, tasks_completed, tasks_cancelled, last_seq \
         FROM jobs WHERE id = ?1",
    )
    .map_err(internal)?
    .query_row([id.as_bytes()], |r| {
        let state = JobState {
            status: status_col(r, 0)?,
            explicit: r.get(1)?,
            auto_complete: r.get(2)?,
            end_time: opt_time_col(r, 3)?,
            counters: Counters {
                total: r.get(4)?,
                pending: r.get(5)?,
                in_progress: r.get(6)?,
                failed: r.get(7)?,
                completed: r.get(8)?,
                cancelled: r.get(9)?,
            },
        };
        Ok(JobHead {
            state,
            last_seq: r.get(10)?,
        })
    })
    .optional()
    .map_err(internal)
}

pub(crate) fn task(c: &Connection, id: TaskId) -> Result<Option<Task>, StoreError> {
    c.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))
        .map_err(internal)?
        .query_row([id.as_bytes()], task_from_row)
        .optional()
        .map_err(internal)
}

/// `WHERE` clauses and their parameters, built up filter by filter.
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    params: Vec<Value>,
}

impl Conditions {
    fn eq(&mut self, column: &str, value: Option<&String>) {
        if let Some(v) = value {
            self.params.push(Value::Text(v.clone()));
            self.sql.push(format!("{column} = ?{}", self.params.len()));
        }
    }

    fn any_of(&mut self, column: &str, values: impl IntoIterator<Item = Value>) {
        let mut marks = Vec::new();
        for v in values {
            self.params.push(v);
            marks.push(format!("?{}", self.params.len()));
        }
        if !marks.is_empty() {
            self.sql.push(format!("{column} IN ({})", marks.join(", ")));
        }
    }

    fn statuses(&mut self, statuses: &[Status]) {
        self.statuses_of("status", statuses);
    }

    fn statuses_of(&mut self, column: &str, statuses: &[Status]) {
        self.any_of(
            column,
            statuses.iter().map(|s| Value::Integer(s.code().into())),
        );
    }

    fn clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.sql.join(" AND "))
        }
    }
}

fn page_of<T>(
    c: &Connection,
    table: &str,
    columns: &str,
    cond: Conditions,
    paging: &Paging,
    map: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Page<T>, StoreError> {
    let mut cond = cond;
    let clause = cond.clause();
    let total: i64 = c
        .prepare_cached(&format!("SELECT COUNT(*) FROM {table} {clause}"))
        .map_err(internal)?
        .query_row(params_from_iter(cond.params.iter()), |r| r.get(0))
        .map_err(internal)?;
    if let Some(cursor) = &paging.after {
        let params = &mut cond.params;
        let sql = keyset_condition(paging, cursor, |b| {
            params.push(bind_value(b));
            format!("?{}", params.len())
        });
        cond.sql.push(sql);
    }
    let clause = cond.clause();
    let dir = match paging.order {
        SortOrder::Asc => "ASC",
        SortOrder::Desc => "DESC",
    };
    let col = sort_column(paging.sort);
    let order = format!("{col} {dir}, id {dir}");
    let n = cond.params.len();
    let sql = format!(
        "SELECT {columns} FROM {table} {clause} ORDER BY {order} LIMIT {} OFFSET ?{}",
        paging.size, // a literal: see list_jobs
        n + 1
    );
    let mut params = cond.params;
    params.push(Value::Integer(
        i64::try_from(paging.offset()).unwrap_or(i64::MAX),
    ));
    let items = c
        .prepare_cached(&sql)
        .map_err(internal)?
        .query_map(params_from_iter(params.iter()), map)
        .map_err(internal)?
        .collect::<rusqlite::Result<Vec<T>>>()
        .map_err(internal)?;
    Ok(Page {
        items,
        total_items: total as u64,
    })
}

/// The `FROM` and `WHERE` of a job list read from `source`, with the columns its page is
/// ordered by. Job columns are qualified `j.`; meta rows `m.`.
struct JobQuery {
    from: &'static str,
    cond: Conditions,
    /// The sort column and the id column, in the table the page is read from.
    col: String,
    id: &'static str,
}

impl Conditions {
    fn push(&mut self, v: Value) -> String {
        self.params.push(v);
        format!("?{}", self.params.len())
    }

    /// `key = ? AND value IN (...)` on the job_meta alias `m`.
    fn meta(&mut self, m: &str, key: &str, values: &[String]) -> String {
        let key = self.push(Value::Text(key.to_owned()));
        let marks: Vec<String> = values
            .iter()
            .map(|v| self.push(Value::Text(v.clone())))
            .collect();
        format!("{m}.key = {key} AND {m}.value IN ({})", marks.join(", "))
    }
}

/// `COALESCE(end_time, NULL_KEY)` sorts unfinished jobs first, as `end_time` does; the
/// smallest integer a literal can spell without turning REAL.
const NULL_KEY: &str = "-9223372036854775807";

/// `scan_sort_index`: see [`walk_sort_index`].
fn job_query(
    filter: &JobFilter,
    source: JobSource,
    paging: &Paging,
    scan_sort_index: bool,
) -> JobQuery {
    let mut cond = Conditions::default();
    // A unary `+` keeps SQLite from using an index for a condition.
    let j = if scan_sort_index { "+j." } else { "j." };
    let mut meta = filter.meta.iter();
    let (from, col, id) = if source == JobSource::Meta {
        let (key, values) = meta.next().expect("a meta filter drives");
        let sql = cond.meta("m", key, values);
        cond.sql.push(sql);
        let from = if filter.has_job_conditions() {
            "job_meta m JOIN jobs j ON j.id = m.job_id"
        } else {
            "job_meta m"
        };
        (from, "m.start_time".to_owned(), "m.job_id")
    } else {
        ("jobs j", job_sort_key(paging.sort, "j.", NULL_KEY), "j.id")
    };
    cond.eq(&format!("{j}namespace"), filter.namespace.as_ref());
    cond.eq(&format!("{j}type"), filter.job_type.as_ref());
    cond.eq(
        &format!("{j}correlation_id"),
        filter.correlation_id.as_ref(),
    );
    cond.statuses_of(&format!("{j}status"), &filter.statuses);
    for (key, values) in meta {
        let sql = cond.meta("x", key, values);
        // Read from jobs: the planner may start from the meta rows (a narrow filter) or
        // probe them. Read from job_meta: probe the job's own few meta rows.
        cond.sql.push(if source == JobSource::Meta {
            format!("EXISTS (SELECT 1 FROM job_meta x WHERE x.job_id = {id} AND {sql})")
        } else {
            format!("{id} IN (SELECT x.job_id FROM job_meta x WHERE {sql})")
        });
    }
    JobQuery {
        from,
        cond,
        col,
        id,
    }
}

/// `total_items`: a sum over `job_counts` when only namespace, type and status filter, over
/// `job_meta_counts` for one meta filter alone, else a count over the narrowest index
/// (job_meta for a meta filter).
fn count_jobs(c: &Connection, filter: &JobFilter) -> Result<u64, StoreError> {
    let (sql, params) = match filter.count_source() {
        JobSource::Counts => {
            let mut cond = Conditions::default();
            cond.eq("namespace", filter.namespace.as_ref());
            cond.eq("type", filter.job_type.as_ref());
            cond.statuses(&filter.statuses);
            (
                format!(
                    "SELECT COALESCE(SUM(n), 0) FROM job_counts {}",
                    cond.clause()
                ),
                cond.params,
            )
        }
        JobSource::MetaCounts => {
            let mut cond = Conditions::default();
            let (key, values) = &filter.meta[0];
            let sql = cond.meta("c", key, values);
            (
                format!("SELECT COALESCE(SUM(n), 0) FROM job_meta_counts c WHERE {sql}"),
                cond.params,
            )
        }
        source => {
            let q = job_query(filter, source, &Paging::default(), false);
            (
                format!("SELECT COUNT(*) FROM {} {}", q.from, q.cond.clause()),
                q.cond.params,
            )
        }
    };
    let n: i64 = c
        .prepare_cached(&sql)
        .map_err(internal)?
        .query_row(params_from_iter(params.iter()), |r| r.get(0))
        .map_err(internal)?;
    Ok(n.max(0) as u64)
}

/// A page of jobs in two steps: the ids of the page from one index alone (so an offset
/// skips index entries, not rows), then those rows.
pub(crate) fn list_jobs(
    c: &Connection,
    filter: &JobFilter,
    paging: &Paging,
) -> Result<Page<Job>, StoreError> {
    let total = count_jobs(c, filter)?;
    let source = filter.page_source(paging);
    let scan = source == JobSource::Jobs
        && paging.sort != SortField::StartTime
        && filter.has_job_conditions()
        && walk_sort_index(c, total, paging)?;
    let JobQuery {
        from,
        mut cond,
        col,
        id,
    } = job_query(filter, source, paging, scan);
    if let Some(cursor) = &paging.after {
        let params = &mut cond.params;
        let sql = keyset_condition_on(paging, cursor, &col, id, Some(NULL_KEY), |b| {
            params.push(bind_value(b));
            format!("?{}", params.len())
        });
        cond.sql.push(sql);
    }
    let dir = match paging.order {
        SortOrder::Asc => "ASC",
        SortOrder::Desc => "DESC",
    };
    // The page size is written into the SQL, not bound: SQLite re-prepares a statement whose
    // LIMIT is a parameter at every run (30 % of the CPU of a page-1 list), while a
    // literal keeps it in the statement cache. It is a validated number; a few sizes occur.
    let limit = paging.size;
    let offset = cond.push(Value::Integer(
        i64::try_from(paging.offset()).unwrap_or(i64::MAX),
    ));
    let sort = sort_column(paging.sort);
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id IN (\
         SELECT {id} FROM {from} {} ORDER BY {col} {dir}, {id} {dir} LIMIT {limit} OFFSET {offset}\
         ) ORDER BY {sort} {dir}, id {dir}",
        cond.clause()
    );
    let items = c
        .prepare_cached(&sql)
        .map_err(internal)?
        .query_map(params_from_iter(cond.params.iter()), |r| {
            job_from_row(r).map(|j| j.job)
        })
        .map_err(internal)?
        .collect::<rusqlite::Result<Vec<Job>>>()
        .map_err(internal)?;
    Ok(Page {
        items,
        total_items: total,
    })
}

/// Whether a page sorted by a key no filter index is ordered by (say `updated_at` with a
/// `namespace` filter) is cheaper read by walking the sort key's index and testing each row,
/// than by collecting every match and sorting them. SQLite's planner picks the filter's index
/// and a sort whatever the LIMIT: 230 ms for a page of a namespace holding 28 % of 1,000,000
/// jobs, against under 1 ms walking `updated_at`. With the exact match count at hand (the
/// page's `total_items`) and the number of jobs (from job_counts), the walk reads about
/// `(offset + size) * all / matches` rows; sorting reads every match, and sorts it.
fn walk_sort_index(c: &Connection, matches: u64, paging: &Paging) -> Result<bool, StoreError> {
    if matches == 0 {
        return Ok(false);
    }
    let all: i64 = c
        .prepare_cached("SELECT COALESCE(SUM(n), 0) FROM job_counts")
        .map_err(internal)?
        .query_row([], |r| r.get(0))
        .map_err(internal)?;
    let wanted = paging.offset().saturating_add(paging.size);
    Ok(wanted.saturating_mul(all.max(0) as u64) / matches < matches.saturating_mul(2))
}

fn bind_value(b: Bind) -> Value {
    match b {
        Bind::Time(t) => Value::Integer(t.as_millis()),
        Bind::Text(s) => Value::Text(s),
        Bind::Status(s) => Value::Integer(s.code().into()),
        Bind::Id(id) => Value::Blob(id.as_bytes().to_vec()),
    }
}

pub(crate) fn list_tasks(
    c: &Connection,
    job_id: JobId,
    filter: &TaskFilter,
    paging: &Paging,
) -> Result<Page<Task>, StoreError> {
    if job(c, job_id)?.is_none() {
        return Err(StoreError::job_not_found(job_id));
    }
    let mut cond = Conditions::default();
    cond.params.push(Value::Blob(job_id.as_bytes().to_vec()));
    cond.sql.push("job_id = ?1".into());
    cond.eq("namespace", filter.namespace.as_ref());
    cond.eq("type", filter.task_type.as_ref());
    cond.statuses(&filter.statuses);
    page_of(c, "tasks", TASK_COLUMNS, cond, paging, task_from_row)
}

pub(crate) fn history(
    c: &Connection,
    scope: HistoryScope,
    after: i64,
    size: u32,
) -> Result<Vec<HistoryEvent>, StoreError> {
    let (sql, key) = match scope {
        HistoryScope::Job(job_id) => {
            if job(c, job_id)?.is_none() {
                return Err(StoreError::job_not_found(job_id));
            }
            ("job_id", job_id.as_bytes().to_vec())
        }
        HistoryScope::Task(job_id, task_id) => {
            if task(c, task_id)?.is_none_or(|t| t.job_id != job_id) {
                return Err(StoreError::task_not_found(job_id, task_id));
            }
            ("task_id", task_id.as_bytes().to_vec())
        }
    };
    c.prepare_cached(&format!(
        "SELECT {HISTORY_COLUMNS} FROM history WHERE {sql} = ?1 AND seq > ?2 ORDER BY seq \
         LIMIT {size}" // a literal: see list_jobs
    ))
    .map_err(internal)?
    .query_map(rusqlite::params![key, after], event_from_row)
    .map_err(internal)?
    .collect::<rusqlite::Result<Vec<_>>>()
    .map_err(internal)
}

/// A job's pending and in-progress tasks, with their statuses.
pub(crate) fn open_tasks(c: &Connection, job: JobId) -> Result<Vec<(TaskId, Status)>, StoreError> {
    c.prepare_cached("SELECT id, status FROM tasks WHERE job_id = ?1 AND status IN (?2, ?3)")
        .map_err(internal)?
        .query_map(
            rusqlite::params![
                job.as_bytes(),
                Status::Pending.code(),
                Status::InProgress.code()
            ],
            |r| Ok((TaskId::from_uuid(uuid_col(r, 0)?), status_col(r, 1)?)),
        )
        .map_err(internal)?
        .collect::<rusqlite::Result<_>>()
        .map_err(internal)
}

/// The change feed: history in `seq` order, which the one writer makes commit order.
pub(crate) fn feed(
    c: &Connection,
    after: crate::Position,
    limit: u32,
) -> Result<Vec<crate::FeedEvent>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {HISTORY_COLUMNS} FROM history WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))
    .map_err(internal)?
    .query_map(rusqlite::params![after.seq, limit], event_from_row)
    .map_err(internal)?
    .map(|e| {
        e.map(|event| crate::FeedEvent {
            position: crate::Position {
                horizon: 0,
                seq: event.seq,
            },
            event,
        })
    })
    .collect::<rusqlite::Result<_>>()
    .map_err(internal)
}

pub(crate) fn outbox_backlog(c: &Connection) -> Result<u64, StoreError> {
    c.query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(internal)
}
