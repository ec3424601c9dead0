//! Background loops: work a process does on its own (folding counts, checkpoints, relaying
//! the outbox, ...). A loop only says how to do one step; the application's supervisor
//! (`portauthority_server::supervisor`) runs it, restarts it with backoff when it fails, and
//! stops it on shutdown. Tests call [`Loop::step`] until it reports no work.

use async_trait::async_trait;
use std::time::Duration;

/// One background loop.
#[async_trait]
pub trait Loop: Send + Sync + 'static {
    /// For logs.
    fn name(&self) -> &'static str;

    /// Does one unit of work; `Ok(true)` when it found some, so that the supervisor steps
    /// again at once, `Ok(false)` when it was idle. Safe to run twice, and concurrently in
    /// several processes.
    async fn step(&self) -> anyhow::Result<bool>;

    /// Waits until there may be work again after an idle step. The default waits
    /// [`Loop::interval`]; a loop woken by a signal overrides it.
    async fn idle(&self) {
        tokio::time::sleep(self.interval()).await;
    }

    /// How long an idle loop waits before its next step.
    fn interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// How long the supervisor waits after a step that found work (default: not at all).
    fn pace(&self) -> Duration {
        Duration::ZERO
    }

    /// Runs once when the supervisor stops the loop (a final flush).
    async fn stop(&self) {}
}

/// Steps `l` until it finds no work, at most `max` steps; returns how many found work.
pub async fn step_until_idle(l: &dyn Loop, max: usize) -> anyhow::Result<usize> {
    let mut worked = 0;
    while worked < max && l.step().await? {
        worked += 1;
    }
    Ok(worked)
}
