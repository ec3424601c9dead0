//! A script a person would write: a job with tasks, moved to the end through the CLI alone.

use crate::harness::{Env, str_of};

#[tokio::test]
async fn a_job_run_through_the_cli_alone_ends_completed() {
    let env = Env::start().await;
    let job = env.json(&[
        "job",
        "create",
        "--type",
        "release",
        "--namespace",
        "com.shipyard.deploy",
        "--tasks",
        "2",
    ]);
    let job = str_of(&job, "/job/id").to_owned();
    let added = env.json(&["task", "add", &job, "--type", "smoke-test"]);
    let mut tasks: Vec<String> = env.json(&["task", "list", &job])["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(tasks.len(), 3);
    assert!(tasks.contains(&str_of(&added, "/task/id").to_owned()));
    tasks.sort();

    for (i, task) in tasks.iter().enumerate() {
        env.run(&["task", "start", &job, task, "--progress", "0/4"])
            .assert_code(0);
        env.run(&["task", "heartbeat", &job, task, "--progress", "2/4"])
            .assert_code(0);
        let status = env.json(&["job", "get", &job]);
        assert_eq!(status["job"]["status"], "in_progress");
        assert_eq!(status["job"]["tasks"]["completed"], i);
        if i == 1 {
            // One failure on the way, retried.
            env.run(&["task", "fail", &job, task, "--error", "flaky"])
                .assert_code(0);
            env.run(&["task", "start", &job, task]).assert_code(0);
        }
        env.run(&["task", "complete", &job, task, "--progress", "4/4"])
            .assert_code(0);
    }

    let done = env.run(&["job", "get", &job]);
    done.assert_code(0);
    assert_eq!(done.field("status"), "completed");
    assert!(
        done.field("tasks").contains("3 completed"),
        "{}",
        done.stdout
    );
    assert_ne!(done.field("ended"), "-");
    let listed = env.json(&["job", "list", "--status", "completed"]);
    assert_eq!(listed["jobs"][0]["id"], job.as_str());
    let history = env.json(&["history", "list", &job, "--size", "1000"]);
    let last = history["events"]
        .as_array()
        .expect("events")
        .last()
        .expect("an event")
        .clone();
    assert_eq!(last["to"], "completed");
    assert_eq!(
        last["task_id"],
        serde_json::Value::Null,
        "the job's own completion is last"
    );
}
