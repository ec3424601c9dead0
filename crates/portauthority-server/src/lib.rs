//! The Port Authority server: the HTTP API over a [`Store`], and the wiring that builds and
//! runs it.
//!
//! Only this crate knows HTTP. It never holds state another process would need: every
//! request reads or writes through the store.

pub mod auth;
mod cursor;
mod dashboard;
mod error;
mod extract;
mod metrics;
mod middleware;
mod observe;
mod openapi;
mod routes;
mod serve;
pub mod supervisor;
mod watch;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use portauthority_core::{Env, Limits};
use portauthority_store::Store;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

pub use crate::metrics::{StatsLoop, install as install_metrics};
pub use crate::observe::{REQUEST_ID, valid_request_id};
pub use error::ApiError;
pub use openapi::openapi;
pub use watch::{Hub, WatchLimits};

/// What `portauthority serve` is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: String,
    pub database_url: String,
    pub limits: Limits,
    /// Largest request body, in bytes. A larger declared `Content-Length` is refused before
    /// the body is read; a chunked body is cut off where it passes the limit.
    pub body_limit: usize,
    /// How long a client may take to send a request head: from the connection's start, or
    /// on a kept-alive connection from the first byte of the next request. A head that
    /// stalls part-way gets a 408 and the connection is closed.
    pub header_timeout: Duration,
    /// How long the whole request body may take to arrive, counted from the end of its
    /// head (a deadline, not a gap between bytes: a trickle cannot keep it alive).
    pub body_timeout: Duration,
    /// How long handling may take, from the end of the request head (the body's arrival
    /// included) until the response head. A streamed response body is not bound by it.
    pub request_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request before it is closed.
    pub idle_timeout: Duration,
    /// At shutdown, how long open connections get to finish their requests before they are
    /// closed.
    pub shutdown_drain: Duration,
    /// Most connections open at once; more wait in the listen backlog until one closes.
    /// Keep it well below the process's file-descriptor limit (`ulimit -n`).
    pub max_connections: usize,
    /// The worker loops to run in-process (the bus, the outbox relay); `None`: none
    /// (`serve --no-worker`, another process runs them).
    pub worker: Option<portauthority_worker::WorkerConfig>,
    /// Let webhooks be created for loopback, private and link-local targets (the API's
    /// check; the worker's own setting guards the connections).
    pub webhooks_allow_private: bool,
    /// The watch streams' cap, ring and keep-alive.
    pub watch: WatchLimits,
    /// Listen on a non-loopback address although the database has no API key (anyone who
    /// reaches the port may do anything). Without it such a `listen` is refused at start.
    pub insecure_no_auth: bool,
    /// Require a key on `/metrics` too (once keys exist).
    pub metrics_need_key: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://portauthority.db".into(),
            limits: Limits::default(),
            body_limit: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            // 1 MiB in 20 s is 52 KB/s at least; below the request timeout, so that a slow
            // body is reported as such.
            body_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(30),
            // Longer than the 60 s idle timeout of common load balancers, so that the balancer
            // closes an idle connection first and never sends a request into one we close.
            idle_timeout: Duration::from_secs(75),
            // Well inside the 30 s Kubernetes gives a pod after SIGTERM (systemd gives 90 s).
            shutdown_drain: Duration::from_secs(10),
            // Below the common soft limit of 1,024 file descriptors, with room for the
            // database's files and connections, the bus and the log.
            max_connections: 900,
            worker: Some(portauthority_worker::WorkerConfig::default()),
            webhooks_allow_private: false,
            watch: WatchLimits::default(),
            insecure_no_auth: false,
            metrics_need_key: false,
        }
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub limits: Arc<Limits>,
    /// The clock and id source handed down to the command layer.
    pub env: Env,
    /// See [`Config::webhooks_allow_private`].
    pub webhooks_allow_private: bool,
    /// The process's one change-feed reader for the watch streams.
    pub hub: Arc<Hub>,
    /// The API keys callers are checked against.
    pub keys: Arc<auth::Keys>,
}

/// A built application: store open and migrated, socket bound, not yet serving.
pub struct App {
    listener: TcpListener,
    router: Router,
    store: Arc<dyn Store>,
    timers: serve::Timers,
    max_connections: usize,
    /// The worker loops this process runs besides the store's own.
    worker: Vec<Arc<dyn portauthority_store::Loop>>,
    hub: Arc<Hub>,
    /// Cancelled when shutdown begins: the watch streams end at once.
    streams_end: tokio_util::sync::CancellationToken,
}

impl App {
    /// Opens the store (applying migrations), connects the worker loops to the bus when
    /// one is configured, and binds the listening socket.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        crate::metrics::install();
        let env = portauthority_store::system::env();
        let store = portauthority_store::open_with(&config.database_url, env.clone())
            .await
            .with_context(|| format!("opening the store at {}", config.database_url))?;
        let worker = match &config.worker {
            Some(w) => {
                portauthority_worker::loops(store.clone(), env.clone(), config.limits.clone(), w)
                    .await?
            }
            None => Vec::new(),
        };
        safe_to_listen(store.as_ref(), &config).await?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let mut app = App::with_store(listener, store, env, &config);
        app.worker = worker;
        Ok(app)
    }

    /// An app over an already opened store (tests, embedding).
    pub fn with_store(
        listener: TcpListener,
        store: Arc<dyn Store>,
        env: Env,
        config: &Config,
    ) -> App {
        let streams_end = tokio_util::sync::CancellationToken::new();
        let hub = Arc::new(Hub::new(store.clone(), config.watch, streams_end.clone()));
        let keys = Arc::new(auth::Keys::new(
            store.clone(),
            env.clone(),
            config.metrics_need_key,
        ));
        let state = AppState {
            store: store.clone(),
            limits: Arc::new(config.limits.clone()),
            env,
            webhooks_allow_private: config.webhooks_allow_private,
            hub: hub.clone(),
            keys,
        };
        App {
            listener,
            router: router(state, config),
            store,
            timers: serve::Timers {
                header: config.header_timeout,
                idle: config.idle_timeout,
                drain: config.shutdown_drain,
            },
            max_connections: config.max_connections,
            worker: Vec::new(),
            hub,
            streams_end,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound socket has an address")
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The supervisor of this app's background loops: the store's and the worker's.
    fn start_loops(&self) -> supervisor::Supervisor {
        let mut loops = supervisor::Supervisor::new();
        let stats: Arc<dyn portauthority_store::Loop> = Arc::new(crate::metrics::StatsLoop {
            store: self.store.clone(),
        });
        for l in self
            .store
            .background()
            .into_iter()
            .chain(self.worker.iter().cloned())
            .chain([
                stats,
                self.hub.clone() as Arc<dyn portauthority_store::Loop>,
            ])
        {
            loops.spawn(l);
        }
        tracing::debug!(loops = ?loops.loops(), "background loops running");
        loops
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests
    /// finish for up to the shutdown drain (closing the connections still open after it),
    /// stops the background loops, and closes the store (flushing queued writes).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let loops = self.start_loops();
        // Trailing slashes are trimmed before routing: `/v1/jobs/` is `/v1/jobs`.
        let app = NormalizePathLayer::trim_trailing_slash().layer(self.router);
        // Streams never finish by themselves: they end as shutdown begins, so that their
        // connections close within the drain like any other.
        let streams_end = self.streams_end.clone();
        let shutdown = async move {
            shutdown.await;
            streams_end.cancel();
        };
        serve::serve(
            self.listener,
            app,
            self.timers,
            self.max_connections,
            shutdown,
        )
        .await;
        loops.shutdown().await;
        self.store.close().await;
        Ok(())
    }
}

/// Serves `/metrics` and `/healthz` alone on `listener` until `shutdown` resolves: the
/// metrics of a process that serves no API (`portauthority worker --metrics-listen`).
pub async fn serve_metrics(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::metrics::install();
    let app = Router::new()
        .route("/metrics", axum::routing::get(routes::health::metrics))
        .route("/healthz", axum::routing::get(routes::health::healthz));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving metrics")
}

/// Safe by default: with no API key in the database, only a loopback address may be
/// listened on, unless `--insecure-no-auth` says otherwise (and then a warning is logged).
async fn safe_to_listen(store: &dyn Store, config: &Config) -> anyhow::Result<()> {
    if store.has_keys().await.context("reading the API keys")? {
        return Ok(());
    }
    if listens_on_loopback_only(&config.listen).await? {
        return Ok(());
    }
    if config.insecure_no_auth {
        tracing::warn!(
            listen = %config.listen,
            "serving without authentication on a non-loopback address (--insecure-no-auth): \
             anyone who reaches it can read and change every job"
        );
        return Ok(());
    }
    anyhow::bail!(
        "refusing to listen on {} without authentication: the database has no API key. \
         Create one with `portauthority keys create --role admin --namespace '*' \
         --database-url URL`, listen on a loopback address (127.0.0.1), or pass \
         --insecure-no-auth to serve anyway",
        config.listen
    )
}

/// Whether every address `listen` resolves to is a loopback one.
async fn listens_on_loopback_only(listen: &str) -> anyhow::Result<bool> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .with_context(|| format!("resolving {listen}"))?
        .collect();
    Ok(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()))
}

/// The documented API routes, with their OpenAPI description.
fn api() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use routes::{health, history, jobs, session, tasks, watch, webhooks};
    use utoipa_axum::routes;

    utoipa_axum::router::OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(jobs::create, jobs::list))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::set_status))
        .routes(routes!(tasks::add, tasks::list))
        .routes(routes!(tasks::add_batch))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::set_status))
        .routes(routes!(tasks::heartbeat))
        .routes(routes!(tasks::set_status_batch))
        .routes(routes!(history::job_history, history::job_note))
        .routes(routes!(history::task_history, history::task_note))
        .routes(routes!(watch::job))
        .routes(routes!(watch::jobs))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::retry))
        .routes(routes!(session::create, session::delete))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// The whole HTTP surface, with the request guards of `config` (body limit, body and
/// request timeouts).
pub fn router(state: AppState, config: &Config) -> Router {
    let keys = state.keys.clone();
    let (api, spec) = api().split_for_parts();
    let spec = Arc::new(openapi::document(spec));

    api.merge(dashboard::routes())
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let spec = spec.clone();
                async move { axum::Json(spec.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ApiError::NotFound("no such resource".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        // Every /v1 request finds its caller here first (401/403 before any handler).
        .layer(axum::middleware::from_fn_with_state(keys, auth::authorize))
        .layer(DefaultBodyLimit::max(config.body_limit))
        // The deadline starts when the request reaches this layer, at the end of its head; a
        // body that misses it is a 408 where it is read (`extract.rs`).
        .layer(tower_http::timeout::RequestBodyDeadlineLayer::new(
            config.body_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            config.body_limit,
            middleware::refuse_declared_oversize,
        ))
        // Outside the others, so that it bounds everything up to the response head; tower-http's
        // `TimeoutLayer` would answer an empty 408, this one answers problem JSON.
        .layer(axum::middleware::from_fn_with_state(
            config.request_timeout,
            middleware::request_deadline,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        // Outermost: every response, whoever made it, gets its request id, its log line and
        // its metrics.
        .layer(axum::middleware::from_fn(observe::observe))
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("a request handler panicked".into()).into_response()
}
