//! Who is calling: the bearer token (or the dashboard's session cookie) of a request, the
//! key it names, and what that key may do.
//!
//! The server only finds the caller here. What a caller sees is decided where the
//! namespace is known: its [`Scope`] goes into every store call a handler makes (the
//! planners and list queries apply it), so a handler cannot serve a job outside it. What a
//! role may do is decided by the kind of request ([`action`]) before any handler runs.
//!
//! Keys are looked up by id and cached in-process for [`CACHE_TTL`] (found or not): a key
//! revoked in the database (by any process) stops working everywhere within that time, and
//! a key created is honoured within it. The secret is checked on every request, in constant
//! time, against the cached hash. A token is never logged and never in a response.

use crate::error::ApiError;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use portauthority_core::auth::{KeyRefusal, Token};
use portauthority_core::{Action, Env, Role, Scope};
use portauthority_store::{Store, StoredKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a key looked up (or found missing) is trusted before it is read again: the bound
/// on how late a revocation takes effect in a running server.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// Entries past which expired ones are dropped (each a few hundred bytes).
const CACHE_MAX: usize = 10_000;

/// `last_used_at` is written at most this often per key (and process), off the request path.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// The dashboard's session cookie: it holds the token and authorizes like the header.
pub const SESSION_COOKIE: &str = "pa_session";

/// The caller of a request, as the middleware found it. Handlers take it to hand its scope
/// to the store.
#[derive(Clone, Debug)]
pub struct Caller {
    pub role: Role,
    pub scope: Scope,
    /// The key's id; `None` when no key is configured (every caller is trusted).
    pub key_id: Option<String>,
}

impl Caller {
    fn open() -> Caller {
        Caller {
            role: Role::Admin,
            scope: Scope::all(),
            key_id: None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        // The middleware runs in front of every /v1 route; a handler without it is a bug,
        // and never served as an open caller.
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("a /v1 route ran without the auth layer".into()))
    }
}

/// What a request to `path` with `method` does, for the role check. Webhooks are admin
/// business whatever the method; otherwise reading is `GET`/`HEAD`, the rest writes.
pub fn action(method: &Method, path: &str) -> Action {
    if path == "/v1/webhooks" || path.starts_with("/v1/webhooks/") {
        Action::Admin
    } else if method == Method::GET || method == Method::HEAD {
        Action::Read
    } else {
        Action::Write
    }
}

/// Which paths need a caller: every `/v1` route, and `/metrics` when configured.
fn guarded(path: &str, metrics: bool) -> bool {
    path == "/v1" || path.starts_with("/v1/") || (metrics && path == "/metrics")
}

struct Cached {
    key: Option<StoredKey>,
    fetched: Instant,
    touched: Option<Instant>,
}

/// The keys a server checks tokens against (see the module docs for the cache).
pub struct Keys {
    store: Arc<dyn Store>,
    env: Env,
    cache: Mutex<HashMap<String, Cached>>,
    /// Whether the database has keys, and when that was read. Once true it stays true.
    any: Mutex<(bool, Option<Instant>)>,
    /// Require a key on `/metrics` too.
    pub metrics_need_key: bool,
}

/// How a request was authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Header,
    Cookie,
}

impl Keys {
    pub fn new(store: Arc<dyn Store>, env: Env, metrics_need_key: bool) -> Keys {
        Keys {
            store,
            env,
            cache: Mutex::new(HashMap::new()),
            any: Mutex::new((false, None)),
            metrics_need_key,
        }
    }

    /// Whether callers need a key: once any key exists in the database. One request at a
    /// time re-reads it when the answer is older than [`CACHE_TTL`]; the others meanwhile
    /// go on with the answer they have, so that a burst does not queue on the pool.
    pub async fn required(&self) -> Result<bool, ApiError> {
        {
            let mut any = self.any.lock().expect("lock");
            match *any {
                (true, _) => return Ok(true),
                (false, Some(at)) if at.elapsed() < CACHE_TTL => return Ok(false),
                (false, _) => any.1 = Some(Instant::now()),
            }
        }
        let found = self.store.has_keys().await;
        let mut any = self.any.lock().expect("lock");
        match found {
            Ok(found) => {
                any.0 |= found;
                Ok(any.0)
            }
            Err(e) => {
                // Read again by the next request.
                any.1 = None;
                Err(e.into())
            }
        }
    }

    /// The caller a token stands for, or why it stands for none.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let token = Token::parse(token).ok_or(AuthError::Token(KeyRefusal::Malformed))?;
        let id = token.key_id().to_owned();
        // A fresh entry is used as it is; a stale one is used by everyone but the one
        // request that re-reads it (its time is moved on first), so that a burst does not
        // queue on the pool. A key never seen is read by whoever needs it.
        let cached = {
            let mut cache = self.cache.lock().expect("lock");
            match cache.get_mut(&id) {
                Some(c) if c.fetched.elapsed() < CACHE_TTL => Some(c.key.clone()),
                Some(c) => {
                    c.fetched = Instant::now();
                    None
                }
                None => None,
            }
        };
        let key = match cached {
            Some(key) => key,
            None => {
                let key = match self.store.find_key(&id).await {
                    Ok(key) => key,
                    Err(e) => {
                        self.cache.lock().expect("lock").remove(&id);
                        return Err(ApiError::from(e).into());
                    }
                };
                let mut cache = self.cache.lock().expect("lock");
                // Ids of made-up tokens must not grow it without bound.
                if cache.len() >= CACHE_MAX {
                    cache.retain(|_, c| c.fetched.elapsed() < CACHE_TTL);
                }
                let touched = cache.get(&id).and_then(|c| c.touched);
                cache.insert(
                    id.clone(),
                    Cached {
                        key: key.clone(),
                        fetched: Instant::now(),
                        touched,
                    },
                );
                key
            }
        };
        let key = key
            .filter(|k| token.verifies(&k.secret_hash))
            .ok_or(AuthError::Token(KeyRefusal::Unknown))?;
        let now = self.env.now();
        key.record.check(now).map_err(AuthError::Token)?;
        self.touch(&id, now);
        Ok(Caller {
            role: key.record.role,
            scope: key.record.scope,
            key_id: Some(id),
        })
    }

    /// Records the key's use in the background, at most once per [`TOUCH_EVERY`].
    fn touch(&self, id: &str, now: portauthority_core::Timestamp) {
        {
            let mut cache = self.cache.lock().expect("lock");
            let Some(entry) = cache.get_mut(id) else {
                return;
            };
            if entry.touched.is_some_and(|t| t.elapsed() < TOUCH_EVERY) {
                return;
            }
            entry.touched = Some(Instant::now());
        }
        let (store, id) = (self.store.clone(), id.to_owned());
        tokio::spawn(async move {
            if let Err(e) = store.touch_key(&id, now).await {
                tracing::warn!(key = %id, error = %e, "could not record a key's last use");
            }
        });
    }
}

/// Why a request has no caller.
#[derive(Debug)]
pub enum AuthError {
    /// 401.
    Token(KeyRefusal),
    /// 403: the role may not, or a cookie-authorized change came from another origin.
    Forbidden(String),
    /// The store failed while looking the key up.
    Store(ApiError),
}

impl From<ApiError> for AuthError {
    fn from(e: ApiError) -> Self {
        AuthError::Store(e)
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        match self {
            AuthError::Token(refusal) => {
                let mut res = ApiError::Unauthorized(refusal.to_string()).into_response();
                let challenge = if refusal == KeyRefusal::Missing {
                    "Bearer"
                } else {
                    "Bearer error=\"invalid_token\""
                };
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static(challenge),
                );
                res
            }
            AuthError::Forbidden(m) => ApiError::Forbidden(m).into_response(),
            AuthError::Store(e) => e.into_response(),
        }
    }
}

/// The token of a request: the `Authorization: Bearer` header, else the session cookie.
fn presented(headers: &HeaderMap) -> Result<Option<(String, Via)>, AuthError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| AuthError::Token(KeyRefusal::Malformed))?;
        let (scheme, token) = value
            .split_once(' ')
            .ok_or(AuthError::Token(KeyRefusal::Malformed))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Token(KeyRefusal::Malformed));
        }
        return Ok(Some((token.trim().to_owned(), Via::Header)));
    }
    Ok(session_cookie(headers).map(|t| (t, Via::Cookie)))
}

/// The value of the `pa_session` cookie, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// CSRF: a change authorized by the session cookie must come from this server's own pages.
/// Browsers send `Origin` on every request that is not a `GET` or `HEAD`; it must name the
/// host the request was sent to (`X-Forwarded-Host` behind a proxy, else `Host`).
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

/// The middleware in front of every route: finds the caller of a guarded path (or answers
/// 401/403), and hands it to the handler in the request's extensions.
pub(crate) async fn authorize(
    State(keys): State<Arc<Keys>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    if !guarded(&path, keys.metrics_need_key) {
        return next.run(req).await;
    }
    match caller(&keys, req.method(), &path, req.headers()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn caller(
    keys: &Keys,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Caller, AuthError> {
    if !keys.required().await? {
        return Ok(Caller::open());
    }
    let (token, via) = presented(headers)?.ok_or(AuthError::Token(KeyRefusal::Missing))?;
    let caller = keys.verify(&token).await?;
    let action = action(method, path);
    if !caller.role.may(action) {
        return Err(AuthError::Forbidden(format!(
            "a {} key may not do this",
            caller.role
        )));
    }
    let safe = method == Method::GET || method == Method::HEAD || method == Method::OPTIONS;
    if via == Via::Cookie && !safe && !same_origin(headers) {
        return Err(AuthError::Forbidden(
            "a change authorized by the session cookie must come from this server's own pages \
             (its Origin header must match the host)"
                .into(),
        ));
    }
    Ok(caller)
}

/// The `Set-Cookie` value of a session: `Secure` when the request came over HTTPS (as a
/// proxy in front says with `X-Forwarded-Proto`).
pub(crate) fn session_set_cookie(token: &str, headers: &HeaderMap) -> String {
    format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{}",
        secure_suffix(headers)
    )
}

/// The `Set-Cookie` value that clears the session.
pub(crate) fn session_clear_cookie(headers: &HeaderMap) -> String {
    format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        secure_suffix(headers)
    )
}

fn secure_suffix(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| {
            p.split(',')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        });
    if https { "; Secure" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_are_admin_reads_are_gets_and_the_rest_writes() {
        assert_eq!(action(&Method::GET, "/v1/webhooks"), Action::Admin);
        assert_eq!(
            action(&Method::GET, "/v1/webhooks/x/deliveries"),
            Action::Admin
        );
        assert_eq!(action(&Method::GET, "/v1/jobs"), Action::Read);
        assert_eq!(action(&Method::POST, "/v1/jobs/x/history"), Action::Write);
        assert_eq!(action(&Method::GET, "/v1/webhooksx"), Action::Read);
    }

    #[test]
    fn only_v1_and_optionally_metrics_are_guarded() {
        assert!(guarded("/v1/jobs", false) && guarded("/v1", false));
        assert!(!guarded("/healthz", true) && !guarded("/v1x", false));
        assert!(!guarded("/metrics", false) && guarded("/metrics", true));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; pa_session=pa_x_y; b=2".parse().unwrap(),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("pa_x_y"));
    }

    #[test]
    fn an_origin_must_name_the_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "pa.example:8080".parse().unwrap());
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, "http://pa.example:8080".parse().unwrap());
        assert!(same_origin(&h));
    }
}
