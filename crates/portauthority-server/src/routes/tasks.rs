use super::{ApiResult, Problems, page_info};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, Keyed, OptionalJson, Query, job_id, task_id};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use portauthority_core::api::{
    CreateTaskRequest, CreateTasksRequest, HeartbeatRequest, NewTask, SetTaskStatusRequest,
    SortField, SortOrder, Task, TaskEnvelope, TaskPage, TaskStatusBatchRequest,
    TaskStatusBatchResponse, TaskStatusResult, TasksEnvelope, validate_tasks,
};
use portauthority_core::{AddTasks, Command, JobId};
use portauthority_store::{Answer, Cursor, Once, SortValue, StoreError, TaskFilter, TaskUpdate};

/// Add a task to a job. Idempotent on the task id.
#[utoipa::path(post, path = "/v1/jobs/{id}/tasks", operation_id = "add_task", tag = "tasks", request_body = CreateTaskRequest,
    params(("id" = String, Path, description = "job id (UUID)")),
    responses((status = 200, description = "the task", body = TaskEnvelope), Problems))]
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Keyed {
        body: ApiJson(body),
        once,
    }: Keyed<ApiJson<CreateTaskRequest>>,
) -> ApiResult<TaskEnvelope> {
    let id = job_id(&id)?;
    let task = body.validate(&state.limits, state.env.ids.as_ref())?;
    let mut tasks = add_tasks(&state, &caller, once, id, vec![task]).await?;
    let task = tasks
        .pop()
        .ok_or_else(|| ApiError::Internal("add_tasks returned no task".into()))?;
    Ok(Json(TaskEnvelope { task }))
}

async fn add_tasks(
    state: &AppState,
    caller: &Caller,
    once: Option<Once>,
    job_id: JobId,
    tasks: Vec<NewTask>,
) -> Result<Vec<Task>, ApiError> {
    match super::run(
        state,
        caller,
        once,
        Command::AddTasks(AddTasks { job_id, tasks }),
    )
    .await?
    {
        Answer::Tasks(tasks) => Ok(tasks),
        other => Err(super::unexpected(other)),
    }
}

/// Add up to 1000 tasks to a job, all or none.
#[utoipa::path(post, path = "/v1/jobs/{id}/tasks/batch", operation_id = "add_tasks", tag = "tasks", request_body = CreateTasksRequest,
    params(("id" = String, Path, description = "job id (UUID)")),
    responses((status = 200, description = "the tasks", body = TasksEnvelope), Problems))]
pub async fn add_batch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Keyed {
        body: ApiJson(body),
        once,
    }: Keyed<ApiJson<CreateTasksRequest>>,
) -> ApiResult<TasksEnvelope> {
    let id = job_id(&id)?;
    if body.tasks.is_empty() {
        return Err(ApiError::invalid_field(
            "tasks",
            "must hold at least one task",
        ));
    }
    let tasks = validate_tasks(body.tasks, "tasks", &state.limits, state.env.ids.as_ref())?;
    Ok(Json(TasksEnvelope {
        tasks: add_tasks(&state, &caller, once, id, tasks).await?,
    }))
}

/// Get a task of a job.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks/{task_id}", operation_id = "get_task", tag = "tasks",
    params(("id" = String, Path, description = "job id (UUID)"), ("task_id" = String, Path, description = "task id (UUID)")),
    responses((status = 200, description = "the task", body = TaskEnvelope), Problems))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, tid)): Path<(String, String)>,
) -> ApiResult<TaskEnvelope> {
    let id = job_id(&id)?;
    let tid = task_id(id, &tid)?;
    Ok(Json(TaskEnvelope {
        task: state.store.get_task_in(&caller.scope, id, tid).await?,
    }))
}

/// List a job's tasks, filtered, sorted and paged.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks", operation_id = "list_tasks", tag = "tasks",
    params(
        ("id" = String, Path, description = "job id (UUID)"),
        ("namespace" = Option<String>, Query),
        ("type" = Option<String>, Query),
        ("status" = Option<String>, Query, pattern = r"^((pending|in_progress|inprogress|completed|failed|cancelled)(,(pending|in_progress|inprogress|completed|failed|cancelled))*)?$", description = "one status or several, comma-separated"),
        ("page" = Option<u64>, Query, minimum = 1, maximum = 4294967295.0, description = "1-based, default 1"),
        ("size" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 25"),
        ("sort" = Option<SortField>, Query, description = "start_time (default), end_time, created_at, updated_at, type, namespace, status"),
        ("order" = Option<SortOrder>, Query, description = "asc (default) or desc"),
        ("after" = Option<String>, Query, description = "keyset paging: the `next` cursor of the previous page"),
    ),
    responses((status = 200, description = "a page of tasks", body = TaskPage), Problems))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<TaskPage> {
    let id = job_id(&id)?;
    let mut q = Query::parse(raw.as_deref())?;
    let filter = TaskFilter {
        namespace: q.take(&["namespace"]),
        task_type: q.take(&["type"]),
        statuses: q.statuses()?,
    };
    let paging = q.paging()?;
    q.finish("namespace, type, status, page, size, sort, order, after")?;
    let page = state
        .store
        .list_tasks_in(&caller.scope, id, filter, paging.clone())
        .await?;
    Ok(Json(TaskPage {
        info: page_info(&page, &paging, |x| Cursor {
            value: SortValue::of_task(paging.sort, x),
            id: *x.id.as_uuid(),
        }),
        tasks: page.items,
    }))
}

/// Runs one task update and unwraps its single result.
async fn update_one(
    state: &AppState,
    caller: &Caller,
    once: Option<Once>,
    update: TaskUpdate,
) -> Result<Task, ApiError> {
    let cmd = Command::UpdateTasks(vec![update]);
    super::single_update(super::run(state, caller, once, cmd).await?)
}

/// Set a task's status. A terminal task set to the status it has is a no-op; a retry
/// (`failed` → `pending`/`in_progress`) adds one to `attempt` and reopens the job.
#[utoipa::path(put, path = "/v1/jobs/{id}/tasks/{task_id}/status", operation_id = "set_task_status", tag = "tasks", request_body = SetTaskStatusRequest,
    params(("id" = String, Path, description = "job id (UUID)"), ("task_id" = String, Path, description = "task id (UUID)")),
    responses((status = 200, description = "the task", body = TaskEnvelope), Problems))]
pub async fn set_status(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, tid)): Path<(String, String)>,
    ApiJson(body): ApiJson<SetTaskStatusRequest>,
) -> ApiResult<TaskEnvelope> {
    let id = job_id(&id)?;
    let tid = task_id(id, &tid)?;
    let update = body.into_update(id, tid, &state.limits)?;
    Ok(Json(TaskEnvelope {
        task: update_one(&state, &caller, None, update).await?,
    }))
}

/// Report that a task is alive, optionally with progress and a message.
#[utoipa::path(post, path = "/v1/jobs/{id}/tasks/{task_id}/heartbeat", operation_id = "heartbeat_task", tag = "tasks", request_body = HeartbeatRequest,
    params(("id" = String, Path, description = "job id (UUID)"), ("task_id" = String, Path, description = "task id (UUID)")),
    responses((status = 200, description = "the task", body = TaskEnvelope), Problems))]
pub async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, tid)): Path<(String, String)>,
    Keyed {
        body: OptionalJson(body),
        once,
    }: Keyed<OptionalJson<HeartbeatRequest>>,
) -> ApiResult<TaskEnvelope> {
    let id = job_id(&id)?;
    let tid = task_id(id, &tid)?;
    let update = body.into_update(id, tid, &state.limits)?;
    Ok(Json(TaskEnvelope {
        task: update_one(&state, &caller, once, update).await?,
    }))
}

/// Update the status of up to 1000 tasks across jobs. Each item succeeds or fails on its
/// own; `results` holds, in request order, the HTTP status each would have had alone.
#[utoipa::path(post, path = "/v1/tasks/status", operation_id = "set_task_statuses", tag = "tasks", request_body = TaskStatusBatchRequest,
    responses((status = 200, description = "one result per update, in order", body = TaskStatusBatchResponse), Problems))]
pub async fn set_status_batch(
    State(state): State<AppState>,
    caller: Caller,
    Keyed {
        body: ApiJson(body),
        once,
    }: Keyed<ApiJson<TaskStatusBatchRequest>>,
) -> ApiResult<TaskStatusBatchResponse> {
    if body.updates.len() > state.limits.batch_max {
        return Err(ApiError::invalid_field(
            "updates",
            format!("at most {} updates per request", state.limits.batch_max),
        ));
    }
    // Items that fail validation get their result now; the rest go to the store together.
    let mut results: Vec<Option<TaskStatusResult>> = Vec::with_capacity(body.updates.len());
    let mut valid: Vec<(usize, TaskUpdate)> = Vec::new();
    for (i, item) in body.updates.iter().enumerate() {
        match item.clone().into_update(&state.limits) {
            Ok(update) => {
                valid.push((i, update));
                results.push(None);
            }
            Err(e) => results.push(Some(item_result(
                item.job_id.clone(),
                item.task_id.clone(),
                Err(e.into()),
            ))),
        }
    }
    let (slots, updates): (Vec<usize>, Vec<TaskUpdate>) = valid.into_iter().unzip();
    let outcomes = if updates.is_empty() {
        Vec::new()
    } else {
        match super::run(&state, &caller, once, Command::UpdateTasks(updates)).await? {
            Answer::Updates(items) => items,
            other => return Err(super::unexpected(other)),
        }
    };
    for (slot, outcome) in slots.into_iter().zip(outcomes) {
        let item = &body.updates[slot];
        results[slot] = Some(item_result(
            item.job_id.clone(),
            item.task_id.clone(),
            outcome.map_err(|r| ApiError::from(StoreError::from(r))),
        ));
    }
    Ok(Json(TaskStatusBatchResponse {
        results: results.into_iter().flatten().collect(),
    }))
}

fn item_result(
    job_id: String,
    task_id: String,
    outcome: Result<Task, ApiError>,
) -> TaskStatusResult {
    match outcome {
        Ok(task) => TaskStatusResult {
            job_id,
            task_id,
            status: 200,
            task: Some(task),
            error: None,
        },
        Err(e) => {
            let problem = e.problem();
            TaskStatusResult {
                job_id,
                task_id,
                status: problem.status,
                task: None,
                error: Some(problem),
            }
        }
    }
}
