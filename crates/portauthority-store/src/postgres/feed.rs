//! The change feed, the outbox and the wake-ups on PostgreSQL.
//!
//! Feed order is (horizon, seq), read only below the xmin of the reader's own snapshot; why
//! that never skips an event that commits late, and keeps each job's order, is written down
//! in migrations/postgres/0003_change_feed.sql and 0008_feed_horizon.sql. Every transaction that writes history takes
//! its job's lock and has its transaction id before the statement that stamps the rows
//! (`write.rs`); that is what the argument needs.
//!
//! Wake-ups: each process bumps its own feed signal after each of its commits, and two
//! loops carry the news between processes: the notifier sends `NOTIFY portauthority_feed`
//! (coalesced, never on the writers' path) after local commits, the listener bumps the
//! signal when another process's notification arrives.

use super::rows::{self, HISTORY_COLUMNS};
use crate::background::Loop;
use crate::feed::{
    CLAIM_ROWS_PER_JOB, FeedEvent, OutboxItem, Position, claimed_items, jobs_to_claim,
};
use async_trait::async_trait;
use portauthority_core::Timestamp;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Row};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, watch};

/// The channel of the wake-up notifications.
const CHANNEL: &str = "portauthority_feed";

/// The first window of horizons a read scans, and the largest: an empty window is
/// doubled, up to the oldest running transaction. Small windows keep each read's sort small
/// (a window holds about two events per transaction id) for readers that keep up; doubling
/// crosses long quiet stretches in a few steps.
const FIRST_WINDOW: i64 = 1024;
const MAX_WINDOW: i64 = 1 << 22;

pub(crate) async fn read(
    c: &mut PgConnection,
    after: Position,
    limit: u32,
) -> Result<Vec<FeedEvent>, sqlx::Error> {
    // Taken before the reads below: their snapshots' xmin is no smaller, so everything under
    // this bound is final for them too.
    let (xmin, floor): (i64, i64) = sqlx::query_as(
        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
                (SELECT horizon FROM feed_floor LIMIT 1)",
    )
    .fetch_one(&mut *c)
    .await?;
    let mut from = (after.horizon as i64).max(floor);
    let mut window = FIRST_WINDOW;
    while from < xmin {
        let end = from.saturating_add(window).min(xmin);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {HISTORY_COLUMNS}, horizon FROM history
             WHERE horizon >= $1 AND horizon < $2 AND (horizon, seq) > ($3, $4)
             ORDER BY horizon, seq LIMIT $5"
        )))
        .bind(from)
        .bind(end)
        .bind(after.horizon as i64)
        .bind(after.seq)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?;
        if !rows.is_empty() {
            return rows
                .iter()
                .map(|r| {
                    let horizon: i64 = r.try_get(13)?;
                    let event = rows::event_from_row(r)?;
                    Ok(FeedEvent {
                        position: Position {
                            horizon: horizon as u64,
                            seq: event.seq,
                        },
                        event,
                    })
                })
                .collect();
        }
        from = end;
        window = (window * 2).min(MAX_WINDOW);
    }
    Ok(Vec::new())
}

/// The end of the feed: the last place below the snapshot's xmin. Every event with a
/// horizon below the xmin is final (its transaction's id is below its horizon, so below the
/// xmin: finished), and every event still to come has a horizon at or above it.
pub(crate) async fn head(c: &mut PgConnection) -> Result<Position, sqlx::Error> {
    let xmin: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(&mut *c)
            .await?;
    Ok(Position {
        horizon: (xmin - 1).max(0) as u64,
        seq: i64::MAX,
    })
}

/// See `Store::claim_outbox`. Inside one transaction: read a window of the outbox in `seq`
/// order (its primary key) without the jobs other relays hold, lease its first jobs, read
/// their rows. Two relays that pick the same job meet on the lease's primary key: the
/// second waits for the first to commit, then finds the lease taken and does not get it.
pub(crate) async fn claim(
    c: &mut PgConnection,
    relay: &str,
    max_jobs: u32,
    lease: Duration,
    now: Timestamp,
) -> Result<Vec<OutboxItem>, sqlx::Error> {
    let now_dt = now.to_datetime();
    let until = Timestamp::from_millis(now.as_millis() + lease.as_millis() as i64).to_datetime();
    let window: Vec<(i64, uuid::Uuid)> = sqlx::query_as(
        "SELECT o.seq, o.job_id FROM outbox o
         WHERE NOT EXISTS (SELECT 1 FROM outbox_leases l WHERE l.job_id = o.job_id
                           AND l.until >= $1 AND l.relay <> $2)
         ORDER BY o.seq LIMIT $3",
    )
    .bind(now_dt)
    .bind(relay)
    .bind(i64::from(max_jobs.saturating_mul(CLAIM_ROWS_PER_JOB)))
    .fetch_all(&mut *c)
    .await?;
    // By their oldest row: the order the claimed rows are returned in.
    let picked = jobs_to_claim(&window, max_jobs);
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    // In id order: two claims lock their lease rows in the same order, never in a cycle.
    let mut jobs = picked.clone();
    jobs.sort_unstable();
    // A lease in place keeps the time it was first taken.
    let leased: Vec<(uuid::Uuid, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "INSERT INTO outbox_leases AS l (job_id, relay, until, since)
         SELECT id, $2, $3, $4 FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, n) ORDER BY n
         ON CONFLICT (job_id) DO UPDATE SET relay = EXCLUDED.relay, until = EXCLUDED.until
         WHERE l.until < $4 OR l.relay = EXCLUDED.relay
         RETURNING job_id, since",
    )
    .bind(&jobs)
    .bind(relay)
    .bind(until)
    .bind(now_dt)
    .fetch_all(&mut *c)
    .await?;
    let held_since: std::collections::HashMap<uuid::Uuid, Option<Timestamp>> = leased
        .iter()
        .map(|(job, since)| {
            (
                *job,
                (*since < now_dt).then(|| Timestamp::from_datetime(since)),
            )
        })
        .collect();
    let claimed: Vec<uuid::Uuid> = leased.iter().map(|(job, _)| *job).collect();
    let seqs: Vec<i64> = window
        .iter()
        .filter(|(_, job)| claimed.contains(job))
        .map(|(seq, _)| *seq)
        .collect();
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {HISTORY_COLUMNS} FROM history WHERE seq = ANY($1)"
    )))
    .bind(&seqs)
    .fetch_all(&mut *c)
    .await?;
    let items = rows
        .iter()
        .map(|r| {
            let event = rows::event_from_row(r)?;
            Ok(OutboxItem {
                seq: event.seq,
                held_since: held_since.get(event.job_id.as_uuid()).copied().flatten(),
                event,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    // By job in the order of their oldest row, each job's in order.
    let order: Vec<uuid::Uuid> = picked.into_iter().filter(|j| claimed.contains(j)).collect();
    Ok(claimed_items(&order, items))
}

pub(crate) async fn ack(
    c: &mut PgConnection,
    relay: &str,
    seqs: &[i64],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH d AS (DELETE FROM outbox WHERE seq = ANY($1) RETURNING job_id)
         DELETE FROM outbox_leases WHERE relay = $2 AND job_id IN (SELECT job_id FROM d)",
    )
    .bind(seqs)
    .bind(relay)
    .execute(c)
    .await
    .map(drop)
}

pub(crate) async fn backlog(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(pool)
        .await?;
    Ok(n.max(0) as u64)
}

/// Sends one notification after local commits, at most one per `PACE`.
pub(crate) struct Notifier {
    pub(crate) pool: PgPool,
    /// This process's commits.
    pub(crate) local: Mutex<watch::Receiver<u64>>,
    /// A change seen while idle, not yet notified.
    pub(crate) pending: AtomicBool,
}

/// Coalesces notifications: under a write load one per 10 ms instead of one per commit
/// (`NOTIFY` serializes committing transactions on a global lock, which is why it is sent
/// here and not by the writers).
const PACE: Duration = Duration::from_millis(10);

#[async_trait]
impl Loop for Notifier {
    fn name(&self) -> &'static str {
        "postgres-feed-notifier"
    }

    async fn step(&self) -> anyhow::Result<bool> {
        let changed = {
            let mut local = self.local.lock().await;
            let changed = local.has_changed()?;
            local.mark_unchanged();
            self.pending.swap(false, Ordering::SeqCst) || changed
        };
        if !changed {
            return Ok(false);
        }
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&self.pool)
            .await?;
        Ok(true)
    }

    async fn idle(&self) {
        let mut local = self.local.lock().await;
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(5), local.changed()).await {
            self.pending.store(true, Ordering::SeqCst);
        }
    }

    fn pace(&self) -> Duration {
        PACE
    }
}

/// Bumps the feed signal when another process notifies.
pub(crate) struct Listener {
    pub(crate) pool: PgPool,
    pub(crate) signal: watch::Sender<u64>,
    pub(crate) listener: Mutex<Option<PgListener>>,
}

#[async_trait]
impl Loop for Listener {
    fn name(&self) -> &'static str {
        "postgres-feed-listener"
    }

    /// Waits up to a second for a notification; found work when one came.
    async fn step(&self) -> anyhow::Result<bool> {
        let mut slot = self.listener.lock().await;
        if slot.is_none() {
            let mut l = PgListener::connect_with(&self.pool).await?;
            l.listen(CHANNEL).await?;
            *slot = Some(l);
        }
        let Some(l) = slot.as_mut() else {
            return Ok(false);
        };
        match tokio::time::timeout(Duration::from_secs(1), l.try_recv()).await {
            Err(_elapsed) => Ok(false),
            Ok(Ok(Some(_))) => {
                self.signal.send_modify(|n| *n += 1);
                Ok(true)
            }
            // The connection was lost: notifications may have been missed, so wake the
            // readers, and reconnect at the next step.
            Ok(Ok(None)) => {
                self.signal.send_modify(|n| *n += 1);
                *slot = None;
                Ok(false)
            }
            Ok(Err(e)) => {
                *slot = None;
                Err(e.into())
            }
        }
    }

    fn interval(&self) -> Duration {
        Duration::ZERO
    }
}
