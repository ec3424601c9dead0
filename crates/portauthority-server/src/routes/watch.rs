//! The watch streams (Server-Sent Events); the streaming itself is in `watch.rs`.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Query, job_id};
use crate::watch::Scope;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use portauthority_store::Position;

/// Watch one job: Server-Sent Events, one `change` event per change of the job or its tasks.
///
/// `id:` is a change-feed position: reconnect with `Last-Event-ID` (or `?last_event_id=`)
/// to continue right after it, with no gap and no repeat. `: keep-alive` comments at least
/// every 15 s; a client that falls too far behind gets `event: resync` (data: the position
/// to resume from) and the stream ends.
#[utoipa::path(get, path = "/v1/jobs/{id}/watch", tag = "watch",
    params(
        ("id" = String, Path, description = "job id (UUID)"),
        ("last_event_id" = Option<String>, Query, description = "resume after this position (the `Last-Event-ID` header wins)"),
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this position"),
    ),
    responses(
        (status = 200, description = "an event stream of `change` events, each `{\"job\", \"event\"}` (WatchChange)", content_type = "text/event-stream", body = String),
        super::Problems,
    ))]
pub async fn job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let mut q = Query::parse(raw.as_deref())?;
    let from = start(&mut q, &headers)?;
    q.finish("last_event_id")?;
    // 404 as problem JSON, not an empty stream.
    state.store.get_job_in(&caller.scope, id).await?;
    stream(&state, Scope::Job(id), from).await
}

/// Watch jobs: Server-Sent Events for the changes of every job that passes the filters,
/// as `/v1/jobs/{id}/watch` sends them. `namespace` is a prefix here: `com.a` takes `com.a`
/// and `com.a.mail`; the other filters are those of the job list, applied to each job as it
/// stands when its change is sent.
#[utoipa::path(get, path = "/v1/watch", tag = "watch",
    params(
        ("namespace" = Option<String>, Query, description = "a namespace prefix"),
        ("type" = Option<String>, Query),
        ("correlation_id" = Option<String>, Query),
        ("status" = Option<String>, Query, description = "one status or several, comma-separated"),
        ("meta.{key}" = Option<String>, Query, description = "as in the job list"),
        ("last_event_id" = Option<String>, Query, description = "resume after this position (the `Last-Event-ID` header wins)"),
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this position"),
    ),
    responses(
        (status = 200, description = "an event stream of `change` events, each `{\"job\", \"event\"}` (WatchChange)", content_type = "text/event-stream", body = String),
        super::Problems,
    ))]
pub async fn jobs(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut q = Query::parse(raw.as_deref())?;
    let filter = super::jobs::job_filter(&mut q, &state.limits, caller.scope)?;
    let from = start(&mut q, &headers)?;
    q.finish("namespace, type, correlation_id, status, meta.<key>, last_event_id")?;
    stream(&state, Scope::Jobs(filter), from).await
}

/// Where a stream starts: the `Last-Event-ID` header, else `last_event_id`, else now.
fn start(q: &mut Query, headers: &HeaderMap) -> Result<Option<Position>, ApiError> {
    let query = q.take(&["last_event_id"]);
    let (raw, field) = match headers.get("last-event-id") {
        Some(v) => (
            Some(
                v.to_str()
                    .map_err(|_| ApiError::invalid_field("Last-Event-ID", "must be ASCII"))?
                    .trim()
                    .to_owned(),
            ),
            "Last-Event-ID",
        ),
        None => (query, "last_event_id"),
    };
    raw.filter(|r| !r.is_empty())
        .map(|r| {
            r.parse::<Position>()
                .map_err(|e| ApiError::invalid_field(field, e.to_string()))
        })
        .transpose()
}

async fn stream(
    state: &AppState,
    scope: Scope,
    from: Option<Position>,
) -> Result<Response, ApiError> {
    let events = state.hub.open(scope, from).await?;
    let mut res = Response::new(Body::from_stream(events));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer responses (nginx) would hold the events back.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}
