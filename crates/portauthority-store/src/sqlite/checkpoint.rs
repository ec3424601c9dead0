//! Background WAL checkpoints, as a loop the application's supervisor runs.
//!
//! SQLite's automatic checkpoint runs inside the committing transaction, so the one writer
//! would stop writing while it copies pages into the database file and fsyncs it. Instead
//! this loop, with its own connection, runs passive checkpoints every few milliseconds: a
//! passive checkpoint never blocks the writer or readers. The writer's own automatic
//! checkpoint runs only every `WAL_RESTART_PAGES` pages, finds most pages already copied,
//! and lets the WAL start over.

use super::{Options, internal, open_connection};
use crate::background::Loop;
use async_trait::async_trait;
use rusqlite::Connection;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often to checkpoint. Small enough that the WAL stays a few MiB under load.
const INTERVAL: Duration = Duration::from_millis(25);

pub(crate) struct Checkpointer {
    conn: Arc<Mutex<Connection>>,
}

impl Checkpointer {
    pub(crate) fn new(opts: &Options) -> Result<Checkpointer, crate::StoreError> {
        Ok(Checkpointer {
            conn: Arc::new(Mutex::new(open_connection(opts, false)?)),
        })
    }

    /// One passive checkpoint; returns (frames in the WAL, frames checkpointed).
    fn checkpoint(&self) -> impl FnOnce() -> anyhow::Result<(i64, i64)> + use<> {
        let conn = self.conn.clone();
        move || {
            let conn = conn
                .lock()
                .map_err(|_| anyhow::anyhow!("the checkpoint connection is poisoned"))?;
            let (_busy, log, done) = conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(internal)?;
            Ok((log, done))
        }
    }
}

#[async_trait]
impl Loop for Checkpointer {
    fn name(&self) -> &'static str {
        "sqlite-checkpoint"
    }

    /// Copies what the WAL holds. Never reports more work waiting: a checkpoint copies all
    /// it can, and stepping again at once under a steady write load would only spin; the
    /// next one is due after the interval.
    async fn step(&self) -> anyhow::Result<bool> {
        let (log, done) = tokio::task::spawn_blocking(self.checkpoint()).await??;
        tracing::trace!(log, done, "WAL checkpoint");
        Ok(false)
    }

    fn interval(&self) -> Duration {
        INTERVAL
    }
}
