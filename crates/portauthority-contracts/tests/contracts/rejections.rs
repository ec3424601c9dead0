//! Every way a command message can never apply is refused with its kind, a one-line detail
//! and, when the message had one, its CloudEvent id.

use crate::support::{JOB, TASK, decode, decode_data};
use portauthority_contracts::{CommandType, RejectKind, Rejection};
use serde_json::{Value, json};

fn rejected(payload: &[u8]) -> Rejection {
    match decode(payload) {
        Ok(incoming) => panic!(
            "accepted {}: {incoming:?}",
            String::from_utf8_lossy(payload)
        ),
        Err(r) => {
            assert!(!r.detail.contains('\n'), "detail is not one line: {r:?}");
            assert!(!r.detail.is_empty());
            r
        }
    }
}

fn invalid(ty: CommandType, data: Value) -> Rejection {
    match decode_data(ty, data) {
        Ok(incoming) => panic!("accepted: {incoming:?}"),
        Err(r) => {
            assert_eq!(r.kind, RejectKind::InvalidData, "{r:?}");
            assert_eq!(r.id.as_deref(), Some("msg-1"));
            r
        }
    }
}

fn envelope(attrs: Value) -> Vec<u8> {
    serde_json::to_vec(&attrs).unwrap()
}

#[test]
fn a_payload_that_is_not_json_is_not_json() {
    for payload in [
        &b"job.create please"[..],
        b"",
        b"{\"specversion\":",
        b"\xff\xfe",
    ] {
        let r = rejected(payload);
        assert_eq!(r.kind, RejectKind::NotJson, "{r:?}");
        assert_eq!(r.id, None);
    }
}

#[test]
fn json_without_the_cloudevent_attributes_is_not_a_cloudevent() {
    let data = json!({"job_id": JOB, "status": "failed"});
    let cases = [
        (json!([1, 2]), None),
        (json!("portauthority.job.status.v1"), None),
        // No specversion: the id is still reported.
        (
            json!({"id": "a1", "source": "s", "type": "portauthority.job.status.v1", "data": data}),
            Some("a1"),
        ),
        (
            json!({"specversion": "0.3", "id": "a2", "source": "s", "type": "portauthority.job.status.v1", "data": data}),
            Some("a2"),
        ),
        (
            json!({"specversion": 1.0, "id": "a3", "source": "s", "type": "portauthority.job.status.v1", "data": data}),
            Some("a3"),
        ),
        // No id.
        (
            json!({"specversion": "1.0", "source": "s", "type": "portauthority.job.status.v1", "data": data}),
            None,
        ),
        (
            json!({"specversion": "1.0", "id": "", "source": "s", "type": "portauthority.job.status.v1", "data": data}),
            None,
        ),
        (
            json!({"specversion": "1.0", "id": 7, "source": "s", "type": "portauthority.job.status.v1", "data": data}),
            None,
        ),
        (
            json!({"specversion": "1.0", "id": "a4", "type": "portauthority.job.status.v1", "data": data}),
            Some("a4"),
        ),
        (
            json!({"specversion": "1.0", "id": "a5", "source": "", "type": "portauthority.job.status.v1", "data": data}),
            Some("a5"),
        ),
        (
            json!({"specversion": "1.0", "id": "a6", "source": "s", "data": data}),
            Some("a6"),
        ),
        (
            json!({"specversion": "1.0", "id": "a7", "source": "s", "type": ["x"], "data": data}),
            Some("a7"),
        ),
        (
            json!({"specversion": "1.0", "id": "a8", "source": "s", "type": "portauthority.job.status.v1", "time": "yesterday", "data": data}),
            Some("a8"),
        ),
    ];
    for (message, id) in cases {
        let r = rejected(&envelope(message.clone()));
        assert_eq!(r.kind, RejectKind::NotCloudEvent, "{message}: {r:?}");
        assert_eq!(r.id.as_deref(), id, "{message}");
    }
}

#[test]
fn a_cloudevent_of_another_type_is_an_unknown_type() {
    for ty in [
        "portauthority.job.delete.v1",
        "portauthority.job.create.v2",
        "portauthority.job.created.v1",
        "com.example.thing",
    ] {
        let r = rejected(&envelope(
            json!({"specversion": "1.0", "id": "u1", "source": "s", "type": ty, "data": {}}),
        ));
        assert_eq!(r.kind, RejectKind::UnknownType, "{ty}: {r:?}");
        assert_eq!(r.id.as_deref(), Some("u1"));
        assert!(r.detail.contains(ty), "{r:?}");
    }
}

#[test]
fn an_unknown_type_is_reported_as_such_whatever_its_data() {
    for message in [
        json!({"specversion": "1.0", "id": "u3", "source": "s", "type": "x.y"}),
        json!({"specversion": "1.0", "id": "u4", "source": "s", "type": "x.y",
               "datacontenttype": "text/plain", "data": "hello"}),
    ] {
        assert_eq!(rejected(&envelope(message)).kind, RejectKind::UnknownType);
    }
}

#[test]
fn a_type_with_a_line_break_is_still_refused_on_one_line() {
    let r = rejected(&envelope(
        json!({"specversion": "1.0", "id": "u2", "source": "s", "type": "evil\r\nInjected: yes", "data": {}}),
    ));
    assert_eq!(r.kind, RejectKind::UnknownType);
    assert!(!r.reason().contains(['\r', '\n']), "{}", r.reason());
    assert!(r.reason().starts_with("unknown_type: "), "{}", r.reason());
}

#[test]
fn a_bad_status_is_invalid_data() {
    let r = invalid(
        CommandType::TaskStatus,
        json!({"job_id": JOB, "task_id": TASK, "status": "done"}),
    );
    assert!(r.detail.contains("data.status"), "{r:?}");
    let r = invalid(
        CommandType::JobStatus,
        json!({"job_id": JOB, "status": "done"}),
    );
    assert!(r.detail.contains("done"), "{r:?}");
}

#[test]
fn a_job_status_that_cannot_be_set_is_invalid_data_as_over_http() {
    let r = invalid(
        CommandType::JobStatus,
        json!({"job_id": JOB, "status": "in_progress"}),
    );
    assert!(r.detail.contains("data.status"), "{r:?}");
}

#[test]
fn a_create_without_an_id_is_invalid_data_on_the_bus() {
    let r = invalid(
        CommandType::JobCreate,
        json!({"type": "send", "namespace": "com.shipyard.email"}),
    );
    assert!(r.detail.contains("data.id: is required"), "{r:?}");
    let r = invalid(
        CommandType::TaskAdd,
        json!({"job_id": JOB, "type": "render", "namespace": "com.shipyard.email"}),
    );
    assert!(r.detail.contains("data.id: is required"), "{r:?}");
}

#[test]
fn every_problem_of_the_data_is_reported_at_once() {
    let r = invalid(CommandType::JobCreate, json!({"meta": [1]}));
    for field in ["data.id", "data.type", "data.namespace", "data.meta"] {
        assert!(r.detail.contains(field), "{field} missing from {r:?}");
    }
    let r = invalid(
        CommandType::TaskHeartbeat,
        json!({"job_id": "nope", "message": "x".repeat(5000)}),
    );
    for field in [
        "data.job_id: must be a UUID",
        "data.task_id: is required",
        "data.message",
    ] {
        assert!(r.detail.contains(field), "{field} missing from {r:?}");
    }
}

#[test]
fn malformed_ids_and_missing_fields_are_invalid_data() {
    invalid(CommandType::JobStatus, json!({"status": "failed"}));
    invalid(
        CommandType::JobStatus,
        json!({"job_id": "42", "status": "failed"}),
    );
    invalid(
        CommandType::TaskStatus,
        json!({"job_id": JOB, "status": "failed"}),
    );
    invalid(
        CommandType::TaskAdd,
        json!({"job_id": JOB, "id": "x", "type": "t", "namespace": "n"}),
    );
    invalid(
        CommandType::HistoryNote,
        json!({"job_id": JOB, "task_id": "x", "message": "m"}),
    );
    invalid(
        CommandType::HistoryNote,
        json!({"job_id": JOB, "message": ""}),
    );
    invalid(CommandType::HistoryNote, json!({"job_id": JOB}));
    invalid(
        CommandType::JobCreate,
        json!({"id": JOB, "type": "t", "namespace": "n", "start_time": "2020-09-18T00:09:27:30.132-06:00"}),
    );
    invalid(
        CommandType::JobCreate,
        json!({"id": JOB, "type": "", "namespace": "n"}),
    );
    invalid(
        CommandType::TaskAdd,
        json!({"job_id": JOB, "id": TASK, "type": "t", "namespace": "n", "timeout_seconds": 0}),
    );
}

#[test]
fn data_that_is_missing_or_not_an_object_is_invalid_data() {
    for data in [json!(null), json!("job"), json!([])] {
        invalid(CommandType::TaskHeartbeat, data);
    }
    let r = rejected(&envelope(
        json!({"specversion": "1.0", "id": "d1", "source": "s", "type": "portauthority.task.heartbeat.v1"}),
    ));
    assert_eq!(
        (r.kind, r.id.as_deref()),
        (RejectKind::InvalidData, Some("d1"))
    );
    let r = rejected(&envelope(
        json!({"specversion": "1.0", "id": "d2", "source": "s",
        "type": "portauthority.task.heartbeat.v1", "data_base64": "e30="}),
    ));
    assert_eq!(r.kind, RejectKind::InvalidData);
}

#[test]
fn data_of_another_content_type_is_invalid_data() {
    let r = rejected(&envelope(
        json!({"specversion": "1.0", "id": "d3", "source": "s",
        "type": "portauthority.task.heartbeat.v1", "datacontenttype": "text/plain",
        "data": {"job_id": JOB, "task_id": TASK}}),
    ));
    assert_eq!(r.kind, RejectKind::InvalidData, "{r:?}");
}

#[test]
fn each_kind_has_its_name_and_a_problem() {
    let names: Vec<&str> = RejectKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "not_json",
            "not_cloudevent",
            "unknown_type",
            "invalid_data",
            "not_found",
            "conflict",
            "undeliverable"
        ]
    );
    let r = invalid(
        CommandType::JobStatus,
        json!({"job_id": JOB, "status": "done"}),
    );
    let problem = r.problem();
    assert_eq!(
        problem.problem_type,
        "urn:portauthority:problem:invalid-data"
    );
    assert_eq!(problem.status, 422);
    assert_eq!(problem.detail, r.detail);
    assert_eq!(r.reason(), format!("invalid_data: {}", r.detail));
}
