//! The job list and a job's task list: filters, paging and sorting.
//!
//! Start times are supplied by the test so that orderings do not depend on the clock.
//! Expected orders are computed here from the items themselves: by the sort key, ties by
//! id, the whole order reversed for `desc`. Two choices the design leaves open are pinned
//! down as the server makes them: statuses sort in lifecycle order (`pending`,
//! `in_progress`, `completed`, `failed`, `cancelled`), and a missing `end_time` sorts first
//! ascending.

use crate::helpers::{TestApp, assert_problem};
use crate::seed::{assert_job_shape, assert_page_shape, assert_task_shape};
use serde_json::{Value, json};
use std::cmp::Ordering;

const SORTS: [&str; 7] = [
    "start_time",
    "end_time",
    "created_at",
    "updated_at",
    "type",
    "namespace",
    "status",
];

/// A start time `second` seconds into 2024.
fn at(second: u32) -> String {
    format!("2024-01-01T00:{:02}:{:02}.000Z", second / 60, second % 60)
}

fn id_of(item: &Value) -> String {
    item["id"].as_str().expect("id").to_owned()
}

fn ids(page: &Value, items: &str) -> Vec<String> {
    page[items]
        .as_array()
        .unwrap_or_else(|| panic!("{items} in {page}"))
        .iter()
        .map(id_of)
        .collect()
}

async fn create_job(app: &TestApp, body: Value) -> Value {
    let (status, res) = app.post("/v1/jobs", body.clone()).await;
    assert_eq!(status, 200, "POST /v1/jobs {body}: {res}");
    res["job"].clone()
}

async fn get_job(app: &TestApp, id: &str) -> Value {
    let (status, res) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status, 200, "{res}");
    res["job"].clone()
}

async fn add_task(app: &TestApp, job: &str, body: Value) -> Value {
    let (status, res) = app.post(&format!("/v1/jobs/{job}/tasks"), body).await;
    assert_eq!(status, 200, "{res}");
    res["task"].clone()
}

async fn set_task(app: &TestApp, job: &str, task: &str, status: &str) -> Value {
    let (code, res) = app
        .put(
            &format!("/v1/jobs/{job}/tasks/{task}/status"),
            json!({ "status": status }),
        )
        .await;
    assert_eq!(code, 200, "set task {task} to {status}: {res}");
    res["task"].clone()
}

/// `GET /v1/jobs?{query}`, which must succeed and have the list shape.
async fn jobs(app: &TestApp, query: &str) -> Value {
    let (status, page) = app.get(&format!("/v1/jobs?{query}")).await;
    assert_eq!(status, 200, "GET /v1/jobs?{query}: {page}");
    assert_page_shape(&page, "jobs");
    for job in page["jobs"].as_array().expect("jobs") {
        assert_job_shape(job);
    }
    page
}

async fn job_ids(app: &TestApp, query: &str) -> Vec<String> {
    ids(&jobs(app, query).await, "jobs")
}

/// `GET /v1/jobs/{job}/tasks?{query}`, which must succeed and have the list shape.
async fn tasks(app: &TestApp, job: &str, query: &str) -> Value {
    let (status, page) = app.get(&format!("/v1/jobs/{job}/tasks?{query}")).await;
    assert_eq!(status, 200, "GET tasks?{query}: {page}");
    assert_page_shape(&page, "tasks");
    for task in page["tasks"].as_array().expect("tasks") {
        assert_task_shape(task);
    }
    page
}

async fn task_ids(app: &TestApp, job: &str, query: &str) -> Vec<String> {
    ids(&tasks(app, job, query).await, "tasks")
}

/// A job of `namespace` and `job_type` starting at `at(second)`, brought to `status`
/// (through a task, or explicitly for `cancelled`). Returns the job as stored afterwards.
async fn job_in(
    app: &TestApp,
    namespace: &str,
    job_type: &str,
    second: u32,
    status: &str,
) -> Value {
    let job = create_job(
        app,
        json!({"type": job_type, "namespace": namespace, "start_time": at(second)}),
    )
    .await;
    let id = id_of(&job);
    match status {
        "pending" => {}
        "cancelled" => {
            let (code, res) = app
                .put(
                    &format!("/v1/jobs/{id}/status"),
                    json!({"status": "cancelled"}),
                )
                .await;
            assert_eq!(code, 200, "{res}");
        }
        to => {
            let task = add_task(
                app,
                &id,
                json!({"type": "step", "namespace": "com.shipyard.tasks"}),
            )
            .await;
            set_task(app, &id, &id_of(&task), to).await;
        }
    }
    let job = get_job(app, &id).await;
    assert_eq!(job["status"], status, "{job}");
    job
}

fn status_rank(v: &Value) -> usize {
    let order = ["pending", "in_progress", "completed", "failed", "cancelled"];
    let s = v.as_str().expect("status string");
    order
        .iter()
        .position(|o| *o == s)
        .unwrap_or_else(|| panic!("unknown status {s}"))
}

/// The order the list must have: by `sort`, ties by id, all reversed for `desc`.
/// Timestamps are fixed-width UTC strings, so comparing them as strings is chronological;
/// `null` (no end time yet) sorts first.
fn expected(items: &[Value], sort: &str, order: &str) -> Vec<String> {
    let key = |a: &Value, b: &Value| -> Ordering {
        match sort {
            "status" => status_rank(&a["status"]).cmp(&status_rank(&b["status"])),
            field => a[field].as_str().cmp(&b[field].as_str()),
        }
    };
    let mut sorted: Vec<&Value> = items.iter().collect();
    sorted.sort_by(|a, b| key(a, b).then_with(|| id_of(a).cmp(&id_of(b))));
    if order == "desc" {
        sorted.reverse();
    }
    sorted.into_iter().map(id_of).collect()
}

fn assert_invalid_param(status: u16, body: &Value, field: &str) {
    assert_problem(status, body, 422);
    let errors = body["errors"].as_array();
    assert!(
        errors.is_some_and(|e| e.iter().any(|e| e["field"] == field)),
        "the problem should name `{field}`: {body}"
    );
}

// ---------------------------------------------------------------------------------------
// Job list: filters

#[tokio::test]
async fn jobs_are_filtered_by_namespace() {
    let app = TestApp::spawn().await;
    let a = create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(1)}),
    )
    .await;
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.b", "start_time": at(2)}),
    )
    .await;
    let c = create_job(
        &app,
        json!({"type": "build", "namespace": "com.a", "start_time": at(3)}),
    )
    .await;
    // A namespace that merely starts like another is a different namespace.
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.a.x", "start_time": at(4)}),
    )
    .await;

    let page = jobs(&app, "namespace=com.a").await;
    assert_eq!(ids(&page, "jobs"), [id_of(&a), id_of(&c)]);
    assert_eq!(page["total_items"], 2);
    assert_eq!(
        job_ids(&app, "namespace=com.zzz").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn jobs_are_filtered_by_type() {
    let app = TestApp::spawn().await;
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(1)}),
    )
    .await;
    let b = create_job(
        &app,
        json!({"type": "build", "namespace": "com.b", "start_time": at(2)}),
    )
    .await;
    let c = create_job(
        &app,
        json!({"type": "build", "namespace": "com.a", "start_time": at(3)}),
    )
    .await;

    assert_eq!(job_ids(&app, "type=build").await, [id_of(&b), id_of(&c)]);
    assert_eq!(job_ids(&app, "type=Build").await, Vec::<String>::new());
}

#[tokio::test]
async fn jobs_are_filtered_by_correlation_id_under_all_three_spellings() {
    let app = TestApp::spawn().await;
    let a = create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "correlation_id": "corr-1", "start_time": at(1)}),
    )
    .await;
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "correlation_id": "corr-2", "start_time": at(2)}),
    )
    .await;
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(3)}),
    )
    .await;
    let d = create_job(
        &app,
        json!({"type": "build", "namespace": "com.b", "correlation_id": "corr-1", "start_time": at(4)}),
    )
    .await;

    for name in ["correlation_id", "correllation_id", "corellation_id"] {
        assert_eq!(
            job_ids(&app, &format!("{name}=corr-1")).await,
            [id_of(&a), id_of(&d)],
            "filter spelled {name}"
        );
    }
    assert_eq!(
        job_ids(&app, "correlation_id=corr-9").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn jobs_are_filtered_by_one_status_or_several_comma_separated() {
    let app = TestApp::spawn().await;
    let pending = job_in(&app, "com.a", "send", 1, "pending").await;
    let running = job_in(&app, "com.a", "send", 2, "in_progress").await;
    let completed = job_in(&app, "com.a", "send", 3, "completed").await;
    let failed = job_in(&app, "com.a", "send", 4, "failed").await;
    let cancelled = job_in(&app, "com.a", "send", 5, "cancelled").await;

    for job in [&pending, &running, &completed, &failed, &cancelled] {
        let status = job["status"].as_str().unwrap();
        assert_eq!(
            job_ids(&app, &format!("status={status}")).await,
            [id_of(job)],
            "status={status}"
        );
    }
    assert_eq!(
        job_ids(&app, "status=failed,pending").await,
        [id_of(&pending), id_of(&failed)]
    );
    assert_eq!(
        job_ids(&app, "status=completed,failed,cancelled").await,
        [id_of(&completed), id_of(&failed), id_of(&cancelled)]
    );
}

#[tokio::test]
async fn the_seed_spelling_inprogress_filters_jobs_in_progress() {
    let app = TestApp::spawn().await;
    job_in(&app, "com.a", "send", 1, "pending").await;
    let running = job_in(&app, "com.a", "send", 2, "in_progress").await;
    job_in(&app, "com.a", "send", 3, "completed").await;

    assert_eq!(job_ids(&app, "status=inprogress").await, [id_of(&running)]);
    assert_eq!(job_ids(&app, "status=in_progress").await, [id_of(&running)]);
}

#[tokio::test]
async fn an_unknown_status_filter_is_unprocessable() {
    let app = TestApp::spawn().await;
    for query in [
        "status=done",
        "status=pending,done",
        "status=pending,",
        "status=PENDING",
    ] {
        let (status, body) = app.get(&format!("/v1/jobs?{query}")).await;
        assert_invalid_param(status, &body, "status");
    }
}

#[tokio::test]
async fn a_meta_filter_matches_a_top_level_string_value() {
    let app = TestApp::spawn().await;
    let a = create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(1), "meta": {"foo": "bar"}}),
    )
    .await;
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(2), "meta": {"foo": "baz"}}),
    )
    .await;
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(3), "meta": {"other": "bar"}}),
    )
    .await;
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(4)}),
    )
    .await;

    assert_eq!(job_ids(&app, "meta.foo=bar").await, [id_of(&a)]);
    assert_eq!(job_ids(&app, "meta.foo=ba").await, Vec::<String>::new());
    assert_eq!(
        job_ids(&app, "meta.missing=bar").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_meta_filter_on_a_number_matches_the_number_and_the_string_that_spells_it() {
    let app = TestApp::spawn().await;
    let number = create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(1), "meta": {"release_id": 123}}),
    )
    .await;
    let string = create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(2), "meta": {"release_id": "123"}}),
    )
    .await;
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(3), "meta": {"release_id": 1234}}),
    )
    .await;
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(4), "meta": {"release_id": "0123"}}),
    )
    .await;
    let fraction = create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(5), "meta": {"release_id": 1.5}}),
    )
    .await;

    assert_eq!(
        job_ids(&app, "meta.release_id=123").await,
        [id_of(&number), id_of(&string)]
    );
    assert_eq!(
        job_ids(&app, "meta.release_id=1.5").await,
        [id_of(&fraction)]
    );
    assert_eq!(
        job_ids(&app, "meta.release_id=12").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_meta_filter_on_a_boolean_matches_the_boolean_and_its_string() {
    let app = TestApp::spawn().await;
    let yes = create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(1), "meta": {"urgent": true}}),
    )
    .await;
    let no = create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(2), "meta": {"urgent": false}}),
    )
    .await;
    let text = create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(3), "meta": {"urgent": "true"}}),
    )
    .await;
    // The number 1 is not the boolean true.
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(4), "meta": {"urgent": 1}}),
    )
    .await;

    assert_eq!(
        job_ids(&app, "meta.urgent=true").await,
        [id_of(&yes), id_of(&text)]
    );
    assert_eq!(job_ids(&app, "meta.urgent=false").await, [id_of(&no)]);
}

#[tokio::test]
async fn a_meta_filter_never_matches_nested_values() {
    let app = TestApp::spawn().await;
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(1), "meta": {"a": {"b": "x"}}}),
    )
    .await;
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(2), "meta": {"a": ["x"]}}),
    )
    .await;
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(3), "meta": {"a": null}}),
    )
    .await;
    let flat = create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(4), "meta": {"a.b": "x"}}),
    )
    .await;

    assert_eq!(job_ids(&app, "meta.a=x").await, Vec::<String>::new());
    assert_eq!(job_ids(&app, "meta.a=null").await, Vec::<String>::new());
    // `meta.a.b` names the top-level key "a.b", not a path into "a".
    assert_eq!(job_ids(&app, "meta.a.b=x").await, [id_of(&flat)]);
}

#[tokio::test]
async fn two_meta_filters_must_both_hold() {
    let app = TestApp::spawn().await;
    let both = create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(1),
               "meta": {"env": "prod", "release_id": 7}}),
    )
    .await;
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(2),
               "meta": {"env": "prod", "release_id": 8}}),
    )
    .await;
    create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "start_time": at(3),
               "meta": {"env": "test", "release_id": 7}}),
    )
    .await;

    assert_eq!(
        job_ids(&app, "meta.env=prod&meta.release_id=7").await,
        [id_of(&both)]
    );
    assert_eq!(
        job_ids(&app, "meta.env=test&meta.release_id=8").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_meta_filter_without_a_key_is_unprocessable() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/v1/jobs?meta.=x").await;
    assert_problem(status, &body, 422);
}

#[tokio::test]
async fn all_given_filters_must_hold_together() {
    let app = TestApp::spawn().await;
    let meta = json!({"env": "prod"});
    let mut made = Vec::new();
    for (i, (ns, ty, corr, status)) in [
        ("com.a", "send", "c1", "completed"),
        ("com.a", "send", "c1", "pending"),
        ("com.a", "build", "c1", "completed"),
        ("com.b", "send", "c1", "completed"),
        ("com.a", "send", "c2", "completed"),
    ]
    .into_iter()
    .enumerate()
    {
        let job = create_job(
            &app,
            json!({"type": ty, "namespace": ns, "correlation_id": corr,
                   "start_time": at(i as u32), "meta": meta}),
        )
        .await;
        let id = id_of(&job);
        if status == "completed" {
            let task = add_task(&app, &id, json!({"type": "t", "namespace": "n"})).await;
            set_task(&app, &id, &id_of(&task), "completed").await;
        }
        made.push(id);
    }
    // A sixth job like the first but without the meta key.
    let plain = create_job(
        &app,
        json!({"type": "send", "namespace": "com.a", "correlation_id": "c1", "start_time": at(9)}),
    )
    .await;
    let plain_id = id_of(&plain);
    let task = add_task(&app, &plain_id, json!({"type": "t", "namespace": "n"})).await;
    set_task(&app, &plain_id, &id_of(&task), "completed").await;

    assert_eq!(
        job_ids(
            &app,
            "namespace=com.a&type=send&correlation_id=c1&status=completed&meta.env=prod"
        )
        .await,
        [made[0].clone()]
    );
    assert_eq!(
        job_ids(
            &app,
            "namespace=com.a&type=send&correlation_id=c1&status=completed"
        )
        .await,
        [made[0].clone(), plain_id.clone()]
    );
    assert_eq!(
        job_ids(&app, "namespace=com.a&type=send&status=pending,completed").await,
        [made[0].clone(), made[1].clone(), made[4].clone(), plain_id]
    );
    assert_eq!(
        job_ids(&app, "namespace=com.b&type=build").await,
        Vec::<String>::new()
    );
}

// ---------------------------------------------------------------------------------------
// Job list: paging

async fn seven_jobs(app: &TestApp) -> Vec<String> {
    let mut ids = Vec::new();
    // Created out of start-time order, so that creation order cannot pass for sorting.
    for second in [5, 2, 7, 1, 4, 6, 3] {
        let job = create_job(
            app,
            json!({"type": "send", "namespace": "com.a", "start_time": at(second)}),
        )
        .await;
        ids.push((second, id_of(&job)));
    }
    ids.sort();
    ids.into_iter().map(|(_, id)| id).collect()
}

#[tokio::test]
async fn the_default_page_is_the_first_25_by_start_time_ascending() {
    let app = TestApp::spawn().await;
    let mut expected_ids = seven_jobs(&app).await;
    for second in 10..30 {
        let job = create_job(
            &app,
            json!({"type": "send", "namespace": "com.a", "start_time": at(second)}),
        )
        .await;
        expected_ids.push(id_of(&job));
    }

    let page = jobs(&app, "").await;
    assert_eq!(page["page"], 1);
    assert_eq!(page["page_size"], 25);
    assert_eq!(page["total_items"], 27);
    assert_eq!(page["total_pages"], 2);
    assert_eq!(page["sort"], "start_time");
    assert_eq!(page["order"], "asc");
    assert_eq!(ids(&page, "jobs"), expected_ids[..25]);
}

#[tokio::test]
async fn pages_cover_the_list_once_and_the_last_page_is_partial() {
    let app = TestApp::spawn().await;
    let all = seven_jobs(&app).await;

    let mut seen = Vec::new();
    for (n, len) in [(1, 3), (2, 3), (3, 1)] {
        let page = jobs(&app, &format!("size=3&page={n}")).await;
        assert_eq!(page["page"], n);
        assert_eq!(page["page_size"], 3);
        assert_eq!(page["total_items"], 7);
        assert_eq!(page["total_pages"], 3);
        assert_eq!(page["jobs"].as_array().unwrap().len(), len, "page {n}");
        seen.extend(ids(&page, "jobs"));
    }
    assert_eq!(seen, all);

    // An exact multiple has no extra page.
    let page = jobs(&app, "size=7").await;
    assert_eq!(page["total_pages"], 1);
    let page = jobs(&app, "size=1").await;
    assert_eq!(page["total_pages"], 7);
    assert_eq!(ids(&page, "jobs"), all[..1]);
}

#[tokio::test]
async fn an_empty_result_has_zero_total_pages() {
    let app = TestApp::spawn().await;
    let page = jobs(&app, "").await;
    assert_eq!(page["total_items"], 0);
    assert_eq!(page["total_pages"], 0);
    assert_eq!(page["page"], 1);
    assert_eq!(page["jobs"], json!([]));

    seven_jobs(&app).await;
    let page = jobs(&app, "namespace=com.none").await;
    assert_eq!(page["total_items"], 0);
    assert_eq!(page["total_pages"], 0);
    assert_eq!(page["jobs"], json!([]));
}

#[tokio::test]
async fn a_page_past_the_end_is_empty_but_keeps_the_totals() {
    let app = TestApp::spawn().await;
    seven_jobs(&app).await;

    for n in [4, 100, 4_294_967_295_u64] {
        let page = jobs(&app, &format!("size=3&page={n}")).await;
        assert_eq!(page["page"], n);
        assert_eq!(page["page_size"], 3);
        assert_eq!(page["total_items"], 7);
        assert_eq!(page["total_pages"], 3);
        assert_eq!(page["jobs"], json!([]));
    }
}

#[tokio::test]
async fn a_page_size_of_1000_is_accepted() {
    let app = TestApp::spawn().await;
    let all = seven_jobs(&app).await;
    let page = jobs(&app, "size=1000").await;
    assert_eq!(page["page_size"], 1000);
    assert_eq!(page["total_pages"], 1);
    assert_eq!(ids(&page, "jobs"), all);
}

#[tokio::test]
async fn page_and_size_outside_their_range_or_not_numbers_are_unprocessable() {
    let app = TestApp::spawn().await;
    for (query, field) in [
        ("size=1001", "size"),
        ("size=0", "size"),
        ("size=-1", "size"),
        ("size=abc", "size"),
        ("size=2.5", "size"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page=4294967296", "page"),
    ] {
        let (status, body) = app.get(&format!("/v1/jobs?{query}")).await;
        assert_invalid_param(status, &body, field);
        let (status, body) = app.get(&format!("/v1/jobs/?{query}")).await;
        assert_invalid_param(status, &body, field);
    }
}

#[tokio::test]
async fn an_unknown_sort_or_order_is_unprocessable() {
    let app = TestApp::spawn().await;
    for (query, field) in [
        ("sort=id", "sort"),
        ("sort=meta", "sort"),
        ("sort=startTime", "sort"),
        ("order=up", "order"),
        ("order=ascending", "order"),
    ] {
        let (status, body) = app.get(&format!("/v1/jobs?{query}")).await;
        assert_invalid_param(status, &body, field);
    }
}

#[tokio::test]
async fn an_unknown_query_parameter_is_unprocessable() {
    let app = TestApp::spawn().await;
    for name in ["namespce", "limit", "correlationid", "meta"] {
        let (status, body) = app.get(&format!("/v1/jobs?{name}=x")).await;
        assert_invalid_param(status, &body, name);
    }
}

// ---------------------------------------------------------------------------------------
// Job list: sorting

/// Jobs whose every sort key differs in order from the others: start times shuffled
/// against creation, types and namespaces with repeats (ties fall to the id), all
/// statuses, end times only on terminal jobs, and updates out of creation order.
async fn jobs_to_sort(app: &TestApp) -> Vec<Value> {
    let specs = [
        ("com.c", "deploy", 30, "completed"),
        ("com.a", "build", 10, "pending"),
        ("com.b", "send", 50, "failed"),
        ("com.a", "deploy", 20, "in_progress"),
        ("com.c", "build", 40, "cancelled"),
        ("com.b", "build", 15, "completed"),
        ("com.a", "send", 45, "pending"),
        ("com.b", "deploy", 5, "in_progress"),
    ];
    let mut ids = Vec::new();
    for (ns, ty, second, status) in specs {
        ids.push(id_of(&job_in(app, ns, ty, second, status).await));
    }
    // Change two early jobs again so that updated_at differs from created_at order.
    add_task(
        app,
        &ids[1],
        json!({"type": "step", "namespace": "com.shipyard.tasks"}),
    )
    .await;
    let (status, body) = app
        .put(
            &format!("/v1/jobs/{}/status", ids[3]),
            json!({"status": "failed"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let page = jobs(app, "size=1000").await;
    page["jobs"].as_array().unwrap().clone()
}

#[tokio::test]
async fn jobs_sort_by_every_field_in_both_orders_with_ties_broken_by_id() {
    let app = TestApp::spawn().await;
    let all = jobs_to_sort(&app).await;
    assert_eq!(all.len(), 8);

    for sort in SORTS {
        for order in ["asc", "desc"] {
            let page = jobs(&app, &format!("sort={sort}&order={order}&size=1000")).await;
            assert_eq!(page["sort"], sort);
            assert_eq!(page["order"], order);
            assert_eq!(
                ids(&page, "jobs"),
                expected(&all, sort, order),
                "sort={sort}&order={order}"
            );
        }
    }
    // The order defaults to ascending.
    let page = jobs(&app, "sort=type&size=1000").await;
    assert_eq!(page["order"], "asc");
    assert_eq!(ids(&page, "jobs"), expected(&all, "type", "asc"));
}

#[tokio::test]
async fn pages_follow_the_sort_order() {
    let app = TestApp::spawn().await;
    let all = jobs_to_sort(&app).await;

    for (sort, order) in [
        ("namespace", "desc"),
        ("status", "asc"),
        ("end_time", "desc"),
    ] {
        let mut seen = Vec::new();
        for n in 1..=3 {
            let page = jobs(&app, &format!("sort={sort}&order={order}&size=3&page={n}")).await;
            seen.extend(ids(&page, "jobs"));
        }
        assert_eq!(
            seen,
            expected(&all, sort, order),
            "sort={sort}&order={order}"
        );
    }
}

#[tokio::test]
async fn jobs_with_the_same_start_time_are_ordered_by_id() {
    let app = TestApp::spawn().await;
    // Created in an order that is neither ascending nor descending by id.
    let made = [
        "00000000-0000-4000-8000-000000000002",
        "00000000-0000-4000-8000-000000000003",
        "00000000-0000-4000-8000-000000000001",
    ];
    for id in made {
        create_job(
            &app,
            json!({"id": id, "type": "send", "namespace": "com.a", "start_time": at(1)}),
        )
        .await;
    }
    let mut asc: Vec<String> = made.iter().map(|s| s.to_string()).collect();
    asc.sort();
    assert_eq!(job_ids(&app, "").await, asc);
    assert_eq!(job_ids(&app, "sort=type").await, asc);
    let desc: Vec<String> = asc.iter().rev().cloned().collect();
    assert_eq!(job_ids(&app, "order=desc").await, desc);
}

// ---------------------------------------------------------------------------------------
// Task list

/// A job (with auto-complete off, so that it never closes) with tasks whose sort keys are
/// shuffled against each other; returns the job id and its tasks as stored.
async fn tasks_to_sort(app: &TestApp) -> (String, Vec<Value>) {
    let job = create_job(
        app,
        json!({"type": "send", "namespace": "com.a", "auto_complete": false}),
    )
    .await;
    let job_id = id_of(&job);
    let specs = [
        ("com.c", "render", 30, "completed"),
        ("com.a", "send", 10, "pending"),
        ("com.b", "render", 50, "failed"),
        ("com.a", "upload", 20, "in_progress"),
        ("com.c", "send", 40, "cancelled"),
        ("com.b", "send", 15, "completed"),
        ("com.a", "upload", 45, "pending"),
        ("com.b", "render", 5, "in_progress"),
    ];
    let mut ids = Vec::new();
    for (ns, ty, second, _) in specs {
        let task = add_task(
            app,
            &job_id,
            json!({"type": ty, "namespace": ns, "start_time": at(second)}),
        )
        .await;
        ids.push(id_of(&task));
    }
    // Status changes in reverse order of creation, so updated_at runs the other way.
    for (id, (_, _, _, status)) in ids.iter().zip(specs).rev() {
        if status != "pending" {
            set_task(app, &job_id, id, status).await;
        }
    }
    let page = tasks(app, &job_id, "size=1000").await;
    let all = page["tasks"].as_array().unwrap().clone();
    assert_eq!(all.len(), specs.len());
    (job_id, all)
}

#[tokio::test]
async fn tasks_sort_by_every_field_in_both_orders_with_ties_broken_by_id() {
    let app = TestApp::spawn().await;
    let (job, all) = tasks_to_sort(&app).await;

    for sort in SORTS {
        for order in ["asc", "desc"] {
            let page = tasks(&app, &job, &format!("sort={sort}&order={order}&size=1000")).await;
            assert_eq!(page["sort"], sort);
            assert_eq!(page["order"], order);
            assert_eq!(
                ids(&page, "tasks"),
                expected(&all, sort, order),
                "sort={sort}&order={order}"
            );
        }
    }
    // The default: start_time ascending.
    let page = tasks(&app, &job, "").await;
    assert_eq!(page["sort"], "start_time");
    assert_eq!(page["order"], "asc");
    assert_eq!(ids(&page, "tasks"), expected(&all, "start_time", "asc"));
}

#[tokio::test]
async fn tasks_are_filtered_by_namespace_type_and_status() {
    let app = TestApp::spawn().await;
    let (job, all) = tasks_to_sort(&app).await;
    let select = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        let picked: Vec<Value> = all.iter().filter(|t| pred(t)).cloned().collect();
        expected(&picked, "start_time", "asc")
    };

    assert_eq!(
        task_ids(&app, &job, "namespace=com.a").await,
        select(&|t| t["namespace"] == "com.a")
    );
    assert_eq!(
        task_ids(&app, &job, "type=render").await,
        select(&|t| t["type"] == "render")
    );
    assert_eq!(
        task_ids(&app, &job, "status=completed").await,
        select(&|t| t["status"] == "completed")
    );
    assert_eq!(
        task_ids(&app, &job, "status=inprogress").await,
        select(&|t| t["status"] == "in_progress")
    );
    assert_eq!(
        task_ids(&app, &job, "status=pending,failed,cancelled").await,
        select(&|t| matches!(
            t["status"].as_str(),
            Some("pending" | "failed" | "cancelled")
        ))
    );
    assert_eq!(
        task_ids(
            &app,
            &job,
            "namespace=com.b&type=render&status=failed,in_progress"
        )
        .await,
        select(&|t| {
            t["namespace"] == "com.b"
                && t["type"] == "render"
                && matches!(t["status"].as_str(), Some("failed" | "in_progress"))
        })
    );
    assert_eq!(
        task_ids(&app, &job, "namespace=com.a&type=render").await,
        Vec::<String>::new()
    );
    // Each filter above really narrowed the list.
    assert_eq!(select(&|t| t["namespace"] == "com.a").len(), 3);
    assert_eq!(select(&|t| t["type"] == "render").len(), 3);
}

#[tokio::test]
async fn a_task_list_holds_only_the_tasks_of_its_job() {
    let app = TestApp::spawn().await;
    let (job, all) = tasks_to_sort(&app).await;
    let other = create_job(&app, json!({"type": "send", "namespace": "com.a"})).await;
    let other_id = id_of(&other);
    let stray = add_task(
        &app,
        &other_id,
        json!({"type": "send", "namespace": "com.a"}),
    )
    .await;

    let page = tasks(&app, &job, "size=1000").await;
    assert_eq!(page["total_items"], all.len());
    assert!(!ids(&page, "tasks").contains(&id_of(&stray)));
    let page = tasks(&app, &other_id, "").await;
    assert_eq!(ids(&page, "tasks"), [id_of(&stray)]);
    for task in page["tasks"].as_array().unwrap() {
        assert_eq!(task["job_id"], other_id.as_str());
    }
}

#[tokio::test]
async fn task_pages_have_correct_totals_and_boundaries() {
    let app = TestApp::spawn().await;
    let (job, all) = tasks_to_sort(&app).await;
    let all_ids = expected(&all, "start_time", "asc");

    let mut seen = Vec::new();
    for (n, len) in [(1, 3), (2, 3), (3, 2)] {
        let page = tasks(&app, &job, &format!("size=3&page={n}")).await;
        assert_eq!(page["page"], n);
        assert_eq!(page["page_size"], 3);
        assert_eq!(page["total_items"], 8);
        assert_eq!(page["total_pages"], 3);
        assert_eq!(page["tasks"].as_array().unwrap().len(), len);
        seen.extend(ids(&page, "tasks"));
    }
    assert_eq!(seen, all_ids);

    let page = tasks(&app, &job, "size=3&page=9").await;
    assert_eq!(page["tasks"], json!([]));
    assert_eq!(page["total_items"], 8);
    assert_eq!(page["total_pages"], 3);

    let page = tasks(&app, &job, "size=1000").await;
    assert_eq!(page["total_pages"], 1);

    let page = tasks(&app, &job, "type=nothing").await;
    assert_eq!(page["total_items"], 0);
    assert_eq!(page["total_pages"], 0);
    assert_eq!(page["tasks"], json!([]));

    let empty = create_job(&app, json!({"type": "send", "namespace": "com.a"})).await;
    let page = tasks(&app, &id_of(&empty), "").await;
    assert_eq!(page["total_items"], 0);
    assert_eq!(page["total_pages"], 0);
}

#[tokio::test]
async fn bad_task_list_parameters_are_unprocessable() {
    let app = TestApp::spawn().await;
    let job = create_job(&app, json!({"type": "send", "namespace": "com.a"})).await;
    let job = id_of(&job);
    for (query, field) in [
        ("size=1001", "size"),
        ("size=0", "size"),
        ("size=abc", "size"),
        ("page=0", "page"),
        ("sort=priority", "sort"),
        ("order=sideways", "order"),
        ("status=done", "status"),
        // The job list's filters are not the task list's.
        ("correlation_id=x", "correlation_id"),
        ("meta.foo=bar", "meta.foo"),
        ("nmespace=x", "nmespace"),
    ] {
        let (status, body) = app.get(&format!("/v1/jobs/{job}/tasks?{query}")).await;
        assert_invalid_param(status, &body, field);
    }
}

#[tokio::test]
async fn listing_the_tasks_of_an_unknown_job_is_not_found() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .get("/v1/jobs/00000000-0000-4000-8000-00000000abcd/tasks")
        .await;
    assert_problem(status, &body, 404);
    let (status, body) = app.get("/v1/jobs/not-a-uuid/tasks").await;
    assert_problem(status, &body, 404);
}

/// Walks a list by `next` cursors and returns the ids in the order seen.
async fn walk_by_cursor(
    app: &TestApp,
    path: &str,
    items: &str,
    query: &str,
    size: usize,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let q = match &after {
            Some(c) => format!("{query}&size={size}&after={c}"),
            None => format!("{query}&size={size}"),
        };
        let (status, page) = app.get(&format!("{path}?{q}")).await;
        assert_eq!(status, 200, "GET {path}?{q}: {page}");
        let got = ids(&page, items);
        assert!(got.len() <= size);
        seen.extend(got.clone());
        match page["next"].as_str() {
            Some(c) => {
                assert_eq!(
                    got.len(),
                    size,
                    "a `next` cursor only follows a full page: {page}"
                );
                after = Some(c.to_owned());
            }
            None => return seen,
        }
    }
    panic!("cursor walk did not end");
}

#[tokio::test]
async fn cursors_walk_jobs_in_every_sort_and_order_exactly_once() {
    let app = TestApp::spawn().await;
    let all = jobs_to_sort(&app).await;
    for sort in SORTS {
        for order in ["asc", "desc"] {
            for size in [1, 3, 8] {
                let seen = walk_by_cursor(
                    &app,
                    "/v1/jobs",
                    "jobs",
                    &format!("sort={sort}&order={order}"),
                    size,
                )
                .await;
                assert_eq!(
                    seen,
                    expected(&all, sort, order),
                    "sort={sort}&order={order}&size={size}"
                );
            }
        }
    }
}

#[tokio::test]
async fn cursors_respect_filters_and_walk_tasks_too() {
    let app = TestApp::spawn().await;
    let all = jobs_to_sort(&app).await;
    let in_b: Vec<Value> = all
        .iter()
        .filter(|j| j["namespace"] == "com.b")
        .cloned()
        .collect();
    let seen = walk_by_cursor(
        &app,
        "/v1/jobs",
        "jobs",
        "namespace=com.b&sort=start_time&order=desc",
        2,
    )
    .await;
    assert_eq!(seen, expected(&in_b, "start_time", "desc"));

    let (job, tasks) = tasks_to_sort(&app).await;
    for sort in SORTS {
        let seen = walk_by_cursor(
            &app,
            &format!("/v1/jobs/{job}/tasks"),
            "tasks",
            &format!("sort={sort}&order=asc"),
            2,
        )
        .await;
        assert_eq!(seen, expected(&tasks, sort, "asc"), "tasks sort={sort}");
    }
}

#[tokio::test]
async fn a_bad_or_mismatched_cursor_is_unprocessable() {
    let app = TestApp::spawn().await;
    jobs_to_sort(&app).await;
    let page = jobs(&app, "sort=type&size=2").await;
    let next = page["next"]
        .as_str()
        .expect("a full page has a next cursor")
        .to_owned();
    for query in [
        "after=not-a-cursor".to_owned(),
        format!("sort=namespace&after={next}"),
        format!("sort=type&order=desc&after={next}"),
        format!("sort=type&page=2&after={next}"),
    ] {
        let (status, body) = app.get(&format!("/v1/jobs?{query}")).await;
        assert_invalid_param(status, &body, "after");
    }
}
