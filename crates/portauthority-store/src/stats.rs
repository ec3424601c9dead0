//! What the store tells `/metrics` about itself: jobs and tasks by status, the outbox, and
//! the state of its connections. Every count is read from a table the writes keep up to
//! date in their own transactions (`job_counts`, `task_counts`), never by counting jobs or
//! tasks, so a refresh costs the same at a thousand jobs as at ten million.

use portauthority_core::{Counters, Status, Timestamp};

/// A snapshot of the store, read in one go by [`crate::Store::stats`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Jobs by status (`total`: all of them).
    pub jobs: Counters,
    /// Tasks by status (`total`: all of them).
    pub tasks: Counters,
    /// Outbox rows waiting to be relayed.
    pub outbox_pending: u64,
    /// When the oldest waiting outbox row's event happened; `None` with none waiting.
    pub outbox_oldest: Option<Timestamp>,
    /// PostgreSQL: the request pool.
    pub pool: Option<PoolStats>,
    /// SQLite: writes queued for the writer, not yet in a group.
    pub writer_queue: Option<u64>,
}

/// A connection pool's use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open (busy and idle).
    pub open: u32,
    /// Connections open and idle.
    pub idle: u32,
    /// Most connections the pool opens.
    pub max: u32,
}

/// Counters from `(status code, count)` rows; unknown codes are ignored.
pub(crate) fn counters(rows: impl IntoIterator<Item = (i64, i64)>) -> Counters {
    let mut c = Counters::default();
    for (code, n) in rows {
        if let Some(status) = Status::from_code(code) {
            c = c.plus(&Counters::of(status, n));
        }
    }
    c
}
