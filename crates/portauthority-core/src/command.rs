//! Commands: what a client asks the service to change, validated and ready for a planner
//! (`plan.rs`). HTTP handlers and bus consumers build the same commands from the same
//! request bodies, so every way in goes through one set of rules.

use crate::api::{
    HeartbeatRequest, NewJob, NewTask, NoteRequest, SetJobStatusRequest, SetTaskStatusRequest,
    TaskStatusUpdateItem, validate_texts,
};
use crate::ids::{JobId, TaskId};
use crate::machine::{self, TaskChange};
use crate::status::Status;
use crate::validate::{Limits, Meta, ValidationErrors};
use std::str::FromStr;

/// Any command, for the ways in that carry one of several (the bus, idempotent requests).
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    CreateJob(NewJob),
    SetJobStatus(SetJobStatus),
    AddTasks(AddTasks),
    /// Status changes and heartbeats, each item on its own.
    UpdateTasks(Vec<TaskUpdate>),
    AddNote(NewNote),
}

impl Command {
    /// The job the command is about; `None` for a batch of updates that spans jobs.
    pub fn job_id(&self) -> Option<JobId> {
        match self {
            Command::CreateJob(j) => Some(j.id),
            Command::SetJobStatus(c) => Some(c.job_id),
            Command::AddTasks(c) => Some(c.job_id),
            Command::UpdateTasks(u) => {
                let first = u.first()?.job_id;
                u.iter().all(|x| x.job_id == first).then_some(first)
            }
            Command::AddNote(n) => Some(n.job_id),
        }
    }
}

/// Set a job's status explicitly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetJobStatus {
    pub job_id: JobId,
    /// Terminal: checked by [`SetJobStatus::new`].
    pub to: Status,
    pub reason: Option<String>,
}

impl SetJobStatus {
    pub fn new(
        job_id: JobId,
        to: Status,
        reason: Option<String>,
        limits: &Limits,
    ) -> Result<SetJobStatus, ValidationErrors> {
        validate_texts(&[("reason", &reason)], limits)?;
        if let Err(refusal) = machine::settable_job_status(to) {
            let mut errs = ValidationErrors::default();
            errs.push("status", refusal.to_string());
            return Err(errs);
        }
        Ok(SetJobStatus { job_id, to, reason })
    }
}

/// Add tasks to a job, all or none.
#[derive(Clone, Debug, PartialEq)]
pub struct AddTasks {
    pub job_id: JobId,
    pub tasks: Vec<NewTask>,
}

/// A status change or heartbeat for one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskUpdate {
    pub job_id: JobId,
    pub task_id: TaskId,
    pub change: TaskChange,
}

impl TaskUpdate {
    pub fn status(job_id: JobId, task_id: TaskId, to: Status) -> TaskUpdate {
        TaskUpdate {
            job_id,
            task_id,
            change: TaskChange::Status {
                to,
                reason: None,
                error: None,
                progress: None,
            },
        }
    }

    /// The sweeper's: fail the task with reason `timed_out` if it is still due.
    pub fn time_out(job_id: JobId, task_id: TaskId) -> TaskUpdate {
        TaskUpdate {
            job_id,
            task_id,
            change: TaskChange::TimeOut,
        }
    }

    pub fn heartbeat(
        job_id: JobId,
        task_id: TaskId,
        progress: Option<crate::api::Progress>,
    ) -> TaskUpdate {
        TaskUpdate {
            job_id,
            task_id,
            change: TaskChange::Heartbeat {
                progress,
                message: None,
            },
        }
    }
}

/// A note a client appends to a job's (or task's) history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNote {
    pub job_id: JobId,
    pub task_id: Option<TaskId>,
    pub message: String,
    /// Compact JSON, validated.
    pub data: Option<String>,
}

impl SetJobStatusRequest {
    pub fn into_command(
        self,
        job_id: JobId,
        limits: &Limits,
    ) -> Result<SetJobStatus, ValidationErrors> {
        SetJobStatus::new(job_id, self.status, self.reason, limits)
    }
}

impl SetTaskStatusRequest {
    pub fn into_update(
        self,
        job_id: JobId,
        task_id: TaskId,
        limits: &Limits,
    ) -> Result<TaskUpdate, ValidationErrors> {
        validate_texts(&[("reason", &self.reason), ("error", &self.error)], limits)?;
        Ok(TaskUpdate {
            job_id,
            task_id,
            change: TaskChange::Status {
                to: self.status,
                reason: self.reason,
                error: self.error,
                progress: self.progress,
            },
        })
    }
}

impl HeartbeatRequest {
    pub fn into_update(
        self,
        job_id: JobId,
        task_id: TaskId,
        limits: &Limits,
    ) -> Result<TaskUpdate, ValidationErrors> {
        validate_texts(&[("message", &self.message)], limits)?;
        Ok(TaskUpdate {
            job_id,
            task_id,
            change: TaskChange::Heartbeat {
                progress: self.progress,
                message: self.message,
            },
        })
    }
}

impl TaskStatusUpdateItem {
    /// One item of a batch (or one bus command), ids and status parsed here so that a bad
    /// item is reported on its own.
    pub fn into_update(self, limits: &Limits) -> Result<TaskUpdate, ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let job_id = errs.check(
            "job_id",
            JobId::from_str(&self.job_id).map_err(|_| "must be a UUID".to_owned()),
        );
        let task_id = errs.check(
            "task_id",
            TaskId::from_str(&self.task_id).map_err(|_| "must be a UUID".to_owned()),
        );
        let to = errs.check(
            "status",
            Status::from_str(&self.status).map_err(|e| e.to_string()),
        );
        if let Err(e) = validate_texts(&[("reason", &self.reason), ("error", &self.error)], limits)
        {
            errs.extend(e);
        }
        errs.into_result(|| TaskUpdate {
            job_id: job_id.expect("checked"),
            task_id: task_id.expect("checked"),
            change: TaskChange::Status {
                to: to.expect("checked"),
                reason: self.reason,
                error: self.error,
                progress: self.progress,
            },
        })
    }
}

impl NoteRequest {
    pub fn into_note(
        self,
        job_id: JobId,
        task_id: Option<TaskId>,
        limits: &Limits,
    ) -> Result<NewNote, ValidationErrors> {
        let mut errs = ValidationErrors::default();
        if self.message.is_empty() {
            errs.push("message", "must not be empty");
            return Err(errs);
        }
        validate_texts(&[("message", &Some(self.message.clone()))], limits)?;
        let data = match self.data {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                errs.check("data", Meta::parse(Some(v), limits))
                    .map(|m| m.as_json().to_owned()),
            ),
        };
        errs.into_result(|| NewNote {
            job_id,
            task_id,
            message: self.message,
            data: data.flatten(),
        })
    }
}
