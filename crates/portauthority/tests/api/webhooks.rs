//! Webhooks end to end: a receiver in the test, the worker loops of the app delivering to
//! it, the signatures checked as the Standard Webhooks specification says (here, and by
//! the specification's own Python package when it is installed).

use crate::helpers::{TestApp, assert_problem};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use portauthority_core::Status;
use serde_json::{Value, json};
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TASK_CHANGED: &str = "portauthority.task.status_changed.v1";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

type Answer = Box<dyn Fn(usize) -> (StatusCode, HeaderMap) + Send + Sync>;

/// An HTTP endpoint on 127.0.0.1 that keeps what it gets and answers the n-th request
/// (from 0) as `answer` says.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(
        answer: impl Fn(usize) -> (StatusCode, HeaderMap) + Send + Sync + 'static,
    ) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let answer: Arc<Answer> = Arc::new(Box::new(answer));
        let count = Arc::new(AtomicUsize::new(0));
        let kept = got.clone();
        let app =
            axum::Router::new().fallback(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (kept, answer, count) = (kept.clone(), answer.clone(), count.clone());
                async move {
                    kept.lock().unwrap().push(Received {
                        headers,
                        body: body.to_vec(),
                    });
                    answer(count.fetch_add(1, Ordering::SeqCst))
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, got }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests came (at most 20 s).
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        eventually(|| async {
            let got = self.got();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

fn status(code: u16) -> (StatusCode, HeaderMap) {
    (StatusCode::from_u16(code).unwrap(), HeaderMap::new())
}

/// Polls `check` until it gives a value, for at most 20 s.
async fn eventually<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An app whose webhooks may target loopback, retried after at most 100 ms.
async fn app_allowing_loopback(retry_for: Duration) -> TestApp {
    TestApp::spawn_with(|c| {
        c.webhooks_allow_private = true;
        let w = &mut c.worker.as_mut().expect("the worker loops run").webhooks;
        w.allow_private = true;
        w.schedule.backoff = vec![Duration::from_millis(100)];
        w.schedule.retry_for = retry_for;
        w.poll = Duration::from_millis(20);
        w.refresh = Duration::from_millis(20);
    })
    .await
}

/// Subscribes `url`; returns the webhook as created (with its secret).
async fn subscribe(app: &TestApp, body: Value) -> Value {
    let (status, created) = app.post("/v1/webhooks", body).await;
    assert_eq!(status, 200, "{created}");
    // The fan-out reads the webhook list anew every 20 ms here.
    tokio::time::sleep(Duration::from_millis(100)).await;
    created["webhook"].clone()
}

/// Checks a request's signature as the specification defines it, independently of the
/// server's code: HMAC-SHA256 under the base64-decoded secret (after `whsec_`) over
/// `id.timestamp.body`, base64, among the space-separated `v1,` entries.
fn assert_signed(r: &Received, secret: &str) {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    assert!(key.len() >= 24, "a key of 24 bytes at least");
    let id = r.header("webhook-id");
    let timestamp = r.header("webhook-timestamp");
    let seconds: i64 = timestamp.parse().expect("Unix seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - seconds).abs() < 60,
        "a timestamp of this attempt: {seconds} vs {now}"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&r.body);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    let signatures: Vec<&str> = r
        .header("webhook-signature")
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .collect();
    assert!(
        signatures.contains(&expected.as_str()),
        "no v1 signature matches {expected}: {signatures:?}"
    );
}

async fn deliveries(app: &TestApp, webhook: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/v1/webhooks/{webhook}/deliveries")).await;
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

/// The delivery log once its newest line is in `state`.
async fn latest_is(app: &TestApp, webhook: &str, state: &str) -> Vec<Value> {
    eventually(|| async {
        let log = deliveries(app, webhook).await;
        (log.first().is_some_and(|e| e["state"] == state)).then_some(log)
    })
    .await
}

#[tokio::test]
async fn a_delivery_retried_after_failures_is_signed_with_one_id_and_logged_attempt_by_attempt() {
    let receiver = Receiver::start(|n| status(if n < 3 { 500 } else { 200 })).await;
    let app = app_allowing_loopback(Duration::from_secs(3600)).await;
    let webhook = subscribe(
        &app,
        json!({"url": receiver.url(), "namespace": "com.example.hooks", "events": [TASK_CHANGED],
               "description": "builds"}),
    )
    .await;
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{webhook}");
    // Another namespace, and other event types, are not delivered.
    let (other, other_tasks) = app.job_with_tasks("com.example.hooksx", 1).await;
    app.set(other.id, other_tasks[0].id, Status::Completed)
        .await;
    let (job, tasks) = app.job_with_tasks("com.example.hooks.ci", 1).await;
    app.set(job.id, tasks[0].id, Status::Completed).await;

    let got = receiver.wait_for(4).await;
    let first = &got[0];
    let id = first.header("webhook-id");
    assert!(
        id.starts_with(&format!("{}.", job.id)),
        "the event id: {id}"
    );
    for r in &got {
        assert_eq!(r.header("webhook-id"), id, "the same id on every retry");
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.body, first.body, "the same body on every retry");
        assert_signed(r, &secret);
    }
    let event: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(event["type"], TASK_CHANGED);
    assert_eq!(event["id"], id);
    assert_eq!(event["data"]["to"], "completed");
    assert_eq!(event["data"]["task"]["id"], json!(tasks[0].id));

    let hook = webhook["id"].as_str().unwrap();
    let log = latest_is(&app, hook, "delivered").await;
    assert_eq!(log.len(), 4, "one line per attempt: {log:#?}");
    for (line, attempt) in log.iter().zip([4, 3, 2, 1]) {
        assert_eq!(line["attempt"], attempt, "newest first: {log:#?}");
        assert_eq!(line["event_id"], id);
        assert_eq!(line["id"], log[0]["id"], "one delivery");
        assert!(
            line["time"].is_string() && line["latency_ms"].is_u64(),
            "{line}"
        );
    }
    assert_eq!(log[0]["status_code"], 200);
    assert_eq!(log[0]["error"], Value::Null);
    assert_eq!(log[0]["next_attempt_at"], Value::Null);
    for failed in &log[1..] {
        assert_eq!(failed["status_code"], 500, "{failed}");
        assert_eq!(failed["state"], "pending", "retried after it: {failed}");
        assert!(
            failed["error"].as_str().unwrap().contains("500"),
            "{failed}"
        );
        assert!(failed["next_attempt_at"].is_string(), "{failed}");
    }
    assert_eq!(receiver.got().len(), 4, "nothing else was delivered");
    let (_, stored) = app.get(&format!("/v1/webhooks/{hook}")).await;
    assert_eq!(
        stored["webhook"]["failing_since"],
        Value::Null,
        "a success clears it"
    );

    verify_with_standardwebhooks(&got[3], &secret);
}

/// Verifies a received request with the Standard Webhooks Python package (PyPI
/// `standardwebhooks`), when python3 has it; a tampered body must fail its check.
fn verify_with_standardwebhooks(r: &Received, secret: &str) {
    let has_package = std::process::Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_package {
        portauthority_testkit::skip::because(
            "the Python check of webhook signatures: python3 has no standardwebhooks package \
             (pip install standardwebhooks==1.1.0)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let headers: serde_json::Map<String, Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .map(|h| (h.to_string(), json!(r.header(h))))
            .collect();
    std::fs::write(
        dir.path().join("headers.json"),
        Value::Object(headers).to_string(),
    )
    .unwrap();
    let verify = |body: &[u8]| {
        std::fs::write(dir.path().join("body"), body).unwrap();
        std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import json, sys\n\
                 from standardwebhooks import Webhook\n\
                 body = open(sys.argv[2], 'rb').read()\n\
                 headers = json.load(open(sys.argv[3]))\n\
                 Webhook(sys.argv[1]).verify(body, headers)\n",
            )
            .arg(secret)
            .arg(dir.path().join("body"))
            .arg(dir.path().join("headers.json"))
            .output()
            .expect("python3 runs")
    };
    let ok = verify(&r.body);
    assert!(
        ok.status.success(),
        "standardwebhooks refused the signature: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let mut tampered = r.body.clone();
    tampered.extend_from_slice(b" ");
    assert!(
        !verify(&tampered).status.success(),
        "a tampered body passed"
    );
}

#[tokio::test]
async fn private_targets_and_other_schemes_are_refused_without_the_flag() {
    let app = TestApp::spawn().await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest",
        "http://[::1]/",
        "http://localhost/",
        "http://192.168.0.10:8080/hook",
        "http://[fd00::1]/",
        "ftp://example.com/x",
        "not a url",
    ] {
        let (status, body) = app.post("/v1/webhooks", json!({"url": url})).await;
        assert_problem(status, &body, 422);
        assert_eq!(body["errors"][0]["field"], "url", "{url}: {body}");
    }
    let (status, body) = app
        .post(
            "/v1/webhooks",
            json!({"url": "https://93.184.216.34/", "events": ["job.created"]}),
        )
        .await;
    assert_problem(status, &body, 422);
    assert_eq!(body["errors"][0]["field"], "events[0]", "{body}");
    let (status, body) = app.post("/v1/webhooks", json!({"namespace": "a"})).await;
    assert_problem(status, &body, 422);
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list, json!({"webhooks": []}), "nothing was stored");
    // Allowed with the flag, as long as the scheme is http or https.
    let app = app_allowing_loopback(Duration::from_secs(60)).await;
    let (status, _) = app
        .post("/v1/webhooks", json!({"url": "http://127.0.0.1:9/x"}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .post("/v1/webhooks", json!({"url": "ftp://127.0.0.1/x"}))
        .await;
    assert_problem(status, &body, 422);
}

#[tokio::test]
async fn a_webhook_is_listed_read_and_deleted_and_its_secret_is_shown_once() {
    let app = TestApp::spawn().await;
    let (status, created) = app
        .post(
            "/v1/webhooks",
            json!({"url": "https://93.184.216.34/in", "namespace": "com.example", "events": [TASK_CHANGED]}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let w = &created["webhook"];
    for field in [
        "id",
        "url",
        "namespace",
        "events",
        "description",
        "enabled",
        "created_at",
        "secret",
    ] {
        assert!(w.get(field).is_some(), "{field} missing: {w}");
    }
    assert_eq!(w["enabled"], true);
    assert_eq!(w["disabled_reason"], Value::Null);
    let id = w["id"].as_str().unwrap();
    let (status, got) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 200);
    assert!(got["webhook"].get("secret").is_none(), "{got}");
    let mut without_secret = w.clone();
    without_secret.as_object_mut().unwrap().remove("secret");
    assert_eq!(got["webhook"], without_secret);
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["webhooks"], json!([without_secret]));
    let (status, _) = app
        .send(reqwest::Method::DELETE, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_problem(status, &body, 404);
    let (status, body) = app
        .send(reqwest::Method::DELETE, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_problem(status, &body, 404);
    let (status, body) = app.get("/v1/webhooks/not-a-uuid/deliveries").await;
    assert_problem(status, &body, 404);
}

#[tokio::test]
async fn an_endpoint_answering_410_gone_unsubscribes_its_webhook() {
    let receiver = Receiver::start(|_| status(410)).await;
    let app = app_allowing_loopback(Duration::from_secs(3600)).await;
    let webhook = subscribe(&app, json!({"url": receiver.url()})).await;
    let id = webhook["id"].as_str().unwrap();
    let (job, tasks) = app.job_with_tasks("com.example.gone", 2).await;
    app.set(job.id, tasks[0].id, Status::Completed).await;
    let stored = eventually(|| async {
        let (_, got) = app.get(&format!("/v1/webhooks/{id}")).await;
        (got["webhook"]["enabled"] == false).then_some(got)
    })
    .await;
    let reason = stored["webhook"]["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("410"), "{reason}");
    // Every delivery failed, and no more come.
    let log = deliveries(&app, id).await;
    assert!(!log.is_empty());
    assert!(log.iter().all(|e| e["state"] == "failed"), "{log:#?}");
    let sent = receiver.got().len();
    app.set(job.id, tasks[1].id, Status::Completed).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.got().len(),
        sent,
        "a disabled webhook gets nothing"
    );
    let delivery = log[0]["id"].as_str().unwrap();
    let (status, body) = app
        .post(
            &format!("/v1/webhooks/{id}/deliveries/{delivery}/retry"),
            json!({}),
        )
        .await;
    assert_problem(status, &body, 409);
}

#[tokio::test]
async fn a_delivery_out_of_retries_fails_and_a_replay_delivers_it_with_the_same_id() {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answer = up.clone();
    let receiver = Receiver::start(move |_| {
        status(if answer.load(Ordering::SeqCst) {
            200
        } else {
            503
        })
    })
    .await;
    let app = app_allowing_loopback(Duration::from_millis(300)).await;
    let webhook = subscribe(
        &app,
        json!({"url": receiver.url(), "events": [TASK_CHANGED]}),
    )
    .await;
    let id = webhook["id"].as_str().unwrap();
    let (job, tasks) = app.job_with_tasks("com.example.replay", 1).await;
    app.set(job.id, tasks[0].id, Status::Completed).await;
    let log = latest_is(&app, id, "failed").await;
    assert_eq!(log[0]["status_code"], 503);
    let failed_attempts = log.len();
    up.store(true, Ordering::SeqCst);
    let delivery = log[0]["id"].as_str().unwrap();
    let (status, _) = app
        .post(
            &format!("/v1/webhooks/{id}/deliveries/{delivery}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(status, 202);
    let log = latest_is(&app, id, "delivered").await;
    assert_eq!(log.len(), failed_attempts + 1, "one attempt more: {log:#?}");
    assert_eq!(log[0]["status_code"], 200);
    let got = receiver.got();
    let last = got.last().unwrap();
    assert_eq!(last.header("webhook-id"), got[0].header("webhook-id"));
    assert_signed(last, webhook["secret"].as_str().unwrap());
    let (status, body) = app
        .post(
            &format!(
                "/v1/webhooks/{id}/deliveries/{}/retry",
                uuid::Uuid::now_v7()
            ),
            json!({}),
        )
        .await;
    assert_problem(status, &body, 404);
}

#[tokio::test]
async fn the_typed_client_manages_webhooks_and_replays_deliveries() {
    use portauthority_client::ErrorKind;
    use portauthority_core::api::webhooks::CreateWebhookRequest;
    let receiver = Receiver::start(|_| status(200)).await;
    let app = app_allowing_loopback(Duration::from_secs(3600)).await;
    let c = &app.client;
    let created = c
        .create_webhook(&CreateWebhookRequest {
            url: receiver.url(),
            namespace: Some("com.example.typed".into()),
            events: Some(vec![TASK_CHANGED.into()]),
            description: Some("typed".into()),
        })
        .await
        .expect("created");
    let secret = created.secret.clone().expect("the secret, once");
    assert!(secret.starts_with("whsec_"), "{secret}");
    let got = c.get_webhook(created.id).await.expect("get");
    assert_eq!(got.secret, None, "never again");
    assert_eq!(got.namespace.as_deref(), Some("com.example.typed"));
    let ids: Vec<_> = c
        .list_webhooks()
        .await
        .expect("list")
        .iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, [created.id]);
    // The fan-out reads the webhook list anew every 20 ms here.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (job, tasks) = app.job_with_tasks("com.example.typed", 1).await;
    app.set(job.id, tasks[0].id, Status::Completed).await;
    receiver.wait_for(1).await;
    let log = eventually(|| async {
        let log = c
            .webhook_deliveries(created.id, Some(10))
            .await
            .expect("log");
        (log.first().is_some_and(|d| d.state == "delivered")).then_some(log)
    })
    .await;
    assert_eq!(log[0].status_code, Some(200));
    c.retry_delivery(created.id, log[0].id)
        .await
        .expect("replayed");
    let again = receiver.wait_for(2).await;
    assert_eq!(again[1].header("webhook-id"), again[0].header("webhook-id"));

    let missing = c
        .retry_delivery(created.id, uuid::Uuid::now_v7())
        .await
        .expect_err("no such delivery");
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    c.delete_webhook(created.id).await.expect("deleted");
    let gone = c.get_webhook(created.id).await.expect_err("deleted");
    assert_eq!(gone.kind(), ErrorKind::NotFound);
    assert_eq!(gone.problem().map(|p| p.status), Some(404));
    let invalid = c
        .create_webhook(&CreateWebhookRequest::default())
        .await
        .expect_err("no url");
    assert_eq!(invalid.kind(), ErrorKind::Invalid);
    assert!(
        invalid
            .problem()
            .and_then(|p| p.errors.as_ref())
            .is_some_and(|e| e.iter().any(|f| f.field == "url")),
        "{invalid}"
    );
}
