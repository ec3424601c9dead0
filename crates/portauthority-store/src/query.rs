use portauthority_core::api::{Job, SortField, SortOrder, Task};
use portauthority_core::auth::NamespaceRange;
use portauthority_core::{JobId, Scope, Status, TaskId, Timestamp};

/// Paging: by offset (`page` is 1-based), or by keyset when `after` is set.
#[derive(Clone, Debug)]
pub struct Paging {
    pub page: u64,
    pub size: u64,
    pub sort: SortField,
    pub order: SortOrder,
    /// Keyset paging: only rows after this one in the sort order (and `page` is ignored).
    pub after: Option<Cursor>,
}

/// The sort key of one row: where a keyset page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub value: SortValue,
    pub id: uuid::Uuid,
}

/// A row's value in the sort column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SortValue {
    /// `start_time`, `end_time` (None: not finished), `created_at`, `updated_at`.
    Time(Option<Timestamp>),
    /// `type`, `namespace`.
    Text(String),
    Status(Status),
}

impl SortValue {
    /// The value of `field` in a job.
    pub fn of_job(field: SortField, j: &Job) -> SortValue {
        Self::pick(
            field,
            j.start_time,
            j.end_time,
            j.created_at,
            j.updated_at,
            &j.job_type,
            &j.namespace,
            j.status,
        )
    }

    /// The value of `field` in a task.
    pub fn of_task(field: SortField, t: &Task) -> SortValue {
        Self::pick(
            field,
            t.start_time,
            t.end_time,
            t.created_at,
            t.updated_at,
            &t.task_type,
            &t.namespace,
            t.status,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn pick(
        field: SortField,
        start: Timestamp,
        end: Option<Timestamp>,
        created: Timestamp,
        updated: Timestamp,
        kind: &str,
        namespace: &str,
        status: Status,
    ) -> SortValue {
        match field {
            SortField::StartTime => SortValue::Time(Some(start)),
            SortField::EndTime => SortValue::Time(end),
            SortField::CreatedAt => SortValue::Time(Some(created)),
            SortField::UpdatedAt => SortValue::Time(Some(updated)),
            SortField::Type => SortValue::Text(kind.to_owned()),
            SortField::Namespace => SortValue::Text(namespace.to_owned()),
            SortField::Status => SortValue::Status(status),
        }
    }
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            page: 1,
            size: 25,
            sort: SortField::StartTime,
            order: SortOrder::Asc,
            after: None,
        }
    }
}

impl Paging {
    pub fn offset(&self) -> u64 {
        if self.after.is_some() {
            return 0;
        }
        (self.page.saturating_sub(1)).saturating_mul(self.size)
    }
}

/// Filters of the job list; all given filters must hold.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub namespace: Option<String>,
    pub job_type: Option<String>,
    pub correlation_id: Option<String>,
    /// Any of these statuses (empty: any status).
    pub statuses: Vec<Status>,
    /// `(key, tagged values)`: the top-level meta key holds one of the values (see
    /// `portauthority_core::validate::meta_filter_values`).
    pub meta: Vec<(String, Vec<String>)>,
    /// The caller's scope: jobs outside it are left out of the page and the total.
    pub scope: Scope,
}

/// The SQL form of `scope` on a namespace column: equalities and half-open ranges
/// ([`Scope::ranges`]), each an index range over a byte-ordered column; `None` when the
/// scope allows every namespace. `bind` adds a text parameter and returns its placeholder.
pub(crate) fn scope_condition(
    column: &str,
    scope: &Scope,
    mut bind: impl FnMut(String) -> String,
) -> Option<String> {
    let terms: Vec<String> = scope
        .ranges()?
        .into_iter()
        .map(|r| match r {
            NamespaceRange::Exact(n) => format!("{column} = {}", bind(n)),
            NamespaceRange::Range { from, to: None } => format!("{column} >= {}", bind(from)),
            NamespaceRange::Range { from, to: Some(to) } => {
                let (from, to) = (bind(from), bind(to));
                format!("({column} >= {from} AND {column} < {to})")
            }
        })
        .collect();
    Some(format!("({})", terms.join(" OR ")))
}

/// Where a job list reads the ids of its page (and its count) from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JobSource {
    /// `job_counts`: the count of a list filtered by nothing but namespace, type and status.
    Counts,
    /// `job_meta_counts`: the count of a list filtered by one meta filter alone.
    MetaCounts,
    /// `job_meta` through `(key, value, start_time, job_id)`, driven by the first meta filter:
    /// pages in `start_time` order at any depth without visiting `jobs`. Not when there is a
    /// `correlation_id` filter, which is narrower.
    Meta,
    /// `jobs`, through the index of the sort column or of a filter.
    Jobs,
}

impl JobFilter {
    /// The filter with each meta key once: a key given several times holds the values all
    /// its filters allow (a job has one job_meta row per key, so "one of A and one of B" is
    /// "one of A ∩ B"; an empty intersection matches nothing), in the order keys first
    /// appear. The same list, with one probe of job_meta per key instead of per parameter.
    pub(crate) fn with_meta_merged(&self) -> JobFilter {
        let mut meta: Vec<(String, Vec<String>)> = Vec::with_capacity(self.meta.len());
        for (key, values) in &self.meta {
            match meta.iter_mut().find(|(k, _)| k == key) {
                Some((_, kept)) => kept.retain(|v| values.contains(v)),
                None => meta.push((key.clone(), values.clone())),
            }
        }
        JobFilter {
            meta,
            ..self.clone()
        }
    }

    /// Where the page's ids come from.
    pub(crate) fn page_source(&self, paging: &Paging) -> JobSource {
        if paging.sort == SortField::StartTime && self.meta_drives() {
            JobSource::Meta
        } else {
            JobSource::Jobs
        }
    }

    /// Where `total_items` comes from.
    pub(crate) fn count_source(&self) -> JobSource {
        if self.correlation_id.is_none() && self.meta.is_empty() {
            JobSource::Counts
        } else if self.meta.len() == 1 && !self.has_job_conditions() {
            JobSource::MetaCounts
        } else if self.meta_drives() {
            JobSource::Meta
        } else {
            JobSource::Jobs
        }
    }

    fn meta_drives(&self) -> bool {
        !self.meta.is_empty() && self.correlation_id.is_none()
    }

    /// Whether a condition on a `jobs` column other than the id applies.
    pub(crate) fn has_job_conditions(&self) -> bool {
        self.namespace.is_some()
            || !self.scope.is_all()
            || self.job_type.is_some()
            || self.correlation_id.is_some()
            || !self.statuses.is_empty()
    }
}

/// Filters of a job's task list.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    pub namespace: Option<String>,
    pub task_type: Option<String>,
    pub statuses: Vec<Status>,
}

/// One page of a list and the size of the whole list.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total_items: u64,
}

/// Whose history to read.
#[derive(Clone, Copy, Debug)]
pub enum HistoryScope {
    /// The job's own events and those of all its tasks.
    Job(JobId),
    /// The events of one task.
    Task(JobId, TaskId),
}

/// A value a keyset condition binds; each store turns it into its own parameter type.
#[derive(Clone)]
pub(crate) enum Bind {
    Time(Timestamp),
    Text(String),
    Status(Status),
    Id(uuid::Uuid),
}

/// The SQL column a sort field orders by.
pub(crate) fn sort_column(field: SortField) -> &'static str {
    match field {
        SortField::StartTime => "start_time",
        SortField::EndTime => "end_time",
        SortField::CreatedAt => "created_at",
        SortField::UpdatedAt => "updated_at",
        SortField::Type => "type",
        SortField::Namespace => "namespace",
        SortField::Status => "status",
    }
}

/// The key a job list is sorted by, on the table alias `q`: the column, except for the
/// nullable `end_time`, which is `COALESCE(end_time, <null_key>)` with `null_key` a literal
/// below every time. That is the expression `jobs_end_time_key` indexes (migration 0002): one
/// total order, nulls first ascending and last descending as before, so a cursor is a single
/// index range even with a filter (an `OR end_time IS NULL` made the planner scan).
pub(crate) fn job_sort_key(field: SortField, q: &str, null_key: &str) -> String {
    match field {
        SortField::EndTime => format!("COALESCE({q}end_time, {null_key})"),
        other => format!("{q}{}", sort_column(other)),
    }
}

/// The condition selecting the rows after `cursor` in the order `(column order, id order)`,
/// with unset values (only `end_time`) first ascending and last descending. `bind` adds a
/// parameter and returns its placeholder. Row-value comparisons keep it an index range scan.
pub(crate) fn keyset_condition(
    paging: &Paging,
    cursor: &Cursor,
    bind: impl FnMut(Bind) -> String,
) -> String {
    keyset_condition_on(paging, cursor, sort_column(paging.sort), "id", None, bind)
}

/// [`keyset_condition`] over the given sort key and id columns (e.g. `m.start_time`,
/// `m.job_id` when a page is read from another table's index). `null_key` is given when the
/// sort key is never null (`COALESCE(end_time, <null_key>)`, see [`job_sort_key`]): an unset
/// value then compares as that literal, and the condition is always one row-value range.
pub(crate) fn keyset_condition_on(
    paging: &Paging,
    cursor: &Cursor,
    col: &str,
    id_col: &str,
    null_key: Option<&str>,
    mut bind: impl FnMut(Bind) -> String,
) -> String {
    let value = match &cursor.value {
        SortValue::Time(t) => t.map(Bind::Time),
        SortValue::Text(s) => Some(Bind::Text(s.clone())),
        SortValue::Status(s) => Some(Bind::Status(*s)),
    };
    let asc = paging.order == SortOrder::Asc;
    let (cmp, nullable) = (
        if asc { ">" } else { "<" },
        paging.sort == SortField::EndTime,
    );
    if let Some(null_key) = null_key.filter(|_| nullable) {
        // The leading `col >= v` (or `<=`) is implied by the row comparison; SQLite only
        // turns a comparison of a plain column into an index range, not one of an indexed
        // expression, so it is spelled out. (Not for plain columns: there SQLite would take
        // the one-column range and scan every tie of `v`.)
        let mut v = || value.clone().map_or_else(|| null_key.to_owned(), &mut bind);
        let (v1, v2) = (v(), v());
        let id = bind(Bind::Id(cursor.id));
        return format!("({col} {cmp}= {v1} AND ({col}, {id_col}) {cmp} ({v2}, {id}))");
    }
    match value {
        Some(v) => {
            let v = bind(v);
            let id = bind(Bind::Id(cursor.id));
            if nullable && !asc {
                format!("(({col}, {id_col}) < ({v}, {id}) OR {col} IS NULL)")
            } else {
                format!("({col}, {id_col}) {cmp} ({v}, {id})")
            }
        }
        None => {
            let id = bind(Bind::Id(cursor.id));
            if asc {
                format!("(({col} IS NULL AND {id_col} > {id}) OR {col} IS NOT NULL)")
            } else {
                format!("({col} IS NULL AND {id_col} < {id})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::JobFilter;

    fn filter(pairs: &[(&str, &[&str])]) -> JobFilter {
        JobFilter {
            meta: pairs
                .iter()
                .map(|(k, vs)| {
                    (
                        (*k).to_owned(),
                        vs.iter().map(|v| (*v).to_owned()).collect(),
                    )
                })
                .collect(),
            ..JobFilter::default()
        }
    }

    #[test]
    fn a_repeated_meta_key_keeps_the_values_all_its_filters_allow() {
        let merged = filter(&[
            ("a", &["s:1", "n:1"]),
            ("b", &["s:x"]),
            ("a", &["s:1.0", "n:1"]),
            ("a", &["n:1"]),
        ])
        .with_meta_merged();
        assert_eq!(
            merged.meta,
            filter(&[("a", &["n:1"]), ("b", &["s:x"])]).meta
        );
    }

    #[test]
    fn a_repeated_meta_key_with_no_common_value_allows_none() {
        let merged = filter(&[("a", &["s:1", "n:1"]), ("a", &["s:2", "n:2"])]).with_meta_merged();
        assert_eq!(merged.meta, vec![("a".to_owned(), Vec::<String>::new())]);
    }
}
