//! Creating jobs and tasks is idempotent on their ids, and every create is all or nothing.
//!
//! "Same content" compares the client-supplied fields after defaults; an omitted
//! `start_time` matches whatever is stored. The same id with other content is a 409 that
//! changes nothing.

use crate::helpers::{TestApp, assert_problem};
use crate::seed::{assert_job_shape, assert_task_shape};
use serde_json::{Value, json};

const JOB: &str = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b";
const OTHER_JOB: &str = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2c";
const TASK: &str = "0190a1b2-c3d4-7e5f-8a6b-000000000001";
const TASK_2: &str = "0190a1b2-c3d4-7e5f-8a6b-000000000002";
const TASK_3: &str = "0190a1b2-c3d4-7e5f-8a6b-000000000003";

fn job_body() -> Value {
    json!({
        "id": JOB,
        "correlation_id": "release-42",
        "type": "send",
        "namespace": "com.shipyard.email",
        "auto_complete": true,
        "start_time": "2024-03-01T12:00:00.250Z",
        "meta": {"foo": "bar", "release_id": 123}
    })
}

fn task_body(id: &str) -> Value {
    json!({
        "id": id,
        "type": "render",
        "namespace": "com.shipyard.tasks",
        "start_time": "2024-03-01T12:00:01.000Z",
        "timeout_seconds": 60,
        "meta": {"part": 1}
    })
}

async fn post_job(app: &TestApp, body: Value) -> Value {
    let (status, res) = app.post("/v1/jobs", body.clone()).await;
    assert_eq!(status, 200, "POST /v1/jobs {body}: {res}");
    assert_job_shape(&res["job"]);
    res["job"].clone()
}

async fn post_task(app: &TestApp, job: &str, body: Value) -> (u16, Value) {
    app.post(&format!("/v1/jobs/{job}/tasks"), body).await
}

async fn get_job(app: &TestApp, id: &str) -> Value {
    let (status, res) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status, 200, "{res}");
    res["job"].clone()
}

/// The kinds of a job's history events, in order.
async fn history_kinds(app: &TestApp, job: &str) -> Vec<String> {
    let (status, res) = app.get(&format!("/v1/jobs/{job}/history?size=1000")).await;
    assert_eq!(status, 200, "{res}");
    res["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind").to_owned())
        .collect()
}

async fn task_ids(app: &TestApp, job: &str) -> Vec<String> {
    let (status, res) = app.get(&format!("/v1/jobs/{job}/tasks?size=1000")).await;
    assert_eq!(status, 200, "{res}");
    res["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Everything a failed write must leave untouched about a job.
async fn snapshot(app: &TestApp, job: &str) -> (Value, Vec<String>, Vec<String>) {
    (
        get_job(app, job).await,
        task_ids(app, job).await,
        history_kinds(app, job).await,
    )
}

// ---------------------------------------------------------------------------------------
// Jobs

#[tokio::test]
async fn creating_a_job_again_with_the_same_id_and_content_returns_the_stored_job() {
    let app = TestApp::spawn().await;
    let first = post_job(&app, job_body()).await;
    let second = post_job(&app, job_body()).await;

    assert_eq!(second, first);
    assert_eq!(history_kinds(&app, JOB).await, ["created"]);
    let (_, list) = app.get("/v1/jobs").await;
    assert_eq!(list["total_items"], 1, "{list}");
}

#[tokio::test]
async fn creating_a_job_again_returns_it_as_it_is_now() {
    let app = TestApp::spawn().await;
    post_job(&app, job_body()).await;
    let (status, res) = post_task(&app, JOB, task_body(TASK)).await;
    assert_eq!(status, 200, "{res}");

    let again = post_job(&app, job_body()).await;
    assert_eq!(again, get_job(&app, JOB).await);
    assert_eq!(again["tasks"]["total"], 1);
    assert_eq!(history_kinds(&app, JOB).await, ["created", "task_added"]);
}

#[tokio::test]
async fn meta_with_its_keys_in_another_order_is_the_same_content() {
    let app = TestApp::spawn().await;
    let first = post_job(&app, job_body()).await;
    let mut body = job_body();
    body["meta"] = serde_json::from_str(r#"{"release_id": 123, "foo": "bar"}"#).unwrap();
    let second = post_job(&app, body).await;
    assert_eq!(second, first);
}

#[tokio::test]
async fn the_same_job_id_with_other_content_is_a_conflict_that_changes_nothing() {
    let app = TestApp::spawn().await;
    post_job(&app, job_body()).await;
    let before = snapshot(&app, JOB).await;

    let changes: [(&str, Value); 8] = [
        ("type", json!("receive")),
        ("namespace", json!("com.shipyard.sms")),
        ("correlation_id", json!("release-43")),
        ("correlation_id", Value::Null),
        ("auto_complete", json!(false)),
        ("start_time", json!("2024-03-01T12:00:00.251Z")),
        ("meta", json!({"foo": "bar", "release_id": "123"})),
        ("meta", json!({"foo": "bar"})),
    ];
    for (field, value) in changes {
        let mut body = job_body();
        body[field] = value.clone();
        let (status, res) = app.post("/v1/jobs", body).await;
        assert_problem(status, &res, 409);
        assert_eq!(
            snapshot(&app, JOB).await,
            before,
            "a conflicting create with {field} = {value} changed the job"
        );
    }

    // Omitting an optional field means its default, which differs from what is stored.
    for field in ["correlation_id", "meta"] {
        let mut body = job_body();
        body.as_object_mut().unwrap().remove(field);
        let (status, res) = app.post("/v1/jobs", body).await;
        assert_problem(status, &res, 409);
    }
    assert_eq!(snapshot(&app, JOB).await, before);
}

#[tokio::test]
async fn content_is_compared_after_defaults() {
    let app = TestApp::spawn().await;
    // Stored with auto_complete true and meta {} spelled out...
    let mut body = job_body();
    body["meta"] = json!({});
    let first = post_job(&app, body.clone()).await;
    // ...the same as omitting them, or sending null for meta.
    let obj = body.as_object_mut().unwrap();
    obj.remove("auto_complete");
    obj.remove("meta");
    assert_eq!(post_job(&app, body.clone()).await, first);
    body["meta"] = Value::Null;
    assert_eq!(post_job(&app, body).await, first);
    assert_eq!(history_kinds(&app, JOB).await, ["created"]);
}

#[tokio::test]
async fn an_omitted_start_time_matches_the_stored_one() {
    let app = TestApp::spawn().await;
    let first = post_job(&app, job_body()).await;
    let mut body = job_body();
    body.as_object_mut().unwrap().remove("start_time");
    let again = post_job(&app, body).await;
    assert_eq!(again, first);
    assert_eq!(again["start_time"], "2024-03-01T12:00:00.250Z");

    // The same instant written with another offset is the same start time.
    let mut body = job_body();
    body["start_time"] = json!("2024-03-01T06:00:00.250-06:00");
    assert_eq!(post_job(&app, body).await, first);
    assert_eq!(history_kinds(&app, JOB).await, ["created"]);
}

#[tokio::test]
async fn a_start_time_supplied_later_must_equal_the_one_the_server_chose() {
    let app = TestApp::spawn().await;
    let mut body = job_body();
    body.as_object_mut().unwrap().remove("start_time");
    let first = post_job(&app, body.clone()).await;
    // Omitted again: the same job.
    assert_eq!(post_job(&app, body.clone()).await, first);

    // The instant it got, even written with another offset: the same job.
    let stored = first["start_time"].as_str().unwrap().to_owned();
    body["start_time"] = json!(stored);
    assert_eq!(post_job(&app, body.clone()).await, first);
    let shifted = stored.replace('Z', "+00:00");
    body["start_time"] = json!(shifted);
    assert_eq!(post_job(&app, body.clone()).await, first, "sent {shifted}");

    // Another instant: a conflict.
    body["start_time"] = json!("2001-01-01T00:00:00.000Z");
    let (status, res) = app.post("/v1/jobs", body).await;
    assert_problem(status, &res, 409);
    assert_eq!(get_job(&app, JOB).await, first);
}

#[tokio::test]
async fn jobs_created_without_an_id_are_never_merged() {
    let app = TestApp::spawn().await;
    let mut body = job_body();
    body.as_object_mut().unwrap().remove("id");
    let a = post_job(&app, body.clone()).await;
    let b = post_job(&app, body).await;
    assert_ne!(a["id"], b["id"]);
    let (_, list) = app.get("/v1/jobs").await;
    assert_eq!(list["total_items"], 2, "{list}");
}

// ---------------------------------------------------------------------------------------
// Tasks

#[tokio::test]
async fn adding_a_task_again_with_the_same_id_and_content_returns_the_stored_task() {
    let app = TestApp::spawn().await;
    post_job(&app, job_body()).await;
    let (status, first) = post_task(&app, JOB, task_body(TASK)).await;
    assert_eq!(status, 200, "{first}");
    assert_task_shape(&first["task"]);
    let job_before = get_job(&app, JOB).await;

    let (status, second) = post_task(&app, JOB, task_body(TASK)).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second, first);
    assert_eq!(get_job(&app, JOB).await, job_before);
    assert_eq!(job_before["tasks"]["total"], 1);
    assert_eq!(history_kinds(&app, JOB).await, ["created", "task_added"]);
}

#[tokio::test]
async fn adding_a_task_again_after_it_moved_on_returns_it_unchanged() {
    let app = TestApp::spawn().await;
    post_job(&app, job_body()).await;
    let (status, res) = post_task(&app, JOB, task_body(TASK)).await;
    assert_eq!(status, 200, "{res}");
    let (status, res) = app
        .put(
            &format!("/v1/jobs/{JOB}/tasks/{TASK}/status"),
            json!({"status": "in_progress", "progress": {"current": 3, "total": 10}}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let moved = res["task"].clone();
    let job_before = get_job(&app, JOB).await;

    let (status, again) = post_task(&app, JOB, task_body(TASK)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["task"], moved);
    assert_eq!(again["task"]["status"], "in_progress");
    assert_eq!(get_job(&app, JOB).await, job_before);
}

#[tokio::test]
async fn an_omitted_task_start_time_matches_the_stored_one() {
    let app = TestApp::spawn().await;
    post_job(&app, job_body()).await;
    let (status, first) = post_task(&app, JOB, task_body(TASK)).await;
    assert_eq!(status, 200, "{first}");
    let mut body = task_body(TASK);
    body.as_object_mut().unwrap().remove("start_time");
    let (status, again) = post_task(&app, JOB, body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first);
}

#[tokio::test]
async fn the_same_task_id_with_other_content_is_a_conflict_that_changes_nothing() {
    let app = TestApp::spawn().await;
    post_job(&app, job_body()).await;
    let (status, first) = post_task(&app, JOB, task_body(TASK)).await;
    assert_eq!(status, 200, "{first}");
    let before = snapshot(&app, JOB).await;

    let changes: [(&str, Value); 5] = [
        ("type", json!("upload")),
        ("namespace", json!("com.shipyard.other")),
        ("start_time", json!("2024-03-01T12:00:02.000Z")),
        ("timeout_seconds", json!(61)),
        ("meta", json!({"part": 2})),
    ];
    for (field, value) in changes {
        let mut body = task_body(TASK);
        body[field] = value.clone();
        let (status, res) = post_task(&app, JOB, body).await;
        assert_problem(status, &res, 409);
        assert_eq!(
            snapshot(&app, JOB).await,
            before,
            "a conflicting add with {field} = {value} changed the job"
        );
    }
    let (status, res) = app.get(&format!("/v1/jobs/{JOB}/tasks/{TASK}")).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res, first);
}

#[tokio::test]
async fn a_task_id_reused_under_another_job_is_a_conflict() {
    let app = TestApp::spawn().await;
    post_job(&app, job_body()).await;
    let mut other = job_body();
    other["id"] = json!(OTHER_JOB);
    post_job(&app, other).await;
    let (status, first) = post_task(&app, JOB, task_body(TASK)).await;
    assert_eq!(status, 200, "{first}");
    let before = snapshot(&app, OTHER_JOB).await;

    // Even with identical content.
    let (status, res) = post_task(&app, OTHER_JOB, task_body(TASK)).await;
    assert_problem(status, &res, 409);
    assert_eq!(snapshot(&app, OTHER_JOB).await, before);
    assert_eq!(before.0["tasks"]["total"], 0);
    let (status, res) = app.get(&format!("/v1/jobs/{OTHER_JOB}/tasks/{TASK}")).await;
    assert_problem(status, &res, 404);
    let (status, res) = app.get(&format!("/v1/jobs/{JOB}/tasks/{TASK}")).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res, first);
}

// ---------------------------------------------------------------------------------------
// Batches: all or nothing

async fn post_batch(app: &TestApp, job: &str, tasks: Vec<Value>) -> (u16, Value) {
    app.post(
        &format!("/v1/jobs/{job}/tasks/batch"),
        json!({ "tasks": tasks }),
    )
    .await
}

/// A job with one task already added.
async fn job_with_one_task(app: &TestApp) -> (Value, Vec<String>, Vec<String>) {
    post_job(app, job_body()).await;
    let (status, res) = post_task(app, JOB, task_body(TASK)).await;
    assert_eq!(status, 200, "{res}");
    snapshot(app, JOB).await
}

#[tokio::test]
async fn a_batch_with_one_invalid_task_adds_nothing() {
    let app = TestApp::spawn().await;
    let before = job_with_one_task(&app).await;

    let mut bad = task_body(TASK_3);
    bad.as_object_mut().unwrap().remove("type");
    let (status, res) = post_batch(&app, JOB, vec![task_body(TASK_2), bad]).await;
    assert_problem(status, &res, 422);
    assert!(
        res["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["field"] == "tasks[1].type")),
        "the problem should name tasks[1].type: {res}"
    );
    assert_eq!(snapshot(&app, JOB).await, before);
}

#[tokio::test]
async fn a_batch_naming_one_id_twice_adds_nothing() {
    let app = TestApp::spawn().await;
    let before = job_with_one_task(&app).await;

    let (status, res) = post_batch(
        &app,
        JOB,
        vec![task_body(TASK_2), task_body(TASK_3), task_body(TASK_2)],
    )
    .await;
    assert_problem(status, &res, 422);
    assert_eq!(snapshot(&app, JOB).await, before);
}

#[tokio::test]
async fn a_batch_with_one_task_conflicting_in_content_adds_nothing() {
    let app = TestApp::spawn().await;
    let before = job_with_one_task(&app).await;

    let mut changed = task_body(TASK);
    changed["type"] = json!("upload");
    // The conflicting item comes last, after items that would have been written.
    let (status, res) = post_batch(
        &app,
        JOB,
        vec![task_body(TASK_2), task_body(TASK_3), changed],
    )
    .await;
    assert_problem(status, &res, 409);
    assert_eq!(snapshot(&app, JOB).await, before);
    let (status, res) = app.get(&format!("/v1/jobs/{JOB}/tasks/{TASK_2}")).await;
    assert_problem(status, &res, 404);
}

#[tokio::test]
async fn a_batch_reusing_a_task_id_of_another_job_adds_nothing() {
    let app = TestApp::spawn().await;
    let before = job_with_one_task(&app).await;
    let mut other = job_body();
    other["id"] = json!(OTHER_JOB);
    post_job(&app, other).await;
    let other_before = snapshot(&app, OTHER_JOB).await;

    let (status, res) = post_batch(&app, OTHER_JOB, vec![task_body(TASK_2), task_body(TASK)]).await;
    assert_problem(status, &res, 409);
    assert_eq!(snapshot(&app, OTHER_JOB).await, other_before);
    assert_eq!(snapshot(&app, JOB).await, before);
}

#[tokio::test]
async fn a_batch_for_a_finished_job_adds_nothing() {
    let app = TestApp::spawn().await;
    job_with_one_task(&app).await;
    let (status, res) = app
        .put(
            &format!("/v1/jobs/{JOB}/status"),
            json!({"status": "cancelled"}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let before = snapshot(&app, JOB).await;

    let (status, res) = post_batch(&app, JOB, vec![task_body(TASK_2), task_body(TASK_3)]).await;
    assert_problem(status, &res, 409);
    assert_eq!(snapshot(&app, JOB).await, before);
}

#[tokio::test]
async fn retrying_a_whole_batch_returns_the_same_tasks_and_adds_nothing() {
    let app = TestApp::spawn().await;
    post_job(&app, job_body()).await;
    let batch = vec![task_body(TASK), task_body(TASK_2), task_body(TASK_3)];
    let (status, first) = post_batch(&app, JOB, batch.clone()).await;
    assert_eq!(status, 200, "{first}");
    let tasks = first["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 3);
    for (task, id) in tasks.iter().zip([TASK, TASK_2, TASK_3]) {
        assert_task_shape(task);
        assert_eq!(task["id"], id, "results come in request order");
    }
    let before = snapshot(&app, JOB).await;
    assert_eq!(before.0["tasks"]["total"], 3);
    assert_eq!(before.0["tasks"]["pending"], 3);

    let (status, second) = post_batch(&app, JOB, batch).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second, first);
    assert_eq!(snapshot(&app, JOB).await, before);
}

#[tokio::test]
async fn a_batch_overlapping_an_earlier_one_adds_only_the_new_tasks() {
    let app = TestApp::spawn().await;
    let (job_before, _, _) = job_with_one_task(&app).await;
    assert_eq!(job_before["tasks"]["total"], 1);

    let (status, res) = post_batch(&app, JOB, vec![task_body(TASK), task_body(TASK_2)]).await;
    assert_eq!(status, 200, "{res}");
    let ids: Vec<&str> = res["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [TASK, TASK_2]);
    let job = get_job(&app, JOB).await;
    assert_eq!(job["tasks"]["total"], 2);
    assert_eq!(job["tasks"]["pending"], 2);
    assert_eq!(
        history_kinds(&app, JOB).await,
        ["created", "task_added", "task_added"]
    );
}

// ---------------------------------------------------------------------------------------
// A job created with its tasks

fn job_with_tasks_body() -> Value {
    let mut body = job_body();
    body["tasks"] = json!([task_body(TASK), task_body(TASK_2)]);
    body
}

#[tokio::test]
async fn a_job_created_with_tasks_holds_them_from_the_start() {
    let app = TestApp::spawn().await;
    let job = post_job(&app, job_with_tasks_body()).await;
    assert_eq!(job["tasks"]["total"], 2);
    assert_eq!(job["tasks"]["pending"], 2);
    assert_eq!(job["status"], "pending");
    assert_eq!(task_ids(&app, JOB).await, [TASK, TASK_2]);
    assert_eq!(
        history_kinds(&app, JOB).await,
        ["created", "task_added", "task_added"]
    );
}

#[tokio::test]
async fn creating_a_job_with_tasks_again_adds_nothing() {
    let app = TestApp::spawn().await;
    let first = post_job(&app, job_with_tasks_body()).await;
    let before = snapshot(&app, JOB).await;
    let again = post_job(&app, job_with_tasks_body()).await;
    assert_eq!(again, first);
    assert_eq!(snapshot(&app, JOB).await, before);
}

#[tokio::test]
async fn creating_a_job_again_with_other_tasks_is_a_conflict_that_changes_nothing() {
    let app = TestApp::spawn().await;
    post_job(&app, job_with_tasks_body()).await;
    let before = snapshot(&app, JOB).await;

    let mut changed = job_with_tasks_body();
    changed["tasks"][1]["type"] = json!("upload");
    let (status, res) = app.post("/v1/jobs", changed).await;
    assert_problem(status, &res, 409);

    let mut extra = job_with_tasks_body();
    extra["tasks"]
        .as_array_mut()
        .unwrap()
        .push(task_body(TASK_3));
    let (status, res) = app.post("/v1/jobs", extra).await;
    assert_problem(status, &res, 409);

    assert_eq!(snapshot(&app, JOB).await, before);
    let (status, res) = app.get(&format!("/v1/jobs/{JOB}/tasks/{TASK_3}")).await;
    assert_problem(status, &res, 404);
}

#[tokio::test]
async fn a_job_with_one_invalid_task_is_not_created() {
    let app = TestApp::spawn().await;
    let mut body = job_with_tasks_body();
    body["tasks"][1]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    let (status, res) = app.post("/v1/jobs", body).await;
    assert_problem(status, &res, 422);
    assert!(
        res["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["field"] == "tasks[1].namespace")),
        "the problem should name tasks[1].namespace: {res}"
    );

    let (status, res) = app.get(&format!("/v1/jobs/{JOB}")).await;
    assert_problem(status, &res, 404);
    let (_, list) = app.get("/v1/jobs").await;
    assert_eq!(list["total_items"], 0, "{list}");
}

#[tokio::test]
async fn a_job_whose_task_id_belongs_to_another_job_is_not_created() {
    let app = TestApp::spawn().await;
    let mut other = job_body();
    other["id"] = json!(OTHER_JOB);
    post_job(&app, other).await;
    let (status, res) = post_task(&app, OTHER_JOB, task_body(TASK_2)).await;
    assert_eq!(status, 200, "{res}");
    let other_before = snapshot(&app, OTHER_JOB).await;

    let (status, res) = app.post("/v1/jobs", job_with_tasks_body()).await;
    assert_problem(status, &res, 409);

    let (status, res) = app.get(&format!("/v1/jobs/{JOB}")).await;
    assert_problem(status, &res, 404);
    let (status, res) = app.get(&format!("/v1/jobs/{JOB}/tasks/{TASK}")).await;
    assert_problem(status, &res, 404);
    assert_eq!(snapshot(&app, OTHER_JOB).await, other_before);
    let (_, list) = app.get("/v1/jobs").await;
    assert_eq!(list["total_items"], 1, "{list}");

    // Nothing of the refused job lingers: the same request without the clash succeeds.
    let mut body = job_with_tasks_body();
    body["tasks"] = json!([task_body(TASK)]);
    let job = post_job(&app, body).await;
    assert_eq!(job["tasks"]["total"], 1);
    assert_eq!(history_kinds(&app, JOB).await, ["created", "task_added"]);
}

#[tokio::test]
async fn a_job_naming_one_task_id_twice_is_not_created() {
    let app = TestApp::spawn().await;
    let mut body = job_body();
    body["tasks"] = json!([task_body(TASK), task_body(TASK)]);
    let (status, res) = app.post("/v1/jobs", body).await;
    assert_problem(status, &res, 422);
    let (status, res) = app.get(&format!("/v1/jobs/{JOB}")).await;
    assert_problem(status, &res, 404);
}
