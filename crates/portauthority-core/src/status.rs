//! Statuses and the task counters a job keeps.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The status of a task or a job. `completed`, `failed` and `cancelled` are terminal.
///
/// The discriminants are the stored codes; sorting by status sorts in this order.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending = 0,
    /// Input also accepts the seed's spelling `inprogress`.
    #[serde(alias = "inprogress")]
    InProgress = 1,
    Completed = 2,
    Failed = 3,
    Cancelled = 4,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::InProgress,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
    ];

    pub const fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }

    pub const fn code(self) -> i16 {
        self as i16
    }

    pub fn from_code(code: i64) -> Option<Status> {
        Status::ALL.get(usize::try_from(code).ok()?).copied()
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a status name.
#[derive(Debug, thiserror::Error)]
#[error("unknown status {0:?}: expected one of pending, in_progress, completed, failed, cancelled")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Status::Pending),
            "in_progress" | "inprogress" => Ok(Status::InProgress),
            "completed" => Ok(Status::Completed),
            "failed" => Ok(Status::Failed),
            "cancelled" => Ok(Status::Cancelled),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

/// How many of a job's tasks are in each status.
///
/// Stored on the job row and changed in the same transaction as the task, so reading a
/// job never counts rows. Invariant: the five status counts add up to `total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Counters {
    pub total: i64,
    pub pending: i64,
    pub in_progress: i64,
    pub failed: i64,
    pub completed: i64,
    pub cancelled: i64,
}

impl Counters {
    /// Counts a set of task statuses from scratch: the reference the stored counters are
    /// checked against.
    pub fn recount(statuses: impl IntoIterator<Item = Status>) -> Counters {
        let mut c = Counters::default();
        for s in statuses {
            c.add(s);
        }
        c
    }

    pub fn get(&self, status: Status) -> i64 {
        match status {
            Status::Pending => self.pending,
            Status::InProgress => self.in_progress,
            Status::Completed => self.completed,
            Status::Failed => self.failed,
            Status::Cancelled => self.cancelled,
        }
    }

    fn slot(&mut self, status: Status) -> &mut i64 {
        match status {
            Status::Pending => &mut self.pending,
            Status::InProgress => &mut self.in_progress,
            Status::Completed => &mut self.completed,
            Status::Failed => &mut self.failed,
            Status::Cancelled => &mut self.cancelled,
        }
    }

    /// A new task in `status`.
    pub fn add(&mut self, status: Status) {
        self.total += 1;
        *self.slot(status) += 1;
    }

    /// `n` tasks move from `from` to `to`.
    pub fn shift(&mut self, from: Status, to: Status, n: i64) {
        *self.slot(from) -= n;
        *self.slot(to) += n;
    }

    /// `n` tasks, all in `status`.
    pub fn of(status: Status, n: i64) -> Counters {
        let mut c = Counters {
            total: n,
            ..Counters::default()
        };
        *c.slot(status) = n;
        c
    }

    /// `self + other`, field by field: counters used as a change (a delta) add up.
    pub fn plus(&self, other: &Counters) -> Counters {
        Counters {
            total: self.total + other.total,
            pending: self.pending + other.pending,
            in_progress: self.in_progress + other.in_progress,
            failed: self.failed + other.failed,
            completed: self.completed + other.completed,
            cancelled: self.cancelled + other.cancelled,
        }
    }

    /// `self - other`, field by field: what changed from `other` to `self`.
    pub fn minus(&self, other: &Counters) -> Counters {
        Counters {
            total: self.total - other.total,
            pending: self.pending - other.pending,
            in_progress: self.in_progress - other.in_progress,
            failed: self.failed - other.failed,
            completed: self.completed - other.completed,
            cancelled: self.cancelled - other.cancelled,
        }
    }

    /// Whether every count is zero (as a change: nothing changes).
    pub fn is_zero(&self) -> bool {
        *self == Counters::default()
    }

    /// Tasks that are not yet terminal.
    pub fn open(&self) -> i64 {
        self.pending + self.in_progress
    }

    /// The job status these counters imply when no client has set one.
    ///
    /// No tasks, or all pending: `pending`. Any task open and not all pending:
    /// `in_progress`. All terminal: `failed` if any failed, else `completed` if any
    /// completed, else `cancelled`. With `auto_complete` off a job never becomes terminal
    /// by itself, so "all terminal" stays `in_progress`.
    pub fn derived_status(&self, auto_complete: bool) -> Status {
        if self.total == 0 || self.pending == self.total {
            Status::Pending
        } else if self.open() > 0 || !auto_complete {
            Status::InProgress
        } else if self.failed > 0 {
            Status::Failed
        } else if self.completed > 0 {
            Status::Completed
        } else {
            Status::Cancelled
        }
    }

    /// True when the counts are consistent with each other.
    pub fn is_consistent(&self) -> bool {
        let parts = [
            self.pending,
            self.in_progress,
            self.failed,
            self.completed,
            self.cancelled,
        ];
        parts.iter().all(|n| *n >= 0) && parts.iter().sum::<i64>() == self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_spelling_inprogress_is_accepted_on_input() {
        let s: Status = serde_json::from_str("\"inprogress\"").unwrap();
        assert_eq!(s, Status::InProgress);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"in_progress\"");
        assert_eq!("inprogress".parse::<Status>().unwrap(), Status::InProgress);
    }

    #[test]
    fn codes_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::from_code(s.code().into()), Some(s));
        }
        assert_eq!(Status::from_code(5), None);
        assert_eq!(Status::from_code(-1), None);
    }

    #[test]
    fn derived_status_follows_the_rules() {
        let c = |s: &[Status]| Counters::recount(s.iter().copied());
        use Status::*;
        assert_eq!(c(&[]).derived_status(true), Pending);
        assert_eq!(c(&[Pending, Pending]).derived_status(true), Pending);
        assert_eq!(c(&[Pending, Completed]).derived_status(true), InProgress);
        assert_eq!(c(&[InProgress]).derived_status(true), InProgress);
        assert_eq!(
            c(&[Completed, Failed, Cancelled]).derived_status(true),
            Failed
        );
        assert_eq!(c(&[Completed, Cancelled]).derived_status(true), Completed);
        assert_eq!(c(&[Cancelled, Cancelled]).derived_status(true), Cancelled);
        assert_eq!(c(&[Completed]).derived_status(false), InProgress);
        assert_eq!(c(&[]).derived_status(false), Pending);
    }
}
