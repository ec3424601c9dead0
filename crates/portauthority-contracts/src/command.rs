//! Commands in: the six command types, the shape of their `data`, and their decoding into
//! the commands of `portauthority-core`.
//!
//! Each `data` is the HTTP request body of the same change plus the ids the HTTP path
//! would carry, and goes through the same conversion as the HTTP handler
//! (`CreateJobRequest::validate`, `SetJobStatusRequest::into_command`, ...). The one rule
//! the bus adds is that a producer names the ids of what it creates, so that a repeat of
//! a create is a repeat and not a second job or task.

use crate::DATACONTENTTYPE;
use crate::cloudevent::{CloudEvent, SPECVERSION, envelope};
use crate::reject::{RejectKind, Rejection, one_line, quoted};
use portauthority_core::api::{
    CreateJobRequest, CreateTaskRequest, HeartbeatRequest, NewJob, NoteRequest,
    SetJobStatusRequest, TaskStatusUpdateItem,
};
use portauthority_core::{
    AddTasks, Ids, JobId, Limits, NewNote, SetJobStatus, TaskId, TaskUpdate, ValidationErrors,
};
use schemars::{JsonSchema, Schema};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::str::FromStr;

macro_rules! command_types {
    ($($(#[$doc:meta])* $variant:ident => $suffix:literal,)*) => {
        /// The command types: each has a subject under `portauthority.commands.` and a
        /// versioned CloudEvent `type`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum CommandType {
            $($(#[$doc])* $variant,)*
        }

        impl CommandType {
            pub const ALL: [CommandType; 6] = [$(CommandType::$variant,)*];

            /// The CloudEvent `type`, e.g. `portauthority.job.create.v1`.
            pub const fn type_name(self) -> &'static str {
                match self {
                    $(CommandType::$variant => concat!("portauthority.", $suffix, ".v1"),)*
                }
            }

            /// The subject to publish it on, e.g. `portauthority.commands.job.create`.
            pub const fn subject(self) -> &'static str {
                match self {
                    $(CommandType::$variant => concat!("portauthority.commands.", $suffix),)*
                }
            }
        }
    };
}

command_types! {
    /// Register a job, optionally with its first tasks.
    JobCreate => "job.create",
    /// Set a job's status explicitly.
    JobStatus => "job.status",
    /// Add one task to a job.
    TaskAdd => "task.add",
    /// Set a task's status.
    TaskStatus => "task.status",
    /// Report that a task is alive.
    TaskHeartbeat => "task.heartbeat",
    /// Append a note to a job's or a task's history.
    HistoryNote => "history.note",
}

impl CommandType {
    /// The command type of a CloudEvent `type`.
    pub fn parse(type_name: &str) -> Option<CommandType> {
        CommandType::ALL
            .into_iter()
            .find(|t| t.type_name() == type_name)
    }

    /// The command type whose subject this is.
    pub fn from_subject(subject: &str) -> Option<CommandType> {
        CommandType::ALL
            .into_iter()
            .find(|t| t.subject() == subject)
    }
}

/// A decoded, validated command, ready for the store: exactly what the HTTP handler of the
/// same change would hand it.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    JobCreate(NewJob),
    JobStatus(SetJobStatus),
    /// Always one task.
    TaskAdd(AddTasks),
    TaskStatus(TaskUpdate),
    TaskHeartbeat(TaskUpdate),
    HistoryNote(NewNote),
}

impl Command {
    /// The job the command is about: every command names one, and commands for one job
    /// apply in the order of the stream.
    pub fn job_id(&self) -> JobId {
        match self {
            Command::JobCreate(j) => j.id,
            Command::JobStatus(c) => c.job_id,
            Command::TaskAdd(c) => c.job_id,
            Command::TaskStatus(u) | Command::TaskHeartbeat(u) => u.job_id,
            Command::HistoryNote(n) => n.job_id,
        }
    }

    pub fn command_type(&self) -> CommandType {
        match self {
            Command::JobCreate(_) => CommandType::JobCreate,
            Command::JobStatus(_) => CommandType::JobStatus,
            Command::TaskAdd(_) => CommandType::TaskAdd,
            Command::TaskStatus(_) => CommandType::TaskStatus,
            Command::TaskHeartbeat(_) => CommandType::TaskHeartbeat,
            Command::HistoryNote(_) => CommandType::HistoryNote,
        }
    }
}

/// The store's command for it: what `Store::run_once` takes.
impl From<Command> for portauthority_core::Command {
    fn from(command: Command) -> portauthority_core::Command {
        use portauthority_core::Command as Core;
        match command {
            Command::JobCreate(job) => Core::CreateJob(job),
            Command::JobStatus(cmd) => Core::SetJobStatus(cmd),
            Command::TaskAdd(cmd) => Core::AddTasks(cmd),
            Command::TaskStatus(update) | Command::TaskHeartbeat(update) => {
                Core::UpdateTasks(vec![update])
            }
            Command::HistoryNote(note) => Core::AddNote(note),
        }
    }
}

/// A command message that decoded: its CloudEvent `id` (the key duplicates are recognised
/// by), `source`, type and command.
#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    pub id: String,
    pub source: String,
    pub ty: CommandType,
    pub command: Command,
}

// ---------------------------------------------------------------------------------------
// The `data` of each command type. Ids are strings here, checked in `decode_command`, so
// that a malformed id is reported by its field name along with every other problem (as
// `TaskStatusUpdateItem` does for the HTTP batch).

/// `data` of `portauthority.job.create.v1`: the body of `POST /v1/jobs`, with `id`
/// required. Tasks inside may omit theirs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = require_id)]
pub struct JobCreateData {
    #[serde(flatten)]
    pub job: CreateJobRequest,
}

/// `data` of `portauthority.job.status.v1`: the job, and the body of `PUT /v1/jobs/{id}/status`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct JobStatusData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, !default, with = "JobId")]
    pub job_id: Option<String>,
    #[serde(flatten)]
    pub status: SetJobStatusRequest,
}

/// `data` of `portauthority.task.add.v1`: the job, and the body of `POST /v1/jobs/{id}/tasks`
/// with `id` required.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = require_id)]
pub struct TaskAddData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, !default, with = "JobId")]
    pub job_id: Option<String>,
    #[serde(flatten)]
    pub task: CreateTaskRequest,
}

/// `data` of `portauthority.task.status.v1`: one item of `POST /v1/tasks/status`.
pub type TaskStatusData = TaskStatusUpdateItem;

/// `data` of `portauthority.task.heartbeat.v1`: the task, and the body of `POST .../heartbeat`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct TaskHeartbeatData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, !default, with = "JobId")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, !default, with = "TaskId")]
    pub task_id: Option<String>,
    #[serde(flatten)]
    pub heartbeat: HeartbeatRequest,
}

/// `data` of `portauthority.history.note.v1`: the job (and task, for a task's history), and
/// the body of `POST .../history`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct HistoryNoteData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(required, !default, with = "JobId")]
    pub job_id: Option<String>,
    /// Absent or null: a note on the job itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<TaskId>")]
    pub task_id: Option<String>,
    #[serde(flatten)]
    pub note: NoteRequest,
}

/// Makes `id` required in a create's schema: the bus's one rule beyond HTTP's.
fn require_id(schema: &mut Schema) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(id) = obj.get_mut("properties").and_then(|p| p.get_mut("id")) {
        // Over HTTP the id may be null; here it is a UUID: keep the branch that is not null.
        let not_null = id
            .get("anyOf")
            .and_then(Value::as_array)
            .and_then(|branches| {
                branches
                    .iter()
                    .find(|b| b.get("type").and_then(Value::as_str) != Some("null"))
            })
            .cloned();
        if let Some(Value::Object(mut branch)) = not_null {
            branch.insert(
                "description".into(),
                "Required on the bus: a repeat of the message is then a repeat of the create."
                    .into(),
            );
            *id = Value::Object(branch);
        }
    }
    match obj.get_mut("required") {
        Some(Value::Array(required)) => required.insert(0, "id".into()),
        _ => {
            obj.insert("required".into(), Value::Array(vec!["id".into()]));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Decoding

/// Decodes a command message: JSON, then a CloudEvents 1.0 envelope (`specversion` "1.0",
/// `id`, `source` and `type` non-empty strings), then a known command type, then its `data`
/// through the same request type and conversion as the HTTP API. `ids` names the tasks of
/// a `job.create` that name none, as it does over HTTP.
pub fn decode_command(
    payload: &[u8],
    limits: &Limits,
    ids: &dyn Ids,
) -> Result<Incoming, Rejection> {
    let mut envelope = envelope(payload).map_err(tidy)?;
    let event = &envelope.event;
    let Some(ty) = CommandType::parse(&event.ty) else {
        let known: Vec<&str> = CommandType::ALL.iter().map(|t| t.type_name()).collect();
        return Err(tidy(Rejection {
            kind: RejectKind::UnknownType,
            detail: format!(
                "unknown command type {}; expected one of {}",
                quoted(&Value::String(event.ty.clone())),
                known.join(", ")
            ),
            id: Some(event.id.clone()),
        }));
    };
    let command = envelope
        .data()
        .and_then(|data| command(ty, data, limits, ids));
    let CloudEvent { id, source, .. } = envelope.event;
    match command {
        Ok(command) => Ok(Incoming {
            id,
            source,
            ty,
            command,
        }),
        Err(detail) => Err(tidy(Rejection {
            kind: RejectKind::InvalidData,
            detail: format!("{}: {detail}", ty.type_name()),
            id: Some(id),
        })),
    }
}

fn tidy(mut r: Rejection) -> Rejection {
    r.detail = one_line(&r.detail);
    r
}

fn command(
    ty: CommandType,
    data: Value,
    limits: &Limits,
    ids: &dyn Ids,
) -> Result<Command, String> {
    if !data.is_object() {
        return Err(format!(
            "data must be a JSON object (got {})",
            quoted(&data)
        ));
    }
    let invalid = |e: ValidationErrors| e.nest("data").to_string();
    match ty {
        CommandType::JobCreate => {
            let JobCreateData { job } = parse(data)?;
            let mut errs = ValidationErrors::default();
            if job.id.is_none() {
                errs.push("id", ID_REQUIRED);
            }
            let job = job.validate(limits, ids);
            finish(errs, job).map(Command::JobCreate).map_err(invalid)
        }
        CommandType::JobStatus => {
            let JobStatusData { job_id, status } = parse(data)?;
            let mut errs = ValidationErrors::default();
            let job_id = parse_id(&mut errs, "job_id", job_id.as_deref());
            let cmd = status.into_command(job_id.unwrap_or(JobId::from_uuid(PLACEHOLDER)), limits);
            finish(errs, cmd).map(Command::JobStatus).map_err(invalid)
        }
        CommandType::TaskAdd => {
            let TaskAddData { job_id, task } = parse(data)?;
            let mut errs = ValidationErrors::default();
            let job_id = parse_id(&mut errs, "job_id", job_id.as_deref());
            if task.id.is_none() {
                errs.push("id", ID_REQUIRED);
            }
            let task = task.validate(limits, ids);
            finish(errs, task)
                .map(|task| {
                    Command::TaskAdd(AddTasks {
                        job_id: job_id.expect("checked"),
                        tasks: vec![task],
                    })
                })
                .map_err(invalid)
        }
        CommandType::TaskStatus => {
            let item: TaskStatusData = parse(data)?;
            item.into_update(limits)
                .map(Command::TaskStatus)
                .map_err(invalid)
        }
        CommandType::TaskHeartbeat => {
            let TaskHeartbeatData {
                job_id,
                task_id,
                heartbeat,
            } = parse(data)?;
            let mut errs = ValidationErrors::default();
            let job_id = parse_id(&mut errs, "job_id", job_id.as_deref());
            let task_id = parse_id(&mut errs, "task_id", task_id.as_deref());
            let update = heartbeat.into_update(
                job_id.unwrap_or(JobId::from_uuid(PLACEHOLDER)),
                task_id.unwrap_or(TaskId::from_uuid(PLACEHOLDER)),
                limits,
            );
            finish(errs, update)
                .map(Command::TaskHeartbeat)
                .map_err(invalid)
        }
        CommandType::HistoryNote => {
            let HistoryNoteData {
                job_id,
                task_id,
                note,
            } = parse(data)?;
            let mut errs = ValidationErrors::default();
            let job_id = parse_id(&mut errs, "job_id", job_id.as_deref());
            let task_id = match task_id {
                None => None,
                Some(raw) => parse_id(&mut errs, "task_id", Some(&raw)),
            };
            let note = note.into_note(
                job_id.unwrap_or(JobId::from_uuid(PLACEHOLDER)),
                task_id,
                limits,
            );
            finish(errs, note)
                .map(Command::HistoryNote)
                .map_err(invalid)
        }
    }
}

const ID_REQUIRED: &str =
    "is required on the bus (name what you create, so that a repeat is a repeat)";

/// Stands in for an id that did not parse, so that the rest of the data is still checked
/// and every problem reported at once; a command built with it is never returned.
const PLACEHOLDER: uuid::Uuid = uuid::Uuid::nil();

/// The data as its request type. Its shape was wrong: the HTTP API's 422 for a body that
/// is JSON of the wrong shape.
fn parse<T: DeserializeOwned>(data: Value) -> Result<T, String> {
    serde_json::from_value(data).map_err(|e| format!("data: {e}"))
}

fn parse_id<I: FromStr>(errs: &mut ValidationErrors, field: &str, raw: Option<&str>) -> Option<I> {
    match raw {
        None => errs.push(field, "is required"),
        Some(raw) => match I::from_str(raw) {
            Ok(id) => return Some(id),
            Err(_) => errs.push(field, "must be a UUID"),
        },
    }
    None
}

/// The bus's own findings first, then the conversion's.
fn finish<T>(
    mut errs: ValidationErrors,
    converted: Result<T, ValidationErrors>,
) -> Result<T, ValidationErrors> {
    match converted {
        Ok(value) if errs.is_empty() => Ok(value),
        Ok(_) => Err(errs),
        Err(e) => {
            errs.extend(e);
            Err(errs)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Encoding

/// A command message, ready to publish on `ty.subject()`: for producers written in Rust
/// (the load generator, tests). `id` must be new for each message, and the same on a retry.
pub fn command_message(ty: CommandType, id: &str, source: &str, data: Value) -> Vec<u8> {
    let event = CloudEvent {
        specversion: SPECVERSION.to_owned(),
        id: id.to_owned(),
        source: source.to_owned(),
        ty: ty.type_name().to_owned(),
        time: None,
        datacontenttype: Some(DATACONTENTTYPE.to_owned()),
        subject: None,
        data,
    };
    serde_json::to_vec(&event).expect("a CloudEvent of JSON always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::COMMANDS_SUBJECTS;

    #[test]
    fn every_subject_is_under_the_commands_subjects() {
        let prefix = COMMANDS_SUBJECTS.trim_end_matches('>');
        for ty in CommandType::ALL {
            assert!(ty.subject().starts_with(prefix), "{}", ty.subject());
            assert_eq!(CommandType::parse(ty.type_name()), Some(ty));
            assert_eq!(CommandType::from_subject(ty.subject()), Some(ty));
        }
        assert_eq!(
            CommandType::JobCreate.type_name(),
            "portauthority.job.create.v1"
        );
        assert_eq!(
            CommandType::HistoryNote.subject(),
            "portauthority.commands.history.note"
        );
        assert_eq!(CommandType::parse("portauthority.job.create.v2"), None);
    }
}
