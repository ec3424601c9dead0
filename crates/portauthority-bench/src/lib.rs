//! A load generator for the HTTP API: drives a running server with N concurrent
//! connections, phase by phase, and reports throughput and latency percentiles.
//!
//! It measures the service as a client sees it, over real HTTP on loopback. It never
//! asserts anything about the service: numbers go to a table and, optionally, to JSON. It
//! does refuse to pass off a phase that measured nothing (no requests, or only failed ones)
//! as a result: that is an error, so the command exits non-zero.
//!
//! Any selection and order of phases works: a phase that needs jobs or tasks takes those
//! the phases before it made, and creates its own, untimed, when there are none.

pub mod bus;

use anyhow::Context;
use portauthority_client::{Client, JobQuery, PageQuery};
use portauthority_core::api::{CreateJobRequest, CreateTaskRequest, TaskStatusUpdateItem};
use portauthority_core::{JobId, Status, TaskId};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every phase, in the order a full run takes them.
pub const PHASES: [&str; 9] = [
    "create",
    "add",
    "add_batch",
    "lifecycle",
    "lifecycle_batch",
    "get",
    "list",
    "deep",
    "meta",
];

/// What to run.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Concurrent connections (client tasks).
    #[arg(short = 'c', long, default_value_t = 16)]
    pub concurrency: usize,
    /// How long each timed phase runs, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Phases, comma-separated: create, add, add_batch, lifecycle, lifecycle_batch, get,
    /// list, deep, meta.
    #[arg(
        long,
        default_value = "create,add,add_batch,lifecycle,lifecycle_batch,get,list,deep,meta"
    )]
    pub phases: String,
    /// Items per batch request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Tasks a lifecycle phase creates for itself (untimed, in batches of --batch) when the
    /// phases before it left none to move.
    #[arg(long, default_value_t = 100_000)]
    pub prepare_tasks: usize,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// One phase's numbers.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseResult {
    pub phase: String,
    pub concurrency: usize,
    pub requests: usize,
    /// Items (jobs, tasks, updates) the requests carried; equals `requests` when unbatched.
    pub items: usize,
    pub errors: usize,
    pub seconds: f64,
    pub requests_per_sec: f64,
    pub items_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The first error seen, to tell what went wrong.
    pub first_error: Option<String>,
}

/// A unit of work: returns how many items it carried.
type Op = std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize, String>> + Send>>;

/// Runs `make_op(worker, i)` from `concurrency` workers until `deadline` or until it
/// returns `None` (nothing left to do).
async fn drive(
    phase: &str,
    concurrency: usize,
    duration: Duration,
    make_op: Arc<dyn Fn(usize, usize) -> Option<Op> + Send + Sync>,
) -> PhaseResult {
    let start = Instant::now();
    let deadline = start + duration;
    let mut handles = Vec::new();
    for w in 0..concurrency {
        let make_op = make_op.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut items, mut errors, mut first_error) = (0usize, 0usize, None);
            let mut i = 0;
            while Instant::now() < deadline {
                let Some(op) = make_op(w, i) else { break };
                i += 1;
                let t = Instant::now();
                match op.await {
                    Ok(n) => items += n,
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
                lat.push(t.elapsed().as_micros() as u64);
            }
            (lat, items, errors, first_error)
        }));
    }
    let mut lat = Vec::new();
    let (mut items, mut errors, mut first_error) = (0, 0, None);
    for h in handles {
        let (l, n, e, f) = h.await.expect("worker");
        lat.extend(l);
        items += n;
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| percentile_ms(&lat, p);
    PhaseResult {
        phase: phase.to_owned(),
        concurrency,
        requests: lat.len(),
        items,
        errors,
        seconds,
        requests_per_sec: lat.len() as f64 / seconds,
        items_per_sec: items as f64 / seconds,
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: lat.last().map(|m| *m as f64 / 1000.0).unwrap_or(0.0),
        first_error,
    }
}

/// The `p` quantile of sorted latencies in microseconds, in milliseconds (0 when none).
fn percentile_ms(sorted_micros: &[u64], p: f64) -> f64 {
    if sorted_micros.is_empty() {
        return 0.0;
    }
    let idx = ((sorted_micros.len() as f64 * p).ceil() as usize).clamp(1, sorted_micros.len()) - 1;
    sorted_micros[idx] as f64 / 1000.0
}

fn job_request(i: usize) -> CreateJobRequest {
    CreateJobRequest {
        job_type: Some(format!("bench-{}", i % 7)),
        namespace: Some(format!("com.bench.ns{}", i % 5)),
        meta: Some(serde_json::json!({"bench_group": (i % 100) as u64, "kind": "bench"})),
        // Jobs stay open when their tasks finish, so any phase can add tasks to them.
        auto_complete: Some(false),
        ..Default::default()
    }
}

fn task_request() -> CreateTaskRequest {
    CreateTaskRequest {
        task_type: Some("step".into()),
        namespace: Some("com.bench.tasks".into()),
        ..Default::default()
    }
}

fn item(job: JobId, task: TaskId, status: Status) -> TaskStatusUpdateItem {
    TaskStatusUpdateItem {
        job_id: job.to_string(),
        task_id: task.to_string(),
        status: status.as_str().into(),
        reason: None,
        error: None,
        progress: None,
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A shared queue of work items, taken front to back by all workers.
struct Queue<T> {
    items: Vec<T>,
    next: AtomicUsize,
}

impl<T: Clone> Queue<T> {
    fn new(items: Vec<T>) -> Arc<Queue<T>> {
        Arc::new(Queue {
            items,
            next: AtomicUsize::new(0),
        })
    }

    fn take(&self, n: usize) -> Option<Vec<T>> {
        let start = self.next.fetch_add(n, Ordering::Relaxed);
        if start >= self.items.len() {
            return None;
        }
        Some(self.items[start..(start + n).min(self.items.len())].to_vec())
    }
}

/// What each worker of a lifecycle phase holds between the two requests for an item: the
/// first sets it in_progress, the second finishes it; then the worker takes the next.
struct InHand<T> {
    /// Per worker: the item in hand, and how many items it has finished.
    held: std::sync::Mutex<Vec<(Option<T>, usize)>>,
}

impl<T: Clone> InHand<T> {
    fn new(workers: usize) -> InHand<T> {
        InHand {
            held: std::sync::Mutex::new(vec![(None, 0); workers]),
        }
    }

    /// The item worker `w` sends next (taken with `take` when it holds none), and, when this
    /// request finishes it, the worker's count of finished items including this one.
    fn next(&self, w: usize, take: impl FnOnce() -> Option<T>) -> Option<(T, Option<usize>)> {
        let mut held = self.held.lock().unwrap();
        let (slot, finished) = &mut held[w];
        match slot.take() {
            Some(item) => {
                *finished += 1;
                Some((item, Some(*finished)))
            }
            None => {
                let item = take()?;
                *slot = Some(item.clone());
                Some((item, None))
            }
        }
    }
}

/// The status a lifecycle request sets: in_progress first; then completed, or failed for
/// one finished item in ten (`finished` numbers them).
fn end_status(finished: Option<usize>) -> Status {
    match finished {
        None => Status::InProgress,
        Some(n) if n % 10 == 0 => Status::Failed,
        Some(_) => Status::Completed,
    }
}

/// The phases `list` names, in its order; an unknown or empty selection is refused before
/// anything runs.
fn parse_phases(list: &str) -> anyhow::Result<Vec<&str>> {
    let phases: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let known = PHASES.join(",");
    anyhow::ensure!(
        !phases.is_empty(),
        "no phases selected: choose from {known}"
    );
    if let Some(bad) = phases.iter().find(|p| !PHASES.contains(p)) {
        anyhow::bail!("unknown phase {bad:?}: choose from {known}");
    }
    Ok(phases)
}

/// Fails a phase that measured nothing, so that its row of zeros cannot pass for a result.
fn measured(r: &PhaseResult) -> anyhow::Result<()> {
    anyhow::ensure!(
        r.requests > 0,
        "phase {} made no requests in {:.3}s, so it measured nothing",
        r.phase,
        r.seconds
    );
    if r.errors == r.requests {
        anyhow::bail!(
            "phase {}: all {} requests failed, so it measured nothing; first error: {}",
            r.phase,
            r.requests,
            r.first_error.as_deref().unwrap_or("(none recorded)")
        );
    }
    Ok(())
}

/// Creates jobs, outside any measurement, until `jobs` holds at least `n`.
async fn ensure_jobs(client: &Client, jobs: &Mutex<Vec<JobId>>, n: usize) -> anyhow::Result<()> {
    let have = jobs.lock().unwrap().len();
    for i in have..n {
        let j = client
            .create_job(&job_request(i))
            .await
            .context("seeding a job")?;
        jobs.lock().unwrap().push(j.id);
    }
    Ok(())
}

/// The tasks a lifecycle phase moves: all those the phases before it made (it takes them,
/// so the next lifecycle phase does not move them again), or, when there are none, `n`
/// new ones created in batches of `batch` over `jobs`, `c` requests at a time, outside any
/// measurement.
async fn tasks_to_move(
    client: &Client,
    jobs: &Mutex<Vec<JobId>>,
    tasks: &Mutex<Vec<(JobId, TaskId)>>,
    n: usize,
    batch: usize,
    c: usize,
) -> anyhow::Result<Vec<(JobId, TaskId)>> {
    let made = std::mem::take(&mut *tasks.lock().unwrap());
    if !made.is_empty() {
        return Ok(made);
    }
    anyhow::ensure!(
        n > 0,
        "no tasks to move: the phases before it made none and --prepare-tasks is 0"
    );
    ensure_jobs(client, jobs, c * 4).await?;
    let jobs: Arc<[JobId]> = jobs.lock().unwrap().clone().into();
    let batches = n.div_ceil(batch);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..c.min(batches) {
        let (client, jobs, next) = (client.clone(), jobs.clone(), next.clone());
        workers.spawn(async move {
            let mut made = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= batches {
                    return anyhow::Ok(made);
                }
                let job = jobs[k % jobs.len()];
                let size = batch.min(n - k * batch);
                let created = client
                    .add_tasks(job, (0..size).map(|_| task_request()).collect())
                    .await
                    .context("preparing tasks")?;
                made.extend(created.into_iter().map(|t| (job, t.id)));
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(done) = workers.join_next().await {
        all.extend(done.context("a preparing worker panicked")??);
    }
    Ok(all)
}

/// Runs the selected phases against the server at `client` and prints a table.
///
/// Fails, before anything runs, on an unknown phase or unusable arguments, and, after its
/// row is printed, on a phase that measured nothing (see [`measured`]).
pub async fn run(client: Client, args: &BenchArgs) -> anyhow::Result<Vec<PhaseResult>> {
    let phases = parse_phases(&args.phases)?;
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(args.seconds > 0.0, "--seconds must be more than 0");
    let dur = Duration::try_from_secs_f64(args.seconds)
        .with_context(|| format!("--seconds {}", args.seconds))?;
    let c = args.concurrency;
    let batch = args.batch.max(1);
    let mut results = Vec::new();
    let jobs = Arc::new(Mutex::new(Vec::<JobId>::new()));
    let tasks = Arc::new(Mutex::new(Vec::<(JobId, TaskId)>::new()));

    for phase in phases {
        let result = match phase {
            "create" => {
                let (client, jobs) = (client.clone(), jobs.clone());
                drive(
                    phase,
                    c,
                    dur,
                    Arc::new(move |w, i| {
                        let (client, jobs) = (client.clone(), jobs.clone());
                        Some(Box::pin(async move {
                            let j = client
                                .create_job(&job_request(w * 1_000_003 + i))
                                .await
                                .map_err(err)?;
                            jobs.lock().unwrap().push(j.id);
                            Ok(1)
                        }))
                    }),
                )
                .await
            }
            "add" | "add_batch" => {
                ensure_jobs(&client, &jobs, c * 4).await?;
                let snapshot = jobs.lock().unwrap().clone();
                let (client, tasks) = (client.clone(), tasks.clone());
                let per = if phase == "add" { 1 } else { batch };
                drive(
                    phase,
                    c,
                    dur,
                    Arc::new(move |w, i| {
                        let (client, tasks) = (client.clone(), tasks.clone());
                        let job = snapshot[(w * 7919 + i) % snapshot.len()];
                        Some(Box::pin(async move {
                            let created = if per == 1 {
                                vec![client.add_task(job, &task_request()).await.map_err(err)?]
                            } else {
                                client
                                    .add_tasks(job, (0..per).map(|_| task_request()).collect())
                                    .await
                                    .map_err(err)?
                            };
                            let n = created.len();
                            tasks
                                .lock()
                                .unwrap()
                                .extend(created.into_iter().map(|t| (job, t.id)));
                            Ok(n)
                        }))
                    }),
                )
                .await
            }
            "lifecycle" => {
                let queue = Queue::new(
                    tasks_to_move(&client, &jobs, &tasks, args.prepare_tasks, batch, c)
                        .await
                        .with_context(|| format!("phase {phase}"))?,
                );
                // One request per status change: each worker takes a task, sets it
                // in_progress, then completed (one in ten failed), then takes the next.
                let hand = InHand::new(c);
                let client = client.clone();
                drive(
                    phase,
                    c,
                    dur,
                    Arc::new(move |w, _| {
                        let client = client.clone();
                        let ((job, task), finished) = hand.next(w, || queue.take(1)?.pop())?;
                        let status = end_status(finished);
                        Some(Box::pin(async move {
                            client.set_task(job, task, status).await.map_err(err)?;
                            Ok(1)
                        }))
                    }),
                )
                .await
            }
            "lifecycle_batch" => {
                let queue = Queue::new(
                    tasks_to_move(&client, &jobs, &tasks, args.prepare_tasks, batch, c)
                        .await
                        .with_context(|| format!("phase {phase}"))?,
                );
                // One request per batch: a worker takes `batch` tasks, sets them all
                // in_progress in one request, then finishes them in the next (one in ten
                // failed).
                let hand = InHand::new(c);
                let client = client.clone();
                drive(
                    phase,
                    c,
                    dur,
                    Arc::new(move |w, _| {
                        let client = client.clone();
                        let (chunk, finished) = hand.next(w, || queue.take(batch))?;
                        Some(Box::pin(async move {
                            let items = chunk
                                .iter()
                                .enumerate()
                                // When finishing: one item in ten of the chunk fails.
                                .map(|(k, (j, t))| {
                                    item(*j, *t, end_status(finished.map(|_| k + 1)))
                                })
                                .collect();
                            let res = client.update_tasks(items).await.map_err(err)?;
                            if let Some(bad) = res.results.iter().find(|r| r.status != 200) {
                                return Err(format!("item failed with {}", bad.status));
                            }
                            Ok(res.results.len())
                        }))
                    }),
                )
                .await
            }
            "get" => {
                ensure_jobs(&client, &jobs, c * 4).await?;
                let snapshot = jobs.lock().unwrap().clone();
                let client = client.clone();
                drive(
                    phase,
                    c,
                    dur,
                    Arc::new(move |w, i| {
                        let client = client.clone();
                        let job = snapshot[(w * 7919 + i * 31) % snapshot.len()];
                        Some(Box::pin(async move {
                            client.get_job(job).await.map_err(err)?;
                            Ok(1)
                        }))
                    }),
                )
                .await
            }
            "list" | "deep" | "meta" => {
                ensure_jobs(&client, &jobs, c * 4).await?;
                let total = client
                    .list_jobs(&JobQuery {
                        paging: PageQuery {
                            size: Some(1),
                            ..PageQuery::default()
                        },
                        ..JobQuery::default()
                    })
                    .await?
                    .info
                    .total_items;
                let client = client.clone();
                let kind = phase.to_owned();
                drive(
                    phase,
                    c,
                    dur,
                    Arc::new(move |_, i| {
                        let client = client.clone();
                        let query = match kind.as_str() {
                            "list" => JobQuery::default(),
                            "deep" => JobQuery {
                                paging: PageQuery {
                                    page: Some((total / 25 / 2).max(1)),
                                    ..PageQuery::default()
                                },
                                ..JobQuery::default()
                            },
                            _ => JobQuery {
                                meta: vec![("bench_group".into(), (i % 100).to_string())],
                                ..JobQuery::default()
                            },
                        };
                        Some(Box::pin(async move {
                            client.list_jobs(&query).await.map_err(err)?;
                            Ok(1)
                        }))
                    }),
                )
                .await
            }
            other => unreachable!("parse_phases let through {other:?}"),
        };
        print_row(&result, results.is_empty());
        if result.seconds < dur.as_secs_f64() {
            // Only a phase with a fixed supply of work stops before its deadline.
            println!(
                "    ran out of work after {:.2}s of {:.2}s: give it more (--prepare-tasks, or longer add phases)",
                result.seconds,
                dur.as_secs_f64()
            );
        }
        measured(&result)?;
        results.push(result);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(results)
}

fn print_row(r: &PhaseResult, header: bool) {
    if header {
        println!(
            "{:<16} {:>4} {:>9} {:>11} {:>11} {:>8} {:>8} {:>8} {:>8} {:>7}",
            "phase",
            "conc",
            "requests",
            "req/s",
            "items/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "errors"
        );
    }
    println!(
        "{:<16} {:>4} {:>9} {:>11.0} {:>11.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}",
        r.phase,
        r.concurrency,
        r.requests,
        r.requests_per_sec,
        r.items_per_sec,
        r.p50_ms,
        r.p90_ms,
        r.p99_ms,
        r.max_ms,
        r.errors
    );
    if let Some(e) = &r.first_error {
        println!("    first error: {e}");
    }
}
