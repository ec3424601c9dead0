//! Commands in: a durable pull consumer on `PORTAUTHORITY_COMMANDS`.
//!
//! Each message is decoded (`portauthority_contracts::decode_command`: the same request
//! types and validation as HTTP) and run through the store's command layer under the key
//! `bus:<source>:<id>` (`Store::run_once`), so a redelivered or duplicated command has no
//! second effect, however late it comes. A message is acked only after its commit.
//!
//! Whatever is ready is taken at once (up to [`CHUNK`] messages): commands of different
//! jobs run concurrently (on SQLite they share the writer's group commit), those of one job
//! one after another in stream order. A command that can never apply is published to
//! `portauthority.deadletter` with its reason, then acked; a transient failure (the
//! database is down) is not acked and comes back after a delay, until `max_deliver`
//! deliveries, when it is dead-lettered too. Nothing is dropped silently.

use crate::bus::Bus;
use anyhow::Context;
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use portauthority_contracts::{
    Incoming, PROBLEM_HEADER, REASON_HEADER, RejectKind, Rejection, decode_command,
};
use portauthority_core::{Command, Env, JobId, Limits};
use portauthority_store::{Answer, Loop, Once, Ran, Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Most messages taken in one step.
const CHUNK: usize = 512;

/// Jobs whose commands run at once: enough to fill the SQLite writer's groups and a
/// PostgreSQL pool, not so many that they queue for connections until they time out.
const JOBS_AT_ONCE: usize = 32;

/// A command that failed for a transient reason is tried again in place (keeping its
/// job's order) this many times, with a doubling pause from [`RETRY_FIRST`], before it is
/// handed back to the stream.
const RETRIES_IN_PLACE: u32 = 6;
const RETRY_FIRST: Duration = Duration::from_millis(100);

/// How long a command that failed for a transient reason waits before it comes back.
const RETRY_DELAY: Duration = Duration::from_secs(1);

type Messages = BoxStream<'static, Vec<Result<async_nats::jetstream::Message, String>>>;

/// Applies bus commands.
pub struct CommandConsumer {
    store: Arc<dyn Store>,
    bus: Bus,
    env: Env,
    limits: Limits,
    messages: Mutex<Option<Messages>>,
    /// What was done since the last report, and when that was.
    since_report: Mutex<(Instant, Tally)>,
}

/// What became of one command.
enum Outcome {
    Applied,
    Duplicate,
    /// Never applies: dead-lettered, acked.
    Refused(Rejection),
    /// May apply later: not acked.
    Transient(StoreError),
}

#[derive(Default, Debug, Clone)]
struct Tally {
    applied: usize,
    duplicates: usize,
    dead_lettered: usize,
    retried: usize,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.dead_lettered += other.dead_lettered;
        self.retried += other.retried;
    }
}

/// How often the consumer logs what it did (each refusal is logged when it happens).
const REPORT_EVERY: Duration = Duration::from_secs(10);

impl CommandConsumer {
    pub fn new(store: Arc<dyn Store>, bus: Bus, env: Env, limits: Limits) -> CommandConsumer {
        CommandConsumer {
            store,
            bus,
            env,
            limits,
            messages: Mutex::new(None),
            since_report: Mutex::new((Instant::now(), Tally::default())),
        }
    }

    /// Logs what was done, at most once per [`REPORT_EVERY`].
    async fn report(&self, step: &Tally) {
        use crate::metrics::BUS_COMMANDS;
        for (outcome, n) in [
            ("applied", step.applied),
            ("duplicate", step.duplicates),
            ("dead_lettered", step.dead_lettered),
            ("retried", step.retried),
        ] {
            if n > 0 {
                metrics::counter!(BUS_COMMANDS, "outcome" => outcome).increment(n as u64);
            }
        }
        let mut since = self.since_report.lock().await;
        since.1.add(step);
        if since.0.elapsed() >= REPORT_EVERY {
            let t = std::mem::take(&mut since.1);
            since.0 = Instant::now();
            tracing::info!(
                applied = t.applied,
                duplicates = t.duplicates,
                dead_lettered = t.dead_lettered,
                retried = t.retried,
                "bus commands in the last {}s",
                REPORT_EVERY.as_secs()
            );
        }
    }

    async fn open(&self) -> anyhow::Result<Messages> {
        let config = &self.bus.config;
        let stream = self
            .bus
            .js
            .get_stream(config.commands_stream())
            .await
            .context("opening the commands stream")?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                &config.consumer,
                pull::Config {
                    durable_name: Some(config.consumer.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    max_deliver: config.max_deliver,
                    max_ack_pending: 4 * CHUNK as i64,
                    ..Default::default()
                },
            )
            .await
            .context("creating the commands consumer")?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(CHUNK)
            .messages()
            .await
            .context("pulling commands")?;
        Ok(messages
            .map(|m| m.map_err(|e| e.to_string()))
            .ready_chunks(CHUNK)
            .boxed())
    }

    /// Applies one command under its CloudEvent's key.
    async fn apply(&self, incoming: &Incoming) -> Outcome {
        let (once, command) = keyed(incoming);
        outcome(incoming, self.store.run_once(once, command).await)
    }

    /// Applies a job's commands in one call of the store (one group commit on SQLite); the
    /// outcome of each, in order.
    async fn apply_all(
        &self,
        commands: &[(async_nats::jetstream::Message, Incoming)],
    ) -> Vec<Outcome> {
        let batch = commands
            .iter()
            .map(|(_, incoming)| keyed(incoming))
            .collect();
        match self.store.run_once_batch(batch).await {
            Ok(results) => commands
                .iter()
                .zip(results)
                .map(|((_, incoming), ran)| outcome(incoming, ran))
                .collect(),
            Err(e) => commands
                .iter()
                .map(|(_, incoming)| outcome(incoming, Err(e.clone())))
                .collect(),
        }
    }

    /// [`CommandConsumer::apply`], tried again in place while it fails for a transient
    /// reason (the stream is told the command is in progress meanwhile), so that a short
    /// outage does not reorder a job's commands.
    async fn apply_retrying(
        &self,
        message: &async_nats::jetstream::Message,
        incoming: &Incoming,
    ) -> Outcome {
        let mut pause = RETRY_FIRST;
        let mut outcome = self.apply(incoming).await;
        for _ in 0..RETRIES_IN_PLACE {
            let Outcome::Transient(e) = &outcome else {
                break;
            };
            tracing::debug!(id = %incoming.id, error = %e, "retrying a command in place");
            let _ = message.ack_with(AckKind::Progress).await;
            tokio::time::sleep(pause).await;
            pause *= 2;
            outcome = self.apply(incoming).await;
        }
        outcome
    }

    /// Applies one job's commands in order; after a transient failure the rest wait too
    /// (they come back after it, in order).
    async fn apply_job(&self, commands: Vec<(async_nats::jetstream::Message, Incoming)>) -> Tally {
        let mut tally = Tally::default();
        let mut held = false;
        let mut first_try = self.apply_all(&commands).await.into_iter();
        for (message, incoming) in commands {
            if held {
                self.retry(&message).await;
                tally.retried += 1;
                continue;
            }
            // After a transient failure in the batch, each command on its own, in order.
            let outcome = match first_try.next() {
                Some(Outcome::Transient(_)) | None => {
                    first_try = Vec::new().into_iter();
                    self.apply_retrying(&message, &incoming).await
                }
                Some(done) => done,
            };
            match outcome {
                Outcome::Applied => {
                    tracing::debug!(id = %incoming.id, r#type = incoming.ty.type_name(), "applied");
                    tally.applied += 1;
                    ack(&message).await;
                }
                Outcome::Duplicate => {
                    tracing::debug!(id = %incoming.id, "duplicate command: no second effect");
                    tally.duplicates += 1;
                    ack(&message).await;
                }
                Outcome::Refused(rejection) => {
                    if self.dead_letter(&message, &rejection).await {
                        tally.dead_lettered += 1;
                    } else {
                        tally.retried += 1;
                    }
                }
                Outcome::Transient(e) => {
                    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
                    if delivered >= self.bus.config.max_deliver {
                        let rejection = Rejection {
                            kind: RejectKind::Undeliverable,
                            detail: format!("failed {delivered} times, last: {e}"),
                            id: Some(incoming.id.clone()),
                        };
                        if self.dead_letter(&message, &rejection).await {
                            tally.dead_lettered += 1;
                            continue;
                        }
                    }
                    tracing::warn!(id = %incoming.id, delivered, error = %e, "command not applied; it will come again");
                    self.retry(&message).await;
                    tally.retried += 1;
                    held = true;
                }
            }
        }
        tally
    }

    /// Publishes `message` to the dead letter subject with its reason, then acks it; false
    /// (and the message left to come again) when the dead letter could not be published.
    async fn dead_letter(&self, message: &async_nats::jetstream::Message, why: &Rejection) -> bool {
        tracing::warn!(
            id = why.id.as_deref().unwrap_or("-"),
            subject = %message.subject,
            reason = %why.reason(),
            "command refused: dead-lettered"
        );
        let mut publish = PublishMessage::build()
            .payload(message.payload.clone())
            .header(REASON_HEADER, why.reason().as_str())
            .header(PROBLEM_HEADER, why.problem_header().as_str())
            .header("Portauthority-Subject", message.subject.as_str());
        // A dead letter published twice (its command redelivered before the ack landed)
        // is stored once, by the command's place in its stream.
        if let Ok(info) = message.info() {
            publish = publish.message_id(format!("deadletter-{}", info.stream_sequence));
        }
        let published = match self
            .bus
            .js
            .send_publish(self.bus.config.deadletter_subject(), publish)
            .await
        {
            Ok(ack) => ack.await.map(drop).map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        match published {
            Ok(()) => {
                ack(message).await;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot publish a dead letter; the command will come again");
                self.retry(message).await;
                false
            }
        }
    }

    async fn retry(&self, message: &async_nats::jetstream::Message) {
        if let Err(e) = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await {
            tracing::debug!(error = %e, "nak failed; the command comes again after its ack wait");
        }
    }
}

async fn ack(message: &async_nats::jetstream::Message) {
    // A lost ack is harmless: the command comes again and is recognised as a duplicate.
    if let Err(e) = message.ack().await {
        tracing::debug!(error = %e, "ack failed");
    }
}

/// A bus command under its CloudEvent's key, as the store runs it.
fn keyed(incoming: &Incoming) -> (Once, Command) {
    let once = Once {
        key: format!("bus:{}:{}", incoming.source, incoming.id),
        fingerprint: String::new(),
        keep_answer: false,
    };
    (once, Command::from(incoming.command.clone()))
}

/// What the store's answer to a command means for its message.
fn outcome(incoming: &Incoming, ran: Result<Ran, StoreError>) -> Outcome {
    match ran {
        Ok(Ran::Replayed(_)) => Outcome::Duplicate,
        Ok(Ran::Applied(Answer::Updates(items))) => match items.into_iter().next() {
            Some(Err(refusal)) => Outcome::Refused(refused(incoming, refusal.into())),
            _ => Outcome::Applied,
        },
        Ok(Ran::Applied(_)) => Outcome::Applied,
        Err(e) if e.is_refusal() => Outcome::Refused(refused(incoming, e)),
        Err(e) => Outcome::Transient(e),
    }
}

/// A store's refusal of a command, as a dead letter states it.
fn refused(incoming: &Incoming, e: StoreError) -> Rejection {
    let kind = match &e {
        StoreError::NotFound(_) => RejectKind::NotFound,
        StoreError::Conflict(_) => RejectKind::Conflict,
        _ => RejectKind::InvalidData,
    };
    Rejection {
        kind,
        detail: e.to_string(),
        id: Some(incoming.id.clone()),
    }
}

#[async_trait]
impl Loop for CommandConsumer {
    fn name(&self) -> &'static str {
        "bus-commands"
    }

    /// Waits for the commands that are ready and applies them.
    async fn step(&self) -> anyhow::Result<bool> {
        let mut messages = self.messages.lock().await;
        if messages.is_none() {
            *messages = Some(self.open().await?);
        }
        let Some(chunk) = messages.as_mut().expect("opened").next().await else {
            *messages = None;
            anyhow::bail!("the commands stream ended");
        };
        let ids = self.env.ids.as_ref();
        let mut tally = Tally::default();
        let mut jobs: Vec<Vec<(async_nats::jetstream::Message, Incoming)>> = Vec::new();
        let mut job_index: HashMap<JobId, usize> = HashMap::new();
        for message in chunk {
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "pulling commands");
                    continue;
                }
            };
            if let Ok(info) = message.info() {
                metrics::gauge!(crate::metrics::BUS_CONSUMER_LAG).set(info.pending as f64);
            }
            match decode_command(&message.payload, &self.limits, ids) {
                Ok(incoming) => {
                    let i = *job_index
                        .entry(incoming.command.job_id())
                        .or_insert_with(|| {
                            jobs.push(Vec::new());
                            jobs.len() - 1
                        });
                    jobs[i].push((message, incoming));
                }
                Err(rejection) => {
                    if self.dead_letter(&message, &rejection).await {
                        tally.dead_lettered += 1;
                    }
                }
            }
        }
        let tallies: Vec<Tally> = futures::stream::iter(jobs)
            .map(|list| self.apply_job(list))
            .buffer_unordered(JOBS_AT_ONCE)
            .collect()
            .await;
        for t in tallies {
            tally.add(&t);
        }
        self.report(&tally).await;
        Ok(true)
    }
}
