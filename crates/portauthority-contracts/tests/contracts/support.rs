//! What the tests share: limits, ids, fixtures and the schema validator.

use portauthority_contracts::{CommandType, Incoming, Rejection, command_message, decode_command};
use portauthority_core::api::{EventKind, HistoryEvent, Job, Progress, Task};
use portauthority_core::clock::CountingIds;
use portauthority_core::{Counters, JobId, Limits, Status, TaskId, Timestamp};
use serde_json::Value;
use serde_json::value::RawValue;

pub const JOB: &str = "0191b6a0-7c3e-7a51-9a3e-4f1c2d3e4f50";
pub const TASK: &str = "0191b6a0-7c3e-7a51-9a3e-4f1c2d3e4f51";

pub fn job_id() -> JobId {
    JOB.parse().unwrap()
}

pub fn task_id() -> TaskId {
    TASK.parse().unwrap()
}

/// Decodes a message with default limits and fresh counting ids.
pub fn decode(payload: &[u8]) -> Result<Incoming, Rejection> {
    decode_command(payload, &Limits::default(), &CountingIds::default())
}

/// Decodes the command message of `ty` with this `data`.
pub fn decode_data(ty: CommandType, data: Value) -> Result<Incoming, Rejection> {
    decode(&command_message(ty, "msg-1", "/tests", data))
}

pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap()
}

pub fn job(namespace: &str) -> Job {
    Job {
        id: job_id(),
        correlation_id: Some("order-1842".into()),
        job_type: "send".into(),
        namespace: namespace.into(),
        status: Status::InProgress,
        start_time: ts("2020-09-18T06:09:27.132Z"),
        end_time: None,
        tasks: Counters {
            total: 2,
            pending: 1,
            in_progress: 1,
            ..Counters::default()
        },
        meta: raw(r#"{"release_id":123}"#),
        auto_complete: true,
        timeout_seconds: None,
        created_at: ts("2020-09-18T06:09:27.132Z"),
        updated_at: ts("2020-09-18T06:10:01.410Z"),
        progress: Default::default(),
    }
}

pub fn task() -> Task {
    Task {
        id: task_id(),
        job_id: job_id(),
        task_type: "render".into(),
        namespace: "com.shipyard.email".into(),
        status: Status::InProgress,
        start_time: ts("2020-09-18T06:09:30.000Z"),
        end_time: None,
        attempt: 1,
        progress: Some(Progress {
            current: 40,
            total: Some(100),
        }),
        error: None,
        meta: raw("{}"),
        timeout_seconds: Some(300),
        created_at: ts("2020-09-18T06:09:30.000Z"),
        updated_at: ts("2020-09-18T06:10:01.410Z"),
    }
}

/// A history event of `kind`, the 3rd of its job.
pub fn history(kind: EventKind, task: Option<TaskId>) -> HistoryEvent {
    let status_change = kind == EventKind::StatusChanged;
    HistoryEvent {
        seq: 8812,
        job_seq: 3,
        job_id: job_id(),
        task_id: task,
        kind,
        time: ts("2020-09-18T06:10:01.410Z"),
        from: status_change.then_some(Status::Pending),
        to: status_change.then_some(Status::InProgress),
        reason: None,
        message: None,
        data: None,
        progress: None,
    }
}

/// Validates `instance` against a generated schema, formats included; panics with every
/// error.
pub fn assert_valid(schema: &Value, instance: &Value, what: &str) {
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("the schema for {what} does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema: {errors:#?}\n{instance:#}"
    );
}

pub fn schema_of(type_name: &str) -> Value {
    portauthority_contracts::schemas()
        .into_iter()
        .find(|(name, _)| *name == type_name)
        .unwrap_or_else(|| panic!("no schema for {type_name}"))
        .1
}
