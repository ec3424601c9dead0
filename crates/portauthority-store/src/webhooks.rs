//! Webhooks as the `Store` trait shows them: subscriptions, the deliveries the outbox fans
//! out to them, and the log of every attempt. Dialect-free; each store maps these to its
//! rows.
//!
//! The store decides nothing about when to retry or give up: the sender
//! (`portauthority_worker`) says what an attempt leads to ([`Next`]) and the store writes
//! it. The one rule kept here is which webhooks an event goes to ([`Webhook::wants`]), so
//! that the stores and the worker's cache apply it alike.

use portauthority_core::{Scope, Timestamp};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// A webhook to create (validated by the caller).
#[derive(Clone, Debug)]
pub struct NewWebhook {
    pub id: Uuid,
    pub url: String,
    /// Only jobs in this namespace or under it (`a.b` takes `a.b` and `a.b.c`); `None`: all.
    pub namespace: Option<String>,
    /// Only these CloudEvent types; `None`: all.
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    /// `whsec_` and the base64 of the signing key.
    pub secret: String,
    pub created_at: Timestamp,
    /// The scope of the key that created it: it never carries events of jobs outside it.
    pub scope: Scope,
}

/// A stored webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub namespace: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub secret: String,
    pub enabled: bool,
    /// Why it was disabled (an endpoint that answered 410, or failed for too long).
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
    /// Since when every attempt at it has failed; cleared by a success.
    pub failing_since: Option<Timestamp>,
    /// See [`NewWebhook::scope`].
    pub scope: Scope,
}

impl Webhook {
    /// Whether this webhook takes events of `event_type` about jobs of `namespace`
    /// (disabled or not: callers ask about enabled ones). Never one outside its scope.
    pub fn wants(&self, namespace: &str, event_type: &str) -> bool {
        let in_namespace = match &self.namespace {
            None => true,
            Some(prefix) => portauthority_core::validate::namespace_within(prefix, namespace),
        };
        in_namespace
            && self.scope.allows(namespace)
            && self
                .events
                .as_ref()
                .is_none_or(|types| types.iter().any(|t| t == event_type))
    }
}

/// An event to deliver to every enabled webhook that wants it.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    /// The CloudEvent id (`<job>.<job_seq>`): one delivery per (webhook, event id).
    pub event_id: String,
    pub event_type: String,
    /// The job's namespace.
    pub namespace: String,
    /// The exact JSON every attempt sends.
    pub body: String,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    Delivered,
    /// Given up on (out of time, or its webhook was disabled).
    Failed,
}

impl DeliveryState {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(DeliveryState::Pending),
            "delivered" => Ok(DeliveryState::Delivered),
            "failed" => Ok(DeliveryState::Failed),
            other => Err(format!("unknown delivery state {other:?}")),
        }
    }
}

/// A delivery a sender holds (until its lease ends), with what sending it needs.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
    /// The number of this attempt: 1 for the first. Attempts already made are one less.
    pub attempt: u32,
    /// When the delivery was queued: retries stop some time after it.
    pub created_at: Timestamp,
    pub url: String,
    pub secret: String,
    pub failing_since: Option<Timestamp>,
}

/// What an attempt leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Another attempt at this time.
    RetryAt(Timestamp),
    /// No more attempts.
    Failed,
    /// No more attempts, and the webhook is disabled for this reason: its pending
    /// deliveries fail too.
    Disable(String),
}

/// One attempt, as the sender made it.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    pub delivery_id: Uuid,
    pub webhook_id: Uuid,
    /// [`Delivery::attempt`] of the claim it was made under. Recording the same attempt
    /// twice (two senders whose leases overlapped) keeps the first.
    pub attempt: u32,
    pub time: Timestamp,
    pub status_code: Option<u16>,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
    pub next: Next,
}

/// One line of a webhook's delivery log: an attempt, or a delivery not yet attempted
/// (`attempt` 0, `time` when it was queued).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptEntry {
    pub delivery_id: Uuid,
    pub event_id: String,
    pub attempt: u32,
    pub time: Timestamp,
    /// The delivery's state right after this attempt.
    pub state: DeliveryState,
    pub status_code: Option<u16>,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
    /// When the next attempt was due after this one (pending only).
    pub next_attempt_at: Option<Timestamp>,
}

/// The state an attempt leaves its delivery in, and when it is due next.
pub(crate) fn after(next: &Next) -> (DeliveryState, Option<Timestamp>) {
    match next {
        Next::Delivered => (DeliveryState::Delivered, None),
        Next::RetryAt(at) => (DeliveryState::Pending, Some(*at)),
        Next::Failed | Next::Disable(_) => (DeliveryState::Failed, None),
    }
}

/// The webhook fan-out of `events`: `(webhook, event)` for each enabled webhook that wants
/// the event.
pub(crate) fn fan_out<'a>(
    webhooks: &'a [Webhook],
    events: &'a [NewDelivery],
) -> impl Iterator<Item = (&'a Webhook, &'a NewDelivery)> + 'a {
    events.iter().flat_map(move |e| {
        webhooks
            .iter()
            .filter(move |w| w.enabled && w.wants(&e.namespace, &e.event_type))
            .map(move |w| (w, e))
    })
}

pub(crate) fn webhook_not_found(id: Uuid) -> crate::StoreError {
    crate::StoreError::NotFound(format!("webhook {id} not found"))
}

pub(crate) fn delivery_not_found(webhook: Uuid, delivery: Uuid) -> crate::StoreError {
    crate::StoreError::NotFound(format!(
        "delivery {delivery} not found for webhook {webhook}"
    ))
}

/// A replay asked of a disabled webhook.
pub(crate) fn disabled_conflict(w: &Webhook) -> crate::StoreError {
    crate::StoreError::Conflict(format!(
        "webhook {} is disabled ({}); create a new one to deliver to it again",
        w.id,
        w.disabled_reason.as_deref().unwrap_or("no reason given")
    ))
}

/// The message a delivery of a disabled webhook fails with.
pub(crate) fn disabled_error(reason: &str) -> String {
    format!("the webhook was disabled: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(namespace: Option<&str>, events: Option<&[&str]>) -> Webhook {
        Webhook {
            id: Uuid::nil(),
            url: "http://example.com/".into(),
            namespace: namespace.map(str::to_owned),
            events: events.map(|e| e.iter().map(|s| s.to_string()).collect()),
            description: None,
            secret: "whsec_x".into(),
            enabled: true,
            disabled_reason: None,
            created_at: Timestamp::from_millis(0),
            failing_since: None,
            scope: Scope::all(),
        }
    }

    #[test]
    fn a_webhook_never_takes_an_event_outside_its_scope() {
        let w = Webhook {
            scope: Scope::parse(&["com.a.*"]).unwrap(),
            ..hook(Some("com"), None)
        };
        assert!(w.wants("com.a.mail", "t"));
        assert!(!w.wants("com.b.mail", "t"));
        assert!(!w.wants("com", "t"));
    }

    #[test]
    fn a_namespace_takes_itself_and_what_is_under_it_only() {
        let w = hook(Some("com.shipyard"), None);
        assert!(w.wants("com.shipyard", "t"));
        assert!(w.wants("com.shipyard.email", "t"));
        assert!(!w.wants("com.shipyardx", "t"));
        assert!(!w.wants("com", "t"));
        assert!(hook(None, None).wants("anything", "t"));
    }

    #[test]
    fn an_event_filter_takes_only_its_types() {
        let w = hook(None, Some(&["a", "b"]));
        assert!(w.wants("ns", "a") && w.wants("ns", "b"));
        assert!(!w.wants("ns", "c"));
        assert!(!hook(None, Some(&[])).wants("ns", "a"));
    }
}

/// The stored form of a webhook's scope: NULL for every namespace.
pub(crate) fn stored_scope(scope: &Scope) -> Option<String> {
    (!scope.is_all()).then(|| scope.to_stored())
}

/// A webhook's scope from its stored form.
pub(crate) fn scope_from_stored(s: Option<&str>) -> Result<Scope, String> {
    s.map_or(Ok(Scope::all()), Scope::from_stored)
}
