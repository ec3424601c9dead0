//! Runs phases of the load generator against the real server, in process, on port 0 with
//! a fresh SQLite file: every selection of phases measures real requests or fails.

use portauthority_bench::{BenchArgs, PHASES, PhaseResult};
use portauthority_client::Client;
use portauthority_server::{App, Config};
use tokio::sync::oneshot;

/// A server on its own SQLite file, stopped when dropped.
struct Server {
    client: Client,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}", dir.path().join("bench.db").display()),
        ..Config::default()
    };
    let app = App::build(config).await.expect("app builds");
    let client = Client::new(format!("http://{}", app.local_addr()));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    Server {
        client,
        _dir: dir,
        _stop: stop,
    }
}

/// Small counts and short phases, to keep a test to a second or so.
fn args(phases: &str) -> BenchArgs {
    BenchArgs {
        concurrency: 2,
        seconds: 0.2,
        phases: phases.into(),
        batch: 10,
        prepare_tasks: 200,
        json: None,
    }
}

async fn run(phases: &str) -> anyhow::Result<Vec<PhaseResult>> {
    run_with(args(phases)).await
}

async fn run_with(args: BenchArgs) -> anyhow::Result<Vec<PhaseResult>> {
    let server = server().await;
    portauthority_bench::run(server.client.clone(), &args).await
}

fn assert_measured(results: &[PhaseResult], phases: &[&str]) {
    let ran: Vec<&str> = results.iter().map(|r| r.phase.as_str()).collect();
    assert_eq!(ran, phases);
    for r in results {
        assert!(r.requests > 0, "{} made no requests: {r:?}", r.phase);
        assert_eq!(r.errors, 0, "{} had errors: {r:?}", r.phase);
        assert!(r.items >= r.requests, "{} carried no items: {r:?}", r.phase);
    }
}

#[tokio::test]
async fn the_lifecycle_phase_alone_prepares_its_own_tasks_and_moves_them() {
    let results = run("lifecycle").await.expect("lifecycle runs");
    assert_measured(&results, &["lifecycle"]);
}

#[tokio::test]
async fn every_phase_run_alone_makes_requests_without_errors() {
    // One server for all, as the phases share nothing but the data they leave behind; each
    // run starts with empty lists of jobs and tasks, so each phase prepares its own.
    let server = server().await;
    for phase in PHASES {
        let results = portauthority_bench::run(server.client.clone(), &args(phase))
            .await
            .unwrap_or_else(|e| panic!("{phase} alone: {e:#}"));
        assert_measured(&results, &[phase]);
    }
}

#[tokio::test]
async fn a_lifecycle_phase_after_another_prepares_tasks_again() {
    // The first takes every task there is, so the later ones must make their own.
    let phases = [
        "add",
        "lifecycle",
        "lifecycle",
        "lifecycle_batch",
        "lifecycle",
    ];
    let results = run(&phases.join(",")).await.expect("phases run");
    assert_measured(&results, &phases);
}

#[tokio::test]
async fn an_unknown_or_empty_phase_selection_fails_before_anything_runs() {
    for phases in ["create,lifecycel", "", " , "] {
        let server = server().await;
        let e = portauthority_bench::run(server.client.clone(), &args(phases))
            .await
            .expect_err(phases);
        assert!(format!("{e:#}").contains("phase"), "{phases:?}: {e:#}");
        // Not even the valid phase before the typo ran.
        let jobs = server
            .client
            .list_jobs(&Default::default())
            .await
            .expect("list");
        assert_eq!(jobs.info.total_items, 0, "{phases:?} ran something");
    }
}

#[tokio::test]
async fn a_phase_that_makes_no_requests_is_an_error() {
    // A nanosecond ends before any worker sends its first request.
    let e = run_with(BenchArgs {
        seconds: 1e-9,
        ..args("get")
    })
    .await
    .expect_err("a phase with no requests must fail");
    assert!(format!("{e:#}").contains("made no requests"), "{e:#}");
}

#[tokio::test]
async fn a_phase_whose_every_request_fails_is_an_error() {
    // The server refuses batches over 1000 items, so every request of add_batch fails.
    let e = run_with(BenchArgs {
        batch: 1001,
        ..args("add_batch")
    })
    .await
    .expect_err("a phase with only failed requests must fail");
    assert!(format!("{e:#}").contains("all"), "{e:#}");
}

#[tokio::test]
async fn a_lifecycle_phase_with_nothing_to_move_and_nothing_to_prepare_is_an_error() {
    let e = run_with(BenchArgs {
        prepare_tasks: 0,
        ..args("lifecycle")
    })
    .await
    .expect_err("nothing to move must fail");
    assert!(format!("{e:#}").contains("no tasks to move"), "{e:#}");
}

#[tokio::test]
async fn zero_concurrency_is_refused() {
    let e = run_with(BenchArgs {
        concurrency: 0,
        ..args("create")
    })
    .await
    .expect_err("no workers must fail");
    assert!(format!("{e:#}").contains("--concurrency"), "{e:#}");
}
