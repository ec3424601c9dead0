//! The read paths a job list may take (see docs/list-performance.md): ids from the jobs
//! indexes or from job_meta, totals from job_counts or from a count, by offset or by cursor.
//! Whatever the path, pages must cut the same list the one-page read gives.

use crate::harness::*;
use portauthority_core::api::{CreateJobRequest, Job, SortField, SortOrder};
use portauthority_core::validate::meta_filter_values;
use portauthority_core::{JobId, Status, Timestamp};
use portauthority_store::{Cursor, JobFilter, Paging, SortValue, Store};
use std::sync::Arc;

conformance!(
    every_list_path_pages_like_the_whole_list,
    meta_numbers_match_in_every_spelling,
);

fn meta(pairs: &[(&str, &str)]) -> Vec<(String, Vec<String>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), meta_filter_values(v)))
        .collect()
}

fn paging(sort: SortField, order: SortOrder, page: u64, size: u64) -> Paging {
    Paging {
        page,
        size,
        sort,
        order,
        after: None,
    }
}

async fn list(store: &Arc<dyn Store>, filter: &JobFilter, paging: Paging) -> (Vec<JobId>, u64) {
    let p = store
        .list_jobs(filter.clone(), paging)
        .await
        .expect("list_jobs");
    (p.items.iter().map(|j| j.id).collect(), p.total_items)
}

async fn every_list_path_pages_like_the_whole_list(store: Arc<dyn Store>) {
    // 36 jobs over two namespaces, two teams, three `n` values given as numbers and as
    // strings, three statuses, and start times with ties (the id breaks them).
    let base = portauthority_core::Clock::now(&portauthority_store::system::SystemClock)
        .as_millis()
        - 3_600_000;
    let mut all: Vec<Job> = Vec::new();
    for i in 0..36i64 {
        let n: serde_json::Value = if i % 2 == 0 {
            (i % 3).into()
        } else {
            (i % 3).to_string().into()
        };
        let team = ["a", "b"][(i % 4 / 2) as usize];
        let job = create(
            &store,
            CreateJobRequest {
                namespace: Some(format!("ns.{}", i % 2)),
                start_time: Some(Timestamp::from_millis(base + (i / 3) * 1000)),
                meta: Some(serde_json::json!({"team": team, "n": n})),
                ..job_req()
            },
        )
        .await;
        if i % 3 > 0 {
            let t = add(&store, job.id, vec![task_req()]).await.remove(0);
            let to = [Status::InProgress, Status::Completed][(i % 3 - 1) as usize];
            set_task(&store, job.id, t.id, to)
                .await
                .expect("task status");
        }
        all.push(get_job(&store, job.id).await);
    }

    let filters = [
        JobFilter::default(),
        JobFilter {
            namespace: Some("ns.1".into()),
            ..JobFilter::default()
        },
        JobFilter {
            statuses: vec![Status::Pending, Status::InProgress],
            ..JobFilter::default()
        },
        JobFilter {
            meta: meta(&[("team", "a")]),
            ..JobFilter::default()
        },
        // Two tagged values (n:1 and s:1).
        JobFilter {
            meta: meta(&[("n", "1")]),
            ..JobFilter::default()
        },
        JobFilter {
            namespace: Some("ns.0".into()),
            statuses: vec![Status::Completed, Status::Pending],
            meta: meta(&[("team", "b")]),
            ..JobFilter::default()
        },
        JobFilter {
            meta: meta(&[("team", "a"), ("n", "2")]),
            ..JobFilter::default()
        },
    ];
    let sorts = [
        SortField::StartTime,
        SortField::UpdatedAt,
        SortField::Status,
        SortField::EndTime,
    ];
    for filter in &filters {
        let matching: Vec<&Job> = all.iter().filter(|j| matches(j, filter)).collect();
        assert!(!matching.is_empty(), "{filter:?} matches some jobs");
        for sort in sorts {
            for order in [SortOrder::Asc, SortOrder::Desc] {
                let what = format!("{filter:?} by {sort:?} {order:?}");
                let (whole, total) = list(&store, filter, paging(sort, order, 1, 1000)).await;
                assert_eq!(total as usize, matching.len(), "total of {what}");
                assert_eq!(whole.len(), matching.len(), "one page holds {what}");

                let mut by_offset = Vec::new();
                for page in 1..=(whole.len() as u64).div_ceil(5) + 1 {
                    let (ids, t) = list(&store, filter, paging(sort, order, page, 5)).await;
                    assert_eq!(t, total, "every page counts all of {what}");
                    by_offset.extend(ids);
                }
                assert_eq!(by_offset, whole, "offset pages cut {what}");

                let mut by_cursor: Vec<JobId> = Vec::new();
                let mut after: Option<Cursor> = None;
                loop {
                    let page = store
                        .list_jobs(
                            filter.clone(),
                            Paging {
                                after: after.clone(),
                                ..paging(sort, order, 1, 5)
                            },
                        )
                        .await
                        .expect("list_jobs");
                    assert_eq!(page.total_items, total, "cursor pages count all of {what}");
                    let Some(last) = page.items.last() else { break };
                    after = Some(Cursor {
                        value: SortValue::of_job(sort, last),
                        id: *last.id.as_uuid(),
                    });
                    by_cursor.extend(page.items.iter().map(|j| j.id));
                    assert!(
                        by_cursor.len() <= whole.len(),
                        "cursor pages end for {what}"
                    );
                }
                assert_eq!(by_cursor, whole, "cursor pages cut {what}");
            }
        }
    }
}

fn matches(j: &Job, f: &JobFilter) -> bool {
    let meta: serde_json::Value = serde_json::from_str(j.meta.get()).expect("meta is JSON");
    f.namespace.as_ref().is_none_or(|n| &j.namespace == n)
        && (f.statuses.is_empty() || f.statuses.contains(&j.status))
        && f.meta.iter().all(|(k, values)| {
            let tagged = match &meta[k] {
                serde_json::Value::String(s) => format!("s:{s}"),
                serde_json::Value::Number(n) => format!("n:{n}"),
                _ => return false,
            };
            values.contains(&tagged)
        })
}

async fn meta_numbers_match_in_every_spelling(store: Arc<dyn Store>) {
    use serde_json::json;
    let j = create(
        &store,
        CreateJobRequest {
            meta: Some(json!({
                "tiny": 0.00001, "huge": 1e20, "third": 0.30000000000000004, "whole": 7.0,
                "neg": -2.5, "zero": -0.0, "max": 18446744073709551615u64,
                "min": -9223372036854775808i64
            })),
            ..job_req()
        },
    )
    .await
    .id;
    let cases: [(&str, &str); 12] = [
        ("tiny", "0.00001"),
        ("tiny", "1e-5"),
        ("huge", "100000000000000000000"),
        ("huge", "1e20"),
        ("third", "0.30000000000000004"),
        ("whole", "7"),
        ("whole", "7.000"),
        ("neg", "-2.5"),
        ("zero", "0"),
        ("max", "18446744073709551615"),
        ("min", "-9223372036854775808"),
        ("neg", "-25e-1"),
    ];
    for (key, value) in cases {
        let filter = JobFilter {
            meta: meta(&[(key, value)]),
            ..JobFilter::default()
        };
        let (ids, total) = list(
            &store,
            &filter,
            paging(SortField::StartTime, SortOrder::Asc, 1, 25),
        )
        .await;
        assert_eq!((ids, total), (vec![j], 1), "meta.{key}={value}");
    }
}
