//! The OpenAPI document against other people's tools: `openapi-spec-validator` accepts it,
//! and Schemathesis, generating requests from it against a live server (every check, every
//! phase, the stateful one included), finds no response the document does not describe.
//! Both are PyPI packages `.ci/run` installs; without them these tests skip, saying so.

use portauthority_testkit::server::Server;
use std::process::Command;

/// Whether `python3` can import `module`; if not, says that the calling test skips.
fn python_has(module: &str, package: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        portauthority_testkit::skip::because(&format!(
            "python3 has no {module} (pip install {package})"
        ));
    }
    ok
}

/// A server of its own on a scratch SQLite file. The contract is the HTTP layer's; the
/// stores answer alike (their conformance suite), so one store is enough here.
async fn server(dir: &tempfile::TempDir) -> Server {
    let url = format!("sqlite://{}", dir.path().join("contract.db").display());
    Server::start_with(
        crate::portauthority(),
        &url,
        dir.path(),
        "contract",
        None,
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_spec_validator_accepts_the_document() {
    if !python_has("openapi_spec_validator", "openapi-spec-validator") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let doc = server
        .http()
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, doc).unwrap();
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Examples per operation and phase: with the stateful phase, about 20,000 requests, a
/// couple of minutes against a debug build.
const MAX_EXAMPLES: &str = "60";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_in_any_phase() {
    if !python_has("schemathesis", "schemathesis") {
        return;
    }
    if std::env::var("PORTAUTHORITY_TEST_STORE").as_deref() == Ok("postgres") {
        portauthority_testkit::skip::because(
            "Schemathesis runs in the SQLite pass of the HTTP suite only (its run is long)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let report = dir.path().join("schemathesis.json");
    let out = tokio::task::spawn_blocking({
        let base = server.base.clone();
        let report = report.clone();
        move || {
            Command::new("python3")
                .args(["-m", "schemathesis.cli", "run"])
                .arg(format!("{base}/openapi.json"))
                .args(["--checks", "all"])
                .args(["--phases", "examples,coverage,fuzzing,stateful"])
                .args(["--max-examples", MAX_EXAMPLES])
                .args(["--seed", "1"])
                .args(["--workers", "2"])
                .args(["--request-timeout", "10"])
                .args(["--report", "json", "--report-json-path"])
                .arg(&report)
                .args(["--no-color"])
                .env("SCHEMATHESIS_HOOKS", "")
                .current_dir(dir_of(&report))
                .output()
                .expect("python3 runs")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("test cases") || l.contains("generated"))
        .collect();
    portauthority_testkit::skip::report(&format!("schemathesis: {}", summary.join("; ")));
    assert!(
        out.status.success(),
        "Schemathesis found failures:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
}

fn dir_of(p: &std::path::Path) -> std::path::PathBuf {
    p.parent().unwrap().to_path_buf()
}
