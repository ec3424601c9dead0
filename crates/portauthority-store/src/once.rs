//! Commands that take effect at most once per key: a bus command by its CloudEvent
//! (`source`, `id`), an HTTP request by its `Idempotency-Key`. The key is recorded in the
//! transaction of the command itself, so a duplicate, however late it comes, finds it and
//! changes nothing; an HTTP retry gets the first answer back.

use crate::StoreError;
use portauthority_core::Refusal;
use portauthority_core::api::{HistoryEvent, Job, Task};
use portauthority_core::plan::Created;
use serde::{Deserialize, Serialize};

/// The key a command runs once under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Once {
    /// Unique per command: callers namespace it by its origin (`bus:`, `http:`).
    pub key: String,
    /// What the first command under the key was (a hash of the request): the same key with
    /// another fingerprint is refused, not replayed.
    pub fingerprint: String,
    /// Keep the first answer, to return it on a replay (HTTP). The bus needs only the key.
    pub keep_answer: bool,
}

/// What a command returned.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "answer", content = "value", rename_all = "snake_case")]
pub enum Answer {
    Job {
        job: Job,
        created: bool,
    },
    Tasks(Vec<Task>),
    /// One result per update, in order.
    Updates(Vec<Result<Task, Refusal>>),
    Note(HistoryEvent),
}

/// How a command under a key went.
#[derive(Clone, Debug)]
pub enum Ran {
    /// It ran now, and committed.
    Applied(Answer),
    /// It had run before: nothing changed. The first answer, if it was kept.
    Replayed(Option<Answer>),
}

impl Ran {
    pub fn replayed(&self) -> bool {
        matches!(self, Ran::Replayed(_))
    }
}

impl From<Created<Job>> for Answer {
    fn from(c: Created<Job>) -> Answer {
        Answer::Job {
            job: c.value,
            created: c.created,
        }
    }
}

/// A batch's item results in the form an answer keeps. A store error other than a refusal
/// fails the whole command before any answer is made, so none is expected here.
pub(crate) fn updates_answer(results: Vec<Result<Task, StoreError>>) -> Answer {
    Answer::Updates(
        results
            .into_iter()
            .map(|r| {
                r.map_err(|e| match e {
                    StoreError::NotFound(m) => Refusal::NotFound(m),
                    StoreError::Conflict(m) => Refusal::Conflict(m),
                    StoreError::Forbidden(m) => Refusal::Forbidden(m),
                    other => Refusal::Invalid(other.to_string()),
                })
            })
            .collect(),
    )
}

/// A recorded key met again: the first answer when the fingerprints agree.
pub(crate) fn replay(
    once: &Once,
    fingerprint: &str,
    answer: Option<&str>,
) -> Result<Ran, StoreError> {
    if fingerprint != once.fingerprint {
        return Err(StoreError::Invalid(
            "this idempotency key was used for a different request; use a new key for a new request"
                .into(),
        ));
    }
    let answer = answer
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| StoreError::Internal(format!("a recorded answer does not read back: {e}")))?;
    Ok(Ran::Replayed(answer))
}

/// The answer as recorded, when the key keeps it.
pub(crate) fn recorded(once: &Once, answer: &Answer) -> Result<Option<String>, StoreError> {
    once.keep_answer
        .then(|| serde_json::to_string(answer))
        .transpose()
        .map_err(|e| StoreError::Internal(format!("cannot record an answer: {e}")))
}

/// Whether a command's outcome stops its batch: a failure other than a refusal (the
/// database), after which the rest are not run, so that no later command of a job is
/// applied before an earlier one.
pub(crate) fn ends_batch(ran: &Result<Ran, StoreError>) -> bool {
    matches!(ran, Err(e) if !e.is_refusal())
}

/// What a command of a batch answers when an earlier one failed for a reason other than a
/// refusal: it was not run.
pub(crate) fn not_run() -> StoreError {
    StoreError::Unavailable("not run: an earlier command of its batch failed".into())
}
