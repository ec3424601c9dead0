//! `job watch` and `job list --watch` against changes made over HTTP while they run. Their
//! stdout is a pipe, so they print one plain line per change.

use crate::harness::{Env, binary};
use portauthority_core::{JobId, Status, TaskId};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Liveness only: how long to wait for a line that should come.
const PATIENCE: Duration = Duration::from_secs(30);

/// The CLI running in the background, its stdout read line by line.
struct Live {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Live {
    fn spawn(env: &Env, args: &[&str]) -> Live {
        let mut child = Command::new(binary())
            .args(args)
            .env("PORTAUTHORITY_URL", &env.server.base)
            .env_remove("PORTAUTHORITY_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the portauthority binary");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Live {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing every one of `parts`, and returns it.
    fn expect(&mut self, parts: &[&str]) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if parts.iter().all(|p| line.contains(p)) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "no line with {parts:?}; printed so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the process to exit and gives its code.
    fn code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "still running:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the server has `n` watch streams open (its `portauthority_sse_clients`
/// gauge), so that changes made next are sure to reach the watcher through the stream.
async fn streams_open(env: &Env, n: u32) {
    let deadline = Instant::now() + PATIENCE;
    let url = format!("{}/metrics", env.server.base);
    loop {
        let text = reqwest::get(&url)
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        let open = text
            .lines()
            .find_map(|l| l.strip_prefix("portauthority_sse_clients "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if open >= f64::from(n) {
            return;
        }
        assert!(Instant::now() < deadline, "no watch stream opened:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn tasks(env: &Env, job: JobId) -> Vec<TaskId> {
    env.client
        .all_tasks(job)
        .await
        .expect("tasks")
        .into_iter()
        .map(|t| t.id)
        .collect()
}

#[tokio::test]
async fn watching_a_job_prints_each_change_and_exits_0_when_it_completes() {
    let env = Env::start().await;
    let id = env.job(2, &[]);
    let job: JobId = id.parse().expect("job id");
    let mut live = Live::spawn(&env, &["job", "watch", &id]);
    live.expect(&[&id, "pending", "0/2 tasks", "0%"]);
    streams_open(&env, 1).await;

    let t = tasks(&env, job).await;
    env.client
        .set_task(job, t[0], Status::InProgress)
        .await
        .expect("start");
    live.expect(&["in_progress", "0/2 tasks", "1 running"]);
    env.client
        .set_task(job, t[0], Status::Completed)
        .await
        .expect("complete");
    live.expect(&["in_progress", "1/2 tasks (50%)", "1 completed"]);
    env.client
        .set_task(job, t[1], Status::InProgress)
        .await
        .expect("start");
    env.client
        .set_task(job, t[1], Status::Completed)
        .await
        .expect("complete");
    live.expect(&["completed", "2/2 tasks (100%)", "2 completed"]);
    assert_eq!(live.code(), Some(0), "{}", live.seen.join("\n"));
}

#[tokio::test]
async fn watching_a_job_that_fails_exits_8() {
    let env = Env::start().await;
    let id = env.job(1, &[]);
    let job: JobId = id.parse().expect("job id");
    let mut live = Live::spawn(&env, &["job", "watch", &id]);
    live.expect(&[&id, "pending"]);
    streams_open(&env, 1).await;
    env.client
        .set_job_status(job, Status::Failed, Some("upstream gone"))
        .await
        .expect("fail the job");
    live.expect(&[&id, "failed"]);
    assert_eq!(live.code(), Some(8), "{}", live.seen.join("\n"));

    // Already ended: printed and exited with its outcome at once.
    let run = env.run(&["job", "watch", &id]);
    run.assert_code(8);
    assert_eq!(run.field("status"), "failed");
}

#[tokio::test]
async fn watching_a_job_that_is_cancelled_exits_9() {
    let env = Env::start().await;
    let id = env.job(2, &[]);
    let mut live = Live::spawn(&env, &["job", "watch", &id]);
    live.expect(&[&id, "pending"]);
    streams_open(&env, 1).await;
    env.run(&["job", "cancel", &id, "--reason", "withdrawn"])
        .assert_code(0);
    live.expect(&[&id, "cancelled", "2 cancelled"]);
    assert_eq!(live.code(), Some(9), "{}", live.seen.join("\n"));

    let run = env.run(&["job", "watch", &id, "--output", "json"]);
    run.assert_code(9);
    assert_eq!(run.json()["job"]["status"], "cancelled");
}

#[tokio::test]
async fn watching_an_unknown_job_exits_3() {
    let env = Env::start().await;
    let run = env.run(&["job", "watch", "0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10"]);
    run.assert_code(3);
    assert!(run.stderr.contains("404"), "{}", run.stderr);
}

#[tokio::test]
async fn a_watched_list_prints_a_change_made_while_it_runs() {
    let env = Env::start().await;
    let before = env.job(1, &["--namespace", "com.a"]);
    let other = env.job(1, &["--namespace", "com.other"]);
    let mut live = Live::spawn(&env, &["job", "list", "--namespace", "com.a", "--watch"]);
    live.expect(&[&before, "pending"]);
    streams_open(&env, 1).await;

    // A job of another namespace is not shown; a new one of this namespace is.
    env.run(&["job", "cancel", &other]).assert_code(0);
    let created = env.job(3, &["--namespace", "com.a"]);
    live.expect(&[&created, "pending", "0/3 tasks"]);
    env.run(&["job", "cancel", &before]).assert_code(0);
    live.expect(&[&before, "cancelled"]);
    assert!(
        !live.seen.iter().any(|l| l.contains(&other)),
        "{}",
        live.seen.join("\n")
    );
    assert!(
        live.child.try_wait().expect("wait").is_none(),
        "runs until stopped"
    );
}
