//! What operators see: `/metrics` (checked with the official Prometheus Python client's
//! parser), request ids on every response and problem, and the log formats.

use crate::helpers::{TestApp, assert_problem, job_request, task_request};
use portauthority_core::Status;
use portauthority_testkit::server::{Process, Server};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One sample of a scrape: its name and labels, and its value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// A minimal reading of the text format, enough to look samples up (the conformance of
/// the whole page is checked by `prometheus_client` below).
fn samples(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").expect("label=\"value\"");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name, labels)
            }
            None => (series, BTreeMap::new()),
        };
        out.insert((name.to_owned(), labels), value.parse().expect("a number"));
    }
    out
}

fn get(s: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s.get(&(name.to_owned(), labels)).copied()
}

async fn scrape(http: &reqwest::Client, base: &str) -> String {
    let res = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    res.text().await.expect("metrics text")
}

/// Parses `text` with `prometheus_client.parser.text_string_to_metric_families` (PyPI
/// `prometheus-client`) and returns each family's name and type; None (saying so) when
/// python3 does not have the package.
fn parse_with_prometheus_client(text: &str) -> Option<BTreeMap<String, String>> {
    let has_package = std::process::Command::new("python3")
        .args(["-c", "import prometheus_client.parser"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_package {
        portauthority_testkit::skip::because(
            "the check of /metrics with the official parser: python3 has no prometheus_client \
             package (pip install prometheus-client)",
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("metrics.txt");
    std::fs::write(&page, text).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import json, sys\n\
             from prometheus_client.parser import text_string_to_metric_families\n\
             families = {f.name: f.type for f in text_string_to_metric_families(open(sys.argv[1]).read())}\n\
             print(json.dumps(families))\n",
        )
        .arg(&page)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "prometheus_client refused the page: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("the script prints JSON"))
}

#[tokio::test]
async fn metrics_after_a_load_count_requests_jobs_and_tasks_and_parse_with_prometheus_client() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let server = Server::start(crate::portauthority(), &url, dir.path(), "metrics", None).await;
    let (http, client) = (server.http(), server.client());
    let before = samples(&scrape(&http, &server.base).await);
    assert_eq!(
        get(&before, "portauthority_sse_clients", &[]),
        Some(0.0),
        "present at 0 before any stream"
    );

    // The load: three jobs of two tasks, one task completed and one failed, reads, a 404
    // of a known route and one of no route.
    let mut jobs = Vec::new();
    for i in 0..3 {
        let job = client
            .create_job(&job_request("com.metrics", &format!("job{i}")))
            .await
            .expect("create");
        let tasks = client
            .add_tasks(job.id, vec![task_request("a"), task_request("b")])
            .await
            .expect("tasks");
        jobs.push((job, tasks));
    }
    client
        .set_task(jobs[0].0.id, jobs[0].1[0].id, Status::Completed)
        .await
        .expect("complete");
    client
        .set_task(jobs[1].0.id, jobs[1].1[0].id, Status::Failed)
        .await
        .expect("fail");
    client.get_job(jobs[2].0.id).await.expect("get");
    let unknown = uuid::Uuid::now_v7();
    let res = http
        .get(format!("{}/v1/jobs/{unknown}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = http
        .get(format!("{}/no/such/path", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    // The job and task gauges come from the store's counts, refreshed every few seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (text, after) = loop {
        let text = scrape(&http, &server.base).await;
        let s = samples(&text);
        if get(&s, "portauthority_tasks", &[("status", "completed")]) == Some(1.0) {
            break (text, s);
        }
        assert!(
            Instant::now() < deadline,
            "the task gauges never showed the completed task:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let requests = |s: &Samples, method: &str, route: &str, status: &str| {
        get(
            s,
            "portauthority_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(requests(&after, "POST", "/v1/jobs", "200"), 3.0, "{text}");
    assert_eq!(
        requests(&after, "POST", "/v1/jobs", "200") - requests(&before, "POST", "/v1/jobs", "200"),
        3.0
    );
    assert!(
        requests(&after, "GET", "/v1/jobs/{id}", "200") >= 1.0,
        "{text}"
    );
    assert_eq!(
        requests(&after, "GET", "/v1/jobs/{id}", "404"),
        1.0,
        "{text}"
    );
    assert_eq!(requests(&after, "GET", "unmatched", "404"), 1.0, "{text}");
    assert_eq!(
        requests(&after, "PUT", "/v1/jobs/{id}/tasks/{task_id}/status", "200"),
        2.0,
        "{text}"
    );
    assert!(
        requests(&after, "GET", "/metrics", "200") > requests(&before, "GET", "/metrics", "200")
    );
    // Route labels are templates: no id and no unmatched path ever becomes a label.
    for id in [unknown.to_string(), jobs[0].0.id.to_string()] {
        assert!(!text.contains(&id), "an id in a label:\n{text}");
    }
    assert!(!text.contains("/no/such/path"), "a raw path in a label");
    assert!(
        get(
            &after,
            "portauthority_http_request_duration_seconds_count",
            &[("route", "/v1/jobs")]
        )
        .is_some_and(|n| n >= 3.0),
        "{text}"
    );
    assert!(
        get(
            &after,
            "portauthority_http_request_duration_seconds_bucket",
            &[("route", "/v1/jobs"), ("le", "+Inf")]
        )
        .is_some_and(|n| n >= 3.0),
        "a histogram with buckets:\n{text}"
    );

    // Jobs and tasks by status, exact on this fresh database.
    let by_status = |name: &str, status: &str| get(&after, name, &[("status", status)]);
    assert_eq!(
        by_status("portauthority_jobs", "pending"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        by_status("portauthority_jobs", "in_progress"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        by_status("portauthority_tasks", "pending"),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        by_status("portauthority_tasks", "failed"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        by_status("portauthority_tasks", "cancelled"),
        Some(0.0),
        "{text}"
    );
    for name in [
        "portauthority_outbox_pending",
        "portauthority_outbox_oldest_age_seconds",
        "portauthority_sqlite_writer_queue",
        "portauthority_store_stats_refreshed_timestamp_seconds",
    ] {
        assert!(get(&after, name, &[]).is_some(), "{name} missing:\n{text}");
    }
    assert!(
        get(&after, "portauthority_sqlite_group_commit_size_count", &[]).is_some_and(|n| n >= 5.0),
        "{text}"
    );

    if let Some(families) = parse_with_prometheus_client(&text) {
        for (name, kind) in [
            ("portauthority_http_requests", "counter"),
            ("portauthority_http_request_duration_seconds", "histogram"),
            ("portauthority_sqlite_group_commit_size", "histogram"),
            ("portauthority_jobs", "gauge"),
            ("portauthority_tasks", "gauge"),
            ("portauthority_outbox_pending", "gauge"),
            ("portauthority_sse_clients", "gauge"),
        ] {
            assert_eq!(
                families.get(name).map(String::as_str),
                Some(kind),
                "{name} in {families:?}"
            );
        }
    }
}

#[tokio::test]
async fn request_ids_are_echoed_when_valid_replaced_when_not_and_in_every_problem() {
    let app = TestApp::spawn().await;
    let id_of = |res: &reqwest::Response| {
        res.headers()
            .get("x-request-id")
            .expect("every response has x-request-id")
            .to_str()
            .unwrap()
            .to_owned()
    };
    // A valid id comes back as it was sent, on a success and on a problem.
    let res = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-0190b5d2:7c1e")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (res.status().as_u16(), id_of(&res)),
        (200, "trace-0190b5d2:7c1e".into())
    );

    // Invalid ones are replaced by a fresh UUID; so is a missing one.
    let too_long = "x".repeat(129);
    let mut seen = Vec::new();
    for sent in [
        Some("has space"),
        Some("semi;colon"),
        Some(too_long.as_str()),
        None,
    ] {
        let mut req = app.http.get(app.url("/healthz"));
        if let Some(v) = sent {
            req = req.header("x-request-id", v);
        }
        let res = req.send().await.unwrap();
        let got = id_of(&res);
        assert_ne!(Some(got.as_str()), sent, "an invalid id was kept");
        let parsed = uuid::Uuid::parse_str(&got).expect("a generated id is a UUID");
        assert_eq!(parsed.get_version_num(), 7);
        seen.push(got);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4, "each request gets its own id");

    // Problems carry the same id as the header: the router's 404 and 405, a handler's 404,
    // a refused body (422), a wrong content type (415) and malformed JSON (400).
    let job = uuid::Uuid::now_v7();
    let cases: Vec<(reqwest::Method, String, Option<(&str, String)>, u16)> = vec![
        (reqwest::Method::GET, "/no/such/path".into(), None, 404),
        (reqwest::Method::DELETE, "/v1/jobs".into(), None, 405),
        (reqwest::Method::GET, format!("/v1/jobs/{job}"), None, 404),
        (
            reqwest::Method::POST,
            "/v1/jobs".into(),
            Some(("application/json", json!({"namespace": "a"}).to_string())),
            422,
        ),
        (
            reqwest::Method::POST,
            "/v1/jobs".into(),
            Some(("text/plain", "hello".into())),
            415,
        ),
        (
            reqwest::Method::POST,
            "/v1/jobs".into(),
            Some(("application/json", "{".into())),
            400,
        ),
    ];
    for (i, (method, path, body, expected)) in cases.into_iter().enumerate() {
        for sent in [Some(format!("client-{i}")), None] {
            let mut req = app.http.request(method.clone(), app.url(&path));
            if let Some(v) = &sent {
                req = req.header("x-request-id", v);
            }
            if let Some((ct, b)) = &body {
                req = req.header("content-type", *ct).body(b.clone());
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let header = id_of(&res);
            assert_eq!(
                res.headers()["content-type"],
                "application/problem+json",
                "{method} {path}"
            );
            let problem: Value = res.json().await.unwrap();
            assert_problem(status, &problem, expected);
            assert_eq!(problem["request_id"], header.as_str(), "{method} {path}");
            if let Some(v) = sent {
                assert_eq!(header, v, "{method} {path}: the client's id");
            }
        }
    }
}

/// The binary with `args`, run to its end.
fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(crate::portauthority())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run the binary")
}

#[test]
fn an_unknown_log_format_is_a_usage_error_that_names_the_formats() {
    for (args, env) in [
        (&["serve", "--log-format", "bogus"][..], &[][..]),
        (&["--log-format", "bogus", "migrate"][..], &[][..]),
        (
            &["worker"][..],
            &[("PORTAUTHORITY_LOG_FORMAT", "bogus")][..],
        ),
    ] {
        let out = run(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains("'bogus'")
                && stderr.contains("--log-format")
                && stderr.contains("human")
                && stderr.contains("json"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_with_a_line_per_request_and_never_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("l.db").display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = Process::spawn_with_env(
        crate::portauthority(),
        &[
            "serve",
            "--listen",
            &listen,
            "--database-url",
            &url,
            "--log-format",
            "json",
        ],
        &[("PORTAUTHORITY_LOG", "info,portauthority_server=debug")],
        dir.path(),
        "json",
    );
    assert!(
        server
            .wait_for_log("listening on", Duration::from_secs(30))
            .await,
        "the server did not start: {}",
        server.log_text()
    );
    let http = portauthority_client::http_builder().build().unwrap();
    let base = format!("http://{listen}");
    let token = "pa_secret-token-that-must-not-be-logged";
    let job = uuid::Uuid::now_v7();
    let res = http
        .get(format!("{base}/v1/jobs/{job}"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-request-id", "logged-request-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(
        server
            .wait_for_log("logged-request-1", Duration::from_secs(10))
            .await,
        "no request line: {}",
        server.log_text()
    );
    let log = server.log_text();
    assert!(!log.contains(token), "a token in the log:\n{log}");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["request_id"] == "logged-request-1")
        .collect();
    assert_eq!(requests.len(), 1, "one line per request: {requests:?}");
    let line = &requests[0];
    assert_eq!(line["level"], "DEBUG");
    assert_eq!(line["fields"]["method"], "GET");
    assert_eq!(line["fields"]["route"], "/v1/jobs/{id}");
    assert_eq!(line["fields"]["status"], 404);
    assert!(line["fields"]["latency_ms"].is_number(), "{line}");
}
