//! Adding tasks: all or none, idempotent on each task id, task ids unique per installation.

use crate::harness::*;
use portauthority_core::api::{CreateJobRequest, CreateTaskRequest, EventKind};
use portauthority_core::{Counters, Status, Timestamp};
use portauthority_store::{HistoryScope, Store};
use std::sync::Arc;

conformance!(
    added_tasks_come_back_in_request_order_and_count_as_pending,
    adding_tasks_is_all_or_none,
    adding_the_same_tasks_again_returns_the_stored_ones_and_writes_nothing,
    adding_a_task_to_a_finished_job_is_a_conflict,
    a_task_can_be_added_to_a_job_that_will_not_finish_by_itself,
    a_task_id_is_unique_across_jobs,
);

async fn added_tasks_come_back_in_request_order_and_count_as_pending(store: Arc<dyn Store>) {
    let job = create(&store, job_req()).await;
    let reqs: Vec<CreateTaskRequest> = (0..5).map(|_| task_req()).collect();
    let ids: Vec<_> = reqs.iter().map(|t| t.id.unwrap()).collect();
    let before = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    let added = add(&store, job.id, reqs).await;
    assert_eq!(added.iter().map(|t| t.id).collect::<Vec<_>>(), ids);
    for t in &added {
        assert_eq!(t.job_id, job.id);
        assert_eq!(t.status, Status::Pending);
        assert_eq!(t.attempt, 1);
        assert_eq!(json(&get_task(&store, job.id, t.id).await), json(t));
    }
    let after = assert_counters_match(&store, job.id).await;
    assert_eq!(
        after.tasks,
        Counters {
            total: 5,
            pending: 5,
            ..Counters::default()
        }
    );
    assert_eq!(
        after.status,
        Status::Pending,
        "all pending: the job is pending"
    );
    assert!(after.updated_at >= before, "adding tasks touches the job");

    let events = history(&store, HistoryScope::Job(job.id)).await;
    let added_events: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::TaskAdded)
        .map(|e| e.task_id.expect("a task_added event names its task"))
        .collect();
    assert_eq!(added_events, ids, "one task_added event per task, in order");
}

async fn adding_tasks_is_all_or_none(store: Arc<dyn Store>) {
    let job = create(&store, job_req()).await;
    let first = task_req();
    add(&store, job.id, vec![first.clone()]).await;
    let (other_job, other_tasks) = create_with_tasks(&store, job_req(), 1).await;
    let events_before = history(&store, HistoryScope::Job(job.id)).await.len();
    let job_before = get_job(&store, job.id).await;

    // A repeat of `first` with other content fails the whole batch.
    let fresh = task_req();
    let changed = CreateTaskRequest {
        task_type: Some("something.else".into()),
        ..first.clone()
    };
    assert_err!(
        store
            .add_tasks(job.id, new_tasks(vec![fresh.clone(), changed]))
            .await,
        Conflict
    );
    assert_err!(store.get_task(job.id, fresh.id.unwrap()).await, NotFound);

    // So does a task id another job uses, wherever it stands in the batch.
    let stolen = CreateTaskRequest {
        id: Some(other_tasks[0]),
        ..task_req()
    };
    let fresh2 = task_req();
    assert_err!(
        store
            .add_tasks(
                job.id,
                new_tasks(vec![fresh.clone(), fresh2.clone(), stolen])
            )
            .await,
        Conflict
    );
    for t in [&fresh, &fresh2] {
        assert_err!(store.get_task(job.id, t.id.unwrap()).await, NotFound);
    }

    assert_eq!(
        json(&get_job(&store, job.id).await),
        json(&job_before),
        "the job is unchanged"
    );
    assert_eq!(
        history(&store, HistoryScope::Job(job.id)).await.len(),
        events_before
    );
    assert_counters_match(&store, job.id).await;
    assert_eq!(
        assert_counters_match(&store, other_job.id)
            .await
            .tasks
            .total,
        1
    );

    // The refused ids are free: the same batch without the bad item goes through whole.
    let added = add(&store, job.id, vec![fresh, fresh2]).await;
    assert_eq!(added.len(), 2);
    assert_eq!(assert_counters_match(&store, job.id).await.tasks.total, 3);
}

async fn adding_the_same_tasks_again_returns_the_stored_ones_and_writes_nothing(
    store: Arc<dyn Store>,
) {
    let job = create(&store, job_req()).await;
    let a = CreateTaskRequest {
        meta: Some(serde_json::json!({"shard": 3, "b": [1, 2]})),
        start_time: Some(Timestamp::from_millis(1_650_000_000_000)),
        timeout_seconds: Some(30),
        ..task_req()
    };
    let b = task_req();
    let stored = add(&store, job.id, vec![a.clone(), b.clone()]).await;
    let job_after_add = get_job(&store, job.id).await;
    let events = history(&store, HistoryScope::Job(job.id)).await.len();

    let again = add(&store, job.id, vec![a.clone(), b.clone()]).await;
    assert_eq!(json(&again), json(&stored));
    // An omitted start_time matches the stored one.
    let a_no_start = CreateTaskRequest {
        start_time: None,
        ..a.clone()
    };
    let again = add(&store, job.id, vec![a_no_start]).await;
    assert_eq!(json(&again[0]), json(&stored[0]));
    assert_eq!(json(&get_job(&store, job.id).await), json(&job_after_add));
    assert_eq!(
        history(&store, HistoryScope::Job(job.id)).await.len(),
        events
    );

    // A repeat mixed with new tasks: the stored one as it is, the new one added.
    let c = task_req();
    let mixed = add(&store, job.id, vec![c.clone(), a.clone()]).await;
    assert_eq!(mixed[0].id, c.id.unwrap());
    assert_eq!(json(&mixed[1]), json(&stored[0]));
    let job_now = assert_counters_match(&store, job.id).await;
    assert_eq!(job_now.tasks.total, 3);
    assert_eq!(
        history(&store, HistoryScope::Job(job.id)).await.len(),
        events + 1
    );

    // A task without a client id is new each time.
    let anonymous = CreateTaskRequest {
        id: None,
        ..task_req()
    };
    let x = add(&store, job.id, vec![anonymous.clone()]).await;
    let y = add(&store, job.id, vec![anonymous]).await;
    assert_ne!(x[0].id, y[0].id);
    assert_eq!(assert_counters_match(&store, job.id).await.tasks.total, 5);
}

async fn adding_a_task_to_a_finished_job_is_a_conflict(store: Arc<dyn Store>) {
    // Finished by its tasks...
    let (done, tasks) = create_with_tasks(&store, job_req(), 1).await;
    set_task(&store, done.id, tasks[0], Status::Completed)
        .await
        .expect("complete");
    assert_eq!(get_job(&store, done.id).await.status, Status::Completed);
    let t = task_req();
    assert_err!(
        store.add_tasks(done.id, new_tasks(vec![t.clone()])).await,
        Conflict
    );
    assert_err!(store.get_task(done.id, t.id.unwrap()).await, NotFound);
    // ...or by a client.
    for status in [Status::Cancelled, Status::Failed, Status::Completed] {
        let job = create(&store, job_req()).await;
        store
            .set_job_status(job.id, status, None)
            .await
            .expect("set status");
        let t = task_req();
        assert_err!(
            store.add_tasks(job.id, new_tasks(vec![t.clone()])).await,
            Conflict
        );
        assert_err!(store.get_task(job.id, t.id.unwrap()).await, NotFound);
        assert_eq!(assert_counters_match(&store, job.id).await.tasks.total, 0);
    }
    // Repeating the add of a task it already has is answered from the store: retrying a
    // request is safe.
    let repeat = CreateTaskRequest {
        id: Some(tasks[0]),
        ..task_req()
    };
    let again = add(&store, done.id, vec![repeat]).await;
    assert_eq!(
        json(&again[0]),
        json(&get_task(&store, done.id, tasks[0]).await)
    );
    assert_eq!(again[0].status, Status::Completed);
}

async fn a_task_can_be_added_to_a_job_that_will_not_finish_by_itself(store: Arc<dyn Store>) {
    let (job, tasks) = create_with_tasks(
        &store,
        CreateJobRequest {
            auto_complete: Some(false),
            ..job_req()
        },
        1,
    )
    .await;
    set_task(&store, job.id, tasks[0], Status::Completed)
        .await
        .expect("complete");
    let job_now = get_job(&store, job.id).await;
    assert_eq!(
        job_now.status,
        Status::InProgress,
        "auto_complete off: not finished"
    );
    assert_eq!(job_now.end_time, None);
    let added = add(&store, job.id, vec![task_req()]).await;
    assert_eq!(added.len(), 1);
    let job_now = assert_counters_match(&store, job.id).await;
    assert_eq!(job_now.status, Status::InProgress);
    assert_eq!(job_now.tasks.pending, 1);
    assert_eq!(job_now.tasks.completed, 1);
}

async fn a_task_id_is_unique_across_jobs(store: Arc<dyn Store>) {
    let a = create(&store, job_req()).await;
    let b = create(&store, job_req()).await;
    let t = task_req();
    let t_id = t.id.unwrap();
    add(&store, a.id, vec![t.clone()]).await;

    // The very same content under another job is still a conflict.
    assert_err!(
        store.add_tasks(b.id, new_tasks(vec![t.clone()])).await,
        Conflict
    );
    assert_err!(store.get_task(b.id, t_id).await, NotFound);
    assert_eq!(get_task(&store, a.id, t_id).await.job_id, a.id);
    assert_eq!(assert_counters_match(&store, b.id).await.tasks.total, 0);
    assert_eq!(assert_counters_match(&store, a.id).await.tasks.total, 1);

    let mut c = job_req();
    let c_id = c.id.unwrap();
    c.tasks = Some(vec![t]);
    assert_err!(store.create_job(new_job(c)).await, Conflict);
    assert_err!(store.get_job(c_id).await, NotFound);
}
