//! PostgreSQL scale-out and resilience: real `portauthority serve` processes on the
//! machine's PostgreSQL (`PORTAUTHORITY_TEST_DATABASE_URL`), each test on a scratch
//! database of its own. Without that variable every test says so and passes.
//!
//! The tests of this binary take turns (see [`harness::serial`]): one of them stops and
//! starts the PostgreSQL cluster, which must not happen under another's load.

#[path = "../common/acked.rs"]
mod acked;
mod harness;
mod restart;
mod scale_out;
#[path = "../common/server.rs"]
mod server;
#[path = "../common/workload.rs"]
mod workload;
