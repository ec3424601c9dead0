//! `portauthority healthcheck`, the containers' health check: exit 0 only when `/readyz`
//! answers 200, and a bounded wait whatever the other end does.

use portauthority_testkit::server::Server;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn healthcheck(url: &str, timeout: &str) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(crate::portauthority())
        .args(["healthcheck", "--url", url, "--timeout", timeout])
        .output()
        .expect("run healthcheck");
    (out, started.elapsed())
}

#[tokio::test]
async fn a_ready_server_passes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("h.db").display());
    let server = Server::start(crate::portauthority(), &url, dir.path(), "serve", None).await;
    let base = server.client().base_url().to_owned();
    for url in [base.clone(), format!("{base}/"), format!("{base}/readyz")] {
        let (out, _) = tokio::task::spawn_blocking(move || healthcheck(&url, "5s"))
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "exit {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn nothing_listening_fails() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (out, _) = healthcheck(&format!("http://127.0.0.1:{port}"), "2s");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/readyz"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An HTTP server on a real socket that answers every request with `status_line`.
fn answering(status_line: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status_line}\r\ncontent-type: application/json\r\n\
                 content-length: 2\r\nconnection: close\r\n\r\n{{}}"
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn a_server_that_is_not_ready_fails() {
    for status in ["503 Service Unavailable", "404 Not Found", "204 No Content"] {
        let (out, _) = healthcheck(&answering(status), "5s");
        assert_eq!(out.status.code(), Some(1), "{status}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not ready"), "{status}: {stderr}");
    }
}

#[test]
fn a_server_that_never_answers_fails_after_the_timeout() {
    // Accepts connections (the kernel's backlog) but never reads or answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (out, took) = healthcheck(&url, "300ms");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        took < Duration::from_secs(20),
        "the check hung for {took:?} past its 300ms timeout"
    );
    drop(listener);
}
