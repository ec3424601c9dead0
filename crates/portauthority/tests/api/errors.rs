//! Every error of DESIGN.md leaves as RFC 9457 problem JSON with the right status, and a
//! rejected request changes nothing. No input, however malformed, gets a 500.

use crate::helpers::{TestApp, job_request, task_request};
use portauthority_core::api::{Job, Task};
use portauthority_core::{Counters, JobId, Status, TaskId};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Harness

/// A raw response: status, Content-Type, and the body parsed as JSON (Null if it is not).
struct Raw {
    status: u16,
    content_type: String,
    body: Value,
}

/// Sends `body` as is, with the given Content-Type (none when `None`).
async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Raw {
    let mut rb = app.http.request(method, app.url(path)).body(body);
    if let Some(ct) = content_type {
        rb = rb.header(reqwest::header::CONTENT_TYPE, ct);
    }
    let res = rb.send().await.expect("request sent");
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // A watch stream is an answer that never ends: its head is all there is to check.
    if content_type.starts_with("text/event-stream") {
        return Raw {
            status,
            content_type,
            body: Value::Null,
        };
    }
    let bytes = res.bytes().await.expect("body read");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Raw {
        status,
        content_type,
        body,
    }
}

/// Sends a JSON body with `Content-Type: application/json`.
async fn json_req(app: &TestApp, method: Method, path: &str, body: &Value) -> Raw {
    raw(
        app,
        method,
        path,
        Some("application/json"),
        serde_json::to_vec(body).expect("serialises"),
    )
    .await
}

async fn get(app: &TestApp, path: &str) -> Raw {
    raw(app, Method::GET, path, None, Vec::new()).await
}

/// Asserts a complete RFC 9457 problem document with this status.
fn assert_problem(r: &Raw, expected: u16) {
    assert_eq!(r.status, expected, "unexpected status; body: {}", r.body);
    assert_eq!(
        r.content_type, "application/problem+json",
        "problem content type; body: {}",
        r.body
    );
    let b = &r.body;
    assert_eq!(b["status"], expected, "problem status field: {b}");
    for field in ["type", "title", "detail"] {
        assert!(
            b[field].as_str().is_some_and(|s| !s.is_empty()),
            "problem field {field} must be a non-empty string: {b}"
        );
    }
}

/// Asserts a 422 problem whose `errors` names `field`.
fn assert_invalid_field(r: &Raw, field: &str) {
    assert_problem(r, 422);
    let errors = r.body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("a validation problem lists its errors: {}", r.body));
    assert!(
        errors
            .iter()
            .any(|e| e["field"] == field && e["message"].as_str().is_some_and(|m| !m.is_empty())),
        "errors should name field {field:?}: {}",
        r.body
    );
}

/// Everything a client can read about the installation's jobs: the job list, and each
/// job's tasks and history. Equal snapshots mean nothing was written.
#[derive(Debug, PartialEq)]
struct Snapshot {
    jobs: Value,
    details: Vec<(Value, Value)>,
}

async fn snapshot(app: &TestApp) -> Snapshot {
    let (status, jobs) = app.get("/v1/jobs?size=1000").await;
    assert_eq!(status, 200, "{jobs}");
    let mut details = Vec::new();
    for job in jobs["jobs"].as_array().expect("jobs") {
        let id = job["id"].as_str().expect("id");
        let (s1, tasks) = app.get(&format!("/v1/jobs/{id}/tasks?size=1000")).await;
        let (s2, history) = app.get(&format!("/v1/jobs/{id}/history?size=1000")).await;
        assert_eq!((s1, s2), (200, 200));
        details.push((tasks, history));
    }
    Snapshot { jobs, details }
}

/// A job with three tasks: one pending, one in progress, one completed.
async fn seeded(app: &TestApp) -> (Job, Vec<Task>) {
    let (job, tasks) = app.job_with_tasks("com.shipyard.errors", 3).await;
    app.set(job.id, tasks[1].id, Status::InProgress).await;
    app.set(job.id, tasks[2].id, Status::Completed).await;
    let job = app.client.get_job(job.id).await.expect("job");
    (job, tasks)
}

/// Asserts that the stored counters of `job` equal a recount of its tasks.
async fn assert_counters_consistent(app: &TestApp, job: JobId) {
    let stored = app.client.get_job(job).await.expect("job").tasks;
    let tasks = app.client.all_tasks(job).await.expect("tasks");
    assert_eq!(stored, Counters::recount(tasks.iter().map(|t| t.status)));
}

// ---------------------------------------------------------------------------------------
// Unparsable requests

#[tokio::test]
async fn malformed_json_is_a_400_problem_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let (job, tasks) = seeded(&app).await;
    let before = snapshot(&app).await;
    let ct = Some("application/json");
    for (method, path) in [
        (Method::POST, "/v1/jobs".to_owned()),
        (Method::POST, format!("/v1/jobs/{}/tasks", job.id)),
        (Method::POST, format!("/v1/jobs/{}/tasks/batch", job.id)),
        (Method::PUT, format!("/v1/jobs/{}/status", job.id)),
        (
            Method::PUT,
            format!("/v1/jobs/{}/tasks/{}/status", job.id, tasks[0].id),
        ),
        (
            Method::POST,
            format!("/v1/jobs/{}/tasks/{}/heartbeat", job.id, tasks[0].id),
        ),
        (Method::POST, "/v1/tasks/status".to_owned()),
        (Method::POST, format!("/v1/jobs/{}/history", job.id)),
    ] {
        for body in [
            "{",
            "{\"type\": \"build\", \"namespace\": }",
            "not json",
            "[1, 2",
        ] {
            let r = raw(&app, method.clone(), &path, ct, body).await;
            assert_problem(&r, 400);
        }
    }
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_a_415_problem_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let (job, tasks) = seeded(&app).await;
    let before = snapshot(&app).await;
    let valid_job = r#"{"type": "build", "namespace": "com.shipyard"}"#;
    let cases = [
        (Method::POST, "/v1/jobs".to_owned(), valid_job),
        (
            Method::POST,
            format!("/v1/jobs/{}/tasks", job.id),
            r#"{"type": "step", "namespace": "com.shipyard"}"#,
        ),
        (
            Method::PUT,
            format!("/v1/jobs/{}/status", job.id),
            r#"{"status": "cancelled"}"#,
        ),
        (
            Method::PUT,
            format!("/v1/jobs/{}/tasks/{}/status", job.id, tasks[0].id),
            r#"{"status": "completed"}"#,
        ),
        (
            Method::POST,
            format!("/v1/jobs/{}/history", job.id),
            r#"{"message": "hello"}"#,
        ),
    ];
    for (method, path, body) in cases {
        for ct in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let r = raw(&app, method.clone(), &path, ct, body).await;
            assert_problem(&r, 415);
        }
    }
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = TestApp::spawn().await;
    for path in ["/nope", "/v1", "/v2/jobs", "/v1/job", "/v1/jobs/x/y/z/w/v"] {
        assert_problem(&get(&app, path).await, 404);
    }
    let r = json_req(&app, Method::POST, "/v1/nothing", &json!({})).await;
    assert_problem(&r, 404);
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let (job, tasks) = seeded(&app).await;
    let before = snapshot(&app).await;
    let job_path = format!("/v1/jobs/{}", job.id);
    let task_path = format!("/v1/jobs/{}/tasks/{}", job.id, tasks[0].id);
    for (method, path) in [
        (Method::DELETE, "/v1/jobs".to_owned()),
        (Method::PUT, "/v1/jobs".to_owned()),
        (Method::DELETE, job_path.clone()),
        (Method::PATCH, job_path.clone()),
        (Method::POST, job_path),
        (Method::DELETE, task_path.clone()),
        (Method::POST, format!("{task_path}/status")),
        (Method::GET, format!("{task_path}/heartbeat")),
        (Method::GET, "/v1/tasks/status".to_owned()),
    ] {
        let r = json_req(&app, method.clone(), &path, &json!({"status": "cancelled"})).await;
        assert_problem(&r, 405);
    }
    assert_eq!(snapshot(&app).await, before);
    // RFC 9110: a 405 lists the methods the resource does accept.
    let res = app
        .http
        .delete(app.url("/v1/jobs"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 405);
    let allow = res
        .headers()
        .get(reqwest::header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        allow.contains("GET") && allow.contains("POST"),
        "Allow: {allow:?}"
    );
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_a_413_problem_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let (job, _) = seeded(&app).await;
    let before = snapshot(&app).await;
    let big = "x".repeat(1024 * 1024 + 1);
    let body = json!({"type": "build", "namespace": "com.shipyard", "meta": {"blob": big}});
    let r = json_req(&app, Method::POST, "/v1/jobs", &body).await;
    assert_problem(&r, 413);
    let body = json!({"type": "step", "namespace": "com.shipyard", "meta": {"blob": big}});
    let r = json_req(
        &app,
        Method::POST,
        &format!("/v1/jobs/{}/tasks", job.id),
        &body,
    )
    .await;
    assert_problem(&r, 413);
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_heartbeat_body_over_the_limit_is_a_413_with_or_without_a_content_type() {
    let app = TestApp::spawn().await;
    let (job, tasks) = seeded(&app).await;
    let before = snapshot(&app).await;
    let path = format!("/v1/jobs/{}/tasks/{}/heartbeat", job.id, tasks[1].id);
    let big = serde_json::to_vec(&json!({"message": "x".repeat(1024 * 1024 + 1)})).expect("json");
    for ct in [Some("application/json"), None] {
        let r = raw(&app, Method::POST, &path, ct, big.clone()).await;
        assert_problem(&r, 413);
    }
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_heartbeat_with_a_body_but_no_json_content_type_is_a_415() {
    let app = TestApp::spawn().await;
    let (job, tasks) = seeded(&app).await;
    let before = snapshot(&app).await;
    let path = format!("/v1/jobs/{}/tasks/{}/heartbeat", job.id, tasks[1].id);
    for ct in [None, Some("text/plain")] {
        let r = raw(&app, Method::POST, &path, ct, r#"{"message": "hi"}"#).await;
        assert_problem(&r, 415);
    }
    assert_eq!(snapshot(&app).await, before);
}

// ---------------------------------------------------------------------------------------
// Well-formed but invalid (422)

#[tokio::test]
async fn a_job_without_a_type_is_a_422_naming_the_field_and_creates_nothing() {
    let app = TestApp::spawn().await;
    seeded(&app).await;
    let before = snapshot(&app).await;
    let r = json_req(
        &app,
        Method::POST,
        "/v1/jobs",
        &json!({"namespace": "com.shipyard"}),
    )
    .await;
    assert_invalid_field(&r, "type");
    let r = json_req(
        &app,
        Method::POST,
        "/v1/jobs",
        &json!({"type": "", "namespace": "com.shipyard"}),
    )
    .await;
    assert_invalid_field(&r, "type");
    let r = json_req(&app, Method::POST, "/v1/jobs", &json!({})).await;
    assert_invalid_field(&r, "type");
    assert_invalid_field(&r, "namespace");
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_namespace_of_129_characters_is_a_422_but_128_is_accepted() {
    let app = TestApp::spawn().await;
    let (job, _) = seeded(&app).await;
    let before = snapshot(&app).await;
    let long = "n".repeat(129);
    let r = json_req(
        &app,
        Method::POST,
        "/v1/jobs",
        &json!({"type": "build", "namespace": long}),
    )
    .await;
    assert_invalid_field(&r, "namespace");
    let r = json_req(
        &app,
        Method::POST,
        &format!("/v1/jobs/{}/tasks", job.id),
        &json!({"type": "step", "namespace": long}),
    )
    .await;
    assert_invalid_field(&r, "namespace");
    let r = json_req(
        &app,
        Method::POST,
        "/v1/jobs",
        &json!({"type": "t".repeat(129), "namespace": "com.shipyard"}),
    )
    .await;
    assert_invalid_field(&r, "type");
    assert_eq!(snapshot(&app).await, before);

    let r = json_req(
        &app,
        Method::POST,
        "/v1/jobs",
        &json!({"type": "t".repeat(128), "namespace": "n".repeat(128)}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn a_correlation_id_over_256_characters_is_a_422() {
    let app = TestApp::spawn().await;
    seeded(&app).await;
    let before = snapshot(&app).await;
    let r = json_req(
        &app,
        Method::POST,
        "/v1/jobs",
        &json!({"type": "build", "namespace": "com.shipyard", "correlation_id": "c".repeat(257)}),
    )
    .await;
    assert_invalid_field(&r, "correlation_id");
    assert_eq!(snapshot(&app).await, before);
    let r = json_req(
        &app,
        Method::POST,
        "/v1/jobs",
        &json!({"type": "build", "namespace": "com.shipyard", "correlation_id": "c".repeat(256)}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn meta_that_is_not_an_object_is_a_422() {
    let app = TestApp::spawn().await;
    let (job, _) = seeded(&app).await;
    let before = snapshot(&app).await;
    for meta in [json!([1, 2]), json!("text"), json!(42), json!(true)] {
        let r = json_req(
            &app,
            Method::POST,
            "/v1/jobs",
            &json!({"type": "build", "namespace": "com.shipyard", "meta": meta}),
        )
        .await;
        assert_invalid_field(&r, "meta");
        let r = json_req(
            &app,
            Method::POST,
            &format!("/v1/jobs/{}/tasks", job.id),
            &json!({"type": "step", "namespace": "com.shipyard", "meta": meta}),
        )
        .await;
        assert_invalid_field(&r, "meta");
    }
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn meta_over_16_kib_is_a_422() {
    let app = TestApp::spawn().await;
    let (job, _) = seeded(&app).await;
    let before = snapshot(&app).await;
    let meta = json!({"blob": "x".repeat(16 * 1024)});
    let r = json_req(
        &app,
        Method::POST,
        "/v1/jobs",
        &json!({"type": "build", "namespace": "com.shipyard", "meta": meta}),
    )
    .await;
    assert_invalid_field(&r, "meta");
    let r = json_req(
        &app,
        Method::POST,
        &format!("/v1/jobs/{}/tasks/batch", job.id),
        &json!({"tasks": [
            {"type": "step", "namespace": "com.shipyard"},
            {"type": "step", "namespace": "com.shipyard", "meta": meta},
        ]}),
    )
    .await;
    assert_invalid_field(&r, "tasks[1].meta");
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_malformed_uuid_in_a_body_id_is_a_422() {
    let app = TestApp::spawn().await;
    let (job, _) = seeded(&app).await;
    let before = snapshot(&app).await;
    for bad in [json!("not-a-uuid"), json!("1234"), json!(7)] {
        let r = json_req(
            &app,
            Method::POST,
            "/v1/jobs",
            &json!({"id": bad, "type": "build", "namespace": "com.shipyard"}),
        )
        .await;
        assert_invalid_field(&r, "id");
        let r = json_req(
            &app,
            Method::POST,
            &format!("/v1/jobs/{}/tasks", job.id),
            &json!({"id": bad, "type": "step", "namespace": "com.shipyard"}),
        )
        .await;
        assert_invalid_field(&r, "id");
    }
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn an_unknown_status_is_a_422_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (job, tasks) = seeded(&app).await;
    let before = snapshot(&app).await;
    for status in [json!("done"), json!("IN_PROGRESS"), json!(""), json!(3)] {
        let r = json_req(
            &app,
            Method::PUT,
            &format!("/v1/jobs/{}/tasks/{}/status", job.id, tasks[0].id),
            &json!({"status": status}),
        )
        .await;
        assert_invalid_field(&r, "status");
        let r = json_req(
            &app,
            Method::PUT,
            &format!("/v1/jobs/{}/status", job.id),
            &json!({"status": status}),
        )
        .await;
        assert_invalid_field(&r, "status");
    }
    let r = json_req(
        &app,
        Method::PUT,
        &format!("/v1/jobs/{}/tasks/{}/status", job.id, tasks[0].id),
        &json!({}),
    )
    .await;
    assert_invalid_field(&r, "status");
    let r = get(&app, "/v1/jobs?status=done").await;
    assert_invalid_field(&r, "status");
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_a_422_naming_the_field_not_a_400() {
    let app = TestApp::spawn().await;
    let (job, _) = seeded(&app).await;
    let before = snapshot(&app).await;
    let cases = [
        (
            "/v1/jobs".to_owned(),
            json!({"type": 5, "namespace": "com.shipyard"}),
            "type",
        ),
        (
            "/v1/jobs".to_owned(),
            json!({"type": "b", "namespace": "n", "auto_complete": "yes"}),
            "auto_complete",
        ),
        (
            "/v1/jobs".to_owned(),
            json!({"type": "b", "namespace": "n", "start_time": "yesterday"}),
            "start_time",
        ),
        (
            "/v1/jobs".to_owned(),
            json!({"type": "b", "namespace": "n", "tasks": [{"type": "s", "namespace": "n"}, {"id": "x"}]}),
            "tasks[1].id",
        ),
        (
            format!("/v1/jobs/{}/tasks/batch", job.id),
            json!({"tasks": {}}),
            "tasks",
        ),
        (
            "/v1/tasks/status".to_owned(),
            json!({"updates": [{"job_id": job.id, "status": "completed"}]}),
            "updates[0].task_id",
        ),
        (format!("/v1/jobs/{}/history", job.id), json!({}), "message"),
    ];
    for (path, body, field) in cases {
        let r = json_req(&app, Method::POST, &path, &body).await;
        assert_invalid_field(&r, field);
    }
    // Well-formed JSON that is not an object at all.
    for body in [json!([]), json!("job"), json!(null), json!(1)] {
        let r = json_req(&app, Method::POST, "/v1/jobs", &body).await;
        assert_problem(&r, 422);
    }
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_valid_body_followed_by_trailing_garbage_is_a_400() {
    let app = TestApp::spawn().await;
    seeded(&app).await;
    let before = snapshot(&app).await;
    let r = raw(
        &app,
        Method::POST,
        "/v1/jobs",
        Some("application/json"),
        r#"{"type": "build", "namespace": "com.shipyard"} trailing"#,
    )
    .await;
    assert_problem(&r, 400);
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_batch_of_1001_tasks_is_a_422_and_adds_none() {
    let app = TestApp::spawn().await;
    let (job, _) = seeded(&app).await;
    let before = snapshot(&app).await;
    let tasks: Vec<Value> = (0..1001)
        .map(|_| json!({"type": "step", "namespace": "com.shipyard"}))
        .collect();
    let r = json_req(
        &app,
        Method::POST,
        &format!("/v1/jobs/{}/tasks/batch", job.id),
        &json!({ "tasks": tasks }),
    )
    .await;
    assert_invalid_field(&r, "tasks");
    let r = json_req(
        &app,
        Method::POST,
        "/v1/jobs",
        &json!({"type": "build", "namespace": "com.shipyard", "tasks": tasks}),
    )
    .await;
    assert_invalid_field(&r, "tasks");
    assert_eq!(snapshot(&app).await, before);
    assert_counters_consistent(&app, job.id).await;
}

#[tokio::test]
async fn one_invalid_task_in_a_batch_rejects_the_whole_batch() {
    let app = TestApp::spawn().await;
    let (job, _) = seeded(&app).await;
    let before = snapshot(&app).await;
    let r = json_req(
        &app,
        Method::POST,
        &format!("/v1/jobs/{}/tasks/batch", job.id),
        &json!({"tasks": [
            {"type": "step", "namespace": "com.shipyard"},
            {"namespace": "com.shipyard"},
        ]}),
    )
    .await;
    assert_invalid_field(&r, "tasks[1].type");
    let r = json_req(
        &app,
        Method::POST,
        "/v1/jobs",
        &json!({"type": "build", "namespace": "com.shipyard", "tasks": [
            {"type": "step", "namespace": "com.shipyard"},
            {"type": "step"},
        ]}),
    )
    .await;
    assert_invalid_field(&r, "tasks[1].namespace");
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_job_created_with_a_conflicting_task_is_not_created_at_all() {
    let app = TestApp::spawn().await;
    let (_, tasks) = seeded(&app).await;
    let before = snapshot(&app).await;
    let id = JobId::from_uuid(uuid::Uuid::now_v7());
    let r = json_req(
        &app,
        Method::POST,
        "/v1/jobs",
        &json!({"id": id, "type": "build", "namespace": "com.shipyard", "tasks": [
            {"type": "step", "namespace": "com.shipyard"},
            {"id": tasks[0].id, "type": "step", "namespace": "com.shipyard"},
        ]}),
    )
    .await;
    assert_problem(&r, 409);
    assert_problem(&get(&app, &format!("/v1/jobs/{id}")).await, 404);
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_task_id_twice_in_one_request_is_a_422() {
    let app = TestApp::spawn().await;
    let (job, _) = seeded(&app).await;
    let before = snapshot(&app).await;
    let dup = TaskId::from_uuid(uuid::Uuid::now_v7());
    let r = json_req(
        &app,
        Method::POST,
        &format!("/v1/jobs/{}/tasks/batch", job.id),
        &json!({"tasks": [
            {"id": dup, "type": "step", "namespace": "com.shipyard"},
            {"id": dup, "type": "step", "namespace": "com.shipyard"},
        ]}),
    )
    .await;
    assert_invalid_field(&r, "tasks[1].id");
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_batch_that_conflicts_on_one_task_adds_none_of_them() {
    let app = TestApp::spawn().await;
    let (job, tasks) = seeded(&app).await;
    let (other, _) = app.job_with_tasks("com.shipyard.other", 0).await;
    let before = snapshot(&app).await;
    // The second task reuses an id of another job's task: 409, and the first is not added.
    let r = json_req(
        &app,
        Method::POST,
        &format!("/v1/jobs/{}/tasks/batch", other.id),
        &json!({"tasks": [
            {"type": "step", "namespace": "com.shipyard"},
            {"id": tasks[0].id, "type": "step", "namespace": "com.shipyard.tasks"},
        ]}),
    )
    .await;
    assert_problem(&r, 409);
    assert_eq!(snapshot(&app).await, before);
    assert_counters_consistent(&app, job.id).await;
    assert_counters_consistent(&app, other.id).await;
}

// ---------------------------------------------------------------------------------------
// Unknown resources (404)

#[tokio::test]
async fn a_malformed_uuid_in_a_path_is_a_404() {
    let app = TestApp::spawn().await;
    let (job, tasks) = seeded(&app).await;
    let before = snapshot(&app).await;
    for path in [
        "/v1/jobs/not-a-uuid".to_owned(),
        "/v1/jobs/123/tasks".to_owned(),
        "/v1/jobs/zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz/history".to_owned(),
        format!("/v1/jobs/{}/tasks/not-a-uuid", job.id),
        format!("/v1/jobs/{}/tasks/42/history", job.id),
    ] {
        assert_problem(&get(&app, &path).await, 404);
    }
    let r = json_req(
        &app,
        Method::PUT,
        "/v1/jobs/not-a-uuid/status",
        &json!({"status": "cancelled"}),
    )
    .await;
    assert_problem(&r, 404);
    let r = json_req(
        &app,
        Method::PUT,
        &format!("/v1/jobs/{}/tasks/nope/status", job.id),
        &json!({"status": "completed"}),
    )
    .await;
    assert_problem(&r, 404);
    let r = json_req(
        &app,
        Method::POST,
        &format!("/v1/jobs/nope/tasks/{}/heartbeat", tasks[0].id),
        &json!({}),
    )
    .await;
    assert_problem(&r, 404);
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn an_unknown_job_is_a_404_for_every_endpoint_and_nothing_is_created() {
    let app = TestApp::spawn().await;
    let (_, tasks) = seeded(&app).await;
    let before = snapshot(&app).await;
    let ghost = JobId::from_uuid(uuid::Uuid::now_v7());
    let t = tasks[0].id;
    let cases = [
        (Method::GET, format!("/v1/jobs/{ghost}"), None),
        (Method::GET, format!("/v1/jobs/{ghost}/tasks"), None),
        (Method::GET, format!("/v1/jobs/{ghost}/history"), None),
        (Method::GET, format!("/v1/jobs/{ghost}/tasks/{t}"), None),
        (
            Method::PUT,
            format!("/v1/jobs/{ghost}/status"),
            Some(json!({"status": "cancelled"})),
        ),
        (
            Method::POST,
            format!("/v1/jobs/{ghost}/tasks"),
            Some(json!({"type": "step", "namespace": "com.shipyard"})),
        ),
        (
            Method::POST,
            format!("/v1/jobs/{ghost}/tasks/batch"),
            Some(json!({"tasks": [{"type": "step", "namespace": "com.shipyard"}]})),
        ),
        (
            Method::PUT,
            format!("/v1/jobs/{ghost}/tasks/{t}/status"),
            Some(json!({"status": "completed"})),
        ),
        (
            Method::POST,
            format!("/v1/jobs/{ghost}/tasks/{t}/heartbeat"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/jobs/{ghost}/history"),
            Some(json!({"message": "hello"})),
        ),
    ];
    for (method, path, body) in cases {
        let r = match body {
            Some(b) => json_req(&app, method, &path, &b).await,
            None => get(&app, &path).await,
        };
        assert_problem(&r, 404);
    }
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn an_unknown_task_is_a_404_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (job, _) = seeded(&app).await;
    let before = snapshot(&app).await;
    let ghost = TaskId::from_uuid(uuid::Uuid::now_v7());
    let base = format!("/v1/jobs/{}/tasks/{ghost}", job.id);
    assert_problem(&get(&app, &base).await, 404);
    assert_problem(&get(&app, &format!("{base}/history")).await, 404);
    let r = json_req(
        &app,
        Method::PUT,
        &format!("{base}/status"),
        &json!({"status": "completed"}),
    )
    .await;
    assert_problem(&r, 404);
    let r = json_req(&app, Method::POST, &format!("{base}/heartbeat"), &json!({})).await;
    assert_problem(&r, 404);
    let r = json_req(
        &app,
        Method::POST,
        &format!("{base}/history"),
        &json!({"message": "hello"}),
    )
    .await;
    assert_problem(&r, 404);
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_task_addressed_under_another_job_is_a_404_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (_, tasks) = seeded(&app).await;
    let (other, _) = app.job_with_tasks("com.shipyard.other", 1).await;
    let before = snapshot(&app).await;
    let base = format!("/v1/jobs/{}/tasks/{}", other.id, tasks[0].id);
    assert_problem(&get(&app, &base).await, 404);
    assert_problem(&get(&app, &format!("{base}/history")).await, 404);
    let r = json_req(
        &app,
        Method::PUT,
        &format!("{base}/status"),
        &json!({"status": "completed"}),
    )
    .await;
    assert_problem(&r, 404);
    let r = json_req(
        &app,
        Method::POST,
        &format!("{base}/heartbeat"),
        &json!({"progress": {"current": 1, "total": 2}}),
    )
    .await;
    assert_problem(&r, 404);
    let r = json_req(
        &app,
        Method::POST,
        &format!("{base}/history"),
        &json!({"message": "hello"}),
    )
    .await;
    assert_problem(&r, 404);
    assert_eq!(snapshot(&app).await, before);
}

// ---------------------------------------------------------------------------------------
// Query strings

#[tokio::test]
async fn a_malformed_percent_escape_in_a_query_is_a_400() {
    let app = TestApp::spawn().await;
    let (job, tasks) = seeded(&app).await;
    for path in [
        "/v1/jobs?namespace=%zz".to_owned(),
        "/v1/jobs?namespace=abc%".to_owned(),
        "/v1/jobs?type=%4".to_owned(),
        format!("/v1/jobs/{}/tasks?status=%G1", job.id),
        format!("/v1/jobs/{}/history?after=%", job.id),
        format!("/v1/jobs/{}/tasks/{}/history?size=1%x", job.id, tasks[0].id),
    ] {
        assert_problem(&get(&app, &path).await, 400);
    }
    // A well-formed escape is fine.
    let r = get(&app, "/v1/jobs?namespace=com%2Eshipyard%2Eerrors").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["total_items"], 1);
}

#[tokio::test]
async fn invalid_query_values_are_422_problems_naming_the_parameter() {
    let app = TestApp::spawn().await;
    let (job, _) = seeded(&app).await;
    for (path, field) in [
        ("/v1/jobs?size=1001".to_owned(), "size"),
        ("/v1/jobs?size=0".to_owned(), "size"),
        ("/v1/jobs?page=0".to_owned(), "page"),
        ("/v1/jobs?page=-1".to_owned(), "page"),
        ("/v1/jobs?sort=color".to_owned(), "sort"),
        ("/v1/jobs?order=sideways".to_owned(), "order"),
        (format!("/v1/jobs/{}/history?size=1001", job.id), "size"),
        (format!("/v1/jobs/{}/history?after=x", job.id), "after"),
        (format!("/v1/jobs/{}/tasks?status=nope", job.id), "status"),
    ] {
        assert_invalid_field(&get(&app, &path).await, field);
    }
}

// ---------------------------------------------------------------------------------------
// No input gets a 500

/// A request made of random parts: a method, a path built from real and garbage
/// segments, a content type, and a body that is either garbage bytes or a JSON value
/// that looks roughly like what the endpoint expects.
#[derive(Clone, Debug)]
struct Garbage {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "pending",
            "in_progress",
            "inprogress",
            "completed",
            "failed",
            "cancelled",
            "",
            "0190a0a0-0000-7000-8000-000000000000",
            "not-a-uuid",
        ])
        .prop_map(|s| Value::String(s.into())),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 32, 6, |inner| {
        let key = prop::sample::select(vec![
            "id",
            "type",
            "namespace",
            "status",
            "meta",
            "tasks",
            "updates",
            "job_id",
            "task_id",
            "progress",
            "current",
            "total",
            "message",
            "data",
            "reason",
            "error",
            "auto_complete",
            "start_time",
            "timeout_seconds",
            "correlation_id",
        ])
        .prop_map(str::to_owned);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner.clone()), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            prop::collection::vec((".{0,8}", inner), 0..3)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn garbage(job: JobId, task: TaskId) -> impl Strategy<Value = Garbage> {
    let job = job.to_string();
    let task = task.to_string();
    let segment = prop_oneof![
        4 => prop::sample::select(vec![
            "v1", "jobs", "tasks", "status", "batch", "history", "heartbeat", "watch", "",
        ])
        .prop_map(str::to_owned),
        2 => Just(job),
        2 => Just(task),
        1 => Just(JobId::from_uuid(uuid::Uuid::now_v7()).to_string()),
        1 => "[a-zA-Z0-9%._~-]{0,12}",
    ];
    let query = prop_oneof![
        Just(String::new()),
        "[a-z._]{1,12}=[a-zA-Z0-9%,._-]{0,12}".prop_map(|q| format!("?{q}")),
        "[ -~]{0,20}".prop_map(|q| format!("?{}", q.replace(['#', ' '], ""))),
    ];
    let path = (
        prop::bool::weighted(0.9),
        prop::collection::vec(segment, 0..7),
        query,
    )
        .prop_map(|(v1, segs, q)| {
            let mut p = String::new();
            if v1 {
                p.push_str("/v1");
            }
            for s in segs {
                p.push('/');
                p.push_str(&s);
            }
            if p.is_empty() {
                p.push('/');
            }
            p + &q
        });
    let method = prop::sample::select(vec![
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ]);
    let content_type = prop::sample::select(vec![
        Some("application/json"),
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        Some("application/problem+json"),
        None,
    ]);
    let body = prop_oneof![
        3 => json_value().prop_map(|v| serde_json::to_vec(&v).expect("serialises")),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => Just(Vec::new()),
        1 => Just(b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_vec()),
    ];
    (method, path, content_type, body).prop_map(|(method, path, content_type, body)| Garbage {
        method,
        path,
        content_type,
        body,
    })
}

#[test]
fn no_request_however_malformed_gets_a_500_or_breaks_the_counters() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let app = rt.block_on(TestApp::spawn());
    let (job, tasks) = rt.block_on(seeded(&app));
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&garbage(job.id, tasks[0].id), |g| {
        let r = rt
            .block_on(async {
                tokio::time::timeout(
                    std::time::Duration::from_secs(20),
                    raw(
                        &app,
                        g.method.clone(),
                        &g.path,
                        g.content_type,
                        g.body.clone(),
                    ),
                )
                .await
            })
            .unwrap_or_else(|_| panic!("no answer within 20 s to {g:?}"));
        prop_assert!(r.status < 500, "{g:?} got {}: {}", r.status, r.body);
        if r.status >= 400 {
            prop_assert_eq!(&r.content_type, "application/problem+json", "{:?}", g);
            prop_assert_eq!(&r.body["status"], &json!(r.status), "{:?}", g);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(async {
        let list = app
            .client
            .list_jobs(&portauthority_client::JobQuery {
                paging: portauthority_client::PageQuery {
                    size: Some(1000),
                    ..Default::default()
                },
                ..Default::default()
            })
            .await;
        for j in list.expect("jobs still list").jobs {
            assert_counters_consistent(&app, j.id).await;
        }
    });
}

#[tokio::test]
async fn hand_picked_awkward_inputs_never_get_a_500() {
    let app = TestApp::spawn().await;
    let (job, tasks) = seeded(&app).await;
    let t = tasks[0].id;
    let task_status = format!("/v1/jobs/{}/tasks/{t}/status", job.id);
    let cases: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/v1/jobs".into(),
            json!({"type": "b", "namespace": "n", "start_time": "yesterday"}),
        ),
        (
            Method::POST,
            "/v1/jobs".into(),
            json!({"type": "b", "namespace": "n", "start_time": "9999-12-31T23:59:59.999Z"}),
        ),
        (
            Method::POST,
            "/v1/jobs".into(),
            json!({"type": "b", "namespace": "n", "auto_complete": "yes"}),
        ),
        (
            Method::POST,
            "/v1/jobs".into(),
            json!({"type": "a\u{0}b", "namespace": "n"}),
        ),
        (
            Method::POST,
            "/v1/jobs".into(),
            json!({"type": "b", "namespace": "n", "tasks": {}}),
        ),
        (Method::POST, "/v1/jobs".into(), json!([])),
        (Method::POST, "/v1/jobs".into(), json!(null)),
        (
            Method::POST,
            format!("/v1/jobs/{}/tasks", job.id),
            json!({"type": "s", "namespace": "n", "timeout_seconds": -5}),
        ),
        (
            Method::POST,
            format!("/v1/jobs/{}/tasks", job.id),
            json!({"type": "s", "namespace": "n", "timeout_seconds": 1e300}),
        ),
        (
            Method::POST,
            format!("/v1/jobs/{}/tasks/batch", job.id),
            json!({"tasks": []}),
        ),
        (
            Method::PUT,
            task_status.clone(),
            json!({"status": "in_progress", "progress": {"current": -1}}),
        ),
        (
            Method::PUT,
            task_status.clone(),
            json!({"status": "in_progress", "progress": {"current": u64::MAX, "total": u64::MAX}}),
        ),
        (
            Method::PUT,
            task_status.clone(),
            json!({"status": "in_progress", "reason": "r".repeat(5000)}),
        ),
        (
            Method::POST,
            "/v1/tasks/status".into(),
            json!({"updates": {}}),
        ),
        (
            Method::POST,
            "/v1/tasks/status".into(),
            json!({"updates": [{"job_id": 1, "task_id": 2, "status": 3}]}),
        ),
        (
            Method::POST,
            "/v1/tasks/status".into(),
            json!({"updates": []}),
        ),
        (
            Method::POST,
            format!("/v1/jobs/{}/history", job.id),
            json!({"message": "m", "data": [1]}),
        ),
        (
            Method::POST,
            format!("/v1/jobs/{}/history", job.id),
            json!({"message": 5}),
        ),
    ];
    for (method, path, body) in cases {
        let r = json_req(&app, method.clone(), &path, &body).await;
        assert!(
            r.status < 500,
            "{method} {path} {body} got {}: {}",
            r.status,
            r.body
        );
        if r.status >= 400 {
            assert_problem(&r, r.status);
        }
    }
    let huge_page = format!("/v1/jobs?page={}", u32::MAX);
    for path in [
        huge_page.as_str(),
        "/v1/jobs?after=99999999999999999999",
        "/v1/jobs?meta.=x",
        "/v1/jobs?meta.a%00b=%00",
        "/v1/jobs?correllation_id=%F0%9F%9A%A2",
    ] {
        let r = get(&app, path).await;
        assert!(r.status < 500, "{path} got {}: {}", r.status, r.body);
    }
    let r = get(
        &app,
        &format!("/v1/jobs/{}/history?after=9223372036854775807", job.id),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_counters_consistent(&app, job.id).await;
}

#[tokio::test]
async fn a_repeated_create_with_other_content_is_a_409_and_keeps_the_original() {
    let app = TestApp::spawn().await;
    let mut req = job_request("com.shipyard", "build");
    req.id = Some(JobId::from_uuid(uuid::Uuid::now_v7()));
    req.tasks = Some(vec![task_request("step")]);
    let job = app.client.create_job(&req).await.expect("created");
    let before = snapshot(&app).await;
    let mut other = req.clone();
    other.job_type = Some("deploy".into());
    let r = json_req(
        &app,
        Method::POST,
        "/v1/jobs",
        &serde_json::to_value(&other).expect("json"),
    )
    .await;
    assert_problem(&r, 409);
    assert_eq!(snapshot(&app).await, before);
    assert_eq!(
        app.client.get_job(job.id).await.expect("job").job_type,
        "build"
    );
}
