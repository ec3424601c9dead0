//! The real clock and id source, which the application hands down (`portauthority_core::Env`).

use portauthority_core::{Clock, Env, Ids, Timestamp};
use std::sync::Arc;

/// The system's clock, in whole milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(&chrono::Utc::now())
    }
}

/// UUIDv7 ids from the system clock and random source.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemIds;

impl Ids for SystemIds {
    fn uuid(&self) -> uuid::Uuid {
        uuid::Uuid::now_v7()
    }
}

/// The environment of a production process: the system's clock and ids.
pub fn env() -> Env {
    Env::new(Arc::new(SystemClock), Arc::new(SystemIds))
}
