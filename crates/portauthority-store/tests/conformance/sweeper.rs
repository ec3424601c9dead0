//! The timeout sweeper: tasks and jobs with a timeout are failed (`timed_out`) through the
//! command layer once the store's clock passes their deadline, and nothing else is.

use crate::harness::*;
use portauthority_core::api::{EventKind, HistoryEvent, Progress, Task};
use portauthority_core::{Clock, JobId, Status, TaskId, Timestamp};
use portauthority_store::background::step_until_idle;
use portauthority_store::sweeper::Sweeper;
use portauthority_store::{HistoryScope, Loop, Store, TaskUpdate};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Barrier;

conformance_ctx!(
    a_task_with_a_timeout_and_no_heartbeat_is_failed_timed_out_once_the_clock_passes_it,
    a_task_that_heartbeats_every_half_second_stays_in_progress_until_it_stops,
    a_job_timeout_fails_the_job_and_cancels_its_open_tasks,
    a_terminal_task_is_never_swept_and_a_retried_one_times_out_again,
    a_time_out_of_a_task_that_is_no_longer_due_is_refused_and_writes_nothing,
    two_sweepers_at_once_fail_each_due_task_once,
);

/// Steps a sweeper until it finds nothing due; returns how many steps failed something.
async fn sweep(store: &Arc<dyn Store>) -> usize {
    step_until_idle(&Sweeper::new(store.clone()), 1000)
        .await
        .expect("sweeper steps")
}

/// Once swept, nothing is due (a failed task, a failed job has no deadline), and nothing
/// becomes due again however long the clock runs.
async fn assert_swept_once(store: &Arc<dyn Store>, ctx: &Ctx) {
    let now = ctx.clock.now();
    assert_eq!(store.due_tasks(now, 100).await.expect("due tasks"), []);
    assert_eq!(store.due_jobs(now, 100).await.expect("due jobs"), []);
    ctx.clock.advance_ms(60_000);
    assert_eq!(sweep(store).await, 0, "swept once");
}

fn with_timeout(seconds: i64) -> portauthority_core::api::CreateTaskRequest {
    portauthority_core::api::CreateTaskRequest {
        timeout_seconds: Some(seconds),
        ..task_req()
    }
}

/// The task's events of kind `status_changed` that name `reason`.
fn with_reason<'a>(events: &'a [HistoryEvent], reason: &str) -> Vec<&'a HistoryEvent> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::StatusChanged && e.reason.as_deref() == Some(reason))
        .collect()
}

async fn task_history(store: &Arc<dyn Store>, job: JobId, task: TaskId) -> Vec<HistoryEvent> {
    history(store, HistoryScope::Task(job, task)).await
}

async fn a_task_with_a_timeout_and_no_heartbeat_is_failed_timed_out_once_the_clock_passes_it(
    store: Arc<dyn Store>,
    ctx: Ctx,
) {
    let job = create(&store, job_req()).await;
    let tasks = add(
        &store,
        job.id,
        vec![with_timeout(1), with_timeout(1), task_req()],
    )
    .await;
    let (started, pending, untimed) = (tasks[0].id, tasks[1].id, tasks[2].id);
    set_task(&store, job.id, started, Status::InProgress)
        .await
        .expect("start");
    // A job whose only task times out: its derived status follows.
    let lone = create(&store, job_req()).await;
    let lone_task = add(&store, lone.id, vec![with_timeout(1)]).await[0].id;
    let backlog = store.outbox_backlog().await.expect("backlog");

    assert_eq!(
        sweep(&store).await,
        0,
        "nothing is due before the clock moves"
    );
    ctx.clock.advance_ms(900);
    assert_eq!(sweep(&store).await, 0, "nothing is due within the timeout");
    assert_eq!(
        get_task(&store, job.id, started).await.status,
        Status::InProgress
    );

    ctx.clock.advance_ms(1100);
    let now = ctx.clock.now();
    assert!(sweep(&store).await >= 1, "the sweeper found due tasks");
    for (id, from) in [(started, Status::InProgress), (pending, Status::Pending)] {
        let t = get_task(&store, job.id, id).await;
        assert_eq!(t.status, Status::Failed, "task {id}");
        assert_eq!(t.end_time, Some(now), "task {id} ended when it was swept");
        let events = task_history(&store, job.id, id).await;
        let timed_out = with_reason(&events, "timed_out");
        assert_eq!(timed_out.len(), 1, "one timed_out event: {events:?}");
        assert_eq!(timed_out[0].from, Some(from));
        assert_eq!(timed_out[0].to, Some(Status::Failed));
    }
    assert_eq!(
        get_task(&store, job.id, untimed).await.status,
        Status::Pending,
        "a task without a timeout is never swept"
    );
    let job = assert_counters_match(&store, job.id).await;
    assert_eq!((job.tasks.failed, job.tasks.pending), (2, 1));
    assert_eq!(job.status, Status::InProgress);

    let lone_job = assert_counters_match(&store, lone.id).await;
    assert_eq!(
        lone_job.status,
        Status::Failed,
        "the job rolls up its task's timeout"
    );
    assert_eq!(
        get_task(&store, lone.id, lone_task).await.status,
        Status::Failed
    );
    // Published like a client's change: three task events and the lone job's own.
    assert_eq!(
        store.outbox_backlog().await.expect("backlog"),
        backlog + 4,
        "each status change reaches the outbox"
    );
    assert_swept_once(&store, &ctx).await;
}

async fn a_task_that_heartbeats_every_half_second_stays_in_progress_until_it_stops(
    store: Arc<dyn Store>,
    ctx: Ctx,
) {
    let job = create(&store, job_req()).await;
    let tasks = add(&store, job.id, vec![with_timeout(1), with_timeout(1)]).await;
    let (beating, late_start) = (tasks[0].id, tasks[1].id);
    set_task(&store, job.id, beating, Status::InProgress)
        .await
        .expect("start");
    let sweeper = Sweeper::new(store.clone());
    for i in 0..10u64 {
        ctx.clock.advance_ms(500);
        let progress = (i % 2 == 0).then_some(Progress {
            current: i,
            total: Some(10),
        });
        apply(&store, TaskUpdate::heartbeat(job.id, beating, progress))
            .await
            .expect("heartbeat");
        if i == 1 {
            // A status change is activity too: started 1 s after its creation.
            set_task(&store, job.id, late_start, Status::InProgress)
                .await
                .expect("start late");
        }
        if i == 2 {
            // Progress reported with a status is as good as a heartbeat.
            let update = status_update(
                job.id,
                late_start,
                Status::InProgress,
                None,
                None,
                Some(Progress {
                    current: 1,
                    total: None,
                }),
            );
            apply(&store, update).await.expect("progress");
        }
        // `late_start` last moved at 1.5 s: due at 2.5 s, the fifth step. `beating` never.
        let swept = sweeper.step().await.expect("step");
        assert_eq!(swept, i == 4, "the step at {} ms", (i + 1) * 500);
    }
    assert_eq!(
        get_task(&store, job.id, beating).await.status,
        Status::InProgress
    );
    let events = task_history(&store, job.id, beating).await;
    assert!(with_reason(&events, "timed_out").is_empty(), "{events:?}");
    let late = get_task(&store, job.id, late_start).await;
    assert_eq!(late.status, Status::Failed);
    let events = task_history(&store, job.id, late_start).await;
    assert_eq!(
        with_reason(&events, "timed_out")
            .iter()
            .map(|e| e.from)
            .collect::<Vec<_>>(),
        [Some(Status::InProgress)]
    );

    ctx.clock.advance_ms(999);
    assert!(
        !sweeper.step().await.expect("step"),
        "999 ms after its last heartbeat"
    );
    ctx.clock.advance_ms(1);
    assert!(sweeper.step().await.expect("step"), "due at 1 s exactly");
    let t = get_task(&store, job.id, beating).await;
    assert_eq!(t.status, Status::Failed);
    assert_eq!(
        t.progress,
        Some(Progress {
            current: 8,
            total: Some(10)
        }),
        "the last progress is kept"
    );
    let job = assert_counters_match(&store, job.id).await;
    assert_eq!(job.status, Status::Failed);
}

async fn a_job_timeout_fails_the_job_and_cancels_its_open_tasks(store: Arc<dyn Store>, ctx: Ctx) {
    let timed = |seconds| portauthority_core::api::CreateJobRequest {
        timeout_seconds: Some(seconds),
        ..job_req()
    };
    let (job, tasks) = create_with_tasks(&store, timed(2), 3).await;
    assert_eq!(job.timeout_seconds, Some(2));
    set_task(&store, job.id, tasks[0], Status::Completed)
        .await
        .expect("complete");
    set_task(&store, job.id, tasks[1], Status::InProgress)
        .await
        .expect("start");
    // One that finishes in time is left alone.
    let (done, done_tasks) = create_with_tasks(&store, timed(2), 1).await;
    set_task(&store, done.id, done_tasks[0], Status::Completed)
        .await
        .expect("complete");
    // The timeout counts from the start_time a client gave, not from the registration.
    let now = ctx.clock.now();
    let started_earlier = create(
        &store,
        portauthority_core::api::CreateJobRequest {
            start_time: Some(Timestamp::from_millis(now.as_millis() - 10_000)),
            ..timed(5)
        },
    )
    .await;

    assert_eq!(
        sweep(&store).await,
        1,
        "the job that started earlier is due"
    );
    let earlier = get_job(&store, started_earlier.id).await;
    assert_eq!(earlier.status, Status::Failed);
    ctx.clock.advance_ms(1500);
    assert_eq!(sweep(&store).await, 0, "nothing else is due yet");
    assert_eq!(get_job(&store, job.id).await.status, Status::InProgress);

    ctx.clock.advance_ms(500);
    let swept_at = ctx.clock.now();
    assert_eq!(sweep(&store).await, 1);
    let failed = assert_counters_match(&store, job.id).await;
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.end_time, Some(swept_at));
    assert_eq!(
        (
            failed.tasks.completed,
            failed.tasks.cancelled,
            failed.tasks.failed
        ),
        (1, 2, 0),
        "open tasks are cancelled, the finished one stays"
    );
    let events = history(&store, HistoryScope::Job(job.id)).await;
    let job_events: Vec<_> = with_reason(&events, "timed_out")
        .into_iter()
        .filter(|e| e.task_id.is_none())
        .collect();
    assert_eq!(job_events.len(), 1, "{events:?}");
    assert_eq!(job_events[0].to, Some(Status::Failed));
    for t in &tasks[1..] {
        let task = get_task(&store, job.id, *t).await;
        assert_eq!(task.status, Status::Cancelled);
        let cancelled = with_reason(&events, "timed_out")
            .into_iter()
            .filter(|e| e.task_id == Some(*t))
            .count();
        assert_eq!(cancelled, 1, "task {t} cancelled once, reason timed_out");
    }
    assert_eq!(
        get_task(&store, job.id, tasks[0]).await.status,
        Status::Completed
    );
    assert_eq!(get_job(&store, done.id).await.status, Status::Completed);
    assert_swept_once(&store, &ctx).await;
}

async fn a_terminal_task_is_never_swept_and_a_retried_one_times_out_again(
    store: Arc<dyn Store>,
    ctx: Ctx,
) {
    let job = create(&store, job_req()).await;
    let tasks: Vec<Task> = add(
        &store,
        job.id,
        vec![with_timeout(1), with_timeout(1), with_timeout(1)],
    )
    .await;
    let ends = [Status::Completed, Status::Failed, Status::Cancelled];
    for (t, end) in tasks.iter().zip(ends) {
        set_task(&store, job.id, t.id, end).await.expect("finish");
    }
    let mut before = Vec::new();
    for t in &tasks {
        before.push(json(&get_task(&store, job.id, t.id).await));
    }
    let events_before = history(&store, HistoryScope::Job(job.id)).await.len();
    ctx.clock.advance_ms(10_000);
    assert_eq!(sweep(&store).await, 0);
    for (t, was) in tasks.iter().zip(&before) {
        assert_eq!(&json(&get_task(&store, job.id, t.id).await), was);
    }
    assert_eq!(
        history(&store, HistoryScope::Job(job.id)).await.len(),
        events_before,
        "the sweeper wrote nothing"
    );

    // A retry reopens the failed task, and its timeout runs again from the retry.
    let failed = tasks[1].id;
    set_task(&store, job.id, failed, Status::Pending)
        .await
        .expect("retry");
    ctx.clock.advance_ms(999);
    assert_eq!(sweep(&store).await, 0);
    ctx.clock.advance_ms(1);
    assert_eq!(sweep(&store).await, 1);
    let t = get_task(&store, job.id, failed).await;
    assert_eq!((t.status, t.attempt), (Status::Failed, 2));
    assert_counters_match(&store, job.id).await;
}

async fn a_time_out_of_a_task_that_is_no_longer_due_is_refused_and_writes_nothing(
    store: Arc<dyn Store>,
    ctx: Ctx,
) {
    let job = create(&store, job_req()).await;
    let tasks = add(&store, job.id, vec![with_timeout(1), task_req()]).await;
    ctx.clock.advance_ms(1500);
    let due = store.due_tasks(ctx.clock.now(), 10).await.expect("due");
    assert_eq!(due, vec![(job.id, tasks[0].id)]);
    // A heartbeat lands between the sweeper's read and its update.
    apply(&store, TaskUpdate::heartbeat(job.id, tasks[0].id, None))
        .await
        .expect("heartbeat");
    let events = history(&store, HistoryScope::Job(job.id)).await.len();
    for t in &tasks {
        assert_err!(
            apply(&store, TaskUpdate::time_out(job.id, t.id)).await,
            Conflict
        );
    }
    assert_eq!(
        history(&store, HistoryScope::Job(job.id)).await.len(),
        events
    );
    assert_eq!(
        get_task(&store, job.id, tasks[0].id).await.status,
        Status::Pending
    );
}

async fn two_sweepers_at_once_fail_each_due_task_once(store: Arc<dyn Store>, ctx: Ctx) {
    let mut jobs = Vec::new();
    for _ in 0..6 {
        let job = create(&store, job_req()).await;
        let tasks = add(&store, job.id, (0..20).map(|_| with_timeout(1)).collect()).await;
        jobs.push((job.id, tasks));
    }
    ctx.clock.advance_ms(2000);
    let barrier = Arc::new(Barrier::new(2));
    let mut sweepers = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let (store, barrier) = (store.clone(), barrier.clone());
        sweepers.spawn(async move {
            // Small batches, so that the two take turns over the same rows.
            let sweeper = Sweeper::new(store).with_batch(7);
            barrier.wait().await;
            step_until_idle(&sweeper, 1000).await.expect("steps")
        });
    }
    while let Some(r) = sweepers.join_next().await {
        r.expect("a sweeper");
    }
    let mut per_task: HashMap<TaskId, usize> = HashMap::new();
    for (job, tasks) in &jobs {
        let events = history(&store, HistoryScope::Job(*job)).await;
        for e in with_reason(&events, "timed_out") {
            *per_task
                .entry(e.task_id.expect("a task event"))
                .or_default() += 1;
        }
        let j = assert_counters_match(&store, *job).await;
        assert_eq!((j.status, j.tasks.failed), (Status::Failed, 20));
        for t in tasks {
            assert_eq!(per_task.get(&t.id), Some(&1), "task {} failed once", t.id);
        }
        assert_increasing(&events);
    }
    assert_eq!(per_task.len(), 120);
}
