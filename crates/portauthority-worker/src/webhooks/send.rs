//! The sender: claims due deliveries, posts each with its Standard Webhooks headers, and
//! records every attempt with what it leads to (the [`Schedule`] decides).
//!
//! 2xx is delivered. `410 Gone` unsubscribes: the webhook is disabled and its pending
//! deliveries fail. Anything else, a timeout or a refused connection is a failure, retried
//! after the schedule's wait or the endpoint's `Retry-After`, whichever is longer.

use super::schedule::{self, Failure, Schedule};
use super::{WebhookConfig, guard, sign};
use async_trait::async_trait;
use futures::StreamExt;
use portauthority_core::Env;
use portauthority_store::{AttemptRecord, Delivery, Loop, Next, Store};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// How long a claim keeps other senders off a delivery: well past an attempt's timeout.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// The webhook sender loop.
pub struct WebhookSender {
    store: Arc<dyn Store>,
    env: Env,
    http: reqwest::Client,
    schedule: Schedule,
    allow_private: bool,
    concurrency: usize,
    lease: Duration,
    poll: Duration,
    queued: Arc<Notify>,
}

/// How an attempt went on the wire.
enum Answer {
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: the error says why.
    None(String),
}

impl WebhookSender {
    /// `queued` is notified by this process's fan-out when it queued deliveries.
    pub fn new(
        store: Arc<dyn Store>,
        env: Env,
        config: &WebhookConfig,
        queued: Arc<Notify>,
    ) -> anyhow::Result<WebhookSender> {
        let mut http = portauthority_client::http_builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would connect for us, to addresses the guard never sees.
            .no_proxy()
            .user_agent(concat!(
                "portauthority-webhooks/",
                env!("CARGO_PKG_VERSION")
            ));
        if !config.allow_private {
            http = http.dns_resolver(guard::GuardedResolver);
        }
        Ok(WebhookSender {
            store,
            env,
            http: http.build()?,
            schedule: config.schedule.clone(),
            allow_private: config.allow_private,
            concurrency: config.concurrency.max(1),
            lease: config.timeout + LEASE_MARGIN,
            poll: config.poll,
            queued,
        })
    }

    /// Posts the delivery once.
    async fn post(&self, d: &Delivery, timestamp: i64) -> Answer {
        let url = match reqwest::Url::parse(&d.url) {
            Ok(url) => url,
            Err(e) => return Answer::None(format!("the webhook's URL does not parse: {e}")),
        };
        if !self.allow_private
            && let Err(e) = guard::check_literal(&url)
        {
            return Answer::None(format!("not sent: the URL {e}"));
        }
        let key = match sign::key(&d.secret) {
            Ok(key) => key,
            Err(e) => return Answer::None(e),
        };
        let signature = sign::signature(&key, &d.event_id, timestamp, d.body.as_bytes());
        let sent = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &d.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(d.body.clone())
            .send()
            .await;
        match sent {
            Ok(res) => Answer::Status {
                code: res.status().as_u16(),
                retry_after: res
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| schedule::retry_after(v, SystemTime::now())),
            },
            Err(e) => Answer::None(describe(&e)),
        }
    }

    /// Makes one attempt at `d` and says what it leads to.
    async fn attempt(&self, d: Delivery) -> AttemptRecord {
        let time = self.env.now();
        let started = Instant::now();
        let answer = self.post(&d, time.as_millis().div_euclid(1000)).await;
        let latency_ms = Some(started.elapsed().as_millis() as u64);
        let (status_code, error, retry_after) = match answer {
            Answer::Status { code, .. } if (200..300).contains(&code) => (Some(code), None, None),
            Answer::Status { code, retry_after } => (
                Some(code),
                Some(format!("the endpoint answered {code}")),
                retry_after,
            ),
            Answer::None(e) => (None, Some(e), None),
        };
        let next = match (status_code, &error) {
            (_, None) => Next::Delivered,
            (Some(410), _) => Next::Disable("the endpoint answered 410 Gone: unsubscribed".into()),
            (_, Some(what)) => self.schedule.after_failure(
                &Failure {
                    attempt: d.attempt,
                    at: time,
                    queued_at: d.created_at,
                    failing_since: d.failing_since,
                    retry_after,
                    what: what.clone(),
                },
                schedule::jitter(),
            ),
        };
        metrics::counter!(
            crate::metrics::WEBHOOK_DELIVERIES,
            "outcome" => crate::metrics::delivery_outcome(&next)
        )
        .increment(1);
        if let Some(e) = &error {
            tracing::info!(webhook = %d.webhook_id, event = %d.event_id, attempt = d.attempt,
                error = %e, next = ?next, "a webhook delivery failed");
        }
        AttemptRecord {
            delivery_id: d.id,
            webhook_id: d.webhook_id,
            attempt: d.attempt,
            time,
            status_code,
            latency_ms,
            error,
            next,
        }
    }
}

/// A transport error with its causes ("error sending request" alone says little).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[async_trait]
impl Loop for WebhookSender {
    fn name(&self) -> &'static str {
        "webhook-sender"
    }

    /// Claims what is due, sends it all at once (up to the concurrency), records every
    /// attempt; found work when it claimed some.
    async fn step(&self) -> anyhow::Result<bool> {
        let due = self
            .store
            .claim_deliveries(self.env.now(), self.concurrency as u32, self.lease)
            .await?;
        let worked = !due.is_empty();
        // Each attempt is recorded as soon as it is made: a slow endpoint does not hold up
        // the retries of the others.
        let recorded: Vec<Result<(), portauthority_store::StoreError>> = futures::stream::iter(due)
            .map(|d| async move { self.store.record_attempt(self.attempt(d).await).await })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        // Unrecorded, a delivery is claimed again when its lease ends.
        match recorded.into_iter().find_map(Result::err) {
            Some(e) => Err(anyhow::Error::from(e).context("recording webhook attempts")),
            None => Ok(worked),
        }
    }

    async fn idle(&self) {
        let _ = tokio::time::timeout(self.poll, self.queued.notified()).await;
    }

    fn interval(&self) -> Duration {
        self.poll
    }
}
