//! A full disk under the SQLite store: a small tmpfs mounted by the test (the tests run as
//! root in CI; elsewhere they skip, saying so). While it is full, writes answer 503 (never
//! 500) and `/readyz` says not ready, and the repeated failure is logged a few times, not
//! once per write; once space returns, writes succeed again without a restart and every
//! acknowledged write is there.

use portauthority_testkit::server::Server;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs of `size` mounted at `path`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .is_ok_and(|o| o.status.success());
        mounted.then(|| Tmpfs(path.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes to `path` until the file system refuses more; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).expect("create the filler");
    let mut written = 0u64;
    for chunk in [1 << 16, 4096, 512, 1] {
        let block = vec![0xA5u8; chunk];
        while file.write_all(&block).is_ok() {
            written += chunk as u64;
        }
    }
    let _ = file.sync_all();
    written
}

/// One create: its status and, when it was acknowledged, the job's id.
async fn create(http: &reqwest::Client, base: &str, i: usize) -> (u16, Option<String>, Value) {
    let res = http
        .post(format!("{base}/v1/jobs"))
        .json(&json!({"type": "fill", "namespace": "com.example.disk", "meta": {"i": i}}))
        .send()
        .await
        .expect("an answer, not a transport error");
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert_eq!(content_type, "application/problem+json", "{status}: {body}");
    }
    let id = (status == 200).then(|| body["job"]["id"].as_str().unwrap().to_owned());
    (status, id, body)
}

async fn ready(http: &reqwest::Client, base: &str) -> u16 {
    http.get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_writes_recover_once_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let Some(volume) = Tmpfs::mount(&dir.path().join("vol"), "8m") else {
        portauthority_testkit::skip::because("mounting a tmpfs is not permitted here (needs root)");
        return;
    };
    let url = format!("sqlite://{}", volume.0.join("full.db").display());
    let mut server =
        Server::start_with(crate::portauthority(), &url, dir.path(), "full", None, &[]).await;
    let http = server.http();
    let base = server.base.clone();
    let mut acked = Vec::new();
    for i in 0..20 {
        let (status, id, body) = create(&http, &base, i).await;
        assert_eq!(status, 200, "{body}");
        acked.extend(id);
    }

    let filler = volume.0.join("filler");
    let filled = fill(&filler);
    assert!(filled > 0);
    // Writers keep going until the disk has refused a run of them in a row.
    let started = Instant::now();
    let mut refused_in_a_row = 0;
    let mut refused = 0;
    let mut i = 1000;
    while refused_in_a_row < 50 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "writes kept succeeding on a full disk"
        );
        let batch = futures::future::join_all((0..8).map(|k| create(&http, &base, i + k))).await;
        i += 8;
        for (status, id, body) in batch {
            match status {
                200 => {
                    refused_in_a_row = 0;
                    acked.extend(id);
                }
                503 => {
                    refused += 1;
                    refused_in_a_row += 1;
                }
                other => panic!("a write on a full disk answered {other}: {body}"),
            }
        }
    }
    assert_eq!(
        ready(&http, &base).await,
        503,
        "/readyz says ready while writes fail"
    );
    let full_for = started.elapsed();

    // Space returns: writes succeed again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    loop {
        let (status, id, body) = create(&http, &base, i).await;
        i += 1;
        if status == 200 {
            acked.extend(id);
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            freed.elapsed() < Duration::from_secs(15),
            "writes still fail 15 s after space returned: {body}\nlog:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered_after = freed.elapsed();
    for k in 0..50 {
        let (status, id, body) = create(&http, &base, i + k).await;
        assert_eq!(status, 200, "a write after recovery: {body}");
        acked.extend(id);
    }
    assert_eq!(ready(&http, &base).await, 200);
    assert!(server.is_running(), "the server restarted or died");

    for id in &acked {
        let res = http
            .get(format!("{base}/v1/jobs/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "acknowledged job {id} is lost");
    }
    let log = server.log_text();
    let warnings = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .count();
    let allowed = 2 * (full_for.as_secs() as usize + 2) + 4;
    assert!(
        warnings <= allowed,
        "{warnings} warnings in {full_for:?} of a full disk ({refused} refused writes); \
         at most {allowed} expected; log:\n{log}"
    );
    portauthority_testkit::skip::report(&format!(
        "full disk: {refused} writes refused with 503 over {full_for:?}, {warnings} log lines; \
         writes recovered {recovered_after:?} after space returned; {} acknowledged writes kept",
        acked.len()
    ));
}
