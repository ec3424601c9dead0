//! Webhooks on SQLite: the writes run in the one writer (so claims never race), the reads
//! on the read pool. Nothing here decides what an attempt leads to.

use super::internal;
use crate::StoreError;
use crate::webhooks::{
    AttemptEntry, AttemptRecord, Delivery, DeliveryState, NewDelivery, NewWebhook, Next, Webhook,
    after, delivery_not_found, disabled_conflict, disabled_error, fan_out, webhook_not_found,
};
use portauthority_core::{Ids, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::time::Duration;
use uuid::Uuid;

const WEBHOOK_COLUMNS: &str = "id, url, namespace, events, description, secret, enabled, \
    disabled_reason, created_at, failing_since, scope";

const RETRY_OF_DISABLED_FAILS: &str = "UPDATE webhook_deliveries \
    SET state = 'failed', next_attempt_at = NULL WHERE id = ?1 AND state = 'pending' \
    AND webhook_id IN (SELECT id FROM webhooks WHERE NOT enabled)";

fn bad(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.to_owned(), rusqlite::types::Type::Text)
}

fn uuid_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    Ok(Uuid::from_bytes(row.get(i)?))
}

fn time_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Timestamp> {
    Ok(Timestamp::from_millis(row.get(i)?))
}

fn opt_time_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Timestamp>> {
    Ok(row.get::<_, Option<i64>>(i)?.map(Timestamp::from_millis))
}

fn webhook_from_row(row: &Row<'_>) -> rusqlite::Result<Webhook> {
    let events: Option<String> = row.get(3)?;
    Ok(Webhook {
        id: uuid_at(row, 0)?,
        url: row.get(1)?,
        namespace: row.get(2)?,
        events: events
            .map(|e| serde_json::from_str(&e).map_err(|_| bad("events")))
            .transpose()?,
        description: row.get(4)?,
        secret: row.get(5)?,
        enabled: row.get(6)?,
        disabled_reason: row.get(7)?,
        created_at: time_at(row, 8)?,
        failing_since: opt_time_at(row, 9)?,
        scope: crate::webhooks::scope_from_stored(row.get::<_, Option<String>>(10)?.as_deref())
            .map_err(|_| bad("scope"))?,
    })
}

pub(crate) fn create(c: &Connection, new: NewWebhook) -> Result<Webhook, StoreError> {
    let events = new
        .events
        .as_ref()
        .map(|e| serde_json::to_string(e).expect("strings serialize"));
    c.prepare_cached(
        "INSERT INTO webhooks (id, url, namespace, events, description, secret, created_at, \
         scope) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .map_err(internal)?
    .execute(params![
        new.id.as_bytes(),
        new.url,
        new.namespace,
        events,
        new.description,
        new.secret,
        new.created_at.as_millis(),
        crate::webhooks::stored_scope(&new.scope)
    ])
    .map_err(internal)?;
    get(c, new.id)
}

pub(crate) fn list(c: &Connection) -> Result<Vec<Webhook>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id"
    ))
    .map_err(internal)?
    .query_map([], webhook_from_row)
    .map_err(internal)?
    .collect::<rusqlite::Result<_>>()
    .map_err(internal)
}

pub(crate) fn get(c: &Connection, id: Uuid) -> Result<Webhook, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1"
    ))
    .map_err(internal)?
    .query_row([id.as_bytes()], webhook_from_row)
    .optional()
    .map_err(internal)?
    .ok_or_else(|| webhook_not_found(id))
}

pub(crate) fn delete(c: &Connection, id: Uuid) -> Result<(), StoreError> {
    // The attempts go with their deliveries, the deliveries with their webhook.
    let n = c
        .prepare_cached("DELETE FROM webhooks WHERE id = ?1")
        .map_err(internal)?
        .execute([id.as_bytes()])
        .map_err(internal)?;
    if n == 0 {
        return Err(webhook_not_found(id));
    }
    Ok(())
}

pub(crate) fn disable(c: &Connection, id: Uuid, reason: &str) -> Result<(), StoreError> {
    let n = c
        .prepare_cached("UPDATE webhooks SET enabled = 0, disabled_reason = ?2 WHERE id = ?1")
        .map_err(internal)?
        .execute(params![id.as_bytes(), reason])
        .map_err(internal)?;
    if n == 0 {
        return Err(webhook_not_found(id));
    }
    c.prepare_cached(
        "UPDATE webhook_deliveries SET state = 'failed', next_attempt_at = NULL, \
         lease_until = NULL, error = ?2 WHERE webhook_id = ?1 AND state = 'pending'",
    )
    .map_err(internal)?
    .execute(params![id.as_bytes(), disabled_error(reason)])
    .map_err(internal)?;
    Ok(())
}

pub(crate) fn enqueue(
    c: &Connection,
    events: &[NewDelivery],
    ids: &dyn Ids,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let webhooks = list(c)?;
    let mut queued = 0;
    for (w, e) in fan_out(&webhooks, events) {
        queued += c
            .prepare_cached(
                "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, namespace, \
                 body, state, next_attempt_at, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7) \
                 ON CONFLICT (webhook_id, event_id) DO NOTHING",
            )
            .map_err(internal)?
            .execute(params![
                ids.uuid().as_bytes(),
                w.id.as_bytes(),
                e.event_id,
                e.event_type,
                e.namespace,
                e.body,
                now.as_millis()
            ])
            .map_err(internal)? as u64;
    }
    Ok(queued)
}

pub(crate) fn claim(
    c: &Connection,
    now: Timestamp,
    limit: u32,
    lease: Duration,
) -> Result<Vec<Delivery>, StoreError> {
    let due: Vec<Delivery> = c
        .prepare_cached(
            "SELECT d.id, d.webhook_id, d.event_id, d.event_type, d.body, d.attempt, \
             d.created_at, w.url, w.secret, w.failing_since \
             FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 \
               AND (d.lease_until IS NULL OR d.lease_until < ?1) AND w.enabled \
             ORDER BY d.next_attempt_at LIMIT ?2",
        )
        .map_err(internal)?
        .query_map(params![now.as_millis(), limit], |r| {
            Ok(Delivery {
                id: uuid_at(r, 0)?,
                webhook_id: uuid_at(r, 1)?,
                event_id: r.get(2)?,
                event_type: r.get(3)?,
                body: r.get(4)?,
                attempt: r.get::<_, u32>(5)? + 1,
                created_at: time_at(r, 6)?,
                url: r.get(7)?,
                secret: r.get(8)?,
                failing_since: opt_time_at(r, 9)?,
            })
        })
        .map_err(internal)?
        .collect::<rusqlite::Result<_>>()
        .map_err(internal)?;
    let until = now.as_millis() + lease.as_millis() as i64;
    for d in &due {
        c.prepare_cached("UPDATE webhook_deliveries SET lease_until = ?2 WHERE id = ?1")
            .map_err(internal)?
            .execute(params![d.id.as_bytes(), until])
            .map_err(internal)?;
    }
    Ok(due)
}

pub(crate) fn record(c: &Connection, a: &AttemptRecord) -> Result<(), StoreError> {
    let (state, next_at) = after(&a.next);
    let next_at = next_at.map(Timestamp::as_millis);
    let latency = a.latency_ms.map(|ms| ms.min(i64::MAX as u64) as i64);
    let moved = c
        .prepare_cached(
            "UPDATE webhook_deliveries SET attempt = ?2, state = ?3, next_attempt_at = ?4, \
             status_code = ?5, latency_ms = ?6, error = ?7, lease_until = NULL \
             WHERE id = ?1 AND attempt = ?2 - 1",
        )
        .map_err(internal)?
        .execute(params![
            a.delivery_id.as_bytes(),
            a.attempt,
            state.as_str(),
            next_at,
            a.status_code,
            latency,
            a.error
        ])
        .map_err(internal)?;
    if moved == 0 {
        // Another sender recorded this attempt first, or the delivery is gone.
        return Ok(());
    }
    c.prepare_cached(
        "INSERT INTO webhook_attempts (delivery_id, attempt, webhook_id, time, state, \
         status_code, latency_ms, error, next_attempt_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .map_err(internal)?
    .execute(params![
        a.delivery_id.as_bytes(),
        a.attempt,
        a.webhook_id.as_bytes(),
        a.time.as_millis(),
        state.as_str(),
        a.status_code,
        latency,
        a.error,
        next_at
    ])
    .map_err(internal)?;
    let id = a.webhook_id.as_bytes();
    if a.next == Next::Delivered {
        c.prepare_cached("UPDATE webhooks SET failing_since = NULL WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id]))
    } else {
        c.prepare_cached(
            "UPDATE webhooks SET failing_since = COALESCE(failing_since, ?2) WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![id, a.time.as_millis()]))
    }
    .map_err(internal)?;
    match &a.next {
        Next::Disable(reason) => disable(c, a.webhook_id, reason)?,
        // Disabled while this attempt was in flight: no retry.
        Next::RetryAt(_) => {
            c.prepare_cached(RETRY_OF_DISABLED_FAILS)
                .and_then(|mut s| s.execute([a.delivery_id.as_bytes()]))
                .map_err(internal)?;
        }
        Next::Delivered | Next::Failed => {}
    }
    Ok(())
}

pub(crate) fn deliveries(
    c: &Connection,
    webhook: Uuid,
    limit: u32,
) -> Result<Vec<AttemptEntry>, StoreError> {
    get(c, webhook)?;
    // The latest attempt of a delivery shows where the delivery stands now (a replay, a
    // disabled webhook); earlier ones where it stood after them.
    c.prepare_cached(
        "SELECT d.id, d.event_id, a.attempt, a.time, \
                CASE WHEN a.attempt = d.attempt THEN d.state ELSE a.state END, \
                a.status_code, a.latency_ms, a.error, \
                CASE WHEN a.attempt = d.attempt THEN d.next_attempt_at ELSE a.next_attempt_at END \
         FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id \
         WHERE a.webhook_id = ?1 \
         UNION ALL \
         SELECT id, event_id, 0, created_at, state, NULL, NULL, error, next_attempt_at \
         FROM webhook_deliveries WHERE webhook_id = ?1 AND attempt = 0 \
         ORDER BY 4 DESC, 3 DESC, 1 DESC LIMIT ?2",
    )
    .map_err(internal)?
    .query_map(params![webhook.as_bytes(), limit], |r| {
        Ok(AttemptEntry {
            delivery_id: uuid_at(r, 0)?,
            event_id: r.get(1)?,
            attempt: r.get(2)?,
            time: time_at(r, 3)?,
            state: r
                .get::<_, String>(4)?
                .parse::<DeliveryState>()
                .map_err(|_| bad("state"))?,
            status_code: r.get(5)?,
            latency_ms: r.get::<_, Option<i64>>(6)?.map(|ms| ms.max(0) as u64),
            error: r.get(7)?,
            next_attempt_at: opt_time_at(r, 8)?,
        })
    })
    .map_err(internal)?
    .collect::<rusqlite::Result<_>>()
    .map_err(internal)
}

pub(crate) fn retry(
    c: &Connection,
    webhook: Uuid,
    delivery: Uuid,
    now: Timestamp,
) -> Result<(), StoreError> {
    let w = get(c, webhook)?;
    if !w.enabled {
        return Err(disabled_conflict(&w));
    }
    let n = c
        .prepare_cached(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ?3, \
             lease_until = NULL WHERE id = ?1 AND webhook_id = ?2",
        )
        .map_err(internal)?
        .execute(params![
            delivery.as_bytes(),
            webhook.as_bytes(),
            now.as_millis()
        ])
        .map_err(internal)?;
    if n == 0 {
        return Err(delivery_not_found(webhook, delivery));
    }
    Ok(())
}
