//! Scopes: a caller whose key sees some namespaces finds a job outside them missing
//! everywhere (reads, commands, lists and their totals), and may not create outside them.

use crate::harness::{assert_err, create, job_req, new_job, new_tasks, task_req};
use portauthority_core::api::{CreateJobRequest, SortField};
use portauthority_core::validate::meta_filter_values;
use portauthority_core::{
    AddTasks, Command, JobId, NewNote, Refusal, Scope, SetJobStatus, Status, TaskId, TaskUpdate,
};
use portauthority_store::{Answer, HistoryScope, JobFilter, Once, Paging, Ran, Store, TaskFilter};
use std::collections::BTreeSet;
use std::sync::Arc;

conformance!(
    a_job_outside_the_scope_is_missing_to_every_read,
    a_job_outside_the_scope_is_missing_to_every_command,
    lists_and_their_totals_leave_out_jobs_outside_the_scope,
    creating_outside_the_scope_is_forbidden,
);

fn scope() -> Scope {
    Scope::parse(&["com.a.*", "org.exact"]).unwrap()
}

/// A job of `namespace` with one task; its id and its task's.
async fn job_in(
    store: &Arc<dyn Store>,
    namespace: &str,
    meta: serde_json::Value,
) -> (JobId, TaskId) {
    let task = task_req();
    let task_id = task.id.unwrap();
    let job = create(
        store,
        CreateJobRequest {
            namespace: Some(namespace.into()),
            meta: Some(meta),
            correlation_id: Some("same".into()),
            tasks: Some(vec![task]),
            ..job_req()
        },
    )
    .await;
    (job.id, task_id)
}

async fn a_job_outside_the_scope_is_missing_to_every_read(store: Arc<dyn Store>) {
    let s = scope();
    let (a, ta) = job_in(&store, "com.a.mail", serde_json::json!({})).await;
    let (b, tb) = job_in(&store, "com.b.mail", serde_json::json!({})).await;
    assert_eq!(store.get_job_in(&s, a).await.unwrap().id, a);
    assert_eq!(store.get_task_in(&s, a, ta).await.unwrap().id, ta);
    assert_err!(store.get_job_in(&s, b).await, NotFound);
    assert_err!(store.get_task_in(&s, b, tb).await, NotFound);
    let tasks = store
        .list_tasks_in(&s, a, TaskFilter::default(), Paging::default())
        .await
        .unwrap();
    assert_eq!(tasks.total_items, 1);
    assert_err!(
        store
            .list_tasks_in(&s, b, TaskFilter::default(), Paging::default())
            .await,
        NotFound
    );
    assert!(
        !store
            .history_in(&s, HistoryScope::Job(a), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_err!(
        store.history_in(&s, HistoryScope::Job(b), 0, 10).await,
        NotFound
    );
    assert_err!(
        store.history_in(&s, HistoryScope::Task(b, tb), 0, 10).await,
        NotFound
    );
    // The trusted calls see everything.
    assert_eq!(store.get_job(b).await.unwrap().id, b);
}

async fn a_job_outside_the_scope_is_missing_to_every_command(store: Arc<dyn Store>) {
    let s = scope();
    let (a, ta) = job_in(&store, "com.a.mail", serde_json::json!({})).await;
    let (b, tb) = job_in(&store, "com.b.mail", serde_json::json!({})).await;
    let set_status = Command::SetJobStatus(SetJobStatus {
        job_id: b,
        to: Status::Cancelled,
        reason: None,
    });
    assert_err!(store.run_in(&s, set_status.clone()).await, NotFound);
    let add = Command::AddTasks(AddTasks {
        job_id: b,
        tasks: new_tasks(vec![task_req()]),
    });
    assert_err!(store.run_in(&s, add).await, NotFound);
    let note = Command::AddNote(NewNote {
        job_id: b,
        task_id: None,
        message: "hello".into(),
        data: None,
    });
    assert_err!(store.run_in(&s, note).await, NotFound);
    let once = Once {
        key: "scopes:1".into(),
        fingerprint: "f".into(),
        keep_answer: true,
    };
    assert_err!(store.run_once_in(&s, once, set_status).await, NotFound);
    // A batch answers the outside item alone as not found and applies the other.
    let updates = Command::UpdateTasks(vec![
        TaskUpdate::status(b, tb, Status::InProgress),
        TaskUpdate::status(a, ta, Status::InProgress),
    ]);
    match store.run_in(&s, updates).await.unwrap() {
        Answer::Updates(items) => {
            assert!(matches!(&items[0], Err(Refusal::NotFound(_))), "{items:?}");
            assert_eq!(items[1].as_ref().unwrap().status, Status::InProgress);
        }
        other => panic!("unexpected answer {other:?}"),
    }
    // Nothing happened to the job outside.
    let b_now = store.get_job(b).await.unwrap();
    assert_eq!(
        (b_now.status, b_now.tasks.in_progress),
        (Status::Pending, 0)
    );
    assert_eq!(
        store
            .history(HistoryScope::Job(b), 0, 100)
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn lists_and_their_totals_leave_out_jobs_outside_the_scope(store: Arc<dyn Store>) {
    let s = scope();
    let meta = serde_json::json!({"team": "atlas"});
    let mut inside = BTreeSet::new();
    for ns in ["com.a.mail", "com.a.x.y", "org.exact"] {
        inside.insert(job_in(&store, ns, meta.clone()).await.0);
    }
    // Just outside: a sibling, the prefix without its dot, the next byte, a longer exact.
    for ns in ["com.b.mail", "com.a", "com.a/", "org.exactly"] {
        job_in(&store, ns, meta.clone()).await;
    }
    let filters = [
        JobFilter::default(),
        JobFilter {
            statuses: vec![Status::Pending],
            ..JobFilter::default()
        },
        JobFilter {
            correlation_id: Some("same".into()),
            ..JobFilter::default()
        },
        JobFilter {
            meta: vec![("team".into(), meta_filter_values("atlas"))],
            ..JobFilter::default()
        },
    ];
    for filter in filters {
        for sort in ["start_time", "namespace", "updated_at"] {
            let paging = Paging {
                size: 100,
                sort: SortField::parse(sort).unwrap(),
                ..Paging::default()
            };
            let scoped = JobFilter {
                scope: s.clone(),
                ..filter.clone()
            };
            let page = store.list_jobs(scoped, paging.clone()).await.unwrap();
            let got: BTreeSet<JobId> = page.items.iter().map(|j| j.id).collect();
            assert_eq!(got, inside, "{filter:?} by {sort}");
            assert_eq!(page.total_items, 3, "the total of {filter:?}");
            let all = store.list_jobs(filter.clone(), paging).await.unwrap();
            assert_eq!(all.total_items, 7, "unscoped {filter:?}");
        }
    }
}

async fn creating_outside_the_scope_is_forbidden(store: Arc<dyn Store>) {
    let s = scope();
    let outside = new_job(CreateJobRequest {
        namespace: Some("com.b.mail".into()),
        ..job_req()
    });
    let id = outside.id;
    assert_err!(
        store.run_in(&s, Command::CreateJob(outside)).await,
        Forbidden
    );
    assert_err!(store.get_job(id).await, NotFound);
    // A task of an outside namespace under a job inside is refused too.
    let mut task = task_req();
    task.namespace = Some("com.b.tasks".into());
    let mixed = new_job(CreateJobRequest {
        namespace: Some("com.a.mail".into()),
        tasks: Some(vec![task.clone()]),
        ..job_req()
    });
    let mixed_id = mixed.id;
    assert_err!(store.run_in(&s, Command::CreateJob(mixed)).await, Forbidden);
    assert_err!(store.get_job(mixed_id).await, NotFound);
    let (a, _) = job_in(&store, "com.a.mail", serde_json::json!({})).await;
    let add = Command::AddTasks(AddTasks {
        job_id: a,
        tasks: new_tasks(vec![task]),
    });
    assert_err!(store.run_in(&s, add).await, Forbidden);
    // Inside, it works.
    let ok = new_job(CreateJobRequest {
        namespace: Some("com.a.new".into()),
        ..job_req()
    });
    let once = Once {
        key: "scopes:2".into(),
        fingerprint: "f".into(),
        keep_answer: true,
    };
    let ran = store
        .run_once_in(&s, once, Command::CreateJob(ok))
        .await
        .unwrap();
    assert!(matches!(
        ran,
        Ran::Applied(Answer::Job { created: true, .. })
    ));
}
