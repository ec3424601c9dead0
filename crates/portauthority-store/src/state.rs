//! What every implementation needs between its rows and the state machine.

use portauthority_core::api::{Job, Task};
use portauthority_core::{JobState, TaskState, Timestamp};

/// A job row with the field the API does not show.
pub(crate) struct JobRow {
    pub job: Job,
    /// See `JobState::explicit`.
    pub explicit: bool,
}

impl JobRow {
    pub fn state(&self) -> JobState {
        JobState {
            status: self.job.status,
            explicit: self.explicit,
            auto_complete: self.job.auto_complete,
            counters: self.job.tasks,
            end_time: self.job.end_time,
        }
    }

    /// Applies a new state to the row as the API shows it.
    pub fn apply(&mut self, s: &JobState, now: Timestamp) {
        self.job.status = s.status;
        self.job.end_time = s.end_time;
        self.job.tasks = s.counters;
        self.job.updated_at = now;
        self.explicit = s.explicit;
    }
}

pub(crate) fn task_state(t: &Task) -> TaskState {
    TaskState {
        status: t.status,
        attempt: t.attempt,
        end_time: t.end_time,
        progress: t.progress,
        error: t.error.clone(),
    }
}

/// Applies a new state to a task as the API shows it.
pub(crate) fn apply_task_state(t: &mut Task, s: &TaskState, now: Timestamp) {
    t.status = s.status;
    t.attempt = s.attempt;
    t.end_time = s.end_time;
    t.progress = s.progress;
    t.error = s.error.clone();
    t.updated_at = now;
}

/// The job-id order in which a batch of task updates is applied, so that concurrent
/// batches lock jobs in the same order and cannot deadlock. Results still go back in
/// request order.
pub(crate) fn lock_order<T>(items: &[T], job_of: impl Fn(&T) -> [u8; 16]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| job_of(&items[i]));
    order
}
