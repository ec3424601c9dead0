//! Timeouts end to end: the real binary's sweeper fails a task that stops reporting, with
//! reason `timed_out`, and leaves one that heartbeats alone; jobs take `timeout_seconds`.

use crate::helpers::{TestApp, assert_problem, job_request, task_request};
use portauthority_core::api::{CreateTaskRequest, EventKind, HeartbeatRequest, Task};
use portauthority_core::{JobId, Status, TaskId};
use portauthority_testkit::server::Server;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a test waits for the sweeper (its deadline is 1 s, its interval 500 ms).
const WITHIN: Duration = Duration::from_secs(10);

fn timed_task() -> CreateTaskRequest {
    CreateTaskRequest {
        timeout_seconds: Some(1),
        ..task_request("step")
    }
}

/// Polls the task until it leaves `in_progress` or `WITHIN` passes; returns it.
async fn poll_until_ended(client: &portauthority_client::Client, job: JobId, task: TaskId) -> Task {
    let until = Instant::now() + WITHIN;
    loop {
        let t = client.get_task(job, task).await.expect("get task");
        if t.status != Status::InProgress || Instant::now() > until {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_without_heartbeats_times_out_while_one_that_heartbeats_stays_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("timeouts.db").display());
    let server = Server::start(crate::portauthority(), &url, dir.path(), "sweeper", None).await;
    let client = server.client();
    let job = client
        .create_job(&job_request("com.shipyard.timeouts", "build"))
        .await
        .expect("job");
    let tasks = client
        .add_tasks(job.id, vec![timed_task(), timed_task()])
        .await
        .expect("tasks");
    let (silent, beating) = (tasks[0].id, tasks[1].id);
    let started = Instant::now();
    for t in [silent, beating] {
        client
            .set_task(job.id, t, Status::InProgress)
            .await
            .expect("start");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeats = {
        let (client, stop) = (server.client(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                client
                    .heartbeat(job.id, beating, &HeartbeatRequest::default())
                    .await
                    .expect("heartbeat");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };

    let t = poll_until_ended(&client, job.id, silent).await;
    assert_eq!(
        t.status,
        Status::Failed,
        "the silent task is failed within {WITHIN:?}; the server's log:\n{}",
        server.log_text()
    );
    let events = client
        .task_history(job.id, silent, 0, 100)
        .await
        .expect("history")
        .events;
    let last = events.last().expect("events");
    assert_eq!(last.kind, EventKind::StatusChanged);
    assert_eq!(
        (last.from, last.to, last.reason.as_deref()),
        (
            Some(Status::InProgress),
            Some(Status::Failed),
            Some("timed_out")
        )
    );
    // Several timeouts' worth of heartbeats, then the heartbeating task is still running.
    let alive_for = Duration::from_secs(3);
    if let Some(rest) = alive_for.checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let b = client.get_task(job.id, beating).await.expect("get task");
    stop.store(true, Ordering::SeqCst);
    heartbeats.await.expect("the heartbeats all succeeded");
    assert_eq!(b.status, Status::InProgress, "heartbeats keep it alive");
    let job = client.get_job(job.id).await.expect("job");
    assert_eq!((job.tasks.failed, job.tasks.in_progress), (1, 1));

    // Once the heartbeats stop, it times out too, and the job with it.
    let b = poll_until_ended(&client, job.id, beating).await;
    assert_eq!(b.status, Status::Failed);
    assert_eq!(
        client.get_job(job.id).await.expect("job").status,
        Status::Failed
    );
}

#[tokio::test]
async fn a_job_takes_timeout_seconds_within_bounds() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post(
            "/v1/jobs",
            json!({"type": "build", "namespace": "com.shipyard", "timeout_seconds": 3600}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["job"]["timeout_seconds"], 3600);
    let (status, body) = app
        .post(
            "/v1/jobs",
            json!({"type": "build", "namespace": "com.shipyard"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["job"]["timeout_seconds"], serde_json::Value::Null);
    for bad in [json!(0), json!(-1), json!(31_536_001)] {
        let (status, body) = app
            .post(
                "/v1/jobs",
                json!({"type": "build", "namespace": "com.shipyard", "timeout_seconds": bad}),
            )
            .await;
        assert_problem(status, &body, 422);
        assert_eq!(body["errors"][0]["field"], "timeout_seconds", "{body}");
    }
}
