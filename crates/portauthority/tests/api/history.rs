//! History over HTTP (what each change records, task scoping, paging, notes), and the
//! cross-job batch of task status updates (`POST /v1/tasks/status`).

use crate::helpers::{TestApp, assert_problem, task_request};
use portauthority_core::api::{
    HeartbeatRequest, HistoryEvent, NoteRequest, Progress, SetTaskStatusRequest,
    TaskStatusUpdateItem,
};
use portauthority_core::{Counters, EventKind, JobId, Status, TaskId};
use serde_json::{Value, json};

use Status::{Cancelled, Completed, Failed, InProgress, Pending};

// ---------------------------------------------------------------------------------------
// Harness

async fn job_events(app: &TestApp, job: JobId) -> Vec<HistoryEvent> {
    let page = app.client.job_history(job, 0, 1000).await.expect("history");
    assert_eq!(page.next_after, None);
    assert_seq_increasing(&page.events);
    page.events
}

async fn task_events(app: &TestApp, job: JobId, task: TaskId) -> Vec<HistoryEvent> {
    let page = app
        .client
        .task_history(job, task, 0, 1000)
        .await
        .expect("history");
    assert_eq!(page.next_after, None);
    assert_seq_increasing(&page.events);
    page.events
}

fn assert_seq_increasing(events: &[HistoryEvent]) {
    for w in events.windows(2) {
        assert!(
            w[0].seq < w[1].seq,
            "seq must strictly increase: {} then {}",
            w[0].seq,
            w[1].seq
        );
    }
}

/// A status change event of `task` (None: of the job itself) from `from` to `to`.
fn is_change(e: &HistoryEvent, task: Option<TaskId>, from: Status, to: Status) -> bool {
    e.kind == EventKind::StatusChanged
        && e.task_id == task
        && e.from == Some(from)
        && e.to == Some(to)
}

fn status_request(status: Status, reason: Option<&str>) -> SetTaskStatusRequest {
    SetTaskStatusRequest {
        status,
        reason: reason.map(str::to_owned),
        error: None,
        progress: None,
    }
}

async fn assert_counters_consistent(app: &TestApp, job: JobId) {
    let stored = app.client.get_job(job).await.expect("job").tasks;
    let tasks = app.client.all_tasks(job).await.expect("tasks");
    assert_eq!(stored, Counters::recount(tasks.iter().map(|t| t.status)));
}

// ---------------------------------------------------------------------------------------
// What a job's history holds

#[tokio::test]
async fn a_new_job_has_exactly_one_created_event() {
    let app = TestApp::spawn().await;
    let (job, _) = app.job_with_tasks("com.shipyard.history", 0).await;
    let events = job_events(&app, job.id).await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.kind, EventKind::Created);
    assert_eq!(e.job_id, job.id);
    assert_eq!(e.task_id, None);
    assert!(e.from.is_none() && e.to.is_none());
}

#[tokio::test]
async fn the_job_history_records_every_change_in_order() {
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.shipyard.history", 2).await;
    let (a, b) = (tasks[0].id, tasks[1].id);
    app.client
        .set_task_status(job.id, a, &status_request(InProgress, Some("picked up")))
        .await
        .expect("started");
    app.client
        .heartbeat(
            job.id,
            a,
            &HeartbeatRequest {
                progress: Some(Progress {
                    current: 4,
                    total: Some(9),
                }),
                message: Some("chugging".into()),
            },
        )
        .await
        .expect("heartbeat");
    app.client
        .set_task_status(job.id, a, &status_request(Completed, None))
        .await
        .expect("completed");
    app.client
        .set_task_status(job.id, b, &status_request(Failed, Some("boom")))
        .await
        .expect("failed");
    app.client
        .add_note(
            job.id,
            None,
            &NoteRequest {
                message: "looked into it".into(),
                data: Some(json!({"ticket": "OPS-1", "severity": 2})),
            },
        )
        .await
        .expect("note");

    let events = job_events(&app, job.id).await;
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    use EventKind::{Created, Heartbeat, Note, StatusChanged, TaskAdded};
    assert_eq!(
        kinds,
        vec![
            Created,
            TaskAdded,
            TaskAdded,
            StatusChanged, // a: pending -> in_progress
            StatusChanged, // job: pending -> in_progress
            Heartbeat,
            StatusChanged, // a: in_progress -> completed
            StatusChanged, // b: pending -> failed
            StatusChanged, // job: in_progress -> failed
            Note,
        ],
        "{events:#?}"
    );
    assert!(events.iter().all(|e| e.job_id == job.id));
    assert_eq!(events[1].task_id, Some(a));
    assert_eq!(events[2].task_id, Some(b));

    assert!(is_change(&events[3], Some(a), Pending, InProgress));
    assert_eq!(events[3].reason.as_deref(), Some("picked up"));
    assert!(is_change(&events[4], None, Pending, InProgress));

    assert_eq!(events[5].task_id, Some(a));
    assert_eq!(
        events[5].progress,
        Some(Progress {
            current: 4,
            total: Some(9)
        })
    );
    assert_eq!(events[5].message.as_deref(), Some("chugging"));

    assert!(is_change(&events[6], Some(a), InProgress, Completed));
    assert!(is_change(&events[7], Some(b), Pending, Failed));
    assert_eq!(events[7].reason.as_deref(), Some("boom"));
    assert!(is_change(&events[8], None, InProgress, Failed));

    let note = &events[9];
    assert_eq!(note.task_id, None);
    assert_eq!(note.message.as_deref(), Some("looked into it"));
    let data: Value =
        serde_json::from_str(note.data.as_ref().expect("note data").get()).expect("json");
    assert_eq!(data, json!({"ticket": "OPS-1", "severity": 2}));
}

#[tokio::test]
async fn the_wire_shape_of_a_status_event_has_from_to_and_reason() {
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.shipyard.history", 1).await;
    app.client
        .set_task_status(
            job.id,
            tasks[0].id,
            &status_request(Cancelled, Some("nope")),
        )
        .await
        .expect("cancelled");
    let (code, body) = app.get(&format!("/v1/jobs/{}/history", job.id)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body["next_after"].is_null());
    let events = body["events"].as_array().expect("events");
    let task_change = events
        .iter()
        .find(|e| e["kind"] == "status_changed" && e["task_id"] == json!(tasks[0].id))
        .expect("task status event");
    assert_eq!(task_change["from"], "pending");
    assert_eq!(task_change["to"], "cancelled");
    assert_eq!(task_change["reason"], "nope");
    assert_eq!(task_change["job_id"], json!(job.id));
    assert!(task_change["seq"].is_i64());
    assert!(
        task_change["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let job_change = events
        .iter()
        .find(|e| e["kind"] == "status_changed" && e["task_id"].is_null())
        .expect("job status event");
    assert_eq!(job_change["from"], "pending");
    assert_eq!(job_change["to"], "cancelled");
    let created = &events[0];
    assert_eq!(created["kind"], "created");
    assert!(created["task_id"].is_null());
}

#[tokio::test]
async fn an_explicit_job_status_records_the_cascade_and_the_job_change() {
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.shipyard.history", 3).await;
    app.set(job.id, tasks[0].id, InProgress).await;
    app.set(job.id, tasks[2].id, Completed).await;
    let before = job_events(&app, job.id).await.len();
    app.client
        .set_job_status(job.id, Failed, Some("operator said so"))
        .await
        .expect("failed");
    let events = job_events(&app, job.id).await;
    let new = &events[before..];
    assert_eq!(
        new.len(),
        3,
        "two task cancellations and the job change: {new:#?}"
    );
    assert!(
        new.iter()
            .any(|e| is_change(e, Some(tasks[0].id), InProgress, Cancelled))
    );
    assert!(
        new.iter()
            .any(|e| is_change(e, Some(tasks[1].id), Pending, Cancelled))
    );
    let job_change = new.last().expect("job event last");
    assert!(is_change(job_change, None, InProgress, Failed));
    assert_eq!(job_change.reason.as_deref(), Some("operator said so"));
}

#[tokio::test]
async fn a_retry_records_the_task_change_and_the_job_reopening() {
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.shipyard.history", 1).await;
    let t = tasks[0].id;
    app.set(job.id, t, Failed).await;
    let before = job_events(&app, job.id).await.len();
    app.set(job.id, t, InProgress).await;
    let events = job_events(&app, job.id).await;
    let new = &events[before..];
    assert_eq!(new.len(), 2, "{new:#?}");
    assert!(is_change(&new[0], Some(t), Failed, InProgress));
    assert!(is_change(&new[1], None, Failed, InProgress));
}

#[tokio::test]
async fn a_no_op_adds_no_event() {
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.shipyard.history", 2).await;
    app.set(job.id, tasks[0].id, Completed).await;
    let before = job_events(&app, job.id).await;
    app.set(job.id, tasks[0].id, Completed).await;
    let after = job_events(&app, job.id).await;
    assert_eq!(after.len(), before.len());
}

#[tokio::test]
async fn tasks_created_with_their_job_are_recorded_after_the_job() {
    let app = TestApp::spawn().await;
    let mut req = crate::helpers::job_request("com.shipyard.history", "build");
    req.tasks = Some(vec![task_request("a"), task_request("b")]);
    let job = app.client.create_job(&req).await.expect("job");
    let tasks = app.client.all_tasks(job.id).await.expect("tasks");
    let events = job_events(&app, job.id).await;
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::Created,
            EventKind::TaskAdded,
            EventKind::TaskAdded
        ]
    );
    for t in &tasks {
        let own = task_events(&app, job.id, t.id).await;
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].kind, EventKind::TaskAdded);
        assert_eq!(own[0].task_id, Some(t.id));
    }
}

// ---------------------------------------------------------------------------------------
// Task history

#[tokio::test]
async fn a_task_history_starts_with_task_added_and_holds_only_its_own_events() {
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.shipyard.history", 2).await;
    let (a, b) = (tasks[0].id, tasks[1].id);
    app.set(job.id, a, InProgress).await;
    app.set(job.id, b, InProgress).await;
    app.client
        .heartbeat(job.id, b, &HeartbeatRequest::default())
        .await
        .expect("heartbeat");
    app.client
        .add_note(
            job.id,
            Some(a),
            &NoteRequest {
                message: "about a".into(),
                data: None,
            },
        )
        .await
        .expect("task note");
    app.client
        .add_note(
            job.id,
            None,
            &NoteRequest {
                message: "about the job".into(),
                data: None,
            },
        )
        .await
        .expect("job note");
    app.set(job.id, a, Completed).await;
    app.set(job.id, b, Completed).await;

    let of_a = task_events(&app, job.id, a).await;
    assert_eq!(of_a[0].kind, EventKind::TaskAdded);
    assert!(of_a.iter().all(|e| e.task_id == Some(a)), "{of_a:#?}");
    let kinds: Vec<EventKind> = of_a.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::TaskAdded,
            EventKind::StatusChanged,
            EventKind::Note,
            EventKind::StatusChanged
        ]
    );
    assert_eq!(of_a[2].message.as_deref(), Some("about a"));

    let of_b = task_events(&app, job.id, b).await;
    assert_eq!(of_b[0].kind, EventKind::TaskAdded);
    assert!(of_b.iter().all(|e| e.task_id == Some(b)));
    assert_eq!(of_b.len(), 4, "added, started, heartbeat, completed");

    // The job's history holds all of these, plus its own events.
    let all = job_events(&app, job.id).await;
    for e in of_a.iter().chain(&of_b) {
        assert!(all.iter().any(|x| x.seq == e.seq));
    }
    assert!(all.iter().any(|e| e.kind == EventKind::Created));
    assert!(
        all.iter()
            .any(|e| e.task_id.is_none() && e.message.as_deref() == Some("about the job"))
    );
}

#[tokio::test]
async fn sequence_numbers_increase_across_jobs() {
    let app = TestApp::spawn().await;
    let (j1, t1) = app.job_with_tasks("com.shipyard.history", 1).await;
    let (j2, t2) = app.job_with_tasks("com.shipyard.history", 1).await;
    app.set(j1.id, t1[0].id, InProgress).await;
    app.set(j2.id, t2[0].id, InProgress).await;
    let e1 = job_events(&app, j1.id).await;
    let e2 = job_events(&app, j2.id).await;
    // Interleaved writes: job 2 was created after job 1's events so far, and job 1's
    // task started after job 2 was created.
    assert!(e2[0].seq > e1[1].seq);
    assert!(e1[2].seq > e2[0].seq);
    let mut all: Vec<i64> = e1.iter().chain(&e2).map(|e| e.seq).collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "seq is unique per installation");
}

// ---------------------------------------------------------------------------------------
// Paging

#[tokio::test]
async fn history_pages_with_after_and_size_and_ends_with_a_null_next_after() {
    let app = TestApp::spawn().await;
    let (job, _) = app.job_with_tasks("com.shipyard.history", 6).await;
    // created + 6 task_added + notes
    for i in 0..5 {
        app.client
            .add_note(
                job.id,
                None,
                &NoteRequest {
                    message: format!("note {i}"),
                    data: None,
                },
            )
            .await
            .expect("note");
    }
    let all = job_events(&app, job.id).await;
    assert_eq!(all.len(), 12);

    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let page = app
            .client
            .job_history(job.id, after, 5)
            .await
            .expect("page");
        assert!(page.events.len() <= 5);
        pages.push(page.events.clone());
        match page.next_after {
            Some(n) => {
                assert_eq!(n, page.events.last().expect("non-empty").seq);
                after = n;
            }
            None => break,
        }
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![5, 5, 2]);
    let seqs: Vec<i64> = pages.iter().flatten().map(|e| e.seq).collect();
    assert_eq!(seqs, all.iter().map(|e| e.seq).collect::<Vec<_>>());

    // An exact fit: the page that reaches the end says so.
    let page = app
        .client
        .job_history(job.id, all[5].seq, 6)
        .await
        .expect("page");
    assert_eq!(page.events.len(), 6);
    assert_eq!(page.next_after, None);
    // Past the end: empty, and null.
    let page = app
        .client
        .job_history(job.id, all[11].seq, 5)
        .await
        .expect("page");
    assert!(page.events.is_empty());
    assert_eq!(page.next_after, None);
}

#[tokio::test]
async fn history_uses_a_default_page_size_of_100() {
    let app = TestApp::spawn().await;
    let mut req = crate::helpers::job_request("com.shipyard.history", "build");
    req.tasks = Some((0..120).map(|_| task_request("step")).collect());
    let job = app.client.create_job(&req).await.expect("job");
    let (code, body) = app.get(&format!("/v1/jobs/{}/history", job.id)).await;
    assert_eq!(code, 200, "{body}");
    let events = body["events"].as_array().expect("events");
    assert_eq!(events.len(), 100);
    assert_eq!(body["next_after"], events[99]["seq"]);
    let (code, body) = app
        .get(&format!(
            "/v1/jobs/{}/history?after={}",
            job.id, events[99]["seq"]
        ))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["events"].as_array().expect("events").len(), 21);
    assert!(body["next_after"].is_null());
}

#[tokio::test]
async fn task_history_pages_too() {
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.shipyard.history", 1).await;
    let t = tasks[0].id;
    app.set(job.id, t, InProgress).await;
    for _ in 0..3 {
        app.client
            .heartbeat(job.id, t, &HeartbeatRequest::default())
            .await
            .expect("beat");
    }
    let first = app
        .client
        .task_history(job.id, t, 0, 2)
        .await
        .expect("page");
    assert_eq!(first.events.len(), 2);
    assert_eq!(first.events[0].kind, EventKind::TaskAdded);
    let after = first.next_after.expect("more to read");
    let rest = app
        .client
        .task_history(job.id, t, after, 10)
        .await
        .expect("page");
    assert_eq!(rest.events.len(), 3);
    assert_eq!(rest.next_after, None);
    assert!(rest.events.iter().all(|e| e.kind == EventKind::Heartbeat));
}

// ---------------------------------------------------------------------------------------
// Notes

#[tokio::test]
async fn posting_a_note_returns_the_event() {
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.shipyard.history", 1).await;
    let (code, body) = app
        .post(
            &format!("/v1/jobs/{}/history", job.id),
            json!({"message": "deploy window opened", "data": {"by": "alice"}}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let event = &body["event"];
    assert_eq!(event["kind"], "note");
    assert_eq!(event["job_id"], json!(job.id));
    assert!(event["task_id"].is_null());
    assert_eq!(event["message"], "deploy window opened");
    assert_eq!(event["data"], json!({"by": "alice"}));
    let seq = event["seq"].as_i64().expect("seq");
    let events = job_events(&app, job.id).await;
    let stored = events.last().expect("last");
    assert_eq!(stored.seq, seq);
    assert_eq!(stored.kind, EventKind::Note);

    let (code, body) = app
        .post(
            &format!("/v1/jobs/{}/tasks/{}/history", job.id, tasks[0].id),
            json!({"message": "retrying soon"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["event"]["task_id"], json!(tasks[0].id));
    assert!(body["event"]["seq"].as_i64().expect("seq") > seq);
    assert!(body["event"].get("data").is_none_or(Value::is_null));
}

#[tokio::test]
async fn a_note_on_an_unknown_job_or_task_is_a_404() {
    let app = TestApp::spawn().await;
    let (job, _) = app.job_with_tasks("com.shipyard.history", 1).await;
    let (code, body) = app
        .post(
            &format!(
                "/v1/jobs/{}/history",
                JobId::from_uuid(uuid::Uuid::now_v7())
            ),
            json!({"message": "hello"}),
        )
        .await;
    assert_problem(code, &body, 404);
    let (code, body) = app
        .post(
            &format!(
                "/v1/jobs/{}/tasks/{}/history",
                job.id,
                TaskId::from_uuid(uuid::Uuid::now_v7())
            ),
            json!({"message": "hello"}),
        )
        .await;
    assert_problem(code, &body, 404);
    assert_eq!(job_events(&app, job.id).await.len(), 2);
}

#[tokio::test]
async fn a_note_with_an_empty_message_is_a_422() {
    let app = TestApp::spawn().await;
    let (job, _) = app.job_with_tasks("com.shipyard.history", 0).await;
    let (code, body) = app
        .post(
            &format!("/v1/jobs/{}/history", job.id),
            json!({"message": ""}),
        )
        .await;
    assert_problem(code, &body, 422);
    assert_eq!(body["errors"][0]["field"], "message");
    let (code, body) = app
        .post(&format!("/v1/jobs/{}/history", job.id), json!({"data": {}}))
        .await;
    assert_problem(code, &body, 422);
    let (code, body) = app
        .post(
            &format!("/v1/jobs/{}/history", job.id),
            json!({"message": "m", "data": "not an object"}),
        )
        .await;
    assert_problem(code, &body, 422);
    assert_eq!(body["errors"][0]["field"], "data");
    assert_eq!(
        job_events(&app, job.id).await.len(),
        1,
        "nothing was appended"
    );
}

// ---------------------------------------------------------------------------------------
// POST /v1/tasks/status

fn item(job: impl ToString, task: impl ToString, status: &str) -> TaskStatusUpdateItem {
    TaskStatusUpdateItem {
        job_id: job.to_string(),
        task_id: task.to_string(),
        status: status.into(),
        reason: None,
        error: None,
        progress: None,
    }
}

#[tokio::test]
async fn a_status_batch_answers_each_item_in_order_and_applies_only_the_good_ones() {
    let app = TestApp::spawn().await;
    let (j1, t1) = app.job_with_tasks("com.shipyard.batch", 3).await;
    let (j2, t2) = app.job_with_tasks("com.shipyard.batch", 2).await;
    app.set(j1.id, t1[2].id, Completed).await;
    let before_j2 = job_events(&app, j2.id).await.len();

    let mut with_progress = item(j2.id, t2[0].id, "inprogress");
    with_progress.progress = Some(Progress {
        current: 2,
        total: Some(4),
    });
    let updates = vec![
        item(j1.id, t1[0].id, "in_progress"), // 200
        item(j1.id, TaskId::from_uuid(uuid::Uuid::now_v7()), "completed"), // 404 unknown task
        item(j1.id, t1[2].id, "pending"),     // 409 completed is final
        item("not-a-uuid", t1[1].id, "completed"), // 422 bad job id
        item(j1.id, "nope", "completed"),     // 422 bad task id
        item(j1.id, t1[1].id, "finished"),    // 422 unknown status
        with_progress,                        // 200
        item(j1.id, t2[1].id, "completed"),   // 404: task of another job
        item(JobId::from_uuid(uuid::Uuid::now_v7()), t1[1].id, "failed"), // 404 unknown job
        item(j1.id, t1[1].id, "failed"),      // 200
        item(j1.id, t1[2].id, "completed"),   // 200 no-op
    ];
    let expected = [200, 404, 409, 422, 422, 422, 200, 404, 404, 200, 200];
    let sent: Vec<(String, String)> = updates
        .iter()
        .map(|u| (u.job_id.clone(), u.task_id.clone()))
        .collect();
    let res = app.client.update_tasks(updates).await.expect("batch");
    assert_eq!(res.results.len(), expected.len());
    for (i, (r, want)) in res.results.iter().zip(expected).enumerate() {
        assert_eq!(r.status, want, "item {i}: {r:?}");
        assert_eq!(
            (r.job_id.clone(), r.task_id.clone()),
            sent[i],
            "item {i} order"
        );
        if want == 200 {
            assert!(r.task.is_some() && r.error.is_none(), "item {i}: {r:?}");
        } else {
            let p = r.error.as_ref().expect("problem");
            assert_eq!(p.status, want);
            assert!(!p.detail.is_empty());
            assert!(r.task.is_none());
        }
    }
    assert_eq!(
        res.results[5]
            .error
            .as_ref()
            .and_then(|p| p.errors.as_ref())
            .map(|e| e[0].field.as_str()),
        Some("status")
    );
    assert_eq!(
        res.results[3]
            .error
            .as_ref()
            .and_then(|p| p.errors.as_ref())
            .map(|e| e[0].field.as_str()),
        Some("job_id")
    );
    let t = res.results[6].task.as_ref().expect("task");
    assert_eq!(t.status, InProgress);
    assert_eq!(
        t.progress,
        Some(Progress {
            current: 2,
            total: Some(4)
        })
    );

    // The good items are applied, the bad ones not.
    let get = |j: JobId, t: TaskId| {
        let app = &app;
        async move { app.client.get_task(j, t).await.expect("task").status }
    };
    assert_eq!(get(j1.id, t1[0].id).await, InProgress);
    assert_eq!(get(j1.id, t1[1].id).await, Failed);
    assert_eq!(get(j1.id, t1[2].id).await, Completed);
    assert_eq!(get(j2.id, t2[0].id).await, InProgress);
    assert_eq!(get(j2.id, t2[1].id).await, Pending);
    let job1 = app.client.get_job(j1.id).await.expect("job");
    assert_eq!(job1.status, InProgress);
    assert_eq!(
        (
            job1.tasks.in_progress,
            job1.tasks.failed,
            job1.tasks.completed
        ),
        (1, 1, 1)
    );
    assert_counters_consistent(&app, j1.id).await;
    assert_counters_consistent(&app, j2.id).await;
    // Job 2 got its task change and its derived job change, nothing else.
    let new = &job_events(&app, j2.id).await[before_j2..];
    assert_eq!(new.len(), 2, "{new:#?}");
    assert!(is_change(&new[0], Some(t2[0].id), Pending, InProgress));
    assert!(is_change(&new[1], None, Pending, InProgress));
}

#[tokio::test]
async fn a_status_batch_applies_items_for_the_same_task_in_order() {
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.shipyard.batch", 1).await;
    let t = tasks[0].id;
    let res = app
        .client
        .update_tasks(vec![
            item(job.id, t, "in_progress"),
            item(job.id, t, "failed"),
            item(job.id, t, "completed"), // 409: failed needs a retry first
            item(job.id, t, "pending"),   // retry
            item(job.id, t, "completed"),
        ])
        .await
        .expect("batch");
    let statuses: Vec<u16> = res.results.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 200, 409, 200, 200]);
    let task = app.client.get_task(job.id, t).await.expect("task");
    assert_eq!((task.status, task.attempt), (Completed, 2));
    let job = app.client.get_job(job.id).await.expect("job");
    assert_eq!(job.status, Completed);
    assert_counters_consistent(&app, job.id).await;
}

#[tokio::test]
async fn a_status_batch_of_1001_updates_is_a_422_and_applies_none() {
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.shipyard.batch", 1).await;
    let updates: Vec<Value> = (0..1001)
        .map(|_| json!({"job_id": job.id, "task_id": tasks[0].id, "status": "in_progress"}))
        .collect();
    let (code, body) = app
        .post("/v1/tasks/status", json!({ "updates": updates }))
        .await;
    assert_problem(code, &body, 422);
    assert_eq!(body["errors"][0]["field"], "updates");
    let task = app
        .client
        .get_task(job.id, tasks[0].id)
        .await
        .expect("task");
    assert_eq!(task.status, Pending);
    assert_eq!(job_events(&app, job.id).await.len(), 2);

    // 1000 is the limit, and accepted.
    let updates: Vec<Value> = (0..1000)
        .map(|_| json!({"job_id": job.id, "task_id": tasks[0].id, "status": "in_progress"}))
        .collect();
    let (code, body) = app
        .post("/v1/tasks/status", json!({ "updates": updates }))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["results"].as_array().expect("results").len(), 1000);
}

#[tokio::test]
async fn an_empty_status_batch_answers_with_no_results() {
    let app = TestApp::spawn().await;
    let (code, body) = app.post("/v1/tasks/status", json!({"updates": []})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["results"], json!([]));
}

// ---------------------------------------------------------------------------------------
// Following a job's history while it changes

/// A follower pages `GET /v1/jobs/{id}/history?after=` while 32 writers append status
/// changes, heartbeats and notes to 3 jobs: it misses no event and sees none twice, on
/// either store. (A note that took its sequence outside the job's lock used to commit
/// behind a follower on PostgreSQL.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_paging_history_during_concurrent_writes_misses_no_event() {
    const JOBS: usize = 3;
    const WRITERS: usize = 32;
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut jobs = Vec::new();
    for _ in 0..JOBS {
        jobs.push(app.job_with_tasks("com.example.follow", WRITERS).await);
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut followers = tokio::task::JoinSet::new();
    for (job, _) in &jobs {
        let (app, done, job) = (app.clone(), done.clone(), job.id);
        followers.spawn(async move {
            let (mut seen, mut after) = (Vec::new(), 0);
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page = app
                    .client
                    .job_history(job, after, 50)
                    .await
                    .expect("history");
                if let Some(last) = page.events.last() {
                    after = last.seq;
                }
                let empty = page.events.is_empty();
                seen.extend(page.events.into_iter().map(|e| e.seq));
                if empty && finished {
                    return (job, seen);
                }
            }
        });
    }
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let app = app.clone();
        let mine: Vec<(JobId, TaskId)> = jobs.iter().map(|(j, t)| (j.id, t[w].id)).collect();
        writers.spawn(async move {
            for (job, task) in mine {
                let c = &app.client;
                c.set_task(job, task, InProgress).await.expect("start");
                let note = NoteRequest {
                    message: format!("writer {w}"),
                    data: None,
                };
                c.add_note(job, None, &note).await.expect("note");
                let beat = HeartbeatRequest {
                    progress: Some(Progress {
                        current: 1,
                        total: Some(2),
                    }),
                    message: None,
                };
                c.heartbeat(job, task, &beat).await.expect("heartbeat");
                c.set_task(job, task, Completed).await.expect("complete");
            }
        });
    }
    while let Some(r) = writers.join_next().await {
        r.expect("a writer");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    while let Some(r) = followers.join_next().await {
        let (job, seen) = r.expect("a follower");
        let all: Vec<i64> = job_events(&app, job).await.iter().map(|e| e.seq).collect();
        assert_eq!(
            seen.len(),
            all.len(),
            "job {job}: events seen by the follower"
        );
        assert_eq!(seen, all, "job {job}: every event once, in order");
    }
}
