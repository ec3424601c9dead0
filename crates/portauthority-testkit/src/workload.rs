//! The many-clients workload shared by the concurrency tests (one server, SQLite or
//! PostgreSQL) and the scale-out test (three servers on one PostgreSQL database): 64
//! clients create jobs, add tasks singly and in batches, and move them along random scripts,
//! on jobs of their own and on 16 jobs they all share. Every accepted write goes into a
//! ledger; afterwards every job is read back and must agree with it exactly: counters equal
//! a recount, statuses follow the rules, exactly one history event per accepted change.
//!
//! [`run`] takes one client per server; [`Report::assert_clean`] is the verdict.

use futures::StreamExt;
use portauthority_client::Client;
use portauthority_core::api::{
    CreateJobRequest, CreateTaskRequest, EventKind, HeartbeatRequest, HistoryEvent, Progress,
    SetTaskStatusRequest, TaskStatusUpdateItem,
};
use portauthority_core::{Counters, JobId, Status, TaskId};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Concurrent clients of a run.
const CLIENTS: usize = 64;
/// How long the clients keep starting new rounds.
const RUN_FOR: Duration = Duration::from_secs(4);
/// A bound on each client's rounds, whatever the speed of the machine.
const MAX_ROUNDS: usize = 500;
/// Jobs every client adds tasks to; with 64 clients about four work on each at a time.
const SHARED_JOBS: usize = 16;
/// A whole test, start-up, workload and checks, must end within this.
pub const TEST_LIMIT: Duration = Duration::from_secs(240);

/// A small deterministic generator (xorshift64), one per client, so that a failing run can
/// be reasoned about.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`; any seed, zero included, gives a usable sequence.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The first `n` lines of a list of messages, for assertion output.
pub fn first(messages: &[String], n: usize) -> String {
    messages[..messages.len().min(n)].join("\n")
}

/// What a run did and what disagreed.
pub struct Report {
    /// Requests sent, over all servers.
    pub requests: u64,
    /// Requests sent to each server, in the order of the clients given to `run`.
    pub per_server: Vec<u64>,
    /// Failed requests (non-2xx or transport); each stops its client.
    errors: Vec<String>,
    /// Disagreements between what the server stores and the accepted writes.
    bad: Vec<String>,
}

impl Report {
    /// Panics, listing the first failures and disagreements, unless the run was big
    /// enough to mean something and every request succeeded and every job agreed.
    pub fn assert_clean(&self) {
        assert!(
            self.requests >= 10 * CLIENTS as u64,
            "only {} requests: too few for the test to mean anything",
            self.requests
        );
        assert!(
            self.errors.is_empty() && self.bad.is_empty(),
            "{} requests failed (non-2xx or transport; each stops its client), first ones:\n{}\n\
             {} disagreements between the stored state and the accepted writes, first ones:\n{}",
            self.errors.len(),
            first(&self.errors, 10),
            self.bad.len(),
            first(&self.bad, 20)
        );
    }
}

/// Runs the workload with `CLIENTS` clients sending their requests over `clients` in turn,
/// ends the shared jobs, and checks every job. `seed` varies the clients' scripts.
pub async fn run(clients: Vec<Client>, seed: u64) -> Report {
    let servers = clients.len();
    // Shared jobs, each with one anchor task that stays open while the clients work, so
    // that none of them finishes by itself and every client may still add tasks to it.
    let mut setup = RoundRobin::new(clients.clone(), 0);
    let mut ledger = Ledger::default();
    let mut shared = Vec::new();
    for i in 0..SHARED_JOBS {
        let auto_complete = (i / 4) % 2 == 0;
        let mut req = new_job("release", "com.shipyard.shared");
        let anchor = TaskId::from_uuid(uuid::Uuid::now_v7());
        req.auto_complete = Some(auto_complete);
        req.tasks = Some(vec![CreateTaskRequest {
            id: Some(anchor),
            ..new_task("anchor")
        }]);
        let job = setup.next().create_job(&req).await.expect("shared job");
        ledger.jobs.insert(
            job.id,
            JobExpect {
                auto_complete,
                ..JobExpect::default()
            },
        );
        ledger.task_added(job.id, anchor);
        shared.push(job.id);
    }

    let started = Instant::now();
    let deadline = started + RUN_FOR;
    let handles: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let shared = shared.clone();
            let mut worker = Worker {
                n,
                servers: RoundRobin::new(clients.clone(), n),
                rng: Rng::new(n as u64 + seed),
                ledger: Ledger::default(),
                requests: 0,
            };
            tokio::spawn(async move {
                let outcome = worker.run(&shared, deadline).await;
                (worker, outcome)
            })
        })
        .collect();
    let mut errors = Vec::new();
    let mut requests = 0;
    let mut per_server = vec![0u64; servers];
    for h in handles {
        let (worker, outcome) = h.await.expect("client task did not panic");
        requests += worker.requests;
        for (total, n) in per_server.iter_mut().zip(&worker.servers.sent) {
            *total += n;
        }
        if let Err(e) = outcome {
            errors.push(e);
        }
        ledger.absorb(worker.ledger);
    }
    let elapsed = started.elapsed();
    let shared_tasks: usize = shared.iter().map(|j| ledger.jobs[j].tasks.len()).sum();
    println!(
        "{CLIENTS} clients over {servers} server(s): {requests} requests in {:.2} s = {:.0} \
         requests/s (per server {per_server:?}); {} jobs, {} tasks ({shared_tasks} in the \
         {SHARED_JOBS} shared jobs)",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        ledger.jobs.len(),
        ledger.tasks.len()
    );

    // Now that nobody else works on them, end the shared jobs in different ways, each
    // through another server. (The ledger only holds accepted writes, so the checks below
    // stay exact even after errors.)
    for (i, &job) in shared.iter().enumerate() {
        let anchor = ledger.jobs[&job].tasks[0];
        let to = match i % 4 {
            0 => {
                match setup.next().set_task(job, anchor, Status::Completed).await {
                    Ok(_) => ledger.task_changed(anchor, Status::Completed),
                    Err(e) => errors.push(format!("complete the anchor of {job}: {e}")),
                }
                let all_done =
                    !ledger.jobs[&job].auto_complete && ledger.open_tasks(job).is_empty();
                all_done.then_some(Status::Completed)
            }
            1 => Some(Status::Cancelled),
            2 => Some(Status::Failed),
            _ => None, // Left open.
        };
        if let Some(to) = to {
            match setup
                .next()
                .set_job_status(job, to, Some("end of the test"))
                .await
            {
                Ok(_) => ledger.job_set(job, to),
                Err(e) => errors.push(format!("set shared job {job} {to}: {e}")),
            }
        }
    }

    // Every job is read back through a server picked in turn.
    let ids: Vec<JobId> = ledger.jobs.keys().copied().collect();
    let ledger = &ledger;
    let checks: Vec<_> = ids
        .into_iter()
        .map(|id| (id, setup.next()))
        .collect::<Vec<_>>();
    let bad: Vec<String> = futures::stream::iter(checks)
        .map(|(id, client)| verify_job(client, ledger, id))
        .buffer_unordered(16)
        .flat_map(futures::stream::iter)
        .collect()
        .await;

    Report {
        requests,
        per_server,
        errors,
        bad,
    }
}

/// One client per server (or just one); each request goes to the next one.
#[derive(Clone)]
struct RoundRobin {
    clients: Vec<Client>,
    next: usize,
    sent: Vec<u64>,
}

impl RoundRobin {
    fn new(clients: Vec<Client>, start: usize) -> RoundRobin {
        let n = clients.len();
        RoundRobin {
            clients,
            next: start % n,
            sent: vec![0; n],
        }
    }

    /// The client for the next request.
    fn next(&mut self) -> Client {
        let i = self.next;
        self.next = (i + 1) % self.clients.len();
        self.sent[i] += 1;
        self.clients[i].clone()
    }
}

/// What the clients expect of one job, counted from the requests the server accepted.
#[derive(Clone, Debug, Default)]
struct JobExpect {
    auto_complete: bool,
    /// The status a client set, while it stands.
    explicit: Option<Status>,
    tasks: Vec<TaskId>,
    /// Accepted task status changes, including tasks cancelled by an explicit job status.
    task_status_events: usize,
    task_heartbeats: usize,
}

#[derive(Clone, Copy, Debug)]
struct TaskExpect {
    job: JobId,
    status: Status,
    attempt: i64,
}

/// One client's (or, merged, everyone's) record of accepted writes.
#[derive(Default)]
struct Ledger {
    jobs: HashMap<JobId, JobExpect>,
    tasks: HashMap<TaskId, TaskExpect>,
}

impl Ledger {
    fn open_tasks(&self, job: JobId) -> Vec<TaskId> {
        self.jobs[&job]
            .tasks
            .iter()
            .copied()
            .filter(|t| !self.tasks[t].status.is_terminal())
            .collect()
    }

    /// Whether the job is terminal by the rules, as far as this ledger knows its tasks.
    fn job_is_terminal(&self, job: JobId) -> bool {
        let Some(j) = self.jobs.get(&job) else {
            return false;
        };
        j.explicit.is_some()
            || (j.auto_complete && !j.tasks.is_empty() && self.open_tasks(job).is_empty())
    }

    fn task_changed(&mut self, task: TaskId, to: Status) {
        let t = self.tasks.get_mut(&task).expect("known task");
        if t.status == Status::Failed && matches!(to, Status::Pending | Status::InProgress) {
            t.attempt += 1;
            // A retry reopens the job even when its status was set explicitly.
            self.jobs.get_mut(&t.job).expect("known job").explicit = None;
        }
        t.status = to;
        self.jobs
            .get_mut(&t.job)
            .expect("known job")
            .task_status_events += 1;
    }

    fn task_added(&mut self, job: JobId, task: TaskId) {
        self.tasks.insert(
            task,
            TaskExpect {
                job,
                status: Status::Pending,
                attempt: 1,
            },
        );
        self.jobs.entry(job).or_default().tasks.push(task);
    }

    /// Explicit `cancelled` or `failed`: every open task becomes `cancelled`.
    fn job_set(&mut self, job: JobId, to: Status) {
        if to != Status::Completed {
            for t in self.open_tasks(job) {
                self.task_changed(t, Status::Cancelled);
            }
        }
        self.jobs.get_mut(&job).expect("known job").explicit = Some(to);
    }

    /// Adds another client's record. Tasks are disjoint; a shared job's entry sums up.
    fn absorb(&mut self, other: Ledger) {
        self.tasks.extend(other.tasks);
        for (id, j) in other.jobs {
            match self.jobs.get_mut(&id) {
                Some(mine) => {
                    mine.tasks.extend(j.tasks);
                    mine.task_status_events += j.task_status_events;
                    mine.task_heartbeats += j.task_heartbeats;
                }
                None => {
                    self.jobs.insert(id, j);
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Step {
    To(Status),
    Beat,
}

/// A random life for a task: where it goes and through what.
fn script(rng: &mut Rng) -> VecDeque<Step> {
    use Status::*;
    use Step::*;
    let beats = |rng: &mut Rng| (0..rng.below(3)).map(|_| Beat).collect::<Vec<_>>();
    let mut s = Vec::new();
    match rng.below(12) {
        0 => s.push(To(Completed)),
        1..=3 => {
            s.push(To(InProgress));
            s.extend(beats(rng));
            s.push(To(Completed));
        }
        4 => s.extend([To(InProgress), To(Failed)]),
        5 => s.push(To(Failed)),
        6 => {
            // Failed, retried (to in_progress or back to pending), then done.
            s.extend([To(InProgress), To(Failed)]);
            if rng.chance(50) {
                s.push(To(Pending));
            }
            s.extend([To(InProgress), To(Completed)]);
        }
        7 => s.push(To(Cancelled)),
        8 => s.extend([To(InProgress), To(Cancelled)]),
        9 | 10 => {
            // Left running.
            s.push(To(InProgress));
            s.extend(beats(rng));
        }
        _ => {} // Left pending.
    }
    s.into()
}

fn new_task(task_type: &str) -> CreateTaskRequest {
    CreateTaskRequest {
        task_type: Some(task_type.into()),
        namespace: Some("com.shipyard.tasks".into()),
        ..Default::default()
    }
}

fn new_job(job_type: &str, namespace: &str) -> CreateJobRequest {
    CreateJobRequest {
        job_type: Some(job_type.into()),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

struct Worker {
    n: usize,
    servers: RoundRobin,
    rng: Rng,
    ledger: Ledger,
    requests: u64,
}

impl Worker {
    /// Counts a request and turns a failure into a message naming it.
    fn check<T>(
        &mut self,
        what: impl FnOnce() -> String,
        r: portauthority_client::Result<T>,
    ) -> Result<T, String> {
        self.requests += 1;
        r.map_err(|e| format!("client {}: {}: {e}", self.n, what()))
    }

    fn task_with_id(&mut self) -> CreateTaskRequest {
        CreateTaskRequest {
            id: Some(TaskId::from_uuid(uuid::Uuid::now_v7())),
            ..new_task("step")
        }
    }

    /// Runs until the deadline or the round limit. Stops at the first failed request.
    async fn run(&mut self, shared: &[JobId], deadline: Instant) -> Result<(), String> {
        for round in 0..MAX_ROUNDS {
            if Instant::now() >= deadline {
                break;
            }
            let shared_job = shared[(self.n + round) % shared.len()];
            self.round(shared_job).await?;
        }
        Ok(())
    }

    /// One round: a new job of this client's own plus one shared job; tasks added to both,
    /// singly and in batches, then moved along their scripts, interleaved.
    async fn round(&mut self, shared: JobId) -> Result<(), String> {
        let auto_complete = !self.rng.chance(30);
        let mut req = new_job("deploy", "com.shipyard.load");
        req.id = Some(JobId::from_uuid(uuid::Uuid::now_v7()));
        req.auto_complete = Some(auto_complete);
        let initial: Vec<CreateTaskRequest> = (0..self.rng.below(4))
            .map(|_| self.task_with_id())
            .collect();
        if !initial.is_empty() {
            req.tasks = Some(initial.clone());
        }
        let r = self.servers.next().create_job(&req).await;
        let job = self.check(|| "create job".into(), r)?;
        let own = job.id;
        self.ledger.jobs.insert(
            own,
            JobExpect {
                auto_complete,
                ..JobExpect::default()
            },
        );
        for t in &initial {
            self.ledger.task_added(own, t.id.expect("id set"));
        }

        // Add tasks to both jobs, one at a time and in batches.
        for job in [own, shared] {
            for _ in 0..self.rng.below(3) {
                self.add_one(job).await?;
            }
            if self.rng.chance(60) {
                let batch: Vec<CreateTaskRequest> = (0..2 + self.rng.below(5))
                    .map(|_| self.task_with_id())
                    .collect();
                let r = self.servers.next().add_tasks(job, batch.clone()).await;
                let added = self.check(|| format!("add {} tasks to {job}", batch.len()), r)?;
                if added.len() != batch.len() {
                    return Err(format!("batch of {} added {}", batch.len(), added.len()));
                }
                for t in &added {
                    self.ledger.task_added(job, t.id);
                }
            }
        }

        // Move every task along its script, interleaving tasks and jobs.
        let mut live: Vec<(TaskId, VecDeque<Step>)> = self
            .ledger
            .jobs
            .get(&own)
            .into_iter()
            .flat_map(|j| j.tasks.iter().copied())
            .chain(self.my_tasks_in(shared))
            .filter(|t| self.ledger.tasks[t].status == Status::Pending)
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| (t, script(&mut self.rng)))
            .collect();
        loop {
            live.retain(|(_, steps)| !steps.is_empty());
            if live.is_empty() {
                break;
            }
            // Now and then another task joins, if its job still takes tasks.
            if self.rng.chance(5) {
                let job = if self.rng.chance(50) { own } else { shared };
                if !self.ledger.job_is_terminal(job) {
                    let t = self.add_one(job).await?;
                    live.push((t, script(&mut self.rng)));
                    continue;
                }
            }
            let movable: Vec<usize> = (0..live.len())
                .filter(|&i| matches!(live[i].1.front(), Some(Step::To(_))))
                .collect();
            if movable.len() >= 2 && self.rng.chance(25) {
                let picked: Vec<usize> = movable.into_iter().take(4).collect();
                self.step_batch(&mut live, &picked).await?;
            } else {
                let i = self.rng.below(live.len() as u64) as usize;
                let (task, steps) = &mut live[i];
                let step = steps.pop_front().expect("non-empty");
                self.step(*task, step).await?;
            }
        }

        self.finish_own(own).await
    }

    fn my_tasks_in(&self, job: JobId) -> Vec<TaskId> {
        self.ledger
            .jobs
            .get(&job)
            .map(|j| j.tasks.clone())
            .unwrap_or_default()
    }

    async fn add_one(&mut self, job: JobId) -> Result<TaskId, String> {
        // Half of the single adds let the server make the id.
        let req = if self.rng.chance(50) {
            self.task_with_id()
        } else {
            new_task("step")
        };
        let r = self.servers.next().add_task(job, &req).await;
        let task = self.check(|| format!("add a task to {job}"), r)?;
        self.ledger.task_added(job, task.id);
        Ok(task.id)
    }

    async fn step(&mut self, task: TaskId, step: Step) -> Result<(), String> {
        let expect = self.ledger.tasks[&task];
        let job = expect.job;
        match step {
            Step::Beat => {
                let req = HeartbeatRequest {
                    progress: Some(Progress {
                        current: self.rng.below(10),
                        total: Some(10),
                    }),
                    message: Some("still going".into()),
                };
                let r = self.servers.next().heartbeat(job, task, &req).await;
                let got = self.check(|| format!("heartbeat {task}"), r)?;
                if got.status != expect.status {
                    return Err(format!("heartbeat changed {task} to {}", got.status));
                }
                self.ledger
                    .jobs
                    .get_mut(&job)
                    .expect("known job")
                    .task_heartbeats += 1;
            }
            Step::To(to) => {
                let req = SetTaskStatusRequest {
                    status: to,
                    reason: self.rng.chance(30).then(|| "load test".into()),
                    error: (to == Status::Failed).then(|| "boom".into()),
                    progress: (to == Status::InProgress).then_some(Progress {
                        current: 0,
                        total: Some(10),
                    }),
                };
                let r = self.servers.next().set_task_status(job, task, &req).await;
                let got = self.check(|| format!("set {task} {} -> {to}", expect.status), r)?;
                self.ledger.task_changed(task, to);
                let now = self.ledger.tasks[&task];
                if got.status != to || got.attempt != now.attempt {
                    return Err(format!(
                        "task {task} answered {} attempt {}, expected {to} attempt {}",
                        got.status, got.attempt, now.attempt
                    ));
                }
            }
        }
        Ok(())
    }

    /// Sends the next status step of several tasks as one `POST /v1/tasks/status`.
    async fn step_batch(
        &mut self,
        live: &mut [(TaskId, VecDeque<Step>)],
        picked: &[usize],
    ) -> Result<(), String> {
        let mut moves = Vec::new();
        for &i in picked {
            let (task, steps) = &mut live[i];
            let Some(Step::To(to)) = steps.pop_front() else {
                unreachable!("only status steps are picked")
            };
            moves.push((*task, to));
        }
        let updates = moves
            .iter()
            .map(|(task, to)| TaskStatusUpdateItem {
                job_id: self.ledger.tasks[task].job.to_string(),
                task_id: task.to_string(),
                status: to.as_str().into(),
                reason: None,
                error: None,
                progress: None,
            })
            .collect();
        let r = self.servers.next().update_tasks(updates).await;
        let res = self.check(|| format!("batch status update of {moves:?}"), r)?;
        if res.results.len() != moves.len() {
            return Err(format!(
                "batch of {} answered {} results",
                moves.len(),
                res.results.len()
            ));
        }
        for ((task, to), item) in moves.iter().zip(&res.results) {
            if item.status != 200 {
                return Err(format!(
                    "client {}: batch item {task} -> {to} answered {}: {:?}",
                    self.n, item.status, item.error
                ));
            }
            self.ledger.task_changed(*task, *to);
        }
        Ok(())
    }

    /// Ends a round on the client's own job: sometimes an explicit status, sometimes a
    /// retry that reopens an explicitly failed job.
    async fn finish_own(&mut self, job: JobId) -> Result<(), String> {
        if self.ledger.job_is_terminal(job) {
            return Ok(());
        }
        let open = self.ledger.open_tasks(job).len();
        let to = if self.rng.chance(25) {
            Some(if self.rng.chance(50) {
                Status::Cancelled
            } else {
                Status::Failed
            })
        } else if open == 0 && !self.ledger.jobs[&job].auto_complete && self.rng.chance(60) {
            Some(Status::Completed)
        } else {
            None
        };
        let Some(to) = to else { return Ok(()) };
        let r = self
            .servers
            .next()
            .set_job_status(job, to, Some("load test ends it"))
            .await;
        let got = self.check(|| format!("set job {job} {to}"), r)?;
        self.ledger.job_set(job, to);
        if got.status != to {
            return Err(format!("job {job} answered {}, expected {to}", got.status));
        }
        // Retry a failed task: the job reopens, then let the task finish.
        let failed = self.ledger.jobs[&job]
            .tasks
            .iter()
            .copied()
            .find(|t| self.ledger.tasks[t].status == Status::Failed);
        if let Some(task) = failed
            && self.rng.chance(50)
        {
            self.step(task, Step::To(Status::InProgress)).await?;
            self.step(task, Step::To(Status::Completed)).await?;
        }
        Ok(())
    }
}

async fn whole_history(
    client: &Client,
    job: JobId,
) -> portauthority_client::Result<Vec<HistoryEvent>> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = client.job_history(job, after, 1000).await?;
        events.extend(page.events);
        match page.next_after {
            Some(n) => after = n,
            None => return Ok(events),
        }
    }
}

/// Checks one job against the merged ledger, reading it through `client` (whichever
/// server that is); returns what disagrees.
async fn verify_job(client: Client, ledger: &Ledger, id: JobId) -> Vec<String> {
    let mut bad = Vec::new();
    let expect = &ledger.jobs[&id];
    let (job, tasks, history) = match (
        client.get_job(id).await,
        client.all_tasks(id).await,
        whole_history(&client, id).await,
    ) {
        (Ok(j), Ok(t), Ok(h)) => (j, t, h),
        (j, t, h) => {
            return vec![format!(
                "job {id}: reading it failed: {:?} {:?} {:?}",
                j.err(),
                t.err(),
                h.err()
            )];
        }
    };

    if tasks.len() != expect.tasks.len() {
        bad.push(format!(
            "job {id}: {} tasks stored, {} added",
            tasks.len(),
            expect.tasks.len()
        ));
    }
    for t in &tasks {
        match ledger.tasks.get(&t.id) {
            Some(e) if e.job == id && e.status == t.status && e.attempt == t.attempt => {}
            e => bad.push(format!(
                "job {id}: task {} is {} attempt {}, expected {e:?}",
                t.id, t.status, t.attempt
            )),
        }
    }

    let recount = Counters::recount(tasks.iter().map(|t| t.status));
    if job.tasks != recount {
        bad.push(format!(
            "job {id}: counters {:?}, recount {recount:?}",
            job.tasks
        ));
    }
    if !job.tasks.is_consistent() {
        bad.push(format!("job {id}: inconsistent counters {:?}", job.tasks));
    }
    if job.auto_complete != expect.auto_complete {
        bad.push(format!("job {id}: auto_complete {}", job.auto_complete));
    }
    let want = expect
        .explicit
        .unwrap_or_else(|| job.tasks.derived_status(job.auto_complete));
    if job.status != want {
        bad.push(format!(
            "job {id}: status {}, expected {want} (explicit {:?}, counters {:?})",
            job.status, expect.explicit, job.tasks
        ));
    }
    if job.status.is_terminal() != job.end_time.is_some() {
        bad.push(format!(
            "job {id}: status {} with end_time {:?}",
            job.status, job.end_time
        ));
    }

    let count = |kind: EventKind, of_task: bool| {
        history
            .iter()
            .filter(|e| e.kind == kind && e.task_id.is_some() == of_task)
            .count()
    };
    let seen = (
        count(EventKind::Created, false),
        count(EventKind::TaskAdded, true),
        count(EventKind::StatusChanged, true),
        count(EventKind::Heartbeat, true),
    );
    let wanted = (
        1,
        expect.tasks.len(),
        expect.task_status_events,
        expect.task_heartbeats,
    );
    if seen != wanted {
        bad.push(format!(
            "job {id}: history (created, task_added, task status_changed, heartbeat) = \
             {seen:?}, expected {wanted:?}"
        ));
    }
    if !history.windows(2).all(|w| w[0].seq < w[1].seq) {
        bad.push(format!("job {id}: history not in increasing seq order"));
    }
    // The job's own status events chain up from `pending` to the status it has now: no
    // change was lost or recorded twice between the processes.
    let mut at = Status::Pending;
    for e in history
        .iter()
        .filter(|e| e.kind == EventKind::StatusChanged && e.task_id.is_none())
    {
        if e.from != Some(at) || e.to.is_none() || e.to == Some(at) {
            bad.push(format!(
                "job {id}: job status event {} says {:?} -> {:?} while the job was {at}",
                e.seq, e.from, e.to
            ));
            break;
        }
        at = e.to.expect("checked above");
    }
    if at != job.status {
        bad.push(format!(
            "job {id}: status {}, but its status events end at {at}",
            job.status
        ));
    }
    bad
}
