//! Resilience: the machine's PostgreSQL cluster is stopped and started again while 16
//! clients write through one `portauthority serve` process. During the outage every
//! request gets a quick 503 problem document and `/readyz` says not ready; afterwards the
//! same process serves again, and every write it acknowledged, before or after, is stored.
//!
//! Runs only with `PORTAUTHORITY_TEST_PG_RESTART=1` as well: it stops the cluster for
//! everyone on the machine.

use crate::harness::{runtime, scratch_database, serial};
use futures::StreamExt;
use portauthority_core::api::{
    CreateJobRequest, CreateTaskRequest, CreateTasksRequest, SetJobStatusRequest,
    SetTaskStatusRequest,
};
use portauthority_core::{JobId, Status, TaskId};
use portauthority_testkit::acked::{JobRecord, TaskRecord, next_status, verify};
use portauthority_testkit::postgres::admin_url;
use portauthority_testkit::server::Server;
use portauthority_testkit::skip;
use portauthority_testkit::workload::{Rng, first};
use reqwest::Method;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 16;
/// Writes before the cluster is stopped.
const BEFORE: Duration = Duration::from_secs(2);
/// How long the cluster stays down.
const DOWN_FOR: Duration = Duration::from_secs(3);
/// Writes after the cluster accepts connections again.
const AFTER: Duration = Duration::from_secs(4);
/// Every request that meets the outage is answered within this.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// A pause before a client retries a request that got a 503.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// The whole test must end within this (PostgreSQL is started again in any case).
const TEST_LIMIT: Duration = Duration::from_secs(180);

#[test]
fn postgres_restart_during_writes_loses_no_acknowledged_write() {
    let Some(admin) = admin_url() else { return };
    if std::env::var("PORTAUTHORITY_TEST_PG_RESTART").as_deref() != Ok("1") {
        skip::because(
            "PORTAUTHORITY_TEST_PG_RESTART is not 1 (the restart test stops and starts the \
             machine's PostgreSQL cluster, which disturbs anything else using it, so it runs \
             only when asked to; .ci/run sets it)",
        );
        return;
    }
    let _serial = serial();
    runtime().block_on(async {
        tokio::time::timeout(TEST_LIMIT, run(&admin))
            .await
            .expect("the restart test finishes in time");
    });
}

// ---------------------------------------------------------------------------------------
// The cluster.

/// The machine's PostgreSQL cluster, driven with `pg_ctlcluster`.
struct Cluster {
    version: String,
    admin: String,
}

impl Cluster {
    /// The one cluster version installed under /etc/postgresql.
    fn find(admin: &str) -> Cluster {
        let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
            .expect("read /etc/postgresql (the restart test needs a Debian-style cluster)")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        versions.sort();
        assert_eq!(
            versions.len(),
            1,
            "expected exactly one PostgreSQL version in /etc/postgresql, found {versions:?}"
        );
        Cluster {
            version: versions.remove(0),
            admin: admin.to_owned(),
        }
    }

    fn command(&self, action: &str) -> std::process::Command {
        let mut c = std::process::Command::new("pg_ctlcluster");
        c.args(["--skip-systemctl-redirect", &self.version, "main", action]);
        if action == "stop" {
            c.args(["-m", "fast"]);
        }
        c
    }

    fn run(&self, action: &str) -> std::process::Output {
        self.command(action)
            .output()
            .unwrap_or_else(|e| panic!("run pg_ctlcluster {action}: {e}"))
    }

    /// Whether the cluster accepts connections (`pg_isready`).
    fn is_ready(&self) -> bool {
        std::process::Command::new("pg_isready")
            .args(["-q", "-d", &self.admin])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Polls `pg_isready` until it succeeds or `within` passes.
    fn wait_ready(&self, within: Duration) -> bool {
        let until = Instant::now() + within;
        loop {
            if self.is_ready() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the cluster (`-m fast`: sessions are ended, not waited for). The guard starts
    /// it again when dropped, so a failing or panicking test never leaves it down.
    fn stop(&self) -> Stopped<'_> {
        let guard = Stopped {
            cluster: self,
            started: false,
        };
        let out = self.run("stop");
        assert!(
            out.status.success(),
            "pg_ctlcluster stop failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        guard
    }
}

/// A stopped cluster; started again by [`Stopped::start`] or, at the latest, on drop.
struct Stopped<'a> {
    cluster: &'a Cluster,
    started: bool,
}

impl Stopped<'_> {
    /// Starts the cluster and waits until it accepts connections.
    fn start(mut self) {
        self.started = true;
        let out = self.cluster.run("start");
        assert!(
            out.status.success(),
            "pg_ctlcluster start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            self.cluster.wait_ready(Duration::from_secs(60)),
            "PostgreSQL did not accept connections within 60 s of its start"
        );
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if !self.started {
            eprintln!("starting PostgreSQL again after a failure");
            let _ = self.cluster.run("start");
            let _ = self.cluster.wait_ready(Duration::from_secs(60));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The clients.

/// What one request attempt got.
#[derive(Clone, Debug)]
enum Outcome {
    Success,
    /// A 503; `problem` is None when it was a proper problem document, else what was wrong.
    Unavailable {
        problem: Option<String>,
    },
    /// Any other status (a 500, a 4xx): a failure.
    Other {
        status: u16,
        body: String,
    },
    /// No HTTP answer at all: a failure.
    Transport(String),
}

#[derive(Clone, Debug)]
struct Attempt {
    client: usize,
    what: String,
    start: Instant,
    latency: Duration,
    outcome: Outcome,
}

/// Whether a response is a 503 problem document; None if it is, else what is wrong.
fn problem_defect(content_type: &str, body: &Value) -> Option<String> {
    if !content_type.starts_with("application/problem+json") {
        return Some(format!("content type {content_type:?}"));
    }
    let shaped = body["status"] == 503
        && body["type"].is_string()
        && body["title"].is_string()
        && body["detail"].is_string();
    (!shaped).then(|| format!("body {body}"))
}

struct Writer {
    n: usize,
    base: String,
    http: reqwest::Client,
    rng: Rng,
    stop: Arc<AtomicBool>,
    jobs: Vec<JobRecord>,
    attempts: Vec<Attempt>,
    next_group: usize,
}

impl Writer {
    /// Sends a write and retries it after every 503 (every request is safe to repeat)
    /// until it is acknowledged. None: stop writing, because of a failure (recorded) or
    /// because the test is over.
    async fn write(&mut self, method: Method, path: &str, body: Value) -> Option<Value> {
        let url = format!("{}{path}", self.base);
        loop {
            let start = Instant::now();
            let res = self
                .http
                .request(method.clone(), &url)
                .json(&body)
                .send()
                .await;
            let (outcome, value) = match res {
                Err(e) => (Outcome::Transport(e.to_string()), None),
                Ok(res) => {
                    let status = res.status().as_u16();
                    let content_type = res
                        .headers()
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    match res.bytes().await {
                        Err(e) => (Outcome::Transport(format!("reading the body: {e}")), None),
                        Ok(bytes) => {
                            let value: Value =
                                serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                                    Value::String(String::from_utf8_lossy(&bytes).into())
                                });
                            match status {
                                200..=299 => (Outcome::Success, Some(value)),
                                503 => (
                                    Outcome::Unavailable {
                                        problem: problem_defect(&content_type, &value),
                                    },
                                    None,
                                ),
                                _ => (
                                    Outcome::Other {
                                        status,
                                        body: value.to_string(),
                                    },
                                    None,
                                ),
                            }
                        }
                    }
                }
            };
            let retry = matches!(outcome, Outcome::Unavailable { .. });
            self.attempts.push(Attempt {
                client: self.n,
                what: format!("{method} {path}"),
                start,
                latency: start.elapsed(),
                outcome,
            });
            if value.is_some() {
                return value;
            }
            if !retry || self.stop.load(Ordering::SeqCst) {
                return None;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    fn new_tasks(&mut self, n: u64) -> (usize, Vec<CreateTaskRequest>) {
        self.next_group += 1;
        let reqs = (0..n)
            .map(|_| CreateTaskRequest {
                id: Some(TaskId::from_uuid(uuid::Uuid::now_v7())),
                task_type: Some("step".into()),
                namespace: Some("com.shipyard.tasks".into()),
                ..Default::default()
            })
            .collect();
        (self.next_group, reqs)
    }

    fn record_tasks(&mut self, job: usize, group: usize, reqs: &[CreateTaskRequest]) {
        self.jobs[job].tasks.extend(reqs.iter().map(|r| TaskRecord {
            id: r.id.expect("id set"),
            acked: false,
            group,
            status: Status::Pending,
            in_flight: None,
        }));
    }

    fn ack_group(&mut self, job: usize, group: usize) {
        for t in &mut self.jobs[job].tasks {
            if t.group == group {
                t.acked = true;
            }
        }
    }

    /// Writes until the test is over or a request fails.
    async fn run(&mut self) {
        while !self.stop.load(Ordering::SeqCst) && self.job().await.is_some() {}
    }

    /// One job's life: created with tasks, more tasks added, statuses changed, sometimes
    /// ended explicitly. None: stop.
    async fn job(&mut self) -> Option<()> {
        let auto_complete = !self.rng.chance(20);
        let id = JobId::from_uuid(uuid::Uuid::now_v7());
        let n = 1 + self.rng.below(6);
        let (group, tasks) = self.new_tasks(n);
        let req = CreateJobRequest {
            id: Some(id),
            job_type: Some("deploy".into()),
            namespace: Some("com.shipyard.restart".into()),
            auto_complete: Some(auto_complete),
            tasks: Some(tasks.clone()),
            ..Default::default()
        };
        self.jobs.push(JobRecord {
            id,
            acked: false,
            auto_complete,
            explicit: None,
            explicit_in_flight: None,
            tasks: Vec::new(),
        });
        let j = self.jobs.len() - 1;
        self.record_tasks(j, group, &tasks);
        let body = serde_json::to_value(&req).expect("serialize");
        self.write(Method::POST, "/v1/jobs", body).await?;
        self.jobs[j].acked = true;
        self.ack_group(j, group);

        for _ in 0..4 + self.rng.below(12) {
            if self.stop.load(Ordering::SeqCst) || self.jobs[j].is_terminal() {
                break;
            }
            if self.rng.chance(15) {
                // More tasks, one or a batch.
                let n = 1 + self.rng.below(4);
                let (group, tasks) = self.new_tasks(n);
                self.record_tasks(j, group, &tasks);
                let (path, body) = if tasks.len() == 1 {
                    (
                        format!("/v1/jobs/{id}/tasks"),
                        serde_json::to_value(&tasks[0]),
                    )
                } else {
                    (
                        format!("/v1/jobs/{id}/tasks/batch"),
                        serde_json::to_value(CreateTasksRequest { tasks }),
                    )
                };
                self.write(Method::POST, &path, body.expect("serialize"))
                    .await?;
                self.ack_group(j, group);
            } else if self.rng.chance(5) {
                // End the job explicitly; its open tasks become cancelled.
                let to = if self.rng.chance(50) {
                    Status::Cancelled
                } else {
                    Status::Failed
                };
                self.jobs[j].explicit_in_flight = Some(to);
                for t in &mut self.jobs[j].tasks {
                    if !t.status.is_terminal() {
                        t.in_flight = Some(Status::Cancelled);
                    }
                }
                let body = SetJobStatusRequest {
                    status: to,
                    reason: Some("restart test".into()),
                };
                let body = serde_json::to_value(body).expect("serialize");
                self.write(Method::PUT, &format!("/v1/jobs/{id}/status"), body)
                    .await?;
                let job = &mut self.jobs[j];
                job.explicit = Some(to);
                job.explicit_in_flight = None;
                for t in &mut job.tasks {
                    if let Some(s) = t.in_flight.take() {
                        t.status = s;
                    }
                }
            } else {
                // Move one task.
                let k = self.rng.below(self.jobs[j].tasks.len() as u64) as usize;
                let from = self.jobs[j].tasks[k].status;
                let Some(to) = next_status(&mut self.rng, from) else {
                    continue;
                };
                let task = self.jobs[j].tasks[k].id;
                self.jobs[j].tasks[k].in_flight = Some(to);
                let body = SetTaskStatusRequest {
                    status: to,
                    reason: None,
                    error: (to == Status::Failed).then(|| "boom".into()),
                    progress: None,
                };
                let body = serde_json::to_value(body).expect("serialize");
                let path = format!("/v1/jobs/{id}/tasks/{task}/status");
                self.write(Method::PUT, &path, body).await?;
                let t = &mut self.jobs[j].tasks[k];
                t.status = to;
                t.in_flight = None;
            }
        }
        Some(())
    }
}

// ---------------------------------------------------------------------------------------
// The test.

/// One `/readyz` poll.
struct Probe {
    start: Instant,
    latency: Duration,
    /// The status, or None for a transport error.
    status: Option<u16>,
    defect: Option<String>,
}

async fn poll_readyz(base: String, stop: Arc<AtomicBool>) -> Vec<Probe> {
    let http = portauthority_client::http_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let mut probes = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let start = Instant::now();
        let (status, defect) = match http.get(format!("{base}/readyz")).send().await {
            Err(e) => (None, Some(e.to_string())),
            Ok(r) => {
                let status = r.status().as_u16();
                let content_type = r
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                let defect = match status {
                    503 => problem_defect(&content_type, &body),
                    200 => None,
                    _ => Some(format!("status {status}: {body}")),
                };
                (Some(status), defect)
            }
        };
        probes.push(Probe {
            start,
            latency: start.elapsed(),
            status,
            defect,
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    probes
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

async fn run(admin: &str) {
    let cluster = Cluster::find(admin);
    assert!(
        cluster.is_ready(),
        "PostgreSQL at the test URL is not ready before the test"
    );
    let url = scratch_database(admin).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut servers = Server::start_many(crate::portauthority(), &url, dir.path(), 1, 16).await;
    let mut server = servers.pop().expect("one server");

    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let readyz = tokio::spawn(poll_readyz(server.base.clone(), stop.clone()));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let mut w = Writer {
                n,
                base: server.base.clone(),
                http: server.http(),
                rng: Rng::new(n as u64 + 9001),
                stop: stop.clone(),
                jobs: Vec::new(),
                attempts: Vec::new(),
                next_group: 0,
            };
            tokio::spawn(async move {
                w.run().await;
                w
            })
        })
        .collect();

    // The outage, in the middle of the writes.
    tokio::time::sleep(BEFORE).await;
    let stop_begin = Instant::now();
    let stopped = tokio::task::block_in_place(|| cluster.stop());
    let down_at = Instant::now();
    tokio::time::sleep(DOWN_FOR).await;
    let start_begin = Instant::now();
    tokio::task::block_in_place(|| stopped.start());
    let back_at = Instant::now();
    tokio::time::sleep(AFTER).await;
    stop.store(true, Ordering::SeqCst);

    let mut writers = Vec::new();
    for h in handles {
        writers.push(h.await.expect("client task did not panic"));
    }
    let probes = readyz.await.expect("readyz poller did not panic");
    let total = t0.elapsed();
    let timeline = Timeline {
        t0,
        stop_begin,
        down_at,
        start_begin,
        back_at,
    };
    let attempts: Vec<&Attempt> = writers.iter().flat_map(|w| &w.attempts).collect();
    report(&timeline, total, &attempts, &probes);

    // The server is the same process, alive and well.
    assert!(
        server.is_running(),
        "the server exited:\n{}",
        server.log_text()
    );
    assert!(
        !server.log_text().contains("panicked"),
        "the server panicked:\n{}",
        server.log_text()
    );
    check_answers(&timeline, &attempts);
    check_readyz(&timeline, &probes);

    // Everything acknowledged is stored, counters equal a recount.
    let client = server.client();
    let jobs: Vec<&JobRecord> = writers.iter().flat_map(|w| &w.jobs).collect();
    let bad: Vec<String> = futures::stream::iter(jobs.iter().copied())
        .map(|job| verify(&client, job))
        .buffer_unordered(16)
        .flat_map(futures::stream::iter)
        .collect()
        .await;
    println!(
        "verified {} jobs ({} acknowledged) and {} tasks after the recovery",
        jobs.len(),
        jobs.iter().filter(|j| j.acked).count(),
        jobs.iter().map(|j| j.tasks.len()).sum::<usize>()
    );
    assert!(
        bad.is_empty(),
        "{} disagreements after the recovery; first ones:\n{}",
        bad.len(),
        first(&bad, 20)
    );
}

/// When the cluster went down and came back.
struct Timeline {
    t0: Instant,
    /// `pg_ctlcluster stop` was run ...
    stop_begin: Instant,
    /// ... and returned: from here the cluster is down ...
    down_at: Instant,
    /// ... until `pg_ctlcluster start` is run ...
    start_begin: Instant,
    /// ... and `pg_isready` says it accepts connections.
    back_at: Instant,
}

impl Timeline {
    fn at(&self, t: Instant) -> f64 {
        secs(t - self.t0)
    }

    /// Made after the stop was run, and answered while the cluster was down (no
    /// PostgreSQL process running at all): such a request cannot have been served.
    fn answered_while_down(&self, start: Instant, latency: Duration) -> bool {
        let end = start + latency;
        start >= self.stop_begin && end >= self.down_at && end <= self.start_begin
    }

    /// Anything that was under way at some time between the stop and the cluster's
    /// being ready again.
    fn meets_outage(&self, start: Instant, latency: Duration) -> bool {
        start < self.back_at && start + latency > self.stop_begin
    }
}

fn is_ok(a: &Attempt) -> bool {
    matches!(a.outcome, Outcome::Success)
}

fn is_503(a: &Attempt) -> bool {
    matches!(a.outcome, Outcome::Unavailable { .. })
}

/// Prints what the clients and the readiness probe saw.
fn report(tl: &Timeline, total: Duration, attempts: &[&Attempt], probes: &[Probe]) {
    let count = |f: &dyn Fn(&Attempt) -> bool| attempts.iter().filter(|a| f(a)).count();
    let before_ok = count(&|a| is_ok(a) && a.start + a.latency <= tl.stop_begin);
    let after_ok = count(&|a| is_ok(a) && a.start >= tl.back_at);
    let meeting = count(&|a| tl.meets_outage(a.start, a.latency));
    let meeting_ok = count(&|a| is_ok(a) && tl.meets_outage(a.start, a.latency));
    let down = count(&|a| tl.answered_while_down(a.start, a.latency));
    let mut lat: Vec<f64> = attempts
        .iter()
        .filter(|a| is_503(a))
        .map(|a| secs(a.latency))
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let slowest_meeting = attempts
        .iter()
        .filter(|a| tl.meets_outage(a.start, a.latency))
        .map(|a| secs(a.latency))
        .fold(0.0, f64::max);
    let last_503 = attempts
        .iter()
        .filter(|a| is_503(a))
        .map(|a| tl.at(a.start + a.latency))
        .fold(0.0, f64::max);
    let first_ok_after = attempts
        .iter()
        .filter(|a| is_ok(a) && a.start >= tl.back_at)
        .map(|a| secs(a.start + a.latency - tl.back_at))
        .fold(f64::INFINITY, f64::min);
    println!(
        "{CLIENTS} clients, {:.1} s: {} requests, {} acknowledged, {} got 503. Timeline: stop \
         run at {:.2} s, cluster down at {:.2} s, start run at {:.2} s, ready at {:.2} s.",
        secs(total),
        attempts.len(),
        count(&is_ok),
        lat.len(),
        tl.at(tl.stop_begin),
        tl.at(tl.down_at),
        tl.at(tl.start_begin),
        tl.at(tl.back_at),
    );
    println!(
        "before the stop: {before_ok} writes acknowledged ({:.0}/s); under way during the \
         outage: {meeting} ({meeting_ok} acknowledged, the rest 503), {down} of them answered \
         while the cluster was down; after ready: {after_ok} acknowledged ({:.0}/s), the \
         first {:.3} s after ready",
        before_ok as f64 / secs(tl.stop_begin - tl.t0),
        after_ok as f64 / secs(AFTER),
        first_ok_after,
    );
    println!(
        "503 latency: min {:.3} s, p50 {:.3} s, p90 {:.3} s, max {:.3} s; slowest request under way \
         during the outage {slowest_meeting:.3} s; last 503 answered at {last_503:.2} s",
        pct(0.0),
        pct(0.5),
        pct(0.9),
        pct(1.0),
    );
    let probe_line: Vec<String> = probes
        .iter()
        .filter(|p| tl.meets_outage(p.start, p.latency) || p.status != Some(200))
        .map(|p| {
            format!(
                "{:.2} s +{:.2} s: {}",
                tl.at(p.start),
                secs(p.latency),
                p.status.map_or("no answer".into(), |s| s.to_string())
            )
        })
        .collect();
    println!(
        "/readyz: {} polls, {} answered 200; around the outage: {}",
        probes.len(),
        probes.iter().filter(|p| p.status == Some(200)).count(),
        probe_line.join(", ")
    );
}

/// Every answer was a 2xx or, during the outage only, a quick 503 problem document; after
/// the cluster was back, every write was acknowledged again.
fn check_answers(tl: &Timeline, attempts: &[&Attempt]) {
    let describe = |a: &Attempt, what: &str| {
        format!(
            "client {}: {} at {:.2} s (+{:.3} s) {what}",
            a.client,
            a.what,
            tl.at(a.start),
            secs(a.latency)
        )
    };
    let failures: Vec<String> = attempts
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Other { status, body } => {
                Some(describe(a, &format!("answered {status}: {body}")))
            }
            Outcome::Transport(e) => Some(describe(a, &format!("got no answer: {e}"))),
            _ => None,
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} requests got neither a 2xx nor a 503 (each stops its client); first ones:\n{}",
        failures.len(),
        first(&failures, 10)
    );
    let bad_problems: Vec<String> = attempts
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Unavailable { problem: Some(p) } => {
                Some(describe(a, &format!("is no problem document: {p}")))
            }
            _ => None,
        })
        .collect();
    assert!(
        bad_problems.is_empty(),
        "503s that are not problem documents:\n{}",
        first(&bad_problems, 10)
    );
    let slow: Vec<String> = attempts
        .iter()
        .filter(|a| tl.meets_outage(a.start, a.latency) && a.latency >= ANSWER_WITHIN)
        .map(|a| describe(a, "was too slow"))
        .collect();
    assert!(
        slow.is_empty(),
        "requests under way during the outage took {} s or more:\n{}",
        secs(ANSWER_WITHIN),
        first(&slow, 10)
    );
    let down: Vec<&Attempt> = attempts
        .iter()
        .copied()
        .filter(|a| tl.answered_while_down(a.start, a.latency))
        .collect();
    let down_ok: Vec<String> = down
        .iter()
        .filter(|a| !is_503(a))
        .map(|a| describe(a, "was acknowledged while the cluster was down"))
        .collect();
    assert!(
        !down.is_empty() && down_ok.is_empty(),
        "requests answered while the cluster was down must all be 503s; {} were, \
         acknowledged:\n{}",
        down.len(),
        first(&down_ok, 10)
    );
    let stray: Vec<String> = attempts
        .iter()
        .filter(|a| is_503(a) && !tl.meets_outage(a.start, a.latency))
        .map(|a| describe(a, "got a 503 outside the outage"))
        .collect();
    assert!(
        stray.is_empty(),
        "503s before the stop or after the cluster was ready again (the server must \
         recover by itself):\n{}",
        first(&stray, 10)
    );
    let before = attempts
        .iter()
        .filter(|a| is_ok(a) && a.start + a.latency <= tl.stop_begin)
        .count();
    assert!(
        before >= CLIENTS,
        "too few writes before the stop ({before}) for the test to mean anything"
    );
    let wrote_again = (0..CLIENTS)
        .filter(|&n| {
            attempts
                .iter()
                .any(|a| a.client == n && is_ok(a) && a.start >= tl.back_at)
        })
        .count();
    assert_eq!(
        wrote_again, CLIENTS,
        "not every client got a write acknowledged after the cluster was back"
    );
}

/// `/readyz`: 503 problem documents while the cluster is down, 200 once it is back.
fn check_readyz(tl: &Timeline, probes: &[Probe]) {
    let describe = |p: &Probe| {
        format!(
            "{:.2} s (+{:.3} s): {:?} {}",
            tl.at(p.start),
            secs(p.latency),
            p.status,
            p.defect.as_deref().unwrap_or("")
        )
    };
    let wrong: Vec<String> = probes
        .iter()
        .filter(|p| {
            p.defect.is_some()
                || p.latency >= ANSWER_WITHIN
                || (p.status == Some(503) && !tl.meets_outage(p.start, p.latency))
                || (p.status != Some(503) && tl.answered_while_down(p.start, p.latency))
                || (p.status != Some(200) && p.start >= tl.back_at)
        })
        .map(describe)
        .collect();
    assert!(
        wrong.is_empty(),
        "/readyz must answer 503 (a problem document, within {} s) while the cluster is \
         down and 200 otherwise; wrong answers:\n{}",
        secs(ANSWER_WITHIN),
        first(&wrong, 10)
    );
    assert!(
        probes.iter().any(|p| p.status == Some(503)),
        "/readyz never said not ready: {}",
        probes.iter().map(describe).collect::<Vec<_>>().join("\n")
    );
    assert!(
        probes
            .iter()
            .any(|p| p.status == Some(200) && p.start >= tl.back_at),
        "/readyz was not polled after the cluster was back"
    );
}
