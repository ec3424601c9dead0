//! Scale-out: three `portauthority serve` processes on one PostgreSQL database, 64 clients
//! sending each request to the next process in turn, so that one job and its tasks are
//! written through all three (the workload of `portauthority_testkit::workload`). Counters,
//! statuses and history must come out exactly as if the accepted writes had been applied
//! one by one.

use crate::harness::{runtime, scratch_database, serial};
use portauthority_client::Client;
use portauthority_testkit::postgres::admin_url;
use portauthority_testkit::server::Server;
use portauthority_testkit::workload;
use std::process::{Command, Stdio};
use std::time::Instant;

const SERVERS: usize = 3;
/// Connections in each server's pool (three pools share the database's limit).
const POOL: u32 = 16;

#[test]
fn three_servers_on_one_database_keep_counters_exact() {
    let Some(admin) = admin_url() else { return };
    let _serial = serial();
    runtime().block_on(async {
        tokio::time::timeout(workload::TEST_LIMIT, run(&admin))
            .await
            .expect("the scale-out test finishes in time");
    });
}

/// Runs `portauthority migrate` on `url` as a child process; the exit status and output.
fn migrate_process(url: String) -> std::thread::JoinHandle<std::process::Output> {
    std::thread::spawn(move || {
        Command::new(crate::portauthority())
            .args(["migrate", "--database-url", &url])
            .env("PORTAUTHORITY_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run portauthority migrate")
    })
}

async fn run(admin: &str) {
    let url = scratch_database(admin).await;
    let dir = tempfile::tempdir().expect("tempdir");

    // Three servers and a `portauthority migrate` start at once on the empty database:
    // they all apply the migrations, taking turns on sqlx's advisory lock.
    let migrate = migrate_process(url.clone());
    let started = Instant::now();
    let mut servers =
        Server::start_many(crate::portauthority(), &url, dir.path(), SERVERS, POOL).await;
    let migrate = tokio::task::spawn_blocking(move || migrate.join().expect("migrate thread"))
        .await
        .expect("join migrate");
    println!(
        "{SERVERS} servers and a migrate run started concurrently on one database in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let migrate_out = String::from_utf8_lossy(&migrate.stdout).into_owned();
    assert!(
        migrate.status.success() && migrate_out.starts_with("schema version "),
        "a concurrent `portauthority migrate` failed ({}): {migrate_out}{}",
        migrate.status,
        String::from_utf8_lossy(&migrate.stderr)
    );
    let clients: Vec<Client> = servers.iter().map(Server::client).collect();
    let report = workload::run(clients, 7001).await;

    for (i, s) in servers.iter_mut().enumerate() {
        assert!(s.is_running(), "server {i} exited:\n{}", s.log_text());
        assert!(
            !s.log_text().contains("panicked"),
            "server {i} panicked:\n{}",
            s.log_text()
        );
    }
    let requests = report.requests;
    assert!(
        report
            .per_server
            .iter()
            .all(|&n| n * (SERVERS as u64) * 2 >= requests),
        "the requests did not spread over the servers: {:?}",
        report.per_server
    );
    report.assert_clean();
}
