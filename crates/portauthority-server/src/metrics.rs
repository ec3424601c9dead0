//! `/metrics`: the process's metrics in the Prometheus text format.
//!
//! Everything is recorded through the `metrics` facade into one process-wide Prometheus
//! recorder, installed once ([`install`]). Request counts and latencies are recorded by the
//! request middleware (`observe.rs`); the store and the worker loops record their own
//! (`portauthority_store::metrics`, `portauthority_worker::metrics`); gauges that need the
//! database are refreshed by [`StatsLoop`], a background loop under the supervisor, so a
//! scrape never queries the database. Every metric is documented in docs/operations.md.

use async_trait::async_trait;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use portauthority_core::{Counters, Status};
use portauthority_store::{Loop, Store};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Counter: HTTP requests by `method`, `route` (the matched route template) and `status`.
pub const HTTP_REQUESTS: &str = "portauthority_http_requests_total";
/// Histogram: seconds from a request's head to its response head, by `route`.
pub const HTTP_DURATION: &str = "portauthority_http_request_duration_seconds";
/// Gauge: open Server-Sent Events streams (set by the streams).
pub const SSE_CLIENTS: &str = "portauthority_sse_clients";
/// Gauge: outbox rows waiting to be relayed.
pub const OUTBOX_PENDING: &str = "portauthority_outbox_pending";
/// Gauge: age in seconds of the oldest outbox row waiting (0 when none waits).
pub const OUTBOX_OLDEST_AGE: &str = "portauthority_outbox_oldest_age_seconds";
/// Gauge: jobs by `status`.
pub const JOBS: &str = "portauthority_jobs";
/// Gauge: tasks by `status`.
pub const TASKS: &str = "portauthority_tasks";
/// Gauge: SQLite writes queued for the writer.
pub const SQLITE_WRITER_QUEUE: &str = "portauthority_sqlite_writer_queue";
/// Gauges: the PostgreSQL request pool's open and idle connections, and its maximum.
pub const POSTGRES_POOL_OPEN: &str = "portauthority_postgres_pool_connections";
pub const POSTGRES_POOL_IDLE: &str = "portauthority_postgres_pool_idle_connections";
pub const POSTGRES_POOL_MAX: &str = "portauthority_postgres_pool_max_connections";
/// Gauge: when the gauges read from the store were last refreshed (Unix seconds).
pub const STATS_REFRESHED: &str = "portauthority_store_stats_refreshed_timestamp_seconds";

/// Latency buckets, in seconds: from a fast read (half a millisecond) to the request
/// timeout's neighbourhood.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Group commit sizes: 1 to the writer's largest group (256).
const GROUP_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle) and
/// describes every metric. Call it before opening the store, so that what the store records
/// from its first write is kept.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(portauthority_store::metrics::SQLITE_GROUP_SIZE.into()),
                    &GROUP_BUCKETS,
                )
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed already; /metrics shows only its own");
        }
        describe();
        // Present from the start, before the first stream opens.
        metrics::gauge!(SSE_CLIENTS).set(0.0);
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests, by method, route template and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "Time from a request's head to its response head, by route template"
    );
    describe_gauge!(SSE_CLIENTS, "Open Server-Sent Events streams");
    describe_gauge!(OUTBOX_PENDING, "Outbox rows waiting to be relayed");
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest outbox row waiting to be relayed (0 when none waits)"
    );
    describe_gauge!(JOBS, "Jobs by status, from the maintained counts");
    describe_gauge!(TASKS, "Tasks by status, from the maintained counts");
    describe_gauge!(SQLITE_WRITER_QUEUE, "SQLite writes queued for the writer");
    describe_gauge!(
        POSTGRES_POOL_OPEN,
        "PostgreSQL request pool: connections open"
    );
    describe_gauge!(
        POSTGRES_POOL_IDLE,
        "PostgreSQL request pool: connections open and idle"
    );
    describe_gauge!(
        POSTGRES_POOL_MAX,
        "PostgreSQL request pool: most connections"
    );
    describe_gauge!(
        STATS_REFRESHED,
        metrics::Unit::Seconds,
        "When the gauges read from the store were last refreshed (Unix time)"
    );
    portauthority_store::metrics::describe();
    portauthority_worker::metrics::describe();
}

/// The metrics page.
pub fn render() -> String {
    install().render()
}

/// Refreshes the gauges read from the store (`Store::stats`: maintained counts, never a
/// scan) every [`StatsLoop::EVERY`], and keeps the recorder's histograms drained.
pub struct StatsLoop {
    pub store: Arc<dyn Store>,
}

impl StatsLoop {
    /// Often enough for alerts that look at minutes; a scrape in between sees the last
    /// values.
    pub const EVERY: Duration = Duration::from_secs(5);
}

#[async_trait]
impl Loop for StatsLoop {
    fn name(&self) -> &'static str {
        "metrics"
    }

    async fn step(&self) -> anyhow::Result<bool> {
        let handle = install();
        handle.run_upkeep();
        let stats = self.store.stats().await?;
        by_status(JOBS, &stats.jobs);
        by_status(TASKS, &stats.tasks);
        metrics::gauge!(OUTBOX_PENDING).set(stats.outbox_pending as f64);
        let now = self.store.env().now();
        let age = stats
            .outbox_oldest
            .map_or(0, |t| (now.as_millis() - t.as_millis()).max(0));
        metrics::gauge!(OUTBOX_OLDEST_AGE).set(age as f64 / 1000.0);
        if let Some(q) = stats.writer_queue {
            metrics::gauge!(SQLITE_WRITER_QUEUE).set(q as f64);
        }
        if let Some(p) = stats.pool {
            metrics::gauge!(POSTGRES_POOL_OPEN).set(f64::from(p.open));
            metrics::gauge!(POSTGRES_POOL_IDLE).set(f64::from(p.idle));
            metrics::gauge!(POSTGRES_POOL_MAX).set(f64::from(p.max));
        }
        metrics::gauge!(STATS_REFRESHED).set(now.as_millis() as f64 / 1000.0);
        Ok(false)
    }

    fn interval(&self) -> Duration {
        Self::EVERY
    }
}

fn by_status(name: &'static str, counts: &Counters) {
    for s in Status::ALL {
        metrics::gauge!(name, "status" => s.as_str()).set(counts.get(s) as f64);
    }
}
