//! PostgreSQL only (SQLite has no server to wait on): a statement is bounded by the store's
//! statement timeout, and a call dropped mid-statement (a client that went away) neither
//! keeps its pool connection nor leaves its statement running. Each test holds a lock from
//! a connection of its own, so that the store's statement waits as long as the test wants:
//! the store's real read and write paths, nothing added for the test.

use crate::harness::{create, drop_database, job_req};
use portauthority_core::Status;
use portauthority_store::postgres::{PgOptions, PgStore};
use portauthority_store::{Store, StoreError};
use sqlx::{Connection, PgConnection};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A store with `options` on a scratch database, and that database's URL; None (the test
/// skips, saying so) without a server.
async fn store_with(options: PgOptions) -> Option<(Arc<dyn Store>, String, String)> {
    let admin = portauthority_testkit::postgres::admin_url()?;
    let url = portauthority_testkit::postgres::scratch_database(&admin, "pa_conf")
        .await
        .expect("a scratch database can be created");
    let store = PgStore::open_with_options(&url, portauthority_store::system::env(), options)
        .await
        .expect("the PostgreSQL store opens");
    Some((Arc::new(store), url, admin))
}

/// How many backends of the database at `url` wait for a lock.
async fn lock_waiters(raw: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(raw)
    .await
    .expect("pg_stat_activity")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_the_timeout_answers_unavailable_and_is_not_retried() {
    let timeout = Duration::from_millis(300);
    let Some((store, url, admin)) = store_with(PgOptions {
        statement_timeout: timeout,
        ..PgOptions::default()
    })
    .await
    else {
        return;
    };
    let job = create(&store, job_req()).await;
    let mut raw = PgConnection::connect(&url).await.expect("a raw connection");

    // A write waits for the job's row lock.
    sqlx::query("BEGIN").execute(&mut raw).await.expect("begin");
    sqlx::query("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE")
        .bind(*job.id.as_uuid())
        .execute(&mut raw)
        .await
        .expect("the job's row lock");
    let started = Instant::now();
    let write = store.set_job_status(job.id, Status::Cancelled, None).await;
    let took = started.elapsed();
    assert!(
        matches!(write, Err(StoreError::Unavailable(_))),
        "a write past the timeout is unavailable: {write:?}"
    );
    assert!(took >= timeout, "it waited for the timeout: {took:?}");
    // Ten attempts would take ten timeouts and their backoff.
    assert!(took < timeout * 5, "it was not retried: {took:?}");

    // A read waits for a table lock.
    sqlx::query("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        .execute(&mut raw)
        .await
        .expect("the table lock");
    let read = store.get_job(job.id).await;
    assert!(
        matches!(read, Err(StoreError::Unavailable(_))),
        "a read past the timeout is unavailable: {read:?}"
    );

    // Once the locks go, the same store serves both, on the connections it kept.
    sqlx::query("ROLLBACK")
        .execute(&mut raw)
        .await
        .expect("rollback");
    assert_eq!(
        store.get_job(job.id).await.expect("get_job").status,
        Status::Pending
    );
    let cancelled = store
        .set_job_status(job.id, Status::Cancelled, None)
        .await
        .expect("the write succeeds");
    assert_eq!(cancelled.status, Status::Cancelled);

    let _ = raw.close().await;
    store.close().await;
    drop_database(&admin, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_frees_its_connection_and_its_statement_stops() {
    // One connection, and a timeout far beyond the test: only the drop can free them.
    let Some((store, url, admin)) = store_with(PgOptions {
        pool_size: 1,
        statement_timeout: Duration::from_secs(600),
    })
    .await
    else {
        return;
    };
    let job = create(&store, job_req()).await;
    let mut raw = PgConnection::connect(&url).await.expect("a raw connection");
    sqlx::query("BEGIN").execute(&mut raw).await.expect("begin");
    sqlx::query("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        .execute(&mut raw)
        .await
        .expect("the table lock");

    // The call waits for the lock; the caller gives up (as axum drops the future of a
    // request whose client disconnected).
    let read = tokio::time::timeout(Duration::from_millis(500), store.get_job(job.id)).await;
    assert!(read.is_err(), "the read waited for the lock: {read:?}");

    // The pool's one connection is free again at once (a ping needs one; the pool's wait
    // for a connection gives up after 2 s)...
    store
        .ping()
        .await
        .expect("the dropped call's connection went back");
    // ...and the abandoned statement stops (the server checks its client every second),
    // although the lock it waits for is still held.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting = lock_waiters(&mut raw).await;
        if waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} abandoned statement(s) still wait for the lock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    sqlx::query("ROLLBACK")
        .execute(&mut raw)
        .await
        .expect("rollback");
    assert_eq!(store.get_job(job.id).await.expect("get_job").id, job.id);
    let _ = raw.close().await;
    store.close().await;
    drop_database(&admin, &url).await;
}
