//! Test support shared by the test binaries, benchmarks and the `bench` subcommand of
//! Port Authority: one dev-only place instead of files included with `#[path]`.
//!
//! - [`postgres`]: the server the tests may use (`PORTAUTHORITY_TEST_DATABASE_URL`) and
//!   scratch databases on it, one per test.
//! - [`skip`]: telling the person running `cargo test` that a test did not really run.
//! - [`server`]: `portauthority serve` as a child process.
//! - [`workload`]: the many-clients workload and its exact check of the stored state.
//! - [`acked`]: what the durability tests had acknowledged, and the check against it.
//!
//! It speaks to the service over HTTP and to PostgreSQL only to create and drop whole
//! databases; it never reads or writes the service's tables behind its back. It never
//! depends on `portauthority-store`, so that the store's own tests can use it.

pub mod acked;
pub mod postgres;
pub mod server;
pub mod skip;
pub mod workload;
