//! The state machine: one pure function per command, from the current state to the new
//! state plus the history events that record the change.
//!
//! A store loads the rows, calls one of these functions and writes what it returns in one
//! transaction. When a function refuses, nothing is written.
//!
//! ```mermaid
//! stateDiagram-v2
//!     [*] --> pending
//!     pending --> in_progress
//!     pending --> completed
//!     pending --> failed
//!     pending --> cancelled
//!     in_progress --> in_progress: progress / heartbeat
//!     in_progress --> completed
//!     in_progress --> failed
//!     in_progress --> cancelled
//!     failed --> pending: retry (attempt + 1)
//!     failed --> in_progress: retry (attempt + 1)
//! ```
//!
//! A timeout (the sweeper's [`TaskChange::TimeOut`]) is the transition to `failed`, with
//! reason `timed_out`, of a task that is still due when it applies.

use crate::api::{EventKind, Progress};
use crate::status::{Counters, Status};
use crate::time::Timestamp;

/// The part of a job the rules read and write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobState {
    pub status: Status,
    /// A client set the status. While set, task changes do not re-derive the job's
    /// status; a retry of a failed task clears it and the job reopens.
    pub explicit: bool,
    pub auto_complete: bool,
    pub counters: Counters,
    pub end_time: Option<Timestamp>,
}

/// The part of a task the rules read and write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskState {
    pub status: Status,
    pub attempt: i64,
    pub end_time: Option<Timestamp>,
    pub progress: Option<Progress>,
    pub error: Option<String>,
}

impl TaskState {
    pub fn new() -> TaskState {
        TaskState {
            status: Status::Pending,
            attempt: 1,
            end_time: None,
            progress: None,
            error: None,
        }
    }
}

impl Default for TaskState {
    fn default() -> Self {
        Self::new()
    }
}

/// A change a client asks of a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskChange {
    Status {
        to: Status,
        reason: Option<String>,
        error: Option<String>,
        progress: Option<Progress>,
    },
    Heartbeat {
        progress: Option<Progress>,
        message: Option<String>,
    },
    /// The timeout sweeper's change: `failed` with reason [`TIMED_OUT`], as a client's
    /// status change would record it. Its planner applies it only to a task that is still
    /// due ([`is_due`]) once its job is locked.
    TimeOut,
}

/// The reason recorded when the sweeper fails a task or a job that timed out.
pub const TIMED_OUT: &str = "timed_out";

/// When something with a timeout times out if nothing moves it first: `timeout_seconds`
/// after `since` (a task: its last heartbeat, progress or status change, or its creation; a
/// job: its `start_time`).
pub fn times_out_at(since: Timestamp, timeout_seconds: Option<i64>) -> Option<Timestamp> {
    let ms = timeout_seconds?.saturating_mul(1000);
    Some(Timestamp::from_millis(since.as_millis().saturating_add(ms)))
}

/// The deadline the sweeper acts on: `times_out_at` while the task or job is open; none once
/// it is terminal (a retry that reopens it brings it back).
pub fn deadline(status: Status, times_out_at: Option<Timestamp>) -> Option<Timestamp> {
    times_out_at.filter(|_| !status.is_terminal())
}

/// Whether a deadline has come at `now`.
pub fn is_due(deadline: Option<Timestamp>, now: Timestamp) -> bool {
    deadline.is_some_and(|d| d <= now)
}

/// A history event before the store gives it a sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventDraft {
    pub kind: EventKind,
    pub from: Option<Status>,
    pub to: Option<Status>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub progress: Option<Progress>,
}

impl EventDraft {
    pub fn simple(kind: EventKind) -> EventDraft {
        EventDraft {
            kind,
            from: None,
            to: None,
            reason: None,
            message: None,
            progress: None,
        }
    }

    pub fn status(from: Status, to: Status, reason: Option<String>) -> EventDraft {
        EventDraft {
            from: Some(from),
            to: Some(to),
            reason,
            ..EventDraft::simple(EventKind::StatusChanged)
        }
    }
}

/// Why a command was refused. Serializable: a command's recorded answer may hold refusals
/// (one per refused item of a batch).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Refusal {
    /// The command conflicts with the current state (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// The command can never apply, whatever the state (HTTP 422).
    #[error("{0}")]
    Invalid(String),
    /// The job or task the command names does not exist (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The caller's key may not do this: creating in a namespace outside its scope (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
}

impl Refusal {
    pub fn job_not_found(id: impl std::fmt::Display) -> Refusal {
        Refusal::NotFound(format!("job {id} not found"))
    }

    pub fn task_not_found(job: impl std::fmt::Display, task: impl std::fmt::Display) -> Refusal {
        Refusal::NotFound(format!("task {task} not found in job {job}"))
    }
}

/// Only a terminal status may be set on a job: `pending` and `in_progress` follow from its
/// tasks.
pub fn settable_job_status(to: Status) -> Result<(), Refusal> {
    if to.is_terminal() {
        return Ok(());
    }
    Err(Refusal::Invalid(format!(
        "a job's status can only be set to completed, failed or cancelled, not {to}; \
         pending and in_progress follow from its tasks"
    )))
}

/// The result of a task command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskOutcome {
    pub task: TaskState,
    pub job: JobState,
    /// None when the command was an idempotent no-op: nothing is written.
    pub task_event: Option<EventDraft>,
    /// The job's derived status changed.
    pub job_event: Option<EventDraft>,
}

/// The result of a job command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobOutcome {
    pub job: JobState,
    pub job_event: Option<EventDraft>,
    /// Every open task becomes `cancelled` (one status event each, with this reason).
    pub cancel_open_tasks: bool,
}

/// The state of a job about to be created with `tasks` pending tasks.
pub fn new_job(auto_complete: bool, tasks: i64) -> JobState {
    let counters = Counters {
        total: tasks,
        pending: tasks,
        ..Counters::default()
    };
    JobState {
        status: counters.derived_status(auto_complete),
        explicit: false,
        auto_complete,
        counters,
        end_time: None,
    }
}

/// Re-derives a job's status from its counters (unless a client set it), and returns the
/// event recording a change.
fn settle(job: &mut JobState, now: Timestamp) -> Option<EventDraft> {
    if job.explicit {
        return None;
    }
    let derived = job.counters.derived_status(job.auto_complete);
    if derived == job.status {
        return None;
    }
    let from = job.status;
    job.status = derived;
    job.end_time = derived.is_terminal().then_some(now);
    Some(EventDraft::status(from, derived, None))
}

/// Applies a status change, heartbeat or timeout to a task of a job.
pub fn change_task(
    job: &JobState,
    task: &TaskState,
    change: &TaskChange,
    now: Timestamp,
) -> Result<TaskOutcome, Refusal> {
    match change {
        TaskChange::Heartbeat { progress, message } => {
            heartbeat(job, task, *progress, message, now)
        }
        TaskChange::Status {
            to,
            reason,
            error,
            progress,
        } => set_task_status(job, task, *to, reason, error, *progress, now),
        TaskChange::TimeOut => {
            let reason = Some(TIMED_OUT.to_owned());
            set_task_status(job, task, Status::Failed, &reason, &None, None, now)
        }
    }
}

/// The outcome of a task change that records `task_event`, with the job re-derived.
fn changed(
    mut job: JobState,
    task: TaskState,
    task_event: EventDraft,
    now: Timestamp,
) -> TaskOutcome {
    let job_event = settle(&mut job, now);
    TaskOutcome {
        task,
        job,
        task_event: Some(task_event),
        job_event,
    }
}

fn heartbeat(
    job: &JobState,
    task: &TaskState,
    progress: Option<Progress>,
    message: &Option<String>,
    now: Timestamp,
) -> Result<TaskOutcome, Refusal> {
    let from = task.status;
    if from.is_terminal() {
        return Err(Refusal::Conflict(format!(
            "task is {from}; heartbeats are only accepted while it is pending or in_progress"
        )));
    }
    let mut next = task.clone();
    if progress.is_some() {
        next.progress = progress;
    }
    let event = EventDraft {
        progress,
        message: message.clone(),
        ..EventDraft::simple(EventKind::Heartbeat)
    };
    Ok(changed(job.clone(), next, event, now))
}

fn set_task_status(
    job: &JobState,
    task: &TaskState,
    to: Status,
    reason: &Option<String>,
    error: &Option<String>,
    progress: Option<Progress>,
    now: Timestamp,
) -> Result<TaskOutcome, Refusal> {
    use Status::*;
    let mut job = job.clone();
    let mut next = task.clone();
    let from = task.status;
    let retry = from == Failed && matches!(to, Pending | InProgress);
    match (from, to) {
        (f, t) if f == t && f != InProgress => {
            return Ok(TaskOutcome {
                task: task.clone(),
                job,
                task_event: None,
                job_event: None,
            });
        }
        (InProgress, InProgress) => {
            if progress.is_some() {
                next.progress = progress;
            }
            if error.is_some() {
                next.error = error.clone();
            }
            let event = EventDraft {
                progress,
                message: reason.clone(),
                ..EventDraft::simple(EventKind::Heartbeat)
            };
            return Ok(TaskOutcome {
                task: next,
                job,
                task_event: Some(event),
                job_event: None,
            });
        }
        (Pending, _) | (InProgress, Completed | Failed | Cancelled) => {}
        (Failed, Pending | InProgress) => {}
        (InProgress, Pending) => {
            return Err(Refusal::Conflict(
                "an in_progress task cannot go back to pending".into(),
            ));
        }
        (Failed, _) => {
            return Err(Refusal::Conflict(format!(
                "task failed; retry it (status pending or in_progress) before setting {to}"
            )));
        }
        (Completed | Cancelled, _) => {
            return Err(Refusal::Conflict(format!(
                "task is {from}, which is final; it cannot become {to}"
            )));
        }
    }
    next.status = to;
    next.end_time = to.is_terminal().then_some(now);
    if progress.is_some() {
        next.progress = progress;
    }
    if retry {
        next.attempt += 1;
        next.error = None;
        job.explicit = false;
    }
    if error.is_some() {
        next.error = error.clone();
    }
    job.counters.shift(from, to, 1);
    let event = EventDraft {
        progress,
        ..EventDraft::status(from, to, reason.clone())
    };
    Ok(changed(job, next, event, now))
}

/// Adds `n` pending tasks to a job.
pub fn add_tasks(
    job: &JobState,
    n: i64,
    now: Timestamp,
) -> Result<(JobState, Option<EventDraft>), Refusal> {
    if job.status.is_terminal() {
        return Err(Refusal::Conflict(format!(
            "job is {}; tasks cannot be added to a finished job",
            job.status
        )));
    }
    let mut job = job.clone();
    job.counters.total += n;
    job.counters.pending += n;
    let event = settle(&mut job, now);
    Ok((job, event))
}

/// Whether setting `to` on `job` cancels its open tasks: `failed` or `cancelled` on a job
/// that is not yet terminal and has pending or in-progress tasks.
pub fn cancels_open_tasks(job: &JobState, to: Status) -> bool {
    to != Status::Completed && !job.status.is_terminal() && job.counters.open() > 0
}

/// A client sets a job's status explicitly.
pub fn set_job_status(
    job: &JobState,
    to: Status,
    reason: Option<String>,
    now: Timestamp,
) -> Result<JobOutcome, Refusal> {
    settable_job_status(to)?;
    if job.status.is_terminal() {
        if job.status == to {
            return Ok(JobOutcome {
                job: job.clone(),
                job_event: None,
                cancel_open_tasks: false,
            });
        }
        return Err(Refusal::Conflict(format!(
            "job is already {}; it cannot become {to}",
            job.status
        )));
    }
    let mut next = job.clone();
    let open = job.counters.open();
    let cancel_open_tasks = cancels_open_tasks(job, to);
    if to == Status::Completed && open > 0 {
        return Err(Refusal::Conflict(format!(
            "{open} task(s) are still pending or in_progress; finish them, or set failed or cancelled"
        )));
    }
    if cancel_open_tasks {
        let (pending, in_progress) = (job.counters.pending, job.counters.in_progress);
        next.counters
            .shift(Status::Pending, Status::Cancelled, pending);
        next.counters
            .shift(Status::InProgress, Status::Cancelled, in_progress);
    }
    next.status = to;
    next.explicit = true;
    next.end_time = Some(now);
    Ok(JobOutcome {
        job: next,
        job_event: Some(EventDraft::status(job.status, to, reason)),
        cancel_open_tasks,
    })
}
