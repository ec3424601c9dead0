//! History: every change is an event, read in `seq` order for a job (with its tasks) or for
//! one task, paged by `after`; notes are appended with their data.

use crate::harness::*;
use portauthority_core::api::{EventKind, HistoryEvent, Progress};
use portauthority_core::{JobId, Status, TaskChange, TaskId};
use portauthority_store::{HistoryScope, NewNote, Store, TaskUpdate};
use std::collections::BTreeSet;
use std::sync::Arc;

conformance!(
    a_jobs_history_records_every_change_of_the_job_and_its_tasks_in_order,
    a_tasks_history_holds_only_its_own_events_from_task_added_on,
    history_pages_by_after_and_size,
    seq_increases_across_the_whole_installation,
    a_note_is_appended_with_its_data,
);

type Shape = (Option<TaskId>, EventKind, Option<Status>, Option<Status>);

fn shape(e: &HistoryEvent) -> Shape {
    (e.task_id, e.kind, e.from, e.to)
}

/// A job with two tasks taken through a full life; returns the job and task ids.
async fn lived_job(store: &Arc<dyn Store>) -> (JobId, TaskId, TaskId) {
    let (job, ids) = create_with_tasks(store, job_req(), 1).await;
    let t1 = ids[0];
    let t2 = add(store, job.id, vec![task_req()]).await[0].id;
    set_task(store, job.id, t1, Status::InProgress)
        .await
        .expect("start");
    let beat = TaskUpdate {
        job_id: job.id,
        task_id: t1,
        change: TaskChange::Heartbeat {
            progress: Some(Progress {
                current: 1,
                total: Some(10),
            }),
            message: Some("warming up".into()),
        },
    };
    apply(store, beat).await.expect("heartbeat");
    apply(
        store,
        status_update(
            job.id,
            t1,
            Status::Completed,
            Some("done"),
            None,
            Some(Progress {
                current: 10,
                total: Some(10),
            }),
        ),
    )
    .await
    .expect("complete");
    set_task(store, job.id, t2, Status::Completed)
        .await
        .expect("complete");
    (job.id, t1, t2)
}

async fn a_jobs_history_records_every_change_of_the_job_and_its_tasks_in_order(
    store: Arc<dyn Store>,
) {
    let before = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    let (job, t1, t2) = lived_job(&store).await;
    let after = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    let events = history(&store, HistoryScope::Job(job)).await;
    use EventKind::*;
    use Status::*;
    let expected: Vec<Shape> = vec![
        (None, Created, None, None),
        (Some(t1), TaskAdded, None, None),
        (Some(t2), TaskAdded, None, None),
        (Some(t1), StatusChanged, Some(Pending), Some(InProgress)),
        (None, StatusChanged, Some(Pending), Some(InProgress)),
        (Some(t1), Heartbeat, None, None),
        (Some(t1), StatusChanged, Some(InProgress), Some(Completed)),
        (Some(t2), StatusChanged, Some(Pending), Some(Completed)),
        (None, StatusChanged, Some(InProgress), Some(Completed)),
    ];
    assert_eq!(events.iter().map(shape).collect::<Vec<_>>(), expected);
    assert_increasing(&events);
    for e in &events {
        assert_eq!(e.job_id, job);
        assert_between(e.time, before, after, "event time");
        assert_eq!(e.data.as_ref().map(|d| d.get().to_owned()), None);
    }
    for pair in events.windows(2) {
        assert!(pair[0].time <= pair[1].time, "times follow seq");
    }
    let beat = &events[5];
    assert_eq!(
        beat.progress,
        Some(Progress {
            current: 1,
            total: Some(10)
        })
    );
    assert_eq!(beat.message.as_deref(), Some("warming up"));
    let done = &events[6];
    assert_eq!(done.reason.as_deref(), Some("done"));
    assert_eq!(
        done.progress,
        Some(Progress {
            current: 10,
            total: Some(10)
        })
    );
    assert_eq!(events[3].reason, None);
    assert_eq!(events[3].progress, None);
    // Another job's events never show.
    let other = lived_job(&store).await.0;
    assert_eq!(
        json(&history(&store, HistoryScope::Job(job)).await),
        json(&events)
    );
    assert!(
        history(&store, HistoryScope::Job(other))
            .await
            .iter()
            .all(|e| e.job_id == other)
    );
}

async fn a_tasks_history_holds_only_its_own_events_from_task_added_on(store: Arc<dyn Store>) {
    let (job, t1, t2) = lived_job(&store).await;
    use EventKind::*;
    use Status::*;
    let events = history(&store, HistoryScope::Task(job, t1)).await;
    assert_eq!(
        events.iter().map(shape).collect::<Vec<_>>(),
        vec![
            (Some(t1), TaskAdded, None, None),
            (Some(t1), StatusChanged, Some(Pending), Some(InProgress)),
            (Some(t1), Heartbeat, None, None),
            (Some(t1), StatusChanged, Some(InProgress), Some(Completed)),
        ]
    );
    assert_increasing(&events);
    let events2 = history(&store, HistoryScope::Task(job, t2)).await;
    assert_eq!(
        events2.iter().map(shape).collect::<Vec<_>>(),
        vec![
            (Some(t2), TaskAdded, None, None),
            (Some(t2), StatusChanged, Some(Pending), Some(Completed)),
        ]
    );
    // The same events as in the job's history, field for field.
    let job_events = history(&store, HistoryScope::Job(job)).await;
    for e in events.iter().chain(&events2) {
        let same = job_events
            .iter()
            .find(|j| j.seq == e.seq)
            .expect("in the job's history");
        assert_eq!(json(same), json(e));
    }
}

async fn history_pages_by_after_and_size(store: Arc<dyn Store>) {
    let (job, t1, _) = lived_job(&store).await;
    let all = history(&store, HistoryScope::Job(job)).await;
    assert_eq!(all.len(), 9);
    for size in [1, 2, 4, 9, 10] {
        let paged = history_paged(&store, HistoryScope::Job(job), size).await;
        assert_eq!(json(&paged), json(&all), "pages of {size}");
    }
    // `after` is exclusive.
    let tail = store
        .history(HistoryScope::Job(job), all[3].seq, 1000)
        .await
        .expect("history");
    assert_eq!(json(&tail), json(&all[4..]));
    let two = store
        .history(HistoryScope::Job(job), all[3].seq, 2)
        .await
        .expect("history");
    assert_eq!(json(&two), json(&all[4..6]));
    let last = all.last().unwrap().seq;
    assert!(
        store
            .history(HistoryScope::Job(job), last, 10)
            .await
            .expect("history")
            .is_empty()
    );
    assert!(
        store
            .history(HistoryScope::Job(job), i64::MAX, 10)
            .await
            .expect("history")
            .is_empty()
    );
    assert!(
        store
            .history(HistoryScope::Job(job), 0, 0)
            .await
            .expect("history")
            .is_empty()
    );
    // A negative `after` reads from the start.
    assert_eq!(
        json(
            &store
                .history(HistoryScope::Job(job), -5, 1000)
                .await
                .expect("history")
        ),
        json(&all)
    );
    // The task scope pages the same way.
    let task_all = history(&store, HistoryScope::Task(job, t1)).await;
    let task_paged = history_paged(&store, HistoryScope::Task(job, t1), 1).await;
    assert_eq!(json(&task_paged), json(&task_all));
    let task_tail = store
        .history(HistoryScope::Task(job, t1), task_all[1].seq, 1)
        .await
        .expect("history");
    assert_eq!(json(&task_tail), json(&task_all[2..3]));
}

async fn seq_increases_across_the_whole_installation(store: Arc<dyn Store>) {
    // Interleave changes of two jobs: every new event has a larger seq than every event
    // written before it, whichever job it belongs to.
    let (a, a_tasks) = create_with_tasks(&store, job_req(), 2).await;
    let (b, b_tasks) = create_with_tasks(&store, job_req(), 2).await;
    let seqs = |store: Arc<dyn Store>| async move {
        let mut v: BTreeSet<i64> = BTreeSet::new();
        for job in [a.id, b.id] {
            let events = history(&store, HistoryScope::Job(job)).await;
            assert_increasing(&events);
            v.extend(events.iter().map(|e| e.seq));
        }
        v
    };
    let mut seen = seqs(store.clone()).await;
    assert_eq!(seen.len(), 6, "2 created + 4 task_added");
    for i in 0..2 {
        for (job, tasks) in [(b.id, &b_tasks), (a.id, &a_tasks)] {
            set_task(&store, job, tasks[i], Status::Completed)
                .await
                .expect("complete");
            let now = seqs(store.clone()).await;
            assert!(now.is_superset(&seen), "history is append-only");
            let max_before = *seen.last().unwrap();
            let new: Vec<i64> = now.difference(&seen).copied().collect();
            assert!(!new.is_empty(), "the change wrote an event");
            assert!(
                new.iter().all(|s| *s > max_before),
                "new events {new:?} come after every older one (max {max_before})"
            );
            seen = now;
        }
    }
    let note = store
        .add_note(NewNote {
            job_id: a.id,
            task_id: None,
            message: "last".into(),
            data: None,
        })
        .await
        .expect("note");
    assert!(
        note.seq > *seen.last().unwrap(),
        "a note after everything has the largest seq"
    );
}

async fn a_note_is_appended_with_its_data(store: Arc<dyn Store>) {
    let (job, ids) = create_with_tasks(&store, job_req(), 1).await;
    let t = ids[0];
    let job_before = get_job(&store, job.id).await;
    let last_seq = history(&store, HistoryScope::Job(job.id))
        .await
        .last()
        .unwrap()
        .seq;

    let data = r#"{"zeta":[1,{"b":null,"a":true}],"alpha":"ü ✓","n":-0.25}"#;
    let before = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    let note = store
        .add_note(NewNote {
            job_id: job.id,
            task_id: None,
            message: "deploy window opened".into(),
            data: Some(data.into()),
        })
        .await
        .expect("add_note");
    let after = portauthority_core::Clock::now(&portauthority_store::system::SystemClock);
    assert!(note.seq > last_seq);
    assert_eq!(note.kind, EventKind::Note);
    assert_eq!(note.job_id, job.id);
    assert_eq!(note.task_id, None);
    assert_eq!(note.message.as_deref(), Some("deploy window opened"));
    assert_eq!(
        note.data.as_ref().map(|d| d.get()),
        Some(data),
        "data as sent"
    );
    assert_eq!(
        (note.from, note.to, note.reason.as_deref(), note.progress),
        (None, None, None, None)
    );
    assert_between(note.time, before, after, "note time");
    let stored = history(&store, HistoryScope::Job(job.id))
        .await
        .pop()
        .unwrap();
    assert_eq!(json(&stored), json(&note), "read back as returned");
    // A job-level note is not in any task's history.
    assert!(
        history(&store, HistoryScope::Task(job.id, t))
            .await
            .iter()
            .all(|e| e.kind != EventKind::Note)
    );

    // A note on a task, without data.
    let task_note = store
        .add_note(NewNote {
            job_id: job.id,
            task_id: Some(t),
            message: "retrying shard 3".into(),
            data: None,
        })
        .await
        .expect("add_note");
    assert!(task_note.seq > note.seq);
    assert_eq!(task_note.task_id, Some(t));
    assert_eq!(task_note.data.as_ref().map(|d| d.get()), None);
    let own = history(&store, HistoryScope::Task(job.id, t))
        .await
        .pop()
        .unwrap();
    assert_eq!(json(&own), json(&task_note));
    let in_job = history(&store, HistoryScope::Job(job.id))
        .await
        .pop()
        .unwrap();
    assert_eq!(json(&in_job), json(&task_note));

    // A note records; it changes neither status nor counters.
    let job_after = get_job(&store, job.id).await;
    assert_eq!(job_after.status, job_before.status);
    assert_eq!(job_after.tasks, job_before.tasks);
    assert_eq!(get_task(&store, job.id, t).await.status, Status::Pending);

    // A finished job still takes notes.
    set_task(&store, job.id, t, Status::Completed)
        .await
        .expect("complete");
    store
        .add_note(NewNote {
            job_id: job.id,
            task_id: Some(t),
            message: "post-mortem".into(),
            data: Some("{}".into()),
        })
        .await
        .expect("a note on a finished job");
    let last = history(&store, HistoryScope::Task(job.id, t))
        .await
        .pop()
        .unwrap();
    assert_eq!(last.message.as_deref(), Some("post-mortem"));
    assert_eq!(last.data.as_ref().map(|d| d.get()), Some("{}"));
}
