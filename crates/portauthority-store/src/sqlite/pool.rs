//! A fixed pool of read-only connections. Queries run on tokio's blocking threads so that
//! SQLite's synchronous calls never stall the async workers.

use super::{Options, open_connection};
use crate::StoreError;
use rusqlite::Connection;
use std::sync::Mutex;
use tokio::sync::Semaphore;

pub(crate) struct ReadPool {
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    opts: Options,
}

impl ReadPool {
    pub(crate) fn new(opts: Options, size: usize) -> Result<ReadPool, StoreError> {
        let conns = (0..size)
            .map(|_| open_connection(&opts, true))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReadPool {
            idle: Mutex::new(conns),
            permits: Semaphore::new(size),
            opts,
        })
    }

    /// Runs `f` on an idle connection.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        // A permit guarantees an idle connection, unless a query panicked and lost its
        // connection; then open a replacement.
        let conn = match self.idle.lock().expect("pool lock").pop() {
            Some(c) => c,
            None => open_connection(&self.opts, true)?,
        };
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = f(&conn);
            (conn, result)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("read query failed: {e}")))?;
        self.idle.lock().expect("pool lock").push(conn);
        result
    }
}
