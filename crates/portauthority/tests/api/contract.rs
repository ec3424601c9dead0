//! The OpenAPI document against someone else's tool: `openapi-spec-validator` (PyPI, which
//! `.ci/run` installs) accepts the document a live server serves; without the package the
//! test skips, saying so.

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
