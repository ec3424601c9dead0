//! The bulk loader: seeded rows read back through the `Store` trait like rows the service
//! wrote (consistent counters, statuses that follow the rules, each job's events numbered
//! from 1 without gaps and the next write numbered after them, every filter finds them).
//! No timings here; docs/list-performance.md has those.
//!
//! Not a `conformance!` scenario: seeding needs the database URL, not only a store.

use crate::harness::*;
use portauthority_core::api::{Job, SortField};
use portauthority_core::validate::meta_filter_values;
use portauthority_core::{Counters, Status};
use portauthority_store::seed::{self, JOB_TYPES, JOBS_PER_RELEASE, NAMESPACES, TEAMS};
use portauthority_store::{HistoryScope, JobFilter, NewNote, Paging, Store, TaskFilter};
use std::sync::Arc;

const JOBS: u64 = 2_000;
const TASKS_PER_JOB: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_jobs_read_back_consistently_sqlite() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("seed.db").display());
    seeded_jobs_read_back_consistently(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_jobs_read_back_consistently_postgres() {
    let Some(admin_url) = portauthority_testkit::postgres::admin_url() else {
        return;
    };
    let url = portauthority_testkit::postgres::scratch_database(&admin_url, "pa_seed")
        .await
        .expect("a scratch database can be created");
    let outcome = tokio::spawn({
        let url = url.clone();
        async move { seeded_jobs_read_back_consistently(&url).await }
    })
    .await;
    drop_database(&admin_url, &url).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn seeded_jobs_read_back_consistently(url: &str) {
    let report = seed::seed(url, JOBS, TASKS_PER_JOB)
        .await
        .expect("seeding succeeds");
    assert_eq!(report.jobs, JOBS);
    assert_eq!(report.tasks, JOBS * u64::from(TASKS_PER_JOB));
    let store = portauthority_store::open(url)
        .await
        .expect("the store opens");
    let jobs = all_jobs(&store).await;
    assert_eq!(jobs.len() as u64, JOBS, "every seeded job is listed");

    for job in &jobs {
        check_job(job);
    }
    // The maintained counts behind `/metrics` hold the seeded jobs and tasks.
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.jobs, Counters::recount(jobs.iter().map(|j| j.status)));
    let tasks = jobs
        .iter()
        .fold(Counters::default(), |sum, j| sum.plus(&j.tasks));
    assert_eq!(
        stats.tasks, tasks,
        "tasks by status: the sum of the jobs' counters"
    );
    // Counters equal a recount of the tasks, tasks carry the job's namespace, the history
    // starts as the service's does and is numbered as the service numbers it.
    for job in jobs.iter().step_by(40) {
        let tasks = store
            .list_tasks(job.id, TaskFilter::default(), size(1000))
            .await
            .expect("list_tasks")
            .items;
        assert_eq!(
            Counters::recount(tasks.iter().map(|t| t.status)),
            job.tasks,
            "counters of {} equal a recount",
            job.id
        );
        assert!(tasks.iter().all(|t| t.namespace == job.namespace));
        assert!(
            tasks
                .iter()
                .all(|t| t.end_time.is_some() == t.status.is_terminal())
        );
        let events = store
            .history(HistoryScope::Job(job.id), 0, 1000)
            .await
            .expect("history");
        assert_eq!(events[0].kind.as_str(), "created");
        let added = events
            .iter()
            .filter(|e| e.kind.as_str() == "task_added")
            .count();
        assert_eq!(added as i64, job.tasks.total);
        let last_job_event = events
            .iter()
            .rev()
            .find(|e| e.task_id.is_none() && e.to.is_some());
        assert_eq!(
            last_job_event.map_or(Status::Pending, |e| e.to.expect("to")),
            job.status,
            "the job's last status event names its status"
        );
        let n = events.len() as i64;
        assert!(n > job.tasks.total, "{}: {n} events", job.id);
        assert_eq!(
            events.iter().map(|e| e.job_seq).collect::<Vec<_>>(),
            (1..=n).collect::<Vec<_>>(),
            "the events of {} are numbered 1..={n} in order",
            job.id
        );
        // The job row's last_seq is n: the next event the service writes is numbered n + 1.
        let note = store
            .add_note(NewNote {
                job_id: job.id,
                task_id: None,
                message: "after the seed".into(),
                data: None,
            })
            .await
            .expect("add_note");
        assert_eq!(
            note.job_seq,
            n + 1,
            "a note on {} follows its seeded events",
            job.id
        );
    }

    // Every filter finds the rows, and the lists of each kind add up to all jobs.
    let by = |f: fn(&str) -> JobFilter, names: &[&str]| {
        names.iter().map(move |n| f(n)).collect::<Vec<_>>()
    };
    let groups: [(&str, Vec<JobFilter>); 4] = [
        (
            "namespace",
            by(
                |n| JobFilter {
                    namespace: Some(n.into()),
                    ..JobFilter::default()
                },
                &NAMESPACES,
            ),
        ),
        (
            "type",
            by(
                |n| JobFilter {
                    job_type: Some(n.into()),
                    ..JobFilter::default()
                },
                &JOB_TYPES,
            ),
        ),
        (
            "status",
            Status::ALL
                .iter()
                .map(|s| JobFilter {
                    statuses: vec![*s],
                    ..JobFilter::default()
                })
                .collect(),
        ),
        ("meta.team", by(|n| meta(&[("team", n)]), &TEAMS)),
    ];
    for (what, filters) in groups {
        let mut sum = 0;
        let mut non_empty = 0;
        for filter in filters {
            let page = store
                .list_jobs(filter.clone(), size(50))
                .await
                .expect("list_jobs");
            assert!(page.items.iter().all(|j| matches(j, &filter)), "{filter:?}");
            assert_eq!(page.items.len() as u64, page.total_items.min(50));
            sum += page.total_items;
            non_empty += usize::from(page.total_items > 0);
        }
        assert_eq!(sum, JOBS, "the {what} lists add up to all jobs");
        assert!(
            non_empty >= 4,
            "jobs are spread over several values of {what}"
        );
    }
    let release = store
        .list_jobs(meta(&[("release_id", "3")]), size(1000))
        .await
        .expect("list_jobs");
    assert_eq!(release.total_items, JOBS_PER_RELEASE);
    assert!(
        release
            .items
            .iter()
            .all(|j| j.meta.get().contains("\"release_id\":3,"))
    );
    let with_correlation = jobs
        .iter()
        .find(|j| j.correlation_id.is_some())
        .expect("some job has a correlation id");
    let same = store
        .list_jobs(
            JobFilter {
                correlation_id: with_correlation.correlation_id.clone(),
                ..JobFilter::default()
            },
            size(50),
        )
        .await
        .expect("list_jobs");
    assert!((1..=3).contains(&same.total_items));
    assert!(same.items.iter().any(|j| j.id == with_correlation.id));
    let combined = JobFilter {
        namespace: Some(NAMESPACES[0].into()),
        statuses: vec![Status::Completed],
        ..meta(&[("team", TEAMS[0])])
    };
    let page = store
        .list_jobs(combined.clone(), size(1000))
        .await
        .expect("list_jobs");
    assert!(page.total_items > 0, "a combination of filters finds jobs");
    assert!(page.items.iter().all(|j| matches(j, &combined)));
    store.close().await;
}

fn size(n: u64) -> Paging {
    Paging {
        size: n,
        ..Paging::default()
    }
}

fn meta(pairs: &[(&str, &str)]) -> JobFilter {
    JobFilter {
        meta: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), meta_filter_values(v)))
            .collect(),
        ..JobFilter::default()
    }
}

fn matches(j: &Job, f: &JobFilter) -> bool {
    let meta: serde_json::Value = serde_json::from_str(j.meta.get()).expect("meta is JSON");
    f.namespace.as_ref().is_none_or(|n| &j.namespace == n)
        && f.job_type.as_ref().is_none_or(|t| &j.job_type == t)
        && f.correlation_id
            .as_ref()
            .is_none_or(|c| j.correlation_id.as_ref() == Some(c))
        && (f.statuses.is_empty() || f.statuses.contains(&j.status))
        && f.meta.iter().all(|(k, values)| {
            let v = &meta[k];
            values.iter().any(|tagged| match v {
                serde_json::Value::String(s) => tagged == &format!("s:{s}"),
                serde_json::Value::Number(n) => tagged == &format!("n:{n}"),
                _ => false,
            })
        })
}

/// A job as the rules allow it: consistent counters, a status its counters give (or one a
/// client may set: terminal with no open task), an end time exactly when terminal, an
/// UUIDv7 id made when the job was created.
fn check_job(j: &Job) {
    assert!(j.tasks.is_consistent(), "{}: {:?}", j.id, j.tasks);
    assert_eq!(j.tasks.total, i64::from(TASKS_PER_JOB));
    let derived = j.tasks.derived_status(j.auto_complete);
    assert!(
        j.status == derived || (j.status.is_terminal() && j.tasks.open() == 0),
        "{}: status {} with counters {:?}",
        j.id,
        j.status,
        j.tasks
    );
    assert_eq!(j.end_time.is_some(), j.status.is_terminal(), "{}", j.id);
    assert!(j.start_time <= j.created_at && j.created_at <= j.updated_at);
    let id = j.id.as_uuid();
    assert_eq!(id.get_version_num(), 7);
    let (secs, nanos) = id.get_timestamp().expect("a v7 timestamp").to_unix();
    assert_eq!(
        (secs * 1000 + u64::from(nanos) / 1_000_000) as i64,
        j.created_at.as_millis(),
        "the id's time is created_at"
    );
}

/// Every job, in pages of 1000 by start time.
async fn all_jobs(store: &Arc<dyn Store>) -> Vec<Job> {
    let mut out = Vec::new();
    for page in 1.. {
        let p = store
            .list_jobs(
                JobFilter::default(),
                Paging {
                    page,
                    size: 1000,
                    sort: SortField::StartTime,
                    ..Paging::default()
                },
            )
            .await
            .expect("list_jobs");
        assert_eq!(p.total_items, JOBS);
        let n = p.items.len();
        out.extend(p.items);
        if n < 1000 {
            break;
        }
    }
    out
}
