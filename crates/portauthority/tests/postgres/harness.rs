//! Scratch PostgreSQL databases, taking turns, and the small pieces the tests share
//! (servers: `tests/common/server.rs`).

use std::sync::{Mutex, MutexGuard};

/// The server the scratch databases are created on, or None (after saying so) when the
/// variable is not set.
pub fn admin_url() -> Option<String> {
    match std::env::var("PORTAUTHORITY_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!("skipping: PORTAUTHORITY_TEST_DATABASE_URL is not set");
            None
        }
    }
}

/// Held by every test of this binary for its whole run: the restart test stops the
/// PostgreSQL cluster, which must not happen under another test's load. A test that
/// panicked leaves the lock poisoned; the next one takes it all the same.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The runtime a test drives its clients on (the lock above is taken outside of it).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A fresh, empty database on the test server.
pub async fn scratch_database(admin: &str) -> String {
    portauthority_store::postgres::scratch_database(admin, "pa_pgtest")
        .await
        .expect("create a scratch database")
}

pub use crate::workload::{Rng, first};
