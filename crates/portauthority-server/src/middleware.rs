//! What every request passes before its handler: a declared body over the limit is refused
//! before a byte of it is read, the body must arrive within the body timeout, and handling
//! must reach the response head within the request timeout. Each refusal is problem JSON.
//!
//! The timers of the connection itself (request heads, idle keep-alive, the drain at
//! shutdown) are in `serve.rs`; a body that misses its deadline becomes a 408 where it is
//! read (`extract.rs`).

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::time::Duration;

/// Refuses a request whose `Content-Length` is over `limit` with a 413, before its body is
/// read. A client that sent `Expect: 100-continue` is told so before it sends the body: the
/// body is never polled, so hyper never sends `100 Continue` (and closes the connection
/// after the 413 instead). Chunked bodies, which declare no length, meet the same limit
/// while they are read (`DefaultBodyLimit`).
pub(crate) async fn refuse_declared_oversize(
    State(limit): State<usize>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(declared) = declared.filter(|&n| n > limit as u64) else {
        return next.run(req).await;
    };
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects_continue {
        // The client is sending the body already. Closed with the body unread, the socket
        // answers the client's further bytes with a reset: a client still writing can fail
        // on its write before it reads the 413, and a lost segment of the 413 is never sent
        // again. So, as nginx's lingering close does, the rest is read and thrown away
        // (nothing kept) for a bounded time, and then the connection closes.
        tokio::spawn(discard(req.into_body(), LINGER));
    }
    let mut res = ApiError::PayloadTooLarge(format!(
        "the request body is too large: Content-Length {declared} is over the limit of \
         {limit} bytes"
    ))
    .into_response();
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// How long the unread body of a refused request is read and discarded.
const LINGER: Duration = Duration::from_secs(2);

async fn discard(body: axum::body::Body, within: Duration) {
    let mut data = body.into_data_stream();
    let _ = tokio::time::timeout(within, async {
        while let Some(Ok(_)) = data.next().await {}
    })
    .await;
}

/// Answers 408 when handling has not produced a response head within `limit` (measured from
/// the end of the request head, so a slow body counts). Only the head is timed: `next.run`
/// resolves once the handler returns its response, and a streamed body (the coming
/// Server-Sent Events streams) is sent after that, under its own keep-alive rules, never
/// cut by this timeout.
///
/// The handler's future is dropped at the deadline. A write it already handed to the store
/// may still commit; the client is told 408, not success, and a create that carries its
/// `id` can be repeated safely.
pub(crate) async fn request_deadline(
    State(limit): State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::RequestTimeout(format!(
            "the request was not handled within the request timeout ({} ms)",
            limit.as_millis()
        ))
        .into_response(),
    }
}
