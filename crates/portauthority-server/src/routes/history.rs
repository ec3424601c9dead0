use super::{ApiResult, Problems};
use crate::AppState;
use crate::auth::Caller;
use crate::extract::{ApiJson, Keyed, Query, job_id, task_id};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use portauthority_core::api::{EventEnvelope, HistoryPage, NoteRequest};
use portauthority_core::{Command, JobId, TaskId};
use portauthority_store::{Answer, HistoryScope};

async fn read(
    state: &AppState,
    caller: &Caller,
    of: HistoryScope,
    raw: Option<String>,
) -> ApiResult<HistoryPage> {
    let mut q = Query::parse(raw.as_deref())?;
    let after = q.number(&["after"], 0, i64::MAX as u64)?.unwrap_or(0) as i64;
    let size = q.number(&["size"], 1, 1000)?.unwrap_or(100) as u32;
    q.finish("after, size")?;
    // One extra row tells whether there is more to read.
    let mut events = state
        .store
        .history_in(&caller.scope, of, after, size + 1)
        .await?;
    let more = events.len() > size as usize;
    events.truncate(size as usize);
    let next_after = if more {
        events.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Json(HistoryPage { events, next_after }))
}

async fn note(
    state: &AppState,
    caller: &Caller,
    job_id: JobId,
    task_id: Option<TaskId>,
    Keyed {
        body: ApiJson(body),
        once,
    }: Keyed<ApiJson<NoteRequest>>,
) -> ApiResult<EventEnvelope> {
    let note = body.into_note(job_id, task_id, &state.limits)?;
    match super::run(state, caller, once, Command::AddNote(note)).await? {
        Answer::Note(event) => Ok(Json(EventEnvelope { event })),
        other => Err(super::unexpected(other)),
    }
}

/// Read a job's history: its own events and those of all its tasks, in `seq` order.
#[utoipa::path(get, path = "/v1/jobs/{id}/history", operation_id = "job_history", tag = "history",
    params(("id" = String, Path, description = "job id (UUID)"),
        ("after" = Option<i64>, Query, minimum = 0, description = "return events with seq greater than this"),
        ("size" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100")),
    responses((status = 200, description = "a page of history events", body = HistoryPage), Problems))]
pub async fn job_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<HistoryPage> {
    let id = job_id(&id)?;
    read(&state, &caller, HistoryScope::Job(id), raw).await
}

/// Append a note to a job's history.
#[utoipa::path(post, path = "/v1/jobs/{id}/history", operation_id = "add_job_note", tag = "history", request_body = NoteRequest,
    params(("id" = String, Path, description = "job id (UUID)")),
    responses((status = 200, description = "the event appended", body = EventEnvelope), Problems))]
pub async fn job_note(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Keyed<ApiJson<NoteRequest>>,
) -> ApiResult<EventEnvelope> {
    let id = job_id(&id)?;
    note(&state, &caller, id, None, body).await
}

/// Read one task's history, starting with its "task added" event.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks/{task_id}/history", operation_id = "task_history", tag = "history",
    params(("id" = String, Path, description = "job id (UUID)"), ("task_id" = String, Path, description = "task id (UUID)"),
        ("after" = Option<i64>, Query, minimum = 0, description = "return events with seq greater than this"),
        ("size" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100")),
    responses((status = 200, description = "a page of history events", body = HistoryPage), Problems))]
pub async fn task_history(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, tid)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<HistoryPage> {
    let id = job_id(&id)?;
    let tid = task_id(id, &tid)?;
    read(&state, &caller, HistoryScope::Task(id, tid), raw).await
}

/// Append a note to a task's history.
#[utoipa::path(post, path = "/v1/jobs/{id}/tasks/{task_id}/history", operation_id = "add_task_note", tag = "history", request_body = NoteRequest,
    params(("id" = String, Path, description = "job id (UUID)"), ("task_id" = String, Path, description = "task id (UUID)")),
    responses((status = 200, description = "the event appended", body = EventEnvelope), Problems))]
pub async fn task_note(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, tid)): Path<(String, String)>,
    body: Keyed<ApiJson<NoteRequest>>,
) -> ApiResult<EventEnvelope> {
    let id = job_id(&id)?;
    let tid = task_id(id, &tid)?;
    note(&state, &caller, id, Some(tid), body).await
}
