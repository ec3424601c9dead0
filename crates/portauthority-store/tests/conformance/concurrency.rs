//! Concurrent writers: no errors, no lost updates, exact counters. On PostgreSQL this
//! exercises row locking and retries; on SQLite the single writer's group commit. Also the
//! store's health: `ping`, and refusing work once closed.

use crate::harness::*;
use portauthority_core::api::{EventKind, Progress};
use portauthority_core::{Counters, Status, TaskId};
use portauthority_store::{HistoryScope, Store, StoreError, TaskUpdate};
use std::sync::Arc;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

conformance!(
    sixteen_concurrent_writers_on_one_job_all_apply_with_exact_counters,
    concurrent_batches_on_one_job_all_apply_with_exact_counters,
    concurrent_creates_of_one_job_id_create_it_once,
    concurrent_adds_of_one_task_id_add_it_once,
    a_store_answers_ping,
    a_closed_store_is_unavailable,
);

const WRITERS: usize = 16;
const TASKS_PER_WRITER: usize = 4;

async fn sixteen_concurrent_writers_on_one_job_all_apply_with_exact_counters(
    store: Arc<dyn Store>,
) {
    let (job, ids) = create_with_tasks(&store, job_req(), WRITERS * TASKS_PER_WRITER).await;
    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut writers = JoinSet::new();
    for (w, chunk) in ids.chunks(TASKS_PER_WRITER).enumerate() {
        let (store, barrier, chunk) = (store.clone(), barrier.clone(), chunk.to_vec());
        writers.spawn(async move {
            barrier.wait().await;
            for (i, &t) in chunk.iter().enumerate() {
                // The last task of every writer fails; the others complete.
                let end = if i + 1 == chunk.len() {
                    Status::Failed
                } else {
                    Status::Completed
                };
                let steps = [
                    TaskUpdate::status(job.id, t, Status::InProgress),
                    TaskUpdate::heartbeat(
                        job.id,
                        t,
                        Some(Progress {
                            current: w as u64,
                            total: Some(WRITERS as u64),
                        }),
                    ),
                    TaskUpdate::status(job.id, t, end),
                ];
                for step in steps {
                    let results = store
                        .update_tasks(vec![step])
                        .await
                        .unwrap_or_else(|e| panic!("writer {w}: the call failed: {e:?}"));
                    for r in results {
                        r.unwrap_or_else(|e| panic!("writer {w}: an update failed: {e:?}"));
                    }
                }
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("a writer finished");
    }
    let total = (WRITERS * TASKS_PER_WRITER) as i64;
    let job_now = assert_counters_match(&store, job.id).await;
    assert_eq!(
        job_now.tasks,
        Counters {
            total,
            completed: total - WRITERS as i64,
            failed: WRITERS as i64,
            ..Counters::default()
        }
    );
    assert_eq!(job_now.status, Status::Failed, "all finished, some failed");
    assert!(job_now.end_time.is_some());
    for t in all_tasks(&store, job.id).await {
        assert!(t.status.is_terminal());
        assert_eq!(t.attempt, 1);
        assert!(t.progress.is_some(), "the heartbeat's progress was kept");
    }
    assert_history_of_a_finished_run(&store, job.id, &ids, 3).await;
}

async fn concurrent_batches_on_one_job_all_apply_with_exact_counters(store: Arc<dyn Store>) {
    let (job, ids) = create_with_tasks(&store, job_req(), WRITERS * TASKS_PER_WRITER).await;
    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut writers = JoinSet::new();
    for (w, chunk) in ids.chunks(TASKS_PER_WRITER).enumerate() {
        let (store, barrier, chunk) = (store.clone(), barrier.clone(), chunk.to_vec());
        writers.spawn(async move {
            barrier.wait().await;
            for to in [Status::InProgress, Status::Completed] {
                let batch = chunk
                    .iter()
                    .map(|&t| TaskUpdate::status(job.id, t, to))
                    .collect::<Vec<_>>();
                let results = store
                    .update_tasks(batch)
                    .await
                    .unwrap_or_else(|e| panic!("writer {w}: the call failed: {e:?}"));
                assert_eq!(results.len(), chunk.len());
                for (r, t) in results.into_iter().zip(&chunk) {
                    let task = r.unwrap_or_else(|e| panic!("writer {w}: an update failed: {e:?}"));
                    assert_eq!((task.id, task.status), (*t, to), "results in request order");
                }
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("a writer finished");
    }
    let total = (WRITERS * TASKS_PER_WRITER) as i64;
    let job_now = assert_counters_match(&store, job.id).await;
    assert_eq!(
        job_now.tasks,
        Counters {
            total,
            completed: total,
            ..Counters::default()
        }
    );
    assert_eq!(job_now.status, Status::Completed);
    assert_history_of_a_finished_run(&store, job.id, &ids, 2).await;
}

/// Every task has its task_added event and `per_task` more; the job went pending →
/// in_progress → finished exactly once each.
async fn assert_history_of_a_finished_run(
    store: &Arc<dyn Store>,
    job: portauthority_core::JobId,
    ids: &[TaskId],
    per_task: usize,
) {
    let events = history_paged(store, HistoryScope::Job(job), 1000).await;
    assert_increasing(&events);
    assert_eq!(
        events.len(),
        1 + ids.len() * (1 + per_task) + 2,
        "no event lost or doubled"
    );
    let job_changes: Vec<_> = events
        .iter()
        .filter(|e| e.task_id.is_none() && e.kind == EventKind::StatusChanged)
        .map(|e| (e.from, e.to))
        .collect();
    assert_eq!(job_changes.len(), 2, "{job_changes:?}");
    assert_eq!(
        job_changes[0],
        (Some(Status::Pending), Some(Status::InProgress))
    );
    for t in ids {
        let own = events.iter().filter(|e| e.task_id == Some(*t)).count();
        assert_eq!(own, 1 + per_task, "task {t}");
    }
}

async fn concurrent_creates_of_one_job_id_create_it_once(store: Arc<dyn Store>) {
    let mut req = job_req();
    req.tasks = Some(vec![task_req(), task_req()]);
    let id = req.id.unwrap();
    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut creators = JoinSet::new();
    for _ in 0..WRITERS {
        let (store, barrier, job) = (store.clone(), barrier.clone(), new_job(req.clone()));
        creators.spawn(async move {
            barrier.wait().await;
            store.create_job(job).await
        });
    }
    let mut created = 0;
    let mut jobs = Vec::new();
    while let Some(done) = creators.join_next().await {
        let c = done.expect("a creator finished").expect("create_job");
        created += usize::from(c.created);
        jobs.push(c.value);
    }
    assert_eq!(created, 1, "exactly one call created the job");
    let stored = assert_counters_match(&store, id).await;
    assert_eq!(stored.tasks.total, 2);
    for j in &jobs {
        assert_eq!(j.id, id);
        assert_eq!(
            j.created_at, stored.created_at,
            "every answer is the one job"
        );
    }
    assert_eq!(history(&store, HistoryScope::Job(id)).await.len(), 3);
}

async fn concurrent_adds_of_one_task_id_add_it_once(store: Arc<dyn Store>) {
    let job = create(&store, job_req()).await;
    let other = create(&store, job_req()).await;
    let t = task_req();
    let t_id = t.id.unwrap();
    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut adders = JoinSet::new();
    for i in 0..WRITERS {
        // A few try to put the same task id under another job.
        let target = if i % 4 == 3 { other.id } else { job.id };
        let (store, barrier, tasks) = (store.clone(), barrier.clone(), new_tasks(vec![t.clone()]));
        adders.spawn(async move {
            barrier.wait().await;
            (target, store.add_tasks(target, tasks).await)
        });
    }
    let mut winners = Vec::new();
    while let Some(done) = adders.join_next().await {
        let (target, result) = done.expect("an adder finished");
        match result {
            Ok(tasks) => {
                assert_eq!(tasks.len(), 1);
                assert_eq!(tasks[0].job_id, target);
                winners.push(target);
            }
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("only conflicts are refused, got {e:?}"),
        }
    }
    winners.sort();
    winners.dedup();
    assert_eq!(winners.len(), 1, "the task belongs to one job: {winners:?}");
    let owner = winners[0];
    assert_eq!(get_task(&store, owner, t_id).await.job_id, owner);
    let a = assert_counters_match(&store, job.id).await;
    let b = assert_counters_match(&store, other.id).await;
    assert_eq!(a.tasks.total + b.tasks.total, 1, "added exactly once");
    let added_events = history(&store, HistoryScope::Job(owner))
        .await
        .iter()
        .filter(|e| e.kind == EventKind::TaskAdded)
        .count();
    assert_eq!(added_events, 1);
}

async fn a_store_answers_ping(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
    // Also while it has data and after writes.
    create_with_tasks(&store, job_req(), 3).await;
    store.ping().await.expect("ping");
}

async fn a_closed_store_is_unavailable(store: Arc<dyn Store>) {
    let job = create(&store, job_req()).await;
    store.close().await;
    assert_err!(store.ping().await, Unavailable);
    assert_err!(store.create_job(new_job(job_req())).await, Unavailable);
    assert_err!(
        store.set_job_status(job.id, Status::Cancelled, None).await,
        Unavailable
    );
}
