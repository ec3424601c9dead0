//! Retention by outcome: a step deletes exactly the terminal jobs whose outcome's retention
//! has passed since their end, with everything that hangs off them, and the stored counts
//! behind list totals follow.

use crate::harness::*;
use portauthority_core::api::{CreateJobRequest, EventKind, Job};
use portauthority_core::plan::published;
use portauthority_core::validate::meta_filter_values;
use portauthority_core::{Clock, JobId, RetentionPolicy, Status, TaskId};
use portauthority_store::background::step_until_idle;
use portauthority_store::retention::Retention;
use portauthority_store::{HistoryScope, JobFilter, Loop, Paging, Store, TaskUpdate};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;

conformance_ctx!(
    a_retention_step_deletes_exactly_the_expired_terminal_jobs_of_each_outcome,
    retention_deletes_in_batches_while_writers_change_other_jobs,
);

fn team(name: &str) -> CreateJobRequest {
    CreateJobRequest {
        meta: Some(serde_json::json!({ "team": name })),
        ..job_req()
    }
}

fn all() -> Paging {
    Paging {
        size: 1000,
        ..Paging::default()
    }
}

/// Ids and `total_items` of a list.
async fn listed(store: &Arc<dyn Store>, filter: JobFilter) -> (BTreeSet<JobId>, u64) {
    let page = store.list_jobs(filter, all()).await.expect("list_jobs");
    (page.items.iter().map(|j| j.id).collect(), page.total_items)
}

/// Every list this suite checks counts exactly the jobs of `expected` it holds: the whole
/// list, each status, the meta value, the namespace, and meta with a status.
async fn assert_lists_hold(store: &Arc<dyn Store>, expected: &[Job]) {
    let ids = |f: &dyn Fn(&Job) -> bool| -> BTreeSet<JobId> {
        expected.iter().filter(|j| f(j)).map(|j| j.id).collect()
    };
    let is_atlas = |j: &Job| j.meta.get().contains("atlas");
    let atlas = || vec![("team".to_owned(), meta_filter_values("atlas"))];
    let mut cases: Vec<(JobFilter, BTreeSet<JobId>)> = vec![
        (JobFilter::default(), ids(&|_| true)),
        (
            JobFilter {
                meta: atlas(),
                ..JobFilter::default()
            },
            ids(&is_atlas),
        ),
        (
            JobFilter {
                namespace: Some("com.example.conformance".into()),
                ..JobFilter::default()
            },
            ids(&|_| true),
        ),
    ];
    for s in Status::ALL {
        cases.push((
            JobFilter {
                statuses: vec![s],
                ..JobFilter::default()
            },
            ids(&|j| j.status == s),
        ));
        cases.push((
            JobFilter {
                statuses: vec![s],
                meta: atlas(),
                ..JobFilter::default()
            },
            ids(&|j| j.status == s && is_atlas(j)),
        ));
    }
    for (filter, want) in cases {
        let (got, total) = listed(store, filter.clone()).await;
        assert_eq!(got, want, "the jobs of {filter:?}");
        assert_eq!(total, want.len() as u64, "total_items of {filter:?}");
    }
}

/// How many of a job's events went to the outbox.
async fn published_events(store: &Arc<dyn Store>, job: JobId) -> u64 {
    history(store, HistoryScope::Job(job))
        .await
        .iter()
        .filter(|e| published(e.kind))
        .count() as u64
}

async fn finish_all(store: &Arc<dyn Store>, job: JobId, tasks: &[TaskId], to: Status) {
    let updates = tasks
        .iter()
        .map(|t| TaskUpdate::status(job, *t, to))
        .collect();
    for r in store.update_tasks(updates).await.expect("update_tasks") {
        r.expect("a task finishes");
    }
}

/// A job with `n` tasks that all end `to`, now.
async fn ended(store: &Arc<dyn Store>, req: CreateJobRequest, n: usize, to: Status) -> JobId {
    let (job, tasks) = create_with_tasks(store, req, n).await;
    finish_all(store, job.id, &tasks, to).await;
    job.id
}

async fn a_retention_step_deletes_exactly_the_expired_terminal_jobs_of_each_outcome(
    store: Arc<dyn Store>,
    ctx: Ctx,
) {
    let policy = RetentionPolicy {
        completed: Some(Duration::from_secs(60)),
        failed: Some(Duration::from_secs(120)),
        cancelled: None,
    };
    // Ended at t0.
    let (c_old, c_old_tasks) = create_with_tasks(&store, team("atlas"), 2).await;
    finish_all(&store, c_old.id, &c_old_tasks, Status::Completed).await;
    let f_old = ended(&store, team("zephyr"), 1, Status::Failed).await;
    let x_old = create_with_tasks(&store, team("atlas"), 1).await.0.id;
    store
        .set_job_status(x_old, Status::Cancelled, Some("no longer needed".into()))
        .await
        .expect("cancel");
    let (explicit, explicit_tasks) = create_with_tasks(
        &store,
        CreateJobRequest {
            auto_complete: Some(false),
            ..team("atlas")
        },
        1,
    )
    .await;
    finish_all(&store, explicit.id, &explicit_tasks, Status::Completed).await;
    store
        .set_job_status(explicit.id, Status::Completed, None)
        .await
        .expect("complete explicitly");
    // Never terminal: open, pending, and finished tasks that do not end the job.
    let (running, running_tasks) = create_with_tasks(&store, team("atlas"), 1).await;
    set_task(&store, running.id, running_tasks[0], Status::InProgress)
        .await
        .expect("start");
    let pending = create(&store, team("zephyr")).await.id;
    let open_ended = ended(
        &store,
        CreateJobRequest {
            auto_complete: Some(false),
            ..team("atlas")
        },
        1,
        Status::Completed,
    )
    .await;
    ctx.clock.advance_ms(100_000);
    let c_mid = ended(&store, team("atlas"), 1, Status::Completed).await;
    let f_mid = ended(&store, team("atlas"), 1, Status::Failed).await;
    ctx.clock.advance_ms(30_000);
    let c_new = ended(&store, team("zephyr"), 1, Status::Completed).await;

    // A relay holds every job's outbox rows.
    let claimed = store
        .claim_outbox("relay-x", 100, Duration::from_secs(3600))
        .await
        .expect("claim");
    assert!(!claimed.is_empty());
    let backlog = store.outbox_backlog().await.expect("backlog");

    let doomed = [c_old.id, f_old, explicit.id];
    let kept_ids = [x_old, running.id, pending, open_ended, c_mid, f_mid, c_new];
    let now = ctx.clock.now();
    let mut kept = Vec::new();
    for id in kept_ids {
        let job = get_job(&store, id).await;
        assert!(
            !policy.expired(job.status, job.end_time, now),
            "job {id} ({}) is kept",
            job.status
        );
        kept.push(job);
    }
    let mut doomed_rows = 0;
    for id in doomed {
        let job = get_job(&store, id).await;
        assert!(
            policy.expired(job.status, job.end_time, now),
            "{id} expired"
        );
        doomed_rows += published_events(&store, id).await;
    }

    // A run-once key of a doomed job (a bus command's) goes with the job.
    let key = || portauthority_store::Once {
        key: "bus:/retention:1".into(),
        fingerprint: String::new(),
        keep_answer: false,
    };
    let note = || {
        portauthority_core::Command::AddNote(portauthority_core::NewNote {
            job_id: c_old.id,
            task_id: None,
            message: "before".into(),
            data: None,
        })
    };
    store.run_once(key(), note()).await.expect("a keyed note");

    let retention = Retention::new(store.clone(), policy).with_batch(2);
    assert_eq!(
        step_until_idle(&retention, 100).await.expect("steps"),
        2,
        "three jobs in batches of two"
    );
    for id in doomed {
        assert_err!(store.get_job(id).await, NotFound);
        assert_err!(store.history(HistoryScope::Job(id), 0, 10).await, NotFound);
    }
    for t in &c_old_tasks {
        assert_err!(store.get_task(c_old.id, *t).await, NotFound);
    }
    for job in &kept {
        assert_eq!(
            json(&get_job(&store, job.id).await),
            json(job),
            "kept as it was"
        );
    }
    assert_lists_hold(&store, &kept).await;
    assert_eq!(
        store.outbox_backlog().await.expect("backlog"),
        backlog - doomed_rows,
        "the deleted jobs' outbox rows are gone, the others wait"
    );
    assert!(
        !retention.step().await.expect("step"),
        "nothing left to delete"
    );

    // The deleted job's lease went with it: its id, registered again, is relayed at once
    // by another relay (the first one's leases on the kept jobs still hold).
    create(
        &store,
        CreateJobRequest {
            id: Some(c_old.id),
            ..team("atlas")
        },
    )
    .await;
    let items = store
        .claim_outbox("relay-y", 100, Duration::from_secs(30))
        .await
        .expect("claim");
    let jobs: BTreeSet<JobId> = items.iter().map(|i| i.event.job_id).collect();
    assert_eq!(jobs, BTreeSet::from([c_old.id]));
    assert_eq!(items[0].event.kind, EventKind::Created);
    let again = store.run_once(key(), note()).await.expect("the key again");
    assert!(!again.replayed(), "the deleted job's keys went with it");
    assert_eq!(
        store
            .delete_expired_jobs(&[], 10)
            .await
            .expect("no cutoffs"),
        0,
        "without a retention nothing expires"
    );
}

async fn retention_deletes_in_batches_while_writers_change_other_jobs(
    store: Arc<dyn Store>,
    ctx: Ctx,
) {
    const EXPIRED: usize = 40;
    const WRITERS: usize = 6;
    const TASKS: usize = 10;
    let policy = RetentionPolicy {
        completed: Some(Duration::from_secs(60)),
        failed: Some(Duration::from_secs(60)),
        cancelled: Some(Duration::from_secs(60)),
    };
    let outcomes = [Status::Completed, Status::Failed, Status::Cancelled];
    let mut expired = Vec::new();
    for i in 0..EXPIRED {
        let team_name = if i % 2 == 0 { "atlas" } else { "zephyr" };
        expired.push(ended(&store, team(team_name), 3, outcomes[i % 3]).await);
    }
    let mut live = Vec::new();
    for i in 0..WRITERS {
        let team_name = if i % 2 == 0 { "atlas" } else { "zephyr" };
        live.push(create_with_tasks(&store, team(team_name), TASKS).await);
    }
    ctx.clock.advance_ms(600_000);

    let barrier = Arc::new(Barrier::new(WRITERS + 1));
    let mut writers = tokio::task::JoinSet::new();
    for (w, (job, tasks)) in live.iter().cloned().enumerate() {
        let (store, barrier) = (store.clone(), barrier.clone());
        writers.spawn(async move {
            barrier.wait().await;
            for (i, t) in tasks.iter().enumerate() {
                let end = if i == 0 && w % 2 == 0 {
                    Status::Failed
                } else {
                    Status::Completed
                };
                for step in [
                    TaskUpdate::status(job.id, *t, Status::InProgress),
                    TaskUpdate::heartbeat(job.id, *t, None),
                    TaskUpdate::status(job.id, *t, end),
                ] {
                    apply(&store, step).await.expect("a writer's update");
                }
                store
                    .add_note(portauthority_store::NewNote {
                        job_id: job.id,
                        task_id: Some(*t),
                        message: format!("writer {w}"),
                        data: None,
                    })
                    .await
                    .expect("a writer's note");
            }
        });
    }
    let retention = {
        let (store, barrier) = (store.clone(), barrier.clone());
        tokio::spawn(async move {
            let retention = Retention::new(store, policy).with_batch(5);
            barrier.wait().await;
            step_until_idle(&retention, 100).await.expect("steps")
        })
    };
    while let Some(r) = writers.join_next().await {
        r.expect("every writer succeeds");
    }
    assert_eq!(
        retention.await.expect("retention"),
        EXPIRED / 5,
        "batches of five"
    );
    for id in &expired {
        assert_err!(store.get_job(*id).await, NotFound);
    }
    let mut kept = Vec::new();
    let mut statuses: HashMap<Status, usize> = HashMap::new();
    for (w, (job, _)) in live.iter().enumerate() {
        let job = assert_counters_match(&store, job.id).await;
        let want = if w % 2 == 0 {
            Status::Failed
        } else {
            Status::Completed
        };
        assert_eq!(job.status, want, "job of writer {w}");
        *statuses.entry(job.status).or_default() += 1;
        kept.push(job);
    }
    assert_lists_hold(&store, &kept).await;
    // They ended now: kept until a minute from now.
    let retention = Retention::new(store.clone(), policy);
    assert!(!retention.step().await.expect("step"));
    ctx.clock.advance_ms(60_001);
    assert!(retention.step().await.expect("step"));
    assert_lists_hold(&store, &[]).await;
    assert_eq!(statuses.get(&Status::Failed), Some(&(WRITERS / 2)));
}
