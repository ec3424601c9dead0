//! The dashboard's session: sign in with a key into an `HttpOnly`, `SameSite=Strict`
//! cookie that authorizes `/v1` requests (its live streams included) as the bearer header
//! does, and sign out.

use super::Problems;
use crate::AppState;
use crate::auth::{session_clear_cookie, session_set_cookie};
use crate::error::ApiError;
use crate::extract::ApiJson;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// Body of `POST /session`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SessionRequest {
    /// An API key's token (`pa_...`).
    pub token: String,
}

/// Sign in: checks the token and sets the `pa_session` cookie to it (`Secure` when the
/// request came over HTTPS, as `X-Forwarded-Proto` says). 401 for a token that is not a
/// usable key.
#[utoipa::path(post, path = "/session", tag = "session", request_body = SessionRequest,
    responses((status = 204, description = "signed in; the cookie is set"), Problems))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SessionRequest>,
) -> Response {
    if let Err(e) = state.keys.verify(body.token.trim()).await {
        return e.into_response();
    }
    let cookie = session_set_cookie(body.token.trim(), &headers);
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

/// Sign out: clears the `pa_session` cookie.
#[utoipa::path(delete, path = "/session", tag = "session",
    responses((status = 204, description = "signed out; the cookie is cleared")))]
pub async fn delete(headers: HeaderMap) -> Result<Response, ApiError> {
    let cookie = session_clear_cookie(&headers);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}
