//! The store conformance suite: one set of scenarios, run against every `Store`
//! implementation (after riverqueue/river's `riverdrivertest`).
//!
//! Each scenario is an `async fn(Arc<dyn Store>)` that speaks only the trait. The
//! `conformance!` macro turns each into two tests, `<name>_sqlite` (a fresh SQLite file in
//! a temporary directory) and `<name>_postgres` (a fresh scratch database on the server
//! `PORTAUTHORITY_TEST_DATABASE_URL` names; skipped, saying so, when it is unset). The two
//! stores must behave identically: a scenario never asks which one it runs against.
//!
//! All scenarios compile into this one test binary to keep build time down.

/// Generates `<scenario>_sqlite` and `<scenario>_postgres` tests for scenarios defined in
/// the invoking module.
macro_rules! conformance {
    ($($scenario:ident),+ $(,)?) => {
        pastey::paste! {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn [<$scenario _sqlite>]() {
                    crate::harness::run_sqlite($scenario).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn [<$scenario _postgres>]() {
                    crate::harness::run_postgres($scenario).await;
                }
            )+
        }
    };
}

/// Like `conformance!`, for scenarios that also take a `harness::Ctx` (the store's clock,
/// its URL).
macro_rules! conformance_ctx {
    ($($scenario:ident),+ $(,)?) => {
        pastey::paste! {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn [<$scenario _sqlite>]() {
                    crate::harness::run_sqlite_ctx($scenario).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn [<$scenario _postgres>]() {
                    crate::harness::run_postgres_ctx($scenario).await;
                }
            )+
        }
    };
}

mod harness;

mod concurrency;
mod feed;
mod history;
mod job_status;
mod jobs;
mod keys;
mod list_paths;
mod lists;
mod not_found;
mod once;
mod progress;
mod retention;
mod scopes;
mod seed;
mod stats;
mod sweeper;
mod tasks;
mod text;
mod timeouts;
mod updates;
mod webhooks;
