//! HTTP integration tests: a real server on port 0 with a fresh database per test, driven
//! through the typed client and raw HTTP. All modules compile into this one binary.

#[path = "../common/acked.rs"]
mod acked;
mod concurrency;
mod crash;
mod errors;
mod helpers;
mod history;
mod idempotency;
mod lists;
mod rollup;
mod seed;
#[path = "../common/server.rs"]
mod server;
mod shutdown;
#[path = "../common/workload.rs"]
mod workload;
