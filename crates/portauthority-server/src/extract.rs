//! Request extraction that fails with problem JSON, never with the framework's plain text.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use portauthority_core::api::{SortField, SortOrder};
use portauthority_core::{JobId, Status, TaskId};
use portauthority_store::Paging;
use serde::de::DeserializeOwned;
use std::str::FromStr;

/// A JSON body, with every rejection rendered as a problem: 415 without a JSON content
/// type, 413 over the body limit, 400 when the body is not JSON at all, and 422 (naming the
/// field) when it is JSON of the wrong shape.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(not_json());
        }
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Like [`ApiJson`], but an empty body (with or without a content type) is `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = json_content_type(req.headers());
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !is_json {
            return Err(not_json());
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

fn not_json() -> ApiError {
    ApiError::UnsupportedMediaType(
        "expected a request body with Content-Type: application/json".into(),
    )
}

/// `application/json`, or any `application/*+json`, with or without parameters.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    portauthority_core::validate::is_json_media_type(value)
}

/// The whole body, within the configured limit (413 beyond it) and the body timeout (408
/// when it has not all arrived in time; the deadline itself is a layer, see `middleware.rs`).
async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if caused_by_body_timeout(&e) {
            ApiError::RequestTimeout(
                "the request body did not arrive within the body timeout".into(),
            )
        } else {
            ApiError::from(JsonRejection::from(e))
        }
    })
}

/// Whether reading the body failed because its deadline passed: the timeout error sits a
/// few wrappers down (axum's rejection, its boxed error, the length limit).
fn caused_by_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Parses a JSON body into `T`. Whether a failure is the client's syntax (400) or the
/// shape of the value (422) is decided by whether the body is JSON at all: serde_json
/// reports some shape errors (a number where an enum is expected) as syntax errors, and a
/// truncated body can fail on its shape before the parser reaches the end.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize::<_, T>(&mut de);
    let err = match parsed {
        Ok(value) => match de.end() {
            Ok(()) => return Ok(value),
            Err(e) => return Err(ApiError::BadRequest(format!("the body is not JSON: {e}"))),
        },
        Err(err) => err,
    };
    if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(ApiError::BadRequest(format!(
            "the body is not JSON: {syntax}"
        )));
    }
    let path = err.path().to_string();
    let message = err.inner().to_string();
    // serde_json appends the position; the field name says more.
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    };
    let field = match message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
    {
        Some((name, _)) if path == "." => name.to_owned(),
        Some((name, _)) => format!("{path}.{name}"),
        None if path == "." => "body".to_owned(),
        None => path,
    };
    Err(ApiError::invalid_field(&field, message))
}

/// Path ids: a malformed UUID names no resource, so it is a 404, not a 422.
pub fn job_id(raw: &str) -> Result<JobId, ApiError> {
    JobId::from_str(raw).map_err(|_| ApiError::NotFound(format!("job {raw} not found")))
}

pub fn task_id(job: JobId, raw: &str) -> Result<TaskId, ApiError> {
    TaskId::from_str(raw)
        .map_err(|_| ApiError::NotFound(format!("task {raw} not found in job {job}")))
}

/// A decoded query string, consumed parameter by parameter so that leftovers (typos) can
/// be reported.
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let raw = raw.unwrap_or("");
        // form_urlencoded never fails; reject what it would silently mangle.
        if let Some(bad) = find_bad_escape(raw) {
            return Err(ApiError::BadRequest(format!(
                "the query string has a malformed percent-escape at byte {bad}"
            )));
        }
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        // No stored value holds NUL (validation refuses it), and PostgreSQL cannot even
        // compare with one: such a filter is invalid, not a query that matches nothing.
        if let Some((k, _)) = pairs
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(ApiError::invalid_field(
                &k.replace('\0', "\\0"),
                "must not contain the NUL character (U+0000)",
            ));
        }
        Ok(Query { pairs })
    }

    /// Takes the last non-empty value of any of `names` (empty values count as absent, as
    /// an HTML form sends them).
    pub fn take(&mut self, names: &[&str]) -> Option<String> {
        let mut found = None;
        self.pairs.retain(|(k, v)| {
            if names.contains(&k.as_str()) {
                if !v.is_empty() {
                    found = Some(v.clone());
                }
                false
            } else {
                true
            }
        });
        found
    }

    /// Takes every `prefix<key>=<value>` pair.
    pub fn take_prefixed(&mut self, prefix: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        self.pairs.retain(|(k, v)| match k.strip_prefix(prefix) {
            Some(key) => {
                out.push((key.to_owned(), v.clone()));
                false
            }
            None => true,
        });
        out
    }

    pub fn number(&mut self, names: &[&str], min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        match self.take(names) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::invalid_field(
                    names[0],
                    format!("must be a whole number from {min} to {max}, got {v:?}"),
                )),
            },
        }
    }

    pub fn statuses(&mut self) -> Result<Vec<Status>, ApiError> {
        match self.take(&["status"]) {
            None => Ok(Vec::new()),
            Some(v) => v
                .split(',')
                .map(|s| {
                    Status::from_str(s.trim())
                        .map_err(|e| ApiError::invalid_field("status", e.to_string()))
                })
                .collect(),
        }
    }

    pub fn paging(&mut self) -> Result<Paging, ApiError> {
        let mut p = Paging::default();
        let explicit_page = self.number(&["page"], 1, u64::from(u32::MAX))?;
        if let Some(n) = explicit_page {
            p.page = n;
        }
        if let Some(n) = self.number(&["size"], 1, 1000)? {
            p.size = n;
        }
        if let Some(s) = self.take(&["sort"]) {
            p.sort = SortField::parse(&s).ok_or_else(|| {
                ApiError::invalid_field(
                    "sort",
                    format!(
                        "unknown sort {s:?}: expected start_time, end_time, created_at, \
                         updated_at, type, namespace or status"
                    ),
                )
            })?;
        }
        if let Some(o) = self.take(&["order"]) {
            p.order = match o.to_ascii_lowercase().as_str() {
                "asc" => SortOrder::Asc,
                "desc" => SortOrder::Desc,
                _ => {
                    return Err(ApiError::invalid_field(
                        "order",
                        format!("unknown order {o:?}: expected asc or desc"),
                    ));
                }
            };
        }
        if let Some(cursor) = self.take(&["after"]) {
            if explicit_page.is_some() {
                return Err(ApiError::invalid_field(
                    "after",
                    "use either page or after (a cursor), not both",
                ));
            }
            p.after = Some(crate::cursor::decode(&cursor, &p)?);
        }
        Ok(p)
    }

    /// Fails on any parameter nobody took.
    pub fn finish(self, allowed: &str) -> Result<(), ApiError> {
        match self.pairs.first() {
            None => Ok(()),
            Some((k, _)) => Err(ApiError::invalid_field(
                k,
                format!("unknown query parameter; this endpoint accepts {allowed}"),
            )),
        }
    }
}

fn find_bad_escape(raw: &str) -> Option<usize> {
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return Some(i);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    None
}

/// The `Idempotency-Key` request header: a retry of a `POST` under the same key returns the
/// first answer and changes nothing.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A body extractor `E`, and the request's `Idempotency-Key` made into the store's key:
/// scoped by method and path, fingerprinted by the body, so that the same key on another
/// route is another key, and the same key with another body is refused.
pub struct Keyed<E> {
    pub body: E,
    pub once: Option<portauthority_store::Once>,
}

impl<S, E> FromRequest<S> for Keyed<E>
where
    E: FromRequest<S, Rejection = ApiError>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Some(key) = req.headers().get(IDEMPOTENCY_KEY) else {
            return Ok(Keyed {
                body: E::from_request(req, state).await?,
                once: None,
            });
        };
        let key = idempotency_key(key)?;
        let (parts, body) = req.into_parts();
        // Each API key has its own idempotency keys: a replay never hands one key the
        // answer to another's request.
        let caller = parts
            .extensions
            .get::<crate::auth::Caller>()
            .and_then(|c| c.key_id.as_deref())
            .map_or_else(String::new, |id| format!("key={id}:"));
        let scope = format!("http:{caller}{} {}:{key}", parts.method, parts.uri.path());
        let bytes = body_bytes(Request::from_parts(parts.clone(), body), state).await?;
        use sha2::Digest;
        let fingerprint = format!("{:x}", sha2::Sha256::digest(&bytes));
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        Ok(Keyed {
            body: E::from_request(req, state).await?,
            once: Some(portauthority_store::Once {
                key: scope,
                fingerprint,
                keep_answer: true,
            }),
        })
    }
}

/// 1 to 255 visible ASCII characters (a UUID is the usual choice).
fn idempotency_key(value: &axum::http::HeaderValue) -> Result<String, ApiError> {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(ApiError::BadRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID, say)".into(),
        ));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}
