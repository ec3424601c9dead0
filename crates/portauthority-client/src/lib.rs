//! A typed client for the Port Authority HTTP API, used by the CLI, the tests and the load
//! generator.
//!
//! Every method maps a non-2xx response to [`Error::Api`] carrying the server's RFC 9457
//! problem document. The watch streams (Server-Sent Events) are typed streams that
//! reconnect where they left off: see [`Client::watch_job`] and [`Client::watch`].

mod watch;

pub use watch::{RECONNECT_ATTEMPTS, WatchEvent, WatchStream};

use portauthority_core::api::{
    CreateJobRequest, CreateTaskRequest, CreateTasksRequest, EventEnvelope, HeartbeatRequest,
    HistoryPage, Job, JobEnvelope, JobPage, NoteRequest, Problem, SetJobStatusRequest,
    SetTaskStatusRequest, Task, TaskEnvelope, TaskPage, TaskStatusBatchRequest,
    TaskStatusBatchResponse, TaskStatusUpdateItem, TasksEnvelope,
};
use portauthority_core::{JobId, Status, TaskId};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request did not get an HTTP response (connection refused, reset, timeout).
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server answered with an error status.
    #[error("{status}: {}", problem.as_ref().map(|p| p.detail.as_str()).unwrap_or("(no problem document)"))]
    Api {
        status: StatusCode,
        problem: Option<Problem>,
    },
    /// The server sent something this client cannot read.
    #[error("unreadable response: {0}")]
    Decode(String),
}

impl Error {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api { status, .. } => Some(*status),
            Error::Transport(_) | Error::Decode(_) => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Where every reqwest client of Port Authority starts, this crate's own and the worker's
/// webhook sender alike: a builder, with ring installed as the process's rustls crypto
/// provider. reqwest is built without a provider of its own (the workspace keeps one, the
/// ring that async-nats uses), and a client built before one is installed panics.
pub fn http_builder() -> reqwest::ClientBuilder {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Err: another provider was installed first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

/// A connection to one Port Authority server. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// `base` is the server's root URL, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: impl Into<String>) -> Client {
        let http = http_builder()
            .pool_max_idle_per_host(1024)
            .build()
            .expect("a default reqwest client builds");
        Client::with_http(http, base)
    }

    pub fn with_http(http: reqwest::Client, base: impl Into<String>) -> Client {
        Client {
            http,
            base: base.into().trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    /// Sends `Authorization: Bearer TOKEN` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A request builder for any path, authorised like the typed calls.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    async fn send<T: DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> Result<T> {
        let res = rb.send().await?;
        let status = res.status();
        if status.is_success() {
            Ok(res.json().await?)
        } else {
            let problem = res.json::<Problem>().await.ok();
            Err(Error::Api { status, problem })
        }
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.send(self.request(method, path).json(body)).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T> {
        self.send(self.request(Method::GET, path).query(query))
            .await
    }

    pub async fn create_job(&self, req: &CreateJobRequest) -> Result<Job> {
        let env: JobEnvelope = self.call(Method::POST, "/v1/jobs", req).await?;
        Ok(env.job)
    }

    pub async fn get_job(&self, id: JobId) -> Result<Job> {
        let env: JobEnvelope = self.get(&format!("/v1/jobs/{id}"), &[]).await?;
        Ok(env.job)
    }

    /// Lists jobs; `query` holds filters and paging as the API names them
    /// (`namespace`, `status`, `meta.KEY`, `page`, `size`, `sort`, `order`, ...).
    pub async fn list_jobs(&self, query: &[(&str, String)]) -> Result<JobPage> {
        self.get("/v1/jobs", query).await
    }

    pub async fn set_job_status(
        &self,
        id: JobId,
        status: Status,
        reason: Option<&str>,
    ) -> Result<Job> {
        let body = SetJobStatusRequest {
            status,
            reason: reason.map(str::to_owned),
        };
        let env: JobEnvelope = self
            .call(Method::PUT, &format!("/v1/jobs/{id}/status"), &body)
            .await?;
        Ok(env.job)
    }

    pub async fn add_task(&self, job: JobId, req: &CreateTaskRequest) -> Result<Task> {
        let env: TaskEnvelope = self
            .call(Method::POST, &format!("/v1/jobs/{job}/tasks"), req)
            .await?;
        Ok(env.task)
    }

    pub async fn add_tasks(&self, job: JobId, tasks: Vec<CreateTaskRequest>) -> Result<Vec<Task>> {
        let body = CreateTasksRequest { tasks };
        let env: TasksEnvelope = self
            .call(Method::POST, &format!("/v1/jobs/{job}/tasks/batch"), &body)
            .await?;
        Ok(env.tasks)
    }

    pub async fn get_task(&self, job: JobId, task: TaskId) -> Result<Task> {
        let env: TaskEnvelope = self
            .get(&format!("/v1/jobs/{job}/tasks/{task}"), &[])
            .await?;
        Ok(env.task)
    }

    pub async fn list_tasks(&self, job: JobId, query: &[(&str, String)]) -> Result<TaskPage> {
        self.get(&format!("/v1/jobs/{job}/tasks"), query).await
    }

    /// Every task of a job, page by page.
    pub async fn all_tasks(&self, job: JobId) -> Result<Vec<Task>> {
        let mut out = Vec::new();
        for page in 1.. {
            let p = self
                .list_tasks(job, &[("page", page.to_string()), ("size", "1000".into())])
                .await?;
            let n = p.tasks.len();
            out.extend(p.tasks);
            if n < 1000 {
                break;
            }
        }
        Ok(out)
    }

    pub async fn set_task_status(
        &self,
        job: JobId,
        task: TaskId,
        req: &SetTaskStatusRequest,
    ) -> Result<Task> {
        let env: TaskEnvelope = self
            .call(
                Method::PUT,
                &format!("/v1/jobs/{job}/tasks/{task}/status"),
                req,
            )
            .await?;
        Ok(env.task)
    }

    /// Shorthand for a plain status change.
    pub async fn set_task(&self, job: JobId, task: TaskId, status: Status) -> Result<Task> {
        let req = SetTaskStatusRequest {
            status,
            reason: None,
            error: None,
            progress: None,
        };
        self.set_task_status(job, task, &req).await
    }

    pub async fn update_tasks(
        &self,
        updates: Vec<TaskStatusUpdateItem>,
    ) -> Result<TaskStatusBatchResponse> {
        let body = TaskStatusBatchRequest { updates };
        self.call(Method::POST, "/v1/tasks/status", &body).await
    }

    pub async fn heartbeat(
        &self,
        job: JobId,
        task: TaskId,
        req: &HeartbeatRequest,
    ) -> Result<Task> {
        let env: TaskEnvelope = self
            .call(
                Method::POST,
                &format!("/v1/jobs/{job}/tasks/{task}/heartbeat"),
                req,
            )
            .await?;
        Ok(env.task)
    }

    pub async fn job_history(&self, job: JobId, after: i64, size: u32) -> Result<HistoryPage> {
        self.get(
            &format!("/v1/jobs/{job}/history"),
            &[("after", after.to_string()), ("size", size.to_string())],
        )
        .await
    }

    pub async fn task_history(
        &self,
        job: JobId,
        task: TaskId,
        after: i64,
        size: u32,
    ) -> Result<HistoryPage> {
        self.get(
            &format!("/v1/jobs/{job}/tasks/{task}/history"),
            &[("after", after.to_string()), ("size", size.to_string())],
        )
        .await
    }

    pub async fn add_note(
        &self,
        job: JobId,
        task: Option<TaskId>,
        note: &NoteRequest,
    ) -> Result<EventEnvelope> {
        let path = match task {
            Some(t) => format!("/v1/jobs/{job}/tasks/{t}/history"),
            None => format!("/v1/jobs/{job}/history"),
        };
        self.call(Method::POST, &path, note).await
    }
}
