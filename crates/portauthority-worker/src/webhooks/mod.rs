//! Webhooks, per the Standard Webhooks specification: the outbox relay's fan-out of events
//! to the webhooks that want them ([`WebhookSink`]), and the loop that sends, signs and
//! retries the deliveries ([`WebhookSender`]).
//!
//! A delivery is queued once per (webhook, event), with the exact body every attempt sends,
//! in the store; any number of senders in any number of processes share the due ones
//! through leases. Order is not kept: one webhook's deliveries go out concurrently, and a
//! retry comes after later events. Receivers order by the event (`data.event.job_seq`) and
//! deduplicate by `webhook-id`.

pub mod guard;
pub mod schedule;
mod send;
pub mod sign;

pub use schedule::Schedule;
pub use send::WebhookSender;

use async_trait::async_trait;
use portauthority_contracts::EventType;
use portauthority_store::relay::{Delivered, Sink};
use portauthority_store::{NewDelivery, OutboxItem, Store, Webhook};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Notify};

/// How webhooks are delivered.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Let webhooks target loopback, private and link-local addresses (refused by default:
    /// see [`guard`]).
    pub allow_private: bool,
    pub schedule: Schedule,
    /// How long one attempt may take, connecting included; then it counts as failed.
    pub timeout: Duration,
    /// Deliveries in flight at once, per process.
    pub concurrency: usize,
    /// How long an idle sender waits before it looks for due deliveries again (new ones
    /// queued in the same process wake it at once).
    pub poll: Duration,
    /// How long the fan-out trusts its copy of the webhook list: a webhook created in
    /// another request gets the events relayed from at most this long after it.
    pub refresh: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private: false,
            schedule: Schedule::default(),
            timeout: Duration::from_secs(10),
            concurrency: 16,
            poll: Duration::from_secs(1),
            refresh: Duration::from_secs(1),
        }
    }
}

/// The outbox relay's sink that queues deliveries.
pub struct WebhookSink {
    store: Arc<dyn Store>,
    refresh: Duration,
    /// The enabled webhooks, and when they were read: most claims find none, and then cost
    /// no query at all.
    cache: Mutex<Option<(Instant, Arc<Vec<Webhook>>)>>,
    /// Wakes this process's sender when deliveries were queued.
    queued: Arc<Notify>,
}

impl WebhookSink {
    pub fn new(store: Arc<dyn Store>, config: &WebhookConfig, queued: Arc<Notify>) -> WebhookSink {
        WebhookSink {
            store,
            refresh: config.refresh,
            cache: Mutex::new(None),
            queued,
        }
    }

    async fn enabled(&self) -> anyhow::Result<Arc<Vec<Webhook>>> {
        let mut cache = self.cache.lock().await;
        if let Some((read, hooks)) = cache.as_ref()
            && read.elapsed() < self.refresh
        {
            return Ok(hooks.clone());
        }
        let mut hooks = self.store.list_webhooks().await?;
        hooks.retain(|w| w.enabled);
        let hooks = Arc::new(hooks);
        *cache = Some((Instant::now(), hooks.clone()));
        Ok(hooks)
    }
}

#[async_trait]
impl Sink for WebhookSink {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    async fn deliver(&self, items: &[OutboxItem]) -> Delivered {
        let hooks = match self.enabled().await {
            Ok(hooks) => hooks,
            Err(e) => return Delivered::failed(0, e),
        };
        let Some(first) = items.first().filter(|_| !hooks.is_empty()) else {
            return Delivered::all(items);
        };
        let store = self.store.as_ref();
        let job = match crate::encode::job_of(store, first).await {
            Ok(Some(job)) => job,
            Ok(None) => return Delivered::all(items),
            Err(e) => return Delivered::failed(0, e.into()),
        };
        let mut taken = Delivered::all(items);
        let mut events = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let Some(ty) = EventType::of(&item.event) else {
                continue;
            };
            if !hooks
                .iter()
                .any(|w| w.wants(&job.namespace, ty.type_name()))
            {
                continue;
            }
            match crate::encode::encode(store, &job, item).await {
                Ok(Some(out)) => events.push(NewDelivery {
                    event_id: out.id,
                    event_type: ty.type_name().to_owned(),
                    namespace: job.namespace.clone(),
                    body: String::from_utf8(out.payload).expect("serde_json writes UTF-8"),
                }),
                Ok(None) => {}
                Err(e) => {
                    taken = Delivered::failed(i, e.into());
                    break;
                }
            }
        }
        if events.is_empty() {
            return taken;
        }
        match self.store.enqueue_deliveries(events).await {
            Ok(0) => taken,
            Ok(_) => {
                self.queued.notify_one();
                taken
            }
            Err(e) => Delivered::failed(0, e.into()),
        }
    }
}
