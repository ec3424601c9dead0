//! Many clients writing at once through one server (the workload of
//! `portauthority_testkit::workload`): 64 clients share jobs (each owning its own tasks) and the
//! stored counters, statuses and history must come out exactly as if the writes had been
//! applied one by one. Runs on SQLite, or on PostgreSQL with `PORTAUTHORITY_TEST_STORE`.

use crate::helpers::TestApp;
use portauthority_testkit::workload;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_clients_keep_counters_exact() {
    let app = TestApp::spawn().await;
    let report = tokio::time::timeout(
        workload::TEST_LIMIT,
        workload::run(vec![app.client.clone()], 1),
    )
    .await
    .expect("the load test finishes in time");
    report.assert_clean();
}
