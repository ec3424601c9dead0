//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Port Authority",
        description = "Job management and task tracking. Errors are RFC 9457 problem documents \
                       (application/problem+json).",
    ),
    tags(
        (name = "jobs", description = "Jobs and their derived status"),
        (name = "tasks", description = "Tasks and their status"),
        (name = "history", description = "Append-only history of jobs and tasks"),
        (name = "webhooks", description = "Job and task events posted to subscribed URLs, signed per Standard Webhooks"),
        (name = "health", description = "Liveness and readiness"),
    ),
    components(schemas(portauthority_core::api::Problem, portauthority_core::ValidationError))
)]
struct ApiDoc;

pub(crate) fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The complete document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    crate::api().split_for_parts().1
}
