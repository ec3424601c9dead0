//! `history list|add`, in table and JSON output.

use crate::harness::{Env, column, str_of};
use serde_json::json;

#[tokio::test]
async fn history_lists_a_jobs_events_and_takes_notes() {
    let env = Env::start().await;
    let job = env.job(0, &[]);
    let task = env.json(&["task", "add", &job, "--type", "step"]);
    let task = str_of(&task, "/task/id").to_owned();
    env.run(&["task", "start", &job, &task]).assert_code(0);
    let note = env.run(&[
        "history",
        "add",
        &job,
        "paused for maintenance",
        "--data",
        r#"{"ticket":"OPS-7"}"#,
    ]);
    note.assert_code(0);
    assert!(note.stdout.starts_with("added event "), "{}", note.stdout);
    let doc = env.json(&["history", "add", &job, "task note", "--task", &task]);
    assert_eq!(doc["event"]["kind"], "note");
    assert_eq!(doc["event"]["task_id"], task.as_str());

    let run = env.run(&["history", "list", &job]);
    run.assert_code(0);
    let table = run.table();
    let (kind, detail) = (column(&table, "KIND"), column(&table, "DETAIL"));
    let kinds: Vec<&str> = table[1..].iter().map(|r| r[kind].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "created",
            "task_added",
            "status_changed",
            "status_changed",
            "note",
            "note"
        ],
        "{}",
        run.stdout
    );
    assert!(
        table[3][detail].contains("pending -> in_progress"),
        "{:?}",
        table[3]
    );
    assert!(
        table[5][detail].contains("paused for maintenance"),
        "{:?}",
        table[5]
    );
    assert!(table[5][detail].contains("OPS-7"), "{:?}", table[5]);

    let page = env.json(&["history", "list", &job, "--size", "2"]);
    assert_eq!(page["events"].as_array().expect("events").len(), 2);
    let after = page["next_after"].as_i64().expect("more to read");
    let rest = env.json(&["history", "list", &job, "--after", &after.to_string()]);
    assert_eq!(rest["events"].as_array().expect("events").len(), 4);
    assert_eq!(rest["next_after"], json!(null));

    let only_task = env.json(&["history", "list", &job, "--task", &task]);
    let kinds: Vec<&str> = only_task["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["task_added", "status_changed", "note"]);
    let paged = env.run(&["history", "list", &job, "--size", "2"]);
    assert!(
        paged.stdout.contains(&format!("more: --after {after}")),
        "{}",
        paged.stdout
    );
}
