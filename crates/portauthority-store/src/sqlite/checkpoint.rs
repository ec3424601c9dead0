//! Background WAL checkpoints.
//!
//! SQLite's automatic checkpoint runs inside the committing transaction, so the one writer
//! would stop writing while it copies pages into the database file and fsyncs it. Instead
//! this thread, with its own connection, runs passive checkpoints every few milliseconds: a
//! passive checkpoint never blocks the writer or readers. The writer's own automatic
//! checkpoint runs only every `WAL_RESTART_PAGES` pages, finds most pages already copied,
//! and lets the WAL start over.

use super::{Options, open_connection};
use std::sync::mpsc;
use std::time::Duration;

/// How often to checkpoint. Small enough that the WAL stays a few MiB under load.
const INTERVAL: Duration = Duration::from_millis(25);

/// Stops the thread (after one last full checkpoint) when dropped.
pub(crate) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn start(opts: &Options) -> Result<Checkpointer, crate::StoreError> {
        let conn = open_connection(opts, false)?;
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(INTERVAL) {
                    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            })
            .map_err(|e| {
                crate::StoreError::Internal(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub(crate) fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}
