//! Every exit code of DESIGN.md "CLI exit codes", each caused for real, with the message a
//! person sees on stderr.

use crate::harness::{Env, run_with, str_of};
use std::io::{Read, Write};
use std::net::TcpListener;

#[tokio::test]
async fn an_unknown_job_or_task_exits_3_with_the_servers_detail() {
    let env = Env::start().await;
    let missing = "0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10";
    let run = env.run(&["job", "get", missing]);
    run.assert_code(3);
    assert_eq!(run.stdout, "", "nothing on stdout");
    assert_eq!(
        run.stderr.trim(),
        format!("error: 404 Not Found: job {missing} not found")
    );
    let job = env.job(0, &[]);
    env.run(&["task", "complete", &job, missing]).assert_code(3);
    env.run(&["history", "list", missing]).assert_code(3);
    env.run(&["job", "cancel", missing, "--output", "json"])
        .assert_code(3);
}

#[tokio::test]
async fn a_conflict_exits_4() {
    let env = Env::start().await;
    let id = env.job(1, &[]);
    let tasks = env.json(&["task", "list", &id]);
    let task = str_of(&tasks, "/tasks/0/id").to_owned();
    env.run(&["task", "complete", &id, &task]).assert_code(0);
    let run = env.run(&["task", "fail", &id, &task, "--error", "late"]);
    run.assert_code(4);
    assert!(
        run.stderr.starts_with("error: 409 Conflict: "),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    // A finished job takes no more tasks; the same id with other content is a conflict.
    env.run(&["task", "add", &id, "--type", "x"]).assert_code(4);
    let fixed = "0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f11";
    for (job_type, code) in [("a", 0), ("a", 0), ("b", 4)] {
        let args = [
            "job",
            "create",
            "--id",
            fixed,
            "--type",
            job_type,
            "--namespace",
            "ns",
        ];
        env.run(&args).assert_code(code);
    }
}

#[tokio::test]
async fn invalid_input_exits_5_with_one_line_per_field() {
    let env = Env::start().await;
    let long = "x".repeat(129);
    let run = env.run(&["job", "create", "--type", "", "--namespace", &long]);
    run.assert_code(5);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines[0], "error: 422 Unprocessable Entity",
        "{}",
        run.stderr
    );
    assert!(
        lines.iter().any(|l| l.starts_with("  type: ")),
        "{}",
        run.stderr
    );
    assert!(
        lines.iter().any(|l| l.starts_with("  namespace: ")),
        "{}",
        run.stderr
    );
    assert_eq!(lines.len(), 3, "{}", run.stderr);
    // The server's own limit, not the CLI's, refuses a page size over 1000.
    let run = env.run(&["job", "list", "--size", "5000"]);
    run.assert_code(5);
    assert!(run.stderr.contains("size: "), "{}", run.stderr);
    // A cursor that is not one.
    env.run(&["job", "list", "--after", "not-a-cursor"])
        .assert_code(5);
    // Nothing was written.
    assert_eq!(
        env.client
            .list_jobs(&Default::default())
            .await
            .expect("list")
            .info
            .total_items,
        0
    );
}

#[tokio::test]
async fn an_unreachable_server_exits_6_and_says_how_to_point_at_one() {
    // A port nothing listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let run = run_with(&["job", "list"], &[("PORTAUTHORITY_URL", &url)]);
    run.assert_code(6);
    assert!(
        run.stderr
            .starts_with(&format!("error: cannot reach the server at {url}: ")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.to_lowercase().contains("connection refused"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--url"), "{}", run.stderr);
    // --url wins over the environment.
    run_with(
        &[
            "job",
            "get",
            "0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10",
            "--url",
            &url,
        ],
        &[],
    )
    .assert_code(6);
}

#[test]
fn usage_errors_exit_2_before_any_request() {
    // No server at all: a usage error never gets as far as connecting.
    let url = ("PORTAUTHORITY_URL", "http://127.0.0.1:9");
    for args in [
        &["job", "get", "not-a-uuid"][..],
        &["job", "create", "--namespace", "ns"],
        &["job", "list", "--status", "done"],
        &["job", "list", "--sort", "colour"],
        &["job", "list", "--meta", "novalue"],
        &["task", "start", "0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10", "x"],
        &[
            "task",
            "heartbeat",
            "0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10",
            "0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10",
            "--progress",
            "half",
        ],
        &["job", "list", "--url", "localhost:8080"],
        &["job", "list", "--output", "yaml"],
        &["job"],
    ] {
        let run = run_with(args, &[url]);
        run.assert_code(2);
        assert!(!run.stderr.contains("cannot reach"), "{}", run.stderr);
    }
    let run = run_with(&["job", "get", "nope"], &[url]);
    assert!(
        run.stderr.contains("not a job id: expected a UUID"),
        "{}",
        run.stderr
    );
}

/// A real HTTP peer that is not Port Authority: answers one request with `response` and
/// hands back the request it read.
fn http_peer(response: &'static str) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 8192];
        let mut req = Vec::new();
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
        }
        conn.write_all(response.as_bytes()).expect("write");
        String::from_utf8_lossy(&req).into_owned()
    });
    (url, handle)
}

#[test]
fn an_answer_that_is_not_the_api_exits_1() {
    let (url, peer) = http_peer(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 13\r\nconnection: close\r\n\r\n<html></html>",
    );
    let run = run_with(&["job", "list", "--url", &url], &[]);
    run.assert_code(1);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    peer.join().expect("peer");
}

/// The server answers 401 only once API keys exist; until then a peer speaking the API's
/// problem format stands in for it, which also shows what the CLI sends.
#[test]
fn the_token_goes_as_a_bearer_header_and_a_401_exits_7() {
    let (url, peer) = http_peer(
        "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/problem+json\r\nconnection: close\r\ncontent-length: 110\r\n\r\n{\"type\":\"urn:portauthority:problem:unauthorized\",\"title\":\"Unauthorized\",\"status\":401,\"detail\":\"unknown token\"}",
    );
    let run = run_with(
        &["job", "list"],
        &[
            ("PORTAUTHORITY_URL", &url),
            ("PORTAUTHORITY_TOKEN", "pa_secret123"),
        ],
    );
    let request = peer.join().expect("peer");
    assert!(
        request
            .lines()
            .any(|l| l.eq_ignore_ascii_case("authorization: Bearer pa_secret123")),
        "{request}"
    );
    run.assert_code(7);
    assert!(
        run.stderr
            .starts_with("error: 401 Unauthorized: unknown token"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--token"), "{}", run.stderr);
}
