//! Every command type decodes from a hand-written message into exactly the command the
//! HTTP handler of the same change builds from the same body.

use crate::support::{JOB, TASK, decode, decode_data, job_id, task_id, ts};
use portauthority_contracts::{Command, CommandType, command_message};
use portauthority_core::api::{
    CreateJobRequest, HeartbeatRequest, NoteRequest, Progress, SetJobStatusRequest,
    SetTaskStatusRequest,
};
use portauthority_core::clock::CountingIds;
use portauthority_core::{AddTasks, Limits, Status, TaskChange};
use serde_json::json;

fn limits() -> Limits {
    Limits::default()
}

#[test]
fn a_job_create_decodes_into_the_job_the_http_api_would_register() {
    let body = json!({
        "id": JOB,
        "correlation_id": "order-1842",
        "type": "send",
        "namespace": "com.shipyard.email",
        "meta": {"release_id": 123},
        "auto_complete": false,
        "start_time": "2020-09-18T00:09:27.132-06:00",
        "tasks": [
            {"id": TASK, "type": "render", "namespace": "com.shipyard.email"},
            {"type": "deliver", "namespace": "com.shipyard.email", "timeout_seconds": 300}
        ]
    });
    let payload = format!(
        r#"{{"specversion":"1.0","id":"c0ffee","source":"/billing/worker-7",
            "type":"portauthority.job.create.v1","time":"2020-09-18T06:09:27Z",
            "datacontenttype":"application/json","data":{body}}}"#
    );
    let incoming = decode(payload.as_bytes()).unwrap();
    assert_eq!(incoming.id, "c0ffee");
    assert_eq!(incoming.source, "/billing/worker-7");
    assert_eq!(incoming.ty, CommandType::JobCreate);

    let http: CreateJobRequest = serde_json::from_value(body).unwrap();
    let expected = http.validate(&limits(), &CountingIds::default()).unwrap();
    let Command::JobCreate(job) = &incoming.command else {
        panic!("not a job create: {incoming:?}");
    };
    assert_eq!(job, &expected);
    assert_eq!(job.id, job_id());
    assert!(!job.auto_complete);
    assert_eq!(job.start_time, Some(ts("2020-09-18T06:09:27.132Z")));
    assert_eq!(job.tasks.len(), 2);
    assert!(job.tasks[0].id_supplied && !job.tasks[1].id_supplied);
    assert_eq!(incoming.command.job_id(), job_id());
}

#[test]
fn a_job_status_decodes_into_the_explicit_status_command() {
    let incoming = decode_data(
        CommandType::JobStatus,
        json!({"job_id": JOB, "status": "cancelled", "reason": "superseded"}),
    )
    .unwrap();
    let expected = SetJobStatusRequest {
        status: Status::Cancelled,
        reason: Some("superseded".into()),
    }
    .into_command(job_id(), &limits())
    .unwrap();
    assert_eq!(incoming.command, Command::JobStatus(expected));
    assert_eq!(incoming.command.job_id(), job_id());
}

#[test]
fn a_task_add_decodes_into_adding_that_one_task() {
    let incoming = decode_data(
        CommandType::TaskAdd,
        json!({"job_id": JOB, "id": TASK, "type": "render", "namespace": "com.shipyard.email",
               "meta": {"page": 3}, "timeout_seconds": 60}),
    )
    .unwrap();
    let Command::TaskAdd(AddTasks { job_id: job, tasks }) = &incoming.command else {
        panic!("not a task add: {incoming:?}");
    };
    assert_eq!(*job, job_id());
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(task.id, task_id());
    assert!(task.id_supplied);
    assert_eq!(task.task_type.as_str(), "render");
    assert_eq!(task.meta.as_json(), r#"{"page":3}"#);
    assert_eq!(task.timeout_seconds, Some(60));
}

#[test]
fn a_task_status_decodes_into_the_update_the_http_api_would_apply() {
    let incoming = decode_data(
        CommandType::TaskStatus,
        json!({"job_id": JOB, "task_id": TASK, "status": "failed", "reason": "smtp",
               "error": "550 mailbox unavailable", "progress": {"current": 3, "total": 10}}),
    )
    .unwrap();
    let expected = SetTaskStatusRequest {
        status: Status::Failed,
        reason: Some("smtp".into()),
        error: Some("550 mailbox unavailable".into()),
        progress: Some(Progress {
            current: 3,
            total: Some(10),
        }),
    }
    .into_update(job_id(), task_id(), &limits())
    .unwrap();
    assert_eq!(incoming.command, Command::TaskStatus(expected));
    assert_eq!(incoming.command.job_id(), job_id());
}

#[test]
fn the_seeds_spelling_inprogress_is_accepted_as_over_http() {
    let incoming = decode_data(
        CommandType::TaskStatus,
        json!({"job_id": JOB, "task_id": TASK, "status": "inprogress"}),
    )
    .unwrap();
    let Command::TaskStatus(update) = incoming.command else {
        panic!("not a task status");
    };
    assert!(matches!(
        update.change,
        TaskChange::Status {
            to: Status::InProgress,
            ..
        }
    ));
}

#[test]
fn a_heartbeat_decodes_with_or_without_progress() {
    let incoming = decode_data(
        CommandType::TaskHeartbeat,
        json!({"job_id": JOB, "task_id": TASK, "progress": {"current": 40, "total": 100},
               "message": "page 40"}),
    )
    .unwrap();
    let expected = HeartbeatRequest {
        progress: Some(Progress {
            current: 40,
            total: Some(100),
        }),
        message: Some("page 40".into()),
    }
    .into_update(job_id(), task_id(), &limits())
    .unwrap();
    assert_eq!(incoming.command, Command::TaskHeartbeat(expected));

    let bare = decode_data(
        CommandType::TaskHeartbeat,
        json!({"job_id": JOB, "task_id": TASK}),
    )
    .unwrap();
    let expected = HeartbeatRequest::default()
        .into_update(job_id(), task_id(), &limits())
        .unwrap();
    assert_eq!(bare.command, Command::TaskHeartbeat(expected));
    assert_eq!(bare.command.job_id(), job_id());
}

#[test]
fn a_note_decodes_for_the_job_or_for_one_of_its_tasks() {
    let on_job = decode_data(
        CommandType::HistoryNote,
        json!({"job_id": JOB, "message": "retrying the batch", "data": {"batch": 7}}),
    )
    .unwrap();
    let expected = NoteRequest {
        message: "retrying the batch".into(),
        data: Some(json!({"batch": 7})),
    }
    .into_note(job_id(), None, &limits())
    .unwrap();
    assert_eq!(on_job.command, Command::HistoryNote(expected));

    let on_task = decode_data(
        CommandType::HistoryNote,
        json!({"job_id": JOB, "task_id": TASK, "message": "slow relay"}),
    )
    .unwrap();
    let Command::HistoryNote(note) = &on_task.command else {
        panic!("not a note");
    };
    assert_eq!(note.task_id, Some(task_id()));
    assert_eq!(note.data, None);
    assert_eq!(on_task.command.job_id(), job_id());
}

#[test]
fn command_message_builds_what_decode_command_reads_for_every_type() {
    for ty in CommandType::ALL {
        let data = match ty {
            CommandType::JobCreate => json!({"id": JOB, "type": "t", "namespace": "n"}),
            CommandType::JobStatus => json!({"job_id": JOB, "status": "failed"}),
            CommandType::TaskAdd => {
                json!({"job_id": JOB, "id": TASK, "type": "t", "namespace": "n"})
            }
            CommandType::TaskStatus => {
                json!({"job_id": JOB, "task_id": TASK, "status": "completed"})
            }
            CommandType::TaskHeartbeat => json!({"job_id": JOB, "task_id": TASK}),
            CommandType::HistoryNote => json!({"job_id": JOB, "message": "m"}),
        };
        let payload = command_message(ty, "id-42", "/loadgen", data);
        let incoming = decode(&payload).unwrap_or_else(|r| panic!("{ty:?}: {r}"));
        assert_eq!(incoming.ty, ty);
        assert_eq!(incoming.command.command_type(), ty);
        assert_eq!(incoming.id, "id-42");
        assert_eq!(incoming.source, "/loadgen");
        assert_eq!(incoming.command.job_id(), job_id());
    }
}

#[test]
fn extension_attributes_and_a_json_content_type_with_parameters_are_fine() {
    let payload = format!(
        r#"{{"specversion":"1.0","id":"1","source":"s","type":"portauthority.task.heartbeat.v1",
            "datacontenttype":"application/json; charset=utf-8","traceparent":"00-abc-def-01",
            "data":{{"job_id":"{JOB}","task_id":"{TASK}"}}}}"#
    );
    assert!(decode(payload.as_bytes()).is_ok());
}

#[test]
fn every_command_becomes_the_store_command_of_the_same_job() {
    let cases = [
        (
            CommandType::JobCreate,
            json!({"id": JOB, "type": "t", "namespace": "n"}),
        ),
        (
            CommandType::JobStatus,
            json!({"job_id": JOB, "status": "failed"}),
        ),
        (
            CommandType::TaskAdd,
            json!({"job_id": JOB, "id": TASK, "type": "t", "namespace": "n"}),
        ),
        (
            CommandType::TaskStatus,
            json!({"job_id": JOB, "task_id": TASK, "status": "completed"}),
        ),
        (
            CommandType::TaskHeartbeat,
            json!({"job_id": JOB, "task_id": TASK}),
        ),
        (
            CommandType::HistoryNote,
            json!({"job_id": JOB, "message": "m"}),
        ),
    ];
    for (ty, data) in cases {
        let command = decode_data(ty, data).unwrap().command;
        let core = portauthority_core::Command::from(command.clone());
        assert_eq!(core.job_id(), Some(command.job_id()), "{ty:?}");
        let same_kind = matches!(
            (&command, &core),
            (
                Command::JobCreate(_),
                portauthority_core::Command::CreateJob(_)
            ) | (
                Command::JobStatus(_),
                portauthority_core::Command::SetJobStatus(_)
            ) | (
                Command::TaskAdd(_),
                portauthority_core::Command::AddTasks(_)
            ) | (
                Command::TaskStatus(_),
                portauthority_core::Command::UpdateTasks(_)
            ) | (
                Command::TaskHeartbeat(_),
                portauthority_core::Command::UpdateTasks(_)
            ) | (
                Command::HistoryNote(_),
                portauthority_core::Command::AddNote(_)
            )
        );
        assert!(same_kind, "{ty:?} became {core:?}");
    }
}
