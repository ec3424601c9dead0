//! The worker loops of Port Authority: what `portauthority worker` runs, and what
//! `portauthority serve` runs in-process unless `--no-worker`.
//!
//! - [`CommandConsumer`]: applies bus commands (`portauthority.commands.>`) through the
//!   store's command layer, once per CloudEvent, and acks each after its commit.
//! - [`BusSink`]: the outbox relay's way to the bus (`portauthority.events.>`), exactly
//!   once per event and in per-job order.
//! - The timeout sweeper and retention (`portauthority_store::sweeper`, `::retention`).
//! - [`webhooks::WebhookSink`] and [`webhooks::WebhookSender`]: the relay's fan-out of
//!   events to webhooks, and the loop that delivers them, signed and retried.
//!
//! Every loop is a [`portauthority_store::Loop`], run by the application's supervisor.

mod bus;
mod consume;
mod encode;
pub mod metrics;
mod publish;
pub mod webhooks;

pub use bus::{Bus, BusConfig};
pub use consume::CommandConsumer;
pub use publish::BusSink;
pub use webhooks::WebhookConfig;

use portauthority_core::{Env, Limits, RetentionPolicy};
use portauthority_store::relay::{Relay, Sink};
use portauthority_store::retention::Retention;
use portauthority_store::sweeper::Sweeper;
use portauthority_store::{Loop, Store};
use std::sync::Arc;
use std::time::Duration;

/// What the worker loops are configured with.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The bus; without it the relay only drains the outbox for the other sinks.
    pub bus: Option<BusConfig>,
    /// How long a relay's claim keeps other relays off its jobs: after a relay dies, its
    /// jobs' events wait this long for another.
    pub relay_lease: Duration,
    /// How long terminal jobs are kept, by outcome; with any set, the retention loop runs.
    pub retention: RetentionPolicy,
    pub webhooks: WebhookConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            bus: None,
            relay_lease: Duration::from_secs(30),
            retention: RetentionPolicy::default(),
            webhooks: WebhookConfig::default(),
        }
    }
}

/// The worker's loops over `store`, connected to the bus when one is configured.
pub async fn loops(
    store: Arc<dyn Store>,
    env: Env,
    limits: Limits,
    config: &WorkerConfig,
) -> anyhow::Result<Vec<Arc<dyn Loop>>> {
    let mut loops: Vec<Arc<dyn Loop>> = Vec::new();
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    if let Some(bus_config) = &config.bus {
        let bus = Bus::connect(bus_config).await?;
        bus.ensure_streams().await?;
        let consumer = CommandConsumer::new(store.clone(), bus.clone(), env.clone(), limits);
        loops.push(Arc::new(consumer));
        sinks.push(Arc::new(
            BusSink::new(store.clone(), bus, env.clone()).await?,
        ));
    }
    loops.push(Arc::new(Sweeper::new(store.clone())));
    if config.retention.is_set() {
        loops.push(Arc::new(Retention::new(store.clone(), config.retention)));
    }
    // Always: with no webhook it costs nothing but a look at the list once per refresh.
    let queued = Arc::new(tokio::sync::Notify::new());
    sinks.push(Arc::new(webhooks::WebhookSink::new(
        store.clone(),
        &config.webhooks,
        queued.clone(),
    )));
    loops.push(Arc::new(webhooks::WebhookSender::new(
        store.clone(),
        env,
        &config.webhooks,
        queued,
    )?));
    let relay = Relay::new(store, sinks, relay_id()).with_lease(config.relay_lease);
    loops.push(Arc::new(relay));
    Ok(loops)
}

/// A relay id unique to this process: its leases are told from every other relay's.
fn relay_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "relay".into());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}
