//! The bus benchmark (`portauthority bench --bus`): task status commands published to
//! JetStream as fast as the stream takes them, and the events they cause read back from
//! the bus. Reports commands applied per second (from the first publish to the last event
//! out) and the end-to-end latency of each command (its publish to its event out).
//!
//! The server under test must run with `--nats-url` (and the same `--bus-prefix`).

use anyhow::Context;
use futures::StreamExt;
use portauthority_client::Client;
use portauthority_contracts::{CommandType, command_message, decode_event};
use portauthority_core::{JobId, TaskId};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug, clap::Args)]
pub struct BusArgs {
    /// The NATS server the server under test consumes from.
    #[arg(
        long,
        env = "PORTAUTHORITY_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// The server's --bus-prefix.
    #[arg(long, default_value = "portauthority")]
    pub bus_prefix: String,
    /// Tasks to move (two commands each: in_progress, then completed).
    #[arg(long, default_value_t = 10_000)]
    pub bus_tasks: usize,
    /// Jobs the tasks are spread over.
    #[arg(long, default_value_t = 100)]
    pub bus_jobs: usize,
    /// Commands published per second; 0: as fast as the stream takes them (the latency is
    /// then mostly the backlog's). A rate below the service's shows its latency unloaded.
    #[arg(long, default_value_t = 0)]
    pub bus_rate: u64,
}

/// The bus run's numbers.
#[derive(Clone, Debug, Serialize)]
pub struct BusResult {
    pub commands: usize,
    /// Events seen for them (equals `commands` when nothing was lost).
    pub events: usize,
    pub seconds: f64,
    pub commands_per_sec: f64,
    pub publish_seconds: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Prepares the jobs and tasks over HTTP (untimed), then measures.
pub async fn run(client: Client, args: &BusArgs) -> anyhow::Result<BusResult> {
    anyhow::ensure!(
        args.bus_jobs > 0 && args.bus_tasks > 0,
        "--bus-jobs and --bus-tasks must be at least 1"
    );
    let nats = async_nats::connect(args.nats_url.as_str())
        .await
        .with_context(|| format!("connecting to NATS at {}", args.nats_url))?;
    let js = async_nats::jetstream::new(nats.clone());

    let per_job = args.bus_tasks.div_ceil(args.bus_jobs);
    let mut tasks: Vec<(JobId, TaskId)> = Vec::with_capacity(args.bus_tasks);
    for j in 0..args.bus_jobs {
        let job = client.create_job(&super::job_request(j)).await?;
        let n = per_job.min(args.bus_tasks - tasks.len());
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let reqs = chunk.iter().map(|_| super::task_request()).collect();
            for t in client.add_tasks(job.id, reqs).await? {
                tasks.push((job.id, t.id));
            }
        }
    }
    eprintln!("prepared {} tasks over {} jobs", tasks.len(), args.bus_jobs);

    // Events out, matched to their commands by (task, status).
    let sent: Arc<Mutex<HashMap<(TaskId, &'static str), Instant>>> =
        Arc::new(Mutex::new(HashMap::with_capacity(tasks.len() * 2)));
    let expected = tasks.len() * 2;
    let mut events = nats
        .subscribe(format!("{}.events.>", args.bus_prefix))
        .await
        .context("subscribing to events")?;
    let collector = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(expected);
            let mut last = Instant::now();
            while latencies.len() < expected {
                let Ok(Some(m)) =
                    tokio::time::timeout(Duration::from_secs(30), events.next()).await
                else {
                    break;
                };
                let Ok(e) = decode_event(&m.payload) else {
                    continue;
                };
                let (Some(task), Some(to)) = (e.data.task, e.data.to) else {
                    continue;
                };
                let at = Instant::now();
                let key = (
                    task.id,
                    if to.is_terminal() {
                        "completed"
                    } else {
                        "in_progress"
                    },
                );
                if let Some(t0) = sent.lock().unwrap().remove(&key) {
                    latencies.push(at.duration_since(t0).as_micros() as u64);
                    last = at;
                }
            }
            (latencies, last)
        })
    };

    let start = Instant::now();
    let mut acks = Vec::with_capacity(256);
    let mut published = 0u64;
    for status in ["in_progress", "completed"] {
        for (job, task) in &tasks {
            if args.bus_rate > 0 {
                let due = start + Duration::from_secs_f64(published as f64 / args.bus_rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            published += 1;
            let payload = command_message(
                CommandType::TaskStatus,
                &uuid::Uuid::new_v4().to_string(),
                "/bench",
                serde_json::json!({"job_id": job, "task_id": task, "status": status}),
            );
            let subject =
                CommandType::TaskStatus
                    .subject()
                    .replacen("portauthority", &args.bus_prefix, 1);
            sent.lock().unwrap().insert((*task, status), Instant::now());
            acks.push(js.publish(subject, payload.into()).await?);
            if acks.len() >= 256 {
                for a in acks.drain(..) {
                    a.await.context("publishing a command")?;
                }
            }
        }
    }
    for a in acks {
        a.await.context("publishing a command")?;
    }
    let publish_seconds = start.elapsed().as_secs_f64();
    let (mut latencies, last) = collector.await?;
    let seconds = last.duration_since(start).as_secs_f64();
    latencies.sort_unstable();
    let result = BusResult {
        commands: expected,
        events: latencies.len(),
        seconds,
        commands_per_sec: latencies.len() as f64 / seconds,
        publish_seconds,
        p50_ms: super::percentile_ms(&latencies, 0.50),
        p90_ms: super::percentile_ms(&latencies, 0.90),
        p99_ms: super::percentile_ms(&latencies, 0.99),
        max_ms: latencies.last().map(|m| *m as f64 / 1000.0).unwrap_or(0.0),
    };
    println!(
        "bus: {} commands, {} events out in {:.2}s: {:.0} commands/s; publish to event p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (published in {:.2}s)",
        result.commands,
        result.events,
        result.seconds,
        result.commands_per_sec,
        result.p50_ms,
        result.p90_ms,
        result.p99_ms,
        result.max_ms,
        result.publish_seconds
    );
    anyhow::ensure!(
        result.events == result.commands,
        "{} of {} commands never showed as events (is the server running with --nats-url and --bus-prefix {}?)",
        result.commands - result.events,
        result.commands,
        args.bus_prefix
    );
    Ok(result)
}
