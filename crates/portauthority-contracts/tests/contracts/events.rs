//! Events out: one message per published history event, with a stable id, its type and a
//! subject that carries the job's namespace.

use crate::support::{JOB, TASK, history, job, task, task_id};
use portauthority_contracts::{
    EVENT_SOURCE, EVENTS_SUBJECTS, EventType, decode_event, encode_event, event_id,
};
use portauthority_core::EventKind;
use portauthority_core::plan::published;
use serde_json::Value;

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}

#[test]
fn an_encoded_event_decodes_to_what_was_encoded() {
    let event = history(EventKind::StatusChanged, Some(task_id()));
    let (job, task) = (job("com.shipyard.email"), task());
    let out = encode_event(&event, &job, Some(&task), EVENT_SOURCE).unwrap();
    let back = decode_event(&out.payload).unwrap();

    assert_eq!(back.specversion, "1.0");
    assert_eq!(back.id, out.id);
    assert_eq!(back.source, EVENT_SOURCE);
    assert_eq!(back.ty, "portauthority.task.status_changed.v1");
    assert_eq!(back.time, Some(event.time));
    assert_eq!(back.datacontenttype.as_deref(), Some("application/json"));
    assert_eq!(back.subject, Some(format!("{JOB}/{TASK}")));
    assert_eq!(json(&back.data.job), json(&job));
    assert_eq!(json(&back.data.task), json(&Some(&task)));
    assert_eq!(json(&back.data.event), json(&event));
    assert_eq!((back.data.from, back.data.to), (event.from, event.to));
    assert_eq!(back.data.reason, None);
}

#[test]
fn the_event_id_is_the_job_and_its_sequence_number() {
    let event = history(EventKind::Created, None);
    assert_eq!(event_id(event.job_id, 3), format!("{JOB}.3"));
    let out = encode_event(&event, &job("billing"), None, EVENT_SOURCE).unwrap();
    assert_eq!(out.id, format!("{JOB}.3"));
    // The same event relayed again is the same message.
    let again = encode_event(&event, &job("billing"), None, EVENT_SOURCE).unwrap();
    assert_eq!(again, out);
}

#[test]
fn each_published_kind_has_its_type_and_subject() {
    let ns = "com.shipyard.email";
    let cases = [
        (
            EventKind::Created,
            None,
            EventType::JobCreated,
            "portauthority.job.created.v1",
            "job.created",
        ),
        (
            EventKind::TaskAdded,
            Some(task_id()),
            EventType::TaskCreated,
            "portauthority.task.created.v1",
            "task.created",
        ),
        (
            EventKind::StatusChanged,
            None,
            EventType::JobStatusChanged,
            "portauthority.job.status_changed.v1",
            "job.status_changed",
        ),
        (
            EventKind::StatusChanged,
            Some(task_id()),
            EventType::TaskStatusChanged,
            "portauthority.task.status_changed.v1",
            "task.status_changed",
        ),
    ];
    let prefix = EVENTS_SUBJECTS.trim_end_matches('>');
    for (kind, task_of, ty, type_name, suffix) in cases {
        let event = history(kind, task_of);
        let out = encode_event(&event, &job(ns), Some(&task()), EVENT_SOURCE).unwrap();
        assert_eq!(out.ty, ty);
        assert_eq!(ty.type_name(), type_name);
        assert_eq!(EventType::parse(type_name), Some(ty));
        assert_eq!(out.subject, format!("portauthority.events.{ns}.{suffix}"));
        assert!(out.subject.starts_with(prefix));
        let back = decode_event(&out.payload).unwrap();
        assert_eq!(back.ty, type_name);
        // Task events carry the task, job events do not.
        assert_eq!(back.data.task.is_some(), ty.is_task(), "{ty:?}");
        let expected_subject = if ty.is_task() {
            format!("{JOB}/{TASK}")
        } else {
            JOB.to_owned()
        };
        assert_eq!(back.subject, Some(expected_subject));
    }
    assert_eq!(EventType::ALL.len(), cases.len());
}

#[test]
fn kinds_that_are_not_published_make_no_event() {
    for kind in [EventKind::Heartbeat, EventKind::Note] {
        assert!(!published(kind));
        let event = history(kind, Some(task_id()));
        assert!(encode_event(&event, &job("n"), Some(&task()), EVENT_SOURCE).is_none());
    }
}

#[test]
fn the_subject_uses_the_jobs_namespace_not_the_tasks() {
    let event = history(EventKind::TaskAdded, Some(task_id()));
    let mut t = task();
    t.namespace = "other.place".into();
    let out = encode_event(&event, &job("com.shipyard"), Some(&t), EVENT_SOURCE).unwrap();
    assert_eq!(
        out.subject,
        "portauthority.events.com.shipyard.task.created"
    );
}

#[test]
fn a_status_change_carries_its_reason() {
    let mut event = history(EventKind::StatusChanged, Some(task_id()));
    event.to = Some(portauthority_core::Status::Failed);
    event.reason = Some("timed_out".into());
    let out = encode_event(&event, &job("n"), Some(&task()), EVENT_SOURCE).unwrap();
    let back = decode_event(&out.payload).unwrap();
    assert_eq!(back.data.reason.as_deref(), Some("timed_out"));
    assert_eq!(back.data.to, Some(portauthority_core::Status::Failed));
}
