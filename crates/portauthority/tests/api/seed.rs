//! Every request of the seed note (`seed/000_7de1a86617f04626.txt`), sent with the seed's
//! own bodies and URLs, answers in the shape DESIGN.md documents.
//!
//! The shape checks here are shared by the other modules (`crate::seed::assert_job_shape`).

use crate::helpers::TestApp;
use portauthority_core::Timestamp;
use serde_json::{Value, json};

/// The id the seed uses for its job (and, in its task example, for the task too).
pub const SEED_ID: &str = "049f4d1b-c0c2-4f39-b396-fe5e179f2d92";

/// The body of the seed's `POST /v1/jobs`, exactly.
pub fn seed_job_body() -> Value {
    json!({
        "id": "049f4d1b-c0c2-4f39-b396-fe5e179f2d92",
        "correlation_id": null,

        "type": "send",
        "namespace": "com.shipyard.email",

        "meta": {
            "foo": "bar",
            "release_id": 123,
            "created_by": "foo@test.com"
        }
    })
}

/// The body of the seed's `POST /v1/jobs/{id}/tasks`, exactly.
pub fn seed_task_body() -> Value {
    json!({
        "id": "049f4d1b-c0c2-4f39-b396-fe5e179f2d92",

        "type": "send",
        "namespace": "com.shipyard.email",

        "meta": {
            "foo": "bar",
            "release_id": 123,
            "created_by": "foo@test.com"
        }
    })
}

const STATUSES: [&str; 5] = ["pending", "in_progress", "completed", "failed", "cancelled"];

/// An RFC 3339 UTC timestamp with exactly millisecond precision:
/// `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`, and a real instant.
pub fn assert_timestamp(value: &Value, what: &str) {
    let s = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} should be a timestamp string, got {value}"));
    let pattern = b"dddd-dd-ddTdd:dd:dd.dddZ";
    let shaped = s.len() == pattern.len()
        && s.bytes().zip(pattern.iter()).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            p => c == *p,
        });
    assert!(
        shaped,
        "{what} should look like 2020-09-18T06:09:27.132Z, got {s:?}"
    );
    assert!(
        Timestamp::parse(s).is_ok(),
        "{what} should be a valid instant, got {s:?}"
    );
}

fn assert_optional_timestamp(value: &Value, what: &str) {
    if !value.is_null() {
        assert_timestamp(value, what);
    }
}

fn assert_uuid(value: &Value, what: &str) {
    let s = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} should be a UUID string, got {value}"));
    assert!(
        uuid::Uuid::parse_str(s).is_ok() && s.len() == 36 && s == s.to_lowercase(),
        "{what} should be a hyphenated lowercase UUID, got {s:?}"
    );
}

fn assert_keys(value: &Value, keys: &[&str], what: &str) {
    let obj = value
        .as_object()
        .unwrap_or_else(|| panic!("{what} should be an object, got {value}"));
    for key in keys {
        assert!(obj.contains_key(*key), "{what} lacks `{key}`: {value}");
    }
}

fn assert_status(value: &Value, what: &str) {
    assert!(
        value.as_str().is_some_and(|s| STATUSES.contains(&s)),
        "{what} should be one of {STATUSES:?}, got {value}"
    );
}

fn assert_string(value: &Value, what: &str) {
    assert!(value.is_string(), "{what} should be a string, got {value}");
}

/// Every field DESIGN.md names for a job, each with its JSON type.
pub fn assert_job_shape(job: &Value) {
    assert_keys(
        job,
        &[
            "id",
            "correlation_id",
            "type",
            "namespace",
            "status",
            "start_time",
            "end_time",
            "tasks",
            "meta",
            "auto_complete",
            "created_at",
            "updated_at",
        ],
        "job",
    );
    assert_uuid(&job["id"], "job.id");
    assert!(
        job["correlation_id"].is_null() || job["correlation_id"].is_string(),
        "job.correlation_id should be null or a string: {job}"
    );
    assert_string(&job["type"], "job.type");
    assert_string(&job["namespace"], "job.namespace");
    assert_status(&job["status"], "job.status");
    assert_timestamp(&job["start_time"], "job.start_time");
    assert_optional_timestamp(&job["end_time"], "job.end_time");
    assert_timestamp(&job["created_at"], "job.created_at");
    assert_timestamp(&job["updated_at"], "job.updated_at");
    assert!(
        job["meta"].is_object(),
        "job.meta should be an object: {job}"
    );
    assert!(
        job["auto_complete"].is_boolean(),
        "job.auto_complete should be a boolean: {job}"
    );
    let counters = &job["tasks"];
    let names = [
        "total",
        "pending",
        "in_progress",
        "failed",
        "completed",
        "cancelled",
    ];
    assert_keys(counters, &names, "job.tasks");
    for name in names {
        assert!(
            counters[name].is_u64(),
            "job.tasks.{name} should be a non-negative integer: {counters}"
        );
    }
    let parts: u64 = names[1..]
        .iter()
        .map(|n| counters[*n].as_u64().unwrap())
        .sum();
    assert_eq!(
        parts,
        counters["total"].as_u64().unwrap(),
        "job.tasks counters should add up to total: {counters}"
    );
    // A job has an end time exactly when it is terminal.
    let terminal = matches!(
        job["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    );
    assert_eq!(
        job["end_time"].is_string(),
        terminal,
        "job.end_time should be set exactly when the job is terminal: {job}"
    );
}

/// Every field DESIGN.md names for a task, each with its JSON type.
pub fn assert_task_shape(task: &Value) {
    assert_keys(
        task,
        &[
            "id",
            "job_id",
            "type",
            "namespace",
            "status",
            "start_time",
            "end_time",
            "attempt",
            "progress",
            "error",
            "meta",
        ],
        "task",
    );
    assert_uuid(&task["id"], "task.id");
    assert_uuid(&task["job_id"], "task.job_id");
    assert_string(&task["type"], "task.type");
    assert_string(&task["namespace"], "task.namespace");
    assert_status(&task["status"], "task.status");
    assert_timestamp(&task["start_time"], "task.start_time");
    assert_optional_timestamp(&task["end_time"], "task.end_time");
    assert!(
        task["attempt"].as_u64().is_some_and(|a| a >= 1),
        "task.attempt should be an integer of at least 1: {task}"
    );
    let progress = &task["progress"];
    if !progress.is_null() {
        assert_keys(progress, &["current", "total"], "task.progress");
        assert!(progress["current"].is_u64(), "progress.current: {progress}");
        assert!(
            progress["total"].is_null() || progress["total"].is_u64(),
            "progress.total: {progress}"
        );
    }
    assert!(
        task["error"].is_null() || task["error"].is_string(),
        "task.error should be null or a string: {task}"
    );
    assert!(
        task["meta"].is_object(),
        "task.meta should be an object: {task}"
    );
}

/// The list envelope: `{page, page_size, total_pages, total_items, sort, order, <items>}`.
pub fn assert_page_shape(page: &Value, items: &str) {
    assert_keys(
        page,
        &[
            "page",
            "page_size",
            "total_pages",
            "total_items",
            "sort",
            "order",
            items,
        ],
        "list page",
    );
    for n in ["page", "page_size", "total_pages", "total_items"] {
        assert!(
            page[n].is_u64(),
            "{n} should be a non-negative integer: {page}"
        );
    }
    assert_string(&page["sort"], "sort");
    assert!(
        matches!(page["order"].as_str(), Some("asc" | "desc")),
        "order should be asc or desc: {page}"
    );
    assert!(page[items].is_array(), "{items} should be an array: {page}");
}

async fn post_seed_job(app: &TestApp) -> Value {
    let (status, body) = app.post("/v1/jobs", seed_job_body()).await;
    assert_eq!(status, 200, "POST /v1/jobs with the seed body: {body}");
    body["job"].clone()
}

async fn post_seed_task(app: &TestApp) -> Value {
    let (status, body) = app
        .post(&format!("/v1/jobs/{SEED_ID}/tasks"), seed_task_body())
        .await;
    assert_eq!(status, 200, "POST tasks with the seed body: {body}");
    body["task"].clone()
}

#[tokio::test]
async fn posting_the_seed_job_returns_it_in_the_documented_shape() {
    let app = TestApp::spawn().await;
    let res = app
        .http
        .post(app.url("/v1/jobs"))
        .json(&seed_job_body())
        .send()
        .await
        .expect("request sent");
    assert_eq!(res.status().as_u16(), 200);
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type:?}"
    );
    let body: Value = res.json().await.expect("JSON body");
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["job"], "the response is {{\"job\": ...}}: {body}");

    let job = &body["job"];
    assert_job_shape(job);
    assert_eq!(job["id"], SEED_ID);
    assert_eq!(job["correlation_id"], Value::Null);
    assert_eq!(job["type"], "send");
    assert_eq!(job["namespace"], "com.shipyard.email");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["end_time"], Value::Null);
    assert_eq!(
        job["tasks"],
        json!({"total": 0, "pending": 0, "in_progress": 0, "failed": 0, "completed": 0, "cancelled": 0})
    );
    assert_eq!(job["meta"], seed_job_body()["meta"]);
    assert_eq!(job["auto_complete"], true);
}

#[tokio::test]
async fn getting_the_seed_job_by_id_returns_what_was_posted() {
    let app = TestApp::spawn().await;
    let posted = post_seed_job(&app).await;

    let (status, body) = app.get(&format!("/v1/jobs/{SEED_ID}")).await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["job"], "the response is {{\"job\": ...}}: {body}");
    assert_job_shape(&body["job"]);
    assert_eq!(body["job"], posted);
}

#[tokio::test]
async fn listing_jobs_with_the_seeds_trailing_slash_and_correllation_spelling_finds_the_job() {
    let app = TestApp::spawn().await;
    post_seed_job(&app).await;
    // A second job that differs only in its correlation id, and one in another namespace.
    let mut correlated = seed_job_body();
    correlated["id"] = json!("5a3e0a8e-6f0b-4d7c-9d55-0c8e1d2f3a4b");
    correlated["correlation_id"] = json!("release-123");
    let (status, body) = app.post("/v1/jobs", correlated).await;
    assert_eq!(status, 200, "{body}");
    let mut other = seed_job_body();
    other["id"] = json!("7b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d");
    other["namespace"] = json!("com.shipyard.sms");
    let (status, body) = app.post("/v1/jobs", other).await;
    assert_eq!(status, 200, "{body}");

    let (status, page) = app
        .get("/v1/jobs/?namespace=com.shipyard.email&type=send&correllation_id=release-123")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_page_shape(&page, "jobs");
    assert_eq!(page["page"], 1);
    assert_eq!(page["page_size"], 25);
    assert_eq!(page["total_pages"], 1);
    assert_eq!(page["total_items"], 1);
    assert_eq!(page["sort"], "start_time");
    assert_eq!(page["order"], "asc");
    let jobs = page["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1, "{page}");
    assert_job_shape(&jobs[0]);
    assert_eq!(jobs[0]["id"], "5a3e0a8e-6f0b-4d7c-9d55-0c8e1d2f3a4b");
    assert_eq!(jobs[0]["correlation_id"], "release-123");

    // The seed's template with the correlation left empty filters by the other two only.
    let (status, page) = app
        .get("/v1/jobs/?namespace=com.shipyard.email&type=send&correllation_id=")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_page_shape(&page, "jobs");
    assert_eq!(page["total_items"], 2, "{page}");
    for job in page["jobs"].as_array().expect("jobs") {
        assert_job_shape(job);
        assert_eq!(job["namespace"], "com.shipyard.email");
    }
}

#[tokio::test]
async fn adding_the_seed_task_returns_it_in_the_documented_shape() {
    let app = TestApp::spawn().await;
    post_seed_job(&app).await;

    let (status, body) = app
        .post(&format!("/v1/jobs/{SEED_ID}/tasks"), seed_task_body())
        .await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["task"], "the response is {{\"task\": ...}}: {body}");
    let task = &body["task"];
    assert_task_shape(task);
    assert_eq!(task["id"], SEED_ID);
    assert_eq!(task["job_id"], SEED_ID);
    assert_eq!(task["type"], "send");
    assert_eq!(task["namespace"], "com.shipyard.email");
    assert_eq!(task["status"], "pending");
    assert_eq!(task["end_time"], Value::Null);
    assert_eq!(task["attempt"], 1);
    assert_eq!(task["progress"], Value::Null);
    assert_eq!(task["error"], Value::Null);
    assert_eq!(task["meta"], seed_task_body()["meta"]);

    let (_, job) = app.get(&format!("/v1/jobs/{SEED_ID}")).await;
    assert_eq!(job["job"]["tasks"]["total"], 1, "{job}");
    assert_eq!(job["job"]["tasks"]["pending"], 1, "{job}");
}

#[tokio::test]
async fn getting_the_seed_task_by_id_returns_what_was_posted() {
    let app = TestApp::spawn().await;
    post_seed_job(&app).await;
    let posted = post_seed_task(&app).await;

    let (status, body) = app
        .get(&format!("/v1/jobs/{SEED_ID}/tasks/{SEED_ID}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["task"], "the response is {{\"task\": ...}}: {body}");
    assert_task_shape(&body["task"]);
    assert_eq!(body["task"], posted);
}

#[tokio::test]
async fn listing_the_seed_jobs_tasks_by_namespace_and_type_finds_the_task() {
    let app = TestApp::spawn().await;
    post_seed_job(&app).await;
    post_seed_task(&app).await;
    // Two more tasks that the filters must leave out.
    for (task_type, namespace) in [
        ("render", "com.shipyard.email"),
        ("send", "com.shipyard.sms"),
    ] {
        let (status, body) = app
            .post(
                &format!("/v1/jobs/{SEED_ID}/tasks"),
                json!({"type": task_type, "namespace": namespace}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    let (status, page) = app
        .get(&format!(
            "/v1/jobs/{SEED_ID}/tasks?namespace=com.shipyard.email&type=send"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_page_shape(&page, "tasks");
    assert_eq!(page["page"], 1);
    assert_eq!(page["page_size"], 25);
    assert_eq!(page["total_pages"], 1);
    assert_eq!(page["total_items"], 1);
    assert_eq!(page["sort"], "start_time");
    assert_eq!(page["order"], "asc");
    let tasks = page["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 1, "{page}");
    assert_task_shape(&tasks[0]);
    assert_eq!(tasks[0]["id"], SEED_ID);

    // Without filters, all three; with the seed's trailing slash, the same.
    let (status, page) = app.get(&format!("/v1/jobs/{SEED_ID}/tasks/")).await;
    assert_eq!(status, 200, "{page}");
    assert_page_shape(&page, "tasks");
    assert_eq!(page["total_items"], 3, "{page}");
    for task in page["tasks"].as_array().expect("tasks") {
        assert_task_shape(task);
    }
}
