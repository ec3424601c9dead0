//! The single writer: group commit.
//!
//! One thread owns the only writing connection. It takes every write queued at the moment
//! (up to `MAX_GROUP`), runs each in its own savepoint inside one transaction, commits once
//! (one fsync for the whole group), and only then answers each write and bumps the feed
//! signal (unless no write of the group could add feed events). What a write does is not
//! its business (`write.rs`).

use super::internal;
use crate::StoreError;
use rusqlite::Connection;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::{mpsc, oneshot, watch};

/// Most requests committed in one transaction. Bounds the latency a request can add to
/// the others of its group.
const MAX_GROUP: usize = 256;

/// Called once the group's commit has succeeded (`Ok`) or failed.
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write: runs inside the group's transaction (or is refused, given an error instead of
/// a connection), and returns how to answer after the commit.
type WriteFn = Box<dyn FnOnce(Result<&Connection, StoreError>) -> Reply + Send>;

enum Message {
    /// A write, and whether it may add feed events.
    Write(WriteFn, bool),
    Close(oneshot::Sender<()>),
}

pub(crate) struct Writer {
    queue: mpsc::Sender<Message>,
    committed: watch::Receiver<u64>,
    /// When a write last failed as unavailable (a full disk, an I/O error), in ms since the
    /// epoch; `i64::MIN` once a write has committed since. See [`Writer::ping`].
    failed_at: AtomicI64,
}

/// How long a failed write keeps readiness false when no write has committed since. The
/// probe's own write is tiny and may fit where a real one does not (a WAL with room for a
/// frame or two on a full disk), so the failures of real writes count too; they expire so
/// that a server nobody writes to (a balancer took it out) is probed afresh, not kept out.
const FAILED_WRITE_COUNTS_MS: i64 = 5_000;

impl Writer {
    pub(crate) fn start(conn: Connection) -> Result<Writer, StoreError> {
        let (queue, rx) = mpsc::channel(4096);
        let (signal, committed) = watch::channel(0);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx, signal))
            .map_err(|e| StoreError::Internal(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Writer {
            queue,
            committed,
            failed_at: AtomicI64::new(i64::MIN),
        })
    }

    /// Bumped after every successful commit: the one writer commits in `seq` order, so a
    /// reader woken by it finds every event of that commit.
    pub(crate) fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Writes waiting in the queue for a group (the one being committed not counted).
    pub(crate) fn queued(&self) -> u64 {
        (self.queue.max_capacity() - self.queue.capacity()) as u64
    }

    /// Runs `f` in the writer's next group and waits until its commit is durable.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f, true).await
    }

    /// [`Writer::run`] for a write that adds no feed events (outbox claims and acks,
    /// webhook bookkeeping, retention's deletes, the readiness probe): a group of such
    /// writes alone does not bump the committed signal. A relay waits for that
    /// signal between claims, so a claim that bumped it would wake its own relay at once,
    /// for ever (one idle relay kept a core busy with empty claims).
    pub(crate) async fn run_without_events<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f, false).await
    }

    async fn submit<T, F>(&self, f: F, events: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let result = self.submit_unrecorded(f, events).await;
        match &result {
            Ok(_) => self.failed_at.store(i64::MIN, Ordering::Relaxed),
            Err(StoreError::Unavailable(_)) => self
                .failed_at
                .store(crate::ratelimit::now_ms(), Ordering::Relaxed),
            Err(_) => {}
        }
        result
    }

    async fn submit_unrecorded<T, F>(&self, f: F, events: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let write: WriteFn = Box::new(move |conn| {
            let result = conn.and_then(|conn| in_savepoint(conn, f));
            Box::new(move |commit: Result<(), StoreError>| {
                let _ = tx.send(commit.and(result));
            })
        });
        self.queue
            .send(Message::Write(write, events))
            .await
            .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        rx.await
            .map_err(|_| StoreError::Internal("the write was abandoned".into()))?
    }

    /// A real write, committed like any other: proves that the database takes writes now
    /// (not read-only, not out of space for its WAL), for readiness. Not ready either while
    /// the last real write failed as unavailable less than `FAILED_WRITE_COUNTS_MS` ago
    /// and none has committed since.
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        let failed_at = self.failed_at.load(Ordering::Relaxed);
        if crate::ratelimit::now_ms().saturating_sub(failed_at) < FAILED_WRITE_COUNTS_MS {
            return Err(StoreError::Unavailable(
                "writes are failing (see the log: a full disk or an I/O error)".into(),
            ));
        }
        self.submit_unrecorded(
            |c| {
                c.prepare_cached(
                    "INSERT INTO readiness (id, at) VALUES (1, unixepoch('subsec') * 1000) \
                 ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                )
                .and_then(|mut s| s.execute([]))
                .map(drop)
                .map_err(internal)
            },
            false,
        )
        .await
    }

    /// Commits what is queued and stops the writer. Later writes fail as unavailable.
    pub(crate) async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.queue.send(Message::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Runs `f` in a savepoint: its writes are kept if it succeeds and undone if it fails, so
/// one failing request never leaves a partial write in the group's transaction.
pub(crate) fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Cached statements: a savepoint per request (and per batch item) is on the hot path.
    let exec = |sql: &str| -> Result<(), StoreError> {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map(drop)
            .map_err(internal)
    };
    exec("SAVEPOINT op")?;
    let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(StoreError::Internal("a write panicked".into())));
    if result.is_err() {
        exec("ROLLBACK TO op")?;
    }
    exec("RELEASE op")?;
    result
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Message>, signal: watch::Sender<u64>) {
    let mut group: Vec<WriteFn> = Vec::with_capacity(MAX_GROUP);
    let mut closing = None;
    while closing.is_none() {
        let mut events = false;
        match rx.blocking_recv() {
            Some(Message::Write(w, e)) => {
                group.push(w);
                events |= e;
            }
            Some(Message::Close(done)) => closing = Some(done),
            None => break,
        }
        while group.len() < MAX_GROUP && closing.is_none() {
            match rx.try_recv() {
                Ok(Message::Write(w, e)) => {
                    group.push(w);
                    events |= e;
                }
                Ok(Message::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if commit_group(&conn, &mut group) && events {
            signal.send_modify(|n| *n += 1);
        }
    }
    // Closing: whatever is still queued is refused, not silently dropped.
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        if let Message::Write(w, _) = msg {
            let closing = StoreError::Unavailable("store is closing".into());
            w(Err(closing.clone()))(Err(closing));
        }
    }
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    drop(conn);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// The writer's failures, logged at most once per second however many groups fail (a full
/// disk fails every group), with how many were not logged since.
static WARNINGS: crate::ratelimit::Every = crate::ratelimit::Every::new(1000);

/// Runs and commits a group; true when it committed.
fn commit_group(conn: &Connection, group: &mut Vec<WriteFn>) -> bool {
    if group.is_empty() {
        return false;
    }
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        reclaim_if_full(conn, &e);
        let err = internal(e);
        if let Some(suppressed) = WARNINGS.allow() {
            tracing::error!(error = %err, suppressed, "cannot begin a write transaction");
        }
        for w in group.drain(..) {
            w(Err(err.clone()))(Err(err.clone()));
        }
        return false;
    }
    metrics::histogram!(crate::metrics::SQLITE_GROUP_SIZE).record(group.len() as f64);
    let replies: Vec<Reply> = group.drain(..).map(|w| w(Ok(conn))).collect();
    let outcome = conn.execute_batch("COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        reclaim_if_full(conn, &e);
        let err = internal(e);
        if let Some(suppressed) = WARNINGS.allow() {
            tracing::error!(error = %err, suppressed, "group commit failed");
        }
        err
    });
    let committed = outcome.is_ok();
    for reply in replies {
        reply(outcome.clone());
    }
    committed
}

/// After a write failed for want of disk space: copies the WAL into the database file and
/// truncates it to nothing, when the file system lets it. A WAL grows while the disk fills
/// and never shrinks on its own, so without this the space it took stays taken after the
/// disk has room again (freed space goes to the WAL's next attempt, the database file
/// cannot grow to take the checkpoint, and writes keep failing until the volume grows).
/// A checkpoint that cannot finish yet changes nothing; the next failure tries again.
fn reclaim_if_full(conn: &Connection, e: &rusqlite::Error) {
    let full = matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull
    );
    if full {
        let reclaimed = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        });
        tracing::debug!(
            ?reclaimed,
            "disk full: checkpointing and truncating the WAL"
        );
    }
}
