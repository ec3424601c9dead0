//! The change feed, per-job event order, and the outbox claimed by relays.

use crate::harness::*;
use async_trait::async_trait;
use portauthority_core::api::{EventKind, HistoryEvent, Progress};
use portauthority_core::{JobId, Status, TaskId};
use portauthority_store::background::step_until_idle;
use portauthority_store::relay::{Delivered, Relay, Sink};
use portauthority_store::{
    FeedEvent, HistoryScope, NewNote, OutboxItem, Position, Store, TaskUpdate,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

conformance!(
    the_feed_after_thirty_two_writers_holds_every_event_once_in_job_order,
    two_relays_claiming_at_once_never_hold_the_same_job,
    a_follower_paging_history_during_concurrent_writes_misses_nothing,
    outbox_claims_and_acks_wake_no_feed_reader_and_writes_do,
    the_feed_head_is_past_every_event_so_far_and_before_every_later_one,
);

conformance_ctx!(a_relay_stepped_until_idle_takes_over_an_expired_lease_when_the_clock_moves);

/// Reads the whole feed from `after`, page by page, until it has at least `want` events or
/// a deadline passes (on PostgreSQL other tests' open transactions can hold the feed back
/// for a moment).
async fn read_feed(store: &Arc<dyn Store>, after: Position, want: usize) -> Vec<FeedEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut out: Vec<FeedEvent> = Vec::new();
    let mut pos = after;
    loop {
        let page = store.feed(pos, 100).await.expect("feed");
        if let Some(last) = page.last() {
            pos = last.position;
        }
        let empty = page.is_empty();
        out.extend(page);
        if out.len() >= want || (empty && tokio::time::Instant::now() > deadline) {
            return out;
        }
        if empty {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn job_history(store: &Arc<dyn Store>, job: JobId) -> Vec<HistoryEvent> {
    store
        .history(HistoryScope::Job(job), 0, 10_000)
        .await
        .expect("history")
}

/// Every event of every job in `jobs` appears exactly once in `feed`, positions strictly
/// increase, and each job's events come with job_seq 1, 2, 3, ... in order.
async fn assert_feed_matches(store: &Arc<dyn Store>, feed: &[FeedEvent], jobs: &[JobId]) {
    for w in feed.windows(2) {
        assert!(w[0].position < w[1].position, "positions must increase");
    }
    let mut by_job: HashMap<JobId, Vec<&HistoryEvent>> = HashMap::new();
    for f in feed {
        by_job.entry(f.event.job_id).or_default().push(&f.event);
    }
    for job in jobs {
        let history = job_history(store, *job).await;
        let fed = by_job.remove(job).unwrap_or_default();
        let fed_seqs: Vec<i64> = fed.iter().map(|e| e.seq).collect();
        let mut history_seqs: Vec<i64> = history.iter().map(|e| e.seq).collect();
        let mut sorted = fed_seqs.clone();
        sorted.sort_unstable();
        history_seqs.sort_unstable();
        assert_eq!(
            sorted, history_seqs,
            "job {job}: the feed holds each event exactly once"
        );
        let job_seqs: Vec<i64> = fed.iter().map(|e| e.job_seq).collect();
        let expected: Vec<i64> = (1..=history.len() as i64).collect();
        assert_eq!(
            job_seqs, expected,
            "job {job}: events in per-job order, gap-free"
        );
    }
}

const JOBS: usize = 8;
const WRITERS: usize = 32;
const TASKS_PER_WRITER: usize = 3;

async fn the_feed_after_thirty_two_writers_holds_every_event_once_in_job_order(
    store: Arc<dyn Store>,
) {
    let mut jobs = Vec::new();
    let mut tasks: Vec<Vec<TaskId>> = Vec::new();
    let per_job = WRITERS / JOBS * TASKS_PER_WRITER;
    for _ in 0..JOBS {
        let (job, ids) = create_with_tasks(&store, job_req(), per_job).await;
        jobs.push(job.id);
        tasks.push(ids);
    }
    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let j = w % JOBS;
        let slot = w / JOBS;
        let job = jobs[j];
        let mine: Vec<TaskId> =
            tasks[j][slot * TASKS_PER_WRITER..(slot + 1) * TASKS_PER_WRITER].to_vec();
        let (store, barrier) = (store.clone(), barrier.clone());
        writers.spawn(async move {
            barrier.wait().await;
            for (i, t) in mine.into_iter().enumerate() {
                let end = if i == 0 {
                    Status::Failed
                } else {
                    Status::Completed
                };
                let progress = Some(Progress {
                    current: i as u64,
                    total: None,
                });
                let steps = [
                    TaskUpdate::status(job, t, Status::InProgress),
                    TaskUpdate::heartbeat(job, t, progress),
                    TaskUpdate::status(job, t, end),
                ];
                for step in steps {
                    for r in store.update_tasks(vec![step]).await.expect("update") {
                        r.expect("an update applies");
                    }
                }
                store
                    .add_note(NewNote {
                        job_id: job,
                        task_id: Some(t),
                        message: format!("writer {w} done with a task"),
                        data: None,
                    })
                    .await
                    .expect("note");
            }
        });
    }
    while let Some(r) = writers.join_next().await {
        r.expect("a writer");
    }
    let mut total = 0;
    for job in &jobs {
        total += job_history(&store, *job).await.len();
    }
    let feed = read_feed(&store, Position::START, total).await;
    assert_eq!(feed.len(), total, "the feed holds every committed event");
    assert_feed_matches(&store, &feed, &jobs).await;
    // Read again from the middle: it continues right after that position.
    let mid = feed[total / 2].position;
    let rest = read_feed(&store, mid, total - total / 2 - 1).await;
    let expected: Vec<i64> = feed[total / 2 + 1..].iter().map(|f| f.event.seq).collect();
    let got: Vec<i64> = rest.iter().map(|f| f.event.seq).collect();
    assert_eq!(got, expected, "resuming from a position: no gap, no repeat");
}

async fn two_relays_claiming_at_once_never_hold_the_same_job(store: Arc<dyn Store>) {
    let mut jobs = Vec::new();
    for _ in 0..12 {
        let (job, ids) = create_with_tasks(&store, job_req(), 3).await;
        for t in ids {
            store
                .update_tasks(vec![TaskUpdate::status(job.id, t, Status::Completed)])
                .await
                .expect("update");
        }
        jobs.push(job.id);
    }
    let expected = store.outbox_backlog().await.expect("backlog");
    assert!(
        expected >= 12 * 5,
        "every job has published events: {expected}"
    );
    let held: Arc<Mutex<HashMap<JobId, &'static str>>> = Arc::default();
    let delivered: Arc<Mutex<Vec<OutboxItem>>> = Arc::default();
    let barrier = Arc::new(Barrier::new(2));
    let mut relays = JoinSet::new();
    for relay in ["relay-a", "relay-b"] {
        let (store, held, delivered, barrier) = (
            store.clone(),
            held.clone(),
            delivered.clone(),
            barrier.clone(),
        );
        relays.spawn(async move {
            barrier.wait().await;
            loop {
                let items = store
                    .claim_outbox(relay, 3, Duration::from_secs(30))
                    .await
                    .expect("claim");
                if items.is_empty() {
                    return;
                }
                let jobs: HashSet<JobId> = items.iter().map(|i| i.event.job_id).collect();
                {
                    let mut held = held.lock().unwrap();
                    for j in &jobs {
                        if let Some(other) = held.insert(*j, relay) {
                            panic!("{relay} claimed job {j}, which {other} holds");
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                delivered.lock().unwrap().extend(items.iter().cloned());
                let seqs: Vec<i64> = items.iter().map(|i| i.seq).collect();
                {
                    let mut held = held.lock().unwrap();
                    for j in &jobs {
                        held.remove(j);
                    }
                }
                store.ack_outbox(relay, &seqs).await.expect("ack");
            }
        });
    }
    while let Some(r) = relays.join_next().await {
        r.expect("a relay");
    }
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0);
    let delivered = delivered.lock().unwrap().clone();
    assert_eq!(
        delivered.len() as u64,
        expected,
        "each row delivered exactly once"
    );
    let seqs: HashSet<i64> = delivered.iter().map(|i| i.seq).collect();
    assert_eq!(seqs.len(), delivered.len(), "no row claimed twice");
    // Acknowledged rows are never claimed again.
    let again = store
        .claim_outbox("relay-c", 100, Duration::from_secs(30))
        .await
        .expect("claim");
    assert!(
        again.is_empty(),
        "acknowledged rows came back: {}",
        again.len()
    );
    // Per job, in job_seq order.
    let mut last: HashMap<JobId, i64> = HashMap::new();
    for i in &delivered {
        let prev = last.insert(i.event.job_id, i.event.job_seq).unwrap_or(0);
        assert!(
            i.event.job_seq > prev,
            "job {}: out of order",
            i.event.job_id
        );
        assert!(
            matches!(
                i.event.kind,
                EventKind::Created | EventKind::TaskAdded | EventKind::StatusChanged
            ),
            "only published kinds reach the outbox"
        );
    }
    assert_eq!(last.len(), jobs.len());
}

/// Records what it is given.
#[derive(Default)]
struct Recorder(Mutex<Vec<OutboxItem>>);

#[async_trait]
impl Sink for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    async fn deliver(&self, job: &[OutboxItem]) -> Delivered {
        self.0.lock().unwrap().extend(job.iter().cloned());
        Delivered::all(job)
    }
}

async fn a_relay_stepped_until_idle_takes_over_an_expired_lease_when_the_clock_moves(
    store: Arc<dyn Store>,
    ctx: Ctx,
) {
    let mut jobs = Vec::new();
    for _ in 0..4 {
        let (job, _) = create_with_tasks(&store, job_req(), 2).await;
        jobs.push(job.id);
    }
    let backlog = store.outbox_backlog().await.expect("backlog");
    assert_eq!(backlog, 4 * 3, "created + 2 task_added per job");
    // A relay claims everything, then dies without acknowledging.
    let dead = store
        .claim_outbox("dead-relay", 100, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(dead.len() as u64, backlog);

    let recorder = Arc::new(Recorder::default());
    let relay = Relay::new(store.clone(), vec![recorder.clone()], "live-relay")
        .with_lease(Duration::from_secs(30));
    let worked = step_until_idle(&relay, 100).await.expect("steps");
    assert_eq!(worked, 0, "the dead relay's leases still hold");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), backlog);

    ctx.clock.advance_ms(29_000);
    assert_eq!(step_until_idle(&relay, 100).await.expect("steps"), 0);

    ctx.clock.advance_ms(2_000);
    let worked = step_until_idle(&relay, 100).await.expect("steps");
    assert!(worked >= 1, "the expired leases are taken over");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0);
    let got = recorder.0.lock().unwrap().clone();
    assert!(
        got.iter().all(|i| i.held_since.is_some()),
        "rows taken over from a dead relay's lease say since when it was held"
    );
    assert_eq!(got.len() as u64, backlog, "every row delivered once");
    for job in jobs {
        let seqs: Vec<i64> = got
            .iter()
            .filter(|i| i.event.job_id == job)
            .map(|i| i.event.job_seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3], "job {job}: in order");
    }
    assert!(!relay_step(&relay).await, "idle once the outbox is empty");
}

async fn relay_step(relay: &Relay) -> bool {
    portauthority_store::Loop::step(relay).await.expect("step")
}

const FOLLOWED_JOBS: usize = 3;
const FOLLOW_WRITERS: usize = 32;

async fn a_follower_paging_history_during_concurrent_writes_misses_nothing(store: Arc<dyn Store>) {
    let mut jobs = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..FOLLOWED_JOBS {
        let (job, ids) = create_with_tasks(&store, job_req(), FOLLOW_WRITERS).await;
        jobs.push(job.id);
        tasks.push(ids);
    }
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut followers = JoinSet::new();
    for &job in &jobs {
        let (store, done) = (store.clone(), done.clone());
        followers.spawn(async move {
            let mut seen: Vec<i64> = Vec::new();
            let mut after = 0;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page = store
                    .history(HistoryScope::Job(job), after, 100)
                    .await
                    .expect("history");
                if let Some(last) = page.last() {
                    after = last.seq;
                }
                let empty = page.is_empty();
                seen.extend(page.iter().map(|e| e.seq));
                if empty && finished {
                    return (job, seen);
                }
                if empty {
                    tokio::task::yield_now().await;
                }
            }
        });
    }
    let barrier = Arc::new(Barrier::new(FOLLOW_WRITERS));
    let mut writers = JoinSet::new();
    for w in 0..FOLLOW_WRITERS {
        let (store, barrier) = (store.clone(), barrier.clone());
        let mine: Vec<(JobId, TaskId)> = jobs
            .iter()
            .zip(&tasks)
            .map(|(job, ids): (&JobId, &Vec<TaskId>)| (*job, ids[w]))
            .collect();
        writers.spawn(async move {
            barrier.wait().await;
            for (job, t) in mine {
                let progress = Some(Progress {
                    current: 1,
                    total: Some(2),
                });
                store
                    .update_tasks(vec![TaskUpdate::status(job, t, Status::InProgress)])
                    .await
                    .expect("update");
                store
                    .add_note(NewNote {
                        job_id: job,
                        task_id: None,
                        message: format!("writer {w}"),
                        data: None,
                    })
                    .await
                    .expect("note");
                store
                    .update_tasks(vec![TaskUpdate::heartbeat(job, t, progress)])
                    .await
                    .expect("heartbeat");
                store
                    .update_tasks(vec![TaskUpdate::status(job, t, Status::Completed)])
                    .await
                    .expect("update");
            }
        });
    }
    while let Some(r) = writers.join_next().await {
        r.expect("a writer");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    while let Some(r) = followers.join_next().await {
        let (job, seen) = r.expect("a follower");
        let all: Vec<i64> = job_history(&store, job)
            .await
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(
            seen, all,
            "job {job}: the follower saw every event, in order, once"
        );
    }
}

/// On PostgreSQL, a transaction that holds an event uncommitted while later events commit:
/// the feed never passes it, and shows it once it commits, before the later events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_reader_never_passes_an_uncommitted_event_postgres() {
    run_postgres_ctx(|store, ctx| async move {
        use sqlx::{Connection, Row};
        let (held, _) = create_with_tasks(&store, job_req(), 1).await;
        let (other, other_tasks) = create_with_tasks(&store, job_req(), 3).await;
        let before = read_feed(&store, Position::START, 1 + 1 + 1 + 3).await;
        let start = before.last().expect("events").position;

        // An older transaction with an id, open while the held one starts and the later
        // events are stamped, finished before the feed is read: a snapshot's xmax is the
        // latest *finished* id + 1, so without care the later events would be stamped below
        // the held transaction's id (see migrations/postgres/0008_feed_horizon.sql).
        let mut older_conn = sqlx::PgConnection::connect(&ctx.url)
            .await
            .expect("connect");
        let mut older = older_conn.begin().await.expect("begin");
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *older)
            .await
            .expect("an id for the older transaction");

        // A write in flight: lock the job (the transaction gets its id), append an event.
        let mut conn = sqlx::PgConnection::connect(&ctx.url)
            .await
            .expect("connect");
        let mut tx = conn.begin().await.expect("begin");
        let last_seq: i64 = sqlx::query("SELECT last_seq FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(held.id.as_uuid())
            .fetch_one(&mut *tx)
            .await
            .expect("lock")
            .get(0);
        sqlx::query(
            "INSERT INTO history (job_id, kind, time, message, job_seq)
             VALUES ($1, 'note', now(), 'held', $2)",
        )
        .bind(held.id.as_uuid())
        .bind(last_seq + 1)
        .execute(&mut *tx)
        .await
        .expect("insert");
        sqlx::query("UPDATE jobs SET last_seq = $2 WHERE id = $1")
            .bind(held.id.as_uuid())
            .bind(last_seq + 1)
            .execute(&mut *tx)
            .await
            .expect("update");

        // Later events commit meanwhile.
        for t in &other_tasks {
            store
                .update_tasks(vec![TaskUpdate::status(other.id, *t, Status::Completed)])
                .await
                .expect("update");
        }
        let committed_later = job_history(&store, other.id).await.len() - (1 + 3);
        assert!(committed_later >= 3);
        older.commit().await.expect("commit the older transaction");
        for _ in 0..5 {
            let page = store.feed(start, 100).await.expect("feed");
            assert!(
                page.is_empty(),
                "the feed passed an uncommitted event: {:?}",
                page.iter()
                    .map(|f| (f.event.kind, f.event.seq))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        tx.commit().await.expect("commit");
        let after = read_feed(&store, start, 1 + committed_later).await;
        assert_eq!(after.len(), 1 + committed_later, "each event once");
        assert_eq!(
            after[0].event.message.as_deref(),
            Some("held"),
            "the held event first"
        );
        assert!(after[1..].iter().all(|f| f.event.job_id == other.id));
        let _ = conn.close().await;
        let _ = older_conn.close().await;
    })
    .await;
}

/// A relay waits for the feed signal between claims: were its own claims and acks to bump
/// it, an idle relay would claim again at once, for ever.
async fn outbox_claims_and_acks_wake_no_feed_reader_and_writes_do(store: Arc<dyn Store>) {
    let mut signal = store.feed_signal();
    let woken = |signal: &mut tokio::sync::watch::Receiver<u64>| {
        let mut signal = signal.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(5), signal.changed())
                .await
                .is_ok()
        }
    };
    create_with_tasks(&store, job_req(), 1).await;
    assert!(woken(&mut signal).await, "a write wakes feed readers");
    // Claims until one finds nothing. The writes' own bumps may land after their answers
    // (SQLite's writer bumps once it has answered the group), but before the writer takes
    // its next group: once the first claim has returned they are all in, and from then on
    // nothing may bump the signal.
    let mut first = true;
    loop {
        let items = store
            .claim_outbox("quiet", 10, Duration::from_secs(30))
            .await
            .expect("claim");
        if std::mem::take(&mut first) {
            signal.borrow_and_update();
        }
        if items.is_empty() {
            break;
        }
        let seqs: Vec<i64> = items.iter().map(|i| i.seq).collect();
        store.ack_outbox("quiet", &seqs).await.expect("ack");
    }
    assert_eq!(store.outbox_backlog().await.unwrap(), 0, "all relayed");
    assert!(
        !signal.has_changed().unwrap(),
        "claims and acks woke a feed reader"
    );
    create_with_tasks(&store, job_req(), 0).await;
    assert!(woken(&mut signal).await);
}

/// The head splits the feed: a reader starting there gets every event after it, once, and
/// everything committed after the head was taken is after it. (An event committed just
/// before may fall on either side: on PostgreSQL it is after the head until every
/// transaction older than it has ended, in any database of the cluster.)
async fn the_feed_head_is_past_every_event_so_far_and_before_every_later_one(
    store: Arc<dyn Store>,
) {
    let (before, _) = create_with_tasks(&store, job_req(), 2).await;
    let head = store.feed_head().await.expect("feed_head");
    let (after, _) = create_with_tasks(&store, job_req(), 1).await;

    // The last commits become readable once later transactions move the feed's horizon
    // (on PostgreSQL): write empty jobs until both jobs' five events can be read.
    let ours = |e: &FeedEvent| e.event.job_id == before.id || e.event.job_id == after.id;
    let mut all = Vec::new();
    for _ in 0..100 {
        all = read_feed(&store, Position::START, 0).await;
        all.retain(|e| ours(e));
        if all.len() >= 5 {
            break;
        }
        create_with_tasks(&store, job_req(), 0).await;
    }
    assert_eq!(
        all.len(),
        5,
        "three events of the first job, two of the second"
    );
    assert!(all.iter().any(|e| e.event.job_id == before.id));
    assert!(
        all.iter()
            .filter(|e| e.event.job_id == after.id)
            .all(|e| e.position > head),
        "{head} is before every event committed after it was taken"
    );
    let past: Vec<_> = all.iter().filter(|e| e.position > head).collect();
    let mut later = read_feed(&store, head, 0).await;
    later.retain(|e| ours(e));
    assert_eq!(
        later.iter().map(|e| e.position).collect::<Vec<_>>(),
        past.iter().map(|e| e.position).collect::<Vec<_>>(),
        "from the head: every later event, once, in order"
    );
    assert!(store.feed_head().await.expect("feed_head") >= all[4].position);
}
