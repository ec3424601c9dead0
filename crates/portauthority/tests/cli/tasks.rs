//! `task add|get|list|start|complete|fail|heartbeat`, in table and JSON output.

use crate::harness::{Env, column, str_of};
use portauthority_core::api::Progress;
use portauthority_core::{JobId, Status, TaskId};

fn job(env: &Env) -> String {
    env.job(0, &["--type", "send", "--namespace", "com.shipyard.email"])
}

#[tokio::test]
async fn task_add_takes_the_jobs_namespace_and_adds_batches() {
    let env = Env::start().await;
    let job = job(&env);
    let run = env.run(&[
        "task",
        "add",
        &job,
        "--type",
        "email",
        "--meta",
        "to=a@example.com",
    ]);
    run.assert_code(0);
    assert_eq!(run.field("namespace"), "com.shipyard.email");
    assert_eq!(run.field("status"), "pending");
    assert_eq!(run.field("attempt"), "1");
    assert_eq!(run.field("job"), job);

    let batch = env.run(&[
        "task",
        "add",
        &job,
        "--type",
        "email",
        "--namespace",
        "com.x",
        "--count",
        "5",
    ]);
    batch.assert_code(0);
    assert!(
        batch
            .stdout
            .contains(&format!("added 5 tasks to job {job}")),
        "{}",
        batch.stdout
    );
    assert_eq!(
        batch.table().len(),
        6,
        "a header and five tasks:\n{}",
        batch.stdout
    );
    let doc = env.json(&["task", "add", &job, "--type", "sms", "--count", "2"]);
    assert_eq!(doc["tasks"].as_array().expect("tasks").len(), 2);
    let id: JobId = job.parse().expect("id");
    assert_eq!(env.client.get_job(id).await.expect("job").tasks.total, 8);
}

#[tokio::test]
async fn task_list_and_get_show_status_attempt_and_progress() {
    let env = Env::start().await;
    let job = job(&env);
    let doc = env.json(&["task", "add", &job, "--type", "email", "--count", "3"]);
    let ids: Vec<String> = doc["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .collect();
    env.run(&["task", "start", &job, &ids[0], "--progress", "3/10"])
        .assert_code(0);
    env.run(&[
        "task",
        "fail",
        &job,
        &ids[1],
        "--error",
        "SMTP 554: rejected",
    ])
    .assert_code(0);

    let run = env.run(&["task", "list", &job]);
    run.assert_code(0);
    let table = run.table();
    assert_eq!(table.len(), 4, "{}", run.stdout);
    let (id, status, progress) = (
        column(&table, "ID"),
        column(&table, "STATUS"),
        column(&table, "PROGRESS"),
    );
    let row = |task: &str| {
        table
            .iter()
            .find(|r| r[id] == task)
            .expect("listed")
            .clone()
    };
    assert_eq!(row(&ids[0])[status], "in_progress");
    assert_eq!(row(&ids[0])[progress], "3/10");
    assert_eq!(row(&ids[1])[status], "failed");
    assert_eq!(
        *row(&ids[1]).last().expect("error cell"),
        "SMTP 554: rejected"
    );
    assert!(run.stdout.contains("page 1 of 1 (3 tasks)"));

    let failed = env.json(&["task", "list", &job, "--status", "failed"]);
    assert_eq!(failed["tasks"].as_array().expect("tasks").len(), 1);
    assert_eq!(failed["tasks"][0]["id"], ids[1].as_str());
    assert_eq!(failed["total_items"], 1);

    let get = env.run(&["task", "get", &job, &ids[1]]);
    get.assert_code(0);
    assert_eq!(get.field("status"), "failed");
    assert_eq!(get.field("error"), "SMTP 554: rejected");
    let doc = env.json(&["task", "get", &job, &ids[0]]);
    assert_eq!(doc["task"]["progress"]["current"], 3);
    assert_eq!(doc["task"]["progress"]["total"], 10);
}

#[tokio::test]
async fn start_heartbeat_complete_and_a_retry_move_a_task() {
    let env = Env::start().await;
    let job = job(&env);
    let doc = env.json(&["task", "add", &job, "--type", "email"]);
    let task = str_of(&doc, "/task/id").to_owned();
    let (j, t): (JobId, TaskId) = (job.parse().expect("job"), task.parse().expect("task"));

    let run = env.run(&["task", "start", &job, &task]);
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), format!("task {task} is in_progress"));
    let hb = env.run(&[
        "task",
        "heartbeat",
        &job,
        &task,
        "--progress",
        "5/8",
        "--message",
        "halfway",
    ]);
    hb.assert_code(0);
    assert_eq!(
        hb.stdout.trim(),
        format!("task {task} is in_progress (progress 5/8)")
    );
    let got = env.client.get_task(j, t).await.expect("task");
    assert_eq!(
        got.progress,
        Some(Progress {
            current: 5,
            total: Some(8)
        })
    );

    let doc = env.json(&[
        "task",
        "fail",
        &job,
        &task,
        "--error",
        "boom",
        "--reason",
        "smtp down",
    ]);
    assert_eq!(doc["task"]["status"], "failed");
    assert_eq!(doc["task"]["error"], "boom");
    // Starting a failed task again is a retry.
    let retry = env.run(&["task", "start", &job, &task]);
    retry.assert_code(0);
    assert!(
        retry
            .stdout
            .starts_with(&format!("task {task} is in_progress (attempt 2)")),
        "{}",
        retry.stdout
    );
    let doc = env.json(&["task", "complete", &job, &task]);
    assert_eq!(doc["task"]["status"], "completed");
    assert_eq!(doc["task"]["attempt"], 2);
    let job_now = env.client.get_job(j).await.expect("job");
    assert_eq!(job_now.status, Status::Completed);
}
