//! The Port Authority domain: identifiers, statuses, validated values, the wire shapes of
//! the HTTP API and the state machine that decides what a change does.
//!
//! This crate does no I/O: no database, no HTTP, no clock it does not receive as an
//! argument. Everything here is a pure function of its inputs, which is what lets the
//! same rules run inside a SQLite transaction, a PostgreSQL transaction and a property test.

pub mod api;
pub mod auth;
pub mod clock;
pub mod command;
pub mod ids;
pub mod machine;
pub mod plan;
pub mod progress;
pub mod retention;
pub mod status;
pub mod time;
pub mod validate;

pub use api::EventKind;
pub use auth::{Action, Pattern, Role, Scope};
pub use clock::{Clock, Env, Ids, ManualClock};
pub use command::{AddTasks, Command, NewNote, SetJobStatus, TaskUpdate};
pub use ids::{JobId, TaskId};
pub use machine::{EventDraft, JobState, Refusal, TIMED_OUT, TaskChange, TaskState};
pub use progress::Rate;
pub use retention::RetentionPolicy;
pub use status::{Counters, Status};
pub use time::Timestamp;
pub use validate::{Limits, Name, ValidationError, ValidationErrors};
