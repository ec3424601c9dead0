//! Retention by outcome: how long a finished job is kept, per terminal status, and the
//! ages operators configure it with (`90s`, `15m`, `12h`, `30d`).
//!
//! The rule lives here; a store only deletes the jobs [`RetentionPolicy::cutoffs`] names.

use crate::status::Status;
use crate::time::Timestamp;
use std::time::Duration;

/// How long terminal jobs are kept after their `end_time`, by status. `None`: forever.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub completed: Option<Duration>,
    pub failed: Option<Duration>,
    pub cancelled: Option<Duration>,
}

impl RetentionPolicy {
    /// Whether any outcome has a retention (else nothing is ever deleted).
    pub fn is_set(&self) -> bool {
        self.completed.is_some() || self.failed.is_some() || self.cancelled.is_some()
    }

    /// How long a job of `status` is kept after it ended; `None`: forever (and always for
    /// a job that is not terminal).
    pub fn keep(&self, status: Status) -> Option<Duration> {
        match status {
            Status::Completed => self.completed,
            Status::Failed => self.failed,
            Status::Cancelled => self.cancelled,
            Status::Pending | Status::InProgress => None,
        }
    }

    /// For each terminal status with a retention, the cutoff at `now`: a job of that status
    /// whose `end_time` is before it has expired.
    pub fn cutoffs(&self, now: Timestamp) -> Vec<(Status, Timestamp)> {
        Status::ALL
            .into_iter()
            .filter_map(|s| {
                let keep = i64::try_from(self.keep(s)?.as_millis()).unwrap_or(i64::MAX);
                Some((
                    s,
                    Timestamp::from_millis(now.as_millis().saturating_sub(keep)),
                ))
            })
            .collect()
    }

    /// Whether a job of `status` that ended at `end_time` has expired at `now`.
    pub fn expired(&self, status: Status, end_time: Option<Timestamp>, now: Timestamp) -> bool {
        let Some(end) = end_time else { return false };
        self.cutoffs(now)
            .into_iter()
            .any(|(s, cutoff)| s == status && end < cutoff)
    }
}

/// Parses a retention age: a whole number and a unit, `s`, `m` (or `min`), `h` or `d`:
/// `90s`, `15m`, `12h`, `30d`. A bare number is refused rather than guessed at, and so is
/// zero (to keep jobs forever, leave the setting out).
pub fn parse_age(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let example = "e.g. 90s, 15m, 12h or 30d";
    if number.is_empty() {
        return Err(format!(
            "{raw:?} is not an age: expected a whole number and a unit, {example}"
        ));
    }
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is too large an age"))?;
    let unit_seconds = match unit.trim() {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "" => {
            return Err(format!(
                "{raw:?} needs a unit: s, m, h or d (e.g. {number}d)"
            ));
        }
        other => {
            return Err(format!(
                "{raw:?}: unknown unit {other:?}; use s, m, h or d ({example})"
            ));
        }
    };
    match n.checked_mul(unit_seconds) {
        Some(0) => Err(format!(
            "{raw:?} keeps nothing: an age must be positive (leave it unset to keep jobs forever)"
        )),
        // Beyond this a cutoff would fall before the epoch: the setting means "forever".
        Some(s) if s <= i64::MAX as u64 / 1000 => Ok(Duration::from_secs(s)),
        _ => Err(format!("{raw:?} is too large an age")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_take_a_whole_number_and_a_unit_of_seconds_minutes_hours_or_days() {
        for (text, secs) in [
            ("90s", 90),
            ("15m", 900),
            ("15min", 900),
            ("12h", 43_200),
            ("30d", 2_592_000),
            (" 1d ", 86_400),
        ] {
            assert_eq!(parse_age(text), Ok(Duration::from_secs(secs)), "{text}");
        }
    }

    #[test]
    fn a_bad_age_is_refused_with_a_message_that_says_what_to_write() {
        for (text, says) in [
            ("", "not an age"),
            ("d", "not an age"),
            ("-1d", "not an age"),
            ("30", "needs a unit"),
            ("1.5h", "unknown unit"),
            ("3w", "unknown unit"),
            ("10ms", "unknown unit"),
            ("0d", "must be positive"),
            ("99999999999999999999d", "too large"),
            ("999999999999999d", "too large"),
        ] {
            let err = parse_age(text).expect_err(text);
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn only_terminal_jobs_that_ended_before_their_outcomes_cutoff_expire() {
        let policy = RetentionPolicy {
            completed: Some(Duration::from_secs(60)),
            failed: Some(Duration::from_secs(3600)),
            cancelled: None,
        };
        let now = Timestamp::from_millis(10_000_000);
        let ago = |s: i64| Some(Timestamp::from_millis(now.as_millis() - s * 1000));
        assert!(policy.expired(Status::Completed, ago(61), now));
        assert!(!policy.expired(Status::Completed, ago(60), now));
        assert!(!policy.expired(Status::Failed, ago(61), now));
        assert!(policy.expired(Status::Failed, ago(3601), now));
        assert!(!policy.expired(Status::Cancelled, ago(9000), now));
        assert!(!policy.expired(Status::InProgress, ago(9000), now));
        assert!(!policy.expired(Status::Completed, None, now));
        assert_eq!(
            policy.cutoffs(now),
            vec![
                (Status::Completed, ago(60).unwrap()),
                (Status::Failed, ago(3600).unwrap())
            ]
        );
        assert!(policy.is_set());
        assert!(!RetentionPolicy::default().is_set());
    }
}
