//! When a failed delivery is tried again, and when it, or its webhook, is given up on. Pure:
//! the time and the jitter are handed in.

use portauthority_core::Timestamp;
use portauthority_store::Next;
use std::time::{Duration, SystemTime};

/// The retry policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The longest wait after the 1st, 2nd, ... failure (the last one repeats); each wait is
    /// drawn uniformly below it (full jitter), so that deliveries that failed together do
    /// not come back together.
    pub backoff: Vec<Duration>,
    /// How long after a delivery was queued its retries stop: a retry that would come later
    /// is not made, and the delivery fails.
    pub retry_for: Duration,
    /// How long a webhook may fail without a single success before it is disabled.
    pub disable_after: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(60 * m);
        Schedule {
            backoff: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                min(2),
                min(10),
                min(30),
                min(60),
            ],
            retry_for: min(24 * 60),
            disable_after: min(24 * 60),
        }
    }
}

/// A failed attempt, as the schedule needs it.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Which attempt failed: 1 for the first.
    pub attempt: u32,
    pub at: Timestamp,
    /// When the delivery was queued.
    pub queued_at: Timestamp,
    /// Since when the webhook has been failing, before this attempt (`None`: it was not).
    pub failing_since: Option<Timestamp>,
    /// What the endpoint asked for in `Retry-After`.
    pub retry_after: Option<Duration>,
    /// What went wrong, for the reason a webhook is disabled with.
    pub what: String,
}

impl Schedule {
    /// The wait after failed attempt `attempt`, with `jitter` in `[0, 1)`; at least
    /// `retry_after` when the endpoint asked for longer.
    pub fn delay(&self, attempt: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
        let i = (attempt.max(1) as usize - 1).min(self.backoff.len().saturating_sub(1));
        let longest = self.backoff.get(i).copied().unwrap_or_default();
        let drawn = longest.mul_f64(jitter.clamp(0.0, 1.0));
        drawn.max(retry_after.unwrap_or_default())
    }

    /// What a failed attempt leads to.
    pub fn after_failure(&self, f: &Failure, jitter: f64) -> Next {
        let since = f.failing_since.unwrap_or(f.at);
        if elapsed(since, f.at) >= self.disable_after {
            return Next::Disable(format!(
                "every attempt since {since} failed (more than {}); the last: {}",
                human(self.disable_after),
                f.what
            ));
        }
        let at = f.at.as_millis() + self.delay(f.attempt, jitter, f.retry_after).as_millis() as i64;
        let deadline = f.queued_at.as_millis() + self.retry_for.as_millis() as i64;
        if at > deadline {
            Next::Failed
        } else {
            Next::RetryAt(Timestamp::from_millis(at))
        }
    }
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::from_millis((to.as_millis() - from.as_millis()).max(0) as u64)
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s >= 3600 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s >= 60 && s.is_multiple_of(60) => format!("{}m", s / 60),
        _ if s > 0 => format!("{s}s"),
        _ => format!("{}ms", d.as_millis()),
    }
}

/// A `Retry-After` header value: seconds, or an HTTP date (then how long from `now`; a date
/// past is no wait). `None` when it is neither.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

/// A jitter in `[0, 1)` from the operating system's random source.
pub fn jitter() -> f64 {
    match getrandom::u64() {
        Ok(n) => (n >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn failure(attempt: u32, at: i64) -> Failure {
        Failure {
            attempt,
            at: t(at),
            queued_at: t(0),
            failing_since: Some(t(0)),
            retry_after: None,
            what: "the endpoint answered 500".into(),
        }
    }

    #[test]
    fn waits_grow_to_their_cap_and_are_drawn_below_it() {
        let s = Schedule::default();
        assert_eq!(s.delay(1, 0.999_999, None).as_secs(), 4);
        assert_eq!(s.delay(2, 0.5, None), Duration::from_secs(15));
        assert_eq!(s.delay(3, 1.0, None), Duration::from_secs(120));
        assert_eq!(s.delay(6, 1.0, None), Duration::from_secs(3600));
        assert_eq!(s.delay(40, 1.0, None), Duration::from_secs(3600), "capped");
        assert_eq!(s.delay(40, 0.0, None), Duration::ZERO, "full jitter");
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }

    #[test]
    fn a_retry_after_longer_than_the_wait_is_honoured() {
        let s = Schedule::default();
        let asked = Some(Duration::from_secs(90));
        assert_eq!(s.delay(1, 1.0, asked), Duration::from_secs(90));
        assert_eq!(
            s.delay(6, 1.0, asked),
            Duration::from_secs(3600),
            "a shorter one changes nothing"
        );
        let mut f = failure(1, 1000);
        f.retry_after = asked;
        assert_eq!(s.after_failure(&f, 0.0), Next::RetryAt(t(91_000)));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        // 2015-10-21 07:28:00 UTC.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120)),
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date past"
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }

    #[test]
    fn retries_stop_at_the_deadline_and_a_webhook_failing_too_long_is_disabled() {
        let s = Schedule {
            backoff: vec![Duration::from_secs(10)],
            retry_for: Duration::from_secs(60),
            disable_after: Duration::from_secs(120),
        };
        assert_eq!(
            s.after_failure(&failure(1, 0), 1.0),
            Next::RetryAt(t(10_000))
        );
        assert_eq!(
            s.after_failure(&failure(5, 50_000), 1.0),
            Next::RetryAt(t(60_000))
        );
        assert_eq!(s.after_failure(&failure(6, 50_001), 1.0), Next::Failed);
        match s.after_failure(&failure(9, 120_000), 0.0) {
            Next::Disable(reason) => {
                assert!(
                    reason.contains("more than 2m") && reason.contains("500"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        // A first failure starts the count: the webhook is not failing yet.
        let mut first = failure(1, 500_000);
        first.failing_since = None;
        first.queued_at = t(500_000);
        assert_eq!(s.after_failure(&first, 0.0), Next::RetryAt(t(500_000)));
    }
}
