//! The one error type of the HTTP layer. Every failure leaves as RFC 9457 problem JSON.

use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portauthority_core::ValidationErrors;
use portauthority_core::api::Problem;
use portauthority_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Unparsable JSON or query string.
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed but invalid input, with the fields at fault.
    #[error("{0}")]
    Invalid(ValidationErrors),
    /// Well-formed but invalid input, without field detail.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    NotFound(String),
    /// A missing, malformed, unknown, revoked or expired token (the auth layer adds the
    /// `WWW-Authenticate` challenge).
    #[error("{0}")]
    Unauthorized(String),
    /// The caller's key may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    /// The request (its body, or its handling) took longer than the server waits. The
    /// connection is closed after the response, as RFC 9110 asks of a 408.
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a broken database. The detail is logged, never sent.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) | ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Invalid(_) | ApiError::Unprocessable(_) => "validation-failed",
            ApiError::NotFound(_) => "not-found",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::MethodNotAllowed => "method-not-allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::RequestTimeout(_) => "request-timeout",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            ApiError::Invalid(errs) => format!("the request is invalid: {errs}"),
            ApiError::MethodNotAllowed => "this path does not accept this method".into(),
            ApiError::Internal(_) => "an unexpected error occurred; it has been logged".into(),
            other => other.to_string(),
        };
        Problem {
            problem_type: format!("urn:portauthority:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            errors: match self {
                ApiError::Invalid(errs) => Some(errs.0.clone()),
                _ => None,
            },
            request_id: None,
        }
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> ApiError {
        let mut errs = ValidationErrors::default();
        errs.push(field, message);
        ApiError::Invalid(errs)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            let request_id = crate::observe::current_request_id();
            tracing::error!(%detail, request_id, "internal error");
        }
        let mut res = problem_response(self.problem());
        if matches!(self, ApiError::RequestTimeout(_)) {
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

/// Renders a problem with the `application/problem+json` content type. Every problem
/// response is made here, and here it gets the request's id (`request_id`, the same as the
/// `x-request-id` header that `observe.rs` adds).
pub fn problem_response(mut problem: Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if problem.request_id.is_none() {
        problem.request_id = crate::observe::current_request_id();
    }
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Forbidden(m) => ApiError::Forbidden(m),
            StoreError::Invalid(m) => ApiError::Unprocessable(m),
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::Config(m) | StoreError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(e: ValidationErrors) -> Self {
        ApiError::Invalid(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let text = rejection.body_text();
        match rejection {
            JsonRejection::JsonDataError(_) => ApiError::Unprocessable(text),
            JsonRejection::JsonSyntaxError(_) => ApiError::BadRequest(text),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "expected a request body with Content-Type: application/json".into(),
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge(format!("the request body is too large: {text}"))
            }
            _ => ApiError::BadRequest(text),
        }
    }
}
