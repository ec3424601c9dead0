//! PostgreSQL scale-out and resilience: real `portauthority serve` processes on the
//! machine's PostgreSQL (`PORTAUTHORITY_TEST_DATABASE_URL`), each test on a scratch
//! database of its own. Without that variable they pass without running, and the first one
//! says so on the terminal (`portauthority_testkit::skip`).
//!
//! The tests of this binary take turns (see [`harness::serial`]): one of them stops and
//! starts the PostgreSQL cluster, which must not happen under another's load.

mod harness;
mod partition;
mod restart;
mod scale_out;

/// The binary under test.
fn portauthority() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_portauthority"))
}
