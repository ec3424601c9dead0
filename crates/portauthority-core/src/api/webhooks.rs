//! The wire shapes of `/v1/webhooks`: what the server sends and the client reads.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Body of `POST /v1/webhooks`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateWebhookRequest {
    /// Where events are posted: an `http` or `https` URL whose host is not a loopback,
    /// private or link-local address (unless the server allows private targets).
    pub url: String,
    /// Only events of jobs in this namespace or under it (`com.a` takes `com.a` and
    /// `com.a.b`, not `com.ab`). Default: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Only these CloudEvent types (e.g. `portauthority.task.status_changed.v1`). Default:
    /// every type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A webhook, without its secret.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookResource {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub url: String,
    pub namespace: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    /// False once the endpoint answered `410 Gone` or failed for too long.
    pub enabled: bool,
    /// Why it is disabled; null while enabled.
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
    /// Since when every attempt has failed; null while it delivers.
    pub failing_since: Option<Timestamp>,
    /// `whsec_` and the base64 of the signing key: in the response to its creation only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookEnvelope {
    pub webhook: WebhookResource,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookResource>,
}

/// One attempt at a delivery, or a delivery not attempted yet (`attempt` 0, `time` when
/// it was queued).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryAttempt {
    /// The delivery (the same for every attempt at one event): what `.../retry` takes.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// The CloudEvent id, sent as `webhook-id`.
    pub event_id: String,
    pub attempt: u32,
    pub time: Timestamp,
    /// The delivery's state after this attempt (now, for its latest attempt): `pending`,
    /// `delivered` or `failed`.
    #[schema(example = "pending")]
    pub state: String,
    pub status_code: Option<u16>,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryAttempt>,
}
