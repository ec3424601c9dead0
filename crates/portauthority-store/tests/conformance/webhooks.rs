//! Webhooks: subscriptions, the fan-out of events to deliveries (once per webhook and
//! event), claims that hand each due delivery to one sender, and the log of every attempt.

use portauthority_core::Timestamp;
use portauthority_store::{
    AttemptRecord, Delivery, DeliveryState, NewDelivery, NewWebhook, Next, Store, StoreError,
    Webhook,
};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

use crate::harness::assert_err;

conformance!(
    a_webhook_is_created_listed_read_and_deleted,
    events_fan_out_to_the_enabled_webhooks_that_want_them_once,
    a_claim_takes_due_deliveries_once_until_its_lease_ends,
    concurrent_claims_take_each_delivery_once,
    every_attempt_is_logged_newest_first,
    disabling_a_webhook_fails_its_pending_deliveries_and_says_why,
    a_replay_makes_a_delivery_due_again,
    deleting_a_webhook_deletes_its_deliveries,
    a_webhook_keeps_its_scope_and_never_queues_events_outside_it,
);

const CREATED: &str = "portauthority.job.created.v1";
const TASK_CHANGED: &str = "portauthority.task.status_changed.v1";
const LEASE: Duration = Duration::from_secs(30);

fn now() -> Timestamp {
    portauthority_core::Clock::now(&portauthority_store::system::SystemClock)
}

fn later(t: Timestamp, ms: i64) -> Timestamp {
    Timestamp::from_millis(t.as_millis() + ms)
}

fn new_webhook(namespace: Option<&str>, events: Option<&[&str]>) -> NewWebhook {
    NewWebhook {
        id: Uuid::now_v7(),
        url: "https://hooks.example.com/in".into(),
        namespace: namespace.map(str::to_owned),
        events: events.map(|e| e.iter().map(|s| s.to_string()).collect()),
        description: Some("conformance".into()),
        secret: "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0".into(),
        created_at: Timestamp::from_millis(now().as_millis()),
        scope: portauthority_core::Scope::all(),
    }
}

async fn webhook(
    store: &Arc<dyn Store>,
    namespace: Option<&str>,
    events: Option<&[&str]>,
) -> Webhook {
    store
        .create_webhook(new_webhook(namespace, events))
        .await
        .expect("create_webhook")
}

fn event(id: &str, ty: &str, namespace: &str) -> NewDelivery {
    NewDelivery {
        event_id: id.into(),
        event_type: ty.into(),
        namespace: namespace.into(),
        body: format!(r#"{{"id":"{id}","type":"{ty}"}}"#),
    }
}

/// Queues job-created events of these ids in namespace `ns`.
async fn queue(store: &Arc<dyn Store>, ids: &[&str]) {
    let events = ids.iter().map(|id| event(id, CREATED, "ns")).collect();
    store.enqueue_deliveries(events).await.expect("enqueue");
}

async fn claim(store: &Arc<dyn Store>, at: Timestamp) -> Vec<Delivery> {
    store
        .claim_deliveries(at, 100, LEASE)
        .await
        .expect("claim_deliveries")
}

fn attempt(d: &Delivery, at: Timestamp, status: Option<u16>, next: Next) -> AttemptRecord {
    AttemptRecord {
        delivery_id: d.id,
        webhook_id: d.webhook_id,
        attempt: d.attempt,
        time: at,
        status_code: status,
        latency_ms: Some(12),
        error: status
            .filter(|s| *s >= 300)
            .map(|s| format!("answered {s}")),
        next,
    }
}

async fn a_webhook_is_created_listed_read_and_deleted(store: Arc<dyn Store>) {
    let new = new_webhook(Some("com.example"), Some(&[CREATED]));
    let created = store.create_webhook(new.clone()).await.expect("create");
    assert_eq!(created.id, new.id);
    assert_eq!(created.url, new.url);
    assert_eq!(created.namespace.as_deref(), Some("com.example"));
    assert_eq!(created.events, Some(vec![CREATED.to_owned()]));
    assert_eq!(created.secret, new.secret);
    assert_eq!(created.created_at, new.created_at);
    assert!(created.enabled && created.disabled_reason.is_none());
    assert!(created.failing_since.is_none());
    let all = webhook(&store, None, None).await;
    assert_eq!(all.events, None, "no filter reads back as none");
    assert_eq!(store.get_webhook(created.id).await.expect("get"), created);
    let listed = store.list_webhooks().await.expect("list");
    assert_eq!(listed, vec![created.clone(), all.clone()]);
    store.delete_webhook(created.id).await.expect("delete");
    assert_err!(store.get_webhook(created.id).await, NotFound);
    assert_err!(store.delete_webhook(created.id).await, NotFound);
    assert_eq!(store.list_webhooks().await.unwrap(), vec![all]);
}

async fn events_fan_out_to_the_enabled_webhooks_that_want_them_once(store: Arc<dyn Store>) {
    let everything = webhook(&store, None, None).await;
    let shipyard = webhook(&store, Some("com.shipyard"), None).await;
    let created_only = webhook(&store, None, Some(&[CREATED])).await;
    let off = webhook(&store, None, None).await;
    store
        .disable_webhook(off.id, "test".into())
        .await
        .expect("disable");
    let events = vec![
        event("j1.1", CREATED, "com.shipyard.email"),
        event("j2.1", CREATED, "com.shipyardx"),
        event("j1.2", TASK_CHANGED, "com.shipyard"),
    ];
    let queued = store
        .enqueue_deliveries(events.clone())
        .await
        .expect("enqueue");
    // everything: 3; shipyard: j1.1 and j1.2; created_only: j1.1 and j2.1.
    assert_eq!(queued, 7);
    // The relay may hand the same events again: nothing more is queued.
    assert_eq!(store.enqueue_deliveries(events).await.unwrap(), 0);
    let claimed = claim(&store, later(now(), 1000)).await;
    let mut got: Vec<(Uuid, String)> = claimed
        .iter()
        .map(|d| (d.webhook_id, d.event_id.clone()))
        .collect();
    got.sort();
    let mut want = vec![
        (everything.id, "j1.1".to_owned()),
        (everything.id, "j2.1".to_owned()),
        (everything.id, "j1.2".to_owned()),
        (shipyard.id, "j1.1".to_owned()),
        (shipyard.id, "j1.2".to_owned()),
        (created_only.id, "j1.1".to_owned()),
        (created_only.id, "j2.1".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want);
    let d = claimed
        .iter()
        .find(|d| d.webhook_id == shipyard.id && d.event_id == "j1.2")
        .unwrap();
    assert_eq!(
        d.body,
        r#"{"id":"j1.2","type":"portauthority.task.status_changed.v1"}"#
    );
    assert_eq!(d.event_type, TASK_CHANGED);
    assert_eq!(d.attempt, 1, "the first attempt");
    assert_eq!(d.url, shipyard.url);
    assert_eq!(d.secret, shipyard.secret);
    assert!(store.list_deliveries(off.id, 100).await.unwrap().is_empty());
}

async fn a_claim_takes_due_deliveries_once_until_its_lease_ends(store: Arc<dyn Store>) {
    let w = webhook(&store, None, None).await;
    queue(&store, &["j.1"]).await;
    let t = later(now(), 1000);
    assert_eq!(claim(&store, t).await.len(), 1);
    assert!(claim(&store, t).await.is_empty(), "leased");
    let past_lease = later(t, LEASE.as_millis() as i64 + 1);
    let again = claim(&store, past_lease).await;
    assert_eq!(again.len(), 1, "a sender that died leaves it to another");
    assert_eq!(again[0].attempt, 1, "no attempt was recorded");
    // Recorded: not due until its next attempt.
    let retry_at = later(past_lease, 5000);
    store
        .record_attempt(attempt(
            &again[0],
            past_lease,
            Some(500),
            Next::RetryAt(retry_at),
        ))
        .await
        .unwrap();
    assert!(claim(&store, later(retry_at, -1)).await.is_empty());
    let due = claim(&store, retry_at).await;
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempt, 2);
    assert_eq!(
        store.get_webhook(w.id).await.unwrap().failing_since,
        Some(past_lease),
        "failing since the first failure"
    );
    store
        .record_attempt(attempt(&due[0], retry_at, Some(200), Next::Delivered))
        .await
        .unwrap();
    assert_eq!(store.get_webhook(w.id).await.unwrap().failing_since, None);
    assert!(
        claim(&store, later(retry_at, 3_600_000)).await.is_empty(),
        "delivered"
    );
}

async fn concurrent_claims_take_each_delivery_once(store: Arc<dyn Store>) {
    webhook(&store, None, None).await;
    let events: Vec<NewDelivery> = (0..40)
        .map(|i| event(&format!("j.{i}"), CREATED, "ns"))
        .collect();
    store.enqueue_deliveries(events).await.unwrap();
    let t = later(now(), 1000);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        set.spawn(async move { store.claim_deliveries(t, 7, LEASE).await });
    }
    let mut seen = Vec::new();
    while let Some(r) = set.join_next().await {
        seen.extend(r.expect("task").expect("claim").into_iter().map(|d| d.id));
    }
    let n = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "no delivery claimed twice");
    // What the eight claims did not take is still there for the next.
    let rest = store.claim_deliveries(t, 100, LEASE).await.unwrap();
    assert_eq!(n + rest.len(), 40);
}

async fn every_attempt_is_logged_newest_first(store: Arc<dyn Store>) {
    let w = webhook(&store, None, None).await;
    queue(&store, &["j.1", "j.2"]).await;
    let t0 = later(now(), 1000);
    let claimed = claim(&store, t0).await;
    assert_eq!(claimed.len(), 2);
    let first = claimed.iter().find(|d| d.event_id == "j.1").unwrap();
    let (t1, t2) = (later(t0, 10), later(t0, 20));
    store
        .record_attempt(attempt(first, t0, Some(500), Next::RetryAt(t1)))
        .await
        .unwrap();
    // A second sender recording the same attempt changes nothing.
    store
        .record_attempt(attempt(first, t0, Some(503), Next::RetryAt(t2)))
        .await
        .unwrap();
    let again = claim(&store, t1).await;
    assert_eq!(again.len(), 1);
    store
        .record_attempt(attempt(&again[0], t2, Some(200), Next::Delivered))
        .await
        .unwrap();
    let log = store.list_deliveries(w.id, 100).await.unwrap();
    let lines: Vec<(&str, u32, DeliveryState, Option<u16>)> = log
        .iter()
        .map(|e| (e.event_id.as_str(), e.attempt, e.state, e.status_code))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("j.1", 2, DeliveryState::Delivered, Some(200)),
            ("j.1", 1, DeliveryState::Pending, Some(500)),
            // Claimed but never recorded: shown as queued.
            ("j.2", 0, DeliveryState::Pending, None),
        ]
    );
    assert_eq!(log[0].time, t2);
    assert_eq!(log[0].latency_ms, Some(12));
    assert_eq!(log[1].error.as_deref(), Some("answered 500"));
    assert_eq!(log[1].next_attempt_at, Some(t1));
    assert_eq!(log[0].next_attempt_at, None);
    assert_eq!(log[0].delivery_id, log[1].delivery_id);
    assert_eq!(store.list_deliveries(w.id, 1).await.unwrap().len(), 1);
    assert_err!(store.list_deliveries(Uuid::now_v7(), 10).await, NotFound);
}

async fn disabling_a_webhook_fails_its_pending_deliveries_and_says_why(store: Arc<dyn Store>) {
    let w = webhook(&store, None, None).await;
    let other = webhook(&store, None, None).await;
    queue(&store, &["j.1", "j.2"]).await;
    let t = later(now(), 1000);
    let claimed = claim(&store, t).await;
    let d = claimed
        .iter()
        .find(|d| d.webhook_id == w.id && d.event_id == "j.1")
        .unwrap();
    // Queued, not attempted yet.
    queue(&store, &["j.0"]).await;
    let reason = "the endpoint answered 410 Gone".to_owned();
    store
        .record_attempt(attempt(d, t, Some(410), Next::Disable(reason.clone())))
        .await
        .unwrap();
    let stored = store.get_webhook(w.id).await.unwrap();
    assert!(!stored.enabled);
    assert_eq!(stored.disabled_reason.as_deref(), Some(reason.as_str()));
    // Its other delivery was in flight: the failure recorded for it retries nothing.
    let in_flight = claimed
        .iter()
        .find(|d| d.webhook_id == w.id && d.event_id == "j.2")
        .unwrap();
    store
        .record_attempt(attempt(
            in_flight,
            later(t, 5),
            Some(500),
            Next::RetryAt(later(t, 10)),
        ))
        .await
        .unwrap();
    let log = store.list_deliveries(w.id, 100).await.unwrap();
    let lines: Vec<(&str, u32)> = log
        .iter()
        .map(|e| (e.event_id.as_str(), e.attempt))
        .collect();
    assert_eq!(lines, [("j.2", 1), ("j.1", 1), ("j.0", 0)]);
    assert!(
        log.iter()
            .all(|e| e.state == DeliveryState::Failed && e.next_attempt_at.is_none()),
        "{log:?}"
    );
    assert!(
        log[2].error.as_deref().unwrap().contains(&reason),
        "the unattempted one says why: {log:?}"
    );
    // Nothing of it is claimed any more, nor queued; the other webhook goes on.
    queue(&store, &["j.3"]).await;
    let next = claim(&store, later(t, LEASE.as_millis() as i64 + 1)).await;
    assert!(next.iter().all(|d| d.webhook_id == other.id), "{next:?}");
    assert_eq!(next.len(), 4, "j.0 to j.3");
    assert_err!(
        store.disable_webhook(Uuid::now_v7(), "x".into()).await,
        NotFound
    );
}

async fn a_replay_makes_a_delivery_due_again(store: Arc<dyn Store>) {
    let w = webhook(&store, None, None).await;
    queue(&store, &["j.1"]).await;
    let t = later(now(), 1000);
    let d = claim(&store, t).await.pop().unwrap();
    store
        .record_attempt(attempt(&d, t, Some(500), Next::Failed))
        .await
        .unwrap();
    assert!(
        claim(&store, later(t, 3_600_000)).await.is_empty(),
        "failed"
    );
    let replay_at = later(t, 60_000);
    store.retry_delivery(w.id, d.id, replay_at).await.unwrap();
    let log = store.list_deliveries(w.id, 10).await.unwrap();
    assert_eq!(log[0].state, DeliveryState::Pending);
    assert_eq!(log[0].next_attempt_at, Some(replay_at));
    let again = claim(&store, replay_at).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2, "a new attempt");
    assert_eq!(again[0].body, d.body, "the same body");
    assert_err!(
        store.retry_delivery(w.id, Uuid::now_v7(), replay_at).await,
        NotFound
    );
    let other = webhook(&store, None, None).await;
    assert_err!(
        store.retry_delivery(other.id, d.id, replay_at).await,
        NotFound
    );
    store.disable_webhook(w.id, "gone".into()).await.unwrap();
    match store.retry_delivery(w.id, d.id, replay_at).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("gone"), "{m}"),
        other => panic!("a disabled webhook replays nothing: {other:?}"),
    }
}

async fn deleting_a_webhook_deletes_its_deliveries(store: Arc<dyn Store>) {
    let w = webhook(&store, None, None).await;
    queue(&store, &["j.1"]).await;
    let t = later(now(), 1000);
    let d = claim(&store, t).await.pop().unwrap();
    store
        .record_attempt(attempt(&d, t, Some(500), Next::RetryAt(t)))
        .await
        .unwrap();
    store.delete_webhook(w.id).await.unwrap();
    assert!(claim(&store, later(t, 3_600_000)).await.is_empty());
    // A sender that held it records into nothing, and no error.
    store
        .record_attempt(attempt(&d, t, Some(200), Next::Delivered))
        .await
        .unwrap();
}

async fn a_webhook_keeps_its_scope_and_never_queues_events_outside_it(store: Arc<dyn Store>) {
    let scope = portauthority_core::Scope::parse(&["com.a.*"]).unwrap();
    let scoped = store
        .create_webhook(NewWebhook {
            scope: scope.clone(),
            ..new_webhook(None, None)
        })
        .await
        .expect("create_webhook");
    assert_eq!(scoped.scope, scope);
    assert_eq!(store.get_webhook(scoped.id).await.unwrap().scope, scope);
    let events = vec![
        event("a.1", CREATED, "com.a.mail"),
        event("b.1", CREATED, "com.b.mail"),
        event("c.1", CREATED, "com.a"),
    ];
    assert_eq!(store.enqueue_deliveries(events).await.unwrap(), 1);
    let claimed = claim(&store, later(now(), 1000)).await;
    let got: Vec<&str> = claimed.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(got, ["a.1"]);
}
