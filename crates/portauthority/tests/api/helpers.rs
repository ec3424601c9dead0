//! Spawning the app for a test, and small request helpers.

use portauthority_client::Client;
use portauthority_core::api::{CreateJobRequest, CreateTaskRequest, Job, Task};
use portauthority_core::{JobId, Status, TaskId};
use portauthority_server::{App, Config};
use portauthority_testkit::postgres::DATABASE_URL_VAR;
use serde_json::Value;
use std::net::SocketAddr;
use tempfile::TempDir;
use tokio::sync::oneshot;

/// A running server with its own fresh database, stopped when dropped.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: Client,
    pub http: reqwest::Client,
    pub database_url: String,
    /// Holds the SQLite file; removed with the app.
    _dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestApp {
    /// A server on a fresh database, without the worker loops (the relay, the sweeper,
    /// webhooks): most tests are about requests, and on PostgreSQL each app's loops would
    /// add transactions of their own to every write. Tests of the loops use `spawn_with`,
    /// which keeps them.
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|c| c.worker = None).await
    }

    /// A server on a fresh database, with the config adjusted by `tweak`.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = fresh_database_url(&dir).await;
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            database_url: database_url.clone(),
            ..Config::default()
        };
        tweak(&mut config);
        let app = App::build(config).await.expect("app builds");
        let addr = app.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        let base = format!("http://{addr}");
        TestApp {
            addr,
            client: Client::new(base),
            http: portauthority_client::http_builder()
                .build()
                .expect("an HTTP client"),
            database_url,
            _dir: dir,
            shutdown: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a JSON body and returns status and parsed body (Null when empty).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res = rb.send().await.expect("request sent");
        let status = res.status().as_u16();
        let bytes = res.bytes().await.expect("body read");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    /// Creates a job of `namespace` with `n` tasks and returns it with its tasks.
    pub async fn job_with_tasks(&self, namespace: &str, n: usize) -> (Job, Vec<Task>) {
        let job = self
            .client
            .create_job(&job_request(namespace, "build"))
            .await
            .expect("job created");
        let tasks = if n == 0 {
            Vec::new()
        } else {
            self.client
                .add_tasks(job.id, (0..n).map(|_| task_request("step")).collect())
                .await
                .expect("tasks added")
        };
        (job, tasks)
    }

    pub async fn set(&self, job: JobId, task: TaskId, status: Status) -> Task {
        self.client
            .set_task(job, task, status)
            .await
            .expect("status set")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // A PostgreSQL scratch database is dropped with the app (on its own thread: Drop
        // cannot await, and the test's runtime may be shutting down).
        if self.database_url.starts_with("postgres")
            && let Ok(admin) = std::env::var(DATABASE_URL_VAR)
        {
            let url = self.database_url.clone();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    let _ = rt.block_on(portauthority_testkit::postgres::drop_scratch_database(
                        &admin, &url,
                    ));
                }
            })
            .join();
        }
    }
}

/// The store the suite runs against: SQLite unless `PORTAUTHORITY_TEST_STORE=postgres`,
/// in which case every test gets a new database on `PORTAUTHORITY_TEST_DATABASE_URL`.
pub async fn fresh_database_url(dir: &TempDir) -> String {
    match std::env::var("PORTAUTHORITY_TEST_STORE").as_deref() {
        Ok("postgres") => {
            let admin = std::env::var(DATABASE_URL_VAR)
                .expect("PORTAUTHORITY_TEST_STORE=postgres needs PORTAUTHORITY_TEST_DATABASE_URL");
            portauthority_testkit::postgres::scratch_database(&admin, "pa_test")
                .await
                .expect("scratch database created")
        }
        _ => format!("sqlite://{}", dir.path().join("test.db").display()),
    }
}

pub fn job_request(namespace: &str, job_type: &str) -> CreateJobRequest {
    CreateJobRequest {
        job_type: Some(job_type.into()),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

pub fn task_request(task_type: &str) -> CreateTaskRequest {
    CreateTaskRequest {
        task_type: Some(task_type.into()),
        namespace: Some("com.shipyard.tasks".into()),
        ..Default::default()
    }
}

/// Asserts a problem document with this status.
pub fn assert_problem(status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "unexpected status; body: {body}");
    assert_eq!(
        body["status"], expected,
        "problem status field; body: {body}"
    );
    assert!(
        body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
        "problem shape: {body}"
    );
    assert!(
        body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "every problem carries its request id: {body}"
    );
}
