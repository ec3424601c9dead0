//! A typed client for the Port Authority HTTP API, used by the CLI, the tests and the load
//! generator.
//!
//! One method per endpoint of the API (jobs, tasks, batch status, heartbeats, history and
//! notes, webhooks and their deliveries, health). Every method maps a non-2xx response to
//! [`Error::Api`] carrying the server's RFC 9457 problem document; [`Error::kind`] sorts
//! failures into what a caller acts on (not found, conflict, invalid, unavailable, ...).
//! [`Client::with_token`] authorises every request with a bearer token. The watch streams
//! (Server-Sent Events) are typed streams that reconnect where they left off: see
//! [`Client::watch_job`] and [`Client::watch`].

mod query;
mod watch;
mod webhooks;

pub use query::{JobQuery, PageQuery, TaskQuery};
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
    /// The request did not get an HTTP response (connection refused, reset, timeout), or
    /// a success response could not be read.
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server answered with an error status. `problem` is its RFC 9457 document, or
    /// `None` when the body was not one (a proxy's error page, say).
    #[error("{}", api_message(*status, problem.as_ref()))]
    Api {
        status: StatusCode,
        problem: Option<Problem>,
    },
    /// The server sent something this client cannot read.
    #[error("unreadable response: {0}")]
    Decode(String),
}

/// What went wrong, in the terms a caller acts on. The HTTP statuses behind each kind are
/// the API's (docs/api.md); a caller that needs more looks at [`Error::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404: no such job, task or webhook (or not visible to this token).
    NotFound,
    /// 409: the change conflicts with the current state.
    Conflict,
    /// 400, 413, 422: the request is malformed, too large or invalid.
    Invalid,
    /// 401, 403: no token, a bad one, or one whose role may not do this.
    Unauthorized,
    /// No answer (connection refused, timeout), or 408, 429, 502, 503, 504: try again later.
    Unavailable,
    /// Anything else: a 500, an answer that could not be read.
    Other,
}

impl Error {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api { status, .. } => Some(*status),
            Error::Transport(_) | Error::Decode(_) => None,
        }
    }

    /// The server's problem document, when it sent one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Error::Api { problem, .. } => problem.as_ref(),
            Error::Transport(_) | Error::Decode(_) => None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Transport(e) if e.is_connect() || e.is_timeout() => ErrorKind::Unavailable,
            // A request that never got a status (reset, closed mid-answer) is a lost
            // connection; one that got a status but an unreadable body is not.
            Error::Transport(e) if e.is_request() && e.status().is_none() => ErrorKind::Unavailable,
            Error::Transport(_) | Error::Decode(_) => ErrorKind::Other,
            Error::Api { status, .. } => match status.as_u16() {
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                400 | 413 | 422 => ErrorKind::Invalid,
                401 | 403 => ErrorKind::Unauthorized,
                408 | 429 | 502 | 503 | 504 => ErrorKind::Unavailable,
                _ => ErrorKind::Other,
            },
        }
    }
}

/// `404 Not Found: job ... not found`: the status, then the problem's detail when there is one.
fn api_message(status: StatusCode, problem: Option<&Problem>) -> String {
    match problem {
        Some(p) => format!("{} {}: {}", status.as_u16(), p.title, p.detail),
        None => format!("{status} (the answer was not a problem document)"),
    }
}

pub type Result<T> = std::result::Result<T, Error>;

const NO_QUERY: &[(&str, &str)] = &[];

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

    /// Sends a request; a non-2xx answer becomes [`Error::Api`].
    async fn answer(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let res = rb.send().await?;
        let status = res.status();
        if status.is_success() {
            Ok(res)
        } else {
            let problem = res.json::<Problem>().await.ok();
            Err(Error::Api { status, problem })
        }
    }

    async fn send<T: DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> Result<T> {
        Ok(self.answer(rb).await?.json().await?)
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.send(self.request(method, path).json(body)).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(impl Serialize, impl Serialize)],
    ) -> Result<T> {
        self.send(self.request(Method::GET, path).query(query))
            .await
    }

    pub async fn create_job(&self, req: &CreateJobRequest) -> Result<Job> {
        let env: JobEnvelope = self.call(Method::POST, "/v1/jobs", req).await?;
        Ok(env.job)
    }

    pub async fn get_job(&self, id: JobId) -> Result<Job> {
        let env: JobEnvelope = self.get(&format!("/v1/jobs/{id}"), NO_QUERY).await?;
        Ok(env.job)
    }

    /// One page of jobs matching `query`.
    pub async fn list_jobs(&self, query: &JobQuery) -> Result<JobPage> {
        self.get("/v1/jobs", &query.pairs()).await
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
            .get(&format!("/v1/jobs/{job}/tasks/{task}"), NO_QUERY)
            .await?;
        Ok(env.task)
    }

    /// One page of a job's tasks matching `query`.
    pub async fn list_tasks(&self, job: JobId, query: &TaskQuery) -> Result<TaskPage> {
        self.get(&format!("/v1/jobs/{job}/tasks"), &query.pairs())
            .await
    }

    /// Every task of a job, page by page.
    pub async fn all_tasks(&self, job: JobId) -> Result<Vec<Task>> {
        let mut out = Vec::new();
        for page in 1.. {
            let query = TaskQuery {
                paging: PageQuery {
                    page: Some(page),
                    size: Some(1000),
                    ..PageQuery::default()
                },
                ..TaskQuery::default()
            };
            let p = self.list_tasks(job, &query).await?;
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

    /// `GET /healthz`: the process is up.
    pub async fn healthz(&self) -> Result<serde_json::Value> {
        self.get("/healthz", NO_QUERY).await
    }

    /// `GET /readyz`: the server can reach its store (503 [`ErrorKind::Unavailable`] when not).
    pub async fn readyz(&self) -> Result<serde_json::Value> {
        self.get("/readyz", NO_QUERY).await
    }
}
