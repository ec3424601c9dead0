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
pub fn openapi() -> serde_json::Value {
    document(crate::api().split_for_parts().1)
}

/// The generated document with what the annotations cannot say, taken from where the rule
/// lives so that the two cannot drift apart.
pub(crate) fn document(spec: utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut doc = serde_json::to_value(spec).expect("the OpenAPI document serializes");
    let event_types: Vec<&str> = portauthority_contracts::EventType::ALL
        .iter()
        .map(|t| t.type_name())
        .collect();
    if let Some(events) =
        doc.pointer_mut("/components/schemas/CreateWebhookRequest/properties/events")
    {
        *events = serde_json::json!({
            "type": ["array", "null"],
            "minItems": 1,
            "items": {"type": "string", "enum": event_types},
            "description": events.get("description").cloned().unwrap_or_default(),
        });
    }
    doc
}
