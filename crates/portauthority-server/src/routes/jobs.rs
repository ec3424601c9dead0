use super::{ApiResult, Problems, page_info};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, Keyed, Query, job_id};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use portauthority_core::Command;
use portauthority_core::Limits;
use portauthority_core::api::{
    CreateJobRequest, JobEnvelope, JobPage, SetJobStatusRequest, SortField, SortOrder,
};
use portauthority_core::validate::meta_filters;
use portauthority_store::{Answer, Cursor, JobFilter, SortValue};

/// Register a job, optionally with its first tasks (created atomically with it).
///
/// Idempotent: the same `id` with the same content returns the stored job; the same `id`
/// with other content is a conflict.
#[utoipa::path(post, path = "/v1/jobs", operation_id = "create_job", tag = "jobs", request_body = CreateJobRequest,
    responses((status = 200, description = "the job", body = JobEnvelope), Problems))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Keyed {
        body: ApiJson(body),
        once,
    }: Keyed<ApiJson<CreateJobRequest>>,
) -> ApiResult<JobEnvelope> {
    let job = body.validate(&state.limits, state.env.ids.as_ref())?;
    match super::run(&state, &caller, once, Command::CreateJob(job)).await? {
        Answer::Job { job, .. } => Ok(Json(JobEnvelope { job })),
        other => Err(super::unexpected(other)),
    }
}

/// Get a job by id.
#[utoipa::path(get, path = "/v1/jobs/{id}", operation_id = "get_job", tag = "jobs",
    params(("id" = String, Path, description = "job id (UUID)")),
    responses((status = 200, description = "the job", body = JobEnvelope), Problems))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<JobEnvelope> {
    let id = job_id(&id)?;
    Ok(Json(JobEnvelope {
        job: state.store.get_job_in(&caller.scope, id).await?,
    }))
}

/// List jobs, filtered, sorted and paged.
///
/// Besides the parameters below, `meta.<key>=<value>` keeps the jobs whose top-level meta
/// `key` equals the string `value`, or the number or boolean it spells; at most 16
/// different keys and 64 such parameters in all (configurable; beyond, 422). OpenAPI cannot name a family of parameters, so they are
/// described here only.
#[utoipa::path(get, path = "/v1/jobs", operation_id = "list_jobs", tag = "jobs",
    params(
        ("namespace" = Option<String>, Query),
        ("type" = Option<String>, Query),
        ("correlation_id" = Option<String>, Query, description = "also spelled `correllation_id` or `corellation_id`"),
        ("status" = Option<String>, Query, pattern = r"^((pending|in_progress|inprogress|completed|failed|cancelled)(,(pending|in_progress|inprogress|completed|failed|cancelled))*)?$", description = "one status or several, comma-separated"),
        ("page" = Option<u64>, Query, minimum = 1, maximum = 4294967295.0, description = "1-based, default 1"),
        ("size" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 25"),
        ("sort" = Option<SortField>, Query, description = "start_time (default), end_time, created_at, updated_at, type, namespace, status"),
        ("order" = Option<SortOrder>, Query, description = "asc (default) or desc"),
        ("after" = Option<String>, Query, description = "keyset paging: the `next` cursor of the previous page (same sort and order)"),
    ),
    responses((status = 200, description = "a page of jobs", body = JobPage), Problems))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<JobPage> {
    let mut q = Query::parse(raw.as_deref())?;
    let filter = job_filter(&mut q, &state.limits, caller.scope)?;
    let paging = q.paging()?;
    q.finish(
        "namespace, type, correlation_id, status, meta.<key>, page, size, sort, order, after",
    )?;
    let page = state.store.list_jobs(filter, paging.clone()).await?;
    Ok(Json(JobPage {
        info: page_info(&page, &paging, |x| Cursor {
            value: SortValue::of_job(paging.sort, x),
            id: *x.id.as_uuid(),
        }),
        jobs: page.items,
    }))
}

/// The job filters of a list (also those of a watch stream), validated, within the
/// caller's scope.
pub(crate) fn job_filter(
    q: &mut Query,
    limits: &Limits,
    scope: portauthority_core::auth::Scope,
) -> Result<JobFilter, ApiError> {
    Ok(JobFilter {
        scope,
        namespace: q.take(&["namespace"]),
        job_type: q.take(&["type"]),
        correlation_id: q.take(&["correlation_id", "correllation_id", "corellation_id"]),
        statuses: q.statuses()?,
        // Bounded here, before any query is built: each filter costs the store a probe.
        meta: meta_filters(q.take_prefixed("meta."), limits)?,
    })
}

/// Set a job's status explicitly: `completed` (only when no task is open), `failed` or
/// `cancelled` (open tasks become `cancelled`).
#[utoipa::path(put, path = "/v1/jobs/{id}/status", operation_id = "set_job_status", tag = "jobs", request_body = SetJobStatusRequest,
    params(("id" = String, Path, description = "job id (UUID)")),
    responses((status = 200, description = "the job", body = JobEnvelope), Problems))]
pub async fn set_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SetJobStatusRequest>,
) -> ApiResult<JobEnvelope> {
    let cmd = body.into_command(job_id(&id)?, &state.limits)?;
    match super::run(&state, &caller, None, Command::SetJobStatus(cmd)).await? {
        Answer::Job { job, .. } => Ok(Json(JobEnvelope { job })),
        other => Err(super::unexpected(other)),
    }
}
