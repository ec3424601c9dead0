//! Server-Sent Events: the watch streams of `/v1/jobs/{id}/watch` and `/v1/watch`.
//!
//! One feed reader per process ([`Hub`], a background loop) follows the store's change feed,
//! loads each changed job once, renders each change once, and hands it to every open stream
//! through one bounded ring (`tokio::sync::broadcast`). Sending never waits for a stream: a
//! stream that falls more than the ring behind finds out when it next reads, is sent
//! `event: resync` with the position to resume from, and ends. No stream can slow the reader
//! or another stream, and a stream costs nothing while its client does not read.
//!
//! A stream starts at a position (the client's `Last-Event-ID`, or the feed's end): it
//! subscribes to the ring first, then replays the store's feed from that position until it
//! has caught up, then takes live changes, skipping any at or before the last position it
//! sent. The feed never shows an event before every event ahead of it is readable, so the
//! replay and the live changes meet with no gap and no repeat.
//!
//! Nothing here spins: the reader waits on the store's feed signal (or a timer), a stream on
//! the ring, its keep-alive timer or shutdown.

use crate::error::ApiError;
use async_trait::async_trait;
use axum::body::Bytes;
use futures::Stream;
use portauthority_core::JobId;
use portauthority_core::api::{HistoryEvent, Job, WatchChange};
use portauthority_core::validate::{meta_index_value, namespace_within};
use portauthority_store::{FeedEvent, JobFilter, Loop, Position, Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Events a feed read takes at most.
const PAGE: u32 = 500;

/// The reconnection delay a client is told on its first message (`retry:`), in ms.
const RETRY_MS: u64 = 2_000;

/// How the streams of one process are bounded.
#[derive(Clone, Copy, Debug)]
pub struct WatchLimits {
    /// Open streams at most; a request past it is answered 503.
    pub max_streams: usize,
    /// Changes the ring holds: a stream further behind is sent `resync`.
    pub buffer: usize,
    /// How long a stream may be silent before a `: keep-alive` comment.
    pub keep_alive: Duration,
}

impl Default for WatchLimits {
    fn default() -> Self {
        WatchLimits {
            max_streams: 1000,
            buffer: 4096,
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// A change as every stream sends it: rendered once.
#[derive(Debug)]
pub(crate) struct Change {
    position: Position,
    job: Job,
    /// The job's meta as the filters see it (`meta_index_value`), by key.
    meta: HashMap<String, String>,
    frame: Bytes,
}

impl Change {
    fn new(position: Position, job: Job, event: HistoryEvent) -> Change {
        let meta =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(job.meta.get())
                .unwrap_or_default()
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), meta_index_value(v)?)))
                .collect();
        let change = WatchChange { job, event };
        let data = serde_json::to_string(&change).unwrap_or_else(|_| "{}".into());
        let frame = Bytes::from(format!("event: change\nid: {position}\ndata: {data}\n\n"));
        Change {
            position,
            job: change.job,
            meta,
            frame,
        }
    }
}

/// Which changes a stream sends.
#[derive(Clone, Debug)]
pub(crate) enum Scope {
    Job(JobId),
    /// `namespace` is a prefix here (`com.a` holds `com.a.mail`); the rest as in lists.
    Jobs(JobFilter),
}

impl Scope {
    fn wants(&self, c: &Change) -> bool {
        match self {
            Scope::Job(id) => c.job.id == *id,
            Scope::Jobs(f) => {
                f.scope.allows(&c.job.namespace)
                    && f.namespace
                        .as_deref()
                        .is_none_or(|p| namespace_within(p, &c.job.namespace))
                    && f.job_type.as_deref().is_none_or(|t| t == c.job.job_type)
                    && f.correlation_id
                        .as_deref()
                        .is_none_or(|id| c.job.correlation_id.as_deref() == Some(id))
                    && (f.statuses.is_empty() || f.statuses.contains(&c.job.status))
                    && f.meta
                        .iter()
                        .all(|(key, values)| c.meta.get(key).is_some_and(|v| values.contains(v)))
            }
        }
    }

    /// Whether an event of `job` may be wanted, before its job is loaded.
    fn may_want(&self, job: JobId) -> bool {
        match self {
            Scope::Job(id) => *id == job,
            Scope::Jobs(_) => true,
        }
    }
}

/// The process's one feed reader and the bound on its streams.
pub struct Hub {
    store: Arc<dyn Store>,
    ring: broadcast::Sender<Arc<Change>>,
    permits: Arc<Semaphore>,
    limits: WatchLimits,
    /// Cancelled when the server shuts down: every stream ends.
    shutdown: CancellationToken,
    /// Where the reader is: None until it first reads.
    at: Mutex<Option<Position>>,
    signal: Mutex<watch::Receiver<u64>>,
}

impl Hub {
    pub fn new(store: Arc<dyn Store>, limits: WatchLimits, shutdown: CancellationToken) -> Hub {
        let (ring, _) = broadcast::channel(limits.buffer.max(1));
        let signal = Mutex::new(store.feed_signal());
        Hub {
            store,
            ring,
            permits: Arc::new(Semaphore::new(limits.max_streams)),
            limits,
            shutdown,
            at: Mutex::new(None),
            signal,
        }
    }

    /// Opens a stream of `scope` from `from` (None: from now), or refuses when the process
    /// has as many open as it may.
    pub(crate) async fn open(
        self: &Arc<Self>,
        scope: Scope,
        from: Option<Position>,
    ) -> Result<
        impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
        ApiError,
    > {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            ApiError::Unavailable(format!(
                "this server has {} watch streams open, as many as it may (--sse-max-streams); \
                 retry later or on another server",
                self.limits.max_streams
            ))
        })?;
        // Subscribed before the start is taken: whatever the ring sends from here on is
        // either after the start or replayed from the store.
        let live = self.ring.subscribe();
        let start = match from {
            Some(p) => p,
            None => self.store.feed_head().await?,
        };
        let state = Watching {
            hub: self.clone(),
            scope,
            live,
            last: start,
            phase: Phase::Hello,
            pending: std::collections::VecDeque::new(),
            fresh: false,
            quiet_until: tokio::time::Instant::now(),
            _open: Open::new(permit),
        };
        Ok(futures::stream::unfold(state, |mut s| async move {
            let frame = s.next().await?;
            s.quiet_until = tokio::time::Instant::now() + s.hub.limits.keep_alive;
            Some((Ok(frame), s))
        }))
    }

    /// Loads the jobs of `events` (each once) and renders the changes, leaving out the
    /// events whose job is gone (retention deleted it since) or that `scope` does not want.
    async fn changes(
        &self,
        events: Vec<FeedEvent>,
        scope: Option<&Scope>,
    ) -> Result<Vec<Arc<Change>>, StoreError> {
        let mut jobs: HashMap<JobId, Option<Job>> = HashMap::new();
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            if scope.is_some_and(|s| !s.may_want(e.event.job_id)) {
                continue;
            }
            let job = match jobs.get(&e.event.job_id) {
                Some(j) => j.clone(),
                None => {
                    let j = match self.store.get_job(e.event.job_id).await {
                        Ok(j) => Some(j),
                        Err(StoreError::NotFound(_)) => None,
                        Err(e) => return Err(e),
                    };
                    jobs.insert(e.event.job_id, j.clone());
                    j
                }
            };
            if let Some(job) = job {
                let change = Change::new(e.position, job, e.event);
                if scope.is_none_or(|s| s.wants(&change)) {
                    out.push(Arc::new(change));
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Loop for Hub {
    fn name(&self) -> &'static str {
        "sse-feed"
    }

    async fn step(&self) -> anyhow::Result<bool> {
        // Marked seen before the read: a commit after this point wakes `idle` again.
        self.signal.lock().await.borrow_and_update();
        let mut at = self.at.lock().await;
        // The head is taken before the streams are counted: a stream that opens after the
        // count takes its own start later, at or past this head, so skipping to it while
        // nobody listens loses no one anything.
        if self.ring.receiver_count() == 0 {
            *at = Some(self.store.feed_head().await?);
            if self.ring.receiver_count() == 0 {
                return Ok(false);
            }
        }
        let from = match *at {
            Some(p) => p,
            None => self.store.feed_head().await?,
        };
        let events = self.store.feed(from, PAGE).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            *at = Some(from);
            return Ok(false);
        };
        let full = events.len() as u32 == PAGE;
        for change in self.changes(events, None).await? {
            // An error means no stream is open: nothing to do.
            let _ = self.ring.send(change);
        }
        *at = Some(last);
        Ok(full)
    }

    async fn idle(&self) {
        let mut signal = self.signal.lock().await.clone();
        tokio::select! {
            changed = signal.changed() => {
                // A closed store bumps nothing again: wait the interval instead of spinning.
                if changed.is_err() {
                    tokio::time::sleep(self.interval()).await;
                }
            }
            () = tokio::time::sleep(self.interval()) => {}
        }
    }

    /// The wait when no signal comes (a missed notification from another process).
    fn interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}

/// Counts an open stream (the gauge and the cap) for as long as it lives.
struct Open(#[allow(dead_code)] OwnedSemaphorePermit);

impl Open {
    fn new(permit: OwnedSemaphorePermit) -> Open {
        metrics::gauge!("portauthority_sse_clients").increment(1.0);
        Open(permit)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("portauthority_sse_clients").decrement(1.0);
    }
}

enum Phase {
    /// The first message: `retry:` and the start position as `id:`, so that a client that
    /// reconnects before any change resumes from here.
    Hello,
    /// Reading the store's feed from `last` until caught up.
    Replay,
    /// Taking the ring's changes.
    Live,
    /// Sent `resync` or shutting down: the stream ends.
    Done,
}

struct Watching {
    hub: Arc<Hub>,
    scope: Scope,
    live: broadcast::Receiver<Arc<Change>>,
    /// The position of the last change sent or passed over; where a resync resumes.
    last: Position,
    phase: Phase,
    /// Replayed frames not yet sent.
    pending: std::collections::VecDeque<Bytes>,
    /// Live since the last replay, with nothing taken from the ring yet: a lag now dropped
    /// changes while the stream was replaying, not because its client is slow, and the
    /// store still has them.
    fresh: bool,
    /// When a keep-alive is due: the stream's silence is measured from its last frame.
    quiet_until: tokio::time::Instant,
    _open: Open,
}

impl Watching {
    /// The next frame to send, None when the stream ends.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Some(frame);
            }
            if self.hub.shutdown.is_cancelled() {
                return None;
            }
            match self.phase {
                Phase::Hello => {
                    self.phase = Phase::Replay;
                    return Some(Bytes::from(format!(
                        "retry: {RETRY_MS}\nid: {}\n\n",
                        self.last
                    )));
                }
                Phase::Replay => match self.replay().await {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "a watch stream could not read the feed");
                        return self.resync();
                    }
                },
                Phase::Live => {
                    tokio::select! {
                        () = self.hub.shutdown.cancelled() => return None,
                        () = tokio::time::sleep_until(self.quiet_until) => {
                            return Some(Bytes::from_static(b": keep-alive\n\n"));
                        }
                        got = self.live.recv() => match got {
                            Ok(c) => {
                                self.fresh = false;
                                if c.position <= self.last {
                                    continue;
                                }
                                self.last = c.position;
                                if self.scope.wants(&c) {
                                    return Some(c.frame.clone());
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) if self.fresh => {
                                self.phase = Phase::Replay;
                            }
                            // Fell further behind than the ring holds.
                            Err(broadcast::error::RecvError::Lagged(_)) => return self.resync(),
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                    }
                }
                Phase::Done => return None,
            }
        }
    }

    /// One page of the store's feed after `last`; caught up (an empty page): live.
    async fn replay(&mut self) -> Result<(), StoreError> {
        let events = self.hub.store.feed(self.last, PAGE).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            self.phase = Phase::Live;
            self.fresh = true;
            return Ok(());
        };
        for c in self.hub.changes(events, Some(&self.scope)).await? {
            self.pending.push_back(c.frame.clone());
        }
        self.last = last;
        Ok(())
    }

    fn resync(&mut self) -> Option<Bytes> {
        self.phase = Phase::Done;
        Some(Bytes::from(format!(
            "event: resync\ndata: {}\n\n",
            self.last
        )))
    }
}
