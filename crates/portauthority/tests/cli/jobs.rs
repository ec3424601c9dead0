//! `job create|get|list|status|cancel`, in table and JSON output.

use crate::harness::{Env, column, str_of};
use portauthority_core::{JobId, Status};
use serde_json::json;

#[tokio::test]
async fn job_create_prints_the_job_and_its_json_is_the_apis() {
    let env = Env::start().await;
    let run = env.run(&[
        "job",
        "create",
        "--type",
        "send",
        "--namespace",
        "com.shipyard.email",
        "--correlation-id",
        "release-123",
        "--meta",
        "release_id=123",
        "--meta",
        "team=atlas",
        "--tasks",
        "3",
    ]);
    run.assert_code(0);
    assert_eq!(run.field("status"), "pending");
    assert_eq!(run.field("namespace"), "com.shipyard.email");
    assert_eq!(run.field("correlation_id"), "release-123");
    assert!(
        run.field("tasks").starts_with("3 total: 3 pending"),
        "{}",
        run.stdout
    );
    let id: JobId = run.field("id").parse().expect("a job id");
    let stored = env.client.get_job(id).await.expect("the job exists");
    assert_eq!(stored.tasks.total, 3);
    let meta: serde_json::Value = serde_json::from_str(stored.meta.get()).expect("meta");
    assert_eq!(meta, json!({"release_id": 123, "team": "atlas"}));

    let doc = env.json(&[
        "job",
        "create",
        "--type",
        "import",
        "--namespace",
        "com.a",
        "--no-auto-complete",
        "--meta-json",
        r#"{"n": {"deep": true}}"#,
    ]);
    let id: JobId = str_of(&doc, "/job/id").parse().expect("an id");
    let api = serde_json::to_value(env.client.get_job(id).await.expect("get")).expect("json");
    assert_eq!(doc["job"], api, "the CLI prints the API's document");
    assert_eq!(doc["job"]["auto_complete"], false);
    assert_eq!(doc["job"]["meta"], json!({"n": {"deep": true}}));
}

#[tokio::test]
async fn job_get_shows_counters_in_a_view_and_the_envelope_in_json() {
    let env = Env::start().await;
    let id = env.job(2, &[]);
    let run = env.run(&["job", "get", &id]);
    run.assert_code(0);
    assert_eq!(run.field("id"), id);
    assert_eq!(run.field("type"), "t");
    assert_eq!(run.field("ended"), "-");
    assert!(run.field("tasks").contains("2 pending"), "{}", run.stdout);
    let doc = env.json(&["job", "get", &id]);
    let api = env
        .client
        .get_job(id.parse().expect("id"))
        .await
        .expect("get");
    assert_eq!(doc["job"], serde_json::to_value(api).expect("json"));
}

#[tokio::test]
async fn job_list_filters_like_the_api_and_prints_an_aligned_table() {
    let env = Env::start().await;
    let a = env.json(&[
        "job",
        "create",
        "--type",
        "send",
        "--namespace",
        "com.a",
        "--meta",
        "team=atlas",
        "--tasks",
        "4",
    ]);
    env.json(&[
        "job",
        "create",
        "--type",
        "send",
        "--namespace",
        "com.b",
        "--meta",
        "team=io",
    ]);
    let c = env.json(&[
        "job",
        "create",
        "--type",
        "build",
        "--namespace",
        "com.a",
        "--meta",
        "team=io",
    ]);

    let run = env.run(&["job", "list"]);
    run.assert_code(0);
    let table = run.table();
    assert_eq!(table.len(), 4, "a header and three jobs:\n{}", run.stdout);
    for title in [
        "ID",
        "STATUS",
        "DONE",
        "TOTAL",
        "FAILED",
        "NAMESPACE",
        "STARTED",
    ] {
        column(&table, title);
    }
    // Aligned: every row's STATUS starts where the header's does.
    let lines: Vec<&str> = run.stdout.lines().collect();
    let at = lines[0].find("STATUS").expect("STATUS");
    for l in &lines[1..4] {
        assert!(
            l[at..].starts_with("pending"),
            "misaligned:\n{}",
            run.stdout
        );
    }
    assert!(
        run.stdout.contains("page 1 of 1 (3 jobs)"),
        "{}",
        run.stdout
    );
    let (id, total) = (column(&table, "ID"), column(&table, "TOTAL"));
    let row = table
        .iter()
        .find(|r| r[id] == str_of(&a, "/job/id"))
        .expect("job a listed");
    assert_eq!(row[total], "4");

    let only = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["job", "list"];
        all.extend(args);
        let doc = env.json(&all);
        doc["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let c_id = str_of(&c, "/job/id").to_owned();
    assert_eq!(
        only(&["--namespace", "com.a", "--type", "build"]),
        [c_id.clone()]
    );
    assert_eq!(
        only(&["--namespace", "com.a", "--meta", "team=io"]),
        [c_id.clone()]
    );
    assert_eq!(
        only(&["--meta", "team=atlas"]),
        [str_of(&a, "/job/id").to_owned()]
    );
    assert_eq!(only(&["--status", "completed,failed"]).len(), 0);
    let paged = env.json(&[
        "job", "list", "--size", "2", "--page", "2", "--sort", "type", "--order", "desc",
    ]);
    assert_eq!(paged["page"], 2);
    assert_eq!(paged["total_pages"], 2);
    assert_eq!(paged["total_items"], 3);
    assert_eq!(paged["sort"], "type");
    assert_eq!(paged["order"], "desc");
    assert_eq!(
        paged["jobs"][0]["type"], "build",
        "types desc: send, send, build"
    );

    let none = env.run(&["job", "list", "--namespace", "nothing.here"]);
    none.assert_code(0);
    assert_eq!(none.stdout.trim(), "no jobs match");
}

#[tokio::test]
async fn job_status_and_cancel_set_the_status_explicitly() {
    let env = Env::start().await;
    let id = env.job(2, &[]);
    let run = env.run(&["job", "cancel", &id, "--reason", "withdrawn"]);
    run.assert_code(0);
    assert_eq!(
        run.stdout.trim(),
        format!("job {id} is cancelled (2 of 2 tasks ended)")
    );
    let got = env
        .client
        .get_job(id.parse().expect("id"))
        .await
        .expect("get");
    assert_eq!(got.status, Status::Cancelled);
    assert_eq!(got.tasks.cancelled, 2);

    let other = env.job(1, &[]);
    let doc = env.json(&[
        "job",
        "status",
        &other,
        "failed",
        "--reason",
        "upstream gone",
    ]);
    assert_eq!(doc["job"]["status"], "failed");
    let history = env
        .client
        .job_history(other.parse().expect("id"), 0, 100)
        .await
        .expect("history");
    assert!(
        history.events.iter().any(|e| e.to == Some(Status::Failed)
            && e.task_id.is_none()
            && e.reason.as_deref() == Some("upstream gone")),
        "the reason is in the history"
    );
}

#[tokio::test]
async fn help_reads_well_and_shows_examples() {
    for args in [
        &["--help"][..],
        &["job", "--help"],
        &["job", "create", "--help"],
        &["job", "list", "--help"],
        &["task", "--help"],
        &["history", "--help"],
    ] {
        let run = crate::harness::run_with(args, &[]);
        run.assert_code(0);
        assert!(
            run.stdout.contains("Examples:") || run.stdout.contains("portauthority job"),
            "{}",
            run.stdout
        );
    }
    let list = crate::harness::run_with(&["job", "list", "--help"], &[]);
    for flag in [
        "--namespace",
        "--type",
        "--status",
        "--correlation-id",
        "--meta",
        "--sort",
        "--order",
        "--page",
        "--size",
        "--url",
        "--token",
        "--output",
        "PORTAUTHORITY_URL",
    ] {
        assert!(
            list.stdout.contains(flag),
            "job list --help lacks {flag}:\n{}",
            list.stdout
        );
    }
}
