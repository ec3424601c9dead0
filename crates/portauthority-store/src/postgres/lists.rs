//! Lists and history pages on PostgreSQL: the SQL for the list planner's choices
//! (`crate::query`): filters, counts from the stored count tables, offset and keyset
//! paging.

use super::rows::{
    HISTORY_COLUMNS, JOB_COLUMNS, TASK_COLUMNS, event_from_row, job_from_row, task_from_row,
};
use crate::query::{
    Bind, HistoryScope, JobFilter, JobSource, Page, Paging, TaskFilter, job_sort_key,
    keyset_condition_on, sort_column,
};
use portauthority_core::api::{HistoryEvent, Job, SortField, SortOrder, Task};
use portauthority_core::auth::NamespaceRange;
use portauthority_core::{JobId, Scope, Status, TaskId, Timestamp};
use sqlx::{PgConnection, Postgres, QueryBuilder};

/// Appends ` AND column = value` when the filter is set.
/// ` AND <the caller's scope>` on a namespace column: the ranges of `Scope::ranges`, as
/// `query::scope_condition` writes them for SQLite (here with QueryBuilder's binds).
fn scope(qb: &mut QueryBuilder<Postgres>, column: &str, scope: &Scope) {
    let Some(ranges) = scope.ranges() else {
        return;
    };
    qb.push(" AND (");
    for (i, r) in ranges.into_iter().enumerate() {
        if i > 0 {
            qb.push(" OR ");
        }
        match r {
            NamespaceRange::Exact(n) => {
                qb.push(format!("{column} = ")).push_bind(n);
            }
            NamespaceRange::Range { from, to } => {
                qb.push(format!("({column} >= ")).push_bind(from);
                if let Some(to) = to {
                    qb.push(format!(" AND {column} < ")).push_bind(to);
                }
                qb.push(")");
            }
        }
    }
    qb.push(")");
}

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
    scope(qb, "j.namespace", &filter.scope);
    eq(qb, "j.type", &filter.job_type);
    eq(qb, "j.correlation_id", &filter.correlation_id);
    statuses_of(qb, "j.status", &filter.statuses);
    let rest: Vec<&(String, Vec<String>)> = meta.collect();
    let (joined, probed) = rest.split_at(rest.len().min(JOINED_META_FILTERS));
    for (key, values) in joined {
        qb.push(format!(
            " AND {id} IN (SELECT x.job_id FROM job_meta x WHERE true"
        ));
        meta_condition(qb, "x", key, values);
        qb.push(")");
    }
    if !probed.is_empty() {
        // One look at the job's own meta rows (a few, through job_meta_job) for all of
        // them: how many of the keys hold an allowed value.
        qb.push(format!(
            " AND (SELECT count(DISTINCT x.key) FROM job_meta x WHERE x.job_id = {id} AND ("
        ));
        for (i, (key, values)) in probed.iter().enumerate() {
            qb.push(if i == 0 { "(true" } else { " OR (true" });
            meta_condition(qb, "x", key, values);
            qb.push(")");
        }
        qb.push(")) = ").push_bind(probed.len() as i64);
    }
    (col, id)
}

/// How many meta keys (after the one that drives a page read from job_meta) become
/// semi-joins; the others are tested together by one correlated probe (`job_from`), so that
/// the size of the plan does not grow with the number of keys.
///
/// A semi-join per key lets the planner choose, for each, a hash of its matches or a probe
/// per row, but planning time grows much faster than the number of keys. On 100,000 seeded
/// jobs (`portauthority seed`, 15 extra keys on 10 % of them; PostgreSQL 15) one semi-join
/// per key took 12 to 33 ms to plan at 16 keys, 260 ms at 64, 1 s at 100 and 13 s at 200;
/// a `JOIN job_meta mN` per key was worse (47 ms at 16, 565 ms at 64: every alias joins
/// every other on `job_id`). The probe plans in about 1 ms at any number and costs a few µs
/// per candidate row. Three semi-joins keep the planner's choice for short filters (up to
/// four keys plan in under 2 ms). `GET /v1/jobs` with `meta.team=atlas` and 15 more keys,
/// before and after: 150 → 44 ms; sorted by `updated_at`, 5 s → 130 ms (see `reuse_plan`).
const JOINED_META_FILTERS: usize = 3;

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
                scope(&mut qb, "namespace", &filter.scope);
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
    let n: i64 = qb
        .build_query_scalar()
        .persistent(reuse_plan(filter))
        .fetch_one(&mut *c)
        .await?;
    Ok(n.max(0) as u64)
}

/// Whether a job list's statements are prepared once per connection and reused. Not with
/// two meta keys or more: after five runs of a prepared statement PostgreSQL may switch to
/// a generic plan, blind to the values, and one for 16 keys took 1.1 s where the plans for
/// the values took 50 ms (4 ms → 160 ms with a narrow first key). An unnamed statement is
/// planned for its values each time, for about 1 ms and one more round trip.
fn reuse_plan(filter: &JobFilter) -> bool {
    filter.meta.len() < 2
}

/// A page of jobs in two steps: the ids of the page from one index alone (an index-only
/// scan, so an offset skips index entries, not heap rows), then those rows.
pub(crate) async fn list_jobs(
    c: &mut PgConnection,
    filter: &JobFilter,
    paging: &Paging,
    now: Timestamp,
) -> Result<Page<Job>, sqlx::Error> {
    let filter = &filter.with_meta_merged();
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
    let rows = qb
        .build()
        .persistent(reuse_plan(filter))
        .fetch_all(&mut *c)
        .await?;
    let items = rows
        .iter()
        .map(|r| job_from_row(r, now).map(|j| j.job))
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
    of: HistoryScope,
    after: i64,
    size: u32,
) -> Result<Vec<HistoryEvent>, sqlx::Error> {
    let (column, id) = match of {
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

/// See `Store::due_tasks`: a range of the partial index `tasks_deadline`.
pub(crate) async fn due_tasks(
    c: &mut PgConnection,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<(JobId, TaskId)>, sqlx::Error> {
    let rows: Vec<(uuid::Uuid, uuid::Uuid)> = sqlx::query_as(
        "SELECT job_id, id FROM tasks WHERE deadline <= $1 ORDER BY deadline LIMIT $2",
    )
    .bind(now.to_datetime())
    .bind(i64::from(limit))
    .fetch_all(c)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(job, task)| (JobId::from_uuid(job), TaskId::from_uuid(task)))
        .collect())
}

/// See `Store::due_jobs`: a range of the partial index `jobs_deadline`.
pub(crate) async fn due_jobs(
    c: &mut PgConnection,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<JobId>, sqlx::Error> {
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM jobs WHERE deadline <= $1 ORDER BY deadline LIMIT $2")
            .bind(now.to_datetime())
            .bind(i64::from(limit))
            .fetch_all(c)
            .await?;
    Ok(ids.into_iter().map(JobId::from_uuid).collect())
}
