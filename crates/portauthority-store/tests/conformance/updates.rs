//! Task updates: the transition rules, batches whose items stand on their own, no-ops that
//! write nothing, and counters that always equal a recount.

use crate::harness::*;
use portauthority_core::api::{CreateJobRequest, EventKind, Progress, Task};
use portauthority_core::{JobId, Status, TaskId};
use portauthority_store::{HistoryScope, Store, StoreError, TaskUpdate};
use std::sync::Arc;

conformance!(
    every_task_transition_follows_the_rules,
    a_retry_adds_an_attempt_and_clears_the_error,
    a_heartbeat_records_progress_and_is_refused_once_a_task_is_final,
    each_update_in_a_batch_stands_on_its_own_and_answers_in_request_order,
    an_update_that_changes_nothing_returns_the_task_unchanged_and_writes_no_history,
    the_counters_always_equal_a_recount_of_the_tasks,
);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// The task moves to the new status with a status_changed event.
    Moves,
    /// A retry of a failed task: moves, and `attempt` goes up.
    Retries,
    /// `in_progress` again: a heartbeat event, the status stays.
    Heartbeat,
    /// Nothing changes and nothing is written.
    NoOp,
    Conflict,
}

/// What DESIGN.md says a task in `from` does when asked to become `to`.
fn expected(from: Status, to: Status) -> Expect {
    use Status::*;
    match (from, to) {
        (InProgress, InProgress) => Expect::Heartbeat,
        (f, t) if f == t => Expect::NoOp,
        (Pending, _) => Expect::Moves,
        (InProgress, Pending) => Expect::Conflict,
        (InProgress, _) => Expect::Moves,
        (Failed, Pending | InProgress) => Expect::Retries,
        (Failed, _) | (Completed, _) | (Cancelled, _) => Expect::Conflict,
    }
}

async fn every_task_transition_follows_the_rules(store: Arc<dyn Store>) {
    let pairs: Vec<(Status, Status)> = Status::ALL
        .iter()
        .flat_map(|f| Status::ALL.iter().map(move |t| (*f, *t)))
        .collect();
    // auto_complete off keeps the job open whatever its tasks do, so every case can run
    // in one job.
    let (job, ids) = create_with_tasks(
        &store,
        CreateJobRequest {
            auto_complete: Some(false),
            ..job_req()
        },
        pairs.len(),
    )
    .await;
    for (&(from, to), &task_id) in pairs.iter().zip(&ids) {
        if from != Status::Pending {
            set_task(&store, job.id, task_id, from)
                .await
                .unwrap_or_else(|e| panic!("pending -> {from}: {e:?}"));
        }
        let before = get_task(&store, job.id, task_id).await;
        assert_eq!(before.status, from);
        let events_before = history(&store, HistoryScope::Task(job.id, task_id)).await;
        let result = set_task(&store, job.id, task_id, to).await;
        let after = get_task(&store, job.id, task_id).await;
        let events = history(&store, HistoryScope::Task(job.id, task_id)).await;
        let case = format!("{from} -> {to}");
        match expected(from, to) {
            Expect::Conflict => {
                assert!(
                    matches!(result, Err(StoreError::Conflict(_))),
                    "{case} is a conflict, got {result:?}"
                );
                assert_eq!(json(&after), json(&before), "{case}: the task is unchanged");
                assert_eq!(events.len(), events_before.len(), "{case}: no history");
            }
            Expect::NoOp => {
                let t = result.unwrap_or_else(|e| panic!("{case} is a no-op, got {e:?}"));
                assert_eq!(json(&t), json(&before), "{case}: returned unchanged");
                assert_eq!(json(&after), json(&before), "{case}: stored unchanged");
                assert_eq!(events.len(), events_before.len(), "{case}: no history");
            }
            Expect::Heartbeat => {
                let t = result.unwrap_or_else(|e| panic!("{case} is accepted, got {e:?}"));
                assert_eq!(t.status, Status::InProgress);
                assert_eq!(json(&after), json(&t), "{case}: stored as returned");
                assert_eq!(events.len(), events_before.len() + 1, "{case}: one event");
                assert_eq!(events.last().unwrap().kind, EventKind::Heartbeat, "{case}");
            }
            e @ (Expect::Moves | Expect::Retries) => {
                let t = result.unwrap_or_else(|e| panic!("{case} is accepted, got {e:?}"));
                assert_eq!(t.status, to, "{case}");
                assert_eq!(json(&after), json(&t), "{case}: stored as returned");
                assert_eq!(t.end_time.is_some(), to.is_terminal(), "{case}: end_time");
                let attempt = if e == Expect::Retries { 2 } else { 1 };
                assert_eq!(t.attempt, attempt, "{case}: attempt");
                assert!(t.updated_at >= before.updated_at, "{case}: updated_at");
                assert_eq!(events.len(), events_before.len() + 1, "{case}: one event");
                let last = events.last().unwrap();
                assert_eq!(last.kind, EventKind::StatusChanged, "{case}");
                assert_eq!((last.from, last.to), (Some(from), Some(to)), "{case}");
                assert_eq!(last.task_id, Some(task_id), "{case}");
            }
        }
    }
    let job = assert_counters_match(&store, job.id).await;
    assert_eq!(
        job.status,
        Status::InProgress,
        "auto_complete off: still open"
    );
}

async fn a_retry_adds_an_attempt_and_clears_the_error(store: Arc<dyn Store>) {
    let (job, ids) = create_with_tasks(&store, job_req(), 1).await;
    let t = ids[0];
    let p = Progress {
        current: 7,
        total: Some(9),
    };
    let failed = apply(
        &store,
        status_update(
            job.id,
            t,
            Status::Failed,
            Some("oom"),
            Some("killed"),
            Some(p),
        ),
    )
    .await
    .expect("fail");
    assert_eq!(failed.error.as_deref(), Some("killed"));
    assert!(failed.end_time.is_some());
    let retried = set_task(&store, job.id, t, Status::InProgress)
        .await
        .expect("retry");
    assert_eq!(retried.attempt, 2);
    assert_eq!(retried.error, None, "a retry clears the error");
    assert_eq!(retried.end_time, None, "a retry clears end_time");
    assert_eq!(json(&get_task(&store, job.id, t).await), json(&retried));
    set_task(&store, job.id, t, Status::Failed)
        .await
        .expect("fail again");
    let again = set_task(&store, job.id, t, Status::Pending)
        .await
        .expect("retry to pending");
    assert_eq!(again.attempt, 3);
    assert_eq!(again.status, Status::Pending);
    // A retry's own error is kept.
    set_task(&store, job.id, t, Status::Failed)
        .await
        .expect("fail a third time");
    let with_error = apply(
        &store,
        status_update(
            job.id,
            t,
            Status::Pending,
            None,
            Some("retrying after oom"),
            None,
        ),
    )
    .await
    .expect("retry with an error note");
    assert_eq!(with_error.attempt, 4);
    assert_eq!(with_error.error.as_deref(), Some("retrying after oom"));
    assert_counters_match(&store, job.id).await;
}

async fn a_heartbeat_records_progress_and_is_refused_once_a_task_is_final(store: Arc<dyn Store>) {
    let (job, ids) = create_with_tasks(&store, job_req(), 2).await;
    let (a, b) = (ids[0], ids[1]);
    let p = Progress {
        current: 1,
        total: Some(4),
    };
    // A heartbeat on a pending task records progress but does not start it.
    let t = apply(&store, TaskUpdate::heartbeat(job.id, a, Some(p)))
        .await
        .expect("heartbeat");
    assert_eq!(t.status, Status::Pending);
    assert_eq!(t.progress, Some(p));
    assert_eq!(json(&get_task(&store, job.id, a).await), json(&t));
    assert_eq!(get_job(&store, job.id).await.status, Status::Pending);

    set_task(&store, job.id, a, Status::InProgress)
        .await
        .expect("start");
    let p2 = Progress {
        current: 3,
        total: Some(4),
    };
    let hb = TaskUpdate {
        job_id: job.id,
        task_id: a,
        change: portauthority_core::TaskChange::Heartbeat {
            progress: Some(p2),
            message: Some("three down".into()),
        },
    };
    let t = apply(&store, hb).await.expect("heartbeat");
    assert_eq!(t.progress, Some(p2));
    // A heartbeat without progress keeps the last progress.
    let t = apply(&store, TaskUpdate::heartbeat(job.id, a, None))
        .await
        .expect("heartbeat");
    assert_eq!(t.progress, Some(p2));
    assert_eq!(t.status, Status::InProgress);

    let events = history(&store, HistoryScope::Task(job.id, a)).await;
    let beats: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::Heartbeat)
        .collect();
    assert_eq!(beats.len(), 3);
    assert_eq!(beats[0].progress, Some(p));
    assert_eq!(beats[1].progress, Some(p2));
    assert_eq!(beats[1].message.as_deref(), Some("three down"));
    assert_eq!(beats[2].progress, None);

    for (task, status) in [(a, Status::Completed), (b, Status::Cancelled)] {
        set_task(&store, job.id, task, status)
            .await
            .expect("finish");
        let before = get_task(&store, job.id, task).await;
        let n = history(&store, HistoryScope::Task(job.id, task))
            .await
            .len();
        assert_err!(
            apply(&store, TaskUpdate::heartbeat(job.id, task, Some(p))).await,
            Conflict
        );
        assert_eq!(json(&get_task(&store, job.id, task).await), json(&before));
        assert_eq!(
            history(&store, HistoryScope::Task(job.id, task))
                .await
                .len(),
            n
        );
    }
}

async fn each_update_in_a_batch_stands_on_its_own_and_answers_in_request_order(
    store: Arc<dyn Store>,
) {
    let (j1, t1) = create_with_tasks(&store, job_req(), 3).await;
    let (j2, t2) = create_with_tasks(&store, job_req(), 3).await;
    // Put the job with the larger id first: implementations may apply in id order, but
    // must answer in request order.
    let ((hi, hi_t), (lo, lo_t)) = if j1.id > j2.id {
        ((j1.id, t1), (j2.id, t2))
    } else {
        ((j2.id, t2), (j1.id, t1))
    };
    set_task(&store, hi, hi_t[2], Status::Completed)
        .await
        .expect("complete");
    let hi_done_before = get_task(&store, hi, hi_t[2]).await;

    let unknown_task = TaskId::from_uuid(uuid::Uuid::now_v7());
    let unknown_job = JobId::from_uuid(uuid::Uuid::now_v7());
    let batch = vec![
        TaskUpdate::status(hi, hi_t[0], Status::InProgress), // 0 ok
        TaskUpdate::status(hi, unknown_task, Status::Completed), // 1 not found
        TaskUpdate::status(lo, lo_t[0], Status::Completed),  // 2 ok
        TaskUpdate::status(hi, hi_t[2], Status::InProgress), // 3 conflict: completed is final
        TaskUpdate::status(lo, hi_t[1], Status::Completed),  // 4 not found: another job's task
        TaskUpdate::status(unknown_job, lo_t[1], Status::Failed), // 5 not found: no such job
        TaskUpdate::status(hi, hi_t[0], Status::Completed),  // 6 ok, after item 0
        TaskUpdate::status(lo, lo_t[1], Status::Pending),    // 7 no-op
        TaskUpdate::status(lo, lo_t[2], Status::Failed),     // 8 ok
    ];
    let results = store
        .update_tasks(batch.clone())
        .await
        .expect("the batch as a whole");
    assert_eq!(results.len(), batch.len(), "one result per update");
    let ok = |i: usize| -> &Task {
        match &results[i] {
            Ok(t) => t,
            Err(e) => panic!("item {i} succeeds, got {e:?}"),
        }
    };
    assert_eq!((ok(0).id, ok(0).status), (hi_t[0], Status::InProgress));
    assert_err!(results[1].clone(), NotFound);
    assert_eq!((ok(2).id, ok(2).status), (lo_t[0], Status::Completed));
    assert_err!(results[3].clone(), Conflict);
    assert_err!(results[4].clone(), NotFound);
    assert_err!(results[5].clone(), NotFound);
    assert_eq!((ok(6).id, ok(6).status), (hi_t[0], Status::Completed));
    assert_eq!((ok(7).id, ok(7).status), (lo_t[1], Status::Pending));
    assert_eq!((ok(8).id, ok(8).status), (lo_t[2], Status::Failed));

    // What succeeded is stored; what failed changed nothing.
    assert_eq!(json(&get_task(&store, hi, hi_t[0]).await), json(ok(6)));
    assert_eq!(json(&get_task(&store, lo, lo_t[0]).await), json(ok(2)));
    assert_eq!(json(&get_task(&store, lo, lo_t[2]).await), json(ok(8)));
    assert_eq!(
        json(&get_task(&store, hi, hi_t[2]).await),
        json(&hi_done_before)
    );
    assert_eq!(get_task(&store, hi, hi_t[1]).await.status, Status::Pending);
    assert_eq!(get_task(&store, lo, lo_t[1]).await.status, Status::Pending);
    let hi_job = assert_counters_match(&store, hi).await;
    let lo_job = assert_counters_match(&store, lo).await;
    assert_eq!((hi_job.tasks.completed, hi_job.tasks.pending), (2, 1));
    assert_eq!(
        (
            lo_job.tasks.completed,
            lo_job.tasks.failed,
            lo_job.tasks.pending
        ),
        (1, 1, 1)
    );
    assert_eq!(hi_job.status, Status::InProgress);
    assert_eq!(lo_job.status, Status::InProgress);

    // A batch in which everything fails is still answered item by item.
    let results = store
        .update_tasks(vec![
            TaskUpdate::status(unknown_job, unknown_task, Status::Completed),
            TaskUpdate::status(hi, hi_t[2], Status::Pending),
        ])
        .await
        .expect("the batch as a whole");
    assert_err!(results[0].clone(), NotFound);
    assert_err!(results[1].clone(), Conflict);
    let empty = store.update_tasks(vec![]).await.expect("an empty batch");
    assert!(empty.is_empty());
}

async fn an_update_that_changes_nothing_returns_the_task_unchanged_and_writes_no_history(
    store: Arc<dyn Store>,
) {
    let (job, ids) = create_with_tasks(&store, job_req(), 4).await;
    let finals = [
        (ids[0], Status::Pending),
        (ids[1], Status::Completed),
        (ids[2], Status::Failed),
        (ids[3], Status::Cancelled),
    ];
    for (t, status) in finals {
        if status != Status::Pending {
            apply(
                &store,
                status_update(job.id, t, status, Some("first"), Some("first error"), None),
            )
            .await
            .expect("set");
        }
    }
    let job_before = get_job(&store, job.id).await;
    let events_before = history(&store, HistoryScope::Job(job.id)).await;
    for (t, status) in finals {
        let before = get_task(&store, job.id, t).await;
        // The same status again, even with other reason, error and progress, is a no-op.
        let again = apply(
            &store,
            status_update(
                job.id,
                t,
                status,
                Some("again"),
                Some("another error"),
                Some(Progress {
                    current: 5,
                    total: None,
                }),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{status} again is a no-op, got {e:?}"));
        assert_eq!(
            json(&again),
            json(&before),
            "{status} again: returned unchanged"
        );
        assert_eq!(json(&get_task(&store, job.id, t).await), json(&before));
    }
    assert_eq!(
        json(&get_job(&store, job.id).await),
        json(&job_before),
        "job untouched"
    );
    let events = history(&store, HistoryScope::Job(job.id)).await;
    assert_eq!(json(&events), json(&events_before), "no history written");
}

/// A small deterministic generator, so a failure reproduces.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

async fn the_counters_always_equal_a_recount_of_the_tasks(store: Arc<dyn Store>) {
    let mut rng = Lcg(0x5eed);
    for auto_complete in [true, false] {
        let (job, mut ids) = create_with_tasks(
            &store,
            CreateJobRequest {
                auto_complete: Some(auto_complete),
                ..job_req()
            },
            8,
        )
        .await;
        for round in 0..40 {
            let batch: Vec<TaskUpdate> = (0..4)
                .map(|_| {
                    let t = ids[rng.next(ids.len())];
                    // Mostly forward moves and retries, with a few refused ones.
                    let to = Status::ALL[rng.next(Status::ALL.len())];
                    TaskUpdate::status(job.id, t, to)
                })
                .collect();
            let results = store
                .update_tasks(batch)
                .await
                .expect("the batch as a whole");
            for r in results {
                assert!(
                    matches!(r, Ok(_) | Err(StoreError::Conflict(_))),
                    "round {round}: only conflicts are refused, got {r:?}"
                );
            }
            let j = assert_counters_match(&store, job.id).await;
            assert_eq!(
                j.status,
                j.tasks.derived_status(auto_complete),
                "round {round}: the job's status follows its counters"
            );
            assert_eq!(
                j.end_time.is_some(),
                j.status.is_terminal(),
                "round {round}: end_time"
            );
            if round % 10 == 9 && !j.status.is_terminal() {
                let more = add(&store, job.id, vec![task_req(), task_req()]).await;
                ids.extend(more.iter().map(|t| t.id));
                assert_counters_match(&store, job.id).await;
            }
        }
    }
}
