//! The wire shapes of HTTP API v1 (also the `data` of bus commands), and their parsing
//! into validated commands.
//!
//! Request types are deliberately lenient (optional strings) so that validation can report
//! every problem with a field name; response types are exact.

use crate::clock::Ids;
use crate::ids::{JobId, TaskId};
use crate::status::{Counters, Status};
use crate::time::Timestamp;
use crate::validate::{self, Limits, Meta, Name, ValidationErrors};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

pub mod webhooks;

// ---------------------------------------------------------------------------------------
// Resources

/// A job, as every endpoint returns it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Job {
    pub id: JobId,
    pub correlation_id: Option<String>,
    #[serde(rename = "type")]
    pub job_type: String,
    pub namespace: String,
    pub status: Status,
    pub start_time: Timestamp,
    pub end_time: Option<Timestamp>,
    pub tasks: Counters,
    #[schema(value_type = Object)]
    #[cfg_attr(feature = "schema", schemars(with = "serde_json::Map<String, Value>"))]
    pub meta: Box<RawValue>,
    pub auto_complete: bool,
    /// Fail the job (reason `timed_out`, its open tasks cancelled) when it is not terminal
    /// this long after its `start_time`.
    pub timeout_seconds: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// How far the job is, how fast its tasks finish and when it will end, as of the read.
    pub progress: JobProgress,
}

/// A job's progress (see `progress.rs` for the estimate).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobProgress {
    /// Terminal tasks over all tasks, 0 to 1; null when the job has no tasks.
    pub fraction: Option<f64>,
    /// Tasks reaching a terminal status per minute, a moving average with a half-life of
    /// a minute that decays while none finish; null until a few have finished.
    pub rate_per_minute: Option<f64>,
    /// When the last task should finish at that rate; null when `eta_reason` says why.
    pub eta: Option<Timestamp>,
    pub eta_reason: Option<EtaReason>,
}

/// Why a job has no ETA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum EtaReason {
    /// The job has no tasks.
    NoTasks,
    /// Too few tasks have finished yet to measure a rate.
    TooFewSamples,
    /// No task has finished for several times the usual gap.
    Stalled,
    /// The job has ended.
    Terminal,
    /// `auto_complete` is false: the job ends when a client says so.
    OpenEnded,
}

/// Progress a task reports: `current` of `total` (units are the client's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Progress {
    pub current: u64,
    pub total: Option<u64>,
}

/// A task, as every endpoint returns it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Task {
    pub id: TaskId,
    pub job_id: JobId,
    #[serde(rename = "type")]
    pub task_type: String,
    pub namespace: String,
    pub status: Status,
    pub start_time: Timestamp,
    pub end_time: Option<Timestamp>,
    /// Starts at 1; each retry of a failed task adds one.
    pub attempt: i64,
    pub progress: Option<Progress>,
    pub error: Option<String>,
    #[schema(value_type = Object)]
    #[cfg_attr(feature = "schema", schemars(with = "serde_json::Map<String, Value>"))]
    pub meta: Box<RawValue>,
    /// Fail the task (reason `timed_out`) when it sees no heartbeat, progress or status
    /// change for this long (a pending task: counted from its creation).
    pub timeout_seconds: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobEnvelope {
    pub job: Job,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskEnvelope {
    pub task: Task,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TasksEnvelope {
    pub tasks: Vec<Task>,
}

/// One page of a list.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PageInfo {
    pub page: u64,
    pub page_size: u64,
    pub total_pages: u64,
    pub total_items: u64,
    pub sort: SortField,
    pub order: SortOrder,
    /// Keyset paging: pass as `after` (with the same `sort` and `order`) for the items
    /// that follow this page; null when this page is not full. Cheaper than `page` for
    /// walking everything, and stable while rows are added.
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobPage {
    #[serde(flatten)]
    pub info: PageInfo,
    pub jobs: Vec<Job>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskPage {
    #[serde(flatten)]
    pub info: PageInfo,
    pub tasks: Vec<Task>,
}

/// What a history event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The job was registered.
    Created,
    /// A task was added to the job.
    TaskAdded,
    /// A job or task changed status (`from`, `to`, `reason`).
    StatusChanged,
    /// A task reported it is alive, with optional progress and message.
    Heartbeat,
    /// A client posted a note.
    Note,
}

impl EventKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::TaskAdded => "task_added",
            EventKind::StatusChanged => "status_changed",
            EventKind::Heartbeat => "heartbeat",
            EventKind::Note => "note",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        Some(match s {
            "created" => EventKind::Created,
            "task_added" => EventKind::TaskAdded,
            "status_changed" => EventKind::StatusChanged,
            "heartbeat" => EventKind::Heartbeat,
            "note" => EventKind::Note,
            _ => return None,
        })
    }
}

/// One entry of a job's append-only history.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HistoryEvent {
    /// Installation-wide, strictly increasing.
    pub seq: i64,
    /// 1, 2, 3, ... within the job, without gaps, in the order the job's changes commit.
    pub job_seq: i64,
    pub job_id: JobId,
    pub task_id: Option<TaskId>,
    pub kind: EventKind,
    pub time: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub to: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(value_type = Option<Object>)]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<serde_json::Map<String, Value>>")
    )]
    pub data: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub progress: Option<Progress>,
}

/// One change on a watch stream (`event: change`): the job as it stands when the event is
/// sent, and the history event that changed it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WatchChange {
    pub job: Job,
    pub event: HistoryEvent,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryPage {
    pub events: Vec<HistoryEvent>,
    /// Pass as `after` to read on; null when this page reached the end.
    pub next_after: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventEnvelope {
    pub event: HistoryEvent,
}

// ---------------------------------------------------------------------------------------
// Sorting

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortField {
    #[default]
    StartTime,
    EndTime,
    CreatedAt,
    UpdatedAt,
    Type,
    Namespace,
    Status,
}

impl SortField {
    pub const ALL: [SortField; 7] = [
        SortField::StartTime,
        SortField::EndTime,
        SortField::CreatedAt,
        SortField::UpdatedAt,
        SortField::Type,
        SortField::Namespace,
        SortField::Status,
    ];

    /// The wire name (what `sort=` takes).
    pub const fn as_str(self) -> &'static str {
        match self {
            SortField::StartTime => "start_time",
            SortField::EndTime => "end_time",
            SortField::CreatedAt => "created_at",
            SortField::UpdatedAt => "updated_at",
            SortField::Type => "type",
            SortField::Namespace => "namespace",
            SortField::Status => "status",
        }
    }

    pub fn parse(s: &str) -> Option<SortField> {
        SortField::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

impl SortOrder {
    /// The wire name (what `order=` takes).
    pub const fn as_str(self) -> &'static str {
        match self {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        }
    }
}

// ---------------------------------------------------------------------------------------
// Requests

/// Body of `POST /v1/jobs`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateJobRequest {
    /// Optional; the server makes a UUIDv7 when absent. Sending the same id and content
    /// again returns the existing job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<JobId>,
    /// 1–256 characters, or null.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256, pattern = r"^[^\u0000]*$")]
    pub correlation_id: Option<String>,
    /// Required, 1–128 characters.
    #[serde(rename = "type", default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 128, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    #[cfg_attr(feature = "schema", schemars(required, !default))]
    pub job_type: Option<String>,
    /// Required, 1–128 characters.
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 128, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    #[cfg_attr(feature = "schema", schemars(required, !default))]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<serde_json::Map<String, Value>>")
    )]
    pub meta: Option<Value>,
    /// Default true: the job ends by itself when all its tasks have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_complete: Option<bool>,
    /// Default: the time of registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    /// 1 to 31536000: fail the job (reason `timed_out`) when it is not terminal this long
    /// after its `start_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 31536000)]
    pub timeout_seconds: Option<i64>,
    /// Tasks created atomically with the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<CreateTaskRequest>>,
}

/// Body of `POST /v1/jobs/{id}/tasks`, and an item of a batch.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateTaskRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<TaskId>,
    #[serde(rename = "type", default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 128, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    #[cfg_attr(feature = "schema", schemars(required, !default))]
    pub task_type: Option<String>,
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 128, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    #[cfg_attr(feature = "schema", schemars(required, !default))]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<serde_json::Map<String, Value>>")
    )]
    pub meta: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    /// 1 to 31536000: fail the task (reason `timed_out`) when it sees no heartbeat, progress
    /// or status change for this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 31536000)]
    pub timeout_seconds: Option<i64>,
}

/// Body of `POST /v1/jobs/{id}/tasks/batch`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateTasksRequest {
    pub tasks: Vec<CreateTaskRequest>,
}

/// Body of `PUT /v1/jobs/{id}/status`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SetJobStatusRequest {
    /// `completed`, `failed` or `cancelled`.
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 4096, pattern = r"^[^\u0000]*$")]
    pub reason: Option<String>,
}

/// Body of `PUT /v1/jobs/{id}/tasks/{task_id}/status`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SetTaskStatusRequest {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 4096, pattern = r"^[^\u0000]*$")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 4096, pattern = r"^[^\u0000]*$")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// One item of `POST /v1/tasks/status`. Ids, status and texts are plain strings here (the
/// document states no format or bound for them) so that one bad item is reported in its
/// result instead of failing the whole batch.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TaskStatusUpdateItem {
    #[cfg_attr(feature = "schema", schemars(with = "JobId"))]
    pub job_id: String,
    #[cfg_attr(feature = "schema", schemars(with = "TaskId"))]
    pub task_id: String,
    #[cfg_attr(feature = "schema", schemars(with = "Status"))]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// Body of `POST /v1/tasks/status`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskStatusBatchRequest {
    pub updates: Vec<TaskStatusUpdateItem>,
}

/// The outcome of one item of `POST /v1/tasks/status`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskStatusResult {
    pub job_id: String,
    pub task_id: String,
    /// The HTTP status this item would have had on its own.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskStatusBatchResponse {
    pub results: Vec<TaskStatusResult>,
}

/// Body of `POST .../heartbeat`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HeartbeatRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 4096, pattern = r"^[^\u0000]*$")]
    pub message: Option<String>,
}

/// Body of `POST .../history`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NoteRequest {
    #[schema(min_length = 1, max_length = 4096, pattern = r"^[^\u0000]*$")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<serde_json::Map<String, Value>>")
    )]
    pub data: Option<Value>,
}

/// RFC 9457 problem details, the body of every error response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<crate::validate::ValidationError>>,
    /// The `x-request-id` of the request this answers (an HTTP response always has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Validated commands

/// A task to register, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTask {
    pub id: TaskId,
    /// False when the server made the id: such a task can never be a repeat of another.
    pub id_supplied: bool,
    pub task_type: Name,
    pub namespace: Name,
    pub meta: Meta,
    pub start_time: Option<Timestamp>,
    pub timeout_seconds: Option<i64>,
}

/// A job to register, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    pub id: JobId,
    pub id_supplied: bool,
    pub correlation_id: Option<String>,
    pub job_type: Name,
    pub namespace: Name,
    pub meta: Meta,
    pub auto_complete: bool,
    pub start_time: Option<Timestamp>,
    pub timeout_seconds: Option<i64>,
    pub tasks: Vec<NewTask>,
}

impl CreateTaskRequest {
    /// Validates the request; a task without an id gets one from `ids`.
    pub fn validate(self, limits: &Limits, ids: &dyn Ids) -> Result<NewTask, ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let task_type = errs.check("type", Name::parse(self.task_type, limits));
        let namespace = errs.check("namespace", Name::parse(self.namespace, limits));
        let meta = errs.check("meta", Meta::parse(self.meta, limits));
        let timeout = errs.check(
            "timeout_seconds",
            validate::timeout_seconds(self.timeout_seconds),
        );
        let id_supplied = self.id.is_some();
        errs.into_result(|| NewTask {
            id: self.id.unwrap_or_else(|| TaskId::from_uuid(ids.uuid())),
            id_supplied,
            task_type: task_type.expect("checked"),
            namespace: namespace.expect("checked"),
            meta: meta.expect("checked"),
            start_time: self.start_time,
            timeout_seconds: timeout.expect("checked"),
        })
    }
}

/// Validates a list of tasks: at most `batch_max`, no id twice.
pub fn validate_tasks(
    tasks: Vec<CreateTaskRequest>,
    field: &str,
    limits: &Limits,
    ids: &dyn Ids,
) -> Result<Vec<NewTask>, ValidationErrors> {
    let mut errs = ValidationErrors::default();
    if tasks.len() > limits.batch_max {
        errs.push(
            field,
            format!("at most {} tasks per request", limits.batch_max),
        );
        return Err(errs);
    }
    let mut out = Vec::with_capacity(tasks.len());
    let mut seen = std::collections::HashSet::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if let Some(id) = t.id
            && !seen.insert(id)
        {
            errs.push(format!("{field}[{i}].id"), "appears twice in this request");
        }
        match t.validate(limits, ids) {
            Ok(t) => out.push(t),
            Err(e) => errs.extend(e.nest(&format!("{field}[{i}]"))),
        }
    }
    errs.into_result(|| out)
}

impl CreateJobRequest {
    /// Validates the request; a job or task without an id gets one from `ids`.
    pub fn validate(self, limits: &Limits, ids: &dyn Ids) -> Result<NewJob, ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let job_type = errs.check("type", Name::parse(self.job_type, limits));
        let namespace = errs.check("namespace", Name::parse(self.namespace, limits));
        let correlation_id = errs.check(
            "correlation_id",
            validate::correlation_id(self.correlation_id, limits),
        );
        let meta = errs.check("meta", Meta::parse(self.meta, limits));
        let timeout = errs.check(
            "timeout_seconds",
            validate::timeout_seconds(self.timeout_seconds),
        );
        let tasks = match validate_tasks(self.tasks.unwrap_or_default(), "tasks", limits, ids) {
            Ok(t) => Some(t),
            Err(e) => {
                errs.extend(e);
                None
            }
        };
        let id_supplied = self.id.is_some();
        errs.into_result(|| NewJob {
            id: self.id.unwrap_or_else(|| JobId::from_uuid(ids.uuid())),
            id_supplied,
            correlation_id: correlation_id.expect("checked"),
            job_type: job_type.expect("checked"),
            namespace: namespace.expect("checked"),
            meta: meta.expect("checked"),
            auto_complete: self.auto_complete.unwrap_or(true),
            start_time: self.start_time,
            timeout_seconds: timeout.expect("checked"),
            tasks: tasks.expect("checked"),
        })
    }
}

/// Checks free text fields shared by status requests.
pub fn validate_texts(
    fields: &[(&str, &Option<String>)],
    limits: &Limits,
) -> Result<(), ValidationErrors> {
    let mut errs = ValidationErrors::default();
    for (name, value) in fields {
        errs.check(
            name,
            validate::bounded_text((*value).clone(), limits.text_max),
        );
    }
    errs.into_result(|| ())
}

impl NewTask {
    /// Whether `existing` is what this request would have created: the client-supplied
    /// fields after defaults (an omitted `start_time` matches any stored one).
    pub fn matches(&self, job_id: JobId, existing: &Task) -> bool {
        existing.job_id == job_id
            && existing.task_type == self.task_type.as_str()
            && existing.namespace == self.namespace.as_str()
            && meta_equals(&self.meta, &existing.meta)
            && existing.timeout_seconds == self.timeout_seconds
            && self.start_time.is_none_or(|t| t == existing.start_time)
    }
}

impl NewJob {
    /// Whether `existing` is what this request would have created (tasks aside).
    pub fn matches(&self, existing: &Job) -> bool {
        existing.job_type == self.job_type.as_str()
            && existing.namespace == self.namespace.as_str()
            && existing.correlation_id == self.correlation_id
            && existing.auto_complete == self.auto_complete
            && existing.timeout_seconds == self.timeout_seconds
            && meta_equals(&self.meta, &existing.meta)
            && self.start_time.is_none_or(|t| t == existing.start_time)
    }
}

fn meta_equals(meta: &Meta, stored: &RawValue) -> bool {
    meta.as_json() == stored.get()
        || serde_json::from_str::<serde_json::Map<String, Value>>(stored.get())
            .is_ok_and(|m| &m == meta.as_map())
}
