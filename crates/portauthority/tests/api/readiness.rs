//! `/readyz` tells the truth about writes, and a database that cannot be written stops the
//! server at start instead of failing every write.

use portauthority_testkit::server::{Process, Server};
use std::time::{Duration, Instant};

/// A SQLite file that cannot be written (immutable: even root cannot write it) stops
/// `serve` at start with a message that says so.
#[tokio::test]
async fn serve_refuses_to_start_on_a_database_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ro.db");
    let url = format!("sqlite://{}", db.display());
    let migrated = std::process::Command::new(crate::portauthority())
        .args(["migrate", "--database-url", &url])
        .output()
        .unwrap();
    assert!(migrated.status.success());
    let immutable = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&db)
        .status();
    if !matches!(immutable, Ok(s) if s.success()) {
        portauthority_testkit::skip::because(
            "chattr +i is not available here (needs root on ext4)",
        );
        return;
    }
    struct Mutable<'a>(&'a std::path::Path);
    impl Drop for Mutable<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(self.0)
                .status();
        }
    }
    let _undo = Mutable(&db);
    let mut serve = Process::spawn(
        crate::portauthority(),
        &["serve", "--listen", "127.0.0.1:0", "--database-url", &url],
        dir.path(),
        "ro",
    );
    let until = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < until,
            "serve kept running on a read-only database"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let log = serve.log_text();
    assert!(log.contains("cannot write to the database"), "{log}");
}

/// On PostgreSQL, a database switched to read-only makes `/readyz` answer 503 and writes
/// 503 (not 500); switched back, both recover without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_writes_follow_a_database_going_read_only_and_back() {
    let Some(admin) = portauthority_testkit::skip::configured("PORTAUTHORITY_TEST_DATABASE_URL")
    else {
        return;
    };
    let url = portauthority_testkit::postgres::scratch_database(&admin, "pa_test")
        .await
        .unwrap();
    let name = portauthority_testkit::postgres::database_of(&url);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(crate::portauthority(), &url, dir.path(), "ro", None).await;
    let client = server.client();
    let ready = || async {
        match client.readyz().await {
            Ok(_) => 200,
            Err(e) => e.status().map_or(0, |s| s.as_u16()),
        }
    };
    assert_eq!(ready().await, 200);
    let admin_sql = |sql: String| {
        let admin = admin.clone();
        async move {
            portauthority_testkit::postgres::execute(&admin, &sql)
                .await
                .expect("an administrator's statement")
        }
    };
    let kick =
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'");
    admin_sql(format!(
        "ALTER DATABASE \"{name}\" SET default_transaction_read_only = on"
    ))
    .await;
    admin_sql(kick.clone()).await;
    let until = Instant::now() + Duration::from_secs(15);
    while ready().await != 503 {
        assert!(
            Instant::now() < until,
            "/readyz still says ready on a read-only database"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let write = client
        .create_job(&crate::helpers::job_request("com.example.ro", "ro"))
        .await
        .expect_err("a read-only database takes no write");
    assert_eq!(
        write.status().map(|s| s.as_u16()),
        Some(503),
        "a read-only database is unavailable, not a bug: {write}"
    );
    assert_eq!(write.kind(), portauthority_client::ErrorKind::Unavailable);

    admin_sql(format!(
        "ALTER DATABASE \"{name}\" RESET default_transaction_read_only"
    ))
    .await;
    admin_sql(kick).await;
    let until = Instant::now() + Duration::from_secs(15);
    while ready().await != 200 {
        assert!(Instant::now() < until, "/readyz did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
    let _ = portauthority_testkit::postgres::drop_scratch_database(&admin, &url).await;
}
