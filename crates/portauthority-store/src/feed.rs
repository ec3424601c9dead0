//! The change feed and the outbox, as the `Store` trait shows them: dialect-free.

use portauthority_core::Timestamp;
use portauthority_core::api::HistoryEvent;
use std::fmt;
use std::str::FromStr;

/// A place in the change feed: events are read "after a position". Ordered; opaque to
/// clients (its text form is what SSE streams use as event ids).
///
/// `horizon` is 0 on SQLite, whose one writer commits in `seq` order; on PostgreSQL it is
/// the stamp that orders the feed by commit (see migrations/postgres/0003_change_feed.sql).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub horizon: u64,
    pub seq: i64,
}

impl Position {
    /// Before the first event.
    pub const START: Position = Position { horizon: 0, seq: 0 };
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.horizon, self.seq)
    }
}

/// A position's text form is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a feed position: {0:?} (expected the id of an event)")]
pub struct BadPosition(pub String);

impl FromStr for Position {
    type Err = BadPosition;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadPosition(s.to_owned());
        let (h, q) = s.split_once('-').ok_or_else(bad)?;
        let horizon = h.parse().map_err(|_| bad())?;
        let seq: i64 = q.parse().map_err(|_| bad())?;
        if seq < 0 {
            return Err(bad());
        }
        Ok(Position { horizon, seq })
    }
}

/// One event of the change feed.
#[derive(Clone, Debug)]
pub struct FeedEvent {
    pub position: Position,
    pub event: HistoryEvent,
}

/// An outbox row a relay holds: a published event to deliver.
#[derive(Clone, Debug)]
pub struct OutboxItem {
    /// The event's `seq`: what [`crate::Store::ack_outbox`] takes.
    pub seq: i64,
    pub event: HistoryEvent,
    /// When a lease of this job was first taken, if a lease was still in place when this
    /// claim came: a delivery made since then may have gone out without being
    /// acknowledged (its relay died or failed). `None`: no delivery of it can be pending.
    pub held_since: Option<Timestamp>,
}

/// Outbox rows a claim reads at most per job it may take: the window is read in `seq`
/// order, and a job with more rows than fit is continued by the next claim of the relay
/// that holds it.
pub(crate) const CLAIM_ROWS_PER_JOB: u32 = 64;

/// The jobs a claim takes from a window of outbox rows (`(seq, job)` in `seq` order, the
/// jobs other relays hold already left out): the first `max_jobs` jobs by their oldest row.
pub(crate) fn jobs_to_claim<J: Copy + PartialEq>(window: &[(i64, J)], max_jobs: u32) -> Vec<J> {
    let mut jobs: Vec<J> = Vec::new();
    for (_, job) in window {
        if jobs.len() >= max_jobs as usize {
            break;
        }
        if !jobs.contains(job) {
            jobs.push(*job);
        }
    }
    jobs
}

/// The claimed rows of a window: those of `claimed` jobs, by job (in `claimed` order), each
/// job's in `job_seq` order (which, per job, is `seq` order).
pub(crate) fn claimed_items(claimed: &[uuid::Uuid], mut items: Vec<OutboxItem>) -> Vec<OutboxItem> {
    items.retain(|i| claimed.contains(i.event.job_id.as_uuid()));
    items.sort_by_key(|i| {
        let job = claimed.iter().position(|j| j == i.event.job_id.as_uuid());
        (job, i.event.job_seq)
    });
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_reads_back_from_its_text() {
        let p = Position {
            horizon: 981_234,
            seq: 77,
        };
        assert_eq!(p.to_string().parse::<Position>(), Ok(p));
        assert!("12".parse::<Position>().is_err());
        assert!("a-1".parse::<Position>().is_err());
        assert!("1--1".parse::<Position>().is_err());
    }

    #[test]
    fn positions_order_by_horizon_then_seq() {
        let p = |horizon, seq| Position { horizon, seq };
        assert!(p(1, 9) < p(2, 1));
        assert!(p(2, 1) < p(2, 3));
    }
}
