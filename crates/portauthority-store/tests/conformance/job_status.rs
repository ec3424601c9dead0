//! A job's status: derived from its tasks, set explicitly by a client (cancelling its open
//! tasks), and reopened by a retry.

use crate::harness::*;
use portauthority_core::Status;
use portauthority_core::api::{CreateJobRequest, EventKind};
use portauthority_store::{HistoryScope, Store};
use std::collections::BTreeSet;
use std::sync::Arc;

conformance!(
    a_jobs_status_follows_its_tasks,
    setting_a_job_failed_or_cancelled_cancels_its_open_tasks_with_one_event_each,
    a_job_can_be_set_completed_only_when_no_task_is_open,
    a_finished_job_keeps_its_status_against_another_explicit_one,
    a_job_cannot_be_set_pending_or_in_progress,
    retrying_a_failed_task_reopens_its_job,
    retrying_a_task_reopens_a_job_a_client_ended,
);

async fn a_jobs_status_follows_its_tasks(store: Arc<dyn Store>) {
    let (job, ids) = create_with_tasks(&store, job_req(), 3).await;
    assert_eq!(job.status, Status::Pending);
    let step = |i: usize, to: Status, job_status: Status| {
        let store = store.clone();
        let t = ids[i];
        async move {
            set_task(&store, job.id, t, to).await.expect("update");
            let j = assert_counters_match(&store, job.id).await;
            assert_eq!(j.status, job_status, "after task {i} -> {to}");
            assert_eq!(j.end_time.is_some(), job_status.is_terminal(), "end_time");
            j
        }
    };
    step(0, Status::InProgress, Status::InProgress).await;
    step(0, Status::Completed, Status::InProgress).await;
    step(1, Status::Cancelled, Status::InProgress).await;
    let before = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    let done = step(2, Status::Completed, Status::Completed).await;
    assert!(done.end_time.unwrap() >= before);

    // All cancelled: cancelled. Any failed: failed.
    let (c, ids) = create_with_tasks(&store, job_req(), 2).await;
    for t in &ids {
        set_task(&store, c.id, *t, Status::Cancelled)
            .await
            .expect("cancel");
    }
    assert_eq!(get_job(&store, c.id).await.status, Status::Cancelled);
    let (f, ids) = create_with_tasks(&store, job_req(), 3).await;
    set_task(&store, f.id, ids[0], Status::Failed)
        .await
        .expect("fail");
    assert_eq!(get_job(&store, f.id).await.status, Status::InProgress);
    set_task(&store, f.id, ids[1], Status::Completed)
        .await
        .expect("complete");
    set_task(&store, f.id, ids[2], Status::Cancelled)
        .await
        .expect("cancel");
    assert_eq!(
        assert_counters_match(&store, f.id).await.status,
        Status::Failed
    );

    // The job-level status changes are history events of the job itself.
    let job_events: Vec<(Option<Status>, Option<Status>)> =
        history(&store, HistoryScope::Job(job.id))
            .await
            .into_iter()
            .filter(|e| e.task_id.is_none() && e.kind == EventKind::StatusChanged)
            .map(|e| (e.from, e.to))
            .collect();
    assert_eq!(
        job_events,
        vec![
            (Some(Status::Pending), Some(Status::InProgress)),
            (Some(Status::InProgress), Some(Status::Completed)),
        ]
    );
}

async fn setting_a_job_failed_or_cancelled_cancels_its_open_tasks_with_one_event_each(
    store: Arc<dyn Store>,
) {
    for to in [Status::Cancelled, Status::Failed] {
        let (job, ids) = create_with_tasks(&store, job_req(), 5).await;
        set_task(&store, job.id, ids[1], Status::InProgress)
            .await
            .expect("start");
        set_task(&store, job.id, ids[2], Status::Completed)
            .await
            .expect("complete");
        set_task(&store, job.id, ids[3], Status::Failed)
            .await
            .expect("fail");
        let finished_before = [
            get_task(&store, job.id, ids[2]).await,
            get_task(&store, job.id, ids[3]).await,
        ];
        let last_seq = history(&store, HistoryScope::Job(job.id))
            .await
            .last()
            .unwrap()
            .seq;

        let before = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
        let set = store
            .set_job_status(job.id, to, Some("operator said so".into()))
            .await
            .expect("set_job_status");
        let after = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
        assert_eq!(set.status, to);
        assert_between(set.end_time.expect("end_time"), before, after, "end_time");
        assert_eq!(
            json(&assert_counters_match(&store, job.id).await),
            json(&set)
        );
        assert_eq!(
            (
                set.tasks.pending,
                set.tasks.in_progress,
                set.tasks.completed,
                set.tasks.failed,
                set.tasks.cancelled
            ),
            (0, 0, 1, 1, 3),
            "{to}: open tasks became cancelled"
        );
        for &i in &[0usize, 1, 4] {
            let t = get_task(&store, job.id, ids[i]).await;
            assert_eq!(
                t.status,
                Status::Cancelled,
                "{to}: open task {i} is cancelled"
            );
            assert_between(
                t.end_time.expect("end_time"),
                before,
                after,
                "task end_time",
            );
            assert_eq!(t.attempt, 1);
        }
        for t in &finished_before {
            assert_eq!(
                json(&get_task(&store, job.id, t.id).await),
                json(t),
                "{to}: a finished task is untouched"
            );
        }

        let new_events: Vec<_> = history(&store, HistoryScope::Job(job.id))
            .await
            .into_iter()
            .filter(|e| e.seq > last_seq)
            .collect();
        let mut task_events: BTreeSet<(portauthority_core::TaskId, Option<Status>)> =
            BTreeSet::new();
        let mut job_events = 0;
        for e in &new_events {
            assert_eq!(e.kind, EventKind::StatusChanged, "{e:?}");
            assert_eq!(e.reason.as_deref(), Some("operator said so"), "{e:?}");
            match e.task_id {
                Some(t) => {
                    assert_eq!(e.to, Some(Status::Cancelled), "{e:?}");
                    assert!(task_events.insert((t, e.from)), "one event per task: {e:?}");
                }
                None => {
                    job_events += 1;
                    assert_eq!((e.from, e.to), (Some(Status::InProgress), Some(to)));
                }
            }
        }
        assert_eq!(job_events, 1, "{to}: one job event");
        let expected: BTreeSet<_> = [
            (ids[0], Some(Status::Pending)),
            (ids[1], Some(Status::InProgress)),
            (ids[4], Some(Status::Pending)),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            task_events, expected,
            "{to}: one event per cancelled task, from its status"
        );
        // Each task's own history shows its cancellation.
        let own = history(&store, HistoryScope::Task(job.id, ids[1])).await;
        let last = own.last().unwrap();
        assert_eq!(
            (last.from, last.to),
            (Some(Status::InProgress), Some(Status::Cancelled))
        );

        // Setting the same status again is a no-op.
        let n = history(&store, HistoryScope::Job(job.id)).await.len();
        let again = store
            .set_job_status(job.id, to, None)
            .await
            .expect("same again");
        assert_eq!(json(&again), json(&set));
        assert_eq!(history(&store, HistoryScope::Job(job.id)).await.len(), n);

        // A cancelled task of an explicitly ended job is final.
        assert_err!(
            set_task(&store, job.id, ids[0], Status::InProgress).await,
            Conflict
        );
    }
}

async fn a_job_can_be_set_completed_only_when_no_task_is_open(store: Arc<dyn Store>) {
    let (job, ids) = create_with_tasks(
        &store,
        CreateJobRequest {
            auto_complete: Some(false),
            ..job_req()
        },
        2,
    )
    .await;
    set_task(&store, job.id, ids[0], Status::Completed)
        .await
        .expect("complete");
    let before = get_job(&store, job.id).await;
    let n = history(&store, HistoryScope::Job(job.id)).await.len();
    assert_err!(
        store.set_job_status(job.id, Status::Completed, None).await,
        Conflict
    );
    assert_eq!(
        json(&get_job(&store, job.id).await),
        json(&before),
        "unchanged"
    );
    assert_eq!(
        get_task(&store, job.id, ids[1]).await.status,
        Status::Pending
    );
    assert_eq!(history(&store, HistoryScope::Job(job.id)).await.len(), n);

    set_task(&store, job.id, ids[1], Status::Failed)
        .await
        .expect("fail");
    let j = get_job(&store, job.id).await;
    assert_eq!(
        j.status,
        Status::InProgress,
        "auto_complete off: waits for the client"
    );
    let done = store
        .set_job_status(job.id, Status::Completed, Some("reviewed".into()))
        .await
        .expect("complete the job");
    assert_eq!(done.status, Status::Completed);
    assert!(done.end_time.is_some());
    assert_eq!(json(&get_job(&store, job.id).await), json(&done));
    let last = history(&store, HistoryScope::Job(job.id))
        .await
        .pop()
        .unwrap();
    assert_eq!(last.task_id, None);
    assert_eq!(
        (last.from, last.to),
        (Some(Status::InProgress), Some(Status::Completed))
    );
    assert_eq!(last.reason.as_deref(), Some("reviewed"));

    // A job without tasks can be completed at once.
    let empty = create(&store, job_req()).await;
    let done = store
        .set_job_status(empty.id, Status::Completed, None)
        .await
        .expect("complete an empty job");
    assert_eq!(done.status, Status::Completed);
    assert_eq!(assert_counters_match(&store, empty.id).await.tasks.total, 0);
}

async fn a_finished_job_keeps_its_status_against_another_explicit_one(store: Arc<dyn Store>) {
    let (job, ids) = create_with_tasks(&store, job_req(), 1).await;
    set_task(&store, job.id, ids[0], Status::Completed)
        .await
        .expect("complete");
    let done = get_job(&store, job.id).await;
    assert_eq!(done.status, Status::Completed);
    for to in [Status::Failed, Status::Cancelled] {
        assert_err!(store.set_job_status(job.id, to, None).await, Conflict);
    }
    let same = store
        .set_job_status(job.id, Status::Completed, None)
        .await
        .expect("the status it has");
    assert_eq!(json(&same), json(&done));
    assert_eq!(json(&get_job(&store, job.id).await), json(&done));
}

async fn a_job_cannot_be_set_pending_or_in_progress(store: Arc<dyn Store>) {
    let (job, _) = create_with_tasks(&store, job_req(), 1).await;
    for to in [Status::Pending, Status::InProgress] {
        assert_err!(store.set_job_status(job.id, to, None).await, Invalid);
    }
    assert_eq!(json(&get_job(&store, job.id).await), json(&job));
}

async fn retrying_a_failed_task_reopens_its_job(store: Arc<dyn Store>) {
    let (job, ids) = create_with_tasks(&store, job_req(), 2).await;
    set_task(&store, job.id, ids[0], Status::Completed)
        .await
        .expect("complete");
    set_task(&store, job.id, ids[1], Status::Failed)
        .await
        .expect("fail");
    let failed = get_job(&store, job.id).await;
    assert_eq!(failed.status, Status::Failed);
    assert!(failed.end_time.is_some());

    let last_seq = history(&store, HistoryScope::Job(job.id))
        .await
        .last()
        .unwrap()
        .seq;
    let retried = set_task(&store, job.id, ids[1], Status::Pending)
        .await
        .expect("retry");
    assert_eq!(retried.attempt, 2);
    let reopened = assert_counters_match(&store, job.id).await;
    assert_eq!(reopened.status, Status::InProgress);
    assert_eq!(reopened.end_time, None, "a reopened job has no end_time");
    let events: Vec<_> = history(&store, HistoryScope::Job(job.id))
        .await
        .into_iter()
        .filter(|e| e.seq > last_seq)
        .map(|e| (e.task_id, e.from, e.to))
        .collect();
    assert_eq!(
        events,
        vec![
            (Some(ids[1]), Some(Status::Failed), Some(Status::Pending)),
            (None, Some(Status::Failed), Some(Status::InProgress)),
        ]
    );

    // Tasks can be added to the reopened job, and it finishes again.
    add(&store, job.id, vec![task_req()]).await;
    let ts = all_tasks(&store, job.id).await;
    for t in ts.iter().filter(|t| !t.status.is_terminal()) {
        set_task(&store, job.id, t.id, Status::Completed)
            .await
            .expect("complete");
    }
    let done = assert_counters_match(&store, job.id).await;
    assert_eq!(done.status, Status::Completed);
    assert!(done.end_time.is_some());
}

async fn retrying_a_task_reopens_a_job_a_client_ended(store: Arc<dyn Store>) {
    let (job, ids) = create_with_tasks(&store, job_req(), 2).await;
    set_task(&store, job.id, ids[0], Status::Failed)
        .await
        .expect("fail");
    let cancelled = store
        .set_job_status(job.id, Status::Cancelled, None)
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(
        get_task(&store, job.id, ids[1]).await.status,
        Status::Cancelled
    );

    let retried = set_task(&store, job.id, ids[0], Status::InProgress)
        .await
        .expect("retry");
    assert_eq!(retried.attempt, 2);
    let reopened = assert_counters_match(&store, job.id).await;
    assert_eq!(reopened.status, Status::InProgress, "the job reopens");
    assert_eq!(reopened.end_time, None);

    // Its status follows its tasks again.
    set_task(&store, job.id, ids[0], Status::Completed)
        .await
        .expect("complete");
    let j = assert_counters_match(&store, job.id).await;
    assert_eq!(
        j.status,
        Status::Completed,
        "completed + cancelled: completed"
    );
    assert!(j.end_time.is_some());
}
