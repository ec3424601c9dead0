//! The bus contracts of Port Authority: the messages that travel over NATS JetStream, as
//! CloudEvents 1.0 in structured JSON mode, with their subjects, streams and JSON Schemas.
//!
//! Commands come in ([`decode_command`]) and become the very commands the HTTP API builds:
//! the `data` of each command is parsed into the HTTP request type of the same change and
//! converted by the same `validate` / `into_*` functions of `portauthority-core`. This crate
//! never re-states a rule of its own about what a valid job, task or note is.
//!
//! Events go out ([`encode_event`]): one message per published history event, with an id
//! that is stable across retries and relays.
//!
//! No I/O here: no NATS client, no clock, no store. The worker owns the connection; this
//! crate only says what the bytes mean. `docs/bus.md` describes the same contracts for
//! producers that do not use Rust, and `docs/schemas/` holds the generated schemas.

mod cloudevent;
mod command;
mod event;
mod reject;
mod schema;

pub use cloudevent::{CloudEvent, SPECVERSION};
pub use command::{
    Command, CommandType, HistoryNoteData, Incoming, JobCreateData, JobStatusData, TaskAddData,
    TaskHeartbeatData, TaskStatusData, command_message, decode_command,
};
pub use event::{
    EventData, EventType, Outgoing, decode_event, encode_event, event_id, event_subject,
    namespace_filter,
};
pub use reject::{RejectKind, Rejection};
pub use schema::schemas;

/// The stream that holds commands for Port Authority.
pub const COMMANDS_STREAM: &str = "PORTAUTHORITY_COMMANDS";
/// The subjects of [`COMMANDS_STREAM`]; each command type has its own ([`CommandType::subject`]).
pub const COMMANDS_SUBJECTS: &str = "portauthority.commands.>";
/// The stream Port Authority publishes its events to.
pub const EVENTS_STREAM: &str = "PORTAUTHORITY_EVENTS";
/// The subjects of [`EVENTS_STREAM`]: `portauthority.events.<namespace>.<job|task>.<created|status_changed>`.
pub const EVENTS_SUBJECTS: &str = "portauthority.events.>";
/// Where a command that can never apply goes, acked, with the original message as payload.
pub const DEADLETTER_SUBJECT: &str = "portauthority.deadletter";
/// The dead letter's header that says, on one line, why the command can never apply.
pub const REASON_HEADER: &str = "Portauthority-Reason";
/// The dead letter's header holding the same reason as RFC 9457 problem JSON (one line).
pub const PROBLEM_HEADER: &str = "Portauthority-Problem";
/// The CloudEvent `source` of the events Port Authority publishes.
pub const EVENT_SOURCE: &str = "/portauthority";
/// The content type of every message's `data`.
pub const DATACONTENTTYPE: &str = "application/json";
