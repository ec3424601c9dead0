//! The job status roll-up over HTTP: every path of DESIGN.md's rules for deriving a job's
//! status from its tasks, explicit job statuses, retries and task transitions. After each
//! step the stored counters are checked against a recount of the task list.

use crate::helpers::{TestApp, job_request, task_request};
use portauthority_client::Error;
use portauthority_core::api::{HeartbeatRequest, Job, Progress, SetTaskStatusRequest, Task};
use portauthority_core::{Counters, EventKind, JobId, Status, TaskId};
use serde_json::json;

use Status::{Cancelled, Completed, Failed, InProgress, Pending};

// ---------------------------------------------------------------------------------------
// Harness

/// Reads the job, checks its counters against a recount of its tasks, and returns it.
async fn job(app: &TestApp, id: JobId) -> Job {
    let job = app.client.get_job(id).await.expect("job");
    let tasks = app.client.all_tasks(id).await.expect("tasks");
    assert_eq!(
        job.tasks,
        Counters::recount(tasks.iter().map(|t| t.status)),
        "stored counters differ from a recount of the tasks"
    );
    assert_eq!(job.tasks.total, tasks.len() as i64);
    job
}

/// Asserts the job's status, that `end_time` is set exactly when it is terminal, and
/// that its counters match its tasks.
async fn assert_job(app: &TestApp, id: JobId, status: Status) -> Job {
    let job = job(app, id).await;
    assert_eq!(job.status, status, "job status");
    assert_eq!(
        job.end_time.is_some(),
        status.is_terminal(),
        "end_time is set exactly when the job is terminal: {:?}",
        job.end_time
    );
    job
}

/// A job of `n` pending tasks, optionally with `auto_complete: false`.
async fn job_of(app: &TestApp, n: usize, auto_complete: bool) -> (JobId, Vec<TaskId>) {
    let mut req = job_request("com.shipyard.rollup", "build");
    req.auto_complete = Some(auto_complete);
    let job = app.client.create_job(&req).await.expect("job created");
    let tasks = if n == 0 {
        Vec::new()
    } else {
        app.client
            .add_tasks(job.id, (0..n).map(|_| task_request("step")).collect())
            .await
            .expect("tasks added")
    };
    (job.id, tasks.into_iter().map(|t| t.id).collect())
}

fn status_of(err: Error) -> u16 {
    err.status().expect("an HTTP answer").as_u16()
}

async fn set_task_err(app: &TestApp, job: JobId, task: TaskId, status: Status) -> u16 {
    status_of(
        app.client
            .set_task(job, task, status)
            .await
            .expect_err("the change is refused"),
    )
}

async fn set_job_err(app: &TestApp, job: JobId, status: Status) -> u16 {
    status_of(
        app.client
            .set_job_status(job, status, None)
            .await
            .expect_err("the change is refused"),
    )
}

async fn history_len(app: &TestApp, job: JobId) -> usize {
    app.client
        .job_history(job, 0, 1000)
        .await
        .expect("history")
        .events
        .len()
}

async fn task(app: &TestApp, job: JobId, task: TaskId) -> Task {
    app.client.get_task(job, task).await.expect("task")
}

// ---------------------------------------------------------------------------------------
// Derived status

#[tokio::test]
async fn a_job_without_tasks_is_pending() {
    let app = TestApp::spawn().await;
    let (id, _) = job_of(&app, 0, true).await;
    let job = assert_job(&app, id, Pending).await;
    assert_eq!(job.tasks, Counters::default());
}

#[tokio::test]
async fn a_job_whose_tasks_are_all_pending_is_pending() {
    let app = TestApp::spawn().await;
    let (id, _) = job_of(&app, 3, true).await;
    let job = assert_job(&app, id, Pending).await;
    assert_eq!(job.tasks.pending, 3);
}

#[tokio::test]
async fn a_job_created_with_tasks_counts_them_and_is_pending() {
    let app = TestApp::spawn().await;
    let mut req = job_request("com.shipyard.rollup", "build");
    req.tasks = Some(vec![task_request("a"), task_request("b")]);
    let created = app.client.create_job(&req).await.expect("created");
    assert_eq!(created.tasks.total, 2);
    assert_eq!(created.tasks.pending, 2);
    assert_job(&app, created.id, Pending).await;
}

#[tokio::test]
async fn one_task_in_progress_makes_the_job_in_progress() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 3, true).await;
    app.set(id, t[0], InProgress).await;
    let job = assert_job(&app, id, InProgress).await;
    assert_eq!(job.tasks.in_progress, 1);
    assert_eq!(job.tasks.pending, 2);
}

#[tokio::test]
async fn a_mix_of_terminal_and_pending_tasks_is_in_progress() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 4, true).await;
    app.set(id, t[0], Completed).await;
    assert_job(&app, id, InProgress).await;
    app.set(id, t[1], Failed).await;
    assert_job(&app, id, InProgress).await;
    app.set(id, t[2], Cancelled).await;
    let job = assert_job(&app, id, InProgress).await;
    assert_eq!(
        (job.tasks.completed, job.tasks.failed, job.tasks.cancelled),
        (1, 1, 1)
    );
    assert_eq!(job.tasks.pending, 1);
}

#[tokio::test]
async fn all_tasks_completed_completes_the_job_with_an_end_time() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 3, true).await;
    app.set(id, t[0], InProgress).await;
    app.set(id, t[0], Completed).await;
    app.set(id, t[1], Completed).await;
    assert_job(&app, id, InProgress).await;
    app.set(id, t[2], Completed).await;
    let job = assert_job(&app, id, Completed).await;
    assert_eq!(job.tasks.completed, 3);
    assert!(job.end_time.expect("end_time") >= job.start_time);
}

#[tokio::test]
async fn any_failed_task_among_terminal_ones_fails_the_job() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 3, true).await;
    app.set(id, t[0], Completed).await;
    app.set(id, t[1], Failed).await;
    assert_job(&app, id, InProgress).await;
    app.set(id, t[2], Cancelled).await;
    assert_job(&app, id, Failed).await;
}

#[tokio::test]
async fn all_tasks_cancelled_cancels_the_job() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 2, true).await;
    app.set(id, t[0], Cancelled).await;
    assert_job(&app, id, InProgress).await;
    app.set(id, t[1], Cancelled).await;
    assert_job(&app, id, Cancelled).await;
}

#[tokio::test]
async fn completed_and_cancelled_tasks_complete_the_job() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 2, true).await;
    app.set(id, t[0], Cancelled).await;
    app.set(id, t[1], Completed).await;
    assert_job(&app, id, Completed).await;
}

// ---------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn retrying_a_failed_task_as_pending_adds_an_attempt_and_reopens_the_job() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 2, true).await;
    app.set(id, t[0], Completed).await;
    let failed = app
        .client
        .set_task_status(
            id,
            t[1],
            &SetTaskStatusRequest {
                status: Failed,
                reason: None,
                error: Some("disk full".into()),
                progress: None,
            },
        )
        .await
        .expect("failed");
    assert_eq!(failed.attempt, 1);
    assert_eq!(failed.error.as_deref(), Some("disk full"));
    assert!(failed.end_time.is_some());
    assert_job(&app, id, Failed).await;

    let retried = app.set(id, t[1], Pending).await;
    assert_eq!(retried.attempt, 2);
    assert_eq!(retried.status, Pending);
    assert_eq!(retried.end_time, None, "a retried task is open again");
    assert_eq!(retried.error, None, "a retry clears the previous error");
    assert_eq!(task(&app, id, t[1]).await.attempt, 2);
    // One completed, one pending: not all pending, not all terminal.
    assert_job(&app, id, InProgress).await;

    app.set(id, t[1], Completed).await;
    assert_job(&app, id, Completed).await;
}

#[tokio::test]
async fn retrying_a_failed_task_as_in_progress_adds_an_attempt_and_reopens_the_job() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 1, true).await;
    app.set(id, t[0], Failed).await;
    assert_job(&app, id, Failed).await;
    let retried = app.set(id, t[0], InProgress).await;
    assert_eq!(retried.attempt, 2);
    assert_job(&app, id, InProgress).await;
    app.set(id, t[0], Failed).await;
    assert_job(&app, id, Failed).await;
    let again = app.set(id, t[0], InProgress).await;
    assert_eq!(again.attempt, 3, "each retry adds one");
    assert_job(&app, id, InProgress).await;
}

#[tokio::test]
async fn retrying_the_only_failed_task_of_a_job_of_one_task_makes_it_pending() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 1, true).await;
    app.set(id, t[0], Failed).await;
    assert_job(&app, id, Failed).await;
    app.set(id, t[0], Pending).await;
    assert_job(&app, id, Pending).await;
}

#[tokio::test]
async fn a_retry_reopens_a_job_whose_failed_status_was_set_explicitly() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 3, true).await;
    app.set(id, t[0], Failed).await;
    app.set(id, t[1], InProgress).await;
    let job = app
        .client
        .set_job_status(id, Failed, Some("giving up"))
        .await
        .expect("explicitly failed");
    assert_eq!(job.status, Failed);
    let job = assert_job(&app, id, Failed).await;
    assert_eq!(
        (job.tasks.failed, job.tasks.cancelled),
        (1, 2),
        "open tasks were cancelled"
    );

    let retried = app.set(id, t[0], InProgress).await;
    assert_eq!(retried.attempt, 2);
    assert_job(&app, id, InProgress).await;
    // The reopened job derives its status again: finishing the retried task ends it.
    app.set(id, t[0], Completed).await;
    assert_job(&app, id, Completed).await;
}

#[tokio::test]
async fn a_retry_reopens_a_job_that_was_explicitly_cancelled() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 2, true).await;
    app.set(id, t[0], Failed).await;
    app.client
        .set_job_status(id, Cancelled, None)
        .await
        .expect("cancelled");
    assert_job(&app, id, Cancelled).await;
    app.set(id, t[0], Pending).await;
    // One pending (the retry), one cancelled by the cascade.
    assert_job(&app, id, InProgress).await;
}

#[tokio::test]
async fn a_retry_reopens_a_job_whose_failed_status_was_set_explicitly_with_all_tasks_done() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 2, false).await;
    app.set(id, t[0], Completed).await;
    app.set(id, t[1], Failed).await;
    assert_job(&app, id, InProgress).await;
    app.client
        .set_job_status(id, Failed, None)
        .await
        .expect("failed");
    assert_job(&app, id, Failed).await;
    app.set(id, t[1], Pending).await;
    assert_job(&app, id, InProgress).await;
}

// ---------------------------------------------------------------------------------------
// auto_complete: false

#[tokio::test]
async fn without_auto_complete_a_job_stays_in_progress_until_a_client_completes_it() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 2, false).await;
    assert!(!app.client.get_job(id).await.expect("job").auto_complete);
    assert_job(&app, id, Pending).await;
    app.set(id, t[0], Completed).await;
    app.set(id, t[1], Completed).await;
    assert_job(&app, id, InProgress).await;
    let job = app
        .client
        .set_job_status(id, Completed, Some("all done"))
        .await
        .expect("completed");
    assert_eq!(job.status, Completed);
    assert!(job.end_time.is_some());
    assert_job(&app, id, Completed).await;
}

#[tokio::test]
async fn without_auto_complete_failed_tasks_do_not_fail_the_job_by_themselves() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 2, false).await;
    app.set(id, t[0], Failed).await;
    app.set(id, t[1], Cancelled).await;
    assert_job(&app, id, InProgress).await;
    app.client
        .set_job_status(id, Failed, None)
        .await
        .expect("failed");
    assert_job(&app, id, Failed).await;
}

// ---------------------------------------------------------------------------------------
// Explicit job status

#[tokio::test]
async fn explicitly_failing_a_job_cancels_its_open_tasks() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 4, true).await;
    app.set(id, t[0], InProgress).await;
    app.set(id, t[1], Completed).await;
    app.set(id, t[2], Failed).await;
    let job = app
        .client
        .set_job_status(id, Failed, Some("operator"))
        .await
        .expect("failed");
    assert_eq!(job.status, Failed);
    assert_eq!(
        job.tasks,
        Counters {
            total: 4,
            pending: 0,
            in_progress: 0,
            failed: 1,
            completed: 1,
            cancelled: 2,
        }
    );
    assert_job(&app, id, Failed).await;
    let statuses: Vec<Status> = futures::future::join_all(t.iter().map(|x| task(&app, id, *x)))
        .await
        .into_iter()
        .map(|t| t.status)
        .collect();
    assert_eq!(statuses, vec![Cancelled, Completed, Failed, Cancelled]);
    for x in [t[0], t[3]] {
        assert!(
            task(&app, id, x).await.end_time.is_some(),
            "a cancelled task has an end_time"
        );
    }
}

#[tokio::test]
async fn explicitly_cancelling_a_job_cancels_its_open_tasks() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 3, true).await;
    app.set(id, t[0], InProgress).await;
    app.set(id, t[1], Completed).await;
    let job = app
        .client
        .set_job_status(id, Cancelled, None)
        .await
        .expect("cancelled");
    assert_eq!(job.status, Cancelled);
    assert_eq!(job.tasks.cancelled, 2);
    assert_eq!(job.tasks.completed, 1);
    assert_eq!(job.tasks.open(), 0);
    assert_job(&app, id, Cancelled).await;
    assert_eq!(task(&app, id, t[0]).await.status, Cancelled);
    assert_eq!(task(&app, id, t[1]).await.status, Completed);
    assert_eq!(task(&app, id, t[2]).await.status, Cancelled);
}

#[tokio::test]
async fn a_job_without_tasks_can_be_failed_or_cancelled_explicitly() {
    let app = TestApp::spawn().await;
    let (a, _) = job_of(&app, 0, true).await;
    app.client
        .set_job_status(a, Failed, None)
        .await
        .expect("failed");
    assert_job(&app, a, Failed).await;
    let (b, _) = job_of(&app, 0, true).await;
    app.client
        .set_job_status(b, Cancelled, None)
        .await
        .expect("cancelled");
    assert_job(&app, b, Cancelled).await;
}

#[tokio::test]
async fn explicitly_completing_a_job_with_open_tasks_is_a_conflict_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 2, true).await;
    app.set(id, t[0], Completed).await;
    app.set(id, t[1], InProgress).await;
    let before = app.client.get_job(id).await.expect("job");
    let events = history_len(&app, id).await;
    assert_eq!(set_job_err(&app, id, Completed).await, 409);
    let after = assert_job(&app, id, InProgress).await;
    assert_eq!(after.tasks, before.tasks);
    assert_eq!(after.updated_at, before.updated_at);
    assert_eq!(history_len(&app, id).await, events);
    assert_eq!(task(&app, id, t[1]).await.status, InProgress);
}

#[tokio::test]
async fn setting_a_job_pending_or_in_progress_explicitly_is_a_422() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 2, true).await;
    app.set(id, t[0], InProgress).await;
    for status in [Pending, InProgress] {
        assert_eq!(set_job_err(&app, id, status).await, 422);
    }
    let (code, body) = app
        .put(
            &format!("/v1/jobs/{id}/status"),
            json!({"status": "inprogress"}),
        )
        .await;
    crate::helpers::assert_problem(code, &body, 422);
    assert_job(&app, id, InProgress).await;
}

#[tokio::test]
async fn another_explicit_status_on_a_terminal_job_is_a_conflict_and_the_same_is_a_no_op() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 1, true).await;
    app.set(id, t[0], Completed).await;
    let done = assert_job(&app, id, Completed).await;
    let events = history_len(&app, id).await;
    for other in [Failed, Cancelled] {
        assert_eq!(set_job_err(&app, id, other).await, 409);
    }
    let same = app
        .client
        .set_job_status(id, Completed, None)
        .await
        .expect("same status is fine");
    assert_eq!(same.status, Completed);
    assert_eq!(same.end_time, done.end_time, "a no-op keeps the end_time");
    assert_eq!(same.updated_at, done.updated_at);
    assert_eq!(history_len(&app, id).await, events, "a no-op adds no event");

    let (id, _) = job_of(&app, 2, true).await;
    app.client
        .set_job_status(id, Cancelled, None)
        .await
        .expect("cancelled");
    let events = history_len(&app, id).await;
    assert_eq!(set_job_err(&app, id, Failed).await, 409);
    assert_eq!(set_job_err(&app, id, Completed).await, 409);
    app.client
        .set_job_status(id, Cancelled, None)
        .await
        .expect("no-op");
    assert_eq!(history_len(&app, id).await, events);
    assert_job(&app, id, Cancelled).await;
}

#[tokio::test]
async fn adding_a_task_to_a_finished_job_is_a_conflict() {
    let app = TestApp::spawn().await;
    for end in [Completed, Failed, Cancelled] {
        let (id, t) = job_of(&app, 1, true).await;
        app.set(id, t[0], end).await;
        assert_job(&app, id, end).await;
        let events = history_len(&app, id).await;
        let err = app
            .client
            .add_task(id, &task_request("late"))
            .await
            .expect_err("refused");
        assert_eq!(status_of(err), 409);
        let err = app
            .client
            .add_tasks(id, vec![task_request("late"), task_request("later")])
            .await
            .expect_err("refused");
        assert_eq!(status_of(err), 409);
        let job = assert_job(&app, id, end).await;
        assert_eq!(job.tasks.total, 1);
        assert_eq!(history_len(&app, id).await, events);
    }
    // Also when the job was ended explicitly.
    let (id, _) = job_of(&app, 0, true).await;
    app.client
        .set_job_status(id, Cancelled, None)
        .await
        .expect("cancelled");
    let err = app
        .client
        .add_task(id, &task_request("late"))
        .await
        .expect_err("refused");
    assert_eq!(status_of(err), 409);
    assert_job(&app, id, Cancelled).await;
}

#[tokio::test]
async fn adding_a_task_to_an_in_progress_job_keeps_it_in_progress() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 1, true).await;
    app.set(id, t[0], InProgress).await;
    app.client
        .add_task(id, &task_request("more"))
        .await
        .expect("added");
    let job = assert_job(&app, id, InProgress).await;
    assert_eq!(job.tasks.total, 2);
}

#[tokio::test]
async fn adding_a_task_to_a_job_without_auto_complete_whose_tasks_are_done_reopens_nothing_terminal()
 {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 1, false).await;
    app.set(id, t[0], Completed).await;
    assert_job(&app, id, InProgress).await;
    app.client
        .add_task(id, &task_request("more"))
        .await
        .expect("a non-terminal job takes tasks");
    let job = assert_job(&app, id, InProgress).await;
    assert_eq!((job.tasks.total, job.tasks.pending), (2, 1));
}

// ---------------------------------------------------------------------------------------
// Task transitions

#[tokio::test]
async fn setting_a_terminal_task_to_its_own_status_is_a_no_op() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 4, true).await;
    for (x, status) in [(t[0], Completed), (t[1], Failed), (t[2], Cancelled)] {
        let first = app.set(id, x, status).await;
        let job_before = app.client.get_job(id).await.expect("job");
        let task_events = app
            .client
            .task_history(id, x, 0, 1000)
            .await
            .expect("history")
            .events
            .len();
        let job_events = history_len(&app, id).await;
        let again = app.set(id, x, status).await;
        assert_eq!(again.status, status);
        assert_eq!(again.attempt, first.attempt);
        assert_eq!(again.end_time, first.end_time, "end_time is unchanged");
        assert_eq!(again.updated_at, first.updated_at);
        let task_events_after = app
            .client
            .task_history(id, x, 0, 1000)
            .await
            .expect("history")
            .events
            .len();
        assert_eq!(task_events_after, task_events, "no new task event");
        assert_eq!(history_len(&app, id).await, job_events, "no new job event");
        let job_after = job(&app, id).await;
        assert_eq!(job_after.tasks, job_before.tasks);
        assert_eq!(job_after.updated_at, job_before.updated_at);
    }
}

#[tokio::test]
async fn a_completed_or_cancelled_task_cannot_change_status() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 3, true).await;
    app.set(id, t[0], Completed).await;
    app.set(id, t[1], Cancelled).await;
    for to in [Pending, InProgress, Failed, Cancelled] {
        assert_eq!(
            set_task_err(&app, id, t[0], to).await,
            409,
            "completed -> {to}"
        );
    }
    for to in [Pending, InProgress, Failed, Completed] {
        assert_eq!(
            set_task_err(&app, id, t[1], to).await,
            409,
            "cancelled -> {to}"
        );
    }
    assert_eq!(task(&app, id, t[0]).await.status, Completed);
    assert_eq!(task(&app, id, t[1]).await.status, Cancelled);
    assert_job(&app, id, InProgress).await;
}

#[tokio::test]
async fn a_failed_task_cannot_be_completed_or_cancelled_without_a_retry() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 1, true).await;
    app.set(id, t[0], Failed).await;
    let events = history_len(&app, id).await;
    assert_eq!(set_task_err(&app, id, t[0], Completed).await, 409);
    assert_eq!(set_task_err(&app, id, t[0], Cancelled).await, 409);
    let task = task(&app, id, t[0]).await;
    assert_eq!((task.status, task.attempt), (Failed, 1));
    assert_eq!(history_len(&app, id).await, events);
    assert_job(&app, id, Failed).await;
}

#[tokio::test]
async fn an_in_progress_task_cannot_go_back_to_pending() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 1, true).await;
    app.set(id, t[0], InProgress).await;
    assert_eq!(set_task_err(&app, id, t[0], Pending).await, 409);
    assert_eq!(task(&app, id, t[0]).await.status, InProgress);
    assert_job(&app, id, InProgress).await;
}

#[tokio::test]
async fn a_pending_task_may_go_straight_to_any_terminal_status() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 3, true).await;
    for (x, to) in [(t[0], Completed), (t[1], Failed), (t[2], Cancelled)] {
        let task = app.set(id, x, to).await;
        assert_eq!(task.status, to);
        assert!(task.end_time.is_some());
    }
    assert_job(&app, id, Failed).await;
}

#[tokio::test]
async fn in_progress_again_with_progress_updates_the_progress() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 1, true).await;
    let with = |current, status| SetTaskStatusRequest {
        status,
        reason: None,
        error: None,
        progress: Some(Progress {
            current,
            total: Some(10),
        }),
    };
    let first = app
        .client
        .set_task_status(id, t[0], &with(1, InProgress))
        .await
        .expect("started");
    assert_eq!(
        first.progress,
        Some(Progress {
            current: 1,
            total: Some(10)
        })
    );
    let second = app
        .client
        .set_task_status(id, t[0], &with(7, InProgress))
        .await
        .expect("progressed");
    assert_eq!(second.status, InProgress);
    assert_eq!(second.attempt, 1);
    assert_eq!(
        second.progress,
        Some(Progress {
            current: 7,
            total: Some(10)
        })
    );
    assert_eq!(
        task(&app, id, t[0]).await.progress,
        Some(Progress {
            current: 7,
            total: Some(10)
        })
    );
    let job = assert_job(&app, id, InProgress).await;
    assert_eq!(job.tasks.in_progress, 1, "progress does not move counters");
    // The inprogress spelling of the seed is the same status.
    let (code, body) = app
        .put(
            &format!("/v1/jobs/{id}/tasks/{}/status", t[0]),
            json!({"status": "inprogress", "progress": {"current": 9, "total": 10}}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["task"]["status"], "in_progress");
    assert_eq!(body["task"]["progress"], json!({"current": 9, "total": 10}));
}

#[tokio::test]
async fn a_heartbeat_on_an_open_task_is_accepted_and_records_progress() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 2, true).await;
    // Pending tasks take heartbeats too.
    let hb = app
        .client
        .heartbeat(
            id,
            t[0],
            &HeartbeatRequest {
                progress: Some(Progress {
                    current: 3,
                    total: None,
                }),
                message: Some("warming up".into()),
            },
        )
        .await
        .expect("heartbeat");
    assert_eq!(hb.status, Pending);
    assert_eq!(
        hb.progress,
        Some(Progress {
            current: 3,
            total: None
        })
    );
    assert_job(&app, id, Pending).await;

    app.set(id, t[1], InProgress).await;
    let hb = app
        .client
        .heartbeat(
            id,
            t[1],
            &HeartbeatRequest {
                progress: Some(Progress {
                    current: 5,
                    total: Some(8),
                }),
                message: None,
            },
        )
        .await
        .expect("heartbeat");
    assert_eq!(hb.status, InProgress);
    assert_eq!(
        hb.progress,
        Some(Progress {
            current: 5,
            total: Some(8)
        })
    );
    // A heartbeat without progress keeps the last progress.
    let hb = app
        .client
        .heartbeat(id, t[1], &HeartbeatRequest::default())
        .await
        .expect("heartbeat");
    assert_eq!(
        hb.progress,
        Some(Progress {
            current: 5,
            total: Some(8)
        })
    );
    assert_job(&app, id, InProgress).await;
}

#[tokio::test]
async fn a_heartbeat_on_a_terminal_task_is_a_conflict() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 3, true).await;
    for (x, status) in [(t[0], Completed), (t[1], Failed), (t[2], Cancelled)] {
        app.set(id, x, status).await;
        let events = history_len(&app, id).await;
        let err = app
            .client
            .heartbeat(id, x, &HeartbeatRequest::default())
            .await
            .expect_err("refused");
        assert_eq!(status_of(err), 409, "heartbeat on a {status} task");
        assert_eq!(history_len(&app, id).await, events);
    }
}

#[tokio::test]
async fn a_heartbeat_with_an_empty_body_is_accepted() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 1, true).await;
    app.set(id, t[0], InProgress).await;
    let url = app.url(&format!("/v1/jobs/{id}/tasks/{}/heartbeat", t[0]));
    // No body and no content type at all.
    let res = app.http.post(&url).send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["task"]["status"], "in_progress");
    // An empty body with a JSON content type.
    let res = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    // An empty JSON object.
    let (code, body) = app
        .post(
            &format!("/v1/jobs/{id}/tasks/{}/heartbeat", t[0]),
            json!({}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let events = app
        .client
        .task_history(id, t[0], 0, 1000)
        .await
        .expect("history")
        .events;
    let beats = events
        .iter()
        .filter(|e| e.kind == EventKind::Heartbeat)
        .count();
    assert_eq!(beats, 3, "each heartbeat is recorded");
}

// ---------------------------------------------------------------------------------------
// A longer walk

#[tokio::test]
async fn the_counters_follow_a_long_sequence_of_changes() {
    let app = TestApp::spawn().await;
    let (id, t) = job_of(&app, 5, true).await;
    let steps: &[(usize, Status, Status)] = &[
        (0, InProgress, InProgress),
        (1, InProgress, InProgress),
        (0, Completed, InProgress),
        (2, Failed, InProgress),
        (2, InProgress, InProgress),
        (2, Failed, InProgress),
        (3, Cancelled, InProgress),
        (1, Completed, InProgress),
        (4, Completed, Failed),
        (2, Pending, InProgress),
        (2, Completed, Completed),
    ];
    for (i, (task_index, to, job_status)) in steps.iter().enumerate() {
        app.set(id, t[*task_index], *to).await;
        let job = job(&app, id).await;
        assert_eq!(job.status, *job_status, "after step {i}");
    }
    let retried = task(&app, id, t[2]).await;
    assert_eq!(retried.attempt, 3);
}
