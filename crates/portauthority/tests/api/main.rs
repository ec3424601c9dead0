//! HTTP integration tests: a real server on port 0 with a fresh database per test, driven
//! through the typed client and raw HTTP. All modules compile into this one binary; what
//! it shares with the PostgreSQL tests is in `portauthority-testkit`.

mod auth;
mod browser;
mod concurrency;
mod contract;
mod crash;
mod dashboard;
mod disk;
mod errors;
mod healthcheck;
mod helpers;
mod history;
mod hostile;
mod idempotency;
mod idempotency_key;
mod limits;
mod lists;
mod observability;
mod readiness;
mod rollup;
mod seed;
mod shutdown;
mod timed_out;
mod timeouts;
mod watch;
mod webhooks;

/// The binary under test, for the tests that run it as a child process.
fn portauthority() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_portauthority"))
}
