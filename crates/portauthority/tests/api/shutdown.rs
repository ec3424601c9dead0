//! The binary's life cycle: `migrate` is idempotent, and SIGTERM stops `serve` gracefully
//! (exit 0, every acknowledged write kept).

use crate::helpers::{job_request, task_request};
use portauthority_core::Status;
use portauthority_testkit::server::Server;
use std::process::Command;
use std::time::{Duration, Instant};

fn migrate(db: &std::path::Path) -> String {
    let out = Command::new(crate::portauthority())
        .args([
            "migrate",
            "--database-url",
            &format!("sqlite://{}", db.display()),
        ])
        .env("PORTAUTHORITY_LOG", "warn")
        .output()
        .expect("run migrate");
    assert!(
        out.status.success(),
        "migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn migrate_prints_the_schema_version_and_a_second_run_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let first = migrate(&db);
    let version: i64 = first
        .trim()
        .strip_prefix("schema version ")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {first:?}"));
    assert!(version >= 1);
    let size = std::fs::metadata(&db).unwrap().len();
    // Versions need not be consecutive (one may be another branch's): count what is recorded.
    let recorded = || -> (i64, i64) {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row(
            "SELECT COUNT(*), MAX(version) FROM schema_migrations",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let (applied, latest) = recorded();
    assert_eq!(latest, version, "the version printed is the latest applied");
    let second = migrate(&db);
    assert_eq!(second, first, "a second run reports the same version");
    assert_eq!(
        recorded(),
        (applied, latest),
        "a second run records nothing"
    );
    assert!(std::fs::metadata(&db).unwrap().len() >= size);
}

#[tokio::test]
async fn sigterm_stops_the_server_gracefully_and_keeps_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let url = format!("sqlite://{}", db.display());
    let mut server = Server::start(crate::portauthority(), &url, dir.path(), "first", None).await;
    let client = server.client();
    let job = client
        .create_job(&job_request("com.shipyard.stop", "build"))
        .await
        .unwrap();
    let task = client
        .add_task(job.id, &task_request("step"))
        .await
        .unwrap();
    client
        .set_task(job.id, task.id, Status::Completed)
        .await
        .unwrap();

    let pid = server.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let until = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < until,
            "the server did not stop within 20 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        exit.success(),
        "exit status {exit:?}; log:\n{}",
        server.log_text()
    );
    assert!(
        !dir.path().join("s.db-wal").exists()
            || std::fs::metadata(dir.path().join("s.db-wal"))
                .unwrap()
                .len()
                == 0,
        "a graceful stop checkpoints the WAL into the database file"
    );

    let again = Server::start(crate::portauthority(), &url, dir.path(), "second", None).await;
    let stored = again.client().get_job(job.id).await.unwrap();
    assert_eq!(stored.status, Status::Completed);
    assert_eq!(stored.tasks.completed, 1);
}
