//! Reading rows: mapping PostgreSQL rows to domain types, and the read queries.

use crate::query::{
    Bind, HistoryScope, JobFilter, JobSource, Page, Paging, TaskFilter, job_sort_key,
    keyset_condition_on, sort_column,
};
use chrono::{DateTime, Utc};
use portauthority_core::api::{EventKind, HistoryEvent, Job, Progress, SortField, SortOrder, Task};
use portauthority_core::plan::StoredJob;
use portauthority_core::{Counters, JobId, Status, TaskId, Timestamp};
use serde_json::value::RawValue;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

const JOB_COLUMNS: &str = "id, correlation_id, type, namespace, status, status_explicit, auto_complete, \
    start_time, end_time, tasks_total, tasks_pending, tasks_in_progress, tasks_failed, tasks_completed, \
    tasks_cancelled, meta::text, created_at, updated_at, last_seq";

const TASK_COLUMNS: &str = "id, job_id, type, namespace, status, attempt, start_time, end_time, \
    progress_current, progress_total, error, meta::text, timeout_seconds, created_at, updated_at";

pub(crate) const HISTORY_COLUMNS: &str = "seq, job_id, task_id, kind, time, from_status, to_status, \
    reason, message, data::text, progress_current, progress_total, job_seq";

fn decode_err(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("bad {what} in a stored row").into())
}

fn status(code: i16) -> Result<Status, sqlx::Error> {
    Status::from_code(code.into()).ok_or_else(|| decode_err("status"))
}

fn time(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_datetime(&t)
}

fn raw(s: String) -> Result<Box<RawValue>, sqlx::Error> {
    RawValue::from_string(s).map_err(|_| decode_err("json"))
}

fn progress(current: Option<i64>, total: Option<i64>) -> Option<Progress> {
    current.map(|c| Progress {
        current: c as u64,
        total: total.map(|t| t as u64),
    })
}

fn job_from_row(r: &PgRow) -> Result<StoredJob, sqlx::Error> {
    Ok(StoredJob {
        job: Job {
            id: JobId::from_uuid(r.try_get(0)?),
            correlation_id: r.try_get(1)?,
            job_type: r.try_get(2)?,
            namespace: r.try_get(3)?,
            status: status(r.try_get(4)?)?,
            auto_complete: r.try_get(6)?,
            start_time: time(r.try_get(7)?),
            end_time: r.try_get::<Option<DateTime<Utc>>, _>(8)?.map(time),
            tasks: Counters {
                total: r.try_get(9)?,
                pending: r.try_get(10)?,
                in_progress: r.try_get(11)?,
                failed: r.try_get(12)?,
                completed: r.try_get(13)?,
                cancelled: r.try_get(14)?,
            },
            meta: raw(r.try_get(15)?)?,
            created_at: time(r.try_get(16)?),
            updated_at: time(r.try_get(17)?),
        },
        explicit: r.try_get(5)?,
        last_seq: r.try_get(18)?,
    })
}

fn task_from_row(r: &PgRow) -> Result<Task, sqlx::Error> {
    Ok(Task {
        id: TaskId::from_uuid(r.try_get(0)?),
        job_id: JobId::from_uuid(r.try_get(1)?),
        task_type: r.try_get(2)?,
        namespace: r.try_get(3)?,
        status: status(r.try_get(4)?)?,
        attempt: r.try_get(5)?,
        start_time: time(r.try_get(6)?),
        end_time: r.try_get::<Option<DateTime<Utc>>, _>(7)?.map(time),
        progress: progress(r.try_get(8)?, r.try_get(9)?),
        error: r.try_get(10)?,
        meta: raw(r.try_get(11)?)?,
        timeout_seconds: r.try_get(12)?,
        created_at: time(r.try_get(13)?),
        updated_at: time(r.try_get(14)?),
    })
}

pub(crate) fn event_from_row(r: &PgRow) -> Result<HistoryEvent, sqlx::Error> {
    let kind: String = r.try_get(3)?;
    let opt_status = |i: usize| -> Result<Option<Status>, sqlx::Error> {
        r.try_get::<Option<i16>, _>(i)?.map(status).transpose()
    };
    Ok(HistoryEvent {
        seq: r.try_get(0)?,
        job_id: JobId::from_uuid(r.try_get(1)?),
        task_id: r
            .try_get::<Option<uuid::Uuid>, _>(2)?
            .map(TaskId::from_uuid),
        kind: EventKind::parse(&kind).ok_or_else(|| decode_err("event kind"))?,
        time: time(r.try_get(4)?),
        from: opt_status(5)?,
        to: opt_status(6)?,
        reason: r.try_get(7)?,
        message: r.try_get(8)?,
        data: r.try_get::<Option<String>, _>(9)?.map(raw).transpose()?,
        progress: progress(r.try_get(10)?, r.try_get(11)?),
        job_seq: r.try_get(12)?,
    })
}

/// Loads a job; `lock` takes its row lock for the rest of the transaction.
pub(crate) async fn job(
    c: &mut PgConnection,
    id: JobId,
    lock: bool,
) -> Result<Option<StoredJob>, sqlx::Error> {
    let sql = if lock {
        format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE")
    } else {
        format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1")
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.as_uuid())
        .fetch_optional(c)
        .await?
        .map(|r| job_from_row(&r))
        .transpose()
}

/// Loads and locks several jobs in one statement, in id order (the order every writer
/// takes job locks in, so two batches never wait on each other in a cycle).
pub(crate) async fn jobs_locked(
    c: &mut PgConnection,
    ids: &[uuid::Uuid],
) -> Result<Vec<StoredJob>, sqlx::Error> {
    // One row: the plain statement, planned once (see postgres::SCALAR_ROWS).
    if let [id] = ids {
        return Ok(job(c, JobId::from_uuid(*id), true)
            .await?
            .into_iter()
            .collect());
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE"
    )))
    .bind(ids)
    .fetch_all(c)
    .await?
    .iter()
    .map(job_from_row)
    .collect()
}

/// Loads several tasks in one statement.
pub(crate) async fn tasks(
    c: &mut PgConnection,
    ids: &[uuid::Uuid],
) -> Result<Vec<Task>, sqlx::Error> {
    if let [id] = ids {
        return Ok(task(c, TaskId::from_uuid(*id)).await?.into_iter().collect());
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = ANY($1)"
    )))
    .bind(ids)
    .fetch_all(c)
    .await?
    .iter()
    .map(task_from_row)
    .collect()
}

pub(crate) async fn task(c: &mut PgConnection, id: TaskId) -> Result<Option<Task>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"
    )))
    .bind(id.as_uuid())
    .fetch_optional(c)
    .await?
    .map(|r| task_from_row(&r))
    .transpose()
}

/// A job's pending and in-progress tasks, with their statuses.
pub(crate) async fn open_tasks(
    c: &mut PgConnection,
    job: JobId,
) -> Result<Vec<(TaskId, Status)>, sqlx::Error> {
    let rows: Vec<(uuid::Uuid, i16)> =
        sqlx::query_as("SELECT id, status FROM tasks WHERE job_id = $1 AND status IN ($2, $3)")
            .bind(job.as_uuid())
            .bind(Status::Pending.code())
            .bind(Status::InProgress.code())
            .fetch_all(c)
            .await?;
    rows.into_iter()
        .map(|(id, s)| Ok((TaskId::from_uuid(id), status(s)?)))
        .collect()
}

/// Appends ` AND column = value` when the filter is set.
fn eq(qb: &mut QueryBuilder<Postgres>, column: &str, value: &Option<String>) {
    if let Some(v) = value {
        qb.push(format!(" AND {column} = ")).push_bind(v.clone());
    }
}

fn statuses(qb: &mut QueryBuilder<Postgres>, statuses: &[Status]) {
    statuses_of(qb, "status", statuses);
}

/// One status is an equality, not `= ANY(array)`: an index on `(status, start_time, id)`
/// then returns rows in `start_time` order (with an array PostgreSQL must sort them all).
fn statuses_of(qb: &mut QueryBuilder<Postgres>, column: &str, statuses: &[Status]) {
    match statuses {
        [] => {}
        [one] => {
            qb.push(format!(" AND {column} = ")).push_bind(one.code());
        }
        many => {
            let codes: Vec<i16> = many.iter().map(|s| s.code()).collect();
            qb.push(format!(" AND {column} = ANY("))
                .push_bind(codes)
                .push(")");
        }
    }
}

/// `COALESCE(end_time, NULL_KEY)` sorts unfinished jobs first, as `end_time NULLS FIRST`.
const NULL_KEY: &str = "'-infinity'::timestamptz";

/// Appends ` AND <keyset condition>` over `col` and `id`, when paging by cursor. `null_key`:
/// see `keyset_condition_on`.
fn keyset(
    qb: &mut QueryBuilder<Postgres>,
    paging: &Paging,
    col: &str,
    id: &str,
    null_key: Option<&str>,
) {
    let Some(cursor) = &paging.after else { return };
    // QueryBuilder numbers placeholders as they are pushed: collect the SQL with markers
    // first, then push text and binds in order.
    let mut binds = Vec::new();
    let sql = keyset_condition_on(paging, cursor, col, id, null_key, |b| {
        binds.push(b);
        "\u{0}".to_owned()
    });
    qb.push(" AND ");
    let mut parts = sql.split('\u{0}');
    qb.push(parts.next().unwrap_or_default());
    for (b, text) in binds.into_iter().zip(parts) {
        match b {
            Bind::Time(t) => qb.push_bind(t.to_datetime()),
            Bind::Text(s) => qb.push_bind(s),
            Bind::Status(s) => qb.push_bind(s.code()),
            Bind::Id(id) => qb.push_bind(id),
        };
        qb.push(text);
    }
}

/// `ORDER BY` directions of the sort column and of the id. NULLS FIRST ascending, as SQLite
/// orders, only for the nullable `end_time` (whose index is built that way): spelling it for a
/// NOT NULL column would not match its index, and PostgreSQL would sort the whole table.
fn directions(paging: &Paging) -> (&'static str, &'static str) {
    match (paging.order, paging.sort == SortField::EndTime) {
        (SortOrder::Asc, true) => ("ASC NULLS FIRST", "ASC"),
        (SortOrder::Desc, true) => ("DESC NULLS LAST", "DESC"),
        (SortOrder::Asc, false) => ("ASC", "ASC"),
        (SortOrder::Desc, false) => ("DESC", "DESC"),
    }
}

/// Appends the keyset condition (when paging by cursor), the order and the limit.
fn order_by(qb: &mut QueryBuilder<Postgres>, paging: &Paging) {
    let col = sort_column(paging.sort);
    keyset(qb, paging, col, "id", None);
    let (dir, id_dir) = directions(paging);
    qb.push(format!(" ORDER BY {col} {dir}, id {id_dir} LIMIT "))
        .push_bind(paging.size as i64)
        .push(" OFFSET ")
        .push_bind(i64::try_from(paging.offset()).unwrap_or(i64::MAX));
}

/// ` AND m.key = $k AND m.value = ...` on the job_meta alias `m`; one value is an equality,
/// so that the index returns the rows in `start_time` order (see `statuses_of`).
fn meta_condition(qb: &mut QueryBuilder<Postgres>, m: &str, key: &str, values: &[String]) {
    qb.push(format!(" AND {m}.key = "))
        .push_bind(key.to_owned());
    match values {
        [one] => {
            qb.push(format!(" AND {m}.value = ")).push_bind(one.clone());
        }
        many => {
            qb.push(format!(" AND {m}.value = ANY("))
                .push_bind(many.to_vec())
                .push(")");
        }
    }
}

/// Appends `FROM ... WHERE ...` of a job list read from `source` and returns the sort
/// column and id column of that table. Job columns are qualified `j.`, meta rows `m.`.
fn job_from(
    qb: &mut QueryBuilder<Postgres>,
    filter: &JobFilter,
    source: JobSource,
    paging: &Paging,
) -> (String, &'static str) {
    let mut meta = filter.meta.iter();
    let (col, id) = if source == JobSource::Meta {
        let (key, values) = meta.next().expect("a meta filter drives");
        qb.push(if filter.has_job_conditions() {
            " FROM job_meta m JOIN jobs j ON j.id = m.job_id WHERE true"
        } else {
            " FROM job_meta m WHERE true"
        });
        meta_condition(qb, "m", key, values);
        ("m.start_time".to_owned(), "m.job_id")
    } else {
        qb.push(" FROM jobs j WHERE true");
        (job_sort_key(paging.sort, "j.", NULL_KEY), "j.id")
    };
    eq(qb, "j.namespace", &filter.namespace);
    eq(qb, "j.type", &filter.job_type);
    eq(qb, "j.correlation_id", &filter.correlation_id);
    statuses_of(qb, "j.status", &filter.statuses);
    for (key, values) in meta {
        qb.push(format!(
            " AND {id} IN (SELECT x.job_id FROM job_meta x WHERE true"
        ));
        meta_condition(qb, "x", key, values);
        qb.push(")");
    }
    (col, id)
}

/// `total_items`: a sum over `job_counts` and its pending deltas when only namespace, type
/// and status filter, over `job_meta_counts` and its deltas for one meta filter alone, else a
/// count over the narrowest index (job_meta for a meta filter).
async fn count_jobs(c: &mut PgConnection, filter: &JobFilter) -> Result<u64, sqlx::Error> {
    let mut qb = QueryBuilder::<Postgres>::new("");
    match filter.count_source() {
        JobSource::Counts => {
            qb.push("SELECT COALESCE(sum(n), 0)::bigint FROM (");
            for (i, table) in ["job_counts", "job_count_deltas"].into_iter().enumerate() {
                if i > 0 {
                    qb.push(" UNION ALL ");
                }
                qb.push(format!("SELECT n FROM {table} WHERE true"));
                eq(&mut qb, "namespace", &filter.namespace);
                eq(&mut qb, "type", &filter.job_type);
                statuses(&mut qb, &filter.statuses);
            }
            qb.push(") c");
        }
        JobSource::MetaCounts => {
            let (key, values) = &filter.meta[0];
            qb.push("SELECT COALESCE(sum(n), 0)::bigint FROM (");
            for (i, table) in ["job_meta_counts", "job_meta_count_deltas"]
                .into_iter()
                .enumerate()
            {
                if i > 0 {
                    qb.push(" UNION ALL ");
                }
                qb.push(format!("SELECT c.n FROM {table} c WHERE true"));
                meta_condition(&mut qb, "c", key, values);
            }
            qb.push(") c");
        }
        source => {
            qb.push("SELECT count(*)");
            job_from(&mut qb, filter, source, &Paging::default());
        }
    }
    let n: i64 = qb.build_query_scalar().fetch_one(&mut *c).await?;
    Ok(n.max(0) as u64)
}

/// A page of jobs in two steps: the ids of the page from one index alone (an index-only
/// scan, so an offset skips index entries, not heap rows), then those rows.
pub(crate) async fn list_jobs(
    c: &mut PgConnection,
    filter: &JobFilter,
    paging: &Paging,
) -> Result<Page<Job>, sqlx::Error> {
    let total = count_jobs(c, filter).await?;
    let (dir, id_dir) = directions(paging);
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id IN (SELECT "
    ));
    // The id column is known once the source is: push a placeholder-free prefix by hand.
    let source = filter.page_source(paging);
    qb.push(if source == JobSource::Meta {
        "m.job_id"
    } else {
        "j.id"
    });
    let (col, id) = job_from(&mut qb, filter, source, paging);
    keyset(&mut qb, paging, &col, id, Some(NULL_KEY));
    // The sort key never is null (see job_sort_key): plain directions match its index.
    qb.push(format!(" ORDER BY {col} {id_dir}, {id} {id_dir} LIMIT "))
        .push_bind(paging.size as i64)
        .push(" OFFSET ")
        .push_bind(i64::try_from(paging.offset()).unwrap_or(i64::MAX));
    qb.push(format!(
        ") ORDER BY {} {dir}, id {id_dir}",
        sort_column(paging.sort)
    ));
    let rows = qb.build().fetch_all(&mut *c).await?;
    let items = rows
        .iter()
        .map(|r| job_from_row(r).map(|j| j.job))
        .collect::<Result<_, _>>()?;
    Ok(Page {
        items,
        total_items: total,
    })
}

fn task_conditions(qb: &mut QueryBuilder<Postgres>, job_id: JobId, filter: &TaskFilter) {
    qb.push(" AND job_id = ").push_bind(*job_id.as_uuid());
    eq(qb, "namespace", &filter.namespace);
    eq(qb, "type", &filter.task_type);
    statuses(qb, &filter.statuses);
}

pub(crate) async fn list_tasks(
    c: &mut PgConnection,
    job_id: JobId,
    filter: &TaskFilter,
    paging: &Paging,
) -> Result<Page<Task>, sqlx::Error> {
    let mut count = QueryBuilder::<Postgres>::new("SELECT count(*) FROM tasks WHERE true");
    task_conditions(&mut count, job_id, filter);
    let total: i64 = count.build_query_scalar().fetch_one(&mut *c).await?;
    let mut qb =
        QueryBuilder::<Postgres>::new(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE true"));
    task_conditions(&mut qb, job_id, filter);
    order_by(&mut qb, paging);
    let rows = qb.build().fetch_all(&mut *c).await?;
    let items = rows.iter().map(task_from_row).collect::<Result<_, _>>()?;
    Ok(Page {
        items,
        total_items: total as u64,
    })
}

pub(crate) async fn history(
    c: &mut PgConnection,
    scope: HistoryScope,
    after: i64,
    size: u32,
) -> Result<Vec<HistoryEvent>, sqlx::Error> {
    let (column, id) = match scope {
        HistoryScope::Job(j) => ("job_id", *j.as_uuid()),
        HistoryScope::Task(_, t) => ("task_id", *t.as_uuid()),
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {HISTORY_COLUMNS} FROM history WHERE {column} = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    )))
    .bind(id)
    .bind(after)
    .bind(i64::from(size))
    .fetch_all(c)
    .await?;
    rows.iter().map(event_from_row).collect()
}
