//! Outbox events as every sink sends them: the CloudEvent of each, with the job and (on
//! task events) the task as they stand when the event is relayed. The bus and webhooks
//! read and encode alike through here.

use portauthority_contracts::{EVENT_SOURCE, Outgoing, encode_event};
use portauthority_core::api::Job;
use portauthority_store::{OutboxItem, Store, StoreError};

/// The job of a claim's events; `None` when it was deleted since (by retention), and its
/// events went with it.
pub(crate) async fn job_of(
    store: &dyn Store,
    item: &OutboxItem,
) -> Result<Option<Job>, StoreError> {
    match store.get_job(item.event.job_id).await {
        Ok(job) => Ok(Some(job)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The message of one of `job`'s events; `None` for a kind that is not published.
pub(crate) async fn encode(
    store: &dyn Store,
    job: &Job,
    item: &OutboxItem,
) -> Result<Option<Outgoing>, StoreError> {
    let task = match item.event.task_id {
        Some(task_id) => match store.get_task(job.id, task_id).await {
            Ok(task) => Some(task),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    Ok(encode_event(&item.event, job, task.as_ref(), EVENT_SOURCE))
}
