use portauthority_core::api::{SortField, SortOrder};
use portauthority_core::{JobId, Status, TaskId};

/// Offset paging: `page` is 1-based.
#[derive(Clone, Copy, Debug)]
pub struct Paging {
    pub page: u64,
    pub size: u64,
    pub sort: SortField,
    pub order: SortOrder,
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            page: 1,
            size: 25,
            sort: SortField::StartTime,
            order: SortOrder::Asc,
        }
    }
}

impl Paging {
    pub fn offset(&self) -> u64 {
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
