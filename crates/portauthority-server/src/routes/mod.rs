//! HTTP handlers, one module per resource. Handlers parse and validate input, call the
//! store once, and shape the response; the rules live in `portauthority_core`. Every
//! handler of a job, task or history takes the [`Caller`] and calls the store's scoped
//! methods with its scope.

pub mod health;
pub mod history;
pub mod jobs;
pub mod session;
pub mod tasks;
pub mod watch;
pub mod webhooks;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use portauthority_core::Command;
use portauthority_core::api::{PageInfo, Problem};
use portauthority_store::{Answer, Cursor, Once, Page, Paging, Ran, StoreError};

/// Runs a command, once per idempotency key when the request has one: a retry under the
/// key gets the first answer back and changes nothing.
pub(crate) async fn run(
    state: &AppState,
    caller: &Caller,
    once: Option<Once>,
    cmd: Command,
) -> Result<Answer, ApiError> {
    let Some(once) = once else {
        return Ok(state.store.run_in(&caller.scope, cmd).await?);
    };
    match state.store.run_once_in(&caller.scope, once, cmd).await? {
        Ran::Applied(answer) | Ran::Replayed(Some(answer)) => Ok(answer),
        Ran::Replayed(None) => Err(ApiError::Internal("a replay without its answer".into())),
    }
}

/// An answer that is not the kind its command gives: a bug.
pub(crate) fn unexpected(answer: Answer) -> ApiError {
    ApiError::Internal(format!("unexpected answer {answer:?}"))
}

/// The one result of a single update.
pub(crate) fn single_update(answer: Answer) -> Result<portauthority_core::api::Task, ApiError> {
    match answer {
        Answer::Updates(mut items) if items.len() == 1 => items
            .pop()
            .expect("one item")
            .map_err(|r| ApiError::from(StoreError::from(r))),
        other => Err(unexpected(other)),
    }
}

/// The page header of a list response; `key` gives the cursor of the page's last item.
pub(crate) fn page_info<T>(
    page: &Page<T>,
    paging: &Paging,
    key: impl Fn(&T) -> Cursor,
) -> PageInfo {
    let full = page.items.len() as u64 == paging.size;
    PageInfo {
        page: if paging.after.is_some() {
            1
        } else {
            paging.page
        },
        page_size: paging.size,
        total_pages: page.total_items.div_ceil(paging.size),
        total_items: page.total_items,
        sort: paging.sort,
        order: paging.order,
        next: page
            .items
            .last()
            .filter(|_| full)
            .map(|last| crate::cursor::encode(paging, &key(last))),
    }
}

/// Problem documents, as OpenAPI response entries (documentation only; never built).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum Problems {
    /// Unparsable JSON or query string.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(#[to_schema] Problem),
    /// A missing, malformed, unknown, revoked or expired token (`WWW-Authenticate: Bearer`).
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The key's role may not do this, or it may not create in this namespace.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// Unknown job or task (a malformed id is unknown too), or one outside the key's
    /// namespaces.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// The request head, body or handling took longer than the server allows.
    #[response(status = 408, content_type = "application/problem+json")]
    Timeout(Problem),
    /// The request conflicts with the current state.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// The body is larger than the configured limit.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// The body is not `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    Unsupported(Problem),
    /// Well-formed but invalid input; `errors` names the fields.
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
    /// The store is unreachable; retry later.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

pub(crate) type ApiResult<T> = Result<axum::Json<T>, ApiError>;
