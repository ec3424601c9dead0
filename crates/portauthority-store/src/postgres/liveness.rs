//! Whether the database answers at all, for the calls that cannot tell on their own.
//!
//! A connection whose network goes silent (a partition, a proxy or firewall that stops
//! forwarding without closing) gives no error: the kernel's retransmissions run for many
//! minutes, and an in-between hop that still acknowledges our packets defeats TCP keepalives
//! and `TCP_USER_TIMEOUT` alike. A statement may legitimately run up to the statement
//! timeout, so the calls themselves cannot be cut any sooner. Instead this loop asks the
//! database a trivial question every `INTERVAL` on a connection of its own; when no answer
//! comes within `TIMEOUT`, the store counts the database as silent: calls in flight stop
//! with `Unavailable` (closing their connections, see `Held`), and new calls fail at once,
//! until an answer comes again. It must never slow a healthy store: it holds no pool slot a
//! request could want, and a silent verdict needs a whole missed answer.

use super::{Held, db_error};
use crate::StoreError;
use crate::background::Loop;
use crate::ratelimit::Every;
use async_trait::async_trait;
use sqlx::PgPool;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// How often the database is asked.
const INTERVAL: Duration = Duration::from_millis(500);
/// How long an answer may take before the database counts as silent. With `INTERVAL`, a
/// call in flight when the network goes silent stops within about 1.5 s.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(1);

/// The verdict, shared by the store and its loop: true while the database answers.
#[derive(Clone)]
pub(crate) struct Liveness {
    answering: watch::Sender<bool>,
}

impl Liveness {
    pub(crate) fn new() -> Liveness {
        Liveness {
            answering: watch::channel(true).0,
        }
    }

    /// `Err(Unavailable)` at once while the database is silent.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if *self.answering.borrow() {
            Ok(())
        } else {
            Err(silent())
        }
    }

    /// Runs `call`, unless the database goes silent first: then `call` is dropped (its
    /// connection closes) and the answer is `Unavailable`.
    pub(crate) async fn bound<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.check()?;
        let mut rx = self.answering.subscribe();
        tokio::select! {
            result = call => result,
            _ = rx.wait_for(|answering| !answering) => Err(silent()),
        }
    }

    fn set(&self, answering: bool) {
        self.answering.send_if_modified(|now| {
            let changed = *now != answering;
            *now = answering;
            changed
        });
    }
}

fn silent() -> StoreError {
    StoreError::Unavailable(format!(
        "the database did not answer within {} s; retry later",
        TIMEOUT.as_secs()
    ))
}

/// Logged once a minute at most while the database stays silent or flaps.
static SILENT: Every = Every::new(60_000);

/// The loop that asks.
pub(crate) struct Watchdog {
    /// A pool of one connection of its own, so that a busy request pool never delays it.
    pub(crate) pool: PgPool,
    pub(crate) liveness: Liveness,
}

#[async_trait]
impl Loop for Watchdog {
    fn name(&self) -> &'static str {
        "postgres-liveness"
    }

    async fn step(&self) -> anyhow::Result<bool> {
        // Cut off by the timeout, the connection closes (`Held`) instead of waiting in the
        // pool's background for replies that may never come.
        let asked = tokio::time::timeout(TIMEOUT, async {
            let mut conn = Held {
                conn: self.pool.acquire().await.map_err(db_error)?,
                finished: false,
            };
            let answered = sqlx::query("SELECT 1").execute(&mut *conn).await;
            conn.finish(answered).map(drop).map_err(db_error)
        })
        .await;
        let answering = match asked {
            Ok(Ok(())) => true,
            // The database answered, with an error (down, restarting, refusing): the calls
            // get that error themselves, quickly; the verdict is only about silence.
            Ok(Err(_)) => true,
            Err(_) => false,
        };
        let was = *self.liveness.answering.borrow();
        if was && !answering {
            if let Some(suppressed) = SILENT.allow() {
                tracing::warn!(
                    timeout_ms = TIMEOUT.as_millis() as u64,
                    suppressed,
                    "the database stopped answering; calls fail with 503 until it answers again"
                );
            }
        } else if !was && answering {
            tracing::info!("the database answers again");
        }
        self.liveness.set(answering);
        Ok(false)
    }

    fn interval(&self) -> Duration {
        INTERVAL
    }
}
