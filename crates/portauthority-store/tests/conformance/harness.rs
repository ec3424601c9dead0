//! Running a scenario against each store, and the small helpers scenarios share.

use portauthority_core::api::{
    CreateJobRequest, CreateTaskRequest, HistoryEvent, Job, NewJob, NewTask, Task,
};
use portauthority_core::{Counters, JobId, Limits, Status, TaskChange, TaskId, Timestamp};
use portauthority_store::{HistoryScope, Paging, Store, StoreError, TaskFilter, TaskUpdate};
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;

/// Runs `scenario` against a SQLite store on a fresh file in a temporary directory.
pub async fn run_sqlite<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("conformance.db").display());
    let store = portauthority_store::open(&url)
        .await
        .expect("the SQLite store opens");
    assert_eq!(store.kind(), "sqlite");
    let outcome = run(store, scenario).await;
    drop(dir);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `scenario` against a PostgreSQL store on a scratch database of its own, dropped
/// afterwards. Skips (and says so) when no server is configured.
pub async fn run_postgres<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(admin_url) = portauthority_testkit::postgres::admin_url() else {
        return;
    };
    let url = portauthority_testkit::postgres::scratch_database(&admin_url, "pa_conf")
        .await
        .expect("a scratch database can be created");
    let store = portauthority_store::open(&url)
        .await
        .expect("the PostgreSQL store opens");
    assert_eq!(store.kind(), "postgres");
    let outcome = run(store, scenario).await;
    drop_database(&admin_url, &url).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Runs the scenario on its own task so that a failed assertion still lets the store close
/// and the database be dropped; returns the panic to re-raise.
async fn run<F, Fut>(
    store: Arc<dyn Store>,
    scenario: F,
) -> Result<(), Box<dyn std::any::Any + Send>>
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let outcome = tokio::spawn(scenario(store.clone())).await;
    store.close().await;
    outcome.map_err(|e| match e.try_into_panic() {
        Ok(panic) => panic,
        Err(e) => Box::new(format!("scenario task failed: {e}")),
    })
}

pub async fn drop_database(admin_url: &str, url: &str) {
    portauthority_testkit::postgres::drop_scratch_database(admin_url, url)
        .await
        .expect("drop the scratch database");
}

// ---------------------------------------------------------------------------------------
// Building validated inputs.

pub fn limits() -> Limits {
    Limits::default()
}

/// A job request with a client-supplied id and the required fields filled in.
pub fn job_req() -> CreateJobRequest {
    CreateJobRequest {
        id: Some(JobId::from_uuid(uuid::Uuid::now_v7())),
        job_type: Some("conformance.job".into()),
        namespace: Some("com.example.conformance".into()),
        ..CreateJobRequest::default()
    }
}

/// A task request with a client-supplied id and the required fields filled in.
pub fn task_req() -> CreateTaskRequest {
    CreateTaskRequest {
        id: Some(TaskId::from_uuid(uuid::Uuid::now_v7())),
        task_type: Some("conformance.task".into()),
        namespace: Some("com.example.conformance.tasks".into()),
        ..CreateTaskRequest::default()
    }
}

pub fn new_job(req: CreateJobRequest) -> NewJob {
    req.validate(&limits(), &portauthority_store::system::SystemIds)
        .expect("a valid job request")
}

pub fn new_task(req: CreateTaskRequest) -> NewTask {
    req.validate(&limits(), &portauthority_store::system::SystemIds)
        .expect("a valid task request")
}

pub fn new_tasks(reqs: Vec<CreateTaskRequest>) -> Vec<NewTask> {
    reqs.into_iter().map(new_task).collect()
}

// ---------------------------------------------------------------------------------------
// Store calls that are expected to succeed.

/// Creates a job that did not exist.
pub async fn create(store: &Arc<dyn Store>, req: CreateJobRequest) -> Job {
    let created = store.create_job(new_job(req)).await.expect("create_job");
    assert!(created.created, "a new id creates a job");
    created.value
}

/// Creates a job with `n` pending tasks and returns it with their ids, in request order.
pub async fn create_with_tasks(
    store: &Arc<dyn Store>,
    mut req: CreateJobRequest,
    n: usize,
) -> (Job, Vec<TaskId>) {
    let tasks: Vec<CreateTaskRequest> = (0..n).map(|_| task_req()).collect();
    let ids = tasks.iter().map(|t| t.id.expect("task id")).collect();
    req.tasks = Some(tasks);
    (create(store, req).await, ids)
}

pub async fn add(store: &Arc<dyn Store>, job_id: JobId, reqs: Vec<CreateTaskRequest>) -> Vec<Task> {
    store
        .add_tasks(job_id, new_tasks(reqs))
        .await
        .expect("add_tasks")
}

pub async fn get_job(store: &Arc<dyn Store>, id: JobId) -> Job {
    store.get_job(id).await.expect("get_job")
}

pub async fn get_task(store: &Arc<dyn Store>, job_id: JobId, task_id: TaskId) -> Task {
    store.get_task(job_id, task_id).await.expect("get_task")
}

/// Applies one update through the batch call and returns its own result.
pub async fn apply(store: &Arc<dyn Store>, update: TaskUpdate) -> Result<Task, StoreError> {
    let mut results = store
        .update_tasks(vec![update])
        .await
        .expect("update_tasks as a whole");
    assert_eq!(results.len(), 1, "one result per update");
    results.pop().expect("one result")
}

/// Sets a task's status (no reason, error or progress).
pub async fn set_task(
    store: &Arc<dyn Store>,
    job_id: JobId,
    task_id: TaskId,
    to: Status,
) -> Result<Task, StoreError> {
    apply(store, TaskUpdate::status(job_id, task_id, to)).await
}

/// A status change with every optional part.
pub fn status_update(
    job_id: JobId,
    task_id: TaskId,
    to: Status,
    reason: Option<&str>,
    error: Option<&str>,
    progress: Option<portauthority_core::api::Progress>,
) -> TaskUpdate {
    TaskUpdate {
        job_id,
        task_id,
        change: TaskChange::Status {
            to,
            reason: reason.map(str::to_owned),
            error: error.map(str::to_owned),
            progress,
        },
    }
}

/// Every task of a job, in the default order.
pub async fn all_tasks(store: &Arc<dyn Store>, job_id: JobId) -> Vec<Task> {
    let page = store
        .list_tasks(
            job_id,
            TaskFilter::default(),
            Paging {
                size: 1000,
                ..Paging::default()
            },
        )
        .await
        .expect("list_tasks");
    assert_eq!(
        page.total_items as usize,
        page.items.len(),
        "one page holds them all"
    );
    page.items
}

/// A whole history, read in pages of `page` events.
pub async fn history_paged(
    store: &Arc<dyn Store>,
    scope: HistoryScope,
    page: u32,
) -> Vec<HistoryEvent> {
    let mut out: Vec<HistoryEvent> = Vec::new();
    let mut after = 0;
    loop {
        let events = store.history(scope, after, page).await.expect("history");
        assert!(
            events.len() <= page as usize,
            "a page holds at most `size` events"
        );
        let Some(last) = events.last() else { break };
        after = last.seq;
        let full = events.len() == page as usize;
        out.extend(events);
        if !full {
            break;
        }
    }
    out
}

/// A whole history in one read.
pub async fn history(store: &Arc<dyn Store>, scope: HistoryScope) -> Vec<HistoryEvent> {
    store.history(scope, 0, 1000).await.expect("history")
}

/// Asserts the job's stored counters equal a recount of its tasks, and returns the job.
pub async fn assert_counters_match(store: &Arc<dyn Store>, job_id: JobId) -> Job {
    let job = get_job(store, job_id).await;
    let tasks = all_tasks(store, job_id).await;
    let recount = Counters::recount(tasks.iter().map(|t| t.status));
    assert_eq!(
        job.tasks, recount,
        "stored counters equal a recount of job {job_id}'s tasks"
    );
    assert!(
        job.tasks.is_consistent(),
        "counters add up: {:?}",
        job.tasks
    );
    job
}

/// Asserts `seq` strictly increases along `events`.
pub fn assert_increasing(events: &[HistoryEvent]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "seq strictly increases: {} then {}",
            pair[0].seq,
            pair[1].seq
        );
    }
}

/// Serialized JSON: an exact comparison for types that hold raw JSON (no `PartialEq`).
pub fn json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("serializable")
}

/// Asserts `t` lies in `[before, after]`.
pub fn assert_between(t: Timestamp, before: Timestamp, after: Timestamp, what: &str) {
    assert!(
        before <= t && t <= after,
        "{what} {t} is between {before} and {after}"
    );
}

/// Asserts a result is the given `StoreError` variant.
macro_rules! assert_err {
    ($result:expr, $variant:ident) => {
        match $result {
            Err(portauthority_store::StoreError::$variant(_)) => {}
            other => panic!(
                "expected StoreError::{}, got {:?}",
                stringify!($variant),
                other
            ),
        }
    };
}
pub(crate) use assert_err;

// ---------------------------------------------------------------------------------------
// Scenarios that need more than the trait: the store's clock, its database URL.

/// What a `conformance_ctx!` scenario gets besides the store.
#[derive(Clone)]
pub struct Ctx {
    /// The store's clock: starts at the real time, moves only when told.
    pub clock: Arc<portauthority_core::ManualClock>,
    /// The database the store runs on.
    pub url: String,
}

impl Ctx {
    pub fn clock_now(&self) -> portauthority_core::Timestamp {
        portauthority_core::Clock::now(self.clock.as_ref())
    }
}

fn manual_env() -> (
    portauthority_core::Env,
    Arc<portauthority_core::ManualClock>,
) {
    let now = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    let clock = Arc::new(portauthority_core::ManualClock::new(now));
    let env = portauthority_core::Env::new(
        clock.clone(),
        Arc::new(portauthority_store::system::SystemIds),
    );
    (env, clock)
}

pub async fn run_sqlite_ctx<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<dyn Store>, Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("conformance.db").display());
    let (env, clock) = manual_env();
    let store = portauthority_store::open_with(&url, env)
        .await
        .expect("the SQLite store opens");
    let ctx = Ctx { clock, url };
    let outcome = run(store, |s| scenario(s, ctx)).await;
    drop(dir);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

pub async fn run_postgres_ctx<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<dyn Store>, Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(admin_url) = portauthority_testkit::postgres::admin_url() else {
        return;
    };
    let url = portauthority_testkit::postgres::scratch_database(&admin_url, "pa_conf")
        .await
        .expect("a scratch database can be created");
    let (env, clock) = manual_env();
    let store = portauthority_store::open_with(&url, env)
        .await
        .expect("the PostgreSQL store opens");
    let ctx = Ctx {
        clock,
        url: url.clone(),
    };
    let outcome = run(store, |s| scenario(s, ctx)).await;
    drop_database(&admin_url, &url).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
