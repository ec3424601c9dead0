//! Taking turns, the runtime, and scratch databases named for this binary. The rest the
//! tests share with the HTTP suite is in `portauthority-testkit`.

use std::sync::{Mutex, MutexGuard};

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
    portauthority_testkit::postgres::scratch_database(admin, "pa_pgtest")
        .await
        .expect("create a scratch database")
}
