//! The dashboard and the API reference page in a real headless Chromium, against a real
//! server: what a person sees and does, checked through the page and through the API.

use crate::browser::{Browser, DESKTOP, PHONE, Scheme};
use crate::helpers::{TestApp, job_request};
use portauthority_core::Status;
use portauthority_core::api::Job;
use serde_json::json;

/// A fresh server and a light-scheme browser of `size`; None when the browser is missing.
async fn app_and_browser(size: (u32, u32)) -> Option<(TestApp, Browser)> {
    let app = TestApp::spawn().await;
    let b = Browser::start(size, Scheme::Light).await?;
    Some((app, b))
}

/// Answers the page's confirmation dialog, once it is open.
async fn answer(b: &Browser, confirm: bool) {
    b.wait("the question", "document.getElementById('confirm').open")
        .await;
    b.click(if confirm {
        "#confirm button[value=ok]"
    } else {
        "#confirm button[value=cancel]"
    })
    .await;
    b.wait(
        "the question closed",
        "!document.getElementById('confirm').open",
    )
    .await;
}

/// The ids of the job rows on the page, in order.
const ROW_IDS: &str = "[...document.querySelectorAll('tr[data-id]')].map(r => r.dataset.id)";

async fn new_job(app: &TestApp, namespace: &str, job_type: &str, meta: serde_json::Value) -> Job {
    let mut req = job_request(namespace, job_type);
    req.meta = Some(meta);
    app.client.create_job(&req).await.expect("job created")
}

async fn ids_on_page(b: &Browser, n: usize) -> Vec<String> {
    let v = b
        .wait(
            &format!("{n} rows for this address"),
            &format!(
                "document.querySelector('.results').dataset.shown === location.search && \
                 {ROW_IDS}.length === {n} && {ROW_IDS}"
            ),
        )
        .await;
    serde_json::from_value(v).expect("ids")
}

#[tokio::test]
async fn the_list_shows_the_jobs_its_address_filters_for() {
    let Some((app, b)) = app_and_browser(DESKTOP).await else {
        return;
    };
    let wanted = new_job(&app, "com.shipyard.email", "send", json!({"team": "atlas"})).await;
    let _other_team = new_job(&app, "com.shipyard.email", "send", json!({"team": "zeus"})).await;
    let _other_ns = new_job(&app, "com.shipyard.sms", "send", json!({"team": "atlas"})).await;

    b.goto(&app.url("/?namespace=com.shipyard.email&meta.team=atlas"))
        .await;
    assert_eq!(ids_on_page(&b, 1).await, vec![wanted.id.to_string()]);
    // The form shows the filters it came with.
    let shown = b
        .js("return [document.querySelector('[name=namespace]').value, \
             document.querySelector('.meta-key').value, document.querySelector('.meta-value').value]")
        .await;
    assert_eq!(shown, json!(["com.shipyard.email", "team", "atlas"]));
    // No tasks: no ETA, and the row says why.
    assert_eq!(
        b.js("return document.querySelector('tr[data-id] .c-eta').textContent")
            .await,
        json!("no tasks")
    );

    // Without filters, all three, with their progress bars.
    b.goto(&app.url("/")).await;
    assert_eq!(ids_on_page(&b, 3).await.len(), 3);
    assert_eq!(
        b.js("return document.querySelectorAll('tr[data-id] progress').length")
            .await,
        json!(3)
    );
    b.close().await;
}

#[tokio::test]
async fn each_filter_of_the_form_changes_the_list_and_the_address() {
    let Some((app, b)) = app_and_browser(DESKTOP).await else {
        return;
    };
    let (failed, tasks) = app.job_with_tasks("com.shipyard.email", 1).await;
    app.set(failed.id, tasks[0].id, Status::Failed).await;
    let _pending = new_job(&app, "com.shipyard.email", "send", json!({})).await;
    let mut with_cid = job_request("com.shipyard.push", "notify");
    with_cid.correlation_id = Some("release-42".into());
    let with_cid = app.client.create_job(&with_cid).await.expect("job");
    let typed = new_job(&app, "com.shipyard.push", "digest", json!({"region": "eu"})).await;

    b.goto(&app.url("/")).await;
    ids_on_page(&b, 4).await;

    // Namespace and status.
    b.type_into("[name=namespace]", "com.shipyard.email").await;
    b.click("input[name=status][value=failed]").await;
    b.click("form.filters button[type=submit]").await;
    assert_eq!(ids_on_page(&b, 1).await, vec![failed.id.to_string()]);
    assert_eq!(
        b.location().await,
        "/?namespace=com.shipyard.email&status=failed"
    );

    // Correlation id.
    b.goto(&app.url("/")).await;
    ids_on_page(&b, 4).await;
    b.type_into("[name=correlation_id]", "release-42").await;
    b.click("form.filters button[type=submit]").await;
    assert_eq!(ids_on_page(&b, 1).await, vec![with_cid.id.to_string()]);
    assert_eq!(b.location().await, "/?correlation_id=release-42");

    // Type, and a meta filter.
    b.goto(&app.url("/")).await;
    ids_on_page(&b, 4).await;
    b.type_into("[name=type]", "digest").await;
    b.type_into(".meta-key", "region").await;
    b.type_into(".meta-value", "eu").await;
    b.click("form.filters button[type=submit]").await;
    assert_eq!(ids_on_page(&b, 1).await, vec![typed.id.to_string()]);
    assert_eq!(b.location().await, "/?type=digest&meta.region=eu");

    // Sort, descending: the address says so and the order is the API's.
    b.goto(&app.url("/")).await;
    ids_on_page(&b, 4).await;
    b.js("const s = document.querySelector('[name=order]'); s.value = 'desc';")
        .await;
    b.click("form.filters button[type=submit]").await;
    b.wait("the address", "location.search === '?order=desc'")
        .await;
    let (_, api) = app.get("/v1/jobs?order=desc").await;
    let expected: Vec<String> = api["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids_on_page(&b, 4).await, expected);

    // Back goes to the previous filters.
    b.js("history.back()").await;
    b.wait("the address", "location.search === ''").await;
    ids_on_page(&b, 4).await;
    b.close().await;
}

#[tokio::test]
async fn paging_goes_to_the_next_page_and_back() {
    let Some((app, b)) = app_and_browser(DESKTOP).await else {
        return;
    };
    for i in 0..12 {
        new_job(
            &app,
            "com.shipyard.email",
            &format!("send-{i:02}"),
            json!({}),
        )
        .await;
    }
    b.goto(&app.url("/?size=5&sort=type")).await;
    let first = ids_on_page(&b, 5).await;
    b.click("a[rel=next]").await;
    b.wait("page 2", "location.search.includes('page=2')").await;
    let second = b
        .wait(
            "other rows",
            &format!(
                "{ROW_IDS}.length === 5 && {ROW_IDS}.every(id => !{}.includes(id)) && {ROW_IDS}",
                json!(first)
            ),
        )
        .await;
    let second: Vec<String> = serde_json::from_value(second).expect("ids");
    assert!(second.iter().all(|id| !first.contains(id)));
    assert_eq!(b.location().await, "/?size=5&sort=type&page=2");
    b.click("a[rel=next]").await;
    b.wait("page 3", "location.search.includes('page=3')").await;
    ids_on_page(&b, 2).await;
    assert_eq!(
        b.js("return document.querySelector('a[rel=next]') === null")
            .await,
        json!(true),
        "no next page after the last"
    );
    b.click("a[rel=prev]").await;
    b.wait("page 2", "location.search.includes('page=2')").await;
    assert_eq!(ids_on_page(&b, 5).await, second);
    b.close().await;
}

#[tokio::test]
async fn the_job_page_shows_counters_progress_tasks_and_history() {
    let Some((app, b)) = app_and_browser(DESKTOP).await else {
        return;
    };
    let (job, tasks) = app.job_with_tasks("com.shipyard.email", 4).await;
    app.set(job.id, tasks[0].id, Status::Completed).await;
    app.set(job.id, tasks[1].id, Status::Failed).await;
    app.set(job.id, tasks[2].id, Status::InProgress).await;

    b.goto(&app.url(&format!("/jobs/{}", job.id))).await;
    b.wait(
        "the tasks",
        "document.querySelectorAll('table.tasks tbody tr').length === 4",
    )
    .await;
    let counters = b
        .js(
            "return Object.fromEntries([...document.querySelectorAll('.counter')].map(c => \
             [c.querySelector('.k').textContent, Number(c.querySelector('.n').textContent)]))",
        )
        .await;
    assert_eq!(
        counters,
        json!({"total": 4, "pending": 1, "in progress": 1, "completed": 1, "failed": 1, "cancelled": 0})
    );
    let text = b
        .js("return document.querySelector('.progress-text').textContent")
        .await;
    let text = text.as_str().unwrap_or_default();
    assert!(text.contains("50%") && text.contains("2 of 4"), "{text}");
    // Rate and ETA as the API gives them: two finishes are too few for a rate.
    let (_, api) = app.get(&format!("/v1/jobs/{}", job.id)).await;
    assert_eq!(
        api["job"]["progress"]["eta_reason"], "too_few_samples",
        "{api}"
    );
    assert_eq!(
        b.js(
            "return [document.querySelector('.progress-text .eta').textContent, \
              document.querySelector('.progress-text .rate').textContent]"
        )
        .await,
        json!(["estimating…", "rate not known yet"])
    );
    assert_eq!(
        b.js("return document.querySelector('.head-status').textContent")
            .await,
        json!("in progress")
    );

    // History: created, four tasks added, three changes of tasks, the job's own change.
    let history = app
        .client
        .job_history(job.id, 0, 1000)
        .await
        .expect("history");
    b.wait(
        "the history",
        &format!(
            "document.querySelectorAll('.timeline li').length === {}",
            history.events.len()
        ),
    )
    .await;
    // Two tasks finished: the chart has their bars.
    b.wait(
        "the chart",
        "document.querySelectorAll('.chart rect').length === 2",
    )
    .await;

    // The status filter of the task table is in the address.
    b.js(
        "const s = document.getElementById('task-status'); s.value = 'failed'; \
          s.dispatchEvent(new Event('change'))",
    )
    .await;
    b.wait("the address", "location.search === '?status=failed'")
        .await;
    b.wait(
        "one failed task",
        &format!(
            "document.querySelectorAll('table.tasks tbody tr').length === 1 && \
             document.querySelector('table.tasks tbody tr').dataset.id === '{}'",
            tasks[1].id
        ),
    )
    .await;
    b.close().await;
}

#[tokio::test]
async fn cancelling_from_the_job_page_asks_first_then_cancels() {
    let Some((app, b)) = app_and_browser(DESKTOP).await else {
        return;
    };
    let (job, tasks) = app.job_with_tasks("com.shipyard.email", 2).await;
    app.set(job.id, tasks[0].id, Status::InProgress).await;
    b.goto(&app.url(&format!("/jobs/{}", job.id))).await;
    b.wait("the page", "document.querySelector('.job-head button')")
        .await;

    // Asked, and kept.
    b.click(".job-head button.danger").await;
    answer(&b, false).await;
    let still = app.client.get_job(job.id).await.expect("job");
    assert_eq!(still.status, Status::InProgress);

    // Asked, and confirmed.
    b.click(".job-head button.danger").await;
    answer(&b, true).await;
    b.wait(
        "the cancelled badge",
        "document.querySelector('.head-status').textContent === 'cancelled'",
    )
    .await;
    let cancelled = app.client.get_job(job.id).await.expect("job");
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(cancelled.tasks.cancelled, 2);
    assert_eq!(
        b.js("return document.querySelector('.job-head button.danger').disabled")
            .await,
        json!(true)
    );
    b.close().await;
}

#[tokio::test]
async fn a_failed_task_is_retried_from_the_job_page_after_confirming() {
    let Some((app, b)) = app_and_browser(DESKTOP).await else {
        return;
    };
    let (job, tasks) = app.job_with_tasks("com.shipyard.email", 1).await;
    app.set(job.id, tasks[0].id, Status::Failed).await;
    b.goto(&app.url(&format!("/jobs/{}", job.id))).await;
    b.wait(
        "the retry button",
        "document.querySelector('table.tasks button')",
    )
    .await;
    b.click("table.tasks button").await;
    answer(&b, true).await;
    b.wait(
        "the task pending again",
        "document.querySelector('table.tasks tbody tr .badge').textContent === 'pending'",
    )
    .await;
    let task = app
        .client
        .get_task(job.id, tasks[0].id)
        .await
        .expect("task");
    assert_eq!(task.status, Status::Pending);
    assert_eq!(task.attempt, 2);
    b.close().await;
}

#[tokio::test]
async fn bad_input_shows_the_servers_problem_message() {
    let Some((app, b)) = app_and_browser(DESKTOP).await else {
        return;
    };
    for query in ["?size=5000", "?colour=red", "?status=finished"] {
        let (status, problem) = app.get(&format!("/v1/jobs{query}")).await;
        assert_eq!(status, 422, "{problem}");
        b.goto(&app.url(&format!("/{query}"))).await;
        let shown = b
            .wait("the problem", "document.querySelector('.problem') && document.querySelector('.problem').innerText")
            .await;
        let shown = shown.as_str().unwrap_or_default();
        assert!(shown.contains("422"), "{shown}");
        let detail = problem["detail"].as_str().expect("detail");
        assert!(shown.contains(detail), "{shown} lacks {detail}");
        for e in problem["errors"].as_array().into_iter().flatten() {
            let message = e["message"].as_str().expect("message");
            assert!(shown.contains(message), "{shown} lacks {message}");
        }
        // The form is still there to mend the filter.
        assert_eq!(
            b.js("return document.querySelector('form.filters') !== null")
                .await,
            json!(true)
        );
    }
    // An unknown job.
    b.goto(&app.url("/jobs/0195f0c4-0000-7000-8000-000000000000"))
        .await;
    let shown = b
        .wait(
            "the problem",
            "document.querySelector('.problem') && document.querySelector('.problem').innerText",
        )
        .await;
    assert!(
        shown.as_str().unwrap_or_default().contains("404"),
        "{shown}"
    );
    b.close().await;
}

/// Whether the page scrolls sideways: it should not, at any width.
const SIDEWAYS: &str = "document.documentElement.scrollWidth > window.innerWidth";

#[tokio::test]
async fn at_phone_width_the_pages_fit_the_screen() {
    let Some((app, b)) = app_and_browser(PHONE).await else {
        return;
    };
    let mut req = job_request(
        "com.shipyard.email.transactional.eu-west-1",
        "send-weekly-digest",
    );
    req.meta = Some(
        json!({"team": "atlas", "release_id": 123, "campaign": "a-long-campaign-name-without-spaces"}),
    );
    req.correlation_id = Some("a-rather-long-correlation-identifier-0123456789".into());
    let job = app.client.create_job(&req).await.expect("job");
    let tasks = app
        .client
        .add_tasks(
            job.id,
            (0..3)
                .map(|_| crate::helpers::task_request("render"))
                .collect(),
        )
        .await
        .expect("tasks");
    app.set(job.id, tasks[0].id, Status::Completed).await;
    app.set(job.id, tasks[1].id, Status::Failed).await;

    b.goto(&app.url("/")).await;
    ids_on_page(&b, 1).await;
    assert_eq!(b.js("return window.innerWidth").await, json!(PHONE.0));
    assert_eq!(b.js(&format!("return {SIDEWAYS}")).await, json!(false));

    b.goto(&app.url(&format!("/jobs/{}", job.id))).await;
    b.wait(
        "the tasks",
        "document.querySelectorAll('table.tasks tbody tr').length === 3",
    )
    .await;
    assert_eq!(b.js(&format!("return {SIDEWAYS}")).await, json!(false));
    b.close().await;
}

/// Screenshots of both pages at desktop and phone width, light and dark, for people to
/// look at (saved where `Browser::screenshot` says); and the two schemes really differ.
#[tokio::test]
async fn screenshots_of_both_pages_light_and_dark() {
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.shipyard.email", 6).await;
    for (i, s) in [
        Status::Completed,
        Status::Completed,
        Status::Failed,
        Status::InProgress,
    ]
    .into_iter()
    .enumerate()
    {
        app.set(job.id, tasks[i].id, s).await;
    }
    let (status, _) = app
        .post(
            &format!("/v1/jobs/{}/history", job.id),
            json!({"message": "rollout paused for review"}),
        )
        .await;
    assert_eq!(status, 200);
    for i in 0..4 {
        let mut req = job_request(
            if i % 2 == 0 {
                "com.shipyard.email"
            } else {
                "com.shipyard.sms"
            },
            &format!("batch-{i}"),
        );
        req.meta = Some(json!({"team": "atlas"}));
        let j = app.client.create_job(&req).await.expect("job");
        if i == 3 {
            app.client
                .set_job_status(j.id, Status::Cancelled, None)
                .await
                .expect("cancel");
        }
    }
    let mut backgrounds = Vec::new();
    for scheme in [Scheme::Light, Scheme::Dark] {
        let Some(b) = Browser::start(DESKTOP, scheme).await else {
            return;
        };
        let name = if scheme == Scheme::Dark {
            "dark"
        } else {
            "light"
        };
        assert_eq!(
            b.js("return matchMedia('(prefers-color-scheme: dark)').matches")
                .await,
            json!(scheme == Scheme::Dark)
        );
        for (size, width) in [("desktop", DESKTOP), ("phone", PHONE)] {
            b.fit_viewport(width).await;
            b.goto(&app.url("/")).await;
            ids_on_page(&b, 5).await;
            b.screenshot(&format!("list-{size}-{name}"), width.0).await;
            b.fit_viewport(width).await;
            b.goto(&app.url(&format!("/jobs/{}", job.id))).await;
            b.wait(
                "the tasks",
                "document.querySelectorAll('table.tasks tbody tr').length === 6",
            )
            .await;
            b.wait("the chart", "document.querySelector('.chart svg')")
                .await;
            b.screenshot(&format!("job-{size}-{name}"), width.0).await;
        }
        backgrounds.push(
            b.js("return getComputedStyle(document.documentElement).backgroundColor")
                .await,
        );
        b.close().await;
    }
    assert_ne!(backgrounds[0], backgrounds[1], "dark looks like light");
}

#[tokio::test]
async fn the_api_reference_renders_with_nothing_from_elsewhere() {
    let Some((app, b)) = app_and_browser(DESKTOP).await else {
        return;
    };
    b.goto(&app.url("/docs")).await;
    let operations = b
        .wait(
            "the operations",
            "document.querySelectorAll('.opblock').length > 10 && document.querySelectorAll('.opblock').length",
        )
        .await;
    let (_, spec) = app.get("/openapi.json").await;
    let paths: usize = spec["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|p| p.as_object().map_or(0, |m| m.len()))
        .sum();
    assert_eq!(operations, json!(paths), "one block per operation");
    let title = b
        .js("return document.querySelector('.info .title').textContent")
        .await;
    assert!(
        title
            .as_str()
            .unwrap_or_default()
            .contains("Port Authority"),
        "{title}"
    );
    assert_no_request_elsewhere(&b, &app).await;
    b.screenshot("docs-desktop-light", DESKTOP.0).await;

    // And the dashboard: nothing from elsewhere either.
    b.goto(&app.url("/")).await;
    b.wait("the list", "document.querySelector('.summary').textContent")
        .await;
    assert_no_request_elsewhere(&b, &app).await;
    b.close().await;
}

async fn assert_no_request_elsewhere(b: &Browser, app: &TestApp) {
    let origin = app.url("");
    let elsewhere = b
        .js(&format!(
            "return performance.getEntriesByType('resource').map(e => e.name)\
             .filter(n => !n.startsWith({origin:?} + '/'))"
        ))
        .await;
    assert_eq!(elsewhere, json!([]), "requests to other origins");
    let loaded = b
        .js("return performance.getEntriesByType('resource').length")
        .await;
    assert!(
        loaded.as_u64().unwrap_or(0) > 0,
        "the page loaded its files"
    );
}

/// Changes made through the API while a page is open appear on it without a reload,
/// once the server has its event streams.
#[tokio::test]
async fn changes_made_over_http_appear_on_open_pages_without_reload() {
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.shipyard.email", 2).await;
    let probe = app
        .http
        .get(app.url(&format!("/v1/jobs/{}/watch", job.id)))
        .send()
        .await
        .expect("request");
    if probe.status() == 404 {
        portauthority_testkit::skip::because("this build serves no event streams (/v1/.../watch)");
        return;
    }
    drop(probe);
    let Some(b) = Browser::start(DESKTOP, Scheme::Light).await else {
        return;
    };

    // The list: a task completes, its job's row moves.
    b.goto(&app.url("/")).await;
    ids_on_page(&b, 1).await;
    b.wait(
        "live",
        "document.getElementById('live').dataset.state === 'on'",
    )
    .await;
    b.js("window.__sameDocument = true").await;
    app.set(job.id, tasks[0].id, Status::Completed).await;
    b.wait(
        "the row's progress",
        "document.querySelector('tr[data-id] .count').textContent === '1/2'",
    )
    .await;
    // A new job appears.
    let fresh = new_job(&app, "com.shipyard.email", "late", json!({})).await;
    b.wait(
        "the new row",
        &format!("document.querySelector('tr[data-id=\"{}\"]')", fresh.id),
    )
    .await;

    assert_eq!(
        b.js("return window.__sameDocument === true").await,
        json!(true)
    );

    // The job page: counters, progress and history follow.
    b.goto(&app.url(&format!("/jobs/{}", job.id))).await;
    b.wait(
        "live",
        "document.getElementById('live').dataset.state === 'on'",
    )
    .await;
    b.js("window.__sameDocument = true").await;
    app.set(job.id, tasks[1].id, Status::Failed).await;
    b.wait(
        "the failed counter",
        "document.querySelector('.counter.s-failed .n').textContent === '1'",
    )
    .await;
    b.wait(
        "the failed task",
        "[...document.querySelectorAll('table.tasks .badge')].some(x => x.textContent === 'failed')",
    )
    .await;
    assert_eq!(
        b.js("return window.__sameDocument === true").await,
        json!(true)
    );
    b.close().await;
}

/// Where axe-core's `axe.min.js` is (from the npm registry: `npm install axe-core@4`).
const AXE_VAR: &str = "PORTAUTHORITY_TEST_AXE_CORE";

/// An axe-core scan of both pages, light and dark, finds nothing serious or critical.
#[tokio::test]
async fn an_accessibility_scan_of_both_pages_finds_nothing_serious() {
    let Some(axe) = portauthority_testkit::skip::configured(AXE_VAR) else {
        return;
    };
    let axe = std::fs::read_to_string(&axe).unwrap_or_else(|e| panic!("{AXE_VAR}={axe}: {e}"));
    let app = TestApp::spawn().await;
    let (job, tasks) = app.job_with_tasks("com.shipyard.email", 3).await;
    app.set(job.id, tasks[0].id, Status::Completed).await;
    app.set(job.id, tasks[1].id, Status::Failed).await;
    for scheme in [Scheme::Light, Scheme::Dark] {
        let Some(b) = Browser::start(DESKTOP, scheme).await else {
            return;
        };
        for (page, ready) in [
            (
                "/".to_owned(),
                "document.querySelectorAll('tr[data-id]').length === 1",
            ),
            (
                format!("/jobs/{}", job.id),
                "document.querySelectorAll('table.tasks tbody tr').length === 3 && document.querySelector('.chart svg')",
            ),
            (
                "/?size=5000".to_owned(),
                "document.querySelector('.problem')",
            ),
        ] {
            b.goto(&app.url(&page)).await;
            b.wait("the page", ready).await;
            b.js(&axe).await;
            // The scan sees what it should: a grey-on-white line is a serious finding.
            b.js("const p = document.createElement('p'); p.id = 'axe-probe'; p.textContent = 'faint'; \
                  p.style.color = '#d0d0d0'; p.style.background = '#ffffff'; document.body.append(p)")
                .await;
            let probe = serious_violations(&b).await;
            assert!(
                probe
                    .as_array()
                    .is_some_and(|v| v.iter().any(|x| x["id"] == "color-contrast")),
                "the scan missed a planted contrast failure: {probe}"
            );
            b.js("document.getElementById('axe-probe').remove()").await;
            let found = serious_violations(&b).await;
            assert_eq!(
                found,
                json!([]),
                "{page}, {}",
                if scheme == Scheme::Dark {
                    "dark"
                } else {
                    "light"
                }
            );
        }
        b.close().await;
    }
}

/// axe-core's serious and critical findings on the current page (axe already injected).
async fn serious_violations(b: &Browser) -> serde_json::Value {
    b.client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {resultTypes: ['violations']}).then(r => done(
               r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary)}))));",
            Vec::new(),
        )
        .await
        .expect("axe ran")
}

/// With API keys, the pages ask for one: a bad key shows the server's problem, a good one
/// shows the list, and signing out asks again.
#[tokio::test]
async fn with_api_keys_the_dashboard_signs_in_and_out() {
    let app = TestApp::spawn().await;
    let created = std::process::Command::new(crate::portauthority())
        .args([
            "keys",
            "create",
            "--role",
            "reader",
            "--namespace",
            "*",
            "--database-url",
        ])
        .arg(&app.database_url)
        .output()
        .expect("portauthority runs");
    if !created.status.success() {
        portauthority_testkit::skip::because(
            "this build has no API keys (portauthority keys create)",
        );
        return;
    }
    let token = String::from_utf8(created.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let (status, _) = app.get("/v1/jobs").await;
    assert_eq!(status, 401, "a key exists, so the API wants one");
    let Some(b) = Browser::start(DESKTOP, Scheme::Light).await else {
        return;
    };
    b.goto(&app.url("/")).await;
    b.wait("the sign-in form", "document.querySelector('form.sign-in')")
        .await;
    b.type_into("#token", "pa_not_a_real_key").await;
    b.click("form.sign-in button[type=submit]").await;
    let shown = b
        .wait("the refusal", "document.querySelector('form.sign-in .problem') && document.querySelector('form.sign-in .problem').innerText")
        .await;
    assert!(
        shown.as_str().unwrap_or_default().contains("401"),
        "{shown}"
    );
    b.type_into("#token", &token).await;
    b.click("form.sign-in button[type=submit]").await;
    b.wait(
        "the list",
        "document.querySelector('.summary') && document.querySelector('.summary').textContent",
    )
    .await;
    b.wait(
        "the sign-out button",
        "!document.getElementById('sign-out').hidden",
    )
    .await;
    b.click("#sign-out").await;
    b.wait(
        "the sign-in form again",
        "document.querySelector('form.sign-in')",
    )
    .await;
    b.close().await;
}

/// The pages, their files and the reference page, over plain HTTP.
#[tokio::test]
async fn the_pages_and_their_files_are_served_from_the_binary() {
    let app = TestApp::spawn().await;
    for path in ["/", "/?namespace=com.shipyard.email", "/jobs/anything"] {
        let res = app.http.get(app.url(path)).send().await.expect("sent");
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        let csp = h["content-security-policy"].to_str().expect("ascii");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
    }
    let res = app
        .http
        .get(app.url("/assets/app.js"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let tag = res.headers()["etag"].clone();
    let again = app
        .http
        .get(app.url("/assets/app.js"))
        .header("if-none-match", tag)
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), 304, "an unchanged file is not sent again");

    let (status, body) = app.get("/assets/nothing.js").await;
    crate::helpers::assert_problem(status, &body, 404);

    // The reference page answers at /docs itself (no redirect: trailing slashes are trimmed),
    // naming its files under /docs/.
    let res = app.http.get(app.url("/docs")).send().await.expect("sent");
    assert_eq!(res.status(), 200);
    let page = res.text().await.expect("body");
    assert!(page.contains("\"/docs/swagger-ui-bundle.js\""), "{page}");
    let res = app
        .http
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 200);
    let init = res.text().await.expect("body");
    assert!(init.contains("/openapi.json"), "{init}");
}
