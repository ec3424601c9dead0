//! Time and identifiers, handed in.
//!
//! The rules never read a clock or a random source themselves: the application passes a
//! [`Clock`] and an [`Ids`] source down to whatever needs the time or a new id. Production
//! uses the system's (`portauthority_store::system`); tests use [`ManualClock`] and move
//! time forward when they need to.

use crate::time::Timestamp;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use uuid::Uuid;

/// Tells the time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// Makes new identifiers.
pub trait Ids: Send + Sync + 'static {
    /// A new UUID. Production ids are UUIDv7: ids made later sort later, which keeps
    /// inserts at the right edge of the primary-key index.
    fn uuid(&self) -> Uuid;
}

/// What the application hands down: a clock and an id source.
#[derive(Clone)]
pub struct Env {
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn Ids>,
}

impl Env {
    pub fn new(clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> Env {
        Env { clock, ids }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").field("now", &self.now()).finish()
    }
}

/// A clock that stands still until told to move. For tests.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(AtomicI64::new(start.as_millis()))
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set(&self, t: Timestamp) {
        self.0.store(t.as_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// UUIDv7-shaped ids from a counter: deterministic, increasing. For tests.
#[derive(Debug, Default)]
pub struct CountingIds(AtomicI64);

impl Ids for CountingIds {
    fn uuid(&self) -> Uuid {
        let n = self.0.fetch_add(1, Ordering::SeqCst) as u64 + 1;
        // Version 7 and variant bits set, the counter in the low bits.
        Uuid::from_u64_pair(0x0000_0000_0000_7000, 0x8000_0000_0000_0000 | n)
    }
}
