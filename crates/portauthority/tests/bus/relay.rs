//! Events out: exactly once, in per-job order, across a worker's crash, a relay outage
//! longer than the stream's duplicate window, and two workers sharing one PostgreSQL.

use crate::harness::*;
use portauthority_testkit::server::{Process, Server};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The events stream's messages as (job, job_seq) in stream order, and the store's
/// published events (as the HTTP API shows them) for `jobs`.
async fn events_by_job(bus: &Bus) -> Vec<(String, i64)> {
    bus.read_all("EVENTS")
        .await
        .iter()
        .map(|m| {
            let id = header(m, "Nats-Msg-Id").expect("a message id");
            let (job, seq) = id.rsplit_once('.').expect("<job>.<job_seq>");
            (job.to_owned(), seq.parse().expect("job_seq"))
        })
        .collect()
}

/// The published kinds' events of each job, by the HTTP API.
async fn expected_events(
    http: &reqwest::Client,
    base: &str,
    jobs: &[String],
) -> BTreeSet<(String, i64)> {
    let mut out = BTreeSet::new();
    for job in jobs {
        let state = job_state(http, base, job).await;
        for e in state["history"].as_array().unwrap() {
            let kind = e[0].as_str().unwrap();
            if matches!(kind, "created" | "task_added" | "status_changed") {
                out.insert((job.clone(), e[4].as_i64().unwrap()));
            }
        }
    }
    out
}

/// Each event once, each job's in order, and exactly the expected ones. Waits for the
/// stream to hold them all.
async fn assert_exactly_once_in_order(
    bus: &Bus,
    expected: &BTreeSet<(String, i64)>,
    within: Duration,
) {
    let until = Instant::now() + within;
    let mut got = events_by_job(bus).await;
    while got.len() < expected.len() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        got = events_by_job(bus).await;
    }
    let unique: BTreeSet<(String, i64)> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "an event was published twice");
    assert_eq!(&unique, expected, "every outbox event is on the stream");
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    for (job, seq) in &got {
        let before = last.insert(job, *seq).unwrap_or(0);
        assert!(*seq > before, "job {job}: event {seq} after {before}");
    }
}

fn worker(bus: &Bus, database_url: &str, dir: &std::path::Path, name: &str) -> Process {
    let mut args = vec![
        "worker".to_owned(),
        "--database-url".into(),
        database_url.into(),
    ];
    args.extend(bus.flags());
    args.extend(["--relay-lease".into(), "2s".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Process::spawn(crate::portauthority(), &args, dir, name)
}

/// A worker SIGKILLed while it applies a stream of commands, down for longer than the
/// duplicate window, then started again: the state is that of the same commands over
/// HTTP, and every event is on the stream once, in per-job order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_stream_loses_nothing_and_publishes_nothing_twice() {
    let Some(bus) = Bus::connect("kill").await else {
        return;
    };
    bus.events_stream_with_window(Duration::from_secs(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bus.db").display());
    let twin_url = format!("sqlite://{}", dir.path().join("twin.db").display());
    let twin = Server::start(crate::portauthority(), &twin_url, dir.path(), "twin", None).await;

    let mut first = worker(&bus, &url, dir.path(), "worker-1");
    bus.wait_for_stream("COMMANDS", Duration::from_secs(10))
        .await;
    let commands = workload(60, 24, "com.example.kill");
    let all: Vec<&Cmd> = commands.iter().collect();
    bus.publish(&all).await;
    apply_over_http(&twin.http(), &twin.base, &commands).await;
    // Kill it once it is well into the stream.
    let total = commands.len() as u64;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let left = bus.pending("COMMANDS").await;
        if left < total * 2 / 3 || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    // Longer than the duplicate window and the relay lease.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut second = worker(&bus, &url, dir.path(), "worker-2");
    bus.wait_until_consumed(Duration::from_secs(120)).await;

    // Read the state back through a server without worker loops on the same file, once
    // the worker has stopped.
    let jobs = jobs_of(&commands);
    let expected = expected_events(&twin.http(), &twin.base, &jobs).await;
    assert_exactly_once_in_order(&bus, &expected, Duration::from_secs(60)).await;
    second.kill();
    let server = Server::start_with(
        crate::portauthority(),
        &url,
        dir.path(),
        "reader",
        None,
        &["--no-worker"],
    )
    .await;
    for job in &jobs {
        let got = job_state(&server.http(), &server.base, job).await;
        let want = job_state(&twin.http(), &twin.base, job).await;
        assert_eq!(got, want, "job {job}\n{}", second.log_text());
    }
    assert!(bus.read_all("DEADLETTER").await.is_empty());
    drop((server, twin, first));
    bus.cleanup().await;
}

/// Two worker processes on one PostgreSQL relay 5,050 events over 50 jobs: each once, each
/// job's in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_on_one_postgres_publish_each_event_once_in_job_order() {
    let Some(bus) = Bus::connect("two").await else {
        return;
    };
    let Some(admin) = portauthority_testkit::skip::configured("PORTAUTHORITY_TEST_DATABASE_URL")
    else {
        return;
    };
    let url = portauthority_testkit::postgres::scratch_database(&admin, "pa_bus")
        .await
        .expect("scratch database");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        crate::portauthority(),
        &url,
        dir.path(),
        "api",
        None,
        &["--no-worker"],
    )
    .await;
    let _a = worker(&bus, &url, dir.path(), "worker-a");
    let _b = worker(&bus, &url, dir.path(), "worker-b");
    let http = server.http();
    let mut jobs = Vec::new();
    futures::future::join_all((0..50).map(|_| {
        let http = http.clone();
        let base = server.base.clone();
        async move {
            let (id, tasks) = create_job(&http, &base, "com.example.two", 49).await;
            for t in tasks {
                let r = http
                    .put(format!("{base}/v1/jobs/{id}/tasks/{t}/status"))
                    .json(&json!({"status": "completed"}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
            id
        }
    }))
    .await
    .into_iter()
    .for_each(|id| jobs.push(id));
    let expected = expected_events(&http, &server.base, &jobs).await;
    assert_eq!(expected.len(), 50 * (1 + 49 + 49 + 2));
    assert_exactly_once_in_order(&bus, &expected, Duration::from_secs(120)).await;
    drop((server, _a, _b));
    bus.cleanup().await;
}
