//! The Port Authority server: the HTTP API over a [`Store`], and the wiring that builds and
//! runs it.
//!
//! Only this crate knows HTTP. It never holds state another process would need: every
//! request reads or writes through the store.

mod cursor;
mod error;
mod extract;
mod openapi;
mod routes;
pub mod supervisor;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use portauthority_core::{Env, Limits};
use portauthority_store::Store;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

pub use error::ApiError;
pub use openapi::openapi;

/// What `portauthority serve` is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: String,
    pub database_url: String,
    pub limits: Limits,
    /// Largest request body, in bytes.
    pub body_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://portauthority.db".into(),
            limits: Limits::default(),
            body_limit: 1024 * 1024,
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
}

/// A built application: store open and migrated, socket bound, not yet serving.
pub struct App {
    listener: TcpListener,
    router: Router,
    store: Arc<dyn Store>,
}

impl App {
    /// Opens the store (applying migrations) and binds the listening socket.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let env = portauthority_store::system::env();
        let store = portauthority_store::open_with(&config.database_url, env.clone())
            .await
            .with_context(|| format!("opening the store at {}", config.database_url))?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Ok(App::with_store(listener, store, env, &config))
    }

    /// An app over an already opened store (tests, embedding).
    pub fn with_store(
        listener: TcpListener,
        store: Arc<dyn Store>,
        env: Env,
        config: &Config,
    ) -> App {
        let state = AppState {
            store: store.clone(),
            limits: Arc::new(config.limits.clone()),
            env,
        };
        App {
            listener,
            router: router(state, config.body_limit),
            store,
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

    /// The supervisor of this app's background loops, with the store's loops started.
    fn start_loops(&self) -> supervisor::Supervisor {
        let mut loops = supervisor::Supervisor::new();
        for l in self.store.background() {
            loops.spawn(l);
        }
        tracing::debug!(loops = ?loops.loops(), "background loops running");
        loops
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests
    /// finish, stops the background loops, and closes the store (flushing queued writes).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let loops = self.start_loops();
        // Trailing slashes are trimmed before routing: `/v1/jobs/` is `/v1/jobs`.
        let app = NormalizePathLayer::trim_trailing_slash().layer(self.router);
        let served = axum::serve(
            self.listener,
            axum::ServiceExt::<Request>::into_make_service(app),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        loops.shutdown().await;
        self.store.close().await;
        served.context("serving HTTP")
    }
}

/// The documented API routes, with their OpenAPI description.
fn api() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use routes::{health, history, jobs, tasks};
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
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

/// The whole HTTP surface.
pub fn router(state: AppState, body_limit: usize) -> Router {
    let (api, spec) = api().split_for_parts();
    let spec = Arc::new(spec);

    api.route(
        "/openapi.json",
        axum::routing::get(move || {
            let spec = spec.clone();
            async move { axum::Json(spec.as_ref().clone()) }
        }),
    )
    .fallback(|| async { ApiError::NotFound("no such resource".into()) })
    .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
    .with_state(state)
    .layer(DefaultBodyLimit::max(body_limit))
    .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
    .layer(tower_http::trace::TraceLayer::new_for_http())
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("a request handler panicked".into()).into_response()
}
