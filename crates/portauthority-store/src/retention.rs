//! Retention by outcome: a background loop that deletes the terminal jobs whose time is up
//! (`RetentionPolicy`: per terminal status, how long after its `end_time` a job is kept),
//! with their tasks, history, outbox rows and leases.
//!
//! It deletes in small batches, one transaction each (`Store::delete_expired_jobs`; on
//! SQLite one call of the writer), so that writers never wait long behind it. Several
//! processes may run it at once: on PostgreSQL each skips the jobs another holds, and a
//! job deleted twice is simply not found the second time.

use crate::Store;
use crate::background::Loop;
use async_trait::async_trait;
use portauthority_core::RetentionPolicy;
use std::sync::Arc;
use std::time::Duration;

/// Deletes expired jobs, reading the time from the store's clock.
pub struct Retention {
    store: Arc<dyn Store>,
    policy: RetentionPolicy,
    /// Most jobs deleted in one transaction.
    batch: u32,
    interval: Duration,
}

impl Retention {
    pub fn new(store: Arc<dyn Store>, policy: RetentionPolicy) -> Retention {
        Retention {
            store,
            policy,
            batch: 100,
            interval: Duration::from_secs(10),
        }
    }

    /// Most jobs one step deletes, in one transaction (default 100).
    pub fn with_batch(mut self, batch: u32) -> Retention {
        self.batch = batch.max(1);
        self
    }

    /// How long an idle loop waits before it looks again (default 10 s).
    pub fn with_interval(mut self, interval: Duration) -> Retention {
        self.interval = interval;
        self
    }
}

#[async_trait]
impl Loop for Retention {
    fn name(&self) -> &'static str {
        "retention"
    }

    /// Deletes one batch; found work when it deleted any.
    async fn step(&self) -> anyhow::Result<bool> {
        let cutoffs = self.policy.cutoffs(self.store.env().now());
        if cutoffs.is_empty() {
            return Ok(false);
        }
        let deleted = self.store.delete_expired_jobs(&cutoffs, self.batch).await?;
        if deleted > 0 {
            tracing::info!(deleted, "deleted expired jobs");
        } else {
            tracing::debug!(deleted, "no job has expired");
        }
        Ok(deleted > 0)
    }

    fn interval(&self) -> Duration {
        self.interval
    }
}
