//! Webhooks: subscribe a URL to job and task events, see every delivery attempt, replay
//! one. Deliveries are made by the worker (`portauthority_worker::webhooks`).

use super::{ApiResult, Problems};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, Query};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use portauthority_contracts::EventType;
use portauthority_core::api::webhooks::{
    CreateWebhookRequest, DeliveryAttempt, DeliveryList, WebhookEnvelope, WebhookList,
    WebhookResource,
};
use portauthority_core::validate::bounded_text;
use portauthority_core::{Name, ValidationErrors};
use portauthority_store::{AttemptEntry, NewWebhook, Webhook};
use portauthority_worker::webhooks::{guard, sign};
use uuid::Uuid;

/// Longest accepted URL and description, in characters.
const URL_MAX: usize = 2048;
const DESCRIPTION_MAX: usize = 1024;

/// The wire form of a stored webhook, without its secret (a function, not `From`: both
/// types live in other crates).
fn resource(w: Webhook) -> WebhookResource {
    WebhookResource {
        id: w.id,
        url: w.url,
        namespace: w.namespace,
        events: w.events,
        description: w.description,
        enabled: w.enabled,
        disabled_reason: w.disabled_reason,
        created_at: w.created_at,
        failing_since: w.failing_since,
        secret: None,
    }
}

fn attempt(e: AttemptEntry) -> DeliveryAttempt {
    DeliveryAttempt {
        id: e.delivery_id,
        event_id: e.event_id,
        attempt: e.attempt,
        time: e.time,
        state: e.state.as_str().to_owned(),
        status_code: e.status_code,
        latency_ms: e.latency_ms,
        error: e.error,
        next_attempt_at: e.next_attempt_at,
    }
}

/// A webhook id in a path: malformed names no webhook (404).
fn webhook_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(format!("webhook {raw} not found")))
}

/// A webhook the caller may manage: one made within its scope. Any other is not found, so
/// that a key does not learn of webhooks (and their namespaces) beyond its own.
async fn visible(state: &AppState, caller: &Caller, id: Uuid) -> Result<Webhook, ApiError> {
    let webhook = state.store.get_webhook(id).await?;
    if caller.scope.covers(&webhook.scope) {
        Ok(webhook)
    } else {
        Err(ApiError::NotFound(format!("webhook {id} not found")))
    }
}

/// Validates a request into a webhook with a new id and secret, in the caller's scope.
async fn validate(
    state: &AppState,
    caller: &Caller,
    body: CreateWebhookRequest,
) -> Result<NewWebhook, ApiError> {
    let mut errs = ValidationErrors::default();
    let url = if body.url.chars().count() > URL_MAX {
        errs.push("url", format!("must be at most {URL_MAX} characters"));
        None
    } else {
        errs.check(
            "url",
            guard::check_target(&body.url, state.webhooks_allow_private).await,
        )
    };
    let namespace = match body.namespace {
        None => None,
        some => errs
            .check("namespace", Name::parse(some, &state.limits))
            .map(Name::into_string),
    };
    if let Some(events) = &body.events {
        if events.is_empty() {
            errs.push(
                "events",
                "must name at least one event type, or be left out for all",
            );
        }
        for (i, ty) in events.iter().enumerate() {
            if EventType::parse(ty).is_none() {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.type_name()).collect();
                errs.push(
                    format!("events[{i}]"),
                    format!("unknown event type {ty:?}; known: {}", known.join(", ")),
                );
            }
        }
    }
    let description = errs
        .check(
            "description",
            bounded_text(body.description, DESCRIPTION_MAX),
        )
        .flatten();
    let mut events = body.events;
    if let Some(e) = events.as_mut() {
        let mut seen = std::collections::HashSet::new();
        e.retain(|t| seen.insert(t.clone()));
    }
    errs.into_result(|| NewWebhook {
        id: state.env.ids.uuid(),
        url: url.map(String::from).unwrap_or_default(),
        namespace,
        events,
        description,
        secret: sign::new_secret(),
        created_at: state.env.now(),
        scope: caller.scope.clone(),
    })
    .map_err(ApiError::from)
}

/// Subscribe a URL to job and task events. The response holds the signing secret; no
/// other response does.
#[utoipa::path(post, path = "/v1/webhooks", operation_id = "create_webhook", tag = "webhooks", request_body = CreateWebhookRequest,
    responses((status = 200, description = "the webhook", body = WebhookEnvelope), Problems))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateWebhookRequest>,
) -> ApiResult<WebhookEnvelope> {
    let new = validate(&state, &caller, body).await?;
    let secret = new.secret.clone();
    let mut webhook = resource(state.store.create_webhook(new).await?);
    webhook.secret = Some(secret);
    Ok(Json(WebhookEnvelope { webhook }))
}

/// List the webhooks made within the key's scope, oldest first.
#[utoipa::path(get, path = "/v1/webhooks", operation_id = "list_webhooks", tag = "webhooks",
    responses((status = 200, description = "the webhooks", body = WebhookList), Problems))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<WebhookList> {
    let webhooks = state.store.list_webhooks().await?;
    Ok(Json(WebhookList {
        webhooks: webhooks
            .into_iter()
            .filter(|w| caller.scope.covers(&w.scope))
            .map(resource)
            .collect(),
    }))
}

/// Get a webhook.
#[utoipa::path(get, path = "/v1/webhooks/{id}", operation_id = "get_webhook", tag = "webhooks",
    params(("id" = String, Path, description = "webhook id (UUID)")),
    responses((status = 200, description = "the webhook", body = WebhookEnvelope), Problems))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<WebhookEnvelope> {
    let webhook = visible(&state, &caller, webhook_id(&id)?).await?;
    Ok(Json(WebhookEnvelope {
        webhook: resource(webhook),
    }))
}

/// Delete a webhook with its deliveries and their log.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", operation_id = "delete_webhook", tag = "webhooks",
    params(("id" = String, Path, description = "webhook id (UUID)")),
    responses((status = 204, description = "deleted"), Problems))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let webhook = visible(&state, &caller, webhook_id(&id)?).await?;
    state.store.delete_webhook(webhook.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A webhook's delivery log, newest first: every attempt, and each delivery not attempted
/// yet.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", operation_id = "list_deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "webhook id (UUID)"),
        ("size" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100")),
    responses((status = 200, description = "the delivery log, newest first", body = DeliveryList), Problems))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<DeliveryList> {
    let id = visible(&state, &caller, webhook_id(&id)?).await?.id;
    let mut q = Query::parse(raw.as_deref())?;
    let size = q.number(&["size"], 1, 1000)?.unwrap_or(100) as u32;
    q.finish("size")?;
    let log = state.store.list_deliveries(id, size).await?;
    Ok(Json(DeliveryList {
        deliveries: log.into_iter().map(attempt).collect(),
    }))
}

/// Replay a delivery: a new attempt now, with the same body and `webhook-id`, whatever
/// its state. 409 when the webhook is disabled.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/retry", operation_id = "retry_delivery", tag = "webhooks",
    params(("id" = String, Path, description = "webhook id (UUID)"),
        ("delivery_id" = String, Path, description = "delivery id (UUID)")),
    responses((status = 202, description = "the delivery is due now"), Problems))]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = visible(&state, &caller, webhook_id(&id)?).await?.id;
    let delivery = Uuid::parse_str(&delivery).map_err(|_| {
        ApiError::NotFound(format!("delivery {delivery} not found for webhook {id}"))
    })?;
    state
        .store
        .retry_delivery(id, delivery, state.env.now())
        .await?;
    Ok(StatusCode::ACCEPTED)
}
