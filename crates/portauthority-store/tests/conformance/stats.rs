//! `Store::stats`: jobs and tasks by status from the maintained counts, equal at every step
//! to a count of the rows (creates with tasks, adds, status changes, a job's cancel cascade,
//! a retry, a refused write, retention's deletes), and the outbox backlog with its age.

use crate::harness::*;
use portauthority_core::{Clock, Counters, RetentionPolicy, Status};
use portauthority_store::background::step_until_idle;
use portauthority_store::retention::Retention;
use portauthority_store::{JobFilter, Paging, Store};
use std::sync::Arc;
use std::time::Duration;

conformance_ctx!(stats_count_jobs_and_tasks_by_status_as_they_change_and_go);

/// Jobs and tasks by status, counted from the rows.
async fn recount(store: &Arc<dyn Store>) -> (Counters, Counters) {
    let page = store
        .list_jobs(
            JobFilter::default(),
            Paging {
                size: 1000,
                ..Paging::default()
            },
        )
        .await
        .expect("list_jobs");
    let mut tasks = Vec::new();
    for j in &page.items {
        tasks.extend(all_tasks(store, j.id).await.into_iter().map(|t| t.status));
    }
    (
        Counters::recount(page.items.iter().map(|j| j.status)),
        Counters::recount(tasks),
    )
}

async fn assert_counts(store: &Arc<dyn Store>, when: &str) {
    let stats = store.stats().await.expect("stats");
    let (jobs, tasks) = recount(store).await;
    assert_eq!(stats.jobs, jobs, "jobs by status {when}");
    assert_eq!(stats.tasks, tasks, "tasks by status {when}");
}

async fn stats_count_jobs_and_tasks_by_status_as_they_change_and_go(
    store: Arc<dyn Store>,
    ctx: Ctx,
) {
    let empty = store.stats().await.expect("stats");
    assert_eq!(
        (empty.jobs, empty.tasks),
        (Counters::default(), Counters::default())
    );
    assert_eq!((empty.outbox_pending, empty.outbox_oldest), (0, None));

    let (a, a_tasks) = create_with_tasks(&store, job_req(), 3).await;
    let (b, b_tasks) = create_with_tasks(&store, job_req(), 2).await;
    let c = create(&store, job_req()).await;
    assert_counts(&store, "after creates with tasks").await;
    let stats = store.stats().await.expect("stats");
    assert!(
        stats.outbox_pending > 0,
        "created events wait in the outbox"
    );
    assert_eq!(
        stats.outbox_pending,
        store.outbox_backlog().await.expect("backlog")
    );
    let oldest = stats.outbox_oldest.expect("an oldest event");
    assert!(
        oldest <= ctx.clock.now(),
        "the oldest waiting event is not in the future"
    );

    add(&store, c.id, vec![task_req(), task_req()]).await;
    set_task(&store, a.id, a_tasks[0], Status::InProgress)
        .await
        .expect("start");
    set_task(&store, a.id, a_tasks[1], Status::Completed)
        .await
        .expect("complete");
    set_task(&store, a.id, a_tasks[2], Status::Failed)
        .await
        .expect("fail");
    assert_counts(&store, "after status changes").await;

    // A refused change and a heartbeat move nothing.
    set_task(&store, a.id, a_tasks[1], Status::Pending)
        .await
        .expect_err("completed is final");
    assert_counts(&store, "after a refused change").await;

    // A retry reopens; a job's cancel cascades to its open tasks.
    set_task(&store, a.id, a_tasks[2], Status::Pending)
        .await
        .expect("retry");
    store
        .set_job_status(b.id, Status::Cancelled, Some("stop".into()))
        .await
        .expect("cancel");
    assert_counts(&store, "after a retry and a cancel cascade").await;
    let _ = b_tasks;

    // Retention deletes the cancelled job with its tasks; the counts follow.
    ctx.clock.advance_ms(120_000);
    let policy = RetentionPolicy {
        cancelled: Some(Duration::from_secs(60)),
        ..RetentionPolicy::default()
    };
    let retention = Retention::new(store.clone(), policy);
    assert_eq!(step_until_idle(&retention, 10).await.expect("steps"), 1);
    assert!(store.get_job(b.id).await.is_err(), "deleted");
    assert_counts(&store, "after retention").await;
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.tasks.total, 5, "a's three and c's two");
}
