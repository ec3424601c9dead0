//! Events out: one CloudEvent per published history event (`portauthority_core::plan::published`),
//! on a subject that carries the job's namespace so that consumers can subscribe by prefix.

use crate::DATACONTENTTYPE;
use crate::cloudevent::{CloudEvent, SPECVERSION};
use portauthority_core::api::{EventKind, HistoryEvent, Job, Task};
use portauthority_core::plan::published;
use portauthority_core::{JobId, Status};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The event types Port Authority publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A job was registered (history kind `created`).
    JobCreated,
    /// A task was added (history kind `task_added`).
    TaskCreated,
    /// A job's status changed, derived or set (history kind `status_changed`, no task).
    JobStatusChanged,
    /// A task's status changed (history kind `status_changed` with a task).
    TaskStatusChanged,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::JobCreated,
        EventType::TaskCreated,
        EventType::JobStatusChanged,
        EventType::TaskStatusChanged,
    ];

    /// The CloudEvent `type`, e.g. `portauthority.job.created.v1`.
    pub const fn type_name(self) -> &'static str {
        match self {
            EventType::JobCreated => "portauthority.job.created.v1",
            EventType::TaskCreated => "portauthority.task.created.v1",
            EventType::JobStatusChanged => "portauthority.job.status_changed.v1",
            EventType::TaskStatusChanged => "portauthority.task.status_changed.v1",
        }
    }

    /// The last two tokens of the subject, after the namespace: `job.created`, ...
    pub const fn subject_suffix(self) -> &'static str {
        match self {
            EventType::JobCreated => "job.created",
            EventType::TaskCreated => "task.created",
            EventType::JobStatusChanged => "job.status_changed",
            EventType::TaskStatusChanged => "task.status_changed",
        }
    }

    /// Whether the event is about a task (and then carries it in `data.task`).
    pub const fn is_task(self) -> bool {
        matches!(self, EventType::TaskCreated | EventType::TaskStatusChanged)
    }

    pub fn parse(type_name: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|t| t.type_name() == type_name)
    }

    /// The event type of a history event; `None` for the kinds that are not published.
    pub fn of(event: &HistoryEvent) -> Option<EventType> {
        if !published(event.kind) {
            return None;
        }
        match (event.kind, event.task_id) {
            (EventKind::Created, _) => Some(EventType::JobCreated),
            (EventKind::TaskAdded, _) => Some(EventType::TaskCreated),
            (EventKind::StatusChanged, None) => Some(EventType::JobStatusChanged),
            (EventKind::StatusChanged, Some(_)) => Some(EventType::TaskStatusChanged),
            (EventKind::Heartbeat | EventKind::Note, _) => None,
        }
    }
}

/// The `data` of every event.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct EventData {
    /// The job as it stood when the event was relayed: at or after the change, so it may
    /// already show later changes. `event`, `from` and `to` are exact.
    pub job: Job,
    /// The task, on task events, as it stood when the event was relayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    /// The status before the change, on status changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Status>,
    /// The status after the change, on status changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Status>,
    /// Why, on status changes that were given a reason (e.g. `timed_out`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The history event itself, as `GET .../history` shows it.
    pub event: HistoryEvent,
}

/// An event message ready to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The CloudEvent id: publish it as `Nats-Msg-Id` (and it is the webhook id).
    pub id: String,
    pub subject: String,
    pub payload: Vec<u8>,
    pub ty: EventType,
}

/// The id of the event of a job's `job_seq`-th history entry: `<job id>.<job_seq>`. The
/// same however often the event is relayed, and unique across the installation.
pub fn event_id(job_id: JobId, job_seq: i64) -> String {
    format!("{job_id}.{job_seq}")
}

/// The event message of a history event, or `None` for a kind that is not published.
/// `job` and `task` are the rows as they stand now (see [`EventData::job`]); `task` is
/// used on task events only. `source` is the CloudEvent source, e.g. [`crate::EVENT_SOURCE`].
pub fn encode_event(
    event: &HistoryEvent,
    job: &Job,
    task: Option<&Task>,
    source: &str,
) -> Option<Outgoing> {
    let ty = EventType::of(event)?;
    let id = event_id(event.job_id, event.job_seq);
    let subject_attr = match event.task_id {
        Some(task_id) if ty.is_task() => format!("{}/{task_id}", event.job_id),
        _ => event.job_id.to_string(),
    };
    let message = CloudEvent {
        specversion: SPECVERSION.to_owned(),
        id: id.clone(),
        source: source.to_owned(),
        ty: ty.type_name().to_owned(),
        time: Some(event.time),
        datacontenttype: Some(DATACONTENTTYPE.to_owned()),
        subject: Some(subject_attr),
        data: EventData {
            job: job.clone(),
            task: if ty.is_task() { task.cloned() } else { None },
            from: event.from,
            to: event.to,
            reason: event.reason.clone(),
            event: event.clone(),
        },
    };
    let payload = serde_json::to_vec(&message).expect("an event always serializes");
    Some(Outgoing {
        id,
        subject: event_subject(&job.namespace, ty),
        payload,
        ty,
    })
}

/// Reads an event message (for consumers and tests).
pub fn decode_event(payload: &[u8]) -> Result<CloudEvent<EventData>, serde_json::Error> {
    serde_json::from_slice(payload)
}

/// The subject of an event of `ty` about a job of `namespace`:
/// `portauthority.events.<namespace>.<job|task>.<created|status_changed>`. The namespace's
/// dot-separated parts are subject tokens as they are, so that a subscription to
/// `portauthority.events.com.shipyard.>` follows every namespace under `com.shipyard.`
/// (see [`namespace_filter`]). What NATS would misread is replaced by `_`: an empty part,
/// and whitespace, `*` or `>` inside one.
pub fn event_subject(namespace: &str, ty: EventType) -> String {
    format!(
        "portauthority.events.{}.{}",
        namespace_tokens(namespace),
        ty.subject_suffix()
    )
}

/// The filter subject of every event about the jobs of `namespace` (and of the namespaces
/// under it: `a.b` also matches the events of `a.b.c`; `data.job.namespace` tells them apart).
pub fn namespace_filter(namespace: &str) -> String {
    format!("portauthority.events.{}.>", namespace_tokens(namespace))
}

fn namespace_tokens(namespace: &str) -> String {
    let mut out = String::with_capacity(namespace.len() + 1);
    for (i, token) in namespace.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        if token.is_empty() {
            out.push('_');
        }
        out.extend(token.chars().map(|c| {
            if c.is_whitespace() || c == '*' || c == '>' {
                '_'
            } else {
                c
            }
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_become_subject_tokens() {
        let t = EventType::TaskCreated;
        assert_eq!(
            event_subject("com.shipyard.email", t),
            "portauthority.events.com.shipyard.email.task.created"
        );
        assert_eq!(
            event_subject("billing", t),
            "portauthority.events.billing.task.created"
        );
        assert_eq!(
            event_subject(".a..b c.*.>x.", t),
            "portauthority.events._.a._.b_c._._x._.task.created"
        );
    }

    #[test]
    fn a_namespace_filter_matches_the_subjects_of_its_events() {
        for ns in ["com.shipyard.email", "billing", "a b.*"] {
            let filter = namespace_filter(ns);
            let prefix = filter.trim_end_matches('>');
            for ty in EventType::ALL {
                assert!(event_subject(ns, ty).starts_with(prefix), "{ns} {ty:?}");
            }
        }
        assert_eq!(namespace_filter("a b.*"), "portauthority.events.a_b._.>");
    }
}
