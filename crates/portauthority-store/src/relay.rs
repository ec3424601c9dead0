//! The outbox relay: a background loop that claims outbox rows, hands each job's rows to
//! its [`Sink`]s (the bus, webhooks) in per-job order, and acknowledges what every sink
//! took.
//!
//! Several relays (in one process or many) share the work by job: a claim leases whole
//! jobs (`Store::claim_outbox`), so two relays never deliver one job's events at once or
//! out of order. A relay that dies leaves its leases to expire; another then takes over.
//! A row is acknowledged only once every sink has taken it, so a sink may be given a row
//! again after a failure (of its own or another sink's): sinks deliver idempotently (the
//! bus by message id, webhooks by (webhook, event)), and `OutboxItem::held_since` tells a
//! sink when an earlier delivery may have gone out unacknowledged.

use crate::Store;
use crate::background::Loop;
use crate::feed::OutboxItem;
use async_trait::async_trait;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How many of a job's events a sink took.
#[derive(Debug, Default)]
pub struct Delivered {
    /// A prefix of the job's events, in order.
    pub count: usize,
    /// What stopped the sink before the end, if anything did.
    pub error: Option<anyhow::Error>,
}

impl Delivered {
    pub fn all(items: &[OutboxItem]) -> Delivered {
        Delivered {
            count: items.len(),
            error: None,
        }
    }

    /// The first `count` events, then `error`.
    pub fn failed(count: usize, error: anyhow::Error) -> Delivered {
        Delivered {
            count,
            error: Some(error),
        }
    }
}

/// Where a relay delivers events.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// For logs.
    fn name(&self) -> &'static str;

    /// Delivers one job's claimed events, in `job_seq` order, stopping at the first it
    /// cannot deliver (that one and the rest come again later).
    async fn deliver(&self, job: &[OutboxItem]) -> Delivered;
}

/// Jobs whose events a relay delivers at once (each job's own events one after another).
const JOBS_IN_FLIGHT: usize = 32;

/// Relays the outbox to its sinks.
pub struct Relay {
    store: Arc<dyn Store>,
    sinks: Vec<Arc<dyn Sink>>,
    /// Tells this relay's leases from other relays'.
    id: String,
    lease: Duration,
    jobs_per_claim: u32,
    signal: Mutex<tokio::sync::watch::Receiver<u64>>,
}

impl Relay {
    pub fn new(store: Arc<dyn Store>, sinks: Vec<Arc<dyn Sink>>, id: impl Into<String>) -> Relay {
        let signal = Mutex::new(store.feed_signal());
        Relay {
            store,
            sinks,
            id: id.into(),
            lease: Duration::from_secs(30),
            jobs_per_claim: 64,
            signal,
        }
    }

    /// How long a claim keeps other relays off its jobs (default 30 s).
    pub fn with_lease(mut self, lease: Duration) -> Relay {
        self.lease = lease;
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Delivers one job's events to every sink; how many all of them took.
    async fn deliver_job(&self, job: &[OutboxItem]) -> Delivered {
        let mut taken = Delivered::all(job);
        for sink in &self.sinks {
            let got = sink.deliver(&job[..taken.count]).await;
            if let Some(e) = got.error {
                taken.error = Some(e.context(format!("{} sink", sink.name())));
            }
            taken.count = taken.count.min(got.count);
        }
        taken
    }
}

/// Where each job's items are in a claim (a claim returns them by job).
fn by_job(items: &[OutboxItem]) -> Vec<std::ops::Range<usize>> {
    let mut start = 0;
    items
        .chunk_by(|a, b| a.event.job_id == b.event.job_id)
        .map(|job| {
            start += job.len();
            start - job.len()..start
        })
        .collect()
}

#[async_trait]
impl Loop for Relay {
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
        let results: Vec<(std::ops::Range<usize>, Delivered)> =
            futures::stream::iter(by_job(&items))
                .map(|job| {
                    let items = &items[job.clone()];
                    async move { (job, self.deliver_job(items).await) }
                })
                .buffer_unordered(JOBS_IN_FLIGHT)
                .collect()
                .await;
        let mut delivered = Vec::with_capacity(items.len());
        let mut failure = None;
        for (job, got) in results {
            delivered.extend(items[job][..got.count].iter().map(|i| i.seq));
            failure = failure.or(got.error);
        }
        if !delivered.is_empty() {
            self.store.ack_outbox(&self.id, &delivered).await?;
        }
        if let Some(e) = failure {
            return Err(e.context("delivering outbox events"));
        }
        Ok(!delivered.is_empty())
    }

    async fn idle(&self) {
        let mut signal = self.signal.lock().await;
        let _ = tokio::time::timeout(self.interval(), signal.changed()).await;
    }
}
