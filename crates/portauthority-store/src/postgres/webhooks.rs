//! Webhooks on PostgreSQL. Claims lock the due deliveries they take with `SKIP LOCKED`
//! and lease them, so that any number of senders in any number of processes take each
//! delivery once per attempt. Nothing here decides what an attempt leads to.

use super::{TxError, TxResult};
use crate::webhooks::{
    AttemptEntry, AttemptRecord, Delivery, NewDelivery, NewWebhook, Next, Webhook, after,
    delivery_not_found, disabled_conflict, disabled_error, fan_out, webhook_not_found,
};
use chrono::{DateTime, Utc};
use portauthority_core::{Ids, Timestamp};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use std::time::Duration;
use uuid::Uuid;

const WEBHOOK_COLUMNS: &str = "id, url, namespace, events, description, secret, enabled, \
    disabled_reason, created_at, failing_since, scope";

fn bad(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("bad {what} in a stored webhook row").into())
}

fn time(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_datetime(&t)
}

fn opt_time(r: &PgRow, i: usize) -> Result<Option<Timestamp>, sqlx::Error> {
    Ok(r.try_get::<Option<DateTime<Utc>>, _>(i)?.map(time))
}

fn webhook_from_row(r: &PgRow) -> Result<Webhook, sqlx::Error> {
    let events: Option<String> = r.try_get(3)?;
    Ok(Webhook {
        id: r.try_get(0)?,
        url: r.try_get(1)?,
        namespace: r.try_get(2)?,
        events: events
            .map(|e| serde_json::from_str(&e).map_err(|_| bad("events")))
            .transpose()?,
        description: r.try_get(4)?,
        secret: r.try_get(5)?,
        enabled: r.try_get(6)?,
        disabled_reason: r.try_get(7)?,
        created_at: time(r.try_get(8)?),
        failing_since: opt_time(r, 9)?,
        scope: crate::webhooks::scope_from_stored(r.try_get::<Option<String>, _>(10)?.as_deref())
            .map_err(|_| bad("scope"))?,
    })
}

pub(crate) async fn create(c: &mut PgConnection, new: NewWebhook) -> TxResult<Webhook> {
    let events = new
        .events
        .as_ref()
        .map(|e| serde_json::to_string(e).expect("strings serialize"));
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhooks (id, url, namespace, events, description, secret, created_at,
                               scope)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {WEBHOOK_COLUMNS}"
    )))
    .bind(new.id)
    .bind(&new.url)
    .bind(&new.namespace)
    .bind(events)
    .bind(&new.description)
    .bind(&new.secret)
    .bind(new.created_at.to_datetime())
    .bind(crate::webhooks::stored_scope(&new.scope))
    .fetch_one(&mut *c)
    .await?;
    Ok(webhook_from_row(&row)?)
}

pub(crate) async fn list(c: &mut PgConnection) -> Result<Vec<Webhook>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id"
    )))
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(webhook_from_row)
    .collect()
}

pub(crate) async fn find(c: &mut PgConnection, id: Uuid) -> Result<Option<Webhook>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *c)
    .await?
    .as_ref()
    .map(webhook_from_row)
    .transpose()
}

pub(crate) async fn delete(c: &mut PgConnection, id: Uuid) -> TxResult<()> {
    let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(id)
        .execute(&mut *c)
        .await?;
    if done.rows_affected() == 0 {
        return Err(webhook_not_found(id).into());
    }
    Ok(())
}

pub(crate) async fn disable(c: &mut PgConnection, id: Uuid, reason: &str) -> TxResult<()> {
    let done =
        sqlx::query("UPDATE webhooks SET enabled = false, disabled_reason = $2 WHERE id = $1")
            .bind(id)
            .bind(reason)
            .execute(&mut *c)
            .await?;
    if done.rows_affected() == 0 {
        return Err(webhook_not_found(id).into());
    }
    sqlx::query(
        "UPDATE webhook_deliveries SET state = 'failed', next_attempt_at = NULL,
         lease_until = NULL, error = $2 WHERE webhook_id = $1 AND state = 'pending'",
    )
    .bind(id)
    .bind(disabled_error(reason))
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(crate) async fn enqueue(
    c: &mut PgConnection,
    events: &[NewDelivery],
    ids: &dyn Ids,
    now: Timestamp,
) -> TxResult<u64> {
    let webhooks = list(c).await?;
    let pairs: Vec<_> = fan_out(&webhooks, events).collect();
    if pairs.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = pairs.iter().map(|_| ids.uuid()).collect();
    let hooks: Vec<Uuid> = pairs.iter().map(|(w, _)| w.id).collect();
    let text =
        |f: fn(&NewDelivery) -> &str| -> Vec<&str> { pairs.iter().map(|(_, e)| f(e)).collect() };
    let done = sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, namespace, body,
                                         state, next_attempt_at, created_at)
         SELECT id, webhook_id, event_id, event_type, namespace, body, 'pending', $7, $7
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])
              AS u(id, webhook_id, event_id, event_type, namespace, body)
         ON CONFLICT (webhook_id, event_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&hooks)
    .bind(text(|e| &e.event_id))
    .bind(text(|e| &e.event_type))
    .bind(text(|e| &e.namespace))
    .bind(text(|e| &e.body))
    .bind(now.to_datetime())
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected())
}

pub(crate) async fn claim(
    c: &mut PgConnection,
    now: Timestamp,
    limit: u32,
    lease: Duration,
) -> TxResult<Vec<Delivery>> {
    let until = Timestamp::from_millis(now.as_millis() + lease.as_millis() as i64);
    // A delivery another claim has locked is skipped; one it leased and committed since this
    // statement began is read again once unlocked, and its new lease keeps it out.
    let rows = sqlx::query(
        "WITH c AS (
             SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.state = 'pending' AND d.next_attempt_at <= $1
               AND (d.lease_until IS NULL OR d.lease_until < $1) AND w.enabled
             ORDER BY d.next_attempt_at LIMIT $3
             FOR UPDATE OF d SKIP LOCKED
         ), u AS (
             UPDATE webhook_deliveries d SET lease_until = $2 FROM c WHERE d.id = c.id
             RETURNING d.id, d.webhook_id, d.event_id, d.event_type, d.body, d.attempt,
                       d.created_at, d.next_attempt_at
         )
         SELECT u.id, u.webhook_id, u.event_id, u.event_type, u.body, u.attempt, u.created_at,
                w.url, w.secret, w.failing_since
         FROM u JOIN webhooks w ON w.id = u.webhook_id ORDER BY u.next_attempt_at",
    )
    .bind(now.to_datetime())
    .bind(until.to_datetime())
    .bind(i64::from(limit))
    .fetch_all(&mut *c)
    .await?;
    let deliveries = rows
        .iter()
        .map(|r| {
            Ok(Delivery {
                id: r.try_get(0)?,
                webhook_id: r.try_get(1)?,
                event_id: r.try_get(2)?,
                event_type: r.try_get(3)?,
                body: r.try_get(4)?,
                attempt: r.try_get::<i32, _>(5)? as u32 + 1,
                created_at: time(r.try_get(6)?),
                url: r.try_get(7)?,
                secret: r.try_get(8)?,
                failing_since: opt_time(r, 9)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(deliveries)
}

pub(crate) async fn record(c: &mut PgConnection, a: &AttemptRecord) -> TxResult<()> {
    let (state, next_at) = after(&a.next);
    let next_at = next_at.map(Timestamp::to_datetime);
    let status = a.status_code.map(i32::from);
    let latency = a.latency_ms.map(|ms| ms.min(i64::MAX as u64) as i64);
    let moved = sqlx::query(
        "UPDATE webhook_deliveries SET attempt = $2, state = $3, next_attempt_at = $4,
         status_code = $5, latency_ms = $6, error = $7, lease_until = NULL
         WHERE id = $1 AND attempt = $2 - 1",
    )
    .bind(a.delivery_id)
    .bind(a.attempt as i32)
    .bind(state.as_str())
    .bind(next_at)
    .bind(status)
    .bind(latency)
    .bind(&a.error)
    .execute(&mut *c)
    .await?;
    if moved.rows_affected() == 0 {
        // Another sender recorded this attempt first, or the delivery is gone.
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, attempt, webhook_id, time, state,
                                       status_code, latency_ms, error, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(a.delivery_id)
    .bind(a.attempt as i32)
    .bind(a.webhook_id)
    .bind(a.time.to_datetime())
    .bind(state.as_str())
    .bind(status)
    .bind(latency)
    .bind(&a.error)
    .bind(next_at)
    .execute(&mut *c)
    .await?;
    let failing = if a.next == Next::Delivered {
        sqlx::query("UPDATE webhooks SET failing_since = NULL WHERE id = $1").bind(a.webhook_id)
    } else {
        sqlx::query("UPDATE webhooks SET failing_since = COALESCE(failing_since, $2) WHERE id = $1")
            .bind(a.webhook_id)
            .bind(a.time.to_datetime())
    };
    failing.execute(&mut *c).await?;
    match &a.next {
        Next::Disable(reason) => disable(c, a.webhook_id, reason).await?,
        // Disabled while this attempt was in flight: no retry.
        Next::RetryAt(_) => {
            sqlx::query(
                "UPDATE webhook_deliveries SET state = 'failed', next_attempt_at = NULL
                 WHERE id = $1 AND state = 'pending'
                   AND webhook_id IN (SELECT id FROM webhooks WHERE NOT enabled)",
            )
            .bind(a.delivery_id)
            .execute(&mut *c)
            .await?;
        }
        Next::Delivered | Next::Failed => {}
    }
    Ok(())
}

pub(crate) async fn deliveries(
    c: &mut PgConnection,
    webhook: Uuid,
    limit: u32,
) -> Result<Vec<AttemptEntry>, TxError> {
    if find(c, webhook).await?.is_none() {
        return Err(webhook_not_found(webhook).into());
    }
    // The latest attempt of a delivery shows where the delivery stands now (a replay, a
    // disabled webhook); earlier ones where it stood after them.
    let rows = sqlx::query(
        "SELECT d.id, d.event_id, a.attempt, a.time,
                CASE WHEN a.attempt = d.attempt THEN d.state ELSE a.state END,
                a.status_code, a.latency_ms, a.error,
                CASE WHEN a.attempt = d.attempt THEN d.next_attempt_at ELSE a.next_attempt_at END
         FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
         WHERE a.webhook_id = $1
         UNION ALL
         SELECT id, event_id, 0, created_at, state, NULL, NULL, error, next_attempt_at
         FROM webhook_deliveries WHERE webhook_id = $1 AND attempt = 0
         ORDER BY 4 DESC, 3 DESC, 1 DESC LIMIT $2",
    )
    .bind(webhook)
    .bind(i64::from(limit))
    .fetch_all(&mut *c)
    .await?;
    let entries = rows
        .iter()
        .map(|r| {
            Ok(AttemptEntry {
                delivery_id: r.try_get(0)?,
                event_id: r.try_get(1)?,
                attempt: r.try_get::<i32, _>(2)? as u32,
                time: time(r.try_get(3)?),
                state: r
                    .try_get::<String, _>(4)?
                    .parse()
                    .map_err(|_| bad("state"))?,
                status_code: r.try_get::<Option<i32>, _>(5)?.map(|s| s as u16),
                latency_ms: r.try_get::<Option<i64>, _>(6)?.map(|ms| ms.max(0) as u64),
                error: r.try_get(7)?,
                next_attempt_at: opt_time(r, 8)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(entries)
}

pub(crate) async fn retry(
    c: &mut PgConnection,
    webhook: Uuid,
    delivery: Uuid,
    now: Timestamp,
) -> TxResult<()> {
    let w = find(c, webhook)
        .await?
        .ok_or_else(|| webhook_not_found(webhook))?;
    if !w.enabled {
        return Err(disabled_conflict(&w).into());
    }
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $3, lease_until = NULL
         WHERE id = $1 AND webhook_id = $2",
    )
    .bind(delivery)
    .bind(webhook)
    .bind(now.to_datetime())
    .execute(&mut *c)
    .await?;
    if done.rows_affected() == 0 {
        return Err(delivery_not_found(webhook, delivery).into());
    }
    Ok(())
}
