//! Client text is kept exactly: whatever the edge's validation accepts (names, correlation
//! ids, meta, reasons, errors, messages, note data), every store stores and returns byte
//! for byte, and finds again by filter.

use crate::harness::*;
use portauthority_core::api::{CreateJobRequest, CreateTaskRequest, validate_texts};
use portauthority_core::validate::{Meta, meta_filter_values};
use portauthority_core::{Status, TaskChange};
use portauthority_store::{HistoryScope, JobFilter, NewNote, Paging, Store, TaskUpdate};
use std::sync::Arc;

conformance!(text_the_edge_accepts_is_kept_exactly,);

/// Strings that tend to trip a database up.
const TRICKY: &[&str] = &[
    "plain",
    "ünïcödé ✓ 🚢 日本語",
    "quote \" apostrophe ' backslash \\ slash / percent % underscore _",
    "tab\tnewline\ncarriage return\r",
    "controls \u{1}\u{1f}\u{7f}",
    "\u{feff}byte order mark, \u{fffd} replacement, \u{ffff} noncharacter",
    " leading and trailing space ",
    // PostgreSQL's text cannot hold U+0000: the edge must refuse it, or a store keep it.
    "nul \u{0} inside",
];

async fn text_the_edge_accepts_is_kept_exactly(store: Arc<dyn Store>) {
    let limits = limits();
    for &s in TRICKY {
        let text_ok =
            |field: &str| validate_texts(&[(field, &Some(s.to_owned()))], &limits).is_ok();

        // A job: correlation_id, meta key and value, and as type and namespace if allowed.
        let meta = serde_json::json!({ "k": s, s: 1 });
        let mut req = CreateJobRequest {
            correlation_id: Some(s.to_owned()),
            meta: Some(meta.clone()),
            ..job_req()
        };
        let names_ok = CreateJobRequest {
            job_type: Some(s.to_owned()),
            namespace: Some(s.to_owned()),
            ..req.clone()
        }
        .validate(&limits, &portauthority_store::system::SystemIds)
        .is_ok();
        if names_ok {
            req.job_type = Some(s.to_owned());
            req.namespace = Some(s.to_owned());
        }
        let task = CreateTaskRequest {
            meta: Some(meta.clone()),
            ..task_req()
        };
        let task_id = task.id.unwrap();
        req.tasks = Some(vec![task]);
        let Ok(validated) = req
            .clone()
            .validate(&limits, &portauthority_store::system::SystemIds)
        else {
            continue; // Refused at the edge: no store ever sees it.
        };
        let created = store
            .create_job(validated)
            .await
            .unwrap_or_else(|e| panic!("{s:?}: create_job: {e:?}"));
        let job = created.value;
        let meta_json = Meta::parse(Some(meta.clone()), &limits)
            .unwrap()
            .as_json()
            .to_owned();
        assert_eq!(job.correlation_id.as_deref(), Some(s), "{s:?}");
        assert_eq!(job.meta.get(), meta_json, "{s:?}");
        if names_ok {
            assert_eq!(
                (job.job_type.as_str(), job.namespace.as_str()),
                (s, s),
                "{s:?}"
            );
        }
        assert_eq!(json(&get_job(&store, job.id).await), json(&job), "{s:?}");
        let t = get_task(&store, job.id, task_id).await;
        assert_eq!(t.meta.get(), meta_json, "{s:?}");

        // Found again by correlation_id and by meta value.
        let found = store
            .list_jobs(
                JobFilter {
                    correlation_id: Some(s.to_owned()),
                    ..JobFilter::default()
                },
                Paging::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{s:?}: list_jobs: {e:?}"));
        assert_eq!(
            found.items.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![job.id],
            "{s:?}"
        );
        let found = store
            .list_jobs(
                JobFilter {
                    meta: vec![("k".into(), meta_filter_values(s))],
                    ..JobFilter::default()
                },
                Paging::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{s:?}: list_jobs by meta: {e:?}"));
        assert_eq!(
            found.items.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![job.id],
            "{s:?}"
        );

        // Reasons, errors and messages.
        if text_ok("reason") {
            let beat = TaskUpdate {
                job_id: job.id,
                task_id,
                change: TaskChange::Heartbeat {
                    progress: None,
                    message: Some(s.to_owned()),
                },
            };
            apply(&store, beat)
                .await
                .unwrap_or_else(|e| panic!("{s:?}: heartbeat: {e:?}"));
            let failed = apply(
                &store,
                status_update(job.id, task_id, Status::Failed, Some(s), Some(s), None),
            )
            .await
            .unwrap_or_else(|e| panic!("{s:?}: fail with reason and error: {e:?}"));
            assert_eq!(failed.error.as_deref(), Some(s), "{s:?}");
            assert_eq!(
                get_task(&store, job.id, task_id).await.error.as_deref(),
                Some(s)
            );
            let note = store
                .add_note(NewNote {
                    job_id: job.id,
                    task_id: Some(task_id),
                    message: s.to_owned(),
                    data: Some(meta_json.clone()),
                })
                .await
                .unwrap_or_else(|e| panic!("{s:?}: add_note: {e:?}"));
            assert_eq!(note.message.as_deref(), Some(s), "{s:?}");
            assert_eq!(
                note.data.as_ref().map(|d| d.get()),
                Some(meta_json.as_str()),
                "{s:?}"
            );
            let events = history(&store, HistoryScope::Task(job.id, task_id)).await;
            let n = events.len();
            assert_eq!(
                events[n - 3].message.as_deref(),
                Some(s),
                "{s:?}: heartbeat message"
            );
            assert_eq!(
                events[n - 2].reason.as_deref(),
                Some(s),
                "{s:?}: status reason"
            );
            assert_eq!(json(&events[n - 1]), json(&note), "{s:?}: note");
        }
    }
}
