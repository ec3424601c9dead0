//! Creating and reading jobs: every field round-trips, creates are idempotent on the id,
//! and a job is created with its tasks atomically.

use crate::harness::*;
use portauthority_core::api::{CreateJobRequest, EventKind};
use portauthority_core::{Counters, JobId, Status, TaskId, Timestamp};
use portauthority_store::{HistoryScope, JobFilter, Paging, Store};
use std::sync::Arc;

conformance!(
    a_created_job_reads_back_with_every_field,
    a_job_without_optional_fields_gets_the_defaults,
    a_created_task_reads_back_with_every_field,
    times_are_kept_to_the_millisecond,
    creating_the_same_job_again_returns_the_stored_one,
    creating_a_job_id_again_with_other_content_is_a_conflict,
    a_job_without_a_client_id_is_created_anew_each_time,
    creating_a_job_with_a_task_id_another_job_uses_is_a_conflict_and_creates_nothing,
);

/// Meta with nested values and keys out of alphabetical order: the stored text must be
/// this, byte for byte.
const META: &str = r#"{"zeta":1,"alpha":{"y":[1,2.5,{"b":true,"a":null}],"x":"s"},"mid":"ünïcode ✓ \"quoted\"","n":-1.5}"#;

fn meta() -> serde_json::Value {
    serde_json::from_str(META).expect("valid meta")
}

async fn a_created_job_reads_back_with_every_field(store: Arc<dyn Store>) {
    let id = JobId::from_uuid(uuid::Uuid::now_v7());
    let start = Timestamp::from_millis(1_600_409_367_133);
    let before = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    let created = store
        .create_job(new_job(CreateJobRequest {
            id: Some(id),
            correlation_id: Some("corr-42".into()),
            job_type: Some("com.shipyard.build".into()),
            namespace: Some("com.shipyard".into()),
            meta: Some(meta()),
            auto_complete: Some(false),
            start_time: Some(start),
            timeout_seconds: Some(3600),
            tasks: None,
        }))
        .await
        .expect("create_job");
    let after = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    assert!(created.created);
    let job = &created.value;
    assert_eq!(job.id, id);
    assert_eq!(job.correlation_id.as_deref(), Some("corr-42"));
    assert_eq!(job.job_type, "com.shipyard.build");
    assert_eq!(job.namespace, "com.shipyard");
    assert_eq!(job.status, Status::Pending);
    assert_eq!(job.start_time, start);
    assert_eq!(job.end_time, None);
    assert_eq!(job.timeout_seconds, Some(3600));
    assert_eq!(job.tasks, Counters::default());
    assert_eq!(
        job.meta.get(),
        META,
        "meta is stored as sent, key order included"
    );
    assert!(!job.auto_complete);
    assert_between(job.created_at, before, after, "created_at");
    assert_eq!(job.updated_at, job.created_at);

    let read = get_job(&store, id).await;
    assert_eq!(
        json(&read),
        json(job),
        "get_job returns what create_job returned"
    );

    let events = history(&store, HistoryScope::Job(id)).await;
    assert_eq!(events.len(), 1, "one event: {events:?}");
    assert_eq!(events[0].kind, EventKind::Created);
    assert_eq!(events[0].job_id, id);
    assert_eq!(events[0].task_id, None);
    assert_between(events[0].time, before, after, "the created event's time");
}

async fn a_job_without_optional_fields_gets_the_defaults(store: Arc<dyn Store>) {
    let before = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    let job = create(
        &store,
        CreateJobRequest {
            id: None,
            job_type: Some("t".into()),
            namespace: Some("n".into()),
            ..CreateJobRequest::default()
        },
    )
    .await;
    let after = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    assert_eq!(job.correlation_id, None);
    assert_eq!(job.meta.get(), "{}");
    assert!(job.auto_complete, "auto_complete defaults to true");
    assert_between(job.start_time, before, after, "a defaulted start_time");
    assert_eq!(
        job.start_time, job.created_at,
        "start_time defaults to registration"
    );
    assert_eq!(job.status, Status::Pending);
    let read = get_job(&store, job.id).await;
    assert_eq!(json(&read), json(&job));
}

async fn a_created_task_reads_back_with_every_field(store: Arc<dyn Store>) {
    let task_start = Timestamp::from_millis(1_700_000_000_001);
    let with_job = task_req();
    let with_job_id = with_job.id.unwrap();
    let mut req = job_req();
    req.tasks = Some(vec![portauthority_core::api::CreateTaskRequest {
        task_type: Some("com.shipyard.compile".into()),
        namespace: Some("com.shipyard.workers".into()),
        meta: Some(meta()),
        start_time: Some(task_start),
        timeout_seconds: Some(90),
        ..with_job
    }]);
    let before = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    let job = create(&store, req).await;
    let after = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    assert_eq!(
        job.tasks,
        Counters {
            total: 1,
            pending: 1,
            ..Counters::default()
        }
    );
    let task = get_task(&store, job.id, with_job_id).await;
    assert_eq!(task.id, with_job_id);
    assert_eq!(task.job_id, job.id);
    assert_eq!(task.task_type, "com.shipyard.compile");
    assert_eq!(task.namespace, "com.shipyard.workers");
    assert_eq!(task.status, Status::Pending);
    assert_eq!(task.start_time, task_start);
    assert_eq!(task.end_time, None);
    assert_eq!(task.attempt, 1);
    assert_eq!(task.progress, None);
    assert_eq!(task.error, None);
    assert_eq!(task.meta.get(), META);
    assert_eq!(task.timeout_seconds, Some(90));
    assert_between(task.created_at, before, after, "created_at");
    assert_eq!(task.updated_at, task.created_at);

    // A task added later, with defaults.
    let before = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    let added = add(&store, job.id, vec![task_req()]).await;
    let after = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    assert_eq!(added.len(), 1);
    let t = &added[0];
    assert_eq!(t.meta.get(), "{}");
    assert_eq!(t.timeout_seconds, None);
    assert_between(t.start_time, before, after, "a defaulted task start_time");
    assert_eq!(t.start_time, t.created_at);
    let read = get_task(&store, job.id, t.id).await;
    assert_eq!(
        json(&read),
        json(t),
        "get_task returns what add_tasks returned"
    );

    // Progress, error and attempt round-trip too.
    let progressed = apply(
        &store,
        status_update(
            job.id,
            t.id,
            Status::InProgress,
            None,
            None,
            Some(portauthority_core::api::Progress {
                current: 3,
                total: Some(10),
            }),
        ),
    )
    .await
    .expect("in_progress");
    assert_eq!(
        json(&get_task(&store, job.id, t.id).await),
        json(&progressed)
    );
    let failed = apply(
        &store,
        status_update(
            job.id,
            t.id,
            Status::Failed,
            Some("crashed"),
            Some("exit code 137"),
            Some(portauthority_core::api::Progress {
                current: 4,
                total: None,
            }),
        ),
    )
    .await
    .expect("failed");
    assert_eq!(failed.error.as_deref(), Some("exit code 137"));
    assert_eq!(
        failed.progress,
        Some(portauthority_core::api::Progress {
            current: 4,
            total: None
        })
    );
    assert!(failed.end_time.is_some());
    assert_eq!(json(&get_task(&store, job.id, t.id).await), json(&failed));
}

async fn times_are_kept_to_the_millisecond(store: Arc<dyn Store>) {
    for ms in [
        1,
        999,
        1_600_409_367_001,
        1_600_409_367_999,
        4_102_444_800_123, // 2100-01-01T00:00:00.123Z
        -1_234_567,        // before the epoch
    ] {
        let start = Timestamp::from_millis(ms);
        let mut req = job_req();
        req.start_time = Some(start);
        let mut t = task_req();
        t.start_time = Some(start);
        let task_id = t.id.unwrap();
        req.tasks = Some(vec![t]);
        let job = create(&store, req).await;
        assert_eq!(job.start_time.as_millis(), ms);
        assert_eq!(get_job(&store, job.id).await.start_time.as_millis(), ms);
        assert_eq!(
            get_task(&store, job.id, task_id)
                .await
                .start_time
                .as_millis(),
            ms
        );
    }
}

async fn creating_the_same_job_again_returns_the_stored_one(store: Arc<dyn Store>) {
    let mut req = job_req();
    req.correlation_id = Some("c".into());
    req.meta = Some(meta());
    req.start_time = Some(Timestamp::from_millis(1_600_000_000_000));
    req.tasks = Some(vec![task_req(), task_req()]);
    let first = create(&store, req.clone()).await;
    let id = first.id;

    let again = store
        .create_job(new_job(req.clone()))
        .await
        .expect("repeat");
    assert!(!again.created, "a repeat creates nothing");
    assert_eq!(json(&again.value), json(&first));

    // An omitted start_time matches any stored one.
    let mut no_start = req.clone();
    no_start.start_time = None;
    let again = store.create_job(new_job(no_start)).await.expect("repeat");
    assert!(!again.created);
    assert_eq!(json(&again.value), json(&first));

    // The tasks may be repeated in part.
    let mut fewer = req.clone();
    fewer.tasks.as_mut().unwrap().pop();
    let again = store.create_job(new_job(fewer)).await.expect("repeat");
    assert!(!again.created);

    // Nothing was written by the repeats.
    assert_eq!(json(&get_job(&store, id).await), json(&first));
    assert_eq!(
        history(&store, HistoryScope::Job(id)).await.len(),
        3,
        "created + 2 task_added"
    );
    let all = store
        .list_jobs(JobFilter::default(), Paging::default())
        .await
        .expect("list_jobs");
    assert_eq!(all.total_items, 1);
}

async fn creating_a_job_id_again_with_other_content_is_a_conflict(store: Arc<dyn Store>) {
    let mut req = job_req();
    req.correlation_id = Some("c".into());
    req.meta = Some(serde_json::json!({"a": 1}));
    req.start_time = Some(Timestamp::from_millis(1_600_000_000_000));
    let task = task_req();
    req.tasks = Some(vec![task.clone()]);
    let first = create(&store, req.clone()).await;

    let variants: Vec<(&str, CreateJobRequest)> = vec![
        (
            "type",
            CreateJobRequest {
                job_type: Some("other".into()),
                ..req.clone()
            },
        ),
        (
            "namespace",
            CreateJobRequest {
                namespace: Some("other".into()),
                ..req.clone()
            },
        ),
        (
            "correlation_id",
            CreateJobRequest {
                correlation_id: Some("d".into()),
                ..req.clone()
            },
        ),
        (
            "no correlation_id",
            CreateJobRequest {
                correlation_id: None,
                ..req.clone()
            },
        ),
        (
            "meta",
            CreateJobRequest {
                meta: Some(serde_json::json!({"a": 2})),
                ..req.clone()
            },
        ),
        (
            "auto_complete",
            CreateJobRequest {
                auto_complete: Some(false),
                ..req.clone()
            },
        ),
        (
            "start_time",
            CreateJobRequest {
                start_time: Some(Timestamp::from_millis(1_600_000_000_001)),
                ..req.clone()
            },
        ),
        (
            "a task's type",
            CreateJobRequest {
                tasks: Some(vec![portauthority_core::api::CreateTaskRequest {
                    task_type: Some("other".into()),
                    ..task.clone()
                }]),
                ..req.clone()
            },
        ),
        (
            "an extra task",
            CreateJobRequest {
                tasks: Some(vec![task.clone(), task_req()]),
                ..req.clone()
            },
        ),
    ];
    for (what, variant) in variants {
        let extra: Vec<TaskId> = variant
            .tasks
            .iter()
            .flatten()
            .filter_map(|t| t.id)
            .filter(|t| *t != task.id.unwrap())
            .collect();
        let result = store.create_job(new_job(variant)).await;
        match result {
            Err(portauthority_store::StoreError::Conflict(_)) => {}
            other => panic!("another {what} is a conflict, got {other:?}"),
        }
        for t in extra {
            assert_err!(store.get_task(first.id, t).await, NotFound);
        }
    }
    assert_eq!(
        json(&get_job(&store, first.id).await),
        json(&first),
        "unchanged"
    );
    assert_eq!(history(&store, HistoryScope::Job(first.id)).await.len(), 2);
}

async fn a_job_without_a_client_id_is_created_anew_each_time(store: Arc<dyn Store>) {
    let req = CreateJobRequest {
        id: None,
        ..job_req()
    };
    let a = create(&store, req.clone()).await;
    let b = create(&store, req).await;
    assert_ne!(a.id, b.id);
    let all = store
        .list_jobs(JobFilter::default(), Paging::default())
        .await
        .expect("list_jobs");
    assert_eq!(all.total_items, 2);
}

async fn creating_a_job_with_a_task_id_another_job_uses_is_a_conflict_and_creates_nothing(
    store: Arc<dyn Store>,
) {
    let (a, a_tasks) = create_with_tasks(&store, job_req(), 1).await;
    let taken = a_tasks[0];

    let mut b = job_req();
    let b_id = b.id.unwrap();
    let fresh = task_req();
    let fresh_id = fresh.id.unwrap();
    let mut reused = task_req();
    reused.id = Some(taken);
    b.tasks = Some(vec![fresh.clone(), reused]);
    assert_err!(store.create_job(new_job(b.clone())).await, Conflict);

    assert_err!(store.get_job(b_id).await, NotFound);
    assert_err!(store.get_task(b_id, fresh_id).await, NotFound);
    assert_err!(
        store.history(HistoryScope::Job(b_id), 0, 100).await,
        NotFound
    );
    let owner = get_task(&store, a.id, taken).await;
    assert_eq!(owner.job_id, a.id);
    assert_eq!(json(&assert_counters_match(&store, a.id).await), json(&a));
    let all = store
        .list_jobs(JobFilter::default(), Paging::default())
        .await
        .expect("list_jobs");
    assert_eq!(all.total_items, 1, "the refused job is not listed");

    // Nothing of the refused create lingers: the same ids can be used afterwards.
    b.tasks = Some(vec![fresh]);
    let b_job = create(&store, b).await;
    assert_eq!(b_job.id, b_id);
    assert_eq!(get_task(&store, b_id, fresh_id).await.job_id, b_id);
    assert_eq!(assert_counters_match(&store, b_id).await.tasks.total, 1);
}
