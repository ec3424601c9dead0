//! An unknown job or task, or a task asked for under another job, is `NotFound` in every
//! method, and such a call changes nothing.

use crate::harness::*;
use portauthority_core::{JobId, Status, TaskId};
use portauthority_store::{HistoryScope, NewNote, Paging, Store, TaskFilter, TaskUpdate};
use std::sync::Arc;

conformance!(
    an_unknown_job_is_not_found_by_every_method,
    an_unknown_task_is_not_found_by_every_method,
    a_task_asked_for_under_another_job_is_not_found_and_untouched,
);

async fn an_unknown_job_is_not_found_by_every_method(store: Arc<dyn Store>) {
    // A store with data in it, so that "not found" is not just "empty".
    let (known, known_tasks) = create_with_tasks(&store, job_req(), 1).await;
    let job = JobId::from_uuid(uuid::Uuid::now_v7());
    let task = TaskId::from_uuid(uuid::Uuid::now_v7());
    assert_err!(store.get_job(job).await, NotFound);
    assert_err!(
        store
            .list_tasks(job, TaskFilter::default(), Paging::default())
            .await,
        NotFound
    );
    for status in [Status::Completed, Status::Failed, Status::Cancelled] {
        assert_err!(store.set_job_status(job, status, None).await, NotFound);
    }
    let t = task_req();
    assert_err!(
        store.add_tasks(job, new_tasks(vec![t.clone()])).await,
        NotFound
    );
    assert_err!(store.get_task(job, task).await, NotFound);
    assert_err!(store.get_task(job, known_tasks[0]).await, NotFound);
    assert_err!(
        set_task(&store, job, task, Status::Completed).await,
        NotFound
    );
    assert_err!(
        apply(&store, TaskUpdate::heartbeat(job, task, None)).await,
        NotFound
    );
    assert_err!(
        store.history(HistoryScope::Job(job), 0, 100).await,
        NotFound
    );
    assert_err!(
        store.history(HistoryScope::Task(job, task), 0, 100).await,
        NotFound
    );
    let note = |task_id| NewNote {
        job_id: job,
        task_id,
        message: "hello".into(),
        data: None,
    };
    assert_err!(store.add_note(note(None)).await, NotFound);
    assert_err!(store.add_note(note(Some(task))).await, NotFound);

    // None of it created anything: the refused task id is still free.
    assert_err!(store.get_job(job).await, NotFound);
    let later = add(&store, known.id, vec![t]).await;
    assert_eq!(later[0].job_id, known.id);
    assert_eq!(assert_counters_match(&store, known.id).await.tasks.total, 2);
}

async fn an_unknown_task_is_not_found_by_every_method(store: Arc<dyn Store>) {
    let (job, _) = create_with_tasks(&store, job_req(), 1).await;
    let job_before = get_job(&store, job.id).await;
    let events_before = history(&store, HistoryScope::Job(job.id)).await.len();
    let task = TaskId::from_uuid(uuid::Uuid::now_v7());
    assert_err!(store.get_task(job.id, task).await, NotFound);
    for status in Status::ALL {
        assert_err!(set_task(&store, job.id, task, status).await, NotFound);
    }
    assert_err!(
        apply(&store, TaskUpdate::heartbeat(job.id, task, None)).await,
        NotFound
    );
    assert_err!(
        store
            .history(HistoryScope::Task(job.id, task), 0, 100)
            .await,
        NotFound
    );
    assert_err!(
        store
            .add_note(NewNote {
                job_id: job.id,
                task_id: Some(task),
                message: "hello".into(),
                data: None,
            })
            .await,
        NotFound
    );
    assert_eq!(
        json(&get_job(&store, job.id).await),
        json(&job_before),
        "unchanged"
    );
    assert_eq!(
        history(&store, HistoryScope::Job(job.id)).await.len(),
        events_before
    );
}

async fn a_task_asked_for_under_another_job_is_not_found_and_untouched(store: Arc<dyn Store>) {
    let (owner, owner_tasks) = create_with_tasks(&store, job_req(), 1).await;
    let (other, _) = create_with_tasks(&store, job_req(), 1).await;
    let t = owner_tasks[0];
    let task_before = get_task(&store, owner.id, t).await;
    let owner_events = history(&store, HistoryScope::Job(owner.id)).await.len();
    let other_events = history(&store, HistoryScope::Job(other.id)).await.len();

    assert_err!(store.get_task(other.id, t).await, NotFound);
    assert_err!(
        set_task(&store, other.id, t, Status::Completed).await,
        NotFound
    );
    assert_err!(
        apply(&store, TaskUpdate::heartbeat(other.id, t, None)).await,
        NotFound
    );
    assert_err!(
        store.history(HistoryScope::Task(other.id, t), 0, 100).await,
        NotFound
    );
    assert_err!(
        store
            .add_note(NewNote {
                job_id: other.id,
                task_id: Some(t),
                message: "hello".into(),
                data: None,
            })
            .await,
        NotFound
    );
    let listed = store
        .list_tasks(other.id, TaskFilter::default(), Paging::default())
        .await
        .expect("list_tasks");
    assert!(listed.items.iter().all(|x| x.id != t));

    assert_eq!(
        json(&get_task(&store, owner.id, t).await),
        json(&task_before)
    );
    assert_eq!(
        history(&store, HistoryScope::Job(owner.id)).await.len(),
        owner_events
    );
    assert_eq!(
        history(&store, HistoryScope::Job(other.id)).await.len(),
        other_events
    );
    assert_eq!(
        json(&assert_counters_match(&store, owner.id).await),
        json(&owner)
    );
    assert_eq!(
        json(&assert_counters_match(&store, other.id).await),
        json(&other)
    );
}
