//! Events out: the outbox relay's sink to `PORTAUTHORITY_EVENTS`.
//!
//! Each event is published with `Nats-Msg-Id` = its event id (`<job>.<job_seq>`), one
//! after another within a job (the next only once the stream has acknowledged the last), so
//! the stream holds each job's events in order.
//!
//! Exactly once: an event is acknowledged in the store only after the stream acknowledged
//! it, so a crash between the two delivers it again, and JetStream drops the second copy by
//! its message id, but only within the stream's duplicate window. When the earlier attempt
//! may be older than that (the claim says its job's lease has been held since
//! `held_since`, and that is more than half the window ago), the sink first reads what the
//! stream got for the job's namespace since then, and publishes only the events that are
//! not there.

use crate::bus::Bus;
use anyhow::Context;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_trait::async_trait;
use futures::StreamExt;
use portauthority_contracts::namespace_filter;
use portauthority_core::api::Job;
use portauthority_core::{Env, Timestamp};
use portauthority_store::relay::{Delivered, Sink};
use portauthority_store::{OutboxItem, Store};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How far before a lease's start the stream is read: clocks of the database host and of
/// the NATS server may disagree by this much.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Publishes outbox events to the bus.
pub struct BusSink {
    store: Arc<dyn Store>,
    bus: Bus,
    env: Env,
    /// The events stream's duplicate window, as configured on the stream.
    duplicate_window: Duration,
}

impl BusSink {
    pub async fn new(store: Arc<dyn Store>, bus: Bus, env: Env) -> anyhow::Result<BusSink> {
        let mut stream = bus
            .js
            .get_stream(bus.config.events_stream())
            .await
            .context("opening the events stream")?;
        let duplicate_window = stream.info().await?.config.duplicate_window;
        Ok(BusSink {
            store,
            bus,
            env,
            duplicate_window,
        })
    }

    /// Whether an attempt made since `since` may be past the duplicate window.
    fn past_window(&self, since: Timestamp) -> bool {
        let held = self.env.now().as_millis() - since.as_millis();
        held >= (self.duplicate_window / 2).as_millis() as i64
    }

    /// The message ids the events stream holds for `job`'s namespace since `since` (less
    /// the clock skew).
    async fn published_since(
        &self,
        job: &Job,
        since: Timestamp,
    ) -> anyhow::Result<HashSet<String>> {
        let start = since.as_millis() - CLOCK_SKEW.as_millis() as i64;
        let start_time =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(start) * 1_000_000)
                .context("a lease time out of range")?;
        let stream = self
            .bus
            .js
            .get_stream(self.bus.config.events_stream())
            .await?;
        let consumer: PullConsumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::ByStartTime { start_time },
                ack_policy: AckPolicy::None,
                filter_subject: self.bus.config.subject(&namespace_filter(&job.namespace)),
                inactive_threshold: Duration::from_secs(60),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .context("reading back the events stream")?;
        let mut ids = HashSet::new();
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(1000)
                .messages()
                .await
                .context("reading back the events stream")?;
            let mut got = 0;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| anyhow::anyhow!(e))?;
                got += 1;
                if let Some(id) = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                {
                    ids.insert(id.as_str().to_owned());
                }
            }
            if got == 0 {
                break;
            }
        }
        let name = consumer.cached_info().name.clone();
        if let Err(e) = stream.delete_consumer(&name).await {
            tracing::debug!(error = %e, "deleting a read-back consumer (it expires anyway)");
        }
        tracing::info!(
            job = %job.id,
            found = ids.len(),
            "read back the events stream before publishing events held past the duplicate window"
        );
        Ok(ids)
    }

    async fn publish(&self, subject: String, id: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        let publish = PublishMessage::build()
            .payload(payload.into())
            .message_id(id);
        self.bus
            .js
            .send_publish(subject, publish)
            .await
            .context("publishing an event")?
            .await
            .context("publishing an event")?;
        Ok(())
    }
}

#[async_trait]
impl Sink for BusSink {
    fn name(&self) -> &'static str {
        "bus"
    }

    async fn deliver(&self, items: &[OutboxItem]) -> Delivered {
        let Some(first) = items.first() else {
            return Delivered::default();
        };
        let failed = Delivered::failed;
        let job = match crate::encode::job_of(self.store.as_ref(), first).await {
            Ok(Some(job)) => job,
            Ok(None) => return Delivered::all(items),
            Err(e) => return failed(0, e.into()),
        };
        let already = match first.held_since {
            Some(since) if self.past_window(since) => match self.published_since(&job, since).await
            {
                Ok(ids) => ids,
                Err(e) => return failed(0, e),
            },
            _ => HashSet::new(),
        };
        for (i, item) in items.iter().enumerate() {
            let out = match crate::encode::encode(self.store.as_ref(), &job, item).await {
                Ok(Some(out)) => out,
                Ok(None) => continue,
                Err(e) => return failed(i, e.into()),
            };
            if already.contains(&out.id) {
                continue;
            }
            let subject = self.bus.config.subject(&out.subject);
            if let Err(e) = self.publish(subject, &out.id, out.payload).await {
                return failed(i, e);
            }
        }
        Delivered::all(items)
    }
}
