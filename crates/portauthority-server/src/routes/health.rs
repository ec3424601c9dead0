use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use std::time::Duration;

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "health",
    responses((status = 200, description = "alive", body = Object)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the store answers within two seconds.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "health",
    responses((status = 200, description = "ready", body = Object), crate::routes::Problems))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(
            json!({"status": "ready", "store": state.store.kind()}),
        )),
        Ok(Err(e)) => Err(ApiError::Unavailable(format!("store not ready: {e}"))),
        Err(_) => Err(ApiError::Unavailable(
            "store did not answer within 2 s".into(),
        )),
    }
}

/// Prometheus metrics, in the text exposition format (docs/operations.md lists them).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "metrics", body = String,
        content_type = "text/plain; version=0.0.4")))]
pub async fn metrics() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
}
