//! What every implementation needs between its rows and the state machine.

use crate::{StoreError, TaskUpdate};
use portauthority_core::api::{Job, NewTask, Task};
use portauthority_core::machine::{self, EventDraft};
use portauthority_core::{JobId, JobState, Status, TaskId, TaskState, Timestamp};
use std::collections::HashMap;

/// A job row with the field the API does not show.
pub(crate) struct JobRow {
    pub job: Job,
    /// See `JobState::explicit`.
    pub explicit: bool,
}

impl JobRow {
    pub fn state(&self) -> JobState {
        JobState {
            status: self.job.status,
            explicit: self.explicit,
            auto_complete: self.job.auto_complete,
            counters: self.job.tasks,
            end_time: self.job.end_time,
        }
    }

    /// Applies a new state to the row as the API shows it.
    pub fn apply(&mut self, s: &JobState, now: Timestamp) {
        self.job.status = s.status;
        self.job.end_time = s.end_time;
        self.job.tasks = s.counters;
        self.job.updated_at = now;
        self.explicit = s.explicit;
    }
}

pub(crate) fn task_state(t: &Task) -> TaskState {
    TaskState {
        status: t.status,
        attempt: t.attempt,
        end_time: t.end_time,
        progress: t.progress,
        error: t.error.clone(),
    }
}

/// Applies a new state to a task as the API shows it.
pub(crate) fn apply_task_state(t: &mut Task, s: &TaskState, now: Timestamp) {
    t.status = s.status;
    t.attempt = s.attempt;
    t.end_time = s.end_time;
    t.progress = s.progress;
    t.error = s.error.clone();
    t.updated_at = now;
}

/// Where a task to add stands against the task already stored under its id, if any: new
/// (`Err(task)`, to insert), an idempotent repeat (`Ok(stored)`), or a conflict.
pub(crate) fn classify_task(
    job_id: JobId,
    t: NewTask,
    stored: Option<Task>,
) -> Result<Result<Task, NewTask>, StoreError> {
    match stored {
        None => Ok(Err(t)),
        Some(existing) if t.id_supplied && t.matches(job_id, &existing) => Ok(Ok(existing)),
        Some(existing) if existing.job_id != job_id => Err(StoreError::Conflict(format!(
            "task id {} is already used by job {}",
            t.id, existing.job_id
        ))),
        Some(_) => Err(StoreError::Conflict(format!(
            "task {} already exists with different content",
            t.id
        ))),
    }
}

/// A task as it is right after being added: pending, first attempt.
pub(crate) fn added_task(job_id: JobId, t: &NewTask, now: Timestamp) -> Result<Task, StoreError> {
    Ok(Task {
        id: t.id,
        job_id,
        task_type: t.task_type.as_str().to_owned(),
        namespace: t.namespace.as_str().to_owned(),
        status: Status::Pending,
        start_time: t.start_time.unwrap_or(now),
        end_time: None,
        attempt: 1,
        progress: None,
        error: None,
        meta: serde_json::value::RawValue::from_string(t.meta.as_json().to_owned())
            .map_err(|e| StoreError::Internal(e.to_string()))?,
        timeout_seconds: t.timeout_seconds,
        created_at: now,
        updated_at: now,
    })
}

/// What a batch of task updates does, worked out before any of it is written.
pub(crate) struct AppliedUpdates {
    /// One per update, in request order.
    pub results: Vec<Result<Task, StoreError>>,
    /// The tasks that changed, in the order of their first change; their new state is in
    /// the `tasks` map given to `apply_task_updates`.
    pub changed: Vec<TaskId>,
    /// The history events to append, in order.
    pub events: Vec<(JobId, Option<TaskId>, EventDraft)>,
}

/// Applies a batch of task updates to the jobs and tasks it names, as read in its
/// transaction: `jobs` maps a job id to (state as stored, state after the changes so far),
/// `tasks` holds the tasks found; both are updated in place. Items apply in request order,
/// each seeing the changes of the items before it. A refused item (not found, a rule)
/// changes nothing and gets its own error. Every store writes the result: the changed
/// tasks, the events, and each job whose two states differ.
pub(crate) fn apply_task_updates(
    jobs: &mut HashMap<JobId, (JobState, JobState)>,
    tasks: &mut HashMap<TaskId, Task>,
    updates: &[TaskUpdate],
    now: Timestamp,
) -> AppliedUpdates {
    let mut applied = AppliedUpdates {
        results: Vec::with_capacity(updates.len()),
        changed: Vec::new(),
        events: Vec::new(),
    };
    for u in updates {
        let (Some(job), Some(task)) = (
            jobs.get_mut(&u.job_id),
            tasks.get_mut(&u.task_id).filter(|t| t.job_id == u.job_id),
        ) else {
            applied
                .results
                .push(Err(StoreError::task_not_found(u.job_id, u.task_id)));
            continue;
        };
        let out = match machine::change_task(&job.1, &task_state(task), &u.change, now) {
            Ok(out) => out,
            Err(refusal) => {
                applied.results.push(Err(refusal.into()));
                continue;
            }
        };
        if let Some(e) = out.task_event {
            applied.events.push((u.job_id, Some(u.task_id), e));
            if let Some(e) = out.job_event {
                applied.events.push((u.job_id, None, e));
            }
            job.1 = out.job;
            apply_task_state(task, &out.task, now);
            if !applied.changed.contains(&u.task_id) {
                applied.changed.push(u.task_id);
            }
        }
        applied.results.push(Ok(task.clone()));
    }
    applied
}
