//! Durability: the real binary is killed with SIGKILL while 32 clients write, then started
//! again on the same SQLite file. Everything it acknowledged must still be there, and
//! nothing half-written.

use futures::StreamExt;
use portauthority_client::{Client, Error};
use portauthority_core::api::{CreateJobRequest, CreateTaskRequest};
use portauthority_core::{JobId, Status, TaskId};
use portauthority_testkit::acked::{JobRecord, TaskRecord, next_status, verify};
use portauthority_testkit::server::Server;
use portauthority_testkit::workload::Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
/// How long the clients write before the kill.
const KILL_AFTER: Duration = Duration::from_secs(2);
/// A bound on each client's writes, whatever the speed of the machine.
const MAX_WRITES: usize = 5_000;
/// The whole test must end within this.
const TEST_LIMIT: Duration = Duration::from_secs(180);

/// What one client wrote, and what the server acknowledged.
#[derive(Default)]
struct Ledger {
    jobs: Vec<JobRecord>,
    acked_writes: u64,
    requests: u64,
    /// Failures that are not the kill: any non-2xx, or a transport error before it.
    errors: Vec<String>,
    next_group: usize,
}

struct Writer {
    n: usize,
    client: Client,
    rng: Rng,
    killed: Arc<AtomicBool>,
    ledger: Ledger,
}

impl Writer {
    /// Records the outcome of a write. `Ok(None)` means: stop, the server is gone.
    fn outcome<T>(&mut self, what: &str, r: portauthority_client::Result<T>) -> Option<T> {
        self.ledger.requests += 1;
        match r {
            Ok(v) => {
                self.ledger.acked_writes += 1;
                Some(v)
            }
            Err(Error::Transport(_)) if self.killed.load(Ordering::SeqCst) => None,
            Err(e) => {
                self.ledger
                    .errors
                    .push(format!("client {}: {what}: {e}", self.n));
                None
            }
        }
    }

    fn new_tasks(&mut self, n: u64) -> (usize, Vec<CreateTaskRequest>) {
        self.ledger.next_group += 1;
        let reqs = (0..n)
            .map(|_| CreateTaskRequest {
                id: Some(TaskId::from_uuid(uuid::Uuid::now_v7())),
                task_type: Some("step".into()),
                namespace: Some("com.shipyard.tasks".into()),
                ..Default::default()
            })
            .collect();
        (self.ledger.next_group, reqs)
    }

    fn record_tasks(&mut self, job: usize, group: usize, reqs: &[CreateTaskRequest]) {
        self.ledger.jobs[job]
            .tasks
            .extend(reqs.iter().map(|r| TaskRecord {
                id: r.id.expect("id set"),
                acked: false,
                group,
                status: Status::Pending,
                in_flight: None,
            }));
    }

    fn ack_group(&mut self, job: usize, group: usize) {
        for t in &mut self.ledger.jobs[job].tasks {
            if t.group == group {
                t.acked = true;
            }
        }
    }

    /// Writes until the server is killed, an error, or the write limit.
    async fn run(&mut self) {
        while self.ledger.requests < MAX_WRITES as u64 && self.job().await.is_some() {}
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
            namespace: Some("com.shipyard.crash".into()),
            auto_complete: Some(auto_complete),
            tasks: Some(tasks.clone()),
            ..Default::default()
        };
        self.ledger.jobs.push(JobRecord {
            id,
            acked: false,
            auto_complete,
            explicit: None,
            explicit_in_flight: None,
            tasks: Vec::new(),
        });
        let j = self.ledger.jobs.len() - 1;
        self.record_tasks(j, group, &tasks);
        let r = self.client.create_job(&req).await;
        self.outcome("create job", r)?;
        self.ledger.jobs[j].acked = true;
        self.ack_group(j, group);

        for _ in 0..4 + self.rng.below(12) {
            if self.ledger.requests >= MAX_WRITES as u64 {
                return None;
            }
            let job = &self.ledger.jobs[j];
            if job.is_terminal() {
                break;
            }
            if self.rng.chance(15) {
                // More tasks, one or a batch.
                let n = 1 + self.rng.below(4);
                let (group, tasks) = self.new_tasks(n);
                self.record_tasks(j, group, &tasks);
                let r = if tasks.len() == 1 {
                    self.client.add_task(id, &tasks[0]).await.map(|_| ())
                } else {
                    self.client.add_tasks(id, tasks).await.map(|_| ())
                };
                self.outcome("add tasks", r)?;
                self.ack_group(j, group);
            } else if self.rng.chance(5) {
                // End the job explicitly; its open tasks become cancelled.
                let to = if self.rng.chance(50) {
                    Status::Cancelled
                } else {
                    Status::Failed
                };
                self.ledger.jobs[j].explicit_in_flight = Some(to);
                for t in &mut self.ledger.jobs[j].tasks {
                    if !t.status.is_terminal() {
                        t.in_flight = Some(Status::Cancelled);
                    }
                }
                let r = self.client.set_job_status(id, to, Some("crash test")).await;
                self.outcome("set job status", r)?;
                let job = &mut self.ledger.jobs[j];
                job.explicit = Some(to);
                job.explicit_in_flight = None;
                for t in &mut job.tasks {
                    if let Some(s) = t.in_flight.take() {
                        t.status = s;
                    }
                }
            } else {
                // Move one task.
                let k = self.rng.below(self.ledger.jobs[j].tasks.len() as u64) as usize;
                let from = self.ledger.jobs[j].tasks[k].status;
                let Some(to) = next_status(&mut self.rng, from) else {
                    continue;
                };
                let task = self.ledger.jobs[j].tasks[k].id;
                self.ledger.jobs[j].tasks[k].in_flight = Some(to);
                let r = self.client.set_task(id, task, to).await;
                self.outcome("set task status", r)?;
                let t = &mut self.ledger.jobs[j].tasks[k];
                t.status = to;
                t.in_flight = None;
            }
        }
        Some(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_write_survives_a_sigkill() {
    tokio::time::timeout(TEST_LIMIT, crash_and_recover())
        .await
        .expect("the crash test finishes in time");
}

async fn crash_and_recover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("crash.db");
    let url = format!("sqlite://{}", db.display());
    let mut server = Server::start(crate::portauthority(), &url, dir.path(), "first", None).await;

    let killed = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let mut w = Writer {
                n,
                client: server.client(),
                rng: Rng::new(n as u64 + 101),
                killed: killed.clone(),
                ledger: Ledger::default(),
            };
            tokio::spawn(async move {
                w.run().await;
                w.ledger
            })
        })
        .collect();

    tokio::time::sleep(KILL_AFTER).await;
    killed.store(true, Ordering::SeqCst);
    server.kill();
    let ran = started.elapsed();

    let mut jobs = Vec::new();
    let (mut requests, mut acked, mut in_flight) = (0, 0, 0);
    let mut errors = Vec::new();
    for h in handles {
        let ledger = h.await.expect("client task did not panic");
        requests += ledger.requests;
        acked += ledger.acked_writes;
        in_flight += ledger.requests - ledger.acked_writes;
        errors.extend(ledger.errors);
        jobs.extend(ledger.jobs);
    }
    println!(
        "{CLIENTS} clients: {requests} writes in {:.2} s before the kill ({:.0}/s), \
         {acked} acknowledged, {in_flight} unanswered; {} jobs, {} tasks",
        ran.as_secs_f64(),
        requests as f64 / ran.as_secs_f64(),
        jobs.len(),
        jobs.iter().map(|j| j.tasks.len()).sum::<usize>()
    );
    assert!(
        errors.is_empty(),
        "writes failed before the kill:\n{}",
        errors[..errors.len().min(10)].join("\n")
    );
    assert!(
        acked >= CLIENTS as u64,
        "too few writes were acknowledged ({acked}) for the test to mean anything"
    );
    assert!(
        server.log_text().lines().all(|l| !l.contains("panicked")),
        "the server panicked before the kill:\n{}",
        server.log_text()
    );

    let restarted = Server::start(crate::portauthority(), &url, dir.path(), "second", None).await;
    let client = restarted.client();
    let bad: Vec<String> = futures::stream::iter(&jobs)
        .map(|job| verify(&client, job))
        .buffer_unordered(16)
        .flat_map(futures::stream::iter)
        .collect()
        .await;
    assert!(
        bad.is_empty(),
        "{} disagreements after the restart; first ones:\n{}",
        bad.len(),
        bad[..bad.len().min(20)].join("\n")
    );

    // And the restarted server takes writes again.
    let req = CreateJobRequest {
        job_type: Some("deploy".into()),
        namespace: Some("com.shipyard.crash".into()),
        ..Default::default()
    };
    client
        .create_job(&req)
        .await
        .expect("the restarted server accepts writes");
    drop(restarted);
}
