//! A server that answers 503 (its PostgreSQL database gone read-only) makes the CLI exit 6
//! with the server's detail, as an unreachable one does.

use crate::harness::{Env, binary};
use portauthority_testkit::postgres;
use portauthority_testkit::server::Server;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_503_exits_6() {
    let Some(admin) = portauthority_testkit::skip::configured(postgres::DATABASE_URL_VAR) else {
        return;
    };
    let url = postgres::scratch_database(&admin, "pa_cli")
        .await
        .expect("a scratch database");
    let name = postgres::database_of(&url);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(binary(), &url, dir.path(), "ro", None).await;
    let env = Env::over(server);
    env.job(1, &[]);
    let sql = |sql: String| {
        let admin = admin.clone();
        async move {
            postgres::execute(&admin, &sql)
                .await
                .expect("an administrator's statement")
        }
    };
    sql(format!(
        "ALTER DATABASE \"{name}\" SET default_transaction_read_only = on"
    ))
    .await;
    sql(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
    let until = Instant::now() + Duration::from_secs(15);
    while env.client.readyz().await.is_ok() {
        assert!(Instant::now() < until, "the server still says it is ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = env.run(&["job", "create", "--type", "t", "--namespace", "ns"]);
    run.assert_code(6);
    assert!(
        run.stderr.starts_with("error: 503 Service Unavailable: "),
        "{}",
        run.stderr
    );
    drop(env);
    let _ = postgres::drop_scratch_database(&admin, &url).await;
}
