//! Durability: the real binary is killed with SIGKILL while 32 clients write, then started
//! again on the same SQLite file. Everything it acknowledged must still be there, and
//! nothing half-written.

use portauthority_core::api::CreateJobRequest;
use portauthority_testkit::acked::{Ledger, Writer, verify_all};
use portauthority_testkit::server::Server;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
/// How long the clients write before the kill.
const KILL_AFTER: Duration = Duration::from_secs(2);
/// A bound on each client's writes, whatever the speed of the machine.
const MAX_WRITES: u64 = 5_000;
/// The whole test must end within this.
const TEST_LIMIT: Duration = Duration::from_secs(180);

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
    let handles = Writer::spawn(CLIENTS, &server.client(), 101, &killed, MAX_WRITES);

    tokio::time::sleep(KILL_AFTER).await;
    killed.store(true, Ordering::SeqCst);
    server.kill();
    let ran = started.elapsed();

    let written = Ledger::join(handles).await;
    println!(
        "{CLIENTS} clients: {} writes in {:.2} s before the kill ({:.0}/s), \
         {} acknowledged, {} unanswered; {} jobs, {} tasks",
        written.requests,
        ran.as_secs_f64(),
        written.requests as f64 / ran.as_secs_f64(),
        written.acked_writes,
        written.requests - written.acked_writes,
        written.jobs.len(),
        written.tasks()
    );
    written.assert_meaningful(CLIENTS as u64, "kill");
    assert!(
        server.log_text().lines().all(|l| !l.contains("panicked")),
        "the server panicked before the kill:\n{}",
        server.log_text()
    );

    let restarted = Server::start(crate::portauthority(), &url, dir.path(), "second", None).await;
    let client = restarted.client();
    let bad = verify_all(&client, &written.jobs).await;
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
