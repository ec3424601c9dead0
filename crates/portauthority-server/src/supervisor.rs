//! The home of the application's background loops.
//!
//! Every loop (`portauthority_store::Loop`: the store's checkpoints or count folding and
//! wake-ups, and later relays, consumers, sweepers) runs here as a task of one `JoinSet`,
//! stopped by one cancellation token. A loop steps at once again after a step that found
//! work (after its `pace`), waits with `idle` after one that did not, and after a failure
//! or a panic is logged and retried with exponential backoff. A failing loop never takes
//! the server down.

use futures::FutureExt;
use portauthority_store::Loop;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// First wait after a failure; doubled after each further failure in a row.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest wait between attempts of a failing loop.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Runs loops until [`Supervisor::shutdown`].
pub struct Supervisor {
    tasks: JoinSet<()>,
    token: CancellationToken,
    names: Vec<&'static str>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Supervisor {
        Supervisor {
            tasks: JoinSet::new(),
            token: CancellationToken::new(),
            names: Vec::new(),
        }
    }

    /// Starts running `l`.
    pub fn spawn(&mut self, l: Arc<dyn Loop>) {
        self.names.push(l.name());
        let token = self.token.clone();
        self.tasks.spawn(run(l, token));
    }

    /// The names of the loops started, in order.
    pub fn loops(&self) -> &[&'static str] {
        &self.names
    }

    /// Stops every loop (each finishes its current step, then runs its `stop`) and waits.
    pub async fn shutdown(mut self) {
        self.token.cancel();
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined {
                tracing::warn!(error = %e, "a background loop ended abnormally");
            }
        }
    }
}

/// One step, with a panic turned into an error.
async fn step(l: &dyn Loop) -> anyhow::Result<bool> {
    match AssertUnwindSafe(l.step()).catch_unwind().await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("the step panicked")),
    }
}

async fn run(l: Arc<dyn Loop>, token: CancellationToken) {
    let name = l.name();
    tracing::debug!(name, "background loop started");
    let mut failures: u32 = 0;
    loop {
        let outcome = tokio::select! {
            _ = token.cancelled() => break,
            outcome = step(l.as_ref()) => outcome,
        };
        let wait = match outcome {
            Ok(true) => {
                failures = 0;
                let pace = l.pace();
                if pace.is_zero() {
                    continue;
                }
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(pace) => continue,
                }
            }
            Ok(false) => {
                failures = 0;
                None
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = backoff(failures);
                tracing::warn!(name, error = %format!("{e:#}"), failures, retry_in_ms = wait.as_millis() as u64,
                    "background loop failed; retrying");
                Some(wait)
            }
        };
        tokio::select! {
            _ = token.cancelled() => break,
            _ = async {
                match wait {
                    Some(d) => tokio::time::sleep(d).await,
                    None => l.idle().await,
                }
            } => {}
        }
    }
    l.stop().await;
    tracing::debug!(name, "background loop stopped");
}

/// The wait after `failures` failures in a row.
fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    BACKOFF_START.saturating_mul(factor).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails (or panics) on its first steps, then counts successful ones.
    struct Flaky {
        steps: AtomicU32,
        ok: AtomicU32,
    }

    #[async_trait]
    impl Loop for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }

        async fn step(&self) -> anyhow::Result<bool> {
            match self.steps.fetch_add(1, Ordering::SeqCst) {
                0 => anyhow::bail!("first step fails"),
                1 => panic!("second step panics"),
                _ => {
                    self.ok.fetch_add(1, Ordering::SeqCst);
                    Ok(false)
                }
            }
        }

        fn interval(&self) -> Duration {
            Duration::from_millis(5)
        }
    }

    #[tokio::test]
    async fn a_loop_that_fails_or_panics_is_restarted_and_shutdown_stops_it() {
        let flaky = Arc::new(Flaky {
            steps: AtomicU32::new(0),
            ok: AtomicU32::new(0),
        });
        let mut sup = Supervisor::new();
        sup.spawn(flaky.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while flaky.ok.load(Ordering::SeqCst) < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the loop never recovered"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sup.shutdown().await;
        let after = flaky.steps.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            flaky.steps.load(Ordering::SeqCst),
            after,
            "steps after shutdown"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), BACKOFF_START);
        assert_eq!(backoff(2), BACKOFF_START * 2);
        assert_eq!(backoff(40), BACKOFF_MAX);
    }
}
