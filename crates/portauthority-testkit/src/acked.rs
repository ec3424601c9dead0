//! What a client of the durability tests (SIGKILL of the server, restart of PostgreSQL)
//! sent and had acknowledged, and the check of a stored job against it: everything
//! acknowledged is there, nothing is half-written, counters equal a recount, and each
//! task's last status event matches its status.
//!
//! The tests keep one [`JobRecord`] per job they create, mark a change in flight before
//! sending it and acknowledged when a 2xx answers it, then [`verify`] each job after the
//! server (or its database) came back. [`Writer`] is such a client over the typed client.

use crate::workload::Rng;
use portauthority_client::{Client, Error};
use portauthority_core::api::{CreateJobRequest, CreateTaskRequest, EventKind};
use portauthority_core::{Counters, JobId, Status, TaskId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One task as its client knows it.
#[derive(Debug)]
pub struct TaskRecord {
    pub id: TaskId,
    /// Its creation was acknowledged (false: in flight when the test cut in).
    pub acked: bool,
    /// The request that created it, shared by the tasks created together.
    pub group: usize,
    /// The last acknowledged status.
    pub status: Status,
    /// A status change sent and never answered with a 2xx.
    pub in_flight: Option<Status>,
}

/// One job as its client knows it.
#[derive(Debug)]
pub struct JobRecord {
    pub id: JobId,
    /// Its creation was acknowledged (false: in flight when the test cut in).
    pub acked: bool,
    pub auto_complete: bool,
    /// The acknowledged explicit status (`PUT .../status` on the job), if any.
    pub explicit: Option<Status>,
    /// An explicit status sent and never answered with a 2xx.
    pub explicit_in_flight: Option<Status>,
    pub tasks: Vec<TaskRecord>,
}

impl JobRecord {
    /// Whether the job is terminal by the acknowledged writes: nothing more may be sent.
    pub fn is_terminal(&self) -> bool {
        self.explicit.is_some()
            || (self.auto_complete
                && !self.tasks.is_empty()
                && self.tasks.iter().all(|t| t.status.is_terminal()))
    }
}

/// The next status for a task, or None to leave it where it is. Each is safe to send again
/// after a 503 whose write may have been committed: the repeat is an idempotent no-op
/// (same terminal status) or a progress report (`in_progress` again).
pub fn next_status(rng: &mut Rng, from: Status) -> Option<Status> {
    use Status::*;
    Some(match from {
        Pending => match rng.below(10) {
            0..=5 => InProgress,
            6 | 7 => Completed,
            8 => Failed,
            _ => Cancelled,
        },
        InProgress => match rng.below(10) {
            0..=6 => Completed,
            7 | 8 => Failed,
            _ => Cancelled,
        },
        Failed if rng.chance(60) => InProgress,
        _ => return None,
    })
}

/// Checks one stored job against what was sent and acknowledged; returns what disagrees.
pub async fn verify(client: &Client, job: &JobRecord) -> Vec<String> {
    let id = job.id;
    let mut bad = Vec::new();
    let stored = match client.get_job(id).await {
        Ok(j) => j,
        Err(e) if e.status() == Some(reqwest::StatusCode::NOT_FOUND) => {
            if job.acked {
                bad.push(format!("job {id}: acknowledged, but lost: {e}"));
            }
            return bad;
        }
        Err(e) => return vec![format!("job {id}: reading it failed: {e}")],
    };
    let tasks = match client.all_tasks(id).await {
        Ok(t) => t,
        Err(e) => return vec![format!("job {id}: reading its tasks failed: {e}")],
    };
    let history = match client.job_history(id, 0, 1000).await {
        Ok(h) if h.next_after.is_none() => h.events,
        Ok(_) => return vec![format!("job {id}: more history than expected")],
        Err(e) => return vec![format!("job {id}: reading its history failed: {e}")],
    };
    let by_id: HashMap<TaskId, &portauthority_core::api::Task> =
        tasks.iter().map(|t| (t.id, t)).collect();

    // Tasks created by one request exist all together or not at all.
    let mut groups: HashMap<usize, (usize, usize)> = HashMap::new();
    for t in &job.tasks {
        let g = groups.entry(t.group).or_default();
        g.0 += 1;
        if by_id.contains_key(&t.id) {
            g.1 += 1;
        }
    }
    for (group, (sent, found)) in &groups {
        if *found != 0 && found != sent {
            bad.push(format!(
                "job {id}: {found} of the {sent} tasks of one request exist (request {group})"
            ));
        }
    }
    let known: HashSet<TaskId> = job.tasks.iter().map(|t| t.id).collect();
    for t in &tasks {
        if !known.contains(&t.id) {
            bad.push(format!("job {id}: task {} was never sent", t.id));
        }
    }
    for t in &job.tasks {
        match by_id.get(&t.id) {
            None if t.acked => bad.push(format!("job {id}: task {} acknowledged, but lost", t.id)),
            None => {}
            Some(s) => {
                let ok = s.status == t.status || Some(s.status) == t.in_flight;
                if !ok {
                    bad.push(format!(
                        "job {id}: task {} is {}, acknowledged {}, in flight {:?}",
                        t.id, s.status, t.status, t.in_flight
                    ));
                }
                // The history was written in the same transaction as the status.
                let last = history
                    .iter()
                    .rev()
                    .find(|e| e.task_id == Some(t.id) && e.kind == EventKind::StatusChanged)
                    .and_then(|e| e.to)
                    .unwrap_or(Status::Pending);
                if last != s.status {
                    bad.push(format!(
                        "job {id}: task {} is {}, its last history event says {last}",
                        t.id, s.status
                    ));
                }
            }
        }
    }

    let recount = Counters::recount(tasks.iter().map(|t| t.status));
    if stored.tasks != recount || !stored.tasks.is_consistent() {
        bad.push(format!(
            "job {id}: counters {:?}, recount {recount:?}",
            stored.tasks
        ));
    }
    let derived = stored.tasks.derived_status(stored.auto_complete);
    let allowed: Vec<Status> = match (job.explicit, job.explicit_in_flight) {
        (Some(s), _) => vec![s],
        (None, Some(s)) => vec![s, derived],
        (None, None) => vec![derived],
    };
    if !allowed.contains(&stored.status) {
        bad.push(format!(
            "job {id}: status {}, expected one of {allowed:?} (counters {:?})",
            stored.status, stored.tasks
        ));
    }
    bad
}

/// Checks every job against what its writer sent and had acknowledged ([`verify`]), 16 at a
/// time; returns what disagrees.
pub async fn verify_all(client: &Client, jobs: &[JobRecord]) -> Vec<String> {
    use futures::StreamExt;
    futures::stream::iter(jobs)
        .map(|job| verify(client, job))
        .buffer_unordered(16)
        .flat_map(futures::stream::iter)
        .collect()
        .await
}

/// What one client wrote, and what the server acknowledged.
#[derive(Default)]
pub struct Ledger {
    pub jobs: Vec<JobRecord>,
    pub acked_writes: u64,
    pub requests: u64,
    /// Failures that are not the stop: any non-2xx, or a transport error before it.
    pub errors: Vec<String>,
    next_group: usize,
}

impl Ledger {
    /// The writers' ledgers, merged once they all stopped.
    pub async fn join(writers: Vec<tokio::task::JoinHandle<Ledger>>) -> Ledger {
        let mut all = Ledger::default();
        for w in writers {
            let l = w.await.expect("a writer task did not panic");
            all.requests += l.requests;
            all.acked_writes += l.acked_writes;
            all.errors.extend(l.errors);
            all.jobs.extend(l.jobs);
        }
        all
    }

    /// Tasks over all jobs written.
    pub fn tasks(&self) -> usize {
        self.jobs.iter().map(|j| j.tasks.len()).sum()
    }

    /// Panics unless no write failed before the `stop` (any non-2xx, or a transport error
    /// before it) and at least `min` were acknowledged, enough for the test to mean something.
    pub fn assert_meaningful(&self, min: u64, stop: &str) {
        assert!(
            self.errors.is_empty(),
            "writes failed before the {stop}:\n{}",
            self.errors[..self.errors.len().min(10)].join("\n")
        );
        assert!(
            self.acked_writes >= min,
            "too few writes were acknowledged ({}) for the test to mean anything",
            self.acked_writes
        );
    }
}

/// One client of a durability test: creates jobs with tasks, adds more, moves their
/// statuses and sometimes ends a job explicitly, recording each write in its [`Ledger`]
/// before sending it and as acknowledged when a 2xx answers it. It stops at its write
/// limit, at the first failure, or at the first transport error once `stopped` is set
/// (the test has killed or stopped the server).
pub struct Writer {
    n: usize,
    client: Client,
    rng: Rng,
    killed: Arc<AtomicBool>,
    max_writes: u64,
    ledger: Ledger,
}

impl Writer {
    /// Client number `n` (it seeds the client's script with `n + seed`).
    pub fn new(
        n: usize,
        client: Client,
        seed: u64,
        stopped: Arc<AtomicBool>,
        max_writes: u64,
    ) -> Writer {
        Writer {
            n,
            client,
            rng: Rng::new(n as u64 + seed),
            killed: stopped,
            max_writes,
            ledger: Ledger::default(),
        }
    }

    /// Writes until stopped, and returns what was written and acknowledged.
    pub async fn write(mut self) -> Ledger {
        self.run().await;
        self.ledger
    }

    /// `clients` writers over `client`, each a task of its own; [`Ledger::join`] merges
    /// their ledgers once they stopped.
    pub fn spawn(
        clients: usize,
        client: &Client,
        seed: u64,
        stopped: &Arc<AtomicBool>,
        max_writes: u64,
    ) -> Vec<tokio::task::JoinHandle<Ledger>> {
        (0..clients)
            .map(|n| {
                let w = Writer::new(n, client.clone(), seed, stopped.clone(), max_writes);
                tokio::spawn(w.write())
            })
            .collect()
    }

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

    /// Writes until the server is stopped, an error, or the write limit.
    async fn run(&mut self) {
        while self.ledger.requests < self.max_writes && self.job().await.is_some() {}
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
            namespace: Some("com.shipyard.acked".into()),
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
            if self.ledger.requests >= self.max_writes {
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
                let r = self
                    .client
                    .set_job_status(id, to, Some("durability test"))
                    .await;
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
