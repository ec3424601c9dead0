//! Rate-limited logging: a failure that repeats for every request (a full disk, a lost
//! database) is logged once per period with a count of the repeats, not thousands of times.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Allows one event per period.
pub struct Every {
    period_ms: i64,
    last_ms: AtomicI64,
    suppressed: AtomicU64,
}

impl Every {
    pub const fn new(period_ms: i64) -> Every {
        Every {
            period_ms,
            last_ms: AtomicI64::new(i64::MIN / 2),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this event may be logged (`n` were suppressed since the last one),
    /// `None` when it falls in the same period as the last logged one.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(now_ms())
    }

    fn allow_at(&self, now: i64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        if now - last >= self.period_ms
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_period_with_the_count_of_the_rest() {
        let every = Every::new(1000);
        assert_eq!(every.allow_at(10_000), Some(0));
        assert_eq!(every.allow_at(10_100), None);
        assert_eq!(every.allow_at(10_999), None);
        assert_eq!(every.allow_at(11_000), Some(2));
        assert_eq!(every.allow_at(11_500), None);
    }
}
