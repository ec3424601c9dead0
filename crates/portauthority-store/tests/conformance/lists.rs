//! Listing jobs and tasks: every filter, every sort field in both orders with the id as the
//! tie-break, and offset paging with the size of the whole list.

use crate::harness::*;
use portauthority_core::api::{
    CreateJobRequest, CreateTaskRequest, Job, SortField, SortOrder, Task,
};
use portauthority_core::validate::meta_filter_values;
use portauthority_core::{JobId, Status, TaskId, Timestamp};
use portauthority_store::{JobFilter, Page, Paging, Store, TaskFilter};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::Arc;

conformance!(
    jobs_are_listed_by_namespace_type_correlation_id_and_status,
    jobs_are_listed_by_meta_values_as_strings_numbers_and_booleans,
    a_list_with_the_most_meta_filters_allowed_returns_exactly_the_matching_jobs,
    jobs_sort_by_every_field_in_both_orders_with_the_id_breaking_ties,
    job_pages_split_the_list_and_count_all_of_it,
    tasks_are_listed_by_namespace_type_and_status,
    tasks_sort_and_page_like_jobs,
);

fn paging(page: u64, size: u64, sort: SortField, order: SortOrder) -> Paging {
    Paging {
        page,
        size,
        sort,
        order,
        after: None,
    }
}

fn all() -> Paging {
    Paging {
        size: 1000,
        ..Paging::default()
    }
}

async fn ids_where(store: &Arc<dyn Store>, filter: JobFilter) -> BTreeSet<JobId> {
    let page = store
        .list_jobs(filter.clone(), all())
        .await
        .expect("list_jobs");
    assert_eq!(
        page.total_items as usize,
        page.items.len(),
        "total_items counts the filtered list: {filter:?}"
    );
    page.items.iter().map(|j| j.id).collect()
}

fn set(ids: &[JobId]) -> BTreeSet<JobId> {
    ids.iter().copied().collect()
}

fn meta_filter(pairs: &[(&str, &str)]) -> JobFilter {
    JobFilter {
        meta: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), meta_filter_values(v)))
            .collect(),
        ..JobFilter::default()
    }
}

/// A job with the given namespace, type, correlation id and meta.
async fn job(
    store: &Arc<dyn Store>,
    namespace: &str,
    job_type: &str,
    correlation_id: Option<&str>,
    meta: serde_json::Value,
) -> JobId {
    create(
        store,
        CreateJobRequest {
            namespace: Some(namespace.into()),
            job_type: Some(job_type.into()),
            correlation_id: correlation_id.map(str::to_owned),
            meta: Some(meta),
            ..job_req()
        },
    )
    .await
    .id
}

/// Brings a job to `status` through one task (or explicitly, for `cancelled`).
async fn make(store: &Arc<dyn Store>, id: JobId, status: Status) {
    if status == Status::Pending {
        return;
    }
    let t = add(store, id, vec![task_req()]).await.remove(0);
    let task_status = if status == Status::Cancelled {
        Status::InProgress
    } else {
        status
    };
    set_task(store, id, t.id, task_status)
        .await
        .expect("task status");
    if status == Status::Cancelled {
        store
            .set_job_status(id, Status::Cancelled, None)
            .await
            .expect("cancel");
    }
    assert_eq!(get_job(store, id).await.status, status);
}

async fn jobs_are_listed_by_namespace_type_correlation_id_and_status(store: Arc<dyn Store>) {
    use serde_json::json;
    let j1 = job(&store, "a.ns", "build", Some("c-1"), json!({})).await;
    let j2 = job(&store, "a.ns", "deploy", Some("c-1"), json!({})).await;
    let j3 = job(&store, "b.ns", "build", Some("c-2"), json!({})).await;
    let j4 = job(&store, "b.ns", "Build", None, json!({})).await;
    let j5 = job(&store, "a.ns.sub", "build", Some("C-1"), json!({})).await;
    make(&store, j2, Status::InProgress).await;
    make(&store, j3, Status::Completed).await;
    make(&store, j4, Status::Cancelled).await;
    make(&store, j5, Status::Failed).await;

    let f = |namespace: Option<&str>,
             job_type: Option<&str>,
             corr: Option<&str>,
             statuses: &[Status]| {
        JobFilter {
            namespace: namespace.map(str::to_owned),
            job_type: job_type.map(str::to_owned),
            correlation_id: corr.map(str::to_owned),
            statuses: statuses.to_vec(),
            meta: vec![],
            scope: portauthority_core::Scope::all(),
        }
    };
    let cases: Vec<(JobFilter, BTreeSet<JobId>)> = vec![
        (f(None, None, None, &[]), set(&[j1, j2, j3, j4, j5])),
        // Exact and case-sensitive: no prefix matches, "Build" is not "build".
        (f(Some("a.ns"), None, None, &[]), set(&[j1, j2])),
        (f(Some("b.ns"), None, None, &[]), set(&[j3, j4])),
        (f(Some("a"), None, None, &[]), set(&[])),
        (f(None, Some("build"), None, &[]), set(&[j1, j3, j5])),
        (f(None, Some("Build"), None, &[]), set(&[j4])),
        (f(None, None, Some("c-1"), &[]), set(&[j1, j2])),
        (f(None, None, Some("C-1"), &[]), set(&[j5])),
        (f(None, None, Some("nope"), &[]), set(&[])),
        (f(None, None, None, &[Status::Pending]), set(&[j1])),
        (f(None, None, None, &[Status::InProgress]), set(&[j2])),
        (
            f(None, None, None, &[Status::Completed, Status::Cancelled]),
            set(&[j3, j4]),
        ),
        (
            f(
                None,
                None,
                None,
                &[Status::Failed, Status::Pending, Status::Failed],
            ),
            set(&[j1, j5]),
        ),
        (
            f(None, None, None, &Status::ALL),
            set(&[j1, j2, j3, j4, j5]),
        ),
        // All given filters must hold.
        (f(Some("b.ns"), Some("build"), None, &[]), set(&[j3])),
        (
            f(Some("a.ns"), None, Some("c-1"), &[Status::InProgress]),
            set(&[j2]),
        ),
        (
            f(
                Some("a.ns"),
                Some("build"),
                Some("c-1"),
                &[Status::Completed],
            ),
            set(&[]),
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            ids_where(&store, filter.clone()).await,
            expected,
            "{filter:?}"
        );
    }
}

async fn jobs_are_listed_by_meta_values_as_strings_numbers_and_booleans(store: Arc<dyn Store>) {
    use serde_json::json;
    let j1 = job(
        &store,
        "n",
        "t",
        None,
        json!({"release_id": 123, "env": "prod", "ok": true, "ratio": 1.5,
               "tags": ["x"], "nested": {"env": "prod"}, "url": "http://a:b/c", "empty": ""}),
    )
    .await;
    let j2 = job(
        &store,
        "n",
        "t",
        None,
        json!({"release_id": "123", "env": "dev", "ok": false, "ratio": 2}),
    )
    .await;
    let j3 = job(
        &store,
        "n",
        "t",
        None,
        json!({"release_id": 124.0, "ok": "true", "big": 12345678901234567890u64, "neg": -7, "none": null}),
    )
    .await;
    let _j4 = job(&store, "n", "t", None, json!({})).await;

    type MetaCase<'a> = (&'a [(&'a str, &'a str)], BTreeSet<JobId>);
    let cases: Vec<MetaCase<'_>> = vec![
        // A number matches the number and the string it spells.
        (&[("release_id", "123")], set(&[j1, j2])),
        (&[("release_id", "124")], set(&[j3])),
        (&[("release_id", "123.0")], set(&[j1])),
        (&[("release_id", "1.23e2")], set(&[j1])),
        (&[("release_id", "125")], set(&[])),
        (&[("env", "prod")], set(&[j1])),
        (&[("env", "Prod")], set(&[])),
        // A boolean matches the boolean and the string.
        (&[("ok", "true")], set(&[j1, j3])),
        (&[("ok", "false")], set(&[j2])),
        (&[("ratio", "1.5")], set(&[j1])),
        (&[("ratio", "1.50")], set(&[j1])),
        (&[("ratio", "2")], set(&[j2])),
        (&[("big", "12345678901234567890")], set(&[j3])),
        (&[("neg", "-7")], set(&[j3])),
        (&[("url", "http://a:b/c")], set(&[j1])),
        (&[("empty", "")], set(&[j1])),
        // Only top-level scalars: not inside arrays or objects, not null.
        (&[("tags", "x")], set(&[])),
        (&[("env", "prod"), ("nested", "prod")], set(&[])),
        (&[("none", "null")], set(&[])),
        (&[("missing", "1")], set(&[])),
        // Several meta filters must all hold.
        (&[("release_id", "123"), ("env", "dev")], set(&[j2])),
        (&[("release_id", "123"), ("ok", "true")], set(&[j1])),
        // A repeated key too: 123 and "123" match `123`, only the number matches `123.0`.
        (
            &[("release_id", "123"), ("release_id", "123.0")],
            set(&[j1]),
        ),
        (
            &[
                ("release_id", "123.0"),
                ("env", "prod"),
                ("release_id", "123"),
            ],
            set(&[j1]),
        ),
        (&[("release_id", "123"), ("release_id", "124")], set(&[])),
        (&[("ok", "true"), ("ok", "true")], set(&[j1, j3])),
    ];
    for (pairs, expected) in cases {
        assert_eq!(
            ids_where(&store, meta_filter(pairs)).await,
            expected,
            "meta {pairs:?}"
        );
    }
    // Meta filters combine with the others.
    let mut filter = meta_filter(&[("release_id", "123")]);
    filter.statuses = vec![Status::Pending];
    make(&store, j2, Status::InProgress).await;
    assert_eq!(ids_where(&store, filter).await, set(&[j1]));
}

/// 16 meta keys (the default `meta_filter_keys_max`), each given 4 times (64 parameters,
/// `meta_filter_values_max`), admitted by the request rules: the jobs that hold them all, on
/// every read path (ids from job_meta or from jobs, joined with jobs or not, counted).
async fn a_list_with_the_most_meta_filters_allowed_returns_exactly_the_matching_jobs(
    store: Arc<dyn Store>,
) {
    use serde_json::{Map, Value, json};
    let limits = limits();
    let keys = limits.meta_filter_keys_max;
    let per_key = limits.meta_filter_values_max / keys;
    // Even keys hold a number, given as `i`, `i.0`, `{i}e0`, `i`; odd keys a string.
    let key = |i: usize| format!("k{i:02}");
    let full = || -> Map<String, Value> {
        (0..keys)
            .map(|i| {
                let v = if i % 2 == 0 {
                    json!(i)
                } else {
                    json!(format!("v{i}"))
                };
                (key(i), v)
            })
            .chain([("extra".to_owned(), json!("x"))])
            .collect()
    };
    let mut params = Vec::new();
    for i in 0..keys {
        for n in 0..per_key {
            let v = match (i % 2, n % 4) {
                (0, 1) => format!("{i}.0"),
                (0, 2) => format!("{i}e0"),
                (0, _) => i.to_string(),
                _ => format!("v{i}"),
            };
            params.push((key(i), v));
        }
    }
    assert_eq!(params.len(), limits.meta_filter_values_max);
    let meta = portauthority_core::validate::meta_filters(params.clone(), &limits)
        .expect("the most meta filters the limits allow");

    let mut matching = Vec::new();
    for namespace in ["ns.a", "ns.b", "ns.a"] {
        let id = job(&store, namespace, "t", Some("c"), Value::Object(full())).await;
        matching.push((id, namespace));
    }
    // One key off each: a number as the string it spells (which `i` alone would match, but
    // not `i.0`), a string changed, or the key missing.
    for i in 0..keys {
        let mut m = full();
        match i % 3 {
            0 if i % 2 == 0 => {
                m.insert(key(i), json!(i.to_string()));
            }
            0 | 1 => {
                m.insert(key(i), json!("other"));
            }
            _ => {
                m.remove(&key(i));
            }
        }
        job(&store, "ns.a", "t", Some("c"), Value::Object(m)).await;
    }
    job(&store, "ns.a", "t", Some("c"), json!({})).await;

    let filters = [
        JobFilter {
            meta: meta.clone(),
            ..JobFilter::default()
        },
        JobFilter {
            namespace: Some("ns.a".into()),
            meta: meta.clone(),
            ..JobFilter::default()
        },
        JobFilter {
            correlation_id: Some("c".into()),
            statuses: vec![Status::Pending],
            meta: meta.clone(),
            ..JobFilter::default()
        },
    ];
    for filter in &filters {
        let expected: BTreeSet<JobId> = matching
            .iter()
            .filter(|(_, ns)| filter.namespace.as_deref().is_none_or(|want| want == *ns))
            .map(|(id, _)| *id)
            .collect();
        for sort in [SortField::StartTime, SortField::UpdatedAt] {
            let page = store
                .list_jobs(filter.clone(), paging(1, 1000, sort, SortOrder::Asc))
                .await
                .expect("list_jobs");
            let ids: BTreeSet<JobId> = page.items.iter().map(|j| j.id).collect();
            assert_eq!(ids, expected, "{sort:?}, namespace {:?}", filter.namespace);
            assert_eq!(page.total_items, expected.len() as u64, "{sort:?} total");
            let mut paged = Vec::new();
            for n in 1..=expected.len() as u64 {
                let page = store
                    .list_jobs(filter.clone(), paging(n, 1, sort, SortOrder::Asc))
                    .await
                    .expect("list_jobs");
                assert_eq!(page.total_items, expected.len() as u64, "{sort:?} page {n}");
                paged.extend(ids_of(&page));
            }
            assert_eq!(
                paged,
                ids_of(&page),
                "{sort:?}: pages of 1 cut the same list"
            );
        }
    }
}

/// The order the stores must give: by the field, then by id; absent (null) values first
/// ascending and last descending, so descending is exactly ascending reversed.
fn compare_jobs(a: &Job, b: &Job, field: SortField) -> Ordering {
    let by_field = match field {
        SortField::StartTime => a.start_time.cmp(&b.start_time),
        SortField::EndTime => a.end_time.cmp(&b.end_time), // None < Some
        SortField::CreatedAt => a.created_at.cmp(&b.created_at),
        SortField::UpdatedAt => a.updated_at.cmp(&b.updated_at),
        SortField::Type => a.job_type.as_bytes().cmp(b.job_type.as_bytes()),
        SortField::Namespace => a.namespace.as_bytes().cmp(b.namespace.as_bytes()),
        SortField::Status => a.status.cmp(&b.status),
    };
    by_field.then_with(|| a.id.cmp(&b.id))
}

fn compare_tasks(a: &Task, b: &Task, field: SortField) -> Ordering {
    let by_field = match field {
        SortField::StartTime => a.start_time.cmp(&b.start_time),
        SortField::EndTime => a.end_time.cmp(&b.end_time),
        SortField::CreatedAt => a.created_at.cmp(&b.created_at),
        SortField::UpdatedAt => a.updated_at.cmp(&b.updated_at),
        SortField::Type => a.task_type.as_bytes().cmp(b.task_type.as_bytes()),
        SortField::Namespace => a.namespace.as_bytes().cmp(b.namespace.as_bytes()),
        SortField::Status => a.status.cmp(&b.status),
    };
    by_field.then_with(|| a.id.cmp(&b.id))
}

/// Jobs with many ties in every field, mixed-case names and unfinished jobs (no end_time).
async fn sortable_jobs(store: &Arc<dyn Store>) -> Vec<JobId> {
    let t0 = 1_600_000_000_000;
    let specs: [(i64, &str, &str, Status); 9] = [
        (t0, "beta", "ns.b", Status::Pending),
        (t0, "Beta", "ns.a", Status::Completed),
        (t0 + 5, "alpha", "ns.b", Status::InProgress),
        (t0 - 5, "beta", "NS.c", Status::Failed),
        (t0, "_under", "ns.a", Status::Cancelled),
        (t0 + 5, "Zulu", "ns.b", Status::Completed),
        (t0 - 5, "ÿ-latin", "ns.a", Status::Pending),
        (t0, "alpha", "ns.a", Status::Failed),
        (t0 + 5, "beta", "ns.b", Status::InProgress),
    ];
    let mut ids = Vec::new();
    for (start, job_type, namespace, status) in specs {
        let id = create(
            store,
            CreateJobRequest {
                job_type: Some(job_type.into()),
                namespace: Some(namespace.into()),
                start_time: Some(Timestamp::from_millis(start)),
                ..job_req()
            },
        )
        .await
        .id;
        make(store, id, status).await;
        ids.push(id);
    }
    ids
}

fn ids_of(page: &Page<Job>) -> Vec<JobId> {
    page.items.iter().map(|j| j.id).collect()
}

async fn jobs_sort_by_every_field_in_both_orders_with_the_id_breaking_ties(store: Arc<dyn Store>) {
    let ids = sortable_jobs(&store).await;
    let mut jobs = Vec::new();
    for id in &ids {
        jobs.push(get_job(&store, *id).await);
    }
    // The default is start_time ascending.
    let mut expected = jobs.clone();
    expected.sort_by(|a, b| compare_jobs(a, b, SortField::StartTime));
    let default = store
        .list_jobs(JobFilter::default(), all())
        .await
        .expect("list_jobs");
    assert_eq!(
        ids_of(&default),
        expected.iter().map(|j| j.id).collect::<Vec<_>>()
    );

    for field in SortField::ALL {
        let mut asc = jobs.clone();
        asc.sort_by(|a, b| compare_jobs(a, b, field));
        let asc: Vec<JobId> = asc.iter().map(|j| j.id).collect();
        let desc: Vec<JobId> = asc.iter().rev().copied().collect();
        for (order, expected) in [(SortOrder::Asc, &asc), (SortOrder::Desc, &desc)] {
            let page = store
                .list_jobs(JobFilter::default(), paging(1, 100, field, order))
                .await
                .expect("list_jobs");
            assert_eq!(&ids_of(&page), expected, "sort {field:?} {order:?}");
            assert_eq!(page.total_items, jobs.len() as u64);
            // Page by page, the same order.
            let mut paged = Vec::new();
            for n in 1..=4 {
                let page = store
                    .list_jobs(JobFilter::default(), paging(n, 3, field, order))
                    .await
                    .expect("list_jobs");
                assert_eq!(page.total_items, jobs.len() as u64);
                paged.extend(ids_of(&page));
            }
            assert_eq!(&paged, expected, "paged sort {field:?} {order:?}");
        }
    }
    // Sorting a filtered list.
    let filter = JobFilter {
        namespace: Some("ns.b".into()),
        ..JobFilter::default()
    };
    let mut expected: Vec<&Job> = jobs.iter().filter(|j| j.namespace == "ns.b").collect();
    expected.sort_by(|a, b| compare_jobs(a, b, SortField::Type).reverse());
    let page = store
        .list_jobs(filter, paging(1, 2, SortField::Type, SortOrder::Desc))
        .await
        .expect("list_jobs");
    assert_eq!(page.total_items, expected.len() as u64);
    assert_eq!(
        ids_of(&page),
        expected.iter().take(2).map(|j| j.id).collect::<Vec<_>>()
    );
}

async fn job_pages_split_the_list_and_count_all_of_it(store: Arc<dyn Store>) {
    let start = Timestamp::from_millis(1_600_000_000_000);
    let mut ids = Vec::new();
    for _ in 0..7 {
        let id = create(
            &store,
            CreateJobRequest {
                start_time: Some(start),
                ..job_req()
            },
        )
        .await
        .id;
        ids.push(id);
    }
    ids.sort();
    let list = |page: u64, size: u64| {
        let store = store.clone();
        async move {
            store
                .list_jobs(
                    JobFilter::default(),
                    paging(page, size, SortField::StartTime, SortOrder::Asc),
                )
                .await
                .expect("list_jobs")
        }
    };
    let p1 = list(1, 3).await;
    let p2 = list(2, 3).await;
    let p3 = list(3, 3).await;
    let p4 = list(4, 3).await;
    assert_eq!(ids_of(&p1), ids[0..3]);
    assert_eq!(ids_of(&p2), ids[3..6]);
    assert_eq!(ids_of(&p3), ids[6..7]);
    assert!(p4.items.is_empty(), "past the end: an empty page");
    for p in [&p1, &p2, &p3, &p4] {
        assert_eq!(p.total_items, 7);
    }
    assert_eq!(ids_of(&list(1, 7).await), ids);
    assert_eq!(ids_of(&list(1, 1000).await), ids);
    assert_eq!(ids_of(&list(7, 1).await), ids[6..7]);
    assert!(list(1_000_000, 1000).await.items.is_empty());
    // A filter that matches nothing: no items, and a total of zero.
    let none = store
        .list_jobs(
            JobFilter {
                namespace: Some("nothing.here".into()),
                ..JobFilter::default()
            },
            all(),
        )
        .await
        .expect("list_jobs");
    assert!(none.items.is_empty());
    assert_eq!(none.total_items, 0);
}

async fn tasks_are_listed_by_namespace_type_and_status(store: Arc<dyn Store>) {
    let job = create(
        &store,
        CreateJobRequest {
            auto_complete: Some(false),
            ..job_req()
        },
    )
    .await;
    let spec = |ns: &str, ty: &str| CreateTaskRequest {
        namespace: Some(ns.into()),
        task_type: Some(ty.into()),
        ..task_req()
    };
    let tasks = add(
        &store,
        job.id,
        vec![
            spec("w.a", "compile"),
            spec("w.a", "test"),
            spec("w.b", "compile"),
            spec("w.b", "Compile"),
            spec("w.a", "compile"),
        ],
    )
    .await;
    let id = |i: usize| tasks[i].id;
    set_task(&store, job.id, id(1), Status::InProgress)
        .await
        .expect("start");
    set_task(&store, job.id, id(2), Status::Completed)
        .await
        .expect("complete");
    set_task(&store, job.id, id(3), Status::Failed)
        .await
        .expect("fail");
    // Another job's tasks never show.
    let other = create(&store, job_req()).await;
    add(
        &store,
        other.id,
        vec![spec("w.a", "compile"), spec("w.b", "test")],
    )
    .await;

    let f = |ns: Option<&str>, ty: Option<&str>, statuses: &[Status]| TaskFilter {
        namespace: ns.map(str::to_owned),
        task_type: ty.map(str::to_owned),
        statuses: statuses.to_vec(),
    };
    let cases: Vec<(TaskFilter, Vec<usize>)> = vec![
        (f(None, None, &[]), vec![0, 1, 2, 3, 4]),
        (f(Some("w.a"), None, &[]), vec![0, 1, 4]),
        (f(Some("w"), None, &[]), vec![]),
        (f(None, Some("compile"), &[]), vec![0, 2, 4]),
        (f(None, Some("Compile"), &[]), vec![3]),
        (f(None, None, &[Status::Pending]), vec![0, 4]),
        (
            f(None, None, &[Status::Completed, Status::Failed]),
            vec![2, 3],
        ),
        (f(None, None, &[Status::Cancelled]), vec![]),
        (
            f(Some("w.b"), Some("compile"), &[Status::Completed]),
            vec![2],
        ),
        (
            f(Some("w.a"), Some("compile"), &[Status::InProgress]),
            vec![],
        ),
    ];
    for (filter, expected) in cases {
        let page = store
            .list_tasks(job.id, filter.clone(), all())
            .await
            .expect("list_tasks");
        let got: BTreeSet<TaskId> = page.items.iter().map(|t| t.id).collect();
        let want: BTreeSet<TaskId> = expected.iter().map(|&i| id(i)).collect();
        assert_eq!(got, want, "{filter:?}");
        assert_eq!(page.total_items as usize, want.len(), "{filter:?}");
        for t in &page.items {
            assert_eq!(t.job_id, job.id);
            assert_eq!(
                json(t),
                json(&get_task(&store, job.id, t.id).await),
                "listed as stored"
            );
        }
    }
    // A job without tasks lists none.
    let empty = create(&store, job_req()).await;
    let page = store
        .list_tasks(empty.id, TaskFilter::default(), all())
        .await
        .expect("list_tasks");
    assert!(page.items.is_empty());
    assert_eq!(page.total_items, 0);
}

async fn tasks_sort_and_page_like_jobs(store: Arc<dyn Store>) {
    let job = create(
        &store,
        CreateJobRequest {
            auto_complete: Some(false),
            ..job_req()
        },
    )
    .await;
    let t0 = 1_650_000_000_000;
    let specs: [(i64, &str, &str, Option<Status>); 7] = [
        (t0, "b", "x.b", None),
        (t0, "B", "x.a", Some(Status::Completed)),
        (t0 + 1, "a", "x.b", Some(Status::InProgress)),
        (t0 - 1, "b", "X.c", Some(Status::Failed)),
        (t0, "_", "x.a", Some(Status::Cancelled)),
        (t0 + 1, "b", "x.b", Some(Status::Completed)),
        (t0, "a", "x.a", None),
    ];
    let reqs = specs
        .iter()
        .map(|(start, ty, ns, _)| CreateTaskRequest {
            task_type: Some(ty.to_string()),
            namespace: Some(ns.to_string()),
            start_time: Some(Timestamp::from_millis(*start)),
            ..task_req()
        })
        .collect();
    let added = add(&store, job.id, reqs).await;
    for (t, (_, _, _, status)) in added.iter().zip(specs) {
        if let Some(s) = status {
            set_task(&store, job.id, t.id, s).await.expect("set");
        }
    }
    let tasks = all_tasks(&store, job.id).await;
    for field in SortField::ALL {
        let mut asc = tasks.clone();
        asc.sort_by(|a, b| compare_tasks(a, b, field));
        let asc: Vec<TaskId> = asc.iter().map(|t| t.id).collect();
        let desc: Vec<TaskId> = asc.iter().rev().copied().collect();
        for (order, expected) in [(SortOrder::Asc, &asc), (SortOrder::Desc, &desc)] {
            let mut paged = Vec::new();
            for n in 1..=3 {
                let page = store
                    .list_tasks(job.id, TaskFilter::default(), paging(n, 3, field, order))
                    .await
                    .expect("list_tasks");
                assert_eq!(page.total_items, tasks.len() as u64);
                paged.extend(page.items.iter().map(|t| t.id));
            }
            assert_eq!(&paged, expected, "task sort {field:?} {order:?}");
        }
    }
    let past = store
        .list_tasks(
            job.id,
            TaskFilter::default(),
            paging(4, 3, SortField::Status, SortOrder::Asc),
        )
        .await
        .expect("list_tasks");
    assert!(past.items.is_empty());
    assert_eq!(past.total_items, tasks.len() as u64);
}
