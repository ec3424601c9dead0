//! `Idempotency-Key`: a retried `POST` that names no id of its own (a note, a heartbeat, a
//! task without an id, a batch of status updates) returns the first answer and changes
//! nothing.

use crate::helpers::{TestApp, assert_problem};
use serde_json::{Value, json};

async fn post_keyed(app: &TestApp, path: &str, key: &str, body: Value) -> (u16, Value) {
    let res = app
        .http
        .post(app.url(path))
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn history(app: &TestApp, job: &str) -> Vec<Value> {
    let (_, page) = app.get(&format!("/v1/jobs/{job}/history?size=1000")).await;
    page["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_retried_note_is_written_once_and_answers_as_the_first_time() {
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.example.keys", 1).await;
    let path = format!("/v1/jobs/{}/history", job.id);
    let note = json!({"message": "deploy started"});
    let (s1, first) = post_keyed(&app, &path, "note-1", note.clone()).await;
    let (s2, again) = post_keyed(&app, &path, "note-1", note.clone()).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(first, again, "the retry gets the first answer");
    // Another key is another note; no key at all, too.
    assert_eq!(post_keyed(&app, &path, "note-2", note.clone()).await.0, 200);
    assert_eq!(app.post(&path, note.clone()).await.0, 200);
    let notes = history(&app, &job.id.to_string())
        .await
        .into_iter()
        .filter(|e| e["kind"] == "note")
        .count();
    assert_eq!(notes, 3);
    // The same key on another route is another key.
    let task_path = format!("/v1/jobs/{}/tasks/{}/history", job.id, tasks[0].id);
    let (s, task_note) = post_keyed(&app, &task_path, "note-1", note).await;
    assert_eq!(s, 200);
    assert_ne!(task_note["event"]["seq"], first["event"]["seq"]);
}

#[tokio::test]
async fn a_retried_task_without_an_id_is_added_once() {
    let app = TestApp::spawn().await;
    let (job, _) = app.job_with_tasks("com.example.keys", 0).await;
    let path = format!("/v1/jobs/{}/tasks", job.id);
    let task = json!({"type": "render", "namespace": "com.example.keys"});
    let (_, first) = post_keyed(&app, &path, "add-1", task.clone()).await;
    let (_, again) = post_keyed(&app, &path, "add-1", task.clone()).await;
    assert_eq!(first["task"]["id"], again["task"]["id"]);
    let batch = json!({"tasks": [task.clone(), task]});
    let (_, b1) = post_keyed(&app, &format!("{path}/batch"), "batch-1", batch.clone()).await;
    let (_, b2) = post_keyed(&app, &format!("{path}/batch"), "batch-1", batch).await;
    assert_eq!(b1, b2);
    let (_, job) = app.get(&format!("/v1/jobs/{}", job.id)).await;
    assert_eq!(
        job["job"]["tasks"]["total"], 3,
        "one task, then a batch of two"
    );
}

#[tokio::test]
async fn a_retried_heartbeat_and_batch_update_change_nothing_more() {
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.example.keys", 2).await;
    let beat = format!("/v1/jobs/{}/tasks/{}/heartbeat", job.id, tasks[0].id);
    let body = json!({"progress": {"current": 1, "total": 4}});
    assert_eq!(post_keyed(&app, &beat, "beat-1", body.clone()).await.0, 200);
    assert_eq!(post_keyed(&app, &beat, "beat-1", body).await.0, 200);
    let updates = json!({"updates": [
        {"job_id": job.id, "task_id": tasks[1].id, "status": "completed"},
        {"job_id": job.id, "task_id": "0190a1b2-c3d4-7e5f-8a6b-000000000009", "status": "completed"},
    ]});
    let (s1, r1) = post_keyed(&app, "/v1/tasks/status", "status-1", updates.clone()).await;
    // Meanwhile the task moves on: a replay still answers what the first call did.
    app.put(
        &format!("/v1/jobs/{}/tasks/{}/status", job.id, tasks[0].id),
        json!({"status": "completed"}),
    )
    .await;
    let (s2, r2) = post_keyed(&app, "/v1/tasks/status", "status-1", updates).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(
        r1, r2,
        "a replay is the first answer, per-item refusals included"
    );
    assert_eq!(r1["results"][1]["status"], 404);
    let events = history(&app, &job.id.to_string()).await;
    let beats = events.iter().filter(|e| e["kind"] == "heartbeat").count();
    let completions = events
        .iter()
        .filter(|e| e["task_id"] == json!(tasks[1].id) && e["to"] == "completed")
        .count();
    assert_eq!((beats, completions), (1, 1));
}

#[tokio::test]
async fn a_key_reused_with_another_body_or_malformed_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (job, _) = app.job_with_tasks("com.example.keys", 0).await;
    let path = format!("/v1/jobs/{}/history", job.id);
    assert_eq!(
        post_keyed(&app, &path, "k", json!({"message": "one"}))
            .await
            .0,
        200
    );
    let (status, body) = post_keyed(&app, &path, "k", json!({"message": "two"})).await;
    assert_problem(status, &body, 422);
    let long = "x".repeat(256);
    for bad in [long.as_str(), "with space", ""] {
        let (status, body) = post_keyed(&app, &path, bad, json!({"message": "three"})).await;
        assert_problem(status, &body, 400);
    }
    let notes: Vec<Value> = history(&app, &job.id.to_string())
        .await
        .into_iter()
        .filter(|e| e["kind"] == "note")
        .collect();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["message"], "one");
}

#[tokio::test]
async fn a_retried_create_without_an_id_creates_one_job() {
    let app = TestApp::spawn().await;
    let body = json!({"type": "build", "namespace": "com.example.keys.create"});
    let (_, first) = post_keyed(&app, "/v1/jobs", "create-1", body.clone()).await;
    let (_, again) = post_keyed(&app, "/v1/jobs", "create-1", body).await;
    assert_eq!(first["job"]["id"], again["job"]["id"]);
    let (_, page) = app.get("/v1/jobs?namespace=com.example.keys.create").await;
    assert_eq!(page["total_items"], 1, "{page}");
}
