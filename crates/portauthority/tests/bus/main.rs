//! The bus end to end: real `portauthority` processes (serve, worker) on a real NATS
//! JetStream server and real databases. Each test has its own bus prefix (its own streams
//! and subjects) and its own database. Skipped, saying so, when
//! `PORTAUTHORITY_TEST_NATS_URL` is unset; the PostgreSQL variants also need
//! `PORTAUTHORITY_TEST_DATABASE_URL`.

mod commands;
mod harness;
mod relay;

/// The binary under test.
fn portauthority() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_portauthority"))
}
