//! What every request leaves behind: its request id, one log line and its metrics.
//!
//! The outermost layer of the router, so that it sees every response, the framework's 404s
//! and 405s, the timeouts' 408s and a panic's 500 included. It must never log a header
//! value other than the request id (an `Authorization` token must not reach the logs), and
//! never label a metric with a raw path: `route` is the matched route template
//! (`/v1/jobs/{id}`), or `unmatched`, so the number of series stays bounded.

use crate::metrics::{HTTP_DURATION, HTTP_REQUESTS};
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

/// The request id header, taken from the client when valid and sent back on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The `route` label of a request that matched no route (a 404 of the fallback).
const UNMATCHED: &str = "unmatched";

/// The longest request id taken from a client.
pub const REQUEST_ID_MAX: usize = 128;

tokio::task_local! {
    /// The request id of the request being handled on this task: `error.rs` puts it in
    /// every problem document.
    static CURRENT: HeaderValue;
}

/// The current request's id, when called while a request is handled.
pub(crate) fn current_request_id() -> Option<String> {
    CURRENT
        .try_with(|id| id.to_str().ok().map(str::to_owned))
        .ok()
        .flatten()
}

/// Whether a client's request id is kept: 1 to [`REQUEST_ID_MAX`] characters, each an ASCII
/// letter or digit or one of `-_.:/+=@~` (what UUIDs, ULIDs, trace ids and base64 use, and
/// nothing that could break a log line or a header).
pub fn valid_request_id(raw: &[u8]) -> bool {
    (1..=REQUEST_ID_MAX).contains(&raw.len())
        && raw
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-_.:/+=@~".contains(&b))
}

/// The client's request id if valid, else a new one.
fn request_id(req: &Request) -> HeaderValue {
    match req.headers().get(&REQUEST_ID) {
        Some(v) if valid_request_id(v.as_bytes()) => v.clone(),
        _ => new_request_id(),
    }
}

/// A request id of the server's own: a UUIDv7 (time-ordered, so ids sort like requests).
pub(crate) fn new_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).expect("a UUID is a valid header value")
}

/// The `method` label: the standard methods by name, anything else as `other` (a client
/// can send any token as a method).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Gives the request its id, answers with it, logs the request and records its metrics.
pub(crate) async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, |p| p.as_str())
        .to_owned();
    let mut res = CURRENT.scope(id.clone(), next.run(req)).await;
    let elapsed = started.elapsed();
    let status = res.status();
    res.headers_mut().insert(REQUEST_ID, id.clone());
    let request_id = id.to_str().unwrap_or_default();
    let latency_ms = elapsed.as_secs_f64() * 1e3;
    // The one line of a request; only these fields, never a header but the id.
    macro_rules! line {
        ($level:ident, $message:literal) => {
            tracing::$level!(
                method,
                route,
                status = status.as_u16(),
                latency_ms,
                request_id,
                $message
            )
        };
    }
    // A 503 is the store being unavailable (a full disk, a lost database): that is logged
    // where it happens, rate-limited; a line per refused request would drown it.
    if status.is_server_error() && status != axum::http::StatusCode::SERVICE_UNAVAILABLE {
        line!(warn, "request failed");
    } else {
        line!(debug, "request");
    }
    metrics::histogram!(HTTP_DURATION, "route" => route.clone()).record(elapsed.as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route,
        "status" => status.as_str().to_owned())
    .increment(1);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_short_visible_and_of_a_safe_set() {
        for ok in [
            "a",
            "0190b5d2-7c1e-7d3a-9f00-0123456789ab",
            "01J2XK9Q5M0Z3Y7V8W6T4R2P1N",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "abc+/=_.:@~",
        ] {
            assert!(valid_request_id(ok.as_bytes()), "{ok:?} refused");
        }
        let long = "x".repeat(REQUEST_ID_MAX + 1);
        for bad in [
            "",
            "has space",
            "quote\"",
            "semi;colon",
            "tab\t",
            "é",
            long.as_str(),
        ] {
            assert!(!valid_request_id(bad.as_bytes()), "{bad:?} accepted");
        }
        assert!(valid_request_id("x".repeat(REQUEST_ID_MAX).as_bytes()));
    }
}
