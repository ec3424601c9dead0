//! A job's progress: the fraction done, the rate at which tasks finish, and when the job
//! will end at that rate.
//!
//! The rate is a time-weighted moving average of tasks reaching a terminal status, with a
//! half-life of [`HALF_LIFE_MS`]. Nothing scans tasks for it: a job row keeps a [`Rate`]
//! (four numbers), and the write that moves the job's counters moves it too
//! ([`Rate::record`], called by the planner). Reading applies the decay up to the reader's
//! `now` ([`progress`]), so a job whose tasks stop finishing shows a falling rate and, past
//! a few expected gaps, an ETA of null with the reason `stalled`.
//!
//! The estimate: each finished task weighs `exp(-λ·age)`; the sum of weights divided by the
//! decayed length of the window observed so far, `∫ exp(-λ·age) d(age)` over it, is the
//! rate. For a steady rate this is exact from the start (no warm-up bias); the window opens
//! at the first finish, which only marks the start and is not counted (n finishes span
//! n - 1 gaps).

use crate::api::{EtaReason, JobProgress};
use crate::status::{Counters, Status};
use crate::time::Timestamp;

/// Half-life of a finished task's weight in the rate.
pub const HALF_LIFE_MS: f64 = 60_000.0;

/// Finishes counted (beyond the first) before a rate is shown.
pub const MIN_SAMPLES: i64 = 3;

/// A job is stalled when no task has finished for this many expected gaps (the mean gap
/// between finishes since the first)...
pub const STALL_GAPS: f64 = 5.0;

/// ...and for at least this long: a fast job is not stalled by a pause of a second.
pub const STALL_FLOOR_MS: i64 = 120_000;

const MS_PER_MINUTE: f64 = 60_000.0;

fn lambda() -> f64 {
    std::f64::consts::LN_2 / HALF_LIFE_MS
}

/// The weight left of 1 after `ms` milliseconds.
fn decay(ms: i64) -> f64 {
    (-lambda() * ms.max(0) as f64).exp()
}

/// What a job row keeps of its finishing tasks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rate {
    /// Finishes counted (the first, which opens the window, is not).
    pub samples: i64,
    /// The counted finishes, each weighted by its decay, as of `last`.
    pub weight: f64,
    /// When the first task finished: the window opens there. None: none has yet.
    pub since: Option<Timestamp>,
    /// When a task last finished.
    pub last: Option<Timestamp>,
}

impl Rate {
    /// The rate after `n` tasks reached a terminal status at `now` (n ≤ 0: unchanged).
    pub fn record(self, n: i64, now: Timestamp) -> Rate {
        if n <= 0 {
            return self;
        }
        match (self.since, self.last) {
            (Some(since), Some(last)) => {
                // A clock that steps back (another server's) must not grow the weight.
                let now = now.max(last);
                Rate {
                    samples: self.samples + n,
                    weight: self.weight * decay(now.as_millis() - last.as_millis()) + n as f64,
                    since: Some(since),
                    last: Some(now),
                }
            }
            _ => Rate {
                samples: n - 1,
                weight: (n - 1) as f64,
                since: Some(now),
                last: Some(now),
            },
        }
    }

    /// Tasks finishing per millisecond as of `now`, once enough have finished.
    pub fn per_ms(&self, now: Timestamp) -> Option<f64> {
        let (since, last) = (self.since?, self.last?);
        if self.samples < MIN_SAMPLES {
            return None;
        }
        let now = now.max(last);
        let window = (1.0 - decay(now.as_millis() - since.as_millis())) / lambda();
        if window <= 0.0 {
            return None;
        }
        let weight = self.weight * decay(now.as_millis() - last.as_millis());
        Some(weight / window)
    }

    /// Whether, at `now`, tasks have stopped finishing: no finish for [`STALL_GAPS`]
    /// expected gaps and at least [`STALL_FLOOR_MS`].
    pub fn stalled(&self, now: Timestamp) -> bool {
        let (Some(since), Some(last)) = (self.since, self.last) else {
            return false;
        };
        let quiet = now.as_millis() - last.as_millis();
        // The long-run mean, not the moving rate: with gaps much longer than the half-life
        // the moving rate right after a finish overstates the pace.
        let gap = (last.as_millis() - since.as_millis()) as f64 / self.samples.max(1) as f64;
        quiet > STALL_FLOOR_MS && quiet as f64 > STALL_GAPS * gap
    }
}

/// A job's progress as of `now`.
pub fn progress(
    status: Status,
    auto_complete: bool,
    counters: &Counters,
    rate: &Rate,
    now: Timestamp,
) -> JobProgress {
    let done = counters.total - counters.open();
    let fraction = (counters.total > 0).then(|| done as f64 / counters.total as f64);
    // An ended job shows the rate it finished at: its representation no longer changes.
    let per_ms = match (status.is_terminal(), rate.last) {
        (true, Some(last)) => rate.per_ms(last),
        _ => rate.per_ms(now),
    };
    let eta = |reason| JobProgress {
        fraction,
        rate_per_minute: per_ms.map(|r| r * MS_PER_MINUTE),
        eta: None,
        eta_reason: Some(reason),
    };
    if status.is_terminal() {
        return eta(EtaReason::Terminal);
    }
    if counters.total == 0 {
        return eta(EtaReason::NoTasks);
    }
    if !auto_complete {
        return eta(EtaReason::OpenEnded);
    }
    let remaining = (counters.total - done).max(0);
    let Some(r) = per_ms.filter(|r| *r > 0.0) else {
        return eta(EtaReason::TooFewSamples);
    };
    if rate.stalled(now) {
        return eta(EtaReason::Stalled);
    }
    let ms = (remaining as f64 / r).min(i64::MAX as f64 / 4.0) as i64;
    JobProgress {
        eta: Some(Timestamp::from_millis(now.as_millis().saturating_add(ms))),
        eta_reason: None,
        ..eta(EtaReason::Terminal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000 + ms)
    }

    fn counters(total: i64, completed: i64) -> Counters {
        Counters {
            total,
            pending: total - completed,
            completed,
            ..Counters::default()
        }
    }

    /// One task finishing every `gap` ms, `n` times, from `start`.
    fn steady(n: i64, gap: i64) -> Rate {
        (0..n).fold(Rate::default(), |r, i| r.record(1, at(i * gap)))
    }

    #[test]
    fn a_steady_rate_is_measured_from_the_start() {
        // 100 a minute, read right after the 5th and after the 500th.
        for n in [5, 500] {
            let rate = steady(n, 600);
            let per_minute = rate.per_ms(at((n - 1) * 600)).unwrap() * MS_PER_MINUTE;
            assert!((per_minute - 100.0).abs() < 10.0, "{n}: {per_minute}");
        }
    }

    #[test]
    fn a_steady_rate_gives_an_eta_within_ten_percent() {
        // 1,000 tasks, one every 600 ms: 300 done after 180 s, 700 left = 420 s more.
        let rate = steady(300, 600);
        let now = at(299 * 600 + 300);
        let p = progress(Status::InProgress, true, &counters(1000, 300), &rate, now);
        let eta = p.eta.expect("an eta").as_millis() - now.as_millis();
        assert!((eta as f64 - 420_000.0).abs() < 42_000.0, "{eta}");
        assert_eq!(p.eta_reason, None);
        assert_eq!(p.fraction, Some(0.3));
    }

    #[test]
    fn a_stall_turns_the_eta_null() {
        let rate = steady(300, 600);
        let last = at(299 * 600);
        let running = progress(Status::InProgress, true, &counters(1000, 300), &rate, last);
        assert!(running.eta.is_some());
        let later = at(299 * 600 + STALL_FLOOR_MS + 1);
        let p = progress(Status::InProgress, true, &counters(1000, 300), &rate, later);
        assert_eq!((p.eta, p.eta_reason), (None, Some(EtaReason::Stalled)));
        // The rate shown decays with the quiet time: two half-lives, a quarter.
        let shown = p.rate_per_minute.unwrap();
        assert!(shown < 30.0 && shown > 20.0, "{shown}");
    }

    #[test]
    fn a_slow_job_is_not_stalled_between_its_finishes() {
        // One every 10 minutes: quiet for 20 minutes is two gaps, not a stall.
        let rate = steady(6, 600_000);
        let now = at(5 * 600_000 + 1_200_000);
        assert!(!rate.stalled(now));
        assert!(rate.stalled(at(5 * 600_000 + 3_100_000)));
    }

    #[test]
    fn the_reasons_when_there_is_no_eta() {
        let rate = steady(10, 600);
        let now = at(9 * 600);
        let reason = |s, auto, c: Counters, r: &Rate| progress(s, auto, &c, r, now).eta_reason;
        assert_eq!(
            reason(Status::Completed, true, counters(10, 10), &rate),
            Some(EtaReason::Terminal)
        );
        assert_eq!(
            reason(Status::Pending, true, counters(0, 0), &Rate::default()),
            Some(EtaReason::NoTasks)
        );
        assert_eq!(
            reason(Status::InProgress, false, counters(20, 10), &rate),
            Some(EtaReason::OpenEnded)
        );
        assert_eq!(
            reason(Status::InProgress, true, counters(20, 2), &steady(2, 600)),
            Some(EtaReason::TooFewSamples)
        );
        let none = progress(
            Status::Pending,
            true,
            &counters(0, 0),
            &Rate::default(),
            now,
        );
        assert_eq!((none.fraction, none.rate_per_minute), (None, None));
    }

    #[test]
    fn a_batch_of_finishes_at_once_counts_all_but_the_first_as_the_window_opens() {
        let r = Rate::default().record(10, at(0));
        assert_eq!((r.samples, r.since, r.last), (9, Some(at(0)), Some(at(0))));
        assert_eq!(r.per_ms(at(0)), None);
        assert_eq!(r.record(0, at(5)), r);
    }

    #[test]
    fn a_clock_stepping_back_does_not_inflate_the_rate() {
        let r = steady(10, 1000);
        let back = r.record(1, at(0));
        assert_eq!(back.last, r.last);
        assert!(back.weight <= r.weight + 1.0);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the arrivals, the rate is finite and non-negative, decays while
            /// nothing finishes, and an ETA is never in the past.
            #[test]
            fn the_rate_is_finite_and_decays_when_idle(
                steps in proptest::collection::vec((0i64..5, 0i64..120_000), 1..60),
                quiet in 1i64..600_000,
            ) {
                let mut r = Rate::default();
                let mut t = 0;
                for (n, gap) in &steps {
                    t += gap;
                    r = r.record(*n, at(t));
                }
                if let Some(now) = r.per_ms(at(t)) {
                    prop_assert!(now.is_finite() && now >= 0.0);
                    let later = r.per_ms(at(t + quiet)).unwrap();
                    prop_assert!(later <= now);
                }
                let total: i64 = steps.iter().map(|(n, _)| n).sum();
                let c = counters(total * 2 + 1, total);
                let p = progress(Status::InProgress, true, &c, &r, at(t + quiet));
                if let Some(eta) = p.eta {
                    prop_assert!(eta >= at(t + quiet));
                    prop_assert!(p.eta_reason.is_none());
                } else {
                    prop_assert!(p.eta_reason.is_some());
                }
            }
        }
    }
}
