//! The timeout sweeper: a background loop that fails the tasks and jobs whose deadline has
//! come, with reason `timed_out`.
//!
//! It never writes rows itself. It finds due rows through the store's index of deadlines
//! (`Store::due_tasks`, `Store::due_jobs`) and sends commands like any client: a task
//! becomes `failed` by a `TaskUpdate` (`TaskChange::TimeOut`), a job by a `SetJobStatus`
//! (whose cascade cancels its open tasks), so history, counters, the job's roll-up and the
//! outbox follow as for a client's change.
//!
//! Several sweepers (in one process or many on one PostgreSQL) may find the same row due;
//! each is failed once all the same. The update locks the task's job and its planner checks
//! again that the task is due: one that another sweeper failed, or that saw a heartbeat
//! since it was read, is refused as not due and left alone. A job that another sweeper (or
//! a client) ended meanwhile is a no-op or a conflict of `SetJobStatus`.

use crate::background::Loop;
use crate::{Store, StoreError, TaskUpdate};
use async_trait::async_trait;
use portauthority_core::{SetJobStatus, Status, TIMED_OUT};
use std::sync::Arc;
use std::time::Duration;

/// Fails what has timed out, reading the time from the store's clock.
pub struct Sweeper {
    store: Arc<dyn Store>,
    /// Most tasks (and most jobs) one step handles.
    batch: u32,
    interval: Duration,
}

impl Sweeper {
    pub fn new(store: Arc<dyn Store>) -> Sweeper {
        Sweeper {
            store,
            batch: 100,
            interval: Duration::from_millis(500),
        }
    }

    /// How long an idle sweeper waits before it looks again (default 500 ms): a task is
    /// failed at most about this long after its deadline.
    pub fn with_interval(mut self, interval: Duration) -> Sweeper {
        self.interval = interval;
        self
    }

    /// Most tasks, and most jobs, one step fails (default 100).
    pub fn with_batch(mut self, batch: u32) -> Sweeper {
        self.batch = batch.max(1);
        self
    }

    /// Fails the due tasks, in one batch update; returns how many it failed.
    async fn sweep_tasks(&self) -> Result<usize, StoreError> {
        let now = self.store.env().now();
        let due = self.store.due_tasks(now, self.batch).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let updates = due
            .into_iter()
            .map(|(job, task)| TaskUpdate::time_out(job, task))
            .collect();
        let mut failed = 0;
        for result in self.store.update_tasks(updates).await? {
            match result {
                Ok(_) => failed += 1,
                // Not due any more (a heartbeat, another sweeper), or gone.
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(failed)
    }

    /// Fails the due jobs, one command each; returns how many it set.
    async fn sweep_jobs(&self) -> Result<usize, StoreError> {
        let now = self.store.env().now();
        let mut failed = 0;
        for job_id in self.store.due_jobs(now, self.batch).await? {
            let cmd = SetJobStatus {
                job_id,
                to: Status::Failed,
                reason: Some(TIMED_OUT.to_owned()),
            };
            match self.store.run_set_job_status(cmd).await {
                Ok(_) => failed += 1,
                // Ended meanwhile (completed by its tasks or a client), or gone.
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(failed)
    }
}

#[async_trait]
impl Loop for Sweeper {
    fn name(&self) -> &'static str {
        "timeout-sweeper"
    }

    /// One batch of due tasks, then one of due jobs; found work when it failed any.
    async fn step(&self) -> anyhow::Result<bool> {
        let tasks = self.sweep_tasks().await?;
        let jobs = self.sweep_jobs().await?;
        if tasks + jobs > 0 {
            tracing::info!(tasks, jobs, "failed what timed out");
        }
        Ok(tasks + jobs > 0)
    }

    fn interval(&self) -> Duration {
        self.interval
    }
}
