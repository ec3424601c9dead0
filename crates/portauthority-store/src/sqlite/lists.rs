//! Lists and history pages on SQLite: the SQL for the list planner's choices
//! (`crate::query`): filters, counts, offset and keyset paging.

use super::internal;
use super::rows::{
    HISTORY_COLUMNS, JOB_COLUMNS, TASK_COLUMNS, event_from_row, job_from_row, job_head, task,
    task_from_row,
};
use crate::StoreError;
use crate::query::{
    Bind, HistoryScope, JobFilter, JobSource, Page, Paging, TaskFilter, job_sort_key,
    keyset_condition, keyset_condition_on, scope_condition, sort_column,
};
use portauthority_core::api::{HistoryEvent, Job, SortField, SortOrder, Task};
use portauthority_core::{JobId, Scope, Status, TaskId, Timestamp, plan};
use rusqlite::types::Value;
use rusqlite::{Connection, Row, params_from_iter};

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

    /// The caller's scope on a namespace column (`query::scope_condition`).
    fn scope(&mut self, column: &str, scope: &Scope) {
        let params = &mut self.params;
        if let Some(sql) = scope_condition(column, scope, |v| {
            params.push(Value::Text(v));
            format!("?{}", params.len())
        }) {
            self.sql.push(sql);
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
    cond.scope(&format!("{j}namespace"), &filter.scope);
    cond.eq(&format!("{j}type"), filter.job_type.as_ref());
    cond.eq(
        &format!("{j}correlation_id"),
        filter.correlation_id.as_ref(),
    );
    cond.statuses_of(&format!("{j}status"), &filter.statuses);
    // One condition per meta key (the filter is merged, see `JobFilter::with_meta_merged`).
    // SQLite plans these in time linear in their number, unlike PostgreSQL (see
    // postgres/lists.rs): on 100,000 seeded jobs, 16 keys count in 19 ms (4 keys: 14 ms) and
    // read a page in 1 ms. What failed was an expression deeper than SQLite's limit of 1000
    // (493 filters), which the request limits (`Limits::meta_filter_keys_max`) keep far off.
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
            cond.scope("namespace", &filter.scope);
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
    now: Timestamp,
) -> Result<Page<Job>, StoreError> {
    let filter = &filter.with_meta_merged();
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
            job_from_row(r, now).map(|j| j.job)
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
    scope: &Scope,
    job_id: JobId,
    filter: &TaskFilter,
    paging: &Paging,
) -> Result<Page<Task>, StoreError> {
    if plan::visible(scope, job_head(c, job_id)?, |h| &h.namespace).is_none() {
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
    scope: &Scope,
    of: HistoryScope,
    after: i64,
    size: u32,
) -> Result<Vec<HistoryEvent>, StoreError> {
    let (sql, key) = match of {
        HistoryScope::Job(job_id) => {
            if plan::visible(scope, job_head(c, job_id)?, |h| &h.namespace).is_none() {
                return Err(StoreError::job_not_found(job_id));
            }
            ("job_id", job_id.as_bytes().to_vec())
        }
        HistoryScope::Task(job_id, task_id) => {
            let seen = plan::visible(scope, job_head(c, job_id)?, |h| &h.namespace);
            if seen.is_none() || task(c, task_id)?.is_none_or(|t| t.job_id != job_id) {
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

/// See `Store::due_tasks`: a range of the partial index `tasks_deadline`.
pub(crate) fn due_tasks(
    c: &Connection,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<(JobId, TaskId)>, StoreError> {
    c.prepare_cached(
        "SELECT job_id, id FROM tasks WHERE deadline IS NOT NULL AND deadline <= ?1 \
         ORDER BY deadline LIMIT ?2",
    )
    .map_err(internal)?
    .query_map(rusqlite::params![now.as_millis(), limit], |r| {
        let (job, task): ([u8; 16], [u8; 16]) = (r.get(0)?, r.get(1)?);
        Ok((
            JobId::from_uuid(uuid::Uuid::from_bytes(job)),
            TaskId::from_uuid(uuid::Uuid::from_bytes(task)),
        ))
    })
    .map_err(internal)?
    .collect::<rusqlite::Result<_>>()
    .map_err(internal)
}

/// See `Store::due_jobs`: a range of the partial index `jobs_deadline`.
pub(crate) fn due_jobs(
    c: &Connection,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<JobId>, StoreError> {
    c.prepare_cached(
        "SELECT id FROM jobs WHERE deadline IS NOT NULL AND deadline <= ?1 \
         ORDER BY deadline LIMIT ?2",
    )
    .map_err(internal)?
    .query_map(rusqlite::params![now.as_millis(), limit], |r| {
        Ok(JobId::from_uuid(uuid::Uuid::from_bytes(r.get(0)?)))
    })
    .map_err(internal)?
    .collect::<rusqlite::Result<_>>()
    .map_err(internal)
}
