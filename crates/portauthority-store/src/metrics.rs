//! The metrics the store records itself, through the `metrics` facade (a no-op until the
//! application installs a recorder). Gauges read from the database are not here: the
//! application refreshes them from [`crate::Store::stats`] in a loop of its own.

/// Histogram: how many writes each SQLite group commit holds.
pub const SQLITE_GROUP_SIZE: &str = "portauthority_sqlite_group_commit_size";
/// Counter: PostgreSQL transactions run again, by `reason` (`race`: a concurrent insert
/// of the same key; `error`: a serialization failure, deadlock or dropped connection).
pub const POSTGRES_RETRIES: &str = "portauthority_postgres_retries_total";

/// Describes the metrics above to the installed recorder.
pub fn describe() {
    metrics::describe_histogram!(
        SQLITE_GROUP_SIZE,
        "Writes committed together in one SQLite transaction (group commit)"
    );
    metrics::describe_counter!(
        POSTGRES_RETRIES,
        "PostgreSQL transactions retried, by reason (race, error)"
    );
}
