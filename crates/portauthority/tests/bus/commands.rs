//! Commands in: duplicates have one effect, malformed messages are dead-lettered.

use crate::harness::*;
use portauthority_contracts::{CommandType, REASON_HEADER, command_message};
use portauthority_testkit::server::Server;
use serde_json::json;
use std::time::Duration;

/// A database URL for a server of this test: a SQLite file in `dir`, or a scratch
/// PostgreSQL database (None, after saying so, when none is configured).
async fn database(dir: &std::path::Path, postgres: bool) -> Option<String> {
    if !postgres {
        return Some(format!("sqlite://{}", dir.join("bus.db").display()));
    }
    let admin = portauthority_testkit::skip::configured("PORTAUTHORITY_TEST_DATABASE_URL")?;
    Some(
        portauthority_testkit::postgres::scratch_database(&admin, "pa_bus")
            .await
            .expect("scratch database"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicated_and_late_commands_have_one_effect_sqlite() {
    duplicated_and_late_commands_have_one_effect(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicated_and_late_commands_have_one_effect_postgres() {
    duplicated_and_late_commands_have_one_effect(true).await;
}

/// 10,000 commands over 100 jobs through the bus, 5 % of them published twice and some
/// of those again at the very end: the state equals the same commands applied once over
/// HTTP to a second server.
async fn duplicated_and_late_commands_have_one_effect(postgres: bool) {
    let Some(bus) = Bus::connect("dup").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(dir.path(), postgres).await else {
        return;
    };
    let server = bus_server(&bus, &url, dir.path(), "bus", &[]).await;
    let twin_url = format!("sqlite://{}", dir.path().join("twin.db").display());
    let twin = Server::start(crate::portauthority(), &twin_url, dir.path(), "twin", None).await;

    let commands = workload(100, 32, "com.example.bus");
    assert_eq!(commands.len(), 10_000);
    let mut sent: Vec<&Cmd> = Vec::new();
    let mut late: Vec<&Cmd> = Vec::new();
    for (i, c) in commands.iter().enumerate() {
        sent.push(c);
        if i % 20 == 0 {
            sent.push(c);
            if i % 100 == 0 {
                late.push(c);
            }
        }
    }
    bus.publish(&sent).await;
    apply_over_http(&twin.http(), &twin.base, &commands).await;
    bus.wait_until_consumed(Duration::from_secs(180)).await;
    // Late: after everything was applied, the first duplicates come round again.
    bus.publish(&late).await;
    bus.wait_until_consumed(Duration::from_secs(60)).await;

    let http = server.http();
    for job in jobs_of(&commands) {
        let got = job_state(&http, &server.base, &job).await;
        let want = job_state(&twin.http(), &twin.base, &job).await;
        assert_eq!(
            got,
            want,
            "job {job}: the bus and HTTP agree\n{}",
            server.log_text()
        );
        assert_eq!(got["status"], "completed");
    }
    let dead = bus.read_all("DEADLETTER").await;
    assert!(
        dead.is_empty(),
        "no duplicate was refused: {:?}",
        dead.iter()
            .map(|m| header(m, REASON_HEADER))
            .collect::<Vec<_>>()
    );
    drop((server, twin));
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_commands_are_dead_lettered_with_a_reason_and_consumption_goes_on() {
    let Some(bus) = Bus::connect("dead").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bus.db").display());
    let server = bus_server(&bus, &url, dir.path(), "bus", &[]).await;
    let http = server.http();
    let (job_id, tasks) = create_job(&http, &server.base, "com.example.dead", 1).await;
    let task_id = tasks[0].clone();
    let status = |id: &str, status: &str| {
        command_message(
            CommandType::TaskStatus,
            id,
            "/test",
            json!({"job_id": job_id, "task_id": task_id, "status": status}),
        )
    };
    let subject = bus.subject(CommandType::TaskStatus);
    let unknown_job = command_message(
        CommandType::HistoryNote,
        "n-unknown",
        "/test",
        json!({"job_id": uuid::Uuid::now_v7().to_string(), "message": "hi"}),
    );
    let unknown_type = serde_json::to_vec(&json!({
        "specversion": "1.0", "id": "u-1", "source": "/test", "type": "portauthority.job.explode.v1", "data": {}
    }))
    .unwrap();
    let bad = [
        (b"this is not json".to_vec(), "not_json"),
        (br#"{"hello": "world"}"#.to_vec(), "not_cloudevent"),
        (unknown_type, "unknown_type"),
        (unknown_job, "job"),
        (status("s-1", "completed"), ""),
        // Illegal once completed.
        (status("s-2", "in_progress"), "completed"),
    ];
    let payloads: Vec<Vec<u8>> = bad.iter().map(|(p, _)| p.clone()).collect();
    bus.publish_raw(&subject, payloads).await;
    let after = command_message(
        CommandType::HistoryNote,
        "n-after",
        "/test",
        json!({"job_id": job_id, "message": "still consuming"}),
    );
    bus.publish_raw(&subject, vec![after]).await;
    bus.wait_until_consumed(Duration::from_secs(30)).await;

    let history = get_json(&http, &server.base, &format!("/v1/jobs/{job_id}/history")).await;
    assert!(
        history["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"] == "still consuming"),
        "the command after the bad ones applied"
    );
    let dead = bus.read_all("DEADLETTER").await;
    let expected: Vec<_> = bad.iter().filter(|(_, why)| !why.is_empty()).collect();
    assert_eq!(
        dead.len(),
        expected.len(),
        "{:?}",
        dead.iter()
            .map(|m| header(m, REASON_HEADER))
            .collect::<Vec<_>>()
    );
    for (message, (payload, why)) in dead.iter().zip(&expected) {
        assert_eq!(
            &message.payload.to_vec(),
            payload,
            "the original message is the payload"
        );
        let reason = header(message, REASON_HEADER).expect("a reason header");
        assert!(reason.contains(why), "{reason:?} should say {why:?}");
        let problem =
            header(message, portauthority_contracts::PROBLEM_HEADER).expect("a problem header");
        let problem: serde_json::Value = serde_json::from_str(&problem).expect("problem JSON");
        assert!(
            problem["status"].as_u64().is_some() && problem["detail"].is_string(),
            "{problem}"
        );
    }
    drop(server);
    bus.cleanup().await;
}
