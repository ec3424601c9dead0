//! Requests through the whole HTTP router (extractors, validation, the core's rules and a
//! real SQLite store), checking the contract for every input: never a 500 or a panic, every
//! error answered as RFC 9457 problem JSON with its own status, every success as JSON.
//!
//! Input: one byte choosing the method, one choosing the content type, then the path and
//! query up to the first newline, then the body. `{job}` and `{task}` in the path stand for
//! a job and a task that exist, so that the fuzzer reaches past the not-found answers.

#![no_main]

use axum::body::Body;
use axum::http::{Method, Request, Uri, header};
use libfuzzer_sys::fuzz_target;
use portauthority_server::{AppState, Config};
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

struct Harness {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    job: String,
    task: String,
    _dir: tempfile::TempDir,
}

const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];
const CONTENT_TYPES: [Option<&str>; 4] = [
    Some("application/json"),
    None,
    Some("text/plain"),
    Some("application/json; charset=utf-8"),
];

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        // On tmpfs where there is one: the store fsyncs every group commit.
        let dir = tempfile::Builder::new()
            .prefix("pa-fuzz")
            .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
                "/dev/shm"
            } else {
                "/tmp"
            })
            .expect("a scratch folder");
        let url = format!("sqlite://{}", dir.path().join("fuzz.db").display());
        let config = Config {
            database_url: url.clone(),
            worker: None,
            ..Config::default()
        };
        let env = portauthority_store::system::env();
        let store = rt
            .block_on(portauthority_store::open_with(&url, env.clone()))
            .expect("the store opens");
        let state = AppState {
            store,
            limits: Arc::new(config.limits.clone()),
            env,
            webhooks_allow_private: false,
        };
        let router = portauthority_server::router(state, &config);
        let mut h = Harness {
            rt,
            router,
            job: String::new(),
            task: String::new(),
            _dir: dir,
        };
        let job = h.send(
            Method::POST,
            "/v1/jobs",
            Some("application/json"),
            br#"{"type":"build","namespace":"com.example.fuzz"}"#.to_vec(),
        );
        h.job = job.1["job"]["id"].as_str().expect("a job id").to_owned();
        let task = h.send(
            Method::POST,
            &format!("/v1/jobs/{}/tasks", h.job),
            Some("application/json"),
            br#"{"type":"step","namespace":"com.example.fuzz"}"#.to_vec(),
        );
        h.task = task.1["task"]["id"].as_str().expect("a task id").to_owned();
        h
    })
}

impl Harness {
    fn send(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let Ok(uri) = uri.parse::<Uri>() else {
            return (0, serde_json::Value::Null);
        };
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req.body(Body::from(body)).expect("a request");
        self.rt.block_on(async {
            let res = self.router.clone().oneshot(req).await.expect("infallible");
            let status = res.status().as_u16();
            let ct = res
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .expect("the response body");
            assert_ne!(status, 500, "a 500: {}", String::from_utf8_lossy(&bytes));
            if bytes.is_empty() {
                assert!(status < 400, "an error without a problem body: {status}");
                return (status, serde_json::Value::Null);
            }
            let value: serde_json::Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
            if status >= 400 {
                assert!(
                    ct.starts_with("application/problem+json"),
                    "{status} as {ct}: {value}"
                );
                assert_eq!(value["status"], status, "{value}");
                assert!(value["type"].is_string(), "{value}");
            }
            (status, value)
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let [m, c, rest @ ..] = data else { return };
    let (target, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    if !target.starts_with('/') {
        return;
    }
    let h = harness();
    let target = target.replace("{job}", &h.job).replace("{task}", &h.task);
    let method = METHODS[*m as usize % METHODS.len()].clone();
    let content_type = CONTENT_TYPES[*c as usize % CONTENT_TYPES.len()];
    h.send(method, &target, content_type, body.to_vec());
});
