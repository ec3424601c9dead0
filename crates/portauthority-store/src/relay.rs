//! The outbox relay: a background loop that claims outbox rows, hands them to a [`Sink`]
//! (the bus, webhooks) in per-job order, and acknowledges what was delivered.
//!
//! Several relays (in one process or many) share the work by job: a claim leases whole
//! jobs (`Store::claim_outbox`), so two relays never deliver one job's events at once or
//! out of order. A relay that dies leaves its leases to expire; another then takes over.

use crate::Store;
use crate::background::Loop;
use crate::feed::OutboxItem;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Where a relay delivers events.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Delivers one event; an error leaves it (and the rest of its job's claimed events)
    /// for a later attempt.
    async fn deliver(&self, item: &OutboxItem) -> anyhow::Result<()>;
}

/// Relays the outbox to a sink.
pub struct Relay<S> {
    store: Arc<dyn Store>,
    sink: S,
    /// Tells this relay's leases from other relays'.
    id: String,
    lease: Duration,
    jobs_per_claim: u32,
    signal: Mutex<tokio::sync::watch::Receiver<u64>>,
}

impl<S: Sink> Relay<S> {
    pub fn new(store: Arc<dyn Store>, sink: S, id: impl Into<String>) -> Relay<S> {
        let signal = Mutex::new(store.feed_signal());
        Relay {
            store,
            sink,
            id: id.into(),
            lease: Duration::from_secs(30),
            jobs_per_claim: 64,
            signal,
        }
    }

    /// How long a claim keeps other relays off its jobs (default 30 s).
    pub fn with_lease(mut self, lease: Duration) -> Relay<S> {
        self.lease = lease;
        self
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }
}

#[async_trait]
impl<S: Sink> Loop for Relay<S> {
    fn name(&self) -> &'static str {
        "outbox-relay"
    }

    /// Claims, delivers in order and acknowledges one batch of jobs; found work when it
    /// delivered something.
    async fn step(&self) -> anyhow::Result<bool> {
        let items = self
            .store
            .claim_outbox(&self.id, self.jobs_per_claim, self.lease)
            .await?;
        let mut delivered = Vec::with_capacity(items.len());
        let mut failed_job = None;
        let mut failure = None;
        for item in &items {
            if failed_job == Some(item.event.job_id) {
                continue;
            }
            match self.sink.deliver(item).await {
                Ok(()) => delivered.push(item.seq),
                Err(e) => {
                    failed_job = Some(item.event.job_id);
                    failure = Some(e);
                }
            }
        }
        if !delivered.is_empty() {
            self.store.ack_outbox(&self.id, &delivered).await?;
        }
        if let Some(e) = failure {
            return Err(e.context("delivering an outbox event"));
        }
        Ok(!delivered.is_empty())
    }

    async fn idle(&self) {
        let mut signal = self.signal.lock().await;
        let _ = tokio::time::timeout(self.interval(), signal.changed()).await;
    }
}
